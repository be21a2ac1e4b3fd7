//! Issues: one per ISO week (in `schedule.timezone`), keyed `2026-W47`.
//!
//! An issue carries the comparisons published before its cutoff (the end of its week) that no
//! earlier issue carried, oldest first, at most `newsletter.max_items`; the rest roll to the next
//! week. Creating an issue freezes it: the rendered subject, HTML and text are stored so that
//! every subscriber gets exactly the same content even if a comparison is edited during the send.

pub mod freeze;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

/// An ISO 8601 week such as `2026-W47`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoWeek {
    year: i32,
    week: u32,
}

/// A week string that is not `YYYY-Www`, or a week that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ISO week like 2026-W47")]
pub struct InvalidWeek(pub String);

impl IsoWeek {
    pub fn new(year: i32, week: u32) -> Option<IsoWeek> {
        NaiveDate::from_isoywd_opt(year, week, Weekday::Mon).map(|_| IsoWeek { year, week })
    }

    /// The week that contains `t` as seen in `tz`.
    pub fn containing(t: DateTime<Utc>, tz: Tz) -> IsoWeek {
        let iso = t.with_timezone(&tz).date_naive().iso_week();
        IsoWeek {
            year: iso.year(),
            week: iso.week(),
        }
    }

    /// The week before this one.
    pub fn previous(self) -> IsoWeek {
        let monday = self.monday() - Duration::days(7);
        let iso = monday.iso_week();
        IsoWeek {
            year: iso.year(),
            week: iso.week(),
        }
    }

    /// The week after this one.
    pub fn next(self) -> IsoWeek {
        let monday = self.monday() + Duration::days(7);
        let iso = monday.iso_week();
        IsoWeek {
            year: iso.year(),
            week: iso.week(),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn week(self) -> u32 {
        self.week
    }

    /// The Monday of this week (a calendar date).
    pub fn monday(self) -> NaiveDate {
        NaiveDate::from_isoywd_opt(self.year, self.week, Weekday::Mon).expect("checked week")
    }

    /// Monday 00:00 in `tz`, as a UTC instant.
    pub fn start(self, tz: Tz) -> DateTime<Utc> {
        local_midnight(self.monday(), tz)
    }

    /// The cutoff: the next Monday 00:00 in `tz`. Comparisons published before it belong here
    /// or earlier.
    pub fn end(self, tz: Tz) -> DateTime<Utc> {
        self.next().start(tz)
    }

    /// "Nov 16 – 22, 2026" (or across months/years as needed).
    pub fn date_range_label(self) -> String {
        let mon = self.monday();
        let sun = mon + Duration::days(6);
        if mon.year() != sun.year() {
            format!(
                "{} – {}",
                mon.format("%b %-d, %Y"),
                sun.format("%b %-d, %Y")
            )
        } else if mon.month() != sun.month() {
            format!(
                "{} – {}, {}",
                mon.format("%b %-d"),
                sun.format("%b %-d"),
                sun.year()
            )
        } else {
            format!(
                "{} – {}, {}",
                mon.format("%b %-d"),
                sun.format("%-d"),
                sun.year()
            )
        }
    }
}

/// Midnight at the start of `date` in `tz`; if a DST gap swallows midnight, the first instant
/// that exists that day.
fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut t = date.and_hms_opt(0, 0, 0).expect("midnight");
    for _ in 0..=4 * 24 {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(dt) => return dt.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => t += Duration::minutes(15),
        }
    }
    date.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

impl fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-W{:02}", self.year, self.week)
    }
}

impl FromStr for IsoWeek {
    type Err = InvalidWeek;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidWeek(s.to_string());
        let (year, week) = s.trim().split_once(['W', 'w']).ok_or_else(bad)?;
        let year = year.strip_suffix('-').unwrap_or(year);
        if year.len() != 4 || week.is_empty() || week.len() > 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let week: u32 = week.parse().map_err(|_| bad())?;
        IsoWeek::new(year, week).ok_or_else(bad)
    }
}

impl Serialize for IsoWeek {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where an issue is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueStatus {
    /// The week had nothing new: no email.
    Empty,
    /// Frozen and ready to send.
    Ready,
    /// Will start sending at `scheduled_for`.
    Scheduled,
    Sending,
    Paused,
    Sent,
    Cancelled,
}

impl IssueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueStatus::Empty => "empty",
            IssueStatus::Ready => "ready",
            IssueStatus::Scheduled => "scheduled",
            IssueStatus::Sending => "sending",
            IssueStatus::Paused => "paused",
            IssueStatus::Sent => "sent",
            IssueStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<IssueStatus> {
        Some(match s {
            "empty" => IssueStatus::Empty,
            "ready" => IssueStatus::Ready,
            "scheduled" => IssueStatus::Scheduled,
            "sending" => IssueStatus::Sending,
            "paused" => IssueStatus::Paused,
            "sent" => IssueStatus::Sent,
            "cancelled" => IssueStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether readers may see it in the archive: once its send has started.
    pub fn is_public(self) -> bool {
        matches!(
            self,
            IssueStatus::Sending | IssueStatus::Paused | IssueStatus::Sent
        )
    }
}

impl fmt::Display for IssueStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_weeks() {
        let w: IsoWeek = "2026-W47".parse().unwrap();
        assert_eq!((w.year(), w.week()), (2026, 47));
        assert_eq!(w.to_string(), "2026-W47");
        assert_eq!("2026w5".parse::<IsoWeek>().unwrap().to_string(), "2026-W05");
        for bad in [
            "2026-47",
            "2026-W54",
            "2025-W53",
            "W47",
            "20266-W01",
            "2026-W",
            "",
        ] {
            assert!(bad.parse::<IsoWeek>().is_err(), "{bad}");
        }
        assert!(
            "2026-W53".parse::<IsoWeek>().is_ok(),
            "2026 has 53 ISO weeks"
        );
    }

    #[test]
    fn weeks_follow_the_time_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Sunday 23:30 UTC is already Monday in Berlin.
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 23, 30, 0).unwrap();
        assert_eq!(IsoWeek::containing(t, Tz::UTC).to_string(), "2026-W47");
        assert_eq!(IsoWeek::containing(t, berlin).to_string(), "2026-W48");
        let w: IsoWeek = "2026-W47".parse().unwrap();
        assert_eq!(
            w.start(berlin),
            Utc.with_ymd_and_hms(2026, 11, 15, 23, 0, 0).unwrap()
        );
        assert_eq!(
            w.end(berlin),
            Utc.with_ymd_and_hms(2026, 11, 22, 23, 0, 0).unwrap()
        );
        assert_eq!(w.date_range_label(), "Nov 16 – 22, 2026");
        assert_eq!(
            "2026-W53".parse::<IsoWeek>().unwrap().next().to_string(),
            "2027-W01"
        );
        assert_eq!(
            "2027-W01"
                .parse::<IsoWeek>()
                .unwrap()
                .previous()
                .to_string(),
            "2026-W53"
        );
        assert_eq!(
            "2026-W53".parse::<IsoWeek>().unwrap().date_range_label(),
            "Dec 28, 2026 – Jan 3, 2027"
        );
    }
}
