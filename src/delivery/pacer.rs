//! The installation-wide limits, as one send sees them: slots reserved in small blocks from the
//! database ([`crate::store::limits`]) and handed out one per message, on time.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::DeliverySettings;
use crate::store::Store;
use crate::store::limits::{Ask, Grant};

/// How much sending one reservation covers with a rate limit: a quarter second (the bucket the
/// total may be off by), so several workers interleave finely.
const BLOCK: Duration = Duration::from_millis(250);

/// Slots per reservation with a window limit and no rate limit.
const WINDOW_BLOCK: u64 = 256;

/// A slot whose time passed by more than this is not used (the worker was held up): sending it
/// late would bunch messages together and pass the rate in that second.
const STALE: Duration = Duration::from_millis(250);

/// The answer to "may the next message go?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pace {
    /// Yes, now (the wait for its slot is over).
    Go,
    /// No: the window is full until then.
    Full { until: DateTime<Utc> },
}

/// Hands out the slots of one send; `None` limits make it free.
pub(super) struct Pacer {
    store: Store,
    rate_per_second: u32,
    window: Option<(u64, Duration)>,
    /// Slots asked for per reservation.
    want: u64,
    slots: tokio::sync::Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    next_us: i64,
    interval_us: i64,
    left: u64,
    bucket: i64,
    /// Slots of this block dropped as stale: given back to the window with the block's rest.
    dropped: u64,
}

impl Pacer {
    /// The pacer of a send claiming `batch` rows at a time.
    pub(super) fn new(store: Store, d: &DeliverySettings, batch: u64) -> Pacer {
        let window = (d.window_limit > 0).then_some((d.window_limit, d.window.0));
        let want = if d.rate_per_second > 0 {
            (u64::from(d.rate_per_second) * BLOCK.as_millis() as u64 / 1000).clamp(1, batch)
        } else {
            // A window alone: large blocks, so reserving costs little per message (what is not
            // used goes back when the send ends).
            WINDOW_BLOCK.max(batch)
        };
        Pacer {
            store,
            rate_per_second: d.rate_per_second,
            window,
            want,
            slots: tokio::sync::Mutex::new(Slots::default()),
        }
    }

    fn limited(&self) -> bool {
        self.rate_per_second > 0 || self.window.is_some()
    }

    /// Waits for the next slot (reserving a block when this send has none left).
    pub(super) async fn next(&self) -> anyhow::Result<Pace> {
        if !self.limited() {
            return Ok(Pace::Go);
        }
        let at_us = {
            let mut s = self.slots.lock().await;
            loop {
                if s.left == 0 {
                    let Grant {
                        granted,
                        first_us,
                        interval_us,
                        bucket,
                        full_until,
                    } = self
                        .store
                        .reserve_sends(Ask {
                            want: self.want,
                            rate_per_second: self.rate_per_second,
                            window: self.window,
                        })
                        .await?;
                    self.give_back(s.bucket, std::mem::take(&mut s.dropped))
                        .await;
                    if granted == 0 {
                        let until = crate::store::from_millis(
                            full_until.unwrap_or_else(|| Utc::now().timestamp_millis()),
                        );
                        return Ok(Pace::Full { until });
                    }
                    *s = Slots {
                        next_us: first_us,
                        interval_us,
                        left: granted,
                        bucket,
                        dropped: 0,
                    };
                }
                let at = s.next_us;
                s.next_us += s.interval_us;
                s.left -= 1;
                let now = Utc::now().timestamp_micros();
                if self.rate_per_second == 0 || at >= now - STALE.as_micros() as i64 {
                    break at;
                }
                // A stale slot is dropped: sending it late would bunch messages together.
                s.dropped += 1;
            }
        };
        let wait = at_us - Utc::now().timestamp_micros();
        if wait > 0 {
            tokio::time::sleep(Duration::from_micros(wait as u64)).await;
        }
        Ok(Pace::Go)
    }

    async fn give_back(&self, bucket: i64, n: u64) {
        if self.window.is_some()
            && n > 0
            && let Err(e) = self.store.return_sends(bucket, n).await
        {
            crate::log_repeated!(warn, "send:pacer", e, "giving back unused sends failed");
        }
    }

    /// A slot taken for a message that did not go (shutdown, lost lease, transport down).
    pub(super) async fn unused(&self) {
        if self.window.is_some() {
            let bucket = self.slots.lock().await.bucket;
            self.give_back(bucket, 1).await;
        }
    }

    /// Gives the slots this send reserved and did not use back to the window.
    pub(super) async fn finish(&self) {
        let mut s = self.slots.lock().await;
        let unused = std::mem::take(&mut s.left) + std::mem::take(&mut s.dropped);
        self.give_back(s.bucket, unused).await;
    }
}
