//! What the operator console's overview pages read: subscribers found by address, counts by
//! status, bounced subscribers and recent failed deliveries across issues.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, from_millis};
use crate::subscribers::SubscriberStatus;

/// A failed delivery of any issue, for the bounces page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentFailure {
    pub issue_id: i64,
    pub week: String,
    pub number: Option<i64>,
    /// `None` once the subscriber was erased.
    pub email: Option<String>,
    pub attempts: i64,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// `text` as a LIKE pattern that matches it anywhere, with `\` escaping LIKE's wildcards.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Store {
    /// Subscribers whose address contains `query` (any case), optionally of one status, newest
    /// first, at most `limit`.
    pub async fn search_subscribers(
        &self,
        query: &str,
        status: Option<SubscriberStatus>,
        limit: i64,
    ) -> anyhow::Result<Vec<super::subscribers::SubscriberRow>> {
        let rows = sqlx::query(
            "SELECT id FROM subscribers
              WHERE ($1 = '' OR status = $1) AND LOWER(email) LIKE LOWER($2) ESCAPE '\\'
              ORDER BY id DESC LIMIT $3",
        )
        .bind(status.map_or("", SubscriberStatus::as_str))
        .bind(contains_pattern(query.trim()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("searching subscribers")?;
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut found = self.get_subscribers(&ids).await?;
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// How many subscribers have each status (every status, zeros included).
    pub async fn subscriber_counts(&self) -> anyhow::Result<Vec<(SubscriberStatus, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM subscribers GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .context("counting subscribers by status")?;
        let mut counts: Vec<(SubscriberStatus, i64)> = [
            SubscriberStatus::Pending,
            SubscriberStatus::Confirmed,
            SubscriberStatus::Unsubscribed,
            SubscriberStatus::Bounced,
        ]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
        for r in &rows {
            let status: String = r.try_get("status")?;
            let status: SubscriberStatus = status.parse().map_err(anyhow::Error::msg)?;
            let n: i64 = r.try_get("n")?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
                slot.1 = n;
            }
        }
        Ok(counts)
    }

    /// The most recent failed deliveries of every issue, newest first.
    pub async fn recent_failures(&self, limit: i64) -> anyhow::Result<Vec<RecentFailure>> {
        let rows = sqlx::query(
            "SELECT d.issue_id, i.week, i.number, s.email, d.attempts, d.last_error, d.updated_at
               FROM deliveries d
               JOIN issues i ON i.id = d.issue_id
               LEFT JOIN subscribers s ON s.id = d.subscriber_id
              WHERE d.status = 'failed'
              ORDER BY d.updated_at DESC, d.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing recent failed deliveries")?;
        rows.iter()
            .map(|r| {
                Ok(RecentFailure {
                    issue_id: r.try_get("issue_id")?,
                    week: r.try_get("week")?,
                    number: r.try_get("number")?,
                    email: r.try_get("email")?,
                    attempts: r.try_get("attempts")?,
                    error: r
                        .try_get::<Option<String>, _>("last_error")?
                        .unwrap_or_default(),
                    at: from_millis(r.try_get("updated_at")?),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(super::contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
