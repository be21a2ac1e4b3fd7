//! Issues in the database: selection of unissued comparisons, frozen issues, the archive.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::comparisons::StoredComparison;
use super::{Store, from_millis, to_millis};
use crate::issues::{IsoWeek, IssueStatus};
use crate::render::RenderedIssue;

/// One issue as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssueRow {
    pub id: i64,
    pub week: IsoWeek,
    /// Public number (#12); `None` for an empty week's row, and for an issue cancelled before
    /// any delivery (its number went back for the next issue).
    pub number: Option<i64>,
    pub status: IssueStatus,
    pub status_reason: Option<String>,
    pub cutoff_at: DateTime<Utc>,
    pub subject: Option<String>,
    #[serde(skip)]
    pub html: Option<String>,
    #[serde(skip)]
    pub text: Option<String>,
    pub created_at: DateTime<Utc>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The transport's last failure while sending (login refused, TLS, unreachable), cleared
    /// by the next accepted message.
    pub transport_error: Option<String>,
    /// Since when the transport has been failing.
    pub transport_error_since: Option<DateTime<Utc>>,
    /// A send paused because the sending window was full resumes by itself at this time.
    pub resume_at: Option<DateTime<Utc>>,
    /// The schedule was forced past a failed pre-send check: it starts when due even if the
    /// checks, run again then, still fail.
    pub scheduled_forced: bool,
    /// Slugs of the comparisons it carries, in order.
    pub items: Vec<String>,
}

/// What goes into a new issue row.
pub struct NewIssue<'a> {
    pub week: IsoWeek,
    pub cutoff_at: DateTime<Utc>,
    /// `None` (with no items) records an empty week.
    pub content: Option<(i64, &'a RenderedIssue, &'a [StoredComparison])>,
}

