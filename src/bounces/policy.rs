//! What a bounce or complaint does, decided here and written in one transaction:
//!
//! - every event is stored with its raw reason and source, once (a repeat changes nothing);
//! - **hard** → the subscriber is `bounced`;
//! - **soft** → counted; `bounces.soft_limit` of them within `bounces.soft_window` → `bounced`;
//! - **complaint** → unsubscribed, suppressed, consent event `complaint`;
//! - **ignored** → stored, nothing else.
//!
//! Then the **circuit breaker**: a hard bounce or a complaint about an issue that is still
//! sending pauses it when the issue's complaint rate passes `delivery.max_complaint_rate` or its
//! hard-bounce rate passes `delivery.max_bounce_rate`, once `delivery.rate_min_sample` messages
//! went out. The engine re-reads the status every 200 ms, so the send stops within a second, in
//! every worker.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::resolve::Resolved;
use super::{BounceKind, Source};
use crate::config::{BounceSettings, DeliverySettings, SecretKey};
use crate::issues::{AutoPause, IssueStatus, PauseCause, Supervisor};
use crate::store::Store;
use crate::store::bounces::{self as sql, IssueBounceCounts, NewBounceEvent};
use crate::subscribers::tokens::suppression_hash;

/// The settings the policy needs, read once.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub soft_limit: u32,
    pub soft_window: Duration,
    pub max_complaint_rate: f64,
    pub max_bounce_rate: f64,
    pub rate_min_sample: u32,
}

impl Policy {
    /// The soft-bounce rule of `bounces` and the circuit breaker of `delivery`.
    pub fn new(bounces: &BounceSettings, delivery: &DeliverySettings) -> Policy {
        Policy {
            soft_limit: bounces.soft_limit,
            soft_window: bounces.soft_window.0,
            max_complaint_rate: delivery.max_complaint_rate,
            max_bounce_rate: delivery.max_bounce_rate,
            rate_min_sample: delivery.rate_min_sample,
        }
    }

    /// Why an issue with these figures must pause, or `None`.
    pub fn breaker_reason(&self, sent: i64, counts: IssueBounceCounts) -> Option<String> {
        if sent <= 0 || sent < i64::from(self.rate_min_sample) {
            return None;
        }
        let complaint_rate = counts.complaints as f64 / sent as f64;
        let bounce_rate = counts.hard as f64 / sent as f64;
        if complaint_rate > self.max_complaint_rate {
            return Some(format!(
                "paused: complaint rate {:.2}% ({} of {sent} sent) is above delivery.max_complaint_rate {:.2}%",
                complaint_rate * 100.0,
                counts.complaints,
                self.max_complaint_rate * 100.0
            ));
        }
        if bounce_rate > self.max_bounce_rate {
            return Some(format!(
                "paused: hard-bounce rate {:.2}% ({} of {sent} sent) is above delivery.max_bounce_rate {:.2}%",
                bounce_rate * 100.0,
                counts.hard,
                self.max_bounce_rate * 100.0
            ));
        }
        None
    }
}

/// One report, classified and attributed, ready to apply.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub kind: BounceKind,
    pub source: Source,
    /// Same report → same key (e.g. `mail:` + the report's hash, `ses:` + the SNS message id).
    pub dedup_key: &'a str,
    pub resolved: Resolved,
    pub status_code: Option<&'a str>,
    pub reason: &'a str,
}

/// What applying an event did to its subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// The same report was applied before: nothing changed.
    Duplicate,
    /// Stored; no subscriber could be attributed.
    Unattributed,
    /// Stored; the subscriber's status did not change (ignored, or already not receiving).
    Recorded,
    /// A soft bounce, counted: `count` within the window, below the limit.
    SoftCounted { count: i64 },
    /// The subscriber is now `bounced`.
    Bounced,
    /// The subscriber is unsubscribed and suppressed.
    Unsubscribed,
}

/// The outcome of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    #[serde(flatten)]
    pub effect: Effect,
    /// The reason, when this event paused its issue.
    pub paused: Option<String>,
}

