//! `POST /webhooks/{ses|postmark|sendgrid|mailgun}` with payloads in the providers' documented
//! shapes, each authenticated the provider's way with real keys (made with openssl): events are
//! applied once; a wrong credential, a bad signature, a stale timestamp or a replay is refused
//! and writes nothing. Both databases.

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::TestApp;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use verdicts::subscribers::{SubscriberEmail, SubscriberStatus};

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Signs `data` with the PEM key in `dir/key` (SHA-256; RSA PKCS#1 v1.5 or ECDSA DER).
fn sign(dir: &Path, key: &str, data: &[u8]) -> Vec<u8> {
    std::fs::write(dir.join("to-sign"), data).unwrap();
    openssl(&["dgst", "-sha256", "-sign", key, "to-sign"], dir)
}

struct Keys {
    dir: tempfile::TempDir,
    sendgrid_public: String,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "sns-key.pem",
            "-out",
            "sns-cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=sns.eu-west-1.amazonaws.com",
        ],
        d,
    );
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sg-key.pem",
        ],
        d,
    );
    let der = openssl(
        &["ec", "-in", "sg-key.pem", "-pubout", "-outform", "DER"],
        d,
    );
    Keys {
        sendgrid_public: STANDARD.encode(der),
        dir,
    }
}

const MAILGUN_KEY: &str = "key-mailgun-signing-0123456789abcdef";
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:ses-bounces";

async fn app(keys: &Keys) -> TestApp {
    let app = TestApp::spawn(&format!(
        "[webhooks]\nses_signing_cert_file = {:?}\nses_topic_arn = {TOPIC:?}\n\
         postmark_username = \"postmark\"\npostmark_password = \"pm-secret-1\"\n\
         sendgrid_public_key = {:?}\nmailgun_signing_key = {MAILGUN_KEY:?}\n",
        keys.dir.path().join("sns-cert.pem").display().to_string(),
        keys.sendgrid_public
    ))
    .await;
    common::add_confirmed(&app.store, 10, "r", 4).await;
    app
}

async fn status_of(app: &TestApp, email: &str) -> SubscriberStatus {
    app.store
        .get_subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .status
}

async fn events(app: &TestApp) -> i64 {
    app.store.count_rows("bounce_events").await.unwrap()
}

