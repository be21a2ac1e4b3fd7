//! Rendering: comparisons → one issue's subject, HTML and plain text.
//!
//! Tera fills the templates in `templates/` (compiled into the binary) with autoescaping on for
//! `.mjml` and `.html` — Tera only escapes `.html/.htm/.xml` by default, and comparison content
//! must never become markup. mrml turns the MJML into email-safe HTML **once per issue**. What
//! differs per recipient (the personal footer line and the unsubscribe link) is left as
//! [`Slot`] markers and filled in by [`Personalizer`], a plain concatenation of pre-split pieces,
//! never by running Tera or mrml again.

pub mod cadence;
pub mod check;
mod personalize;

pub use personalize::{
    MARKER_START, Part, Personalizer, Slot, SlotValues, escape_html, forbidden_char,
};

use anyhow::Context as _;
use serde::Serialize;
use tera::{Context, Tera};

use crate::comparisons::{Comparison, PanelVerdict, Persona, Verdict};
use crate::config::{SecretKey, Settings};
use crate::engagement::{Choice, click_token, vote_choice_token};
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
    "email/notice.txt",
    "email/notice.html",
    "web/base.html",
    "web/archive.html",
    "web/message.html",
    "web/signup.html",
    "web/confirm.html",
    "web/unsubscribe.html",
    "web/manage.html",
    "web/button.html",
    "web/embed.html",
    "web/vote.html",
    "web/privacy.html",
    "console/base.html",
    "console/login.html",
    "console/message.html",
    "console/dashboard.html",
    "console/issue.html",
    "console/subscribers.html",
    "console/comparisons.html",
    "console/bounces.html",
    "console/reader.html",
    "console/log.html",
    "console/deliverability.html",
    "console/operators.html",
    "console/account.html",
    "console/reset.html",
];

/// Every built-in template as `(name, source)`: what `verdicts templates export` writes and
/// what a file in `templates.dir` of the same name replaces.
pub fn builtin_templates() -> &'static [(&'static str, &'static str)] {
    TEMPLATES
}

/// The template engine, built once per process.
pub struct Renderer {
    tera: Tera,
    /// The names taken from `templates.dir` rather than the built-ins.
    overridden: Vec<String>,
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
    /// Signs the issue's vote and click links (`security.secret_key`).
    pub secret: &'a SecretKey,
    /// The readers' votes on the previous issue's comparisons (those with votes), shown in a
    /// short block.
    pub previous: &'a [ReaderTally],
    /// For the readers who chose categories, a part of the issue: the issue's positions of
    /// `comparisons` (in the issue's order). Vote and click links keep the issue's positions,
    /// so a vote from a part counts for the same comparison as one from the whole issue;
    /// subject, HTML and text name only these comparisons. `None`: the whole issue.
    pub positions: Option<&'a [u16]>,
}

/// The readers' votes on one comparison of an earlier issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReaderTally {
    pub title: String,
    /// The comparison page itself.
    pub url: String,
    /// The issue the comparison was in, and its position there: a click on it in this block,
    /// with `tracking.clicks`, goes through that issue's `/r/` link and counts for that issue
    /// (the comparison has no position in the issue showing the block).
    pub number: i64,
    pub position: u16,
    /// `(tool name, ship, skip)` per tool.
    pub tools: Vec<(String, i64, i64)>,
    pub voters: i64,
}

