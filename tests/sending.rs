//! Production sending against a real submission server on loopback (aiosmtpd, see
//! `tests/smtp_server.py`): STARTTLS and implicit TLS under a private CA, AUTH with a password
//! that needs percent-encoding, credentials that must never cross a connection without TLS, and
//! transport failures (a wrong or rotated password, an untrusted certificate, AUTH that is never
//! answered) that pause the issue without failing a recipient. The real `verdicts` binary sends.
//! Both databases.

mod common;

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::TestEnv;
use common::submission::{ServerOptions, Submission, TestCa};
use verdicts::issues::IssueStatus;
use verdicts::store::Store;

const USER: &str = "news@shiporskip.example";
/// A password with the characters URL userinfo gets wrong: `+`, a space and `%`.
const PASSWORD: &str = "pa+ss word%41";
/// The same, percent-encoded for the URL's userinfo (`+` stays `+`).
const PASSWORD_IN_URL: &str = "pa+ss%20word%2541";
const USER_IN_URL: &str = "news%40shiporskip.example";

/// Environment for a `verdicts` command sending through `url`.
fn smtp_vars(url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        ("VERDICTS__MAIL__TRANSPORT".into(), "smtp".into()),
        ("VERDICTS__SMTP__URL".into(), url.into()),
        ("VERDICTS__SMTP__TIMEOUT_SECONDS".into(), "5".into()),
        (
            "VERDICTS__SECURITY__SECRET_KEY".into(),
            "0123456789abcdef0123456789abcdef-sending".into(),
        ),
    ];
    v.extend(extra.iter().map(|(k, x)| (k.to_string(), x.to_string())));
    v
}

fn ca_var(ca: &TestCa) -> (&'static str, &str) {
    ("VERDICTS__SMTP__CA_FILE", &ca.ca_file)
}

/// Runs `verdicts ARGS…` with `vars` to completion.
fn run(env: &TestEnv, args: &[&str], vars: &[(String, String)]) -> common::CliOutput {
    let mut cmd = env.command();
    cmd.args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    common::CliOutput::from(cmd.output().expect("running verdicts"))
}

/// A `verdicts` process killed if the test ends without waiting for it.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Running {
    fn spawn(env: &TestEnv, args: &[&str], vars: &[(String, String)]) -> Running {
        let mut cmd = env.command();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Running(Some(cmd.spawn().expect("spawning verdicts")))
    }

    /// Waits for the process (at most `timeout`) and returns what it printed.
    fn finish(mut self, timeout: Duration) -> (common::CliOutput, Duration) {
        let mut child = self.0.take().unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > timeout {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "verdicts did not finish within {timeout:?}:\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let elapsed = start.elapsed();
        (
            common::CliOutput::from(child.wait_with_output().unwrap()),
            elapsed,
        )
    }

    fn sigterm(&self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = self.0.as_ref().unwrap().id() as i32;
        kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    }
}

/// Attempts beyond what the outcome explains (a sent message counts one): what a transport
/// failure or an idle reconnect must never add.
async fn extra_attempts(store: &Store, issue_id: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM deliveries WHERE issue_id = $1
            AND attempts > CASE WHEN status = 'sent' THEN 1 ELSE 0 END",
    )
    .bind(issue_id)
    .fetch_one(store.pool())
    .await
    .unwrap()
}

fn count(recipients: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in recipients {
        *m.entry(r.clone()).or_default() += 1;
    }
    m
}

/// Every one of `n` subscribers exactly once.
fn assert_everyone_once(server: &Submission, n: usize) {
    let per = count(&server.recipients());
    assert_eq!(per.len(), n, "distinct recipients: {per:?}");
    assert!(per.values().all(|&c| c == 1), "someone got two: {per:?}");
}

/// Every login the server saw was over TLS, with the decoded password, and accepted.
fn assert_logins_over_tls(server: &Submission) {
    let auths = server.events_of("auth");
    assert!(!auths.is_empty(), "no login seen");
    for a in &auths {
        assert_eq!(a["tls"], true, "a login without TLS: {a}");
        assert_eq!(a["user"], USER, "{a}");
        assert_eq!(a["password"], PASSWORD, "percent-decoding: {a}");
        assert_eq!(a["ok"], true, "{a}");
    }
    for m in server.events_of("message") {
        assert_eq!(m["tls"], true, "a message without TLS: {m}");
        assert_eq!(m["auth"], USER, "a message without login: {m}");
    }
}

