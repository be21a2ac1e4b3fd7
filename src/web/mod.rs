//! HTTP: each module owns its router; [`router`] merges them and adds the edge layers
//! (security headers, request timeout, rate limits). [`serve`] runs the connections.

pub mod admin;
pub mod archive;
pub mod bearer;
pub mod client;
pub mod console;
pub mod embed;
pub mod engagement;
pub mod error;
pub mod headers;
pub mod health;
/// The strict JSON reader, for the handlers (`super::json::object`).
pub use crate::json;
pub mod limits;
pub mod links;
pub mod manage;
pub mod metrics;
pub mod pages;
pub mod serve;
pub mod signup;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use tower_http::timeout::TimeoutLayer;

use crate::app::App;
use crate::app::subscribers::door::Door;
use crate::app::subscribers::signup_writer::SignupWriter;
use crate::config::Settings;
use crate::mail::queue::QueueSignal;
use crate::mail::transport::Transport;
use crate::render::Renderer;
use limits::RateLimits;

/// What every request handler may use; built once per process.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The application layer every handler calls for decisions.
    pub app: App,
    pub transport: Transport,
    /// Wakes the transactional mail sender when something is queued.
    pub mail_signal: QueueSignal,
    /// Per-client rate limits of the public routes and the API.
    pub rate_limits: RateLimits,
    /// Group-commit writer for signups.
    pub signup_writer: SignupWriter,
    /// The signup domain check (block lists, DNS), asked before a signup is queued.
    pub door: Arc<Door>,
}

impl AppState {
    /// The settings, to present with (links, names); decisions go through [`App`].
    pub fn settings(&self) -> &Arc<Settings> {
        self.app.settings()
    }

    /// The page templates.
    pub fn renderer(&self) -> &Arc<Renderer> {
        self.app.renderer()
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let http = &state.app.settings().http;
    let app = Router::new()
        .merge(signup::router(&state))
        .merge(embed::router())
        .merge(links::router(&state))
        .merge(manage::router(&state))
        .merge(engagement::router(&state))
        .merge(health::router())
        .merge(metrics::router())
        .merge(archive::router())
        .merge(admin::router().route_layer(from_fn_with_state(
            (state.clone(), limits::Bucket::Api),
            limits::enforce,
        )))
        .merge(webhooks::router())
        .merge(console::router())
        .fallback(fallback)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            http.request_timeout.0,
        ));
    headers::every_response(app, &http.public_url).with_state(state)
}

async fn fallback(State(state): State<AppState>) -> impl IntoResponse {
    pages::not_found(&state)
}
