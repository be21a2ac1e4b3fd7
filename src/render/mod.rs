//! Rendering: comparisons → one issue's subject, HTML and plain text.
//!
//! Tera fills the templates in `templates/` (compiled into the binary) with autoescaping on for
//! `.mjml` and `.html` — Tera only escapes `.html/.htm/.xml` by default, and comparison content
//! must never become markup. mrml turns the MJML into email-safe HTML **once per issue**. What
//! differs per recipient (the personal footer line and the unsubscribe link) is left as
//! [`Slot`] markers and filled in by [`Personalizer`], a plain concatenation of pre-split pieces,
//! never by running Tera or mrml again.

mod personalize;

pub use personalize::{
    MARKER_START, Part, Personalizer, Slot, SlotValues, escape_html, forbidden_char,
};

use anyhow::Context as _;
use serde::Serialize;
use tera::{Context, Tera};

use crate::comparisons::{Comparison, PanelVerdict, Persona, Verdict};
use crate::config::Settings;
use crate::issues::IsoWeek;

/// `(name, source)` of every template, compiled into the binary.
macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates![
    "email/issue.mjml",
    "email/issue.txt",
    "email/subject.txt",
    "email/confirm.txt",
    "email/confirm.html",
    "email/welcome.txt",
    "email/welcome.html",
    "web/base.html",
    "web/archive.html",
    "web/message.html",
    "web/signup.html",
    "web/confirm.html",
    "web/unsubscribe.html",
    "console/base.html",
    "console/login.html",
    "console/message.html",
    "console/dashboard.html",
    "console/issue.html",
    "console/subscribers.html",
    "console/comparisons.html",
    "console/bounces.html",
    "console/operators.html",
];

/// The template engine, built once per process.
pub struct Renderer {
    tera: Tera,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renderer")
    }
}

/// A rendered issue, the same for every recipient; HTML and text still carry [`Slot`] markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedIssue {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// What an issue is made of.
pub struct IssueInput<'a> {
    pub number: i64,
    pub week: IsoWeek,
    pub comparisons: &'a [Comparison],
}

#[derive(Serialize)]
struct ToolView<'a> {
    name: &'a str,
    initial: &'a str,
    category: &'a str,
    tagline: &'a str,
    entry: &'a str,
    pricing: &'a str,
    verdict: &'static str,
    verdict_bg: &'static str,
    verdict_fg: &'static str,
    badge_color: &'static str,
    ship: u32,
    skip: u32,
    percent: u32,
}

#[derive(Serialize)]
struct ScoreView {
    score: u32,
    verdict: &'static str,
    color: &'static str,
}

#[derive(Serialize)]
struct ScoreRow {
    persona: &'static str,
    scores: [ScoreView; 2],
}

#[derive(Serialize)]
struct QuoteView<'a> {
    text: String,
    persona: &'static str,
    tool: &'a str,
}

#[derive(Serialize)]
struct ComparisonView<'a> {
    title: &'a str,
    url: &'a str,
    rule: String,
    tools: Vec<ToolView<'a>>,
    scorecard: Vec<ScoreRow>,
    scorecard_text: Vec<String>,
    quote: QuoteView<'a>,
}

const BADGE_COLORS: [&str; 2] = ["#4f46e5", "#0d9488"];

fn verdict_colors(v: PanelVerdict) -> (&'static str, &'static str) {
    match v {
        PanelVerdict::Ship => ("#dcfce7", "#166534"),
        PanelVerdict::Mixed => ("#fef3c7", "#92400e"),
        PanelVerdict::Skip => ("#fee2e2", "#991b1b"),
    }
}

fn verdict_word(v: Verdict) -> (&'static str, &'static str) {
    match v {
        Verdict::Ship => ("ship", "#15803d"),
        Verdict::Skip => ("skip", "#b91c1c"),
    }
}

/// The first sentence of `text`, at most `max` characters (cut at a word, with an ellipsis).
pub fn short_quote(text: &str, max: usize) -> String {
    let first_para = text.split("\n\n").next().unwrap_or(text).trim();
    let mut end = first_para.len();
    for (i, _) in first_para.match_indices(". ") {
        if i >= 40 {
            end = i + 1;
            break;
        }
    }
    let sentence = &first_para[..end];
    if sentence.chars().count() <= max {
        return sentence.to_string();
    }
    let mut cut: String = sentence.chars().take(max).collect();
    if let Some(space) = cut.rfind(' ') {
        cut.truncate(space);
    }
    let cut = cut.trim_end_matches([',', ';', ':', '—', '-', ' ']);
    format!("{cut}…")
}

/// The review quoted for a comparison: a dissenting (skip) voice if there is one, since that is
/// where the panel is most informative; otherwise the highest score.
fn pick_quote(c: &Comparison) -> &crate::comparisons::Review {
    c.reviews()
        .iter()
        .filter(|r| r.verdict == Verdict::Skip)
        .min_by_key(|r| r.score)
        .or_else(|| c.reviews().iter().max_by_key(|r| r.score))
        .expect("a checked comparison has reviews")
}

