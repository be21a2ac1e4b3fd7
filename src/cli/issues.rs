//! `verdicts issue preview|create|list|status`.

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use lettre::message::Mailbox;

use super::{Failure, IssueCommand, IssueIdArg, PreviewArgs, WeekArg, open_app, truncate};
use crate::app::issues::{Creation, Done, IssueReport, SendGuard};
use crate::app::{Actor, App};
use crate::config::Settings;
use crate::delivery::SendEnd;
use crate::issues::freeze::Created;
use crate::issues::{IssueAction, IssueKey, IssueStatus};
use crate::mail::newsletter::{IssueMail, Recipient};
use crate::render::{Personalizer, SlotValues};
use crate::store::issues::IssueRow;
use crate::subscribers::SubscriberEmail;

/// The recipient shown in previews.
pub const PREVIEW_RECIPIENT: &str = "Preview Reader <reader@example.org>";

pub(super) async fn run(
    settings: &Settings,
    command: IssueCommand,
    json: bool,
) -> Result<(), Failure> {
    let app = open_app(settings).await?;
    let actor = Actor::Cli;
    let result = match command {
        IssueCommand::Preview(args) => preview(&app, args, json).await,
        IssueCommand::Create(args) => create(&app, args, json).await,
        IssueCommand::List => list(&app, json).await,
        IssueCommand::Status(args) => status(&app, args, json).await,
        IssueCommand::Send { id, force } => send(&app, id, force, json).await,
        IssueCommand::Check(args) => check(&app, args, json).await,
        IssueCommand::TestSend { id, to } => {
            let to =
                SubscriberEmail::parse(&to).map_err(|e| Failure::Input(format!("--to: {e}")))?;
            act(&app, &actor, id, IssueAction::TestSend(to), json).await
        }
        IssueCommand::Schedule { id, at, force } => {
            schedule(&app, &actor, id, at, force, json).await
        }
        IssueCommand::Pause(args) => act(&app, &actor, args, IssueAction::Pause, json).await,
        IssueCommand::Resume(args) => act(&app, &actor, args, IssueAction::Resume, json).await,
        IssueCommand::Cancel(args) => act(&app, &actor, args, IssueAction::Cancel, json).await,
        IssueCommand::RetryFailed(args) => {
            act(&app, &actor, args, IssueAction::RetryFailed, json).await
        }
    };
    app.close().await;
    result
}

