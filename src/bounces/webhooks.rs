//! Provider webhooks: each provider's authentication, and its payload → events.
//!
//! | provider | authentication | payload |
//! |---|---|---|
//! | Amazon SES (via SNS) | SNS message signature, `SignatureVersion` 2 (RSA-SHA256) over the canonical string, checked against the signing certificate in `webhooks.ses_signing_cert_file`; the signed `Timestamp` within `webhooks.max_age` | SNS `Notification` whose `Message` is the SES JSON (`Bounce`, `Complaint`) |
//! | Postmark | HTTP Basic auth set in the webhook URL (`webhooks.postmark_username`/`_password`); Postmark signs no timestamp, so `webhooks.max_age` does not apply | one JSON record (`RecordType` `Bounce` / `SpamComplaint`) |
//! | SendGrid | Signed Event Webhook: ECDSA P-256 / SHA-256 over timestamp ‖ body, public key `webhooks.sendgrid_public_key` | JSON array of events (`bounce`, `dropped`, `spamreport`, …) |
//! | Mailgun | HMAC-SHA256(signing key, timestamp ‖ token), token single use, timestamp within `webhooks.max_age` | `{signature, event-data}` (`failed`, `complained`) |
//!
//! Verification is done on the raw body before anything is parsed or written. SNS signing
//! certificates are not fetched from `SigningCertURL` (this binary makes no outbound HTTP calls);
//! the operator stores the certificate, and SignatureVersion 1 (SHA-1) is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::BounceKind;
use super::parse::Clues;

pub use super::kinds::Provider;

/// Why a webhook call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong credentials (401).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A signature that does not verify, a stale timestamp or a replayed token (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Authenticated but unreadable (400).
    #[error("bad payload: {0}")]
    BadPayload(String),
}

/// One event from a provider, ready to be resolved and applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub kind: BounceKind,
    /// `PROVIDER:EVENT-ID`: the provider's id of the event, so a retried call is one event.
    pub dedup_key: String,
    pub status: Option<String>,
    pub reason: String,
    pub clues: Clues,
}

fn bad(e: impl std::fmt::Display) -> WebhookError {
    WebhookError::BadPayload(e.to_string())
}

fn message_id_clue(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

// ---------------------------------------------------------------- SES (SNS)

/// An SNS HTTP(S) delivery.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsEnvelope {
    #[serde(rename = "Type")]
    kind: String,
    message_id: String,
    topic_arn: String,
    #[serde(default)]
    subject: Option<String>,
    message: String,
    timestamp: String,
    signature_version: String,
    signature: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "SubscribeURL", default)]
    subscribe_url: Option<String>,
}

impl SnsEnvelope {
    /// The canonical string SNS signs (fields in byte order, each `Name\nvalue\n`).
    fn string_to_sign(&self) -> String {
        let mut s = String::new();
        let mut field = |name: &str, value: &str| {
            s.push_str(name);
            s.push('\n');
            s.push_str(value);
            s.push('\n');
        };
        field("Message", &self.message);
        field("MessageId", &self.message_id);
        if self.kind == "Notification" {
            if let Some(subject) = &self.subject {
                field("Subject", subject);
            }
        } else {
            field("SubscribeURL", self.subscribe_url.as_deref().unwrap_or(""));
        }
        field("Timestamp", &self.timestamp);
        if self.kind != "Notification" {
            field("Token", self.token.as_deref().unwrap_or(""));
        }
        field("TopicArn", &self.topic_arn);
        field("Type", &self.kind);
        s
    }
}

