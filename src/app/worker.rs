//! The delivery worker's loop and the automatic pauses and resumes: the engine decides that a
//! send must pause (failures, a stalled transport, the circuit breaker, a full window); this
//! layer moves the issue and writes the operator log as `system`.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Activity, Actor, App};
use crate::delivery::Hooks;
use crate::issues::{ActionKind, AutoPause, Automatic, IssueStatus, Supervisor};
use crate::shutdown::Shutdown;

/// How often the worker runs the pending readers' reminders and purge
/// ([`App::pending_hygiene`]) and the repermission deadlines ([`App::lapse_repermissions`])
/// between sends.
const HYGIENE_EVERY: Duration = Duration::from_secs(2);

impl Supervisor for App {
    fn auto_pause<'a>(
        &'a self,
        issue_id: i64,
        pause: AutoPause,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let from = IssueStatus::Sending;
            debug_assert!(from.allows(ActionKind::Pause));
            let moved = self
                .store()
                .transition_issue(
                    issue_id,
                    &[from],
                    from.after(ActionKind::Pause),
                    Some(&pause.reason),
                    pause.resume_at(),
                )
                .await?;
            if moved {
                self.log(
                    &Actor::System,
                    Activity::Issue(ActionKind::Pause),
                    Some(issue_id),
                    &pause.reason,
                )
                .await?;
            }
            Ok(moved)
        })
    }
}

impl App {
    /// Resumes the sends a full window paused, once their resume time has come. Returns the
    /// issues resumed.
    pub async fn resume_window_pauses(&self) -> anyhow::Result<Vec<i64>> {
        let mut resumed = Vec::new();
        for id in self.store().due_window_resumes().await? {
            // Only while it is still the window's pause: an operator may have resumed,
            // cancelled or paused it again in between, or the breaker paused it.
            if self
                .store()
                .end_window_pause(id, Automatic::EndWindowPause.moves())
                .await?
            {
                self.log(
                    &Actor::System,
                    Activity::Issue(ActionKind::Resume),
                    Some(id),
                    "the sending window has room again",
                )
                .await?;
                tracing::info!(issue_id = id, "the sending window has room: send resumed");
                resumed.push(id);
            }
        }
        Ok(resumed)
    }

    /// The worker loop (`verdicts worker`, and inside `serve`): sends whatever issue is
    /// `sending`, resumes window pauses when their time comes, until shutdown.
    pub async fn run_worker(self, shutdown: Shutdown) {
        let engine = match self.engine().await {
            Ok(engine) => engine.clone(),
            Err(e) => {
                tracing::error!(error = %e, "the delivery engine cannot start");
                return;
            }
        };
        tracing::info!(owner = %engine.owner, "delivery worker started");
        let _busy = crate::shutdown::busy(crate::shutdown::SENDING);
        let hooks = Hooks::new(&self);
        let mut hygiene_due = tokio::time::Instant::now();
        while !shutdown.is_triggered() {
            if let Err(e) = self.resume_window_pauses().await {
                crate::log_repeated!(warn, "worker:resume", e, "resuming window pauses failed");
            }
            if tokio::time::Instant::now() >= hygiene_due {
                hygiene_due = tokio::time::Instant::now() + HYGIENE_EVERY;
                if let Err(e) = self.pending_hygiene(chrono::Utc::now()).await {
                    crate::log_repeated!(
                        warn,
                        "worker:hygiene",
                        e,
                        "pending reminders and purge failed"
                    );
                }
                if let Err(e) = self.lapse_repermissions(chrono::Utc::now()).await {
                    crate::log_repeated!(
                        warn,
                        "worker:lapse",
                        e,
                        "lapsing repermission deadlines failed"
                    );
                }
            }
            let ids = match self.store().sending_issue_ids().await {
                Ok(ids) => ids,
                Err(e) => {
                    crate::log_repeated!(warn, "worker:list", e, "listing issues to send failed");
                    Vec::new()
                }
            };
            let worked = !ids.is_empty();
            for id in ids {
                match engine.send_issue(id, shutdown.clone(), &hooks).await {
                    Ok(end) => tracing::info!(issue_id = id, ?end, "worker pass"),
                    Err(e) => crate::log_repeated!(
                        warn,
                        "worker:send",
                        e,
                        issue_id = id,
                        "sending failed"
                    ),
                }
                if shutdown.is_triggered() {
                    break;
                }
            }
            let idle = if worked {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.clone().wait() => break,
            }
        }
        tracing::info!(owner = %engine.owner, "delivery worker stopped");
    }
}
