//! One application core: the CLI and the admin API go through the same operations, so they
//! accept the same issue keys, allow the same transitions, write one operator-log vocabulary,
//! and tell "wrong state" (exit 2 / 409) from "database failure" (exit 1 / 500).

mod common;

use std::time::Duration;

use common::smtp::SmtpSink;
use common::{TestApp, TestEnv, comparison_json};
use reqwest::Method;
use serde_json::{Value, json};
use verdicts::comparisons::import::parse_json;
use verdicts::issues::IssueStatus;
use verdicts::store::Store;
use verdicts::store::comparisons::Source;

async fn seed(store: &Store, subscribers: usize) {
    let text = Value::Array(vec![comparison_json(
        "alpha-vs-beta",
        "Alpha vs Beta",
        "2026-11-17T10:00:00Z",
    )])
    .to_string();
    store
        .upsert_comparisons(&parse_json(&text).unwrap(), Source::Json, false)
        .await
        .unwrap();
    common::add_confirmed(store, subscribers, "o", 2).await;
}

async fn log(store: &Store) -> Vec<(String, String)> {
    sqlx::query_as::<_, (String, String)>("SELECT actor, action FROM operator_log ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, a)| a != "scheduler.start")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_api_share_keys_rules_and_log() {
    let app = TestApp::spawn("[schedule]\ncron = \"0 0 9 1 1 *\"").await;
    seed(&app.store, 3).await;
    let r = app
        .admin(Method::POST, "/api/issues")
        .json(&json!({"week": "2026-W47"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // `#1` names issue 1 in both front ends (the API refused it before).
    let r = app
        .admin(Method::GET, "/api/issues/%231")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issue"]["week"], "2026-W47");
    let out = app.env.cli(&["issue", "status", "#1", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let status: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status["issue"]["status"], "ready");
    let r = app
        .admin(Method::GET, "/api/issues/%23x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .admin(Method::GET, "/api/issues/7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.env.cli(&["issue", "status", "7"]).code, 2);

    // The same wrong transition is refused by both, with the same words, and changes nothing.
    let out = app.env.cli(&["issue", "pause", "1"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("cannot pause issue 2026-W47: the issue is ready (allowed when sending)"),
        "{}",
        out.stderr
    );
    let r = app
        .admin(Method::POST, "/api/issues/1/pause")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        "cannot pause issue 2026-W47: the issue is ready (allowed when sending)"
    );
    let r = app
        .admin(Method::POST, "/api/issues/1/retry-failed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "nothing has been sent yet");

    // Schedule through the CLI, cancel through the API, then neither can send it.
    let out = app.env.cli(&[
        "issue",
        "schedule",
        "2026-W47",
        "--at",
        "2030-01-01T09:00:00Z",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = app
        .admin(Method::POST, "/api/issues/%231/cancel")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issue"]["status"], "cancelled");
    // Before any delivery: its comparisons and its number go back for the next issue.
    assert_eq!(v["result"]["done"], "released");
    assert!(v["issue"]["number"].is_null(), "{v}");
    let out = app.env.cli(&["issue", "send", "2026-W47"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("the issue is cancelled"),
        "{}",
        out.stderr
    );
    assert_eq!(app.store.count_rows("deliveries").await.unwrap(), 0);

    // One vocabulary, the actor named: refused actions are not logged.
    assert_eq!(
        log(&app.store).await,
        [
            ("api".to_string(), "issue.create".to_string()),
            ("cli".to_string(), "issue.schedule".to_string()),
            ("api".to_string(), "issue.cancel".to_string()),
        ]
    );
    app.stop().await;
}

/// A relay that refused everyone (4xx until the attempts ran out), then works again:
/// `retry-failed` puts exactly the failed recipients back, and a send reaches each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_puts_failed_recipients_back_in_line() {
    let env = TestEnv::new().await;
    let store = env.store().await;
    seed(&store, 6).await;
    assert_eq!(env.cli(&["issue", "create", "--week", "2026-W47"]).code, 0);
    let refusing = SmtpSink::start_with(&["-r", "RCPT"]);
    let port = refusing.url().rsplit(':').next().unwrap().to_string();
    let smtp = |cmd: &mut std::process::Command| {
        cmd.env("VERDICTS__MAIL__TRANSPORT", "smtp")
            .env("VERDICTS__SMTP__URL", format!("smtp://127.0.0.1:{port}"))
            .env("VERDICTS__DELIVERY__MAX_ATTEMPTS", "1")
            .env("VERDICTS__DELIVERY__PAUSE_AFTER_FAILURES", "1000");
    };
    // Not allowed before a send started.
    let out = env.cli(&["issue", "retry-failed", "1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);

    let mut cmd = env.command();
    cmd.args(["issue", "send", "1"]);
    smtp(&mut cmd);
    let out = common::CliOutput::from(cmd.output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let issue = store.get_issue_by_number(1).await.unwrap().unwrap();
    let c = store.delivery_counts(issue.id).await.unwrap();
    assert_eq!((c.failed, c.sent, c.pending), (6, 0, 0));
    assert_eq!(issue.status, IssueStatus::Sent);
    assert!(refusing.messages().is_empty());
    let failed = store.failed_deliveries(issue.id, 100).await.unwrap();
    assert_eq!(failed.len(), 6);
    assert!(failed.iter().all(|f| !f.error.is_empty()), "{failed:?}");
    refusing.shutdown();

    // The relay works again on the same port.
    let sink = SmtpSink::start_on(Some(port.parse().unwrap()), &[]);
    let out = env.cli(&["issue", "retry-failed", "#1", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["result"], json!({"done": "retried", "deliveries": 6}));
    assert_eq!(v["status"], "sending");
    let c = store.delivery_counts(issue.id).await.unwrap();
    assert_eq!((c.failed, c.pending), (0, 6));

    // `issue send` joins the send that is already going and follows it to the end.
    let mut cmd = env.command();
    cmd.args(["issue", "send", "1"]);
    smtp(&mut cmd);
    let out = common::CliOutput::from(cmd.output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mails = sink.wait_for(6, Duration::from_secs(20)).await;
    let mut rcpts: Vec<String> = mails.into_iter().map(|m| m.rcpt).collect();
    rcpts.sort();
    rcpts.dedup();
    assert_eq!(rcpts.len(), 6, "each once");
    let c = store.delivery_counts(issue.id).await.unwrap();
    assert_eq!((c.sent, c.failed, c.pending), (6, 0, 0));
    assert_eq!(
        store.issue_status(issue.id).await.unwrap(),
        Some(IssueStatus::Sent)
    );
    // With nothing failed, retry-failed changes nothing: the issue stays sent.
    let out = env.cli(&["issue", "retry-failed", "1", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        store.issue_status(issue.id).await.unwrap(),
        Some(IssueStatus::Sent)
    );
    let actions: Vec<String> = log(&store).await.into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        actions,
        [
            "issue.create",
            "issue.send",
            "issue.retry-failed",
            "issue.retry-failed"
        ]
    );
}

/// A wrong state is the operator's error (exit 2); a broken database is ours (exit 1) — the
/// CLI used to report both as exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_failure_is_a_runtime_error_not_a_usage_error() {
    let env = TestEnv::new().await;
    let store = env.store().await;
    seed(&store, 2).await;
    assert_eq!(env.cli(&["issue", "create", "--week", "2026-W47"]).code, 0);
    sqlx::raw_sql("DROP TABLE deliveries")
        .execute(store.pool())
        .await
        .unwrap();
    let out = env.cli(&["issue", "send", "1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        store.issue_status(1).await.unwrap(),
        Some(IssueStatus::Ready),
        "the failed start changed nothing"
    );
}

/// Interactive commands keep their output clean: no log lines below WARN unless `-v`, and no
/// colour codes when the output is not a terminal (as here, a pipe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_commands_print_no_info_lines_or_colours_off_a_terminal() {
    let env = TestEnv::new().await;
    let store = env.store().await;
    seed(&store, 2).await;
    let run = |args: &[&str]| {
        let out = env
            .command()
            .env_remove("RUST_LOG")
            .args(args)
            .output()
            .expect("running verdicts");
        common::CliOutput::from(out)
    };
    let out = run(&["issue", "create", "--week", "2026-W47"]);
    assert!(
        out.ok().contains("created issue #1 for 2026-W47"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("INFO") && !out.stdout.contains("INFO"),
        "no INFO lines without -v: {out:?}"
    );
    assert!(!out.stderr.contains('\u{1b}'), "no ANSI codes: {out:?}");

    // -v brings the INFO lines back, still without colour, and without `Some(…)`.
    let out = run(&["-v", "issue", "pause", "2026-W47"]);
    assert_eq!(out.code, 2, "a ready issue cannot be paused: {out:?}");
    let out = run(&["-v", "issue", "cancel", "2026-W47"]);
    out.ok();
    assert!(out.stderr.contains("INFO"), "{out:?}");
    assert!(!out.stderr.contains('\u{1b}'), "no ANSI codes: {out:?}");
    assert!(!out.stderr.contains("Some("), "{out:?}");
}
