//! The outbound transactional mail queue (confirmation and welcome mails).
//!
//! Rows are claimed with a lease in one statement (`UPDATE … WHERE id IN (SELECT … LIMIT n)
//! RETURNING`; `FOR UPDATE SKIP LOCKED` on PostgreSQL), so several processes can drain the queue
//! without sending a mail twice; a crashed sender's lease runs out and the row is taken again.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use sqlx::{Any, Row, Transaction};

use super::{Backend, Store, to_millis};

/// One claimed mail.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    pub id: i64,
    pub kind: String,
    pub to_email: String,
    /// The complete RFC 5322 message.
    pub message: String,
    pub attempts: i64,
}

impl Store {
    pub(super) async fn enqueue_mail(
        tx: &mut Transaction<'static, Any>,
        kind: &str,
        subscriber_id: i64,
        to_email: &str,
        message: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO outbound_mail (kind, subscriber_id, to_email, message, status, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
        )
        .bind(kind)
        .bind(subscriber_id)
        .bind(to_email)
        .bind(message)
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
                  RETURNING id, kind, to_email, message, attempts"
            }
            Backend::Sqlite => {
                "UPDATE outbound_mail SET lease_until = $1
                  WHERE id IN (SELECT id FROM outbound_mail
                                WHERE status = 'pending' AND next_attempt_at <= $2
                                  AND (lease_until IS NULL OR lease_until < $2)
                                ORDER BY id LIMIT $3)
                  RETURNING id, kind, to_email, message, attempts"
            }
        };
        let rows = sqlx::query(sql)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .context("claiming queued mail")?;
        rows.iter()
            .map(|r| {
                Ok(QueuedMail {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    to_email: r.try_get("to_email")?,
                    message: r
                        .try_get::<Option<String>, _>("message")?
                        .unwrap_or_default(),
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Marks a mail sent and drops its body (the confirmation link in it is a secret).
    pub async fn outbound_sent(&self, id: i64) -> anyhow::Result<()> {
        let now = to_millis(Utc::now());
        sqlx::query(
            "UPDATE outbound_mail SET status = 'sent', sent_at = $1, message = NULL,
                    lease_until = NULL, attempts = attempts + 1 WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
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
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE outbound_mail SET attempts = attempts + 1, last_error = $1,
                            status = 'failed', message = NULL, lease_until = NULL WHERE id = $2",
                )
                .bind(error)
                .bind(id)
                .execute(&self.pool)
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
