//! `GET /metrics`: Prometheus text format. Counts come from the database at scrape time, so
//! several processes (serve and workers) expose the same totals.
//!
//! The subscriber gauges move when an address is signed up, so read before and after a signup
//! they would tell a stranger the state of any address: `/metrics` answers only to
//! `Authorization: Bearer <metrics.token>` (default `admin.token`) and is 404 with neither set.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

type Labels = Vec<(String, String)>;

/// `known` labels with 0 unless `found` has a figure, then anything else found.
fn with_zeros<'a>(known: &[&'a str], found: &'a [(String, i64)]) -> Vec<(&'a str, i64)> {
    let mut out: Vec<(&str, i64)> = known
        .iter()
        .map(|k| {
            (
                *k,
                found.iter().find(|(f, _)| f == k).map_or(0, |(_, n)| *n),
            )
        })
        .collect();
    for (f, n) in found {
        if !known.contains(&f.as_str()) {
            out.push((f, *n));
        }
    }
    out
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = state.settings().metrics_token() else {
        return match super::pages::not_found(&state) {
            Ok(page) => page,
            Err(e) => e.into_response(),
        };
    };
    if !super::bearer::bearer_matches(&headers, token) {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <metrics.token>\n",
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"metrics\""),
        );
        return response;
    }
    let totals = match state.app.metric_totals().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "reading metrics failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response();
        }
    };
    let mut registry = Registry::with_prefix("verdicts");
    let events = Family::<Labels, Counter>::default();
    for (event, n) in with_zeros(
        &["signup", "confirm", "unsubscribe", "import"],
        &totals.consent_events,
    ) {
        events
            .get_or_create(&vec![("event".into(), event.to_string())])
            .inc_by(n as u64);
    }
    registry.register(
        "subscriber_events",
        "Signups, confirmations, unsubscribes and imports recorded",
        events,
    );
    let subscribers = Family::<Labels, Gauge>::default();
    for (status, n) in with_zeros(
        &["pending", "confirmed", "unsubscribed", "bounced"],
        &totals.subscribers,
    ) {
        subscribers
            .get_or_create(&vec![("status".into(), status.to_string())])
            .set(n);
    }
    registry.register("subscribers", "Subscribers by status", subscribers);
    let deliveries = Family::<Labels, Counter>::default();
    for (status, n) in with_zeros(
        &["pending", "sent", "failed", "skipped"],
        &totals.deliveries,
    ) {
        deliveries
            .get_or_create(&vec![("outcome".into(), status.to_string())])
            .inc_by(n as u64);
    }
    registry.register(
        "deliveries",
        "Issue deliveries by outcome (pending counts those not settled yet)",
        deliveries,
    );
    let rate = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    rate.set(totals.sent_last_minute as f64 / 60.0);
    registry.register(
        "send_rate_per_second",
        "Messages sent per second over the last minute",
        rate,
    );
    match state.app.issue_bounce_stats().await {
        Ok(stats) => crate::bounces::register_metrics(&mut registry, &stats),
        Err(e) => tracing::warn!(error = %e, "reading bounce metrics failed"),
    }
    match state.app.engagement_totals().await {
        Ok((clicks, votes)) => {
            let c = Counter::<u64>::default();
            c.inc_by(clicks as u64);
            registry.register(
                "link_clicks",
                "Clicks on comparison links of issue emails (counted per link, not per reader)",
                c,
            );
            let v = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
            v.set(votes);
            registry.register(
                "reader_votes",
                "Reader Ship/Skip votes stored (one per reader per tool)",
                v,
            );
        }
        Err(e) => tracing::warn!(error = %e, "reading engagement metrics failed"),
    }
    match state.app.issue_renders_total().await {
        Ok(n) => {
            let c = Counter::<u64>::default();
            c.inc_by(n as u64);
            registry.register(
                "issue_renders",
                "Issue renderings kept for sending: one per issue, plus one per distinct set of its comparisons readers with categories get",
                c,
            );
        }
        Err(e) => tracing::warn!(error = %e, "reading render metrics failed"),
    }
    let next = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    let schedule = &state.settings().schedule;
    if let Some(at) = crate::schedule::fires::next_fire(
        &schedule.cron.schedule,
        schedule.timezone.0,
        chrono::Utc::now(),
    ) {
        next.set(at.timestamp());
    }
    registry.register(
        "next_scheduled_fire_timestamp_seconds",
        "When schedule.cron fires next (Unix time)",
        next,
    );
    let mut body = String::new();
    if encode(&mut body, &registry).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
