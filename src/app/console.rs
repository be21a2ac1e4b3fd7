//! What the operator console reads and imports beyond issue and subscriber actions: the
//! dashboard's figures, subscriber search, the bounces page, comparison uploads, the CSV export
//! and the operator log. Each page's data comes from one method here, so a page can be extended
//! (bounce and complaint events, say) without touching the console's handlers. Long lists come
//! a [`Page`] at a time.

use chrono::{DateTime, Utc};

use super::issues::IssueReport;
use super::{Actor, App, OpsError};
use crate::issues::IssueKey;
use crate::store::comparisons::StoredComparison;
use crate::store::history::{BounceEvent, ReaderHistory};
use crate::store::operators::LogEntry;
use crate::store::overview::{FailureKey, Keyset, RecentFailure, Window};
use crate::store::subscribers::SubscriberRow;
use crate::subscribers::SubscriberStatus;

/// Rows per page of the console's lists.
pub const PAGE_SIZE: usize = 100;

/// One page of a newest-first list, and where it stands: the keys the links to the pages
/// beside it start from ([`Keyset::Before`] `newer`, [`Keyset::After`] `older`).
#[derive(Debug, Clone)]
pub struct Page<T, K> {
    /// The rows, newest first.
    pub rows: Vec<T>,
    /// Rows in the whole list.
    pub total: i64,
    /// How many rows of the list come before this page's first.
    pub skipped: i64,
    /// The page before this one starts before this key; `None` on the first page.
    pub newer: Option<K>,
    /// The page after this one starts after this key; `None` on the last page.
    pub older: Option<K>,
}

impl<T, K> Page<T, K> {
    /// A stored window as a page, `key` naming a row's place.
    fn of(window: Window<T>, key: impl Fn(&T) -> K) -> Page<T, K> {
        let Window { rows, total, newer } = window;
        let shown = rows.len() as i64;
        Page {
            newer: rows.first().filter(|_| newer > 0).map(&key),
            older: rows.last().filter(|_| newer + shown < total).map(&key),
            rows,
            total,
            skipped: newer,
        }
    }

    /// Whether this is the list's first page (the newest rows).
    pub fn is_first(&self) -> bool {
        self.skipped == 0
    }
}

/// The bounces page: subscribers whose mailbox rejected us, and recent failed deliveries.
#[derive(Debug, Clone)]
pub struct BounceReport {
    pub bounced: Page<SubscriberRow, i64>,
    pub failures: Page<RecentFailure, FailureKey>,
}

/// The subscribers page: counts by status and a page of the subscribers found.
#[derive(Debug, Clone)]
pub struct SubscriberSearch {
    pub counts: Vec<(SubscriberStatus, i64)>,
    pub found: Page<SubscriberRow, i64>,
    /// The pause and last signup of the readers found, by id.
    pub states: std::collections::HashMap<i64, crate::store::subscribers::manage::ReaderState>,
    /// The categories of the readers found who chose some, by id.
    pub categories: std::collections::HashMap<i64, Vec<String>>,
}

/// What the console's reader page shows beside the history: what the reader set on their
/// manage page and what they were asked.
#[derive(Debug, Clone, Default)]
pub struct ReaderSettings {
    pub state: crate::store::subscribers::manage::ReaderState,
    /// Their categories (empty: everything).
    pub categories: Vec<String>,
    /// A new address they gave and have not confirmed yet.
    pub pending_email: Option<String>,
    /// The deadline of a repermission they have not answered.
    pub repermission_deadline: Option<chrono::DateTime<chrono::Utc>>,
}

/// The dashboard's figures beside the issues.
#[derive(Debug, Clone)]
pub struct DashboardFigures {
    /// Subscribers by status, every status (from the counters: no table scan).
    pub subscribers: Vec<(SubscriberStatus, i64)>,
    /// Comparisons in no issue yet and published before now, oldest first: what the next
    /// issue takes (up to `newsletter.max_items`).
    pub waiting: Vec<StoredComparison>,
    /// `newsletter.max_items`.
    pub max_items: u32,
}

impl App {
    /// The totals `/metrics` reports (kept by counters: no table is counted).
    pub async fn metric_totals(&self) -> anyhow::Result<crate::store::metrics::Totals> {
        self.store().metric_totals().await
    }

    /// Bounce and complaint figures per issue (`/metrics`).
    pub async fn issue_bounce_stats(
        &self,
    ) -> anyhow::Result<Vec<crate::store::bounces::IssueBounceStats>> {
        self.store().issue_bounce_stats().await
    }

    /// Renders of issue sets so far (`/metrics`: categories cost one render per distinct set).
    pub async fn issue_renders_total(&self) -> anyhow::Result<i64> {
        self.store().issue_renders_total().await
    }

    /// Votes and clicks in all (`/metrics`).
    pub async fn engagement_totals(&self) -> anyhow::Result<(i64, i64)> {
        self.store().engagement_totals().await
    }

