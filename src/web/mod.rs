//! HTTP: each module owns its router; [`router`] merges them.

pub mod admin;
pub mod archive;
pub mod console;
pub mod error;
pub mod health;
pub mod links;
pub mod metrics;
pub mod pages;
pub mod signup;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;

use crate::app::App;
use crate::config::{SecretKey, Settings};
use crate::mail::queue::QueueSignal;
use crate::mail::transport::Transport;
use crate::render::Renderer;
use crate::store::Store;
use crate::subscribers::lifecycle::Lifecycle;
use crate::subscribers::signup_writer::SignupWriter;
use signup::SignupLimiter;

/// What every request handler may use; built once per process.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The application layer every handler calls for decisions.
    pub app: App,
    pub settings: Arc<Settings>,
    pub store: Store,
    pub secret: SecretKey,
    pub renderer: Arc<Renderer>,
    pub transport: Transport,
    /// Wakes the transactional mail sender when something is queued.
    pub mail_signal: QueueSignal,
    pub signup_limiter: Option<SignupLimiter>,
    /// Group-commit writer for signups.
    pub signup_writer: SignupWriter,
}

impl AppState {
    /// The reader lifecycle over this state.
    pub fn lifecycle(&self) -> Lifecycle<'_> {
        Lifecycle {
            store: &self.store,
            secret: &self.secret,
        }
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(signup::router())
        .merge(links::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(archive::router())
        .merge(admin::router())
        .merge(console::router())
        .fallback(fallback)
        .with_state(state)
}

async fn fallback(State(state): State<AppState>) -> impl IntoResponse {
    pages::not_found(&state)
}