/// SES: checks the SNS signature with the stored signing certificate (DER), then reads the SES
/// notification. A `SubscriptionConfirmation` yields no events (the operator confirms the
/// subscription by opening its SubscribeURL, which is logged).
pub fn ses(
    body: &[u8],
    cert_der: &[u8],
    topic_arn: Option<&str>,
    now: i64,
    max_age_seconds: i64,
) -> Result<Vec<ProviderEvent>, WebhookError> {
    let env: SnsEnvelope = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Forbidden(format!("not an SNS message: {e}")))?;
    if env.signature_version != "2" {
        return Err(WebhookError::Forbidden(format!(
            "SignatureVersion {} is not accepted (set the topic's SignatureVersion to 2)",
            env.signature_version
        )));
    }
    let signature = STANDARD
        .decode(env.signature.as_bytes())
        .map_err(|_| WebhookError::Forbidden("Signature is not base64".into()))?;
    let der = rustls_pki_types::CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| WebhookError::Forbidden(format!("the SNS signing certificate: {e}")))?;
    cert.verify_signature(
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        env.string_to_sign().as_bytes(),
        &signature,
    )
    .map_err(|_| WebhookError::Forbidden("the SNS signature does not verify".into()))?;
    if let Some(arn) = topic_arn
        && arn != env.topic_arn
    {
        return Err(WebhookError::Forbidden(format!(
            "TopicArn {} is not webhooks.ses_topic_arn",
            env.topic_arn
        )));
    }
    // The signed Timestamp (ISO 8601) is when SNS published the message: a validly signed
    // notification replayed later is refused like any other stale call.
    let published = chrono::DateTime::parse_from_rfc3339(&env.timestamp)
        .map_err(|_| WebhookError::Forbidden("the Timestamp is not an ISO 8601 time".into()))?;
    check_fresh(&published.timestamp().to_string(), now, max_age_seconds)?;
    if env.kind != "Notification" {
        tracing::warn!(
            kind = %env.kind,
            subscribe_url = env.subscribe_url.as_deref().unwrap_or(""),
            "SNS subscription message: confirm it by opening SubscribeURL"
        );
        return Ok(Vec::new());
    }
    let n: serde_json::Value = serde_json::from_str(&env.message).map_err(bad)?;
    let kind = n["notificationType"]
        .as_str()
        .or_else(|| n["eventType"].as_str())
        .unwrap_or("");
    let mut clues = Clues::default();
    let mail = &n["mail"];
    if let Some(id) = mail["commonHeaders"]["messageId"].as_str() {
        clues.message_ids.push(message_id_clue(id));
    }
    for h in mail["headers"].as_array().into_iter().flatten() {
        let (name, value) = (
            h["name"].as_str().unwrap_or("").to_ascii_lowercase(),
            h["value"].as_str().unwrap_or(""),
        );
        match name.as_str() {
            "message-id" => clues.message_ids.push(message_id_clue(value)),
            "feedback-id" => clues.feedback_ids.push(value.to_string()),
            "list-unsubscribe" => clues.unsubscribe_urls.extend(
                value
                    .split(',')
                    .map(|u| u.trim().trim_start_matches('<').trim_end_matches('>'))
                    .filter(|u| u.starts_with("http"))
                    .map(str::to_string),
            ),
            "return-path" => clues.envelope.push(value.to_string()),
            _ => {}
        }
    }
    if let Some(source) = mail["source"].as_str() {
        clues.envelope.push(source.to_string());
    }
    let mut events = Vec::new();
    match kind {
        "Bounce" => {
            let b = &n["bounce"];
            let kind = match b["bounceType"].as_str() {
                Some("Permanent") => BounceKind::Hard,
                _ => BounceKind::Soft,
            };
            for (i, r) in b["bouncedRecipients"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let mut clues = clues.clone();
                clues
                    .recipients
                    .extend(r["emailAddress"].as_str().map(str::to_string));
                events.push(ProviderEvent {
                    kind,
                    dedup_key: format!("ses:{}:{i}", env.message_id),
                    status: r["status"].as_str().map(str::to_string),
                    reason: r["diagnosticCode"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            format!(
                                "{} / {}",
                                b["bounceType"].as_str().unwrap_or("?"),
                                b["bounceSubType"].as_str().unwrap_or("?")
                            )
                        }),
                    clues,
                });
            }
        }
        "Complaint" => {
            let c = &n["complaint"];
            let recipients: Vec<String> = c["complainedRecipients"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["emailAddress"].as_str().map(str::to_string))
                .collect();
            let mut clues = clues.clone();
            clues.recipients.extend(recipients);
            let not_spam = c["complaintFeedbackType"].as_str() == Some("not-spam");
            events.push(ProviderEvent {
                kind: if not_spam {
                    BounceKind::Ignored
                } else {
                    BounceKind::Complaint
                },
                dedup_key: format!("ses:{}", env.message_id),
                status: None,
                reason: format!(
                    "complaint: {}",
                    c["complaintFeedbackType"].as_str().unwrap_or("abuse")
                ),
                clues,
            });
        }
        _ => {}
    }
    Ok(events)
}

