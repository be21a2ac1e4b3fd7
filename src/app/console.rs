//! What the operator console reads and imports beyond issue and subscriber actions: the
//! dashboard's figures, subscriber search, the bounces page, comparison uploads, the CSV export
//! and the operator log. Each page's data comes from one method here, so a page can be extended
//! (bounce and complaint events, say) without touching the console's handlers.

use chrono::{DateTime, Utc};

use super::issues::IssueReport;
use super::{Activity, Actor, App, OpsError};
use crate::comparisons::import::parse_text;
use crate::comparisons::page::PageContext;
use crate::issues::IssueKey;
use crate::store::comparisons::{StoredComparison, Upserted};
use crate::store::operators::LogEntry;
use crate::store::overview::RecentFailure;
use crate::store::subscribers::SubscriberRow;
use crate::subscribers::SubscriberStatus;

/// The bounces page: subscribers whose mailbox rejected us, and recent failed deliveries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BounceReport {
    pub bounced: Vec<SubscriberRow>,
    pub failures: Vec<RecentFailure>,
}

/// The subscribers page: counts by status and the subscribers found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriberSearch {
    pub counts: Vec<(SubscriberStatus, i64)>,
    pub found: Vec<SubscriberRow>,
}

impl App {
    /// When `schedule.cron` fires next, in `schedule.timezone`.
    pub fn next_scheduled_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let schedule = &self.settings().schedule;
        crate::schedule::next_fire(&schedule.cron.schedule, schedule.timezone.0, now)
    }

    /// The newest `limit` issues with their delivery counts, rate and ETA.
    pub async fn recent_issue_reports(&self, limit: usize) -> Result<Vec<IssueReport>, OpsError> {
        let issues = self.list_issues().await?;
        let mut reports = Vec::with_capacity(limit.min(issues.len()));
        for issue in issues.into_iter().take(limit) {
            reports.push(self.issue_report(Some(IssueKey::Week(issue.week))).await?);
        }
        Ok(reports)
    }

    /// The newest entries of the operator log.
    pub async fn recent_activity(&self, limit: i64) -> Result<Vec<LogEntry>, OpsError> {
        Ok(self.store().recent_operator_log(limit).await?)
    }

    /// Subscribers whose address contains `query`, optionally of one status, with the counts.
    pub async fn search_subscribers(
        &self,
        query: &str,
        status: Option<SubscriberStatus>,
        limit: i64,
    ) -> Result<SubscriberSearch, OpsError> {
        Ok(SubscriberSearch {
            counts: self.store().subscriber_counts().await?,
            found: self
                .store()
                .search_subscribers(query, status, limit)
                .await?,
        })
    }

    /// Bounced subscribers and the most recent failed deliveries with their reasons.
    pub async fn bounce_report(&self, limit: i64) -> Result<BounceReport, OpsError> {
        let mut bounced = self
            .store()
            .search_subscribers("", Some(SubscriberStatus::Bounced), limit)
            .await?;
        bounced.truncate(limit as usize);
        Ok(BounceReport {
            bounced,
            failures: self.store().recent_failures(limit).await?,
        })
    }

    /// Comparisons, newest first, at most `limit`.
    pub async fn recent_comparisons(
        &self,
        limit: usize,
    ) -> Result<Vec<StoredComparison>, OpsError> {
        let mut rows = self.store().list_comparisons(None).await?;
        rows.reverse();
        rows.truncate(limit);
        Ok(rows)
    }

    /// Imports uploaded text: canonical JSON (object or array) or a published page, detected by
    /// its first character. Page text is dated `published_at` (default: now). Nothing is
    /// written when the text does not parse.
    pub async fn import_comparisons(
        &self,
        actor: &Actor,
        name: &str,
        text: &str,
        published_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<Upserted>, OpsError> {
        let ctx = PageContext {
            base_url: self.settings().site.base_url.as_str(),
            published_at: published_at.unwrap_or_else(Utc::now),
        };
        let (source, comparisons) =
            parse_text(text, &ctx).map_err(|e| OpsError::invalid(name, e.to_string()))?;
        let done = self
            .store()
            .upsert_comparisons(
                &comparisons,
                source,
                source == crate::store::comparisons::Source::Page && published_at.is_none(),
            )
            .await?;
        let slugs: Vec<&str> = done.iter().map(|d| d.slug.as_str()).collect();
        self.log(actor, Activity::ComparisonsImport, None, &slugs.join(","))
            .await?;
        Ok(done)
    }

    /// Every subscriber as CSV (the same writer as `verdicts subscribers export`); logged.
    pub async fn export_subscribers_csv(&self, actor: &Actor) -> Result<Vec<u8>, OpsError> {
        let mut bytes = Vec::new();
        self.export_subscribers(actor, &mut bytes).await?;
        Ok(bytes)
    }
}
