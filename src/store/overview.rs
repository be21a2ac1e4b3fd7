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

/// Most addresses a search finds (and pages through); a longer start narrows it.
pub const SEARCH_CAP: i64 = 2_000;

/// Which part of the address a search range runs over.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// The whole address, from its start.
    Address,
    /// What follows the `@`.
    Domain,
}

/// The page of `ids` (newest first) that `at` names, at most `limit`, and how many ids come
/// before it.
fn window_of(ids: &[i64], at: Keyset<i64>, limit: usize) -> (Vec<i64>, i64) {
    let start = match at {
        Keyset::Newest => 0,
        Keyset::After(key) => ids.partition_point(|&id| id >= key),
        Keyset::Before(key) => ids.partition_point(|&id| id > key).saturating_sub(limit),
    };
    let end = (start + limit).min(ids.len());
    (ids[start..end].to_vec(), start as i64)
}

impl Store {
    /// A page of the subscribers a search `query` finds (any case; the start of the address or
    /// of its domain, see [`Store::subscribers_matching`]), optionally of one status, newest
    /// first, at most `limit`, starting `at` a subscriber id.
    ///
    /// Nothing here reads the whole table: without a query the page walks the primary key (or
    /// `subscribers_by_status`) and the total comes from `subscriber_counts`; with one, the
    /// addresses found are ranges of the email and domain indexes, at most [`SEARCH_CAP`], paged
    /// in memory (the total then says "at most").
    pub async fn search_subscribers(
        &self,
        query: &str,
        status: Option<SubscriberStatus>,
        at: Keyset<i64>,
        limit: i64,
    ) -> anyhow::Result<Window<super::subscribers::SubscriberRow>> {
        let query = query.trim().to_lowercase();
        let (ids, total, newer) = if query.is_empty() {
            self.newest_subscribers(status, at, limit).await?
        } else {
            let mut found = self.subscribers_matching(&query, status).await?;
            found.sort_unstable_by(|a, b| b.cmp(a));
            let (ids, newer) = window_of(&found, at, limit as usize);
            (ids, found.len() as i64, newer)
        };
        let mut found = self.get_subscribers(&ids).await?;
        Ok(Window {
            rows: ids.iter().filter_map(|id| found.remove(id)).collect(),
            total,
            newer,
        })
    }

    /// Ids of the subscribers a search finds, at most [`SEARCH_CAP`], each part a range of an
    /// index (no scan): `@example.org` (or `@exa`) the addresses whose domain starts with it
    /// (`subscribers_by_domain`, migration 0017); `jane@ex` the addresses that start with it
    /// (the email index); a word without `@` either, so `example` finds `@example.org` and
    /// `jane` finds `jane@…`.
    async fn subscribers_matching(
        &self,
        query: &str,
        status: Option<SubscriberStatus>,
    ) -> anyhow::Result<Vec<i64>> {
        let mut ids = match query.split_once('@') {
            Some(("", domain)) => {
                self.subscribers_in_range(Part::Domain, domain, status)
                    .await?
            }
            Some(_) => {
                self.subscribers_in_range(Part::Address, query, status)
                    .await?
            }
            None => {
                let mut ids = self
                    .subscribers_in_range(Part::Address, query, status)
                    .await?;
                ids.extend(
                    self.subscribers_in_range(Part::Domain, query, status)
                        .await?,
                );
                ids.sort_unstable();
                ids.dedup();
                ids
            }
        };
        ids.truncate(SEARCH_CAP as usize);
        Ok(ids)
    }

