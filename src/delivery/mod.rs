//! The delivery engine: sends a frozen issue to its ledger of recipients.
//!
//! - **Claims** come in small batches under a lease (see [`crate::store::deliveries`]), so
//!   several workers share a send and a dead worker's rows return after the lease.
//! - **A window of `delivery.concurrency` permits** bounds the work in progress: a permit is taken
//!   before a message is sent and given back only after its outcome is committed. So a crash at
//!   any moment loses the outcomes of at most `concurrency` messages — the only ones that can be
//!   sent twice after a restart — and no recipient is ever skipped (an unsettled row stays
//!   pending).
//! - **Outcomes are group-committed**: a recorder settles whatever has finished in one
//!   transaction, so the database is not the bottleneck.
//! - **Failures** are classified: 4xx replies retry with exponential backoff and jitter up to
//!   `delivery.max_attempts`; 5xx fail at once, and 550/551/553 mark the subscriber bounced.
//! - **Transport failures are the transport's**: an unreachable server, a TLS failure, a refused
//!   login, AUTH not offered, a timeout (see [`SendError::Transport`]) put the message back
//!   *without* counting an attempt and pause claiming with growing waits until the server
//!   answers again. Each new such error is stored on the issue (with since when) and reported as
//!   it happens; once no message has been accepted for `delivery.stall_after`, the issue pauses
//!   with the error as its reason. `delivery.pause_after_failures` consecutive failed messages
//!   pause the issue too.
//! - **Shutdown never waits for a handshake**: a message still looking for a connection (connect,
//!   TLS, AUTH) is put back at once; one already on the wire is bounded by `smtp.timeout_seconds`.
//! - **Pause, resume, cancel** are issue statuses, checked before every claim (well under a
//!   second apart), so they take effect across workers within a second.

pub mod dkim;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::message::Mailbox;
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::config::{SecretKey, Settings};
use crate::issues::IssueStatus;
use crate::mail::newsletter::{IssueMail, Recipient};
use crate::mail::transport::{SendError, Transport};
use crate::render::{Personalizer, SlotValues};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::store::deliveries::{Claimed, Outcome};
use crate::subscribers::lifecycle::unsubscribe_url;

/// How often the claimer re-reads the issue's status (pause, cancel) while sending.
const STATUS_EVERY: Duration = Duration::from_millis(200);
/// How often the claimer re-checks the issue's complaint and bounce rates (the circuit
/// breaker; reports that arrive are checked at once, this catches the sample filling up).
const BREAKER_EVERY: Duration = Duration::from_secs(2);
/// Rows claimed at a time, as a multiple of `delivery.concurrency`: enough that the window
/// rarely waits for a claim, few enough that a lease covers them easily.
const CLAIM_FACTOR: usize = 4;

/// Everything a worker needs; built once per process.
#[derive(Clone)]
pub struct Engine {
    pub store: Store,
    pub transport: Transport,
    pub settings: Arc<Settings>,
    pub secret: SecretKey,
    /// The DKIM keys, parsed once per process.
    pub dkim: Option<Arc<dkim::DkimSigner>>,
    /// Names this worker in leases (`host:pid:random`).
    pub owner: String,
}

/// How a send of one issue ended for this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendEnd {
    /// Every delivery is settled; the issue is `sent`.
    Finished,
    /// The issue left `sending` (paused, cancelled, or paused for failures).
    Stopped(IssueStatus),
    /// Shutdown was requested; the rest stays pending for the next start.
    Shutdown,
}

/// A worker identity for leases.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}:{}:{:04x}",
        std::process::id(),
        rand::rng().random::<u16>()
    )
}

fn retry_delay(base: Duration, attempts: i64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.clamp(0, 10) as u32);
    let capped = exp.min(Duration::from_secs(3600));
    let jitter = rand::rng().random_range(0.8..1.2);
    capped.mul_f64(jitter)
}

/// An outcome on its way to the ledger, holding the permit of its message until committed.
type Finished = (i64, Option<i64>, Outcome, OwnedSemaphorePermit);

/// One delivery's outcome as the ledger records it.
type Settled = (i64, Option<i64>, Outcome);

