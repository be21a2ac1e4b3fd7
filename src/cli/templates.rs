//! `verdicts templates export|check`.

use std::path::Path;

use super::{Failure, TemplatesCommand};
use crate::config::Settings;
use crate::render::builtin_templates;
use crate::render::check::check;

pub(super) fn run(
    settings: &Settings,
    command: TemplatesCommand,
    json: bool,
) -> Result<(), Failure> {
    match command {
        TemplatesCommand::Export { dir, force } => export(&dir, force, json),
        TemplatesCommand::Check { dir } => {
            let dir = dir.or_else(|| settings.templates.dir.clone());
            run_check(dir.as_deref(), settings, json)
        }
    }
}

fn export(dir: &Path, force: bool, json: bool) -> Result<(), Failure> {
    let targets: Vec<_> = builtin_templates()
        .iter()
        .map(|(name, source)| (dir.join(name), *source))
        .collect();
    if !force {
        let existing: Vec<String> = targets
            .iter()
            .filter(|(p, _)| p.exists())
            .map(|(p, _)| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(Failure::Input(format!(
                "{} exist already; nothing written (--force overwrites): {}",
                existing.len(),
                existing.join(", ")
            )));
        }
    }
    for (path, source) in &targets {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::Input(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(path, source)
            .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "written": targets.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>() })
        );
    } else {
        for (path, _) in &targets {
            println!("{}", path.display());
        }
        println!(
            "{} templates written; set templates.dir = {:?} to use them",
            targets.len(),
            dir.display().to_string()
        );
    }
    Ok(())
}

fn run_check(dir: Option<&Path>, settings: &Settings, json: bool) -> Result<(), Failure> {
    let report = check(dir, settings);
    if json {
        println!("{}", serde_json::json!(report));
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        let source = dir.map_or_else(
            || "the built-in templates".to_string(),
            |d| d.display().to_string(),
        );
        if report.problems.is_empty() {
            println!(
                "{source}: every template renders ({} from the folder, the rest built-in); a \
                 ten-comparison issue is {} KB of HTML",
                report.overridden.len(),
                report.issue_html_bytes.div_ceil(1024)
            );
        }
    }
    if report.problems.is_empty() {
        return Ok(());
    }
    Err(Failure::Input(
        report
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}
