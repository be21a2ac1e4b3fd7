//! The outbound transactional mail queue (confirmation and welcome mails).
//!
//! Rows are claimed with a lease in one statement (`UPDATE … WHERE id IN (SELECT … LIMIT n)
//! RETURNING`; `FOR UPDATE SKIP LOCKED` on PostgreSQL), so several processes can drain the queue
//! without sending a mail twice; a crashed sender's lease runs out and the row is taken again.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use sqlx::{Any, Row, Transaction};

use super::{Backend, Store, placeholders, to_millis};
use crate::mail::MailKind;

/// One claimed mail; the sender composes it from these.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    pub id: i64,
    /// What to send (a confirm mail carries its raw token).
    pub kind: MailKind,
    pub subscriber_id: Option<i64>,
    pub to_email: String,
    pub attempts: i64,
}

impl Store {
    pub(super) async fn enqueue_mail(
        tx: &mut Transaction<'static, Any>,
        kind: &MailKind,
        subscriber_id: i64,
        to_email: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO outbound_mail (kind, subscriber_id, to_email, token, status, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
        )
        .bind(kind.as_str())
        .bind(subscriber_id)
        .bind(to_email)
        .bind(kind.token())
        .bind(now)
        .execute(&mut **tx)
        .await
        .context("queueing mail")?;
        Ok(())
    }

    /// Claims up to `limit` due mails for `lease`.
    pub async fn claim_outbound(
        &self,
        limit: i64,
        lease: Duration,
    ) -> anyhow::Result<Vec<QueuedMail>> {
        let now = to_millis(Utc::now());
        let lease_until = now + lease.as_millis() as i64;
        let sql = match self.backend {
            Backend::Postgres => {
                "UPDATE outbound_mail SET lease_until = $1
                  WHERE id IN (SELECT id FROM outbound_mail
                                WHERE status = 'pending' AND next_attempt_at <= $2
                                  AND (lease_until IS NULL OR lease_until < $2)
                                ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                  RETURNING id, kind, subscriber_id, to_email, token, attempts"
            }
            Backend::Sqlite => {
                "UPDATE outbound_mail SET lease_until = $1
                  WHERE id IN (SELECT id FROM outbound_mail
                                WHERE status = 'pending' AND next_attempt_at <= $2
                                  AND (lease_until IS NULL OR lease_until < $2)
                                ORDER BY id LIMIT $3)
                  RETURNING id, kind, subscriber_id, to_email, token, attempts"
            }
        };
        let rows = sqlx::query(sql)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.writer)
            .await
            .context("claiming queued mail")?;
        rows.iter()
            .map(|r| {
                Ok(QueuedMail {
                    id: r.try_get("id")?,
                    kind: MailKind::from_row(
                        &r.try_get::<String, _>("kind")?,
                        r.try_get("token")?,
                    )?,
                    subscriber_id: r.try_get("subscriber_id")?,
                    to_email: r.try_get("to_email")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Marks mails sent, in one statement (group commit), and drops their tokens (a
    /// confirmation link is a secret).
    pub async fn outbound_sent(&self, ids: &[i64]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE outbound_mail SET status = 'sent', sent_at = $1, token = NULL,
                    lease_until = NULL, attempts = attempts + 1 WHERE id IN ({})",
            placeholders(2, ids.len())
        );
        // Only numbered placeholders are interpolated; the values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to_millis(Utc::now()));
        for id in ids {
            q = q.bind(*id);
        }
        q.execute(&self.writer)
            .await
            .context("recording sent mail")?;
        Ok(())
    }

    /// Puts claimed mail back in line as it was, without counting an attempt (the transport
    /// failed, not the mail): due again at once, the sender decides how long to hold off.
    pub async fn outbound_put_back(&self, ids: &[i64], error: &str) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE outbound_mail SET lease_until = NULL, last_error = $1
              WHERE status = 'pending' AND id IN ({})",
            placeholders(2, ids.len())
        );
        // Only numbered placeholders are interpolated; the values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(error);
        for id in ids {
            q = q.bind(*id);
        }
        q.execute(&self.writer)
            .await
            .context("putting queued mail back")?;
        Ok(())
    }

    /// Records a failed attempt: retry at `retry_at`, or give up (`None`).
    pub async fn outbound_failed(
        &self,
        id: i64,
        error: &str,
        retry_in: Option<Duration>,
    ) -> anyhow::Result<()> {
        let now = to_millis(Utc::now());
        match retry_in {
            Some(delay) => {
                sqlx::query(
                    "UPDATE outbound_mail SET attempts = attempts + 1, last_error = $1,
                            next_attempt_at = $2, lease_until = NULL WHERE id = $3",
                )
                .bind(error)
                .bind(now + delay.as_millis() as i64)
                .bind(id)
                .execute(&self.writer)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE outbound_mail SET attempts = attempts + 1, last_error = $1,
                            status = 'failed', token = NULL, lease_until = NULL WHERE id = $2",
                )
                .bind(error)
                .bind(id)
                .execute(&self.writer)
                .await?;
            }
        }
        Ok(())
    }

    /// Counts of queued mail by status, for status pages and tests.
    pub async fn outbound_counts(&self) -> anyhow::Result<(i64, i64, i64)> {
        let row = sqlx::query(
            "SELECT
                CAST(COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT) AS pending,
                CAST(COALESCE(SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END), 0) AS BIGINT) AS sent,
                CAST(COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed
               FROM outbound_mail",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((
            row.try_get("pending")?,
            row.try_get("sent")?,
            row.try_get("failed")?,
        ))
    }
}
