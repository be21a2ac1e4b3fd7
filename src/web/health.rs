//! `GET /healthz` (the process answers) and `GET /readyz` (the database and the mail transport
//! answer too).

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

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness check failed: database");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: database unreachable\n".into(),
        );
    }
    if let Err(e) = state.transport.check().await {
        tracing::warn!(error = %e, "readiness check failed: mail transport");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: mail transport unreachable\n".into(),
        );
    }
    (StatusCode::OK, "ready\n".into())
}