async fn preview(app: &App, args: PreviewArgs, json: bool) -> Result<(), Failure> {
    let settings = app.settings();
    let (week, preview) = app.preview_issue(args.week.week).await?;
    let Some(preview) = preview else {
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
        crate::engagement::SAMPLE_READER.to_string(),
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

async fn create(app: &App, args: WeekArg, json: bool) -> Result<(), Failure> {
    let (issue, created) = match app.create_issue(&Actor::Cli, args.week).await? {
        Creation::Issue(issue, created) => (*issue, created),
        Creation::NothingNew(week) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "issue": null, "created": false, "week": week, "nothing_new": true })
                );
            } else {
                let cutoff = week.end(app.settings().schedule.timezone.0);
                println!(
                    "{week} has nothing new: no issue written, no email — no comparison \
                     published before {} waits for an issue (`verdicts comparisons import` \
                     adds them)",
                    cutoff.format("%Y-%m-%d %H:%M UTC")
                );
            }
            return Ok(());
        }
    };
    let week = issue.week;
    if json {
        println!(
            "{}",
            serde_json::json!({ "issue": issue, "created": created == Created::New })
        );
        return Ok(());
    }
    match created {
        Created::Existing => println!(
            "issue for {week} already exists: {} ({})",
            issue
                .number
                .map_or("no number".to_string(), |n| format!("#{n}")),
            issue.status
        ),
        // A new issue always has content and a number: a week with nothing new writes nothing.
        Created::New => println!(
            "created issue #{} for {week} with {} comparison(s): {}",
            issue.number.unwrap_or_default(),
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

async fn list(app: &App, json: bool) -> Result<(), Failure> {
    let issues = app.list_issues().await?;
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

fn required(args: IssueIdArg) -> Result<IssueKey, Failure> {
    args.id
        .ok_or_else(|| Failure::Input("ID: give the issue number (12) or week (2026-W47)".into()))
}

/// `issue schedule ID --at T [--force]`: guarded like a send.
async fn schedule(
    app: &App,
    actor: &Actor,
    args: IssueIdArg,
    at: chrono::DateTime<Utc>,
    force: bool,
    json: bool,
) -> Result<(), Failure> {
    let guard = SendGuard {
        force,
        confirm_recipients: None,
    };
    let done = app
        .perform_guarded(actor, required(args)?, IssueAction::Schedule(at), guard)
        .await?;
    print_done(done, json)
}

/// Every action but `send` (which also follows the send): one call into the application.
async fn act(
    app: &App,
    actor: &Actor,
    args: IssueIdArg,
    action: IssueAction,
    json: bool,
) -> Result<(), Failure> {
    let done = app.perform(actor, required(args)?, action).await?;
    print_done(done, json)
}

fn print_done(done: crate::app::issues::Performed, json: bool) -> Result<(), Failure> {
    if json {
        println!(
            "{}",
            serde_json::json!({ "week": done.issue.week, "status": done.issue.status, "action": done.action.as_str(), "result": done.done })
        );
        return Ok(());
    }
    let week = done.issue.week;
    match &done.done {
        Done::TestSent { to } => println!("sent a [TEST] copy of {week} to {to}"),
        Done::Scheduled { at } => println!(
            "issue {week} will start sending at {}{}",
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            if done.issue.scheduled_forced {
                " (forced: even if a pre-send check fails then)"
            } else {
                "; the pre-send checks run again then"
            }
        ),
        Done::Retried { deliveries } => println!(
            "issue {week}: {deliveries} failed recipient(s) back in line; the issue is {}",
            done.issue.status
        ),
        Done::Started {
            recipients,
            skipped,
        } => println!(
            "issue {week} is sending to {}",
            crate::app::issues::recipients_text(*recipients, *skipped)
        ),
        Done::Released { comparisons } => println!(
            "issue {week} is now {}: nothing was sent, its {comparisons} comparison(s) wait for \
             the next issue, and `verdicts issue create --week {week}` can make the week again",
            done.issue.status
        ),
        Done::Moved => println!("issue {week} is now {}", done.issue.status),
    }
    Ok(())
}

/// `issue check ID`: one line (or JSON object) per check; exit 1 when one fails.
async fn check(app: &App, args: IssueIdArg, json: bool) -> Result<(), Failure> {
    let checks = app.check_issue(required(args)?).await?;
    super::print_checks(&checks, json)
}

async fn send(app: &App, args: IssueIdArg, force: bool, json: bool) -> Result<(), Failure> {
    // The engine (SMTP pool, DKIM keys) first: a key that cannot be used stops here, before
    // the issue starts.
    let engine = app.engine().await?.clone();
    let guard = SendGuard {
        force,
        confirm_recipients: None,
    };
    let key = args.id.ok_or_else(|| {
        Failure::Input(
            "ID: no issue given, nothing was sent; give the issue number (12) or its week \
             (2026-W47) — `verdicts issue list` shows them"
                .into(),
        )
    })?;
    // Signals first: a wait for the database (below) ends at Ctrl-C too.
    let (trigger, stop) = crate::shutdown::channel();
    crate::shutdown::on_signals(trigger);
    crate::shutdown::exit_after(stop.clone(), app.settings().delivery.shutdown_grace.0);
    // Every database step of the send waits out a restart or an outage as a worker does.
    let mut waits = DatabaseWaits::new(stop.clone());
    let quiet = indicatif::ProgressBar::hidden();
    let Some((issue, recipients)) = waits
        .ride(&quiet, || app.start_or_join_send(&Actor::Cli, key, guard))
        .await?
    else {
        return Ok(());
    };
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(recipients as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} settled · {rate} · ETA {eta}",
        )
        .expect("a valid template")
        // indicatif's {per_sec} prints 232.3791/s: whole messages per second are enough.
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rounded_rate(state.per_sec()));
            },
        ),
    );
    // The bar moves with this process's committed outcomes, and is re-synchronised with the
    // ledger every few seconds (other workers may share the send). Counting the ledger is a
    // scan of the issue's rows, so it is never done per batch — and not at all under `--json`.
    let ticker = (!json).then(|| {
        let (app, bar, id) = (app.clone(), bar.clone(), issue.id);
        tokio::spawn(async move {
            loop {
                if let Ok(c) = app.delivery_counts(id).await {
                    bar.set_position((c.total - c.pending) as u64);
                }
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        })
    });
    let bar_p = bar.clone();
    let progress = move |settled: u64| bar_p.inc(settled);
    // Each new transport error (login refused, TLS, unreachable) as it happens, above the bar.
    let bar_e = bar.clone();
    let on_transport_error = move |error: &str| {
        bar_e.suspend(|| eprintln!("transport error (no attempt counted): {error}"));
    };
    let hooks = crate::delivery::Hooks {
        supervisor: app,
        progress: Some(&progress),
        transport_error: Some(&on_transport_error),
    };
    let busy = crate::shutdown::busy(crate::shutdown::SENDING);
    let end = loop {
        let end = match engine.send_issue(issue.id, stop.clone(), &hooks).await {
            Ok(end) => end,
            Err(e) if crate::store::is_transient(&e) && !stop.is_triggered() => {
                waits.show(&bar, &e);
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    _ = stop.clone().wait() => break SendEnd::Shutdown,
                }
            }
            Err(e) => return Err(e.into()),
        };

        // A full sending window pauses the send until it has room: wait for it here too, so
        // `issue send` alone (no worker running) still finishes the send.
        let resume_at = match end {
            SendEnd::Stopped(IssueStatus::Paused) => {
                match waits.ride(&bar, || app.window_resume_at(issue.id)).await? {
                    Some(at) => at,
                    None => break SendEnd::Shutdown,
                }
            }
            _ => None,
        };
        let Some(at) = resume_at else { break end };
        bar.suspend(|| {
            eprintln!(
                "the sending window is full (delivery.window_limit); resuming at {}",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            )
        });
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.clone().wait() => break end,
        }
        if waits
            .ride(&bar, || app.resume_window_pauses())
            .await?
            .is_none()
        {
            break SendEnd::Shutdown;
        }
    };
    drop(busy);
    if let Some(t) = ticker {
        t.abort();
    }
    let Some(c) = waits.ride(&bar, || app.delivery_counts(issue.id)).await? else {
        // Stopped while the database does not answer: the ledger has the counts.
        bar.finish();
        if json {
            println!(
                "{}",
                serde_json::json!({ "week": issue.week, "end": end_slug(end), "deliveries": null })
            );
        } else {
            println!("{}: {}", issue.week, end_text(end));
        }
        return Ok(());
    };
    bar.set_position((c.total - c.pending) as u64);
    bar.finish();
    if json {
        println!(
            "{}",
            serde_json::json!({ "week": issue.week, "end": end_slug(end), "deliveries": c })
        );
    } else {
        println!(
            "{}: {} — {} sent, {} failed, {} skipped, {} pending of {}",
            issue.week,
            end_text(end),
            c.sent,
            c.failed,
            c.skipped,
            c.pending,
            c.total
        );
    }
    Ok(())
}

