//! Scale-out (issue 16): several real `verdicts worker` processes on one database, a real SMTP
//! server on loopback (Postfix's smtp-sink, which names each message file by the second it
//! arrived), and the limits an operator configures holding for the whole installation:
//! the rate per second summed over every worker, the sliding window pausing and resuming a send,
//! heartbeats keeping rows in flight, and a killed worker's rows taken over within the lease.
//! Both databases.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::smtp::Received;
use common::workers::{Sending, kill9, per_recipient, sending, stop, wait_status};
use common::{TestEnv, Worker, spawn_worker};
use verdicts::issues::IssueStatus;

/// Arrivals per second at the sink, from the `YYYYmmddHHMMSS.` prefix of each message file.
fn per_second(mails: &[Received]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for mail in mails {
        let name = mail.path.file_name().unwrap().to_string_lossy().to_string();
        *m.entry(name[..14].to_string()).or_default() += 1;
    }
    m
}

/// The seconds from the first arrival to the last, as (second, arrivals), gaps included.
fn timeline(mails: &[Received]) -> Vec<(String, usize)> {
    let counts = per_second(mails);
    let parse = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").unwrap();
    let (Some(first), Some(last)) = (counts.keys().next(), counts.keys().last()) else {
        return Vec::new();
    };
    let (first, last) = (parse(first), parse(last));
    let mut out = Vec::new();
    let mut t = first;
    while t <= last {
        let key = t.format("%Y%m%d%H%M%S").to_string();
        out.push((key.clone(), counts.get(&key).copied().unwrap_or(0)));
        t += chrono::Duration::seconds(1);
    }
    out
}

/// `issue status 1 [--json]` with the workers' configuration (the limits are the
/// installation's: the command shows its own configuration's).
fn status(env: &TestEnv, vars: &[(String, String)], json: bool) -> common::CliOutput {
    let mut cmd = env.command();
    cmd.args(["issue", "status", "1"])
        .envs(vars.iter().cloned());
    if json {
        cmd.arg("--json");
    }
    common::CliOutput::from(cmd.output().expect("running verdicts"))
}

fn status_json(env: &TestEnv, vars: &[(String, String)]) -> serde_json::Value {
    serde_json::from_str(status(env, vars, true).ok()).expect("issue status --json")
}

/// Three workers with `rate_per_second = 40`: the server never sees more than the rate (plus
/// one reservation block of a quarter second) in any second, where each worker alone would
/// send 40/s — 120/s together before this was installation-wide. `issue status` lists the
/// three workers and the limit while they send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_one_rate_limit() {
    let env = TestEnv::new().await;
    let (n, rate) = (400usize, 40usize);
    let Sending {
        store,
        issue_id,
        sink,
        vars,
    } = sending(
        &env,
        n,
        &[],
        &[
            ("VERDICTS__DELIVERY__CONCURRENCY", "4".to_string()),
            ("VERDICTS__DELIVERY__RATE_PER_SECOND", rate.to_string()),
        ],
    )
    .await;
    let workers: Vec<Worker> = (0..3).map(|_| spawn_worker(&env, &vars)).collect();

    // While they send: three workers listed, each with its rate, and the limit.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let status = status_json(&env, &vars);
        let workers = status["workers"].as_array().cloned().unwrap_or_default();
        if workers.len() == 3 && workers.iter().all(|w| w["rate"].as_f64() > Some(0.0)) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "three workers never listed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(listed["limits"]["rate_per_second"], rate);
    let pids: std::collections::HashSet<u64> = listed["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect();
    let spawned: std::collections::HashSet<u64> = workers
        .iter()
        .map(|w| u64::from(w.0.as_ref().unwrap().id()))
        .collect();
    assert_eq!(pids, spawned, "the listed workers are the three processes");
    let text = status(&env, &vars, false);
    assert!(
        text.ok().contains("40/s across every worker") && text.ok().contains("workers:  3"),
        "{}",
        text.ok()
    );

    wait_status(&store, issue_id, IssueStatus::Sent, Duration::from_secs(60)).await;
    for w in workers {
        stop(w);
    }
    let mails = sink.wait_for(n, Duration::from_secs(10)).await;
    let counts = per_recipient(&mails);
    assert_eq!(counts.len(), n, "everyone got the issue");
    assert!(counts.values().all(|&c| c == 1), "nobody got it twice");
    let seconds = timeline(&mails);
    // One block (a quarter second of slots) is the most a second can be off by.
    let bound = rate + rate / 4;
    for (second, arrivals) in &seconds {
        assert!(
            *arrivals <= bound,
            "{arrivals} arrivals in {second} with rate {rate}/s across 3 workers: {seconds:?}"
        );
    }
    // And the limit is not starved either: 400 at 40/s is 10 s; allow start-up and the tail.
    assert!(
        seconds.len() <= 16,
        "took {} s for {n} at {rate}/s: {seconds:?}",
        seconds.len()
    );
    println!("three workers at {rate}/s: {seconds:?}");
}

