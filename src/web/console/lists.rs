//! The list pages of the console: subscribers (search, counts, add, remove, export),
//! comparisons (list, upload), bounces, operators (owners only).

use axum::extract::{Multipart, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{Console, FlashKind, Posted, parse_when, when};
use crate::app::OpsError;
use crate::operators::{OperatorEmail, Password, Role};
use crate::store::subscribers::{AddOutcome, SubscriberRow};
use crate::subscribers::{SubscriberEmail, SubscriberName, SubscriberStatus};
use crate::web::AppState;
use crate::web::error::PageError;

/// Most subscribers a search shows.
const SEARCH_LIMIT: i64 = 100;

#[derive(Serialize)]
struct SubscriberView {
    email: String,
    name: String,
    status: &'static str,
    created_at: String,
}

impl From<SubscriberRow> for SubscriberView {
    fn from(s: SubscriberRow) -> Self {
        SubscriberView {
            email: s.email,
            name: s.name.unwrap_or_default(),
            status: s.status.as_str(),
            created_at: when(s.created_at),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
}

/// `GET /admin/subscribers[?q=…&status=…]`.
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
    let search = match state
        .app
        .search_subscribers(&query.q, status, SEARCH_LIMIT)
        .await
    {
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
        (q, None) => format!("Addresses containing “{q}”"),
        (q, Some(s)) => format!("{s} addresses containing “{q}”"),
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
        "found",
        &search
            .found
            .into_iter()
            .map(SubscriberView::from)
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
        .import_comparisons(&console.who.actor(), &source, &text, published_at)
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

/// `GET /admin/bounces`.
pub(super) async fn bounces(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, PageError> {
    let report = match state.app.bounce_report(100).await {
        Ok(r) => r,
        Err(e) => return console.ops_error(&state, e, "/admin"),
    };
    #[derive(Serialize)]
    struct FailureView {
        key: String,
        label: String,
        email: String,
        attempts: i64,
        error: String,
        at: String,
    }
    let failures: Vec<FailureView> = report
        .failures
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
            .into_iter()
            .map(SubscriberView::from)
            .collect::<Vec<_>>(),
    );
    ctx.insert("failures", &failures);
    console.render(&state, StatusCode::OK, "console/bounces.html", &ctx)
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
