//! The text of a published comparison page, as captured from the site.
//!
//! The page shows, in order: the title; two tool cards (initial, category, name, tagline, panel
//! verdict and ship %, entry price, description); the Decision table (panel verdict with counts,
//! community, pricing, best for, category, one column per tool); and the reviewer scorecard, one
//! block per persona with a `85/100 · ship` line and a text for each tool. A page carries no slug,
//! URL or date: the caller supplies them. Every error names the line it stopped at.

use chrono::{DateTime, Utc};

use super::{
    Comparison, InvalidComparison, Panel, PanelVerdict, Persona, RawComparison, Review, Tool,
    Verdict,
};

/// The site's footer after the last review, line by line, in order. A capture may lack some of
/// these lines (and may end with the page's `… — Ship or Skip` title line), but anything else
/// after the reviews is an error: nothing on a page is silently dropped.
const FOOTER: [&str; 7] = [
    "Weekly AI Tool Verdicts",
    "Get the next comparison in your inbox",
    "New AI tools ship daily. We compare them before you waste an afternoon.",
    "Bookmarks",
    "Loading bookmarks...",
    "No bookmarks yet",
    "Bookmark tools to save them for later",
];

/// The document title a capture ends with: `A vs B: Which AI Tool Should You Ship? — Ship or Skip`.
fn is_title_line(text: &str) -> bool {
    text.ends_with("— Ship or Skip")
}

/// Whether `rest` — everything after some point of the page — is nothing but the footer: the
/// [`FOOTER`] lines in order (any may be missing), then at most the title line. Review text
/// that happens to read like a footer word (`Bookmarks`) is followed by more review text, so it
/// is not mistaken for the footer.
fn is_footer(rest: &[Line<'_>]) -> bool {
    if rest.is_empty() {
        return false;
    }
    let mut next = 0;
    for (i, line) in rest.iter().enumerate() {
        match FOOTER[next..].iter().position(|f| *f == line.text) {
            Some(offset) => next += offset + 1,
            None if i + 1 == rest.len() && is_title_line(line.text) => {}
            None => return false,
        }
        if next == FOOTER.len() && i + 1 < rest.len() {
            return rest.len() == i + 2 && is_title_line(rest[i + 1].text);
        }
    }
    true
}

/// Where the footer visibly starts even if something follows it: its first two lines.
fn footer_signature(rest: &[Line<'_>]) -> bool {
    rest.len() >= 2 && rest[0].text == FOOTER[0] && rest[1].text == FOOTER[1]
}

/// Checks what follows the last review: nothing, or exactly the footer. An error names the
/// first line that is neither.
fn parse_footer(c: &Cursor<'_>) -> Result<(), InvalidComparison> {
    let rest = &c.lines[c.pos..];
    if rest.is_empty() || is_footer(rest) {
        return Ok(());
    }
    // Name the first line the footer does not explain.
    let mut next = 0;
    for line in rest {
        match FOOTER[next..].iter().position(|f| *f == line.text) {
            Some(offset) => next += offset + 1,
            None if is_title_line(line.text) => {}
            None => {
                return Err(InvalidComparison::new(
                    format!("line {}", line.number),
                    format!(
                        "unexpected text after the reviews: {:?} (only the site's footer may follow the last review)",
                        excerpt(line.text)
                    ),
                ));
            }
        }
    }
    let last = &rest[rest.len() - 1];
    Err(InvalidComparison::new(
        format!("line {}", last.number),
        format!(
            "unexpected text after the page footer: {:?}",
            excerpt(last.text)
        ),
    ))
}

/// At most 80 characters of a line, for error messages.
fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(80).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// Where a page's comparison gets what the page does not carry.
pub struct PageContext<'a> {
    /// `site.base_url`; the comparison URL is `{base_url}/compare/{slug}`.
    pub base_url: &'a str,
    pub published_at: DateTime<Utc>,
}

struct Line<'a> {
    number: usize,
    text: &'a str,
}

