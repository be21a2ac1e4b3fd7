//! The operator console under `/admin`: server-rendered pages (Tera, `templates/console/`) that
//! work without JavaScript, for operators signed in with a password.
//!
//! The console is a front end: it parses forms and presents; every decision (the issue state
//! machine, who may manage operators, whether a login matches) is [`crate::app`]'s, and every
//! action lands in the operator log as [`crate::app::Actor::Operator`].
//!
//! Security: the session cookie holds a random token whose hash is the server-side session
//! (`HttpOnly`, `SameSite=Strict`, `Path=/admin`, `Secure` behind https); the session ends 12
//! hours after its last use, and 7 days after login at the latest
//! ([`crate::app::operators::renewed_expiry`]). Every state-changing
//! form carries the session's CSRF token (the login form a double-submit cookie's), compared in
//! constant time; handlers that change something take [`Posted`], which refuses a POST without
//! a valid one (403) before the handler runs, so nothing changes. Failed logins are
//! throttled per address and per client address (429 with `Retry-After`; the rule is
//! [`crate::app::operators::throttle`]'s).

mod account;
mod auth;
mod issues;
mod lists;
mod reader;
mod reset;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use cookie::{Cookie, SameSite};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tera::Context;

use super::AppState;
use super::error::PageError;
use crate::app::OpsError;
use crate::app::operators::SignedIn;

/// The session cookie: a random token, the key of a server-side session.
pub const SESSION_COOKIE: &str = "verdicts_session";
/// The login form's double-submit CSRF cookie (before there is a session).
pub const LOGIN_CSRF_COOKIE: &str = "verdicts_login_csrf";
/// A one-shot message for the next page ("Issue #3 scheduled").
const FLASH_COOKIE: &str = "verdicts_flash";
/// Largest request body the console reads (comparison uploads). Only signed-in requests get
/// that far: [`Console`] and [`Posted`] check the session before reading a byte of the body.
const MAX_BODY: usize = 9 * 1024 * 1024;
/// Largest body of the forms a stranger may post (sign-in, password reset): a few fields.
pub const MAX_LOGIN_BODY: usize = 16 * 1024;

/// What console pages may load: only the console's own CSS and script, and frames of its own
/// (the sandboxed preview).
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    // Hash the dummy password now, not during the first login for an unknown address (whose
    // answer would otherwise be slower than any other, telling that the address is unknown).
    std::thread::spawn(|| {
        crate::operators::dummy_hash();
    });
    Router::new()
        .route("/admin", get(issues::dashboard))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route(
            "/admin/login",
            get(auth::login_page)
                .post(auth::login)
                .layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route(
            "/admin/reset",
            get(reset::request_page)
                .post(reset::request)
                .layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route(
            "/admin/reset/{token}",
            get(reset::link_page)
                .post(reset::follow)
                .layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route("/admin/logout", post(auth::logout))
        .route("/admin/progress.json", get(issues::progress))
        .route("/admin/static/console.css", get(css))
        .route("/admin/static/console.js", get(js))
        .route("/admin/issues", post(issues::create))
        .route("/admin/issues/{id}", get(issues::detail))
        .route("/admin/issues/{id}/preview", get(issues::preview))
        .route("/admin/issues/{id}/{action}", post(issues::action))
        .route(
            "/admin/subscribers",
            get(lists::subscribers).post(lists::add_subscriber),
        )
        .route("/admin/subscribers/remove", post(lists::remove_subscriber))
        .route("/admin/subscribers/{id}", get(reader::reader))
        .route("/admin/subscribers.csv", get(lists::export_subscribers))
        .route(
            "/admin/comparisons",
            get(lists::comparisons).post(lists::upload_comparisons),
        )
        .route("/admin/bounces", get(lists::bounces))
        .route("/admin/deliverability", get(lists::deliverability))
        .route("/admin/log", get(lists::operator_log))
        .route(
            "/admin/operators",
            get(lists::operators).post(lists::add_operator),
        )
        .route("/admin/operators/remove", post(lists::remove_operator))
        .route("/admin/account", get(account::account))
        .route("/admin/account/totp/start", post(account::start))
        .route("/admin/account/totp/confirm", post(account::confirm))
        .route("/admin/account/totp/disable", post(account::disable))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn css() -> Response {
    static_file(
        "text/css; charset=utf-8",
        include_str!("../../../templates/console/console.css"),
    )
}

async fn js() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../../../templates/console/console.js"),
    )
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The cookies of a request, by name (the first of a name wins).
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// Whether cookies must be `Secure`: the console is served over https.
fn secure(state: &AppState) -> bool {
    state
        .settings()
        .http
        .public_url
        .as_str()
        .starts_with("https://")
}

/// A console cookie: `HttpOnly`, `SameSite=Strict`, `Path=/admin`, `Secure` behind https;
/// `max_age` `None` removes it.
fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let cookie = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/admin")
        .secure(secure(state))
        .max_age(cookie::time::Duration::seconds(max_age.unwrap_or(0)))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("cookie values are URL-safe base64")
}

/// Constant-time equality of two tokens (an empty one never matches).
fn tokens_match(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Kind of a flash message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlashKind {
    Ok,
    Error,
}

/// A signed-in request: the operator, their session token, and a flash message if one waits.
pub struct Console {
    who: SignedIn,
    token: String,
    flash: Option<(FlashKind, String)>,
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = cookie_value(&parts.headers, SESSION_COOKIE);
        let who = match &token {
            Some(token) => state
                .app
                .session(token)
                .await
                .map_err(|e| internal(e).into_response())?,
            None => None,
        };
        let (Some(who), Some(token)) = (who, token) else {
            return Err(
                if parts.method == Method::GET || parts.method == Method::HEAD {
                    Redirect::to("/admin/login").into_response()
                } else {
                    bare_forbidden("Sign in first: your session has ended.")
                },
            );
        };
        let flash = cookie_value(&parts.headers, FLASH_COOKIE).and_then(|v| {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v)
                .ok()?;
            let text = String::from_utf8(bytes).ok()?;
            let (kind, message) = text.split_once(':')?;
            let kind = if kind == "ok" {
                FlashKind::Ok
            } else {
                FlashKind::Error
            };
            Some((kind, message.chars().take(500).collect()))
        });
        Ok(Console { who, token, flash })
    }
}

