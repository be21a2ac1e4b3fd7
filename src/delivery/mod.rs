//! The delivery engine: sends a frozen issue to its ledger of recipients.
//!
//! - **Claims** come in small batches under a lease (see [`crate::store::deliveries`]), so
//!   several workers share a send. A heartbeat renews the leases of the rows a worker holds
//!   (every third of `delivery.lease_seconds`), so a row in flight is never taken and a dead
//!   worker's rows return one lease after its last beat ([`leases`]).
//! - **Limits hold for the installation**: `delivery.rate_per_second` and
//!   `delivery.window_limit` are budgets in the database that every worker reserves from
//!   ([`crate::store::limits`], [`pacer`]); a full window pauses the send until it has room.
//! - **A window of `delivery.concurrency` permits** bounds the work in progress: a permit is taken
//!   before a message is sent and given back only after its outcome is committed. So a crash at
//!   any moment loses the outcomes of at most `concurrency` messages — the only ones that can be
//!   sent twice after a restart — and no recipient is ever skipped (an unsettled row stays
//!   pending).
//! - **Outcomes are group-committed**: a recorder settles whatever has finished in one
//!   transaction, so the database is not the bottleneck.
//! - **Failures** are classified: a 4xx reply to a message (421 included) is that message's: it
//!   is tried again at once on another connection, and after `MESSAGE_TRIES` (3) tries it
//!   counts an attempt and retries with exponential backoff and jitter up to
//!   `delivery.max_attempts`; 5xx fail at once, and 550/551/553 mark the subscriber bounced.
//! - **Transport failures are the transport's**: an unreachable server, a TLS failure, a refused
//!   login, AUTH not offered, a timeout (see [`SendError::Transport`]) put the message back
//!   *without* counting an attempt and pause claiming with growing waits (1 s, then 2 s;
//!   [`crate::mail::backoff`]) until the server answers again. The waits count failed *tries*
//!   (a window of messages failing together is one; while failing, a try is one message and
//!   the rest of a claim goes back at once), and the first accepted message anywhere ends them. Each new such error is stored on the issue (with since when) and reported as
//!   it happens; once no message has been accepted for `delivery.stall_after`, the issue pauses
//!   with the error as its reason. `delivery.pause_after_failures` consecutive failed messages
//!   pause the issue too. The engine decides these pauses; the application layer applies and
//!   logs them ([`crate::issues::Supervisor`]).
//! - **Shutdown never waits for a handshake**: a message still looking for a connection (connect,
//!   TLS, AUTH) is put back at once; one already on the wire is bounded by `smtp.timeout_seconds`.
//! - **Pause, resume, cancel** are issue statuses, checked before every claim (well under a
//!   second apart), so they take effect across workers within a second.

pub mod dkim;
mod leases;
mod pacer;
mod recorder;
mod send;
pub mod status;
mod watch;

pub use send::MESSAGE_TRIES;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use lettre::message::Mailbox;
use rand::Rng;

use crate::config::{SecretKey, Settings};
use crate::issues::variants::{Variant, ensure_variant};
use crate::issues::{IssueStatus, Supervisor};
use crate::mail::newsletter::{IssueMail, Recipient};
use crate::mail::transport::Transport;
use crate::render::{Personalizer, Renderer, SlotValues};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::store::deliveries::Claimed;
use crate::store::workers::WorkerInfo;
use crate::subscribers::lifecycle::{manage_url, unsubscribe_url};

/// Everything a worker needs; built once per process.
#[derive(Clone)]
pub struct Engine {
    pub store: Store,
    pub transport: Transport,
    pub settings: Arc<Settings>,
    pub secret: SecretKey,
    /// The DKIM keys, parsed once per process.
    pub dkim: Option<Arc<dkim::DkimSigner>>,
    /// Names this worker in leases and in `issue status` (`host:pid:random`).
    pub owner: String,
    /// Renders a set of an issue's comparisons that no one rendered yet (a reader who changed
    /// their categories as the send started, or a crash before the renders were kept).
    pub renderer: Arc<Renderer>,
}