struct Cursor<'a> {
    lines: Vec<Line<'a>>,
    pos: usize,
    last_line: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        let lines: Vec<Line<'a>> = text
            .lines()
            .enumerate()
            .map(|(i, l)| Line {
                number: i + 1,
                text: l.trim(),
            })
            .filter(|l| !l.text.is_empty())
            .collect();
        let last_line = text.lines().count().max(1);
        Cursor {
            lines,
            pos: 0,
            last_line,
        }
    }

    fn peek(&self) -> Option<&Line<'a>> {
        self.lines.get(self.pos)
    }

    fn line_no(&self) -> usize {
        self.peek().map_or(self.last_line, |l| l.number)
    }

    fn error(&self, message: impl Into<String>) -> InvalidComparison {
        InvalidComparison::new(format!("line {}", self.line_no()), message)
    }

    fn next(&mut self, what: &str) -> Result<&'a str, InvalidComparison> {
        match self.lines.get(self.pos) {
            Some(line) => {
                self.pos += 1;
                Ok(line.text)
            }
            None => Err(self.error(format!("page ends where {what} was expected"))),
        }
    }

    fn expect(&mut self, literal: &str) -> Result<(), InvalidComparison> {
        match self.peek() {
            Some(l) if l.text == literal => {
                self.pos += 1;
                Ok(())
            }
            Some(l) => Err(self.error(format!("expected {literal:?}, found {:?}", l.text))),
            None => Err(self.error(format!("page ends where {literal:?} was expected"))),
        }
    }

    /// Advances to just past the first line equal to `literal`.
    fn skip_past(&mut self, literal: &str) -> Result<(), InvalidComparison> {
        match self.lines[self.pos..]
            .iter()
            .position(|l| l.text == literal)
        {
            Some(offset) => {
                self.pos += offset + 1;
                Ok(())
            }
            None => Err(self.error(format!("no {literal:?} line found"))),
        }
    }
}

fn parse_percent(text: &str) -> Option<u32> {
    text.strip_suffix('%')?.trim().parse().ok()
}

/// `Ship · 4 ship / 0 skip`.
fn parse_panel(text: &str) -> Option<Panel> {
    let (verdict, counts) = text.split_once('·')?;
    let verdict = PanelVerdict::parse(verdict)?;
    let (ship, skip) = counts.split_once('/')?;
    let ship = ship.trim().strip_suffix("ship")?.trim().parse().ok()?;
    let skip = skip.trim().strip_suffix("skip")?.trim().parse().ok()?;
    Some(Panel {
        verdict,
        ship,
        skip,
    })
}

/// `85/100 · ship` → (85, Ship). A score outside 0–100 is returned as is; the caller rejects it.
fn parse_score(text: &str) -> Option<(u32, Verdict)> {
    let (score, rest) = text.split_once("/100")?;
    let score = score.trim().parse().ok()?;
    let verdict = Verdict::parse(rest.trim().trim_start_matches('·'))?;
    Some((score, verdict))
}

struct Card<'a> {
    initial: &'a str,
    category: &'a str,
    name: &'a str,
    tagline: &'a str,
    verdict: PanelVerdict,
    percent: u32,
    entry: &'a str,
    community: Option<&'a str>,
    description: String,
    line: usize,
}

fn parse_card<'a>(
    c: &mut Cursor<'a>,
    ends_at: &[&str],
    next_is_card: bool,
) -> Result<Card<'a>, InvalidComparison> {
    let line = c.line_no();
    let initial = c.next("a tool's initial")?;
    if initial.chars().count() > 2 {
        return Err(InvalidComparison::new(
            format!("line {line}"),
            format!("expected a tool card starting with its initial, found {initial:?}"),
        ));
    }
    let category = c.next("the tool's category")?;
    let name = c.next("the tool's name")?;
    let tagline = c.next("the tool's tagline")?;
    let verdict_text = c.next("the panel verdict (Ship, Mixed or Skip)")?;
    let verdict = PanelVerdict::parse(verdict_text).ok_or_else(|| {
        InvalidComparison::new(
            format!("line {}", c.lines[c.pos - 1].number),
            format!("expected a panel verdict (Ship, Mixed or Skip), found {verdict_text:?}"),
        )
    })?;
    let percent_text = c.next("the panel ship percentage")?;
    let percent = parse_percent(percent_text).ok_or_else(|| {
        InvalidComparison::new(
            format!("line {}", c.lines[c.pos - 1].number),
            format!("expected a percentage such as 75%, found {percent_text:?}"),
        )
    })?;
    c.expect("Panel ship")?;
    c.expect("Community")?;
    // Between "Community" and "Entry": an optional community figure, then the entry price.
    let mut between = Vec::new();
    loop {
        let text = c.next("the \"Entry\" label")?;
        if text == "Entry" {
            break;
        }
        if between.len() > 3 {
            return Err(c.error("expected the entry price followed by \"Entry\""));
        }
        between.push(text);
    }
    let entry = between
        .pop()
        .ok_or_else(|| c.error("the entry price is missing before \"Entry\""))?;
    let community = between.first().copied();
    // The description runs to the next card (which starts six lines before its "Panel ship")
    // or to the end marker.
    let mut description = Vec::new();
    loop {
        let Some(l) = c.peek() else {
            return Err(c.error("page ends inside a tool description"));
        };
        if ends_at.contains(&l.text) {
            break;
        }
        if next_is_card
            && c.lines
                .get(c.pos + 6)
                .is_some_and(|l| l.text == "Panel ship")
        {
            break;
        }
        description.push(l.text);
        c.pos += 1;
    }
    if description.is_empty() {
        return Err(c.error(format!("the description of {name:?} is missing")));
    }
    Ok(Card {
        initial,
        category,
        name,
        tagline,
        verdict,
        percent,
        entry,
        community,
        description: description.join("\n\n"),
        line,
    })
}

