//! Shutdown signalling: SIGTERM or SIGINT (Ctrl-C) flips one watch channel that every long-running
//! part listens to: the HTTP server, the scheduler, the delivery worker, the transactional mail
//! queue and the bounce mailbox poller.

use tokio::sync::watch;

/// A cloneable handle that resolves once shutdown has been requested.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending half: trigger it to stop everything.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A new, untriggered pair.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// Waits until shutdown is requested (returns at once if it already was).
    pub async fn wait(mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
}

/// Ends the process `grace` after shutdown was requested, if it is still running then: what it
/// could not record by then (the database is down) is left to the leases, as after kill -9.
/// For the binary's long-running commands only (never inside tests that share a process).
pub fn exit_after(stop: Shutdown, grace: std::time::Duration) {
    tokio::spawn(async move {
        stop.wait().await;
        tokio::time::sleep(grace).await;
        tracing::error!(
            grace = %humantime::format_duration(grace),
            "shutdown took longer than delivery.shutdown_grace; exiting and leaving what was \
             not recorded to the leases (those messages may be sent again)"
        );
        std::process::exit(1);
    });
}

/// Triggers `trigger` on the first SIGTERM or SIGINT.
pub fn on_signals(trigger: ShutdownTrigger) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("shutdown requested; finishing work in flight");
        trigger.trigger();
    });
}
