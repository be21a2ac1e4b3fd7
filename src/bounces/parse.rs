//! One report → what it means and whose message it was about.
//!
//! MIME is walked by `mail-parser`; this module reads the report fields it finds:
//! - **RFC 3464 DSNs** (`multipart/report; report-type=delivery-status`): the
//!   `message/delivery-status` part's per-recipient fields (`Action`, `Status`,
//!   `Diagnostic-Code`, `Final-Recipient`), and the original's headers from a
//!   `text/rfc822-headers` or `message/rfc822` part. Postfix, Gmail, Microsoft 365 and modern
//!   Exim send this shape.
//! - **Plain-text bounces** (qmail's `qmail-send`, classic Exim, many appliances): the failed
//!   addresses, the SMTP reply and the status code in the text, the original after the
//!   "copy of the message" line.
//! - **ARF complaints** (RFC 5965, `report-type=feedback-report`): `Feedback-Type`,
//!   `Original-Rcpt-To` (often redacted), and the original message.
//! - **Auto-replies** (RFC 3834 `Auto-Submitted`, vacation headers): ignored.
//!
//! Hard or soft comes from the status code and the action: `5.x.x` is hard except mailbox full
//! (`5.2.2`), message too big (`5.3.4`) and policy blocks (`5.7.x`, which are about the sender,
//! not the address), which are soft like every `4.x.x`; `delayed`, `delivered`, `relayed` and
//! `expanded` are ignored (a delay is followed by a failure or nothing).
//!
//! `mail-auth`'s ARF parser was considered: its current releases require `mail-parser` 1.x (this
//! crate is on 0.11) and pull in a DNS resolver and a crypto backend for the DKIM/SPF half we do
//! not use; the feedback-report fields are a header block that `mail-parser` reads already.

use std::sync::LazyLock;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use regex::Regex;
use sha2::{Digest, Sha256};

use super::BounceKind;

/// The longest raw reason kept with an event.
const MAX_REASON: usize = 2000;

/// Every hint to whose message a report is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clues {
    /// Where the report itself was delivered (To, Delivered-To, X-Original-To), and the
    /// original's Return-Path / ARF `Original-Mail-From`: candidates for our VERP address.
    pub envelope: Vec<String>,
    /// Message-IDs of the original message.
    pub message_ids: Vec<String>,
    /// URLs from the original's List-Unsubscribe header.
    pub unsubscribe_urls: Vec<String>,
    /// The original's Feedback-ID values.
    pub feedback_ids: Vec<String>,
    /// Recipient addresses the report names (Final-Recipient, Original-Rcpt-To, the
    /// original's To, the addresses a plain-text bounce lists).
    pub recipients: Vec<String>,
}

/// What one report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: BounceKind,
    /// The RFC 3463 status code, e.g. `5.1.1`, when the report gives one.
    pub status: Option<String>,
    /// The raw reason: the diagnostic code, the SMTP reply or the feedback type, as sent.
    pub reason: String,
    pub clues: Clues,
    /// Names the report for deduplication: the same report twice has the same key.
    pub report_key: String,
}

/// Why bytes could not be read as a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not an email message (no mail headers such as From, Date or Received)")]
    NotMail,
    #[error("truncated MIME: {0}")]
    Truncated(String),
}

static STATUS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b").expect("valid regex"));
static SMTP_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)(?:^|[\s:;])([245]\d\d)[ -]").expect("valid regex"));
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
        .expect("valid regex")
});
static ANGLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<([^<>\s]+)>").expect("valid regex"));

/// Lines after which plain-text bounces quote the original message.
const COPY_MARKERS: &[&str] = &[
    "--- Below this line is a copy of the message.",
    "------ This is a copy of the message, including all the headers. ------",
    "------ This is a copy of the message's headers. ------",
    "----- Original message -----",
    "------ Original message ------",
];