/// How a send of one issue ended for this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendEnd {
    /// Every delivery is settled; the issue is `sent`.
    Finished,
    /// The issue left `sending` (paused, cancelled, or paused automatically).
    Stopped(IssueStatus),
    /// Shutdown was requested; the rest stays pending for the next start.
    Shutdown,
}

/// Who a send reports to: the supervisor that applies its automatic pauses, and optional
/// callbacks for a front end following it.
pub struct Hooks<'a> {
    pub supervisor: &'a dyn Supervisor,
    /// Called after every committed batch with the number of deliveries it settled for good
    /// (sent, failed or skipped; not retries).
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// Called with each new transport error as it happens (`issue send` prints them).
    pub transport_error: Option<&'a (dyn Fn(&str) + Sync)>,
}

impl<'a> Hooks<'a> {
    pub fn new(supervisor: &'a dyn Supervisor) -> Hooks<'a> {
        Hooks {
            supervisor,
            progress: None,
            transport_error: None,
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// A worker identity for leases.
pub fn worker_name() -> String {
    format!(
        "{}:{}:{:04x}",
        host_name(),
        std::process::id(),
        rand::rng().random::<u16>()
    )
}

impl Engine {
    /// Builds the engine from settings: the transport (SMTP pool) and DKIM key, once.
    pub fn new(
        store: Store,
        settings: Arc<Settings>,
        secret: SecretKey,
        renderer: Arc<Renderer>,
    ) -> anyhow::Result<Engine> {
        Ok(Engine {
            renderer,
            transport: Transport::new(
                &settings.mail,
                &settings.smtp,
                &settings.dns,
                settings.delivery.concurrency as usize + 2,
            )?,
            dkim: dkim::DkimSigner::from_settings(&settings.dkim)?.map(Arc::new),
            store,
            settings,
            secret,
            owner: worker_name(),
        })
    }

    /// Loads a frozen issue and splits it for personalisation, once per send.
    async fn prepare(&self, issue_id: i64) -> anyhow::Result<IssueMail> {
        let issue = self
            .store
            .get_issue(issue_id)
            .await?
            .with_context(|| format!("no issue {issue_id}"))?;
        let (Some(number), Some(subject), Some(html), Some(text)) =
            (issue.number, issue.subject, issue.html, issue.text)
        else {
            anyhow::bail!("issue {} has no content to send", issue.week);
        };
        self.issue_mail(number, &subject, &html, &text)
    }

    /// One rendering split for personalisation (and DKIM's fixed part hashed), once per send.
    fn issue_mail(
        &self,
        number: i64,
        subject: &str,
        html: &str,
        text: &str,
    ) -> anyhow::Result<IssueMail> {
        let mut mail = IssueMail::new(number, subject, &Personalizer::new(html, text))
            .with_votes(&self.secret);
        if self.dkim.is_some() {
            mail.prepare_dkim(&self.settings)?;
        }
        Ok(mail)
    }

    /// The sets of the issue's comparisons its pending rows need (readers with categories),
    /// each prepared once: the stored rendering, or rendered now and kept for every worker.
    async fn prepare_variants(
        &self,
        issue_id: i64,
    ) -> anyhow::Result<HashMap<String, Arc<IssueMail>>> {
        let needed = self.store.pending_variants(issue_id).await?;
        let mut out = HashMap::new();
        if needed.is_empty() {
            return Ok(out);
        }
        let issue = self
            .store
            .get_issue(issue_id)
            .await?
            .with_context(|| format!("no issue {issue_id}"))?;
        let number = issue.number.context("an issue without content")?;
        for flags in needed {
            let variant = Variant::parse(&flags, issue.items.len())
                .with_context(|| format!("issue {}: stored set {flags:?}", issue.week))?;
            let r = ensure_variant(
                &self.store,
                &self.renderer,
                &self.settings,
                &issue,
                &variant,
            )
            .await?;
            out.insert(
                flags,
                Arc::new(self.issue_mail(number, &r.subject, &r.html, &r.text)?),
            );
        }
        Ok(out)
    }

    fn compose_for(
        &self,
        prepared: &IssueMail,
        c: &Claimed,
    ) -> anyhow::Result<(lettre::Address, Vec<u8>)> {
        let sid = c.subscriber_id.context("erased subscriber")?;
        let email = c.email.as_deref().context("erased subscriber")?;
        let address: lettre::Address = email.parse().context("stored address")?;
        let unsubscribe = unsubscribe_url(&self.settings.http.public_url, &self.secret, sid);
        let values = SlotValues::for_recipient(
            email,
            &self.settings.newsletter.name.0,
            &unsubscribe,
            prepared.vote_reader(sid),
        )
        .with_manage_link(&manage_url(
            &self.settings.http.public_url,
            &self.secret,
            sid,
        ));
        let bytes = prepared.message(
            &self.settings,
            self.dkim.as_deref(),
            Recipient {
                to: Mailbox::new(c.name.clone(), address.clone()),
                message_id_local: &format!("issue-{}.sub-{sid}", prepared.number),
                unsubscribe_url: &unsubscribe,
                values: &values,
            },
        )?;
        Ok((address, bytes))
    }

    /// Sends an issue to one address for checking, subject marked `[TEST]`. Never recorded as
    /// a delivery; the unsubscribe link is a placeholder.
    pub async fn test_send(
        &self,
        issue_id: i64,
        to: &crate::subscribers::SubscriberEmail,
    ) -> anyhow::Result<()> {
        let mut mail = self.prepare(issue_id).await?;
        mail.subject = format!("[TEST] {}", mail.subject);
        let (address, bytes) = self.test_message(&mail, to.as_str())?;
        self.transport
            .send_raw(
                &crate::bounces::verp::plain_sender(&self.settings.mail),
                &address,
                &bytes,
            )
            .await
            .map_err(|e| anyhow::anyhow!("test send to {to}: {e}"))
    }

    /// A copy of `mail` to `to` with a placeholder unsubscribe link, signed like every message.
    fn test_message(
        &self,
        mail: &IssueMail,
        to: &str,
    ) -> anyhow::Result<(lettre::Address, Vec<u8>)> {
        let unsubscribe = self.settings.http.public_url.join("unsubscribe/TEST");
        let values = SlotValues::for_recipient(
            to,
            &self.settings.newsletter.name.0,
            &unsubscribe,
            crate::engagement::SAMPLE_READER.to_string(),
        );
        let address: lettre::Address = to.parse()?;
        let bytes = mail.message(
            &self.settings,
            self.dkim.as_deref(),
            Recipient {
                to: Mailbox::new(None, address.clone()),
                message_id_local: &format!(
                    "issue-{}.test-{}",
                    mail.number,
                    rand::rng().random::<u32>()
                ),
                unsubscribe_url: &unsubscribe,
                values: &values,
            },
        )?;
        Ok((address, bytes))
    }

    /// The message one reader would get of an issue, exactly as it would leave (headers, both
    /// parts, DKIM), for the pre-send checks. Nothing is sent.
    pub async fn sample_message(&self, issue_id: i64) -> anyhow::Result<Vec<u8>> {
        let mail = self.prepare(issue_id).await?;
        Ok(self.test_message(&mail, "reader@example.org")?.1)
    }

    /// Sends one issue until it is finished, stopped (by an operator or automatically), or
    /// shutdown is requested. The worker is listed in `issue status` while it sends.
    pub async fn send_issue(
        &self,
        issue_id: i64,
        shutdown: Shutdown,
        hooks: &Hooks<'_>,
    ) -> anyhow::Result<SendEnd> {
        let send = send::IssueSend::new(self, issue_id, shutdown, hooks).await?;
        self.store
            .register_worker(&WorkerInfo {
                name: self.owner.clone(),
                host: host_name(),
                pid: std::process::id(),
                concurrency: self.settings.delivery.concurrency,
            })
            .await?;
        let end = send.run().await;
        if let Err(e) = self.store.deregister_worker(&self.owner).await {
            tracing::warn!(error = %e, "deregistering the worker failed");
        }
        end
    }
}