    /// Subscribers by status and the comparisons waiting for the next issue.
    pub async fn dashboard_figures(
        &self,
        now: DateTime<Utc>,
    ) -> Result<DashboardFigures, OpsError> {
        Ok(DashboardFigures {
            subscribers: self.store().subscriber_counts().await?,
            waiting: self.store().unissued_comparisons(now, u32::MAX).await?,
            max_items: self.settings().newsletter.max_items,
        })
    }

    /// One reader and their history; `None` when there is no subscriber `id`.
    pub async fn reader(&self, id: i64) -> Result<Option<ReaderHistory>, OpsError> {
        Ok(self.store().reader_history(id).await?)
    }

    /// What one reader set on their manage page and what they were asked.
    pub async fn reader_settings(&self, id: i64) -> Result<ReaderSettings, OpsError> {
        let store = self.store();
        Ok(ReaderSettings {
            state: store
                .reader_states(&[id])
                .await?
                .remove(&id)
                .unwrap_or_default(),
            categories: store.subscriber_categories(id).await?,
            pending_email: store.open_email_change(id).await?,
            repermission_deadline: store.repermission_deadline(id).await?,
        })
    }

    /// A page of the bounce and complaint reports, newest first.
    pub async fn bounce_events(&self, at: Keyset<i64>) -> Result<Page<BounceEvent, i64>, OpsError> {
        let window = self.store().bounce_events(at, PAGE_SIZE as i64).await?;
        Ok(Page::of(window, |e| e.id))
    }

    /// When `schedule.cron` fires next, in `schedule.timezone`.
    pub fn next_scheduled_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let schedule = &self.settings().schedule;
        crate::schedule::fires::next_fire(&schedule.cron.schedule, schedule.timezone.0, now)
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

    /// A page of the whole operator log, newest first.
    pub async fn operator_log(&self, at: Keyset<i64>) -> Result<Page<LogEntry, i64>, OpsError> {
        let window = self.store().operator_log_page(at, PAGE_SIZE as i64).await?;
        Ok(Page::of(window, |e| e.id))
    }

    /// A page of the subscribers whose address contains `query`, optionally of one status,
    /// newest first, with the counts by status.
    pub async fn search_subscribers(
        &self,
        query: &str,
        status: Option<SubscriberStatus>,
        at: Keyset<i64>,
    ) -> Result<SubscriberSearch, OpsError> {
        let window = self
            .store()
            .search_subscribers(query, status, at, PAGE_SIZE as i64)
            .await?;
        let ids: Vec<i64> = window.rows.iter().map(|s| s.id).collect();
        Ok(SubscriberSearch {
            counts: self.store().subscriber_counts().await?,
            states: self.store().reader_states(&ids).await?,
            categories: self.store().categories_of(&ids).await?,
            found: Page::of(window, |s| s.id),
        })
    }

    /// A page of the bounced subscribers and one of the failed deliveries with their reasons,
    /// newest first.
    pub async fn bounce_report(
        &self,
        bounced_at: Keyset<i64>,
        failures_at: Keyset<FailureKey>,
    ) -> Result<BounceReport, OpsError> {
        let bounced = self
            .store()
            .search_subscribers(
                "",
                Some(SubscriberStatus::Bounced),
                bounced_at,
                PAGE_SIZE as i64,
            )
            .await?;
        let failures = self
            .store()
            .recent_failures(failures_at, PAGE_SIZE as i64)
            .await?;
        Ok(BounceReport {
            bounced: Page::of(bounced, |s| s.id),
            failures: Page::of(failures, |f| FailureKey {
                at: f.at,
                delivery_id: f.delivery_id,
            }),
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

    /// Every subscriber as CSV (the same writer as `verdicts subscribers export`); logged.
    pub async fn export_subscribers_csv(&self, actor: &Actor) -> Result<Vec<u8>, OpsError> {
        let mut bytes = Vec::new();
        self.export_subscribers(actor, &mut bytes).await?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(rows: std::ops::Range<i64>, total: i64, newer: i64) -> Page<i64, i64> {
        Page::of(
            Window {
                rows: rows.rev().collect(),
                total,
                newer,
            },
            |&id| id,
        )
    }

    #[test]
    fn pages_link_to_the_pages_beside_them() {
        // 250 rows, ids 1..=250, newest first.
        let first = page(151..251, 250, 0);
        assert_eq!((first.newer, first.older), (None, Some(151)));
        assert!(first.is_first());
        let middle = page(51..151, 250, 100);
        assert_eq!((middle.newer, middle.older), (Some(150), Some(51)));
        let last = page(1..51, 250, 200);
        assert_eq!((last.newer, last.older), (Some(50), None));
        let only = page(1..4, 3, 0);
        assert_eq!((only.newer, only.older), (None, None));
        // Past the end (a stale link): no rows, no links; the caller offers the first page.
        let empty = page(0..0, 250, 0);
        assert_eq!((empty.newer, empty.older), (None, None));
    }
}
