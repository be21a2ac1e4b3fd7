//! The scheduler's decisions: what a fire of `schedule.cron` does (claim it, freeze the week's
//! issue, start its send), and what a start does about a fire missed while down. The loop that
//! watches the clock is the front end in [`crate::schedule`].

use chrono::{DateTime, Duration, Utc};

use super::issues::{Creation, Done, Performed};
use super::{Actor, App, OpsError};
use crate::issues::freeze::Created;
use crate::issues::{IsoWeek, IssueAction};
use crate::schedule::fires::{last_fire, next_fire, week_for_fire};
use crate::store::schedule::FireClaim;

/// What a fire did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// Another process (or an earlier run) already handled this fire.
    AlreadyHandled,
    /// Another process claimed this fire moments ago and has not finished it yet: fire again
    /// later (it is taken over once that claim is stale, see [`FIRE_CLAIM_STALE`]).
    InProgress,
    /// The week had nothing new.
    Empty(IsoWeek),
    /// The issue's send started.
    Started { week: IsoWeek, recipients: i64 },
    /// The week's issue existed already and was not `ready`: nothing sent twice.
    Existing(IsoWeek),
    /// A pre-send check failed: nothing was sent, the issue stays `ready` with the reason.
    Refused { week: IsoWeek, reason: String },
}

/// How long an unfinished claim of a fire keeps other processes off it. The process holding it
/// retries at once; a process that died (or cannot write to release it) is relieved after this.
pub const FIRE_CLAIM_STALE: std::time::Duration = std::time::Duration::from_secs(120);

impl FireOutcome {
    /// Whether the fire still needs doing (by this process or the one that holds it).
    pub fn unfinished(&self) -> bool {
        matches!(self, FireOutcome::InProgress)
    }
}

impl App {
    /// Handles one fire at `at`: claims it, creates the week's issue, runs the pre-send checks,
    /// starts its send when none fails, and marks the fire finished. An error (a full disk, a
    /// database restart) leaves the claim unfinished, so firing again (the scheduler retries
    /// within `schedule.catch_up`, a restart catches up) completes the week instead of finding
    /// it "handled"; a failed check is an outcome ([`FireOutcome::Refused`]), not retried.
    pub async fn fire(&self, at: DateTime<Utc>) -> anyhow::Result<FireOutcome> {
        let tz = self.settings().schedule.timezone.0;
        let week = week_for_fire(at, tz);
        match self
            .store()
            .claim_fire(at, week, &self.inner.claimant, FIRE_CLAIM_STALE)
            .await?
        {
            FireClaim::Finished => return Ok(FireOutcome::AlreadyHandled),
            FireClaim::Busy => return Ok(FireOutcome::InProgress),
            FireClaim::Claimed => {}
        }
        let outcome = match self.fire_claimed(at, week).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // A refusal of the application (a typed precondition, not a fault of the disk
                // or the database) does not pass by trying again: the fire is done and the
                // error stands for the operator. Faults leave it unfinished, to be retried.
                if e.downcast_ref::<OpsError>()
                    .is_some_and(|o| !matches!(o, OpsError::Internal(_)))
                    && let Err(f) = self.store().finish_fire(at).await
                {
                    tracing::warn!(error = %format!("{f:#}"), "finishing a refused fire failed");
                }
                return Err(e);
            }
        };
        self.store().finish_fire(at).await?;
        Ok(outcome)
    }

    /// A claimed fire: the week's issue created (or found) and its send started.
    async fn fire_claimed(&self, at: DateTime<Utc>, week: IsoWeek) -> anyhow::Result<FireOutcome> {
        let app = self;
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
        // A row of a week with nothing new, from before such weeks stopped leaving one.
        if issue.status == crate::issues::IssueStatus::Empty {
            tracing::info!(%week, "scheduled fire: nothing new this week");
            return Ok(FireOutcome::Empty(week));
        }
        if created == Created::Existing && issue.status != crate::issues::IssueStatus::Ready {
            tracing::info!(%week, status = %issue.status, "scheduled fire: issue exists already");
            return Ok(FireOutcome::Existing(week));
        }
        // The checks an operator's send runs: a fire sends nothing that fails one.
        if let Some(reason) = app.recheck_before_start(&issue).await {
            let reason = format!(
                "the scheduled fire at {} did not send it: {reason}; fix the issue, or send it \
                 with force",
                at.to_rfc3339()
            );
            app.store().note_ready_issue(issue.id, &reason).await?;
            tracing::error!(%week, %reason, "scheduled fire: issue not sent");
            return Ok(FireOutcome::Refused { week, reason });
        }
        match app
            .perform_on(&Actor::Scheduler, issue, IssueAction::Send)
            .await
        {
            Ok(Performed {
                done: Done::Started { recipients, .. },
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
    pub async fn catch_up(&self, now: DateTime<Utc>) -> anyhow::Result<Option<FireOutcome>> {
        let app = self;
        let store = app.store();
        let s = &app.settings().schedule;
        let window = Duration::from_std(s.catch_up.0).unwrap_or(Duration::hours(6));
        let Some(missed) = last_fire(&s.cron.schedule, s.timezone.0, now, Duration::days(8)) else {
            return Ok(None);
        };
        if store.fire_was_finished(missed).await? {
            return Ok(None);
        }
        // Only a fire that a running installation should have made counts as missed.
        if store
            .first_scheduler_start()
            .await?
            .is_none_or(|first| first > missed)
        {
            tracing::info!(
                before_first_start = %missed,
                next = next_fire(&s.cron.schedule, s.timezone.0, now).map(tracing::field::display),
                "first start: the schedule begins with the next fire"
            );
            return Ok(None);
        }
        if now - missed <= window {
            tracing::info!(fire = %missed, "catching up a fire missed while down");
            return Ok(Some(app.fire(missed).await?));
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

    /// Records that the scheduler started (a fire before the first start is not "missed").
    pub async fn record_scheduler_start(&self, at: DateTime<Utc>) -> anyhow::Result<()> {
        self.store().record_scheduler_start(at).await
    }
}
