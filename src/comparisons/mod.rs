//! Comparisons: the content of the newsletter.
//!
//! A [`Comparison`] is one published "A vs B" page, checked once at the edge: exactly two tools,
//! four personas × two reviews, scores 0–100, panel counts that agree with the reviews. It comes
//! from the canonical JSON ([`Comparison::from_json_value`]) or from the text of a published page
//! ([`Comparison::from_page_text`], in [`page`]); everything after that trusts it.

pub mod import;
pub mod page;

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::text::forbidden_char;

/// Longest title, tagline, pricing and similar one-line field we accept.
pub const MAX_LINE: usize = 500;
/// Longest description or review text we accept.
pub const MAX_TEXT: usize = 20_000;

/// Input that is not a valid comparison; `field` says where (`tools[1].panel.ship`, `line 42`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidComparison {
    pub field: String,
    pub message: String,
}

impl InvalidComparison {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidComparison {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One of the four reviewers of the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Persona {
    Builder,
    Skeptic,
    Futurist,
    Founder,
}

impl Persona {
    /// In the order the site shows them.
    pub const ALL: [Persona; 4] = [
        Persona::Builder,
        Persona::Skeptic,
        Persona::Futurist,
        Persona::Founder,
    ];

    /// The heading used on the site: `Builder`.
    pub fn title(self) -> &'static str {
        match self {
            Persona::Builder => "Builder",
            Persona::Skeptic => "Skeptic",
            Persona::Futurist => "Futurist",
            Persona::Founder => "Founder",
        }
    }
}

impl fmt::Display for Persona {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// A reviewer's call on one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ship,
    Skip,
}

impl Verdict {
    pub fn parse(s: &str) -> Option<Verdict> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ship" => Some(Verdict::Ship),
            "skip" => Some(Verdict::Skip),
            _ => None,
        }
    }
}

/// The panel's overall call on one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelVerdict {
    Ship,
    Mixed,
    Skip,
}

impl PanelVerdict {
    pub fn parse(s: &str) -> Option<PanelVerdict> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ship" => Some(PanelVerdict::Ship),
            "mixed" => Some(PanelVerdict::Mixed),
            "skip" => Some(PanelVerdict::Skip),
            _ => None,
        }
    }

    /// `Ship`, `Mixed`, `Skip` as the site writes them.
    pub fn label(self) -> &'static str {
        match self {
            PanelVerdict::Ship => "Ship",
            PanelVerdict::Mixed => "Mixed",
            PanelVerdict::Skip => "Skip",
        }
    }
}

/// The panel summary of one tool: its verdict and how many reviewers said ship or skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    pub verdict: PanelVerdict,
    pub ship: u32,
    pub skip: u32,
}

impl Panel {
    /// Share of ship votes, rounded, as the site shows it ("Panel ship 50%").
    pub fn ship_percent(&self) -> u32 {
        let total = self.ship + self.skip;
        (self.ship * 100 + total / 2)
            .checked_div(total)
            .unwrap_or(0)
    }
}

/// One of the two tools of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    pub initial: String,
    pub category: String,
    pub tagline: String,
    pub description: String,
    pub entry: String,
    pub pricing: String,
    pub best_for: String,
    pub panel: Panel,
    #[serde(default)]
    pub community: Option<String>,
}

/// One reviewer's score and call on one tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub persona: Persona,
    /// 0 or 1: which of the two tools.
    pub tool: usize,
    pub score: u32,
    pub verdict: Verdict,
    pub text: String,
}

/// The canonical JSON shape, as received, before any rule is checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComparison {
    pub slug: String,
    pub title: String,
    pub url: String,
    pub published_at: DateTime<Utc>,
    pub tools: Vec<Tool>,
    pub reviews: Vec<Review>,
}

/// A checked comparison. Only [`TryFrom<RawComparison>`] (and the page parser, which goes
/// through it) builds one, so holding one means every rule above holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    slug: String,
    title: String,
    url: String,
    published_at: DateTime<Utc>,
    tools: [Tool; 2],
    reviews: Vec<Review>,
}

