//! `verdicts issue preview|create|list|status`.

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use lettre::message::Mailbox;

use super::{Failure, IssueCommand, IssueIdArg, PreviewArgs, WeekArg, open_store, truncate};
use crate::config::Settings;
use crate::issues::freeze::{Created, create_issue, default_week, preview_issue};
use crate::issues::{IsoWeek, IssueStatus};
use crate::mail::newsletter::{IssueMail, Recipient};
use crate::render::{Personalizer, Renderer, SlotValues};
use crate::store::Store;
use crate::store::issues::IssueRow;

/// The recipient shown in previews.
pub const PREVIEW_RECIPIENT: &str = "Preview Reader <reader@example.org>";

pub(super) async fn run(
    settings: &Settings,
    command: IssueCommand,
    json: bool,
) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let result = match command {
        IssueCommand::Preview(args) => preview(settings, &store, args, json).await,
        IssueCommand::Create(args) => create(settings, &store, args, json).await,
        IssueCommand::List => list(&store, json).await,
        IssueCommand::Status(args) => status(&store, args, json).await,
        IssueCommand::Send(args) => send(settings, &store, args, json).await,
        IssueCommand::TestSend { id, to } => test_send(settings, &store, id, &to, json).await,
        IssueCommand::Schedule { id, at } => schedule(&store, id, at, json).await,
        IssueCommand::Pause(args) => {
            transition(
                &store,
                args,
                &[IssueStatus::Sending],
                IssueStatus::Paused,
                json,
            )
            .await
        }
        IssueCommand::Resume(args) => {
            transition(
                &store,
                args,
                &[IssueStatus::Paused],
                IssueStatus::Sending,
                json,
            )
            .await
        }
        IssueCommand::Cancel(args) => {
            transition(
                &store,
                args,
                &[
                    IssueStatus::Ready,
                    IssueStatus::Scheduled,
                    IssueStatus::Sending,
                    IssueStatus::Paused,
                ],
                IssueStatus::Cancelled,
                json,
            )
            .await
        }
    };
    store.close().await;
    result
}

fn week_or_default(settings: &Settings, arg: &WeekArg) -> IsoWeek {
    arg.week
        .unwrap_or_else(|| default_week(Utc::now(), settings))
}

async fn preview(
    settings: &Settings,
    store: &Store,
    args: PreviewArgs,
    json: bool,
) -> Result<(), Failure> {
    let week = week_or_default(settings, &args.week);
    let renderer = Renderer::new()?;
    let Some(preview) = preview_issue(store, &renderer, settings, week).await? else {
        return Err(Failure::Input(format!(
            "week {week} has nothing to send: no comparison published before its end is left \
             for it (see `verdicts comparisons list`)"
        )));
    };
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("data/preview").join(week.to_string()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let unsubscribe_url = settings.http.public_url.join("unsubscribe/PREVIEW");
    let to: Mailbox = PREVIEW_RECIPIENT.parse().expect("a valid mailbox");
    let values = SlotValues::for_recipient(
        to.email.as_ref(),
        &settings.newsletter.name.0,
        &unsubscribe_url,
    );
    let personalizer = Personalizer::new(&preview.rendered.html, &preview.rendered.text);
    let html = personalizer.html(&values);
    let text = personalizer.text(&values);
    // The very path a send takes, so the preview `.eml` is what readers get.
    let mail = IssueMail::new(preview.number, &preview.rendered.subject, &personalizer);
    let message = mail.message(
        settings,
        None,
        Recipient {
            to,
            message_id_local: &format!("issue-{}.preview", preview.number),
            unsubscribe_url: &unsubscribe_url,
            values: &values,
        },
    )?;
    let paths = [
        (out.join("issue.html"), html.into_bytes()),
        (out.join("issue.txt"), text.into_bytes()),
        (out.join("issue.eml"), message),
    ];
    for (path, bytes) in &paths {
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "week": week,
                "number": preview.number,
                "frozen": preview.frozen,
                "subject": preview.rendered.subject,
                "items": preview.items,
                "files": paths.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "{} issue #{} for {week}: {}",
            if preview.frozen { "frozen" } else { "draft of" },
            preview.number,
            preview.rendered.subject
        );
        for (path, _) in &paths {
            println!("{}", path.display());
        }
    }
    Ok(())
}