async fn post(
    app: &TestApp,
    provider: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (StatusCode, String) {
    let mut r = app
        .client
        .post(app.url(&format!("/webhooks/{provider}")))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let r = r.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

// ------------------------------------------------------------------ SES

/// SNS's canonical string for a Notification (written out here independently of the code).
fn sns_string_to_sign(m: &Value) -> String {
    let mut s = String::new();
    for k in [
        "Message",
        "MessageId",
        "Subject",
        "Timestamp",
        "TopicArn",
        "Type",
    ] {
        if let Some(v) = m[k].as_str() {
            s.push_str(&format!("{k}\n{v}\n"));
        }
    }
    s
}

/// A notification signed now.
fn sns(keys: &Keys, id: &str, message: &Value) -> Value {
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    sns_at(keys, id, message, &now)
}

/// A notification SNS published (and signed) at `timestamp`.
fn sns_at(keys: &Keys, id: &str, message: &Value, timestamp: &str) -> Value {
    let mut m = json!({
        "Type": "Notification",
        "MessageId": id,
        "TopicArn": TOPIC,
        "Message": message.to_string(),
        "Timestamp": timestamp,
        "SignatureVersion": "2",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x"
    });
    let sig = sign(
        keys.dir.path(),
        "sns-key.pem",
        sns_string_to_sign(&m).as_bytes(),
    );
    m["Signature"] = STANDARD.encode(sig).into();
    m
}

fn ses_bounce(email: &str) -> Value {
    json!({
        "notificationType": "Bounce",
        "bounce": {
            "feedbackId": "0102017c1c8a7f1a-4f9e1f2e-1b1f-4d1a-9b8e-7e1c2d3e4f5a-000000",
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{
                "emailAddress": email,
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown"
            }],
            "timestamp": "2026-11-23T09:00:19.000Z",
            "remoteMtaIp": "203.0.113.25",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"
        },
        "mail": {
            "timestamp": "2026-11-23T09:00:12.000Z",
            "source": "verdicts@shiporskip.example",
            "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/shiporskip.example",
            "messageId": "0102017c1c8a7e5b-2b8e1c4d-aaaa-bbbb-cccc-1234567890ab-000000",
            "destination": [email],
            "headersTruncated": false,
            "commonHeaders": { "from": ["verdicts@shiporskip.example"], "to": [email],
                               "subject": "Weekly AI Tool Verdicts #1" }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_notifications_are_verified_with_the_sns_certificate() {
    let keys = keys();
    let app = app(&keys).await;
    let bounce = sns(&keys, "9a1b2c3d-0001", &ses_bounce("r0001@example.org"));
    let body = bounce.to_string();
    let (status, text) = post(&app, "ses", body.as_bytes(), &[]).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["events"][0]["kind"], "hard");
    assert_eq!(v["events"][0]["effect"], "bounced");
    assert_eq!(
        status_of(&app, "r0001@example.org").await,
        SubscriberStatus::Bounced
    );

    // SNS retries the same message: one event.
    let (status, text) = post(&app, "ses", body.as_bytes(), &[]).await;
    assert_eq!(status, 200);
    assert!(text.contains("\"effect\":\"duplicate\""), "{text}");
    assert_eq!(events(&app).await, 1);

    let complaint = sns(
        &keys,
        "9a1b2c3d-0002",
        &json!({
            "notificationType": "Complaint",
            "complaint": {
                "userAgent": "ExampleCorp Feedback Loop (V0.01)",
                "complainedRecipients": [{ "emailAddress": "r0002@example.org" }],
                "complaintFeedbackType": "abuse",
                "arrivalDate": "2026-11-23T10:00:00.000Z",
                "timestamp": "2026-11-23T10:00:01.000Z",
                "feedbackId": "0102017c1c8a7f1a-complaint-000000"
            },
            "mail": { "source": "verdicts@shiporskip.example", "messageId": "x",
                      "destination": ["r0002@example.org"] }
        }),
    );
    let (status, _) = post(&app, "ses", complaint.to_string().as_bytes(), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        status_of(&app, "r0002@example.org").await,
        SubscriberStatus::Unsubscribed
    );

    // Tampered, unsigned, SHA-1 or another topic: 403 and nothing written.
    let mut tampered = sns(&keys, "9a1b2c3d-0003", &ses_bounce("r0003@example.org"));
    tampered["Message"] = ses_bounce("r0004@example.org").to_string().into();
    let mut v1 = sns(&keys, "9a1b2c3d-0004", &ses_bounce("r0003@example.org"));
    v1["SignatureVersion"] = "1".into();
    let mut other_topic = json!({});
    {
        let mut m = sns(&keys, "9a1b2c3d-0005", &ses_bounce("r0003@example.org"));
        m["TopicArn"] = "arn:aws:sns:eu-west-1:999999999999:someone-else".into();
        let sig = sign(
            keys.dir.path(),
            "sns-key.pem",
            sns_string_to_sign(&m).as_bytes(),
        );
        m["Signature"] = STANDARD.encode(sig).into();
        std::mem::swap(&mut other_topic, &mut m);
    }
    for (what, body) in [
        ("tampered", tampered.to_string()),
        ("SignatureVersion 1", v1.to_string()),
        ("another topic", other_topic.to_string()),
        ("not SNS", "{\"hello\":1}".to_string()),
    ] {
        let (status, text) = post(&app, "ses", body.as_bytes(), &[]).await;
        assert_eq!(status, 403, "{what}: {text}");
    }
    assert_eq!(events(&app).await, 2);
    for e in ["r0003@example.org", "r0004@example.org"] {
        assert_eq!(status_of(&app, e).await, SubscriberStatus::Confirmed);
    }
    app.stop().await;
}

/// A validly signed notification is refused once it is older than `webhooks.max_age` (a
/// replay: the issue found one from 2020 applied), or when it claims to come from the future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_ses_notifications_are_refused() {
    let keys = keys();
    let app = app(&keys).await;
    let old = (chrono::Utc::now() - chrono::Duration::minutes(6))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let ahead = (chrono::Utc::now() + chrono::Duration::minutes(6))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    for (what, timestamp) in [
        ("from 2020", "2020-03-01T12:00:00.000Z"),
        ("six minutes old", old.as_str()),
        ("six minutes ahead", ahead.as_str()),
        ("not a time", "yesterday"),
    ] {
        let body = sns_at(&keys, what, &ses_bounce("r0001@example.org"), timestamp).to_string();
        let (status, text) = post(&app, "ses", body.as_bytes(), &[]).await;
        assert_eq!(status, 403, "{what}: {text}");
        assert!(text.contains("imestamp"), "{what}: {text}");
    }
    assert_eq!(events(&app).await, 0);
    assert_eq!(
        status_of(&app, "r0001@example.org").await,
        SubscriberStatus::Confirmed
    );
    // A minute old is within the default five.
    let recent = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let body = sns_at(&keys, "recent", &ses_bounce("r0001@example.org"), &recent).to_string();
    let (status, text) = post(&app, "ses", body.as_bytes(), &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        status_of(&app, "r0001@example.org").await,
        SubscriberStatus::Bounced
    );
    app.stop().await;
}

// ------------------------------------------------------------------ Postmark

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_calls_need_the_basic_credentials() {
    let keys = keys();
    let app = app(&keys).await;
    let bounce = json!({
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807i64,
        "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "issue-1",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Metadata": {}, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "Email": "r0003@example.org", "From": "verdicts@shiporskip.example",
        "BouncedAt": "2026-11-23T09:00:20.9070259Z", "DumpAvailable": true, "Inactive": true,
        "CanActivate": true, "Subject": "Weekly AI Tool Verdicts #1"
    })
    .to_string();
    let good = format!("Basic {}", STANDARD.encode("postmark:pm-secret-1"));
    let wrong = format!("Basic {}", STANDARD.encode("postmark:guess"));
    for (what, headers) in [
        ("no credentials", vec![]),
        ("wrong password", vec![("authorization", wrong)]),
        (
            "a bearer token",
            vec![("authorization", "Bearer pm-secret-1".to_string())],
        ),
    ] {
        let (status, text) = post(&app, "postmark", bounce.as_bytes(), &headers).await;
        assert_eq!(status, 401, "{what}: {text}");
    }
    assert_eq!(events(&app).await, 0);
    assert_eq!(
        status_of(&app, "r0003@example.org").await,
        SubscriberStatus::Confirmed
    );

    let auth = [("authorization", good)];
    let (status, text) = post(&app, "postmark", bounce.as_bytes(), &auth).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        status_of(&app, "r0003@example.org").await,
        SubscriberStatus::Bounced
    );
    let complaint = json!({
        "RecordType": "SpamComplaint", "MessageStream": "outbound", "ID": 42,
        "Type": "SpamComplaint", "TypeCode": 512, "Name": "Spam complaint",
        "MessageID": "00000000-0000-0000-0000-000000000000", "ServerID": 23,
        "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "Test spam complaint details", "Email": "r0004@example.org",
        "From": "verdicts@shiporskip.example", "BouncedAt": "2026-11-23T10:00:00Z",
        "Subject": "Weekly AI Tool Verdicts #1"
    })
    .to_string();
    let (status, _) = post(&app, "postmark", complaint.as_bytes(), &auth).await;
    assert_eq!(status, 200);
    let (status, text) = post(&app, "postmark", complaint.as_bytes(), &auth).await;
    assert_eq!(status, 200);
    assert!(text.contains("duplicate"), "{text}");
    assert_eq!(
        status_of(&app, "r0004@example.org").await,
        SubscriberStatus::Unsubscribed
    );
    assert_eq!(events(&app).await, 2);
    app.stop().await;
}

// ------------------------------------------------------------------ SendGrid

fn sendgrid_headers(keys: &Keys, body: &[u8], timestamp: i64) -> Vec<(&'static str, String)> {
    let mut signed = timestamp.to_string().into_bytes();
    signed.extend_from_slice(body);
    let sig = sign(keys.dir.path(), "sg-key.pem", &signed);
    vec![
        (
            "x-twilio-email-event-webhook-signature",
            STANDARD.encode(sig),
        ),
        (
            "x-twilio-email-event-webhook-timestamp",
            timestamp.to_string(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_events_need_a_valid_fresh_signature() {
    let keys = keys();
    let app = app(&keys).await;
    let body = json!([
        { "email": "r0005@example.org", "timestamp": 1763888420, "smtp-id": "<issue-1.sub-6@shiporskip.example>",
          "event": "bounce", "category": ["newsletter"], "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
          "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
          "reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce" },
        { "email": "r0006@example.org", "timestamp": 1763888421, "event": "spamreport",
          "sg_event_id": "Krfn3Ld6QY2f8-3tNIsWLg==", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.1" },
        { "email": "r0007@example.org", "timestamp": 1763888422, "event": "delivered",
          "sg_event_id": "rWVYmVk90MjZJ9iohOBa3w==", "response": "250 OK" }
    ])
    .to_string();
    let now = chrono::Utc::now().timestamp();

    let mut tampered = body.clone().replace("r0005", "r0008");
    let stale = sendgrid_headers(&keys, body.as_bytes(), now - 3600);
    for (what, b, headers) in [
        ("no signature", body.clone(), vec![]),
        (
            "tampered body",
            std::mem::take(&mut tampered),
            sendgrid_headers(&keys, body.as_bytes(), now),
        ),
        ("an hour old", body.clone(), stale),
    ] {
        let (status, text) = post(&app, "sendgrid", b.as_bytes(), &headers).await;
        assert!(status == 401 || status == 403, "{what}: {status} {text}");
    }
    assert_eq!(events(&app).await, 0);

    let headers = sendgrid_headers(&keys, body.as_bytes(), now);
    let (status, text) = post(&app, "sendgrid", body.as_bytes(), &headers).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["events"].as_array().unwrap().len(),
        2,
        "delivered is skipped"
    );
    assert_eq!(
        status_of(&app, "r0005@example.org").await,
        SubscriberStatus::Bounced
    );
    assert_eq!(
        status_of(&app, "r0006@example.org").await,
        SubscriberStatus::Unsubscribed
    );
    assert_eq!(
        status_of(&app, "r0007@example.org").await,
        SubscriberStatus::Confirmed
    );
    assert_eq!(events(&app).await, 2);
    app.stop().await;
}

// ------------------------------------------------------------------ Mailgun

fn mailgun_body(token: &str, timestamp: i64, key: &str, event: Value) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.to_string().as_bytes());
    mac.update(token.as_bytes());
    json!({
        "signature": {
            "timestamp": timestamp.to_string(),
            "token": token,
            "signature": hex::encode(mac.finalize().into_bytes()),
        },
        "event-data": event,
    })
    .to_string()
}

fn mailgun_failed(email: &str, id: &str) -> Value {
    json!({
        "event": "failed", "id": id, "timestamp": 1763888420.5, "severity": "permanent",
        "reason": "bounce", "log-level": "error", "recipient": email,
        "recipient-domain": "example.org", "envelope": { "sender": "bounces@shiporskip.example",
        "transport": "smtp", "targets": email },
        "message": { "headers": { "to": email, "message-id": "20261123090012.1.ABCDEF@shiporskip.example",
                     "from": "verdicts@shiporskip.example", "subject": "Weekly AI Tool Verdicts #1" } },
        "delivery-status": { "attempt-no": 1, "code": 550,
            "message": "5.1.1 The email account that you tried to reach does not exist.",
            "description": "", "enhanced-code": "5.1.1", "session-seconds": 0.4 },
        "flags": { "is-routed": false, "is-authenticated": true, "is-test-mode": false }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailgun_calls_are_signed_fresh_and_single_use() {
    let keys = keys();
    let app = app(&keys).await;
    let now = chrono::Utc::now().timestamp();
    let token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
    let body = mailgun_body(
        token,
        now,
        MAILGUN_KEY,
        mailgun_failed("r0008@example.org", "CPgfbmQMTCKtHW6uIWtuVe"),
    );
    for (what, b) in [
        (
            "wrong key",
            mailgun_body(
                "t2",
                now,
                "another-key",
                mailgun_failed("r0008@example.org", "e2"),
            ),
        ),
        (
            "stale",
            mailgun_body(
                "t3",
                now - 3600,
                MAILGUN_KEY,
                mailgun_failed("r0008@example.org", "e3"),
            ),
        ),
        // Mailgun signs only timestamp and token (not the body): a changed signature is refused.
        ("tampered signature", {
            let v: Value = serde_json::from_str(&body).unwrap();
            let sig = v["signature"]["signature"].as_str().unwrap().to_string();
            let flipped = if sig.starts_with('0') { "1" } else { "0" };
            body.replace(&sig, &format!("{flipped}{}", &sig[1..]))
        }),
    ] {
        let (status, text) = post(&app, "mailgun", b.as_bytes(), &[]).await;
        assert_eq!(status, 403, "{what}: {text}");
    }
    let (status, text) = post(&app, "mailgun", b"{}", &[]).await;
    assert_eq!(status, 401, "{text}");
    assert_eq!(events(&app).await, 0);

    let (status, text) = post(&app, "mailgun", body.as_bytes(), &[]).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"status\":\"5.1.1\""), "{text}");
    assert_eq!(
        status_of(&app, "r0008@example.org").await,
        SubscriberStatus::Bounced
    );
    // The same call again is a replay: refused.
    let (status, text) = post(&app, "mailgun", body.as_bytes(), &[]).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("replay"), "{text}");

    let complained = mailgun_body(
        "b2c1a0e9f8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8",
        now,
        MAILGUN_KEY,
        json!({ "event": "complained", "id": "-Agny091SquKnsrW2NEKUA", "timestamp": 1763888500.1,
                "recipient": "r0009@example.org", "message": { "headers": {
                "message-id": "20261123090012.2.ABCDEF@shiporskip.example" } } }),
    );
    let (status, _) = post(&app, "mailgun", complained.as_bytes(), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        status_of(&app, "r0009@example.org").await,
        SubscriberStatus::Unsubscribed
    );
    assert_eq!(events(&app).await, 2);

    let (status, _) = post(&app, "mailchimp", b"{}", &[]).await;
    assert_eq!(status, 404);
    app.stop().await;
}
