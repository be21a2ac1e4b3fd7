//! `verdicts templates check`: loads the templates an operator would run with and renders every
//! one of them with sample data, so a broken override is found at the desk and not at 9:00 on
//! Monday. Problems name the file and the line (Tera reports its own; an MJML error is traced
//! from the rendered document back to the template line that produced it).

use std::path::Path;

use tera::{Context, Tera};

use super::{IssueInput, Renderer, TEMPLATES, page_context, template_origin, template_sources};
use crate::comparisons::Comparison;
use crate::config::{HttpUrl, Settings};
use crate::issues::IsoWeek;

/// Gmail clips a message whose HTML is larger than this.
pub const GMAIL_CLIP_BYTES: usize = 102 * 1024;

/// The sample week `check` renders: a real published comparison page, ten times over.
const SAMPLE_PAGE: &str = include_str!("../../tests/fixtures/claude-4-sonnet-vs-smolvlm2-2b.txt");

/// One thing wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// `DIR/email/issue.mjml`, or `built-in email/issue.mjml`.
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// What `check` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
    /// Templates taken from the folder rather than the built-ins.
    pub overridden: Vec<String>,
    /// Bytes of HTML of a ten-comparison issue (0 when it did not render).
    pub issue_html_bytes: usize,
}

/// Where a Tera error points: the template name and the 1-based line.
pub fn tera_location(e: &tera::Error) -> Option<(String, usize)> {
    match e.kind() {
        tera::ErrorKind::SyntaxError(r) | tera::ErrorKind::RenderingError(r) => {
            Some((r.filename().to_string(), r.span().start_line))
        }
        _ => None,
    }
}

/// An MJML document mrml could not parse, located in the rendered document.
#[derive(Debug, Clone, thiserror::Error)]
#[error("MJML: {message} (rendered line {line}: {snippet:?})")]
pub struct MjmlError {
    pub message: String,
    /// 1-based line in the rendered MJML.
    pub line: usize,
    /// The rendered line, trimmed and shortened.
    pub snippet: String,
}

impl MjmlError {
    pub(crate) fn at(mjml: &str, message: String, byte: Option<usize>) -> MjmlError {
        let byte = byte.unwrap_or(0).min(mjml.len());
        let line = mjml.as_bytes()[..byte]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        let text = mjml.lines().nth(line - 1).unwrap_or("").trim();
        MjmlError {
            message,
            line,
            snippet: text.chars().take(120).collect(),
        }
    }

    /// The line of `template` that holds the rendered line (the snippet), if it is there as
    /// written: the template line to fix.
    pub fn template_line(&self, template: &str) -> Option<usize> {
        let probe: String = self.snippet.chars().take(40).collect();
        if probe.is_empty() {
            return None;
        }
        template
            .lines()
            .position(|l| l.contains(probe.as_str()))
            .map(|i| i + 1)
    }
}

