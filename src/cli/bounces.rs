//! `verdicts bounces import PATH…`: reads DSNs and complaint reports from `.eml` files, mbox
//! files and Maildir folders, and applies them. Everything is read and parsed first: a path that
//! is not mail (or a truncated report) exits 2 naming it, with nothing written.

use super::{BouncesCommand, Failure, open_app};
use crate::app::Actor;
use crate::bounces::intake::{parse_all, read_paths};
use crate::config::Settings;

pub(super) async fn run(
    settings: &Settings,
    command: BouncesCommand,
    json: bool,
) -> Result<(), Failure> {
    match command {
        BouncesCommand::Import { paths } => import(settings, &paths, json).await,
    }
}

async fn import(
    settings: &Settings,
    paths: &[std::path::PathBuf],
    json: bool,
) -> Result<(), Failure> {
    let messages = read_paths(paths).map_err(|e| Failure::Input(e.to_string()))?;
    let reports = parse_all(&messages).map_err(|e| Failure::Input(e.to_string()))?;
    let app = open_app(settings).await?;
    let done = app
        .import_bounces(
            &Actor::Cli,
            messages
                .iter()
                .zip(&reports)
                .map(|(m, r)| (m.origin.as_str(), r)),
        )
        .await;
    app.close().await;
    let done = done?;
    for processed in &done.processed {
        if json {
            println!(
                "{}",
                serde_json::to_string(processed).map_err(anyhow::Error::from)?
            );
        } else {
            println!(
                "{}: {} {} (issue {}) {:?}{}",
                processed.origin,
                processed.kind,
                processed
                    .subscriber
                    .as_deref()
                    .unwrap_or("(unknown subscriber)"),
                processed
                    .issue
                    .map_or_else(|| "?".to_string(), |n| format!("#{n}")),
                processed.applied.effect,
                processed
                    .applied
                    .paused
                    .as_deref()
                    .map(|r| format!(" — issue {r}"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(e) = done.failed {
        return Err(Failure::Runtime(e));
    }
    if !json {
        println!(
            "{} report(s) applied, {} already seen",
            done.applied, done.repeats
        );
    }
    Ok(())
}
