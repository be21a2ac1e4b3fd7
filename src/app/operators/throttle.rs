//! The failed-login throttle of the console: per address and per client address, only
//! failures count, and a successful login never locks anyone out.
//!
//! Each key has a leaky bucket (the GCRA of `governor`, which cannot be checked without
//! consuming — hence this small one): a failed login adds one, the level drains by one per
//! `period`, and an attempt is refused while the level is at `burst`. So 10 wrong passwords
//! for one address in a row lock it for about a minute, then one more guess a minute.
//!
//! An attempt *reserves* its place before the password is checked, and a successful one gives
//! it back: a burst of guesses sent in parallel cannot all pass the check before the first
//! failure is counted. An attempt abandoned before its answer (the client went away) keeps
//! its place, as a failure would.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many failures a key may have in a row, and how fast they are forgiven.
#[derive(Debug, Clone, Copy)]
struct Rule {
    burst: u32,
    /// One failure is forgiven per period.
    period: Duration,
}

/// Per address: 10 in a row, then one a minute.
const BY_ADDRESS: Rule = Rule {
    burst: 10,
    period: Duration::from_secs(60),
};
/// Per client: 30 in a row (any addresses), then one every 10 seconds.
const BY_CLIENT: Rule = Rule {
    burst: 30,
    period: Duration::from_secs(10),
};

/// Up to this many keys are kept without pruning; above it, drained ones are forgotten when
/// the map has doubled since the last pruning or a bucket's full drain time has passed.
const PRUNE_FLOOR: usize = 4096;

/// One key's bucket: its level at `at`.
#[derive(Debug, Clone, Copy)]
struct Level {
    level: f64,
    at: Instant,
}

/// Leaky buckets of one rule, by key.
#[derive(Debug)]
struct Buckets<K> {
    rule: Rule,
    levels: HashMap<K, Level>,
    prune_at: usize,
    pruned_at: Option<Instant>,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    fn new(rule: Rule) -> Self {
        Buckets {
            rule,
            levels: HashMap::new(),
            prune_at: PRUNE_FLOOR,
            pruned_at: None,
        }
    }

    /// The level of `key` at `now`, drained since it was last written.
    fn level(&self, key: &K, now: Instant) -> f64 {
        self.levels.get(key).map_or(0.0, |l| {
            let drained =
                now.saturating_duration_since(l.at).as_secs_f64() / self.rule.period.as_secs_f64();
            (l.level - drained).max(0.0)
        })
    }

    /// How long until `key` may try again; `None` when it may now.
    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let over = self.level(key, now) + 1.0 - f64::from(self.rule.burst);
        (over > 0.0).then(|| self.rule.period.mul_f64(over))
    }

    /// Adds `delta` to `key`'s level (never below zero).
    fn add(&mut self, key: &K, delta: f64, now: Instant) {
        let level = (self.level(key, now) + delta).max(0.0);
        if level == 0.0 {
            self.levels.remove(key);
        } else {
            self.levels.insert(key.clone(), Level { level, at: now });
        }
        let full_drain = self.rule.period * self.rule.burst;
        let len = self.levels.len();
        if len > self.prune_at
            || (len > PRUNE_FLOOR
                && self
                    .pruned_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= full_drain))
        {
            let period = self.rule.period.as_secs_f64();
            self.levels.retain(|_, l| {
                l.level > now.saturating_duration_since(l.at).as_secs_f64() / period
            });
            self.prune_at = (2 * self.levels.len()).max(PRUNE_FLOOR);
            self.pruned_at = Some(now);
        }
    }
}

/// The throttle of one process (the console's logins go to the process that serves them).
#[derive(Debug)]
pub struct LoginThrottle {
    buckets: Mutex<(Buckets<String>, Buckets<IpAddr>)>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            buckets: Mutex::new((Buckets::new(BY_ADDRESS), Buckets::new(BY_CLIENT))),
        }
    }
}

/// A reserved login attempt: [`LoginThrottle::finish`] says how it went.
#[derive(Debug)]
#[must_use = "a reserved attempt is finished with LoginThrottle::finish"]
pub struct Reserved {
    address: String,
    client: IpAddr,
}