impl Comparison {
    pub fn slug(&self) -> &str {
        &self.slug
    }
    pub fn title(&self) -> &str {
        &self.title
    }
    pub fn url(&self) -> &str {
        &self.url
    }
    pub fn published_at(&self) -> DateTime<Utc> {
        self.published_at
    }
    pub fn tools(&self) -> &[Tool; 2] {
        &self.tools
    }
    /// Eight reviews, ordered by persona (builder, skeptic, futurist, founder), then tool.
    pub fn reviews(&self) -> &[Review] {
        &self.reviews
    }
    /// The review of `persona` for tool `tool` (always present).
    pub fn review(&self, persona: Persona, tool: usize) -> &Review {
        self.reviews
            .iter()
            .find(|r| r.persona == persona && r.tool == tool)
            .expect("a checked comparison has every review")
    }

    /// The same comparison published at another time (stored precision: milliseconds).
    pub fn with_published_at(mut self, at: DateTime<Utc>) -> Comparison {
        self.published_at = truncate_to_millis(at);
        self
    }

    /// Parses one comparison from canonical JSON; errors name the field path.
    pub fn from_json_value(value: serde_json::Value) -> Result<Comparison, InvalidComparison> {
        let raw: RawComparison = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "(top level)".into()
            } else {
                path
            };
            InvalidComparison::new(field, e.into_inner().to_string())
        })?;
        Comparison::try_from(raw)
    }

    /// The canonical JSON of this comparison (what `POST /api/comparisons` accepts).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a comparison always serialises")
    }

    /// Slug derived from a title, the way the site builds page addresses.
    pub fn slug_for_title(title: &str) -> String {
        slug::slugify(title)
    }
}

/// Times are stored with millisecond precision; keep the document and the column in step.
fn truncate_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::DurationRound;
    t.duration_trunc(chrono::TimeDelta::milliseconds(1))
        .unwrap_or(t)
}

fn check_line(field: &str, value: &str) -> Result<String, InvalidComparison> {
    let value = value.trim();
    if value.is_empty() {
        return Err(InvalidComparison::new(field, "must not be empty"));
    }
    if value.chars().count() > MAX_LINE {
        return Err(InvalidComparison::new(
            field,
            format!("longer than {MAX_LINE} characters"),
        ));
    }
    if value.chars().any(forbidden_char) {
        return Err(InvalidComparison::new(
            field,
            "must be one line without control or private-use characters",
        ));
    }
    Ok(value.to_string())
}

fn check_text(field: &str, value: &str) -> Result<String, InvalidComparison> {
    let value = value.trim();
    if value.is_empty() {
        return Err(InvalidComparison::new(field, "must not be empty"));
    }
    if value.chars().count() > MAX_TEXT {
        return Err(InvalidComparison::new(
            field,
            format!("longer than {MAX_TEXT} characters"),
        ));
    }
    let value = value.replace("\r\n", "\n");
    if value
        .chars()
        .any(|c| forbidden_char(c) && c != '\n' && c != '\t')
    {
        return Err(InvalidComparison::new(
            field,
            "contains control or private-use characters",
        ));
    }
    Ok(value)
}

fn check_slug(slug: &str) -> Result<String, InvalidComparison> {
    let ok = !slug.is_empty()
        && slug.len() <= 200
        && slug.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if ok {
        Ok(slug.to_string())
    } else {
        Err(InvalidComparison::new(
            "slug",
            format!("{slug:?} must be lowercase letters and digits separated by single dashes"),
        ))
    }
}

fn check_url(url: &str) -> Result<String, InvalidComparison> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(url.to_string())
        }
        Ok(_) => Err(InvalidComparison::new(
            "url",
            format!("{url:?} must be an absolute http(s) URL"),
        )),
        Err(e) => Err(InvalidComparison::new("url", format!("{url:?}: {e}"))),
    }
}

