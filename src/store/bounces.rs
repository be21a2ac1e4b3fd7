//! Bounce and complaint events, and the subscriber changes they cause. The decisions are
//! [`crate::bounces::policy`]'s; these are the statements, run inside its transaction.

use anyhow::Context;
use sqlx::{Any, Row, Transaction};

use super::Store;
use crate::bounces::kinds::{BounceKind, MatchedBy, Source};

/// An event as it is stored.
#[derive(Debug, Clone)]
pub struct NewBounceEvent<'a> {
    pub dedup_key: &'a str,
    pub kind: BounceKind,
    pub source: Source,
    pub subscriber_id: Option<i64>,
    pub issue_id: Option<i64>,
    pub matched_by: Option<MatchedBy>,
    pub status_code: Option<&'a str>,
    pub reason: &'a str,
    pub received_at: i64,
}

/// Bounces and complaints of one issue, for `issue status`, `/metrics` and the circuit breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IssueBounceCounts {
    pub hard: i64,
    pub soft: i64,
    pub complaints: i64,
}

/// Stores an event unless its dedup key is known; `false` for a repeat.
pub async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    e: &NewBounceEvent<'_>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO bounce_events
            (dedup_key, kind, source, subscriber_id, issue_id, matched_by, status_code, reason,
             received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(e.dedup_key)
    .bind(e.kind.as_str())
    .bind(e.source.as_str())
    .bind(e.subscriber_id)
    .bind(e.issue_id)
    .bind(e.matched_by.map(MatchedBy::as_str))
    .bind(e.status_code)
    .bind(e.reason)
    .bind(e.received_at)
    .execute(&mut **tx)
    .await
    .context("storing a bounce event")?
    .rows_affected();
    Ok(inserted > 0)
}

/// Soft bounces of a subscriber received at or after `since`.
pub async fn soft_bounces_since(
    tx: &mut Transaction<'static, Any>,
    subscriber_id: i64,
    since: i64,
) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM bounce_events
          WHERE subscriber_id = $1 AND kind = 'soft' AND received_at >= $2",
    )
    .bind(subscriber_id)
    .bind(since)
    .fetch_one(&mut **tx)
    .await?)
}

/// Marks a pending or confirmed subscriber `bounced`; `false` if they were not.
pub async fn mark_bounced(
    tx: &mut Transaction<'static, Any>,
    subscriber_id: i64,
    now: i64,
) -> anyhow::Result<bool> {
    Ok(sqlx::query(
        "UPDATE subscribers SET status = 'bounced', bounced_at = $1, updated_at = $1
          WHERE id = $2 AND status IN ('pending', 'confirmed')",
    )
    .bind(now)
    .bind(subscriber_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0)
}

/// A complaint: the subscriber is unsubscribed (unless already), their address suppressed, open
/// confirmation links killed, and the consent event `complaint` recorded. Returns the address,
/// or `None` for an unknown subscriber.
pub async fn record_complaint(
    tx: &mut Transaction<'static, Any>,
    subscriber_id: i64,
    suppression_hash: impl FnOnce(&str) -> String,
    source: Source,
    now: i64,
) -> anyhow::Result<Option<String>> {
    let email: Option<String> = sqlx::query_scalar("SELECT email FROM subscribers WHERE id = $1")
        .bind(subscriber_id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(email) = email else {
        return Ok(None);
    };
    sqlx::query(
        "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = $1, updated_at = $1
          WHERE id = $2 AND status <> 'unsubscribed'",
    )
    .bind(now)
    .bind(subscriber_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE confirmation_tokens SET used_at = $1 WHERE subscriber_id = $2 AND used_at IS NULL",
    )
    .bind(now)
    .bind(subscriber_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, 'complaint', $2)
         ON CONFLICT (email_hash) DO NOTHING",
    )
    .bind(suppression_hash(&email))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO consents (subscriber_id, event, at, source) VALUES ($1, 'complaint', $2, $3)",
    )
    .bind(subscriber_id)
    .bind(now)
    .bind(format!("bounces:{}", source.as_str()))
    .execute(&mut **tx)
    .await
    .context("recording the complaint as a consent event")?;
    super::count_new_consents(&mut **tx, "complaint", 1).await?;
    Ok(Some(email))
}

