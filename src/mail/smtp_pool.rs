//! A pool of SMTP connections whose sockets have `TCP_NODELAY` set, for `smtp://` and
//! `smtps://` alike.
//!
//! lettre writes a message body and then its `\r\n.\r\n` terminator as two writes. With Nagle's
//! algorithm on (lettre does not turn it off), the small terminator waits for the ACK of the
//! body, which a receiver with delayed ACKs holds back for ~40 ms: every message stalls. We open
//! the TCP connection ourselves, set `TCP_NODELAY`, wrap it in TLS ourselves for implicit TLS
//! (`smtps://`, see [`super::tls`]), and hand it to lettre's
//! [`AsyncSmtpConnection::connect_with_transport`], which still speaks SMTP, STARTTLS and AUTH.
//!
//! **Every step is bounded** by `smtp.timeout_seconds`: connect, the TLS handshake, the greeting,
//! STARTTLS, EHLO, AUTH, NOOP and each message. **AUTH is never sent on a connection that is not
//! encrypted** (the configuration refuses credentials without TLS, and the pool checks again).
//! Whatever fails while a connection is being opened is [`SendError::Transport`]: the server,
//! the network, TLS or the login, never the recipient's fault.
//!
//! **Idle connections** are checked before reuse: one idle longer than `smtp.idle_check` gets a NOOP
//! (and is replaced if the NOOP fails), one idle longer than [`IDLE_MAX`] is closed. A server may
//! still close a connection between the check and the message (a 421 or a silent close before it
//! replied to MAIL): nothing was accepted, so the message goes out once more on a new connection,
//! and the caller never sees it.
//!
//! The message itself goes out as one pre-stuffed write: lettre's `send` dot-stuffs the DATA
//! payload byte by byte, which was 60 % of a newsletter send's instructions (callgrind, 28 KB
//! messages). [`data_payload`] finds the few line starts that need it with `memchr`, and the
//! payload is handed to lettre's `command`, which writes it and reads the reply.
//!
//! When the server announces `PIPELINING` (RFC 2920; Postfix, Exim, Gmail and the big mailbox
//! providers do), MAIL, RCPT and DATA go out in one write and their replies are read in order:
//! two round trips per message instead of four. lettre does not pipeline and does not record
//! the keyword, so each new connection asks with one more EHLO. The commands and replies are
//! lettre's.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailParameter};
use tokio::sync::Mutex;

use super::error::{SendError, classify_message_reply};
use super::tls::TlsTrust;
use crate::config::SmtpTls;

/// A connection idle longer than this is closed rather than checked (servers drop idle
/// connections after 30 s to 5 min).
pub const IDLE_MAX: Duration = Duration::from_secs(60);

/// Where and how to connect.
#[derive(Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Set only with TLS that cannot be skipped (checked when the configuration loads).
    pub credentials: Option<Credentials>,
    /// Bounds every step.
    pub timeout: Duration,
    /// `None` only for `SmtpTls::None`.
    pub trust: Option<TlsTrust>,
    /// A connection idle longer than this is checked with NOOP before it carries a message
    /// (`smtp.idle_check`).
    pub idle_check: Duration,
    /// Resolves a host name (`[dns]`); the name itself stays the TLS server name.
    pub resolver: crate::dns::Resolver,
}

/// An open connection and what its server offers.
struct Connection {
    inner: AsyncSmtpConnection,
    pipelining: bool,
    smtputf8: bool,
    idle_since: Instant,
}

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct SmtpPool {
    target: Arc<SmtpTarget>,
    idle: Arc<Mutex<Vec<Connection>>>,
    max_idle: usize,
    client_id: Arc<ClientId>,
}

/// Why a message did not go through on one connection.
struct TransferError {
    error: SendError,
    /// The server closed the connection (or said 421) before it replied to MAIL: nothing of
    /// this message was accepted, and a new connection may carry it.
    reconnect: bool,
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

