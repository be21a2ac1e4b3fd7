//! `POST /webhooks/{ses|postmark|sendgrid|mailgun}`: bounce and complaint events from mail
//! providers. Each call is authenticated the provider's way ([`crate::bounces::webhooks`])
//! before anything is read or written: a wrong credential is 401, a bad signature, a stale
//! timestamp or a replayed token 403, and nothing is stored. Events are idempotent (the
//! provider's event id is the dedup key), so a provider's retry changes nothing.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
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

/// Authenticates the call and reads its events.
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
        Provider::Postmark => {
            let (Some(user), Some(password)) = (&w.postmark_username, &w.postmark_password) else {
                return Ok(None);
            };
            if !webhooks::postmark_authorized(
                header_str(headers, "authorization"),
                user,
                password.expose_secret(),
            ) {
                return Err(WebhookError::Unauthorized(
                    "missing or wrong Basic credentials".into(),
                ));
            }
            webhooks::postmark(body).map(Some)
        }
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
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(provider) = Provider::parse(&provider) else {
        return (StatusCode::NOT_FOUND, "unknown provider\n").into_response();
    };
    let events = match authenticate(&state, provider, &headers, &body).await {
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