// ---------------------------------------------------------------- Postmark

/// Postmark: HTTP Basic credentials, compared in constant time.
pub fn postmark_authorized(authorization: Option<&str>, user: &str, password: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(encoded) = authorization.and_then(|h| h.strip_prefix("Basic ")) else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{user}:{password}");
    decoded.ct_eq(expected.as_bytes()).into()
}

/// Postmark: one bounce or spam-complaint record.
pub fn postmark(body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
    let r: serde_json::Value = serde_json::from_slice(body).map_err(bad)?;
    let record = r["RecordType"].as_str().unwrap_or("");
    let id = r["ID"]
        .as_i64()
        .map(|i| i.to_string())
        .or_else(|| r["ID"].as_str().map(str::to_string))
        .ok_or_else(|| bad("no ID"))?;
    let t = r["Type"].as_str().unwrap_or("");
    let kind = match (record, t) {
        ("SpamComplaint", _) | (_, "SpamComplaint") => BounceKind::Complaint,
        ("Bounce", "HardBounce" | "BadEmailAddress" | "ManuallyDeactivated") => BounceKind::Hard,
        ("Bounce", "AutoResponder" | "Subscribe" | "Unsubscribe" | "OpenRelayTest") => {
            BounceKind::Ignored
        }
        ("Bounce", _) => BounceKind::Soft,
        _ => return Ok(Vec::new()),
    };
    let mut clues = Clues::default();
    clues
        .recipients
        .extend(r["Email"].as_str().map(str::to_string));
    if let Some(m) = r["Metadata"].as_object() {
        clues.message_ids.extend(
            m.get("message_id")
                .and_then(|v| v.as_str())
                .map(message_id_clue),
        );
    }
    Ok(vec![ProviderEvent {
        kind,
        dedup_key: format!("postmark:{record}:{id}"),
        status: None,
        reason: format!(
            "{t}: {}",
            r["Details"]
                .as_str()
                .or_else(|| r["Description"].as_str())
                .unwrap_or("")
        ),
        clues,
    }])
}

// ---------------------------------------------------------------- SendGrid

/// A signed call's Unix timestamp must be within `max_age_seconds` of now: an old call
/// replayed later is refused. The timestamp is the caller's, unauthenticated at this point:
/// any `i64` (`i64::MIN` included) is a refusal, never an overflow.
pub fn check_fresh(timestamp: &str, now: i64, max_age_seconds: i64) -> Result<(), WebhookError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::Forbidden("the timestamp is not a number".into()))?;
    let away = now.abs_diff(ts);
    if away > max_age_seconds.unsigned_abs() {
        let direction = if ts < now { "old" } else { "ahead" };
        return Err(WebhookError::Forbidden(format!(
            "the timestamp is {away}s {direction} of now (replay?)"
        )));
    }
    Ok(())
}

/// What of SendGrid's call can be checked before its body is read: both headers present and
/// the timestamp within `max_age_seconds` of now.
pub fn sendgrid_headers(
    signature: Option<&str>,
    timestamp: Option<&str>,
    now: i64,
    max_age_seconds: i64,
) -> Result<(), WebhookError> {
    let (Some(_), Some(timestamp)) = (signature, timestamp) else {
        return Err(sendgrid_missing());
    };
    check_fresh(timestamp, now, max_age_seconds)
}

fn sendgrid_missing() -> WebhookError {
    WebhookError::Unauthorized(
        "missing X-Twilio-Email-Event-Webhook-Signature or -Timestamp".into(),
    )
}