async fn create(
    settings: &Settings,
    store: &Store,
    args: WeekArg,
    json: bool,
) -> Result<(), Failure> {
    let week = week_or_default(settings, &args);
    let renderer = Renderer::new()?;
    let (issue, created) = create_issue(store, &renderer, settings, week).await?;
    if created == Created::New {
        store
            .log_operator_action("cli", "issue.create", Some(issue.id), &week.to_string())
            .await?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "issue": issue, "created": created == Created::New })
        );
        return Ok(());
    }
    match (created, issue.number) {
        (Created::Existing, _) => println!(
            "issue for {week} already exists: {} ({})",
            issue
                .number
                .map_or("no number".to_string(), |n| format!("#{n}")),
            issue.status
        ),
        (Created::New, None) => println!("{week} has nothing new: recorded as empty, no email"),
        (Created::New, Some(n)) => println!(
            "created issue #{n} for {week} with {} comparison(s): {}",
            issue.items.len(),
            issue.subject.as_deref().unwrap_or_default()
        ),
    }
    Ok(())
}

fn row_line(i: &IssueRow) -> String {
    format!(
        "{:<9} {:>4}  {:<10} {:>5}  {}",
        i.week.to_string(),
        i.number.map_or("-".into(), |n| format!("#{n}")),
        i.status.as_str(),
        i.items.len(),
        truncate(i.subject.as_deref().unwrap_or("(nothing new)"), 70)
    )
}

async fn list(store: &Store, json: bool) -> Result<(), Failure> {
    let issues = store.list_issues().await?;
    if json {
        println!("{}", serde_json::json!(issues));
        return Ok(());
    }
    if issues.is_empty() {
        println!("no issues yet; `verdicts issue create` freezes the last complete week");
        return Ok(());
    }
    println!(
        "{:<9} {:>4}  {:<10} {:>5}  SUBJECT",
        "WEEK", "#", "STATUS", "ITEMS"
    );
    for i in &issues {
        println!("{}", row_line(i));
    }
    Ok(())
}

fn required(args: &IssueIdArg) -> Result<&str, Failure> {
    args.id
        .as_deref()
        .ok_or_else(|| Failure::Input("ID: give the issue number (12) or week (2026-W47)".into()))
}

async fn transition(
    store: &Store,
    args: IssueIdArg,
    from: &[IssueStatus],
    to: IssueStatus,
    json: bool,
) -> Result<(), Failure> {
    let issue = find(store, required(&args)?).await?;
    if !store
        .transition_issue(issue.id, from, to, Some("operator (cli)"))
        .await?
    {
        return Err(Failure::Input(format!(
            "issue {} is {}: cannot make it {to}",
            issue.week, issue.status
        )));
    }
    store
        .log_operator_action(
            "cli",
            &format!("issue.{to}"),
            Some(issue.id),
            &issue.week.to_string(),
        )
        .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "week": issue.week, "status": to })
        );
    } else {
        println!("issue {} is now {to}", issue.week);
    }
    Ok(())
}

async fn test_send(
    settings: &Settings,
    store: &Store,
    args: IssueIdArg,
    to: &str,
    json: bool,
) -> Result<(), Failure> {
    let issue = find(store, required(&args)?).await?;
    let to = crate::subscribers::SubscriberEmail::parse(to)
        .map_err(|e| Failure::Input(format!("--to: {e}")))?;
    let engine = crate::delivery::Engine::new(
        store.clone(),
        std::sync::Arc::new(settings.clone()),
        settings.secret_key()?,
    )?;
    engine.test_send(issue.id, &to).await?;
    store
        .log_operator_action(
            "cli",
            "issue.test-send",
            Some(issue.id),
            &issue.week.to_string(),
        )
        .await?;
    if json {
        println!("{}", serde_json::json!({ "week": issue.week, "to": to }));
    } else {
        println!("sent a [TEST] copy of {} to {to}", issue.week);
    }
    Ok(())
}

async fn schedule(
    store: &Store,
    args: IssueIdArg,
    at: chrono::DateTime<chrono::Utc>,
    json: bool,
) -> Result<(), Failure> {
    let issue = find(store, required(&args)?).await?;
    if !store.schedule_issue(issue.id, at).await? {
        return Err(Failure::Input(format!(
            "issue {} is {}: only a ready or scheduled issue can be scheduled",
            issue.week, issue.status
        )));
    }
    store
        .log_operator_action("cli", "issue.schedule", Some(issue.id), &at.to_rfc3339())
        .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "week": issue.week, "scheduled_for": at })
        );
    } else {
        println!(
            "issue {} will start sending at {}",
            issue.week,
            at.format("%Y-%m-%d %H:%M UTC")
        );
    }
    Ok(())
}