/// How `issue send` waits for its database: a step that fails with an error that may pass
/// (a restart, an outage, a full disk; [`crate::store::is_transient`]) is tried again every
/// second until it answers or a signal stops the send, and the failure is shown at most every
/// 30 s. Any other error ends the command.
struct DatabaseWaits {
    stop: crate::shutdown::Shutdown,
    /// When the database failure was last shown.
    shown: Option<std::time::Instant>,
}

impl DatabaseWaits {
    fn new(stop: crate::shutdown::Shutdown) -> DatabaseWaits {
        DatabaseWaits { stop, shown: None }
    }

    /// Says (above `bar`) that the database fails and the send waits, at most every 30 s.
    fn show(&mut self, bar: &indicatif::ProgressBar, e: &anyhow::Error) {
        if self
            .shown
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(30))
        {
            self.shown = Some(std::time::Instant::now());
            bar.suspend(|| {
                eprintln!(
                    "the database fails ({e:#}); the send waits for it and goes on by itself \
                     (Ctrl-C to stop; the rest stays pending)"
                )
            });
        }
    }

    /// `op` until it answers; `None` when a signal came first. After a signal, `op` gets one
    /// short try (the database may be down, and the grace is short).
    async fn ride<T, E, F, Fut>(
        &mut self,
        bar: &indicatif::ProgressBar,
        mut op: F,
    ) -> Result<Option<T>, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: Into<crate::app::OpsError>,
    {
        loop {
            let result = if self.stop.is_triggered() {
                match tokio::time::timeout(std::time::Duration::from_secs(2), op()).await {
                    Ok(result) => result,
                    Err(_) => return Ok(None),
                }
            } else {
                tokio::select! {
                    result = op() => result,
                    _ = self.stop.clone().wait() => return Ok(None),
                }
            };
            match result.map_err(Into::into) {
                Ok(t) => return Ok(Some(t)),
                Err(crate::app::OpsError::Internal(e)) if crate::store::is_transient(&e) => {
                    if self.stop.is_triggered() {
                        return Ok(None);
                    }
                    self.show(bar, &e);
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = self.stop.clone().wait() => return Ok(None),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A rate for the progress bar: whole messages per second (one decimal below 10).
fn rounded_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "0/s".into()
    } else if per_sec < 10.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{per_sec:.0}/s")
    }
}

/// How a send ended, for people.
fn end_text(end: SendEnd) -> String {
    match end {
        SendEnd::Finished => "finished".into(),
        SendEnd::Stopped(status) => format!("stopped, the issue is {status}"),
        SendEnd::Shutdown => "stopped by a signal, the rest is sent at the next start".into(),
    }
}

/// How a send ended, for `--json`: `finished`, `shutdown` or the status the issue left to.
fn end_slug(end: SendEnd) -> &'static str {
    match end {
        SendEnd::Finished => "finished",
        SendEnd::Stopped(status) => status.as_str(),
        SendEnd::Shutdown => "shutdown",
    }
}

