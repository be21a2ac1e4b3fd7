//! Issues: one per ISO week (in `schedule.timezone`), keyed `2026-W47`.
//!
//! An issue carries the comparisons published before its cutoff (the end of its week) that no
//! earlier issue carried, oldest first, at most `newsletter.max_items`; the rest roll to the next
//! week. Creating an issue freezes it: the rendered subject, HTML and text are stored so that
//! every subscriber gets exactly the same content even if a comparison is edited during the send.

pub mod freeze;
pub mod variants;

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
    /// The week had nothing new: no email. Only rows written before such weeks stopped
    /// leaving an issue behind (`issue create` now writes nothing for them) have it.
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

impl IssueStatus {
    /// Every status, for tables and exhaustive tests.
    pub const ALL: [IssueStatus; 7] = [
        IssueStatus::Empty,
        IssueStatus::Ready,
        IssueStatus::Scheduled,
        IssueStatus::Sending,
        IssueStatus::Paused,
        IssueStatus::Sent,
        IssueStatus::Cancelled,
    ];

    /// The issue state machine: whether an operator (or the scheduler) may `action` an issue in
    /// this status. The one place this rule lives; every front end asks it.
    ///
    /// - send: a ready or scheduled issue (a paused one is *resumed*, a sending one is already
    ///   going);
    /// - schedule: a ready issue, or a scheduled one (to move its time);
    /// - pause / resume: sending ↔ paused;
    /// - cancel: anything not yet finished (ready, scheduled, sending, paused);
    /// - retry-failed: an issue whose send has started (sending, paused, sent);
    /// - test-send: any issue with content.
    pub fn allows(self, action: ActionKind) -> bool {
        use IssueStatus as S;
        match action {
            ActionKind::Send | ActionKind::Schedule => matches!(self, S::Ready | S::Scheduled),
            ActionKind::Pause => self == S::Sending,
            ActionKind::Resume => self == S::Paused,
            ActionKind::Cancel => {
                matches!(self, S::Ready | S::Scheduled | S::Sending | S::Paused)
            }
            ActionKind::RetryFailed => matches!(self, S::Sending | S::Paused | S::Sent),
            ActionKind::TestSend => self != S::Empty,
        }
    }

    /// The statuses from which `action` is allowed (for the guarded update that applies it).
    pub fn allowing(action: ActionKind) -> Vec<IssueStatus> {
        IssueStatus::ALL
            .into_iter()
            .filter(|s| s.allows(action))
            .collect()
    }

    /// Where `action` leaves an issue that allows it.
    pub fn after(self, action: ActionKind) -> IssueStatus {
        match action {
            ActionKind::Send | ActionKind::Resume => IssueStatus::Sending,
            ActionKind::Schedule => IssueStatus::Scheduled,
            ActionKind::Pause => IssueStatus::Paused,
            ActionKind::Cancel => IssueStatus::Cancelled,
            // Failed rows back in line: the send goes on (or again) from `sending`.
            ActionKind::RetryFailed => match self {
                IssueStatus::Paused => IssueStatus::Paused,
                _ => IssueStatus::Sending,
            },
            ActionKind::TestSend => self,
        }
    }
}

/// What verdicts does to an issue by itself, beside the operators' [`ActionKind`]s: the rest
/// of the state machine, so that no move of an issue is written anywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Automatic {
    /// A send with nothing pending any more is over.
    Finish,
    /// A pause for a full sending window ends once its time has come.
    EndWindowPause,
}

impl Automatic {
    /// The one status the move applies to, and the status it leaves.
    pub fn moves(self) -> (IssueStatus, IssueStatus) {
        match self {
            Automatic::Finish => (IssueStatus::Sending, IssueStatus::Sent),
            Automatic::EndWindowPause => (
                IssueStatus::Paused,
                IssueStatus::Paused.after(ActionKind::Resume),
            ),
        }
    }
}

/// What an operator can do to an issue, without its arguments: the state machine's alphabet
/// and the operator log's vocabulary (`issue.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    Send,
    Schedule,
    Pause,
    Resume,
    Cancel,
    RetryFailed,
    TestSend,
}

