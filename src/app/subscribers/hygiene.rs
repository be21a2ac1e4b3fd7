//! Pending hygiene, run by the delivery worker ([`crate::app::App::run_worker`]): a reader
//! still pending `signup.reminder_after` after signing up gets exactly one reminder (a fresh
//! confirmation link, queued like every confirmation mail and so DKIM-signed by the sender);
//! one still pending after `signup.pending_ttl` is deleted. Several workers may run it at once:
//! the store marks each reminder once ([`crate::store::Store::queue_pending_reminders`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::app::App;
use crate::config::SignupSettings;
use crate::subscribers::tokens::new_confirm_token;

/// Most reminders queued per pass (the rest follow on the next passes).
const REMINDERS_PER_PASS: i64 = 500;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hygiene {
    /// Readers reminded, by id.
    pub reminded: Vec<i64>,
    /// Pending readers deleted.
    pub deleted: u64,
}

/// The cut-offs of a pass at `now`: reminders for signups at or before the first, deletion at
/// or before the second.
pub fn cutoffs(signup: &SignupSettings, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let back = |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    (back(signup.reminder_after.0), back(signup.pending_ttl.0))
}

impl App {
    /// One pass: first the deletions (nobody is reminded and then deleted in one pass), then
    /// the reminders.
    pub async fn pending_hygiene(&self, now: DateTime<Utc>) -> anyhow::Result<Hygiene> {
        let signup = &self.settings().signup;
        let (remind_before, delete_before) = cutoffs(signup, now);
        let deleted = self.store().delete_stale_pending(delete_before).await?;
        let reminded = self
            .store()
            .queue_pending_reminders(
                now,
                remind_before,
                signup.confirm_token_ttl.0,
                REMINDERS_PER_PASS,
                new_confirm_token,
            )
            .await?;
        if deleted > 0 || !reminded.is_empty() {
            tracing::info!(
                reminded = reminded.len(),
                deleted,
                "pending readers: reminders queued, stale signups deleted"
            );
        }
        Ok(Hygiene { reminded, deleted })
    }
}