/// Applies one event: stores it and changes its subscriber, in one transaction; then checks the
/// circuit breaker of its issue.
pub async fn apply(
    store: &Store,
    policy: &Policy,
    supervisor: &dyn Supervisor,
    secret: &SecretKey,
    event: &Event<'_>,
) -> anyhow::Result<Applied> {
    let now = Utc::now().timestamp_millis();
    let mut tx = store.begin_write().await?;
    let stored = sql::insert_event(
        &mut tx,
        &NewBounceEvent {
            dedup_key: event.dedup_key,
            kind: event.kind,
            source: event.source,
            subscriber_id: event.resolved.subscriber_id,
            issue_id: event.resolved.issue_id,
            matched_by: event.resolved.matched_by,
            status_code: event.status_code,
            reason: event.reason,
            received_at: now,
        },
    )
    .await?;
    if !stored {
        tx.rollback().await?;
        return Ok(Applied {
            effect: Effect::Duplicate,
            paused: None,
        });
    }
    let effect = match (event.resolved.subscriber_id, event.kind) {
        (None, _) => Effect::Unattributed,
        (Some(_), BounceKind::Ignored) => Effect::Recorded,
        (Some(sid), BounceKind::Hard) => {
            if sql::mark_bounced(&mut tx, sid, now).await? {
                Effect::Bounced
            } else {
                Effect::Recorded
            }
        }
        (Some(sid), BounceKind::Soft) => {
            let since = now - i64::try_from(policy.soft_window.as_millis()).unwrap_or(i64::MAX);
            let count = sql::soft_bounces_since(&mut tx, sid, since).await?;
            if count >= i64::from(policy.soft_limit) {
                if sql::mark_bounced(&mut tx, sid, now).await? {
                    Effect::Bounced
                } else {
                    Effect::Recorded
                }
            } else {
                Effect::SoftCounted { count }
            }
        }
        (Some(sid), BounceKind::Complaint) => {
            match sql::record_complaint(
                &mut tx,
                sid,
                |email| suppression_hash(secret, email),
                event.source,
                now,
            )
            .await?
            {
                Some(_) => Effect::Unsubscribed,
                None => Effect::Unattributed,
            }
        }
    };
    tx.commit().await?;
    if effect != Effect::Recorded {
        tracing::info!(
            kind = %event.kind,
            subscriber_id = event.resolved.subscriber_id,
            issue_id = event.resolved.issue_id,
            ?effect,
            "bounce event applied"
        );
    }
    let paused = match (event.resolved.issue_id, event.kind) {
        (Some(issue_id), BounceKind::Hard | BounceKind::Complaint) => {
            check_breaker(store, policy, supervisor, issue_id).await?
        }
        _ => None,
    };
    Ok(Applied { effect, paused })
}

/// The circuit breaker's decision for a sending issue: the reason to pause it when its rates
/// passed the limits. (The pause itself is the application layer's: [`Supervisor`].)
pub async fn breaker_reason(
    store: &Store,
    policy: &Policy,
    issue_id: i64,
) -> anyhow::Result<Option<String>> {
    if store.issue_status(issue_id).await? != Some(IssueStatus::Sending) {
        return Ok(None);
    }
    let counts = store.issue_bounce_counts(issue_id).await?;
    if counts.hard == 0 && counts.complaints == 0 {
        // Nothing can trip it: spare the count of the issue's whole ledger (a scan of every
        // row, every two seconds of a send).
        return Ok(None);
    }
    let sent = store.delivery_counts(issue_id).await?.sent;
    Ok(policy.breaker_reason(sent, counts))
}

/// Checks the circuit breaker of a sending issue and has `supervisor` pause it when it trips;
/// returns the reason when it paused.
pub async fn check_breaker(
    store: &Store,
    policy: &Policy,
    supervisor: &dyn Supervisor,
    issue_id: i64,
) -> anyhow::Result<Option<String>> {
    let Some(reason) = breaker_reason(store, policy, issue_id).await? else {
        return Ok(None);
    };
    let pause = AutoPause {
        cause: PauseCause::Breaker,
        reason: reason.clone(),
    };
    if supervisor.auto_pause(issue_id, pause).await? {
        tracing::warn!(issue_id, %reason, "circuit breaker paused the issue");
        Ok(Some(reason))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            soft_limit: 3,
            soft_window: Duration::from_secs(3600),
            max_complaint_rate: 0.003,
            max_bounce_rate: 0.05,
            rate_min_sample: 1000,
        }
    }

    #[test]
    fn the_breaker_trips_only_past_the_sample_and_the_rates() {
        let c = |hard, complaints| IssueBounceCounts {
            hard,
            soft: 0,
            complaints,
        };
        let p = policy();
        assert_eq!(p.breaker_reason(999, c(500, 500)), None, "below the sample");
        assert_eq!(
            p.breaker_reason(1000, c(50, 3)),
            None,
            "exactly at the rates"
        );
        let r = p
            .breaker_reason(1000, c(0, 4))
            .expect("complaints above 0.3 %");
        assert!(r.contains("complaint rate 0.40%"), "{r}");
        assert!(r.contains("delivery.max_complaint_rate"), "{r}");
        let r = p.breaker_reason(1000, c(51, 0)).expect("bounces above 5 %");
        assert!(r.contains("hard-bounce rate 5.10%"), "{r}");
        assert_eq!(p.breaker_reason(0, c(1, 1)), None);
    }
}
