//! Categories in the database: the readers' choices, the flags of each reader's set of an
//! issue's comparisons (computed in SQL from a [`CategoryMap`], so a snapshot of 100,000
//! readers stays one statement), and the stored renderings of each set (`issue_variants`).

use std::collections::HashMap;

use anyhow::Context;
use chrono::Utc;
use sqlx::Row;

use super::{Backend, Store, placeholders, to_millis};
use crate::issues::variants::CategoryMap;
use crate::render::RenderedIssue;

/// The SQL expression of a reader's flags (`'1'`/`'0'` per position, concatenated) for the
/// reader whose id is `sid`, with the categories bound from `$first` on in the order of
/// [`flag_binds`]. `NULL` for an issue without comparisons.
pub(super) fn flags_sql(map: &CategoryMap, sid: &str, first: usize) -> String {
    if map.positions.is_empty() {
        return "NULL".to_string();
    }
    let mut next = first;
    map.positions
        .iter()
        .map(|cats| {
            let list = placeholders(next, cats.len().max(1));
            next += cats.len().max(1);
            format!(
                "(CASE WHEN EXISTS (SELECT 1 FROM subscriber_categories sc
                          WHERE sc.subscriber_id = {sid} AND sc.category IN ({list}))
                   THEN '1' ELSE '0' END)"
            )
        })
        .collect::<Vec<_>>()
        .join(" || ")
}

/// The values [`flags_sql`] binds, in order (a comparison without categories binds one value
/// no category can equal).
pub(super) fn flag_binds(map: &CategoryMap) -> Vec<String> {
    map.positions
        .iter()
        .flat_map(|cats| {
            if cats.is_empty() {
                vec![String::new()]
            } else {
                cats.clone()
            }
        })
        .collect()
}

