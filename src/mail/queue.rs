//! The background sender of transactional mail: web requests queue a message in the same
//! transaction as the state change, and this loop sends it, so no request waits on SMTP and no
//! mail is lost if the process stops between the two.
//!
//! A refusal of one mail (421 or another 4xx) is that mail's, as for issue mail: it is tried
//! again at once on another connection, and only after [`MESSAGE_TRIES`] refusals does it
//! count an attempt, retried with a growing delay (30 s doubling) and given up after
//! [`MAX_ATTEMPTS`]; a 5xx counts at once. A failing transport (the relay down,
//! unreachable or refusing our login) is nobody's attempt: the mail and the rest of its batch
//! go back in line untouched, and the loop holds off ([`Backoff`]: 1 s, then 2 s) until
//! the relay takes mail again — so an outage of any length loses no confirmation mail.

use std::sync::Arc;
use std::time::Duration;

use lettre::Address;
use tokio::sync::Notify;

use super::backoff::Backoff;
use super::transport::{SendError, Transport};
use crate::delivery::MESSAGE_TRIES;
use crate::delivery::dkim::DkimSigner;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::store::outbound::QueuedMail;
use crate::subscribers::lifecycle::Composer;

/// Attempts before a transactional mail is given up.
pub const MAX_ATTEMPTS: i64 = 8;
const BATCH: i64 = 32;
const LEASE: Duration = Duration::from_secs(120);
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Wakes the sender as soon as something is queued (it also polls every second, for mail
/// queued by other processes).
#[derive(Debug, Clone, Default)]
pub struct QueueSignal(Arc<Notify>);

impl QueueSignal {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// The wait before retrying a mail the server refused for now (4xx): 30 s doubling to an hour.
fn retry_delay(attempts: i64) -> Duration {
    Duration::from_secs(30u64.saturating_mul(1 << attempts.clamp(0, 7)).min(3600))
}

/// Composes a queued mail and signs it with the configured DKIM key(s), exactly as issue mail
/// is signed. `name` is the subscriber's name as read when the batch was claimed, so a welcome
/// greets them by it.
fn compose(
    composer: &Composer,
    dkim: Option<&DkimSigner>,
    mail: &QueuedMail,
    name: Option<&str>,
) -> anyhow::Result<(Address, Vec<u8>)> {
    let id = mail
        .subscriber_id
        .ok_or_else(|| anyhow::anyhow!("the subscriber was erased"))?;
    let message = composer.compose(&mail.kind, id, &mail.to_email, name)?;
    let message = match dkim {
        Some(signer) => signer.sign(&message, None),
        None => message,
    };
    Ok((mail.to_email.parse()?, message))
}

/// Sends queued mail until `shutdown`; finishes the batch in hand before returning. With a
/// DKIM key configured (`dkim`), every message is signed.
pub async fn run(
    store: Store,
    transport: Transport,
    composer: Composer,
    dkim: Option<Arc<DkimSigner>>,
    signal: QueueSignal,
    shutdown: Shutdown,
) {
    // No VERP for transactional mail: mail.return_path itself (or mail.from).
    let from = crate::bounces::verp::plain_sender(&composer.settings.mail);
    tracing::info!("transactional mail sender started");
    let _busy = crate::shutdown::busy("the transactional mail sender");
    let backoff = Backoff::default();
    loop {
        if shutdown.is_triggered() {
            break;
        }
        let wait = backoff.remaining();
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.clone().wait() => break,
            }
            continue;
        }
        let batch = match store.claim_outbound(BATCH, LEASE).await {
            Ok(batch) => batch,
            Err(e) => {
                crate::log_repeated!(
                    warn,
                    "queue:claim",
                    e,
                    "claiming queued mail failed; retrying"
                );
                Vec::new()
            }
        };
        let busy = !batch.is_empty();
        // The names of the whole batch in one query (not one per mail: this loop shares the
        // database with the signups that fill the queue).
        let ids: Vec<i64> = batch.iter().filter_map(|m| m.subscriber_id).collect();
        let subscribers = match store.get_subscribers(&ids).await {
            Ok(found) => found,
            Err(e) => {
                // The batch stays leased and is taken again when the lease runs out.
                crate::log_repeated!(
                    warn,
                    "queue:read",
                    e,
                    "reading subscribers for queued mail failed; retrying"
                );
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
        };
        let mut sent = Vec::with_capacity(batch.len());
        let mut rest = batch.into_iter();
        while let Some(mail) = rest.next() {
            let name = mail
                .subscriber_id
                .and_then(|id| subscribers.get(&id))
                .and_then(|s| s.name.as_deref());
            let try_ = backoff.try_now();
            let mut tries = 0;
            let result = match compose(&composer, dkim.as_deref(), &mail, name) {
                // A refusal of this message (421 or another 4xx) is tried again at once on
                // another connection (the pool drops the one that refused), as issue mail is;
                // only after MESSAGE_TRIES does it count an attempt and wait.
                Ok((to, message)) => loop {
                    tries += 1;
                    match transport.send_raw(&from, &to, &message).await {
                        Err(SendError::Transient { .. })
                            if tries < MESSAGE_TRIES && !shutdown.is_triggered() =>
                        {
                            tracing::debug!(id = mail.id, tries, "mail refused; trying again");
                        }
                        other => break other,
                    }
                },
                Err(e) => Err(SendError::Permanent {
                    code: None,
                    message: format!("composing: {e:#}"),
                    recipient: false,
                }),
            };
            let recorded = match result {
                Ok(()) => {
                    tracing::info!(id = mail.id, kind = mail.kind.as_str(), "mail sent");
                    backoff.accepted();
                    sent.push(mail.id);
                    Ok(())
                }
                Err(SendError::Transport { message: e }) => {
                    // Not this mail's fault, nor the next ones': they go back in line as they
                    // were (no attempt counted, due now) and the loop holds off.
                    backoff.failed(try_, chrono::Utc::now().timestamp_millis());
                    let back: Vec<i64> = std::iter::once(mail.id)
                        .chain(rest.by_ref().map(|m| m.id))
                        .collect();
                    crate::log_repeated!(
                        warn,
                        "queue:transport",
                        e,
                        mails = back.len(),
                        retry_in = ?backoff.remaining(),
                        "the SMTP transport fails; queued mail put back, no attempt counted"
                    );
                    store.outbound_put_back(&back, &e).await
                }
                Err(SendError::Transient { message: e, .. })
                    if mail.attempts + 1 < MAX_ATTEMPTS =>
                {
                    let delay = retry_delay(mail.attempts);
                    let e = format!("{e} ({tries} tries)");
                    crate::log_repeated!(
                        warn,
                        "queue:refused",
                        e,
                        id = mail.id,
                        retry_in = ?delay,
                        "mail not sent; will retry"
                    );
                    store.outbound_failed(mail.id, &e, Some(delay)).await
                }
                Err(e) => {
                    crate::log_repeated!(
                        warn,
                        "queue:failed",
                        e,
                        id = mail.id,
                        "mail failed for good"
                    );
                    store.outbound_failed(mail.id, &e.to_string(), None).await
                }
            };
            if let Err(e) = recorded {
                crate::log_repeated!(
                    warn,
                    "queue:record",
                    e,
                    id = mail.id,
                    "recording a mail outcome failed"
                );
            }
        }
        // One write for the whole batch. A crash before it re-sends at most this batch.
        record_sent(&store, &sent, &shutdown).await;
        // The relay's quota counts every message: confirmations and welcomes go into the
        // sending window too (they are never held back by it).
        let d = &composer.settings.delivery;
        if d.window_limit > 0
            && let Err(e) = store.count_sends(d.window.0, sent.len() as u64).await
        {
            tracing::warn!(error = %e, "counting sent mail in the sending window failed");
        }
        if busy {
            continue;
        }
        tokio::select! {
            _ = signal.0.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = shutdown.clone().wait() => break,
        }
    }
    tracing::info!("transactional mail sender stopped");
}

/// Records the batch's sent mail, retrying while it fails (a full disk, the database
/// restarting), as the issue recorder does: mail that went out but is not recorded is sent
/// again when its lease runs out. Once shutdown is requested it gives up after a few tries
/// (the lease decides then, as after kill -9).
async fn record_sent(store: &Store, sent: &[i64], shutdown: &Shutdown) {
    let mut tries = 0u32;
    while let Err(e) = store.outbound_sent(sent).await {
        tries += 1;
        if shutdown.is_triggered() && tries >= 5 {
            tracing::error!(
                error = %format!("{e:#}"),
                mails = sent.len(),
                "giving up recording sent mail at shutdown; these may be sent again"
            );
            return;
        }
        crate::log_repeated!(
            warn,
            "queue:record-sent",
            e,
            tries,
            "recording sent mail failed; retrying"
        );
        tokio::time::sleep(Duration::from_millis(200 * u64::from(tries.min(5)))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_caps() {
        assert_eq!(retry_delay(0), Duration::from_secs(30));
        assert_eq!(retry_delay(1), Duration::from_secs(60));
        assert_eq!(retry_delay(10), Duration::from_secs(3600));
    }
}