    /// Ids of the subscribers whose address (or its domain) starts with `prefix` (lower case),
    /// at most [`SEARCH_CAP`], by a range of the email index (`subscribers_by_email_bytes` on
    /// PostgreSQL, so the range is one whatever the database's collation) or of
    /// `subscribers_by_domain` (the same expression as the index, which the planner matches).
    async fn subscribers_in_range(
        &self,
        part: Part,
        prefix: &str,
        status: Option<SubscriberStatus>,
    ) -> anyhow::Result<Vec<i64>> {
        let column = match (part, self.backend) {
            (Part::Address, super::Backend::Sqlite) => "email",
            (Part::Address, super::Backend::Postgres) => "(email COLLATE \"C\")",
            (Part::Domain, super::Backend::Sqlite) => "substr(email, instr(email, '@') + 1)",
            (Part::Domain, super::Backend::Postgres) => {
                "(substr(email, strpos(email, '@') + 1) COLLATE \"C\")"
            }
        };
        let sql = format!(
            "SELECT id FROM subscribers WHERE {column} >= $1 AND {column} < $2
               AND ($3 = '' OR status = $3) LIMIT $4"
        );
        // Every address that starts with `prefix` sorts below `prefix` + the last code point.
        let upper = format!("{prefix}\u{10FFFF}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(prefix)
            .bind(upper)
            .bind(status.map_or("", SubscriberStatus::as_str))
            .bind(SEARCH_CAP)
            .fetch_all(&self.pool)
            .await
            .context("searching subscribers")?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?)
    }

    /// A page of all subscribers (or those of one status), newest first: the ids, the total
    /// and how many are newer than the page.
    async fn newest_subscribers(
        &self,
        status: Option<SubscriberStatus>,
        at: Keyset<i64>,
        limit: i64,
    ) -> anyhow::Result<(Vec<i64>, i64, i64)> {
        // Two shapes, so the planner walks `subscribers_by_status` for one status (an `OR` with
        // the empty status would read the whole primary key for a rare one).
        let filter = if status.is_some() {
            "status = $1"
        } else {
            "$1 = ''"
        };
        let status_text = status.map_or("", SubscriberStatus::as_str);
        let page = |newer: bool, key: i64| async move {
            let sql = if newer {
                format!(
                    "SELECT id FROM subscribers WHERE {filter} AND id > $2 ORDER BY id LIMIT $3"
                )
            } else {
                format!(
                    "SELECT id FROM subscribers WHERE {filter} AND id < $2 ORDER BY id DESC LIMIT $3"
                )
            };
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(status_text)
                .bind(key)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .context("listing subscribers")?;
            let mut ids: Vec<i64> = rows
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<_, _>>()?;
            if newer {
                ids.reverse();
            }
            anyhow::Ok(ids)
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
        let counts = self.subscriber_counts().await?;
        let total = counts
            .iter()
            .filter(|(s, _)| status.is_none_or(|want| *s == want))
            .map(|(_, n)| n)
            .sum();
        let newer = match ids.first() {
            // The first page's newest row: nothing is newer (no count).
            Some(_) if at == Keyset::Newest => 0,
            Some(&first) => {
                let sql = format!("SELECT COUNT(*) FROM subscribers WHERE {filter} AND id > $2");
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                    .bind(status_text)
                    .bind(first)
                    .fetch_one(&self.pool)
                    .await
                    .context("counting subscribers")?
            }
            None => 0,
        };
        Ok((ids, total, newer))
    }

    /// How many subscribers have each status (every status, zeros included), from the
    /// counters triggers keep (`subscriber_counts`).
    pub async fn subscriber_counts(&self) -> anyhow::Result<Vec<(SubscriberStatus, i64)>> {
        let rows = sqlx::query("SELECT status, n FROM subscriber_counts")
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
        let total: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM delivery_counts WHERE status = 'failed'",
        )
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
    use super::{Keyset, window_of};

    #[test]
    fn a_search_is_paged_in_memory() {
        let ids: Vec<i64> = (1..=250).rev().collect();
        let (first, skipped) = window_of(&ids, Keyset::Newest, 100);
        assert_eq!((first[0], first[99], skipped), (250, 151, 0));
        let (second, skipped) = window_of(&ids, Keyset::After(151), 100);
        assert_eq!((second[0], second[99], skipped), (150, 51, 100));
        let (third, skipped) = window_of(&ids, Keyset::After(51), 100);
        assert_eq!((third.len(), third[49], skipped), (50, 1, 200));
        assert_eq!(window_of(&ids, Keyset::Before(50), 100), (second, 100));
        // Fewer than a page newer: the newest page.
        assert_eq!(window_of(&ids, Keyset::Before(200), 100).1, 0);
        assert!(window_of(&ids, Keyset::After(1), 100).0.is_empty());
    }
}
