//! A pool of SMTP connections whose sockets have `TCP_NODELAY` set.
//!
//! lettre writes a message body and then its `\r\n.\r\n` terminator as two writes. With Nagle's
//! algorithm on (lettre does not turn it off), the small terminator waits for the ACK of the
//! body, which a receiver with delayed ACKs holds back for ~40 ms: every message stalls. We open
//! the TCP connection ourselves, set `TCP_NODELAY`, and hand it to lettre's
//! [`AsyncSmtpConnection::connect_with_transport`], which still speaks SMTP, STARTTLS and AUTH.
//! Connections are reused while they are healthy and dropped after any error.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::Mutex;

use super::transport::{SendError, classify};

/// How a plain `smtp://` URL wants TLS: `?tls=required` or `?tls=opportunistic` (default: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    None,
    Opportunistic,
    Required,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub starttls: StartTls,
    pub credentials: Option<Credentials>,
    pub timeout: Duration,
}

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct SmtpPool {
    target: Arc<SmtpTarget>,
    idle: Arc<Mutex<Vec<AsyncSmtpConnection>>>,
    max_idle: usize,
    client_id: Arc<ClientId>,
}

impl SmtpPool {
    pub fn new(target: SmtpTarget, max_idle: usize) -> SmtpPool {
        SmtpPool {
            target: Arc::new(target),
            idle: Arc::new(Mutex::new(Vec::new())),
            max_idle,
            client_id: Arc::new(ClientId::default()),
        }
    }

    fn unreachable(message: String) -> SendError {
        SendError::Transient {
            code: None,
            message,
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let t = &self.target;
        let stream = tokio::time::timeout(
            t.timeout,
            tokio::net::TcpStream::connect((t.host.as_str(), t.port)),
        )
        .await
        .map_err(|_| Self::unreachable(format!("connecting to {}:{} timed out", t.host, t.port)))?
        .map_err(|e| Self::unreachable(format!("connecting to {}:{}: {e}", t.host, t.port)))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Self::unreachable(format!("setting TCP_NODELAY: {e}")))?;
        let mut conn = tokio::time::timeout(
            t.timeout,
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.client_id),
        )
        .await
        .map_err(|_| Self::unreachable("the SMTP greeting timed out".into()))?
        .map_err(classify)?;
        if t.starttls != StartTls::None {
            if conn.can_starttls() {
                let params = TlsParameters::new(t.host.clone()).map_err(classify)?;
                conn.starttls(params, &self.client_id)
                    .await
                    .map_err(classify)?;
            } else if t.starttls == StartTls::Required {
                return Err(SendError::Permanent {
                    code: None,
                    message: "the server does not offer STARTTLS (smtp.url has tls=required)"
                        .into(),
                    recipient: false,
                });
            }
        }
        if let Some(credentials) = &t.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(classify)?;
        }
        Ok(conn)
    }

    /// Sends one message on a pooled (or new) connection.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        let reused = self.idle.lock().await.pop();
        let mut conn = match reused {
            Some(c) if !c.has_broken() => c,
            _ => self.connect().await?,
        };
        let result = tokio::time::timeout(self.target.timeout, conn.send(envelope, message))
            .await
            .map_err(|_| Self::unreachable("the SMTP exchange timed out".into()))
            .and_then(|r| r.map_err(classify));
        if result.is_ok() && !conn.has_broken() {
            let mut idle = self.idle.lock().await;
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
        result.map(|_| ())
    }

    /// Opens a connection and says NOOP: for `/readyz`.
    pub async fn check(&self) -> Result<(), SendError> {
        let mut conn = self.connect().await?;
        if conn.test_connected().await {
            let _ = conn.quit().await;
            Ok(())
        } else {
            Err(Self::unreachable(
                "the SMTP server did not answer NOOP".into(),
            ))
        }
    }
}
