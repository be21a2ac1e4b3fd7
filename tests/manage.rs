//! A reader's manage page, as a reader meets it: the link in an issue received over SMTP, the
//! page in headless Chromium at phone width, pause / export / delete as plain form posts, and
//! the next issues, received over SMTP again, honouring them. Bad and foreign tokens and bad
//! form values change nothing. Both databases.

mod common;

use std::time::Duration;

use common::TestEnv;
use common::send_issue as send;
use common::smtp::SmtpSink;
use reqwest::StatusCode;
use verdicts::store::Store;
use verdicts::subscribers::SubscriberEmail;

async fn new_issue(env: &TestEnv, store: &Store, slug: &str, at: &str, week: &str) {
    use verdicts::comparisons::import::parse_json;
    use verdicts::store::comparisons::Source;
    let text = serde_json::Value::Array(vec![common::comparison_json(slug, "Next vs Other", at)])
        .to_string();
    store
        .upsert_comparisons(&parse_json(&text).unwrap(), Source::Json, false)
        .await
        .unwrap();
    verdicts::issues::freeze::create_issue(
        store,
        &verdicts::render::Renderer::new().unwrap(),
        &env.settings(""),
        week.parse().unwrap(),
    )
    .await
    .unwrap()
    .expect("the week has a comparison");
}

async fn exists(store: &Store, email: &str) -> bool {
    store
        .get_subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
        .await
        .unwrap()
        .is_some()
}

// Chromium and the CLI block their thread while the server answers: several threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_pauses_exports_and_deletes_from_the_link_in_the_issue() {
    let env = TestEnv::new().await;
    let (store, _) = common::frozen_issue(&env, 3).await;
    let sink = SmtpSink::start();
    let server = common::serve_with(&env, common::free_port(), &sink.transport()).await;
    let public = server.public.clone();
    let client = reqwest::Client::new();

    send(&env, &sink, &public, "1");
    let first = sink.wait_for(3, Duration::from_secs(20)).await;
    let manage_link = |rcpt: &str| {
        let m = first.iter().find(|m| m.rcpt == rcpt).unwrap();
        let link = m
            .link(&format!("{public}/manage/"))
            .expect("a manage link in the text part");
        assert!(
            m.html().contains(&format!("href=\"{link}\"")),
            "the HTML part links the same page"
        );
        assert!(m.html().contains("Manage your subscription"));
        link
    };
    let (pauser, leaver, reader) = (
        manage_link("r0000@example.org"),
        manage_link("r0001@example.org"),
        manage_link("r0002@example.org"),
    );
    assert!(pauser != leaver && leaver != reader, "one page per reader");

    // The page, as a phone shows it.
    let page = client.get(&pauser).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("r0000@example.org") && html.contains("name=\"weeks\""));
    assert!(!html.contains("<script"), "works without JavaScript");
    let shots = common::screenshot_dir("manage");
    common::screenshot(&pauser, 390, 1100, &shots.join("manage-390.png"));
    common::screenshot(&pauser, 1200, 900, &shots.join("manage-desktop.png"));

    // Bad values and bad tokens: a clear error, nothing changes.
    for (form, error) in [
        (vec![("action", "pause"), ("weeks", "3")], "weeks:"),
        (vec![("action", "pause")], "weeks:"),
        (vec![("action", "teleport")], "action:"),
    ] {
        let r = client.post(&reader).form(&form).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{form:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains(error), "{form:?}: {html}");
    }
    let token = reader.rsplit('/').next().unwrap().to_string();
    let mut forged = token.clone().into_bytes();
    forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let id = store
        .get_subscriber_by_email(&SubscriberEmail::parse("r0002@example.org").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    // The reader's unsubscribe token is not a manage token.
    let foreign = verdicts::subscribers::tokens::unsubscribe_token(
        &env.settings("").secret_key().unwrap(),
        id,
    );
    for bad in [forged, foreign, "short".to_string()] {
        let url = format!("{public}/manage/{bad}");
        assert_eq!(client.get(&url).send().await.unwrap().status(), 404);
        let r = client
            .post(&url)
            .form(&[("action", "delete")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
    assert!(exists(&store, "r0002@example.org").await);
    assert_eq!(store.paused_until(id).await.unwrap(), None);

    // Pause for four weeks.
    let r = client
        .post(&pauser)
        .form(&[("action", "pause"), ("weeks", "4")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Paused. Your emails start again on"),
        "{html}"
    );
    common::screenshot(&pauser, 390, 1100, &shots.join("manage-paused-390.png"));

    // Download my data.
    let r = client
        .post(&reader)
        .form(&[("action", "export")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()[reqwest::header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let data: serde_json::Value = r.json().await.unwrap();
    assert_eq!(data["address"], "r0002@example.org");
    assert_eq!(data["status"], "confirmed");
    assert!(!data["consent_events"].as_array().unwrap().is_empty());
    assert_eq!(data["bounces"], serde_json::json!([]));

    // Delete me: gone, as `subscribers remove` (suppressed), and the link is dead.
    let r = client
        .post(&leaver)
        .form(&[("action", "delete")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You are deleted"));
    assert!(!exists(&store, "r0001@example.org").await);
    assert_eq!(client.get(&leaver).send().await.unwrap().status(), 404);

    // The next issue reaches only the reader who did neither; the paused one is in the
    // ledger as skipped, reason `paused`.
    new_issue(
        &env,
        &store,
        "next-vs-other",
        "2026-11-24T10:00:00Z",
        "2026-W48",
    )
    .await;
    send(&env, &sink, &public, "2");
    let all = sink.wait_for(4, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all_now = sink.messages();
    assert_eq!(all_now.len(), 4, "one more message, no more");
    assert_eq!(all[3].rcpt, "r0002@example.org");
    let skipped: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT d.status, d.last_error FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
         JOIN issues i ON i.id = d.issue_id WHERE i.number = 2 AND s.email = 'r0000@example.org'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        skipped,
        [("skipped".to_string(), Some("paused".to_string()))]
    );

    // When the pause has passed, the reader is back by themselves.
    sqlx::query("UPDATE subscribers SET paused_until = 1 WHERE email = 'r0000@example.org'")
        .execute(store.pool())
        .await
        .unwrap();
    new_issue(
        &env,
        &store,
        "third-vs-fourth",
        "2026-12-01T10:00:00Z",
        "2026-W49",
    )
    .await;
    send(&env, &sink, &public, "3");
    let all = sink.wait_for(6, Duration::from_secs(20)).await;
    let mut third: Vec<&str> = all[4..].iter().map(|m| m.rcpt.as_str()).collect();
    third.sort_unstable();
    assert_eq!(third, ["r0000@example.org", "r0002@example.org"]);
}
