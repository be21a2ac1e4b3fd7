//! One send of one issue by one worker, as a named structure:
//!
//! - [`IssueSend`] holds what the send shares: the prepared mail, the window of permits, the
//!   installation-wide [`Pacer`], the [`Leases`] and their heartbeat, the transport's
//!   [`TransportWatch`] and [`Backoff`].
//! - [`IssueSend::run`] runs three loops side by side: the **claimer** ([`Claiming`]: looks at
//!   the issue, claims rows, dispatches messages), the **recorder** (settles outcomes in
//!   batches, see [`super::recorder`]) and the **heartbeat** (renews leases).
//! - [`IssueSend::deliver`] sends one message and classifies the result.
//!
//! Decisions to pause (failures, a stalled transport, the circuit breaker, a full window) go to
//! the [`Supervisor`] — the application layer, which moves the issue and logs it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::leases::Leases;
use super::pacer::{Pace, Pacer};
use super::watch::{TransportWatch, Watch};
use super::{Engine, Hooks, SendEnd};
use crate::bounces::policy::Policy;
use crate::issues::{AutoPause, Automatic, IssueStatus, PauseCause};
use crate::mail::backoff::Backoff;
use crate::mail::newsletter::IssueMail;
use crate::mail::transport::SendError;
use crate::shutdown::Shutdown;
use crate::store::deliveries::{Claimed, Outcome};
use crate::subscribers::SubscriberStatus;

/// An outcome on its way to the ledger, holding the permit of its message until committed.
/// `None`: the row's lease was lost, nothing to record (another worker has it).
pub(super) type Finished = (i64, Option<i64>, Option<Outcome>, OwnedSemaphorePermit);

/// How often the claimer re-reads the issue's status (pause, cancel) while sending.
const STATUS_EVERY: Duration = Duration::from_millis(200);
/// How often the claimer re-checks the issue's complaint and bounce rates (the circuit
/// breaker; reports that arrive are checked at once, this catches the sample filling up).
const BREAKER_EVERY: Duration = Duration::from_secs(2);
/// Rows claimed at a time, as a multiple of `delivery.concurrency`: enough that the window
/// rarely waits for a claim, few enough that a lease covers them easily.
const CLAIM_FACTOR: usize = 4;
/// Tries of one message, each on another connection, before a refusal of it (a 4xx reply,
/// 421 included) counts as an attempt: a relay that refuses some messages now and then costs a
/// reconnect, not a retry hours later; one that refuses this message every time cannot keep it
/// forever.
pub const MESSAGE_TRIES: u32 = 3;

/// A claim running ahead: when it started (ms, its leases run from then) and its rows.
type Prefetch = JoinHandle<anyhow::Result<(i64, Vec<Claimed>)>>;

fn retry_delay(base: Duration, attempts: i64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.clamp(0, 10) as u32);
    let capped = exp.min(Duration::from_secs(3600));
    let jitter = rand::rng().random_range(0.8..1.2);
    capped.mul_f64(jitter)
}

/// Sleeps for `d`, or less if shutdown comes first.
async fn nap(d: Duration, shutdown: &Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.clone().wait() => {}
    }
}

/// What one send of one issue shares between its loops.
pub(super) struct IssueSend<'a> {
    pub(super) engine: &'a Engine,
    pub(super) issue_id: i64,
    pub(super) hooks: &'a Hooks<'a>,
    pub(super) shutdown: Shutdown,
    mail: Arc<IssueMail>,
    /// The renderings of the sets of comparisons readers with categories get, by their flags.
    variants: HashMap<String, Arc<IssueMail>>,
    concurrency: usize,
    /// Rows per claim.
    batch: i64,
    /// The window: a permit per message from dispatch until its outcome is committed.
    permits: Arc<Semaphore>,
    pacer: Pacer,
    /// Shared with the claims running ahead, which hold their rows from the moment they return.
    pub(super) leases: Arc<Leases>,
    pub(super) watch: Watch,
    backoff: Backoff,
    policy: Policy,
}

