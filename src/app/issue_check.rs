//! `verdicts issue check ID`: the pre-send checks of a frozen issue, run on the message one
//! reader would get exactly as it would leave (headers, both parts, DKIM): `html_size` (Gmail
//! clips above 102 KB: fail), `links` (every link absolute: fail; https: warn), `images` (an
//! `alt` on every image), `text_part`, `list_unsubscribe`, `subject` (length), and `spamassassin`
//! (its score, where `spamassassin` is installed). `issue send` refuses an issue with a failed
//! check unless forced.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use mail_parser::MessageParser;
use regex::Regex;

use super::checks::Check;
use crate::render::check::GMAIL_CLIP_BYTES;

/// Subjects longer than this are cut on phones and in most inbox lists.
const SUBJECT_MAX: usize = 70;
/// SpamAssassin gets this long to score a message.
const SPAMASSASSIN_TIMEOUT: Duration = Duration::from_secs(60);

static HREF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)')"#).expect("href pattern")
});
static IMG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?is)<img\b[^>]*>").expect("img"));
static ALT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\salt\s*=\s*("[^"]*"|'[^']*')"#).expect("alt"));

/// Runs every check on `message` (the raw bytes of one reader's copy).
pub fn report(message: &[u8]) -> Vec<Check> {
    let Some(parsed) = MessageParser::default().parse(message) else {
        return vec![Check::fail(
            "message",
            "the issue's message cannot be parsed",
            "freeze the issue again from its comparisons",
        )];
    };
    let html = parsed.body_html(0).map(|h| h.into_owned());
    let text = parsed.body_text(0).map(|t| t.into_owned());
    let mut checks = Vec::new();

    checks.push(match &html {
        None => Check::fail(
            "html_size",
            "the message has no HTML part",
            "check the issue template (email/issue.mjml)",
        ),
        Some(h) if h.len() > GMAIL_CLIP_BYTES => Check::fail(
            "html_size",
            format!(
                "{:.1} KB of HTML: Gmail clips a message above 102 KB and hides the rest, the footer and its unsubscribe link included",
                h.len() as f64 / 1024.0
            ),
            "carry fewer comparisons (newsletter.max_items) or trim the template",
        ),
        Some(h) => Check::ok(
            "html_size",
            format!("{:.1} KB of HTML (Gmail clips above 102 KB)", h.len() as f64 / 1024.0),
        ),
    });

    let links: Vec<String> = html
        .as_deref()
        .map(|h| {
            HREF.captures_iter(h)
                .filter_map(|c| c.get(1).or_else(|| c.get(2)))
                .map(|m| m.as_str().trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let lower = |l: &String| l.to_ascii_lowercase();
    let relative: Vec<&String> = links
        .iter()
        .filter(|l| {
            let l = lower(l);
            !(l.starts_with("https://")
                || l.starts_with("http://")
                || l.starts_with("mailto:")
                || l.starts_with("tel:"))
        })
        .collect();
    let plain: Vec<&String> = links
        .iter()
        .filter(|l| lower(l).starts_with("http://"))
        .collect();
    let sample = |v: &[&String]| {
        v.iter()
            .take(3)
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    checks.push(if !relative.is_empty() {
        Check::fail(
            "links",
            format!(
                "{} link(s) are not absolute and go nowhere from a mailbox: {}",
                relative.len(),
                sample(&relative)
            ),
            "make every link absolute (https://…): check http.public_url, site.base_url and the template's hrefs",
        )
    } else if !plain.is_empty() {
        Check::warn(
            "links",
            format!(
                "{} link(s) use plain http: {}",
                plain.len(),
                sample(&plain)
            ),
            "serve them over https (http.public_url, site.base_url)",
        )
    } else {
        Check::ok(
            "links",
            format!("{} link(s), all absolute https", links.len()),
        )
    });

    let images: Vec<&str> = html
        .as_deref()
        .map(|h| IMG.find_iter(h).map(|m| m.as_str()).collect())
        .unwrap_or_default();
    let without_alt = images.iter().filter(|i| !ALT.is_match(i)).count();
    checks.push(if without_alt > 0 {
        Check::warn(
            "images",
            format!(
                "{without_alt} of {} image(s) have no alt text (shown when images are blocked, read by screen readers)",
                images.len()
            ),
            "give every <img> an alt attribute in the template",
        )
    } else {
        Check::ok("images", format!("{} image(s), each with alt text", images.len()))
    });

    checks.push(match text.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => Check::ok(
            "text_part",
            format!("a plain-text part of {} characters", t.chars().count()),
        ),
        _ => Check::fail(
            "text_part",
            "no plain-text part: spam filters distrust HTML-only mail",
            "check the issue's text template (email/issue.txt)",
        ),
    });

    let unsubscribe = header(message, "List-Unsubscribe");
    let one_click = header(message, "List-Unsubscribe-Post");
    checks.push(match (&unsubscribe, &one_click) {
        (Some(u), Some(p)) if u.contains("<https://") && p.contains("One-Click") => {
            Check::ok("list_unsubscribe", format!("{u}, one-click (RFC 8058)"))
        }
        (Some(u), _) if u.contains("<http") => Check::warn(
            "list_unsubscribe",
            format!(
                "{u}: not an https one-click link, which Gmail and Yahoo require of bulk senders"
            ),
            "set http.public_url to an https address",
        ),
        _ => Check::fail(
            "list_unsubscribe",
            "no List-Unsubscribe header with a link",
            "set http.public_url; every message carries List-Unsubscribe built from it",
        ),
    });

    let subject = parsed.subject().unwrap_or_default().trim().to_string();
    let chars = subject.chars().count();
    checks.push(if chars == 0 {
        Check::fail(
            "subject",
            "the subject is empty",
            "give the issue a subject",
        )
    } else if chars > SUBJECT_MAX {
        Check::warn(
            "subject",
            format!("{chars} characters: inboxes cut it after about {SUBJECT_MAX}: {subject:?}"),
            "shorten the subject template",
        )
    } else {
        Check::ok("subject", format!("{chars} characters: {subject:?}"))
    });

    if let Some(check) = spamassassin(message) {
        checks.push(check);
    }
    checks
}

/// A header of the raw message, unfolded.
fn header(message: &[u8], name: &str) -> Option<String> {
    let head = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message, |end| &message[..end]);
    let head = String::from_utf8_lossy(head)
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// `spamassassin -L -t` (local tests only: no network look-ups) on the message; `None` when
/// SpamAssassin is not installed.
fn spamassassin(message: &[u8]) -> Option<Check> {
    let mut child = match Command::new("spamassassin")
        .args(["-L", "-t"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(Check::warn(
                "spamassassin",
                format!("spamassassin could not run: {e}"),
                "check the spamassassin installation",
            ));
        }
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = message.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
        out
    });
    let deadline = Instant::now() + SPAMASSASSIN_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Some(Check::warn(
                    "spamassassin",
                    format!(
                        "spamassassin gave no score within {} s",
                        SPAMASSASSIN_TIMEOUT.as_secs()
                    ),
                    "check the spamassassin installation (run `spamassassin -L -t < message.eml`)",
                ));
            }
        }
    }
    let _ = writer.join();
    let out = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let status = header(out.replace('\n', "\r\n").as_bytes(), "X-Spam-Status")?;
    let number = |key: &str| -> Option<f64> {
        status
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.trim_end_matches(',').parse().ok())
    };
    let (score, required) = (number("score=")?, number("required=")?);
    let tests = status
        .split_once("tests=")
        .map(|(_, t)| t.split_whitespace().next().unwrap_or_default().to_string())
        .unwrap_or_default();
    let detail = format!("score {score:.1} of {required:.1} (local rules; tests: {tests})");
    let fix =
        "look at the rules that fired (spamassassin -L -t < message.eml) and change the content";
    Some(if score >= required {
        Check::fail("spamassassin", format!("marked as spam: {detail}"), fix)
    } else if score >= required / 2.0 {
        Check::warn("spamassassin", detail, fix)
    } else {
        Check::ok("spamassassin", detail)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(html: &str, subject: &str) -> Vec<u8> {
        format!(
            "From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n\
             List-Unsubscribe: <https://x.example/u/1>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
             --b\r\nContent-Type: text/html\r\n\r\n{html}\r\n--b--\r\n"
        )
        .into_bytes()
    }

    fn status(checks: &[Check], name: &str) -> &'static str {
        checks
            .iter()
            .find(|c| c.check == name)
            .map(|c| c.status.as_str())
            .unwrap()
    }

    #[test]
    fn links_images_and_subjects_are_checked() {
        let ok = report(&message(
            r#"<a href="https://x.example/a">a</a><img src="https://x.example/i.png" alt="">"#,
            "Short",
        ));
        assert_eq!(status(&ok, "links"), "ok");
        assert_eq!(status(&ok, "images"), "ok");
        assert_eq!(status(&ok, "subject"), "ok");
        assert_eq!(status(&ok, "list_unsubscribe"), "ok");
        let bad = report(&message(
            r#"<a href="/relative">a</a><a href='http://x.example'>b</a><img src="i.png">"#,
            &"long ".repeat(20),
        ));
        assert_eq!(status(&bad, "links"), "fail");
        assert_eq!(status(&bad, "images"), "warn");
        assert_eq!(status(&bad, "subject"), "warn");
        let plain = report(&message(r#"<a href="http://x.example">b</a>"#, "S"));
        assert_eq!(status(&plain, "links"), "warn");
        let big = report(&message(&"x".repeat(GMAIL_CLIP_BYTES + 1), "S"));
        assert_eq!(status(&big, "html_size"), "fail");
    }
}
