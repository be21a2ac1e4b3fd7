//! The `verdicts` command line (clap). Exit codes: 0 ok, 1 runtime failure, 2 usage or input
//! error; every error names the file, field or key at fault.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};

use crate::comparisons::import;
use crate::config::{ConfigError, Settings};
use crate::startup::Application;
use crate::store::Store;
use crate::store::comparisons::Source;
use crate::{shutdown, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "verdicts",
    version,
    about = "The Weekly AI Tool Verdicts newsletter pipeline"
)]
pub struct Cli {
    /// Settings file layered over config/default.toml and config/local.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON output where it makes sense.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: HTTP server (and, as they land, scheduler and delivery worker).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Import and list comparisons.
    #[command(subcommand)]
    Comparisons(ComparisonsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ComparisonsCommand {
    /// Import JSON (object or array) or published page text, detected per file. Re-importing a
    /// slug updates it.
    Import(ImportArgs),
    /// List stored comparisons, oldest first.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Publication time for page text files (RFC 3339 or YYYY-MM-DD, UTC); default: now.
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub published_at: Option<DateTime<Utc>>,
    /// Files to import.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only comparisons published at or after T (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
}

/// Accepts RFC 3339 (`2026-11-18T10:00:00Z`) or a date (`2026-11-18`, midnight UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-11-18T10:00:00Z) or a date (2026-11-18)"
    ))
}

/// A failed command: what to print and which exit code to use.
#[derive(Debug)]
pub enum Failure {
    /// Bad input or usage: exit code 2.
    Input(String),
    /// Something went wrong while running: exit code 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Input(e.to_string())
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(settings.log.format);
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let store = Store::connect(&settings.database).await?;
            let applied = store.migrate().await?;
            store.close().await;
            if cli.json {
                println!("{}", serde_json::json!({ "applied": applied }));
            } else {
                println!(
                    "{applied} migration(s) applied to {}",
                    settings.database.url.redacted()
                );
            }
            Ok(())
        }
        Command::Comparisons(ComparisonsCommand::Import(args)) => {
            import_comparisons(&settings, args, cli.json).await
        }
        Command::Comparisons(ComparisonsCommand::List(args)) => {
            list_comparisons(&settings, args, cli.json).await
        }
    }
}

async fn serve(settings: Settings) -> Result<(), Failure> {
    let app = Application::build(settings).await?;
    let (trigger, stop) = shutdown::channel();
    shutdown::on_signals(trigger);
    app.run_until_stopped(stop).await?;
    Ok(())
}

async fn import_comparisons(
    settings: &Settings,
    args: ImportArgs,
    json: bool,
) -> Result<(), Failure> {
    let published_at = args.published_at.unwrap_or_else(Utc::now);
    // Every file is read and checked before anything is written: one bad file, nothing changes.
    let files = import::read_files(&args.paths, settings.site.base_url.as_str(), published_at)
        .map_err(|errors| {
            Failure::Input(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    let mut report = Vec::new();
    for file in &files {
        let done = store
            .upsert_comparisons(
                &file.comparisons,
                file.source,
                file.source == Source::Page && args.published_at.is_none(),
            )
            .await
            .map_err(|e| e.context(format!("importing {}", file.path.display())))?;
        for d in done {
            report.push(serde_json::json!({
                "file": file.path.display().to_string(),
                "slug": d.slug,
                "action": d.action,
                "revision": d.revision,
            }));
        }
    }
    store.close().await;
    if json {
        println!("{}", serde_json::Value::Array(report));
    } else {
        for r in &report {
            println!(
                "{} {} (from {})",
                r["action"].as_str().unwrap_or(""),
                r["slug"].as_str().unwrap_or(""),
                r["file"].as_str().unwrap_or("")
            );
        }
        println!(
            "{} comparison(s) imported from {} file(s)",
            report.len(),
            files.len()
        );
    }
    Ok(())
}

async fn list_comparisons(settings: &Settings, args: ListArgs, json: bool) -> Result<(), Failure> {
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    let rows = store.list_comparisons(args.since).await?;
    store.close().await;
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = r.comparison.to_json();
                v["revision"] = r.revision.into();
                v["issue_week"] = r.issue_week.clone().into();
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no comparisons");
        return Ok(());
    }
    println!(
        "{:<17}  {:<44}  {:<24}  ISSUE",
        "PUBLISHED (UTC)", "TITLE", "PANEL"
    );
    for r in &rows {
        let c = &r.comparison;
        let [a, b] = c.tools();
        let panel = format!(
            "{} {}/{} · {} {}/{}",
            a.panel.verdict.label(),
            a.panel.ship,
            a.panel.skip,
            b.panel.verdict.label(),
            b.panel.ship,
            b.panel.skip
        );
        println!(
            "{:<17}  {:<44}  {:<24}  {}",
            c.published_at().format("%Y-%m-%d %H:%M"),
            truncate(c.title(), 44),
            panel,
            r.issue_week.as_deref().unwrap_or("-")
        );
    }
    println!("{} comparison(s)", rows.len());
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}
