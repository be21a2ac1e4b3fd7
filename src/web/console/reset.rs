//! `/admin/reset`: a one-time sign-in link by mail, for an operator who lost their password.
//!
//! - `GET|POST /admin/reset`: the form takes an address and answers the same page whether it
//!   is an operator or not, after the same work (the link is made, stored, composed and mailed
//!   in the background, so the answer waits neither for a database write nor for the mail
//!   server). Requests count in the failed-login throttle,
//!   and at most three links an hour are mailed to one operator.
//! - `GET /admin/reset/{token}` shows the form; only `POST` uses the link (mail scanners
//!   open links), with a new password — and the operator's two-factor code, when they have
//!   one: the mailbox alone does not get past it. A link works once, for 30 minutes.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tera::Context;

use super::{
    LOGIN_CSRF_COOKIE, SESSION_COOKIE, cookie_value, page_response, set_cookie, tokens_match,
};
use crate::app::operators::{ResetOutcome, ResetRequest, SESSION_MAX_AGE, random_token};
use crate::operators::Password;
use crate::web::AppState;
use crate::web::client::ClientAddr;
use crate::web::error::PageError;

/// What the request form answers, for every address.
const SENT: &str = "If that address belongs to an operator, a sign-in link is on its way. It works once, within 30 minutes.";

/// Renders `console/reset.html` in `mode` with a fresh double-submit CSRF token.
fn reset_page(
    state: &AppState,
    status: StatusCode,
    mode: &str,
    fill: impl FnOnce(&mut Context),
) -> Result<Response, PageError> {
    let token = random_token();
    let mut ctx = Context::new();
    ctx.insert("newsletter_name", &state.settings().newsletter.name.0);
    ctx.insert("operator_email", &None::<String>);
    ctx.insert("flash_message", &None::<String>);
    ctx.insert("login_csrf", &token);
    ctx.insert("mode", mode);
    ctx.insert("error", &None::<String>);
    ctx.insert("message", &None::<String>);
    fill(&mut ctx);
    let html = state.renderer().render_page("console/reset.html", &ctx)?;
    let mut response = page_response(status, html);
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_CSRF_COOKIE, &token, Some(3600)),
    );
    Ok(response)
}

fn with_retry_after(mut response: Response, retry_after: std::time::Duration) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// `GET /admin/reset`.
pub(super) async fn request_page(State(state): State<AppState>) -> Result<Response, PageError> {
    reset_page(&state, StatusCode::OK, "request", |_| {})
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RequestForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    csrf_token: String,
}

/// `POST /admin/reset`.
pub(super) async fn request(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<RequestForm>,
) -> Result<Response, PageError> {
    let cookie = cookie_value(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !tokens_match(&form.csrf_token, &cookie) {
        return reset_page(&state, StatusCode::FORBIDDEN, "request", |ctx| {
            ctx.insert(
                "error",
                "The form's security token is missing or wrong. Please try again.",
            );
        });
    }
    match state
        .app
        .request_reset(&form.email, client)
        .await
        .map_err(super::internal)?
    {
        ResetRequest::Mail(pending) => {
            // Made and mailed after the answer: an operator's answer does no more work than an
            // unknown address's.
            let app = state.app.clone();
            tokio::spawn(async move {
                let to = pending.email().to_string();
                match app.send_reset_link(pending).await {
                    Ok(true) => tracing::info!(operator = %to, "sign-in link mailed"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(operator = %to, error = %e, "mailing a sign-in link failed")
                    }
                }
            });
        }
        ResetRequest::Nothing => {}
        ResetRequest::Throttled { retry_after } => {
            let page = reset_page(&state, StatusCode::TOO_MANY_REQUESTS, "request", |ctx| {
                ctx.insert(
                    "error",
                    "Too many requests just now. Please try again later.",
                );
            })?;
            return Ok(with_retry_after(page, retry_after));
        }
    }
    reset_page(&state, StatusCode::OK, "sent", |ctx| {
        ctx.insert("message", SENT);
    })
}

fn dead(state: &AppState) -> Result<Response, PageError> {
    reset_page(state, StatusCode::GONE, "dead", |ctx| {
        ctx.insert(
            "message",
            "This sign-in link was used already or has expired. Ask for a new one.",
        );
    })
}

/// `GET /admin/reset/{token}`: the form (it does not use the link).
pub(super) async fn link_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    match state
        .app
        .reset_link(&token)
        .await
        .map_err(super::internal)?
    {
        None => dead(&state),
        Some(needs_code) => reset_page(&state, StatusCode::OK, "link", |ctx| {
            ctx.insert("needs_code", &needs_code);
            ctx.insert("token", &token);
        }),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct LinkForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
}

/// `POST /admin/reset/{token}`: new password (and code), a session, the link used up.
pub(super) async fn follow(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LinkForm>,
) -> Result<Response, PageError> {
    let Some(needs_code) = state
        .app
        .reset_link(&token)
        .await
        .map_err(super::internal)?
    else {
        return dead(&state);
    };
    let again = |status: StatusCode, error: &str| {
        reset_page(&state, status, "link", |ctx| {
            ctx.insert("needs_code", &needs_code);
            ctx.insert("token", &token);
            ctx.insert("error", error);
        })
    };
    let cookie = cookie_value(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !tokens_match(&form.csrf_token, &cookie) {
        return again(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or wrong. Please try again.",
        );
    }
    let password = match Password::parse(&form.password) {
        Ok(p) => p,
        Err(e) => {
            return again(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("New password: {e}"),
            );
        }
    };
    let session = match state
        .app
        .follow_reset(&token, &password, &form.totp, client)
        .await
        .map_err(super::internal)?
    {
        ResetOutcome::SignedIn(session) => session,
        ResetOutcome::Dead => return dead(&state),
        ResetOutcome::CodeRefused => {
            return again(
                StatusCode::UNAUTHORIZED,
                "The two-factor code is missing or wrong (or was used already).",
            );
        }
        ResetOutcome::Throttled { retry_after } => {
            let page = again(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts just now. Please try again later.",
            )?;
            return Ok(with_retry_after(page, retry_after));
        }
    };
    let mut response = Redirect::to("/admin").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(
            &state,
            SESSION_COOKIE,
            &session.token,
            Some(SESSION_MAX_AGE.num_seconds()),
        ),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_CSRF_COOKIE, "", None),
    );
    Ok(response)
}