fn check_tool(i: usize, tool: Tool) -> Result<Tool, InvalidComparison> {
    let at = |f: &str| format!("tools[{i}].{f}");
    let name = check_line(&at("name"), &tool.name)?;
    let initial = check_line(&at("initial"), &tool.initial)?;
    if initial.chars().count() > 2 {
        return Err(InvalidComparison::new(
            at("initial"),
            format!("{initial:?} must be one or two characters"),
        ));
    }
    let community = match tool.community {
        Some(c) if !c.trim().is_empty() => Some(check_line(&at("community"), &c)?),
        _ => None,
    };
    Ok(Tool {
        category: check_line(&at("category"), &tool.category)?,
        tagline: check_line(&at("tagline"), &tool.tagline)?,
        description: check_text(&at("description"), &tool.description)?,
        entry: check_line(&at("entry"), &tool.entry)?,
        pricing: check_line(&at("pricing"), &tool.pricing)?,
        best_for: check_line(&at("best_for"), &tool.best_for)?,
        panel: tool.panel,
        community,
        name,
        initial,
    })
}

impl TryFrom<RawComparison> for Comparison {
    type Error = InvalidComparison;

    fn try_from(raw: RawComparison) -> Result<Self, Self::Error> {
        let slug = check_slug(raw.slug.trim())?;
        let title = check_line("title", &raw.title)?;
        let url = check_url(raw.url.trim())?;
        if raw.tools.len() != 2 {
            return Err(InvalidComparison::new(
                "tools",
                format!("must hold exactly two tools, found {}", raw.tools.len()),
            ));
        }
        let mut tools = raw
            .tools
            .into_iter()
            .enumerate()
            .map(|(i, t)| check_tool(i, t));
        let tools = [tools.next().unwrap()?, tools.next().unwrap()?];

        if raw.reviews.len() != 8 {
            return Err(InvalidComparison::new(
                "reviews",
                format!(
                    "must hold 8 reviews (4 personas × 2 tools), found {}",
                    raw.reviews.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        let mut reviews = Vec::with_capacity(8);
        for (i, review) in raw.reviews.into_iter().enumerate() {
            let at = |f: &str| format!("reviews[{i}].{f}");
            if review.tool > 1 {
                return Err(InvalidComparison::new(
                    at("tool"),
                    format!("must be 0 or 1, found {}", review.tool),
                ));
            }
            if review.score > 100 {
                return Err(InvalidComparison::new(
                    at("score"),
                    format!("must be between 0 and 100, found {}", review.score),
                ));
            }
            if !seen.insert((review.persona, review.tool)) {
                return Err(InvalidComparison::new(
                    at("persona"),
                    format!(
                        "a second {} review of tool {}",
                        review.persona.title().to_lowercase(),
                        review.tool
                    ),
                ));
            }
            let text = check_text(&at("text"), &review.text)?;
            reviews.push(Review { text, ..review });
        }
        reviews.sort_by_key(|r| (r.persona, r.tool));

        for (i, tool) in tools.iter().enumerate() {
            let ship = reviews
                .iter()
                .filter(|r| r.tool == i && r.verdict == Verdict::Ship)
                .count() as u32;
            let skip = 4 - ship;
            if tool.panel.ship != ship || tool.panel.skip != skip {
                return Err(InvalidComparison::new(
                    format!("tools[{i}].panel"),
                    format!(
                        "says {} ship / {} skip but the reviews say {ship} ship / {skip} skip",
                        tool.panel.ship, tool.panel.skip
                    ),
                ));
            }
            let contradicts = match tool.panel.verdict {
                PanelVerdict::Ship => ship < skip,
                PanelVerdict::Skip => skip < ship,
                PanelVerdict::Mixed => ship == 0 || skip == 0,
            };
            if contradicts {
                return Err(InvalidComparison::new(
                    format!("tools[{i}].panel.verdict"),
                    format!(
                        "{} contradicts {ship} ship / {skip} skip",
                        tool.panel.verdict.label()
                    ),
                ));
            }
        }

        Ok(Comparison {
            slug,
            title,
            url,
            published_at: truncate_to_millis(raw.published_at),
            tools,
            reviews,
        })
    }
}

#[cfg(test)]
mod tests;
