//! Creating (freezing) and previewing the issue of a week.

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::comparisons::Comparison;
use crate::config::Settings;
use crate::issues::IsoWeek;
use crate::render::{IssueInput, ReaderTally, RenderedIssue, Renderer};
use crate::store::Store;
use crate::store::issues::{InsertIssueError, IssueRow, NewIssue};

/// The week an issue made now would cover by default: the last complete week in
/// `schedule.timezone` (what the Monday-morning send carries).
pub fn default_week(now: DateTime<Utc>, tz: Tz) -> IsoWeek {
    IsoWeek::containing(now, tz).previous()
}

/// The readers' votes on the comparisons of the issue before `number`, for its short block.
pub(super) async fn previous_tallies(
    store: &Store,
    number: i64,
) -> anyhow::Result<Vec<ReaderTally>> {
    let Some(previous) = store.get_issue_by_number(number - 1).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    // An issue's positions are its items in order (see `Store::insert_issue`).
    for (position, (id, _)) in store
        .issue_comparison_ids(previous.id)
        .await?
        .into_iter()
        .enumerate()
    {
        let counts = store.vote_counts(id).await?;
        if counts.voters == 0 {
            continue;
        }
        let Some(c) = store.comparison_by_id(id).await? else {
            continue;
        };
        out.push(ReaderTally {
            title: c.title().to_string(),
            url: c.url().to_string(),
            number: number - 1,
            position: u16::try_from(position)?,
            tools: c
                .tools()
                .iter()
                .zip(counts.tools)
                .map(|(t, n)| (t.name.clone(), n.ship, n.skip))
                .collect(),
            voters: counts.voters,
        });
    }
    Ok(out)
}

/// Whether [`create_issue`] made the issue or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Existing,
}

/// Creates the issue of `week` (or finds the one that exists): selects the comparisons, renders
/// once, and stores subject, HTML, text and items in one transaction. A week with nothing new
/// leaves nothing behind: `None`, nothing written (the scheduler keeps its own record of its
/// fires). Safe to call from several processes at once: the database decides.
pub async fn create_issue(
    store: &Store,
    renderer: &Renderer,
    settings: &Settings,
    week: IsoWeek,
) -> anyhow::Result<Option<(IssueRow, Created)>> {
    let tz = settings.schedule.timezone.0;
    let mut last_conflict = String::new();
    for _ in 0..5 {
        if let Some(existing) = store.get_issue_by_week(week).await? {
            // An issue cancelled before any delivery released its comparisons and number:
            // its row only keeps the week, which is made again now.
            let released = existing.status == crate::issues::IssueStatus::Cancelled
                && existing.number.is_none()
                && existing.items.is_empty();
            if !(released && store.drop_released_issue(existing.id).await?) {
                return Ok(Some((existing, Created::Existing)));
            }
            tracing::info!(%week, "the week's cancelled issue is made again");
        }
        let cutoff = week.end(tz);
        let items = store
            .unissued_comparisons(cutoff, settings.newsletter.max_items)
            .await
            .with_context(|| format!("selecting comparisons for week {week}"))?;
        let result = if items.is_empty() {
            tracing::info!(%week, "nothing new this week: no issue, no email");
            return Ok(None);
        } else {
            let number = store.next_issue_number().await?;
            let comparisons: Vec<Comparison> = items.iter().map(|s| s.comparison.clone()).collect();
            let rendered = renderer
                .render_issue(
                    settings,
                    &IssueInput {
                        number,
                        week,
                        comparisons: &comparisons,
                        secret: &settings.secret_key()?,
                        previous: &previous_tallies(store, number).await?,
                        positions: None,
                    },
                )
                .with_context(|| format!("rendering issue #{number} for week {week}"))?;
            store
                .insert_issue(NewIssue {
                    week,
                    cutoff_at: cutoff,
                    content: Some((number, &rendered, &items)),
                })
                .await
        };
        match result {
            Ok(issue) => {
                tracing::info!(
                    %week,
                    number = issue.number,
                    items = issue.items.len(),
                    status = %issue.status,
                    "issue created"
                );
                return Ok(Some((issue, Created::New)));
            }
            Err(InsertIssueError::Conflict(why)) => {
                tracing::debug!(%week, %why, "issue creation raced; trying again");
                last_conflict = why;
            }
            Err(InsertIssueError::Other(e)) => return Err(e),
        }
    }
    anyhow::bail!("creating the issue for week {week} kept conflicting: {last_conflict}")
}

/// What an issue of a week looks like: the frozen one if it exists, else what would be frozen now.
#[derive(Debug, Clone)]
pub struct Preview {
    pub week: IsoWeek,
    pub number: i64,
    pub rendered: RenderedIssue,
    pub items: Vec<String>,
    /// True when this is the stored, frozen issue.
    pub frozen: bool,
}

/// `None` when the week has nothing to send.
pub async fn preview_issue(
    store: &Store,
    renderer: &Renderer,
    settings: &Settings,
    week: IsoWeek,
) -> anyhow::Result<Option<Preview>> {
    if let Some(issue) = store.get_issue_by_week(week).await? {
        return Ok(
            match (issue.number, issue.subject, issue.html, issue.text) {
                (Some(number), Some(subject), Some(html), Some(text)) => Some(Preview {
                    week,
                    number,
                    rendered: RenderedIssue {
                        subject,
                        html,
                        text,
                    },
                    items: issue.items,
                    frozen: true,
                }),
                _ => None,
            },
        );
    }
    let items = store
        .unissued_comparisons(
            week.end(settings.schedule.timezone.0),
            settings.newsletter.max_items,
        )
        .await?;
    if items.is_empty() {
        return Ok(None);
    }
    let number = store.next_issue_number().await?;
    let comparisons: Vec<Comparison> = items.iter().map(|s| s.comparison.clone()).collect();
    let rendered = renderer.render_issue(
        settings,
        &IssueInput {
            number,
            week,
            comparisons: &comparisons,
            secret: &settings.secret_key()?,
            previous: &previous_tallies(store, number).await?,
            positions: None,
        },
    )?;
    Ok(Some(Preview {
        week,
        number,
        rendered,
        items: comparisons.iter().map(|c| c.slug().to_string()).collect(),
        frozen: false,
    }))
}