impl<'a> IssueSend<'a> {
    pub(super) async fn new(
        engine: &'a Engine,
        issue_id: i64,
        shutdown: Shutdown,
        hooks: &'a Hooks<'a>,
    ) -> anyhow::Result<IssueSend<'a>> {
        let mail = Arc::new(engine.prepare(issue_id).await?);
        let variants = engine.prepare_variants(issue_id).await?;
        let d = &engine.settings.delivery;
        let concurrency = d.concurrency as usize;
        let batch = (concurrency * CLAIM_FACTOR) as i64;
        // An error shown from an earlier run is cleared by the first accepted message.
        let shown = (engine.store.get_issue(issue_id).await?)
            .is_some_and(|issue| issue.transport_error.is_some());
        Ok(IssueSend {
            engine,
            issue_id,
            hooks,
            shutdown,
            mail,
            variants,
            concurrency,
            batch,
            permits: Arc::new(Semaphore::new(concurrency)),
            pacer: Pacer::new(engine.store.clone(), d, batch as u64),
            leases: Arc::new(Leases::new(Duration::from_secs(d.lease_seconds))),
            watch: Mutex::new(TransportWatch::new(shown)),
            backoff: Backoff::default(),
            policy: Policy::new(&engine.settings.bounces, &engine.settings.delivery),
        })
    }

    /// Runs the claimer, the recorder and the heartbeat until the send ends for this worker.
    pub(super) async fn run(&self) -> anyhow::Result<SendEnd> {
        let (tx, rx) = mpsc::unbounded_channel::<Finished>();
        let claimer_done = tokio::sync::Notify::new();
        let claimer = async {
            let end = Claiming::new(self).run(tx).await;
            claimer_done.notify_one();
            end
        };
        let heartbeat = self.leases.heartbeat(
            &self.engine.store,
            &self.engine.owner,
            self.issue_id,
            claimer_done.notified(),
        );
        let (end, (), ()) = tokio::join!(claimer, self.record(rx), heartbeat);
        self.pacer.finish().await;
        end
    }

    /// Hands an automatic pause to the supervisor (the application layer).
    pub(super) async fn auto_pause(&self, pause: AutoPause) {
        let reason = pause.reason.clone();
        match self.hooks.supervisor.auto_pause(self.issue_id, pause).await {
            Ok(true) => tracing::warn!(issue_id = self.issue_id, %reason, "issue paused"),
            Ok(false) => {}
            Err(e) => tracing::warn!(issue_id = self.issue_id, error = %e, "pausing failed"),
        }
    }

    /// Sends one message and classifies the result; `None` when the row's lease was lost.
    async fn deliver(&self, c: &Claimed) -> Option<Outcome> {
        if c.subscriber_status != Some(SubscriberStatus::Confirmed) {
            return Some(Outcome::Skipped);
        }
        let now = Utc::now().timestamp_millis();
        if !self.leases.may_send(c.id) {
            self.pacer.unused().await;
            // Lost: another worker may hold it now. Stale: the heartbeat is late; put it back.
            return (!self.leases.is_lost(c.id)).then(|| Outcome::Release {
                retry_at_ms: now,
                error: "lease not renewed in time; put back unsent".into(),
            });
        }
        let engine = self.engine;
        let mail = match &c.variant {
            None => Some(&self.mail),
            Some(flags) => self.variants.get(flags),
        };
        let composed = match mail {
            // Every set in the ledger was prepared before the first claim; only a row written
            // after that (none is) could miss one.
            None => Err(anyhow::anyhow!(
                "no rendering of the set {:?} of this issue",
                c.variant
            )),
            Some(mail) if engine.dkim.is_some() => {
                // Signing costs up to 0.4 ms of CPU: on the blocking pool it uses every core
                // and does not hold up the other messages in flight.
                let (engine, mail, c) = (engine.clone(), mail.clone(), c.clone());
                tokio::task::spawn_blocking(move || engine.compose_for(&mail, &c))
                    .await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("composing panicked: {e}")))
            }
            Some(mail) => engine.compose_for(mail, c),
        };
        let (to, bytes) = match composed {
            Ok(x) => x,
            Err(e) => {
                return Some(Outcome::Failed {
                    error: format!("composing: {e:#}"),
                    bounced: false,
                });
            }
        };
        // With mail.return_path, the envelope sender names this (issue, subscriber) (VERP).
        let from = &crate::bounces::verp::issue_sender(
            &engine.settings.mail,
            &engine.secret,
            crate::bounces::verp::VerpTarget {
                issue_id: self.issue_id,
                subscriber_id: c.subscriber_id.unwrap_or_default(),
            },
        );
        let d = &engine.settings.delivery;
        let try_ = self.backoff.try_now();
        let mut tries = 0;
        let result = loop {
            tries += 1;
            let result = engine
                .transport
                .send_raw_unless(from, &to, &bytes, self.shutdown.clone().wait())
                .await;
            match result {
                // The pool dropped the connection that refused it: the next try takes another.
                Err(SendError::Transient { .. })
                    if tries < MESSAGE_TRIES && !self.shutdown.is_triggered() =>
                {
                    tracing::debug!(delivery_id = c.id, tries, "message refused; trying again");
                }
                other => break other,
            }
        };
        let now = Utc::now().timestamp_millis();
        Some(match result {
            Ok(()) => {
                self.backoff.accepted();
                self.leases.sent_one();
                self.watch.lock().expect("watch lock").accepted();
                Outcome::Sent
            }
            Err(SendError::Cancelled) => {
                self.pacer.unused().await;
                Outcome::Release {
                    retry_at_ms: now,
                    error: "put back at shutdown".into(),
                }
            }
            Err(SendError::Transport { message }) => {
                // Not the recipient's fault: no attempt is counted; everyone waits a little
                // longer before the next try. The row itself is due at once: the wait is this
                // worker's (a resumed send, or another worker with a working transport, takes
                // it without delay).
                self.watch.lock().expect("watch lock").failed(&message);
                self.backoff.failed(try_, now);
                self.pacer.unused().await;
                Outcome::Release {
                    retry_at_ms: now,
                    error: message,
                }
            }
            // lettre's message carries the reply code ("transient error (450): …").
            Err(SendError::Transient { message, .. }) => {
                // The message's, not the relay's: the send waits only when nothing was
                // accepted anywhere since this message went out (the relay refuses everything).
                self.backoff.failed(try_, now);
                let message = format!("{message} ({tries} tries)");
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
        })
    }
}

