//! The mail of `/admin/reset`: a one-time sign-in link for an operator. Plain text, built here
//! from checked values (the link's token is URL-safe base64); no list headers, since it is not
//! newsletter mail.

use std::time::SystemTime;

use anyhow::Context;
use lettre::Message;
use lettre::message::Mailbox;

use super::our_domain;
use crate::config::{HttpUrl, MailSettings, NewsletterSettings};

/// The sign-in link's message to `to`, for the link's `token`, valid `minutes`.
pub fn compose(
    mail: &MailSettings,
    newsletter: &NewsletterSettings,
    public_url: &HttpUrl,
    to: &str,
    token: &str,
    minutes: i64,
) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')),
        "a reset token is URL-safe base64"
    );
    let link = public_url.join(&format!("admin/reset/{token}"));
    let name = &newsletter.name.0;
    let body = format!(
        "Someone (hopefully you) asked for a sign-in link for the {name} console.\n\n\
         Open this link within {minutes} minutes to choose a new password and sign in. It works once:\n\n\
         {link}\n\n\
         If you did not ask for it, ignore this mail: nothing changes, and your password stays.\n"
    );
    let message_id = format!(
        "<reset-{:016x}@{}>",
        rand::random::<u64>(),
        our_domain(mail)
    );
    let message = Message::builder()
        .from(mail.from.0.clone())
        .to(to.parse::<Mailbox>().context("the operator's address")?)
        .subject(format!("Sign-in link for the {name} console"))
        .date(SystemTime::now())
        .message_id(Some(message_id))
        .header(lettre::message::header::MIME_VERSION_1_0)
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(body)
        .context("building the sign-in link mail")?;
    Ok(message.formatted())
}
