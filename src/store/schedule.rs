//! Schedule bookkeeping: claimed fires and issues scheduled for a time.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{Store, to_millis};
use crate::issues::IsoWeek;

/// What claiming a fire found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireClaim {
    /// This process holds the fire now.
    Claimed,
    /// The fire's outcome is known already.
    Finished,
    /// Another process claimed it moments ago and has not finished it.
    Busy,
}

impl Store {
    /// Claims the fire at `at` for `claimant` (one process). A new fire is claimed; an
    /// unfinished claim is taken over by the process that holds it (a retry after a failed
    /// fire) or by anyone once it is older than `stale` (its process died or cannot write).
    pub async fn claim_fire(
        &self,
        at: DateTime<Utc>,
        week: IsoWeek,
        claimant: &str,
        stale: std::time::Duration,
    ) -> anyhow::Result<FireClaim> {
        let now = Utc::now();
        let inserted = sqlx::query(
            "INSERT INTO schedule_fires (fire_at, week, created_at, claimed_by)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (fire_at) DO NOTHING",
        )
        .bind(to_millis(at))
        .bind(week.to_string())
        .bind(to_millis(now))
        .bind(claimant)
        .execute(&self.writer)
        .await
        .context("claiming a schedule fire")?
        .rows_affected();
        if inserted > 0 {
            return Ok(FireClaim::Claimed);
        }
        let stale_before = now - chrono::Duration::from_std(stale).unwrap_or_default();
        let taken = sqlx::query(
            "UPDATE schedule_fires SET created_at = $1, claimed_by = $2
              WHERE fire_at = $3 AND done_at IS NULL
                AND (claimed_by = $2 OR claimed_by IS NULL OR created_at < $4)",
        )
        .bind(to_millis(now))
        .bind(claimant)
        .bind(to_millis(at))
        .bind(to_millis(stale_before))
        .execute(&self.writer)
        .await
        .context("taking over an unfinished schedule fire")?
        .rows_affected();
        if taken > 0 {
            return Ok(FireClaim::Claimed);
        }
        Ok(if self.fire_was_finished(at).await? {
            FireClaim::Finished
        } else {
            FireClaim::Busy
        })
    }

    /// Marks the fire at `at` finished: its outcome is known and nobody fires it again.
    pub async fn finish_fire(&self, at: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query("UPDATE schedule_fires SET done_at = $1 WHERE fire_at = $2")
            .bind(to_millis(Utc::now()))
            .bind(to_millis(at))
            .execute(&self.writer)
            .await
            .context("finishing a schedule fire")?;
        Ok(())
    }

    /// Records that a scheduler started at `at` (in the operator log).
    pub async fn record_scheduler_start(&self, at: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO operator_log (at, actor, action, issue_id, detail)
             VALUES ($1, 'scheduler', 'scheduler.start', NULL, '')",
        )
        .bind(to_millis(at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// When a scheduler first ran against this database, if ever.
    pub async fn first_scheduler_start(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT MIN(at) FROM operator_log WHERE action = 'scheduler.start'")
                .fetch_one(&self.pool)
                .await?;
        Ok(at.map(super::from_millis))
    }

    /// Whether the fire at `at` was claimed and finished (an unfinished claim is not).
    pub async fn fire_was_finished(&self, at: DateTime<Utc>) -> anyhow::Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM schedule_fires WHERE fire_at = $1 AND done_at IS NOT NULL",
        )
        .bind(to_millis(at))
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Schedules an issue in one of `from` for `at`, `forced` past a failed pre-send check or
    /// not; `false` (nothing changed) when it is in another status.
    pub async fn schedule_issue(
        &self,
        issue_id: i64,
        at: DateTime<Utc>,
        forced: bool,
        from: &[crate::issues::IssueStatus],
    ) -> anyhow::Result<bool> {
        let sql = format!(
            "UPDATE issues SET status = 'scheduled', scheduled_for = $1, status_reason = NULL,
                    scheduled_forced = $3
              WHERE id = $2 AND status IN ({})",
            super::placeholders(4, from.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_millis(at))
            .bind(issue_id)
            .bind(i64::from(forced));
        for f in from {
            q = q.bind(f.as_str());
        }
        Ok(q.execute(&self.writer).await?.rows_affected() > 0)
    }

    /// A scheduled issue whose start was refused (a pre-send check failed when it came due)
    /// back to `ready` with the reason; `false` when it is no longer scheduled.
    pub async fn unschedule_issue(&self, issue_id: i64, reason: &str) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "UPDATE issues SET status = 'ready', status_reason = $1, scheduled_for = NULL,
                    scheduled_forced = 0
              WHERE id = $2 AND status = 'scheduled'",
        )
        .bind(reason)
        .bind(issue_id)
        .execute(&self.writer)
        .await
        .context("unscheduling an issue")?
        .rows_affected()
            > 0)
    }

    /// Why a ready issue did not start (the scheduler's fire refused it); `false` when it is
    /// no longer ready.
    pub async fn note_ready_issue(&self, issue_id: i64, reason: &str) -> anyhow::Result<bool> {
        Ok(
            sqlx::query("UPDATE issues SET status_reason = $1 WHERE id = $2 AND status = 'ready'")
                .bind(reason)
                .bind(issue_id)
                .execute(&self.writer)
                .await
                .context("noting why an issue did not start")?
                .rows_affected()
                > 0,
        )
    }

    /// The scheduled issues whose time has come, oldest first.
    pub async fn due_scheduled_issues(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM issues WHERE status = 'scheduled' AND scheduled_for <= $1 ORDER BY id",
        )
        .bind(to_millis(now))
        .fetch_all(&self.pool)
        .await?)
    }
}
