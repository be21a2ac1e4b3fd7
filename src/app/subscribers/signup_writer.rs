//! Group commit for signups: request handlers hand their signup to one writer task, which takes
//! everything queued at that moment (up to [`MAX_BATCH`]) and writes it in one transaction with
//! a handful of multi-row statements. Under load, batches grow and the per-signup cost of the
//! database shrinks; when idle, a lone signup is written at once. What each signup does is
//! [`super::signup`]'s decision.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::signup::SignupOutcome;
use crate::app::App;
use crate::store::subscribers::SignupRequest;

/// Most signups written in one transaction.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<SignupOutcome, String>>;

/// How many recent full-path signups [`SignupWriter::answer_floor`] looks at.
const TIMING_WINDOW: usize = 256;
/// The floor never exceeds this, whatever a slow disk did.
const MAX_FLOOR: Duration = Duration::from_millis(250);

/// The handle request handlers use; cheap to clone.
#[derive(Debug, Clone)]
pub struct SignupWriter {
    tx: mpsc::Sender<(SignupRequest, Reply)>,
    /// How long recent signups that queued a confirmation took to write.
    full_path: Arc<Mutex<VecDeque<Duration>>>,
}

impl SignupWriter {
    /// Starts the writer task; it ends when every handle is dropped, after writing what is queued.
    pub fn spawn(app: App) -> SignupWriter {
        let (tx, mut rx) = mpsc::channel::<(SignupRequest, Reply)>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (requests, replies): (Vec<SignupRequest>, Vec<Reply>) = batch.drain(..).unzip();
                match app.sign_up_batch(&requests).await {
                    Ok(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        let message = format!("{e:#}");
                        crate::log_repeated!(
                            error,
                            "signups:write",
                            message,
                            signups = requests.len(),
                            "writing signups failed"
                        );
                        for reply in replies {
                            let _ = reply.send(Err(message.clone()));
                        }
                    }
                }
            }
        });
        SignupWriter {
            tx,
            full_path: Arc::default(),
        }
    }

    /// Writes one signup (with whatever else is queued) and returns what it did.
    pub async fn submit(&self, request: SignupRequest) -> anyhow::Result<SignupOutcome> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((request, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the signup writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the signup writer dropped a request"))?
            .map_err(anyhow::Error::msg)
    }

    /// Notes how long a signup took from arrival to its outcome; those that queued a
    /// confirmation (the slowest path) set [`SignupWriter::answer_floor`].
    pub fn note_answer_time(&self, outcome: SignupOutcome, took: Duration) {
        if outcome != SignupOutcome::ConfirmationQueued {
            return;
        }
        let mut recent = self.full_path.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == TIMING_WINDOW {
            recent.pop_front();
        }
        recent.push_back(took);
    }

    /// The earliest a signup should be answered after it arrived: the 90th percentile of how
    /// long recent signups that queued a confirmation took (the slowest path). Answering every
    /// signup no sooner than this — new, pending, confirmed, unsubscribed alike — keeps the
    /// time of the answer from telling a stranger which state an address is in, while the
    /// answer still means the signup is committed.
    pub fn answer_floor(&self) -> Duration {
        let recent = self.full_path.lock().unwrap_or_else(|e| e.into_inner());
        if recent.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted: Vec<Duration> = recent.iter().copied().collect();
        sorted.sort_unstable();
        sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)].min(MAX_FLOOR)
    }
}
