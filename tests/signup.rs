//! Readers sign up, confirm and leave: over HTTP against the running app, with the mail received
//! by a real SMTP server on loopback and its links followed as a reader would. Both databases.

mod common;

use std::time::Duration;

use common::TestApp;
use common::smtp::SmtpSink;
use reqwest::StatusCode;
use serde_json::json;
use verdicts::subscribers::SubscriberEmail;
use verdicts::subscribers::SubscriberStatus;

const WAIT: Duration = Duration::from_secs(15);

async fn app_with_smtp(sink: &SmtpSink, extra: &str) -> TestApp {
    TestApp::spawn(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = \"{}\"\ntimeout_seconds = 5\n{extra}",
        sink.url()
    ))
    .await
}

async fn status_of(app: &TestApp, email: &str) -> Option<SubscriberStatus> {
    app.store
        .get_subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
        .await
        .unwrap()
        .map(|s| s.status)
}

async fn subscribe(app: &TestApp, email: &str) -> (StatusCode, String) {
    let r = app
        .client
        .post(app.url("/subscribe"))
        .header("User-Agent", "verdicts-test/1.0")
        .form(&[("email", email), ("name", "Ada")])
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_opt_in_then_one_click_unsubscribe() {
    let sink = SmtpSink::start();
    let app = app_with_smtp(&sink, "").await;

    let (status, page) = subscribe(&app, "Ada.Lovelace@Example.ORG").await;
    assert_eq!(status, 200);
    assert!(page.contains("Check your inbox"), "{page}");
    let email = "ada.lovelace@example.org";
    assert_eq!(
        status_of(&app, email).await,
        Some(SubscriberStatus::Pending)
    );

    // The consent record: time, IP, user agent, source, consent text version.
    let row = sqlx::query_as::<
        _,
        (
            String,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
        ),
    >("SELECT event, ip, user_agent, source, consent_text_version FROM consents")
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "signup".into(),
            Some("127.0.0.1".into()),
            Some("verdicts-test/1.0".into()),
            "form".into(),
            Some("2026-11-01".into())
        )
    );

    // The confirmation arrives over SMTP, with the list headers every mail carries.
    let mails = sink.wait_for(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    let confirm = &mails[0];
    assert_eq!(confirm.rcpt, email);
    assert_eq!(
        confirm.subject(),
        "Confirm your subscription to Weekly AI Tool Verdicts"
    );
    assert!(confirm.header("To").unwrap().contains(email));
    let list_unsub = confirm.header("List-Unsubscribe").unwrap();
    assert!(
        list_unsub.starts_with("<http://127.0.0.1:8080/unsubscribe/"),
        "{list_unsub}"
    );
    assert_eq!(
        confirm.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(confirm.html().contains("Confirm my subscription"));
    let link = confirm
        .link("http://127.0.0.1:8080/confirm/")
        .expect("a confirmation link in the text part");
    let path = link.trim_start_matches("http://127.0.0.1:8080");

    // GET shows a button and changes nothing (link scanners).
    let r = app.get(path).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Confirm my subscription") && page.contains("method=\"post\""));
    assert_eq!(
        status_of(&app, email).await,
        Some(SubscriberStatus::Pending)
    );

    // POST confirms; the welcome mail follows, with the unsubscribe link.
    let r = app.client.post(app.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You&#39;re in"));
    assert_eq!(
        status_of(&app, email).await,
        Some(SubscriberStatus::Confirmed)
    );
    // The token is single use: a second click (or a mail scanner that posted) is told the
    // reader is already subscribed, not that the link expired, and nothing changes.
    for r in [
        app.client.post(app.url(path)).send().await.unwrap(),
        app.get(path).await,
    ] {
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(page.contains("You are already subscribed"), "{page}");
        assert!(
            !page.contains("expired") && !page.contains("Sign up again"),
            "{page}"
        );
    }
    let consents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM consents WHERE event = 'confirm'")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(consents, 1, "confirmed once");

    let mails = sink.wait_for(2, WAIT).await;
    let welcome = mails
        .iter()
        .find(|m| m.subject().starts_with("Welcome"))
        .expect("a welcome mail");
    assert_eq!(welcome.rcpt, email);
    assert!(welcome.text().contains("Welcome, Ada!"));
    let unsub = welcome
        .header("List-Unsubscribe")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_string();
    assert_eq!(
        welcome
            .link("http://127.0.0.1:8080/unsubscribe/")
            .as_deref(),
        Some(unsub.as_str()),
        "the visible link and the header agree"
    );
    let unsub_path = unsub.trim_start_matches("http://127.0.0.1:8080");

    // GET: a page with one button and a way back; nothing changes.
    let r = app.get(unsub_path).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Unsubscribe from Weekly AI Tool Verdicts?"));
    assert!(page.contains("Stay subscribed"));
    assert_eq!(
        status_of(&app, email).await,
        Some(SubscriberStatus::Confirmed)
    );

    // RFC 8058 one-click: form-urlencoded body, no cookies, 200, no redirect.
    let r = app
        .client
        .post(app.url(unsub_path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("You are unsubscribed"));
    assert_eq!(
        status_of(&app, email).await,
        Some(SubscriberStatus::Unsubscribed)
    );

    // Idempotent, and multipart works too.
    let form = reqwest::multipart::Form::new().text("List-Unsubscribe", "One-Click");
    let r = app
        .client
        .post(app.url(unsub_path))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        status_of(&app, email).await,
        Some(SubscriberStatus::Unsubscribed)
    );
    let events: Vec<String> = sqlx::query_scalar("SELECT event FROM consents ORDER BY id")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert_eq!(events, ["signup", "confirm", "unsubscribe"]);
    app.stop().await;
}

