//! Builds the application from settings: database pool (migrated), secret key, HTTP listener.
//! [`Application::build`] binds the listener before returning so tests can use port 0 and read
//! [`Application::port`].

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::app::App;
use crate::app::subscribers::door::Door;
use crate::app::subscribers::signup_writer::SignupWriter;
use crate::config::{SecretKey, Settings};
use crate::mail::queue::{self, QueueSignal};
use crate::mail::transport::Transport;
use crate::render::Renderer;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::subscribers::lifecycle::Composer;
use crate::web::limits::RateLimits;
use crate::web::{self, AppState};

/// A built, bound, not yet running application: the composition root, which alone holds the
/// parts (store, settings, key, renderer) that it wires into the application layer and the
/// background tasks. Handlers get [`AppState`], whose decisions go through [`App`].
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    store: Store,
    settings: Arc<Settings>,
    secret: SecretKey,
    renderer: Arc<Renderer>,
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
        let settings = Arc::new(settings);
        let renderer = Arc::new(Renderer::with_dir(settings.templates.dir.as_deref())?);
        let transport = Transport::new(
            &settings.mail,
            &settings.smtp,
            &settings.dns,
            settings.delivery.concurrency as usize + 2,
        )?;
        let rate_limits = RateLimits::new(
            settings.signup.rate_limit_per_minute,
            settings.http.rate_limit_per_minute,
        );
        let door = Arc::new(Door::new(&settings.signup, &settings.dns)?);
        let listener = TcpListener::bind(settings.http.bind)
            .await
            .with_context(|| format!("http.bind: cannot listen on {}", settings.http.bind))?;
        let port = listener.local_addr()?.port();
        let app = App::new(
            store.clone(),
            settings.clone(),
            secret.clone(),
            renderer.clone(),
        );
        let signup_writer = SignupWriter::spawn(app.clone());
        Ok(Application {
            listener,
            port,
            state: AppState {
                app,
                transport,
                mail_signal: QueueSignal::default(),
                rate_limits,
                signup_writer,
                door,
            },
            store,
            settings,
            secret,
            renderer,
        })
    }

    /// The port actually bound (useful with `http.bind = "127.0.0.1:0"`).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The database this application serves (tests seed and inspect it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The key tokens are signed with (tests build the links a reader would have).
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// Serves until `shutdown` fires, then finishes requests in flight and closes the pool.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Application {
            listener,
            port: _,
            state,
            store,
            settings,
            secret,
            renderer,
        } = self;
        let comparisons = store.count_comparisons().await.unwrap_or(0);
        tracing::info!(
            address = %listener.local_addr()?,
            public_url = %settings.http.public_url,
            comparisons,
            "verdicts is serving"
        );
        // Confirmation and welcome mail are signed like issue mail; a key that cannot be used
        // stops start-up naming the setting.
        let dkim = crate::delivery::dkim::DkimSigner::from_settings(&settings.dkim)?.map(Arc::new);
        let sender = tokio::spawn(queue::run(
            store.clone(),
            state.transport.clone(),
            Composer {
                settings: settings.clone(),
                secret: secret.clone(),
                renderer: renderer.clone(),
            },
            dkim,
            state.mail_signal.clone(),
            shutdown.clone(),
        ));
        {
            let limits = state.rate_limits.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                // Forget idle clients so the limiters' memory does not grow with every IP seen.
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    tokio::select! {
                        _ = tick.tick() => limits.retain_recent(),
                        _ = stop.clone().wait() => break,
                    }
                }
            });
        }
        // The doctor's warnings and failures in the log (in the background: its SMTP and DNS
        // checks may take up to their timeouts, and serving does not wait for them).
        {
            let app = state.app.clone();
            tokio::spawn(async move {
                for c in app.doctor().await {
                    if c.status != crate::app::checks::Status::Ok {
                        tracing::warn!(
                            check = c.check,
                            status = %c.status,
                            fix = c.fix.as_deref().unwrap_or_default(),
                            "doctor: {}",
                            c.detail
                        );
                    }
                }
            });
        }
        // The delivery engine first: a DKIM key that cannot be used stops start-up.
        state.app.engine().await?;
        let worker = tokio::spawn(state.app.clone().run_worker(shutdown.clone()));
        let scheduler = tokio::spawn(crate::schedule::run(
            state.app.clone(),
            Arc::new(crate::schedule::SystemClock),
            shutdown.clone(),
        ));
        // The bounce mailbox, when configured (bounces.imap_url).
        let bounces = match settings.bounces.imap_url.clone() {
            Some(url) => {
                let (app, settings) = (state.app.clone(), settings.clone());
                let timeout = std::time::Duration::from_secs(settings.smtp.timeout_seconds);
                let resolver = crate::dns::Resolver::new(&settings.dns)?;
                let stop = shutdown.clone();
                Some(tokio::spawn(async move {
                    crate::bounces::imap::run(
                        app,
                        &settings.bounces,
                        url.0,
                        timeout,
                        resolver,
                        stop,
                    )
                    .await
                }))
            }
            None => None,
        };
        let limits = web::serve::ConnectionLimits::from(&settings.http)
            .within(settings.delivery.shutdown_grace.0);
        if settings.signup.trust_forwarded_for
            && limits.max_connections_per_client != 0
            && limits.max_connections_per_client < limits.max_connections
        {
            tracing::warn!(
                max_connections_per_client = limits.max_connections_per_client,
                "behind a proxy (signup.trust_forwarded_for) every connection comes from the proxy: \
                 http.max_connections_per_client caps the proxy itself; set it to 0 and limit \
                 per client in the proxy (deploy/nginx.conf)"
            );
        }
        let app = web::router(state);
        web::serve::serve(listener, app, limits, shutdown.clone())
            .await
            .context("serving HTTP")?;
        if let Err(e) = scheduler.await {
            tracing::warn!(error = %e, "the scheduler ended abnormally");
        }
        if let Some(bounces) = bounces
            && let Err(e) = bounces.await
        {
            tracing::warn!(error = %e, "the bounce mailbox poller ended abnormally");
        }
        if let Err(e) = worker.await {
            tracing::warn!(error = %e, "the delivery worker ended abnormally");
        }
        if let Err(e) = sender.await {
            tracing::warn!(error = %e, "the mail sender ended abnormally");
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