/// A form that carries the session's CSRF token in its `csrf_token` field.
pub trait CsrfForm {
    fn csrf_token(&self) -> &str;
}

/// Implements [`CsrfForm`] for form structs with a `csrf_token: String` field.
macro_rules! csrf_form {
    ($($form:ty),* $(,)?) => {
        $(impl $crate::web::console::CsrfForm for $form {
            fn csrf_token(&self) -> &str {
                &self.csrf_token
            }
        })*
    };
}
use csrf_form;

/// A state-changing form of a signed-in operator whose CSRF token matched the session's.
/// Handlers that change something take this, so none can forget the check: a POST without
/// a session or without the right token is a 403 before the handler runs.
pub struct Posted<T> {
    console: Console,
    form: T,
}

impl<T> FromRequest<AppState> for Posted<T>
where
    T: serde::de::DeserializeOwned + CsrfForm + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let console = Console::from_request_parts(&mut parts, state).await?;
        let Form(form) = Form::<T>::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Some(refusal) = console.csrf_refusal(state, form.csrf_token()) {
            return Err(refusal);
        }
        Ok(Posted { console, form })
    }
}

impl Console {
    /// Checks a form's CSRF token against the session's: `Some(403 page)` when it does not
    /// match, and the handler must stop there.
    fn csrf_refusal(&self, state: &AppState, given: &str) -> Option<Response> {
        if tokens_match(given, &self.who.csrf_token) {
            return None;
        }
        Some(
            self.message(
                state,
                StatusCode::FORBIDDEN,
                "Forbidden",
                "The form's security token is missing or wrong; nothing was changed. Reload the page and try again.",
                "/admin",
            )
            .unwrap_or_else(IntoResponse::into_response),
        )
    }

    /// The values every console page uses.
    fn context(&self, state: &AppState, active: &str) -> Context {
        #[derive(Serialize)]
        struct NavItem {
            href: &'static str,
            label: &'static str,
            active: bool,
        }
        let mut items = vec![
            ("/admin", "Dashboard"),
            ("/admin/subscribers", "Subscribers"),
            ("/admin/comparisons", "Comparisons"),
            ("/admin/bounces", "Bounces"),
            ("/admin/deliverability", "Deliverability"),
            ("/admin/log", "Log"),
        ];
        if self.who.role == crate::operators::Role::Owner {
            items.push(("/admin/operators", "Operators"));
        }
        items.push(("/admin/account", "Account"));
        let nav: Vec<NavItem> = items
            .into_iter()
            .map(|(href, label)| NavItem {
                href,
                label,
                active: href == active,
            })
            .collect();
        let mut ctx = Context::new();
        ctx.insert("newsletter_name", &state.settings().newsletter.name.0);
        ctx.insert("operator_email", &self.who.email);
        ctx.insert("operator_role", self.who.role.as_str());
        ctx.insert("csrf_token", &self.who.csrf_token);
        ctx.insert("nav", &nav);
        let (kind, message) = match &self.flash {
            Some((FlashKind::Ok, m)) => ("ok", Some(m.as_str())),
            Some((FlashKind::Error, m)) => ("error", Some(m.as_str())),
            None => ("ok", None),
        };
        ctx.insert("flash_kind", kind);
        ctx.insert("flash_message", &message);
        ctx
    }

