//! The dashboard (`/admin`), live progress (`/admin/progress.json`), an issue's page with its
//! sandboxed preview, and the forms that act on issues.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{Console, FlashKind, Posted, parse_when, when};
use crate::app::OpsError;
use crate::app::checks::Status as CheckStatus;
use crate::app::issues::{Creation, Done, IssueReport, SendGuard};
use crate::issues::freeze::{Created, default_week};
use crate::issues::{ActionKind, IsoWeek, IssueAction, IssueKey, IssueStatus};
use crate::render::{Personalizer, SlotValues};
use crate::subscribers::SubscriberEmail;
use crate::web::AppState;
use crate::web::error::PageError;

/// How an issue is named in console URLs: its number, or its week while it has none.
fn url_key(report: &IssueReport) -> String {
    report
        .issue
        .number
        .map_or_else(|| report.issue.week.to_string(), |n| n.to_string())
}

/// An issue as the dashboard and the progress endpoint show it.
#[derive(Debug, Serialize)]
pub(super) struct IssueView {
    key: String,
    label: String,
    status: &'static str,
    subject: String,
    reason: Option<String>,
    scheduled_for: Option<String>,
    /// A send paused by a full window resumes by itself then.
    resumes_at: Option<String>,
    /// Why a sending issue does not move (the database refuses writes, no worker sends it).
    stuck: Option<String>,
    /// The relay failing every try of the send: since when, and its last error.
    transport: Option<String>,
    total: i64,
    /// Settled deliveries (sent, failed, skipped): what the progress bar fills.
    done: i64,
    percent: i64,
    figures: String,
    rate: String,
    eta: String,
}

impl From<&IssueReport> for IssueView {
    fn from(r: &IssueReport) -> Self {
        let d = &r.deliveries;
        let done = d.sent + d.failed + d.skipped;
        let label = match r.issue.number {
            Some(n) => format!("#{n} · {}", r.issue.week),
            None => r.issue.week.to_string(),
        };
        IssueView {
            key: url_key(r),
            label,
            status: r.issue.status.as_str(),
            subject: r.issue.subject.clone().unwrap_or_default(),
            reason: r.issue.status_reason.clone(),
            scheduled_for: r.issue.scheduled_for.map(|t| format!("{} UTC", when(t))),
            resumes_at: r.issue.resume_at.map(|t| format!("{} UTC", when(t))),
            stuck: r.stuck.clone(),
            transport: match (&r.issue.transport_error, r.issue.transport_error_since) {
                (Some(error), Some(since)) => {
                    Some(format!("failing since {} UTC: {error}", when(since)))
                }
                (Some(error), None) => Some(error.clone()),
                _ => None,
            },
            total: d.total,
            done,
            percent: if d.total > 0 { done * 100 / d.total } else { 0 },
            figures: format!(
                "{} of {} sent, {} failed, {} pending",
                d.sent, d.total, d.failed, d.pending
            ),
            rate: rate_label(r.rate_per_second),
            eta: match r.eta_seconds {
                Some(s) => format!(
                    "ETA {}",
                    humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64))
                ),
                None => "no ETA".into(),
            },
        }
    }
}

/// A send rate for people: per second when fast, per minute when slow (so 2 messages in the
/// last minute read "2/min", not "0.0/s").
fn rate_label(per_second: f64) -> String {
    if per_second >= 1.0 {
        format!("{per_second:.1}/s")
    } else {
        format!("{:.0}/min", per_second * 60.0)
    }
}

/// Issues on the dashboard.
const DASHBOARD_ISSUES: usize = 10;