fn unfold(v: &str) -> String {
    v.split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `name: value` fields of a header block, unfolded, in order.
fn fields(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':')
            && !name.is_empty()
            && !name.contains(' ')
        {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

/// The header fields of a message (root headers), names lowercased, values unfolded.
fn message_fields(msg: &mail_parser::Message<'_>) -> Vec<(String, String)> {
    msg.headers_raw()
        .map(|(n, v)| (n.to_ascii_lowercase(), unfold(v)))
        .collect()
}

fn get<'a>(fields: &'a [(String, String)], name: &str) -> impl Iterator<Item = &'a str> {
    fields
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `rfc822; user@example.org` → `user@example.org`.
fn address_field(value: &str) -> Option<String> {
    let v = value.split_once(';').map_or(value, |(_, a)| a).trim();
    let v = v.trim_start_matches('<').trim_end_matches('>').trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn addresses_in(value: &str) -> Vec<String> {
    ADDRESS
        .find_iter(value)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// Collects the clues of the original message's headers.
fn original_clues(original: &[(String, String)], clues: &mut Clues) {
    for v in get(original, "message-id") {
        clues.message_ids.push(
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        );
    }
    for v in get(original, "list-unsubscribe") {
        for cap in ANGLE.captures_iter(v) {
            if cap[1].starts_with("http") {
                clues.unsubscribe_urls.push(cap[1].to_string());
            }
        }
    }
    for v in get(original, "feedback-id") {
        clues.feedback_ids.push(v.trim().to_string());
    }
    for v in get(original, "return-path") {
        clues.envelope.extend(addresses_in(v));
    }
    for v in get(original, "to") {
        clues.recipients.extend(addresses_in(v));
    }
}

/// One recipient group of a delivery-status part.
#[derive(Debug, Default)]
struct DsnRecipient {
    action: Option<String>,
    status: Option<String>,
    diagnostic: Option<String>,
    recipient: Option<String>,
}

fn dsn_recipients(text: &str) -> Vec<DsnRecipient> {
    let normalised = text.replace("\r\n", "\n");
    normalised
        .split("\n\n")
        .map(fields)
        .filter(|f| get(f, "action").next().is_some() || get(f, "final-recipient").next().is_some())
        .map(|f| DsnRecipient {
            action: get(&f, "action")
                .next()
                .map(|a| a.trim().to_ascii_lowercase()),
            status: get(&f, "status")
                .next()
                .and_then(|s| STATUS.find(s).map(|m| m.as_str().to_string())),
            diagnostic: get(&f, "diagnostic-code").next().map(str::to_string),
            recipient: get(&f, "final-recipient")
                .next()
                .or_else(|| get(&f, "original-recipient").next())
                .and_then(address_field),
        })
        .collect()
}

/// Hard, soft or ignored from a DSN action and an RFC 3463 status (or a bare SMTP code).
pub fn classify(action: Option<&str>, status: Option<&str>, smtp_code: Option<u16>) -> BounceKind {
    if matches!(
        action,
        Some("delayed" | "delivered" | "relayed" | "expanded")
    ) {
        return BounceKind::Ignored;
    }
    if let Some(status) = status {
        let mut parts = status.split('.');
        let class = parts.next().unwrap_or("");
        let subject = parts.next().unwrap_or("");
        let detail = parts.next().unwrap_or("");
        return match (class, subject, detail) {
            ("2", _, _) => BounceKind::Ignored,
            ("4", _, _) => BounceKind::Soft,
            ("5", "2", "2") | ("5", "3", "4") | ("5", "7", _) => BounceKind::Soft,
            ("5", _, _) => BounceKind::Hard,
            _ => BounceKind::Soft,
        };
    }
    match smtp_code {
        Some(c) if (200..300).contains(&c) => BounceKind::Ignored,
        Some(552) => BounceKind::Soft,
        Some(c) if (500..600).contains(&c) => BounceKind::Hard,
        Some(_) => BounceKind::Soft,
        // "failed" without a code: the MTA gave up for good.
        None if action == Some("failed") => BounceKind::Hard,
        None => BounceKind::Soft,
    }
}

/// The first RFC 3463 status code (`5.1.1`) in free text.
pub fn status_in(text: &str) -> Option<String> {
    STATUS.find(text).map(|m| m.as_str().to_string())
}

fn smtp_code(text: &str) -> Option<u16> {
    SMTP_CODE
        .captures(text)
        .and_then(|c| c[1].parse().ok())
        .filter(|c: &u16| *c >= 400)
}

fn bounded(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_REASON {
        return s.to_string();
    }
    let mut end = MAX_REASON;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Whether the bytes look like a mail message at all: header fields and at least one of the
/// headers every delivered message has.
fn looks_like_mail(raw: &[u8], msg: &mail_parser::Message<'_>) -> bool {
    if raw.contains(&0) {
        return false;
    }
    let names: Vec<String> = msg
        .headers_raw()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    !names.is_empty()
        && names
            .iter()
            .all(|n| n.bytes().all(|b| (33..=126).contains(&b) && b != b':'))
        && names
            .iter()
            .any(|n| matches!(n.as_str(), "from" | "date" | "received" | "return-path"))
}

/// Every multipart boundary of the message must be closed: a report cut short in transit or on
/// disk is refused rather than half-read.
fn check_complete(raw: &[u8], msg: &mail_parser::Message<'_>) -> Result<(), ParseError> {
    for part in &msg.parts {
        if let Some(ct) = part.content_type()
            && ct.ctype().eq_ignore_ascii_case("multipart")
            && let Some(boundary) = ct.attribute("boundary")
        {
            let close = format!("--{boundary}--");
            if memchr::memmem::find(raw, close.as_bytes()).is_none() {
                return Err(ParseError::Truncated(format!(
                    "the multipart/{} part never closes (no \"{close}\")",
                    ct.subtype().unwrap_or("?")
                )));
            }
        }
    }
    Ok(())
}

fn is_auto_reply(fields: &[(String, String)]) -> bool {
    let has = |name: &str| get(fields, name).next().is_some();
    let auto = get(fields, "auto-submitted").any(|v| !v.trim().eq_ignore_ascii_case("no"));
    let subject = get(fields, "subject")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    auto || has("x-autoreply")
        || has("x-autorespond")
        || get(fields, "precedence").any(|v| v.eq_ignore_ascii_case("auto_reply"))
        || subject.starts_with("out of office")
        || subject.starts_with("automatic reply")
        || subject.starts_with("auto:")
        || subject.contains("vacation")
}

/// Reads one report: a feedback report (ARF), else a delivery status notification, else a
/// plain-text bounce, auto-reply or something else, by [`plain_text`].
pub fn parse(raw: &[u8]) -> Result<Report, ParseError> {
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or(ParseError::NotMail)?;
    if !looks_like_mail(raw, &msg) {
        return Err(ParseError::NotMail);
    }
    check_complete(raw, &msg)?;
    let top = message_fields(&msg);
    let mut clues = Clues::default();
    for name in ["to", "delivered-to", "x-original-to", "envelope-to"] {
        for v in get(&top, name) {
            clues.envelope.extend(addresses_in(v));
        }
    }
    let report_key = report_key(raw, &msg);
    let parts = machine_parts(&msg, &mut clues);
    let (kind, status, reason) = if let Some(fb) = parts.feedback {
        feedback_report(&fb, &mut clues)
    } else if !parts.recipients.is_empty() {
        delivery_status(&parts.recipients, &mut clues)
    } else {
        plain_text(&msg, &top, &mut clues)
    };
    Ok(Report {
        kind,
        status,
        reason: bounded(&reason),
        clues,
        report_key,
    })
}

/// What identifies a report when it arrives again: its Message-ID, else its bytes.
fn report_key(raw: &[u8], msg: &mail_parser::Message<'_>) -> String {
    let mut h = Sha256::new();
    match msg.message_id() {
        Some(id) => {
            h.update(b"message-id:");
            h.update(id.as_bytes());
        }
        None => {
            h.update(b"raw:");
            h.update(raw);
        }
    }
    hex::encode(h.finalize())
}

/// The machine-readable parts of a report.
struct MachineParts {
    /// `message/delivery-status`: one entry per recipient.
    recipients: Vec<DsnRecipient>,
    /// `message/feedback-report` (ARF) fields.
    feedback: Option<Vec<(String, String)>>,
}

/// Reads the DSN and ARF parts; the returned original's headers go into `clues`.
fn machine_parts(msg: &mail_parser::Message<'_>, clues: &mut Clues) -> MachineParts {
    let mut parts = MachineParts {
        recipients: Vec::new(),
        feedback: None,
    };
    for part in msg.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let (ctype, sub) = (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        );
        match (ctype.as_str(), sub.as_str(), &part.body) {
            ("message", "delivery-status" | "global-delivery-status", _) => {
                parts
                    .recipients
                    .extend(dsn_recipients(&String::from_utf8_lossy(part.contents())));
            }
            ("message", "feedback-report", _) => {
                parts.feedback = Some(fields(&String::from_utf8_lossy(part.contents())));
            }
            ("text", "rfc822-headers", _) | ("message", "rfc822-headers", _) => {
                original_clues(&fields(&String::from_utf8_lossy(part.contents())), clues);
            }
            (_, _, PartType::Message(original)) => {
                original_clues(&message_fields(original), clues);
            }
            _ => {}
        }
    }
    parts
}

/// What a report says: its kind, status code and reason (unbounded).
type Reading = (BounceKind, Option<String>, String);

/// A feedback report (ARF): a complaint, unless it says `not-spam`.
fn feedback_report(fb: &[(String, String)], clues: &mut Clues) -> Reading {
    let kind = get(fb, "feedback-type")
        .next()
        .unwrap_or("abuse")
        .trim()
        .to_ascii_lowercase();
    for name in ["original-rcpt-to", "removal-recipient"] {
        clues
            .recipients
            .extend(get(fb, name).filter_map(address_field));
    }
    for v in get(fb, "original-mail-from") {
        clues.envelope.extend(addresses_in(v));
    }
    let reason = fb
        .iter()
        .filter(|(n, _)| {
            matches!(
                n.as_str(),
                "feedback-type" | "user-agent" | "source-ip" | "reported-domain" | "arrival-date"
            )
        })
        .map(|(n, v)| format!("{n}: {v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let kind = if kind == "not-spam" {
        BounceKind::Ignored
    } else {
        BounceKind::Complaint
    };
    (kind, None, reason)
}

/// A delivery status notification: our messages have one recipient each; with several, the
/// worst outcome counts.
fn delivery_status(recipients: &[DsnRecipient], clues: &mut Clues) -> Reading {
    let rank = |k: BounceKind| match k {
        BounceKind::Hard => 3,
        BounceKind::Soft => 2,
        BounceKind::Complaint => 4,
        BounceKind::Ignored => 1,
    };
    let mut best: Option<(BounceKind, &DsnRecipient)> = None;
    for r in recipients {
        let code = r.diagnostic.as_deref().and_then(smtp_code);
        let kind = classify(r.action.as_deref(), r.status.as_deref(), code);
        if best.is_none_or(|(b, _)| rank(kind) > rank(b)) {
            best = Some((kind, r));
        }
        if let Some(a) = &r.recipient {
            clues.recipients.push(a.clone());
        }
    }
    let (kind, r) = best.expect("at least one recipient");
    let reason = r
        .diagnostic
        .clone()
        .or_else(|| r.action.clone().map(|a| format!("action: {a}")))
        .unwrap_or_default();
    (kind, r.status.clone(), reason)
}

/// No machine-readable part: a plain-text bounce (qmail, Exim, Exchange…), an auto-reply, or
/// something else.
fn plain_text(
    msg: &mail_parser::Message<'_>,
    top: &[(String, String)],
    clues: &mut Clues,
) -> Reading {
    let text = msg
        .body_text(0)
        .map(|t| t.replace("\r\n", "\n"))
        .unwrap_or_default();
    let (report_text, original) = match COPY_MARKERS
        .iter()
        .find_map(|m| text.find(m).map(|at| (at, m.len())))
    {
        Some((at, len)) => (&text[..at], Some(&text[at + len..])),
        None => (text.as_str(), None),
    };
    if let Some(original) = original {
        original_clues(&fields(original.trim_start()), clues);
    }
    // Words joined by single spaces: MTAs wrap their sentences anywhere.
    let lower = report_text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let plain_bounce = [
        "qmail-send program",
        "wasn't able to deliver your message",
        "could not be delivered to one or more of its recipients",
        "delivery has failed to these recipients",
        "message could not be delivered",
        "undeliverable",
        "delivery status notification",
        "has not yet been delivered",
    ]
    .iter()
    .any(|needle| lower.contains(needle));
    if !plain_bounce {
        let reason = if is_auto_reply(top) {
            "auto-reply".to_string()
        } else {
            format!(
                "not a bounce report: {}",
                get(top, "subject").next().unwrap_or("(no subject)")
            )
        };
        return (BounceKind::Ignored, None, reason);
    }
    // The failed addresses: qmail writes `<a@b>:`, Exim indents them under "failed:".
    for line in report_text.lines() {
        let t = line.trim();
        if (t.starts_with('<') && t.ends_with(">:")) || (line.starts_with("  ") && !t.contains(' '))
        {
            clues.recipients.extend(addresses_in(t));
        }
    }
    let delayed = lower.contains("has not yet been delivered")
        || lower.contains("i'm still trying")
        || lower.contains("delivery is delayed")
        || lower.contains("will continue trying");
    let temporary = lower.contains("temporary error") || lower.contains("temporary failure");
    let status = STATUS.find(report_text).map(|m| m.as_str().to_string());
    let code = smtp_code(report_text);
    let kind = if delayed {
        BounceKind::Ignored
    } else if temporary && status.is_none() && code.is_none_or(|c| c < 500) {
        BounceKind::Soft
    } else {
        classify(Some("failed"), status.as_deref(), code)
    };
    // The reason: the lines that carry the remote server's reply, else the whole report text.
    let reason = report_text
        .lines()
        .map(str::trim)
        .filter(|l| smtp_code(l).is_some() || STATUS.is_match(l))
        .collect::<Vec<_>>()
        .join(" ");
    let reason = if reason.is_empty() {
        report_text.to_string()
    } else {
        reason
    };
    (kind, status, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_and_actions_classify() {
        let cases = [
            (Some("failed"), Some("5.1.1"), None, BounceKind::Hard),
            (Some("failed"), Some("5.1.10"), None, BounceKind::Hard),
            (Some("failed"), Some("5.2.2"), None, BounceKind::Soft),
            (Some("failed"), Some("5.7.1"), None, BounceKind::Soft),
            (Some("failed"), Some("4.4.7"), None, BounceKind::Soft),
            (Some("delayed"), Some("4.4.1"), None, BounceKind::Ignored),
            (Some("delivered"), Some("2.0.0"), None, BounceKind::Ignored),
            (Some("failed"), None, Some(550), BounceKind::Hard),
            (Some("failed"), None, Some(452), BounceKind::Soft),
            (Some("failed"), None, None, BounceKind::Hard),
        ];
        for (action, status, code, want) in cases {
            assert_eq!(
                classify(action, status, code),
                want,
                "{action:?} {status:?} {code:?}"
            );
        }
    }

    #[test]
    fn not_mail_is_refused() {
        for bad in [
            &b"{\"kind\": \"hard\", \"to\": \"a@b.example\"}\n"[..],
            b"",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
            b"just some words\nand more words\n",
        ] {
            assert_eq!(parse(bad), Err(ParseError::NotMail), "{bad:?}");
        }
    }
}