/// An issue to `n` subscribers through a server that requires TLS (STARTTLS, or `implicit`)
/// and AUTH, trusting its private CA through `smtp.ca_file`.
async fn reaches_everyone_over_tls_with_auth(n: usize, implicit: bool) {
    let env = TestEnv::new().await;
    let (store, issue_id) = common::frozen_issue(&env, n).await;
    let ca = TestCa::new();
    let server = Submission::start(&ServerOptions {
        tls: Some(&ca),
        implicit,
        login: Some((USER, PASSWORD)),
        ..Default::default()
    });
    let (scheme, query) = if implicit {
        ("smtps", "")
    } else {
        ("smtp", "?tls=required")
    };
    let url = format!(
        "{scheme}://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{}{query}",
        server.port
    );
    let out = run(
        &env,
        &["issue", "send", "1"],
        &smtp_vars(&url, &[ca_var(&ca)]),
    );
    let text = out.ok();
    assert!(text.contains(&format!("{n} sent, 0 failed")), "{text}");
    assert_eq!(
        store.issue_status(issue_id).await.unwrap(),
        Some(IssueStatus::Sent)
    );
    assert_everyone_once(&server, n);
    assert_logins_over_tls(&server);
}

#[tokio::test]
async fn an_issue_reaches_every_subscriber_over_starttls_with_auth() {
    reaches_everyone_over_tls_with_auth(12, false).await;
}

#[tokio::test]
async fn an_issue_reaches_every_subscriber_over_implicit_tls() {
    reaches_everyone_over_tls_with_auth(9, true).await;
}

/// A server that offers AUTH on a plain connection never sees the credentials: a URL with
/// credentials and no TLS is refused when the configuration loads, and `tls=required` against a
/// server without STARTTLS stops before AUTH.
#[tokio::test]
async fn credentials_never_cross_a_connection_without_tls() {
    let env = TestEnv::new().await;
    let (store, issue_id) = common::frozen_issue(&env, 3).await;
    let server = Submission::start(&ServerOptions {
        login: Some((USER, PASSWORD)),
        auth_without_tls: true,
        ..Default::default()
    });
    for url in [
        format!(
            "smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{}",
            server.port
        ),
        format!(
            "smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{}?tls=opportunistic",
            server.port
        ),
    ] {
        let out = run(&env, &["issue", "send", "1"], &smtp_vars(&url, &[]));
        assert_eq!(out.code, 2, "{url}: {out:?}");
        assert!(
            out.stderr
                .contains("smtp.url: carries credentials without TLS"),
            "{url}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("word"),
            "the password is not printed: {}",
            out.stderr
        );
    }
    assert_eq!(
        store.issue_status(issue_id).await.unwrap(),
        Some(IssueStatus::Ready),
        "a refused configuration changes nothing"
    );
    let url = format!(
        "smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{}?tls=required",
        server.port
    );
    let out = run(
        &env,
        &["issue", "send", "1"],
        &smtp_vars(&url, &[("VERDICTS__DELIVERY__STALL_AFTER", "2s")]),
    );
    assert!(
        out.stderr.contains("does not offer STARTTLS"),
        "{}",
        out.stderr
    );
    assert_eq!(
        store.issue_status(issue_id).await.unwrap(),
        Some(IssueStatus::Paused)
    );
    assert!(server.events_of("auth").is_empty(), "{:?}", server.events());
    assert!(server.events_of("message").is_empty());
    let c = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((c.pending, c.failed), (3, 0));
}

