//! The weekly schedule: at each fire of `schedule.cron` in `schedule.timezone`, create (or find)
//! the issue of the week that just ended, freeze it and start its send.
//!
//! - **Idempotent**: a fire is claimed in the database (`schedule_fires`, keyed by the fire
//!   instant) before anything happens, so two processes firing at once, a restart, or a DST fold
//!   that repeats the hour yield one issue and one send. The database decides, not memory.
//! - **Retried**: a fire that fails (a full disk, a database restart) leaves its claim
//!   unfinished and is tried again (after 1 s, doubling to at most 30 s, one log line then a
//!   count) while it is within `schedule.catch_up`; a restart meanwhile catches it up too.
//! - **Catch-up**: on start, a fire missed while the process was down still runs when it is at
//!   most `schedule.catch_up` late (or was claimed but never finished); older misses are
//!   logged and left to the operator.
//! - **Scheduled issues** (`issue schedule ID --at T`) start when their time comes.
//! - **Time is injectable** ([`Clock`]): tests drive the scheduler with a manual clock.
//!
//! This module is the scheduler's front end (when); what a fire does is decided by the
//! application layer ([`App::fire`], [`App::catch_up`]).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::app::App;
use crate::shutdown::Shutdown;

pub mod fires;
pub use fires::{last_fire, next_fire, week_for_fire};

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

/// How soon a failed fire is tried again: doubling from the first, at most the last.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const RETRY_MOST: std::time::Duration = std::time::Duration::from_secs(30);

/// A fire (or the start's catch-up) that failed or that another process holds unfinished,
/// tried again until it is done or older than `schedule.catch_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    CatchUp,
    Fire(DateTime<Utc>),
}

/// The retries due, with their next try and the current wait.
#[derive(Debug, Default)]
struct Retries {
    due: Vec<(Retry, std::time::Instant, std::time::Duration)>,
}

impl Retries {
    /// Remembers `what` for another try after the current wait (doubled), or after the first.
    fn again(&mut self, what: Retry) {
        let now = std::time::Instant::now();
        match self.due.iter_mut().find(|(w, ..)| *w == what) {
            Some((_, next, wait)) => {
                *wait = (*wait * 2).min(RETRY_MOST);
                *next = now + *wait;
            }
            None => self.due.push((what, now + RETRY_FIRST, RETRY_FIRST)),
        }
    }

    fn done(&mut self, what: Retry) {
        self.due.retain(|(w, ..)| *w != what);
    }

    /// The retries whose time has come.
    fn ready(&self) -> Vec<Retry> {
        let now = std::time::Instant::now();
        self.due
            .iter()
            .filter(|(_, next, _)| *next <= now)
            .map(|(w, ..)| *w)
            .collect()
    }
}

/// One fire, logged; `true` when it still needs doing (an error, or another process holds it).
async fn fire_once(app: &App, at: DateTime<Utc>, retried: bool) -> bool {
    match app.fire(at).await {
        Ok(outcome) if outcome.unfinished() => true,
        Ok(outcome) => {
            if !(retried && outcome == crate::app::schedule::FireOutcome::AlreadyHandled) {
                tracing::info!(fire = %at, ?outcome, "schedule fired");
            }
            false
        }
        Err(e) => {
            crate::log_repeated!(
                error,
                "schedule:fire",
                e,
                fire = %at,
                "scheduled fire failed; trying again within schedule.catch_up"
            );
            true
        }
    }
}

/// The start's catch-up, logged; `true` when it still needs doing.
async fn catch_up_once(app: &App, now: DateTime<Utc>) -> bool {
    match app.catch_up(now).await {
        Ok(outcome) => outcome.is_some_and(|o| o.unfinished()),
        Err(e) => {
            crate::log_repeated!(
                warn,
                "schedule:catch-up",
                e,
                "catch-up failed; trying again within schedule.catch_up"
            );
            true
        }
    }
}

/// The scheduler loop: catch-up, then every fire and every due scheduled issue, until shutdown.
///
/// A fire that fails (a full disk, the database restarting) is tried again, first after a
/// second and then at most every 30 s, while it is within `schedule.catch_up`; its claim stays
/// unfinished meanwhile, so a restart catches it up too. The error is logged once, then counted.
pub async fn run(app: App, clock: Arc<dyn Clock>, shutdown: Shutdown) {
    let settings = app.settings();
    let s = &settings.schedule;
    let window = Duration::from_std(s.catch_up.0).unwrap_or(Duration::hours(6));
    let mut retries = Retries::default();
    // Fires from this instant on are the loop's; the one missed before it is catch-up's.
    let started = clock.now();
    if catch_up_once(&app, started).await {
        retries.again(Retry::CatchUp);
    }
    if let Err(e) = app.record_scheduler_start(started).await {
        tracing::warn!(error = %e, "recording the scheduler start failed");
    }
    let mut after = started;
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
            if fire_once(&app, at, false).await {
                retries.again(Retry::Fire(at));
            }
            after = at;
        }
        for what in retries.ready() {
            let again = match what {
                Retry::CatchUp => catch_up_once(&app, now).await,
                Retry::Fire(at) if now - at > window => {
                    tracing::error!(
                        fire = %at,
                        "a scheduled fire kept failing and is now older than schedule.catch_up: \
                         left for the operator (`verdicts issue create` and `verdicts issue send`)"
                    );
                    false
                }
                Retry::Fire(at) => fire_once(&app, at, true).await,
            };
            if again {
                retries.again(what);
            } else {
                retries.done(what);
            }
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