impl ActionKind {
    pub const ALL: [ActionKind; 7] = [
        ActionKind::Send,
        ActionKind::Schedule,
        ActionKind::Pause,
        ActionKind::Resume,
        ActionKind::Cancel,
        ActionKind::RetryFailed,
        ActionKind::TestSend,
    ];

    /// The name in URLs (`/api/issues/12/retry-failed`), commands and the operator log.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Send => "send",
            ActionKind::Schedule => "schedule",
            ActionKind::Pause => "pause",
            ActionKind::Resume => "resume",
            ActionKind::Cancel => "cancel",
            ActionKind::RetryFailed => "retry-failed",
            ActionKind::TestSend => "test-send",
        }
    }
}

impl Serialize for ActionKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActionKind::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("no action {s:?}"))
    }
}

/// An action with its arguments, as front ends hand it to [`crate::app`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueAction {
    Send,
    Schedule(DateTime<Utc>),
    Pause,
    Resume,
    Cancel,
    RetryFailed,
    TestSend(crate::subscribers::SubscriberEmail),
}

impl IssueAction {
    /// The action of `kind`, asking for the arguments only the kinds that take one need (a
    /// test-send's address, a schedule's time): every front end builds its actions here.
    pub fn build<E>(
        kind: ActionKind,
        to: impl FnOnce() -> Result<crate::subscribers::SubscriberEmail, E>,
        at: impl FnOnce() -> Result<DateTime<Utc>, E>,
    ) -> Result<IssueAction, E> {
        Ok(match kind {
            ActionKind::Send => IssueAction::Send,
            ActionKind::Pause => IssueAction::Pause,
            ActionKind::Resume => IssueAction::Resume,
            ActionKind::Cancel => IssueAction::Cancel,
            ActionKind::RetryFailed => IssueAction::RetryFailed,
            ActionKind::TestSend => IssueAction::TestSend(to()?),
            ActionKind::Schedule => IssueAction::Schedule(at()?),
        })
    }

    pub fn kind(&self) -> ActionKind {
        match self {
            IssueAction::Send => ActionKind::Send,
            IssueAction::Schedule(_) => ActionKind::Schedule,
            IssueAction::Pause => ActionKind::Pause,
            IssueAction::Resume => ActionKind::Resume,
            IssueAction::Cancel => ActionKind::Cancel,
            IssueAction::RetryFailed => ActionKind::RetryFailed,
            IssueAction::TestSend(_) => ActionKind::TestSend,
        }
    }
}

/// How operators name an issue: its public number (`12` or `#12`) or its week (`2026-W47`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueKey {
    Number(i64),
    Week(IsoWeek),
}

/// A string that names no issue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an issue number (12 or #12) nor a week (2026-W47)")]
pub struct InvalidIssueKey(pub String);

impl FromStr for IssueKey {
    type Err = InvalidIssueKey;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let digits = t.strip_prefix('#').unwrap_or(t);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return digits
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .map(IssueKey::Number)
                .ok_or_else(|| InvalidIssueKey(s.to_string()));
        }
        t.parse::<IsoWeek>()
            .map(IssueKey::Week)
            .map_err(|_| InvalidIssueKey(s.to_string()))
    }
}

impl fmt::Display for IssueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssueKey::Number(n) => write!(f, "#{n}"),
            IssueKey::Week(w) => write!(f, "{w}"),
        }
    }
}

/// Why a send paused itself, without an operator: the decision of the delivery engine or of
/// the bounce policy, applied by the application layer (which logs it as `system`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseCause {
    /// `delivery.pause_after_failures` consecutive failed messages.
    Failures,
    /// The transport failed and nothing was accepted for `delivery.stall_after`.
    Stalled,
    /// Complaint or hard-bounce rate above the limits (the circuit breaker).
    Breaker,
    /// `delivery.window_limit` reached: resumes by itself at `resume_at`.
    Window { resume_at: DateTime<Utc> },
}

/// An automatic pause: its cause and the reason shown to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoPause {
    pub cause: PauseCause,
    pub reason: String,
}

