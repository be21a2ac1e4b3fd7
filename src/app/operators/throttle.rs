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
//!
//! The buckets live in the database ([`crate::store::throttle`]), read and rewritten in one
//! write transaction per step: every process serving the console counts the same failures, so
//! several `serve` processes behind one address give a guesser no more tries than one. The
//! rule is here, as pure functions of the stored levels ([`reserve_levels`], [`give_back`]).

use std::net::IpAddr;
use std::time::Duration;

use crate::store::Store;
use crate::store::throttle::StoredLevel;

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

/// The two buckets of an attempt, in this order: its address's, its client's.
const RULES: [Rule; 2] = [BY_ADDRESS, BY_CLIENT];

impl Rule {
    fn period_ms(self) -> f64 {
        self.period.as_millis() as f64
    }

    /// The level of a stored bucket at `now_ms`, drained since it was written.
    fn level(self, stored: Option<StoredLevel>, now_ms: i64) -> f64 {
        stored.map_or(0.0, |l| {
            let drained = (now_ms - l.at_ms).max(0) as f64 / self.period_ms();
            (l.level - drained).max(0.0)
        })
    }

    /// How long until one more attempt may go; `None` when it may now.
    fn wait(self, stored: Option<StoredLevel>, now_ms: i64) -> Option<Duration> {
        let over = self.level(stored, now_ms) + 1.0 - f64::from(self.burst);
        (over > 0.0).then(|| self.period.mul_f64(over))
    }

    /// The bucket after adding `delta` at `now_ms` (never below zero; `None` once empty).
    fn add(self, stored: Option<StoredLevel>, delta: f64, now_ms: i64) -> Option<StoredLevel> {
        let level = (self.level(stored, now_ms) + delta).max(0.0);
        (level > 0.0).then(|| StoredLevel {
            level,
            at_ms: now_ms,
            drained_ms: now_ms + (level * self.period_ms()).ceil() as i64,
        })
    }
}

/// The keys of an attempt's two buckets (the address as typed: trimmed and lower-cased).
fn keys(address: &str, client: IpAddr) -> Vec<String> {
    vec![
        format!("address:{}", address.trim().to_lowercase()),
        format!("client:{client}"),
    ]
}

/// The rule of a reservation: the buckets with the attempt counted, or how long to wait.
pub fn reserve_levels(
    stored: &[Option<StoredLevel>],
    now_ms: i64,
) -> Result<Vec<Option<StoredLevel>>, Duration> {
    let wait = RULES
        .iter()
        .zip(stored)
        .filter_map(|(rule, s)| rule.wait(*s, now_ms))
        .max();
    match wait {
        Some(wait) => Err(wait),
        None => Ok(RULES
            .iter()
            .zip(stored)
            .map(|(rule, s)| rule.add(*s, 1.0, now_ms))
            .collect()),
    }
}

/// The rule of an attempt that did not fail: the buckets with its place given back.
pub fn give_back(stored: &[Option<StoredLevel>], now_ms: i64) -> Vec<Option<StoredLevel>> {
    RULES
        .iter()
        .zip(stored)
        .map(|(rule, s)| rule.add(*s, -1.0, now_ms))
        .collect()
}

/// A reserved login attempt: [`finish`] says how it went.
#[derive(Debug)]
#[must_use = "a reserved attempt is finished with throttle::finish"]
pub struct Reserved {
    keys: Vec<String>,
}

/// Reserves an attempt for `address` from `client` at `now_ms`; `Ok(Err(wait))` when either
/// has had its failures and must wait that long.
pub async fn reserve(
    store: &Store,
    address: &str,
    client: IpAddr,
    now_ms: i64,
) -> anyhow::Result<Result<Reserved, Duration>> {
    let keys = keys(address, client);
    let buckets = store.begin_buckets(&keys).await?;
    match reserve_levels(buckets.levels(), now_ms) {
        Ok(levels) => {
            buckets.write(&levels, now_ms).await?;
            Ok(Ok(Reserved { keys }))
        }
        Err(wait) => Ok(Err(wait)),
    }
}

