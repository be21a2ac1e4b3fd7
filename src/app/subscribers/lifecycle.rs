//! The reader's own steps after signing up: confirming (double opt-in) and leaving. Every front
//! end (the links in mail, the pages they open) calls these; the rules are here — a confirmation
//! is followed by the welcome mail, a link that is not ours changes nothing — and the store
//! writes each step in one transaction.

use super::super::App;
use crate::mail::MailKind;
use crate::store::subscribers::{ConfirmOutcome, ConfirmationToken};
use crate::subscribers::ConsentContext;
use crate::subscribers::tokens::{
    hash_confirm_token, is_confirm_token_shape, suppression_hash, verify_unsubscribe_token,
};

/// What an unsubscribe link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeOutcome {
    /// Unsubscribed (or already was).
    Done,
    /// The token is not one of ours.
    BadToken,
}

impl App {
    /// A signup as the store takes it: a fresh confirmation token, the mailbox key under our
    /// secret.
    pub fn signup_request(
        &self,
        email: crate::subscribers::SubscriberEmail,
        name: Option<crate::subscribers::SubscriberName>,
        consent: ConsentContext,
    ) -> crate::store::subscribers::SignupRequest {
        crate::subscribers::lifecycle::signup_request(self.secret(), email, name, consent)
    }

    /// Where a confirmation link stands, without using it (for the page it opens: mail
    /// scanners follow links, so a GET never confirms).
    pub async fn confirmation_link(&self, token: &str) -> anyhow::Result<ConfirmationToken> {
        if !is_confirm_token_shape(token) {
            return Ok(ConfirmationToken::Dead);
        }
        self.store()
            .confirmation_token(&hash_confirm_token(token))
            .await
    }

    /// Uses a confirmation link: the reader is confirmed, a suppression of the address (from an
    /// earlier unsubscribe or erasure) is lifted because they signed up themselves, and the
    /// welcome mail is queued in the same transaction.
    pub async fn confirm(
        &self,
        token: &str,
        consent: &ConsentContext,
    ) -> anyhow::Result<ConfirmOutcome> {
        if !is_confirm_token_shape(token) {
            return Ok(ConfirmOutcome::Invalid);
        }
        let secret = self.secret();
        let outcome = self
            .store()
            .confirm(
                &hash_confirm_token(token),
                consent,
                |email| suppression_hash(secret, email),
                Some(&MailKind::Welcome),
            )
            .await?;
        if let ConfirmOutcome::Confirmed { subscriber_id, .. } = &outcome {
            tracing::info!(subscriber_id, "subscription confirmed");
        }
        Ok(outcome)
    }

    /// Follows an unsubscribe link (RFC 8058 one-click or the page's button). Takes effect at
    /// once, also for an issue being sent.
    pub async fn unsubscribe(
        &self,
        token: &str,
        consent: &ConsentContext,
    ) -> anyhow::Result<UnsubscribeOutcome> {
        let Some(id) = verify_unsubscribe_token(self.secret(), token) else {
            return Ok(UnsubscribeOutcome::BadToken);
        };
        self.store().unsubscribe(id, consent).await?;
        Ok(UnsubscribeOutcome::Done)
    }

    /// Whether an unsubscribe token is genuine (for the GET page).
    pub fn unsubscribe_token_is_genuine(&self, token: &str) -> bool {
        verify_unsubscribe_token(self.secret(), token).is_some()
    }
}
