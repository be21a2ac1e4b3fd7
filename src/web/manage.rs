//! `GET /manage/{token}`: a reader's own page, linked from every issue email; every change is
//! a `POST` of a plain form to the same address (no JavaScript), decided in
//! [`crate::app::subscribers::manage`]. Beside it, the pages of the links a reader gets by
//! mail: `/address/{token}` (confirms a new address) and `/keep/{token}` (keeps a
//! subscription `subscribers repermission` asked about); each `GET` shows a button and
//! changes nothing, its `POST` does the change. A forged or foreign token is the not-found page; a bad
//! form value is the page again with the error (422); nothing changes in either case.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::client::ClientAddr;
use super::error::PageError;
use super::limits::Bucket;
use super::pages::{base_context, message_page, not_found};
use super::signup::consent_of;
use crate::app::OpsError;
use crate::app::subscribers::control::AddressLink;
use crate::app::subscribers::manage::{ManageAction, ManageOutcome, PAUSE_WEEKS, Reader};
use crate::store::subscribers::control::ChangeApplied;
use crate::subscribers::SubscriberStatus;
use crate::subscribers::tokens::is_confirm_token_shape;

/// Largest form accepted.
const MAX_FORM: usize = 4 * 1024;

pub fn router(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/manage/{token}", get(page).post(change))
        .route("/address/{token}", get(address_page).post(address_confirm))
        .route("/keep/{token}", get(keep_page).post(keep))
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
    known: &[String],
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
    // The known categories, and any the reader chose that no comparison has any more.
    let mut known = known.to_vec();
    for c in &reader.categories {
        if !known.contains(c) {
            known.push(c.clone());
        }
    }
    known.sort();
    let choices: Vec<serde_json::Value> = known
        .iter()
        .map(|c| serde_json::json!({ "name": c, "checked": reader.categories.contains(c) }))
        .collect();
    ctx.insert("categories", &choices);
    ctx.insert("everything", &reader.categories.is_empty());
    ctx.insert("pending_email", &reader.pending_email);
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
        Some(reader) => {
            let known = state.app.known_categories().await.map_err(internal)?;
            render(&state, &token, &reader, &known, StatusCode::OK, None, None)
        }
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
    let known = state.app.known_categories().await.map_err(internal)?;
    let bad = |message: &str| {
        render(
            &state,
            &token,
            &reader,
            &known,
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
    // A new address must pass the door like a signup: a domain that takes mail, not a
    // throwaway one.
    if let ManageAction::Email(new) = &action
        && let Some(message) = state.door.check(new.domain()).await.message()
    {
        return bad(&format!("email: {message}"));
    }
    let outcome = state.app.manage(&token, action.clone()).await;
    if let Ok(ManageOutcome::EmailChangeSent { .. }) = &outcome {
        state.mail_signal.notify();
    }
    match outcome {
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
                ManageOutcome::Categories(chosen) if chosen.is_empty() => {
                    "Saved. You get every comparison.".to_string()
                }
                ManageOutcome::Categories(chosen) => format!(
                    "Saved. You get only the comparisons with a tool in {}; a week with none of them, no email.",
                    chosen.join(", ")
                ),
                ManageOutcome::EmailChangeSent { to } => format!(
                    "Almost done: we sent a link to {to}. Your address changes when you click it there; until then everything goes to {}.",
                    reader.email
                ),
                _ => "Your emails start again with the next issue.".to_string(),
            };
            let reader = state
                .app
                .manage_reader(&token)
                .await
                .map_err(internal)?
                .unwrap_or(reader.clone());
            render(
                &state,
                &token,
                &reader,
                &known,
                StatusCode::OK,
                Some(&notice),
                None,
            )
        }
        Err(e @ OpsError::Invalid { .. }) => bad(&e.to_string()),
        Err(e) => Err(internal(e)),
    }
}

fn internal(e: OpsError) -> PageError {
    PageError::Internal(anyhow::Error::new(e))
}

async fn address_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    if !is_confirm_token_shape(&token) {
        return not_found(&state);
    }
    match state.app.address_link(&token).await.map_err(internal)? {
        AddressLink::Open { new_email } => button_page(
            &state,
            &format!("address/{token}"),
            "Confirm your new address",
            &format!(
                "From the next issue on, {} goes to {new_email}.",
                state.settings().newsletter.name.0
            ),
            "Use this address",
        ),
        AddressLink::Used { new_email } => message_page(
            &state,
            StatusCode::OK,
            "Already done",
            &format!("Your subscription already goes to {new_email}."),
            None,
        ),
        AddressLink::Dead => dead_address_link(&state),
    }
}

async fn address_confirm(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    if !is_confirm_token_shape(&token) {
        return not_found(&state);
    }
    let mut consent = consent_of(&state, &headers, ip);
    consent.source = "manage".into();
    match state
        .app
        .confirm_address(&token, &consent)
        .await
        .map_err(internal)?
    {
        ChangeApplied::Changed { new, .. } => message_page(
            &state,
            StatusCode::OK,
            "Your address is changed",
            &format!(
                "{} now goes to {new}; the old address gets nothing more.",
                state.settings().newsletter.name.0
            ),
            None,
        ),
        ChangeApplied::Taken => message_page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            "That address is taken",
            "Another subscription uses that address now, so yours stays as it was. Ask again with another address from the link in any issue.",
            None,
        ),
        ChangeApplied::Invalid => dead_address_link(&state),
    }
}

fn dead_address_link(state: &AppState) -> Result<Response, PageError> {
    message_page(
        state,
        StatusCode::NOT_FOUND,
        "This link does not work any more",
        "It expired, or your subscription changed since. Your address stays as it was; ask again from the \"Manage your subscription\" link in any issue.",
        None,
    )
}

async fn keep_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    match state.app.keep_reader(&token).await.map_err(internal)? {
        None => not_found(&state),
        Some((_, Some(deadline))) => button_page(
            &state,
            &format!("keep/{token}"),
            &format!("Still want {}?", state.settings().newsletter.name.0),
            &format!(
                "One click keeps your subscription. Without it, the emails stop on {}.",
                deadline.format("%A %-d %B %Y")
            ),
            "Keep my subscription",
        ),
        Some((_, None)) => kept_page(&state),
    }
}

async fn keep(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let mut consent = consent_of(&state, &headers, ip);
    consent.source = "keep-link".into();
    match state.app.keep(&token, &consent).await {
        Ok(_) => kept_page(&state),
        Err(OpsError::Invalid { .. }) => not_found(&state),
        Err(e) => Err(internal(e)),
    }
}

fn kept_page(state: &AppState) -> Result<Response, PageError> {
    message_page(
        state,
        StatusCode::OK,
        "You stay subscribed",
        &format!(
            "Thank you: {} keeps coming. {}.",
            state.settings().newsletter.name.0,
            crate::render::cadence::schedule_sentence(
                &state.settings().schedule.cron.schedule,
                state.settings().schedule.timezone.0,
                chrono::Utc::now(),
            )
        ),
        None,
    )
}

/// A page whose one button posts to `path` (mail scanners follow links; only a person presses
/// the button).
fn button_page(
    state: &AppState,
    path: &str,
    heading: &str,
    lead: &str,
    button: &str,
) -> Result<Response, PageError> {
    let mut ctx = base_context(state);
    ctx.insert("action_url", &state.settings().http.public_url.join(path));
    ctx.insert("heading", heading);
    ctx.insert("lead", lead);
    ctx.insert("button", button);
    let html = state.renderer().render_page("web/button.html", &ctx)?;
    Ok((StatusCode::OK, Html(html)).into_response())
}
