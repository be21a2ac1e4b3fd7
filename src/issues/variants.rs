//! Categories in delivery: which of an issue's comparisons a reader who chose categories gets,
//! and the rendering of each distinct set, once.
//!
//! A reader with a choice gets the comparisons that have a tool in one of their categories
//! (none chosen: everything). When a send starts, the ledger snapshot writes each reader's set
//! as a [`Variant`] (`deliveries.variant`; NULL for the whole issue, and a reader with no
//! match is skipped with [`crate::delivery::status::SkipReason::NoMatchingComparisons`]).
//! Every distinct set is rendered once and kept in `issue_variants`, so every worker and a
//! restart reuse it: rendering costs one per set, never one per reader.

use std::fmt;

use anyhow::Context;

use super::freeze::previous_tallies;
use crate::comparisons::Comparison;
use crate::config::Settings;
use crate::render::{IssueInput, RenderedIssue, Renderer};
use crate::store::Store;
use crate::store::issues::IssueRow;

/// A set of an issue's comparisons: one flag per position of the issue, `1` when the reader
/// gets it (`"101"`: the first and the third of three). Never all `1` (that is the whole
/// issue) nor all `0` (that reader is skipped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant(String);

impl Variant {
    /// Reads a stored variant of an issue of `items` comparisons.
    pub fn parse(s: &str, items: usize) -> Option<Variant> {
        let ok = s.len() == items
            && s.bytes().all(|b| b == b'0' || b == b'1')
            && s.contains('1')
            && s.contains('0');
        ok.then(|| Variant(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The issue's positions this variant carries, in order.
    pub fn positions(&self) -> Vec<u16> {
        self.0
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'1')
            .map(|(i, _)| i as u16)
            .collect()
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tool categories of each comparison of an issue, by position: what the ledger snapshot
/// matches the readers' choices against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryMap {
    /// Per position, the distinct categories of its tools.
    pub positions: Vec<Vec<String>>,
}

impl CategoryMap {
    pub fn of(comparisons: &[Comparison]) -> CategoryMap {
        CategoryMap {
            positions: comparisons
                .iter()
                .map(|c| {
                    let mut cats: Vec<String> =
                        c.tools().iter().map(|t| t.category.clone()).collect();
                    cats.sort();
                    cats.dedup();
                    cats
                })
                .collect(),
        }
    }

    /// The flags of a reader who chose `chosen` (an empty choice gets everything).
    pub fn flags_for(&self, chosen: &[String]) -> String {
        self.positions
            .iter()
            .map(|cats| {
                if chosen.is_empty() || cats.iter().any(|c| chosen.contains(c)) {
                    '1'
                } else {
                    '0'
                }
            })
            .collect()
    }

    /// The flags of the whole issue (`"111"`).
    pub fn everything(&self) -> String {
        "1".repeat(self.positions.len())
    }

    /// The flags of nothing (`"000"`).
    pub fn nothing(&self) -> String {
        "0".repeat(self.positions.len())
    }
}

/// The comparisons of an issue, in its order.
pub async fn issue_comparisons(store: &Store, issue_id: i64) -> anyhow::Result<Vec<Comparison>> {
    let mut out = Vec::new();
    for (id, slug) in store.issue_comparison_ids(issue_id).await? {
        out.push(
            store
                .comparison_by_id(id)
                .await?
                .with_context(|| format!("comparison {slug} of issue {issue_id} is missing"))?,
        );
    }
    Ok(out)
}

/// The rendering of `variant` of `issue`: the stored one, or rendered now and stored (the
/// first one stored wins a race; every worker then sends that one).
pub async fn ensure_variant(
    store: &Store,
    renderer: &Renderer,
    settings: &Settings,
    issue: &IssueRow,
    variant: &Variant,
) -> anyhow::Result<RenderedIssue> {
    if let Some(stored) = store.issue_variant(issue.id, variant.as_str()).await? {
        return Ok(stored);
    }
    let number = issue
        .number
        .with_context(|| format!("issue {} has no content", issue.week))?;
    let all = issue_comparisons(store, issue.id).await?;
    let positions = variant.positions();
    let chosen: Vec<Comparison> = positions
        .iter()
        .map(|p| {
            all.get(usize::from(*p))
                .cloned()
                .with_context(|| format!("issue {} has no comparison at {p}", issue.week))
        })
        .collect::<anyhow::Result<_>>()?;
    let rendered = renderer
        .render_issue(
            settings,
            &IssueInput {
                number,
                week: issue.week,
                comparisons: &chosen,
                secret: &settings.secret_key()?,
                previous: &previous_tallies(store, number).await?,
                positions: Some(&positions),
            },
        )
        .with_context(|| format!("rendering issue #{number} for the set {variant}"))?;
    tracing::info!(
        issue_id = issue.id,
        number,
        %variant,
        "issue variant rendered"
    );
    store
        .store_issue_variant(issue.id, variant.as_str(), &rendered)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_proper_sets_of_the_issue() {
        assert_eq!(Variant::parse("101", 3).unwrap().positions(), [0, 2]);
        for bad in ["111", "000", "10", "1a1", ""] {
            assert!(Variant::parse(bad, 3).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_choice_matches_any_tool_of_a_comparison() {
        let map = CategoryMap {
            positions: vec![
                vec!["Chat".into(), "Code".into()],
                vec!["Image".into()],
                vec!["Code".into()],
            ],
        };
        assert_eq!(map.flags_for(&["Code".into()]), "101");
        assert_eq!(map.flags_for(&["Image".into(), "Chat".into()]), "110");
        assert_eq!(map.flags_for(&["Audio".into()]), map.nothing());
        assert_eq!(map.flags_for(&[]), map.everything());
    }
}
