//! The bounce mailbox: `serve` polls `bounces.imap_url` (`imaps://user:pass@host/INBOX`) every
//! `bounces.imap_poll`, applies every unseen message through the same parse → resolve → apply
//! path as `verdicts bounces import`, and then marks it handled: moved to
//! `bounces.imap_done_folder` when set, else flagged `\Seen`. A message that is not a report we
//! can read is flagged `\Seen \Flagged` (for a person to look at) and skipped. Applying is
//! idempotent, so a crash between applying and flagging only repeats work.
//!
//! `imaps://` is TLS from the first byte (port 993; the public webpki roots plus any in
//! `bounces.imap_ca_file`); plain `imap://` (port 143)
//! is accepted only for a loopback host, so credentials never cross a network in the clear.

use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Source;
use super::intake::ApplyReport;
pub use super::mailbox::Mailbox;
use super::parse::parse;
use crate::config::BounceSettings;
use crate::shutdown::Shutdown;

/// What one poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Polled {
    /// Messages applied (new events and repeats alike) and marked handled.
    pub handled: usize,
    /// Messages that were not readable reports, flagged for a person.
    pub unreadable: usize,
}

/// How to reach the mailbox and what to do with handled messages.
#[derive(Debug, Clone, Copy)]
pub struct PollOptions<'a> {
    pub done_folder: Option<&'a str>,
    /// Extra trusted roots (PEM) for `imaps://`.
    pub ca_file: Option<&'a std::path::Path>,
    /// Bounds every step (connect, TLS, each IMAP command).
    pub timeout: Duration,
    /// Resolves the mailbox's host name (`[dns]`); the name stays the TLS server name.
    pub resolver: &'a crate::dns::Resolver,
}

fn tls_roots(ca_file: Option<&std::path::Path>) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
            .with_context(|| format!("bounces.imap_ca_file: reading {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("bounces.imap_ca_file: {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("bounces.imap_ca_file: {}", path.display()))?;
        }
    }
    Ok(roots)
}

/// Connects, logs in, applies every unseen message, marks them, logs out.
pub async fn poll_once(
    mailbox: &Mailbox,
    intake: &impl ApplyReport,
    options: PollOptions<'_>,
) -> anyhow::Result<Polled> {
    let PollOptions {
        done_folder,
        ca_file,
        timeout,
        resolver,
    } = options;
    let tcp = match resolver.connect(&mailbox.host, mailbox.port, timeout).await {
        Ok(tcp) => tcp,
        Err(crate::dns::ConnectError::TimedOut) => {
            anyhow::bail!("connecting to {mailbox:?} timed out")
        }
        Err(crate::dns::ConnectError::Io(e)) => {
            return Err(anyhow::Error::from(e).context(format!("connecting to {mailbox:?}")));
        }
        Err(crate::dns::ConnectError::Dns(e)) => {
            anyhow::bail!("resolving the bounce mailbox {} (dns.*): {e}", mailbox.host)
        }
    };
    if mailbox.tls {
        let roots = tls_roots(ca_file)?;
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(mailbox.host.clone())
            .context("the IMAP host is not a valid TLS name")?;
        let tls = tokio::time::timeout(
            timeout,
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp),
        )
        .await
        .context("the TLS handshake timed out")?
        .with_context(|| format!("TLS with {mailbox:?}"))?;
        session(tls, mailbox, intake, done_folder, timeout).await
    } else {
        session(tcp, mailbox, intake, done_folder, timeout).await
    }
}

