//! `GET /` (the signup page, works without JavaScript) and `POST /subscribe` (form-urlencoded or
//! JSON). The answer is the same "check your inbox" whether the address is new, pending, already
//! confirmed or unsubscribed, so nobody can probe who is subscribed.

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::client::ClientAddr;
use super::error::PageError;
use super::limits::Bucket;
use super::pages::{base_context, message_page};
use crate::subscribers::{ConsentContext, InvalidSubscriber, SubscriberEmail, SubscriberName};

/// Largest signup body we read.
pub const MAX_SIGNUP_BODY: usize = 16 * 1024;

/// `GET /` and `POST /subscribe` (rate-limited per client, [`super::limits`]).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new().route("/", get(page)).route(
        "/subscribe",
        post(subscribe)
            .route_layer(from_fn_with_state(
                (state.clone(), Bucket::Signup),
                super::limits::enforce,
            ))
            .layer(super::embed::cors(state)),
    )
}

/// The signup form's fields. `website` is a honeypot: people never see it, bots fill it.
#[derive(Debug, Default, Deserialize)]
struct SignupForm {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    website: Option<String>,
    /// Where to send the reader back to (a page of an allowed origin), for forms embedded on
    /// the site; the outcome is added to its query.
    #[serde(default)]
    redirect: Option<String>,
}

/// A signup that passed the edge checks.
struct NewSignup {
    email: SubscriberEmail,
    name: Option<SubscriberName>,
}

impl TryFrom<&SignupForm> for NewSignup {
    type Error = InvalidSubscriber;
    fn try_from(form: &SignupForm) -> Result<Self, Self::Error> {
        Ok(NewSignup {
            email: SubscriberEmail::parse(form.email.as_deref().unwrap_or(""))?,
            name: SubscriberName::parse(form.name.as_deref())?,
        })
    }
}

fn render_form(
    state: &AppState,
    status: StatusCode,
    error: Option<&str>,
    form: &SignupForm,
) -> Result<Response, PageError> {
    let mut ctx = base_context(state);
    ctx.insert("error", &error);
    ctx.insert("email", form.email.as_deref().unwrap_or(""));
    ctx.insert("name", form.name.as_deref().unwrap_or(""));
    ctx.insert(
        "subscribe_url",
        &state.settings().http.public_url.join("subscribe"),
    );
    ctx.insert(
        "archive_url",
        &state.settings().http.public_url.join("archive"),
    );
    ctx.insert(
        "consent_text",
        &format!(
            "We keep your address, the time and where you signed up as a record of your consent (consent text {}).",
            state.settings().signup.consent_text_version.0
        ),
    );
    let html = state.renderer().render_page("web/signup.html", &ctx)?;
    Ok((status, Html(html)).into_response())
}

async fn page(State(state): State<AppState>) -> Result<Response, PageError> {
    render_form(&state, StatusCode::OK, None, &SignupForm::default())
}

/// The consent record of a web request.
pub fn consent_of(state: &AppState, headers: &HeaderMap, ip: IpAddr) -> ConsentContext {
    ConsentContext {
        ip: Some(ip.to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(300).collect()),
        source: "form".into(),
        consent_text_version: Some(state.settings().signup.consent_text_version.0.clone()),
    }
}

enum Format {
    Html,
    Json,
}

fn reply(
    state: &AppState,
    format: &Format,
    status: StatusCode,
    message: &str,
    form: Option<&SignupForm>,
) -> Result<Response, PageError> {
    match format {
        Format::Json => {
            let body = if status.is_success() {
                json!({ "status": "check_your_inbox", "message": message })
            } else {
                json!({ "error": message })
            };
            Ok((status, Json(body)).into_response())
        }
        Format::Html => match (status, form) {
            (StatusCode::UNPROCESSABLE_ENTITY, Some(form)) => {
                render_form(state, status, Some(message), form)
            }
            _ if status.is_success() => {
                message_page(state, status, "Check your inbox", message, None)
            }
            _ => message_page(
                state,
                status,
                "That did not work",
                message,
                Some((
                    &state.settings().http.public_url.join("/"),
                    "Back to the signup form",
                )),
            ),
        },
    }
}

