//! Bounces and complaints, from every intake: `verdicts bounces import`, the provider webhooks
//! and the IMAP bounce mailbox all apply reports here, through one [`Intake`] that this layer
//! assembles (store, circuit breaker, attribution policy, signing key), never by hand in a
//! front end.

use super::{Activity, Actor, App, OpsError};
use crate::bounces::Source;
use crate::bounces::intake::{ApplyReport, Classified, Intake, Processed};
use crate::bounces::parse::Report;
use crate::bounces::policy::{Effect, Policy};

/// What `verdicts bounces import` did: every report applied before the first failure, if any.
#[derive(Debug)]
pub struct BounceImport {
    pub processed: Vec<Processed>,
    /// New events (not repeats).
    pub applied: usize,
    /// Reports seen before (deduplicated, nothing changed).
    pub repeats: usize,
    /// The report that failed and why; the reports after it were not applied.
    pub failed: Option<anyhow::Error>,
}

impl App {
    fn bounce_policy(&self) -> Policy {
        let s = self.settings();
        Policy::new(&s.bounces, &s.delivery)
    }

    fn with_intake<'a>(&'a self, policy: &'a Policy) -> Intake<'a> {
        Intake {
            store: self.store(),
            supervisor: self,
            settings: self.settings(),
            secret: self.secret(),
            policy,
        }
    }

    /// Applies one classified event (a provider webhook's), as `source`.
    pub async fn apply_bounce_event(
        &self,
        origin: &str,
        event: Classified<'_>,
        source: Source,
    ) -> anyhow::Result<Processed> {
        let policy = self.bounce_policy();
        self.with_intake(&policy)
            .apply_event(origin, event, source)
            .await
    }

    /// Records a webhook's one-time token (Mailgun's); `false` when it was seen before (a replay).
    /// Tokens are kept for twice `webhooks.max_age` (a day at least): longer than any call
    /// carrying one passes the timestamp check, so a replay always finds its token.
    pub async fn claim_webhook_nonce(
        &self,
        provider: &str,
        token: &str,
        now_ms: i64,
    ) -> anyhow::Result<bool> {
        let max_age_ms =
            i64::try_from(self.settings().webhooks.max_age.0.as_millis()).unwrap_or(i64::MAX / 4);
        let keep_ms = (2 * max_age_ms).max(24 * 3600 * 1000);
        self.store()
            .claim_webhook_nonce(provider, token, now_ms, keep_ms)
            .await
    }

    /// Applies reports read from files (`verdicts bounces import`) in order, stopping at the
    /// first failure, and logs the import as `actor` when every report was applied.
    pub async fn import_bounces<'r>(
        &self,
        actor: &Actor,
        reports: impl IntoIterator<Item = (&'r str, &'r Report)>,
    ) -> Result<BounceImport, OpsError> {
        let policy = self.bounce_policy();
        let intake = self.with_intake(&policy);
        let mut out = BounceImport {
            processed: Vec::new(),
            applied: 0,
            repeats: 0,
            failed: None,
        };
        for (origin, report) in reports {
            match intake.apply_report(origin, report, Source::Import).await {
                Ok(p) => {
                    if p.applied.effect == Effect::Duplicate {
                        out.repeats += 1;
                    } else {
                        out.applied += 1;
                    }
                    out.processed.push(p);
                }
                Err(e) => {
                    out.failed = Some(e.context(format!("applying {origin}")));
                    break;
                }
            }
        }
        if out.failed.is_none() {
            self.log(
                actor,
                Activity::BouncesImport,
                None,
                &format!("{} applied, {} repeats", out.applied, out.repeats),
            )
            .await?;
        }
        Ok(out)
    }
}

/// The bounce mailbox applies what it reads through the application layer.
impl ApplyReport for App {
    async fn apply_report(
        &self,
        origin: &str,
        report: &Report,
        source: Source,
    ) -> anyhow::Result<Processed> {
        let policy = self.bounce_policy();
        self.with_intake(&policy)
            .apply_report(origin, report, source)
            .await
    }
}
