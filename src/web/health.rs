//! `GET /healthz` (the process answers) and `GET /readyz` (the database reads and takes a
//! write, and the mail transport answers too; 503 with the reason otherwise).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// The longest a database check may take: a database that is down must not hold the probe for
/// the pool's 30 s.
const DATABASE_CHECK: Duration = Duration::from_secs(5);

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let read = tokio::time::timeout(DATABASE_CHECK, state.app.ping()).await;
    if let Err(e) = read.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 5 s"))) {
        crate::log_repeated!(warn, "readyz:read", e, "readiness check failed: database");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: database unreachable\n".into(),
        );
    }
    // Reads can work while writes fail (a full disk): signups and sends would fail.
    let write = tokio::time::timeout(DATABASE_CHECK, state.app.probe_write()).await;
    if let Err(e) = write.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 5 s"))) {
        crate::log_repeated!(
            warn,
            "readyz:write",
            e,
            "readiness check failed: database writes"
        );
        let cause = e.root_cause().to_string();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the database refuses writes: {cause}\n"),
        );
    }
    if let Err(e) = state.transport.check().await {
        crate::log_repeated!(
            warn,
            "readyz:transport",
            e,
            "readiness check failed: mail transport"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: mail transport unreachable\n".into(),
        );
    }
    (StatusCode::OK, "ready\n".into())
}