const CHECK_INBOX: &str = "If that address can receive our newsletter, a confirmation link is on its way. Click it to start getting the newsletter.";

async fn subscribe(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    request: Request<Body>,
) -> Result<Response, PageError> {
    let arrived = tokio::time::Instant::now();
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let format = if content_type.starts_with("application/json") {
        Format::Json
    } else {
        Format::Html
    };
    let body = match axum::body::to_bytes(request.into_body(), MAX_SIGNUP_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return reply(
                &state,
                &format,
                StatusCode::PAYLOAD_TOO_LARGE,
                "That request was too large.",
                None,
            );
        }
    };
    let parsed: Result<SignupForm, String> = match format {
        Format::Json => super::json::object(&body).map_err(|e| format!("Malformed JSON: {e}")),
        Format::Html
            if content_type.starts_with("application/x-www-form-urlencoded")
                || content_type.is_empty() =>
        {
            serde_urlencoded::from_bytes(&body).map_err(|e| format!("Malformed form: {e}"))
        }
        Format::Html => {
            Err("Send the form as application/x-www-form-urlencoded or application/json.".into())
        }
    };
    let form = match parsed {
        Ok(form) => form,
        Err(message) => {
            return reply(
                &state,
                &format,
                StatusCode::UNPROCESSABLE_ENTITY,
                &message,
                Some(&SignupForm::default()),
            );
        }
    };
    // A form embedded on the site names the page to return to; only an allowed origin's.
    let back = match (
        &format,
        form.redirect.as_deref().filter(|r| !r.trim().is_empty()),
    ) {
        (Format::Html, Some(r)) => match super::embed::redirect_target(&state, r, Ok(())) {
            Some(_) => Some(r.to_string()),
            None => {
                return reply(
                    &state,
                    &format,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "redirect: not a page of a site allowed to embed this form.",
                    Some(&SignupForm::default()),
                );
            }
        },
        _ => None,
    };
    let back_to = |outcome: Result<(), &str>| {
        back.as_deref()
            .and_then(|r| super::embed::redirect_target(&state, r, outcome))
            .map(|to| axum::response::Redirect::to(&to).into_response())
    };
    if form
        .website
        .as_deref()
        .is_some_and(|w| !w.trim().is_empty())
    {
        tracing::info!(%ip, "honeypot filled; signup ignored");
        if let Some(r) = back_to(Ok(())) {
            return Ok(r);
        }
        return reply(&state, &format, StatusCode::OK, CHECK_INBOX, None);
    }
    let signup = match NewSignup::try_from(&form) {
        Ok(s) => s,
        Err(e) => {
            if let Some(r) = back_to(Err(&e.0)) {
                return Ok(r);
            }
            return reply(
                &state,
                &format,
                StatusCode::UNPROCESSABLE_ENTITY,
                &e.0,
                Some(&form),
            );
        }
    };
    // The domain must take mail and not be a throwaway one: asked before the batch (DNS is
    // never waited on inside a transaction); nothing is written for a refused signup.
    if let Some(message) = state.door.check(signup.email.domain()).await.message() {
        if let Some(r) = back_to(Err(message)) {
            return Ok(r);
        }
        return reply(
            &state,
            &format,
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            Some(&form),
        );
    }
    let consent = consent_of(&state, &headers, ip);
    let outcome = state
        .signup_writer
        .submit(state.app.signup_request(signup.email, signup.name, consent))
        .await?;
    tracing::debug!(?outcome, "signup");
    state
        .signup_writer
        .note_answer_time(outcome, arrived.elapsed());
    state.mail_signal.notify();
    // The same answer for every state, at the same time too (see `answer_floor`).
    tokio::time::sleep_until(arrived + state.signup_writer.answer_floor()).await;
    if let Some(r) = back_to(Ok(())) {
        return Ok(r);
    }
    reply(&state, &format, StatusCode::OK, CHECK_INBOX, None)
}