    /// Renders a console page with its headers (CSP, no caching); clears a shown flash.
    fn render(
        &self,
        state: &AppState,
        status: StatusCode,
        template: &str,
        ctx: &Context,
    ) -> Result<Response, PageError> {
        let html = state.renderer().render_page(template, ctx)?;
        let mut response = page_response(status, html);
        if self.flash.is_some() {
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(state, FLASH_COOKIE, "", None),
            );
        }
        Ok(response)
    }

    /// A page with one message (an error) and a link back.
    fn message(
        &self,
        state: &AppState,
        status: StatusCode,
        heading: &str,
        message: &str,
        back: &str,
    ) -> Result<Response, PageError> {
        let mut ctx = self.context(state, "");
        ctx.insert("heading", heading);
        ctx.insert("message", message);
        ctx.insert("back_url", back);
        self.render(state, status, "console/message.html", &ctx)
    }

    /// What an operation's error looks like in the console: the caller's errors as a page with
    /// the right status and the message; ours as a generic 500.
    fn ops_error(&self, state: &AppState, e: OpsError, back: &str) -> Result<Response, PageError> {
        let (status, heading) = match &e {
            OpsError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            OpsError::WrongState { .. } => (StatusCode::CONFLICT, "Not possible now"),
            OpsError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Check the input"),
            OpsError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            OpsError::Internal(_) => return Err(internal(e)),
        };
        self.message(state, status, heading, &e.to_string(), back)
    }

    /// A 303 to `to` with a message for the next page.
    fn redirect(&self, state: &AppState, to: &str, kind: FlashKind, message: &str) -> Response {
        let text = format!(
            "{}:{message}",
            if kind == FlashKind::Ok { "ok" } else { "error" }
        );
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let mut response = Redirect::to(to).into_response();
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(state, FLASH_COOKIE, &value, Some(60)),
        );
        response
    }
}

/// A rendered console page: HTML with the console's CSP and no caching.
fn page_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A 403 for a request without a session (no page chrome to render it in).
fn bare_forbidden(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CACHE_CONTROL, "no-store")],
        Html(format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Forbidden</title>\
             <h1>Forbidden</h1><p>{}</p><p><a href=\"/admin/login\">Sign in</a></p></html>",
            crate::render::escape_html(message)
        )),
    )
        .into_response()
}

fn internal(e: OpsError) -> PageError {
    match e {
        OpsError::Internal(e) => PageError::Internal(e),
        other => PageError::Internal(anyhow::anyhow!(other.to_string())),
    }
}

/// A time typed in a form: `datetime-local` (`2026-11-23T09:00`, UTC), RFC 3339, or a date.
fn parse_when(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err(format!(
        "{s:?} is not a time: use 2026-11-23T09:00 (UTC) or 2026-11-23"
    ))
}

/// A time for people: `2026-11-23 09:00`.
/// An operator-log entry as the dashboard and the log page show it.
#[derive(Serialize)]
struct LogView {
    at: String,
    actor: String,
    action: String,
    detail: String,
}

impl From<crate::store::operators::LogEntry> for LogView {
    fn from(e: crate::store::operators::LogEntry) -> LogView {
        LogView {
            at: when(e.at),
            actor: e.actor,
            action: e.action,
            detail: e.detail.unwrap_or_default(),
        }
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_parse_as_utc() {
        let t = parse_when("2026-11-23T09:30").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T09:30:00+00:00");
        assert_eq!(
            parse_when("2026-11-23T10:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-23T09:00:00+00:00"
        );
        assert!(
            parse_when("next monday")
                .unwrap_err()
                .contains("not a time")
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abd", "abc"));
        assert!(!tokens_match("ab", "abc"));
        assert!(!tokens_match("", ""));
    }
}
