//! The delivery ledger: one row per issue × subscriber, snapshotted when a send starts, claimed
//! by workers under a lease, and settled in batches.
//!
//! Claiming is one statement: `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`, with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL so concurrent workers take disjoint rows without
//! waiting (and joined with the subscribers in the same round trip); SQLite has one writer,
//! which makes the same statement atomic. A row whose lease has run out (its worker died) is
//! claimable again.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use sqlx::Row;

use super::{Backend, Store, placeholders, to_millis};
use crate::delivery::status::{DeliveryStatus, SkipReason};
use crate::issues::IssueStatus;
use crate::issues::variants::CategoryMap;
use crate::subscribers::SubscriberStatus;

/// A claimed delivery with what is needed to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub subscriber_id: Option<i64>,
    pub attempts: i64,
    /// `None` when the subscriber was erased.
    pub email: Option<String>,
    pub name: Option<String>,
    /// The subscriber's status now: only `confirmed` gets the message.
    pub subscriber_status: Option<SubscriberStatus>,
    /// The set of the issue's comparisons this reader gets (`None`: all of them).
    pub variant: Option<String>,
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Not sent: unsubscribed, bounced or erased since the snapshot.
    Skipped,
    /// Try again at `retry_at_ms` (counts as an attempt).
    Retry {
        retry_at_ms: i64,
        error: String,
    },
    /// Put back without counting an attempt (the server was unreachable).
    Release {
        retry_at_ms: i64,
        error: String,
    },
    /// Given up; `bounced` marks the subscriber so no later issue goes to them.
    Failed {
        error: String,
        bounced: bool,
    },
}

/// One failed delivery, for operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedDelivery {
    pub subscriber_id: Option<i64>,
    /// `None` once the subscriber was erased.
    pub email: Option<String>,
    pub attempts: i64,
    pub error: String,
    pub at: chrono::DateTime<Utc>,
}

/// Counts of one issue's deliveries.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DeliveryCounts {
    pub total: i64,
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Messages sent in the last minute.
    pub sent_last_minute: i64,
}