/// Why an issue could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum InsertIssueError {
    /// Another process created the week's issue, took a comparison, or took the number first.
    #[error("a concurrent change won: {0}")]
    Conflict(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// `SELECT <every issue column> FROM issues WHERE <col> = $1`, as the `&'static str` sqlx wants.
macro_rules! issue_by {
    ($col:literal) => {
        concat!(
            "SELECT id, week, number, status, status_reason, cutoff_at, subject, html, text, \
             created_at, scheduled_for, started_at, finished_at, transport_error, \
             transport_error_since, resume_at, scheduled_forced FROM issues WHERE ",
            $col,
            " = $1"
        )
    };
}

fn issue_from_row(row: &AnyRow) -> anyhow::Result<IssueRow> {
    let week: String = row.try_get("week")?;
    let status: String = row.try_get("status")?;
    let opt_time = |name: &str| -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(from_millis))
    };
    Ok(IssueRow {
        id: row.try_get("id")?,
        week: week
            .parse()
            .with_context(|| format!("stored issue week {week:?}"))?,
        number: row.try_get("number")?,
        status: IssueStatus::parse(&status)
            .with_context(|| format!("stored issue status {status:?}"))?,
        status_reason: row.try_get("status_reason")?,
        cutoff_at: from_millis(row.try_get("cutoff_at")?),
        subject: row.try_get("subject")?,
        html: row.try_get("html")?,
        text: row.try_get("text")?,
        created_at: from_millis(row.try_get("created_at")?),
        scheduled_for: opt_time("scheduled_for")?,
        started_at: opt_time("started_at")?,
        finished_at: opt_time("finished_at")?,
        transport_error: row.try_get("transport_error")?,
        transport_error_since: opt_time("transport_error_since")?,
        resume_at: opt_time("resume_at")?,
        scheduled_forced: row.try_get::<i64, _>("scheduled_forced")? != 0,
        items: Vec::new(),
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    /// Comparisons published before `cutoff` that no issue carries yet, oldest first.
    pub async fn unissued_comparisons(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredComparison>> {
        let rows = sqlx::query(
            "SELECT c.id, c.document, c.revision, c.updated_at, NULL AS week
               FROM comparisons c
              WHERE c.published_at < $1
                AND NOT EXISTS (SELECT 1 FROM issue_items ii WHERE ii.comparison_id = c.id)
              ORDER BY c.published_at, c.id
              LIMIT $2",
        )
        .bind(to_millis(cutoff))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("selecting unissued comparisons")?;
        rows.into_iter()
            .map(super::comparisons::stored_from_row)
            .collect()
    }

    /// The number the next non-empty issue gets.
    pub async fn next_issue_number(&self) -> anyhow::Result<i64> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(number) FROM issues")
            .fetch_one(&self.pool)
            .await?;
        Ok(max.unwrap_or(0) + 1)
    }

    /// Inserts an issue and its items in one transaction. The database enforces one issue per
    /// week, one issue per number and one issue per comparison.
    pub async fn insert_issue(&self, new: NewIssue<'_>) -> Result<IssueRow, InsertIssueError> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let (number, status, subject, html, text) = match &new.content {
            Some((number, rendered, _)) => (
                Some(*number),
                IssueStatus::Ready,
                Some(rendered.subject.as_str()),
                Some(rendered.html.as_str()),
                Some(rendered.text.as_str()),
            ),
            None => (None, IssueStatus::Empty, None, None, None),
        };
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO issues (week, number, status, cutoff_at, subject, html, text, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING id",
        )
        .bind(new.week.to_string())
        .bind(number)
        .bind(status.as_str())
        .bind(to_millis(new.cutoff_at))
        .bind(subject)
        .bind(html)
        .bind(text)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id = match inserted {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => {
                return Err(InsertIssueError::Conflict(format!(
                    "issue {} or number {number:?} exists",
                    new.week
                )));
            }
            Err(e) => return Err(anyhow::Error::from(e).context("inserting the issue").into()),
        };
        if let Some((_, _, items)) = new.content {
            for (position, item) in items.iter().enumerate() {
                let r = sqlx::query(
                    "INSERT INTO issue_items (issue_id, comparison_id, position) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(item.id)
                .bind(position as i64)
                .execute(&mut *tx)
                .await;
                match r {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        return Err(InsertIssueError::Conflict(format!(
                            "comparison {} is already in another issue",
                            item.comparison.slug()
                        )));
                    }
                    Err(e) => {
                        return Err(anyhow::Error::from(e)
                            .context("inserting issue items")
                            .into());
                    }
                }
            }
        }
        tx.commit().await.context("committing the issue")?;
        Ok(self
            .get_issue(id)
            .await?
            .context("the issue just inserted is missing")?)
    }

    async fn with_items(&self, mut issue: IssueRow) -> anyhow::Result<IssueRow> {
        issue.items = sqlx::query_scalar(
            "SELECT c.slug FROM issue_items ii JOIN comparisons c ON c.id = ii.comparison_id
              WHERE ii.issue_id = $1 ORDER BY ii.position",
        )
        .bind(issue.id)
        .fetch_all(&self.pool)
        .await?;
        Ok(issue)
    }

    async fn one_issue(
        &self,
        sql: &'static str,
        key: BindKey<'_>,
    ) -> anyhow::Result<Option<IssueRow>> {
        let q = sqlx::query(sql);
        let q = match key {
            BindKey::Int(v) => q.bind(v),
            BindKey::Text(v) => q.bind(v.to_string()),
        };
        let row = q.fetch_optional(&self.pool).await?;
        match row {
            Some(row) => Ok(Some(self.with_items(issue_from_row(&row)?).await?)),
            None => Ok(None),
        }
    }

    pub async fn get_issue(&self, id: i64) -> anyhow::Result<Option<IssueRow>> {
        self.one_issue(issue_by!("id"), BindKey::Int(id))
            .await
            .with_context(|| format!("loading issue {id}"))
    }

    pub async fn get_issue_by_week(&self, week: IsoWeek) -> anyhow::Result<Option<IssueRow>> {
        self.one_issue(issue_by!("week"), BindKey::Text(&week.to_string()))
            .await
            .with_context(|| format!("loading issue {week}"))
    }

    pub async fn get_issue_by_number(&self, number: i64) -> anyhow::Result<Option<IssueRow>> {
        self.one_issue(issue_by!("number"), BindKey::Int(number))
            .await
            .with_context(|| format!("loading issue #{number}"))
    }

    /// All issues, newest week first (without their HTML and text): two queries, whatever
    /// the number of issues (the archive runs this on every request).
    pub async fn list_issues(&self) -> anyhow::Result<Vec<IssueRow>> {
        let rows = sqlx::query(
            "SELECT id, week, number, status, status_reason, cutoff_at, subject, NULL AS html,
                    NULL AS text, created_at, scheduled_for, started_at, finished_at,
                    transport_error, transport_error_since, resume_at, scheduled_forced
               FROM issues ORDER BY week DESC",
        )
        .fetch_all(&self.pool)
        .await
        .context("listing issues")?;
        let mut issues = rows
            .iter()
            .map(issue_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut by_issue = self.items_by_issue(ItemColumn::Slug).await?;
        for issue in &mut issues {
            issue.items = by_issue.remove(&issue.id).unwrap_or_default();
        }
        Ok(issues)
    }

    /// The titles of every issue's comparisons, in order, by issue id (one query: for the feed).
    pub async fn issue_item_titles(
        &self,
    ) -> anyhow::Result<std::collections::HashMap<i64, Vec<String>>> {
        self.items_by_issue(ItemColumn::Title).await
    }

    /// One column of every issue's comparisons, in order, by issue id, in one query.
    async fn items_by_issue(
        &self,
        column: ItemColumn,
    ) -> anyhow::Result<std::collections::HashMap<i64, Vec<String>>> {
        let sql = match column {
            ItemColumn::Slug => {
                "SELECT ii.issue_id, c.slug AS item FROM issue_items ii
                   JOIN comparisons c ON c.id = ii.comparison_id ORDER BY ii.issue_id, ii.position"
            }
            ItemColumn::Title => {
                "SELECT ii.issue_id, c.title AS item FROM issue_items ii
                   JOIN comparisons c ON c.id = ii.comparison_id ORDER BY ii.issue_id, ii.position"
            }
        };
        let rows = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .context("listing the comparisons of issues")?;
        let mut out: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
        for row in &rows {
            out.entry(row.try_get("issue_id")?)
                .or_default()
                .push(row.try_get("item")?);
        }
        Ok(out)
    }

    /// Sets an issue's status (and why); used by operators and, later, the delivery engine.
    pub async fn set_issue_status(
        &self,
        id: i64,
        status: IssueStatus,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE issues SET status = $1, status_reason = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(reason)
            .bind(id)
            .execute(&self.writer)
            .await
            .with_context(|| format!("setting issue {id} to {status}"))?;
        Ok(())
    }
}

impl Store {
    /// Cancels an issue in one of `from` that has no delivery yet, and releases what it held:
    /// its comparisons (the next issue takes them), its renderings and its public number (no
    /// reader saw it). Returns how many comparisons went back, or `None` (nothing changed)
    /// when the issue is not in one of `from` or its send has started.
    pub async fn cancel_unsent_issue(
        &self,
        issue_id: i64,
        from: &[IssueStatus],
        reason: &str,
    ) -> anyhow::Result<Option<u64>> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE issues SET status = 'cancelled', status_reason = $1, number = NULL,
                    scheduled_for = NULL, scheduled_forced = 0, resume_at = NULL
              WHERE id = $2 AND status IN ({})
                AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = $2)",
            super::placeholders(3, from.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(reason)
            .bind(issue_id);
        for f in from {
            q = q.bind(f.as_str());
        }
        if q.execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(None);
        }
        let released = sqlx::query("DELETE FROM issue_items WHERE issue_id = $1")
            .bind(issue_id)
            .execute(&mut *tx)
            .await
            .context("releasing the comparisons of a cancelled issue")?
            .rows_affected();
        sqlx::query("DELETE FROM issue_variants WHERE issue_id = $1")
            .bind(issue_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.context("cancelling the issue")?;
        Ok(Some(released))
    }

    /// Deletes the row of an issue cancelled before any delivery (it holds nothing but its
    /// week), so the week can be created again; `false` when it is not such an issue.
    pub async fn drop_released_issue(&self, issue_id: i64) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "DELETE FROM issues WHERE id = $1 AND status = 'cancelled' AND number IS NULL
                AND NOT EXISTS (SELECT 1 FROM issue_items ii WHERE ii.issue_id = $1)
                AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = $1)",
        )
        .bind(issue_id)
        .execute(&self.writer)
        .await
        .context("dropping a released issue")?
        .rows_affected()
            > 0)
    }
}

impl Store {
    /// Records the transport's current failure on a sending issue (`Some((error, since))`), or
    /// clears it once a message is accepted again (`None`).
    pub async fn set_transport_error(
        &self,
        issue_id: i64,
        error: Option<(&str, DateTime<Utc>)>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE issues SET transport_error = $1, transport_error_since = $2 WHERE id = $3",
        )
        .bind(error.map(|(e, _)| e))
        .bind(error.map(|(_, since)| to_millis(since)))
        .bind(issue_id)
        .execute(&self.writer)
        .await
        .with_context(|| format!("recording the transport error of issue {issue_id}"))?;
        Ok(())
    }
}

/// Which column of an issue's comparisons [`Store::items_by_issue`] lists.
enum ItemColumn {
    Slug,
    Title,
}

enum BindKey<'a> {
    Int(i64),
    Text(&'a str),
}
