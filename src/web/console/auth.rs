//! Signing in and out: `GET|POST /admin/login`, `POST /admin/logout`.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tera::Context;

use super::{
    LOGIN_CSRF_COOKIE, Posted, SESSION_COOKIE, cookie_value, page_response, set_cookie,
    tokens_match,
};
use crate::app::operators::{LoginOutcome, SESSION_MAX_AGE, random_token};
use crate::web::AppState;
use crate::web::client::ClientAddr;
use crate::web::error::PageError;

/// The login form. Every field defaults to empty so that a missing one is a clear answer (403
/// or "wrong address or password"), not a rejection of the form.
#[derive(Debug, Default, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    /// Two-factor code (or a recovery code), for operators who turned it on.
    #[serde(default)]
    totp: String,
}

/// Renders the login page with `token` as its double-submit CSRF token (set as a cookie too).
fn login_page_with(
    state: &AppState,
    status: StatusCode,
    token: &str,
    email: &str,
    error: Option<&str>,
) -> Result<Response, PageError> {
    let mut ctx = Context::new();
    ctx.insert("newsletter_name", &state.settings().newsletter.name.0);
    ctx.insert("operator_email", &None::<String>);
    ctx.insert("flash_message", &None::<String>);
    ctx.insert("login_csrf", token);
    ctx.insert("email", email);
    ctx.insert("error", &error);
    let html = state.renderer().render_page("console/login.html", &ctx)?;
    let mut response = page_response(status, html);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_CSRF_COOKIE, token, Some(3600)),
    );
    Ok(response)
}

/// `GET /admin/login`: the form (or the dashboard when signed in already).
pub(super) async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE)
        && state.app.session(&token).await.ok().flatten().is_some()
    {
        return Ok(Redirect::to("/admin").into_response());
    }
    login_page_with(&state, StatusCode::OK, &random_token(), "", None)
}

/// `POST /admin/login`: checks the CSRF pair, then (throttled) the password.
pub(super) async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let cookie_token = cookie_value(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !tokens_match(&form.csrf_token, &cookie_token) {
        return login_page_with(
            &state,
            StatusCode::FORBIDDEN,
            &random_token(),
            &form.email,
            Some("The form's security token is missing or wrong. Please sign in again."),
        );
    }
    let outcome = state
        .app
        .sign_in(&form.email, &form.password, &form.totp, client)
        .await
        .map_err(super::internal)?;
    let session = match outcome {
        LoginOutcome::SignedIn(session) => session,
        LoginOutcome::Refused => {
            return login_page_with(
                &state,
                StatusCode::UNAUTHORIZED,
                &cookie_token,
                &form.email,
                Some("Wrong address or password (or two-factor code)."),
            );
        }
        LoginOutcome::Throttled { retry_after } => {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let mut response = login_page_with(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &cookie_token,
                &form.email,
                Some(&format!(
                    "Too many failed sign-in attempts. Try again in {seconds} seconds."
                )),
            )?;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return Ok(response);
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

#[derive(Debug, Default, Deserialize)]
pub(super) struct LogoutForm {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /admin/logout`: ends the session server-side and drops the cookie.
pub(super) async fn logout(
    State(state): State<AppState>,
    Posted { console, .. }: Posted<LogoutForm>,
) -> Result<Response, PageError> {
    state
        .app
        .log_out(&console.who, &console.token)
        .await
        .map_err(super::internal)?;
    let mut response = Redirect::to("/admin/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "", None),
    );
    Ok(response)
}

super::csrf_form!(LogoutForm);
