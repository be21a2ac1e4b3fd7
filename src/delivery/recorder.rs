//! The recorder of one send: settles whatever has finished in one batch (group commit), then
//! frees those messages' permits, counts consecutive failures and reports progress.

use std::time::Duration;

use tokio::sync::mpsc;

use super::send::Finished;
use super::send::IssueSend;
use super::watch::record_transport_change;
use crate::issues::{AutoPause, PauseCause};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::store::deliveries::Outcome;

/// One delivery's outcome as the ledger records it.
type Settled = (i64, Option<i64>, Outcome);

/// Consecutive failed messages, in arrival order.
struct FailureCount {
    run: u32,
    pause_after: u32,
}

impl FailureCount {
    /// Counts a batch; once `pause_after` failed in a row, the pause to apply.
    fn count(&mut self, batch: &[Settled]) -> Option<AutoPause> {
        let mut last_error = None;
        for (_, _, o) in batch {
            match o {
                Outcome::Sent | Outcome::Skipped => self.run = 0,
                Outcome::Retry { error, .. } | Outcome::Failed { error, .. } => {
                    self.run += 1;
                    last_error = Some(error.clone());
                }
                Outcome::Release { .. } => {}
            }
        }
        let n = self.run;
        (n >= self.pause_after).then(|| {
            self.run = 0;
            AutoPause {
                cause: PauseCause::Failures,
                reason: format!(
                    "paused after {n} consecutive failed messages; last error: {}",
                    last_error.unwrap_or_default()
                ),
            }
        })
    }
}

/// Commits one batch of outcomes, retrying (outcomes matter: an unrecorded send goes out
/// again). Returns how many deliveries it settled for good.
async fn commit_batch(
    store: &Store,
    owner: &str,
    outcomes: &[Settled],
    shutdown: &Shutdown,
) -> u64 {
    let mut tries = 0;
    while let Err(e) = store.record_outcomes(owner, outcomes).await {
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
        crate::log_repeated!(
            warn,
            "send:record",
            e,
            tries,
            "recording outcomes failed; retrying"
        );
        // At most a second apart: outcomes are recorded within a second of the database's
        // return, and the window (held by them) opens again.
        tokio::time::sleep(Duration::from_millis(200 * tries.min(5))).await;
    }
    outcomes
        .iter()
        .filter(|(_, _, o)| matches!(o, Outcome::Sent | Outcome::Skipped | Outcome::Failed { .. }))
        .count() as u64
}

impl IssueSend<'_> {
    /// Records outcomes until every sender of `rx` is gone. One commit at a time: while it
    /// runs, the next batch gathers, so batches grow with the load (several commits at once on
    /// PostgreSQL made batches of one or two outcomes and cost more database CPU than they
    /// saved in latency).
    pub(super) async fn record(&self, mut rx: mpsc::UnboundedReceiver<Finished>) {
        let store = &self.engine.store;
        let mut failures = FailureCount {
            run: 0,
            pause_after: self.engine.settings.delivery.pause_after_failures,
        };
        while let Some(first) = rx.recv().await {
            let (mut outcomes, mut permits, mut ids) = (Vec::new(), Vec::new(), Vec::new());
            for (id, sid, o, permit) in
                std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                ids.push(id);
                if let Some(o) = o {
                    outcomes.push((id, sid, o));
                }
                permits.push(permit);
            }
            if let Some(pause) = failures.count(&outcomes) {
                self.auto_pause(pause).await;
            }
            let settled = commit_batch(store, &self.engine.owner, &outcomes, &self.shutdown).await;
            self.leases.done(ids);
            // Only now, after the commit, do the permits free the window.
            drop(permits);
            record_transport_change(
                store,
                self.issue_id,
                &self.watch,
                self.hooks.transport_error,
            )
            .await;
            if let Some(p) = self.hooks.progress {
                p(settled);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_pause_only_when_consecutive() {
        let failed = |id| {
            (
                id,
                None,
                Outcome::Failed {
                    error: format!("550 no {id}"),
                    bounced: false,
                },
            )
        };
        let mut count = FailureCount {
            run: 0,
            pause_after: 3,
        };
        assert_eq!(count.count(&[failed(1), failed(2)]), None);
        assert_eq!(
            count.count(&[(3, None, Outcome::Sent)]),
            None,
            "a send resets"
        );
        assert_eq!(count.count(&[failed(4), failed(5)]), None);
        let pause = count.count(&[failed(6)]).expect("three in a row");
        assert_eq!(pause.cause, PauseCause::Failures);
        assert!(pause.reason.contains("3 consecutive") && pause.reason.contains("550 no 6"));
        assert_eq!(count.count(&[failed(7)]), None, "counting starts again");
    }
}