/// The relay's password is rotated in the middle of a send: the issue pauses with the refused
/// login as its reason, nobody is failed and no attempt is counted; with the new password and a
/// resume, everyone arrives, once.
#[tokio::test]
async fn a_wrong_password_mid_list_pauses_and_fails_nobody() {
    let env = TestEnv::new().await;
    let n = 16;
    let (store, issue_id) = common::frozen_issue(&env, n).await;
    let ca = TestCa::new();
    // The server closes each connection after one message, so each message logs in anew.
    let server = Submission::start(&ServerOptions {
        tls: Some(&ca),
        login: Some((USER, PASSWORD)),
        close_after_message: true,
        ..Default::default()
    });
    let url = format!(
        "smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{}?tls=required",
        server.port
    );
    let vars = smtp_vars(
        &url,
        &[
            ca_var(&ca),
            ("VERDICTS__DELIVERY__CONCURRENCY", "1"),
            ("VERDICTS__DELIVERY__RATE_PER_SECOND", "2"),
            ("VERDICTS__DELIVERY__STALL_AFTER", "3s"),
        ],
    );
    let send = Running::spawn(&env, &["issue", "send", "1"], &vars);
    server.wait_for(4, Duration::from_secs(30)).await;
    server.set_login(USER, "rotated");
    let (out, _) = send.finish(Duration::from_secs(60));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("transport error") && out.stderr.contains("535"),
        "the refused login is printed as it happens: {}",
        out.stderr
    );
    assert_eq!(
        store.issue_status(issue_id).await.unwrap(),
        Some(IssueStatus::Paused)
    );
    let c = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!(c.failed, 0, "{c:?}");
    assert!(c.sent >= 4 && c.sent < n as i64, "{c:?}");
    assert_eq!(extra_attempts(&store, issue_id).await, 0);
    let status = env.cli(&["issue", "status", "1"]);
    let text = status.ok();
    assert!(text.contains("status:   paused"), "{text}");
    assert!(
        text.contains("reason:   no message accepted for 3s") && text.contains("535"),
        "{text}"
    );
    assert!(text.contains("transport: failing since"), "{text}");

    // The operator puts the new password in and resumes.
    env.cli(&["issue", "resume", "1"]).ok();
    let url = format!(
        "smtp://{USER_IN_URL}:rotated@127.0.0.1:{}?tls=required",
        server.port
    );
    let vars = smtp_vars(&url, &[ca_var(&ca)]);
    let out = run(&env, &["issue", "send", "1"], &vars);
    out.ok();
    assert_eq!(
        store.issue_status(issue_id).await.unwrap(),
        Some(IssueStatus::Sent)
    );
    assert_everyone_once(&server, n);
    let c = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((c.sent, c.failed, c.pending), (n as i64, 0, 0));
    let text = env.cli(&["issue", "status", "1"]).ok().to_string();
    assert!(
        !text.contains("transport:"),
        "cleared once mail flows: {text}"
    );
}

/// A certificate from a CA we do not trust, and a server that never answers AUTH: each pauses
/// the send with the reason within `delivery.stall_after`, printed by `issue send`.
#[tokio::test]
async fn an_untrusted_certificate_pauses_with_the_reason() {
    let env = TestEnv::new().await;
    let (store, issue_id) = common::frozen_issue(&env, 4).await;
    let ca = TestCa::new();
    let server = Submission::start(&ServerOptions {
        tls: Some(&ca),
        login: Some((USER, PASSWORD)),
        ..Default::default()
    });
    let url = format!(
        "smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{}?tls=required",
        server.port
    );
    // No smtp.ca_file: the private CA is not trusted.
    let vars = smtp_vars(&url, &[("VERDICTS__DELIVERY__STALL_AFTER", "2s")]);
    let (out, took) =
        Running::spawn(&env, &["issue", "send", "1"], &vars).finish(Duration::from_secs(30));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        out.stderr.contains("transport error") && out.stderr.contains("STARTTLS"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
    let issue = store.get_issue(issue_id).await.unwrap().unwrap();
    assert_eq!(issue.status, IssueStatus::Paused);
    let reason = issue.status_reason.unwrap_or_default();
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    let c = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((c.pending, c.failed), (4, 0));
    assert_eq!(extra_attempts(&store, issue_id).await, 0);
    assert!(server.events_of("auth").is_empty(), "no login without TLS");
}

#[tokio::test]
async fn auth_that_is_never_answered_is_bounded_and_pauses() {
    let env = TestEnv::new().await;
    let (store, issue_id) = common::frozen_issue(&env, 4).await;
    let ca = TestCa::new();
    let server = Submission::start(&ServerOptions {
        tls: Some(&ca),
        silent_auth: true,
        login: Some((USER, PASSWORD)),
        ..Default::default()
    });
    let url = format!(
        "smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{}?tls=required",
        server.port
    );
    let vars = smtp_vars(
        &url,
        &[
            ca_var(&ca),
            ("VERDICTS__SMTP__TIMEOUT_SECONDS", "1"),
            ("VERDICTS__DELIVERY__STALL_AFTER", "2s"),
        ],
    );
    let (out, took) =
        Running::spawn(&env, &["issue", "send", "1"], &vars).finish(Duration::from_secs(30));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        out.stderr.contains("logging in") && out.stderr.contains("no answer within 1 s"),
        "{}",
        out.stderr
    );
    let issue = store.get_issue(issue_id).await.unwrap().unwrap();
    assert_eq!(issue.status, IssueStatus::Paused);
    assert!(
        issue
            .status_reason
            .as_deref()
            .is_some_and(|r| r.contains("logging in")),
        "{issue:?}"
    );
    let c = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((c.pending, c.failed), (4, 0));
    assert!(!server.events_of("auth-silent").is_empty());

    // SIGTERM does not wait for a login that hangs, even with a long smtp.timeout_seconds.
    env.cli(&["issue", "resume", "1"]).ok();
    let vars = smtp_vars(
        &url,
        &[ca_var(&ca), ("VERDICTS__SMTP__TIMEOUT_SECONDS", "60")],
    );
    let send = Running::spawn(&env, &["issue", "send", "1"], &vars);
    let before = server.events_of("auth-silent").len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.events_of("auth-silent").len() == before {
        assert!(Instant::now() < deadline, "no login attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send.sigterm();
    let (out, took) = send.finish(Duration::from_secs(20));
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?}: {out:?}"
    );
    let c = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((c.pending, c.failed), (4, 0));
}

