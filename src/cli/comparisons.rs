//! `verdicts comparisons import|list`.

use chrono::Utc;

use super::{Failure, ImportArgs, ListArgs, open_app, open_store, truncate};
use crate::app::Actor;
use crate::app::comparisons::Incoming;
use crate::comparisons::import as files;
use crate::config::Settings;
use crate::store::comparisons::{Source, UpsertAction};

pub(super) async fn import(
    settings: &Settings,
    args: ImportArgs,
    json: bool,
) -> Result<(), Failure> {
    let published_at = args.published_at.unwrap_or_else(Utc::now);
    // Every file is read and checked before anything is written: one bad file, nothing changes.
    let files = files::read_files(&args.paths, settings.site.base_url.as_str(), published_at)
        .map_err(|errors| {
            Failure::Input(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
    let batches: Vec<Incoming> = files
        .into_iter()
        .map(|file| Incoming {
            origin: file.path.display().to_string(),
            source: file.source,
            keep_published_at: file.source == Source::Page && args.published_at.is_none(),
            comparisons: file.comparisons,
        })
        .collect();
    let app = open_app(settings).await?;
    let imported = app.import_comparisons(&Actor::Cli, &batches).await;
    app.close().await;
    let imported = imported?;
    let mut report = Vec::new();
    for batch in &imported {
        for d in &batch.upserted {
            report.push(serde_json::json!({
                "file": batch.origin,
                "slug": d.slug,
                "action": d.action,
                "revision": d.revision,
            }));
        }
    }
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
        let unchanged = imported
            .iter()
            .flat_map(|b| &b.upserted)
            .filter(|d| d.action == UpsertAction::Unchanged)
            .count();
        let also = if unchanged > 0 {
            format!("; {unchanged} already up to date, left as they were")
        } else {
            String::new()
        };
        println!(
            "{} comparison(s) imported from {} file(s){also}",
            report.len() - unchanged,
            imported.len(),
        );
    }
    Ok(())
}

pub(super) async fn list(settings: &Settings, args: ListArgs, json: bool) -> Result<(), Failure> {
    let store = open_store(settings).await?;
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