impl LoginThrottle {
    /// Reserves an attempt for `address` (as typed: trimmed and lower-cased here) from
    /// `client`; `Err(wait)` when either has had its failures and must wait that long.
    pub fn reserve(
        &self,
        address: &str,
        client: IpAddr,
        now: Instant,
    ) -> Result<Reserved, Duration> {
        let address = address.trim().to_lowercase();
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (by_address, by_client) = &mut *guard;
        let wait = by_address
            .wait(&address, now)
            .max(by_client.wait(&client, now));
        if let Some(wait) = wait {
            return Err(wait);
        }
        by_address.add(&address, 1.0, now);
        by_client.add(&client, 1.0, now);
        Ok(Reserved { address, client })
    }

    /// Ends a reserved attempt: a failure keeps its place in both buckets; anything else (a
    /// successful login, or our own error) gives it back.
    pub fn finish(&self, attempt: Reserved, failed: bool, now: Instant) {
        if failed {
            return;
        }
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (by_address, by_client) = &mut *guard;
        by_address.add(&attempt.address, -1.0, now);
        by_client.add(&attempt.client, -1.0, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail(t: &LoginThrottle, address: &str, client: IpAddr, now: Instant) {
        let attempt = t.reserve(address, client, now).expect("not throttled");
        t.finish(attempt, true, now);
    }

    #[test]
    fn the_address_limit_trips_after_ten_failures() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let client = ip("192.0.2.1");
        for _ in 0..10 {
            fail(&t, "Ada@Example.org", client, now);
        }
        let wait = t.reserve("ada@example.org ", client, now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        // Another address from another client is not affected.
        let other = t.reserve("bob@example.org", ip("192.0.2.2"), now).unwrap();
        t.finish(other, false, now);
        // A minute later one more guess, and no second one.
        let later = now + Duration::from_secs(60);
        fail(&t, "ada@example.org", client, later);
        assert!(t.reserve("ada@example.org", client, later).is_err());
        // Ten minutes on, ten more.
        let much_later = later + Duration::from_secs(600);
        for _ in 0..10 {
            fail(&t, "ada@example.org", client, much_later);
        }
        assert!(t.reserve("ada@example.org", client, much_later).is_err());
    }

    #[test]
    fn only_failures_count() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let client = ip("192.0.2.1");
        // Any number of successful logins: never throttled, by address or by client.
        for i in 0..100 {
            let a = t
                .reserve("ada@example.org", client, now)
                .unwrap_or_else(|w| panic!("login {i} throttled for {w:?}"));
            t.finish(a, false, now);
        }
        // Nine failures, then the right password still works, again and again.
        for _ in 0..9 {
            fail(&t, "ada@example.org", client, now);
        }
        for _ in 0..5 {
            let a = t.reserve("ada@example.org", client, now).unwrap();
            t.finish(a, false, now);
        }
        // The tenth failure locks the address.
        fail(&t, "ada@example.org", client, now);
        assert!(t.reserve("ada@example.org", client, now).is_err());
    }

    #[test]
    fn parallel_guesses_are_counted_before_they_finish() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let client = ip("192.0.2.9");
        let in_flight: Vec<Reserved> = (0..10)
            .map(|_| t.reserve("ada@example.org", client, now).unwrap())
            .collect();
        assert!(
            t.reserve("ada@example.org", client, now).is_err(),
            "ten guesses in flight fill the bucket"
        );
        for a in in_flight {
            t.finish(a, true, now);
        }
        assert!(t.reserve("ada@example.org", client, now).is_err());
    }

    #[test]
    fn the_client_limit_trips_across_addresses() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let client = ip("198.51.100.7");
        for i in 0..30 {
            fail(&t, &format!("user{i}@example.org"), client, now);
        }
        let wait = t.reserve("fresh@example.org", client, now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert!(
            t.reserve("fresh@example.org", ip("198.51.100.8"), now)
                .is_ok()
        );
    }

    #[test]
    fn drained_keys_are_forgotten() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..(PRUNE_FLOOR as u32 + 10) {
            let client = IpAddr::from(i.to_be_bytes());
            fail(&t, &format!("user{i}@example.org"), client, now);
        }
        let later = now + Duration::from_secs(3600);
        fail(&t, "last@example.org", ip("203.0.113.1"), later);
        let guard = t.buckets.lock().unwrap();
        assert_eq!(guard.0.levels.len(), 1);
        assert_eq!(guard.1.levels.len(), 1);
    }
}
