//! `GET /metrics` in Prometheus/OpenMetrics text format, with figures that follow the database,
//! behind `Authorization: Bearer <metrics.token>` (default `admin.token`).

mod common;

use common::{ADMIN_TOKEN, TestApp};
use verdicts::subscribers::SubscriberEmail;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_signups_unsubscribes_and_subscribers() {
    let app = TestApp::spawn("").await;
    for e in ["m1@example.org", "m2@example.org"] {
        let r = app
            .client
            .post(app.url("/subscribe"))
            .form(&[("email", e)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let s = app
        .store
        .get_subscriber_by_email(&SubscriberEmail::parse("m1@example.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    app.store
        .unsubscribe(s.id, &Default::default())
        .await
        .unwrap();

    let r = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let body = r.text().await.unwrap();
    for line in [
        "verdicts_subscriber_events_total{event=\"signup\"} 2",
        "verdicts_subscriber_events_total{event=\"unsubscribe\"} 1",
        "verdicts_subscribers{status=\"pending\"} 1",
        "verdicts_subscribers{status=\"unsubscribed\"} 1",
        "verdicts_subscriber_events_total{event=\"confirm\"} 0",
        "verdicts_deliveries_total{outcome=\"sent\"} 0",
        "verdicts_send_rate_per_second 0.0",
    ] {
        assert!(body.contains(line), "missing {line:?} in:\n{body}");
    }
    let next: i64 = body
        .lines()
        .find_map(|l| l.strip_prefix("verdicts_next_scheduled_fire_timestamp_seconds "))
        .expect("the next fire is exposed")
        .parse()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(next > now && next <= now + 7 * 24 * 3600, "weekly: {next}");
    assert!(body.trim_end().ends_with("# EOF"));
    app.stop().await;
}

/// The probe's oracle: read the gauges, sign an address up, read again. Without the token a
/// stranger gets no figures at all, before or after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_read_metrics() {
    let app = TestApp::spawn("").await;
    let read = |token: Option<&'static str>| {
        let mut req = app.client.get(app.url("/metrics"));
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        async move { req.send().await.unwrap() }
    };
    for header in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some("Bearer test-admin-token-012345678"),
        Some("Basic dGVzdDp0ZXN0"),
        Some("test-admin-token-0123456789"),
    ] {
        let r = read(header).await;
        assert_eq!(r.status(), 401, "{header:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"metrics\"");
        let body = r.text().await.unwrap();
        assert!(!body.contains("verdicts_subscribers"), "{header:?}: {body}");
    }
    let before = read(Some("Bearer test-admin-token-0123456789")).await;
    assert_eq!(before.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_replaces_the_admin_token() {
    let app = TestApp::spawn("[metrics]\ntoken = \"scrape-token-0123456789\"").await;
    let get = |token: &'static str| {
        app.client
            .get(app.url("/metrics"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(get("scrape-token-0123456789").await.unwrap().status(), 200);
    assert_eq!(get(ADMIN_TOKEN).await.unwrap().status(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_not_found_without_any_token() {
    let app = TestApp::spawn_with("").await;
    let r = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("verdicts_"));
    app.stop().await;
}

/// The counters the console and `/metrics` read (migration 0014) against counting the tables.
async fn assert_counters_exact(store: &verdicts::store::Store, step: &str) {
    let pairs = |sql: &'static str| async move {
        let mut rows: Vec<(String, i64)> = sqlx::query_as(sql)
            .fetch_all(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.sort();
        rows
    };
    assert_eq!(
        pairs("SELECT status, n FROM subscriber_counts WHERE n <> 0").await,
        pairs("SELECT status, CAST(COUNT(*) AS BIGINT) FROM subscribers GROUP BY status").await,
        "subscribers by status after {step}"
    );
    assert_eq!(
        pairs("SELECT event, n FROM consent_counts WHERE n <> 0").await,
        pairs("SELECT event, CAST(COUNT(*) AS BIGINT) FROM consents GROUP BY event").await,
        "consents by event after {step}"
    );
    assert_eq!(
        pairs(
            "SELECT CAST(issue_id AS TEXT) || ':' || status, n FROM delivery_counts WHERE n <> 0"
        )
        .await,
        pairs(
            "SELECT CAST(issue_id AS TEXT) || ':' || status, CAST(COUNT(*) AS BIGINT)
               FROM deliveries GROUP BY issue_id, status"
        )
        .await,
        "deliveries by issue and status after {step}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_stay_exact_through_imports_sends_bounces_and_erasure() {
    let env = common::TestEnv::new().await;
    let (store, issue_id) = common::frozen_issue(&env, 40).await;
    assert_counters_exact(&store, "adding 40 confirmed readers").await;
    let csv = (0..25)
        .map(|i| format!("imported{i}@example.org,Reader {i}\n"))
        .collect::<String>();
    let file = env.write("list.csv", &format!("email,name\n{csv}"));
    env.cli(&["subscribers", "import", file.to_str().unwrap()])
        .ok();
    assert_counters_exact(&store, "an import").await;
    common::unsubscribe_by_email(&store, "imported3@example.org").await;
    env.cli(&["subscribers", "remove", "imported4@example.org"])
        .ok();
    assert_counters_exact(&store, "an unsubscribe and an erasure").await;

    let recipients = common::start_send(&store, issue_id).await;
    assert_eq!(recipients, 63, "40 + 25 imported, less the two who left");
    assert_counters_exact(&store, "the snapshot").await;
    // Settle as the sender does (batches of ids, only pending rows), fail a few, skip one.
    sqlx::query(
        "UPDATE deliveries SET status = 'sent', sent_at = $1, attempts = attempts + 1
          WHERE status = 'pending' AND id IN (SELECT id FROM deliveries WHERE issue_id = $2 ORDER BY id LIMIT 30)",
    )
    .bind(chrono::Utc::now().timestamp_millis())
    .bind(issue_id)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(
        "UPDATE deliveries SET status = 'failed', last_error = '550 no such user'
          WHERE status = 'pending' AND id IN (SELECT id FROM deliveries WHERE issue_id = $1 ORDER BY id DESC LIMIT 5)",
    )
    .bind(issue_id)
    .execute(store.pool())
    .await
    .unwrap();
    // A lease renewal changes no status, and counts nothing.
    sqlx::query("UPDATE deliveries SET lease_owner = 'w1' WHERE issue_id = $1")
        .bind(issue_id)
        .execute(store.pool())
        .await
        .unwrap();
    assert_counters_exact(&store, "settling 30 sent and 5 failed").await;
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!(
        (counts.total, counts.sent, counts.failed, counts.pending),
        (63, 30, 5, 28)
    );
    assert_eq!(counts.sent_last_minute, 30);
    // Erasing a reader who was mailed keeps their delivery row (counted) without them.
    env.cli(&["subscribers", "remove", "r0000@example.org"])
        .ok();
    assert_counters_exact(&store, "erasing a reader who was sent the issue").await;
    let totals = store.metric_totals().await.unwrap();
    assert!(
        totals.deliveries.contains(&("sent".to_string(), 30)),
        "{totals:?}"
    );
    assert!(
        totals.subscribers.contains(&("confirmed".to_string(), 62)),
        "{totals:?}"
    );
    // Deleting the issue takes its counters with it.
    sqlx::query("DELETE FROM issues WHERE id = $1")
        .bind(issue_id)
        .execute(store.pool())
        .await
        .unwrap();
    assert_counters_exact(&store, "deleting the issue").await;
}
