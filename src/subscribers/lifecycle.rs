//! The reader's lifecycle as the web layer and the CLI use it: sign up (double opt-in), confirm,
//! unsubscribe. Messages are composed here and queued in the same transaction as the change.

use std::str::FromStr;

use lettre::message::Mailbox;
use tera::Context;

use super::tokens::{
    hash_confirm_token, is_confirm_token_shape, new_confirm_token, suppression_hash,
    unsubscribe_token, verify_unsubscribe_token,
};
use super::{ConsentContext, SubscriberEmail, SubscriberName};
use crate::config::{SecretKey, Settings};
use crate::mail::{Envelope, compose};
use crate::render::Renderer;
use crate::store::Store;
use crate::store::subscribers::{ConfirmOutcome, SignupOutcome};

/// What the lifecycle needs, borrowed from application state.
#[derive(Clone, Copy)]
pub struct Lifecycle<'a> {
    pub store: &'a Store,
    pub settings: &'a Settings,
    pub secret: &'a SecretKey,
    pub renderer: &'a Renderer,
}

/// What an unsubscribe link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeOutcome {
    /// Unsubscribed (or already was).
    Done,
    /// The token is not one of ours.
    BadToken,
}

/// `{public_url}/unsubscribe/{token}` for a subscriber.
pub fn unsubscribe_url(settings: &Settings, secret: &SecretKey, subscriber_id: i64) -> String {
    settings.http.public_url.join(&format!(
        "unsubscribe/{}",
        unsubscribe_token(secret, subscriber_id)
    ))
}

impl Lifecycle<'_> {
    fn base_context(&self, name: Option<&str>, unsubscribe: &str) -> Context {
        let s = self.settings;
        let mut ctx = Context::new();
        ctx.insert("name", &name);
        ctx.insert("newsletter_name", &s.newsletter.name.0);
        ctx.insert("site_name", &s.site.name.0);
        ctx.insert("postal_address", &s.newsletter.postal_address.0);
        ctx.insert("home_url", &s.http.public_url.join("/"));
        ctx.insert("archive_url", &s.http.public_url.join("archive"));
        ctx.insert("unsubscribe_url", unsubscribe);
        ctx
    }

    fn to(email: &str, name: Option<&str>) -> anyhow::Result<Mailbox> {
        let address = lettre::Address::from_str(email)?;
        Ok(Mailbox::new(name.map(str::to_string), address))
    }

    fn compose_confirm(
        &self,
        id: i64,
        email: &SubscriberEmail,
        name: Option<&SubscriberName>,
        token: &str,
    ) -> anyhow::Result<String> {
        let unsubscribe = unsubscribe_url(self.settings, self.secret, id);
        let mut ctx = self.base_context(name.map(SubscriberName::as_str), &unsubscribe);
        ctx.insert(
            "confirm_url",
            &self
                .settings
                .http
                .public_url
                .join(&format!("confirm/{token}")),
        );
        ctx.insert(
            "ttl_hours",
            &(self.settings.signup.confirm_token_ttl.0.as_secs() / 3600),
        );
        let message = compose(
            self.settings,
            Envelope {
                to: Self::to(email.as_str(), name.map(SubscriberName::as_str))?,
                message_id_local: &format!("confirm-{id}-{}", &hash_confirm_token(token)[..16]),
                subject: &format!(
                    "Confirm your subscription to {}",
                    self.settings.newsletter.name.0
                ),
                unsubscribe_url: &unsubscribe,
                text: self.renderer.render_page("email/confirm.txt", &ctx)?,
                html: self.renderer.render_page("email/confirm.html", &ctx)?,
            },
        )?;
        Ok(String::from_utf8(message.formatted())?)
    }

    fn compose_welcome(&self, id: i64, email: &str, name: Option<&str>) -> anyhow::Result<String> {
        let unsubscribe = unsubscribe_url(self.settings, self.secret, id);
        let ctx = self.base_context(name, &unsubscribe);
        let message = compose(
            self.settings,
            Envelope {
                to: Self::to(email, name)?,
                message_id_local: &format!("welcome-{id}"),
                subject: &format!("Welcome to {}", self.settings.newsletter.name.0),
                unsubscribe_url: &unsubscribe,
                text: self.renderer.render_page("email/welcome.txt", &ctx)?,
                html: self.renderer.render_page("email/welcome.html", &ctx)?,
            },
        )?;
        Ok(String::from_utf8(message.formatted())?)
    }

    /// Signs a reader up; the caller answers the same whatever the outcome.
    pub async fn sign_up(
        &self,
        email: &SubscriberEmail,
        name: Option<&SubscriberName>,
        consent: &ConsentContext,
    ) -> anyhow::Result<SignupOutcome> {
        let (token, hash) = new_confirm_token();
        let outcome = self
            .store
            .signup(
                email,
                name,
                consent,
                &hash,
                self.settings.signup.confirm_token_ttl.0,
                self.settings.signup.resend_interval.0,
                |id| self.compose_confirm(id, email, name, &token),
            )
            .await?;
        tracing::info!(outcome = ?outcome, source = %consent.source, "signup");
        Ok(outcome)
    }

    /// Whether a confirmation link is live, without using it (for the GET page).
    pub async fn confirmation_is_live(&self, token: &str) -> anyhow::Result<bool> {
        if !is_confirm_token_shape(token) {
            return Ok(false);
        }
        self.store
            .confirmation_token_is_live(&hash_confirm_token(token))
            .await
    }

    /// Uses a confirmation link.
    pub async fn confirm(
        &self,
        token: &str,
        consent: &ConsentContext,
    ) -> anyhow::Result<ConfirmOutcome> {
        if !is_confirm_token_shape(token) {
            return Ok(ConfirmOutcome::Invalid);
        }
        let secret = self.secret;
        let outcome = self
            .store
            .confirm(
                &hash_confirm_token(token),
                consent,
                |email| suppression_hash(secret, email),
                |id, email, name| self.compose_welcome(id, email, name),
            )
            .await?;
        if let ConfirmOutcome::Confirmed { subscriber_id, .. } = &outcome {
            tracing::info!(subscriber_id, "subscription confirmed");
        }
        Ok(outcome)
    }

    /// Follows an unsubscribe link (RFC 8058 one-click or the page's button).
    pub async fn unsubscribe(
        &self,
        token: &str,
        consent: &ConsentContext,
    ) -> anyhow::Result<UnsubscribeOutcome> {
        let Some(id) = verify_unsubscribe_token(self.secret, token) else {
            return Ok(UnsubscribeOutcome::BadToken);
        };
        self.store.unsubscribe(id, consent).await?;
        Ok(UnsubscribeOutcome::Done)
    }

    /// Whether an unsubscribe token is genuine (for the GET page).
    pub fn unsubscribe_token_is_genuine(&self, token: &str) -> bool {
        verify_unsubscribe_token(self.secret, token).is_some()
    }
}