/// Commits one batch of outcomes, retrying (outcomes matter: an unrecorded send goes out
/// again), then frees the batch's permits. Returns how many deliveries it settled for good.
async fn commit_batch(
    store: &Store,
    outcomes: &[Settled],
    permits: Vec<OwnedSemaphorePermit>,
    shutdown: &Shutdown,
) -> u64 {
    let mut tries = 0;
    while let Err(e) = store.record_outcomes(outcomes).await {
        tries += 1;
        // Once shutdown is requested, keep trying only for a bounded time.
        if shutdown.is_triggered() && tries >= 5 {
            tracing::error!(
                error = %e,
                messages = outcomes.len(),
                "giving up recording outcomes at shutdown; these messages may be sent again"
            );
            break;
        }
        tracing::warn!(error = %e, tries, "recording outcomes failed; retrying");
        tokio::time::sleep(Duration::from_millis(200 * tries.min(25))).await;
    }
    // Only now, after the commit, do the permits free the window.
    drop(permits);
    outcomes
        .iter()
        .filter(|(_, _, o)| matches!(o, Outcome::Sent | Outcome::Skipped | Outcome::Failed { .. }))
        .count() as u64
}

/// Counts consecutive failed messages in arrival order and pauses the issue, with the last
/// error as its reason, once there are `pause_after` of them.
async fn count_failures(
    store: &Store,
    issue_id: i64,
    failures: &mut u32,
    pause_after: u32,
    batch: &[Settled],
) {
    let mut last_error = None;
    for (_, _, o) in batch {
        match o {
            Outcome::Sent | Outcome::Skipped => *failures = 0,
            Outcome::Retry { error, .. } | Outcome::Failed { error, .. } => {
                *failures += 1;
                last_error = Some(error.clone());
            }
            Outcome::Release { .. } => {}
        }
    }
    let n = *failures;
    if n >= pause_after {
        let reason = format!(
            "paused after {n} consecutive failed messages; last error: {}",
            last_error.unwrap_or_default()
        );
        if store
            .transition_issue(
                issue_id,
                &[IssueStatus::Sending],
                IssueStatus::Paused,
                Some(&reason),
            )
            .await
            .unwrap_or(false)
        {
            tracing::warn!(issue_id, %reason, "issue paused");
        }
        *failures = 0;
    }
}

/// What a send knows about its transport: when a message was last accepted, and the failure
/// that has been going on since (if any). The messages in flight report to it; the recorder
/// stores and prints its changes; the claimer pauses the issue when it has stalled.
struct TransportWatch {
    last_accept: std::time::Instant,
    failing: Option<(String, chrono::DateTime<Utc>)>,
    changed: bool,
    /// The issue still shows an error from an earlier run (cleared by the first accept).
    shown: bool,
}

/// A transport failure as the issue records it: `None` once a message is accepted again.
type TransportState = Option<(String, chrono::DateTime<Utc>)>;

impl TransportWatch {
    fn new(shown: bool) -> TransportWatch {
        TransportWatch {
            last_accept: std::time::Instant::now(),
            failing: None,
            changed: false,
            shown,
        }
    }

    fn accepted(&mut self) {
        self.last_accept = std::time::Instant::now();
        if self.failing.take().is_some() || std::mem::take(&mut self.shown) {
            self.changed = true;
        }
    }

    fn failed(&mut self, error: &str) {
        match &mut self.failing {
            Some((last, _)) if last == error => {}
            Some((last, _)) => {
                *last = error.to_string();
                self.changed = true;
            }
            None => {
                self.failing = Some((error.to_string(), Utc::now()));
                self.changed = true;
                self.shown = false;
            }
        }
    }

    /// The state to record and report, if it changed since the last call.
    fn take_change(&mut self) -> Option<TransportState> {
        std::mem::take(&mut self.changed).then(|| self.failing.clone())
    }

    /// The reason to pause with, when the transport has been failing and nothing was accepted
    /// for `after`.
    fn stalled(&self, after: Duration) -> Option<String> {
        let (error, _) = self.failing.as_ref()?;
        (self.last_accept.elapsed() >= after).then(|| {
            format!(
                "no message accepted for {} (delivery.stall_after); the transport fails: {error}",
                humantime::format_duration(after)
            )
        })
    }
}