/// SendGrid's signed event webhook: `signature` is base64 DER ECDSA over `timestamp` ‖ body,
/// `public_key` the base64 DER SubjectPublicKeyInfo SendGrid shows.
pub fn sendgrid_verify(
    body: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
    public_key: &str,
    now: i64,
    max_age_seconds: i64,
) -> Result<(), WebhookError> {
    sendgrid_headers(signature, timestamp, now, max_age_seconds)?;
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(sendgrid_missing());
    };
    let sig = STANDARD
        .decode(signature.trim())
        .map_err(|_| WebhookError::Forbidden("the signature is not base64".into()))?;
    let key = STANDARD.decode(public_key.trim()).map_err(|_| {
        WebhookError::Forbidden("webhooks.sendgrid_public_key is not base64".into())
    })?;
    let spki = rustls_pki_types::SubjectPublicKeyInfoDer::from(key.as_slice());
    let entity = webpki::RawPublicKeyEntity::try_from(&spki)
        .map_err(|e| WebhookError::Forbidden(format!("webhooks.sendgrid_public_key: {e}")))?;
    let mut signed = timestamp.trim().as_bytes().to_vec();
    signed.extend_from_slice(body);
    entity
        .verify_signature(webpki::ring::ECDSA_P256_SHA256, &signed, &sig)
        .map_err(|_| WebhookError::Forbidden("the SendGrid signature does not verify".into()))
}