/// `GET /admin`.
pub(super) async fn dashboard(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, PageError> {
    let app = &state.app;
    let reports = match app.recent_issue_reports(DASHBOARD_ISSUES).await {
        Ok(r) => r,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    let activity = app.recent_activity(20).await.map_err(super::internal)?;
    let now = Utc::now();
    let figures = app.dashboard_figures(now).await.map_err(super::internal)?;
    #[derive(Serialize)]
    struct Count {
        status: &'static str,
        count: i64,
    }
    #[derive(Serialize)]
    struct Waiting {
        title: String,
        slug: String,
        published: String,
    }
    let schedule = &state.settings().schedule;
    let mut ctx = console.context(&state, "/admin");
    ctx.insert(
        "issues",
        &reports.iter().map(IssueView::from).collect::<Vec<_>>(),
    );
    ctx.insert(
        "next_fire",
        &app.next_scheduled_fire(now).map(|t| {
            format!(
                "{} UTC ({} local)",
                when(t),
                t.with_timezone(&schedule.timezone.0)
                    .format("%a %Y-%m-%d %H:%M")
            )
        }),
    );
    ctx.insert(
        "subscriber_counts",
        &figures
            .subscribers
            .iter()
            .map(|(s, n)| Count {
                status: s.as_str(),
                count: *n,
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("waiting_total", &figures.waiting.len());
    ctx.insert("max_items", &figures.max_items);
    ctx.insert(
        "waiting",
        &figures
            .waiting
            .iter()
            .take(figures.max_items as usize)
            .map(|c| Waiting {
                title: c.comparison.title().to_string(),
                slug: c.comparison.slug().to_string(),
                published: when(c.comparison.published_at()),
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("timezone", &schedule.timezone.0.name());
    ctx.insert("cron", &schedule.cron.schedule.to_string());
    ctx.insert(
        "default_week",
        &default_week(now, state.settings().schedule.timezone.0).to_string(),
    );
    ctx.insert(
        "activity",
        &activity
            .into_iter()
            .map(super::LogView::from)
            .collect::<Vec<_>>(),
    );
    console.render(&state, StatusCode::OK, "console/dashboard.html", &ctx)
}

/// `GET /admin/progress.json`: the dashboard's issues, for the polling script.
pub(super) async fn progress(
    State(state): State<AppState>,
    _console: Console,
) -> Result<Response, PageError> {
    let reports = state
        .app
        .recent_issue_reports(DASHBOARD_ISSUES)
        .await
        .map_err(super::internal)?;
    let issues: Vec<IssueView> = reports.iter().map(IssueView::from).collect();
    let mut response = Json(serde_json::json!({ "issues": issues })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CreateForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    week: String,
}

/// `POST /admin/issues`: freezes the issue of a week (default: the last complete week).
pub(super) async fn create(
    State(state): State<AppState>,
    Posted { console, form }: Posted<CreateForm>,
) -> Result<Response, PageError> {
    let week = match form.week.trim() {
        "" => None,
        w => match w.parse::<IsoWeek>() {
            Ok(w) => Some(w),
            Err(e) => {
                return console.ops_error(
                    &state,
                    OpsError::invalid("week", e.to_string()),
                    "/admin",
                );
            }
        },
    };
    match state.app.create_issue(&console.who.actor(), week).await {
        Ok(Creation::NothingNew(week)) => Ok(console.redirect(
            &state,
            "/admin",
            FlashKind::Ok,
            &format!("{week} has no new comparisons: no issue was made, nothing to send."),
        )),
        Ok(Creation::Issue(issue, created)) => {
            let issue = *issue;
            let key = issue
                .number
                .map_or_else(|| issue.week.to_string(), |n| n.to_string());
            // A new issue always has a number: a week with nothing new writes nothing.
            let message = match created {
                Created::New => format!("Issue #{key} of {} created.", issue.week),
                Created::Existing => format!("The issue of {} exists already.", issue.week),
            };
            Ok(console.redirect(
                &state,
                &format!("/admin/issues/{key}"),
                FlashKind::Ok,
                &message,
            ))
        }
        Err(e) => console.ops_error(&state, e, "/admin"),
    }
}

/// The `{id}` of a console URL.
fn parse_key(key: &str) -> Result<IssueKey, OpsError> {
    key.parse::<IssueKey>()
        .map_err(|e| OpsError::invalid("id", e.to_string()))
}

/// `GET /admin/issues/{id}`.
pub(super) async fn detail(
    State(state): State<AppState>,
    console: Console,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let key = match parse_key(&key) {
        Ok(k) => k,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    let report = match state.app.issue_report(Some(key)).await {
        Ok(r) => r,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    let failures = state
        .app
        .failed_deliveries(key, 100)
        .await
        .map_err(super::internal)?;
    let engagement = state
        .app
        .issue_engagement(key)
        .await
        .map_err(super::internal)?;
    #[derive(Serialize)]
    struct ActionView {
        name: &'static str,
        label: &'static str,
        style: &'static str,
    }
    #[derive(Serialize)]
    struct FailureView {
        email: String,
        attempts: i64,
        error: String,
        at: String,
    }
    let status = report.issue.status;
    let actions: Vec<ActionView> = [
        (ActionKind::TestSend, "Send test", "secondary"),
        (ActionKind::Send, "Send now", ""),
        (ActionKind::Schedule, "Schedule", ""),
        (ActionKind::Pause, "Pause", "secondary"),
        (ActionKind::Resume, "Resume", ""),
        (ActionKind::RetryFailed, "Retry failed", "secondary"),
        (ActionKind::Cancel, "Cancel issue", "danger"),
    ]
    .into_iter()
    .filter(|(kind, _, _)| status.allows(*kind))
    // A form only where its action can do something: no "Retry failed" with nothing failed.
    .filter(|(kind, _, _)| *kind != ActionKind::RetryFailed || report.deliveries.failed > 0)
    .map(|(kind, label, style)| ActionView {
        name: kind.as_str(),
        label,
        style,
    })
    .collect();
    #[derive(Serialize)]
    struct LimitsView {
        rate: String,
        window: String,
    }
    #[derive(Serialize)]
    struct WorkerView {
        name: String,
        rate: String,
        sent: i64,
        beat: String,
    }
    let l = report.limits;
    let limits = LimitsView {
        rate: match l.rate_per_second {
            0 => "no rate limit".into(),
            r => format!("{r} messages/s"),
        },
        window: match l.window_limit {
            0 => "no window limit".into(),
            limit => format!(
                "{} of {limit} messages in the last {}",
                l.window_used.unwrap_or(0),
                humantime::format_duration(std::time::Duration::from_secs(l.window_seconds))
            ),
        },
    };
    let workers: Vec<WorkerView> = report
        .workers
        .iter()
        .map(|w| WorkerView {
            name: w.name.clone(),
            rate: format!("{:.1}/s", w.rate),
            sent: w.sent,
            beat: w.heartbeat_at.format("%H:%M:%S UTC").to_string(),
        })
        .collect();
    // The pre-send checks, where Send is one of the actions: the operator reads them first.
    #[derive(Serialize)]
    struct CheckView {
        check: &'static str,
        status: &'static str,
        detail: String,
        fix: Option<String>,
    }
    #[derive(Serialize)]
    struct ChecksView {
        running: bool,
        error: Option<String>,
        at: Option<String>,
        summary: String,
        rows: Vec<CheckView>,
    }
    let checks = if status.allows(ActionKind::Send) {
        use crate::app::issues::PreSendChecks;
        let found = state
            .app
            .pre_send_checks(key)
            .await
            .map_err(super::internal)?;
        found.map(|c| match c {
            PreSendChecks::Running => ChecksView {
                running: true,
                error: None,
                at: None,
                summary: "Running the pre-send checks (SpamAssassin takes a few seconds)…".into(),
                rows: Vec::new(),
            },
            PreSendChecks::Failed(e) => ChecksView {
                running: false,
                error: Some(e),
                at: None,
                summary: "The pre-send checks could not run.".into(),
                rows: Vec::new(),
            },
            PreSendChecks::Done { checks, at } => {
                let count = |s| checks.iter().filter(|c| c.status == s).count();
                let (fail, warn) = (count(CheckStatus::Fail), count(CheckStatus::Warn));
                ChecksView {
                    running: false,
                    error: None,
                    at: Some(when(at)),
                    summary: match (fail, warn) {
                        (0, 0) => format!("All {} checks passed.", checks.len()),
                        (0, w) => format!("{w} warning(s), nothing failed."),
                        (f, _) => format!(
                            "{f} check(s) failed: Send refuses this issue unless you tick “Send even if a pre-send check fails”."
                        ),
                    },
                    rows: checks
                        .into_iter()
                        .map(|c| CheckView {
                            check: c.check,
                            status: c.status.as_str(),
                            detail: c.detail,
                            fix: c.fix,
                        })
                        .collect(),
                }
            }
        })
    } else {
        None
    };
    let view = IssueView::from(&report);
    let mut ctx = console.context(&state, "");
    ctx.insert("checks", &checks);
    // "Will go to N recipients" while a send has not started: the readers the send would
    // reach now, and apart from them those it would skip.
    if matches!(status, IssueStatus::Ready | IssueStatus::Scheduled) {
        let audience = state
            .app
            .audience_now(&report.issue)
            .await
            .map_err(super::internal)?;
        ctx.insert("recipients", &audience.recipients);
        ctx.insert("skipped_paused", &audience.paused);
        ctx.insert("skipped_no_match", &audience.no_matching_category);
        ctx.insert("skipped", &audience.skipped());
    }
    ctx.insert("limits", &limits);
    ctx.insert("workers", &workers);
    ctx.insert("has_preview", &report.issue.html.is_some());
    ctx.insert("issue", &view);
    ctx.insert("counts", &report.deliveries);
    ctx.insert("actions", &actions);
    ctx.insert("engagement", &engagement);
    ctx.insert(
        "schedule_default",
        &(Utc::now() + chrono::Duration::hours(1))
            .format("%Y-%m-%dT%H:00")
            .to_string(),
    );
    ctx.insert(
        "failures",
        &failures
            .into_iter()
            .map(|f| FailureView {
                email: f.email.unwrap_or_else(|| "(erased)".into()),
                attempts: f.attempts,
                error: f.error,
                at: when(f.at),
            })
            .collect::<Vec<_>>(),
    );
    console.render(&state, StatusCode::OK, "console/issue.html", &ctx)
}

/// The frozen issue's HTML may not run script, submit forms or reach the console: it is served
/// sandboxed, and only the console may frame it.
const PREVIEW_CSP: &str = "sandbox; default-src 'none'; img-src https: data:; \
style-src 'unsafe-inline'; font-src https: data:; frame-ancestors 'self'";

/// `GET /admin/issues/{id}/preview`: the frozen HTML as the web version shows it.
pub(super) async fn preview(
    State(state): State<AppState>,
    console: Console,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let issue = match parse_key(&key) {
        Ok(key) => state.app.find_issue(key).await,
        Err(e) => Err(e),
    };
    let issue = match issue {
        Ok(issue) => issue,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    let (Some(html), Some(text)) = (issue.html.as_deref(), issue.text.as_deref()) else {
        return console.message(
            &state,
            StatusCode::NOT_FOUND,
            "No preview",
            "This issue has no content (an empty week).",
            "/admin",
        );
    };
    let values = SlotValues::for_archive(
        &state.settings().newsletter.name.0,
        &state.settings().http.public_url.join("/"),
    );
    let html = Personalizer::new(html, text).html(&values);
    let mut response = (StatusCode::OK, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PREVIEW_CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    csrf_token: String,
    /// test-send: the address.
    #[serde(default)]
    to: String,
    /// schedule: when (UTC).
    #[serde(default)]
    at: String,
    /// send, schedule: the number of recipients the operator typed to confirm.
    #[serde(default)]
    confirm_recipients: String,
    /// send, schedule: `on` to go on even when a pre-send check fails.
    #[serde(default)]
    force: String,
}

/// The guard of a console send or schedule: the confirmed number is required, and must parse.
fn send_guard(kind: ActionKind, form: &ActionForm) -> Result<SendGuard, OpsError> {
    let (what, nothing) = match kind {
        ActionKind::Schedule => ("schedule", "nothing was scheduled"),
        _ => ("send", "nothing was sent"),
    };
    let typed = form.confirm_recipients.trim();
    if typed.is_empty() {
        return Err(OpsError::invalid(
            "confirm_recipients",
            format!("type the number of recipients to confirm the {what}: {nothing}"),
        ));
    }
    let n = typed.parse::<i64>().map_err(|_| {
        OpsError::invalid(
            "confirm_recipients",
            format!("{typed:?} is not a number: {nothing}"),
        )
    })?;
    Ok(SendGuard {
        force: form.force == "on",
        confirm_recipients: Some(n),
    })
}

/// The typed action named in the URL, with its arguments from the form.
fn typed_action(kind: ActionKind, form: &ActionForm) -> Result<IssueAction, OpsError> {
    IssueAction::build(
        kind,
        || SubscriberEmail::parse(&form.to).map_err(|e| OpsError::invalid("to", e.0)),
        || parse_when(&form.at).map_err(|e| OpsError::invalid("at", e)),
    )
}

/// `POST /admin/issues/{id}/{test-send|send|schedule|pause|resume|cancel|retry-failed}`.
pub(super) async fn action(
    State(state): State<AppState>,
    Path((key, action)): Path<(String, String)>,
    Posted { console, form }: Posted<ActionForm>,
) -> Result<Response, PageError> {
    let back = format!("/admin/issues/{key}");
    let Ok(kind) = action.parse::<ActionKind>() else {
        return console.message(
            &state,
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("There is no action {action:?}."),
            &back,
        );
    };
    let request = parse_key(&key).and_then(|k| Ok((k, typed_action(kind, &form)?)));
    let (issue_key, typed) = match request {
        Ok(r) => r,
        Err(e) => return console.ops_error(&state, e, &back),
    };
    // A send or a schedule names an issue that exists (404 first) and carries the confirmed
    // count.
    let guard = match kind {
        ActionKind::Send | ActionKind::Schedule => match state.app.find_issue(issue_key).await {
            Ok(_) => match send_guard(kind, &form) {
                Ok(guard) => guard,
                Err(e) => return console.ops_error(&state, e, &back),
            },
            Err(e) => return console.ops_error(&state, e, &back),
        },
        _ => SendGuard::default(),
    };
    match state
        .app
        .perform_guarded(&console.who.actor(), issue_key, typed, guard)
        .await
    {
        Ok(done) => {
            let week = done.issue.week;
            let message = match done.done {
                Done::Started {
                    recipients,
                    skipped,
                } => format!(
                    "{week}: sending to {}.",
                    crate::app::issues::recipients_text(recipients, skipped)
                ),
                Done::Scheduled { at } => format!(
                    "{week}: scheduled for {} UTC{}.",
                    when(at),
                    if done.issue.scheduled_forced {
                        " (forced: it starts even if a pre-send check fails then)"
                    } else {
                        "; the pre-send checks run again then"
                    }
                ),
                Done::Released { comparisons } => format!(
                    "{week}: cancelled before any delivery; its {comparisons} comparison(s) wait \
                     for the next issue, and the week can be made again."
                ),
                Done::Moved => format!("{week}: {} done; now {}.", kind, done.issue.status),
                Done::Retried { deliveries } => {
                    format!("{week}: {deliveries} failed deliveries are back in line.")
                }
                Done::TestSent { to } => format!("{week}: a [TEST] copy went to {to}."),
            };
            // An issue cancelled before any delivery gave its number back: its page is now
            // under its week.
            let back = match done.issue.number {
                Some(_) => back,
                None => format!("/admin/issues/{week}"),
            };
            Ok(console.redirect(&state, &back, FlashKind::Ok, &message))
        }
        Err(e) => console.ops_error(&state, e, &back),
    }
}

super::csrf_form!(CreateForm, ActionForm);

#[cfg(test)]
mod tests {
    #[test]
    fn rates_read_per_second_or_per_minute() {
        assert_eq!(super::rate_label(0.0), "0/min");
        assert_eq!(super::rate_label(2.0 / 60.0), "2/min");
        assert_eq!(super::rate_label(41.3), "41.3/s");
    }
}
