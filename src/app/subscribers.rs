//! Subscriber operations for operators (add, import, remove, list): every front end's one path,
//! with the consent record and the operator-log entry written here.
//!
//! The reader-facing lifecycle (signup, confirm, unsubscribe) is
//! [`crate::subscribers::lifecycle`]; these are the operator's side of the same list.

use super::{Activity, Actor, App, OpsError};
use crate::store::subscribers::{AddOutcome, NewSubscriber, SubscriberRow};
use crate::subscribers::tokens::suppression_hash;
use crate::subscribers::{ConsentContext, SubscriberEmail, SubscriberName, SubscriberStatus};

/// How many of an import's rows were added, already there, or suppressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportCounts {
    pub added: usize,
    pub already_present: usize,
    /// Unsubscribed or erased addresses: only the person can sign up again.
    pub suppressed: usize,
}

/// A row to import: a checked address and optional name.
pub type ImportRow = (SubscriberEmail, Option<SubscriberName>);

/// The consent record of an operator's addition: `source` says who (`cli`,
/// `operator:ada@example.org`) or which file (`import:list.csv`).
fn consent(source: String) -> ConsentContext {
    ConsentContext {
        ip: None,
        user_agent: None,
        source,
        consent_text_version: None,
    }
}

impl App {
    /// Adds one address (confirmed when the operator holds the person's consent already).
    /// An address that unsubscribed or was erased is refused: only its owner can sign up again.
    pub async fn add_subscriber(
        &self,
        actor: &Actor,
        email: &SubscriberEmail,
        name: Option<&SubscriberName>,
        confirmed: bool,
    ) -> Result<AddOutcome, OpsError> {
        let outcome = self
            .store()
            .add_subscriber(
                &NewSubscriber {
                    email,
                    name,
                    confirmed,
                },
                &consent(actor.to_string()),
                &suppression_hash(self.secret(), email.as_str()),
            )
            .await?;
        self.log(
            actor,
            Activity::SubscribersAdd,
            None,
            &format!("{outcome:?}"),
        )
        .await?;
        if outcome == AddOutcome::Suppressed {
            return Err(OpsError::invalid(
                "email",
                format!("{email} unsubscribed or asked to be erased: only they can sign up again"),
            ));
        }
        Ok(outcome)
    }

    /// Imports checked rows as confirmed subscribers in one transaction; `source` names the
    /// file in the consent records.
    pub async fn import_subscribers(
        &self,
        actor: &Actor,
        source: &str,
        rows: &[ImportRow],
        bad_rows: usize,
    ) -> Result<ImportCounts, OpsError> {
        let secret = self.secret();
        let rows: Vec<(NewSubscriber<'_>, String)> = rows
            .iter()
            .map(|(email, name)| {
                (
                    NewSubscriber {
                        email,
                        name: name.as_ref(),
                        confirmed: true,
                    },
                    suppression_hash(secret, email.as_str()),
                )
            })
            .collect();
        let outcomes = self
            .store()
            .add_subscribers(&rows, &consent(format!("import:{source}")))
            .await?;
        let count = |o: AddOutcome| outcomes.iter().filter(|x| **x == o).count();
        let counts = ImportCounts {
            added: count(AddOutcome::Added),
            already_present: count(AddOutcome::AlreadyPresent),
            suppressed: count(AddOutcome::Suppressed),
        };
        self.log(
            actor,
            Activity::SubscribersImport,
            None,
            &format!("{source}: {} added, {bad_rows} bad rows", counts.added),
        )
        .await?;
        Ok(counts)
    }

    /// Erases an address's personal data and suppresses it; `true` when it was a subscriber.
    pub async fn remove_subscriber(
        &self,
        actor: &Actor,
        email: &SubscriberEmail,
    ) -> Result<bool, OpsError> {
        let known = self
            .store()
            .remove_subscriber(email, &suppression_hash(self.secret(), email.as_str()))
            .await?;
        self.log(
            actor,
            Activity::SubscribersRemove,
            None,
            if known {
                "erased"
            } else {
                "unknown address suppressed"
            },
        )
        .await?;
        Ok(known)
    }

    /// Subscribers, optionally of one status.
    pub async fn list_subscribers(
        &self,
        status: Option<SubscriberStatus>,
    ) -> Result<Vec<SubscriberRow>, OpsError> {
        Ok(self.store().list_subscribers(status).await?)
    }
}
