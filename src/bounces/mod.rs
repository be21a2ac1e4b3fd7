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
//!
//! The SQL lives in [`crate::store::bounces`]; the decisions live here.

pub mod intake;
pub mod parse;
pub mod policy;
pub mod resolve;
pub mod verp;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `verdicts bounces import`.
    Import,
    /// The mailbox at `bounces.imap_url`.
    Imap,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Import => "import",
            Source::Imap => "imap",
        }
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "import" => Ok(Source::Import),
            "imap" => Ok(Source::Imap),
            other => Err(format!("{other:?} is not a bounce source")),
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