type Watch = std::sync::Mutex<TransportWatch>;

/// Stores a change of the transport's state on the issue and reports a new error.
async fn record_transport_change(
    store: &Store,
    issue_id: i64,
    watch: &Watch,
    on_error: Option<&(dyn Fn(&str) + Sync)>,
) {
    let Some(change) = watch.lock().expect("watch lock").take_change() else {
        return;
    };
    if let Some((error, _)) = &change {
        tracing::warn!(issue_id, %error, "the SMTP transport fails; no attempt is counted");
        if let Some(report) = on_error {
            report(error);
        }
    }
    let stored = change.as_ref().map(|(e, since)| (e.as_str(), *since));
    if let Err(e) = store.set_transport_error(issue_id, stored).await {
        tracing::warn!(issue_id, error = %e, "recording the transport error failed");
    }
}

/// Awaits `fut` while driving the messages in flight: the claimer's task is also the one that
/// sends, so a wait for a claim, a permit or the database never stalls them.
async fn while_sending<T, M>(
    inflight: &mut FuturesUnordered<M>,
    fut: impl std::future::Future<Output = T>,
) -> T
where
    M: std::future::Future<Output = ()>,
{
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            Some(()) = inflight.next(), if !inflight.is_empty() => {}
            out = &mut fut => return out,
        }
    }
}

