//! The signed-in operator's own account: two-factor sign-in (`GET /admin/account`, and the
//! forms posting to `/admin/account/totp/{start|confirm|disable}`). Enrolment shows the
//! `otpauth://` URI as a QR code (SVG drawn here, no script) and becomes required at sign-in
//! only once a first code from the app is confirmed; the recovery codes are shown once, then.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Console, FlashKind, Posted};
use crate::app::operators::TotpState;
use crate::operators::totp;
use crate::web::AppState;
use crate::web::error::PageError;

const BACK: &str = "/admin/account";

/// Renders the account page; `recovery_codes` are shown when just made.
async fn page(
    state: &AppState,
    console: &Console,
    status: StatusCode,
    recovery_codes: Option<&[String]>,
) -> Result<Response, PageError> {
    let mut ctx = console.context(state, BACK);
    let app_state = state
        .app
        .totp_state(&console.who)
        .await
        .map_err(super::internal)?;
    let (name, left) = match app_state {
        TotpState::Off => ("off", 0),
        TotpState::Pending => ("pending", 0),
        TotpState::On {
            recovery_codes_left,
        } => ("on", recovery_codes_left),
    };
    ctx.insert("totp_state", name);
    ctx.insert("recovery_codes_left", &left);
    ctx.insert("recovery_codes", &recovery_codes);
    if app_state == TotpState::Pending {
        let uri = state
            .app
            .begin_totp(&console.who)
            .await
            .map_err(super::internal)?
            .unwrap_or_default();
        let secret = uri
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("secret="))
            .unwrap_or("")
            .to_string();
        ctx.insert("otpauth_uri", &uri);
        ctx.insert("secret", &secret);
        // Drawn here from our own URI: markup we made, not text anyone typed.
        ctx.insert("qr_svg", &totp::qr_svg(&uri));
    }
    console.render(state, status, "console/account.html", &ctx)
}

/// `GET /admin/account`.
pub(super) async fn account(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, PageError> {
    page(&state, &console, StatusCode::OK, None).await
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    totp: String,
}

super::csrf_form!(CsrfOnly, CodeForm);

/// `POST /admin/account/totp/start`: a pending secret to scan.
pub(super) async fn start(
    State(state): State<AppState>,
    Posted { console, .. }: Posted<CsrfOnly>,
) -> Result<Response, PageError> {
    match state.app.begin_totp(&console.who).await {
        Ok(_) => Ok(console.redirect(
            &state,
            BACK,
            FlashKind::Ok,
            "Scan the code with your authenticator app, then enter the code it shows.",
        )),
        Err(e) => console.ops_error(&state, e, BACK),
    }
}

/// `POST /admin/account/totp/confirm`: the first code turns two-factor sign-in on.
pub(super) async fn confirm(
    State(state): State<AppState>,
    Posted { console, form }: Posted<CodeForm>,
) -> Result<Response, PageError> {
    match state.app.confirm_totp(&console.who, &form.totp).await {
        Ok(Some(codes)) => page(&state, &console, StatusCode::OK, Some(&codes)).await,
        Ok(None) => Ok(console.redirect(
            &state,
            BACK,
            FlashKind::Error,
            "That code is not right (or was used already). Enter the code your app shows now.",
        )),
        Err(e) => console.ops_error(&state, e, BACK),
    }
}

/// `POST /admin/account/totp/disable`: needs a current code or a recovery code.
pub(super) async fn disable(
    State(state): State<AppState>,
    Posted { console, form }: Posted<CodeForm>,
) -> Result<Response, PageError> {
    match state.app.disable_own_totp(&console.who, &form.totp).await {
        Ok(true) => Ok(console.redirect(
            &state,
            BACK,
            FlashKind::Ok,
            "Two-factor sign-in is off: your password alone signs in.",
        )),
        Ok(false) => Ok(console.redirect(
            &state,
            BACK,
            FlashKind::Error,
            "That code is not right (or was used already); two-factor sign-in stays on.",
        )),
        Err(e) => console.ops_error(&state, e, BACK),
    }
}
