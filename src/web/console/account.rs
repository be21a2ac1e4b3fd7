//! The signed-in operator's own account: two-factor sign-in (`GET /admin/account`, and the
//! forms posting to `/admin/account/totp/{start|confirm|disable}`). Starting and confirming an
//! enrolment take the current password, and turning it off a current code, each counted in the
//! failed-login throttle (429 with `Retry-After`): a stolen session alone cannot enrol its own
//! authenticator, nor guess codes. The `otpauth://` URI is shown as a QR code (SVG drawn here,
//! no script) only in the answer to a form that gave the password, never on a plain GET; it
//! becomes required at sign-in only once a first code from the app is confirmed, and the
//! recovery codes are shown once, then.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::{Console, FlashKind, Posted};
use crate::app::OpsError;
use crate::app::operators::{Guarded, Refusal, TotpState};
use crate::operators::totp;
use crate::web::AppState;
use crate::web::client::ClientAddr;
use crate::web::error::PageError;

const BACK: &str = "/admin/account";

/// What the account page shows besides the state.
#[derive(Default)]
struct Shown<'a> {
    /// Just made: shown once.
    recovery_codes: Option<&'a [String]>,
    /// A pending enrolment's URI, after the password was given.
    uri: Option<&'a str>,
    /// A message in place of the flash.
    message: Option<(FlashKind, &'a str)>,
}

/// Renders the account page.
async fn page(
    state: &AppState,
    console: &Console,
    status: StatusCode,
    shown: Shown<'_>,
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
    ctx.insert("recovery_codes", &shown.recovery_codes);
    if let Some((kind, message)) = shown.message {
        ctx.insert(
            "flash_kind",
            if kind == FlashKind::Ok { "ok" } else { "error" },
        );
        ctx.insert("flash_message", message);
    }
    match shown.uri.filter(|_| app_state == TotpState::Pending) {
        Some(uri) => {
            let secret = uri
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("secret="))
                .unwrap_or("");
            ctx.insert("show_qr", &true);
            ctx.insert("otpauth_uri", uri);
            ctx.insert("secret", secret);
            // Drawn here from our own URI: markup we made, not text anyone typed.
            ctx.insert("qr_svg", &totp::qr_svg(uri));
        }
        None => ctx.insert("show_qr", &false),
    }
    console.render(state, status, "console/account.html", &ctx)
}

/// `GET /admin/account`.
pub(super) async fn account(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, PageError> {
    page(&state, &console, StatusCode::OK, Shown::default()).await
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    password: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    totp: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ConfirmForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
}

super::csrf_form!(PasswordForm, CodeForm, ConfirmForm);

const WRONG_PASSWORD: &str = "That password is not right; nothing was changed.";

/// What the app answered a form of this page: `Ok(value)` when it was done, otherwise the
/// answer to a refusal (a wrong password: back to the page; a wrong code with a pending
/// enrolment: the QR code again; too many tries: 429 with `Retry-After`).
async fn settle<T>(
    state: &AppState,
    console: &Console,
    outcome: Result<Guarded<T>, OpsError>,
    wrong_code: &str,
) -> Result<Result<T, Response>, PageError> {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return console.ops_error(state, e, BACK).map(Err),
    };
    let response = match outcome {
        Guarded::Done(value) => return Ok(Ok(value)),
        Guarded::Refused(Refusal::Password) => {
            console.redirect(state, BACK, FlashKind::Error, WRONG_PASSWORD)
        }
        Guarded::Refused(Refusal::Code { uri: Some(uri) }) => {
            let shown = Shown {
                uri: Some(&uri),
                message: Some((FlashKind::Error, wrong_code)),
                ..Shown::default()
            };
            page(state, console, StatusCode::UNPROCESSABLE_ENTITY, shown).await?
        }
        Guarded::Refused(Refusal::Code { uri: None }) => {
            console.redirect(state, BACK, FlashKind::Error, wrong_code)
        }
        Guarded::Throttled { retry_after } => {
            let shown = Shown {
                message: Some((
                    FlashKind::Error,
                    "Too many wrong passwords or codes just now; nothing was changed. Please try again later.",
                )),
                ..Shown::default()
            };
            let mut response = page(state, console, StatusCode::TOO_MANY_REQUESTS, shown).await?;
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    };
    Ok(Err(response))
}

/// `POST /admin/account/totp/start`: with the current password, a pending secret to scan.
pub(super) async fn start(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Posted { console, form }: Posted<PasswordForm>,
) -> Result<Response, PageError> {
    let outcome = state
        .app
        .begin_totp(&console.who, &form.password, client)
        .await;
    match settle(&state, &console, outcome, WRONG_PASSWORD).await? {
        Ok(Some(uri)) => {
            let shown = Shown {
                uri: Some(&uri),
                message: Some((
                    FlashKind::Ok,
                    "Scan the code with your authenticator app, then enter the code it shows.",
                )),
                ..Shown::default()
            };
            page(&state, &console, StatusCode::OK, shown).await
        }
        Ok(None) => Ok(console.redirect(
            &state,
            BACK,
            FlashKind::Ok,
            "Two-factor sign-in is on already.",
        )),
        Err(response) => Ok(response),
    }
}

/// `POST /admin/account/totp/confirm`: the current password and the first code turn
/// two-factor sign-in on.
pub(super) async fn confirm(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Posted { console, form }: Posted<ConfirmForm>,
) -> Result<Response, PageError> {
    let outcome = state
        .app
        .confirm_totp(&console.who, &form.password, &form.totp, client)
        .await;
    let wrong_code =
        "That code is not right (or was used already). Enter the code your app shows now.";
    match settle(&state, &console, outcome, wrong_code).await? {
        Ok(codes) => {
            let shown = Shown {
                recovery_codes: Some(&codes),
                ..Shown::default()
            };
            page(&state, &console, StatusCode::OK, shown).await
        }
        Err(response) => Ok(response),
    }
}

/// `POST /admin/account/totp/disable`: needs a current code or a recovery code.
pub(super) async fn disable(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Posted { console, form }: Posted<CodeForm>,
) -> Result<Response, PageError> {
    let outcome = state
        .app
        .disable_own_totp(&console.who, &form.totp, client)
        .await;
    let wrong_code = "That code is not right (or was used already); two-factor sign-in stays on.";
    match settle(&state, &console, outcome, wrong_code).await? {
        Ok(()) => Ok(console.redirect(
            &state,
            BACK,
            FlashKind::Ok,
            "Two-factor sign-in is off: your password alone signs in.",
        )),
        Err(response) => Ok(response),
    }
}