impl ReaderTally {
    /// "Claude 4 Sonnet 72% ship (14 votes) · SmolVLM2-2B 40% ship (10 votes)".
    pub fn summary(&self) -> String {
        self.tools
            .iter()
            .filter(|(_, ship, skip)| ship + skip > 0)
            .map(|(name, ship, skip)| {
                let n = ship + skip;
                format!(
                    "{name} {}% ship ({n} vote{})",
                    (ship * 100 + n / 2) / n,
                    if n == 1 { "" } else { "s" }
                )
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

#[derive(Serialize)]
struct PreviousView<'a> {
    title: &'a str,
    /// Through the earlier issue's `/r/…` with `tracking.clicks`, else the page itself.
    url: String,
    summary: String,
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
    /// The reader's "Ship" and "Skip" links (`/vote/…`, with the reader's part as a slot).
    ship_url: String,
    skip_url: String,
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
    /// The link to the comparison page: through `/r/…` when `tracking.clicks` is on.
    url: String,
    /// The comparison page itself.
    page_url: &'a str,
    /// "Panel: ship A; split on B".
    bottom_line: String,
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

/// Where a comparison's links and buttons point, per issue (the same for every recipient).
struct Links<'a> {
    secret: &'a SecretKey,
    reader_placeholder: String,
    public: &'a crate::config::HttpUrl,
    number: i64,
    clicks: bool,
}

/// What the vote links carry in place of the reader's part until the HTML is out of mrml,
/// which writes private-use characters in attribute values as `\u{e000}` (so the slot marker
/// cannot go through it). Followed by a random nonce per render: content cannot spell it.
const READER_PLACEHOLDER_PREFIX: &str = "verdicts-reader-";

impl Links<'_> {
    fn vote(&self, position: u16, tool: u8, choice: Choice) -> String {
        format!(
            "{}{}{}",
            self.public.join("vote/"),
            self.reader_placeholder,
            vote_choice_token(self.secret, self.number, position, tool, choice)
        )
    }

    fn page(&self, position: u16, page_url: &str) -> String {
        self.page_of(self.number, position, page_url)
    }

    /// The link to the comparison at `position` of the issue numbered `number` (this one or an
    /// earlier one).
    fn page_of(&self, number: i64, position: u16, page_url: &str) -> String {
        if self.clicks {
            self.public
                .join(&format!("r/{}", click_token(self.secret, number, position)))
        } else {
            page_url.to_string()
        }
    }
}

/// The panel's verdicts in one line: "Panel: ship SmolVLM2-2B; split on Claude Haiku".
pub fn bottom_line(c: &Comparison) -> String {
    let calls: Vec<String> = c
        .tools()
        .iter()
        .map(|t| match t.panel.verdict {
            PanelVerdict::Ship => format!("ship {}", t.name),
            PanelVerdict::Skip => format!("skip {}", t.name),
            PanelVerdict::Mixed => format!("split on {}", t.name),
        })
        .collect();
    format!("Panel: {}", calls.join("; "))
}

fn comparison_view<'c>(c: &'c Comparison, position: u16, links: &Links<'_>) -> ComparisonView<'c> {
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
                ship_url: links.vote(position, i as u8, Choice::Ship),
                skip_url: links.vote(position, i as u8, Choice::Skip),
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
        url: links.page(position, c.url()),
        page_url: c.url(),
        bottom_line: bottom_line(c),
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
    /// The built-in templates only.
    pub fn new() -> anyhow::Result<Renderer> {
        Renderer::with_dir(None)
    }

    /// Parses every template (the built-ins, each replaced by `dir/NAME` where that file
    /// exists); fails at start-up, not at send time, if one is broken — naming the file and line.
    pub fn with_dir(dir: Option<&std::path::Path>) -> anyhow::Result<Renderer> {
        let sources = template_sources(dir)?;
        let overridden: Vec<String> = sources
            .iter()
            .filter(|t| t.from_dir)
            .map(|t| t.name.to_string())
            .collect();
        let mut tera = Tera::new();
        tera.autoescape_on([".html", ".mjml"]);
        tera.add_raw_templates(sources.iter().map(|t| (t.name, t.source.as_str())))
            .map_err(|e| anyhow::anyhow!("{}", describe_tera_error(&e, dir, &overridden)))?;
        Ok(Renderer { tera, overridden })
    }

    /// The template names this renderer took from `templates.dir`.
    pub fn overridden(&self) -> &[String] {
        &self.overridden
    }

    /// Renders one issue, or a part of one (`input.positions`): subject, HTML (through mrml,
    /// once) and text, with slot markers.
    pub fn render_issue(
        &self,
        settings: &Settings,
        input: &IssueInput<'_>,
    ) -> anyhow::Result<RenderedIssue> {
        let positions = input.positions;
        anyhow::ensure!(
            positions.is_none_or(|p| p.len() == input.comparisons.len()),
            "a part of an issue needs one position per comparison"
        );
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
        let public = &settings.http.public_url;
        let links = Links {
            secret: input.secret,
            reader_placeholder: format!(
                "{READER_PLACEHOLDER_PREFIX}{:032x}",
                rand::random::<u128>()
            ),
            public,
            number: input.number,
            clicks: settings.tracking.clicks,
        };
        anyhow::ensure!(
            input.comparisons.len() <= usize::from(u16::MAX),
            "too many comparisons for one issue"
        );
        let views: Vec<ComparisonView<'_>> = input
            .comparisons
            .iter()
            .enumerate()
            .map(|(i, c)| comparison_view(c, positions.map_or(i as u16, |p| p[i]), &links))
            .collect();
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
        ctx.insert("votes_begin", Slot::VotesBegin.marker());
        ctx.insert("votes_end", Slot::VotesEnd.marker());
        ctx.insert("privacy_url", &public.join("privacy"));
        let previous: Vec<PreviousView<'_>> = input
            .previous
            .iter()
            .filter(|t| t.voters > 0)
            .map(|t| PreviousView {
                title: &t.title,
                url: links.page_of(t.number, t.position, &t.url),
                summary: t.summary(),
            })
            .collect();
        ctx.insert("previous", &previous);

        let mjml = self
            .tera
            .render("email/issue.mjml", &ctx)
            .context("rendering templates/email/issue.mjml")?;
        let reader = Slot::VoteReader.marker();
        let html = inline_css(&mjml_to_html(&mjml)?, &mj_style_css(&mjml))?
            .replace(&links.reader_placeholder, reader);
        let text = self
            .tera
            .render("email/issue.txt", &ctx)
            .context("rendering templates/email/issue.txt")?
            .replace(&links.reader_placeholder, reader);
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

/// One template's source and where it came from.
pub(crate) struct TemplateSource {
    pub name: &'static str,
    pub source: String,
    pub from_dir: bool,
}

/// The built-ins, each replaced by `dir/NAME` where that file exists.
pub(crate) fn template_sources(
    dir: Option<&std::path::Path>,
) -> anyhow::Result<Vec<TemplateSource>> {
    TEMPLATES
        .iter()
        .map(|&(name, builtin)| {
            let file = dir.map(|d| d.join(name)).filter(|f| f.is_file());
            Ok(match file {
                Some(f) => TemplateSource {
                    name,
                    source: std::fs::read_to_string(&f)
                        .with_context(|| format!("templates.dir: reading {}", f.display()))?,
                    from_dir: true,
                },
                None => TemplateSource {
                    name,
                    source: builtin.to_string(),
                    from_dir: false,
                },
            })
        })
        .collect()
}

/// Where a template came from, for messages: `DIR/email/issue.mjml` or `built-in email/issue.mjml`.
fn template_origin(name: &str, dir: Option<&std::path::Path>, overridden: &[String]) -> String {
    match dir {
        Some(d) if overridden.iter().any(|o| o == name) => d.join(name).display().to_string(),
        _ => format!("built-in {name}"),
    }
}

/// A Tera error as one message that names the file (and, through Tera's report, the line).
fn describe_tera_error(
    e: &tera::Error,
    dir: Option<&std::path::Path>,
    overridden: &[String],
) -> String {
    match check::tera_location(e) {
        Some((name, line)) => format!(
            "{} line {line}: {e}",
            template_origin(&name, dir, overridden)
        ),
        None => e.to_string(),
    }
}

/// The values every page and transactional mail uses (see `templates/web/base.html` and
/// docs/templates.md).
pub fn page_context(s: &Settings) -> Context {
    let mut ctx = Context::new();
    ctx.insert("newsletter_name", &s.newsletter.name.0);
    ctx.insert("site_name", &s.site.name.0);
    ctx.insert("postal_address", &s.newsletter.postal_address.0);
    ctx.insert("home_url", &s.http.public_url.join("/"));
    ctx.insert(
        "schedule_sentence",
        &cadence::schedule_sentence(
            &s.schedule.cron.schedule,
            s.schedule.timezone.0,
            chrono::Utc::now(),
        ),
    );
    ctx.insert("privacy_url", &s.http.public_url.join("privacy"));
    ctx
}

/// MJML → HTML with mrml. A parse error is a [`check::MjmlError`] located in `mjml`.
pub fn mjml_to_html(mjml: &str) -> anyhow::Result<String> {
    let parsed = mrml::parse(mjml).map_err(|e| {
        let (byte, message) = mjml_error_position(mjml, &e);
        anyhow::Error::new(check::MjmlError::at(mjml, message, byte))
    })?;
    let options = mrml::prelude::render::RenderOptions {
        disable_comments: true,
        ..Default::default()
    };
    parsed
        .element
        .render(&options)
        .map_err(|e| anyhow::anyhow!("rendering the MJML: {e}"))
}

/// The CSS of the template's `<mj-style>` blocks: our design, as opposed to the resets mrml
/// adds to every document.
pub fn mj_style_css(mjml: &str) -> String {
    let mut css = String::new();
    let mut rest = mjml;
    while let Some(start) = rest.find("<mj-style") {
        let Some(open_end) = rest[start..].find('>') else {
            break;
        };
        let body = &rest[start + open_end + 1..];
        let Some(close) = body.find("</mj-style>") else {
            break;
        };
        css.push_str(&body[..close]);
        css.push('\n');
        rest = &body[close..];
    }
    css
}

/// Copies the design's CSS (`css`, from the template's `<mj-style>`) into `style` attributes,
/// once per issue: Gmail with non-Google accounts and several Outlook versions drop `<style>`,
/// and mrml does not implement MJML's `mj-style inline`. The `<style>` blocks stay in the head
/// for the clients that read them (the phone-width `@media` query lives only there); mrml's
/// resets are not inlined, which would add kilobytes to every table cell.
///
/// The document is re-serialised by an HTML5 serialiser, which leaves `<` and `>` literal
/// inside attribute values; they are escaped again ([`escape_attribute_angles`]) so that no
/// client or filter that scans markup loosely sees a tag where there is text.
pub fn inline_css(html: &str, css: &str) -> anyhow::Result<String> {
    let inliner = css_inline::CSSInliner::options()
        .inline_style_tags(false)
        .keep_style_tags(true)
        .keep_link_tags(true)
        .load_remote_stylesheets(false)
        .minify_css(true)
        .extra_css(Some(std::borrow::Cow::Borrowed(css)))
        .build();
    let inlined = inliner
        .inline(html)
        .map_err(|e| anyhow::anyhow!("inlining the email's CSS: {e}"))?;
    Ok(escape_attribute_angles(&inlined))
}

/// `&lt;` and `&gt;` for `<` and `>` inside quoted attribute values of serialised HTML (text,
/// comments and the raw text of `<style>`/`<script>` are copied as they are).
pub fn escape_attribute_angles(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 64);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        rest = &rest[lt..];
        if rest.starts_with("<!--") {
            let end = rest.find("-->").map_or(rest.len(), |e| e + 3);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        // A tag: copy it, escaping angles inside quoted values, up to its closing `>`.
        let mut quote: Option<char> = None;
        let mut end = rest.len();
        out.push('<');
        for (i, c) in rest.char_indices().skip(1) {
            match (quote, c) {
                (Some(q), c) if c == q => {
                    quote = None;
                    out.push(c);
                }
                (Some(_), '<') => out.push_str("&lt;"),
                (Some(_), '>') => out.push_str("&gt;"),
                (None, '"' | '\'') => {
                    quote = Some(c);
                    out.push(c);
                }
                (None, '>') => {
                    end = i + 1;
                    out.push('>');
                    break;
                }
                (_, c) => out.push(c),
            }
        }
        let tag = &rest[..end];
        rest = &rest[end..];
        // The raw text of style and script elements is not markup: copy it to its end tag.
        let name: String = tag[1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name == "style" || name == "script" {
            let close = format!("</{name}");
            let stop = rest.to_ascii_lowercase().find(&close).unwrap_or(rest.len());
            out.push_str(&rest[..stop]);
            rest = &rest[stop..];
        }
    }
    out.push_str(rest);
    out
}

/// The byte offset in `mjml` an mrml parse error points at, where it has one, and its message
/// (with the HTML parser's own reason, when that is the cause).
fn mjml_error_position(mjml: &str, e: &mrml::prelude::parser::Error) -> (Option<usize>, String) {
    use mrml::prelude::parser::Error as E;
    match e {
        E::UnexpectedElement { position, .. }
        | E::UnexpectedToken { position, .. }
        | E::MissingAttribute { position, .. }
        | E::InvalidAttribute { position, .. }
        | E::InvalidFormat { position, .. }
        | E::IncludeLoaderError { position, .. } => (Some(position.start), e.to_string()),
        E::ParserError { source, .. } => {
            let pos = source.pos();
            let row = pos.row.max(1) as usize;
            let line_start: usize = mjml.split_inclusive('\n').take(row - 1).map(str::len).sum();
            let byte = mjml[line_start..]
                .char_indices()
                .nth(pos.col.saturating_sub(1) as usize)
                .map_or(line_start, |(i, _)| line_start + i);
            (Some(byte), format!("{e}: {source}"))
        }
        _ => (None, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_links_carry_the_reader_slot_in_both_parts() {
        let settings = Settings::from_toml("").unwrap();
        let comparisons = check::sample_comparisons(&settings.site.base_url).unwrap();
        let secret = SecretKey::from_bytes(b"a key for this test only");
        let issue = Renderer::new()
            .unwrap()
            .render_issue(
                &settings,
                &IssueInput {
                    number: 3,
                    week: "2026-W47".parse().unwrap(),
                    comparisons: &comparisons,
                    secret: &secret,
                    previous: &[],
                    positions: None,
                },
            )
            .unwrap();
        let vote = format!(
            "{}{}",
            settings.http.public_url.join("vote/"),
            Slot::VoteReader.marker()
        );
        let links = 4 * comparisons.len();
        assert_eq!(issue.html.matches(&format!("href=\"{vote}")).count(), links);
        assert_eq!(issue.text.matches(&vote).count(), links);
        assert!(!issue.html.contains("\\u{e000}"), "no escaped marker");
        assert!(!issue.html.contains(READER_PLACEHOLDER_PREFIX));
        assert!(!issue.text.contains(READER_PLACEHOLDER_PREFIX));
    }

    /// The panel's call on each tool in one line, Ship, Skip and Mixed alike, carried by the
    /// HTML and the text part under the comparison's title.
    #[test]
    fn the_bottom_line_names_each_tools_verdict_in_both_parts() {
        let ctx = crate::comparisons::page::PageContext {
            base_url: "https://shiporskip.example",
            published_at: chrono::DateTime::parse_from_rfc3339("2026-11-18T10:00:00Z")
                .unwrap()
                .to_utc(),
        };
        // Mixed (2 ship / 2 skip) and Ship.
        let mixed = Comparison::from_page_text(
            include_str!("../../tests/fixtures/claude-haiku-open-weights-vs-smolvlm2-turbo.txt"),
            &ctx,
        )
        .unwrap();
        assert_eq!(
            bottom_line(&mixed),
            "Panel: split on Claude Haiku Open Weights; ship SmolVLM2 Turbo"
        );
        // The same split called Skip (2 ship / 2 skip allows it), under another slug.
        let mut json = mixed.to_json();
        json["tools"][0]["panel"]["verdict"] = "skip".into();
        json["slug"] = "skipped".into();
        json["title"] = "Skipped vs Shipped".into();
        json["url"] = "https://shiporskip.example/compare/skipped".into();
        let skipped = Comparison::from_json_value(json).unwrap();
        let skip_line = "Panel: skip Claude Haiku Open Weights; ship SmolVLM2 Turbo";
        assert_eq!(bottom_line(&skipped), skip_line);

        let settings = Settings::from_toml("").unwrap();
        let comparisons = [mixed, skipped];
        let issue = Renderer::new()
            .unwrap()
            .render_issue(
                &settings,
                &IssueInput {
                    number: 3,
                    week: "2026-W47".parse().unwrap(),
                    comparisons: &comparisons,
                    secret: &SecretKey::from_bytes(b"a key for this test only"),
                    previous: &[],
                    positions: None,
                },
            )
            .unwrap();
        for line in [
            "Panel: split on Claude Haiku Open Weights; ship SmolVLM2 Turbo",
            skip_line,
        ] {
            assert!(issue.html.contains(line), "{line} in HTML");
            assert!(
                issue.text.contains(&format!("\n{line}\n")),
                "{line} in text"
            );
        }
        assert!(
            issue.html.find(skip_line) > issue.html.find("Skipped vs Shipped"),
            "under its own title"
        );
    }

    #[test]
    fn angles_in_attribute_values_are_escaped_and_nothing_else_changes() {
        let html = "<div title=\"a <b> c\" data-x='1>2'>x &lt; y</div><!--[if mso]><table><![endif]-->\
                    <style>.a > .b { color: red }</style><p>ok</p>";
        assert_eq!(
            escape_attribute_angles(html),
            "<div title=\"a &lt;b&gt; c\" data-x='1&gt;2'>x &lt; y</div><!--[if mso]><table><![endif]-->\
             <style>.a > .b { color: red }</style><p>ok</p>"
        );
        assert_eq!(escape_attribute_angles("a < b"), "a < b");
    }

    #[test]
    fn the_design_css_is_inlined_and_media_queries_stay_in_the_head() {
        let mjml = "<mjml><mj-head><mj-style>.sm { font-size: 13px; color: #4b5563; } \
                    @media only screen and (max-width: 480px) { .sm { display: block !important; } }\
                    </mj-style></mj-head><mj-body><mj-section><mj-column><mj-text>\
                    <span class=\"sm\">small</span></mj-text></mj-column></mj-section></mj-body></mjml>";
        let css = mj_style_css(mjml);
        assert!(css.contains(".sm { font-size: 13px"));
        let html = inline_css(&mjml_to_html(mjml).unwrap(), &css).unwrap();
        assert!(
            html.contains("class=\"sm\" style=\"font-size:13px;color:#4b5563"),
            "{html}"
        );
        assert!(html.contains("@media only screen and (max-width: 480px)"));
        // mrml's resets are not copied onto every cell.
        assert!(
            !html.contains("<td style=\"border-collapse:collapse"),
            "{html}"
        );
    }

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
