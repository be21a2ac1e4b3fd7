//! The kinds of bounce events, where they came in and how they were matched: leaf types that
//! the store and the bounce logic both use, so neither has to import the other.

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
    Webhook(Provider),
}

impl Source {
    pub fn as_str(self) -> &'static str {
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
                .and_then(Provider::parse)
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

/// Which provider a webhook call claims to come from (the path segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Ses,
    Postmark,
    Sendgrid,
    Mailgun,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Ses => "ses",
            Provider::Postmark => "postmark",
            Provider::Sendgrid => "sendgrid",
            Provider::Mailgun => "mailgun",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        match s {
            "ses" => Some(Provider::Ses),
            "postmark" => Some(Provider::Postmark),
            "sendgrid" => Some(Provider::Sendgrid),
            "mailgun" => Some(Provider::Mailgun),
            _ => None,
        }
    }
}
