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

use super::error::ApiError;
use crate::comparisons::import::parse_json;
use crate::issues::IsoWeek;
use crate::issues::freeze::{Created, create_issue, default_week};
use crate::startup::AppState;
use crate::store::comparisons::Source;
use crate::store::issues::IssueRow;

/// Largest JSON body the admin API accepts.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/comparisons", post(post_comparisons))
        .route("/api/issues", get(list_issues).post(post_issue))
        .route("/api/issues/{id}", get(get_issue))
        .route("/api/issues/{id}/{action}", post(issue_action))
        .route("/api/subscribers", get(list_subscribers))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// Proof that the request carried the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.settings.admin.token else {
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
        .store
        .upsert_comparisons(&comparisons, Source::Api, false)
        .await?;
    let slugs: Vec<&str> = done.iter().map(|d| d.slug.as_str()).collect();
    state
        .store
        .log_operator_action("api", "comparisons.import", None, &slugs.join(","))
        .await?;
    let status = if done.iter().any(|d| d.action == "created") {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "imported": done }))))
}

async fn list_issues(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let issues = state.store.list_issues().await?;
    Ok(Json(json!({ "issues": issues })))
}

/// Finds an issue by its public number (`12`) or its week (`2026-W47`).
pub async fn find_issue(state: &AppState, key: &str) -> Result<IssueRow, ApiError> {
    let found = if let Ok(number) = key.parse::<i64>() {
        state.store.get_issue_by_number(number).await?
    } else if let Ok(week) = key.parse::<IsoWeek>() {
        state.store.get_issue_by_week(week).await?
    } else {
        return Err(ApiError::Invalid {
            field: Some("id".into()),
            message: format!("{key:?} is neither an issue number nor a week like 2026-W47"),
        });
    };
    found.ok_or_else(|| ApiError::NotFound(format!("no issue {key}")))
}

async fn get_issue(
    _: Admin,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "issue": find_issue(&state, &key).await? })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateIssue {
    week: Option<String>,
}

async fn post_issue(
    _: Admin,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: CreateIssue = if body.iter().all(u8::is_ascii_whitespace) {
        CreateIssue::default()
    } else {
        super::json::object(&body).map_err(|e| ApiError::Invalid {
            field: None,
            message: format!("malformed JSON: {e}"),
        })?
    };
    let week = match req.week {
        Some(w) => w.parse::<IsoWeek>().map_err(|e| ApiError::Invalid {
            field: Some("week".into()),
            message: e.to_string(),
        })?,
        None => default_week(chrono::Utc::now(), &state.settings),
    };
    let (issue, created) =
        create_issue(&state.store, &state.renderer, &state.settings, week).await?;
    if created == Created::New {
        state
            .store
            .log_operator_action("api", "issue.create", Some(issue.id), &week.to_string())
            .await?;
    }
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
}

/// `POST /api/issues/{id}/{test-send|send|schedule|pause|resume|cancel}`.
async fn issue_action(
    _: Admin,
    State(state): State<AppState>,
    Path((key, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    use crate::issues::IssueStatus as S;
    let issue = find_issue(&state, &key).await?;
    let req: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        super::json::object(&body).map_err(|e| ApiError::Invalid {
            field: None,
            message: format!("malformed JSON: {e}"),
        })?
    };
    let invalid = |field: &str, message: String| ApiError::Invalid {
        field: Some(field.into()),
        message,
    };
    let conflict = |to: &str| {
        ApiError::Conflict(format!(
            "issue {} is {}: cannot {to}",
            issue.week, issue.status
        ))
    };
    let moved = |ok: bool, to: &str| if ok { Ok(()) } else { Err(conflict(to)) };
    match action.as_str() {
        "test-send" => {
            let to = req
                .to
                .as_deref()
                .ok_or_else(|| invalid("to", "give the address to send the test to".into()))?;
            let to =
                crate::subscribers::SubscriberEmail::parse(to).map_err(|e| invalid("to", e.0))?;
            let engine = crate::delivery::Engine::new(
                state.store.clone(),
                state.settings.clone(),
                state.secret.clone(),
            )?;
            engine.test_send(issue.id, &to).await?;
        }
        "send" => {
            if !matches!(issue.status, S::Ready | S::Scheduled) {
                return Err(conflict("send"));
            }
            state.store.start_send(issue.id).await?;
        }
        "schedule" => {
            let at = req
                .at
                .as_deref()
                .ok_or_else(|| invalid("at", "give the time as RFC 3339".into()))?;
            let at = chrono::DateTime::parse_from_rfc3339(at)
                .map_err(|e| invalid("at", format!("{at:?}: {e}")))?
                .with_timezone(&chrono::Utc);
            moved(state.store.schedule_issue(issue.id, at).await?, "schedule")?;
        }
        "pause" => moved(
            state
                .store
                .transition_issue(issue.id, &[S::Sending], S::Paused, Some("operator (api)"))
                .await?,
            "pause",
        )?,
        "resume" => moved(
            state
                .store
                .transition_issue(issue.id, &[S::Paused], S::Sending, Some("operator (api)"))
                .await?,
            "resume",
        )?,
        "cancel" => moved(
            state
                .store
                .transition_issue(
                    issue.id,
                    &[S::Ready, S::Scheduled, S::Sending, S::Paused],
                    S::Cancelled,
                    Some("operator (api)"),
                )
                .await?,
            "cancel",
        )?,
        other => return Err(ApiError::NotFound(format!("no action {other:?}"))),
    }
    state
        .store
        .log_operator_action(
            "api",
            &format!("issue.{action}"),
            Some(issue.id),
            &issue.week.to_string(),
        )
        .await?;
    let issue = find_issue(&state, &key).await?;
    let deliveries = state.store.delivery_counts(issue.id).await?;
    Ok(Json(json!({ "issue": issue, "deliveries": deliveries })))
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
    let rows = state.store.list_subscribers(status).await?;
    Ok(Json(json!({ "subscribers": rows })))
}