    /// `step` bounded by the timeout; its failure (or the timeout) is the transport's.
    async fn step<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, SendError> {
        let t = &self.target;
        match tokio::time::timeout(t.timeout, step).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SendError::Transport {
                message: format!("{what} ({}:{}): {e}", t.host, t.port),
            }),
            Err(_) => Err(SendError::Transport {
                message: format!(
                    "{what} ({}:{}): no answer within {} s (smtp.timeout_seconds)",
                    t.host,
                    t.port,
                    t.timeout.as_secs()
                ),
            }),
        }
    }

    /// Opens, secures and logs in a new connection.
    async fn connect(&self) -> Result<Connection, SendError> {
        let t = &self.target;
        let io = |what: &str, e: std::io::Error| SendError::Transport {
            message: format!("{what} ({}:{}): {e}", t.host, t.port),
        };
        let timed_out = |what: &str| SendError::Transport {
            message: format!(
                "{what} ({}:{}): no answer within {} s (smtp.timeout_seconds)",
                t.host,
                t.port,
                t.timeout.as_secs()
            ),
        };
        let stream = match t.resolver.connect(&t.host, t.port, t.timeout).await {
            Ok(stream) => stream,
            Err(crate::dns::ConnectError::TimedOut) => return Err(timed_out("connecting")),
            Err(crate::dns::ConnectError::Io(e)) => return Err(io("connecting", e)),
            Err(crate::dns::ConnectError::Dns(e)) => {
                return Err(SendError::Transport {
                    message: format!("resolving the relay {} (dns.*): {e}", t.host),
                });
            }
        };
        stream
            .set_nodelay(true)
            .map_err(|e| io("setting TCP_NODELAY", e))?;
        let mut encrypted = false;
        let mut conn = match (t.tls, &t.trust) {
            (SmtpTls::Implicit, Some(trust)) => {
                let tls = tokio::time::timeout(t.timeout, trust.connect(stream))
                    .await
                    .map_err(|_| timed_out("the TLS handshake"))?
                    .map_err(|e| io("the TLS handshake", e))?;
                encrypted = true;
                self.step(
                    "the SMTP greeting",
                    AsyncSmtpConnection::connect_with_transport(Box::new(tls), &self.client_id),
                )
                .await?
            }
            _ => {
                self.step(
                    "the SMTP greeting",
                    AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.client_id),
                )
                .await?
            }
        };
        if matches!(t.tls, SmtpTls::Required | SmtpTls::Opportunistic) {
            if conn.can_starttls() {
                let params = t
                    .trust
                    .as_ref()
                    .map(|trust| trust.starttls.clone())
                    .ok_or_else(|| SendError::Transport {
                        message: "STARTTLS without TLS settings".into(),
                    })?;
                self.step("STARTTLS", conn.starttls(params, &self.client_id))
                    .await?;
                encrypted = true;
            } else if t.tls == SmtpTls::Required {
                return Err(SendError::Transport {
                    message: format!(
                        "{}:{} does not offer STARTTLS (smtp.url has tls=required)",
                        t.host, t.port
                    ),
                });
            }
        }
        // Asked after STARTTLS (the keywords before it do not count) and before AUTH (after
        // which a client does not say EHLO again).
        let ehlo = self
            .step("EHLO", conn.command(Ehlo::new((*self.client_id).clone())))
            .await?;
        let pipelining = ehlo
            .message()
            .skip(1)
            .any(|line| line.trim().eq_ignore_ascii_case("PIPELINING"));
        if let Some(credentials) = &t.credentials {
            if !encrypted {
                // Unreachable through the configuration; checked again because it matters.
                return Err(SendError::Transport {
                    message: "refusing to send credentials over a connection without TLS".into(),
                });
            }
            self.step(
                "logging in",
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials),
            )
            .await?;
        }
        let smtputf8 = conn.server_info().supports_feature(Extension::SmtpUtfEight);
        Ok(Connection {
            inner: conn,
            pipelining,
            smtputf8,
            idle_since: Instant::now(),
        })
    }

    /// An idle connection that is still good, or none: stale ones are closed, ones idle for a
    /// while must answer NOOP first.
    async fn reuse(&self) -> Option<Connection> {
        loop {
            let mut conn = self.idle.lock().await.pop()?;
            let idle = conn.idle_since.elapsed();
            if conn.inner.has_broken() || idle > IDLE_MAX {
                tracing::debug!(?idle, "closing an idle SMTP connection");
                let _ = tokio::time::timeout(self.target.timeout, conn.inner.abort()).await;
                continue;
            }
            if idle > self.target.idle_check {
                let alive =
                    tokio::time::timeout(self.target.timeout, conn.inner.test_connected()).await;
                if alive != Ok(true) {
                    tracing::debug!(?idle, "an idle SMTP connection did not answer NOOP");
                    continue;
                }
            }
            return Some(conn);
        }
    }

    /// Sends one message on a pooled (or new) connection.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        self.send_unless(envelope, message, std::future::pending())
            .await
    }

    /// Like [`SmtpPool::send`], but gives up with [`SendError::Cancelled`] if `cancel` finishes
    /// while a connection is being found, opened or logged in (before any of the message went
    /// out): a shutdown never waits for a slow server's handshake.
    pub async fn send_unless(
        &self,
        envelope: &Envelope,
        message: &[u8],
        cancel: impl Future<Output = ()>,
    ) -> Result<(), SendError> {
        let checkout = async {
            match self.reuse().await {
                Some(conn) => Ok((conn, true)),
                None => self.connect().await.map(|c| (c, false)),
            }
        };
        let (mut conn, reused) = tokio::select! {
            c = checkout => c?,
            () = cancel => return Err(SendError::Cancelled),
        };
        let mut result = self.transfer_on(&mut conn, envelope, message).await;
        if reused
            && matches!(
                &result,
                Err(TransferError {
                    reconnect: true,
                    ..
                })
            )
        {
            // The server dropped the connection while it sat idle (421 or a silent close)
            // before it replied to MAIL: nothing was accepted, so this is a reconnect, not a
            // failed attempt.
            tracing::debug!("a reused SMTP connection was closed by the server; reconnecting");
            let _ = tokio::time::timeout(self.target.timeout, conn.inner.abort()).await;
            conn = self.connect().await?;
            result = self.transfer_on(&mut conn, envelope, message).await;
        }
        match result {
            Ok(()) => {
                if !conn.inner.has_broken() {
                    conn.idle_since = Instant::now();
                    let mut idle = self.idle.lock().await;
                    if idle.len() < self.max_idle {
                        idle.push(conn);
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Leave the server in a clean state (QUIT) before the connection is dropped;
                // with pipelining, replies to commands after the failed one may still be unread.
                let _ = tokio::time::timeout(self.target.timeout, conn.inner.abort()).await;
                Err(e.error)
            }
        }
    }

    async fn transfer_on(
        &self,
        conn: &mut Connection,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<(), TransferError> {
        if !conn.smtputf8 && !envelope_is_ascii(envelope) {
            return Err(TransferError {
                error: SendError::Permanent {
                    code: None,
                    message: "the address has a non-ASCII local part and the SMTP server does \
                              not offer SMTPUTF8 (RFC 6531)"
                        .into(),
                    recipient: false,
                },
                reconnect: false,
            });
        }
        let mut mail_replied = false;
        let exchange = transfer(
            &mut conn.inner,
            conn.pipelining,
            envelope,
            message,
            &mut mail_replied,
        );
        match tokio::time::timeout(self.target.timeout, exchange).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(TransferError {
                reconnect: !mail_replied
                    && (error.status().is_some_and(|c| u16::from(c) == 421)
                        || (error.status().is_none() && !error.is_client())),
                error: classify_message_reply(error),
            }),
            Err(_) => Err(TransferError {
                error: SendError::Transport {
                    message: format!(
                        "no answer to a message within {} s (smtp.timeout_seconds)",
                        self.target.timeout.as_secs()
                    ),
                },
                reconnect: false,
            }),
        }
    }

    /// Opens a connection and says NOOP: for `/readyz`.
    pub async fn check(&self) -> Result<(), SendError> {
        let mut conn = self.connect().await?.inner;
        if tokio::time::timeout(self.target.timeout, conn.test_connected())
            .await
            .unwrap_or(false)
        {
            let _ = tokio::time::timeout(self.target.timeout, conn.quit()).await;
            Ok(())
        } else {
            Err(SendError::Transport {
                message: "the SMTP server did not answer NOOP".into(),
            })
        }
    }
}

/// Whether every envelope address is ASCII (else the server must offer SMTPUTF8).
fn envelope_is_ascii(envelope: &Envelope) -> bool {
    envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .all(|a: &lettre::Address| AsRef::<str>::as_ref(a).is_ascii())
}

/// One SMTP transaction. Messages that need SMTPUTF8 or 8BITMIME (never a newsletter to an
/// ASCII address: its headers and QP bodies are ASCII) go through lettre's own `send`, which
/// negotiates them. The first failing reply is the error (so a 550 to RCPT is reported as such);
/// the caller drops the connection after any error. `mail_replied` turns true once the server
/// answered MAIL: before that, nothing of the message can have been accepted.
async fn transfer(
    conn: &mut AsyncSmtpConnection,
    pipelining: bool,
    envelope: &Envelope,
    message: &[u8],
    mail_replied: &mut bool,
) -> Result<(), lettre::transport::smtp::Error> {
    let text = match std::str::from_utf8(message) {
        Ok(text) if envelope_is_ascii(envelope) && text.is_ascii() => text,
        _ => {
            // lettre's `send` adds SMTPUTF8 to MAIL when an address needs it. Its steps are not
            // told apart, so no error of it counts as "before MAIL" (never sent twice).
            *mail_replied = true;
            return conn.send(envelope, message).await.map(|_| ());
        }
    };
    let mail = Mail::new(envelope.from().cloned(), Vec::<MailParameter>::new());
    let rcpts = envelope.to().iter().map(|to| Rcpt::new(to.clone(), vec![]));
    if pipelining {
        // RFC 2920: MAIL, every RCPT and DATA (the last command of a group) in one write.
        let mut group = mail.to_string();
        for rcpt in rcpts {
            group.push_str(&rcpt.to_string());
        }
        group.push_str(&Data.to_string());
        conn.command(group.as_str()).await?;
        *mail_replied = true;
        for _ in 0..envelope.to().len() + 1 {
            conn.read_response().await?;
        }
    } else {
        conn.command(mail).await?;
        *mail_replied = true;
        for rcpt in rcpts {
            conn.command(rcpt).await?;
        }
        conn.command(Data).await?;
    }
    // lettre's `command` calls `to_string()` on the payload, which for a string is a single
    // exact-size copy (a custom `Display` would grow a buffer step by step).
    conn.command(data_payload(text).as_str()).await?;
    Ok(())
}

/// The DATA payload: `text` with RFC 5321 §4.5.2 transparency (a line that starts with `.` gets
/// another `.`; as in lettre, a line starts at the beginning and after CRLF), then the `.`
/// line that ends it. Built in one pass into one exact-size buffer.
pub fn data_payload(text: &str) -> String {
    let hits: Vec<usize> = memchr::memmem::find_iter(text.as_bytes(), b"\r\n.").collect();
    let lead = text.starts_with('.');
    let mut out = String::with_capacity(text.len() + hits.len() + usize::from(lead) + 5);
    if lead {
        out.push('.');
    }
    let mut from = 0;
    for at in hits {
        out.push_str(&text[from..at + 3]);
        out.push('.');
        from = at + 3;
    }
    out.push_str(&text[from..]);
    out.push_str("\r\n.\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::data_payload;

    #[test]
    fn stuffs_every_line_that_starts_with_a_dot_and_ends_the_data() {
        assert_eq!(data_payload("a\r\nb"), "a\r\nb\r\n.\r\n");
        assert_eq!(
            data_payload(".a\r\n.\r\n..b\r\nc."),
            "..a\r\n..\r\n...b\r\nc.\r\n.\r\n"
        );
        // A bare LF does not end an SMTP line, as in lettre.
        assert_eq!(data_payload("a\n.b"), "a\n.b\r\n.\r\n");
        let stuffed = data_payload(".x\r\n.y");
        assert_eq!(stuffed.len(), stuffed.capacity(), "sized exactly");
    }
}

#[cfg(test)]
mod pipelining_tests {
    use std::time::Duration;

    use lettre::address::Envelope;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::{SmtpPool, SmtpTarget};
    use crate::config::SmtpTls;

    /// A scripted server that announces PIPELINING and answers MAIL only once RCPT and DATA
    /// have arrived too: a client that waited for each reply would time out. Returns what the
    /// server received.
    async fn pipelining_server(listener: tokio::net::TcpListener) -> String {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut seen = String::new();
        write.write_all(b"220 test ESMTP\r\n").await.unwrap();
        let mut group = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" => write
                    .write_all(b"250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                    .await
                    .unwrap(),
                "MAIL" | "RCPT" => group.push("250 ok\r\n"),
                "DATA" => {
                    group.push("354 go on\r\n");
                    write.write_all(group.concat().as_bytes()).await.unwrap();
                    group.clear();
                    while let Some(body) = lines.next_line().await.unwrap() {
                        seen.push_str(&body);
                        seen.push('\n');
                        if body == "." {
                            break;
                        }
                    }
                    write.write_all(b"250 queued\r\n").await.unwrap();
                }
                "QUIT" => {
                    write.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => write.write_all(b"500 what\r\n").await.unwrap(),
            }
        }
        seen
    }

    #[tokio::test]
    async fn mail_rcpt_and_data_go_out_in_one_group_when_the_server_pipelines() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(pipelining_server(listener));
        let pool = SmtpPool::new(
            SmtpTarget {
                host: "127.0.0.1".into(),
                port,
                tls: SmtpTls::None,
                credentials: None,
                timeout: Duration::from_secs(3),
                trust: None,
                idle_check: Duration::from_secs(3),
                resolver: crate::dns::Resolver::new(&crate::config::DnsSettings {
                    nameservers: vec!["127.0.0.1:9".to_string().try_into().unwrap()],
                    ..Default::default()
                })
                .unwrap(),
            },
            0,
        );
        let envelope = Envelope::new(
            Some("news@shiporskip.example".parse().unwrap()),
            vec!["reader@example.org".parse().unwrap()],
        )
        .unwrap();
        pool.send(&envelope, b"Subject: hi\r\n\r\n.dot line\r\nend")
            .await
            .expect("sent with pipelining");
        // max_idle 0: the connection is not kept; close it so the server sees QUIT or EOF.
        drop(pool);
        let seen = tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .expect("server finished")
            .unwrap();
        assert!(
            seen.contains(
                "MAIL FROM:<news@shiporskip.example>\nRCPT TO:<reader@example.org>\nDATA\n"
            ),
            "{seen}"
        );
        assert!(
            seen.contains("Subject: hi\n\n..dot line\nend\n.\n"),
            "{seen}"
        );
    }
}