/// SendGrid: the events we act on (`bounce`, `blocked`, `dropped` for bounced addresses,
/// `spamreport`); deliveries, opens and clicks are skipped.
pub fn sendgrid(body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
    let events: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(bad)?;
    let mut out = Vec::new();
    for e in events {
        let event = e["event"].as_str().unwrap_or("");
        let reason = e["reason"].as_str().unwrap_or("").to_string();
        let kind = match (event, e["type"].as_str()) {
            ("bounce", Some("blocked")) => BounceKind::Soft,
            ("bounce", _) => BounceKind::Hard,
            ("blocked", _) => BounceKind::Soft,
            ("dropped", _) if reason.to_ascii_lowercase().contains("bounced address") => {
                BounceKind::Hard
            }
            ("spamreport", _) => BounceKind::Complaint,
            ("deferred", _) => BounceKind::Ignored,
            _ => continue,
        };
        let Some(id) = e["sg_event_id"].as_str() else {
            return Err(bad("an event without sg_event_id"));
        };
        let mut clues = Clues::default();
        clues
            .recipients
            .extend(e["email"].as_str().map(str::to_string));
        clues
            .message_ids
            .extend(e["smtp-id"].as_str().map(message_id_clue));
        out.push(ProviderEvent {
            kind,
            dedup_key: format!("sendgrid:{id}"),
            status: e["status"].as_str().map(str::to_string),
            reason: format!("{event}: {reason}"),
            clues,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------- Mailgun

/// A Mailgun webhook call: the signature block and the event.
#[derive(Debug, Deserialize)]
pub struct MailgunCall {
    pub signature: MailgunSignature,
    #[serde(rename = "event-data")]
    pub event_data: serde_json::Value,
}

#[derive(Debug, Deserialize)]
pub struct MailgunSignature {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
}

/// Mailgun: HMAC-SHA256(signing key, timestamp ‖ token) in hex, timestamp within `max_age`.
/// The caller refuses a token it has seen before (replay).
pub fn mailgun_verify(
    body: &[u8],
    signing_key: &[u8],
    now: i64,
    max_age_seconds: i64,
) -> Result<MailgunCall, WebhookError> {
    let call: MailgunCall = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Unauthorized(format!("no Mailgun signature block: {e}")))?;
    let s = &call.signature;
    check_fresh(&s.timestamp, now, max_age_seconds)?;
    let tag = hex::decode(&s.signature)
        .map_err(|_| WebhookError::Forbidden("the signature is not hex".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_key).expect("HMAC takes any key");
    mac.update(s.timestamp.as_bytes());
    mac.update(s.token.as_bytes());
    mac.verify_slice(&tag)
        .map_err(|_| WebhookError::Forbidden("the Mailgun signature does not verify".into()))?;
    Ok(call)
}

/// Mailgun: `failed` (permanent → hard, temporary → soft) and `complained`.
pub fn mailgun(call: &MailgunCall) -> Result<Vec<ProviderEvent>, WebhookError> {
    let e = &call.event_data;
    let event = e["event"].as_str().unwrap_or("");
    let kind = match (event, e["severity"].as_str()) {
        ("failed", Some("permanent")) => BounceKind::Hard,
        ("failed", _) => BounceKind::Soft,
        ("complained", _) => BounceKind::Complaint,
        _ => return Ok(Vec::new()),
    };
    let id = e["id"]
        .as_str()
        .ok_or_else(|| bad("event-data without id"))?;
    let mut clues = Clues::default();
    clues
        .recipients
        .extend(e["recipient"].as_str().map(str::to_string));
    clues.message_ids.extend(
        e["message"]["headers"]["message-id"]
            .as_str()
            .map(message_id_clue),
    );
    let status = &e["delivery-status"];
    let reason = [
        status["code"].as_i64().map(|c| c.to_string()),
        status["message"].as_str().map(str::to_string),
        status["description"].as_str().map(str::to_string),
        e["reason"].as_str().map(|r| format!("({r})")),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(" ");
    let status_code = status["enhanced-code"]
        .as_str()
        .map(str::to_string)
        .or_else(|| super::parse::status_in(status["message"].as_str().unwrap_or("")));
    Ok(vec![ProviderEvent {
        kind,
        dedup_key: format!("mailgun:{id}"),
        status: status_code,
        reason: if reason.is_empty() {
            event.to_string()
        } else {
            reason
        },
        clues,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn the_extremes_of_a_timestamp_are_refused_not_overflowed() {
        for ts in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX] {
            let e = check_fresh(&ts.to_string(), NOW, 300).unwrap_err();
            assert!(matches!(e, WebhookError::Forbidden(_)), "{ts}: {e}");
        }
        // Even with `now` at an extreme.
        assert!(check_fresh(&i64::MIN.to_string(), i64::MAX, 300).is_err());
        assert!(check_fresh(&i64::MAX.to_string(), i64::MIN, 300).is_err());
        assert!(check_fresh(&(NOW - 300).to_string(), NOW, 300).is_ok());
        assert!(check_fresh(&(NOW + 300).to_string(), NOW, 300).is_ok());
        assert!(check_fresh(&(NOW - 301).to_string(), NOW, 300).is_err());
        assert!(check_fresh(" 1800000000 ", NOW, 300).is_ok());
        assert!(check_fresh("soon", NOW, 300).is_err());
        assert!(check_fresh("99999999999999999999", NOW, 300).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        /// Any `i64` timestamp against any `now` and any window: never panics, and is accepted
        /// exactly when it is within the window of now.
        #[test]
        fn any_timestamp_is_accepted_only_within_the_window(
            ts in any::<i64>(),
            now in prop_oneof![Just(NOW), any::<i64>()],
            max_age in prop_oneof![Just(300_i64), 0..=86_400_i64, any::<i64>()],
        ) {
            let fresh = check_fresh(&ts.to_string(), now, max_age).is_ok();
            let within = (i128::from(now) - i128::from(ts)).abs() <= i128::from(max_age).abs();
            prop_assert_eq!(fresh, within);
        }

        /// Timestamps near now: those beyond the window are refused on both sides.
        #[test]
        fn near_now_the_window_is_exact(offset in -1_000_i64..=1_000) {
            let fresh = check_fresh(&(NOW + offset).to_string(), NOW, 300).is_ok();
            prop_assert_eq!(fresh, offset.abs() <= 300);
        }

        /// Any text as the timestamp header: never panics.
        #[test]
        fn any_text_never_panics(text in "\\PC{0,40}") {
            let _ = check_fresh(&text, NOW, 300);
            let _ = sendgrid_headers(Some("sig"), Some(&text), NOW, 300);
        }
    }
}
