//! The weekly schedule: at each fire of `schedule.cron` in `schedule.timezone`, create (or find)
//! the issue of the week that just ended, freeze it and start its send.
//!
//! - **Idempotent**: a fire is claimed in the database (`schedule_fires`, keyed by the fire
//!   instant) before anything happens, so two processes firing at once, a restart, or a DST fold
//!   that repeats the hour yield one issue and one send. The database decides, not memory.
//! - **Catch-up**: on start, a fire missed while the process was down still runs when it is at
//!   most `schedule.catch_up` late; older misses are logged and left to the operator.
//! - **Scheduled issues** (`issue schedule ID --at T`) start when their time comes.
//! - **Time is injectable** ([`Clock`]): tests drive the scheduler with a manual clock.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::app::issues::{Creation, Done, Performed};
use crate::app::{Actor, App, OpsError};
use crate::issues::freeze::Created;
use crate::issues::{IsoWeek, IssueAction};
use crate::shutdown::Shutdown;

/// Where the scheduler gets the time from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

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

/// What a fire did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// Another process (or an earlier run) already handled this fire.
    AlreadyHandled,
    /// The week had nothing new.
    Empty(IsoWeek),
    /// The issue's send started.
    Started { week: IsoWeek, recipients: i64 },
    /// The week's issue existed already and was not `ready`: nothing sent twice.
    Existing(IsoWeek),
}

/// Handles one fire at `at`: claims it, creates the week's issue, starts its send.
pub async fn fire(app: &App, at: DateTime<Utc>) -> anyhow::Result<FireOutcome> {
    let tz = app.settings().schedule.timezone.0;
    let week = week_for_fire(at, tz);
    if !app.store().claim_fire(at, week).await? {
        return Ok(FireOutcome::AlreadyHandled);
    }
    let (issue, created) = match app
        .create_issue(&Actor::Scheduler, Some(week))
        .await
        .map_err(anyhow::Error::from)?
    {
        Creation::Issue(issue, created) => (*issue, created),
        Creation::NothingNew(_) => {
            // The claimed fire is the record that this week was handled.
            tracing::info!(%week, "scheduled fire: nothing new this week");
            return Ok(FireOutcome::Empty(week));
        }
    };
    if issue.number.is_none() {
        tracing::info!(%week, "scheduled fire: nothing new this week");
        return Ok(FireOutcome::Empty(week));
    }
    if created == Created::Existing && issue.status != crate::issues::IssueStatus::Ready {
        tracing::info!(%week, status = %issue.status, "scheduled fire: issue exists already");
        return Ok(FireOutcome::Existing(week));
    }
    match app
        .perform_on(&Actor::Scheduler, issue, IssueAction::Send)
        .await
    {
        Ok(Performed {
            done: Done::Started { recipients },
            ..
        }) => {
            tracing::info!(%week, recipients, "scheduled fire: send started");
            Ok(FireOutcome::Started { week, recipients })
        }
        // Scheduled for later, sent or cancelled by an operator first: nothing sent twice.
        Ok(_) | Err(OpsError::WrongState { .. }) => Ok(FireOutcome::Existing(week)),
        Err(e) => Err(e.into()),
    }
}

/// On start: the fire missed while down, if any, and whether it is still within catch-up.
pub async fn catch_up(app: &App, now: DateTime<Utc>) -> anyhow::Result<Option<FireOutcome>> {
    let store = app.store();
    let s = &app.settings().schedule;
    let window = Duration::from_std(s.catch_up.0).unwrap_or(Duration::hours(6));
    let Some(missed) = last_fire(&s.cron.schedule, s.timezone.0, now, Duration::days(8)) else {
        return Ok(None);
    };
    if store.fire_was_claimed(missed).await? {
        return Ok(None);
    }
    // Only a fire that a running installation should have made counts as missed.
    if store
        .first_scheduler_start()
        .await?
        .is_none_or(|first| first > missed)
    {
        tracing::info!(fire = %missed, "first start: the schedule begins with the next fire");
        return Ok(None);
    }
    if now - missed <= window {
        tracing::info!(fire = %missed, "catching up a fire missed while down");
        return Ok(Some(fire(app, missed).await?));
    }
    tracing::warn!(
        fire = %missed,
        late_by = %humantime::format_duration(std::time::Duration::from_secs(
            (now - missed).num_seconds().max(0) as u64
        )),
        "a scheduled fire was missed and is older than schedule.catch_up: left for the operator \
         (`verdicts issue create` and `verdicts issue send`)"
    );
    Ok(None)
}

/// The scheduler loop: catch-up, then every fire and every due scheduled issue, until shutdown.
pub async fn run(app: App, clock: Arc<dyn Clock>, shutdown: Shutdown) {
    let store = app.store();
    let settings = app.settings();
    if let Err(e) = catch_up(&app, clock.now()).await {
        tracing::warn!(error = %e, "catch-up failed");
    }
    if let Err(e) = store.record_scheduler_start(clock.now()).await {
        tracing::warn!(error = %e, "recording the scheduler start failed");
    }
    let s = &settings.schedule;
    let mut after = clock.now();
    tracing::info!(
        cron = %s.cron.source,
        timezone = %s.timezone.0,
        next = next_fire(&s.cron.schedule, s.timezone.0, after).map(tracing::field::display),
        "scheduler started"
    );
    loop {
        if shutdown.is_triggered() {
            break;
        }
        let now = clock.now();
        // Due fires since the last look (normally none or one).
        while let Some(at) = next_fire(&s.cron.schedule, s.timezone.0, after) {
            if at > now {
                break;
            }
            match fire(&app, at).await {
                Ok(outcome) => tracing::info!(fire = %at, ?outcome, "schedule fired"),
                Err(e) => tracing::error!(fire = %at, error = %e, "scheduled fire failed"),
            }
            after = at;
        }
        if let Err(e) = app.start_due_scheduled(now).await {
            crate::log_repeated!(
                warn,
                "schedule:start",
                e,
                "starting scheduled issues failed"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            _ = shutdown.clone().wait() => break,
        }
    }
    tracing::info!("scheduler stopped");
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