/// `window_limit = 15` per 3 s: a send of 40 pauses itself each time the window is full (the
/// reason names the limit, `issue status` shows the window's use and when it resumes), resumes
/// by itself when the window has room, and ends with everyone served once. At the server, no
/// three consecutive seconds hold more than the limit, and the 40 take three windows. The
/// operator log names `system` for both moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_pauses_the_send_and_it_resumes_by_itself() {
    let env = TestEnv::new().await;
    let (n, limit) = (40usize, 15usize);
    let Sending {
        store,
        issue_id,
        sink,
        vars,
    } = sending(
        &env,
        n,
        &[],
        &[
            ("VERDICTS__DELIVERY__CONCURRENCY", "4".to_string()),
            ("VERDICTS__DELIVERY__WINDOW_LIMIT", limit.to_string()),
            ("VERDICTS__DELIVERY__WINDOW", "3s".to_string()),
        ],
    )
    .await;
    let worker = spawn_worker(&env, &vars);

    wait_status(
        &store,
        issue_id,
        IssueStatus::Paused,
        Duration::from_secs(30),
    )
    .await;
    let paused = status_json(&env, &vars);
    let reason = paused["issue"]["status_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("sending window is full") && reason.contains("delivery.window_limit"),
        "{paused}"
    );
    assert!(paused["issue"]["resume_at"].is_string(), "{paused}");
    assert_eq!(paused["limits"]["window_limit"], limit);
    assert_eq!(paused["limits"]["window_seconds"], 3);
    assert_eq!(paused["limits"]["window_used"], limit, "{paused}");
    assert_eq!(
        sink.wait_for(limit, Duration::from_secs(5)).await.len(),
        limit
    );

    wait_status(&store, issue_id, IssueStatus::Sent, Duration::from_secs(60)).await;
    stop(worker);
    let mails = sink.wait_for(n, Duration::from_secs(10)).await;
    let counts = per_recipient(&mails);
    assert_eq!(counts.len(), n, "everyone got the issue");
    assert!(counts.values().all(|&c| c == 1), "nobody got it twice");
    let seconds = timeline(&mails);
    for w in seconds.windows(2) {
        let sum: usize = w.iter().map(|(_, a)| a).sum();
        assert!(
            sum <= limit,
            "{sum} arrivals in 2 s with a window of {limit}/3s: {seconds:?}"
        );
    }
    assert!(
        seconds.len() >= 7,
        "three windows (15, 15, 10): {seconds:?}"
    );

    let log = store.recent_operator_log(50).await.unwrap();
    let by_system = |action: &str| {
        log.iter()
            .filter(|e| e.actor == "system" && e.action == action)
            .count()
    };
    assert!(by_system("issue.pause") >= 2, "{log:?}");
    assert!(by_system("issue.resume") >= 2, "{log:?}");
    println!("window {limit}/3s: {seconds:?}");
}

/// A server slower than the lease (DATA answered after 5 s, `lease_seconds = 3`): the heartbeat
/// keeps renewing the rows in flight, so a second worker never takes one of them and nobody
/// gets the issue twice. Without the heartbeat every message went out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_in_flight_is_never_taken_by_another_worker() {
    let env = TestEnv::new().await;
    let n = 8;
    let Sending {
        store,
        issue_id,
        sink,
        vars,
    } = sending(
        &env,
        n,
        &["-w", "5"],
        &[
            ("VERDICTS__DELIVERY__CONCURRENCY", "2".to_string()),
            ("VERDICTS__DELIVERY__LEASE_SECONDS", "3".to_string()),
            ("VERDICTS__SMTP__TIMEOUT_SECONDS", "20".to_string()),
        ],
    )
    .await;
    let first = spawn_worker(&env, &vars);
    // The second worker starts once the first holds rows in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let leased: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE issue_id = $1 AND lease_owner IS NOT NULL",
        )
        .bind(issue_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        if leased > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first worker claimed nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = spawn_worker(&env, &vars);
    wait_status(&store, issue_id, IssueStatus::Sent, Duration::from_secs(90)).await;
    stop(first);
    stop(second);
    let mails = sink.wait_for(n, Duration::from_secs(10)).await;
    let counts = per_recipient(&mails);
    assert_eq!(counts.len(), n, "everyone got the issue");
    assert!(
        counts.values().all(|&c| c == 1),
        "a row in flight was taken by the other worker: {counts:?}"
    );
}