/// The claimer: its messages in flight and its clocks.
///
/// The messages in flight are futures of the claimer's task, not tasks of their own: on a
/// small machine shared with the database and the relay, one task sending 16 messages costs
/// less CPU than 16 tasks woken across threads (DKIM signing, the one heavy step, goes to the
/// blocking pool). So every wait of the claimer (a claim, a permit, the database) is a
/// [`Claiming::drive`] that keeps them moving.
struct Claiming<'s, 'a> {
    send: &'s IssueSend<'a>,
    inflight: FuturesUnordered<BoxFuture<'s, ()>>,
    /// The next claim, started while the last rows of this one go out, so the window does not
    /// drain while the database answers.
    next: Option<Prefetch>,
    status_read_at: Option<Instant>,
    breaker_read_at: Instant,
}

impl<'s, 'a> Claiming<'s, 'a> {
    fn new(send: &'s IssueSend<'a>) -> Self {
        Claiming {
            send,
            inflight: FuturesUnordered::new(),
            next: None,
            status_read_at: None,
            breaker_read_at: Instant::now(),
        }
    }

    /// Claims and dispatches until the send ends, then hands back what it will not send and
    /// lets everything in flight settle. Dropping `tx` at the end lets the recorder finish.
    async fn run(mut self, tx: mpsc::UnboundedSender<Finished>) -> anyhow::Result<SendEnd> {
        let end = self.steps(&tx).await;
        self.release_prefetched().await;
        self.settle_all().await?;
        drop(tx);
        let end = end?;
        tracing::info!(issue_id = self.send.issue_id, ?end, "send loop ended");
        Ok(end)
    }

    async fn steps(&mut self, tx: &mpsc::UnboundedSender<Finished>) -> anyhow::Result<SendEnd> {
        let send = self.send;
        loop {
            if send.shutdown.is_triggered() {
                return Ok(SendEnd::Shutdown);
            }
            if let Some(end) = self.look().await? {
                return Ok(end);
            }
            let wait = send.backoff.remaining();
            if !wait.is_zero() {
                // In short naps: an acceptance of a message still in flight ends the wait.
                self.drive(nap(wait.min(Duration::from_millis(100)), &send.shutdown))
                    .await;
                continue;
            }
            let claimed = self.claim().await?;
            if claimed.is_empty() {
                // Wait for our own messages in flight, then see whether the send is done.
                self.settle_all().await?;
                if send
                    .engine
                    .store
                    .finish_issue_if_done(send.issue_id, Automatic::Finish.moves())
                    .await?
                {
                    return Ok(SendEnd::Finished);
                }
                self.status_read_at = None;
                // Retries scheduled later, or rows leased by another worker.
                nap(Duration::from_millis(250), &send.shutdown).await;
                continue;
            }
            if let Some(end) = self.dispatch(claimed, tx).await? {
                return Ok(end);
            }
        }
    }

