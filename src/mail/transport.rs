//! Transports: the `outbox` (one `.eml` file per message, the embedded default) or SMTP through
//! our pool of lettre connections ([`super::smtp_pool`]), built once per process.
//!
//! SMTP failures are classified, not string-matched: lettre tells reply codes from connection
//! errors; [`classify`] sorts them into the transport's failures (no attempt counted), transient
//! replies to a message (retried) and permanent ones (recorded).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use rand::RngCore;
use secrecy::ExposeSecret;

pub use super::error::{SendError, classify};
use super::smtp_pool::{SmtpPool, SmtpTarget};
use super::tls::TlsTrust;
use crate::config::{MailSettings, SmtpSettings, SmtpTls, Transport as TransportKind};

/// Where messages go.
#[derive(Clone)]
pub enum Transport {
    Outbox {
        dir: PathBuf,
    },
    /// `smtp://` (plain or STARTTLS) and `smtps://` (implicit TLS): our pool of `TCP_NODELAY`
    /// connections.
    Smtp(SmtpPool),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Outbox { dir } => write!(f, "Outbox({})", dir.display()),
            Transport::Smtp(_) => f.write_str("Smtp"),
        }
    }
}

impl Transport {
    /// Builds the configured transport; the SMTP pool keeps up to `connections` connections
    /// (`delivery.concurrency` plus room for transactional mail).
    pub fn new(
        mail: &MailSettings,
        smtp: &SmtpSettings,
        dns: &crate::config::DnsSettings,
        connections: usize,
    ) -> anyhow::Result<Transport> {
        match mail.transport {
            TransportKind::Outbox => {
                let dir = mail.outbox_dir.clone();
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("mail.outbox_dir: creating {}", dir.display()))?;
                Ok(Transport::Outbox { dir })
            }
            TransportKind::Smtp => {
                let url = &smtp.url;
                let trust = match url.tls {
                    SmtpTls::None => None,
                    _ => Some(TlsTrust::new(&url.host, smtp.ca_file.as_deref())?),
                };
                let target = SmtpTarget {
                    host: url.host.clone(),
                    port: url.port,
                    tls: url.tls,
                    credentials: url.credentials.as_ref().map(|c| {
                        Credentials::new(c.user.clone(), c.password.expose_secret().to_string())
                    }),
                    timeout: Duration::from_secs(smtp.timeout_seconds),
                    trust,
                    idle_check: smtp.idle_check.0,
                    resolver: crate::dns::Resolver::new(dns)?,
                };
                Ok(Transport::Smtp(SmtpPool::new(target, connections)))
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
        self.send_raw_unless(from, to, message, std::future::pending())
            .await
    }

    /// Like [`Transport::send_raw`], but gives up with [`SendError::Cancelled`] when `cancel`
    /// finishes before any of the message went out (see [`SmtpPool::send_unless`]).
    pub async fn send_raw_unless(
        &self,
        from: &Address,
        to: &Address,
        message: &[u8],
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<(), SendError> {
        match self {
            Transport::Outbox { dir } => {
                write_outbox(dir, to, message)
                    .await
                    .map_err(|e| SendError::Transport {
                        message: format!("writing to the outbox: {e}"),
                    })
            }
            Transport::Smtp(pool) => {
                let envelope =
                    Envelope::new(Some(from.clone()), vec![to.clone()]).map_err(|e| {
                        SendError::Permanent {
                            code: None,
                            message: format!("bad envelope: {e}"),
                            recipient: true,
                        }
                    })?;
                pool.send_unless(&envelope, message, cancel).await
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
        }
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