struct Decision<'a> {
    names: [&'a str; 2],
    panel: [Option<Panel>; 2],
    community: [Option<&'a str>; 2],
    pricing: [Option<&'a str>; 2],
    best_for: [Option<&'a str>; 2],
    category: [Option<&'a str>; 2],
}

fn parse_decision<'a>(c: &mut Cursor<'a>) -> Result<Decision<'a>, InvalidComparison> {
    c.expect("Decision")?;
    let names = [
        c.next("the first tool's name")?,
        c.next("the second tool's name")?,
    ];
    let mut d = Decision {
        names,
        panel: [None, None],
        community: [None, None],
        pricing: [None, None],
        best_for: [None, None],
        category: [None, None],
    };
    loop {
        let Some(label) = c.peek().map(|l| l.text) else {
            return Err(c.error("page ends inside the Decision table"));
        };
        if label == "Reviewer scorecard" {
            break;
        }
        let label_line = c.line_no();
        c.pos += 1;
        let values = [c.next("a Decision value")?, c.next("a Decision value")?];
        match label {
            "Panel verdict" => {
                for (i, v) in values.iter().enumerate() {
                    d.panel[i] = Some(parse_panel(v).ok_or_else(|| {
                        InvalidComparison::new(
                            format!("line {}", label_line + 1 + i),
                            format!("expected a panel verdict like \"Ship · 4 ship / 0 skip\", found {v:?}"),
                        )
                    })?);
                }
            }
            "Community" => {
                d.community = values.map(|v| (!v.starts_with("No community votes")).then_some(v));
            }
            "Pricing" => d.pricing = values.map(Some),
            "Best for" => d.best_for = values.map(Some),
            "Category" => d.category = values.map(Some),
            other => {
                return Err(InvalidComparison::new(
                    format!("line {label_line}"),
                    format!("unknown Decision row {other:?}"),
                ));
            }
        }
    }
    Ok(d)
}

fn parse_reviews(c: &mut Cursor<'_>) -> Result<Vec<Review>, InvalidComparison> {
    c.expect("Reviewer scorecard")?;
    let mut reviews = Vec::with_capacity(8);
    for persona in Persona::ALL {
        match c.peek() {
            Some(l) if l.text == persona.title() => c.pos += 1,
            Some(l) => {
                return Err(c.error(format!(
                    "expected the {:?} reviewer block, found {:?}",
                    persona.title(),
                    l.text
                )));
            }
            None => {
                return Err(c.error(format!(
                    "page ends where the {:?} reviewer block was expected",
                    persona.title()
                )));
            }
        }
        for tool in 0..2 {
            let line = c.line_no();
            let score_text = c.next("a score line such as \"85/100 · ship\"")?;
            let (score, verdict) = parse_score(score_text).ok_or_else(|| {
                InvalidComparison::new(
                    format!("line {line}"),
                    format!(
                        "expected the {} score of tool {} like \"85/100 · ship\", found {score_text:?}",
                        persona.title(),
                        tool + 1
                    ),
                )
            })?;
            if score > 100 {
                return Err(InvalidComparison::new(
                    format!("line {line}"),
                    format!("score {score} is outside 0–100"),
                ));
            }
            let mut text = Vec::new();
            while let Some(l) = c.peek() {
                let is_heading = Persona::ALL.iter().any(|p| p.title() == l.text);
                let rest = &c.lines[c.pos..];
                if parse_score(l.text).is_some()
                    || is_heading
                    || footer_signature(rest)
                    || is_footer(rest)
                {
                    break;
                }
                text.push(l.text);
                c.pos += 1;
            }
            if text.is_empty() {
                return Err(InvalidComparison::new(
                    format!("line {line}"),
                    format!(
                        "the {} review of tool {} has no text",
                        persona.title(),
                        tool + 1
                    ),
                ));
            }
            reviews.push(Review {
                persona,
                tool,
                score,
                verdict,
                text: text.join("\n\n"),
            });
        }
    }
    Ok(reviews)
}

impl Comparison {
    /// Reads the text of a published comparison page.
    pub fn from_page_text(
        text: &str,
        ctx: &PageContext<'_>,
    ) -> Result<Comparison, InvalidComparison> {
        let mut c = Cursor::new(text);
        if c.lines.is_empty() {
            return Err(InvalidComparison::new("line 1", "the page is empty"));
        }
        c.skip_past("AI tool comparison").map_err(|_| {
            InvalidComparison::new(
                "line 1",
                "not a comparison page: no \"AI tool comparison\" heading",
            )
        })?;
        // Before the heading only the breadcrumb (`Compare/A vs B`) may stand.
        if let Some(stray) = c.lines[..c.pos - 1]
            .iter()
            .find(|l| !l.text.starts_with("Compare/"))
        {
            return Err(InvalidComparison::new(
                format!("line {}", stray.number),
                format!(
                    "unexpected text before the \"AI tool comparison\" heading: {:?}",
                    excerpt(stray.text)
                ),
            ));
        }
        let title = c.next("the comparison title")?;
        if c.peek()
            .is_some_and(|l| l.text.starts_with("Which one should you ship"))
        {
            c.pos += 1;
        }
        let first = parse_card(&mut c, &["Decision"], true)?;
        let second = parse_card(&mut c, &["Decision"], false)?;
        let decision = parse_decision(&mut c)?;
        let reviews = parse_reviews(&mut c)?;
        parse_footer(&c)?;

        let cards = [first, second];
        let mut tools = Vec::with_capacity(2);
        for (i, card) in cards.into_iter().enumerate() {
            let at = format!("line {}", card.line);
            if decision.names[i] != card.name {
                return Err(InvalidComparison::new(
                    at,
                    format!(
                        "tool card {:?} does not match Decision column {:?}",
                        card.name, decision.names[i]
                    ),
                ));
            }
            let panel = decision.panel[i].ok_or_else(|| {
                InvalidComparison::new("Decision", "the \"Panel verdict\" row is missing")
            })?;
            if panel.verdict != card.verdict {
                return Err(InvalidComparison::new(
                    at,
                    format!(
                        "{}: card says {} but the Decision table says {}",
                        card.name,
                        card.verdict.label(),
                        panel.verdict.label()
                    ),
                ));
            }
            if panel.ship_percent() != card.percent {
                return Err(InvalidComparison::new(
                    at,
                    format!(
                        "{}: card says {}% ship but {} ship / {} skip is {}%",
                        card.name,
                        card.percent,
                        panel.ship,
                        panel.skip,
                        panel.ship_percent()
                    ),
                ));
            }
            if let Some(category) = decision.category[i]
                && category != card.category
            {
                return Err(InvalidComparison::new(
                    at,
                    format!(
                        "{}: card category {:?} differs from the Decision table's {category:?}",
                        card.name, card.category
                    ),
                ));
            }
            let pricing = decision.pricing[i].ok_or_else(|| {
                InvalidComparison::new("Decision", "the \"Pricing\" row is missing")
            })?;
            tools.push(Tool {
                name: card.name.to_string(),
                initial: card.initial.to_string(),
                category: card.category.to_string(),
                tagline: card.tagline.to_string(),
                description: card.description,
                entry: card.entry.to_string(),
                pricing: pricing.to_string(),
                best_for: decision.best_for[i].unwrap_or(card.tagline).to_string(),
                panel,
                community: decision.community[i].or(card.community).map(str::to_string),
            });
        }

        let slug = Comparison::slug_for_title(title);
        let raw = RawComparison {
            url: format!("{}/compare/{slug}", ctx.base_url.trim_end_matches('/')),
            slug,
            title: title.to_string(),
            published_at: ctx.published_at,
            tools,
            reviews,
        };
        Comparison::try_from(raw)
    }
}