/// Sample values for the pages and transactional mails (every variable they may use; see
/// docs/templates.md).
fn sample_context(mut ctx: Context, public: &HttpUrl, site: &HttpUrl) -> Context {
    for (key, value) in [
        ("name", "Ada"),
        ("email", "ada@example.org"),
        ("heading", "Sample heading"),
        ("message", "A sample sentence."),
        ("link_text", "Go on"),
        (
            "consent_text",
            "We keep your address as a record of your consent.",
        ),
        ("form_snippet", "<form method=\"post\">…</form>"),
        ("fetch_snippet", "<form id=\"verdicts-signup\">…</form>"),
        ("comparison_title", "Claude 4 Sonnet vs SmolVLM2-2B"),
        ("tool", "SmolVLM2-2B"),
        ("choice", "ship"),
        ("choice_label", "Ship"),
    ] {
        ctx.insert(key, value);
    }
    ctx.insert("error", &Option::<String>::None);
    ctx.insert("link_url", &public.join("/"));
    ctx.insert("action_url", &public.join("confirm/SAMPLE"));
    ctx.insert("confirm_url", &public.join("confirm/SAMPLE"));
    ctx.insert("unsubscribe_url", &public.join("unsubscribe/SAMPLE"));
    ctx.insert("subscribe_url", &public.join("subscribe"));
    ctx.insert("archive_url", &public.join("archive"));
    ctx.insert("feed_url", &public.join("archive/feed.xml"));
    ctx.insert("ttl_hours", &48);
    // web/manage.html
    ctx.insert("status_text", "subscribed");
    ctx.insert("confirmed", &true);
    ctx.insert("paused_until", &Option::<String>::None);
    ctx.insert("pause_weeks", &[2, 4, 8]);
    ctx.insert("notice", &Option::<String>::None);
    ctx.insert(
        "categories",
        &[serde_json::json!({ "name": "Developer Tools", "checked": true })],
    );
    ctx.insert("everything", &false);
    ctx.insert("pending_email", &Option::<String>::None);
    // email/confirm.*, email/notice.*, web/button.html
    ctx.insert("reminder", &false);
    ctx.insert("lines", &["A sample sentence.", "Another one."]);
    ctx.insert("button", "Go on");
    ctx.insert("button_url", &public.join("keep/SAMPLE"));
    ctx.insert("footnote", "A sample footnote.");
    ctx.insert("lead", "A sample sentence.");
    ctx.insert("comparison_url", site.as_str());
    ctx.insert("clicks", &true);
    ctx.insert("raw_url", &public.join("embed/snippet.html"));
    ctx.insert("origins", &[site.as_str()]);
    ctx.insert(
        "issues",
        &[serde_json::json!({
            "number": 1, "subject": "Sample subject", "date_range": "Nov 16 – 22, 2026",
            "url": public.join("archive/1"),
        })],
    );
    ctx
}

/// Ten sample comparisons (the captured page, under ten titles) on the site `base_url`.
pub fn sample_comparisons(base_url: &HttpUrl) -> anyhow::Result<Vec<Comparison>> {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-18T10:00:00Z")?.to_utc();
    let base = Comparison::from_page_text(
        SAMPLE_PAGE,
        &crate::comparisons::page::PageContext {
            base_url: base_url.as_str().trim_end_matches('/'),
            published_at: at,
        },
    )
    .map_err(|e| anyhow::anyhow!("the sample comparison: {e}"))?;
    let items: Vec<serde_json::Value> = (1..=10)
        .map(|i| {
            let mut v = base.to_json();
            v["slug"] = format!("sample-{i}").into();
            v["title"] = format!("{} (sample {i})", base.title()).into();
            v
        })
        .collect();
    crate::comparisons::import::parse_json(&serde_json::Value::Array(items).to_string())
        .map_err(|e| anyhow::anyhow!("the sample comparisons: {e}"))
}

