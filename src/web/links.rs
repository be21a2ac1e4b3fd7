//! The links in mail: `GET|POST /confirm/{token}` and `GET|POST /unsubscribe/{token}`.
//!
//! A GET never changes anything (link scanners fetch links); it shows a page with one button.
//! `POST /unsubscribe/{token}` is RFC 8058 one-click: it takes `List-Unsubscribe=One-Click` as
//! form-urlencoded or multipart (the body is not required), needs no cookie, answers 200 without
//! a redirect, is idempotent and takes effect at once.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::client::ClientAddr;
use super::error::PageError;
use super::limits::Bucket;
use super::pages::{base_context, message_page};
use super::signup::consent_of;
use crate::app::subscribers::lifecycle::UnsubscribeOutcome;
use crate::store::subscribers::{ConfirmOutcome, ConfirmationToken};
use crate::subscribers::tokens::{
    CONFIRM_TOKEN_LEN, UNSUBSCRIBE_TOKEN_LEN, is_confirm_token_shape,
};

/// The token pages: rate-limited per client, never cached, never referred
/// ([`super::headers::token_pages`]).
pub fn router(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/confirm/{token}", get(confirm_page).post(confirm))
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe_page).post(unsubscribe),
        )
        .route("/unsubscribe/{token}/stay", get(stay_subscribed))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .route_layer(from_fn_with_state(
            (state.clone(), Bucket::Links),
            super::limits::enforce,
        ));
    super::headers::token_pages(routes)
}

/// A page whose one button POSTs back to `path` (GET never changes anything).
fn button_page(state: &AppState, template: &str, path: &str) -> Result<Response, PageError> {
    let mut ctx = base_context(state);
    ctx.insert("action_url", &state.settings().http.public_url.join(path));
    Ok(Html(state.renderer().render_page(template, &ctx)?).into_response())
}

fn link_not_valid(state: &AppState) -> Result<Response, PageError> {
    message_page(
        state,
        StatusCode::GONE,
        "This link has expired",
        "The confirmation link is no longer valid: it is older than allowed, or the subscription it was for has ended. Sign up again and we will send you a fresh one.",
        Some((&state.settings().http.public_url.join("/"), "Sign up again")),
    )
}

/// A confirmation link used before, of a reader who is confirmed: nothing to do, and nothing
/// to worry about (a second click, a mail scanner that posted, another device).
fn already_confirmed(state: &AppState) -> Result<Response, PageError> {
    message_page(
        state,
        StatusCode::OK,
        "You are already subscribed",
        &format!(
            "This address is already confirmed for {}. There is nothing more to do.",
            state.settings().newsletter.name.0
        ),
        Some((
            &state.settings().http.public_url.join("archive"),
            "Read past issues",
        )),
    )
}

fn wrong_shape(state: &AppState) -> Result<Response, PageError> {
    super::pages::not_found(state)
}

async fn confirm_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    if token.len() != CONFIRM_TOKEN_LEN || !is_confirm_token_shape(&token) {
        return wrong_shape(&state);
    }
    match state.app.confirmation_link(&token).await? {
        ConfirmationToken::Live => {
            button_page(&state, "web/confirm.html", &format!("confirm/{token}"))
        }
        ConfirmationToken::AlreadyConfirmed => already_confirmed(&state),
        ConfirmationToken::Dead => link_not_valid(&state),
    }
}

async fn confirm(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    if !is_confirm_token_shape(&token) {
        return wrong_shape(&state);
    }
    let consent = consent_of(&state, &headers, ip);
    match state.app.confirm(&token, &consent).await? {
        ConfirmOutcome::Confirmed { .. } => {
            state.mail_signal.notify();
            message_page(
                &state,
                StatusCode::OK,
                "You're in",
                &format!(
                    "Your subscription to {} is confirmed. {}.",
                    state.settings().newsletter.name.0,
                    crate::render::cadence::schedule_sentence(
                        &state.settings().schedule.cron.schedule,
                        state.settings().schedule.timezone.0,
                        chrono::Utc::now(),
                    )
                ),
                Some((
                    &state.settings().http.public_url.join("archive"),
                    "Read past issues",
                )),
            )
        }
        ConfirmOutcome::AlreadyConfirmed => already_confirmed(&state),
        ConfirmOutcome::Invalid => link_not_valid(&state),
    }
}

async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    if token.len() != UNSUBSCRIBE_TOKEN_LEN || !state.app.unsubscribe_token_is_genuine(&token) {
        return wrong_shape(&state);
    }
    button_page(
        &state,
        "web/unsubscribe.html",
        &format!("unsubscribe/{token}"),
    )
}

/// "Stay subscribed" on the unsubscribe page: nothing changes, and the reader is told so.
async fn stay_subscribed(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    if token.len() != UNSUBSCRIBE_TOKEN_LEN || !state.app.unsubscribe_token_is_genuine(&token) {
        return wrong_shape(&state);
    }
    message_page(
        &state,
        StatusCode::OK,
        "You are still subscribed",
        &format!(
            "Nothing has changed: you keep getting {}. {}.",
            state.settings().newsletter.name.0,
            crate::render::cadence::schedule_sentence(
                &state.settings().schedule.cron.schedule,
                state.settings().schedule.timezone.0,
                chrono::Utc::now(),
            )
        ),
        Some((
            &state.settings().http.public_url.join("archive"),
            "Read past issues",
        )),
    )
}

async fn unsubscribe(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let mut consent = consent_of(&state, &headers, ip);
    consent.source = "unsubscribe-link".into();
    match state.app.unsubscribe(&token, &consent).await? {
        UnsubscribeOutcome::BadToken => wrong_shape(&state),
        UnsubscribeOutcome::Done => message_page(
            &state,
            StatusCode::OK,
            "You are unsubscribed",
            &format!(
                "You will not get {} any more. Changed your mind? You can sign up again at any time.",
                state.settings().newsletter.name.0
            ),
            Some((&state.settings().http.public_url.join("/"), "Sign up again")),
        ),
    }
}
