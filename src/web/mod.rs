//! HTTP: each module owns its router; [`router`] merges them.

pub mod admin;
pub mod archive;
pub mod error;
pub mod health;
pub mod links;
pub mod metrics;
pub mod pages;
pub mod signup;
pub mod webhooks;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;

use crate::startup::AppState;

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(signup::router())
        .merge(links::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(archive::router())
        .merge(admin::router())
        .merge(webhooks::router())
        .fallback(fallback)
        .with_state(state)
}

async fn fallback(State(state): State<AppState>) -> impl IntoResponse {
    pages::not_found(&state)
}
