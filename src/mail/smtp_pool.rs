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
//! messages). [`data_payload`] finds the few line starts that need it with `memchr`, and the
//! payload is handed to lettre's `command`, which writes it and reads the reply.
//!
//! When the server announces `PIPELINING` (RFC 2920; Postfix, Exim, Gmail and the big mailbox
//! providers do), MAIL, RCPT and DATA go out in one write and their replies are read in order:
//! two round trips per message instead of four. lettre does not pipeline and does not record
//! the keyword, so each new connection asks with one more EHLO. The commands and replies are
//! lettre's.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
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

/// An open connection and whether its server pipelines.
struct Connection {
    inner: AsyncSmtpConnection,
    pipelining: bool,
}

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct SmtpPool {
    target: Arc<SmtpTarget>,
    idle: Arc<Mutex<Vec<Connection>>>,
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

    async fn connect(&self) -> Result<Connection, SendError> {
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
        // Asked after STARTTLS (the keywords before it do not count) and before AUTH (after
        // which a client does not say EHLO again).
        let ehlo = tokio::time::timeout(
            t.timeout,
            conn.command(Ehlo::new((*self.client_id).clone())),
        )
        .await
        .map_err(|_| Self::unreachable("EHLO timed out".into()))?
        .map_err(classify)?;
        let pipelining = ehlo
            .message()
            .skip(1)
            .any(|line| line.trim().eq_ignore_ascii_case("PIPELINING"));
        if let Some(credentials) = &t.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(classify)?;
        }
        Ok(Connection {
            inner: conn,
            pipelining,
        })
    }

    /// Sends one message on a pooled (or new) connection.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        let reused = self.idle.lock().await.pop();
        let mut conn = match reused {
            Some(c) if !c.inner.has_broken() => c,
            _ => self.connect().await?,
        };
        let result = tokio::time::timeout(
            self.target.timeout,
            transfer(&mut conn.inner, conn.pipelining, envelope, message),
        )
        .await
        .map_err(|_| Self::unreachable("the SMTP exchange timed out".into()))
        .and_then(|r| r.map_err(classify));
        if result.is_ok() && !conn.inner.has_broken() {
            let mut idle = self.idle.lock().await;
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        } else if result.is_err() {
            // Leave the server in a clean state (QUIT) before the connection is dropped; with
            // pipelining, replies to commands after the failed one may still be unread.
            conn.inner.abort().await;
        }
        result
    }

    /// Opens a connection and says NOOP: for `/readyz`.
    pub async fn check(&self) -> Result<(), SendError> {
        let mut conn = self.connect().await?.inner;
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
/// The first failing reply is the error (so a 550 to RCPT is reported as such); the caller
/// drops the connection after any error.
async fn transfer(
    conn: &mut AsyncSmtpConnection,
    pipelining: bool,
    envelope: &Envelope,
    message: &[u8],
) -> Result<(), lettre::transport::smtp::Error> {
    let ascii_addresses = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .all(|a: &lettre::Address| AsRef::<str>::as_ref(a).is_ascii());
    let text = match std::str::from_utf8(message) {
        Ok(text) if ascii_addresses && text.is_ascii() => text,
        _ => return conn.send(envelope, message).await.map(|_| ()),
    };
    let mail = Mail::new(envelope.from().cloned(), vec![]);
    let rcpts = envelope.to().iter().map(|to| Rcpt::new(to.clone(), vec![]));
    if pipelining {
        // RFC 2920: MAIL, every RCPT and DATA (the last command of a group) in one write.
        let mut group = mail.to_string();
        for rcpt in rcpts {
            group.push_str(&rcpt.to_string());
        }
        group.push_str(&Data.to_string());
        conn.command(group.as_str()).await?;
        for _ in 0..envelope.to().len() + 1 {
            conn.read_response().await?;
        }
    } else {
        conn.command(mail).await?;
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

    use super::{SmtpPool, SmtpTarget, StartTls};

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
                starttls: StartTls::None,
                credentials: None,
                timeout: Duration::from_secs(3),
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