/// `kill -9` of one of two workers mid-send, with the default lease (15 s): the rows it held
/// are taken over by the other within 20 s, nobody is skipped, and duplicates stay within its
/// concurrency (the messages it had on the wire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_rows_are_taken_over_within_the_lease() {
    let env = TestEnv::new().await;
    let (n, concurrency) = (600usize, 4usize);
    let Sending {
        store,
        issue_id,
        sink,
        vars,
    } = sending(
        &env,
        n,
        &[],
        &[
            ("VERDICTS__DELIVERY__CONCURRENCY", concurrency.to_string()),
            ("VERDICTS__DELIVERY__RATE_PER_SECOND", "30".to_string()),
        ],
    )
    .await;
    let victim = spawn_worker(&env, &vars);
    let survivor = spawn_worker(&env, &vars);
    let victim_pid = victim.0.as_ref().unwrap().id();
    // Both are sending (listed with a rate) before the kill.
    let deadline = Instant::now() + Duration::from_secs(30);
    let victim_name = loop {
        let status = status_json(&env, &vars);
        let listed = status["workers"].as_array().cloned().unwrap_or_default();
        let name = listed
            .iter()
            .find(|w| w["pid"].as_u64() == Some(u64::from(victim_pid)))
            .map(|w| w["name"].as_str().unwrap().to_string());
        if listed.len() == 2
            && let Some(name) = name
        {
            break name;
        }
        assert!(
            Instant::now() < deadline,
            "two workers never listed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    kill9(victim);
    let killed_at = Instant::now();
    let held = |store: verdicts::store::Store, name: String| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM deliveries WHERE lease_owner = $1 AND status = 'pending'",
        )
        .bind(name)
        .fetch_one(store.pool())
        .await
        .unwrap()
    };
    let at_kill = held(store.clone(), victim_name.clone()).await;
    assert!(at_kill > 0, "the victim held rows when it was killed");
    loop {
        if held(store.clone(), victim_name.clone()).await == 0 {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "the killed worker's rows were not taken over within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let takeover = killed_at.elapsed();
    wait_status(&store, issue_id, IssueStatus::Sent, Duration::from_secs(60)).await;
    stop(survivor);
    let mails = sink.wait_for(n, Duration::from_secs(10)).await;
    let counts = per_recipient(&mails);
    assert_eq!(counts.len(), n, "no confirmed subscriber was skipped");
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= concurrency,
        "{duplicates} duplicates after one kill with concurrency {concurrency}"
    );
    let c = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((c.sent, c.pending, c.failed), (n as i64, 0, 0));
    println!(
        "kill -9: {at_kill} rows held, taken over after {takeover:?}, {duplicates} duplicates"
    );
}

/// A worker cut off for longer than its lease comes back and hands back rows, or records them
/// as put back, retried or failed: none of that touches rows another worker took over (their
/// lease stays the other worker's), while a message it did send is still recorded as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_worker_never_clears_the_lease_of_the_worker_that_took_over() {
    use verdicts::store::deliveries::Outcome;
    let env = TestEnv::new().await;
    let (store, issue_id) = common::frozen_issue(&env, 4).await;
    common::start_send(&store, issue_id).await;
    let rows = store
        .claim_deliveries(issue_id, "late", 4, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = store
        .claim_deliveries(issue_id, "taker", 4, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(taken.len(), 4, "the expired leases are taken over");
    let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
    let now = chrono::Utc::now().timestamp_millis();
    store
        .record_outcomes(
            "late",
            &[
                (
                    ids[0],
                    rows[0].subscriber_id,
                    Outcome::Release {
                        retry_at_ms: now,
                        error: "put back".into(),
                    },
                ),
                (
                    ids[1],
                    rows[1].subscriber_id,
                    Outcome::Retry {
                        retry_at_ms: now + 60_000,
                        error: "451 later".into(),
                    },
                ),
                (
                    ids[2],
                    rows[2].subscriber_id,
                    Outcome::Failed {
                        error: "550 no".into(),
                        bounced: false,
                    },
                ),
                (ids[3], rows[3].subscriber_id, Outcome::Sent),
            ],
        )
        .await
        .unwrap();
    store.release_leases("late", &ids[..3]).await.unwrap();
    let owners: Vec<(Option<String>, String, i64)> = sqlx::query_as(
        "SELECT lease_owner, status, attempts FROM deliveries WHERE issue_id = $1 ORDER BY id",
    )
    .bind(issue_id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    for (owner, status, attempts) in &owners[..3] {
        assert_eq!(
            (owner.as_deref(), status.as_str(), *attempts),
            (Some("taker"), "pending", 0),
            "{owners:?}"
        );
    }
    assert_eq!(
        owners[3].1, "sent",
        "a message that went out is recorded: {owners:?}"
    );
}

/// The relay's quota counts every message: confirmation mails go into the sending window too
/// (and are never held back by it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_mail_counts_in_the_window() {
    let app = common::TestApp::spawn("[delivery]\nwindow_limit = 100\nwindow = \"1h\"\n").await;
    for email in ["ada@example.org", "grace@example.org"] {
        let r = app
            .client
            .post(app.url("/subscribe"))
            .form(&[("email", email)])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    assert_eq!(app.outbox(2).await.len(), 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let used = app
            .store
            .window_use(Duration::from_secs(3600))
            .await
            .unwrap()
            .used;
        if used == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the window counts {used}, not 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}
