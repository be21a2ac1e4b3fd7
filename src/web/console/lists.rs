//! The list pages of the console: subscribers (search, counts, add, remove, export),
//! comparisons (list, upload), bounces, the operator log, operators (owners only). Long lists
//! come a page at a time, with links to the newer and older pages that work without
//! JavaScript (`?after=KEY`, `?before=KEY`: keyset pagination, see [`Keyset`]).

use std::fmt::Display;
use std::str::FromStr;

use axum::extract::{Multipart, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{Console, FlashKind, Posted, parse_when, when};
use crate::app::OpsError;
use crate::app::console::Page;
use crate::operators::{OperatorEmail, Password, Role};
use crate::store::overview::{FailureKey, Keyset};
use crate::store::subscribers::manage::ReaderState;
use crate::store::subscribers::{AddOutcome, SubscriberRow};
use crate::subscribers::{SubscriberEmail, SubscriberName, SubscriberStatus};
use crate::web::AppState;
use crate::web::error::PageError;

/// The page of a list that `after` or `before` (query values, at most one non-empty) name;
/// a value that does not parse is the caller's error, naming its field.
fn keyset<K: FromStr>(
    (after_field, after): (&str, &str),
    (before_field, before): (&str, &str),
) -> Result<Keyset<K>, OpsError> {
    let parse = |field: &str, value: &str| {
        value
            .trim()
            .parse::<K>()
            .map_err(|_| OpsError::invalid(field, format!("{value:?} is not a place in the list")))
    };
    match (after.trim(), before.trim()) {
        ("", "") => Ok(Keyset::Newest),
        (after, "") => Ok(Keyset::After(parse(after_field, after)?)),
        ("", before) => Ok(Keyset::Before(parse(before_field, before)?)),
        _ => Err(OpsError::invalid(
            before_field,
            format!("give {after_field} or {before_field}, not both"),
        )),
    }
}

/// A list's pager: where the page stands and the links beside it.
#[derive(Debug, Serialize)]
struct Pager {
    /// `101–200 of 250`.
    summary: String,
    newest_url: Option<String>,
    newer_url: Option<String>,
    older_url: Option<String>,
}

/// The pager of `page` on `path`: links keep the `keep` parameters (empty ones left out) and
/// name the page by `{prefix}after` / `{prefix}before`.
fn pager<T, K: Display>(
    page: &Page<T, K>,
    path: &str,
    keep: &[(&str, &str)],
    prefix: &str,
) -> Pager {
    let url = |extra: Option<(&str, String)>| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in keep.iter().filter(|(_, v)| !v.is_empty()) {
            query.append_pair(k, v);
        }
        if let Some((k, v)) = extra {
            query.append_pair(&format!("{prefix}{k}"), &v);
        }
        match query.finish() {
            q if q.is_empty() => path.to_string(),
            q => format!("{path}?{q}"),
        }
    };
    let shown = page.rows.len() as i64;
    let summary = match (page.total, shown) {
        (0, _) => "none".to_string(),
        (total, 0) => format!("none here, {total} in all"),
        (total, shown) => format!("{}–{} of {total}", page.skipped + 1, page.skipped + shown),
    };
    Pager {
        summary,
        newest_url: (!page.is_first() || (shown == 0 && page.total > 0)).then(|| url(None)),
        newer_url: page
            .newer
            .as_ref()
            .map(|k| url(Some(("before", k.to_string())))),
        older_url: page
            .older
            .as_ref()
            .map(|k| url(Some(("after", k.to_string())))),
    }
}

#[derive(Serialize)]
struct SubscriberView {
    id: i64,
    email: String,
    name: String,
    status: &'static str,
    created_at: String,
    /// "paused until …" for a paused reader, "pending for …" for one not confirmed yet.
    note: String,
}