    /// Awaits `fut` while driving the messages in flight.
    async fn drive<T>(&mut self, fut: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                Some(()) = self.inflight.next(), if !self.inflight.is_empty() => {}
                out = &mut fut => return out,
            }
        }
    }

    /// Looks at the issue: its status (at most every [`STATUS_EVERY`]: an operator's pause or
    /// cancel takes effect well within a second), a stalled transport, the circuit breaker.
    async fn look(&mut self) -> anyhow::Result<Option<SendEnd>> {
        let send = self.send;
        if self.breaker_read_at.elapsed() >= BREAKER_EVERY {
            self.breaker_read_at = Instant::now();
            let check = crate::bounces::policy::breaker_reason(
                &send.engine.store,
                &send.policy,
                send.issue_id,
            );
            match self.drive(check).await {
                Ok(Some(reason)) => {
                    let pause = AutoPause {
                        cause: PauseCause::Breaker,
                        reason,
                    };
                    self.drive(send.auto_pause(pause)).await;
                    // The pause shows at the status read below.
                    self.status_read_at = None;
                }
                Ok(None) => {}
                Err(e) => crate::log_repeated!(
                    warn,
                    "send:breaker",
                    e,
                    "checking complaint and bounce rates failed"
                ),
            }
        }
        if self
            .status_read_at
            .is_some_and(|t| t.elapsed() < STATUS_EVERY)
        {
            return Ok(None);
        }
        let status = self
            .drive(send.engine.store.issue_status(send.issue_id))
            .await?;
        match status {
            Some(IssueStatus::Sending) => {}
            Some(other) => return Ok(Some(SendEnd::Stopped(other))),
            None => anyhow::bail!("issue {} disappeared", send.issue_id),
        }
        self.status_read_at = Some(Instant::now());
        let stall_after = send.engine.settings.delivery.stall_after.0;
        let stalled = send.watch.lock().expect("watch lock").stalled(stall_after);
        if let Some(reason) = stalled {
            let pause = AutoPause {
                cause: PauseCause::Stalled,
                reason,
            };
            self.drive(send.auto_pause(pause)).await;
            return Ok(Some(SendEnd::Stopped(IssueStatus::Paused)));
        }
        Ok(None)
    }

    /// The next rows: the claim running ahead, or a new one.
    async fn claim(&mut self) -> anyhow::Result<Vec<Claimed>> {
        let claim = match self.next.take() {
            Some(claim) => claim,
            None => self.prefetch(),
        };
        let (_, rows) = self.drive(claim).await.context("claiming deliveries")??;
        Ok(rows)
    }

    /// Starts a claim. Its rows are held (their leases renewed by the heartbeat) from the
    /// moment it returns, before the claimer gets to them.
    fn prefetch(&self) -> Prefetch {
        let send = self.send;
        let (engine, issue_id, batch) = (send.engine.clone(), send.issue_id, send.batch);
        let leases = send.leases.clone();
        let lease = Duration::from_secs(engine.settings.delivery.lease_seconds);
        tokio::spawn(async move {
            let at = Utc::now().timestamp_millis();
            let rows = (engine.store)
                .claim_deliveries(issue_id, &engine.owner, batch, lease)
                .await?;
            leases.claimed(rows.iter().map(|c| c.id), at);
            Ok((at, rows))
        })
    }

    /// Sends the claimed rows, each when a permit and its slot allow. Returns the end of the
    /// send when the window is full (the rest is handed back and the issue paused).
    async fn dispatch(
        &mut self,
        claimed: Vec<Claimed>,
        tx: &mpsc::UnboundedSender<Finished>,
    ) -> anyhow::Result<Option<SendEnd>> {
        let send = self.send;
        let full = claimed.len() as i64 == send.batch;
        let mut rest = claimed.into_iter();
        while let Some(c) = rest.next() {
            // A claim can take a while to go out (a rate limit, a slow relay): an operator's
            // pause or cancel must not wait for its end.
            if let Some(end) = self.look().await? {
                self.release(std::iter::once(c.id).chain(rest.map(|c| c.id)))
                    .await;
                return Ok(Some(end));
            }
            // While the transport fails, a try is one message: wait for the one in flight
            // before the next, rather than failing a whole window against a dead relay.
            // (Refusals of messages do not do this: each is that message's own.)
            while !self.inflight.is_empty() && send.watch.lock().expect("watch lock").is_failing() {
                self.inflight.next().await;
            }
            if !send.backoff.remaining().is_zero() {
                // It failed: the rest of the claim goes back at once (no attempt counted), and
                // the claimer waits before the next try.
                self.release(std::iter::once(c.id).chain(rest.map(|c| c.id)))
                    .await;
                return Ok(None);
            }
            if full && self.next.is_none() && rest.len() < send.concurrency {
                self.next = Some(self.prefetch());
            }
            let permit = async {
                tokio::select! {
                    p = send.permits.clone().acquire_owned() => Some(p),
                    _ = send.shutdown.clone().wait() => None,
                }
            };
            let Some(permit) = self.drive(permit).await else {
                // A clean stop hands back the rows it will not send, so a restart (or another
                // worker) takes them at once instead of after the lease.
                self.release(std::iter::once(c.id).chain(rest.map(|c| c.id)))
                    .await;
                return Ok(None);
            };
            let permit: OwnedSemaphorePermit = permit?;
            if c.subscriber_status == Some(SubscriberStatus::Confirmed) {
                let pace = async {
                    tokio::select! {
                        p = send.pacer.next() => Some(p),
                        _ = send.shutdown.clone().wait() => None,
                    }
                };
                match self.drive(pace).await {
                    Some(Ok(Pace::Go)) => {}
                    Some(Ok(Pace::Full { until })) => {
                        drop(permit);
                        self.release(std::iter::once(c.id).chain(rest.map(|c| c.id)))
                            .await;
                        let limit = &send.engine.settings.delivery;
                        let pause = AutoPause {
                            cause: PauseCause::Window { resume_at: until },
                            reason: format!(
                                "the sending window is full: {} messages per {} (delivery.window_limit); resumes at {}",
                                limit.window_limit,
                                humantime::format_duration(limit.window.0),
                                until.format("%Y-%m-%d %H:%M:%S UTC")
                            ),
                        };
                        self.drive(send.auto_pause(pause)).await;
                        return Ok(Some(SendEnd::Stopped(IssueStatus::Paused)));
                    }
                    other => {
                        drop(permit);
                        self.release(std::iter::once(c.id).chain(rest.map(|c| c.id)))
                            .await;
                        return match other {
                            Some(Err(e)) => Err(e.context("reserving sends")),
                            _ => Ok(None),
                        };
                    }
                }
            }
            let tx = tx.clone();
            self.inflight.push(Box::pin(async move {
                let outcome = send.deliver(&c).await;
                let _ = tx.send((c.id, c.subscriber_id, outcome, permit));
            }));
        }
        Ok(None)
    }

    /// Hands back rows this worker will not send (their lease ends now).
    async fn release(&mut self, ids: impl Iterator<Item = i64>) {
        let ids: Vec<i64> = ids.collect();
        let engine = self.send.engine;
        let release = engine.store.release_leases(&engine.owner, &ids);
        if let Err(e) = self.drive(release).await {
            crate::log_repeated!(warn, "send:release", e, "handing back leases failed");
        }
        self.send.leases.done(ids);
    }

    /// Rows claimed ahead and not sent go back at once, not after their lease.
    async fn release_prefetched(&mut self) {
        if let Some(claim) = self.next.take()
            && let Ok(Ok((_, rows))) = self.drive(claim).await
        {
            self.release(rows.iter().map(|c| c.id)).await;
        }
    }

    /// Waits until every message dispatched so far has its outcome committed.
    async fn settle_all(&mut self) -> anyhow::Result<()> {
        let all = self
            .send
            .permits
            .clone()
            .acquire_many_owned(self.send.concurrency as u32);
        drop(self.drive(all).await?);
        Ok(())
    }
}