async fn status(app: &App, args: IssueIdArg, json: bool) -> Result<(), Failure> {
    let report = app.issue_report(args.id).await?;
    // Whom a send started now would reach, while it has not started.
    let audience = match report.issue.status {
        IssueStatus::Ready | IssueStatus::Scheduled => Some(app.audience_now(&report.issue).await?),
        _ => None,
    };
    if json {
        let mut value = serde_json::json!(report);
        value["audience"] = serde_json::json!(audience);
        println!("{value}");
        return Ok(());
    }
    let IssueReport {
        issue,
        deliveries: counts,
        rate_per_second: rate,
        eta_seconds,
        bounces,
        hard_bounce_rate,
        complaint_rate,
        limits,
        workers,
        stuck,
    } = report;
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
    if let Some(at) = issue
        .scheduled_for
        .filter(|_| issue.status == IssueStatus::Scheduled)
    {
        println!(
            "starts:   {}{}",
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            if issue.scheduled_forced {
                " (forced: even if a pre-send check fails then)"
            } else {
                " (if the pre-send checks pass then)"
            }
        );
    }
    if let Some(a) = &audience {
        println!("will go to: {}", a.describe());
    }
    if let Some(at) = issue.resume_at {
        println!("resumes:  {}", at.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    if let (Some(error), Some(since)) = (&issue.transport_error, issue.transport_error_since) {
        println!(
            "transport: failing since {}: {error}",
            since.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    if let Some(stuck) = &stuck {
        println!("stuck:    {stuck}");
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
        let pct = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.2}%", r * 100.0));
        println!(
            "bounces:  {} hard ({}) · {} soft · {} complaints ({})",
            bounces.hard,
            pct(hard_bounce_rate),
            bounces.soft,
            bounces.complaints,
            pct(complaint_rate)
        );
    }
    let rate_limit = match limits.rate_per_second {
        0 => "no rate limit".to_string(),
        r => format!("{r}/s across every worker"),
    };
    let window = match (limits.window_limit, limits.window_used) {
        (0, _) => "no window limit".to_string(),
        (limit, used) => format!(
            "{} of {limit} in the last {}",
            used.unwrap_or(0),
            humantime::format_duration(std::time::Duration::from_secs(limits.window_seconds))
        ),
    };
    println!("limits:   {rate_limit} · {window}");
    if !workers.is_empty() {
        println!("workers:  {}", workers.len());
        for w in &workers {
            println!(
                "          {} (pid {}) · {:.1}/s · {} sent · concurrency {} · beat {}s ago",
                w.name,
                w.pid,
                w.rate,
                w.sent,
                w.concurrency,
                (chrono::Utc::now() - w.heartbeat_at).num_seconds().max(0)
            );
        }
    }
    println!("items:    {}", issue.items.len());
    for slug in &issue.items {
        println!("          {slug}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{end_slug, end_text, rounded_rate};
    use crate::delivery::SendEnd;
    use crate::issues::IssueStatus;

    #[test]
    fn rates_are_rounded() {
        assert_eq!(rounded_rate(232.3791), "232/s");
        assert_eq!(rounded_rate(3.04), "3.0/s");
        assert_eq!(rounded_rate(0.0), "0/s");
        assert_eq!(rounded_rate(f64::NAN), "0/s");
    }

    #[test]
    fn a_send_ends_in_words_not_debug_values() {
        assert_eq!(end_text(SendEnd::Finished), "finished");
        let paused = SendEnd::Stopped(IssueStatus::Paused);
        assert_eq!(end_text(paused), "stopped, the issue is paused");
        assert_eq!(end_slug(paused), "paused");
        assert!(!end_text(SendEnd::Shutdown).contains("Shutdown"));
    }
}
