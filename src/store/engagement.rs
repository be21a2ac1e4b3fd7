//! Reader votes and link clicks: counters only (see `migrations/*/0012_engagement.sql`).

use sqlx::Row;

use super::Store;
use super::comparisons::stored_from_row;
use crate::comparisons::Comparison;
use crate::engagement::Choice;
use crate::subscribers::SubscriberStatus;

/// The comparison a vote or click link of an issue points at.
#[derive(Debug, Clone)]
pub struct LinkTarget {
    pub issue_id: i64,
    pub comparison_id: i64,
    pub url: String,
}

/// Ship and skip votes on one tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolCount {
    pub ship: i64,
    pub skip: i64,
}

/// The stored votes on one comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoteCounts {
    /// Per tool, in the comparison's order.
    pub tools: [ToolCount; 2],
    /// Distinct readers who voted on at least one of its tools.
    pub voters: i64,
}

/// One comparison link of an issue and how often it was clicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClicks {
    pub position: i64,
    pub url: String,
    pub clicks: i64,
}

impl Store {
    /// The comparison at `position` of the issue numbered `number`.
    pub async fn link_target(
        &self,
        number: i64,
        position: u16,
    ) -> anyhow::Result<Option<LinkTarget>> {
        let row = sqlx::query(
            "SELECT i.id AS issue_id, c.id AS comparison_id, c.url
               FROM issues i
               JOIN issue_items ii ON ii.issue_id = i.id
               JOIN comparisons c ON c.id = ii.comparison_id
              WHERE i.number = $1 AND ii.position = $2",
        )
        .bind(number)
        .bind(i64::from(position))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(LinkTarget {
                issue_id: r.try_get("issue_id")?,
                comparison_id: r.try_get("comparison_id")?,
                url: r.try_get("url")?,
            })
        })
        .transpose()
    }

    /// A comparison by id, checked as it was stored.
    pub async fn comparison_by_id(&self, id: i64) -> anyhow::Result<Option<Comparison>> {
        let row = sqlx::query(
            "SELECT c.id, c.document, c.revision, c.updated_at, i.week
               FROM comparisons c
               LEFT JOIN issue_items ii ON ii.comparison_id = c.id
               LEFT JOIN issues i ON i.id = ii.issue_id
              WHERE c.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(stored_from_row).transpose()?.map(|s| s.comparison))
    }

    /// A subscriber's status (`None`: no such subscriber, or erased).
    pub async fn subscriber_status(&self, id: i64) -> anyhow::Result<Option<SubscriberStatus>> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM subscribers WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        status
            .map(|s| s.parse().map_err(anyhow::Error::msg))
            .transpose()
    }

    /// Stores a vote, replacing the voter's earlier one on the same tool.
    pub async fn record_vote(
        &self,
        comparison_id: i64,
        tool: u8,
        voter: &str,
        choice: Choice,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO votes (comparison_id, tool, voter, choice) VALUES ($1, $2, $3, $4)
             ON CONFLICT (comparison_id, tool, voter) DO UPDATE SET choice = excluded.choice",
        )
        .bind(comparison_id)
        .bind(i64::from(tool))
        .bind(voter)
        .bind(choice.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Counts one click on the link at `position` of an issue.
    pub async fn record_click(&self, issue_id: i64, position: u16) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO link_clicks (issue_id, position, clicks) VALUES ($1, $2, 1)
             ON CONFLICT (issue_id, position) DO UPDATE SET clicks = link_clicks.clicks + 1",
        )
        .bind(issue_id)
        .bind(i64::from(position))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The votes on one comparison.
    pub async fn vote_counts(&self, comparison_id: i64) -> anyhow::Result<VoteCounts> {
        let rows = sqlx::query(
            "SELECT tool, choice, COUNT(*) AS n FROM votes WHERE comparison_id = $1
              GROUP BY tool, choice",
        )
        .bind(comparison_id)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = VoteCounts::default();
        for r in rows {
            let tool: i64 = r.try_get("tool")?;
            let choice: String = r.try_get("choice")?;
            let n: i64 = r.try_get("n")?;
            let slot = counts
                .tools
                .get_mut(usize::try_from(tool)?)
                .ok_or_else(|| anyhow::anyhow!("stored vote on tool {tool}"))?;
            match Choice::parse(&choice) {
                Some(Choice::Ship) => slot.ship = n,
                Some(Choice::Skip) => slot.skip = n,
                None => anyhow::bail!("stored vote {choice:?}"),
            }
        }
        counts.voters =
            sqlx::query_scalar("SELECT COUNT(DISTINCT voter) FROM votes WHERE comparison_id = $1")
                .bind(comparison_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(counts)
    }

    /// The comparisons of an issue in order: (id, slug).
    pub async fn issue_comparison_ids(&self, issue_id: i64) -> anyhow::Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT c.id, c.slug FROM issue_items ii JOIN comparisons c ON c.id = ii.comparison_id
              WHERE ii.issue_id = $1 ORDER BY ii.position",
        )
        .bind(issue_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("slug")?)))
            .collect()
    }

    /// Every comparison link of an issue with its clicks (0 when never clicked), in order.
    pub async fn issue_link_clicks(&self, issue_id: i64) -> anyhow::Result<Vec<LinkClicks>> {
        let rows = sqlx::query(
            "SELECT ii.position, c.url, COALESCE(lc.clicks, 0) AS clicks
               FROM issue_items ii
               JOIN comparisons c ON c.id = ii.comparison_id
               LEFT JOIN link_clicks lc ON lc.issue_id = ii.issue_id AND lc.position = ii.position
              WHERE ii.issue_id = $1
              ORDER BY ii.position",
        )
        .bind(issue_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(LinkClicks {
                    position: r.try_get("position")?,
                    url: r.try_get("url")?,
                    clicks: r.try_get("clicks")?,
                })
            })
            .collect()
    }

    /// All clicks and all stored votes, for `/metrics`: (clicks, votes).
    pub async fn engagement_totals(&self) -> anyhow::Result<(i64, i64)> {
        let clicks: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(SUM(clicks), 0) AS BIGINT) FROM link_clicks")
                .fetch_one(&self.pool)
                .await?;
        let votes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM votes")
            .fetch_one(&self.pool)
            .await?;
        Ok((clicks, votes))
    }
}