impl Store {
    /// The categories a reader chose, sorted (empty: everything).
    pub async fn subscriber_categories(&self, subscriber_id: i64) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT category FROM subscriber_categories WHERE subscriber_id = $1 ORDER BY category",
        )
        .bind(subscriber_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The categories of the readers `ids` (a console page of them); readers without a choice
    /// are absent.
    pub async fn categories_of(&self, ids: &[i64]) -> anyhow::Result<HashMap<i64, Vec<String>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT subscriber_id, category FROM subscriber_categories
              WHERE subscriber_id IN ({}) ORDER BY subscriber_id, category",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        let mut out: HashMap<i64, Vec<String>> = HashMap::new();
        for r in q.fetch_all(&self.pool).await? {
            out.entry(r.try_get("subscriber_id")?)
                .or_default()
                .push(r.try_get("category")?);
        }
        Ok(out)
    }

    /// Replaces a reader's choice with `categories` (empty: everything), in one transaction.
    /// Returns whether the reader exists.
    pub async fn set_subscriber_categories(
        &self,
        subscriber_id: i64,
        categories: &[String],
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query(
            "UPDATE subscribers SET updated_at = $1 WHERE id = $2 AND status <> 'unsubscribed'",
        )
        .bind(to_millis(Utc::now()))
        .bind(subscriber_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !exists {
            return Ok(false);
        }
        sqlx::query("DELETE FROM subscriber_categories WHERE subscriber_id = $1")
            .bind(subscriber_id)
            .execute(&mut *tx)
            .await?;
        for c in categories {
            sqlx::query(
                "INSERT INTO subscriber_categories (subscriber_id, category) VALUES ($1, $2)
                 ON CONFLICT (subscriber_id, category) DO NOTHING",
            )
            .bind(subscriber_id)
            .bind(c.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await.context("storing a reader's categories")?;
        Ok(true)
    }

    /// The distinct flags the confirmed, unpaused readers with a choice would get of an issue
    /// of `map` now: the sets a send started now renders.
    pub async fn reader_flags_now(&self, map: &CategoryMap) -> anyhow::Result<Vec<String>> {
        if map.positions.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT flags FROM (
               SELECT {} AS flags FROM (
                 SELECT DISTINCT sc.subscriber_id AS sid FROM subscriber_categories sc
                   JOIN subscribers s ON s.id = sc.subscriber_id
                  WHERE s.status = 'confirmed' AND (s.paused_until IS NULL OR s.paused_until <= $1)) x) f
             ORDER BY flags",
            flags_sql(map, "x.sid", 2)
        );
        let mut q =
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(to_millis(Utc::now()));
        for b in flag_binds(map) {
            q = q.bind(b);
        }
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// How many confirmed readers are paused now (a send skips them, reason `paused`):
    /// counted through the partial index of paused readers (migration 0018), not a scan of
    /// every subscriber (2,000 paused of a million: ~5 ms on SQLite).
    pub async fn paused_readers_now(&self) -> anyhow::Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM subscribers WHERE paused_until > $1 AND status = 'confirmed'",
        )
        .bind(to_millis(Utc::now()))
        .fetch_one(&self.pool)
        .await
        .context("counting the paused readers")
    }

    /// How many confirmed readers, not paused now, chose categories none of which an issue of
    /// `map` has (a send skips them, as [`Store::start_send`]'s snapshot decides). A pass over
    /// the readers with a choice only, never every subscriber: nothing to read when nobody
    /// chose; ~140 ms on SQLite and ~80 ms on PostgreSQL with 100,000 of a million readers
    /// choosing (see [`crate::app::App::audience_now`], which keeps it a minute).
    pub async fn readers_without_match(&self, map: &CategoryMap) -> anyhow::Result<i64> {
        if map.positions.is_empty() {
            return Ok(0);
        }
        let mut cats: Vec<String> = flag_binds(map);
        cats.sort();
        cats.dedup();
        // The readers whose categories all miss the issue, then those of them confirmed and
        // not paused. Each database gets the shape it runs fast (1M readers, 100,000 with a
        // choice): PostgreSQL groups the choices in one pass (76–81 ms; the correlated
        // NOT EXISTS took 0.67–1.08 s), SQLite probes its primary key per reader (~140 ms; the
        // grouping took ~210 ms).
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT COUNT(*) FROM (SELECT subscriber_id AS sid FROM subscriber_categories
                                        GROUP BY subscriber_id
                                       HAVING MAX(CASE WHEN category IN ({}) THEN 1 ELSE 0 END) = 0) x
                   JOIN subscribers s ON s.id = x.sid
                  WHERE s.status = 'confirmed' AND (s.paused_until IS NULL OR s.paused_until <= $1)",
                placeholders(2, cats.len())
            ),
            Backend::Sqlite => format!(
                "SELECT COUNT(*) FROM (SELECT DISTINCT subscriber_id AS sid FROM subscriber_categories) x
                   JOIN subscribers s ON s.id = x.sid
                  WHERE s.status = 'confirmed' AND (s.paused_until IS NULL OR s.paused_until <= $1)
                    AND NOT EXISTS (SELECT 1 FROM subscriber_categories sc
                                     WHERE sc.subscriber_id = x.sid AND sc.category IN ({}))",
                placeholders(2, cats.len())
            ),
        };
        let mut q =
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(to_millis(Utc::now()));
        for c in cats {
            q = q.bind(c);
        }
        q.fetch_one(&self.pool)
            .await
            .context("counting the readers without a matching category")
    }

    /// The distinct sets the pending rows of an issue's ledger still need.
    pub async fn pending_variants(&self, issue_id: i64) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT variant FROM deliveries
              WHERE issue_id = $1 AND status = 'pending' AND variant IS NOT NULL ORDER BY variant",
        )
        .bind(issue_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One stored rendering of a set of an issue's comparisons.
    pub async fn issue_variant(
        &self,
        issue_id: i64,
        variant: &str,
    ) -> anyhow::Result<Option<RenderedIssue>> {
        let row = sqlx::query(
            "SELECT subject, html, text FROM issue_variants WHERE issue_id = $1 AND variant = $2",
        )
        .bind(issue_id)
        .bind(variant)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(RenderedIssue {
                subject: r.try_get("subject")?,
                html: r.try_get("html")?,
                text: r.try_get("text")?,
            })
        })
        .transpose()
    }

    /// Stores a rendering of a set, or counts one more render of a set already stored (a race
    /// after a crash) and keeps the first. Returns the stored rendering: the one every worker
    /// sends.
    pub async fn store_issue_variant(
        &self,
        issue_id: i64,
        variant: &str,
        rendered: &RenderedIssue,
    ) -> anyhow::Result<RenderedIssue> {
        let row = sqlx::query(
            "INSERT INTO issue_variants AS v (issue_id, variant, subject, html, text, renders, created_at)
             VALUES ($1, $2, $3, $4, $5, 1, $6)
             ON CONFLICT (issue_id, variant) DO UPDATE SET renders = v.renders + 1
             RETURNING subject, html, text",
        )
        .bind(issue_id)
        .bind(variant)
        .bind(rendered.subject.as_str())
        .bind(rendered.html.as_str())
        .bind(rendered.text.as_str())
        .bind(to_millis(Utc::now()))
        .fetch_one(&self.writer)
        .await
        .context("storing a rendering of a set of an issue")?;
        Ok(RenderedIssue {
            subject: row.try_get("subject")?,
            html: row.try_get("html")?,
            text: row.try_get("text")?,
        })
    }

    /// Renders kept for sending: one per issue with content, plus every render of a set.
    pub async fn issue_renders_total(&self) -> anyhow::Result<i64> {
        let issues: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM issues WHERE number IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        let variants: Option<i64> =
            sqlx::query_scalar("SELECT CAST(SUM(renders) AS BIGINT) FROM issue_variants")
                .fetch_one(&self.pool)
                .await?;
        Ok(issues + variants.unwrap_or(0))
    }
}
