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

/// The parts of this process still at work, by name, with how many of each: what
/// [`exit_after`] names when the grace runs out.
static BUSY: std::sync::LazyLock<
    std::sync::Mutex<std::collections::BTreeMap<&'static str, usize>>,
> = std::sync::LazyLock::new(Default::default);

/// A part at work (an HTTP request, the delivery worker, the mail sender), counted until the
/// guard drops; see [`busy`].
#[derive(Debug)]
pub struct Busy(&'static str);

/// Marks `what` as at work until the returned guard drops, so a shutdown that runs out of time
/// can say what was still running ("an HTTP request", "the delivery worker").
pub fn busy(what: &'static str) -> Busy {
    *BUSY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(what)
        .or_insert(0) += 1;
    Busy(what)
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = busy.get_mut(self.0) {
            *n -= 1;
            if *n == 0 {
                busy.remove(self.0);
            }
        }
    }
}

/// What is still at work, for people: `"the delivery worker, 2 × an HTTP connection"`.
pub fn still_busy() -> Vec<String> {
    BUSY.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(what, n)| match n {
            1 => what.to_string(),
            n => format!("{n} × {what}"),
        })
        .collect()
}

/// The part of [`BUSY`] whose unrecorded work the leases take over at a forced exit.
pub const SENDING: &str = "the delivery worker";

/// Ends the process `grace` after shutdown was requested, if it is still running then: what it
/// could not record by then (the database is down) is left to the leases, as after kill -9.
/// The log line names what was still running. For the binary's long-running commands only
/// (never inside tests that share a process).
pub fn exit_after(stop: Shutdown, grace: std::time::Duration) {
    tokio::spawn(async move {
        stop.wait().await;
        tokio::time::sleep(grace).await;
        let running = still_busy();
        let sending = BUSY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(SENDING);
        let grace = humantime::format_duration(grace);
        let running = if running.is_empty() {
            "nothing named".to_string()
        } else {
            running.join(", ")
        };
        if sending {
            tracing::error!(
                %grace,
                %running,
                "shutdown took longer than delivery.shutdown_grace; exiting and leaving what was \
                 not recorded to the leases (those messages may be sent again)"
            );
        } else {
            tracing::error!(
                %grace,
                %running,
                "shutdown took longer than delivery.shutdown_grace; exiting with these still \
                 running"
            );
        }
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
