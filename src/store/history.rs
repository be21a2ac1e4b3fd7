//! One reader's history for the console (`/admin/subscribers/{id}`): consent events (signup,
//! confirm, unsubscribe, import), the issues sent to them, and bounces and complaints — each
//! read by the subscriber's own index, so a page costs the same at a million readers.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::overview::{Keyset, Window};
use super::subscribers::SubscriberRow;
use super::{Store, from_millis};
use crate::bounces::kinds::{BounceKind, MatchedBy, Source};
use crate::delivery::status::DeliveryStatus;

/// A consent event of one reader, as recorded.
#[derive(Debug, Clone)]
pub struct ConsentEvent {
    pub event: String,
    pub at: DateTime<Utc>,
    pub source: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub consent_text_version: Option<String>,
}

/// One issue's delivery to one reader.
#[derive(Debug, Clone)]
pub struct ReaderDelivery {
    pub issue_id: i64,
    pub week: String,
    pub number: Option<i64>,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// A bounce or complaint report attributed to a reader (or, on the bounces page, to anyone).
#[derive(Debug, Clone)]
pub struct BounceEvent {
    pub id: i64,
    pub kind: BounceKind,
    /// Where the report came from: a file import, the mailbox, a provider's webhook.
    pub source: Source,
    pub subscriber_id: Option<i64>,
    pub email: Option<String>,
    pub issue_id: Option<i64>,
    pub week: Option<String>,
    pub number: Option<i64>,
    /// How the report was tied to the reader; `None` when it could not be.
    pub matched_by: Option<MatchedBy>,
    pub status_code: Option<String>,
    pub reason: String,
    pub received_at: DateTime<Utc>,
}

/// Everything stored about one reader, oldest first within each part.
#[derive(Debug, Clone)]
pub struct ReaderHistory {
    pub subscriber: SubscriberRow,
    pub consents: Vec<ConsentEvent>,
    pub deliveries: Vec<ReaderDelivery>,
    pub bounces: Vec<BounceEvent>,
}

pub(super) const BOUNCE_COLUMNS: &str = "b.id, b.kind, b.source, b.subscriber_id, s.email,
       b.issue_id, i.week, i.number, b.matched_by, b.status_code, b.reason, b.received_at";
pub(super) const BOUNCE_FROM: &str = "FROM bounce_events b
       LEFT JOIN subscribers s ON s.id = b.subscriber_id
       LEFT JOIN issues i ON i.id = b.issue_id";

pub(super) fn bounce_from_row(r: &sqlx::any::AnyRow) -> anyhow::Result<BounceEvent> {
    let kind: String = r.try_get("kind")?;
    let source: String = r.try_get("source")?;
    let matched_by: Option<String> = r.try_get("matched_by")?;
    Ok(BounceEvent {
        id: r.try_get("id")?,
        kind: kind.parse().map_err(anyhow::Error::msg)?,
        source: source.parse().map_err(anyhow::Error::msg)?,
        subscriber_id: r.try_get("subscriber_id")?,
        email: r.try_get("email")?,
        issue_id: r.try_get("issue_id")?,
        week: r.try_get("week")?,
        number: r.try_get("number")?,
        matched_by: matched_by
            .map(|m| m.parse())
            .transpose()
            .map_err(anyhow::Error::msg)?,
        status_code: r.try_get("status_code")?,
        reason: r.try_get("reason")?,
        received_at: from_millis(r.try_get("received_at")?),
    })
}

impl Store {
    /// One reader's history; `None` when there is no subscriber `id`.
    pub async fn reader_history(&self, id: i64) -> anyhow::Result<Option<ReaderHistory>> {
        let Some(subscriber) = self.get_subscriber(id).await? else {
            return Ok(None);
        };
        let consents = sqlx::query(
            "SELECT event, at, source, ip, user_agent, consent_text_version FROM consents
              WHERE subscriber_id = $1 ORDER BY at, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .context("reading a reader's consent events")?
        .iter()
        .map(|r| {
            Ok(ConsentEvent {
                event: r.try_get("event")?,
                at: from_millis(r.try_get("at")?),
                source: r.try_get("source")?,
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
                consent_text_version: r.try_get("consent_text_version")?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        let deliveries = sqlx::query(
            "SELECT d.issue_id, i.week, i.number, d.status, d.attempts, d.sent_at, d.updated_at,
                    d.last_error
               FROM deliveries d JOIN issues i ON i.id = d.issue_id
              WHERE d.subscriber_id = $1 ORDER BY d.issue_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .context("reading a reader's deliveries")?
        .iter()
        .map(|r| {
            let status: String = r.try_get("status")?;
            Ok(ReaderDelivery {
                issue_id: r.try_get("issue_id")?,
                week: r.try_get("week")?,
                number: r.try_get("number")?,
                status: DeliveryStatus::parse(&status)
                    .with_context(|| format!("unknown delivery status {status:?}"))?,
                attempts: r.try_get("attempts")?,
                sent_at: r.try_get::<Option<i64>, _>("sent_at")?.map(from_millis),
                updated_at: from_millis(r.try_get("updated_at")?),
                last_error: r.try_get("last_error")?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        let sql = format!(
            "SELECT {BOUNCE_COLUMNS} {BOUNCE_FROM} WHERE b.subscriber_id = $1
              ORDER BY b.received_at, b.id"
        );
        let bounces = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .context("reading a reader's bounces")?
            .iter()
            .map(bounce_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(ReaderHistory {
            subscriber,
            consents,
            deliveries,
            bounces,
        }))
    }

    /// A page of the bounce and complaint reports of everyone, newest first (by id: the order
    /// they were stored in), at most `limit`.
    pub async fn bounce_events(
        &self,
        at: Keyset<i64>,
        limit: i64,
    ) -> anyhow::Result<Window<BounceEvent>> {
        let page = |newer: bool, key: i64| async move {
            let sql = if newer {
                format!(
                    "SELECT {BOUNCE_COLUMNS} {BOUNCE_FROM} WHERE b.id > $1 ORDER BY b.id LIMIT $2"
                )
            } else {
                format!(
                    "SELECT {BOUNCE_COLUMNS} {BOUNCE_FROM} WHERE b.id < $1 ORDER BY b.id DESC LIMIT $2"
                )
            };
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(key)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .context("listing bounce reports")?
                .iter()
                .map(bounce_from_row)
                .collect::<anyhow::Result<Vec<_>>>()?;
            if newer {
                rows.reverse();
            }
            anyhow::Ok(rows)
        };
        let rows = match at {
            Keyset::Newest => page(false, i64::MAX).await?,
            Keyset::After(id) => page(false, id).await?,
            Keyset::Before(id) => {
                let rows = page(true, id).await?;
                if (rows.len() as i64) < limit {
                    page(false, i64::MAX).await?
                } else {
                    rows
                }
            }
        };
        let count = |above: i64| async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM bounce_events WHERE id > $1",
            )
            .bind(above)
            .fetch_one(&self.pool)
            .await
            .context("counting bounce reports")
        };
        let total = count(0).await?;
        let newer = match rows.first() {
            Some(first) => count(first.id).await?,
            None => 0,
        };
        Ok(Window { rows, total, newer })
    }
}
