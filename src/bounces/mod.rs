//! Bounces and complaints: reading what comes back after a message left, and keeping the list
//! clean with it.
//!
//! - [`verp`] — the per-message envelope sender `bounces+TOKEN@domain` and reading it back.
//! - [`parse`] — one report (a DSN in RFC 3464 or an MTA's own shape, an ARF complaint, an
//!   auto-reply) → its [`BounceKind`], raw reason and every clue to whose message it was.
//! - [`resolve`] — clues → (subscriber, issue): VERP, the original Message-ID, the
//!   List-Unsubscribe link, the original recipient.
//! - [`policy`] — what an event does: hard → `bounced`; soft counted against
//!   `bounces.soft_limit` within `bounces.soft_window`; complaint → unsubscribed, suppressed,
//!   consent event `complaint`; and the circuit breaker that pauses a send whose complaint or
//!   bounce rate turns bad.
//! - [`intake`] — where reports come from: `.eml` files, mbox files, Maildir folders.
//! - [`imap`] — the bounce mailbox `serve` polls (`bounces.imap_url`).
//! - [`webhooks`] — provider webhooks (SES, Postmark, SendGrid, Mailgun): authentication and
//!   payloads; the routes are in [`crate::web::webhooks`].
//!
//! The SQL lives in [`crate::store::bounces`]; the decisions live here.

pub mod imap;
pub mod intake;
pub mod kinds;
pub mod mailbox;
pub mod parse;
pub mod policy;
pub mod resolve;
pub mod verp;
pub mod webhooks;

pub use kinds::{BounceKind, MatchedBy, Source};

/// Adds the per-issue bounce and complaint figures to `/metrics`:
/// `verdicts_issue_bounce_events_total{issue,kind}` and the rates per message sent,
/// `verdicts_issue_hard_bounce_rate{issue}` and `verdicts_issue_complaint_rate{issue}`.
pub fn register_metrics(
    registry: &mut prometheus_client::registry::Registry,
    stats: &[crate::store::bounces::IssueBounceStats],
) {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    type Labels = Vec<(String, String)>;
    type Rate = Gauge<f64, std::sync::atomic::AtomicU64>;
    let events = Family::<Labels, Counter>::default();
    let hard_rate = Family::<Labels, Rate>::default();
    let complaint_rate = Family::<Labels, Rate>::default();
    for s in stats {
        let issue = ("issue".to_string(), s.number.to_string());
        for (kind, n) in [
            (BounceKind::Hard, s.counts.hard),
            (BounceKind::Soft, s.counts.soft),
            (BounceKind::Complaint, s.counts.complaints),
        ] {
            events
                .get_or_create(&vec![issue.clone(), ("kind".into(), kind.to_string())])
                .inc_by(n as u64);
        }
        let per_sent = |n: i64| {
            if s.sent > 0 {
                n as f64 / s.sent as f64
            } else {
                0.0
            }
        };
        hard_rate
            .get_or_create(&vec![issue.clone()])
            .set(per_sent(s.counts.hard));
        complaint_rate
            .get_or_create(&vec![issue])
            .set(per_sent(s.counts.complaints));
    }
    registry.register(
        "issue_bounce_events",
        "Bounces and complaints attributed to each issue, by kind",
        events,
    );
    registry.register(
        "issue_hard_bounce_rate",
        "Hard bounces per message sent, per issue",
        hard_rate,
    );
    registry.register(
        "issue_complaint_rate",
        "Complaints per message sent, per issue",
        complaint_rate,
    );
}
