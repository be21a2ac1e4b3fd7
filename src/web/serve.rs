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
//! - `http.write_timeout`: a response write that makes no progress for this long (the client
//!   stopped reading, its receive window is full) closes the connection. Without it, pipelined
//!   requests whose answers are never read hold a connection and its send queue forever.
//! - `http.max_connections`: at most this many connections are served at once; the accept loop
//!   waits for a free slot, further clients wait in the kernel's backlog.
//! - `http.max_connections_per_client`: at most this many of them from one client (an IPv4
//!   address or an IPv6 /64, the socket's peer); a connection over it is closed at once, so one
//!   address cannot fill `http.max_connections`. Behind a proxy every connection comes from
//!   the proxy: limit per client there (`deploy/nginx.conf`) and raise or disable (0) this.
//!
//! Each request carries [`ConnectInfo`] with the peer address, as `axum::serve` would set it,
//! and shutdown is graceful: stop accepting, let requests in flight finish (bounded by
//! `http.request_timeout`), close idle connections.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower::ServiceExt;

use crate::config::HttpSettings;
use crate::shutdown::Shutdown;

/// The connection limits of [`serve`], read once from `http.*`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// 0: no per-client limit.
    pub max_connections_per_client: usize,
    /// How long the connections open at shutdown may take to finish: a request's
    /// `http.request_timeout` (and a second), capped by [`ConnectionLimits::within`] so the
    /// drain ends before `delivery.shutdown_grace` forces the process out.
    pub drain: Duration,
}

impl From<&HttpSettings> for ConnectionLimits {
    fn from(http: &HttpSettings) -> Self {
        ConnectionLimits {
            header_timeout: http.header_timeout.0,
            request_timeout: http.request_timeout.0,
            write_timeout: http.write_timeout.0,
            max_connections: usize::try_from(http.max_connections).unwrap_or(usize::MAX),
            max_connections_per_client: usize::try_from(http.max_connections_per_client)
                .unwrap_or(usize::MAX),
            drain: http.request_timeout.0 + Duration::from_secs(1),
        }
    }
}

impl ConnectionLimits {
    /// The drain capped to end within `grace` after shutdown, with a fifth of it (at most a
    /// second) left to close the rest: a slow request is cut, not the whole process.
    pub fn within(mut self, grace: Duration) -> Self {
        let cap = grace - (grace / 5).min(Duration::from_secs(1));
        self.drain = self.drain.min(cap);
        self
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
    let clients = PerClient::new(limits.max_connections_per_client);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    // Connections open now (for the drain's last word).
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
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
        let Some(client_slot) = clients.claim(peer.ip()) else {
            tracing::debug!(%peer, "over http.max_connections_per_client: connection closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = http.serve_connection(
            TokioIo::new(WriteDeadline::new(stream, limits.write_timeout)),
            TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        let busy = crate::shutdown::busy("an HTTP connection");
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let open = open.clone();
        tokio::spawn(async move {
            let _busy = busy;
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
            drop(client_slot);
            drop(slot);
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!(
                connections = open.load(std::sync::atomic::Ordering::Relaxed),
                drain = %humantime::format_duration(limits.drain),
                "HTTP connections still open (a slow request or client) at the end of the \
                 shutdown drain; closing them"
            );
        }
    }
    Ok(())
}

/// Open connections per client network, for `http.max_connections_per_client`.
#[derive(Debug, Clone)]
struct PerClient {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection of a client; dropping it gives the place back.
struct ClientSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    network: IpAddr,
}

impl PerClient {
    fn new(max: usize) -> Self {
        PerClient {
            max,
            open: Arc::default(),
        }
    }

    /// A place for one more connection from `peer`, or `None` when its network has `max`.
    fn claim(&self, peer: IpAddr) -> Option<ClientSlot> {
        let network = super::limits::network_of(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(network).or_insert(0);
        if self.max != 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            open: self.open.clone(),
            network,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.network) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.network);
            }
        }
    }
}

/// A socket whose writes fail with `TimedOut` once one has made no progress for `timeout`:
/// the client stopped reading. Any progress restarts the clock.
struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Passes a write's outcome on; a pending one starts (or checks) the clock.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.stalled = None;
            return outcome;
        }
        let timeout = self.timeout;
        let clock = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if clock.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading (http.write_timeout)",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(cx, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check(cx, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_network_gets_at_most_its_share() {
        let clients = PerClient::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = clients.claim(a).unwrap();
        let _second = clients.claim(a).unwrap();
        assert!(clients.claim(a).is_none());
        assert!(clients.claim("192.0.2.2".parse().unwrap()).is_some());
        // An IPv6 /64 is one client.
        let _v6 = clients.claim("2001:db8::1".parse().unwrap()).unwrap();
        let _v6b = clients.claim("2001:db8::2".parse().unwrap()).unwrap();
        assert!(clients.claim("2001:db8::3".parse().unwrap()).is_none());
        drop(first);
        assert!(
            clients.claim(a).is_some(),
            "a closed connection gives its place back"
        );
        assert!(PerClient::new(0).claim(a).is_some(), "0: no limit");
    }
}
