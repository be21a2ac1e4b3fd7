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
//!
//! This module is the scheduler's front end (when); what a fire does is decided by the
//! application layer ([`App::fire`], [`App::catch_up`]).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::app::App;
use crate::issues::IsoWeek;
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

/// The scheduler loop: catch-up, then every fire and every due scheduled issue, until shutdown.
pub async fn run(app: App, clock: Arc<dyn Clock>, shutdown: Shutdown) {
    let settings = app.settings();
    if let Err(e) = app.catch_up(clock.now()).await {
        tracing::warn!(error = %e, "catch-up failed");
    }
    if let Err(e) = app.record_scheduler_start(clock.now()).await {
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
            match app.fire(at).await {
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
