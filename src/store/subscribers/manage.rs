//! What a reader's manage page reads and writes: the pause, and their data for the export.

use chrono::{DateTime, Utc};
use sqlx::Row;

use std::collections::HashMap;

use crate::store::{Store, from_millis, placeholders, to_millis};

/// One consent record, for the reader's export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvent {
    pub event: String,
    pub at: DateTime<Utc>,
    pub source: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// One bounce or complaint, for the reader's export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceEvent {
    pub kind: String,
    pub at: DateTime<Utc>,
    pub status_code: Option<String>,
    pub reason: String,
}

/// What the console shows of a reader besides the row: the pause, and when a pending reader
/// signed up last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderState {
    pub paused_until: Option<DateTime<Utc>>,
    pub last_signup_at: Option<DateTime<Utc>>,
}

impl Store {
    /// [`ReaderState`] of the readers `ids` (a console page of them).
    pub async fn reader_states(&self, ids: &[i64]) -> anyhow::Result<HashMap<i64, ReaderState>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT id, paused_until, COALESCE(last_confirmation_sent_at, created_at) AS last_signup_at
             FROM subscribers WHERE id IN ({})",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("id")?,
                    ReaderState {
                        paused_until: r
                            .try_get::<Option<i64>, _>("paused_until")?
                            .map(from_millis),
                        last_signup_at: r
                            .try_get::<Option<i64>, _>("last_signup_at")?
                            .map(from_millis),
                    },
                ))
            })
            .collect()
    }

    /// Until when the reader is paused, if they are.
    pub async fn paused_until(&self, subscriber_id: i64) -> anyhow::Result<Option<DateTime<Utc>>> {
        let at: Option<Option<i64>> =
            sqlx::query_scalar("SELECT paused_until FROM subscribers WHERE id = $1")
                .bind(subscriber_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(at.flatten().map(from_millis))
    }

    /// Pauses a confirmed reader until `until` (`None`: resumes). Returns whether a confirmed
    /// reader was changed.
    pub async fn set_paused_until(
        &self,
        subscriber_id: i64,
        until: Option<DateTime<Utc>>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE subscribers SET paused_until = $1, updated_at = $2
             WHERE id = $3 AND status = 'confirmed'",
        )
        .bind(until.map(to_millis))
        .bind(to_millis(Utc::now()))
        .bind(subscriber_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(changed > 0)
    }

    /// A reader's consent records and bounces, oldest first.
    pub async fn subscriber_history(
        &self,
        subscriber_id: i64,
    ) -> anyhow::Result<(Vec<ConsentEvent>, Vec<BounceEvent>)> {
        let consents = sqlx::query(
            "SELECT event, at, source, ip, user_agent FROM consents
             WHERE subscriber_id = $1 ORDER BY at, id",
        )
        .bind(subscriber_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(ConsentEvent {
                event: r.try_get("event")?,
                at: from_millis(r.try_get("at")?),
                source: r.try_get("source")?,
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        let bounces = sqlx::query(
            "SELECT kind, received_at, status_code, reason FROM bounce_events
             WHERE subscriber_id = $1 ORDER BY received_at, id",
        )
        .bind(subscriber_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(BounceEvent {
                kind: r.try_get("kind")?,
                at: from_millis(r.try_get("received_at")?),
                status_code: r.try_get("status_code")?,
                reason: r.try_get("reason")?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((consents, bounces))
    }
}
