//! How long a sender holds off after its transport failed: 1 s, doubling up to 32 s, reset by
//! an accepted message. Shared by the newsletter send (its messages in flight fail together)
//! and the transactional mail queue.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use chrono::Utc;

/// The wait before the next try after transport failures.
#[derive(Debug, Default)]
pub struct Backoff {
    until_ms: AtomicI64,
    streak: AtomicU32,
}

impl Backoff {
    /// A message was accepted: the next failure waits 1 s again.
    pub fn accepted(&self) {
        self.streak.store(0, Ordering::Relaxed);
    }

    /// A transport failure at `now_ms`: everyone waits a little longer before the next try.
    pub fn failed(&self, now_ms: i64) {
        let streak = self.streak.fetch_add(1, Ordering::Relaxed).min(5);
        self.until_ms
            .fetch_max(now_ms + (1000i64 << streak), Ordering::Relaxed);
    }

    /// How long to wait before trying again (zero when the transport is not backing off).
    pub fn remaining(&self) -> Duration {
        let wait = self.until_ms.load(Ordering::Relaxed) - Utc::now().timestamp_millis();
        Duration::from_millis(wait.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_32_seconds_and_reset_on_success() {
        let b = Backoff::default();
        assert_eq!(b.remaining(), Duration::ZERO);
        let now = Utc::now().timestamp_millis();
        let waits: Vec<u64> = (0..7)
            .map(|_| {
                b.failed(now);
                b.remaining().as_millis() as u64
            })
            .collect();
        // Each wait runs from `now`; allow for the milliseconds this test takes.
        for (got, want) in waits
            .iter()
            .zip([1000, 2000, 4000, 8000, 16000, 32000, 32000])
        {
            assert!(*got <= want && *got + 500 > want, "{waits:?}");
        }
        b.accepted();
        let later = Utc::now().timestamp_millis() + 40_000;
        b.failed(later);
        let wait = b.remaining().as_millis() as i64;
        assert!(
            (40_000..41_100).contains(&wait),
            "one second after the reset: {wait}"
        );
    }
}