async fn set_status(store: &Store, issue_id: i64, from: IssueStatus, to: IssueStatus) {
    assert!(
        store
            .transition_issue(issue_id, &[from], to, None, None)
            .await
            .unwrap(),
        "{from} → {to}"
    );
}

/// A server drops connections idle for 0.3 s (with a 421, or silently); a send paused between
/// batches reuses its pooled connections after such pauses: once under our NOOP check
/// (`smtp.idle_check`, 0.6 s here), where the 421 or the closed socket meets MAIL, once over
/// it, where NOOP finds it.
/// Each is a reconnect: no attempt is counted, no message is put back, everyone gets the issue
/// once.
async fn idle_connections_are_reconnects(mode: &str) {
    let env = TestEnv::new().await;
    let n = 24;
    let (store, issue_id) = common::frozen_issue(&env, n).await;
    let server = Submission::start(&ServerOptions {
        idle: Some((0.3, mode)),
        ..Default::default()
    });
    common::start_send(&store, issue_id).await;
    let url = format!("smtp://127.0.0.1:{}", server.port);
    let vars = smtp_vars(
        &url,
        &[
            ("VERDICTS__DELIVERY__CONCURRENCY", "2"),
            ("VERDICTS__DELIVERY__RATE_PER_SECOND", "6"),
            ("VERDICTS__SMTP__IDLE_CHECK", "600ms"),
        ],
    );
    let worker = common::spawn_worker(&env, &vars);
    // Pauses longer than the server's idle limit, counted from the last message: one under our
    // NOOP check (0.6 s idle, with the worker's own latency to resume), one over.
    for pause in [0.35, 0.9] {
        // Some messages on the pool's connections first.
        let so_far = server.recipients().len();
        server.wait_for(so_far + 3, Duration::from_secs(30)).await;
        set_status(&store, issue_id, IssueStatus::Sending, IssueStatus::Paused).await;
        loop {
            let before = server.recipients().len();
            tokio::time::sleep(Duration::from_millis(300)).await;
            if server.recipients().len() == before {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs_f64(pause)).await;
        set_status(&store, issue_id, IssueStatus::Paused, IssueStatus::Sending).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.issue_status(issue_id).await.unwrap() != Some(IssueStatus::Sent) {
        assert!(Instant::now() < deadline, "the send did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(worker);
    assert_everyone_once(&server, n);
    assert!(
        !server.events_of("idle-drop").is_empty(),
        "the server dropped idle connections: {:?}",
        server.events()
    );
    assert_eq!(
        extra_attempts(&store, issue_id).await,
        0,
        "an idle drop counted as an attempt"
    );
    let errors: Vec<Option<String>> =
        sqlx::query_scalar("SELECT last_error FROM deliveries WHERE issue_id = $1")
            .bind(issue_id)
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert!(
        errors.iter().all(Option::is_none),
        "an idle drop put a message back: {errors:?}"
    );
}

#[tokio::test]
async fn an_idle_connection_closed_with_421_is_a_reconnect() {
    idle_connections_are_reconnects("421").await;
}

#[tokio::test]
async fn an_idle_connection_closed_silently_is_a_reconnect() {
    idle_connections_are_reconnects("close").await;
}

/// Adds `email` as a confirmed subscriber through the CLI, as an operator would.
fn add_subscriber(env: &TestEnv, email: &str) -> common::CliOutput {
    env.cli(&["subscribers", "add", email, "--confirmed"])
}

/// `user@bücher.example` and `user@xn--bcher-kva.example` are one subscriber, stored and sent in
/// the ASCII form; a UTF-8 local part goes out only where the server offers SMTPUTF8, and
/// otherwise fails at once with that reason (never pending for ever).
#[tokio::test]
async fn international_addresses() {
    for smtputf8 in [false, true] {
        let env = TestEnv::new().await;
        let (store, issue_id) = common::frozen_issue(&env, 2).await;
        add_subscriber(&env, "user@bücher.example").ok();
        let again = add_subscriber(&env, "User@XN--BCHER-KVA.example");
        assert!(
            again.code != 0 || !again.stdout.contains("added"),
            "the second spelling is the same subscriber: {again:?}"
        );
        add_subscriber(&env, "jürgen@example.org").ok();
        let list = env.cli(&["subscribers", "list"]).ok().to_string();
        assert!(list.contains("user@xn--bcher-kva.example"), "{list}");
        assert!(!list.contains("bücher"), "{list}");
        assert_eq!(list.matches("xn--bcher-kva").count(), 1, "{list}");

        let server = Submission::start(&ServerOptions {
            smtputf8,
            ..Default::default()
        });
        let url = format!("smtp://127.0.0.1:{}", server.port);
        let out = run(&env, &["issue", "send", "1"], &smtp_vars(&url, &[]));
        out.ok();
        assert_eq!(
            store.issue_status(issue_id).await.unwrap(),
            Some(IssueStatus::Sent)
        );
        let got = server.recipients();
        assert!(
            got.contains(&"user@xn--bcher-kva.example".to_string()),
            "{got:?}"
        );
        assert_eq!(got.len(), if smtputf8 { 4 } else { 3 }, "{got:?}");
        let c = store.delivery_counts(issue_id).await.unwrap();
        let failed: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT s.email, d.last_error FROM deliveries d JOIN subscribers s
                 ON s.id = d.subscriber_id WHERE d.issue_id = $1 AND d.status = 'failed'",
        )
        .bind(issue_id)
        .fetch_all(store.pool())
        .await
        .unwrap();
        if smtputf8 {
            assert_eq!(c.failed, 0, "{failed:?}");
            assert!(got.contains(&"jürgen@example.org".to_string()), "{got:?}");
            let utf8 = server
                .events_of("message")
                .into_iter()
                .find(|m| m["rcpt"][0] == "jürgen@example.org")
                .unwrap();
            assert_eq!(utf8["smtputf8"], true, "{utf8}");
        } else {
            assert_eq!(c.failed, 1, "{failed:?}");
            assert_eq!(failed[0].0.as_deref(), Some("jürgen@example.org"));
            assert!(
                failed[0]
                    .1
                    .as_deref()
                    .is_some_and(|e| e.contains("SMTPUTF8")),
                "{failed:?}"
            );
        }
    }
}

/// PostgreSQL over TLS: the migration and a send over `sslmode=require` (the server's
/// `pg_stat_ssl` confirms the connection is encrypted), and `verify-full` against a CA that did
/// not sign the server's certificate is refused. Runs when `VERDICTS_TEST_DATABASE_URL` is set.
#[tokio::test]
async fn postgres_over_tls() {
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        eprintln!("skipped: set {} to run it", common::PG_ENV);
        return;
    }
    let tls_url = format!("{}?sslmode=require", env.database_url);
    let settings = env.settings(&format!("[database]\nurl = {tls_url:?}\n"));
    let store = Store::connect(&settings.database).await.unwrap();
    assert!(store.migrate().await.unwrap() > 0, "migrated over TLS");
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(ssl, "the connection is encrypted");

    let (_, issue_id) = common::frozen_issue(&env, 5).await;
    let sink = common::smtp::SmtpSink::start();
    let mut vars = smtp_vars(&sink.url(), &[]);
    vars.push(("VERDICTS__DATABASE__URL".into(), tls_url.clone()));
    run(&env, &["issue", "send", "1"], &vars).ok();
    assert_eq!(
        store.issue_status(issue_id).await.unwrap(),
        Some(IssueStatus::Sent)
    );
    assert_eq!(sink.wait_for(5, Duration::from_secs(10)).await.len(), 5);

    let ca = TestCa::new();
    let strict = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        env.database_url, ca.ca_file
    );
    let out = run(
        &env,
        &["issue", "list"],
        &[("VERDICTS__DATABASE__URL".into(), strict)],
    );
    assert_eq!(
        out.code, 1,
        "an untrusted server certificate is refused: {out:?}"
    );
    assert!(
        out.stderr.contains("connecting to postgres://"),
        "{}",
        out.stderr
    );
}