/// Waits until the mail queue holds nothing pending and returns how many mails it sent. What
/// the queue took is all that will ever go out, so this replaces "wait a while and see that
/// nothing more arrives".
async fn queue_drained(app: &TestApp) -> i64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (pending, sent, _) = app.store.outbound_counts().await.unwrap();
        if pending == 0 {
            return sent;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} mail(s) still queued"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_never_reveals_whether_an_address_is_subscribed() {
    let sink = SmtpSink::start();
    let app = app_with_smtp(&sink, "[signup]\nresend_interval = \"1h\"").await;
    let (_, new) = subscribe(&app, "new@example.org").await;
    let (_, pending_again) = subscribe(&app, "new@example.org").await;
    sink.wait_for(1, WAIT).await;

    // Confirm someone else, then sign them up again.
    app.store
        .add_subscriber(
            &verdicts::store::subscribers::NewSubscriber {
                email: &SubscriberEmail::parse("confirmed@example.org").unwrap(),
                name: None,
                confirmed: true,
            },
            &Default::default(),
            "no-suppression",
        )
        .await
        .unwrap();
    let (_, confirmed) = subscribe(&app, "confirmed@example.org").await;
    assert_eq!(new, pending_again);
    assert_eq!(new, confirmed);

    // A repeated signup within the interval sends no second confirmation; a confirmed
    // subscriber gets nothing new: the queue took one mail, and it is all that went out.
    assert_eq!(queue_drained(&app).await, 1);
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(
        status_of(&app, "confirmed@example.org").await,
        Some(SubscriberStatus::Confirmed)
    );

    // Unsubscribed and signing up again: double opt-in starts over.
    let id = app
        .store
        .get_subscriber_by_email(&SubscriberEmail::parse("confirmed@example.org").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    app.store
        .unsubscribe(id, &Default::default())
        .await
        .unwrap();
    let (_, unsubscribed) = subscribe(&app, "confirmed@example.org").await;
    assert_eq!(new, unsubscribed);
    assert_eq!(
        status_of(&app, "confirmed@example.org").await,
        Some(SubscriberStatus::Pending)
    );
    let mails = sink.wait_for(2, WAIT).await;
    assert!(mails.iter().any(|m| m.rcpt == "confirmed@example.org"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_unknown_links_get_a_friendly_page_and_change_nothing() {
    let app = TestApp::spawn("").await;
    subscribe(&app, "late@example.org").await;
    sqlx::query("UPDATE confirmation_tokens SET expires_at = 0")
        .execute(app.store.pool())
        .await
        .unwrap();
    // Read the token from the outbox mail.
    let outbox = app.env.path().join("data/outbox");
    let deadline = std::time::Instant::now() + WAIT;
    let eml = loop {
        if let Some(e) = std::fs::read_dir(&outbox).ok().and_then(|mut d| {
            d.find_map(|e| {
                e.ok()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            })
        }) {
            break std::fs::read_to_string(e.path()).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no outbox mail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let parsed = mail_parser::MessageParser::default()
        .parse(eml.as_bytes())
        .unwrap();
    let text = parsed.body_text(0).unwrap().into_owned();
    let start = text.find("/confirm/").unwrap();
    let token: String = text[start + 9..].chars().take(43).collect();

    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let r = app
            .client
            .request(method.clone(), app.url(&format!("/confirm/{token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 410, "{method}");
        let page = r.text().await.unwrap();
        assert!(page.contains("This link has expired") && page.contains("Sign up again"));
        assert!(
            !page.contains("late@example.org"),
            "no hint about the address"
        );
    }
    // A token of the right shape that was never issued looks exactly the same.
    let r = app.get(&format!("/confirm/{}", "A".repeat(43))).await;
    assert_eq!(r.status(), 410);
    assert_eq!(
        status_of(&app, "late@example.org").await,
        Some(SubscriberStatus::Pending)
    );
    app.stop().await;
}

/// Everything in this table gets a clear answer and writes no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_writes_nothing() {
    let app = TestApp::spawn("[signup]\nrate_limit_per_minute = 1000").await;
    let counts = |app: &TestApp| {
        let store = app.store.clone();
        async move {
            let mut out = Vec::new();
            for t in [
                "subscribers",
                "consents",
                "confirmation_tokens",
                "outbound_mail",
            ] {
                out.push(store.count_rows(t).await.unwrap());
            }
            out
        }
    };
    let before = counts(&app).await;
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "empty email",
            form,
            "email=".into(),
            422,
            "Please enter your email address",
        ),
        (
            "not an address",
            form,
            "email=ada".into(),
            422,
            "does not look like an email address",
        ),
        (
            "header injection",
            form,
            "email=ada%40example.org%0d%0aBcc%3A%20x%40y.z".into(),
            422,
            "spaces or line breaks",
        ),
        (
            "too long",
            form,
            format!("email={}%40example.org", "a".repeat(260)),
            422,
            "longer than 254",
        ),
        (
            "name with newline",
            form,
            "email=ada%40example.org&name=A%0aB".into(),
            422,
            "line breaks",
        ),
        (
            "malformed form",
            form,
            "email=a%40b.org&email=c%40d.org".into(),
            422,
            "Malformed form",
        ),
        (
            "wrong content type",
            "text/plain",
            "ada@example.org".into(),
            422,
            "application/x-www-form-urlencoded",
        ),
        (
            "malformed JSON",
            "application/json",
            "{\"email\":".into(),
            422,
            "Malformed JSON",
        ),
        (
            "JSON bad email",
            "application/json",
            json!({"email": "nope"}).to_string(),
            422,
            "does not look like",
        ),
        (
            "quoted local part",
            form,
            "email=%22ada..lovelace%22%40example.org".into(),
            422,
            "quoted name",
        ),
        (
            "IP literal",
            form,
            "email=ada%40%5B127.0.0.1%5D".into(),
            422,
            "IP address",
        ),
        (
            "bare IP domain",
            "application/json",
            json!({"email": "ada@127.0.0.1"}).to_string(),
            422,
            "IP address",
        ),
        (
            "bidi override in the name",
            form,
            "email=ada%40example.org&name=Ada%E2%80%AEevil".into(),
            422,
            "invisible formatting",
        ),
        (
            "zero-width space in the name",
            form,
            "email=ada%40example.org&name=A%E2%80%8Bda".into(),
            422,
            "invisible formatting",
        ),
        (
            "line separator in the name",
            "application/json",
            json!({"email": "ada@example.org", "name": "Ada\u{2028}Bcc"}).to_string(),
            422,
            "invisible formatting",
        ),
        (
            "too large",
            form,
            format!("email=a%40b.org&name={}", "x".repeat(20_000)),
            413,
            "too large",
        ),
    ];
    for (name, content_type, body, status, expected) in cases {
        let r = app
            .client
            .post(app.url("/subscribe"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{name}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains(expected),
            "{name}: expected {expected:?} in {text}"
        );
        if status == 422 && content_type == form {
            assert!(text.contains("<form"), "{name}: the form is shown again");
        }
    }
    // The form keeps what the reader typed.
    let r = app
        .client
        .post(app.url("/subscribe"))
        .form(&[("email", "ada@"), ("name", "Ada")])
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("value=\"ada@\"") && text.contains("value=\"Ada\""));

    // The honeypot: an accepted-looking answer, nothing stored.
    let r = app
        .client
        .post(app.url("/subscribe"))
        .form(&[
            ("email", "bot@example.org"),
            ("website", "http://spam.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Check your inbox"));

    // Tokens of the wrong shape, forged unsubscribe tokens: 404 pages.
    for path in [
        "/confirm/short",
        "/confirm/has%20space",
        "/unsubscribe/short",
        "/unsubscribe/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/unsubscribe/%00%00",
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let r = app
                .client
                .request(method.clone(), app.url(path))
                .body("List-Unsubscribe=One-Click")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{method} {path}");
        }
    }
    assert_eq!(counts(&app).await, before, "nothing was written");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signups_are_rate_limited_per_ip() {
    let app = TestApp::spawn("[signup]\nrate_limit_per_minute = 3").await;
    for i in 0..3 {
        let (status, _) = subscribe(&app, &format!("r{i}@example.org")).await;
        assert_eq!(status, 200);
    }
    let before = app.store.count_rows("subscribers").await.unwrap();
    let (status, page) = subscribe(&app, "r9@example.org").await;
    assert_eq!(status, 429);
    assert!(page.contains("Too many requests"), "{page}");
    assert_eq!(app.store.count_rows("subscribers").await.unwrap(), before);
    // JSON clients get JSON.
    let r = app
        .client
        .post(app.url("/subscribe"))
        .json(&json!({"email": "r10@example.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("Too many"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_signups_work_like_the_form() {
    let app = TestApp::spawn("").await;
    let r = app
        .client
        .post(app.url("/subscribe"))
        .json(&json!({"email": "json@example.org", "name": "Jay"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "check_your_inbox");
    assert_eq!(
        status_of(&app, "json@example.org").await,
        Some(SubscriberStatus::Pending)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signup_page_works_without_javascript() {
    let app = TestApp::spawn("").await;
    let r = app.get("/").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("<form method=\"post\" action=\"http://127.0.0.1:8080/subscribe\""));
    assert!(page.contains("name=\"email\"") && page.contains("type=\"email\""));
    assert!(
        page.contains("<label for=\"email\">"),
        "labelled for screen readers"
    );
    assert!(page.contains("name=\"viewport\""), "phone-friendly");
    assert!(!page.contains("<script"), "no JavaScript needed");
    assert!(page.contains("One email a week"));
    app.stop().await;
}

/// Many signups at once are written in shared batches: each address once, one confirmation
/// each, and a duplicate in the same burst counts as a repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signups_are_group_committed_without_loss_or_duplicates() {
    let app = TestApp::spawn("[signup]\nrate_limit_per_minute = 0").await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let client = app.client.clone();
        let url = app.url("/subscribe");
        // Every tenth address is sent twice.
        let email = format!("burst{}@example.org", if i % 10 == 9 { i - 1 } else { i });
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .form(&[("email", email.as_str())])
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(app.store.count_rows("subscribers").await.unwrap(), 54);
    assert_eq!(
        app.store.count_rows("confirmation_tokens").await.unwrap(),
        54
    );
    assert_eq!(app.store.count_rows("consents").await.unwrap(), 54);
    let mails = app.outbox(54).await;
    assert_eq!(mails.len(), 54, "one confirmation per address");
    let mut to: Vec<String> = mails
        .iter()
        .map(|m| {
            mail_parser::MessageParser::default()
                .parse(m.as_bytes())
                .unwrap()
                .to()
                .unwrap()
                .first()
                .unwrap()
                .address()
                .unwrap()
                .to_string()
        })
        .collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 54);
    app.stop().await;
}

/// The probe's mail bomb: `victim+0…49@` from 50 addresses. However the address is spelled,
/// the mailbox gets `signup.confirmations_per_mailbox_per_hour` confirmations, counted at the
/// real SMTP server, and every answer is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mailbox_gets_a_few_confirmations_however_it_is_spelled() {
    let sink = SmtpSink::start();
    let app = app_with_smtp(
        &sink,
        "[signup]\ntrust_forwarded_for = true\nconfirmations_per_mailbox_per_hour = 3",
    )
    .await;
    let mut answers = std::collections::HashSet::new();
    for i in 0..50 {
        let email = if i % 2 == 0 {
            format!("victim+{i}@example.org")
        } else {
            format!("Victim+{i}@EXAMPLE.org")
        };
        let r = app
            .client
            .post(app.url("/subscribe"))
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .form(&[("email", email.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{email}");
        answers.insert(r.text().await.unwrap());
    }
    assert_eq!(answers.len(), 1, "every signup got the same answer");
    let mails = sink.wait_for(3, WAIT).await;
    assert_eq!(queue_drained(&app).await, 3, "three queued, not fifty");
    assert_eq!(sink.messages().len(), 3, "three confirmations, not fifty");
    assert!(mails.iter().all(|m| m.rcpt.starts_with("victim+")));
    // Another mailbox is not affected.
    subscribe(&app, "neighbour@example.org").await;
    sink.wait_for(4, WAIT).await;
    assert_eq!(
        app.store.count_rows("subscribers").await.unwrap(),
        4,
        "only the mailed signups were stored"
    );
    app.stop().await;
}

/// A stranger signs up an address we know, with their own text as the name: the stored name
/// stays, and nothing they typed reaches the mailbox — the confirmation greets neutrally and
/// its `To:` carries no name. The same for a brand-new address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_text_never_reaches_an_unconfirmed_mailbox() {
    use verdicts::store::subscribers::NewSubscriber;
    let sink = SmtpSink::start();
    let app = app_with_smtp(&sink, "[signup]\nresend_interval = \"1s\"").await;
    let attacker = "Attacker Chosen visit evil.example";
    // Known addresses in each state a signup restarts: pending, unsubscribed, bounced.
    for (email, status) in [
        ("pending@example.org", None),
        ("left@example.org", Some("unsubscribed")),
        ("bounced@example.org", Some("bounced")),
    ] {
        let parsed = SubscriberEmail::parse(email).unwrap();
        let name = verdicts::subscribers::SubscriberName::parse(Some("Real Name"))
            .unwrap()
            .unwrap();
        app.store
            .add_subscriber(
                &NewSubscriber {
                    email: &parsed,
                    name: Some(&name),
                    confirmed: false,
                },
                &Default::default(),
                &format!("no-suppression-{email}"),
            )
            .await
            .unwrap();
        if let Some(status) = status {
            sqlx::query("UPDATE subscribers SET status = $1 WHERE email = $2")
                .bind(status)
                .bind(email)
                .execute(app.store.pool())
                .await
                .unwrap();
        }
    }
    let targets = [
        "pending@example.org",
        "left@example.org",
        "bounced@example.org",
        "fresh@example.org",
    ];
    for email in targets {
        let r = app
            .client
            .post(app.url("/subscribe"))
            .form(&[("email", email), ("name", attacker)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mails = sink.wait_for(4, WAIT).await;
    for email in targets {
        let mail = mails
            .iter()
            .find(|m| m.rcpt == email)
            .unwrap_or_else(|| panic!("no confirmation for {email}"));
        for part in [mail.raw.clone(), mail.text(), mail.html()] {
            assert!(!part.contains("Attacker"), "{email}: {part}");
            assert!(!part.contains("evil.example"), "{email}: {part}");
            assert!(!part.contains("Real Name"), "{email}: {part}");
        }
        assert_eq!(mail.header("To").as_deref(), Some(email), "{email}");
        assert!(mail.text().starts_with("Hi,"), "{}", mail.text());
        let stored = app
            .store
            .get_subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
            .await
            .unwrap()
            .unwrap();
        let expected = if email == "fresh@example.org" {
            Some(attacker)
        } else {
            Some("Real Name")
        };
        assert_eq!(stored.name.as_deref(), expected, "{email}");
        assert_eq!(stored.status, SubscriberStatus::Pending, "{email}");
    }
    app.stop().await;
}

/// The relay is down while readers sign up (nothing listens on its port): their confirmation
/// mails wait in the queue without losing attempts — a failing transport is nobody's attempt —
/// and go out as soon as the relay is back. Before, every try during the outage counted, and an
/// outage of about an hour (eight tries) failed them for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmations_wait_out_a_relay_outage_without_losing_attempts() {
    let port = common::free_port();
    let app = TestApp::spawn(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = \"smtp://127.0.0.1:{port}\"\ntimeout_seconds = 5\n"
    ))
    .await;
    let readers: Vec<String> = (0..3).map(|i| format!("outage{i}@example.org")).collect();
    for email in &readers {
        let (status, _) = subscribe(&app, email).await;
        assert_eq!(status, StatusCode::OK, "{email}");
    }
    // The first tries fail (the sender then holds off 1 s, 2 s, 4 s…): wait until each mail
    // has met the outage, then look.
    let deadline = std::time::Instant::now() + WAIT;
    let queued: Vec<(i64, String, Option<String>)> = loop {
        let rows: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT attempts, status, last_error FROM outbound_mail ORDER BY id")
                .fetch_all(app.store.pool())
                .await
                .unwrap();
        if rows.len() == 3 && rows.iter().all(|r| r.2.is_some()) {
            break rows;
        }
        assert!(std::time::Instant::now() < deadline, "no try yet: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(queued.len(), 3);
    for (attempts, status, error) in &queued {
        assert_eq!((*attempts, status.as_str()), (0, "pending"), "{queued:?}");
        let error = error.as_deref().unwrap_or_default();
        assert!(
            error.contains("connecting") && error.contains(&port.to_string()),
            "the outage is recorded: {error:?}"
        );
    }

    let sink = SmtpSink::start_on(Some(port), &[]);
    let mails = sink.wait_for(3, Duration::from_secs(40)).await;
    for email in &readers {
        let to_them = mails
            .iter()
            .filter(|m| m.header("To").unwrap().contains(email.as_str()))
            .count();
        assert_eq!(to_them, 1, "{email}");
    }
    assert!(
        mails
            .iter()
            .all(|m| m.link("http://127.0.0.1:8080/confirm/").is_some())
    );
    let (pending, sent, failed) = app.store.outbound_counts().await.unwrap();
    assert_eq!((pending, sent, failed), (0, 3, 0));
    let attempts: Vec<i64> = sqlx::query_scalar("SELECT attempts FROM outbound_mail ORDER BY id")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert_eq!(attempts, [1, 1, 1], "the one try that went through");
    app.stop().await;
}
