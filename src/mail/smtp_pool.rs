//! A pool of SMTP connections whose sockets have `TCP_NODELAY` set.
//!
//! lettre writes a message body and then its `\r\n.\r\n` terminator as two writes. With Nagle's
//! algorithm on (lettre does not turn it off), the small terminator waits for the ACK of the
//! body, which a receiver with delayed ACKs holds back for ~40 ms: every message stalls. We open
//! the TCP connection ourselves, set `TCP_NODELAY`, and hand it to lettre's
//! [`AsyncSmtpConnection::connect_with_transport`], which still speaks SMTP, STARTTLS and AUTH.
//! Connections are reused while they are healthy and dropped after any error.
//!
//! The message itself goes out as one pre-stuffed write: lettre's `send` dot-stuffs the DATA
//! payload byte by byte, which was 60 % of a newsletter send's instructions (callgrind, 28 KB
//! messages). [`dot_stuff`] finds the few line starts that need it with `memchr`, and the
//! payload is handed to lettre's `command`, which writes it and reads the reply. MAIL, RCPT,
//! DATA and the replies are still lettre's.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
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
        let result =
            tokio::time::timeout(self.target.timeout, transfer(&mut conn, envelope, message))
                .await
                .map_err(|_| Self::unreachable("the SMTP exchange timed out".into()))
                .and_then(|r| r.map_err(classify));
        if result.is_ok() && !conn.has_broken() {
            let mut idle = self.idle.lock().await;
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        } else if result.is_err() {
            // Leave the server in a clean state (QUIT) before the connection is dropped.
            conn.abort().await;
        }
        result
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

/// One SMTP transaction. Messages that need SMTPUTF8 or 8BITMIME (never a newsletter: its
/// headers and QP bodies are ASCII) go through lettre's own `send`, which negotiates them.
async fn transfer(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    message: &[u8],
) -> Result<(), lettre::transport::smtp::Error> {
    let ascii_addresses = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .all(|a: &lettre::Address| AsRef::<str>::as_ref(a).is_ascii());
    let stuffed = dot_stuff(message);
    let text = match std::str::from_utf8(&stuffed) {
        Ok(text) if ascii_addresses && text.is_ascii() => text,
        _ => return conn.send(envelope, message).await.map(|_| ()),
    };
    conn.command(Mail::new(envelope.from().cloned(), vec![]))
        .await?;
    for to in envelope.to() {
        conn.command(Rcpt::new(to.clone(), vec![])).await?;
    }
    conn.command(Data).await?;
    // The payload as one `String`: lettre's `command` calls `to_string()` on it, which for a
    // string is a single exact-size copy (a custom `Display` would grow a buffer step by step).
    let mut payload = String::with_capacity(text.len() + 5);
    payload.push_str(text);
    payload.push_str("\r\n.\r\n");
    conn.command(payload.as_str()).await?;
    Ok(())
}

/// RFC 5321 §4.5.2 transparency: a line that starts with `.` gets another `.` (as lettre does,
/// a line starts at the beginning and after CRLF). Borrows when nothing needs stuffing.
pub fn dot_stuff(message: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let starts_with_dot = message.first() == Some(&b'.');
    let mut hits = memchr::memmem::find_iter(message, b"\r\n.").peekable();
    if !starts_with_dot && hits.peek().is_none() {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len() + 64);
    if starts_with_dot {
        out.push(b'.');
    }
    let mut from = 0;
    for at in hits {
        out.extend_from_slice(&message[from..at + 3]);
        out.push(b'.');
        from = at + 3;
    }
    out.extend_from_slice(&message[from..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::dot_stuff;

    #[test]
    fn stuffs_every_line_that_starts_with_a_dot() {
        assert_eq!(&*dot_stuff(b"a\r\nb"), b"a\r\nb");
        assert!(matches!(
            dot_stuff(b"a\r\nb"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            &*dot_stuff(b".a\r\n.\r\n..b\r\nc."),
            b"..a\r\n..\r\n...b\r\nc."
        );
        // A bare LF does not end an SMTP line, as in lettre.
        assert_eq!(&*dot_stuff(b"a\n.b"), b"a\n.b");
    }
}
