//! Bounces and complaints: reading what comes back after a message left, and keeping the list
//! clean with it.
//!
//! - [`verp`] — the per-message envelope sender `bounces+TOKEN@domain` and reading it back.
//! - [`parse`] — one report (a DSN in RFC 3464 or an MTA's own shape, an ARF complaint, an
//!   auto-reply) → its [`BounceKind`], raw reason and every clue to whose message it was.
//! - [`resolve`] — clues → (subscriber, issue): VERP, the original Message-ID, the
//!   List-Unsubscribe link, the original recipient.
//! - [`policy`] — what an event does: hard → `bounced`; soft counted against
//!   `bounces.soft_limit` within `bounces.soft_window`; complaint → unsubscribed, suppressed,
//!   consent event `complaint`; and the circuit breaker that pauses a send whose complaint or
//!   bounce rate turns bad.
//! - [`intake`] — where reports come from: `.eml` files, mbox files, Maildir folders.
//! - [`imap`] — the bounce mailbox `serve` polls (`bounces.imap_url`).
//! - [`webhooks`] — provider webhooks (SES, Postmark, SendGrid, Mailgun): authentication and
//!   payloads; the routes are in [`crate::web::webhooks`].
//!
//! The SQL lives in [`crate::store::bounces`]; the decisions live here.

pub mod imap;
pub mod intake;
pub mod parse;
pub mod policy;
pub mod resolve;
pub mod verp;
pub mod webhooks;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// What a report means for the subscriber it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BounceKind {
    /// The address does not exist (5.1.x and friends): `bounced` at once.
    Hard,
    /// A failure that may pass (mailbox full, retries given up, policy blocks): counted.
    Soft,
    /// The reader marked the message as spam (ARF): unsubscribed and suppressed.
    Complaint,
    /// Nothing to act on: a delay notice, a success DSN, an auto-reply.
    Ignored,
}

impl BounceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceKind::Hard => "hard",
            BounceKind::Soft => "soft",
            BounceKind::Complaint => "complaint",
            BounceKind::Ignored => "ignored",
        }
    }
}

impl FromStr for BounceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hard" => Ok(BounceKind::Hard),
            "soft" => Ok(BounceKind::Soft),
            "complaint" => Ok(BounceKind::Complaint),
            "ignored" => Ok(BounceKind::Ignored),
            other => Err(format!("{other:?} is not a bounce kind")),
        }
    }
}

impl fmt::Display for BounceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a report came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `verdicts bounces import`.
    Import,
    /// The mailbox at `bounces.imap_url`.
    Imap,
    /// `POST /webhooks/{provider}`.
    Webhook(webhooks::Provider),
}

impl Source {
    pub fn as_str(self) -> &'static str {
        use webhooks::Provider;
        match self {
            Source::Import => "import",
            Source::Imap => "imap",
            Source::Webhook(Provider::Ses) => "webhook:ses",
            Source::Webhook(Provider::Postmark) => "webhook:postmark",
            Source::Webhook(Provider::Sendgrid) => "webhook:sendgrid",
            Source::Webhook(Provider::Mailgun) => "webhook:mailgun",
        }
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "import" => Ok(Source::Import),
            "imap" => Ok(Source::Imap),
            other => other
                .strip_prefix("webhook:")
                .and_then(webhooks::Provider::parse)
                .map(Source::Webhook)
                .ok_or_else(|| format!("{other:?} is not a bounce source")),
        }
    }
}

/// How the subscriber of a report was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchedBy {
    /// The VERP envelope sender the report was addressed to (or quotes): unforgeable.
    Verp,
    /// The original message's Message-ID `issue-N.sub-S@our-domain`.
    MessageId,
    /// The signed unsubscribe link in the original's List-Unsubscribe header.
    ListUnsubscribe,
    /// The recipient address the report names.
    Recipient,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::Verp => "verp",
            MatchedBy::MessageId => "message-id",
            MatchedBy::ListUnsubscribe => "list-unsubscribe",
            MatchedBy::Recipient => "recipient",
        }
    }
}

impl FromStr for MatchedBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "verp" => Ok(MatchedBy::Verp),
            "message-id" => Ok(MatchedBy::MessageId),
            "list-unsubscribe" => Ok(MatchedBy::ListUnsubscribe),
            "recipient" => Ok(MatchedBy::Recipient),
            other => Err(format!("{other:?} is not a match method")),
        }
    }
}

/// Adds the per-issue bounce and complaint figures to `/metrics`:
/// `verdicts_issue_bounce_events_total{issue,kind}` and the rates per message sent,
/// `verdicts_issue_hard_bounce_rate{issue}` and `verdicts_issue_complaint_rate{issue}`.
pub fn register_metrics(
    registry: &mut prometheus_client::registry::Registry,
    stats: &[crate::store::bounces::IssueBounceStats],
) {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    type Labels = Vec<(String, String)>;
    type Rate = Gauge<f64, std::sync::atomic::AtomicU64>;
    let events = Family::<Labels, Counter>::default();
    let hard_rate = Family::<Labels, Rate>::default();
    let complaint_rate = Family::<Labels, Rate>::default();
    for s in stats {
        let issue = ("issue".to_string(), s.number.to_string());
        for (kind, n) in [
            (BounceKind::Hard, s.counts.hard),
            (BounceKind::Soft, s.counts.soft),
            (BounceKind::Complaint, s.counts.complaints),
        ] {
            events
                .get_or_create(&vec![issue.clone(), ("kind".into(), kind.to_string())])
                .inc_by(n as u64);
        }
        let per_sent = |n: i64| {
            if s.sent > 0 {
                n as f64 / s.sent as f64
            } else {
                0.0
            }
        };
        hard_rate
            .get_or_create(&vec![issue.clone()])
            .set(per_sent(s.counts.hard));
        complaint_rate
            .get_or_create(&vec![issue])
            .set(per_sent(s.counts.complaints));
    }
    registry.register(
        "issue_bounce_events",
        "Bounces and complaints attributed to each issue, by kind",
        events,
    );
    registry.register(
        "issue_hard_bounce_rate",
        "Hard bounces per message sent, per issue",
        hard_rate,
    );
    registry.register(
        "issue_complaint_rate",
        "Complaints per message sent, per issue",
        complaint_rate,
    );
}
