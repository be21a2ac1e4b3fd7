//! Real faults under a running send: a disk that fills and is freed (SQLite on a small tmpfs), a
//! relay that refuses some messages or goes away, PostgreSQL restarted or stopped under the lone
//! sender and at shutdown. Timings are printed as `FIGURE` lines for bench/faults.sh and
//! docs/reliability.md; the tests assert on counts, attempts and loose bounds only.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::smtp::SmtpSink;
use common::submission::{ServerOptions, Submission};
use common::workers::{per_recipient, smtp_env, wait_status};
use common::{TestEnv, Worker, free_port, spawn_worker};
use verdicts::issues::IssueStatus;
use verdicts::store::Store;

// ---------------------------------------------------------------------------------------------
// Fault helpers

/// A tmpfs mounted on `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"40m"`) on `dir`; `None` when mounting is not permitted.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        out.status.success().then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One fault test at a time: two of them stop or restart the machine's one PostgreSQL cluster,
/// which would fail whatever else of this binary runs on it at that moment (a test database
/// being created, a send being recorded), and the timing figures want the machine to
/// themselves.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `pg_ctlcluster … main <action>` on the machine's one PostgreSQL cluster.
fn pg_cluster(action: &str) -> bool {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("a PostgreSQL cluster under /etc/postgresql");
    Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts PostgreSQL again when dropped (a failed assertion must not leave it down: other
/// tests share the server), and waits until it takes connections.
struct PgBackUp {
    url: String,
}

impl PgBackUp {
    fn new(env: &TestEnv) -> PgBackUp {
        PgBackUp {
            url: env.database_url.clone(),
        }
    }

    fn ensure_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect("127.0.0.1:5432").is_ok() && pg_accepts(&self.url) {
                return;
            }
            pg_cluster("start");
            if Instant::now() > deadline {
                eprintln!("PostgreSQL did not come back within 60 s");
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for PgBackUp {
    fn drop(&mut self) {
        self.ensure_running();
    }
}

/// Whether PostgreSQL answers a query (not only the port: it refuses while starting up).
fn pg_accepts(url: &str) -> bool {
    let url = url.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                use sqlx::Connection;
                match sqlx::AnyConnection::connect(&url).await {
                    Ok(mut c) => {
                        let ok = sqlx::query("SELECT 1").execute(&mut c).await.is_ok();
                        let _ = c.close().await;
                        ok
                    }
                    Err(_) => false,
                }
            })
    })
    .join()
    .unwrap_or(false)
}

