//! The leases one send holds, and the heartbeat that renews them.
//!
//! Every claimed row is held until its outcome is committed. Every third of
//! `delivery.lease_seconds` the heartbeat renews the leases of every held row in one statement
//! (and records the worker's state for `issue status`), so a row in flight never expires while
//! its worker lives, and a dead worker's rows are free one lease after its last beat.
//!
//! A row the heartbeat could not renew (the worker was cut off from the database for a whole
//! lease, and another worker may have taken it) is *lost*: it is not sent. And no message goes
//! on the wire unless the leases were renewed recently enough to outlast the check.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::Utc;

use crate::store::Store;
use crate::store::workers::Beat;

#[derive(Default)]
struct Held {
    rows: HashSet<i64>,
    lost: HashSet<i64>,
}

/// The rows of one send and how long their leases are known to be good.
pub(super) struct Leases {
    lease: Duration,
    held: Mutex<Held>,
    /// Until when (ms) every held row's lease is known to be valid.
    valid_until_ms: AtomicI64,
    /// Messages accepted by this send, for the heartbeat's rate.
    sent: AtomicI64,
}

impl Leases {
    pub(super) fn new(lease: Duration) -> Leases {
        Leases {
            lease,
            held: Mutex::new(Held::default()),
            valid_until_ms: AtomicI64::new(0),
            sent: AtomicI64::new(0),
        }
    }

    /// Rows just claimed at `claimed_at_ms` (their lease runs from then).
    pub(super) fn claimed(&self, ids: impl IntoIterator<Item = i64>, claimed_at_ms: i64) {
        let mut held = self.held.lock().expect("leases lock");
        if held.rows.is_empty() {
            // Nothing older is held: the new rows' lease is the one to go by.
            self.valid_until_ms.store(
                claimed_at_ms + self.lease.as_millis() as i64,
                Ordering::Relaxed,
            );
        }
        held.rows.extend(ids);
    }

    /// Rows settled or handed back: no longer ours to renew.
    pub(super) fn done(&self, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.held.lock().expect("leases lock");
        for id in ids {
            held.rows.remove(&id);
            held.lost.remove(&id);
        }
    }

    pub(super) fn sent_one(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a held row may go on the wire now: it was not lost, and the leases are good for
    /// at least a third of a lease more (one missed heartbeat).
    pub(super) fn may_send(&self, id: i64) -> bool {
        let margin = self.lease.as_millis() as i64 / 3;
        let fresh =
            Utc::now().timestamp_millis() + margin <= self.valid_until_ms.load(Ordering::Relaxed);
        fresh && !self.held.lock().expect("leases lock").lost.contains(&id)
    }

    /// Whether the heartbeat found the row taken from this worker.
    pub(super) fn is_lost(&self, id: i64) -> bool {
        self.held.lock().expect("leases lock").lost.contains(&id)
    }

    /// Beats until `stop` resolves: renews the held rows and records `worker`'s state.
    pub(super) async fn heartbeat(
        &self,
        store: &Store,
        worker: &str,
        issue_id: i64,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let every = self.lease / 3;
        let mut last = (std::time::Instant::now(), 0i64);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(every) => {}
            }
            let ids: Vec<i64> = {
                let held = self.held.lock().expect("leases lock");
                held.rows.difference(&held.lost).copied().collect()
            };
            let sent = self.sent.load(Ordering::Relaxed);
            let rate = (sent - last.1) as f64 / last.0.elapsed().as_secs_f64().max(0.001);
            last = (std::time::Instant::now(), sent);
            let started = Utc::now().timestamp_millis();
            let beat = Beat {
                name: worker,
                issue_id: Some(issue_id),
                sent,
                rate,
                held: &ids,
                lease: self.lease,
            };
            match store.heartbeat(beat).await {
                Ok(renewed) => {
                    let mut held = self.held.lock().expect("leases lock");
                    // Rows still held that were not renewed are settled meanwhile (and gone
                    // from `rows` by now) or taken by another worker: those are lost.
                    let renewed: HashSet<i64> = renewed.into_iter().collect();
                    let lost: Vec<i64> = ids
                        .iter()
                        .filter(|id| !renewed.contains(id) && held.rows.contains(id))
                        .copied()
                        .collect();
                    if !lost.is_empty() {
                        tracing::warn!(
                            issue_id,
                            rows = lost.len(),
                            "leases lost (this worker was cut off for a whole lease); not sending them"
                        );
                    }
                    held.lost.extend(lost);
                    self.valid_until_ms
                        .store(started + self.lease.as_millis() as i64, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(issue_id, error = %e, "heartbeat failed"),
            }
        }
    }
}
