//! Subscribers: checked addresses, the lifecycle (pending → confirmed → unsubscribed/bounced),
//! and the tokens in confirmation and unsubscribe links.

pub mod lifecycle;
pub mod tokens;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest address we accept (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// The longest display name we store.
pub const MAX_NAME_LEN: usize = 100;

/// Why an address or name was refused; the message is shown to the reader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSubscriber(pub String);

/// A syntactically valid address, checked once at the edge and lower-cased as a whole: local
/// parts are case-sensitive on paper but not at any mainstream provider, and `Ada@` and `ada@`
/// must not become two subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SubscriberEmail(String);

impl SubscriberEmail {
    pub fn parse(input: &str) -> Result<SubscriberEmail, InvalidSubscriber> {
        let s = input.trim();
        if s.is_empty() {
            return Err(InvalidSubscriber("Please enter your email address.".into()));
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InvalidSubscriber(
                "An email address cannot contain spaces or line breaks.".into(),
            ));
        }
        if s.len() > MAX_EMAIL_LEN {
            return Err(InvalidSubscriber(format!(
                "That address is longer than {MAX_EMAIL_LEN} characters."
            )));
        }
        let address = lettre::Address::from_str(s).map_err(|_| {
            InvalidSubscriber(format!("{s:?} does not look like an email address."))
        })?;
        // RFC 5321 allows these, but no mainstream provider hands them out, and our relay and
        // the big receivers refuse them: better a clear answer now than a failure at send.
        if address.user().starts_with('"') {
            return Err(InvalidSubscriber(format!(
                "{s:?} uses a quoted name before the @; we cannot send to such addresses. Please use an ordinary address."
            )));
        }
        if address.domain().starts_with('[') || address.domain().parse::<IpAddr>().is_ok() {
            return Err(InvalidSubscriber(format!(
                "{s:?} names a server by its IP address; we can only send to addresses with a domain name."
            )));
        }
        // One canonical form however the domain is written (IDNA, UTS #46): `bücher.example`
        // and `xn--bcher-kva.example` are one mailbox, stored and sent as the second.
        let domain = idna::domain_to_ascii(address.domain())
            .map_err(|_| InvalidSubscriber(format!("{s:?} does not have a valid domain name.")))?;
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(InvalidSubscriber(format!(
                "{s:?} does not look like an email address."
            )));
        }
        Ok(SubscriberEmail(format!(
            "{}@{domain}",
            address.user().to_lowercase()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain after the `@` (ASCII, lower case as stored).
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// The mailbox this address reaches however it is spelled: lower case, without a
    /// `+tag`, and for Gmail without dots. For counting per mailbox only — mail still goes to
    /// the address as given.
    pub fn mailbox_key(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or((&self.0, ""));
        let local = local.split('+').next().unwrap_or(local).to_lowercase();
        let domain = domain.to_ascii_lowercase();
        match domain.as_str() {
            "gmail.com" | "googlemail.com" => format!("{}@gmail.com", local.replace('.', "")),
            _ => format!("{local}@{domain}"),
        }
    }
}

impl fmt::Display for SubscriberEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An optional display name: one line, no markup-significant control characters, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SubscriberName(String);

impl SubscriberName {
    /// `None` for an empty or missing name.
    pub fn parse(input: Option<&str>) -> Result<Option<SubscriberName>, InvalidSubscriber> {
        let Some(s) = input.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        if s.chars().any(|c| !allowed_in_name(c)) {
            return Err(InvalidSubscriber(
                "A name cannot contain line breaks, control characters or invisible formatting characters.".into(),
            ));
        }
        if s.chars().count() > MAX_NAME_LEN {
            return Err(InvalidSubscriber(format!(
                "A name can have at most {MAX_NAME_LEN} characters."
            )));
        }
        Ok(Some(SubscriberName(s.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `c` may appear in a display name. Refused: control characters, line and paragraph
/// separators (U+2028/2029), and format characters — bidi overrides and isolates that reorder
/// text around them, zero-width spaces and joiners that hide text — plus private-use,
/// surrogate and unassigned code points.
pub fn allowed_in_name(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    !matches!(
        c.general_category(),
        G::Control
            | G::Format
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::Surrogate
            | G::PrivateUse
            | G::Unassigned
    )
}

/// Where a subscriber is in the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberStatus {
    /// Signed up, waiting for the confirmation click.
    Pending,
    /// Confirmed: receives every issue.
    Confirmed,
    /// Left; never mailed again unless they sign up again.
    Unsubscribed,
    /// Their mailbox rejected us permanently.
    Bounced,
}

/// Outcome of an operator add/import of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddOutcome {
    Added,
    AlreadyPresent,
    /// The person unsubscribed or asked to be erased: only they can sign up again.
    Suppressed,
}

/// What an operator's add or import does with an address: an erased address (its hash is
/// suppressed) or one that left ([`SubscriberStatus::only_the_reader_brings_back`]) is never
/// (re)activated by an operator; one that is there already is left alone.
pub fn operator_add(erased: bool, existing: Option<SubscriberStatus>) -> AddOutcome {
    match existing {
        _ if erased => AddOutcome::Suppressed,
        Some(s) if s.only_the_reader_brings_back() => AddOutcome::Suppressed,
        Some(_) => AddOutcome::AlreadyPresent,
        None => AddOutcome::Added,
    }
}

impl SubscriberStatus {
    /// Every status.
    pub const ALL: [SubscriberStatus; 4] = [
        SubscriberStatus::Pending,
        SubscriberStatus::Confirmed,
        SubscriberStatus::Unsubscribed,
        SubscriberStatus::Bounced,
    ];

    /// A reader who left (or whose mailbox rejected us) comes back only by signing up again
    /// themselves: no operator add or import reactivates them.
    pub fn only_the_reader_brings_back(self) -> bool {
        matches!(
            self,
            SubscriberStatus::Unsubscribed | SubscriberStatus::Bounced
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberStatus::Pending => "pending",
            SubscriberStatus::Confirmed => "confirmed",
            SubscriberStatus::Unsubscribed => "unsubscribed",
            SubscriberStatus::Bounced => "bounced",
        }
    }
}

impl FromStr for SubscriberStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(SubscriberStatus::Pending),
            "confirmed" => Ok(SubscriberStatus::Confirmed),
            "unsubscribed" => Ok(SubscriberStatus::Unsubscribed),
            "bounced" => Ok(SubscriberStatus::Bounced),
            other => Err(format!(
                "{other:?} is not a status (pending, confirmed, unsubscribed, bounced)"
            )),
        }
    }
}

impl fmt::Display for SubscriberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a signup came from, kept with the consent record.
#[derive(Debug, Clone, Default)]
pub struct ConsentContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `form`, `api`, `cli`, `import:FILE`.
    pub source: String,
    pub consent_text_version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_once() {
        assert_eq!(
            SubscriberEmail::parse("  Ada.Lovelace@Example.ORG ")
                .unwrap()
                .as_str(),
            "ada.lovelace@example.org"
        );
        let bad = [
            ("", "Please enter"),
            ("ada", "does not look like"),
            ("ada@", "does not look like"),
            ("ada@localhost", "does not look like"),
            ("ada@example.org\r\nBcc: x@y.z", "spaces or line breaks"),
            ("a b@example.org", "spaces or line breaks"),
            ("<ada@example.org>", "does not look like"),
            ("\"ada..lovelace\"@example.org", "quoted name"),
            ("\"ada\"@example.org", "quoted name"),
            ("ada@[127.0.0.1]", "IP address"),
            ("ada@[IPv6:::1]", "IP address"),
            ("ada@127.0.0.1", "IP address"),
        ];
        for (input, expected) in bad {
            let err = SubscriberEmail::parse(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert!(
            SubscriberEmail::parse(&long)
                .unwrap_err()
                .0
                .contains("longer than")
        );
    }

    #[test]
    fn a_non_ascii_domain_has_one_canonical_form() {
        let forms = [
            "user@bücher.example",
            "user@BÜCHER.example",
            "user@xn--bcher-kva.example",
            "User@XN--BCHER-KVA.EXAMPLE",
        ];
        for input in forms {
            assert_eq!(
                SubscriberEmail::parse(input).unwrap().as_str(),
                "user@xn--bcher-kva.example",
                "{input}"
            );
        }
        // The local part is the mailbox's own: it is kept (sent only where SMTPUTF8 is offered).
        assert_eq!(
            SubscriberEmail::parse("jürgen@example.org")
                .unwrap()
                .as_str(),
            "jürgen@example.org"
        );
    }

    #[test]
    fn names_are_bounded_single_lines() {
        assert_eq!(SubscriberName::parse(Some("  ")).unwrap(), None);
        assert_eq!(
            SubscriberName::parse(Some(" Ada "))
                .unwrap()
                .unwrap()
                .as_str(),
            "Ada"
        );
        assert!(SubscriberName::parse(Some("A\nB")).is_err());
        assert!(SubscriberName::parse(Some(&"x".repeat(101))).is_err());
        for (bad, what) in [
            ("Ada\u{202E}evil", "right-to-left override"),
            ("Ada\u{2066}x\u{2069}", "bidi isolate"),
            ("A\u{200B}da", "zero-width space"),
            ("A\u{200D}da", "zero-width joiner"),
            ("A\u{FEFF}da", "byte order mark"),
            ("Ada\u{2028}Bcc", "line separator"),
            ("Ada\u{2029}x", "paragraph separator"),
            ("Ada\u{00AD}", "soft hyphen"),
            ("Ada\u{E000}", "private use"),
            ("Ada\u{0085}x", "next line"),
        ] {
            let err = SubscriberName::parse(Some(bad)).expect_err(what);
            assert!(err.0.contains("invisible formatting"), "{what}: {err}");
        }
        for good in ["Zoë O'Brien-Łukasz", "山田 太郎", "محمد", "Ada 🚀"] {
            assert!(SubscriberName::parse(Some(good)).is_ok(), "{good}");
        }
    }

    #[test]
    fn one_mailbox_however_it_is_spelled() {
        let key = |s: &str| SubscriberEmail::parse(s).unwrap().mailbox_key();
        assert_eq!(key("victim+0@example.org"), "victim@example.org");
        assert_eq!(key("Victim+news+x@Example.ORG"), "victim@example.org");
        assert_eq!(key("victim@example.org"), "victim@example.org");
        assert_eq!(key("v.i.c.t.i.m+1@googlemail.com"), "victim@gmail.com");
        assert_ne!(key("v.ictim@example.org"), "victim@example.org");
    }
}
