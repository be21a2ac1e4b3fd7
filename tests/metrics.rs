//! `GET /metrics` in Prometheus/OpenMetrics text format, with figures that follow the database.

mod common;

use common::TestApp;
use verdicts::subscribers::SubscriberEmail;

#[tokio::test]
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

    let r = app.get("/metrics").await;
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
