//! A reader's answers that arrive by mail: the confirmation of a new address (asked on the
//! manage page; the address changes only when the link mailed to the new address is
//! confirmed), and the "still want this?" of `subscribers repermission` (a one-click keep; at
//! the deadline the worker unsubscribes those who did not keep, consent event `lapsed`).
//!
//! Links that change something open a page with a button: the change is its `POST` (mail
//! scanners follow links, they do not press buttons).

use chrono::{DateTime, Duration, Utc};

use super::super::{Activity, Actor, App, OpsError};
use super::manage::Reader;
use crate::store::subscribers::control::{ChangeApplied, ChangeRequested, Lapsed};
use crate::subscribers::tokens::{hash_confirm_token, new_confirm_token, verify_keep_token};
use crate::subscribers::{ConsentContext, SubscriberEmail};

/// Most readers lapsed per worker pass (the rest follow on the next passes).
const LAPSES_PER_PASS: i64 = 1000;

/// A change of address as its confirmation page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressLink {
    /// Waiting for its button: the address it changes to.
    Open { new_email: String },
    /// Confirmed already (the link was used).
    Used { new_email: String },
    /// No such link, or it expired.
    Dead,
}

/// What `subscribers repermission` did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Repermission {
    /// The readers asked (or who would be).
    pub readers: u64,
    pub confirmed_before: DateTime<Utc>,
    /// When those who did not keep are unsubscribed.
    pub deadline: DateTime<Utc>,
    pub dry_run: bool,
}

impl App {
    /// Stores a change of address for `reader` and queues its confirmation to the new
    /// address (DKIM-signed by the sender like every transactional mail). The reader's own
    /// address is the reader's error (nothing is written); an address another subscription
    /// has is answered as any other, and no link goes to it.
    pub(super) async fn request_email_change(
        &self,
        reader: &Reader,
        new: &SubscriberEmail,
    ) -> Result<(), OpsError> {
        if new.as_str().eq_ignore_ascii_case(&reader.email) {
            return Err(OpsError::invalid(
                "email",
                "that is the address you have now.",
            ));
        }
        let (token, hash) = new_confirm_token();
        let ttl = self.settings().signup.confirm_token_ttl.0;
        match self
            .store()
            .request_email_change(reader.id, new, &token, &hash, ttl)
            .await?
        {
            ChangeRequested::Queued => {
                tracing::info!(subscriber_id = reader.id, "change of address asked");
                Ok(())
            }
            // The same answer as for a free address, and nothing mailed: a manage link travels
            // with every forwarded issue, and must not tell its holder who else subscribes
            // (the signup form answers the same for every state too).
            ChangeRequested::Taken => {
                tracing::info!(
                    subscriber_id = reader.id,
                    "change of address to an address on the list: nothing sent"
                );
                Ok(())
            }
            ChangeRequested::NotConfirmed => Err(OpsError::invalid(
                "email",
                "only a confirmed subscription can change its address.",
            )),
        }
    }

    /// What the confirmation link of a change of address stands for (nothing changes).
    pub async fn address_link(&self, token: &str) -> Result<AddressLink, OpsError> {
        let Some(change) = self
            .store()
            .email_change(&hash_confirm_token(token))
            .await?
        else {
            return Ok(AddressLink::Dead);
        };
        Ok(if change.used {
            AddressLink::Used {
                new_email: change.new_email,
            }
        } else if change.expires_at <= Utc::now() {
            AddressLink::Dead
        } else {
            AddressLink::Open {
                new_email: change.new_email,
            }
        })
    }

    /// Applies the change of address of a confirmation link (its button's `POST`).
    pub async fn confirm_address(
        &self,
        token: &str,
        consent: &ConsentContext,
    ) -> Result<ChangeApplied, OpsError> {
        let applied = self
            .store()
            .apply_email_change(&hash_confirm_token(token), consent)
            .await?;
        if let ChangeApplied::Changed { .. } = &applied {
            tracing::info!("change of address confirmed");
        }
        Ok(applied)
    }

    /// The reader a keep link stands for and their deadline (`None` for the id: a forged
    /// token or an erased reader; `None` for the deadline: not being asked).
    pub async fn keep_reader(
        &self,
        token: &str,
    ) -> Result<Option<(i64, Option<DateTime<Utc>>)>, OpsError> {
        let Some(id) = verify_keep_token(self.secret(), token) else {
            return Ok(None);
        };
        if self.store().get_subscriber(id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some((id, self.store().repermission_deadline(id).await?)))
    }

    /// The one-click keep (the button's `POST`): clears the reader's deadline. Returns whether
    /// they were being asked; `Invalid` for a forged token.
    pub async fn keep(&self, token: &str, consent: &ConsentContext) -> Result<bool, OpsError> {
        let Some((id, _)) = self.keep_reader(token).await? else {
            return Err(OpsError::invalid("token", "this link is not valid"));
        };
        Ok(self.store().keep_subscription(id, consent).await?)
    }

    /// `subscribers repermission`: asks the readers confirmed before `before` whether they
    /// still want the newsletter, with `deadline_after` to keep. `dry_run` counts only.
    pub async fn repermission(
        &self,
        actor: &Actor,
        before: DateTime<Utc>,
        deadline_after: std::time::Duration,
        dry_run: bool,
    ) -> Result<Repermission, OpsError> {
        let now = Utc::now();
        if before > now {
            return Err(OpsError::invalid(
                "confirmed-before",
                format!(
                    "{} is in the future: only readers who confirmed before now can be asked",
                    before.format("%Y-%m-%d")
                ),
            ));
        }
        let deadline_after = Duration::from_std(deadline_after)
            .ok()
            .filter(|d| *d >= Duration::days(1) && *d <= Duration::days(365))
            .ok_or_else(|| {
                OpsError::invalid("deadline", "must be between one day and a year (14d)")
            })?;
        let deadline = now + deadline_after;
        let readers = if dry_run {
            self.store().repermission_candidates(before).await? as u64
        } else {
            let n = self.store().ask_repermission(before, deadline).await?;
            self.log(
                actor,
                Activity::SubscribersRepermission,
                None,
                &format!(
                    "{n} readers confirmed before {}; deadline {}",
                    before.to_rfc3339(),
                    deadline.to_rfc3339()
                ),
            )
            .await?;
            n
        };
        Ok(Repermission {
            readers,
            confirmed_before: before,
            deadline,
            dry_run,
        })
    }

    /// Unsubscribes the readers whose repermission deadline passed without a keep (run by the
    /// worker; several at once each lapse a reader once).
    pub async fn lapse_repermissions(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<Lapsed>> {
        let lapsed = self
            .store()
            .lapse_repermissions(now, LAPSES_PER_PASS)
            .await?;
        if !lapsed.is_empty() {
            tracing::info!(
                lapsed = lapsed.len(),
                "readers who did not keep their subscription by the deadline unsubscribed"
            );
        }
        Ok(lapsed)
    }
}
