//! Group commit for signups: request handlers hand their signup to one writer task, which takes
//! everything queued at that moment (up to [`MAX_BATCH`]) and writes it in one transaction with
//! a handful of multi-row statements. Under load, batches grow and the per-signup cost of the
//! database shrinks; when idle, a lone signup is written at once.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::Store;
use crate::store::subscribers::{SignupOutcome, SignupRequest};

/// Most signups written in one transaction.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<SignupOutcome, String>>;

/// The handle request handlers use; cheap to clone.
#[derive(Debug, Clone)]
pub struct SignupWriter {
    tx: mpsc::Sender<(SignupRequest, Reply)>,
}

impl SignupWriter {
    /// Starts the writer task; it ends when every handle is dropped, after writing what is queued.
    pub fn spawn(store: Store, token_ttl: Duration, resend_interval: Duration) -> SignupWriter {
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
                match store
                    .signup_batch(&requests, token_ttl, resend_interval)
                    .await
                {
                    Ok(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        let message = format!("{e:#}");
                        tracing::error!(error = %message, signups = requests.len(), "writing signups failed");
                        for reply in replies {
                            let _ = reply.send(Err(message.clone()));
                        }
                    }
                }
            }
        });
        SignupWriter { tx }
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
}
