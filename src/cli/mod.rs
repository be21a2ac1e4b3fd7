//! The `verdicts` command line (clap). Exit codes: 0 ok, 1 runtime failure, 2 usage or input
//! error; every error names the file, field or key at fault.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};

mod bounces;
mod comparisons;
mod dkim;
mod issues;
mod operators;
mod subscribers;
mod templates;

use crate::app::{App, OpsError};
use crate::config::{ConfigError, Settings};
use crate::issues::{IsoWeek, IssueKey};
use crate::startup::Application;
use crate::store::Store;
use crate::subscribers::SubscriberStatus;
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
    /// Log JSON lines instead of human-readable ones (overrides log.format).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Interactive commands log only warnings and errors: -v adds info lines, -vv debug ones
    /// (RUST_LOG, when set, decides instead).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: HTTP server, scheduler, delivery worker, mail queue and bounce poller.
    Serve,
    /// Delivery worker only: sends issues that are `sending`, until SIGTERM. Run several
    /// against one PostgreSQL to share a send.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Import and list comparisons.
    #[command(subcommand)]
    Comparisons(ComparisonsCommand),
    /// Preview, create and inspect the weekly issues.
    #[command(subcommand)]
    Issue(IssueCommand),
    /// Add, import, export, list and remove subscribers.
    #[command(subcommand)]
    Subscribers(SubscribersCommand),
    /// Read bounces (DSNs) and complaints (ARF) and apply them to subscribers.
    #[command(subcommand)]
    Bounces(BouncesCommand),
    /// Manage the operators who may sign in to the console at /admin.
    #[command(subcommand)]
    Operators(OperatorsCommand),
    /// DKIM keys.
    #[command(subcommand)]
    Dkim(DkimCommand),
    /// Export the built-in templates to restyle them; check a folder of templates.
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Check the installation as a mailbox provider sees it (SPF, DKIM, DMARC, return path,
    /// SMTP login, public URL, …) and say how to fix each problem. Exit 1 when a check fails.
    Doctor,
}