/// A child process killed if the test ends without waiting for it.
struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    /// Waits up to `timeout` for the exit; its code and how long it took.
    fn wait(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.0 = None;
                return (status.code(), start.elapsed());
            }
            if start.elapsed() > timeout {
                return (None, start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sigterm(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.child().id() as i32), Signal::SIGTERM);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A command with the test's environment plus `vars`, its stderr to `log`.
fn command_with(env: &TestEnv, vars: &[(String, String)], log: &Path) -> Command {
    let mut cmd = env.command();
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn figure(line: &str) {
    println!("FIGURE {line}");
}

/// The last errors of the deliveries that counted an attempt (for failure messages).
async fn attempt_errors(store: &Store, issue_id: i64) -> Vec<(String, i64, Option<String>)> {
    sqlx::query_as(
        "SELECT s.email, d.attempts, d.last_error FROM deliveries d
           JOIN subscribers s ON s.id = d.subscriber_id
          WHERE d.issue_id = $1 AND d.attempts > 0 ORDER BY d.id LIMIT 5",
    )
    .bind(issue_id)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

async fn attempts_by_email(store: &Store, issue_id: i64) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT s.email, d.attempts FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
          WHERE d.issue_id = $1",
    )
    .bind(issue_id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// A full disk (SQLite)

async fn subscribe(client: &reqwest::Client, port: u16, email: &str) -> reqwest::StatusCode {
    client
        .post(format!("http://127.0.0.1:{port}/subscribe"))
        .form(&[("email", email)])
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(reqwest::StatusCode::BAD_GATEWAY)
}

async fn readyz(client: &reqwest::Client, port: u16) -> (u16, String) {
    match client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
    {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Adds an owner with `operators add` and signs them in to the console of `serve` on `port`;
/// returns the session cookie's value.
async fn console_session(env: &TestEnv, vars: &[(String, String)], port: u16) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let password = "correct horse battery staple";
    let mut add = env.command();
    add.args([
        "operators",
        "add",
        "owner@example.org",
        "--role",
        "owner",
        "--password-stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in vars {
        add.env(k, v);
    }
    let mut child = add.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    common::CliOutput::from(child.wait_with_output().unwrap()).ok();
    let cookie_of = |r: &reqwest::Response, name: &str| -> String {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .unwrap_or_else(|| panic!("a {name} cookie"))
            .to_string()
    };
    let page = client
        .get(format!("http://127.0.0.1:{port}/admin/login"))
        .send()
        .await
        .unwrap();
    let csrf = cookie_of(&page, "verdicts_login_csrf");
    let r = client
        .post(format!("http://127.0.0.1:{port}/admin/login"))
        .header("cookie", format!("verdicts_login_csrf={csrf}"))
        .form(&[
            ("email", "owner@example.org"),
            ("password", password),
            ("csrf_token", csrf.as_str()),
            ("totp", ""),
        ])
        .send()
        .await
        .unwrap();
    if r.status() != 303 {
        panic!(
            "login: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    cookie_of(&r, "verdicts_session")
}

/// Fills the file system of `dir` until it refuses more; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 256 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

/// The disk under SQLite fills while signups and a send run, then is freed: signups, the send
/// and `/readyz` recover without a restart; while it is full, `/readyz` and `issue status` say
/// why, and the log says it once rather than per request.
#[tokio::test]
async fn a_full_disk_heals_without_a_restart() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    if env.is_postgres() {
        eprintln!("skipped: the full disk test is SQLite's (PostgreSQL runs elsewhere)");
        return;
    }
    let data = env.path().join("data");
    let Some(_tmpfs) = Tmpfs::mount(&data, "40m") else {
        eprintln!("skipped: mounting a tmpfs is not permitted here (needs root)");
        return;
    };
    let n = 3000;
    let (store, issue_id) = common::frozen_issue(&env, n).await;
    common::start_send(&store, issue_id).await;
    let sink = SmtpSink::start();
    let port = free_port();
    let vars = smtp_env(
        &sink,
        &[
            ("VERDICTS__HTTP__BIND", format!("127.0.0.1:{port}")),
            ("VERDICTS__DELIVERY__RATE_PER_SECOND", "100".into()),
            ("VERDICTS__SIGNUP__RATE_LIMIT_PER_MINUTE", "0".into()),
        ],
    );
    let log = env.path().join("serve.log");
    let mut serve = Running(Some(
        command_with(&env, &vars, &log)
            .arg("serve")
            .spawn()
            .unwrap(),
    ));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(&client, port).await.0 != 200 {
        assert!(Instant::now() < deadline, "serve did not become ready");
        assert!(serve.child().try_wait().unwrap().is_none(), "serve exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(subscribe(&client, port, "before@example.org").await, 200);
    // An operator signed in before the disk fills; the session is due to slide (a write) on
    // its next use.
    let session = console_session(&env, &vars, port).await;
    let soon = chrono::Utc::now().timestamp_millis() + 60_000;
    sqlx::query("UPDATE operator_sessions SET expires_at = $1")
        .bind(soon)
        .execute(store.pool())
        .await
        .unwrap();
    let client_redirectless = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let console = |path: &'static str| {
        client_redirectless
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("cookie", format!("verdicts_session={session}"))
            .send()
    };
    while store.delivery_counts(issue_id).await.unwrap().sent < 200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Full: writes fail, sooner or later (SQLite reuses its WAL's space until it must grow).
    let filler = fill(&data);
    let full_at = Instant::now();
    let (mut failed_signups, mut i) = (0, 0);
    let mut not_ready = None;
    while Instant::now() < full_at + Duration::from_secs(30) {
        i += 1;
        if subscribe(&client, port, &format!("full{i}@example.org")).await != 200 {
            failed_signups += 1;
        }
        let (code, body) = readyz(&client, port).await;
        if code == 503 {
            not_ready = Some(body);
        }
        if failed_signups >= 20 && not_ready.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        failed_signups >= 20,
        "the full disk never failed a signup ({i} tried)"
    );
    let not_ready = not_ready.expect("/readyz answered 503 while writes failed");
    assert!(
        not_ready.contains("refuses writes") && not_ready.contains("full"),
        "{not_ready}"
    );
    let mut status = env.command();
    status.args(["issue", "status", "1"]);
    for (k, v) in &vars {
        status.env(k, v);
    }
    let status = common::CliOutput::from(status.output().unwrap());
    assert!(
        status
            .stdout
            .contains("stuck:    the database refuses writes"),
        "issue status says why: {} {}",
        status.stdout,
        status.stderr
    );
    // The console still reads: the session keeps its old expiry instead of answering 500,
    // and the issue page says why the send is stuck.
    let page = console("/admin/issues/1").await.unwrap();
    assert_eq!(
        page.status(),
        200,
        "the console answers while the disk is full"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("the database refuses writes"),
        "the issue page says why the send is stuck: {html}"
    );
    let expires: i64 = sqlx::query_scalar("SELECT expires_at FROM operator_sessions")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(
        expires, soon,
        "the session kept its expiry while writes failed"
    );
    let sent_while_full = store.delivery_counts(issue_id).await.unwrap().sent;

    // Freed: everything resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    let freed_at = Instant::now();
    let mut j = 0;
    loop {
        j += 1;
        if subscribe(&client, port, &format!("after{j}@example.org")).await == 200 {
            break;
        }
        assert!(
            freed_at.elapsed() < Duration::from_secs(20),
            "signups still fail 20 s after the disk was freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signups_back = freed_at.elapsed();
    loop {
        let (code, body) = readyz(&client, port).await;
        if code == 200 {
            break;
        }
        assert!(
            freed_at.elapsed() < Duration::from_secs(20),
            "/readyz still not ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_back = freed_at.elapsed();
    wait_status(
        &store,
        issue_id,
        IssueStatus::Sent,
        Duration::from_secs(120),
    )
    .await;
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!(
        (counts.sent, counts.failed, counts.pending),
        (n as i64, 0, 0)
    );
    assert!(counts.sent > sent_while_full);
    let received = per_recipient(&sink.messages());
    let newsletter: usize = (0..n)
        .filter(|i| received.contains_key(&format!("r{i:04}@example.org")))
        .count();
    assert_eq!(newsletter, n, "every recipient got the issue");
    let again: usize = received.values().map(|c| c - 1).sum();
    assert!(again <= 16, "{again} sent twice (at most a window)");
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(integrity, "ok");

    serve.sigterm();
    let (code, _) = serve.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "serve stops cleanly");
    let text = std::fs::read_to_string(&log).unwrap();
    let full_lines = text
        .lines()
        .filter(|l| l.contains("database or disk is full"))
        .count();
    assert!(
        full_lines <= 25,
        "{full_lines} log lines about the full disk for {failed_signups} failed signups:\n{text}"
    );
    assert!(
        !text.contains("non-zero transaction depth"),
        "the writer was poisoned:\n{text}"
    );
    figure(&format!(
        "full-disk: {failed_signups} signups failed while full; signups back {:.1} s and \
         /readyz back {:.1} s after freeing; {full_lines} log lines about it",
        signups_back.as_secs_f64(),
        ready_back.as_secs_f64()
    ));
}

// ---------------------------------------------------------------------------------------------
// A relay that refuses some messages

/// Sends issue #1 to `n` recipients with `issue send` through a submission server refusing
/// every `refuse_every`th message; returns the server, the store, the issue and the time taken.
async fn send_through(
    n: usize,
    refuse_every: u32,
    reply: Option<&str>,
    extra: &[(&str, String)],
) -> (Submission, TestEnv, Store, i64, Duration, common::CliOutput) {
    let env = TestEnv::new().await;
    let (store, _) = common::frozen_issue(&env, n).await;
    let server = Submission::start(&ServerOptions {
        refuse_every,
        refuse_reply: reply,
        ..Default::default()
    });
    let mut cmd = env.command();
    cmd.args(["issue", "send", "1", "--json"])
        .env("VERDICTS__MAIL__TRANSPORT", "smtp")
        .env(
            "VERDICTS__SMTP__URL",
            format!("smtp://127.0.0.1:{}", server.port),
        )
        .env("VERDICTS__SMTP__TIMEOUT_SECONDS", "5")
        .env("VERDICTS__DELIVERY__RETRY_BASE_SECONDS", "1")
        .env(
            "VERDICTS__SECURITY__SECRET_KEY",
            "0123456789abcdef0123456789abcdef-faults",
        );
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = common::CliOutput::from(cmd.output().unwrap());
    let took = start.elapsed();
    let issue_id = store.get_issue_by_number(1).await.unwrap().unwrap().id;
    (server, env, store, issue_id, took, out)
}

fn refused_by_rcpt(server: &Submission) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in server.events_of("refused") {
        for r in e["rcpt"].as_array().unwrap() {
            *m.entry(r.as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    m
}

/// 421 to every 5th message: each refused message goes out again on another connection, an
/// attempt counts only after three refusals of the same message, nobody is skipped or sent
/// twice, and the send keeps most of its clean rate (the figure goes to bench/).
#[tokio::test]
async fn a_relay_refusing_every_fifth_message_costs_little() {
    let _serial = SERIAL.lock().await;
    // bench/faults.sh sends more.
    let n = std::env::var("VERDICTS_FAULTS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let (clean, _e1, _s1, _i1, clean_took, out) = send_through(n, 0, None, &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(clean.recipients().len(), n);

    let (server, _env, store, issue_id, took, out) = send_through(n, 5, None, &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!(
        (counts.sent, counts.failed, counts.pending),
        (n as i64, 0, 0)
    );
    let received = server.recipients();
    let unique: std::collections::HashSet<_> = received.iter().collect();
    assert_eq!(
        (received.len(), unique.len()),
        (n, n),
        "each recipient exactly once"
    );
    let refused = refused_by_rcpt(&server);
    let total_refused: usize = refused.values().sum();
    // Every 5th message the server saw was refused.
    let seen = total_refused + n;
    assert_eq!(total_refused, seen / 5, "{total_refused} of {seen}");
    // Attempts count whole rounds of three refusals of one message, and the one that got
    // through; nothing else.
    let attempts = attempts_by_email(&store, issue_id).await;
    for (email, a) in &attempts {
        let a = &(a - 1);
        let r = refused.get(email).copied().unwrap_or(0) as i64;
        assert!(
            r >= 3 * a && r < 3 * (a + 1),
            "{email}: {r} refusals, {a} attempts; {:?}",
            attempt_errors(&store, issue_id).await
        );
    }
    let counted: i64 = attempts.values().map(|a| a - 1).sum();
    assert!(
        counted * 10 < total_refused as i64,
        "{counted} attempts counted for {total_refused} refusals"
    );
    let ratio = clean_took.as_secs_f64() / took.as_secs_f64();
    figure(&format!(
        "421-every-5th: {n} recipients, clean {:.2} s ({:.0}/s), refusing {:.2} s ({:.0}/s), \
         {:.2} of the clean rate, {total_refused} refusals, {counted} attempts counted",
        clean_took.as_secs_f64(),
        n as f64 / clean_took.as_secs_f64(),
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        ratio
    ));
    // Loose (the target, >= 0.5, is measured in bench/): the old engine took ~30x as long.
    assert!(ratio > 0.2, "{ratio:.2} of the clean rate");
}

/// A message the relay refuses every time is tried three times per attempt, and fails after
/// `delivery.max_attempts` attempts: no recipient is retried forever.
#[tokio::test]
async fn a_message_refused_every_time_counts_an_attempt_every_three_tries() {
    let _serial = SERIAL.lock().await;
    let (server, _env, store, issue_id, _took, out) = send_through(
        3,
        1,
        Some("451 4.3.0 try again later"),
        &[("VERDICTS__DELIVERY__MAX_ATTEMPTS", "2".into())],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(server.recipients().is_empty());
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((counts.sent, counts.failed, counts.pending), (0, 3, 0));
    let refused = refused_by_rcpt(&server);
    assert_eq!(refused.len(), 3);
    assert!(refused.values().all(|&r| r == 6), "{refused:?}");
    assert!(
        attempts_by_email(&store, issue_id)
            .await
            .values()
            .all(|&a| a == 2)
    );
    let error: String = sqlx::query_scalar("SELECT last_error FROM deliveries LIMIT 1")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(
        error.contains("451") && error.contains("3 tries") && error.contains("after 2 attempts"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// A relay that goes away

/// Stops the sink for `down`, starts it again on the same port and returns the new sink and
/// the seconds from its return to the first message it accepted.
async fn outage(sink: SmtpSink, down: Duration, before: &mut Vec<String>) -> (SmtpSink, f64) {
    let port = sink.port;
    before.extend(sink.messages().into_iter().map(|m| m.rcpt));
    sink.shutdown();
    tokio::time::sleep(down).await;
    let sink = SmtpSink::start_on(Some(port), &[]);
    let back = Instant::now();
    sink.wait_for(1, Duration::from_secs(30)).await;
    (sink, back.elapsed().as_secs_f64())
}

/// The relay goes away for 1 s and for 10 s during a send: sending resumes within a few seconds
/// of its return each time, no attempt is counted and nobody is missed.
#[tokio::test]
async fn the_relay_down_for_1_s_and_for_10_s() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    let n = 1500;
    let s = common::workers::sending(
        &env,
        n,
        &[],
        &[("VERDICTS__DELIVERY__RATE_PER_SECOND", "60".into())],
    )
    .await;
    let worker: Worker = spawn_worker(&env, &s.vars);
    let mut got = Vec::new();
    s.sink.wait_for(100, Duration::from_secs(30)).await;
    let (sink, after_1s) = outage(s.sink, Duration::from_secs(1), &mut got).await;
    sink.wait_for(100, Duration::from_secs(30)).await;
    let (sink, after_10s) = outage(sink, Duration::from_secs(10), &mut got).await;
    wait_status(
        &s.store,
        s.issue_id,
        IssueStatus::Sent,
        Duration::from_secs(120),
    )
    .await;
    common::workers::stop(worker);
    got.extend(sink.messages().into_iter().map(|m| m.rcpt));
    let counts = s.store.delivery_counts(s.issue_id).await.unwrap();
    assert_eq!((counts.sent, counts.failed), (n as i64, 0));
    let attempts = attempts_by_email(&s.store, s.issue_id).await;
    assert!(
        attempts.values().all(|&a| a == 1),
        "a transport failure counts no attempt (only the send that got through): {:?}",
        attempt_errors(&s.store, s.issue_id).await
    );
    let unique: std::collections::HashSet<_> = got.iter().collect();
    // A message cut off by the kill may not have been stored by the sink that died.
    assert!(unique.len() + 40 >= n, "{} of {n} seen", unique.len());
    figure(&format!(
        "relay-outage: first message accepted {after_1s:.1} s after a 1 s outage ended, \
         {after_10s:.1} s after a 10 s outage ended (rate limit 60/s)"
    ));
    assert!(after_1s < 8.0, "{after_1s:.1} s after a 1 s outage");
    assert!(after_10s < 8.0, "{after_10s:.1} s after a 10 s outage");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL restarted or stopped

/// `issue send` as the only sender, PostgreSQL restarted under it: the send goes on by itself
/// and finishes with rc 0; nobody is missed.
#[tokio::test]
async fn issue_send_rides_out_a_postgresql_restart() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        eprintln!("skipped: restarting the database is PostgreSQL's");
        return;
    }
    let _back = PgBackUp::new(&env);
    let n = 1200;
    let (store, issue_id) = common::frozen_issue(&env, n).await;
    let sink = SmtpSink::start();
    let vars = smtp_env(
        &sink,
        &[("VERDICTS__DELIVERY__RATE_PER_SECOND", "80".into())],
    );
    let log = env.path().join("send.log");
    let mut send = Running(Some(
        command_with(&env, &vars, &log)
            .args(["issue", "send", "1", "--json"])
            .spawn()
            .unwrap(),
    ));
    sink.wait_for(150, Duration::from_secs(30)).await;
    store.close().await;
    let restarted = Instant::now();
    assert!(pg_cluster("restart"), "pg_ctlcluster restart");
    let restart_took = restarted.elapsed();
    let (code, _) = send.wait(Duration::from_secs(120));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        code,
        Some(0),
        "issue send exits 0 after the restart:\n{stderr}"
    );
    let store = env.store().await;
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((counts.sent, counts.pending), (n as i64, 0), "{stderr}");
    let received = per_recipient(&sink.messages());
    assert_eq!(received.len(), n, "every recipient got it");
    let again: usize = received.values().map(|c| c - 1).sum();
    assert!(again <= 16, "{again} sent twice");
    figure(&format!(
        "pg-restart: issue send finished {n} after a {:.1} s restart, {again} sent twice",
        restart_took.as_secs_f64()
    ));
}

/// SIGTERM to a worker while PostgreSQL is stopped: it exits within `delivery.shutdown_grace`;
/// after PostgreSQL is back, another worker finishes the send and nobody is missing.
/// SIGTERM to `args` (a worker, `serve`, `issue send`) while PostgreSQL is stopped: it exits
/// within the grace (3 s here), and after a restart another worker finishes with nobody
/// missing.
async fn sigterm_with_postgresql_stopped(args: &[&str]) {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        eprintln!("skipped: stopping the database is PostgreSQL's");
        return;
    }
    let back = PgBackUp::new(&env);
    let n = 600;
    let port = free_port();
    let s = common::workers::sending(
        &env,
        n,
        &[],
        &[
            ("VERDICTS__DELIVERY__RATE_PER_SECOND", "50".into()),
            ("VERDICTS__DELIVERY__SHUTDOWN_GRACE", "3s".into()),
            ("VERDICTS__HTTP__BIND", format!("127.0.0.1:{port}")),
        ],
    )
    .await;
    let log = env.path().join("sender.log");
    let mut sender = Running(Some(
        command_with(&env, &s.vars, &log)
            .args(args)
            .spawn()
            .unwrap(),
    ));
    s.sink.wait_for(60, Duration::from_secs(30)).await;
    s.store.close().await;
    assert!(pg_cluster("stop"), "pg_ctlcluster stop");
    tokio::time::sleep(Duration::from_millis(500)).await;
    sender.sigterm();
    let (code, took) = sender.wait(Duration::from_secs(15));
    back.ensure_running();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        code.is_some(),
        "{args:?} still running 15 s after SIGTERM:\n{stderr}"
    );
    assert!(
        took < Duration::from_secs(6),
        "{args:?} exited {:.1} s after SIGTERM (grace 3 s):\n{stderr}",
        took.as_secs_f64()
    );
    if code != Some(0) {
        assert!(
            stderr.contains("shutdown took longer than delivery.shutdown_grace")
                && stderr.contains("the delivery worker"),
            "a forced exit names what was still running:\n{stderr}"
        );
    }
    // Another worker finishes; the rows the first one held come back after their lease.
    let store = env.store().await;
    let finisher = spawn_worker(&env, &s.vars);
    wait_status(
        &store,
        s.issue_id,
        IssueStatus::Sent,
        Duration::from_secs(90),
    )
    .await;
    common::workers::stop(finisher);
    let received = per_recipient(&s.sink.messages());
    assert_eq!(received.len(), n, "nobody is missing");
    let again: usize = received.values().map(|c| c - 1).sum();
    assert!(again <= 16, "{again} sent twice");
    figure(&format!(
        "sigterm-pg-down: {} exited {:.1} s after SIGTERM (grace 3 s, rc {code:?}); {again} of \
         {n} sent twice after the restart",
        args.join(" "),
        took.as_secs_f64()
    ));
}

#[tokio::test]
async fn sigterm_with_postgresql_stopped_exits_within_the_grace() {
    sigterm_with_postgresql_stopped(&["worker"]).await;
}

#[tokio::test]
async fn sigterm_to_serve_with_postgresql_stopped_exits_within_the_grace() {
    sigterm_with_postgresql_stopped(&["serve"]).await;
}

#[tokio::test]
async fn sigterm_to_issue_send_with_postgresql_stopped_exits_within_the_grace() {
    sigterm_with_postgresql_stopped(&["issue", "send", "1"]).await;
}

/// The 60 s outage of the issue (run by bench/faults.sh, not in CI: it stops the shared
/// server for a minute): `issue send` waits it out and finishes with rc 0.
#[tokio::test]
#[ignore = "stops PostgreSQL for 60 s; run by bench/faults.sh"]
async fn issue_send_rides_out_a_60_s_postgresql_outage() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        eprintln!("skipped: stopping the database is PostgreSQL's");
        return;
    }
    let back = PgBackUp::new(&env);
    let n = 1000;
    let (store, issue_id) = common::frozen_issue(&env, n).await;
    let sink = SmtpSink::start();
    let vars = smtp_env(
        &sink,
        &[("VERDICTS__DELIVERY__RATE_PER_SECOND", "50".into())],
    );
    let log = env.path().join("send.log");
    let mut send = Running(Some(
        command_with(&env, &vars, &log)
            .args(["issue", "send", "1", "--json"])
            .spawn()
            .unwrap(),
    ));
    sink.wait_for(100, Duration::from_secs(30)).await;
    store.close().await;
    assert!(pg_cluster("stop"));
    let stopped = Instant::now();
    // Another process may start the shared server before the minute is over: the outage is
    // measured, not assumed. VERDICTS_FAULTS_OUTAGE=15 makes it shorter.
    let planned = std::env::var("VERDICTS_FAULTS_OUTAGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_secs);
    while stopped.elapsed() < planned && !pg_accepts(&env.database_url) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    back.ensure_running();
    let outage = stopped.elapsed();
    let back_at = std::time::SystemTime::now();
    let (code, _) = send.wait(Duration::from_secs(120));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let store = env.store().await;
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((counts.sent, counts.pending), (n as i64, 0));
    let mails = sink.messages();
    assert_eq!(per_recipient(&mails).len(), n);
    // The first message the sink stored after the database was back.
    let resumed = mails
        .iter()
        .filter_map(|m| std::fs::metadata(&m.path).and_then(|f| f.modified()).ok())
        .filter_map(|t| t.duration_since(back_at).ok())
        .min();
    figure(&format!(
        "pg-outage: {:.0} s outage under issue send; first message {} after PostgreSQL was \
         back; finished rc 0",
        outage.as_secs_f64(),
        resumed.map_or("(none: all sent before)".into(), |d| format!(
            "{:.1} s",
            d.as_secs_f64()
        ))
    ));
}

/// A sending issue that no process sends says so in `issue status` (a lone `issue send` that
/// exited used to leave it `sending` with no hint); a sent one does not.
#[tokio::test]
async fn issue_status_says_when_no_worker_sends_an_issue() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    let (store, issue_id) = common::frozen_issue(&env, 3).await;
    let out = env.cli(&["issue", "status", "1"]);
    assert!(
        !out.ok().contains("stuck:"),
        "not sending yet: {}",
        out.stdout
    );
    common::start_send(&store, issue_id).await;
    let out = env.cli(&["issue", "status", "1"]);
    assert!(
        out.ok()
            .contains("stuck:    no worker is sending it: start `verdicts serve`"),
        "{}",
        out.stdout
    );
    let json = env.cli(&["issue", "status", "1", "--json"]);
    let report: serde_json::Value = serde_json::from_str(json.ok()).unwrap();
    assert!(
        report["stuck"]
            .as_str()
            .is_some_and(|s| s.starts_with("no worker is sending it")),
        "{report}"
    );
}

/// The console says why a send does not move: a sending issue that no worker sends reads "no
/// worker is sending it" on its page and on the dashboard (a console without a worker: the
/// router of `serve` alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_says_when_no_worker_sends_an_issue() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    let (store, issue_id) = common::frozen_issue(&env, 3).await;
    common::start_send(&store, issue_id).await;
    let app = verdicts::startup::Application::build(env.settings(""))
        .await
        .unwrap();
    let router = verdicts::web::router(app.state().clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let session = console_session(&env, &[], port).await;
    // The relay failing too (as the recorder writes it after failed tries).
    sqlx::query("UPDATE issues SET transport_error = $1, transport_error_since = $2")
        .bind("connection refused (127.0.0.1:2525)")
        .bind(chrono::Utc::now().timestamp_millis() - 90_000)
        .execute(store.pool())
        .await
        .unwrap();
    for path in ["/admin/issues/1", "/admin"] {
        let page = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("cookie", format!("verdicts_session={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let html = page.text().await.unwrap();
        assert!(
            html.contains("Stuck: no worker is sending it: start `verdicts serve`"),
            "{path} says why the send does not move: {html}"
        );
        assert!(
            html.contains("The relay is failing since ")
                && html.contains("connection refused (127.0.0.1:2525)"),
            "{path} says the relay fails: {html}"
        );
    }
    let progress: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/admin/progress.json"))
        .header("cookie", format!("verdicts_session={session}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        progress["issues"][0]["stuck"]
            .as_str()
            .is_some_and(|s| s.starts_with("no worker is sending it")),
        "{progress}"
    );
    // What the operator sees, at phone width and on a desktop.
    use fantoccini::Locator;
    let driver = common::browser::start_chromedriver();
    let dir = common::screenshot_dir("console");
    for width in [390, 1280] {
        let profile = tempfile::tempdir().unwrap();
        let client = common::browser::browser(&driver, width, profile.path()).await;
        client
            .goto(&format!("http://127.0.0.1:{port}/admin/login"))
            .await
            .unwrap();
        for (css, text) in [
            ("#email", "owner@example.org"),
            ("#password", "correct horse battery staple"),
        ] {
            let el = client.find(Locator::Css(css)).await.unwrap();
            el.send_keys(text).await.unwrap();
        }
        client
            .find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client
            .wait()
            .for_element(Locator::Css("#issues"))
            .await
            .unwrap();
        common::browser::shot(&client, &dir, &format!("{width}-stuck-dashboard")).await;
        client
            .goto(&format!("http://127.0.0.1:{port}/admin/issues/1"))
            .await
            .unwrap();
        client
            .wait()
            .for_element(Locator::Css("#stuck"))
            .await
            .unwrap();
        common::browser::shot(&client, &dir, &format!("{width}-stuck-issue")).await;
        client.close().await.unwrap();
    }
    println!("screenshots of the console in {}", dir.display());
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL refusing writes (a read-only default, connections terminated)

/// Makes the test database refuse writes (`default_transaction_read_only`) or take them again,
/// and ends its connections so every new one has the setting (as a failover to a standby or a
/// disk being freed would).
async fn pg_read_only(env: &TestEnv, on: bool) {
    use sqlx::Connection;
    let admin = std::env::var(common::PG_ENV).unwrap();
    let name = url::Url::parse(&env.database_url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_string();
    let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
    let set = if on {
        format!("ALTER DATABASE {name} SET default_transaction_read_only = on")
    } else {
        format!("ALTER DATABASE {name} RESET default_transaction_read_only")
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(set))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
}

/// `issue send` alone while PostgreSQL ends its connections (57P01) and refuses writes
/// (SQLSTATE 25006): cut off as it starts the send, it waits and starts it; refused again in
/// the middle of it, it waits and goes on; it exits 0, and everyone gets the issue once.
#[tokio::test]
async fn issue_send_rides_out_a_database_that_refuses_writes() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        eprintln!("skipped: a read-only default is PostgreSQL's");
        return;
    }
    let n = 600;
    let (store, issue_id) = common::frozen_issue(&env, n).await;
    let sink = SmtpSink::start();
    let vars = smtp_env(
        &sink,
        &[("VERDICTS__DELIVERY__RATE_PER_SECOND", "80".into())],
    );
    let log = env.path().join("send.log");
    store.close().await;
    // The issue's row locked, so the start of the send waits on it; then the database ends
    // every connection (the start's too) and refuses writes.
    use sqlx::Connection;
    let mut locker = sqlx::AnyConnection::connect(&env.database_url)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; SELECT id FROM issues FOR UPDATE")
        .execute(&mut locker)
        .await
        .unwrap();
    let mut send = Running(Some(
        command_with(&env, &vars, &log)
            .args(["issue", "send", "1", "--json"])
            .spawn()
            .unwrap(),
    ));
    // (Watched from another connection: a transaction sees one snapshot of the statistics.)
    let mut watch = sqlx::AnyConnection::connect(&env.database_url)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the send never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = watch.close().await;
    pg_read_only(&env, true).await;
    drop(locker);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        send.child().try_wait().unwrap().is_none(),
        "issue send gave up while writes were refused:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(sink.messages().is_empty());
    pg_read_only(&env, false).await;
    sink.wait_for(100, Duration::from_secs(30)).await;
    pg_read_only(&env, true).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = sink.messages().len();
    pg_read_only(&env, false).await;
    let (code, _) = send.wait(Duration::from_secs(120));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        code,
        Some(0),
        "issue send exits 0 after writes came back:\n{stderr}"
    );
    assert!(
        stderr.contains("the database fails"),
        "it said it waits:\n{stderr}"
    );
    let store = env.store().await;
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!((counts.sent, counts.pending), (n as i64, 0), "{stderr}");
    let received = per_recipient(&sink.messages());
    assert_eq!(received.len(), n, "every recipient got it");
    let again: usize = received.values().map(|c| c - 1).sum();
    assert!(again <= 16, "{again} sent twice");
    figure(&format!(
        "pg-read-only: issue send finished {n} after 4 s of refused writes ({during} received by \
         then), {again} sent twice"
    ));
}

/// `/readyz` on PostgreSQL answers 503 with the reason while the database refuses writes, and
/// 200 again once it takes them, without a restart.
#[tokio::test]
async fn readyz_says_when_postgresql_refuses_writes() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    if !env.is_postgres() {
        eprintln!("skipped: a read-only default is PostgreSQL's (SQLite's is the full disk)");
        return;
    }
    env.store().await.close().await;
    let port = free_port();
    let log = env.path().join("serve.log");
    let vars = vec![(
        "VERDICTS__HTTP__BIND".to_string(),
        format!("127.0.0.1:{port}"),
    )];
    let mut serve = Running(Some(
        command_with(&env, &vars, &log)
            .arg("serve")
            .spawn()
            .unwrap(),
    ));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(&client, port).await.0 != 200 {
        assert!(Instant::now() < deadline, "serve did not become ready");
        assert!(serve.child().try_wait().unwrap().is_none(), "serve exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pg_read_only(&env, true).await;
    // (The first probe on a connection that was ended may say "unreachable"; the next one
    // reconnects.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (code, body) = readyz(&client, port).await;
        if code == 503 && body.contains("refuses writes") {
            break body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {code}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("read-only"), "{body}");
    pg_read_only(&env, false).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = readyz(&client, port).await;
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz still {code}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    serve.sigterm();
    let (code, _) = serve.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0));
}

// ---------------------------------------------------------------------------------------------
// Shutdown with a slow HTTP request

/// SIGTERM while a request is still arriving (its body never comes, as from a slow client):
/// the drain is cut within `delivery.shutdown_grace` and `serve` exits 0, naming the
/// connection it closed, instead of waiting `http.request_timeout` and being forced out.
#[tokio::test]
async fn a_slow_request_does_not_outlast_the_shutdown_grace() {
    use std::io::Write as _;
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    env.store().await.close().await;
    let port = free_port();
    let log = env.path().join("serve.log");
    let vars = vec![
        (
            "VERDICTS__HTTP__BIND".to_string(),
            format!("127.0.0.1:{port}"),
        ),
        ("VERDICTS__HTTP__REQUEST_TIMEOUT".to_string(), "30s".into()),
        (
            "VERDICTS__DELIVERY__SHUTDOWN_GRACE".to_string(),
            "3s".into(),
        ),
    ];
    let mut serve = Running(Some(
        command_with(&env, &vars, &log)
            .arg("serve")
            .spawn()
            .unwrap(),
    ));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(&client, port).await.0 != 200 {
        assert!(Instant::now() < deadline, "serve did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(
        b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    serve.sigterm();
    let (code, took) = serve.wait(Duration::from_secs(15));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "serve exits cleanly:\n{stderr}");
    assert!(
        took < Duration::from_secs(3),
        "exited {:.1} s after SIGTERM (grace 3 s)",
        took.as_secs_f64()
    );
    assert!(
        stderr.contains("HTTP connections still open") && stderr.contains("connections=1"),
        "the log names what was cut:\n{stderr}"
    );
    drop(slow);
}

// ---------------------------------------------------------------------------------------------
// Transactional mail and a relay that refuses one message

/// A 421 to one confirmation is that message's, as for issue mail: it goes out again at once on
/// another connection and arrives within seconds, with one attempt counted (the send), not a
/// refused attempt and a wait of 30 s or more.
#[tokio::test]
async fn a_confirmation_refused_once_goes_out_again_at_once() {
    let _serial = SERIAL.lock().await;
    // Every 2nd message refused: the first confirmation goes through, the second is refused
    // once, and its next try (the 3rd message) is accepted.
    let server = Submission::start(&ServerOptions {
        refuse_every: 2,
        ..Default::default()
    });
    let app = common::TestApp::spawn(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = \"smtp://127.0.0.1:{}\"\n\
         [signup]\nrate_limit_per_minute = 0",
        server.port
    ))
    .await;
    let started = Instant::now();
    for email in ["first@example.org", "second@example.org"] {
        let r = app
            .client
            .post(app.url("/subscribe"))
            .form(&[("email", email)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{email}");
    }
    server.wait_for(2, Duration::from_secs(20)).await;
    let took = started.elapsed();
    let mut got = server.recipients();
    got.sort();
    assert_eq!(got, ["first@example.org", "second@example.org"]);
    assert_eq!(server.events_of("refused").len(), 1, "one refusal");
    assert!(
        took < Duration::from_secs(15),
        "both confirmations within {:.1} s (a retry after a counted attempt waits 30 s)",
        took.as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT to_email, status, attempts FROM outbound_mail ORDER BY to_email",
        )
        .fetch_all(app.store.pool())
        .await
        .unwrap();
        if rows.iter().all(|r| r.1 == "sent") || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        rows,
        [
            ("first@example.org".to_string(), "sent".to_string(), 1),
            ("second@example.org".to_string(), "sent".to_string(), 1),
        ],
        "the refusal counted no attempt of its own"
    );
    app.stop().await;
}
