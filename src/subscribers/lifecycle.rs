//! What the reader's lifecycle needs below the application layer: the signup request with its
//! fresh confirmation token, the unsubscribe URL, and the [`Composer`] of the mails the
//! lifecycle queues. The steps themselves (signup, confirm, unsubscribe) are decided in
//! [`crate::app::subscribers`].

use std::str::FromStr;

use lettre::message::Mailbox;
use tera::Context;

use super::tokens::{
    hash_confirm_token, keep_token, mailbox_hash, manage_token, new_confirm_token,
    unsubscribe_token,
};
use super::{ConsentContext, SubscriberEmail, SubscriberName};
use crate::config::{HttpUrl, SecretKey, Settings};
use crate::mail::{Envelope, MailKind, compose};
use crate::render::Renderer;

/// `{public_url}/unsubscribe/{token}` for a subscriber.
pub fn unsubscribe_url(public_url: &HttpUrl, secret: &SecretKey, subscriber_id: i64) -> String {
    public_url.join(&format!(
        "unsubscribe/{}",
        unsubscribe_token(secret, subscriber_id)
    ))
}

/// `{public_url}/manage/{token}`: the reader's own page (pause, data, leave).
pub fn manage_url(public_url: &HttpUrl, secret: &SecretKey, subscriber_id: i64) -> String {
    public_url.join(&format!("manage/{}", manage_token(secret, subscriber_id)))
}

/// `{public_url}/keep/{token}`: the one-click keep of the repermission mail.
pub fn keep_url(public_url: &HttpUrl, secret: &SecretKey, subscriber_id: i64) -> String {
    public_url.join(&format!("keep/{}", keep_token(secret, subscriber_id)))
}

/// `{public_url}/address/{token}`: confirms a new address given on the manage page.
pub fn address_url(public_url: &HttpUrl, token: &str) -> String {
    public_url.join(&format!("address/{token}"))
}

/// Builds transactional mails (confirmation, welcome) when the sender takes them from the queue.
#[derive(Debug, Clone)]
pub struct Composer {
    pub settings: std::sync::Arc<Settings>,
    pub secret: SecretKey,
    pub renderer: std::sync::Arc<Renderer>,
}

impl Composer {
    fn base_context(&self, name: Option<&str>, unsubscribe: &str) -> Context {
        let s = &self.settings;
        let mut ctx = crate::render::page_context(s);
        ctx.insert("name", &name);
        ctx.insert("archive_url", &s.http.public_url.join("archive"));
        ctx.insert("unsubscribe_url", unsubscribe);
        ctx
    }

    /// The formatted message for a queued mail of `kind`.
    ///
    /// A confirmation goes to a mailbox that has not said yes to anything yet, so it carries
    /// nothing a visitor typed: no name in `To:` and a neutral greeting, whatever name the
    /// signup form was given. (Otherwise anyone could put their text into a genuine mail from
    /// us to any address.) The welcome mail, after the confirmation, may use the name.
    pub fn compose(
        &self,
        kind: &MailKind,
        subscriber_id: i64,
        email: &str,
        name: Option<&str>,
    ) -> anyhow::Result<Vec<u8>> {
        let s = &self.settings;
        // Mail to an address that has not said yes yet carries no name (see above).
        let name = match kind {
            MailKind::Confirm { .. } | MailKind::Reminder { .. } | MailKind::EmailChange { .. } => {
                None
            }
            MailKind::Welcome | MailKind::Repermission => name,
        };
        let unsubscribe = unsubscribe_url(&s.http.public_url, &self.secret, subscriber_id);
        let mut ctx = self.base_context(name, &unsubscribe);
        let newsletter = &s.newsletter.name.0;
        let ttl_hours = s.signup.confirm_token_ttl.0.as_secs() / 3600;
        let (subject, template, message_id) = match kind {
            MailKind::Confirm { token } | MailKind::Reminder { token } => {
                let reminder = matches!(kind, MailKind::Reminder { .. });
                ctx.insert("reminder", &reminder);
                ctx.insert(
                    "confirm_url",
                    &s.http.public_url.join(&format!("confirm/{token}")),
                );
                ctx.insert("ttl_hours", &ttl_hours);
                (
                    if reminder {
                        format!("Still want {newsletter}? Confirm your address")
                    } else {
                        format!("Confirm your subscription to {newsletter}")
                    },
                    "confirm",
                    format!(
                        "{}-{subscriber_id}-{}",
                        kind.as_str(),
                        &hash_confirm_token(token)[..16]
                    ),
                )
            }
            MailKind::Welcome => (
                format!("Welcome to {newsletter}"),
                "welcome",
                format!("welcome-{subscriber_id}"),
            ),
            MailKind::EmailChange { token } => {
                ctx.insert("heading", "Confirm your new address");
                ctx.insert(
                    "lines",
                    &[
                        format!(
                            "Someone (we hope you) asked to receive {newsletter} at this address instead of the one it goes to now."
                        ),
                        "Nothing changes until you confirm here.".to_string(),
                    ],
                );
                ctx.insert("button", "Confirm my new address");
                ctx.insert("button_url", &address_url(&s.http.public_url, token));
                ctx.insert(
                    "footnote",
                    &format!(
                        "The link works for {ttl_hours} hours. If you did not ask for this, ignore this mail: nothing changes."
                    ),
                );
                (
                    format!("Confirm your new address for {newsletter}"),
                    "notice",
                    format!(
                        "address-{subscriber_id}-{}",
                        &hash_confirm_token(token)[..16]
                    ),
                )
            }
            MailKind::Repermission => {
                ctx.insert("heading", &format!("Still want {newsletter}?"));
                ctx.insert(
                    "lines",
                    &[
                        format!(
                            "You have been reading {newsletter} for a while, and we would rather ask than keep mailing someone who has moved on."
                        ),
                        "The button opens a page where one more click keeps your subscription. If you do nothing, we stop sending and remove you from the list at the deadline.".to_string(),
                    ],
                );
                ctx.insert("button", "Keep my subscription");
                ctx.insert(
                    "button_url",
                    &keep_url(&s.http.public_url, &self.secret, subscriber_id),
                );
                ctx.insert(
                    "footnote",
                    "Rather stop now? The unsubscribe link below does it at once.",
                );
                (
                    format!("Still want {newsletter}? Keep your subscription"),
                    "notice",
                    format!(
                        "repermission-{subscriber_id}-{}",
                        chrono::Utc::now().timestamp()
                    ),
                )
            }
        };
        let address = lettre::Address::from_str(email)?;
        let message = compose(
            s,
            Envelope {
                to: Mailbox::new(name.map(str::to_string), address),
                message_id_local: &message_id,
                subject: &subject,
                unsubscribe_url: &unsubscribe,
                text: lettre::message::Body::new(
                    self.renderer
                        .render_page(&format!("email/{template}.txt"), &ctx)?,
                ),
                html: lettre::message::Body::new(
                    self.renderer
                        .render_page(&format!("email/{template}.html"), &ctx)?,
                ),
                feedback_id: None,
            },
            None,
        )?;
        Ok(message.formatted())
    }
}

/// A signup request for `email`, with a fresh confirmation token and its mailbox key.
pub fn signup_request(
    secret: &SecretKey,
    email: SubscriberEmail,
    name: Option<SubscriberName>,
    consent: ConsentContext,
) -> crate::store::subscribers::SignupRequest {
    let (token, token_hash) = new_confirm_token();
    crate::store::subscribers::SignupRequest {
        mailbox_key: mailbox_hash(secret, &email.mailbox_key()),
        email,
        name,
        consent,
        token,
        token_hash,
    }
}
