//! `GET /manage/{token}`: a reader's own page, linked from every issue email; every change is
//! a `POST` of a plain form to the same address (no JavaScript), decided in
//! [`crate::app::subscribers::manage`]. A forged or foreign token is the not-found page; a bad
//! form value is the page again with the error (422); nothing changes in either case.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::PageError;
use super::limits::Bucket;
use super::pages::{base_context, message_page, not_found};
use crate::app::OpsError;
use crate::app::subscribers::manage::{ManageAction, ManageOutcome, PAUSE_WEEKS, Reader};
use crate::subscribers::SubscriberStatus;

/// Largest form accepted.
const MAX_FORM: usize = 4 * 1024;

pub fn router(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/manage/{token}", get(page).post(change))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .route_layer(from_fn_with_state(
            (state.clone(), Bucket::Links),
            super::limits::enforce,
        ));
    super::headers::token_pages(routes)
}

fn render(
    state: &AppState,
    token: &str,
    reader: &Reader,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response, PageError> {
    let mut ctx = base_context(state);
    ctx.insert(
        "action_url",
        &state
            .settings()
            .http
            .public_url
            .join(&format!("manage/{token}")),
    );
    ctx.insert("email", &reader.email);
    let confirmed = reader.status == SubscriberStatus::Confirmed;
    ctx.insert("confirmed", &confirmed);
    ctx.insert(
        "status_text",
        &match (reader.status, reader.paused_until) {
            (SubscriberStatus::Confirmed, Some(_)) => "subscribed, paused",
            (SubscriberStatus::Confirmed, None) => "subscribed",
            (SubscriberStatus::Pending, _) => "not confirmed yet",
            (SubscriberStatus::Unsubscribed, _) => "unsubscribed",
            (SubscriberStatus::Bounced, _) => "stopped: your address bounced",
        },
    );
    ctx.insert(
        "paused_until",
        &reader
            .paused_until
            .map(|t| t.format("%A %-d %B %Y").to_string()),
    );
    ctx.insert("pause_weeks", &PAUSE_WEEKS);
    ctx.insert("notice", &notice);
    ctx.insert("error", &error);
    let html = state.renderer().render_page("web/manage.html", &ctx)?;
    Ok((status, Html(html)).into_response())
}

async fn page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    match state.app.manage_reader(&token).await.map_err(internal)? {
        Some(reader) => render(&state, &token, &reader, StatusCode::OK, None, None),
        None => not_found(&state),
    }
}

async fn change(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    let Some(reader) = state.app.manage_reader(&token).await.map_err(internal)? else {
        return not_found(&state);
    };
    let bad = |message: &str| {
        render(
            &state,
            &token,
            &reader,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            Some(message),
        )
    };
    let fields: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(fields) => fields,
        Err(e) => return bad(&format!("That form could not be read: {e}")),
    };
    let action = match ManageAction::parse(&fields) {
        Ok(action) => action,
        Err(message) => return bad(&message),
    };
    match state.app.manage(&token, action).await {
        Ok(ManageOutcome::Export(data)) => {
            let body = serde_json::to_string_pretty(&data).map_err(anyhow::Error::from)?;
            Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"my-subscription.json\"",
                    ),
                ],
                body,
            )
                .into_response())
        }
        Ok(ManageOutcome::Deleted) => message_page(
            &state,
            StatusCode::OK,
            "You are deleted",
            &format!(
                "Your address and everything about it are gone from {}. You will not hear from us again.",
                state.settings().newsletter.name.0
            ),
            None,
        ),
        Ok(outcome) => {
            let notice = match outcome {
                ManageOutcome::Paused { until } => format!(
                    "Paused. Your emails start again on {} by themselves.",
                    until.format("%A %-d %B %Y")
                ),
                _ => "Your emails start again with the next issue.".to_string(),
            };
            let reader = state
                .app
                .manage_reader(&token)
                .await
                .map_err(internal)?
                .unwrap_or(reader.clone());
            render(&state, &token, &reader, StatusCode::OK, Some(&notice), None)
        }
        Err(OpsError::Invalid { message, .. }) => bad(&message),
        Err(e) => Err(internal(e)),
    }
}

fn internal(e: OpsError) -> PageError {
    PageError::Internal(anyhow::Error::new(e))
}
