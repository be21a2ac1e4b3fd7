//! Composing messages: every header is built here, in Rust, from checked values — never from a
//! template — so CR/LF can never reach a header.
//!
//! Each newsletter message carries From, To, Subject, Date, a Message-ID that is stable per
//! (issue, subscriber) on our own domain, List-Id, `List-Unsubscribe` (https, plus mailto when
//! configured) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), and is
//! multipart/alternative with a text and an HTML part.

pub mod backoff;
pub mod error;
pub mod newsletter;
pub mod queue;
pub mod reset;
pub mod smtp_pool;
pub mod tls;
pub mod transport;

use std::time::SystemTime;

use anyhow::Context;
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};

use crate::config::{MailSettings, NewsletterSettings, Settings};
use crate::text::one_line;

/// A transactional mail in the outbound queue: what it is, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailKind {
    /// The double opt-in mail, with the raw confirmation token of its link.
    Confirm { token: String },
    /// The one reminder to a reader still pending after `signup.reminder_after`, with a fresh
    /// confirmation token.
    Reminder { token: String },
    /// Sent once the address is confirmed.
    Welcome,
    /// To the new address a reader gave on their manage page, with the raw token of the link
    /// that confirms it.
    EmailChange { token: String },
    /// `subscribers repermission`: "still want this?", with a one-click keep.
    Repermission,
}

impl MailKind {
    /// The `kind` column of a confirm mail (for multi-row inserts that bind the token apart).
    pub const CONFIRM: &'static str = "confirm";
    const REMINDER: &'static str = "reminder";
    const WELCOME: &'static str = "welcome";
    const EMAIL_CHANGE: &'static str = "email_change";
    /// The `kind` column of a repermission mail (queued in bulk by one statement).
    pub const REPERMISSION: &'static str = "repermission";

    /// The `kind` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            MailKind::Confirm { .. } => MailKind::CONFIRM,
            MailKind::Reminder { .. } => MailKind::REMINDER,
            MailKind::Welcome => MailKind::WELCOME,
            MailKind::EmailChange { .. } => MailKind::EMAIL_CHANGE,
            MailKind::Repermission => MailKind::REPERMISSION,
        }
    }

    /// The `token` column.
    pub fn token(&self) -> Option<&str> {
        match self {
            MailKind::Confirm { token }
            | MailKind::Reminder { token }
            | MailKind::EmailChange { token } => Some(token),
            MailKind::Welcome | MailKind::Repermission => None,
        }
    }

    /// Decodes the `kind` and `token` columns of a queued mail.
    pub fn from_row(kind: &str, token: Option<String>) -> anyhow::Result<MailKind> {
        match (kind, token) {
            (MailKind::CONFIRM, Some(token)) => Ok(MailKind::Confirm { token }),
            (MailKind::REMINDER, Some(token)) => Ok(MailKind::Reminder { token }),
            (MailKind::EMAIL_CHANGE, Some(token)) => Ok(MailKind::EmailChange { token }),
            (MailKind::CONFIRM | MailKind::REMINDER | MailKind::EMAIL_CHANGE, None) => {
                anyhow::bail!("a queued {kind} mail without its token")
            }
            (MailKind::WELCOME, _) => Ok(MailKind::Welcome),
            (MailKind::REPERMISSION, _) => Ok(MailKind::Repermission),
            (other, _) => anyhow::bail!("unknown queued mail kind {other:?}"),
        }
    }
}

/// One message to one reader.
pub struct Envelope<'a> {
    pub to: Mailbox,
    /// The part before `@` of the Message-ID, e.g. `issue-12.sub-345`; the domain is ours.
    pub message_id_local: &'a str,
    pub subject: &'a str,
    pub unsubscribe_url: &'a str,
    /// The text part: `Body::new(string)` picks the transfer encoding; a pre-encoded body (see
    /// [`newsletter`]) is used as it is.
    pub text: Body,
    pub html: Body,
    /// `Feedback-ID` (Gmail's feedback loop, `a:b:c:SenderId`): issue messages only.
    pub feedback_id: Option<&'a str>,
}

/// The domain of `mail.from`: used for Message-IDs so they are on our own domain.
pub fn our_domain(mail: &MailSettings) -> String {
    mail.from.0.email.domain().to_string()
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// `"Weekly AI Tool Verdicts" <weekly-verdicts.shiporskip.example>` (RFC 2919).
pub fn list_id_value(newsletter: &NewsletterSettings) -> String {
    let name = newsletter.name.0.replace(['"', '\\'], "");
    format!("\"{name}\" <{}>", newsletter.list_id.0)
}

/// `Feedback-ID: ISSUE:LIST:newsletter:SENDER` in Gmail's `a:b:c:SenderId` form: the issue
/// number (the campaign), the list id, the kind of mail, and our sending domain (the sender id,
/// the same on every message). Gmail's Postmaster Tools report complaint rates per value.
pub fn feedback_id(
    newsletter: &NewsletterSettings,
    mail: &MailSettings,
    issue_number: i64,
) -> String {
    format!(
        "{issue_number}:{}:newsletter:{}",
        newsletter.list_id.0,
        our_domain(mail)
    )
}

/// Builds the full message with the given multipart boundary (random when `None`): one
/// boundary per issue makes every recipient's body start with the same bytes, which DKIM
/// hashes once per issue. The boundary must not occur in the parts; one starting with `=_`
/// cannot occur in quoted-printable text.
pub fn compose(
    settings: &Settings,
    env: Envelope<'_>,
    boundary: Option<&str>,
) -> anyhow::Result<Message> {
    anyhow::ensure!(
        !env.unsubscribe_url.contains(['\r', '\n', '<', '>', ' ']),
        "unsubscribe URL must be a bare URL"
    );
    anyhow::ensure!(
        env.message_id_local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
        "Message-ID local part must be a dot-atom"
    );
    let mut list_unsubscribe = format!("<{}>", env.unsubscribe_url);
    if let Some(mailto) = &settings.mail.unsubscribe_mailto {
        list_unsubscribe.push_str(&format!(
            ", <mailto:{}?subject=unsubscribe>",
            mailto.0.email
        ));
    }
    let mut builder = Message::builder()
        .from(settings.mail.from.0.clone())
        .to(env.to)
        .subject(one_line(env.subject))
        .date(SystemTime::now())
        .message_id(Some(format!(
            "<{}@{}>",
            env.message_id_local,
            our_domain(&settings.mail)
        )))
        .raw_header(header("List-Id", list_id_value(&settings.newsletter)))
        .raw_header(header("List-Unsubscribe", list_unsubscribe))
        .raw_header(header(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".to_string(),
        ));
    if let Some(feedback_id) = env.feedback_id {
        anyhow::ensure!(
            feedback_id
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '<' && c != '>'),
            "Feedback-ID must be printable ASCII without spaces"
        );
        builder = builder.raw_header(header("Feedback-ID", feedback_id.to_string()));
    }
    if let Some(reply_to) = &settings.mail.reply_to {
        builder = builder.reply_to(reply_to.0.clone());
    }
    let mut multipart = MultiPart::alternative();
    if let Some(boundary) = boundary {
        multipart = multipart.boundary(boundary);
    }
    builder
        .multipart(
            multipart
                .singlepart(SinglePart::plain(env.text))
                .singlepart(SinglePart::html(env.html)),
        )
        .context("building the message")
}