#[derive(Debug, Subcommand)]
pub enum BouncesCommand {
    /// Import .eml files, mbox files or Maildir folders of delivery status notifications and
    /// complaint reports. Importing the same report twice changes nothing.
    Import {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Write every built-in template under DIR (email/…, web/…), to edit and point
    /// `templates.dir` at. Existing files are left alone unless --force.
    Export {
        dir: PathBuf,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
    /// Load the templates of DIR (default: `templates.dir`, else the built-ins) and render each
    /// with sample data; exit 2 naming the file and line of every error.
    Check { dir: Option<PathBuf> },
}

#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    /// Add an operator; the password (at least 12 characters) is read from standard input.
    Add {
        email: String,
        /// owner (also manages operators) or editor; default: owner for the first operator,
        /// editor after.
        #[arg(long, value_parser = parse_role)]
        role: Option<crate::operators::Role>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List operators.
    List,
    /// Remove an operator and end their sessions (the last owner stays).
    Remove { email: String },
    /// Set an operator's password (from standard input) and end their sessions.
    Passwd {
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Turn on two-factor sign-in (TOTP, RFC 6238) for an operator: prints the otpauth:// URI
    /// for their authenticator app and ten single-use recovery codes; a new run replaces both.
    Totp {
        email: String,
        /// Remove the operator's two-factor secret and recovery codes instead.
        #[arg(long)]
        disable: bool,
    },
}

fn parse_role(s: &str) -> Result<crate::operators::Role, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Write a new private key (PKCS#8 PEM, mode 0600) and print the DNS TXT record to publish
    /// at SELECTOR._domainkey.DOMAIN. Never overwrites a file.
    Keygen {
        /// The selector the record is published under (e.g. verdicts-2026).
        #[arg(long, value_name = "S")]
        selector: String,
        #[arg(long, value_enum, default_value_t = crate::delivery::dkim::Algorithm::Rsa)]
        algorithm: crate::delivery::dkim::Algorithm,
        /// Where to write the key; must not exist yet.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The signing domain for the record name; default dkim.domain, else mail.from's domain.
        #[arg(long, value_name = "D")]
        domain: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// Add one address (pending unless --confirmed). Never re-activates an address that
    /// unsubscribed or was erased.
    Add {
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Add as confirmed: you hold the person's consent already.
        #[arg(long)]
        confirmed: bool,
    },
    /// Import a CSV with a header row and the columns `email` and optionally `name`; imported
    /// addresses are confirmed. Bad rows are reported by number; the good ones are imported in
    /// one transaction (or nothing with --strict).
    Import {
        file: PathBuf,
        #[arg(long)]
        strict: bool,
    },
    /// Write every subscriber as CSV to standard output.
    Export,
    /// List subscribers.
    List {
        /// pending, confirmed, unsubscribed or bounced.
        #[arg(long, value_parser = parse_status)]
        status: Option<SubscriberStatus>,
    },
    /// Erase a subscriber's personal data; keep only a hash so the address is never mailed
    /// again unless the person signs up again.
    Remove { email: String },
    /// Ask the readers who confirmed before DATE whether they still want the newsletter: each
    /// gets a mail with a one-click keep; at the deadline the worker unsubscribes those who
    /// did not keep (consent event `lapsed`).
    Repermission {
        /// Readers who confirmed before this date (2025-06-01) or time (RFC 3339).
        #[arg(long, value_name = "DATE", value_parser = parse_time)]
        confirmed_before: DateTime<Utc>,
        /// How long they have to keep (14d, 3w, 36h).
        #[arg(long, value_name = "DURATION", default_value = "14d", value_parser = parse_duration)]
        deadline: std::time::Duration,
        /// Count the readers it would ask; mail nobody.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 14d: {e}"))
}

fn parse_status(s: &str) -> Result<SubscriberStatus, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum IssueCommand {
    /// Write issue.html, issue.txt and issue.eml for a week (the frozen issue if it exists,
    /// else what would be frozen now) and print their paths.
    Preview(PreviewArgs),
    /// Freeze the issue of a week: select its comparisons and render it once.
    Create(WeekArg),
    /// List every issue, newest week first.
    List,
    /// Show one issue (default: the newest) with its delivery counts, rate and ETA.
    Status(IssueIdArg),
    /// Start sending now and follow the send with a progress bar (Ctrl-C leaves it to workers).
    /// Refused (exit 2, naming the check) when a pre-send check fails, unless --force.
    Send {
        #[command(flatten)]
        id: IssueIdArg,
        /// Send even though a pre-send check (`issue check`) fails.
        #[arg(long)]
        force: bool,
    },
    /// The pre-send checks of a frozen issue (HTML size, links, images, text part,
    /// List-Unsubscribe, subject, SpamAssassin where installed); exit 1 when one fails.
    Check(IssueIdArg),
    /// Send the issue to one address, subject marked [TEST]; not recorded as a delivery.
    TestSend {
        #[command(flatten)]
        id: IssueIdArg,
        /// The address to send the test to.
        #[arg(long, value_name = "EMAIL")]
        to: String,
    },
    /// Schedule a ready issue to start sending at a time (RFC 3339, YYYY-MM-DD, UTC, or +30m
    /// from now); a scheduled issue can be rescheduled or cancelled before it starts. Refused
    /// (exit 2, naming the check) when a pre-send check fails, unless --force; the checks run
    /// again when it comes due, and a failure then leaves it `ready` unsent.
    Schedule {
        #[command(flatten)]
        id: IssueIdArg,
        #[arg(long, value_name = "T", value_parser = parse_time)]
        at: DateTime<Utc>,
        /// Schedule even though a pre-send check (`issue check`) fails; the start when it
        /// comes due is forced too.
        #[arg(long)]
        force: bool,
    },
    /// Pause a send; workers stop claiming within a second.
    Pause(IssueIdArg),
    /// Resume a paused send.
    Resume(IssueIdArg),
    /// Cancel an issue that is ready, scheduled, sending or paused; nothing more is sent.
    Cancel(IssueIdArg),
    /// Put an issue's failed recipients back in line (after fixing what failed them); a sent
    /// issue goes back to sending.
    RetryFailed(IssueIdArg),
}

#[derive(Debug, Args)]
pub struct WeekArg {
    /// ISO week like 2026-W47 (in schedule.timezone); default: the last complete week.
    #[arg(long, value_name = "W", value_parser = parse_week)]
    pub week: Option<IsoWeek>,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub week: WeekArg,
    /// Folder to write to; default: data/preview/WEEK.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IssueIdArg {
    /// The issue number (12 or #12) or its week (2026-W47).
    #[arg(value_name = "ID", value_parser = parse_issue_key)]
    pub id: Option<IssueKey>,
}

fn parse_issue_key(s: &str) -> Result<IssueKey, String> {
    s.parse()
        .map_err(|e: crate::issues::InvalidIssueKey| e.to_string())
}

fn parse_week(s: &str) -> Result<IsoWeek, String> {
    s.parse()
        .map_err(|e: crate::issues::InvalidWeek| e.to_string())
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
    if let Some(rel) = s.strip_prefix('+') {
        let d = humantime::parse_duration(rel).map_err(|e| format!("{s:?}: {e}"))?;
        let d = chrono::Duration::from_std(d).map_err(|e| format!("{s:?}: {e}"))?;
        return Ok(Utc::now() + d);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-11-18T10:00:00Z), a date (2026-11-18) or a \
         time from now (+30m)"
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
    /// A runtime failure, except a DKIM key that cannot be used: that is the configuration's
    /// fault (exit 2), like any other bad setting.
    fn from(e: anyhow::Error) -> Self {
        if e.downcast_ref::<crate::delivery::dkim::KeyError>()
            .is_some()
        {
            Failure::Input(format!("{e:#}"))
        } else {
            Failure::Runtime(e)
        }
    }
}

impl From<OpsError> for Failure {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::Internal(e) => Failure::from(e),
            caller => Failure::Input(caller.to_string()),
        }
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
    let result = runtime.block_on(run(cli));
    // The counts of repeated errors not logged yet (a run that had not ended).
    telemetry::flush_ended(std::time::Instant::now() + telemetry::RUN_OVER_AFTER);
    match result {
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
    let mode = match cli.command {
        Command::Serve | Command::Worker => telemetry::Mode::Service,
        _ => telemetry::Mode::Interactive {
            verbose: cli.verbose,
        },
    };
    telemetry::init(
        if cli.log_json {
            crate::config::LogFormat::Json
        } else {
            settings.log.format
        },
        mode,
    );
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Worker => worker(settings).await,
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
            comparisons::import(&settings, args, cli.json).await
        }
        Command::Comparisons(ComparisonsCommand::List(args)) => {
            comparisons::list(&settings, args, cli.json).await
        }
        Command::Issue(command) => issues::run(&settings, command, cli.json).await,
        Command::Subscribers(command) => subscribers::run(&settings, command, cli.json).await,
        Command::Bounces(command) => bounces::run(&settings, command, cli.json).await,
        Command::Templates(command) => templates::run(&settings, command, cli.json),
        Command::Operators(command) => operators::run(&settings, command, cli.json).await,
        Command::Dkim(command) => dkim::run(&settings, command, cli.json),
        Command::Doctor => doctor(&settings, cli.json).await,
    }
}

/// Opens and migrates the database for a one-shot command.
pub(crate) async fn open_store(settings: &Settings) -> Result<Store, Failure> {
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    Ok(store)
}

/// Opens the database and builds the application layer for a one-shot command.
pub(crate) async fn open_app(settings: &Settings) -> Result<App, Failure> {
    let store = open_store(settings).await?;
    let secret = settings.secret_key()?;
    let renderer = std::sync::Arc::new(crate::render::Renderer::with_dir(
        settings.templates.dir.as_deref(),
    )?);
    Ok(App::new(
        store,
        std::sync::Arc::new(settings.clone()),
        secret,
        renderer,
    ))
}

/// `verdicts doctor`: the report, then exit 1 naming the failed checks (warnings pass).
async fn doctor(settings: &Settings, json: bool) -> Result<(), Failure> {
    let store = Store::connect(&settings.database).await;
    let checks =
        crate::app::doctor::report(settings, store.as_ref().map_err(|e| format!("{e:#}"))).await;
    if let Ok(store) = &store {
        store.close().await;
    }
    print_checks(&checks, json)
}

/// Prints a report of checks (`doctor`, `issue check`): one line, or one JSON object, per
/// check; a failed check makes the command exit 1, naming every failed check.
pub(crate) fn print_checks(
    checks: &[crate::app::checks::Check],
    json: bool,
) -> Result<(), Failure> {
    if json {
        for c in checks {
            println!("{}", serde_json::to_string(c).map_err(anyhow::Error::from)?);
        }
    } else {
        print!("{}", crate::app::checks::render_text(checks));
    }
    let failed = crate::app::checks::failed(checks);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "{} check(s) failed: {}",
            failed.len(),
            failed.join(", ")
        )))
    }
}

async fn worker(settings: Settings) -> Result<(), Failure> {
    let app = open_app(&settings).await?;
    // The engine (SMTP pool, DKIM keys) first: a key that cannot be used stops here.
    app.engine().await?;
    let (trigger, stop) = shutdown::channel();
    shutdown::on_signals(trigger);
    shutdown::exit_after(stop.clone(), settings.delivery.shutdown_grace.0);
    app.clone().run_worker(stop).await;
    app.close().await;
    Ok(())
}

async fn serve(settings: Settings) -> Result<(), Failure> {
    let grace = settings.delivery.shutdown_grace.0;
    let app = Application::build(settings).await?;
    let (trigger, stop) = shutdown::channel();
    shutdown::on_signals(trigger);
    shutdown::exit_after(stop.clone(), grace);
    app.run_until_stopped(stop).await?;
    Ok(())
}

/// Shortens `s` to `max` characters with an ellipsis, for table columns.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}