async fn send(
    settings: &Settings,
    store: &Store,
    args: IssueIdArg,
    json: bool,
) -> Result<(), Failure> {
    let issue = find(store, required(&args)?).await?;
    if issue.status == IssueStatus::Paused {
        return Err(Failure::Input(format!(
            "issue {} is paused: `verdicts issue resume {}` continues it",
            issue.week, issue.week
        )));
    }
    // The engine (SMTP pool, DKIM keys) first: a key that cannot be used stops here, before
    // the issue starts.
    let secret = settings.secret_key()?;
    let engine =
        crate::delivery::Engine::new(store.clone(), std::sync::Arc::new(settings.clone()), secret)?;
    let recipients = store
        .start_send(issue.id)
        .await
        .map_err(|e| Failure::Input(format!("issue {}: {e}", issue.week)))?;
    store
        .log_operator_action("cli", "issue.send", Some(issue.id), &issue.week.to_string())
        .await?;
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(recipients as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} settled · {per_sec} · ETA {eta}",
        )
        .expect("a valid template"),
    );
    let (trigger, stop) = crate::shutdown::channel();
    crate::shutdown::on_signals(trigger);
    // The bar moves with this process's committed outcomes, and is re-synchronised with the
    // ledger every few seconds (other workers may share the send). Counting the ledger is a
    // scan of the issue's rows, so it is never done per batch — and not at all under `--json`.
    let ticker = (!json).then(|| {
        let (store, bar, id) = (store.clone(), bar.clone(), issue.id);
        tokio::spawn(async move {
            loop {
                if let Ok(c) = store.delivery_counts(id).await {
                    bar.set_position((c.total - c.pending) as u64);
                }
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        })
    });
    let bar_p = bar.clone();
    let progress = move |settled: u64| bar_p.inc(settled);
    let end = engine.send_issue(issue.id, stop, Some(&progress)).await?;
    if let Some(t) = ticker {
        t.abort();
    }
    let c = store.delivery_counts(issue.id).await?;
    bar.set_position((c.total - c.pending) as u64);
    bar.finish();
    if json {
        println!(
            "{}",
            serde_json::json!({ "week": issue.week, "end": format!("{end:?}"), "deliveries": c })
        );
    } else {
        println!(
            "{}: {end:?} — {} sent, {} failed, {} skipped, {} pending of {}",
            issue.week, c.sent, c.failed, c.skipped, c.pending, c.total
        );
    }
    Ok(())
}

async fn status(store: &Store, args: IssueIdArg, json: bool) -> Result<(), Failure> {
    let issue = match &args.id {
        Some(key) => find(store, key).await?,
        None => store
            .list_issues()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Failure::Input("there are no issues yet".into()))?,
    };
    let counts = store.delivery_counts(issue.id).await?;
    let rate = counts.sent_last_minute as f64 / 60.0;
    let eta_seconds = (rate > 0.0).then(|| (counts.pending as f64 / rate).round() as i64);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "issue": issue,
                "deliveries": counts,
                "rate_per_second": rate,
                "eta_seconds": eta_seconds,
            })
        );
        return Ok(());
    }
    println!(
        "week:     {} ({})",
        issue.week,
        issue.week.date_range_label()
    );
    println!(
        "number:   {}",
        issue.number.map_or("-".into(), |n| format!("#{n}"))
    );
    println!("status:   {}", issue.status);
    if let Some(reason) = &issue.status_reason {
        println!("reason:   {reason}");
    }
    println!("subject:  {}", issue.subject.as_deref().unwrap_or("-"));
    println!("cutoff:   {}", issue.cutoff_at.format("%Y-%m-%d %H:%M UTC"));
    println!(
        "created:  {}",
        issue.created_at.format("%Y-%m-%d %H:%M UTC")
    );
    if counts.total > 0 {
        println!(
            "delivery: {} sent · {} failed · {} skipped · {} pending of {}",
            counts.sent, counts.failed, counts.skipped, counts.pending, counts.total
        );
        println!(
            "rate:     {rate:.1}/s over the last minute · ETA {}",
            eta_seconds.map_or("-".to_string(), |s| format!("{}m{:02}s", s / 60, s % 60))
        );
    }
    println!("items:    {}", issue.items.len());
    for slug in &issue.items {
        println!("          {slug}");
    }
    Ok(())
}

/// An issue by number (`12`) or week (`2026-W47`); a usage error if neither matches.
pub(super) async fn find(store: &Store, key: &str) -> Result<IssueRow, Failure> {
    let found = if let Ok(number) = key.trim_start_matches('#').parse::<i64>() {
        store.get_issue_by_number(number).await?
    } else if let Ok(week) = key.parse::<IsoWeek>() {
        store.get_issue_by_week(week).await?
    } else {
        return Err(Failure::Input(format!(
            "{key:?} is neither an issue number (12) nor a week (2026-W47)"
        )));
    };
    found.ok_or_else(|| Failure::Input(format!("no issue {key}")))
}
