//! Real `verdicts worker` processes against a real SMTP sink: their environment, and how a
//! test stops them (SIGTERM) or kills them (SIGKILL) and waits for an issue's status.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use verdicts::issues::IssueStatus;
use verdicts::store::Store;

use super::Worker;
use super::smtp::{Received, SmtpSink};

/// Environment variables that point the binary at the sink with the given delivery settings.
pub fn smtp_env(sink: &SmtpSink, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut v = vec![
        ("VERDICTS__MAIL__TRANSPORT".to_string(), "smtp".to_string()),
        ("VERDICTS__SMTP__URL".to_string(), sink.url()),
        (
            "VERDICTS__SMTP__TIMEOUT_SECONDS".to_string(),
            "5".to_string(),
        ),
        (
            "VERDICTS__SECURITY__SECRET_KEY".to_string(),
            "0123456789abcdef0123456789abcdef-delivery".to_string(),
        ),
    ];
    for (k, val) in extra {
        v.push((k.to_string(), val.clone()));
    }
    v
}

pub fn per_recipient(mails: &[Received]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for mail in mails {
        *m.entry(mail.rcpt.clone()).or_default() += 1;
    }
    m
}

pub async fn wait_status(store: &Store, issue_id: i64, want: IssueStatus, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let s = store.issue_status(issue_id).await.unwrap();
        if s == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "issue did not become {want} (is {s:?}); counts {:?}",
            store.delivery_counts(issue_id).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn stop(mut worker: Worker) {
    let mut child = worker.0.take().expect("a running worker");
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "worker exited with {status} on SIGTERM");
            return;
        }
        assert!(Instant::now() < deadline, "worker did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn kill9(mut worker: Worker) {
    let mut child = worker.0.take().expect("a running worker");
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
}

/// A sending issue #1 to `n` confirmed subscribers, a sink started with `sink_flags`, and the
/// worker environment pointing at it with `extra` delivery settings: the set-up of a test
/// that runs `verdicts worker` processes.
pub struct Sending {
    pub store: Store,
    pub issue_id: i64,
    pub sink: SmtpSink,
    pub vars: Vec<(String, String)>,
}

pub async fn sending(
    env: &super::TestEnv,
    n: usize,
    sink_flags: &[&str],
    extra: &[(&str, String)],
) -> Sending {
    let (store, issue_id) = super::frozen_issue(env, n).await;
    super::start_send(&store, issue_id).await;
    let sink = SmtpSink::start_with(sink_flags);
    let vars = smtp_env(&sink, extra);
    Sending {
        store,
        issue_id,
        sink,
        vars,
    }
}
