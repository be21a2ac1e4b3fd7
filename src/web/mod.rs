//! HTTP: each module owns its router; [`router`] merges them.

pub mod health;

use axum::Router;

use crate::startup::AppState;

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new().merge(health::router()).with_state(state)
}
