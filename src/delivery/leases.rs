//! The leases one send holds, and the heartbeat that renews them.
//!
//! Every claimed row is held until its outcome is committed. Every third of
//! `delivery.lease_seconds` the heartbeat renews the leases of every held row in one statement
//! (and records the worker's state for `issue status`), so a row in flight never expires while
//! its worker lives, and a dead worker's rows are free one lease after its last beat.
//!
//! A row the heartbeat could not renew (the worker was cut off from the database for a whole
//! lease, and another worker may have taken it) is *lost*: it is not sent. And no message goes
//! on the wire unless its row's lease — from its claim, or from the last heartbeat that renewed
//! it — has at least a quarter of a lease left (one missed heartbeat is tolerated).
//!
//! Rows count as held from the moment their claim returns, also the claims that run ahead of
//! the window (prefetch): the heartbeat renews those too.
//!
//! Leases are compared with each worker's own clock: the workers' clocks must agree to well
//! within a quarter of a lease (NTP).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::Utc;

use crate::store::Store;
use crate::store::workers::Beat;

#[derive(Default)]
struct Held {
    /// Each held row and until when (ms) its lease is known to be valid.
    rows: HashMap<i64, i64>,
    lost: HashSet<i64>,
}

/// The rows of one send and how long their leases are known to be good.
pub(super) struct Leases {
    lease: Duration,
    held: Mutex<Held>,
    /// Messages accepted by this send, for the heartbeat's rate.
    sent: AtomicI64,
}

impl Leases {
    pub(super) fn new(lease: Duration) -> Leases {
        Leases {
            lease,
            held: Mutex::new(Held::default()),
            sent: AtomicI64::new(0),
        }
    }

    /// Rows just claimed; the claim started at `claimed_at_ms` (their lease runs from then).
    pub(super) fn claimed(&self, ids: impl IntoIterator<Item = i64>, claimed_at_ms: i64) {
        let until = claimed_at_ms + self.lease.as_millis() as i64;
        let mut held = self.held.lock().expect("leases lock");
        held.rows.extend(ids.into_iter().map(|id| (id, until)));
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

    /// Whether a held row may go on the wire now: it was not lost, and its lease is good for
    /// at least a quarter of a lease more (heartbeats come every third: one may be missed).
    pub(super) fn may_send(&self, id: i64) -> bool {
        let margin = self.lease.as_millis() as i64 / 4;
        let now = Utc::now().timestamp_millis();
        let held = self.held.lock().expect("leases lock");
        !held.lost.contains(&id)
            && held
                .rows
                .get(&id)
                .is_some_and(|&until| now + margin <= until)
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
                let mut ids: Vec<i64> = (held.rows.keys())
                    .filter(|id| !held.lost.contains(id))
                    .copied()
                    .collect();
                // In id order, as the recorder settles: two statements locking the same rows
                // in the same order cannot deadlock.
                ids.sort_unstable();
                ids
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
                    let until = started + self.lease.as_millis() as i64;
                    let mut held = self.held.lock().expect("leases lock");
                    for id in &renewed {
                        if let Some(u) = held.rows.get_mut(id) {
                            *u = (*u).max(until);
                        }
                    }
                    // Rows still held that were not renewed are settled meanwhile (and gone
                    // from `rows` by now) or taken by another worker: those are lost.
                    let renewed: HashSet<i64> = renewed.into_iter().collect();
                    let lost: Vec<i64> = ids
                        .iter()
                        .filter(|id| !renewed.contains(id) && held.rows.contains_key(id))
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
                }
                Err(e) => {
                    crate::log_repeated!(warn, "send:heartbeat", e, issue_id, "heartbeat failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_goes_by_its_own_lease() {
        let leases = Leases::new(Duration::from_secs(12));
        let now = Utc::now().timestamp_millis();
        // A claim that ran ahead 10 s ago and was never renewed: 2 s left, under a quarter.
        leases.claimed([1, 2], now - 10_000);
        // A claim just now, after a heartbeat renewed nothing of the older one.
        leases.claimed([3], now);
        assert!(
            !leases.may_send(1) && !leases.may_send(2),
            "stale rows stay unsent"
        );
        assert!(leases.may_send(3), "a fresh claim may go");
        assert!(!leases.may_send(4), "a row not held is never sent");
        leases.done([3]);
        assert!(!leases.may_send(3), "a settled row is no longer held");
    }

    #[test]
    fn a_lost_row_is_never_sent() {
        let leases = Leases::new(Duration::from_secs(12));
        leases.claimed([7], Utc::now().timestamp_millis());
        leases.held.lock().unwrap().lost.insert(7);
        assert!(!leases.may_send(7) && leases.is_lost(7));
        leases.done([7]);
        assert!(!leases.is_lost(7), "done forgets it");
    }
}
