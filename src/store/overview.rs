//! What the operator console's overview pages read: subscribers found by address, counts by
//! status, bounced subscribers and recent failed deliveries across issues — a page at a time
//! ([`Keyset`], [`Window`]).

use std::fmt;
use std::str::FromStr;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, from_millis, to_millis};
use crate::subscribers::SubscriberStatus;

/// Where a page of a newest-first list starts, by the key of a row (keyset pagination: pages
/// stay put when rows are added, and a deep page costs what the first does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyset<K> {
    /// The newest rows.
    Newest,
    /// The rows just older than this key.
    After(K),
    /// The rows just newer than this key (the newest ones when fewer than a page are newer).
    Before(K),
}

/// A page of a newest-first list: its rows, newest first; how many rows the whole list has;
/// and how many of them are newer than the page's first row.
#[derive(Debug, Clone)]
pub struct Window<T> {
    pub rows: Vec<T>,
    pub total: i64,
    pub newer: i64,
}

/// Where a failed delivery stands in the newest-first list of failures: when it failed, then
/// its id. Written `MILLIS.ID` in links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureKey {
    pub at: DateTime<Utc>,
    pub delivery_id: i64,
}

impl fmt::Display for FailureKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", to_millis(self.at), self.delivery_id)
    }
}

impl FromStr for FailureKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a position in the list of failures");
        let (at, id) = s.split_once('.').ok_or_else(bad)?;
        Ok(FailureKey {
            at: from_millis(at.parse().map_err(|_| bad())?),
            delivery_id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// A failed delivery of any issue, for the bounces page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentFailure {
    pub delivery_id: i64,
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
    /// A page of the subscribers whose address contains `query` (any case), optionally of one
    /// status, newest first, at most `limit`, starting `at` a subscriber id.
    pub async fn search_subscribers(
        &self,
        query: &str,
        status: Option<SubscriberStatus>,
        at: Keyset<i64>,
        limit: i64,
    ) -> anyhow::Result<Window<super::subscribers::SubscriberRow>> {
        const FILTER: &str = "($1 = '' OR status = $1) AND LOWER(email) LIKE LOWER($2) ESCAPE '\\'";
        let status = status.map_or("", SubscriberStatus::as_str);
        let pattern = contains_pattern(query.trim());
        let page = |newer: bool, key: i64| {
            let sql = if newer {
                format!(
                    "SELECT id FROM subscribers WHERE {FILTER} AND id > $3 ORDER BY id LIMIT $4"
                )
            } else {
                format!(
                    "SELECT id FROM subscribers WHERE {FILTER} AND id < $3 ORDER BY id DESC LIMIT $4"
                )
            };
            let pattern = pattern.clone();
            async move {
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(status)
                    .bind(pattern)
                    .bind(key)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .context("searching subscribers")?;
                let mut ids: Vec<i64> = rows
                    .iter()
                    .map(|r| r.try_get("id"))
                    .collect::<Result<_, _>>()?;
                if newer {
                    ids.reverse();
                }
                anyhow::Ok(ids)
            }
        };
        let ids = match at {
            Keyset::Newest => page(false, i64::MAX).await?,
            Keyset::After(id) => page(false, id).await?,
            Keyset::Before(id) => {
                let ids = page(true, id).await?;
                if (ids.len() as i64) < limit {
                    page(false, i64::MAX).await?
                } else {
                    ids
                }
            }
        };
        let count = |above: i64| {
            let pattern = pattern.clone();
            async move {
                let sql = format!("SELECT COUNT(*) FROM subscribers WHERE {FILTER} AND id > $3");
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                    .bind(status)
                    .bind(pattern)
                    .bind(above)
                    .fetch_one(&self.pool)
                    .await
                    .context("counting subscribers")
            }
        };
        let total = count(i64::MIN).await?;
        let newer = match ids.first() {
            Some(&first) => count(first).await?,
            None => 0,
        };
        let mut found = self.get_subscribers(&ids).await?;
        Ok(Window {
            rows: ids.iter().filter_map(|id| found.remove(id)).collect(),
            total,
            newer,
        })
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

    /// A page of the failed deliveries of every issue, most recent first, at most `limit`.
    pub async fn recent_failures(
        &self,
        at: Keyset<FailureKey>,
        limit: i64,
    ) -> anyhow::Result<Window<RecentFailure>> {
        const FAILED: &str = "FROM deliveries d
               JOIN issues i ON i.id = d.issue_id
               LEFT JOIN subscribers s ON s.id = d.subscriber_id
              WHERE d.status = 'failed'";
        let page = |newer: bool, key: (i64, i64)| {
            let sql = if newer {
                format!(
                    "SELECT d.id, d.issue_id, i.week, i.number, s.email, d.attempts, d.last_error, d.updated_at
                     {FAILED} AND (d.updated_at > $1 OR (d.updated_at = $1 AND d.id > $2))
                     ORDER BY d.updated_at, d.id LIMIT $3"
                )
            } else {
                format!(
                    "SELECT d.id, d.issue_id, i.week, i.number, s.email, d.attempts, d.last_error, d.updated_at
                     {FAILED} AND (d.updated_at < $1 OR (d.updated_at = $1 AND d.id < $2))
                     ORDER BY d.updated_at DESC, d.id DESC LIMIT $3"
                )
            };
            async move {
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(key.0)
                    .bind(key.1)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .context("listing recent failed deliveries")?;
                let mut failures = rows
                    .iter()
                    .map(|r| {
                        Ok(RecentFailure {
                            delivery_id: r.try_get("id")?,
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
                    .collect::<anyhow::Result<Vec<_>>>()?;
                if newer {
                    failures.reverse();
                }
                anyhow::Ok(failures)
            }
        };
        let key = |k: FailureKey| (to_millis(k.at), k.delivery_id);
        let newest = (i64::MAX, i64::MAX);
        let rows = match at {
            Keyset::Newest => page(false, newest).await?,
            Keyset::After(k) => page(false, key(k)).await?,
            Keyset::Before(k) => {
                let rows = page(true, key(k)).await?;
                if (rows.len() as i64) < limit {
                    page(false, newest).await?
                } else {
                    rows
                }
            }
        };
        let sql = format!("SELECT COUNT(*) {FAILED}");
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .context("counting failed deliveries")?;
        let newer = match rows.first() {
            Some(first) => {
                let sql = format!(
                    "SELECT COUNT(*) {FAILED} AND (d.updated_at > $1 OR (d.updated_at = $1 AND d.id > $2))"
                );
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                    .bind(to_millis(first.at))
                    .bind(first.delivery_id)
                    .fetch_one(&self.pool)
                    .await
                    .context("counting failed deliveries")?
            }
            None => 0,
        };
        Ok(Window { rows, total, newer })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(super::contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
