//! `verdicts bounces import PATH…`: reads DSNs and complaint reports from `.eml` files, mbox
//! files and Maildir folders, and applies them. Everything is read and parsed first: a path that
//! is not mail (or a truncated report) exits 2 naming it, with nothing written.

use super::{BouncesCommand, Failure, open_app};
use crate::bounces::Source;
use crate::bounces::intake::{Intake, parse_all, read_paths};
use crate::bounces::policy::{Effect, Policy};
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
    let store = app.store().clone();
    let secret = settings.secret_key()?;
    let policy = Policy::from_settings(settings);
    let intake = Intake {
        store: &store,
        supervisor: &app,
        settings,
        secret: &secret,
        policy: &policy,
    };
    let mut result = Ok(());
    let (mut applied, mut repeats) = (0, 0);
    for (message, report) in messages.iter().zip(&reports) {
        let processed = match intake
            .apply_report(&message.origin, report, Source::Import)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                result = Err(Failure::Runtime(
                    e.context(format!("applying {}", message.origin)),
                ));
                break;
            }
        };
        if processed.applied.effect == Effect::Duplicate {
            repeats += 1;
        } else {
            applied += 1;
        }
        if json {
            println!(
                "{}",
                serde_json::to_string(&processed).map_err(anyhow::Error::from)?
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
    if result.is_ok() && !json {
        println!("{applied} report(s) applied, {repeats} already seen");
    }
    if result.is_ok() {
        store
            .log_operator_action(
                "cli",
                "bounces.import",
                None,
                &format!("{applied} applied, {repeats} repeats"),
            )
            .await?;
    }
    store.close().await;
    result
}
