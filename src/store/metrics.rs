//! Totals for `/metrics`, read from the database so every process reports the same figures:
//! from the counters the database keeps as rows change (migration 0014), not by counting the
//! tables, so a scrape costs the same at a million subscribers as at ten.

use sqlx::Row;

use super::Store;

/// What `/metrics` exposes.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Consent events by kind: signup, confirm, unsubscribe, import.
    pub consent_events: Vec<(String, i64)>,
    /// Subscribers by status.
    pub subscribers: Vec<(String, i64)>,
    /// Deliveries (all issues) by status: pending, sent, failed, skipped.
    pub deliveries: Vec<(String, i64)>,
    /// Messages sent in the last minute, all issues.
    pub sent_last_minute: i64,
}

impl Store {
    pub async fn metric_totals(&self) -> anyhow::Result<Totals> {
        let pairs = |rows: Vec<sqlx::any::AnyRow>| -> anyhow::Result<Vec<(String, i64)>> {
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
                .collect()
        };
        let consent_events = pairs(
            sqlx::query("SELECT event, n FROM consent_counts WHERE n <> 0 ORDER BY event")
                .fetch_all(&self.pool)
                .await?,
        )?;
        let subscribers = pairs(
            sqlx::query("SELECT status, n FROM subscriber_counts WHERE n <> 0 ORDER BY status")
                .fetch_all(&self.pool)
                .await?,
        )?;
        let deliveries = pairs(
            sqlx::query(
                "SELECT status, CAST(SUM(n) AS BIGINT) FROM delivery_counts
                  GROUP BY status HAVING SUM(n) <> 0 ORDER BY status",
            )
            .fetch_all(&self.pool)
            .await?,
        )?;
        let since = super::to_millis(chrono::Utc::now()) - 60_000;
        let sent_last_minute: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM deliveries WHERE sent_at >= $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(Totals {
            consent_events,
            subscribers,
            deliveries,
            sent_last_minute,
        })
    }
}
