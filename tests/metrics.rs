//! `GET /metrics` in Prometheus/OpenMetrics text format, with figures that follow the database,
//! behind `Authorization: Bearer <metrics.token>` (default `admin.token`).

mod common;

use std::time::Duration;

use common::{ADMIN_TOKEN, TestApp};
use verdicts::issues::IssueStatus;
use verdicts::store::deliveries::Outcome;
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
    // Settle as the sender does: claim, then record a batch's outcomes (the usual all-sent
    // batch is one statement; a mixed one a transaction), and renew a lease.
    let owner = "w1";
    let claimed = store
        .claim_deliveries(issue_id, owner, 40, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 40);
    let now = chrono::Utc::now().timestamp_millis();
    let sent: Vec<_> = claimed[..30]
        .iter()
        .map(|c| (c.id, c.subscriber_id, Outcome::Sent))
        .collect();
    store.record_outcomes(owner, &sent[..20]).await.unwrap();
    assert_counters_exact(&store, "a batch of 20 sent").await;
    let mut mixed = sent[20..].to_vec();
    for (k, c) in claimed[30..].iter().enumerate() {
        let outcome = match k {
            0..=3 => Outcome::Failed {
                error: "550 no such user".into(),
                bounced: k == 0,
            },
            4 => Outcome::Failed {
                error: "554 refused".into(),
                bounced: false,
            },
            5 => Outcome::Skipped,
            6 | 7 => Outcome::Retry {
                retry_at_ms: now + 60_000,
                error: "451 later".into(),
            },
            _ => Outcome::Release {
                retry_at_ms: now,
                error: "put back".into(),
            },
        };
        mixed.push((c.id, c.subscriber_id, outcome));
    }
    store.record_outcomes(owner, &mixed).await.unwrap();
    // Recorded twice (a retried commit): nothing moves again.
    store.record_outcomes(owner, &mixed).await.unwrap();
    store.record_outcomes(owner, &sent[..20]).await.unwrap();
    // A lease renewal changes no status, and counts nothing.
    sqlx::query("UPDATE deliveries SET lease_owner = 'w1' WHERE issue_id = $1")
        .bind(issue_id)
        .execute(store.pool())
        .await
        .unwrap();
    assert_counters_exact(&store, "settling 30 sent, 5 failed, 1 skipped").await;
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!(
        (
            counts.total,
            counts.sent,
            counts.failed,
            counts.skipped,
            counts.pending
        ),
        (63, 30, 5, 1, 27)
    );
    assert_eq!(counts.sent_last_minute, 30);
    assert_eq!(
        store
            .count_subscribers(verdicts::subscribers::SubscriberStatus::Bounced)
            .await
            .unwrap(),
        1,
        "the hard bounce marked its reader"
    );
    // Retry failed: the five go back in line, and a second retry finds nothing.
    let back = store
        .retry_failed(issue_id, &[IssueStatus::Sending], IssueStatus::Sending)
        .await
        .unwrap();
    assert_eq!(back, Some(5));
    assert_counters_exact(&store, "retrying the failed").await;
    assert_eq!(
        store
            .retry_failed(issue_id, &[IssueStatus::Sending], IssueStatus::Sending)
            .await
            .unwrap(),
        Some(0)
    );
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((counts.failed, counts.pending), (0, 32));
    // A signup, its confirmation and an operator's add: counted by their writers.
    env.cli(&["subscribers", "add", "added@example.org"]).ok();
    assert_counters_exact(&store, "an operator's add").await;
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
        totals.subscribers.contains(&("confirmed".to_string(), 61)),
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

/// Several workers settling one issue at once (PostgreSQL: each statement counts what it moved
/// under the counters' row locks; SQLite: one writer) leave the counters equal to the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_stay_exact_with_concurrent_workers() {
    let env = common::TestEnv::new().await;
    let (store, issue_id) = common::frozen_issue(&env, 400).await;
    assert_eq!(common::start_send(&store, issue_id).await, 400);
    let workers = (0..4).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let owner = format!("worker{w}");
            let mut k = 0;
            loop {
                let claimed = store
                    .claim_deliveries(issue_id, &owner, 7, Duration::from_secs(60))
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    break;
                }
                let outcomes: Vec<_> = claimed
                    .iter()
                    .map(|c| {
                        k += 1;
                        let o = if k % 9 == 0 {
                            Outcome::Failed {
                                error: "550 no".into(),
                                bounced: false,
                            }
                        } else {
                            Outcome::Sent
                        };
                        (c.id, c.subscriber_id, o)
                    })
                    .collect();
                store.record_outcomes(&owner, &outcomes).await.unwrap();
            }
        })
    });
    for w in workers.collect::<Vec<_>>() {
        w.await.unwrap();
    }
    assert_counters_exact(&store, "four workers settling 400 deliveries").await;
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!(counts.pending, 0);
    assert_eq!(counts.sent + counts.failed, 400);
    assert!(counts.failed > 0, "{counts:?}");
}
