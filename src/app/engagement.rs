//! Readers talk back: votes from the inbox, click counts, and the tallies shown to operators,
//! the comparison site and the next issue. Who voted is never stored (see
//! [`crate::engagement`]); a link that is not genuine, or whose reader has left or been erased,
//! is `None` (404 at the edge) and writes nothing.

use serde::Serialize;

use super::{App, OpsError};
use crate::engagement::{Choice, VoteClaim, verify_click_token, verify_vote_token, voter_hash};
use crate::issues::IssueKey;
use crate::subscribers::SubscriberStatus;

/// What a genuine vote link asks, for its page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteLink {
    pub comparison_title: String,
    /// The comparison page itself (not through `/r/`).
    pub comparison_url: String,
    pub tool: String,
    pub choice: Choice,
}

/// One tool's reader votes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolTally {
    pub name: String,
    pub ship: i64,
    pub skip: i64,
}

/// The reader votes on one comparison (`GET /votes/{slug}.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tallies {
    pub slug: String,
    pub tools: Vec<ToolTally>,
    /// Readers who voted on at least one of its tools.
    pub voters: i64,
}

/// Clicks on one comparison link of an issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkEngagement {
    pub url: String,
    pub clicks: i64,
}

/// What readers did with one issue (`GET /api/issues/{id}/engagement`, the console).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Engagement {
    pub links: Vec<LinkEngagement>,
    pub votes: Vec<Tallies>,
}

/// A genuine vote token of a reader who may still vote, resolved.
struct Resolved {
    comparison_id: i64,
    subscriber_id: i64,
    tool: u8,
    link: VoteLink,
}

impl App {
    /// What a vote link says, if it is genuine (signed with this server's key). Reads nothing:
    /// the web layer uses it to count a reader's requests against that reader, and to count a
    /// link that is not genuine against the address that sent it.
    pub fn vote_claim(&self, token: &str) -> Option<VoteClaim> {
        verify_vote_token(self.secret(), token)
    }

    async fn resolve_vote(&self, claim: VoteClaim) -> anyhow::Result<Option<Resolved>> {
        let store = self.store();
        // Erased: no row. Unsubscribed or bounced: no longer a reader.
        if store.subscriber_status(claim.subscriber_id).await? != Some(SubscriberStatus::Confirmed)
        {
            return Ok(None);
        }
        let Some(target) = store.link_target(claim.number, claim.position).await? else {
            return Ok(None);
        };
        let Some(comparison) = store.comparison_by_id(target.comparison_id).await? else {
            return Ok(None);
        };
        let tool = comparison.tools()[usize::from(claim.tool)].name.clone();
        Ok(Some(Resolved {
            comparison_id: target.comparison_id,
            subscriber_id: claim.subscriber_id,
            tool: claim.tool,
            link: VoteLink {
                comparison_title: comparison.title().to_string(),
                comparison_url: comparison.url().to_string(),
                tool,
                choice: claim.choice,
            },
        }))
    }

    /// What a vote link asks (its GET page). Writes nothing: mail scanners follow links.
    pub async fn vote_link(&self, claim: VoteClaim) -> anyhow::Result<Option<VoteLink>> {
        Ok(self.resolve_vote(claim).await?.map(|r| r.link))
    }

    /// Counts a vote: one per reader per tool of a comparison, a second one replaces the first.
    pub async fn cast_vote(&self, claim: VoteClaim) -> anyhow::Result<Option<VoteLink>> {
        let Some(r) = self.resolve_vote(claim).await? else {
            return Ok(None);
        };
        let voter = voter_hash(self.secret(), r.subscriber_id, r.comparison_id);
        self.store()
            .record_vote(r.comparison_id, r.tool, &voter, r.link.choice)
            .await?;
        Ok(Some(r.link))
    }

    /// Where a click link goes. `wanted` is the front end's view (a GET within the client's
    /// quota; a HEAD counts nothing); the click counts only when `tracking.clicks` is on as
    /// well: links sent while it was on keep working after it is turned off, but count nothing,
    /// as `/privacy` then says. A count that cannot be written is logged (rate-limited) and the
    /// reader is sent on all the same: the comparison matters more to them than our counter.
    pub async fn follow_click(&self, token: &str, wanted: bool) -> anyhow::Result<Option<String>> {
        let Some(claim) = verify_click_token(self.secret(), token) else {
            return Ok(None);
        };
        let Some(target) = self
            .store()
            .link_target(claim.number, claim.position)
            .await?
        else {
            return Ok(None);
        };
        if wanted
            && self.counts_clicks()
            && let Err(e) = self
                .store()
                .record_click(target.issue_id, claim.position)
                .await
        {
            crate::log_repeated!(
                warn,
                "click:count",
                e,
                issue_id = target.issue_id,
                position = claim.position,
                "counting a click failed; the reader was sent on"
            );
        }
        Ok(Some(target.url))
    }

    /// Whether clicks on comparison links are counted (`tracking.clicks`).
    pub fn counts_clicks(&self) -> bool {
        self.settings().tracking.clicks
    }

    async fn tallies_of(&self, comparison_id: i64, slug: String) -> anyhow::Result<Tallies> {
        let counts = self.store().vote_counts(comparison_id).await?;
        let names: Vec<String> = match self.store().comparison_by_id(comparison_id).await? {
            Some(c) => c.tools().iter().map(|t| t.name.clone()).collect(),
            None => vec![String::new(), String::new()],
        };
        Ok(Tallies {
            slug,
            tools: names
                .into_iter()
                .zip(counts.tools)
                .map(|(name, c)| ToolTally {
                    name,
                    ship: c.ship,
                    skip: c.skip,
                })
                .collect(),
            voters: counts.voters,
        })
    }

    /// The reader votes on the comparison `slug` (`None`: no such comparison).
    pub async fn vote_tallies(&self, slug: &str) -> anyhow::Result<Option<Tallies>> {
        let Some(stored) = self.store().get_comparison(slug).await? else {
            return Ok(None);
        };
        Ok(Some(self.tallies_of(stored.id, slug.to_string()).await?))
    }

    /// Clicks per comparison link and votes per tool of one issue.
    pub async fn issue_engagement(&self, key: IssueKey) -> Result<Engagement, OpsError> {
        let issue = self.find_issue(key).await?;
        let store = self.store();
        let links = store
            .issue_link_clicks(issue.id)
            .await?
            .into_iter()
            .map(|l| LinkEngagement {
                url: l.url,
                clicks: l.clicks,
            })
            .collect();
        let mut votes = Vec::new();
        for (id, slug) in store.issue_comparison_ids(issue.id).await? {
            votes.push(self.tallies_of(id, slug).await?);
        }
        Ok(Engagement { links, votes })
    }
}
