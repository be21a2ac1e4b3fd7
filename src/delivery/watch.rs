//! What a send knows about its transport: when a message was last accepted and the failure
//! going on since (if any). How long to hold off before the next try is
//! [`crate::mail::backoff::Backoff`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::store::Store;

/// A transport failure as the issue records it: `None` once a message is accepted again.
pub(super) type TransportState = Option<(String, DateTime<Utc>)>;

/// The transport's health as seen by one send. The messages in flight report to it; the
/// recorder stores and prints its changes; the claimer pauses the issue when it has stalled.
pub(super) struct TransportWatch {
    last_accept: Instant,
    failing: TransportState,
    changed: bool,
    /// The issue still shows an error from an earlier run (cleared by the first accept).
    shown: bool,
}

impl TransportWatch {
    pub(super) fn new(shown: bool) -> TransportWatch {
        TransportWatch {
            last_accept: Instant::now(),
            failing: None,
            changed: false,
            shown,
        }
    }

    pub(super) fn accepted(&mut self) {
        self.last_accept = Instant::now();
        if self.failing.take().is_some() || std::mem::take(&mut self.shown) {
            self.changed = true;
        }
    }

    pub(super) fn failed(&mut self, error: &str) {
        match &mut self.failing {
            Some((last, _)) if last == error => {}
            Some((last, _)) => {
                *last = error.to_string();
                self.changed = true;
            }
            None => {
                self.failing = Some((error.to_string(), Utc::now()));
                self.changed = true;
                self.shown = false;
            }
        }
    }

    /// Whether the transport fails now (since its last failure, nothing was accepted).
    pub(super) fn is_failing(&self) -> bool {
        self.failing.is_some()
    }

    /// The state to record and report, if it changed since the last call.
    fn take_change(&mut self) -> Option<TransportState> {
        std::mem::take(&mut self.changed).then(|| self.failing.clone())
    }

    /// The reason to pause with, when the transport has been failing and nothing was accepted
    /// for `after`.
    pub(super) fn stalled(&self, after: Duration) -> Option<String> {
        let (error, _) = self.failing.as_ref()?;
        (self.last_accept.elapsed() >= after).then(|| {
            format!(
                "no message accepted for {} (delivery.stall_after); the transport fails: {error}",
                humantime::format_duration(after)
            )
        })
    }
}

pub(super) type Watch = Mutex<TransportWatch>;

/// Stores a change of the transport's state on the issue and reports a new error.
pub(super) async fn record_transport_change(
    store: &Store,
    issue_id: i64,
    watch: &Watch,
    on_error: Option<&(dyn Fn(&str) + Sync)>,
) {
    let Some(change) = watch.lock().expect("watch lock").take_change() else {
        return;
    };
    if let Some((error, _)) = &change {
        tracing::warn!(issue_id, %error, "the SMTP transport fails; no attempt is counted");
        if let Some(report) = on_error {
            report(error);
        }
    }
    let stored = change.as_ref().map(|(e, since)| (e.as_str(), *since));
    if let Err(e) = store.set_transport_error(issue_id, stored).await {
        crate::log_repeated!(
            warn,
            "send:transport-error",
            e,
            issue_id,
            "recording the transport error failed"
        );
    }
}