fn comparison_view(c: &Comparison) -> ComparisonView<'_> {
    let tools: Vec<ToolView<'_>> = c
        .tools()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (bg, fg) = verdict_colors(t.panel.verdict);
            ToolView {
                name: &t.name,
                initial: &t.initial,
                category: &t.category,
                tagline: &t.tagline,
                entry: &t.entry,
                pricing: &t.pricing,
                verdict: t.panel.verdict.label(),
                verdict_bg: bg,
                verdict_fg: fg,
                badge_color: BADGE_COLORS[i],
                ship: t.panel.ship,
                skip: t.panel.skip,
                percent: t.panel.ship_percent(),
            }
        })
        .collect();
    let scorecard: Vec<ScoreRow> = Persona::ALL
        .iter()
        .map(|&p| ScoreRow {
            persona: p.title(),
            scores: [0, 1].map(|t| {
                let r = c.review(p, t);
                let (word, color) = verdict_word(r.verdict);
                ScoreView {
                    score: r.score,
                    verdict: word,
                    color,
                }
            }),
        })
        .collect();
    let [a, b] = c.tools();
    let col = a.name.chars().count().clamp(12, 32) + 2;
    let mut scorecard_text = vec![format!(
        "{:<10}{:<col$}{}",
        "",
        a.name.chars().take(col - 2).collect::<String>(),
        b.name
    )];
    for row in &scorecard {
        let cell = |s: &ScoreView| format!("{:>3} {}", s.score, s.verdict);
        scorecard_text.push(format!(
            "{:<10}{:<col$}{}",
            row.persona,
            cell(&row.scores[0]),
            cell(&row.scores[1])
        ));
    }
    let quoted = pick_quote(c);
    ComparisonView {
        title: c.title(),
        url: c.url(),
        rule: "-".repeat(c.title().chars().count().min(72)),
        tools,
        scorecard,
        scorecard_text,
        quote: QuoteView {
            text: short_quote(&quoted.text, 220),
            persona: quoted.persona.title(),
            tool: &c.tools()[quoted.tool].name,
        },
    }
}

pub use crate::text::one_line;

impl Renderer {
    /// Parses every template; fails at start-up, not at send time, if one is broken.
    pub fn new() -> anyhow::Result<Renderer> {
        let mut tera = Tera::new();
        tera.autoescape_on([".html", ".mjml"]);
        tera.add_raw_templates(TEMPLATES.iter().copied())
            .context("parsing the built-in templates")?;
        Ok(Renderer { tera })
    }

    /// Renders one issue: subject, HTML (through mrml, once) and text, with slot markers.
    pub fn render_issue(
        &self,
        settings: &Settings,
        input: &IssueInput<'_>,
    ) -> anyhow::Result<RenderedIssue> {
        anyhow::ensure!(
            !input.comparisons.is_empty(),
            "an issue needs at least one comparison"
        );
        let n = input.comparisons.len();
        let count_label = if n == 1 {
            "1 matchup".to_string()
        } else {
            format!("{n} matchups")
        };
        let mut ctx = Context::new();
        ctx.insert("newsletter_name", &settings.newsletter.name.0);
        ctx.insert("number", &input.number);
        ctx.insert("lead_title", input.comparisons[0].title());
        ctx.insert("more", &(n - 1));
        let subject = one_line(
            &self
                .tera
                .render("email/subject.txt", &ctx)
                .context("rendering the subject")?,
        );
        let views: Vec<ComparisonView<'_>> =
            input.comparisons.iter().map(comparison_view).collect();
        let public = &settings.http.public_url;
        ctx.insert("subject", &subject);
        ctx.insert(
            "preview",
            &format!(
                "{} — the panel's ship-or-skip calls, scores and pricing.",
                input
                    .comparisons
                    .iter()
                    .map(Comparison::title)
                    .collect::<Vec<_>>()
                    .join(" · ")
            ),
        );
        ctx.insert("date_range", &input.week.date_range_label());
        ctx.insert("count_label", &count_label);
        ctx.insert("site_name", &settings.site.name.0);
        ctx.insert("site_url", settings.site.base_url.as_str());
        ctx.insert(
            "archive_url",
            &public.join(&format!("archive/{}", input.number)),
        );
        ctx.insert("postal_address", &settings.newsletter.postal_address.0);
        ctx.insert("comparisons", &views);
        ctx.insert("personal_line", Slot::PersonalLine.marker());
        ctx.insert("footer_link", Slot::FooterLink.marker());

        let mjml = self
            .tera
            .render("email/issue.mjml", &ctx)
            .context("rendering templates/email/issue.mjml")?;
        let html = mjml_to_html(&mjml)?;
        let text = self
            .tera
            .render("email/issue.txt", &ctx)
            .context("rendering templates/email/issue.txt")?;
        Ok(RenderedIssue {
            subject,
            html,
            text,
        })
    }

    /// Renders one of the web pages (`web/*.html`).
    pub fn render_page(&self, name: &str, ctx: &Context) -> anyhow::Result<String> {
        self.tera
            .render(name, ctx)
            .with_context(|| format!("rendering templates/{name}"))
    }
}

/// MJML → HTML with mrml.
pub fn mjml_to_html(mjml: &str) -> anyhow::Result<String> {
    let parsed = mrml::parse(mjml).map_err(|e| anyhow::anyhow!("parsing the MJML: {e:?}"))?;
    let options = mrml::prelude::render::RenderOptions {
        disable_comments: true,
        ..Default::default()
    };
    parsed
        .element
        .render(&options)
        .map_err(|e| anyhow::anyhow!("rendering the MJML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_quotes_end_at_a_sentence_or_a_word() {
        assert_eq!(
            short_quote(
                "The primitive here is clean and it is a good one. Second sentence.",
                220
            ),
            "The primitive here is clean and it is a good one."
        );
        let long = "word ".repeat(100);
        let q = short_quote(&long, 50);
        assert!(q.ends_with('…') && q.chars().count() <= 51, "{q}");
    }

    #[test]
    fn one_line_strips_breaks() {
        assert_eq!(one_line("a\r\nBcc: x@y\t z "), "a Bcc: x@y z");
    }
}
