//! The HTTP connection loop: hyper's HTTP/1.1 server with the limits a public server needs,
//! in place of `axum::serve` (which sets no timeouts at all).
//!
//! - `http.header_timeout`: request headers must be complete this long after the connection
//!   starts waiting for them (slowloris: one header line every few seconds). Hyper starts the
//!   same clock while a keep-alive connection waits for its next request, so an idle socket —
//!   one that never sent a byte, or one that finished a request and went quiet — is closed
//!   after the same time.
//! - `http.request_timeout` (a tower-http layer in [`super::router`]): the whole request, body
//!   included, answers 408 past it, so a body sent one byte at a time holds nothing for long.
//! - `http.max_connections`: at most this many connections are served at once; the accept loop
//!   waits for a free slot, further clients wait in the kernel's backlog.
//!
//! Each request carries [`ConnectInfo`] with the peer address, as `axum::serve` would set it,
//! and shutdown is graceful: stop accepting, let requests in flight finish (bounded by
//! `http.request_timeout`), close idle connections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::HttpSettings;
use crate::shutdown::Shutdown;

/// The connection limits of [`serve`], read once from `http.*`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl From<&HttpSettings> for ConnectionLimits {
    fn from(http: &HttpSettings) -> Self {
        ConnectionLimits {
            header_timeout: http.header_timeout.0,
            request_timeout: http.request_timeout.0,
            max_connections: usize::try_from(http.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then drains the connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.request_timeout + Duration::from_secs(1)) => {
            tracing::warn!("connections still open after the grace period; closing them");
        }
    }
    Ok(())
}
