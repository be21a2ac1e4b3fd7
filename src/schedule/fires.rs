//! The cron maths of the schedule: when it fires, and which week a fire produces. A leaf the
//! application layer reads ([`crate::app`] decides what a fire does; the loop in
//! [`crate::schedule`] decides when to ask).

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::issues::IsoWeek;

/// The first fire strictly after `after`.
pub fn next_fire(schedule: &cron::Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule
        .after(&after.with_timezone(&tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

/// The last fire at or before `now`, looking back at most `horizon`.
pub fn last_fire(
    schedule: &cron::Schedule,
    tz: Tz,
    now: DateTime<Utc>,
    horizon: Duration,
) -> Option<DateTime<Utc>> {
    let mut last = None;
    let mut t = now - horizon;
    while let Some(next) = next_fire(schedule, tz, t) {
        if next > now {
            break;
        }
        last = Some(next);
        t = next;
    }
    last
}

/// The week a fire at `at` produces: the ISO week (in `tz`) before the one `at` falls in.
pub fn week_for_fire(at: DateTime<Utc>, tz: Tz) -> IsoWeek {
    IsoWeek::containing(at, tz).previous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::str::FromStr;

    fn monday_nine() -> cron::Schedule {
        cron::Schedule::from_str("0 0 9 * * Mon").unwrap()
    }

    #[test]
    fn fires_at_nine_local_across_dst_in_berlin() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Summer time (UTC+2) ends on Sunday 2026-10-25.
        let before = Utc.with_ymd_and_hms(2026, 10, 15, 12, 0, 0).unwrap();
        let f1 = next_fire(&monday_nine(), berlin, before).unwrap();
        assert_eq!(
            f1,
            Utc.with_ymd_and_hms(2026, 10, 19, 7, 0, 0).unwrap(),
            "09:00 CEST"
        );
        let f2 = next_fire(&monday_nine(), berlin, f1).unwrap();
        assert_eq!(
            f2,
            Utc.with_ymd_and_hms(2026, 10, 26, 8, 0, 0).unwrap(),
            "09:00 CET"
        );
        // Spring forward on 2027-03-28.
        let f3 = next_fire(
            &monday_nine(),
            berlin,
            Utc.with_ymd_and_hms(2027, 3, 25, 0, 0, 0).unwrap(),
        )
        .unwrap();
        assert_eq!(f3, Utc.with_ymd_and_hms(2027, 3, 29, 7, 0, 0).unwrap());
        assert_eq!(week_for_fire(f2, berlin).to_string(), "2026-W43");
    }

    #[test]
    fn the_last_fire_is_found_for_catch_up() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 11, 30, 0).unwrap();
        let last = last_fire(&monday_nine(), Tz::UTC, now, Duration::days(8)).unwrap();
        assert_eq!(last, Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap());
        let sunday = Utc.with_ymd_and_hms(2026, 11, 22, 11, 30, 0).unwrap();
        let last = last_fire(&monday_nine(), Tz::UTC, sunday, Duration::days(8)).unwrap();
        assert_eq!(last, Utc.with_ymd_and_hms(2026, 11, 16, 9, 0, 0).unwrap());
    }
}
