//! Transports: the `outbox` (one `.eml` file per message, the embedded default) or SMTP through
//! lettre's pooled async transport, built once per process.
//!
//! SMTP failures are classified, not string-matched: lettre tells transient (4xx, connection,
//! timeout) from permanent (5xx) errors; callers retry the first and record the second.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;

use super::smtp_pool::{SmtpPool, SmtpTarget, StartTls};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rand::RngCore;

use crate::config::{Settings, Transport as TransportKind};

/// A failed send, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: 4xx replies (`code`), or no reply at all — refused or dropped
    /// connections, timeouts, local I/O (`code: None`: the server is unreachable).
    #[error("transient ({code:?}): {message}")]
    Transient { code: Option<u16>, message: String },
    /// Not worth retrying: a 5xx reply. `recipient` is true for 550/551/553, which reject the
    /// address itself (the subscriber bounced).
    #[error("permanent ({code:?}): {message}")]
    Permanent {
        code: Option<u16>,
        message: String,
        recipient: bool,
    },
}

/// Where messages go.
#[derive(Clone)]
pub enum Transport {
    Outbox {
        dir: PathBuf,
    },
    /// `smtp://` (plain or STARTTLS): our pool of `TCP_NODELAY` connections.
    Smtp(SmtpPool),
    /// `smtps://` (implicit TLS): lettre's pooled transport.
    Smtps(AsyncSmtpTransport<Tokio1Executor>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Outbox { dir } => write!(f, "Outbox({})", dir.display()),
            Transport::Smtp(_) => f.write_str("Smtp"),
            Transport::Smtps(_) => f.write_str("Smtps"),
        }
    }
}

impl Transport {
    /// Builds the configured transport (the SMTP pool is sized to `delivery.concurrency`).
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Transport> {
        match settings.mail.transport {
            TransportKind::Outbox => {
                let dir = settings.mail.outbox_dir.clone();
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("mail.outbox_dir: creating {}", dir.display()))?;
                Ok(Transport::Outbox { dir })
            }
            TransportKind::Smtp if settings.smtp.url.expose().starts_with("smtp://") => {
                let url =
                    url::Url::parse(settings.smtp.url.expose()).context("smtp.url: not a URL")?;
                let starttls = match url
                    .query_pairs()
                    .find(|(k, _)| k == "tls")
                    .map(|(_, v)| v.into_owned())
                    .as_deref()
                {
                    None | Some("none") => StartTls::None,
                    Some("opportunistic") => StartTls::Opportunistic,
                    Some("required") => StartTls::Required,
                    Some(other) => anyhow::bail!(
                        "smtp.url: tls={other:?} (use required, opportunistic or none)"
                    ),
                };
                let credentials = (!url.username().is_empty()).then(|| {
                    let decode = |s: &str| percent_decode(s);
                    Credentials::new(
                        decode(url.username()),
                        decode(url.password().unwrap_or_default()),
                    )
                });
                let target = SmtpTarget {
                    host: url.host_str().unwrap_or_default().to_string(),
                    port: url.port().unwrap_or(25),
                    starttls,
                    credentials,
                    timeout: Duration::from_secs(settings.smtp.timeout_seconds),
                };
                Ok(Transport::Smtp(SmtpPool::new(
                    target,
                    settings.delivery.concurrency as usize + 2,
                )))
            }
            TransportKind::Smtp => {
                let pool = PoolConfig::new()
                    .max_size(settings.delivery.concurrency.max(1) + 2)
                    .idle_timeout(Duration::from_secs(60));
                let transport =
                    AsyncSmtpTransport::<Tokio1Executor>::from_url(settings.smtp.url.expose())
                        .context("smtp.url: not a usable SMTP URL")?
                        .timeout(Some(Duration::from_secs(settings.smtp.timeout_seconds)))
                        .pool_config(pool)
                        .build();
                Ok(Transport::Smtps(transport))
            }
        }
    }

    /// Sends one formatted message to one recipient.
    pub async fn send_raw(
        &self,
        from: &Address,
        to: &Address,
        message: &[u8],
    ) -> Result<(), SendError> {
        match self {
            Transport::Outbox { dir } => {
                write_outbox(dir, to, message)
                    .await
                    .map_err(|e| SendError::Transient {
                        code: None,
                        message: format!("writing to the outbox: {e}"),
                    })
            }
            Transport::Smtp(_) | Transport::Smtps(_) => {
                let envelope =
                    Envelope::new(Some(from.clone()), vec![to.clone()]).map_err(|e| {
                        SendError::Permanent {
                            code: None,
                            message: format!("bad envelope: {e}"),
                            recipient: true,
                        }
                    })?;
                match self {
                    Transport::Smtp(pool) => pool.send(&envelope, message).await,
                    Transport::Smtps(smtp) => smtp
                        .send_raw(&envelope, message)
                        .await
                        .map(|_| ())
                        .map_err(classify),
                    Transport::Outbox { .. } => unreachable!("handled above"),
                }
            }
        }
    }

    /// Whether the transport can take mail now (for `/readyz`).
    pub async fn check(&self) -> anyhow::Result<()> {
        match self {
            Transport::Outbox { dir } => {
                anyhow::ensure!(dir.is_dir(), "outbox {} is missing", dir.display());
                Ok(())
            }
            Transport::Smtp(pool) => pool
                .check()
                .await
                .map_err(|e| anyhow::anyhow!("connecting to the SMTP server: {e}")),
            Transport::Smtps(smtp) => {
                let ok = smtp
                    .test_connection()
                    .await
                    .context("connecting to the SMTP server")?;
                anyhow::ensure!(ok, "the SMTP server did not answer NOOP");
                Ok(())
            }
        }
    }
}

/// lettre's error → our classification.
pub fn classify(e: lettre::transport::smtp::Error) -> SendError {
    let code = e.status().map(u16::from);
    if e.is_permanent() {
        return SendError::Permanent {
            code,
            message: e.to_string(),
            recipient: matches!(code, Some(550 | 551 | 553)),
        };
    }
    SendError::Transient {
        code,
        message: e.to_string(),
    }
}

async fn write_outbox(dir: &std::path::Path, to: &Address, message: &[u8]) -> std::io::Result<()> {
    let mut rnd = [0u8; 6];
    rand::rng().fill_bytes(&mut rnd);
    let safe_to: String = to
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let name = format!(
        "{}-{safe_to}-{}.eml",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        hex::encode(rnd)
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, message).await?;
    // Rename is atomic: a reader never sees half a message.
    tokio::fs::rename(&tmp, dir.join(name)).await
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}