async fn session<S>(
    stream: S,
    mailbox: &Mailbox,
    intake: &impl ApplyReport,
    done_folder: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Polled>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let step = |what: &'static str| move |_| anyhow::anyhow!("IMAP {what} timed out");
    let mut client = async_imap::Client::new(stream);
    tokio::time::timeout(timeout, client.read_response())
        .await
        .map_err(step("greeting"))?
        .context("reading the IMAP greeting")?
        .context("the IMAP server closed the connection")?;
    let mut session = tokio::time::timeout(timeout, client.login(&mailbox.user, &mailbox.password))
        .await
        .map_err(step("login"))?
        .map_err(|(e, _)| anyhow::anyhow!("IMAP login as {}: {e}", mailbox.user))?;
    tokio::time::timeout(timeout, session.select(&mailbox.folder))
        .await
        .map_err(step("select"))?
        .with_context(|| format!("selecting {}", mailbox.folder))?;
    let uids = tokio::time::timeout(timeout, session.uid_search("UNSEEN"))
        .await
        .map_err(step("search"))??;
    let mut uids: Vec<u32> = uids.into_iter().collect();
    uids.sort_unstable();
    let mut polled = Polled::default();
    for chunk in uids.chunks(50) {
        let set = chunk
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let fetched: Vec<(u32, Vec<u8>)> = {
            let stream =
                tokio::time::timeout(timeout, session.uid_fetch(&set, "(UID BODY.PEEK[])"))
                    .await
                    .map_err(step("fetch"))??;
            let all: Vec<_> = tokio::time::timeout(timeout, stream.collect::<Vec<_>>())
                .await
                .map_err(step("fetch"))?;
            let mut out = Vec::new();
            for f in all {
                let f = f.context("reading a fetched message")?;
                if let (Some(uid), Some(body)) = (f.uid, f.body()) {
                    out.push((uid, body.to_vec()));
                }
            }
            out
        };
        for (uid, body) in fetched {
            let origin = format!("{mailbox:?}#{uid}");
            let flags = match parse(&body) {
                Ok(report) => {
                    let p = intake.apply_report(&origin, &report, Source::Imap).await?;
                    tracing::info!(%origin, kind = %p.kind, subscriber = p.subscriber_id, effect = ?p.applied.effect, "bounce mailbox message applied");
                    polled.handled += 1;
                    if let Some(folder) = done_folder {
                        tokio::time::timeout(timeout, session.uid_mv(uid.to_string(), folder))
                            .await
                            .map_err(step("move"))?
                            .with_context(|| format!("moving message {uid} to {folder}"))?;
                        continue;
                    }
                    "+FLAGS (\\Seen)"
                }
                Err(e) => {
                    tracing::warn!(%origin, error = %e, "bounce mailbox message is not a readable report; flagged");
                    polled.unreadable += 1;
                    "+FLAGS (\\Seen \\Flagged)"
                }
            };
            let updates = tokio::time::timeout(timeout, session.uid_store(uid.to_string(), flags))
                .await
                .map_err(step("store"))??;
            let _: Vec<_> = updates.collect().await;
        }
    }
    let _ = tokio::time::timeout(timeout, session.logout()).await;
    Ok(polled)
}

/// Polls the bounce mailbox every `bounces.imap_poll` until shutdown (part of `serve`); every
/// report goes to `sink` (the application layer). `timeout` bounds each IMAP step.
pub async fn run(
    sink: impl ApplyReport,
    bounces: &BounceSettings,
    mailbox: Mailbox,
    timeout: Duration,
    resolver: crate::dns::Resolver,
    shutdown: Shutdown,
) {
    let every = bounces.imap_poll.0;
    tracing::info!(mailbox = ?mailbox, every = ?every, "polling the bounce mailbox");
    loop {
        let options = PollOptions {
            done_folder: bounces.imap_done_folder.as_deref(),
            ca_file: bounces.imap_ca_file.as_deref(),
            timeout,
            resolver: &resolver,
        };
        match poll_once(&mailbox, &sink, options).await {
            Ok(p) if p.handled + p.unreadable > 0 => {
                tracing::info!(
                    handled = p.handled,
                    unreadable = p.unreadable,
                    "bounce mailbox polled"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "polling the bounce mailbox failed"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.clone().wait() => break,
        }
    }
    tracing::info!("bounce mailbox poller stopped");
}
