//! Comparisons in the database: upsert by slug, list by publication time.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, from_millis, to_millis};
use crate::comparisons::{Comparison, InvalidComparison};

/// Where a comparison came from; kept for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Json,
    Page,
    Api,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Json => "json",
            Source::Page => "page",
            Source::Api => "api",
        }
    }
}

/// What an upsert did to one slug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpsertAction {
    /// The slug was new.
    Created,
    /// The slug was stored with other content: its revision went up.
    Updated,
    /// The slug was stored with exactly this content (a re-import of `comparisons list
    /// --json`): nothing was written.
    Unchanged,
}

impl UpsertAction {
    pub fn as_str(self) -> &'static str {
        match self {
            UpsertAction::Created => "created",
            UpsertAction::Updated => "updated",
            UpsertAction::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for UpsertAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Upserted {
    pub slug: String,
    pub action: UpsertAction,
    pub revision: i64,
}

/// A stored comparison with the bookkeeping around it.
#[derive(Debug, Clone)]
pub struct StoredComparison {
    pub id: i64,
    pub comparison: Comparison,
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
    /// The week of the issue that carries it, if any.
    pub issue_week: Option<String>,
}

impl Store {
    /// Inserts or updates each comparison by slug, all in one transaction: either every one is
    /// written or none is. With `keep_published_at`, an existing slug keeps its stored
    /// publication time (a page re-imported without `--published-at` is an edit, not a new
    /// publication, and must not move to another week).
    pub async fn upsert_comparisons(
        &self,
        comparisons: &[Comparison],
        source: Source,
        keep_published_at: bool,
    ) -> anyhow::Result<Vec<Upserted>> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let mut out = Vec::with_capacity(comparisons.len());
        for c in comparisons {
            let stored: Option<(i64, String, i64)> = sqlx::query_as(
                "SELECT published_at, document, revision FROM comparisons WHERE slug = $1",
            )
            .bind(c.slug())
            .fetch_optional(&mut *tx)
            .await?;
            let kept;
            let c = match &stored {
                Some((ms, _, _)) if keep_published_at => {
                    kept = c.clone().with_published_at(from_millis(*ms));
                    &kept
                }
                _ => c,
            };
            let document = serde_json::to_string(&c.to_json())?;
            if let Some((_, stored_document, revision)) = &stored
                && *stored_document == document
            {
                out.push(Upserted {
                    slug: c.slug().to_string(),
                    action: UpsertAction::Unchanged,
                    revision: *revision,
                });
                continue;
            }
            let revision: i64 = sqlx::query_scalar(
                "INSERT INTO comparisons
                    (slug, title, url, published_at, document, source, revision, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)
                 ON CONFLICT (slug) DO UPDATE SET
                    title = excluded.title,
                    url = excluded.url,
                    published_at = excluded.published_at,
                    document = excluded.document,
                    source = excluded.source,
                    revision = comparisons.revision + 1,
                    updated_at = excluded.updated_at
                 RETURNING revision",
            )
            .bind(c.slug())
            .bind(c.title())
            .bind(c.url())
            .bind(to_millis(c.published_at()))
            .bind(document)
            .bind(source.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .with_context(|| format!("saving comparison {}", c.slug()))?;
            out.push(Upserted {
                slug: c.slug().to_string(),
                action: if revision == 1 {
                    UpsertAction::Created
                } else {
                    UpsertAction::Updated
                },
                revision,
            });
        }
        tx.commit().await.context("committing comparisons")?;
        Ok(out)
    }

    /// Comparisons published at or after `since` (all when `None`), oldest first.
    pub async fn list_comparisons(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Vec<StoredComparison>> {
        let rows = sqlx::query(
            "SELECT c.id, c.document, c.revision, c.updated_at, i.week
               FROM comparisons c
               LEFT JOIN issue_items ii ON ii.comparison_id = c.id
               LEFT JOIN issues i ON i.id = ii.issue_id
              WHERE c.published_at >= $1
              ORDER BY c.published_at, c.id",
        )
        .bind(since.map(to_millis).unwrap_or(i64::MIN))
        .fetch_all(&self.pool)
        .await
        .context("listing comparisons")?;
        rows.into_iter().map(stored_from_row).collect()
    }

    /// One comparison by slug.
    pub async fn get_comparison(&self, slug: &str) -> anyhow::Result<Option<StoredComparison>> {
        let row = sqlx::query(
            "SELECT c.id, c.document, c.revision, c.updated_at, i.week
               FROM comparisons c
               LEFT JOIN issue_items ii ON ii.comparison_id = c.id
               LEFT JOIN issues i ON i.id = ii.issue_id
              WHERE c.slug = $1",
        )
        .bind(slug)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("loading comparison {slug}"))?;
        row.map(stored_from_row).transpose()
    }

    /// How many comparisons are stored.
    pub async fn count_comparisons(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM comparisons")
            .fetch_one(&self.pool)
            .await?)
    }
}

pub(super) fn stored_from_row(row: sqlx::any::AnyRow) -> anyhow::Result<StoredComparison> {
    let id: i64 = row.try_get("id")?;
    let document: String = row.try_get("document")?;
    let value: serde_json::Value =
        serde_json::from_str(&document).with_context(|| format!("comparison {id}: stored JSON"))?;
    let comparison = Comparison::from_json_value(value)
        .map_err(|e: InvalidComparison| anyhow::anyhow!("comparison {id}: stored document: {e}"))?;
    Ok(StoredComparison {
        id,
        comparison,
        revision: row.try_get("revision")?,
        updated_at: from_millis(row.try_get("updated_at")?),
        issue_week: row.try_get("week")?,
    })
}