impl Engine {
    /// Builds the engine from settings: the transport (SMTP pool) and DKIM key, once.
    pub fn new(store: Store, settings: Arc<Settings>, secret: SecretKey) -> anyhow::Result<Engine> {
        Ok(Engine {
            transport: Transport::from_settings(&settings)?,
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
        let mut mail = IssueMail::new(number, &subject, &Personalizer::new(&html, &text));
        if self.dkim.is_some() {
            mail.prepare_dkim(&self.settings)?;
        }
        Ok(mail)
    }

    fn compose_for(
        &self,
        prepared: &IssueMail,
        c: &Claimed,
    ) -> anyhow::Result<(lettre::Address, Vec<u8>)> {
        let sid = c.subscriber_id.context("erased subscriber")?;
        let email = c.email.as_deref().context("erased subscriber")?;
        let address: lettre::Address = email.parse().context("stored address")?;
        let unsubscribe = unsubscribe_url(&self.settings, &self.secret, sid);
        let values =
            SlotValues::for_recipient(email, &self.settings.newsletter.name.0, &unsubscribe);
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
        let unsubscribe = self.settings.http.public_url.join("unsubscribe/TEST");
        let values =
            SlotValues::for_recipient(to.as_str(), &self.settings.newsletter.name.0, &unsubscribe);
        let address: lettre::Address = to.as_str().parse()?;
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
        self.transport
            .send_raw(
                &crate::bounces::verp::plain_sender(&self.settings),
                &address,
                &bytes,
            )
            .await
            .map_err(|e| anyhow::anyhow!("test send to {to}: {e}"))
    }

    /// Sends one issue until it is finished, stopped by an operator, or shutdown is requested.
    /// `progress` is called after every committed batch with the number of deliveries it
    /// settled for good (sent, failed or skipped; not retries).
    pub async fn send_issue(
        &self,
        issue_id: i64,
        shutdown: Shutdown,
        progress: Option<&(dyn Fn(u64) + Sync)>,
    ) -> anyhow::Result<SendEnd> {
        self.send_issue_reporting(issue_id, shutdown, progress, None)
            .await
    }

    /// [`Engine::send_issue`], and `on_transport_error` is called with each new transport error
    /// as it happens (`issue send` prints them).
    pub async fn send_issue_reporting(
        &self,
        issue_id: i64,
        shutdown: Shutdown,
        progress: Option<&(dyn Fn(u64) + Sync)>,
        on_transport_error: Option<&(dyn Fn(&str) + Sync)>,
    ) -> anyhow::Result<SendEnd> {
        let prepared = Arc::new(self.prepare(issue_id).await?);
        let d = &self.settings.delivery;
        let concurrency = d.concurrency as usize;
        let permits = Arc::new(Semaphore::new(concurrency));
        let limiter: Option<Arc<DefaultDirectRateLimiter>> =
            std::num::NonZeroU32::new(d.rate_per_second)
                .map(|n| Arc::new(RateLimiter::direct(Quota::per_second(n))));
        let lease = Duration::from_secs(d.lease_seconds);
        let down_until = Arc::new(AtomicI64::new(0));
        let down_streak = Arc::new(AtomicU32::new(0));
        let (tx, mut rx) = mpsc::unbounded_channel::<Finished>();
        let shown = (self.store.get_issue(issue_id).await?)
            .is_some_and(|issue| issue.transport_error.is_some());
        let watch: Arc<Watch> = Arc::new(std::sync::Mutex::new(TransportWatch::new(shown)));
        let stall_after = d.stall_after.0;

        // The recorder: settles whatever has finished in one batch, then frees those permits.
        // One commit at a time: while it runs, the next batch gathers, so batches grow with the
        // load (several commits at once on PostgreSQL made batches of one or two outcomes and
        // cost more database CPU than they saved in latency).
        let store = self.store.clone();
        let pause_after = d.pause_after_failures;
        let shutdown_r = shutdown.clone();
        let watch_r = watch.clone();
        let recorder = async move {
            let mut failures = 0;
            while let Some(first) = rx.recv().await {
                let (mut outcomes, mut permits) = (Vec::new(), Vec::new());
                for (id, sid, o, permit) in
                    std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok()))
                {
                    outcomes.push((id, sid, o));
                    permits.push(permit);
                }
                count_failures(&store, issue_id, &mut failures, pause_after, &outcomes).await;
                let settled = commit_batch(&store, &outcomes, permits, &shutdown_r).await;
                record_transport_change(&store, issue_id, &watch_r, on_transport_error).await;
                if let Some(p) = progress {
                    p(settled);
                }
            }
        };

        let permits_c = permits.clone();
        let claimer = async move {
            let permits = permits_c;
            // The status is read at most every STATUS_EVERY (not per claim): an operator's pause
            // or cancel still takes effect well within a second.
            let mut status_read_at: Option<tokio::time::Instant> = None;
            let mut breaker_read_at = tokio::time::Instant::now();
            let policy = crate::bounces::policy::Policy::from_settings(&self.settings);
            // The next claim runs while the last `concurrency` rows of this one go out, so the
            // window does not drain while the database answers.
            let batch = (concurrency * CLAIM_FACTOR) as i64;
            let prefetch = |engine: Engine| {
                tokio::spawn(async move {
                    (engine.store)
                        .claim_deliveries(issue_id, &engine.owner, batch, lease)
                        .await
                })
            };
            let mut next: Option<tokio::task::JoinHandle<anyhow::Result<Vec<Claimed>>>> = None;
            // The messages in flight are futures of this task, not tasks of their own: on a
            // small machine shared with the database and the relay, one task sending 16 messages
            // costs less CPU than 16 tasks woken across threads (DKIM signing, the one heavy
            // step, goes to the blocking pool).
            let mut inflight = FuturesUnordered::new();
            let end = loop {
                if shutdown.is_triggered() {
                    break SendEnd::Shutdown;
                }
                if status_read_at.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
                    match while_sending(&mut inflight, self.store.issue_status(issue_id)).await? {
                        Some(IssueStatus::Sending) => {}
                        Some(other) => break SendEnd::Stopped(other),
                        None => anyhow::bail!("issue {issue_id} disappeared"),
                    }
                    status_read_at = Some(tokio::time::Instant::now());
                    let stalled = watch.lock().expect("watch lock").stalled(stall_after);
                    if let Some(reason) = stalled {
                        let paused = self.store.transition_issue(
                            issue_id,
                            &[IssueStatus::Sending],
                            IssueStatus::Paused,
                            Some(&reason),
                        );
                        if while_sending(&mut inflight, paused).await? {
                            tracing::warn!(issue_id, %reason, "issue paused");
                        }
                        break SendEnd::Stopped(IssueStatus::Paused);
                    }
                }
                if breaker_read_at.elapsed() >= BREAKER_EVERY {
                    breaker_read_at = tokio::time::Instant::now();
                    let check =
                        crate::bounces::policy::check_breaker(&self.store, &policy, issue_id);
                    if let Err(e) = while_sending(&mut inflight, check).await {
                        tracing::warn!(error = %e, "checking complaint and bounce rates failed");
                    }
                    // A pause shows at the next status read.
                    status_read_at = None;
                }
                let wait = down_until.load(Ordering::Relaxed) - Utc::now().timestamp_millis();
                if wait > 0 {
                    let pause = async {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(wait.min(1000) as u64)) => {}
                            _ = shutdown.clone().wait() => {}
                        }
                    };
                    while_sending(&mut inflight, pause).await;
                    continue;
                }
                let claim = next.take().unwrap_or_else(|| prefetch(self.clone()));
                let claimed = while_sending(&mut inflight, claim)
                    .await
                    .context("claiming deliveries")??;
                let full = claimed.len() as i64 == batch;
                if claimed.is_empty() {
                    // Wait for our own messages in flight, then see whether the send is done.
                    let all = permits.clone().acquire_many_owned(concurrency as u32);
                    drop(while_sending(&mut inflight, all).await?);
                    if self.store.finish_issue_if_done(issue_id).await? {
                        break SendEnd::Finished;
                    }
                    status_read_at = None;
                    // Retries scheduled later, or rows leased by another worker.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        _ = shutdown.clone().wait() => {}
                    }
                    continue;
                }
                let mut rest = claimed.into_iter();
                while let Some(c) = rest.next() {
                    if full && next.is_none() && rest.len() < concurrency {
                        next = Some(prefetch(self.clone()));
                    }
                    let permit = async {
                        tokio::select! {
                            p = permits.clone().acquire_owned() => Some(p),
                            _ = shutdown.clone().wait() => None,
                        }
                    };
                    let Some(permit) = while_sending(&mut inflight, permit).await else {
                        // A clean stop hands back the rows it will not send, so a restart
                        // (or another worker) takes them at once instead of after the lease.
                        let ids: Vec<i64> =
                            std::iter::once(c.id).chain(rest.map(|c| c.id)).collect();
                        let release = self.store.release_leases(&ids);
                        if let Err(e) = while_sending(&mut inflight, release).await {
                            tracing::warn!(error = %e, "releasing leases at shutdown failed");
                        }
                        break;
                    };
                    let permit = permit?;
                    let (tx, prepared, limiter) = (&tx, &prepared, limiter.as_deref());
                    let (down_until, down_streak) = (&*down_until, &*down_streak);
                    let (watch, shutdown) = (&*watch, &shutdown);
                    inflight.push(async move {
                        let outcome = self
                            .deliver(
                                issue_id,
                                prepared,
                                &c,
                                limiter,
                                (down_until, down_streak),
                                watch,
                                shutdown,
                            )
                            .await;
                        let _ = tx.send((c.id, c.subscriber_id, outcome, permit));
                    });
                }
            };
            // Rows claimed ahead and not sent go back at once, not after their lease.
            if let Some(claim) = next.take()
                && let Ok(Ok(rows)) = while_sending(&mut inflight, claim).await
            {
                let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
                let release = self.store.release_leases(&ids);
                if let Err(e) = while_sending(&mut inflight, release).await {
                    tracing::warn!(error = %e, "releasing leases failed");
                }
            }
            // Let everything in flight settle before reporting the end. Dropping `tx` (owned
            // by this block) lets the recorder finish once the last outcome is in.
            let all = permits.clone().acquire_many_owned(concurrency as u32);
            drop(while_sending(&mut inflight, all).await?);
            drop(inflight);
            drop(tx);
            Ok::<_, anyhow::Error>(end)
        };
        let (end, ()) = tokio::join!(claimer, recorder);
        let end = end?;
        tracing::info!(issue_id, ?end, "send loop ended");
        Ok(end)
    }

    /// Sends one message and classifies the result.
    // issue_id (for the VERP envelope sender) made it eight; a per-send context struct is the
    // engine owner's call.
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        issue_id: i64,
        prepared: &Arc<IssueMail>,
        c: &Claimed,
        limiter: Option<&DefaultDirectRateLimiter>,
        (down_until, down_streak): (&AtomicI64, &AtomicU32),
        watch: &Watch,
        shutdown: &Shutdown,
    ) -> Outcome {
        if c.subscriber_status != Some(crate::subscribers::SubscriberStatus::Confirmed) {
            return Outcome::Skipped;
        }
        let composed = if self.dkim.is_some() {
            // Signing costs up to 0.4 ms of CPU: on the blocking pool it uses every core and
            // does not hold up the other messages in flight.
            let (engine, prepared, c) = (self.clone(), prepared.clone(), c.clone());
            tokio::task::spawn_blocking(move || engine.compose_for(&prepared, &c))
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("composing panicked: {e}")))
        } else {
            self.compose_for(prepared, c)
        };
        let (to, bytes) = match composed {
            Ok(x) => x,
            Err(e) => {
                return Outcome::Failed {
                    error: format!("composing: {e:#}"),
                    bounced: false,
                };
            }
        };
        if let Some(l) = limiter {
            l.until_ready().await;
        }
        // With mail.return_path, the envelope sender names this (issue, subscriber) (VERP).
        let from = &crate::bounces::verp::issue_sender(
            &self.settings,
            &self.secret,
            crate::bounces::verp::VerpTarget {
                issue_id,
                subscriber_id: c.subscriber_id.unwrap_or_default(),
            },
        );
        let d = &self.settings.delivery;
        let now = Utc::now().timestamp_millis();
        let result = self
            .transport
            .send_raw_unless(from, &to, &bytes, shutdown.clone().wait())
            .await;
        match result {
            Ok(()) => {
                down_streak.store(0, Ordering::Relaxed);
                watch.lock().expect("watch lock").accepted();
                Outcome::Sent
            }
            Err(SendError::Cancelled) => Outcome::Release {
                retry_at_ms: now,
                error: "put back at shutdown".into(),
            },
            Err(SendError::Transport { message }) => {
                // Not the recipient's fault: no attempt is counted; everyone waits a little
                // longer before the next try.
                watch.lock().expect("watch lock").failed(&message);
                let streak = down_streak.fetch_add(1, Ordering::Relaxed).min(5);
                let wait = 1000i64 << streak;
                down_until.fetch_max(now + wait, Ordering::Relaxed);
                // The row itself is due at once: the wait is this worker's (a resumed send, or
                // another worker with a working transport, takes it without delay).
                Outcome::Release {
                    retry_at_ms: now,
                    error: message,
                }
            }
            // lettre's message carries the reply code ("transient error (450): …").
            Err(SendError::Transient { message, .. }) => {
                if c.attempts + 1 >= i64::from(d.max_attempts) {
                    Outcome::Failed {
                        error: format!("{message} (after {} attempts)", c.attempts + 1),
                        bounced: false,
                    }
                } else {
                    let delay = retry_delay(Duration::from_secs(d.retry_base_seconds), c.attempts);
                    Outcome::Retry {
                        retry_at_ms: now + delay.as_millis() as i64,
                        error: message,
                    }
                }
            }
            Err(SendError::Permanent {
                message, recipient, ..
            }) => Outcome::Failed {
                error: message,
                bounced: recipient,
            },
        }
    }

    /// The worker loop: sends whatever issue is `sending`, until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        tracing::info!(owner = %self.owner, "delivery worker started");
        loop {
            if shutdown.is_triggered() {
                break;
            }
            let ids = match self.store.sending_issue_ids().await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "listing issues to send failed");
                    Vec::new()
                }
            };
            let mut worked = false;
            for id in ids {
                worked = true;
                match self.send_issue(id, shutdown.clone(), None).await {
                    Ok(end) => tracing::info!(issue_id = id, ?end, "worker pass"),
                    Err(e) => tracing::warn!(issue_id = id, error = %e, "sending failed"),
                }
                if shutdown.is_triggered() {
                    break;
                }
            }
            let idle = if worked {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.clone().wait() => break,
            }
        }
        tracing::info!(owner = %self.owner, "delivery worker stopped");
    }
}
