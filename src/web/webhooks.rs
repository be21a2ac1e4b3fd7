//! `POST /webhooks/{ses|postmark|sendgrid|mailgun}`: bounce and complaint events from mail
//! providers. Each call is authenticated the provider's way ([`crate::bounces::webhooks`])
//! before anything is parsed or written: a wrong credential is 401, a bad signature, a stale
//! timestamp or a replayed token 403, and nothing is stored. Events are idempotent (the
//! provider's event id is the dedup key), so a provider's retry changes nothing.
//!
//! Anyone can post here, so nothing is buffered before it has to be: an unknown or
//! unconfigured provider (404), Postmark's Basic credentials (401) and SendGrid's signature
//! headers and timestamp (401/403) are answered from the request line and headers alone; only
//! then is the body read, at most [`max_body`] of it (413 past that, announced or sent), within
//! `http.request_timeout` like every request.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use secrecy::ExposeSecret;

use super::AppState;
use crate::bounces::Source;
use crate::bounces::intake::Classified;
use crate::bounces::webhooks::{self, Provider, ProviderEvent, WebhookError};

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/{provider}", post(receive))
}

fn refuse(e: &WebhookError) -> Response {
    let status = match e {
        WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        WebhookError::Forbidden(_) => StatusCode::FORBIDDEN,
        WebhookError::BadPayload(_) => StatusCode::BAD_REQUEST,
    };
    tracing::warn!(error = %e, "webhook call refused");
    let mut r = (status, format!("{e}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"webhooks\""),
        );
    }
    r
}

fn not_configured(provider: Provider) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("the {} webhook is not configured\n", provider.as_str()),
    )
        .into_response()
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The largest body a provider's call may have. SNS messages are at most 256 KB, quoted into
/// the SNS envelope; SendGrid posts its events in batches of up to 768 KB; Postmark and Mailgun
/// post one event each (a Postmark bounce may carry the bounced message's content).
pub const fn max_body(provider: Provider) -> usize {
    match provider {
        Provider::Ses => 512 * 1024,
        Provider::Postmark | Provider::Sendgrid | Provider::Mailgun => 1024 * 1024,
    }
}

/// What can be checked before the body is read: `Ok(false)` when the provider is not
/// configured (404); Postmark's Basic credentials; SendGrid's signature headers and their
/// timestamp. SES and Mailgun sign inside the body: they pass here and are checked after.
fn admit(state: &AppState, provider: Provider, headers: &HeaderMap) -> Result<bool, WebhookError> {
    let w = &state.settings().webhooks;
    match provider {
        Provider::Ses => Ok(w.ses_signing_cert_file.is_some()),
        Provider::Postmark => {
            let (Some(user), Some(password)) = (&w.postmark_username, &w.postmark_password) else {
                return Ok(false);
            };
            if webhooks::postmark_authorized(
                header_str(headers, "authorization"),
                user,
                password.expose_secret(),
            ) {
                Ok(true)
            } else {
                Err(WebhookError::Unauthorized(
                    "missing or wrong Basic credentials".into(),
                ))
            }
        }
        Provider::Sendgrid => {
            if w.sendgrid_public_key.is_none() {
                return Ok(false);
            }
            webhooks::sendgrid_headers(
                header_str(headers, "x-twilio-email-event-webhook-signature"),
                header_str(headers, "x-twilio-email-event-webhook-timestamp"),
                chrono::Utc::now().timestamp(),
                w.max_age.0.as_secs() as i64,
            )?;
            Ok(true)
        }
        Provider::Mailgun => Ok(w.mailgun_signing_key.is_some()),
    }
}

fn too_large(limit: usize) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {} KB\n", limit / 1024),
    )
        .into_response()
}

/// Reads at most `limit` bytes of `body`: a larger `Content-Length` is refused before a byte is
/// read, and a body that turns out larger once `limit` bytes have come.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Response> {
    let announced = header_str(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let mut buf = Vec::with_capacity(announced.map_or(0, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (StatusCode::BAD_REQUEST, format!("reading the body: {e}\n")).into_response()
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Authenticates the rest of an admitted call ([`admit`]) from its body and reads its events.
async fn authenticate(
    state: &AppState,
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Vec<ProviderEvent>>, WebhookError> {
    let w = &state.settings().webhooks;
    let now = chrono::Utc::now().timestamp();
    let max_age = w.max_age.0.as_secs() as i64;
    match provider {
        Provider::Ses => {
            let Some(path) = &w.ses_signing_cert_file else {
                return Ok(None);
            };
            let pem = std::fs::read(path)
                .map_err(|e| WebhookError::Forbidden(format!("reading the SNS cert: {e}")))?;
            use rustls_pki_types::pem::PemObject;
            let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).map_err(|e| {
                WebhookError::Forbidden(format!("webhooks.ses_signing_cert_file: {e:?}"))
            })?;
            webhooks::ses(body, &der, w.ses_topic_arn.as_deref(), now, max_age).map(Some)
        }
        // Its credentials were checked before the body was read.
        Provider::Postmark => webhooks::postmark(body).map(Some),
        Provider::Sendgrid => {
            let Some(key) = &w.sendgrid_public_key else {
                return Ok(None);
            };
            webhooks::sendgrid_verify(
                body,
                header_str(headers, "x-twilio-email-event-webhook-signature"),
                header_str(headers, "x-twilio-email-event-webhook-timestamp"),
                key,
                now,
                max_age,
            )?;
            webhooks::sendgrid(body).map(Some)
        }
        Provider::Mailgun => {
            let Some(key) = &w.mailgun_signing_key else {
                return Ok(None);
            };
            let call =
                webhooks::mailgun_verify(body, key.expose_secret().as_bytes(), now, max_age)?;
            let events = webhooks::mailgun(&call)?;
            let fresh = state
                .app
                .claim_webhook_nonce("mailgun", &call.signature.token, now * 1000)
                .await
                .map_err(|e| WebhookError::BadPayload(format!("storing the token: {e}")))?;
            if !fresh {
                return Err(WebhookError::Forbidden(
                    "this token was used before (replay)".into(),
                ));
            }
            Ok(Some(events))
        }
    }
}

async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    request: Request,
) -> Response {
    let Some(provider) = Provider::parse(&provider) else {
        return (StatusCode::NOT_FOUND, "unknown provider\n").into_response();
    };
    let (parts, body) = request.into_parts();
    match admit(&state, provider, &parts.headers) {
        Ok(true) => {}
        Ok(false) => return not_configured(provider),
        Err(e) => return refuse(&e),
    }
    let body = match read_body(body, &parts.headers, max_body(provider)).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let events = match authenticate(&state, provider, &parts.headers, &body).await {
        Ok(Some(events)) => events,
        Ok(None) => return not_configured(provider),
        Err(e) => return refuse(&e),
    };
    let mut applied = Vec::with_capacity(events.len());
    for e in &events {
        let result = state
            .app
            .apply_bounce_event(
                provider.as_str(),
                Classified {
                    kind: e.kind,
                    dedup_key: &e.dedup_key,
                    status: e.status.as_deref(),
                    reason: &e.reason,
                    clues: &e.clues,
                },
                Source::Webhook(provider),
            )
            .await;
        match result {
            Ok(p) => applied.push(p),
            Err(e) => {
                // A 500 makes the provider retry; what was applied is deduplicated then.
                crate::log_repeated!(
                    error,
                    "webhooks:apply",
                    e,
                    "applying a webhook event failed"
                );
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
            }
        }
    }
    axum::Json(serde_json::json!({ "events": applied })).into_response()
}