impl SubscriberView {
    fn of(
        s: SubscriberRow,
        state: ReaderState,
        categories: &[String],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let mut note = match (s.status, state.paused_until, state.last_signup_at) {
            (SubscriberStatus::Confirmed, Some(until), _) if until > now => {
                format!("paused until {}", when(until))
            }
            (SubscriberStatus::Pending, _, Some(at)) => {
                format!("pending for {}", age(now - at))
            }
            _ => String::new(),
        };
        if !categories.is_empty() {
            if !note.is_empty() {
                note.push_str(" · ");
            }
            note.push_str(&format!("only {}", categories.join(", ")));
        }
        SubscriberView {
            id: s.id,
            email: s.email,
            name: s.name.unwrap_or_default(),
            status: s.status.as_str(),
            created_at: when(s.created_at),
            note,
        }
    }
}

/// "3 d 4 h", "5 h 12 min", "40 min": how long, to the two largest units.
pub(super) fn age(d: chrono::Duration) -> String {
    let minutes = d.num_minutes().max(0);
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{mins} min"),
        (0, h) => format!("{h} h {mins} min"),
        (d, h) => format!("{d} d {h} h"),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    before: String,
}

/// `GET /admin/subscribers[?q=…&status=…][&after=ID|&before=ID]`.
pub(super) async fn subscribers(
    State(state): State<AppState>,
    console: Console,
    Query(query): Query<SearchQuery>,
) -> Result<Response, PageError> {
    let status = match query.status.as_str() {
        "" => None,
        s => match s.parse::<SubscriberStatus>() {
            Ok(s) => Some(s),
            Err(e) => {
                return console.ops_error(
                    &state,
                    OpsError::invalid("status", e),
                    "/admin/subscribers",
                );
            }
        },
    };
    let at = match keyset(("after", &query.after), ("before", &query.before)) {
        Ok(at) => at,
        Err(e) => return console.ops_error(&state, e, "/admin/subscribers"),
    };
    let search = match state.app.search_subscribers(&query.q, status, at).await {
        Ok(s) => s,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    #[derive(Serialize)]
    struct Count {
        status: &'static str,
        count: i64,
    }
    let found_label = match (query.q.trim(), status) {
        ("", None) => "Newest subscribers".to_string(),
        ("", Some(s)) => format!("Newest {s} subscribers"),
        (q, None) => format!("Addresses matching “{q}”"),
        (q, Some(s)) => format!("{s} addresses matching “{q}”"),
    };
    let mut ctx = console.context(&state, "/admin/subscribers");
    ctx.insert(
        "counts",
        &search
            .counts
            .iter()
            .map(|(s, n)| Count {
                status: s.as_str(),
                count: *n,
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("query", query.q.trim());
    ctx.insert("status", &status.map_or("", SubscriberStatus::as_str));
    ctx.insert("found_label", &found_label);
    ctx.insert(
        "pager",
        &pager(
            &search.found,
            "/admin/subscribers",
            &[
                ("q", query.q.trim()),
                ("status", status.map_or("", SubscriberStatus::as_str)),
            ],
            "",
        ),
    );
    ctx.insert(
        "found",
        &search
            .found
            .rows
            .into_iter()
            .map(|s| {
                let state = search.states.get(&s.id).copied().unwrap_or_default();
                let categories = search.categories.get(&s.id).cloned().unwrap_or_default();
                SubscriberView::of(s, state, &categories, chrono::Utc::now())
            })
            .collect::<Vec<_>>(),
    );
    console.render(&state, StatusCode::OK, "console/subscribers.html", &ctx)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AddSubscriberForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    confirmed: Option<String>,
}

/// `POST /admin/subscribers`: adds one address.
pub(super) async fn add_subscriber(
    State(state): State<AppState>,
    Posted { console, form }: Posted<AddSubscriberForm>,
) -> Result<Response, PageError> {
    let back = "/admin/subscribers";
    let checked = SubscriberEmail::parse(&form.email)
        .map_err(|e| OpsError::invalid("email", e.0))
        .and_then(|email| {
            let name =
                SubscriberName::parse(Some(form.name.as_str()).filter(|n| !n.trim().is_empty()))
                    .map_err(|e| OpsError::invalid("name", e.0))?;
            Ok((email, name))
        });
    let (email, name) = match checked {
        Ok(c) => c,
        Err(e) => return console.ops_error(&state, e, back),
    };
    let confirmed = form.confirmed.is_some();
    match state
        .app
        .add_subscriber(&console.who.actor(), &email, name.as_ref(), confirmed)
        .await
    {
        Ok(outcome) => {
            let message = match outcome {
                AddOutcome::Added => format!(
                    "Added {email} ({}).",
                    if confirmed { "confirmed" } else { "pending" }
                ),
                _ => format!("{email} is a subscriber already; nothing changed."),
            };
            let to = format!(
                "/admin/subscribers?q={}",
                url::form_urlencoded::byte_serialize(email.as_str().as_bytes()).collect::<String>()
            );
            Ok(console.redirect(&state, &to, FlashKind::Ok, &message))
        }
        Err(e) => console.ops_error(&state, e, back),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct EmailForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

/// `POST /admin/subscribers/remove`: erases the address's personal data, keeps a suppression.
pub(super) async fn remove_subscriber(
    State(state): State<AppState>,
    Posted { console, form }: Posted<EmailForm>,
) -> Result<Response, PageError> {
    let back = "/admin/subscribers";
    let email = match SubscriberEmail::parse(&form.email) {
        Ok(e) => e,
        Err(e) => return console.ops_error(&state, OpsError::invalid("email", e.0), back),
    };
    match state
        .app
        .remove_subscriber(&console.who.actor(), &email)
        .await
    {
        Ok(known) => {
            let message = if known {
                format!("Removed {email}: personal data erased, the address is suppressed.")
            } else {
                format!("{email} was not a subscriber; it is suppressed now.")
            };
            Ok(console.redirect(&state, back, FlashKind::Ok, &message))
        }
        Err(e) => console.ops_error(&state, e, back),
    }
}

/// `GET /admin/subscribers.csv`: every subscriber, as `verdicts subscribers export` writes them.
pub(super) async fn export_subscribers(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, PageError> {
    match state.app.export_subscribers_csv(&console.who.actor()).await {
        Ok(bytes) => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"subscribers.csv\"",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response()),
        Err(e) => console.ops_error(&state, e, "/admin/subscribers"),
    }
}

/// Most comparisons the list shows.
const COMPARISON_LIMIT: usize = 200;

/// `GET /admin/comparisons`.
pub(super) async fn comparisons(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, PageError> {
    let rows = match state.app.recent_comparisons(COMPARISON_LIMIT).await {
        Ok(r) => r,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    #[derive(Serialize)]
    struct ComparisonView {
        published_at: String,
        title: String,
        url: String,
        slug: String,
        revision: i64,
        panel: String,
        issue_week: String,
    }
    let views: Vec<ComparisonView> = rows
        .into_iter()
        .map(|r| {
            let c = &r.comparison;
            let [a, b] = c.tools();
            ComparisonView {
                published_at: when(c.published_at()),
                title: c.title().to_string(),
                url: c.url().to_string(),
                slug: c.slug().to_string(),
                revision: r.revision,
                panel: format!(
                    "{} {} · {} {}",
                    a.name,
                    a.panel.verdict.label(),
                    b.name,
                    b.panel.verdict.label()
                ),
                issue_week: r.issue_week.unwrap_or_else(|| "—".into()),
            }
        })
        .collect();
    let mut ctx = console.context(&state, "/admin/comparisons");
    ctx.insert("comparison_count", &views.len());
    ctx.insert("comparisons", &views);
    console.render(&state, StatusCode::OK, "console/comparisons.html", &ctx)
}

/// `POST /admin/comparisons` (multipart): a file or pasted text, JSON or page text.
pub(super) async fn upload_comparisons(
    State(state): State<AppState>,
    console: Console,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    let back = "/admin/comparisons";
    let mut csrf_token = String::new();
    let mut file: Option<(String, String)> = None;
    let mut pasted = String::new();
    let mut published_at = String::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                return console.ops_error(
                    &state,
                    OpsError::invalid("file", format!("the upload is malformed: {e}")),
                    back,
                );
            }
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return console.ops_error(
                    &state,
                    OpsError::invalid(&name, format!("could not be read: {e}")),
                    back,
                );
            }
        };
        let text = match String::from_utf8(bytes.to_vec()) {
            Ok(t) => t,
            Err(e) => {
                if let Some(forbidden) = console.csrf_refusal(&state, &csrf_token) {
                    return Ok(forbidden);
                }
                return console.ops_error(
                    &state,
                    OpsError::invalid(
                        &name,
                        format!(
                            "not UTF-8 text (invalid byte at offset {})",
                            e.utf8_error().valid_up_to()
                        ),
                    ),
                    back,
                );
            }
        };
        match name.as_str() {
            "csrf_token" => csrf_token = text,
            "file" if !text.trim().is_empty() => {
                file = Some((file_name.unwrap_or_else(|| "file".into()), text));
            }
            "text" => pasted = text,
            "published_at" => published_at = text,
            _ => {}
        }
    }
    if let Some(forbidden) = console.csrf_refusal(&state, &csrf_token) {
        return Ok(forbidden);
    }
    let (source, text) = match file {
        Some((file_name, text)) => (file_name, text),
        None if !pasted.trim().is_empty() => ("text".to_string(), pasted),
        None => {
            return console.ops_error(
                &state,
                OpsError::invalid("file", "choose a file or paste the text"),
                back,
            );
        }
    };
    let published_at = match published_at.trim() {
        "" => None,
        t => match parse_when(t) {
            Ok(t) => Some(t),
            Err(e) => {
                return console.ops_error(&state, OpsError::invalid("published_at", e), back);
            }
        },
    };
    match state
        .app
        .import_comparison_text(&console.who.actor(), &source, &text, published_at)
        .await
    {
        Ok(done) => {
            let list: Vec<String> = done
                .iter()
                .map(|d| format!("{} {}", d.action, d.slug))
                .collect();
            Ok(console.redirect(
                &state,
                back,
                FlashKind::Ok,
                &format!("Imported from {source}: {}.", list.join(", ")),
            ))
        }
        Err(e) => console.ops_error(&state, e, back),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct BouncesQuery {
    #[serde(default)]
    bounced_after: String,
    #[serde(default)]
    bounced_before: String,
    #[serde(default)]
    failures_after: String,
    #[serde(default)]
    failures_before: String,
    #[serde(default)]
    events_after: String,
    #[serde(default)]
    events_before: String,
}

/// `GET /admin/bounces[?events_after=ID|events_before=ID][&bounced_after=ID|bounced_before=ID]
/// [&failures_after=K|failures_before=K]`: three lists, each paged on its own.
pub(super) async fn bounces(
    State(state): State<AppState>,
    console: Console,
    Query(query): Query<BouncesQuery>,
) -> Result<Response, PageError> {
    let places = keyset(
        ("bounced_after", &query.bounced_after),
        ("bounced_before", &query.bounced_before),
    )
    .and_then(|bounced| {
        let failures = keyset::<FailureKey>(
            ("failures_after", &query.failures_after),
            ("failures_before", &query.failures_before),
        )?;
        Ok((bounced, failures))
    });
    let places = places.and_then(|(bounced, failures)| {
        let events = keyset::<i64>(
            ("events_after", &query.events_after),
            ("events_before", &query.events_before),
        )?;
        Ok((bounced, failures, events))
    });
    let (bounced_at, failures_at, events_at) = match places {
        Ok(p) => p,
        Err(e) => return console.ops_error(&state, e, "/admin/bounces"),
    };
    let report = match state.app.bounce_report(bounced_at, failures_at).await {
        Ok(r) => r,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    let events = match state.app.bounce_events(events_at).await {
        Ok(r) => r,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    #[derive(Serialize)]
    struct EventView {
        at: String,
        kind: &'static str,
        email: String,
        reader_url: Option<String>,
        status_code: String,
        reason: String,
        issue: String,
        issue_url: Option<String>,
        matched_by: &'static str,
        source: &'static str,
    }
    #[derive(Serialize)]
    struct FailureView {
        key: String,
        label: String,
        email: String,
        attempts: i64,
        error: String,
        at: String,
    }
    // Each list's links keep the other lists where they are.
    let events_pager = pager(
        &events,
        "/admin/bounces",
        &[
            ("bounced_after", &query.bounced_after),
            ("bounced_before", &query.bounced_before),
            ("failures_after", &query.failures_after),
            ("failures_before", &query.failures_before),
        ],
        "events_",
    );
    let bounced_pager = pager(
        &report.bounced,
        "/admin/bounces",
        &[
            ("failures_after", &query.failures_after),
            ("failures_before", &query.failures_before),
            ("events_after", &query.events_after),
            ("events_before", &query.events_before),
        ],
        "bounced_",
    );
    let failures_pager = pager(
        &report.failures,
        "/admin/bounces",
        &[
            ("bounced_after", &query.bounced_after),
            ("bounced_before", &query.bounced_before),
            ("events_after", &query.events_after),
            ("events_before", &query.events_before),
        ],
        "failures_",
    );
    let events_view: Vec<EventView> = events
        .rows
        .into_iter()
        .map(|e| {
            let (issue, issue_url) = match (e.number, e.week) {
                (Some(n), Some(week)) => {
                    (format!("#{n} · {week}"), Some(format!("/admin/issues/{n}")))
                }
                (None, Some(week)) => (week.clone(), Some(format!("/admin/issues/{week}"))),
                _ => (String::new(), None),
            };
            EventView {
                at: when(e.received_at),
                kind: e.kind.as_str(),
                reader_url: e
                    .subscriber_id
                    .filter(|_| e.email.is_some())
                    .map(|id| format!("/admin/subscribers/{id}")),
                email: e.email.unwrap_or_else(|| {
                    if e.subscriber_id.is_none() && e.matched_by.is_none() {
                        "(not matched)".into()
                    } else {
                        "(erased)".into()
                    }
                }),
                status_code: e.status_code.unwrap_or_default(),
                reason: e.reason,
                issue,
                issue_url,
                matched_by: e.matched_by.map_or("", |m| m.as_str()),
                source: e.source.as_str(),
            }
        })
        .collect();
    let failures: Vec<FailureView> = report
        .failures
        .rows
        .into_iter()
        .map(|f| FailureView {
            key: f.number.map_or_else(|| f.week.clone(), |n| n.to_string()),
            label: f
                .number
                .map_or_else(|| f.week.clone(), |n| format!("#{n} · {}", f.week)),
            email: f.email.unwrap_or_else(|| "(erased)".into()),
            attempts: f.attempts,
            error: f.error,
            at: when(f.at),
        })
        .collect();
    let mut ctx = console.context(&state, "/admin/bounces");
    ctx.insert(
        "bounced",
        &report
            .bounced
            .rows
            .into_iter()
            .map(|s| SubscriberView::of(s, ReaderState::default(), &[], chrono::Utc::now()))
            .collect::<Vec<_>>(),
    );
    ctx.insert("bounced_pager", &bounced_pager);
    ctx.insert("events", &events_view);
    ctx.insert("events_pager", &events_pager);
    ctx.insert("failures", &failures);
    ctx.insert("failures_pager", &failures_pager);
    console.render(&state, StatusCode::OK, "console/bounces.html", &ctx)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct LogQuery {
    #[serde(default)]
    after: String,
    #[serde(default)]
    before: String,
}

/// `GET /admin/log[?after=ID|before=ID]`: the whole operator log, a page at a time.
pub(super) async fn operator_log(
    State(state): State<AppState>,
    console: Console,
    Query(query): Query<LogQuery>,
) -> Result<Response, PageError> {
    let at = match keyset(("after", &query.after), ("before", &query.before)) {
        Ok(at) => at,
        Err(e) => return console.ops_error(&state, e, "/admin/log"),
    };
    let page = match state.app.operator_log(at).await {
        Ok(p) => p,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    let mut ctx = console.context(&state, "/admin/log");
    ctx.insert("pager", &pager(&page, "/admin/log", &[], ""));
    ctx.insert(
        "entries",
        &page
            .rows
            .into_iter()
            .map(super::LogView::from)
            .collect::<Vec<_>>(),
    );
    console.render(&state, StatusCode::OK, "console/log.html", &ctx)
}

/// `GET /admin/deliverability`: the `doctor` report (DNS records, relay login, settings), each
/// problem with its fix.
pub(super) async fn deliverability(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, PageError> {
    let checks = state.app.doctor().await;
    let failed = crate::app::checks::failed(&checks);
    let mut ctx = console.context(&state, "/admin/deliverability");
    ctx.insert("checks", &checks);
    ctx.insert("failed", &failed);
    ctx.insert(
        "warnings",
        &checks
            .iter()
            .filter(|c| c.status == crate::app::checks::Status::Warn)
            .count(),
    );
    console.render(&state, StatusCode::OK, "console/deliverability.html", &ctx)
}

/// `GET /admin/operators` (owners only).
pub(super) async fn operators(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, PageError> {
    let rows = match state.app.list_operators(&console.who.actor()).await {
        Ok(r) => r,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    #[derive(Serialize)]
    struct OperatorView {
        email: String,
        role: &'static str,
        created_at: String,
    }
    let mut ctx = console.context(&state, "/admin/operators");
    ctx.insert(
        "operators",
        &rows
            .into_iter()
            .map(|o| OperatorView {
                email: o.email,
                role: o.role.as_str(),
                created_at: when(o.created_at),
            })
            .collect::<Vec<_>>(),
    );
    console.render(&state, StatusCode::OK, "console/operators.html", &ctx)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AddOperatorForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

/// `POST /admin/operators` (owners only).
pub(super) async fn add_operator(
    State(state): State<AppState>,
    Posted { console, form }: Posted<AddOperatorForm>,
) -> Result<Response, PageError> {
    let back = "/admin/operators";
    let checked = OperatorEmail::parse(&form.email)
        .map_err(|e| OpsError::invalid("email", e))
        .and_then(|email| {
            let role = form
                .role
                .parse::<Role>()
                .map_err(|e| OpsError::invalid("role", e))?;
            let password =
                Password::parse(&form.password).map_err(|e| OpsError::invalid("password", e))?;
            Ok((email, role, password))
        });
    let (email, role, password) = match checked {
        Ok(c) => c,
        Err(e) => return console.ops_error(&state, e, back),
    };
    match state
        .app
        .add_operator(&console.who.actor(), &email, Some(role), &password)
        .await
    {
        Ok(row) => Ok(console.redirect(
            &state,
            back,
            FlashKind::Ok,
            &format!("Added {} as {}.", row.email, row.role),
        )),
        Err(e) => console.ops_error(&state, e, back),
    }
}

/// `POST /admin/operators/remove` (owners only).
pub(super) async fn remove_operator(
    State(state): State<AppState>,
    Posted { console, form }: Posted<EmailForm>,
) -> Result<Response, PageError> {
    let back = "/admin/operators";
    let email = match OperatorEmail::parse(&form.email) {
        Ok(e) => e,
        Err(e) => return console.ops_error(&state, OpsError::invalid("email", e), back),
    };
    match state
        .app
        .remove_operator(&console.who.actor(), &email)
        .await
    {
        Ok(()) => Ok(console.redirect(
            &state,
            back,
            FlashKind::Ok,
            &format!("Removed {email}; their sessions are ended."),
        )),
        Err(e) => console.ops_error(&state, e, back),
    }
}

super::csrf_form!(AddSubscriberForm, EmailForm, AddOperatorForm);