/// Ends a reserved attempt: a failure keeps its place in both buckets; anything else (a
/// successful login, or our own error) gives it back.
pub async fn finish(
    store: &Store,
    attempt: Reserved,
    failed: bool,
    now_ms: i64,
) -> anyhow::Result<()> {
    if failed {
        return Ok(());
    }
    let buckets = store.begin_buckets(&attempt.keys).await?;
    let levels = give_back(buckets.levels(), now_ms);
    buckets.write(&levels, now_ms).await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The store as a map: the same rule applied to buckets kept in memory.
    #[derive(Default)]
    struct Model(HashMap<String, StoredLevel>);

    impl Model {
        fn stored(&self, keys: &[String]) -> Vec<Option<StoredLevel>> {
            keys.iter().map(|k| self.0.get(k).copied()).collect()
        }

        fn write(&mut self, keys: &[String], levels: Vec<Option<StoredLevel>>, now: i64) {
            for (k, l) in keys.iter().zip(levels) {
                match l {
                    Some(l) => self.0.insert(k.clone(), l),
                    None => self.0.remove(k),
                };
            }
            self.0.retain(|_, l| l.drained_ms >= now);
        }

        fn reserve(
            &mut self,
            address: &str,
            client: IpAddr,
            now: i64,
        ) -> Result<Vec<String>, Duration> {
            let keys = keys(address, client);
            let levels = reserve_levels(&self.stored(&keys), now)?;
            self.write(&keys, levels, now);
            Ok(keys)
        }

        fn finish(&mut self, keys: Vec<String>, failed: bool, now: i64) {
            if !failed {
                let levels = give_back(&self.stored(&keys), now);
                self.write(&keys, levels, now);
            }
        }

        fn fail(&mut self, address: &str, client: IpAddr, now: i64) {
            let keys = self.reserve(address, client, now).expect("not throttled");
            self.finish(keys, true, now);
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn the_address_limit_trips_after_ten_failures() {
        let mut t = Model::default();
        let client = ip("192.0.2.1");
        for _ in 0..10 {
            t.fail("Ada@Example.org", client, NOW);
        }
        let wait = t.reserve("ada@example.org ", client, NOW).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        // Another address from another client is not affected.
        let other = t.reserve("bob@example.org", ip("192.0.2.2"), NOW).unwrap();
        t.finish(other, false, NOW);
        // A minute later one more guess, and no second one.
        let later = NOW + 60_000;
        t.fail("ada@example.org", client, later);
        assert!(t.reserve("ada@example.org", client, later).is_err());
        // Ten minutes on, ten more.
        let much_later = later + 600_000;
        for _ in 0..10 {
            t.fail("ada@example.org", client, much_later);
        }
        assert!(t.reserve("ada@example.org", client, much_later).is_err());
    }

    #[test]
    fn only_failures_count() {
        let mut t = Model::default();
        let client = ip("192.0.2.1");
        // Any number of successful logins: never throttled, by address or by client.
        for i in 0..100 {
            let a = t
                .reserve("ada@example.org", client, NOW)
                .unwrap_or_else(|w| panic!("login {i} throttled for {w:?}"));
            t.finish(a, false, NOW);
        }
        assert!(t.0.is_empty(), "successes leave no bucket behind");
        // Nine failures, then the right password still works, again and again.
        for _ in 0..9 {
            t.fail("ada@example.org", client, NOW);
        }
        for _ in 0..5 {
            let a = t.reserve("ada@example.org", client, NOW).unwrap();
            t.finish(a, false, NOW);
        }
        // The tenth failure locks the address.
        t.fail("ada@example.org", client, NOW);
        assert!(t.reserve("ada@example.org", client, NOW).is_err());
    }

    #[test]
    fn parallel_guesses_are_counted_before_they_finish() {
        let mut t = Model::default();
        let client = ip("192.0.2.9");
        let in_flight: Vec<Vec<String>> = (0..10)
            .map(|_| t.reserve("ada@example.org", client, NOW).unwrap())
            .collect();
        assert!(
            t.reserve("ada@example.org", client, NOW).is_err(),
            "ten guesses in flight fill the bucket"
        );
        for a in in_flight {
            t.finish(a, true, NOW);
        }
        assert!(t.reserve("ada@example.org", client, NOW).is_err());
    }

    #[test]
    fn the_client_limit_trips_across_addresses() {
        let mut t = Model::default();
        let client = ip("198.51.100.7");
        for i in 0..30 {
            t.fail(&format!("user{i}@example.org"), client, NOW);
        }
        let wait = t.reserve("fresh@example.org", client, NOW).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert!(
            t.reserve("fresh@example.org", ip("198.51.100.8"), NOW)
                .is_ok()
        );
    }

    #[test]
    fn drained_buckets_are_forgotten() {
        let mut t = Model::default();
        for i in 0..100u32 {
            let client = IpAddr::from(i.to_be_bytes());
            t.fail(&format!("user{i}@example.org"), client, NOW);
        }
        assert_eq!(t.0.len(), 200);
        // One failure drains in a minute (address) or 10 s (client): an hour later only the
        // new attempt's two buckets are left.
        t.fail("last@example.org", ip("203.0.113.1"), NOW + 3_600_000);
        assert_eq!(t.0.len(), 2);
    }
}
