//! `GET /metrics` in Prometheus/OpenMetrics text format, with figures that follow the database,
//! behind `Authorization: Bearer <metrics.token>` (default `admin.token`).

mod common;

use common::{ADMIN_TOKEN, TestApp};
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
#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
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
