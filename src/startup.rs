//! Builds the application from settings: database pool (migrated), secret key, HTTP listener.
//! [`Application::build`] binds the listener before returning so tests can use port 0 and read
//! [`Application::port`].

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{SecretKey, Settings};
use crate::render::Renderer;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::web;

/// What every request handler may use; built once per process.
#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub secret: SecretKey,
    pub renderer: Arc<Renderer>,
}

/// A built, bound, not yet running application.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
}

impl Application {
    /// Connects and migrates the database, loads (or creates) the secret key, binds `http.bind`.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = Store::connect(&settings.database).await?;
        let applied = store.migrate().await?;
        tracing::info!(
            database = %settings.database.url.redacted(),
            new_migrations = applied,
            "database ready"
        );
        let secret = settings.secret_key()?;
        let renderer = Arc::new(Renderer::new()?);
        let listener = TcpListener::bind(settings.http.bind)
            .await
            .with_context(|| format!("http.bind: cannot listen on {}", settings.http.bind))?;
        let port = listener.local_addr()?.port();
        Ok(Application {
            listener,
            port,
            state: AppState {
                settings: Arc::new(settings),
                store,
                secret,
                renderer,
            },
        })
    }

    /// The port actually bound (useful with `http.bind = "127.0.0.1:0"`).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` fires, then finishes requests in flight and closes the pool.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let comparisons = store.count_comparisons().await.unwrap_or(0);
        tracing::info!(
            address = %self.listener.local_addr()?,
            public_url = %self.state.settings.http.public_url,
            comparisons,
            "verdicts is serving; nothing is scheduled yet"
        );
        let app = web::router(self.state);
        axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.wait())
        .await
        .context("serving HTTP")?;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