impl AutoPause {
    /// When the send resumes by itself, if it does.
    pub fn resume_at(&self) -> Option<DateTime<Utc>> {
        match self.cause {
            PauseCause::Window { resume_at } => Some(resume_at),
            _ => None,
        }
    }
}

/// What applies automatic pauses: implemented by the application layer, called by the
/// delivery engine and the bounce policy (which sit below it and must not import it).
pub trait Supervisor: Send + Sync {
    /// Pauses a sending issue; returns whether it was sending (and now is paused).
    fn auto_pause<'a>(
        &'a self,
        issue_id: i64,
        pause: AutoPause,
    ) -> futures_util::future::BoxFuture<'a, anyhow::Result<bool>>;
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
    fn automatic_moves_agree_with_the_operators_state_machine() {
        let (from, to) = Automatic::EndWindowPause.moves();
        assert!(
            from.allows(ActionKind::Resume),
            "ending a pause is a resume"
        );
        assert_eq!(to, from.after(ActionKind::Resume));
        let (from, to) = Automatic::Finish.moves();
        assert_eq!((from, to), (IssueStatus::Sending, IssueStatus::Sent));
        assert!(from.allows(ActionKind::Pause) && !to.allows(ActionKind::Pause));
    }

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
    fn issue_keys_accept_numbers_hashes_and_weeks() {
        assert_eq!("12".parse::<IssueKey>().unwrap(), IssueKey::Number(12));
        assert_eq!(" #12 ".parse::<IssueKey>().unwrap(), IssueKey::Number(12));
        assert_eq!(
            "2026-W47".parse::<IssueKey>().unwrap(),
            IssueKey::Week("2026-W47".parse().unwrap())
        );
        for bad in [
            "",
            "#",
            "0",
            "-3",
            "#x",
            "12a",
            "2026-47",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<IssueKey>().is_err(), "{bad:?}");
        }
        assert_eq!(IssueKey::Number(3).to_string(), "#3");
    }

    /// The whole state machine, every status × every action, spelled out as a table so a
    /// change to one rule shows here.
    #[test]
    fn state_machine_table() {
        use ActionKind as A;
        use IssueStatus as S;
        let table: [(S, [bool; 7]); 7] = [
            //                 send  sched  pause  resume cancel retry  test
            (S::Empty, [false, false, false, false, false, false, false]),
            (S::Ready, [true, true, false, false, true, false, true]),
            (S::Scheduled, [true, true, false, false, true, false, true]),
            (S::Sending, [false, false, true, false, true, true, true]),
            (S::Paused, [false, false, false, true, true, true, true]),
            (S::Sent, [false, false, false, false, false, true, true]),
            (
                S::Cancelled,
                [false, false, false, false, false, false, true],
            ),
        ];
        assert_eq!(
            ActionKind::ALL,
            [
                A::Send,
                A::Schedule,
                A::Pause,
                A::Resume,
                A::Cancel,
                A::RetryFailed,
                A::TestSend
            ]
        );
        for (status, row) in table {
            for (action, allowed) in ActionKind::ALL.into_iter().zip(row) {
                assert_eq!(status.allows(action), allowed, "{status} × {action}");
            }
        }
        assert_eq!(S::Ready.after(A::Send), S::Sending);
        assert_eq!(S::Paused.after(A::Resume), S::Sending);
        assert_eq!(S::Sending.after(A::Pause), S::Paused);
        assert_eq!(S::Ready.after(A::Schedule), S::Scheduled);
        assert_eq!(S::Paused.after(A::Cancel), S::Cancelled);
        assert_eq!(S::Sent.after(A::RetryFailed), S::Sending);
        assert_eq!(S::Paused.after(A::RetryFailed), S::Paused);
        assert_eq!(S::Sent.after(A::TestSend), S::Sent);
        assert_eq!(IssueStatus::allowing(A::Pause), [S::Sending]);
        for a in ActionKind::ALL {
            assert_eq!(a.as_str().parse::<ActionKind>().unwrap(), a);
        }
        assert!("explode".parse::<ActionKind>().is_err());
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