impl Store {
    /// Starts a send: moves the issue to `sending` if its status is one of `from`, and
    /// snapshots the audience (confirmed subscribers now) into the ledger, in one transaction.
    /// Returns the number of recipients, or `None` (nothing changed) when the issue is not in
    /// one of `from`. Which statuses may start a send is the application's rule
    /// ([`IssueStatus::allows`]); this only applies it atomically.
    ///
    /// Readers paused at the start are in the ledger as skipped, reason
    /// [`SkipReason::Paused`]. Readers with categories get the flags of their set of the
    /// issue's comparisons by `map` (`variant`; NULL when they get everything), or are skipped,
    /// reason [`SkipReason::NoMatchingComparisons`], when none matches.
    pub async fn start_send(
        &self,
        issue_id: i64,
        from: &[IssueStatus],
        map: &CategoryMap,
    ) -> anyhow::Result<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let sql = format!(
            "UPDATE issues SET status = 'sending', status_reason = NULL,
                    started_at = COALESCE(started_at, $1) WHERE id = $2 AND status IN ({})",
            placeholders(3, from.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(issue_id);
        for f in from {
            q = q.bind(f.as_str());
        }
        if q.execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(None);
        }
        // No `ON CONFLICT`: an issue's ledger is written here only, in the transaction that
        // moves it out of a status that has none (a send starts once), and the speculative
        // insertion cost a tenth of the snapshot on PostgreSQL (100,000 rows: 1.03–1.05 s with
        // it, 0.92–0.93 s without; SQLite 0.13–0.16 s either way). Should a row exist after
        // all, the unique key refuses the whole snapshot and the transaction changes nothing.
        // The readers with a choice join with their flags; the others (NULL flags) get the
        // whole issue. With no choices anywhere the join is empty and costs nothing. In the
        // readers' order, as claims go (PostgreSQL's join would otherwise pick its own).
        let sql = format!(
            "INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, next_attempt_at, updated_at, last_error, variant)
             SELECT $1, s.id,
                    CASE WHEN s.paused_until > $2 OR v.flags = $5 THEN 'skipped' ELSE 'pending' END,
                    0, 0, $2,
                    CASE WHEN s.paused_until > $2 THEN $3 WHEN v.flags = $5 THEN $4 END,
                    CASE WHEN s.paused_until > $2 OR v.flags = $5 OR v.flags = $6 THEN NULL ELSE v.flags END
               FROM subscribers s
               LEFT JOIN (SELECT x.sid, {} AS flags
                            FROM (SELECT DISTINCT subscriber_id AS sid FROM subscriber_categories) x) v
                 ON v.sid = s.id
              WHERE s.status = 'confirmed'
              ORDER BY s.id",
            super::variants::flags_sql(map, "x.sid", 7)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(issue_id)
            .bind(now)
            .bind(SkipReason::Paused.as_str())
            .bind(SkipReason::NoMatchingComparisons.as_str())
            .bind(map.nothing())
            .bind(map.everything());
        for b in super::variants::flag_binds(map) {
            q = q.bind(b);
        }
        q.execute(&mut *tx)
            .await
            .context("snapshotting the audience")?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE issue_id = $1")
            .bind(issue_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        if self.backend == Backend::Postgres {
            // Fresh statistics for the new ledger at once, not when autovacuum gets to it:
            // without them the planner takes the last minute's sends (`sent_at >= $1`) for a
            // third of a million rows and reads them in parallel (60–90 ms a console page
            // instead of 3–10, bench/console.sh). ANALYZE samples; it costs ~0.2 s per send.
            if let Err(e) = sqlx::query("ANALYZE deliveries")
                .execute(&self.writer)
                .await
            {
                tracing::warn!(error = %e, "could not analyze the deliveries after a snapshot");
            }
        }
        Ok(Some(n))
    }

    /// Puts an issue's failed deliveries back in line (pending, attempts from zero, due now)
    /// and moves the issue from one of `from` to `to`, in one transaction. Returns how many
    /// deliveries went back (with none, nothing changes), or `None` (nothing changed) when the
    /// issue is not in one of `from`.
    pub async fn retry_failed(
        &self,
        issue_id: i64,
        from: &[IssueStatus],
        to: IssueStatus,
    ) -> anyhow::Result<Option<u64>> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let sql = format!(
            "UPDATE issues SET status = $1, status_reason = NULL, finished_at = NULL
              WHERE id = $2 AND status IN ({})",
            placeholders(3, from.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(issue_id);
        for f in from {
            q = q.bind(f.as_str());
        }
        if q.execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(None);
        }
        let n = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = 0,
                    updated_at = $1, lease_owner = NULL, lease_until = NULL
              WHERE issue_id = $2 AND status = 'failed'",
        )
        .bind(now)
        .bind(issue_id)
        .execute(&mut *tx)
        .await
        .context("putting failed deliveries back in line")?
        .rows_affected();
        if self.backend == Backend::Postgres && n > 0 {
            // SQLite's row trigger counts the move; PostgreSQL's writer does (migration 0017).
            sqlx::query(
                "INSERT INTO delivery_counts AS c (issue_id, status, n)
                 VALUES ($1, 'pending', $2), ($1, 'failed', $3)
                     ON CONFLICT (issue_id, status) DO UPDATE SET n = c.n + EXCLUDED.n",
            )
            .bind(issue_id)
            .bind(n as i64)
            .bind(-(n as i64))
            .execute(&mut *tx)
            .await
            .context("counting the deliveries put back in line")?;
        }
        if n == 0 {
            // Nothing failed: leave the issue as it was (a sent issue stays sent).
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(Some(n))
    }

    /// The failed deliveries of an issue with their reasons, most recent first.
    pub async fn failed_deliveries(
        &self,
        issue_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<FailedDelivery>> {
        let rows = sqlx::query(
            "SELECT d.subscriber_id, s.email, d.attempts, d.last_error, d.updated_at
               FROM deliveries d LEFT JOIN subscribers s ON s.id = d.subscriber_id
              WHERE d.issue_id = $1 AND d.status = 'failed'
              ORDER BY d.updated_at DESC, d.id DESC LIMIT $2",
        )
        .bind(issue_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing failed deliveries")?;
        rows.iter()
            .map(|r| {
                Ok(FailedDelivery {
                    subscriber_id: r.try_get("subscriber_id")?,
                    email: r.try_get("email")?,
                    attempts: r.try_get("attempts")?,
                    error: r
                        .try_get::<Option<String>, _>("last_error")?
                        .unwrap_or_default(),
                    at: super::from_millis(r.try_get("updated_at")?),
                })
            })
            .collect()
    }

    /// Claims up to `limit` due deliveries of `issue_id` for `owner` until `lease` runs out.
    pub async fn claim_deliveries(
        &self,
        issue_id: i64,
        owner: &str,
        limit: i64,
        lease: Duration,
    ) -> anyhow::Result<Vec<Claimed>> {
        let now = to_millis(Utc::now());
        let until = now + lease.as_millis() as i64;
        // The rows a claim takes: due, not leased (or the lease ran out), oldest first.
        macro_rules! claim {
            ($lock:literal) => {
                concat!(
                    "UPDATE deliveries SET lease_owner = $1, lease_until = $2
                      WHERE id IN (SELECT id FROM deliveries
                                    WHERE issue_id = $3 AND status = 'pending' AND next_attempt_at <= $4
                                      AND (lease_until IS NULL OR lease_until < $4)
                                    ORDER BY id LIMIT $5 ",
                    $lock,
                    ")
                      RETURNING id, subscriber_id, attempts, variant"
                )
            };
        }
        let postgres = self.backend == Backend::Postgres;
        let sql = if postgres {
            // One round trip: claim and read the subscribers in the same statement.
            concat!(
                "WITH claimed AS (",
                claim!("FOR UPDATE SKIP LOCKED"),
                ") SELECT c.id, c.subscriber_id, c.attempts, c.variant, s.email, s.name, s.status
                     FROM claimed c LEFT JOIN subscribers s ON s.id = c.subscriber_id"
            )
        } else {
            // SQLite has no data-modifying CTEs: claim, then read the subscribers (a reader,
            // beside the writer).
            claim!("")
        };
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(until)
            .bind(issue_id)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.writer)
            .await
            .context("claiming deliveries")?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                let subscriber = |col| if postgres { r.try_get(col) } else { Ok(None) };
                Ok(Claimed {
                    id: r.try_get("id")?,
                    subscriber_id: r.try_get("subscriber_id")?,
                    attempts: r.try_get("attempts")?,
                    variant: r.try_get("variant")?,
                    email: subscriber("email")?,
                    name: subscriber("name")?,
                    subscriber_status: subscriber("status")?
                        .map(|s: String| s.parse::<SubscriberStatus>())
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("stored subscriber status: {e}"))?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        claimed.sort_by_key(|c| c.id);
        if postgres {
            return Ok(claimed);
        }
        let ids: Vec<i64> = claimed.iter().filter_map(|c| c.subscriber_id).collect();
        let mut found = self.get_subscribers(&ids).await?;
        for c in &mut claimed {
            if let Some(s) = c.subscriber_id.and_then(|id| found.remove(&id)) {
                c.email = Some(s.email);
                c.name = s.name;
                c.subscriber_status = Some(s.status);
            }
        }
        Ok(claimed)
    }

    /// Settles a batch of `owner`'s outcomes in one transaction (group commit). A message that
    /// went out is recorded whoever holds the row now (it was sent); a row put back, retried or
    /// failed changes only while `owner` still holds it, so a worker cut off for longer than a
    /// lease never clears the lease of the worker that took the row over.
    pub async fn record_outcomes(
        &self,
        owner: &str,
        outcomes: &[(i64, Option<i64>, Outcome)],
    ) -> anyhow::Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now = to_millis(Utc::now());
        let (mut sent, mut skipped, mut others) = (Vec::new(), Vec::new(), false);
        for (id, _, o) in outcomes {
            match o {
                Outcome::Sent => sent.push(*id),
                Outcome::Skipped => skipped.push(*id),
                _ => others = true,
            }
        }
        let one_statement = !others && (sent.is_empty() || skipped.is_empty());
        let settled = [
            (DeliveryStatus::Sent, sent),
            (DeliveryStatus::Skipped, skipped),
        ]
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty());
        if one_statement {
            // The usual batch (all sent): one statement in autocommit, not BEGIN, UPDATE, COMMIT
            // — a third of the round trips.
            for (status, ids) in settled {
                settle(&self.writer, self.backend, status, &ids, now).await?;
            }
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (status, ids) in settled {
            settle(&mut *tx, self.backend, status, &ids, now).await?;
        }
        // In id order, as the heartbeat renews: statements locking the same rows in the same
        // order cannot deadlock on PostgreSQL.
        let mut ordered: Vec<&(i64, Option<i64>, Outcome)> = outcomes.iter().collect();
        ordered.sort_unstable_by_key(|(id, _, _)| *id);
        for (id, subscriber_id, o) in ordered {
            match o {
                Outcome::Sent | Outcome::Skipped => {}
                Outcome::Retry { retry_at_ms, error } | Outcome::Release { retry_at_ms, error } => {
                    let counts = i64::from(matches!(o, Outcome::Retry { .. }));
                    sqlx::query(
                        "UPDATE deliveries SET attempts = attempts + $1, next_attempt_at = $2,
                                last_error = $3, updated_at = $4, lease_owner = NULL, lease_until = NULL
                          WHERE id = $5 AND status = 'pending' AND lease_owner = $6",
                    )
                    .bind(counts)
                    .bind(*retry_at_ms)
                    .bind(error.as_str())
                    .bind(now)
                    .bind(*id)
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?;
                }
                Outcome::Failed { error, bounced } => {
                    let sql = counted(
                        self.backend,
                        "UPDATE deliveries SET status = 'failed', attempts = attempts + 1,
                                last_error = $1, updated_at = $2, lease_owner = NULL, lease_until = NULL
                          WHERE id = $3 AND status = 'pending' AND lease_owner = $4",
                        DeliveryStatus::Failed,
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(error.as_str())
                        .bind(now)
                        .bind(*id)
                        .bind(owner)
                        .execute(&mut *tx)
                        .await?;
                    // The bounce is the server's answer about the address, whoever holds the
                    // row now.
                    if *bounced && let Some(sid) = subscriber_id {
                        sqlx::query(
                            "UPDATE subscribers SET status = 'bounced', bounced_at = $1, updated_at = $1
                              WHERE id = $2 AND status = 'confirmed'",
                        )
                        .bind(now)
                        .bind(*sid)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
        }
        tx.commit().await.context("committing delivery outcomes")?;
        Ok(())
    }

    /// Hands back rows `owner` leased and will not send (clean shutdown, a full window): only
    /// those it still holds.
    pub async fn release_leases(&self, owner: &str, ids: &[i64]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
              WHERE status = 'pending' AND lease_owner = $1 AND id IN ({})",
            placeholders(2, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(owner);
        for id in ids {
            q = q.bind(*id);
        }
        q.execute(&self.writer).await.context("releasing leases")?;
        Ok(())
    }

    /// Moves an issue `from` → `to` (the state machine's [`Automatic::Finish`]) once none of its
    /// rows is pending. Returns whether it did.
    ///
    /// [`Automatic::Finish`]: crate::issues::Automatic::Finish
    pub async fn finish_issue_if_done(
        &self,
        issue_id: i64,
        (from, to): (IssueStatus, IssueStatus),
    ) -> anyhow::Result<bool> {
        let now = to_millis(Utc::now());
        let done = sqlx::query(
            "UPDATE issues SET status = $3, finished_at = $1
              WHERE id = $2 AND status = $4
                AND NOT EXISTS (SELECT 1 FROM deliveries WHERE issue_id = $2 AND status = 'pending')",
        )
        .bind(now)
        .bind(issue_id)
        .bind(to.as_str())
        .bind(from.as_str())
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    /// The issues being sent, oldest first.
    pub async fn sending_issue_ids(&self) -> anyhow::Result<Vec<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM issues WHERE status = 'sending' ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The current status of an issue (cheap; checked before every claim).
    pub async fn issue_status(&self, issue_id: i64) -> anyhow::Result<Option<IssueStatus>> {
        let s: Option<String> = sqlx::query_scalar("SELECT status FROM issues WHERE id = $1")
            .bind(issue_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(s.as_deref().and_then(IssueStatus::parse))
    }

    /// Moves an issue from one of `from` to `to` with `reason`; a pause may carry the time it
    /// resumes by itself (`resume_at`, a full sending window), every other move clears it.
    /// Returns whether the issue moved (it was in one of `from`). Which moves are allowed is
    /// the application's rule ([`IssueStatus::allows`]).
    pub async fn transition_issue(
        &self,
        issue_id: i64,
        from: &[IssueStatus],
        to: IssueStatus,
        reason: Option<&str>,
        resume_at: Option<chrono::DateTime<Utc>>,
    ) -> anyhow::Result<bool> {
        let sql = format!(
            "UPDATE issues SET status = $1, status_reason = $2, resume_at = $3
              WHERE id = $4 AND status IN ({})",
            placeholders(5, from.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(reason)
            .bind(resume_at.map(to_millis))
            .bind(issue_id);
        for f in from {
            q = q.bind(f.as_str());
        }
        Ok(q.execute(&self.writer).await?.rows_affected() > 0)
    }

    /// Moves an issue paused by a full window `from` → `to` (the state machine's
    /// [`Automatic::EndWindowPause`]), only while it is still that pause and its time has come
    /// (not a pause an operator or the breaker made since).
    ///
    /// [`Automatic::EndWindowPause`]: crate::issues::Automatic::EndWindowPause
    pub async fn end_window_pause(
        &self,
        issue_id: i64,
        (from, to): (IssueStatus, IssueStatus),
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE issues SET status = $1, status_reason = NULL, resume_at = NULL
              WHERE id = $2 AND status = $4 AND resume_at IS NOT NULL AND resume_at <= $3",
        )
        .bind(to.as_str())
        .bind(issue_id)
        .bind(to_millis(Utc::now()))
        .bind(from.as_str())
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    /// Issues paused by a full sending window whose resume time has come.
    pub async fn due_window_resumes(&self) -> anyhow::Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM issues WHERE status = 'paused' AND resume_at IS NOT NULL AND resume_at <= $1
              ORDER BY id",
        )
        .bind(to_millis(Utc::now()))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Delivery counts of one issue: from `delivery_counts`, kept in the transactions that
    /// change the deliveries (exact, and as cheap at a million as at ten): SQLite's row triggers
    /// and PostgreSQL's insert and delete triggers (migration 0014), and the statements that
    /// settle, fail or retry rows on PostgreSQL ([`counted`], migration 0017).
    pub async fn delivery_counts(&self, issue_id: i64) -> anyhow::Result<DeliveryCounts> {
        let since = to_millis(Utc::now()) - 60_000;
        let rows = sqlx::query("SELECT status, n FROM delivery_counts WHERE issue_id = $1")
            .bind(issue_id)
            .fetch_all(&self.pool)
            .await?;
        let mut counts = DeliveryCounts::default();
        for row in &rows {
            let status: String = row.try_get("status")?;
            let n: i64 = row.try_get("n")?;
            counts.total += n;
            let status = DeliveryStatus::parse(&status).with_context(|| {
                format!("unknown delivery status {status:?} in delivery_counts")
            })?;
            match status {
                DeliveryStatus::Pending => counts.pending = n,
                DeliveryStatus::Sent => counts.sent = n,
                DeliveryStatus::Failed => counts.failed = n,
                DeliveryStatus::Skipped => counts.skipped = n,
            }
        }
        // Only sent rows carry `sent_at`; the partial index holds the last minute's together.
        // `+issue_id`: not by `deliveries_to_claim` (SQLite's planner would read the issue's
        // whole ledger, 900,000 rows, when its statistics predate the send).
        counts.sent_last_minute = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM deliveries WHERE sent_at >= $1 AND +issue_id = $2",
        )
        .bind(since)
        .bind(issue_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(counts)
    }
}

/// Settles `ids` as `sent` or `skipped` (only rows still pending). The id list is padded to a
/// power of two with its last id, so a handful of statement shapes serve every batch size and
/// stay prepared on the connection.
async fn settle<'c, E>(
    ex: E,
    backend: Backend,
    status: DeliveryStatus,
    ids: &[i64],
    now: i64,
) -> anyhow::Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let Some(&last) = ids.last() else {
        return Ok(());
    };
    let width = ids.len().next_power_of_two();
    let sql = counted(
        backend,
        &format!(
            "UPDATE deliveries SET status = $1, attempts = attempts + $2, sent_at = $3,
                    updated_at = $4, lease_owner = NULL, lease_until = NULL
              WHERE status = 'pending' AND id IN ({})",
            placeholders(5, width)
        ),
        status,
    );
    let sent = status == DeliveryStatus::Sent;
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(status.as_str())
        .bind(i64::from(sent))
        .bind(sent.then_some(now))
        .bind(now);
    for id in ids
        .iter()
        .chain(std::iter::repeat_n(&last, width - ids.len()))
    {
        q = q.bind(*id);
    }
    q.execute(ex).await.context("recording deliveries")?;
    Ok(())
}

/// `update`, an `UPDATE deliveries …` that moves pending rows to `to`, counting what it moved
/// in `delivery_counts` in the same statement.
///
/// On PostgreSQL the count is a data-modifying CTE around the update (one statement, so the
/// rows and their count commit together, also in autocommit), once per statement and
/// (issue, status), the counters locked in one order. On SQLite the row trigger of migration
/// 0014 counts a status change (~1.6 µs a row on the single writer, measured in
/// docs/benchmarks.md); counting here would cost every batch a transaction of its own (SQLite
/// has no data-modifying CTE), two more round trips to the writer.
///
/// Every statement that moves counts locks an issue's `pending` counter first, then the other
/// one: two transactions settling the same issue (a worker's sent batch, another's failure)
/// then wait for each other instead of deadlocking — 'failed' sorts before 'pending', so
/// sorting by name alone did not (tests/metrics, four workers, PostgreSQL).
fn counted(backend: Backend, update: &str, to: DeliveryStatus) -> String {
    match backend {
        Backend::Sqlite => update.to_string(),
        Backend::Postgres => format!(
            "WITH moved AS ({update} RETURNING issue_id)
             INSERT INTO delivery_counts AS c (issue_id, status, n)
             SELECT m.issue_id, t.status, t.sign * COUNT(*)
               FROM moved m CROSS JOIN (VALUES ('pending', -1), ('{to}', 1)) AS t (status, sign)
              GROUP BY m.issue_id, t.status, t.sign
              ORDER BY m.issue_id, t.status <> 'pending', t.status
                 ON CONFLICT (issue_id, status) DO UPDATE SET n = c.n + EXCLUDED.n",
            to = to.as_str()
        ),
    }
}
