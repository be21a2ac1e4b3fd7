//! How long a sender holds off after its transport failed: 1 s, then [`MAX_WAIT`] (2 s),
//! reset by the first accepted message. Shared by the newsletter send and the transactional
//! mail queue.
//!
//! It counts **tries**, not failed messages: a try starts when the sender (re)starts sending,
//! and every message dispatched before the next failure or acceptance belongs to it. With 16
//! messages in flight when the relay goes away, the first failure counts and the other 15 —
//! the same try failing — do not; and a message that fails after another one was accepted
//! (a refusal of that message, a connection dropped while the rest go through) does not make
//! the send wait at all. The longest wait is a few seconds, so a relay that comes back after
//! an outage of any length is used again within [`MAX_WAIT`].

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;

/// The longest wait between two tries of a failing transport: one message (or one window of
/// them) every few seconds is cheap for a relay that is down, and a relay that is back is used
/// again at most this long after.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// A try: which run of sending a message belongs to (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Try(u64);

/// The wait before the next try after transport failures.
#[derive(Debug, Default)]
pub struct Backoff {
    until_ms: AtomicI64,
    /// Consecutive failed tries.
    streak: AtomicU32,
    /// Bumped by every acceptance and every counted failure: a message that started in an
    /// older try does not count.
    epoch: AtomicU64,
}

impl Backoff {
    /// The try a message about to be sent belongs to.
    pub fn try_now(&self) -> Try {
        Try(self.epoch.load(Ordering::Acquire))
    }

    /// A message was accepted: no wait, and the next failure waits 1 s again.
    pub fn accepted(&self) {
        if self.streak.swap(0, Ordering::AcqRel) > 0 || self.until_ms.load(Ordering::Relaxed) > 0 {
            self.until_ms.store(0, Ordering::Relaxed);
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// A message of try `t` failed at `now_ms` because of the transport. Counts once per try:
    /// returns whether this failure was the one that counted (the send now waits).
    pub fn failed(&self, t: Try, now_ms: i64) -> bool {
        if self
            .epoch
            .compare_exchange(t.0, t.0 + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let streak = self.streak.fetch_add(1, Ordering::AcqRel).min(10);
        let wait = (1000i64 << streak).min(MAX_WAIT.as_millis() as i64);
        self.until_ms.store(now_ms + wait, Ordering::Relaxed);
        true
    }

    /// Consecutive failed tries (0 once a message was accepted).
    pub fn streak(&self) -> u32 {
        self.streak.load(Ordering::Acquire)
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
    fn waits_double_per_failed_try_up_to_the_cap_and_reset_on_success() {
        let b = Backoff::default();
        assert_eq!(b.remaining(), Duration::ZERO);
        let now = Utc::now().timestamp_millis();
        let waits: Vec<u64> = (0..5)
            .map(|_| {
                let t = b.try_now();
                assert!(b.failed(t, now));
                b.remaining().as_millis() as u64
            })
            .collect();
        // Each wait runs from `now`; allow for the milliseconds this test takes.
        for (got, want) in waits.iter().zip([1000, 2000, 2000, 2000, 2000]) {
            assert!(*got <= want && *got + 500 > want, "{waits:?}");
        }
        assert_eq!(b.streak(), 5);
        b.accepted();
        assert_eq!(
            b.remaining(),
            Duration::ZERO,
            "the first success ends the wait"
        );
        assert_eq!(b.streak(), 0);
        let t = b.try_now();
        assert!(b.failed(t, Utc::now().timestamp_millis()));
        let wait = b.remaining().as_millis() as i64;
        assert!(
            (500..=1000).contains(&wait),
            "one second after the reset: {wait}"
        );
    }

    #[test]
    fn the_messages_of_one_try_count_once() {
        let b = Backoff::default();
        let now = Utc::now().timestamp_millis();
        // Sixteen messages in flight when the relay goes away: one failed try.
        let t = b.try_now();
        let counted = (0..16).filter(|_| b.failed(t, now)).count();
        assert_eq!(counted, 1);
        assert_eq!(b.streak(), 1);
        assert!(b.remaining() <= Duration::from_secs(1));
    }

    #[test]
    fn a_failure_after_an_acceptance_does_not_wait() {
        let b = Backoff::default();
        let t = b.try_now();
        // Another message of the same try went through before this one failed.
        b.accepted();
        assert!(!b.failed(t, Utc::now().timestamp_millis()));
        assert_eq!(b.remaining(), Duration::ZERO);
        assert_eq!(b.streak(), 0);
    }
}