/// Loads the templates of `dir` (or the built-ins) and renders every one with sample data.
pub fn check(dir: Option<&Path>, settings: &Settings) -> Report {
    let mut report = Report::default();
    if let Some(d) = dir {
        if !d.is_dir() {
            report.problems.push(Problem {
                file: d.display().to_string(),
                line: None,
                message: "not a folder".into(),
            });
            return report;
        }
        report.warnings.extend(unknown_files(d));
    }
    let mut sources = match template_sources(dir) {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(Problem {
                file: dir.map_or_else(String::new, |d| d.display().to_string()),
                line: None,
                message: format!("{e:#}"),
            });
            return report;
        }
    };
    report.overridden = sources
        .iter()
        .filter(|t| t.from_dir)
        .map(|t| t.name.to_string())
        .collect();
    let origin = |name: &str| template_origin(name, dir, &report.overridden);
    // Syntax: load them all; a broken file is reported and replaced by its built-in, so every
    // broken file is found in one run and the rest can still be rendered.
    let mut tera = None;
    for _ in 0..=TEMPLATES.len() {
        let mut t = Tera::new();
        t.autoescape_on([".html", ".mjml"]);
        match t.add_raw_templates(sources.iter().map(|s| (s.name, s.source.as_str()))) {
            Ok(()) => {
                tera = Some(t);
                break;
            }
            Err(e) => {
                let located = tera_location(&e);
                let culprit = located
                    .as_ref()
                    .and_then(|(name, _)| sources.iter_mut().find(|s| s.name == name.as_str()));
                report.problems.push(Problem {
                    file: located
                        .as_ref()
                        .map_or_else(|| "templates".to_string(), |(n, _)| origin(n)),
                    line: located.as_ref().map(|(_, l)| *l),
                    message: e.to_string(),
                });
                match culprit {
                    Some(s) if s.from_dir => {
                        s.source = TEMPLATES
                            .iter()
                            .find(|(n, _)| *n == s.name)
                            .map(|(_, b)| b.to_string())
                            .unwrap_or_default();
                        s.from_dir = false;
                    }
                    _ => return report,
                }
            }
        }
    }
    let Some(tera) = tera else {
        return report;
    };
    let renderer = Renderer {
        tera,
        overridden: report.overridden.clone(),
    };
    // The issue: subject, MJML → HTML, text.
    let sample = match sample_comparisons(&settings.site.base_url) {
        Ok(s) => s,
        Err(e) => {
            report.warnings.push(format!("no sample data: {e:#}"));
            Vec::new()
        }
    };
    if !sample.is_empty() {
        let week: IsoWeek = "2026-W47".parse().expect("a valid week");
        // A sample key: the links have their real length, the templates need no secret.
        let secret = crate::config::SecretKey::from_bytes(b"verdicts templates check sample key");
        let input = IssueInput {
            number: 1,
            week,
            comparisons: &sample,
            secret: &secret,
            previous: &[],
            positions: None,
        };
        match renderer.render_issue(settings, &input) {
            Ok(issue) => {
                report.issue_html_bytes = issue.html.len();
                if issue.html.len() > GMAIL_CLIP_BYTES {
                    report.warnings.push(format!(
                        "email/issue.mjml: a ten-comparison issue is {} KB of HTML; Gmail clips \
                         messages above 102 KB",
                        issue.html.len() / 1024
                    ));
                }
            }
            Err(e) => report
                .problems
                .push(describe_render_error(&e, &sources, &origin)),
        }
    }
    // The pages and the transactional mails.
    let ctx = sample_context(
        page_context(settings),
        &settings.http.public_url,
        &settings.site.base_url,
    );
    for (name, _) in TEMPLATES {
        let rendered_alone = name.starts_with("web/") && *name != "web/base.html"
            || name.starts_with("email/") && {
                let stem = name.trim_start_matches("email/");
                stem.starts_with("confirm.") || stem.starts_with("welcome.")
            };
        if !rendered_alone {
            continue;
        }
        if let Err(e) = renderer.tera.render(name, &ctx) {
            let located = tera_location(&e);
            report.problems.push(Problem {
                file: origin(located.as_ref().map_or(*name, |(n, _)| n.as_str())),
                line: located.map(|(_, l)| l),
                message: e.to_string(),
            });
        }
    }
    report
}

/// A failed issue render as a problem with file and line.
fn describe_render_error(
    e: &anyhow::Error,
    sources: &[super::TemplateSource],
    origin: &dyn Fn(&str) -> String,
) -> Problem {
    if let Some(t) = e.downcast_ref::<tera::Error>() {
        let located = tera_location(t);
        return Problem {
            file: located
                .as_ref()
                .map_or_else(|| origin("email/issue.mjml"), |(n, _)| origin(n)),
            line: located.map(|(_, l)| l),
            message: t.to_string(),
        };
    }
    if let Some(m) = e.downcast_ref::<MjmlError>() {
        let template = sources
            .iter()
            .find(|s| s.name == "email/issue.mjml")
            .map_or("", |s| s.source.as_str());
        return Problem {
            file: origin("email/issue.mjml"),
            line: m.template_line(template),
            message: m.to_string(),
        };
    }
    Problem {
        file: origin("email/issue.mjml"),
        line: None,
        message: format!("{e:#}"),
    }
}

/// Files under `dir` that name no template (a typo would otherwise be silently ignored).
fn unknown_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if stack.len() < 64 {
                    stack.push(path);
                }
                continue;
            }
            let name = path
                .strip_prefix(dir)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if !TEMPLATES.iter().any(|(n, _)| *n == name) {
                out.push(format!(
                    "{}: not a template name; ignored (see `verdicts templates export`)",
                    path.display()
                ));
            }
        }
    }
    out.sort();
    out
}
