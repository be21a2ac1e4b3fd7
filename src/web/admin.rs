//! The admin API under `/api`, behind `Authorization: Bearer <admin.token>` (compared in
//! constant time). With no `admin.token` configured every call answers 401.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::app::Actor;
use crate::app::comparisons::Incoming;
use crate::app::issues::{Creation, SendGuard};
use crate::comparisons::import::parse_json;
use crate::issues::freeze::Created;
use crate::issues::{ActionKind, IsoWeek, IssueAction, IssueKey};
use crate::store::comparisons::{Source, UpsertAction};
use crate::subscribers::SubscriberEmail;

/// Largest JSON body the admin API accepts.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/comparisons", post(post_comparisons))
        .route("/api/issues", get(list_issues).post(post_issue))
        .route("/api/issues/{id}", get(get_issue))
        .route("/api/issues/{id}/checks", get(issue_checks))
        .route("/api/issues/{id}/engagement", get(get_engagement))
        .route("/api/issues/{id}/{action}", post(issue_action))
        .route("/api/subscribers", get(list_subscribers))
        .route("/api/doctor", get(doctor))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// Proof that the request carried the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.settings().admin.token else {
            return Err(ApiError::Disabled);
        };
        let given = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        let ok: bool = given
            .as_bytes()
            .ct_eq(expected.expose_secret().as_bytes())
            .into();
        if ok {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

async fn post_comparisons(
    _: Admin,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::Invalid {
        field: None,
        message: "the body is not UTF-8".into(),
    })?;
    super::json::value(&body).map_err(|e| ApiError::Invalid {
        field: None,
        message: format!("malformed JSON: {e}"),
    })?;
    let comparisons = parse_json(text).map_err(|e| ApiError::Invalid {
        field: Some(e.field.clone()),
        message: e.to_string(),
    })?;
    let done = state
        .app
        .import_comparisons(
            &Actor::Api,
            &[Incoming::new("api", Source::Api, comparisons)],
        )
        .await?
        .pop()
        .map(|i| i.upserted)
        .unwrap_or_default();
    let status = if done.iter().any(|d| d.action == UpsertAction::Created) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "imported": done }))))
}

async fn list_issues(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let issues = state.app.list_issues().await?;
    Ok(Json(json!({ "issues": issues })))
}

/// `GET /api/issues/{id}/checks`: the pre-send checks, `{"ok", "failed", "checks"}`.
async fn issue_checks(
    _: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let checks = state.app.check_issue(issue_key(&key)?).await?;
    let failed = crate::app::checks::failed(&checks);
    Ok(Json(
        json!({ "ok": failed.is_empty(), "failed": failed, "checks": checks }),
    ))
}

/// `GET /api/doctor`: the `verdicts doctor` report, `{"ok", "failed": [names], "checks": [...]}`.
async fn doctor(_: Admin, State(state): State<AppState>) -> Json<Value> {
    let checks = state.app.doctor().await;
    let failed = crate::app::checks::failed(&checks);
    Json(json!({ "ok": failed.is_empty(), "failed": failed, "checks": checks }))
}

/// The `{id}` of a route: an issue number (`12`, `#12`) or a week (`2026-W47`).
fn issue_key(key: &str) -> Result<IssueKey, ApiError> {
    key.parse::<IssueKey>().map_err(|e| ApiError::Invalid {
        field: Some("id".into()),
        message: e.to_string(),
    })
}

async fn get_issue(
    _: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "issue": state.app.find_issue(issue_key(&key)?).await? }),
    ))
}

/// Clicks per comparison link and reader votes per tool of one issue.
async fn get_engagement(
    _: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<crate::app::engagement::Engagement>, ApiError> {
    Ok(Json(state.app.issue_engagement(issue_key(&key)?).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateIssue {
    week: Option<String>,
}

/// A JSON body that may be empty (then the type's default).
fn optional_body<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    super::json::object(body).map_err(|e| ApiError::Invalid {
        field: None,
        message: format!("malformed JSON: {e}"),
    })
}

async fn post_issue(
    _: Admin,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: CreateIssue = optional_body(&body)?;
    let week = req
        .week
        .map(|w| w.parse::<IsoWeek>())
        .transpose()
        .map_err(|e| ApiError::Invalid {
            field: Some("week".into()),
            message: e.to_string(),
        })?;
    let (issue, created) = match state.app.create_issue(&Actor::Api, week).await? {
        Creation::Issue(issue, created) => (*issue, created),
        Creation::NothingNew(week) => {
            return Ok((
                StatusCode::OK,
                Json(json!({ "issue": null, "created": false, "week": week, "nothing_new": true })),
            ));
        }
    };
    let status = match created {
        Created::New => StatusCode::CREATED,
        Created::Existing => StatusCode::OK,
    };
    Ok((
        status,
        Json(json!({ "issue": issue, "created": created == Created::New })),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    /// test-send: the address.
    to: Option<String>,
    /// schedule: when (RFC 3339).
    at: Option<String>,
    /// send: even when a pre-send check fails.
    #[serde(default)]
    force: bool,
}

impl ActionBody {
    /// The typed action named in the URL, with its arguments from the body.
    fn into_action(self, kind: ActionKind) -> Result<IssueAction, ApiError> {
        let invalid = |field: &str, message: String| ApiError::Invalid {
            field: Some(field.into()),
            message,
        };
        IssueAction::build(
            kind,
            || {
                let to = self
                    .to
                    .as_deref()
                    .ok_or_else(|| invalid("to", "give the address to send the test to".into()))?;
                SubscriberEmail::parse(to).map_err(|e| invalid("to", e.0))
            },
            || {
                let at = self
                    .at
                    .as_deref()
                    .ok_or_else(|| invalid("at", "give the time as RFC 3339".into()))?;
                Ok(chrono::DateTime::parse_from_rfc3339(at)
                    .map_err(|e| invalid("at", format!("{at:?}: {e}")))?
                    .with_timezone(&chrono::Utc))
            },
        )
    }
}

/// `POST /api/issues/{id}/{test-send|send|schedule|pause|resume|cancel|retry-failed}`.
async fn issue_action(
    _: Admin,
    State(state): State<AppState>,
    Path((key, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let kind = action.parse::<ActionKind>().map_err(ApiError::NotFound)?;
    let key = issue_key(&key)?;
    let body = optional_body::<ActionBody>(&body)?;
    let guard = SendGuard {
        force: body.force,
        confirm_recipients: None,
    };
    let action = body.into_action(kind)?;
    let done = state
        .app
        .perform_guarded(&Actor::Api, key, action, guard)
        .await?;
    let deliveries = state.app.delivery_counts(done.issue.id).await?;
    Ok(Json(
        json!({ "issue": done.issue, "result": done.done, "deliveries": deliveries }),
    ))
}

#[derive(Debug, Deserialize)]
struct SubscriberQuery {
    status: Option<String>,
}

/// `GET /api/subscribers[?status=confirmed]`.
async fn list_subscribers(
    _: Admin,
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<SubscriberQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(str::parse::<crate::subscribers::SubscriberStatus>)
        .transpose()
        .map_err(|e| ApiError::Invalid {
            field: Some("status".into()),
            message: e,
        })?;
    let rows = state.app.list_subscribers(status).await?;
    Ok(Json(json!({ "subscribers": rows })))
}