impl Store {
    /// Records a single-use value of a signed webhook call; `false` if it was seen before (a
    /// replay). Values are forgotten `keep_ms` after they were seen: the caller keeps them for
    /// longer than the timestamp check accepts a call (a call signed at T is accepted until
    /// T + max_age, and seen at T - max_age at the earliest).
    pub async fn claim_webhook_nonce(
        &self,
        provider: &str,
        nonce: &str,
        now: i64,
        keep_ms: i64,
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM webhook_nonces WHERE seen_at < $1")
            .bind(now - keep_ms)
            .execute(&mut *tx)
            .await?;
        let fresh = sqlx::query(
            "INSERT INTO webhook_nonces (provider, nonce, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT (provider, nonce) DO NOTHING",
        )
        .bind(provider)
        .bind(nonce)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(fresh)
    }

    /// Whether issue `issue_id` went out to subscriber `subscriber_id` (a sent delivery).
    pub async fn was_sent(&self, issue_id: i64, subscriber_id: i64) -> anyhow::Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM deliveries
              WHERE issue_id = $1 AND subscriber_id = $2 AND status = 'sent'",
        )
        .bind(issue_id)
        .bind(subscriber_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Bounces and complaints attributed to one issue.
    pub async fn issue_bounce_counts(&self, issue_id: i64) -> anyhow::Result<IssueBounceCounts> {
        let rows = sqlx::query(
            "SELECT kind, CAST(COUNT(*) AS BIGINT) AS n FROM bounce_events
              WHERE issue_id = $1 GROUP BY kind",
        )
        .bind(issue_id)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = IssueBounceCounts::default();
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let n: i64 = row.try_get("n")?;
            match kind.parse::<BounceKind>().map_err(anyhow::Error::msg)? {
                BounceKind::Hard => counts.hard = n,
                BounceKind::Soft => counts.soft = n,
                BounceKind::Complaint => counts.complaints = n,
                BounceKind::Ignored => {}
            }
        }
        Ok(counts)
    }

    /// Per sent (or sending) issue: messages sent, hard bounces, soft bounces and complaints.
    /// For `/metrics`.
    pub async fn issue_bounce_stats(&self) -> anyhow::Result<Vec<IssueBounceStats>> {
        let rows = sqlx::query(
            "SELECT i.number,
               COALESCE((SELECT c.n FROM delivery_counts c
                 WHERE c.issue_id = i.id AND c.status = 'sent'), 0) AS sent,
               (SELECT CAST(COUNT(*) AS BIGINT) FROM bounce_events b
                 WHERE b.issue_id = i.id AND b.kind = 'hard') AS hard,
               (SELECT CAST(COUNT(*) AS BIGINT) FROM bounce_events b
                 WHERE b.issue_id = i.id AND b.kind = 'soft') AS soft,
               (SELECT CAST(COUNT(*) AS BIGINT) FROM bounce_events b
                 WHERE b.issue_id = i.id AND b.kind = 'complaint') AS complaints
             FROM issues i
            WHERE i.number IS NOT NULL AND i.status IN ('sending', 'paused', 'sent')
            ORDER BY i.number",
        )
        .fetch_all(&self.pool)
        .await
        .context("reading bounce figures per issue")?;
        rows.iter()
            .map(|r| {
                Ok(IssueBounceStats {
                    number: r.try_get("number")?,
                    sent: r.try_get("sent")?,
                    counts: IssueBounceCounts {
                        hard: r.try_get("hard")?,
                        soft: r.try_get("soft")?,
                        complaints: r.try_get("complaints")?,
                    },
                })
            })
            .collect()
    }
}

/// One issue's figures for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct IssueBounceStats {
    pub number: i64,
    pub sent: i64,
    pub counts: IssueBounceCounts,
}
