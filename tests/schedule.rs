//! The scheduled worker and operator controls: idempotent fires (racing schedulers, DST folds),
//! catch-up inside and outside the window, an end-to-end weekly send over real SMTP, SIGTERM
//! during a send, and the admin API's issue operations. Both databases.

mod common;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::smtp::SmtpSink;
use common::{ADMIN_TOKEN, TestApp, TestEnv, comparison_json};
use reqwest::Method;
use serde_json::{Value, json};
use verdicts::app::schedule::FireOutcome;
use verdicts::comparisons::import::parse_json;
use verdicts::render::Renderer;
use verdicts::store::Store;
use verdicts::store::comparisons::Source;

async fn seed(store: &Store, published: &str, subscribers: usize) {
    let text = Value::Array(vec![comparison_json(
        "alpha-vs-beta",
        "Alpha vs Beta",
        published,
    )])
    .to_string();
    store
        .upsert_comparisons(&parse_json(&text).unwrap(), Source::Json, false)
        .await
        .unwrap();
    common::add_confirmed(store, subscribers, "s", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_firing_at_once_yield_one_issue_and_one_send() {
    let env = TestEnv::new().await;
    let store = env.store().await;
    seed(&store, "2026-11-17T10:00:00Z", 5).await;
    let settings = env.settings("");
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let other = env.store().await; // a second process's pool
    let (app_a, app_b) = (
        common::app(&store, &settings),
        common::app(&other, &settings),
    );
    let (a, b) = tokio::join!(app_a.fire(at), app_b.fire(at));
    let mut outcomes = vec![a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    // The other finds the fire handled, or still held by the first (it leaves it alone).
    assert!(
        matches!(
            outcomes[0],
            FireOutcome::AlreadyHandled | FireOutcome::InProgress
        ),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], FireOutcome::Started { recipients: 5, .. }),
        "{outcomes:?}"
    );
    assert_eq!(store.list_issues().await.unwrap().len(), 1);
    assert_eq!(store.count_rows("deliveries").await.unwrap(), 5);
    // The same fire again (a restart) does nothing.
    assert_eq!(
        common::app(&store, &settings).fire(at).await.unwrap(),
        FireOutcome::AlreadyHandled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dst_fold_that_repeats_the_hour_sends_once() {
    let env = TestEnv::new().await;
    let store = env.store().await;
    seed(&store, "2026-10-14T10:00:00Z", 3).await;
    // 02:30 on Sunday 2026-10-25 happens twice in Berlin (CEST, then CET).
    let settings =
        env.settings("[schedule]\ncron = \"0 30 2 * * Sun\"\ntimezone = \"Europe/Berlin\"");
    let tz = settings.schedule.timezone.0;
    // The cron crate yields the ambiguous local time once; the next fire is a week later.
    let first = verdicts::schedule::next_fire(
        &settings.schedule.cron.schedule,
        tz,
        Utc.with_ymd_and_hms(2026, 10, 24, 12, 0, 0).unwrap(),
    )
    .unwrap();
    assert_eq!(
        first,
        Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap(),
        "02:30 CEST"
    );
    let next = verdicts::schedule::next_fire(&settings.schedule.cron.schedule, tz, first).unwrap();
    assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 1, 1, 30, 0).unwrap());
    // A scheduler that fires at both 02:30s (CEST, then CET an hour later) still sends once.
    let second = Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap();
    let a = common::app(&store, &settings).fire(first).await.unwrap();
    let b = common::app(&store, &settings).fire(second).await.unwrap();
    assert!(
        matches!(a, FireOutcome::Started { recipients: 3, .. }),
        "{a:?}"
    );
    assert!(matches!(b, FireOutcome::Existing(_)), "{b:?}");
    assert_eq!(store.list_issues().await.unwrap().len(), 1);
    assert_eq!(store.count_rows("deliveries").await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_runs_inside_the_window_and_leaves_older_misses() {
    // Down over Monday 09:00, back at 11:00: within 6 h, so it fires now.
    let env = TestEnv::new().await;
    let store = env.store().await;
    seed(&store, "2026-11-17T10:00:00Z", 2).await;
    let settings = env.settings("");
    let back = Utc.with_ymd_and_hms(2026, 11, 23, 11, 0, 0).unwrap();
    // A fresh installation has missed nothing: it starts with the next fire.
    assert_eq!(
        common::app(&store, &settings).catch_up(back).await.unwrap(),
        None
    );
    assert!(store.list_issues().await.unwrap().is_empty());
    // It had been running since the week before.
    let ran_since = Utc.with_ymd_and_hms(2026, 11, 18, 8, 0, 0).unwrap();
    store.record_scheduler_start(ran_since).await.unwrap();
    let out = common::app(&store, &settings).catch_up(back).await.unwrap();
    assert!(
        matches!(out, Some(FireOutcome::Started { recipients: 2, .. })),
        "{out:?}"
    );
    // Nothing twice on the next start.
    assert_eq!(
        common::app(&store, &settings).catch_up(back).await.unwrap(),
        None
    );

    // Back at 20:00: 11 h late, older than catch_up: nothing is sent.
    let env = TestEnv::new().await;
    let store = env.store().await;
    seed(&store, "2026-11-17T10:00:00Z", 2).await;
    store.record_scheduler_start(ran_since).await.unwrap();
    let late = Utc.with_ymd_and_hms(2026, 11, 23, 20, 0, 0).unwrap();
    assert_eq!(
        common::app(&store, &settings).catch_up(late).await.unwrap(),
        None
    );
    assert!(store.list_issues().await.unwrap().is_empty());
    assert_eq!(store.count_rows("deliveries").await.unwrap(), 0);
}

/// Import, subscribe, let the schedule fire, receive the issue over real SMTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_the_schedule_fires_and_the_issue_arrives() {
    let sink = SmtpSink::start();
    let published = (Utc::now() - chrono::Duration::days(10)).to_rfc3339();
    let app = TestApp::spawn(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = \"{}\"\n[schedule]\ncron = \"* * * * * *\"",
        sink.url()
    ))
    .await;
    seed(&app.store, &published, 4).await;
    let mails = sink.wait_for(4, Duration::from_secs(30)).await;
    let mut rcpts: Vec<&str> = mails.iter().map(|m| m.rcpt.as_str()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            "s0@example.org",
            "s1@example.org",
            "s2@example.org",
            "s3@example.org"
        ]
    );
    assert!(
        mails[0]
            .subject()
            .starts_with("Alpha vs Beta — Weekly AI Tool Verdicts #1")
    );
    // Later fires (every second here) find the week's issue and send nothing again: wait for
    // two more fires to be claimed, then the ledger and the server still hold four.
    let fires = app.store.count_rows("schedule_fires").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while app.store.count_rows("schedule_fires").await.unwrap() < fires + 2 {
        assert!(std::time::Instant::now() < deadline, "no later fire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.store.count_rows("deliveries").await.unwrap(), 4);
    assert_eq!(app.store.list_issues().await.unwrap().len(), 1);
    assert_eq!(sink.messages().len(), 4);
    let r = app
        .admin(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        r.contains("verdicts_deliveries_total{outcome=\"sent\"} 4"),
        "{r}"
    );
    app.stop().await;
}

/// SIGTERM during a send: the worker stops taking work, settles what is in flight and exits 0;
/// a restart completes the send with nobody twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_send_exits_cleanly_and_a_restart_completes_it() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let env = TestEnv::new().await;
    let store = env.store().await;
    seed(&store, "2026-11-17T10:00:00Z", 150).await;
    let settings = env.settings("");
    let (issue, _) = verdicts::issues::freeze::create_issue(
        &store,
        &Renderer::new().unwrap(),
        &settings,
        "2026-W47".parse().unwrap(),
    )
    .await
    .unwrap()
    .expect("week 47 has comparisons");
    common::start_send(&store, issue.id).await;
    let sink = SmtpSink::start();
    let spawn = || {
        env.command()
            .arg("worker")
            .env("VERDICTS__MAIL__TRANSPORT", "smtp")
            .env("VERDICTS__SMTP__URL", sink.url())
            .env("VERDICTS__DELIVERY__RATE_PER_SECOND", "50")
            .env(
                "VERDICTS__SECURITY__SECRET_KEY",
                "0123456789abcdef0123456789abcdef-sigterm",
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut worker = spawn();
    while sink.messages().len() < 30 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(Pid::from_raw(worker.id() as i32), Signal::SIGTERM).unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = worker.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no clean exit within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit code {status}");
    let c = store.delivery_counts(issue.id).await.unwrap();
    assert_eq!(
        c.sent as usize,
        sink.messages().len(),
        "every message sent is settled"
    );
    assert!(c.pending > 0, "stopped before the end");
    let mut worker = spawn();
    let t = Instant::now();
    while store.issue_status(issue.id).await.unwrap() != Some(verdicts::issues::IssueStatus::Sent) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the restart did not finish the send"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = worker.kill();
    let _ = worker.wait();
    let mut rcpts: Vec<String> = sink.messages().into_iter().map(|m| m.rcpt).collect();
    rcpts.sort();
    let total = rcpts.len();
    rcpts.dedup();
    assert_eq!((total, rcpts.len()), (150, 150), "everyone exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_controls_issues_only_with_the_token() {
    let sink = SmtpSink::start();
    let app = TestApp::spawn(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = \"{}\"\n[schedule]\ncron = \"0 0 9 1 1 *\"",
        sink.url()
    ))
    .await;
    seed(&app.store, "2026-11-17T10:00:00Z", 3).await;
    let r = app
        .admin(Method::POST, "/api/issues")
        .json(&json!({"week": "2026-W47"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Without or with a wrong token: 401, and nothing changes.
    for token in [None, Some("wrong-token-0123456789")] {
        for action in ["send", "pause", "cancel", "schedule", "test-send"] {
            let mut req = app.client.post(app.url(&format!("/api/issues/1/{action}")));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            assert_eq!(req.send().await.unwrap().status(), 401, "{action}");
        }
        let mut req = app.client.get(app.url("/api/subscribers"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    let status = |app: &TestApp| {
        let store = app.store.clone();
        async move {
            store.list_issues().await.unwrap()[0]
                .status
                .as_str()
                .to_string()
        }
    };
    assert_eq!(status(&app).await, "ready");
    assert!(sink.messages().is_empty());

    // A test send goes to one address, marked [TEST], and is not a delivery.
    let r = app
        .admin(Method::POST, "/api/issues/2026-W47/test-send")
        .json(&json!({"to": "editor@example.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails[0].rcpt, "editor@example.org");
    assert!(mails[0].subject().starts_with("[TEST] "));
    assert_eq!(app.store.count_rows("deliveries").await.unwrap(), 0);

    // Schedule, reschedule, cancel before it starts.
    let r = app
        .admin(Method::POST, "/api/issues/1/schedule")
        .json(&json!({"at": "2030-01-01T09:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issue"]["status"], "scheduled");
    let r = app
        .admin(Method::POST, "/api/issues/1/schedule")
        .json(&json!({"at": "soon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .admin(Method::POST, "/api/issues/1/cancel")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status(&app).await, "cancelled");
    // Cancelled before any delivery, it gave back its number: it is named by its week.
    let r = app
        .admin(Method::POST, "/api/issues/2026-W47/send")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "a cancelled issue is not sent");
    let r = app
        .admin(Method::POST, "/api/issues/1/explode")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = app
        .admin(Method::GET, "/api/subscribers?status=confirmed")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["subscribers"].as_array().unwrap().len(), 3);
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM operator_log WHERE actor = 'api' ORDER BY id")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(
        actions,
        [
            "issue.create",
            "issue.test-send",
            "issue.schedule",
            "issue.cancel"
        ]
    );
    let _ = ADMIN_TOKEN;
    app.stop().await;
}

/// A clock the test moves by hand.
struct ManualClock(std::sync::Mutex<chrono::DateTime<Utc>>);

impl verdicts::schedule::Clock for ManualClock {
    fn now(&self) -> chrono::DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Makes every new issue fail to insert (as a full disk fails a write), or lets them through
/// again: the fire's claim goes through, its issue does not.
async fn issue_inserts_fail(env: &TestEnv, fail: bool) {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(&env.database_url)
        .await
        .unwrap();
    let sql = match (env.is_postgres(), fail) {
        (false, true) => {
            "CREATE TRIGGER writes_fail BEFORE INSERT ON issues \
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        }
        (false, false) => "DROP TRIGGER writes_fail",
        (true, true) => {
            "CREATE FUNCTION writes_fail() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' \
             USING ERRCODE = '53100'; END $$; \
             CREATE TRIGGER writes_fail BEFORE INSERT ON issues \
             FOR EACH ROW EXECUTE FUNCTION writes_fail()"
        }
        (true, false) => "DROP TRIGGER writes_fail ON issues; DROP FUNCTION writes_fail()",
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
}

/// A fire whose issue cannot be written (the claim went through) is not lost: the scheduler
/// tries it again while it is within schedule.catch_up, and once writes work the week's issue
/// is sending, with no restart and exactly one issue. A restart meanwhile catches it up too,
/// because the claim stays unfinished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_that_fails_is_tried_again_until_the_send_starts() {
    let env = TestEnv::new().await;
    let store = env.store().await;
    seed(&store, "2026-11-17T10:00:00Z", 3).await;
    let settings = env.settings("");
    let before = Utc.with_ymd_and_hms(2026, 11, 23, 8, 59, 0).unwrap();
    let clock = std::sync::Arc::new(ManualClock(std::sync::Mutex::new(before)));
    let app = common::app(&store, &settings);
    let (trigger, shutdown) = verdicts::shutdown::channel();
    issue_inserts_fail(&env, true).await;
    let scheduler = tokio::spawn(verdicts::schedule::run(
        app.clone(),
        clock.clone(),
        shutdown,
    ));
    // Once the scheduler has started, Monday 09:00 passes: the fire is claimed, its issue
    // fails.
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.first_scheduler_start().await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the scheduler did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    *clock.0.lock().unwrap() = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 30).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.count_rows("schedule_fires").await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "the fire was never claimed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It keeps failing for a few tries.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(store.list_issues().await.unwrap().is_empty());
    // Another process's start (a restart) finds the fire unfinished, not handled.
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    assert_eq!(
        common::app(&store, &settings).fire(at).await.unwrap(),
        FireOutcome::InProgress,
        "another process leaves a fresh claim to its holder"
    );
    // The disk is freed: the same scheduler starts the send by itself.
    issue_inserts_fail(&env, false).await;
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let issues = store.list_issues().await.unwrap();
        if issues
            .first()
            .is_some_and(|i| i.status == verdicts::issues::IssueStatus::Sending)
        {
            assert_eq!(issues.len(), 1, "exactly one issue");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fire was not retried: {issues:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(store.count_rows("deliveries").await.unwrap(), 3);
    // Done now: nobody fires it again.
    assert_eq!(
        common::app(&store, &settings).fire(at).await.unwrap(),
        FireOutcome::AlreadyHandled
    );
    trigger.trigger();
    scheduler.await.unwrap();
    assert_eq!(store.list_issues().await.unwrap().len(), 1);
}
