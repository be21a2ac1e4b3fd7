//! Pending hygiene: the one reminder of a reader who has not confirmed, and the deletion of one
//! who never does. The cut-offs are the caller's (`app::subscribers::hygiene`); this stores.
//!
//! Safe with several workers at once: the reminder's mark (`reminded_at`) is set by one
//! `UPDATE … WHERE reminded_at IS NULL` whose `RETURNING` rows are the readers this call
//! reminds. On PostgreSQL a second worker's `UPDATE` waits for the first's row locks and then
//! re-checks `reminded_at IS NULL` on the new row versions, so it skips them; SQLite runs one
//! writer at a time (`BEGIN IMMEDIATE`). The mail is queued in the same transaction.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::ms;
use crate::mail::MailKind;
use crate::store::{Store, to_millis};

impl Store {
    /// Marks up to `limit` pending readers whose last confirmation mail went out at or before
    /// `due` and who had no reminder since, and queues each a confirmation mail with a fresh
    /// token from `new_token` (raw, hash), valid for `token_ttl`. Returns the readers reminded.
    pub async fn queue_pending_reminders(
        &self,
        now: DateTime<Utc>,
        due: DateTime<Utc>,
        token_ttl: Duration,
        limit: i64,
        new_token: impl Fn() -> (String, String),
    ) -> anyhow::Result<Vec<i64>> {
        let now = to_millis(now);
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "UPDATE subscribers SET reminded_at = $1
             WHERE reminded_at IS NULL AND status = 'pending' AND id IN (
                 SELECT id FROM subscribers
                 WHERE status = 'pending' AND reminded_at IS NULL
                   AND COALESCE(last_confirmation_sent_at, created_at) <= $2
                 ORDER BY id LIMIT $3)
             RETURNING id, email",
        )
        .bind(now)
        .bind(to_millis(due))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .context("marking pending readers reminded")?;
        let mut reminded = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let email: String = row.try_get("email")?;
            let (token, hash) = new_token();
            sqlx::query(
                "INSERT INTO confirmation_tokens (token_hash, subscriber_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(hash)
            .bind(id)
            .bind(now)
            .bind(now + ms(token_ttl))
            .execute(&mut *tx)
            .await
            .context("storing a reminder's token")?;
            Store::enqueue_mail(&mut tx, &MailKind::Reminder { token }, id, &email, now).await?;
            reminded.push(id);
        }
        reminded.sort_unstable();
        tx.commit().await.context("committing reminders")?;
        Ok(reminded)
    }

    /// Deletes readers still pending whose last signup (their last confirmation mail) was at
    /// or before `before`, with their consent records, tokens and queued mail. Returns how many.
    pub async fn delete_stale_pending(&self, before: DateTime<Utc>) -> anyhow::Result<u64> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(
            "DELETE FROM subscribers
             WHERE status = 'pending' AND COALESCE(last_confirmation_sent_at, created_at) <= $1",
        )
        .bind(to_millis(before))
        .execute(&mut *tx)
        .await
        .context("deleting stale pending readers")?
        .rows_affected();
        tx.commit().await.context("committing the purge")?;
        Ok(deleted)
    }
}
