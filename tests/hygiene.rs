//! Pending hygiene: one reminder after `signup.reminder_after`, deletion after
//! `signup.pending_ttl`, run by the worker. End to end with the running app and a real SMTP
//! server on loopback (short settings), and several workers' passes at once on one database.
//! Both databases.

mod common;

use std::time::Duration;

use common::TestApp;
use common::smtp::SmtpSink;
use verdicts::subscribers::{ConsentContext, SubscriberEmail, SubscriberStatus};

async fn count(store: &verdicts::store::Store, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_reader_gets_one_reminder_and_is_deleted_later() {
    let sink = SmtpSink::start();
    let app = TestApp::spawn_public(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = \"{}\"\ntimeout_seconds = 5\n\
         [signup]\nreminder_after = \"2s\"\npending_ttl = \"7s\"\n",
        sink.url()
    ))
    .await;
    for email in ["late@example.org", "quick@example.org"] {
        let r = app
            .client
            .post(app.url("/subscribe"))
            .form(&[("email", email)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let first = sink.wait_for(2, Duration::from_secs(15)).await;
    // quick@ confirms at once: no reminder, never deleted.
    let quick = first
        .iter()
        .find(|m| m.rcpt == "quick@example.org")
        .unwrap();
    let link = quick.link(&app.url("/confirm/")).expect("a confirm link");
    let r = app.client.post(&link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Welcome for quick@, and the one reminder for late@: a fresh confirmation link.
    let all = sink.wait_for(4, Duration::from_secs(20)).await;
    let to_late: Vec<_> = all
        .iter()
        .filter(|m| m.rcpt == "late@example.org")
        .collect();
    assert_eq!(to_late.len(), 2, "one confirmation and one reminder");
    let (a, b) = (
        to_late[0].link(&app.url("/confirm/")).unwrap(),
        to_late[1].link(&app.url("/confirm/")).unwrap(),
    );
    assert_ne!(a, b, "the reminder carries a fresh link");
    // The reminder is a mail of its own, with its own wording.
    assert_eq!(
        to_late[1].subject(),
        "Still want Weekly AI Tool Verdicts? Confirm your address"
    );
    assert!(to_late[1].text().contains("This is the only reminder"));
    assert_eq!(
        to_late[0].subject(),
        "Confirm your subscription to Weekly AI Tool Verdicts"
    );
    // Several more worker passes (every 2 s) send nothing more; after pending_ttl late@ is
    // gone with its consent records and tokens, quick@ stays.
    let late = SubscriberEmail::parse("late@example.org").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while app
        .store
        .get_subscriber_by_email(&late)
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "late@ was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        sink.messages()
            .iter()
            .filter(|m| m.rcpt == "late@example.org")
            .count(),
        2,
        "exactly one reminder"
    );
    assert_eq!(
        count(&app.store, "SELECT COUNT(*) FROM subscribers").await,
        1
    );
    let quick_row = app
        .store
        .get_subscriber_by_email(&SubscriberEmail::parse("quick@example.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(quick_row.status, SubscriberStatus::Confirmed);
    assert_eq!(
        count(
            &app.store,
            "SELECT COUNT(*) FROM consents WHERE subscriber_id NOT IN (SELECT id FROM subscribers)"
        )
        .await,
        0
    );
    // The used link of a deleted reader is dead.
    let r = app.client.post(&b).send().await.unwrap();
    assert_eq!(r.status(), 410);
    app.stop().await;
}

/// Four workers' passes at the same moment over one database (each its own connection pool):
/// every due reader is reminded exactly once, a reader signed up later is not, and a signup
/// again after the reminder makes the reader due for one new reminder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_workers_remind_each_reader_once() {
    let env = common::TestEnv::new().await;
    let settings = env.settings("[signup]\nreminder_after = \"1h\"\npending_ttl = \"2d\"\n");
    let store = env.store().await;
    let app = common::app(&store, &settings);
    let secret = settings.secret_key().unwrap();
    let requests: Vec<_> = (0..40)
        .map(|i| {
            verdicts::subscribers::lifecycle::signup_request(
                &secret,
                SubscriberEmail::parse(&format!("p{i:02}@example.org")).unwrap(),
                None,
                ConsentContext {
                    ip: None,
                    user_agent: None,
                    source: "test".into(),
                    consent_text_version: None,
                },
            )
        })
        .collect();
    app.sign_up_batch(&requests).await.unwrap();
    let queued = "SELECT COUNT(*) FROM outbound_mail WHERE kind = 'confirm'";
    assert_eq!(count(&store, queued).await, 40);

    // Not yet due: nothing.
    let now = chrono::Utc::now();
    let h = app.pending_hygiene(now).await.unwrap();
    assert!(h.reminded.is_empty() && h.deleted == 0, "{h:?}");

    let later = now + chrono::Duration::hours(2);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let store = verdicts::store::Store::connect(&settings.database)
            .await
            .unwrap();
        workers.push(common::app(&store, &settings));
    }
    let passes =
        futures_util::future::join_all(workers.iter().map(|w| w.pending_hygiene(later))).await;
    let mut reminded: Vec<i64> = passes
        .into_iter()
        .flat_map(|p| p.unwrap().reminded)
        .collect();
    let total = reminded.len();
    reminded.sort_unstable();
    reminded.dedup();
    assert_eq!((total, reminded.len()), (40, 40), "each reader once");
    assert_eq!(count(&store, queued).await, 40);
    let reminders = "SELECT COUNT(*) FROM outbound_mail WHERE kind = 'reminder'";
    assert_eq!(count(&store, reminders).await, 40);
    // Passes after that remind nobody again.
    let h = app
        .pending_hygiene(later + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(h.reminded.is_empty(), "{h:?}");

    // Past pending_ttl: all deleted, with their queued mail and tokens.
    let h = app
        .pending_hygiene(now + chrono::Duration::days(3))
        .await
        .unwrap();
    assert_eq!(h.deleted, 40);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM subscribers").await, 0);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM confirmation_tokens").await,
        0
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM outbound_mail").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hygiene_settings_are_checked() {
    let env = common::TestEnv::new().await;
    for (vars, key) in [
        (
            [
                ("VERDICTS__SIGNUP__PENDING_TTL", "1h"),
                ("VERDICTS__SIGNUP__REMINDER_AFTER", "2h"),
            ],
            "signup.pending_ttl",
        ),
        (
            [
                ("VERDICTS__SIGNUP__PENDING_TTL", "1h"),
                ("VERDICTS__SIGNUP__REMINDER_AFTER", "0s"),
            ],
            "signup.reminder_after",
        ),
    ] {
        let out = env.command().envs(vars).arg("migrate").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(key), "{stderr}");
    }
}
