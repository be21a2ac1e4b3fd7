//! `verdicts subscribers add|import|export|list|remove`.

use std::path::Path;

use super::{Failure, SubscribersCommand, open_app};
use crate::app::subscribers::{ImportCounts, ImportRow};
use crate::app::{Actor, App};
use crate::config::Settings;
use crate::store::Store;
use crate::store::subscribers::AddOutcome;
use crate::subscribers::{SubscriberEmail, SubscriberName};

pub(super) async fn run(
    settings: &Settings,
    command: SubscribersCommand,
    json: bool,
) -> Result<(), Failure> {
    let app = open_app(settings).await?;
    let result = match command {
        SubscribersCommand::Add {
            email,
            name,
            confirmed,
        } => add(&app, &email, name.as_deref(), confirmed, json).await,
        SubscribersCommand::Import { file, strict } => import(&app, &file, strict, json).await,
        SubscribersCommand::Export => export(app.store()).await,
        SubscribersCommand::List { status } => list(&app, status, json).await,
        SubscribersCommand::Remove { email } => remove(&app, &email, json).await,
    };
    app.store().close().await;
    result
}

async fn add(
    app: &App,
    email: &str,
    name: Option<&str>,
    confirmed: bool,
    json: bool,
) -> Result<(), Failure> {
    let email = SubscriberEmail::parse(email).map_err(|e| Failure::Input(format!("EMAIL: {e}")))?;
    let name = SubscriberName::parse(name).map_err(|e| Failure::Input(format!("--name: {e}")))?;
    let outcome = app
        .add_subscriber(&Actor::Cli, &email, name.as_ref(), confirmed)
        .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "email": email, "outcome": outcome })
        );
    } else if outcome == AddOutcome::Added {
        println!(
            "added {email} ({})",
            if confirmed { "confirmed" } else { "pending" }
        );
    } else {
        println!("{email} is already a subscriber; nothing changed");
    }
    Ok(())
}

/// One CSV row that failed, by its line number in the file.
struct BadRow {
    line: u64,
    message: String,
}

async fn import(app: &App, file: &Path, strict: bool, json: bool) -> Result<(), Failure> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_path(file)
        .map_err(|e| Failure::Input(format!("{}: {e}", file.display())))?;
    let headers = reader
        .headers()
        .map_err(|e| Failure::Input(format!("{}: reading the header row: {e}", file.display())))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(email_col) = column("email") else {
        return Err(Failure::Input(format!(
            "{}: line 1: the header row needs an `email` column (found: {})",
            file.display(),
            excerpt(&headers.iter().collect::<Vec<_>>().join(", "))
        )));
    };
    let name_col = column("name");
    let mut good: Vec<(u64, SubscriberEmail, Option<SubscriberName>)> = Vec::new();
    let mut bad: Vec<BadRow> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                bad.push(BadRow {
                    line,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let parsed = SubscriberEmail::parse(record.get(email_col).unwrap_or("")).and_then(|e| {
            Ok((
                e,
                SubscriberName::parse(name_col.and_then(|c| record.get(c)))?,
            ))
        });
        match parsed {
            Ok((email, name)) => {
                if seen.insert(email.clone()) {
                    good.push((line, email, name));
                } else {
                    bad.push(BadRow {
                        line,
                        message: format!("{email} appears earlier in the file"),
                    });
                }
            }
            Err(e) => bad.push(BadRow { line, message: e.0 }),
        }
    }
    let report_bad = || {
        bad.iter()
            .map(|b| format!("{}: line {}: {}", file.display(), b.line, b.message))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if strict && !bad.is_empty() {
        return Err(Failure::Input(format!(
            "{}\nnothing imported (--strict)",
            report_bad()
        )));
    }
    let source = file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let rows: Vec<ImportRow> = good.into_iter().map(|(_, e, n)| (e, n)).collect();
    let ImportCounts {
        added,
        already_present: present,
        suppressed,
    } = app
        .import_subscribers(&Actor::Cli, &source, &rows, bad.len())
        .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "added": added, "already_present": present, "suppressed": suppressed,
                "bad_rows": bad.iter().map(|b| serde_json::json!({"line": b.line, "error": b.message})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "{added} added, {present} already present, {suppressed} skipped (unsubscribed or erased), {} bad row(s)",
            bad.len()
        );
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Failure::Input(report_bad()))
    }
}

/// Longest piece of a file's own text quoted back in an error message.
const MAX_EXCERPT: usize = 80;

/// At most [`MAX_EXCERPT`] characters of `text`, marked when cut: a junk header line of 50 MB
/// is named, not echoed.
fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX_EXCERPT).collect();
    if chars.next().is_some() {
        format!("{head}… ({} bytes in all)", text.len())
    } else {
        head
    }
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a tab or carriage return
/// before one) gets a leading `'`, the OWASP advice for CSV injection: names come from the
/// public signup form, and this file is opened by an operator.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

async fn export(store: &Store) -> Result<(), Failure> {
    let rows = store.list_subscribers(None).await?;
    let mut w = csv::Writer::from_writer(std::io::stdout());
    let write = |w: &mut csv::Writer<std::io::Stdout>| -> Result<(), csv::Error> {
        w.write_record([
            "email",
            "name",
            "status",
            "created_at",
            "confirmed_at",
            "unsubscribed_at",
        ])?;
        for r in &rows {
            let t = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.to_rfc3339()).unwrap_or_default()
            };
            w.write_record([
                spreadsheet_safe(&r.email).as_ref(),
                spreadsheet_safe(r.name.as_deref().unwrap_or("")).as_ref(),
                r.status.as_str(),
                &r.created_at.to_rfc3339(),
                &t(r.confirmed_at),
                &t(r.unsubscribed_at),
            ])?;
        }
        w.flush()?;
        Ok(())
    };
    write(&mut w).map_err(|e| Failure::Runtime(anyhow::anyhow!("writing CSV: {e}")))
}

async fn list(
    app: &App,
    status: Option<crate::subscribers::SubscriberStatus>,
    json: bool,
) -> Result<(), Failure> {
    let rows = app.list_subscribers(status).await?;
    if json {
        println!("{}", serde_json::json!(rows));
        return Ok(());
    }
    println!(
        "{:<40} {:<13} {:<20} NAME",
        "EMAIL", "STATUS", "SINCE (UTC)"
    );
    for r in &rows {
        println!(
            "{:<40} {:<13} {:<20} {}",
            super::truncate(&r.email, 40),
            r.status.as_str(),
            r.created_at.format("%Y-%m-%d %H:%M"),
            r.name.as_deref().unwrap_or("")
        );
    }
    println!("{} subscriber(s)", rows.len());
    Ok(())
}

async fn remove(app: &App, email: &str, json: bool) -> Result<(), Failure> {
    let email = SubscriberEmail::parse(email).map_err(|e| Failure::Input(format!("EMAIL: {e}")))?;
    let known = app.remove_subscriber(&Actor::Cli, &email).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "erased": known, "suppressed": true })
        );
    } else if known {
        println!("erased {email}; a suppression hash keeps it from being mailed again");
    } else {
        println!("{email} was not a subscriber; it is suppressed from now on");
    }
    Ok(())
}
