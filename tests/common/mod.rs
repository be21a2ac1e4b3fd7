//! Shared test helpers: a fresh database per test (SQLite file, or a new PostgreSQL database when
//! `VERDICTS_TEST_DATABASE_URL` is set), a working folder, and a runner for the real binary.
#![allow(dead_code)]

pub mod browser;
pub mod dns;
pub mod imap;
pub mod smtp;
pub mod submission;
pub mod workers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::RngCore;
use sqlx::Connection;
use tempfile::TempDir;
use verdicts::config::Settings;
use verdicts::store::Store;

/// Environment variable that switches the suite to PostgreSQL: an admin URL such as
/// `postgres://postgres@127.0.0.1:5432/test`; each test creates and drops its own database.
pub const PG_ENV: &str = "VERDICTS_TEST_DATABASE_URL";

/// A fresh database and a private working folder for one test.
pub struct TestEnv {
    pub dir: TempDir,
    pub database_url: String,
    pg: Option<PgDatabase>,
}

struct PgDatabase {
    admin_url: String,
    name: String,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("temp dir");
        match std::env::var(PG_ENV).ok().filter(|v| !v.is_empty()) {
            Some(admin_url) => {
                let mut bytes = [0u8; 6];
                rand::rng().fill_bytes(&mut bytes);
                let name = format!("verdicts_test_{}", hex::encode(bytes));
                let mut conn = sqlx::AnyConnection::connect(&admin_url)
                    .await
                    .expect("connecting to the PostgreSQL admin URL");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("creating a test database");
                let _ = conn.close().await;
                let mut url = url::Url::parse(&admin_url).expect("admin URL");
                url.set_path(&name);
                TestEnv {
                    dir,
                    database_url: url.to_string(),
                    pg: Some(PgDatabase { admin_url, name }),
                }
            }
            None => {
                let path = dir.path().join("data/verdicts.db");
                TestEnv {
                    database_url: format!("sqlite://{}", path.display()),
                    dir,
                    pg: None,
                }
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Settings for this test: defaults, this database, files under the test folder, and
    /// `extra` TOML layered on top.
    ///
    /// DNS goes to a loopback port where nothing answers (tests talk to loopback only; a test
    /// that resolves starts its own dnsmasq).
    pub fn settings(&self, extra: &str) -> Settings {
        let base = format!(
            "[database]\nurl = {url:?}\nmax_connections = 5\n\
             [http]\nbind = \"127.0.0.1:0\"\n\
             [mail]\noutbox_dir = {outbox:?}\n\
             [security]\nsecret_key_file = {key:?}\n\
             [dns]\nnameservers = [\"127.0.0.1:9\"]\ntimeout = \"500ms\"\n",
            url = self.database_url,
            outbox = self.path().join("data/outbox").display().to_string(),
            key = self.path().join("data/secret_key").display().to_string(),
        );
        Settings::from_toml(&merge_toml(&base, extra)).expect("test settings are valid")
    }

    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.settings("").database)
            .await
            .expect("connecting to the test database");
        store.migrate().await.expect("migrating the test database");
        store
    }

    /// A `verdicts` command running in this test's folder against this test's database.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_verdicts"));
        for (key, _) in std::env::vars() {
            if key.starts_with("VERDICTS__") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(self.path())
            .env("VERDICTS__DATABASE__URL", &self.database_url)
            .env("VERDICTS__DATABASE__MAX_CONNECTIONS", "3")
            // Loopback only, like `settings` (a test that resolves removes these).
            .env("VERDICTS__DNS__NAMESERVERS", "[\"127.0.0.1:9\"]")
            .env("VERDICTS__DNS__TIMEOUT", "500ms")
            .env("RUST_LOG", "info");
        cmd
    }

    /// Runs `verdicts ARGS…` to completion.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let out = self
            .command()
            .args(args)
            .output()
            .expect("running verdicts");
        CliOutput::from(out)
    }

    /// Writes `content` to `name` in the test folder and returns its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, content).expect("writing a test file");
        path
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(pg) = self.pg.take() {
            // Drop runs outside any runtime we may use: do the async work on a thread of its own.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::AnyConnection::connect(&pg.admin_url).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            pg.name
                        )))
                        .execute(&mut conn)
                        .await;
                        let _ = conn.close().await;
                    }
                });
            })
            .join()
            .ok();
        }
    }
}

/// Appends `extra` to `base`, merging sections that appear in both (so tests can override keys
/// of a section the base already sets).
fn merge_toml(base: &str, extra: &str) -> String {
    let mut doc: toml::Table = base.parse().expect("base TOML");
    let extra: toml::Table = extra.parse().expect("extra TOML");
    for (section, value) in extra {
        match (doc.get_mut(&section), value) {
            (Some(toml::Value::Table(into)), toml::Value::Table(from)) => into.extend(from),
            (_, value) => {
                doc.insert(section, value);
            }
        }
    }
    toml::to_string(&doc).expect("TOML")
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

thread_local! {
    /// In-process servers running on this thread's current-thread runtime.
    static SERVERS_ON_THIS_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A blocking wait for a CLI process freezes every task of a current-thread runtime, the
/// in-process server's too: a server task holding SQLite's write lock at that moment keeps it,
/// and the CLI's own write fails after the busy timeout ("database is locked"). Tests that run
/// the CLI beside a [`TestApp`] use `#[tokio::test(flavor = "multi_thread")]`; this says so
/// instead of failing one run in many.
fn assert_blocking_is_safe() {
    let current_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
    assert!(
        !(current_thread && SERVERS_ON_THIS_THREAD.get() > 0),
        "a blocking CLI call beside an in-process server on a current-thread runtime can \
         deadlock on SQLite's write lock: use #[tokio::test(flavor = \"multi_thread\", \
         worker_threads = 2)]"
    );
}

impl From<Output> for CliOutput {
    fn from(out: Output) -> Self {
        assert_blocking_is_safe();
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl CliOutput {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "command failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }
}

/// The captured page fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub const SONNET_PAGE: &str = "claude-4-sonnet-vs-smolvlm2-2b.txt";
pub const HAIKU_PAGE: &str = "claude-haiku-open-weights-vs-smolvlm2-turbo.txt";

/// A comparison as canonical JSON, built from the Sonnet page with another slug and date.
pub fn comparison_json(slug: &str, title: &str, published_at: &str) -> serde_json::Value {
    use chrono::{DateTime, Utc};
    let at: DateTime<Utc> = published_at.parse().expect("RFC 3339");
    let text = std::fs::read_to_string(fixture(SONNET_PAGE)).unwrap();
    let c = verdicts::comparisons::Comparison::from_page_text(
        &text,
        &verdicts::comparisons::page::PageContext {
            base_url: "https://shiporskip.example",
            published_at: at,
        },
    )
    .unwrap();
    let mut v = c.to_json();
    v["slug"] = slug.into();
    v["title"] = title.into();
    v["url"] = format!("https://shiporskip.example/compare/{slug}").into();
    v
}

/// Where a test keeps screenshots for a person to look at: `target/screenshots/NAME`.
pub fn screenshot_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/screenshots")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The headless browser: `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "browser tests need Chromium at {} (apt-get install chromium, or set CHROMIUM)",
        path.display()
    );
    path
}

/// Headless Chromium's flags for this machine (no GPU, no background network, no sandbox as root).
pub fn chromium_args(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--hide-scrollbars".into(),
        format!("--user-data-dir={}", profile.display()),
    ]
}

/// Takes a screenshot of `url` at `width`×`height` into `out` (PNG) with headless Chromium.
pub fn screenshot(url: &str, width: u32, height: u32, out: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let status = Command::new(chromium())
        .args(chromium_args(profile.path()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", out.display()))
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running chromium");
    assert!(status.success(), "chromium failed on {url}");
}

/// The admin token test apps are configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running application on a random port with its own database.
pub struct TestApp {
    pub env: TestEnv,
    pub address: String,
    pub store: Store,
    pub client: reqwest::Client,
    /// The key the app signs tokens with (to build links a reader would have).
    pub secret: verdicts::config::SecretKey,
    trigger: verdicts::shutdown::ShutdownTrigger,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Whether the server shares this thread's current-thread runtime.
    current_thread: bool,
}

impl TestApp {
    /// Starts the app with the test settings plus `extra` TOML (admin token preset).
    pub async fn spawn(extra: &str) -> TestApp {
        Self::spawn_with(&merge_toml(
            &format!("[admin]\ntoken = {ADMIN_TOKEN:?}\n"),
            extra,
        ))
        .await
    }

    /// Starts the app with the test settings plus exactly `extra` (no admin token preset).
    pub async fn spawn_with(extra: &str) -> TestApp {
        let env = TestEnv::new().await;
        let settings = env.settings(extra);
        let app = verdicts::startup::Application::build(settings)
            .await
            .expect("the app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let store = app.store().clone();
        let secret = app.secret().clone();
        let (trigger, stop) = verdicts::shutdown::channel();
        let server = tokio::spawn(app.run_until_stopped(stop));
        let current_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread;
        if current_thread {
            SERVERS_ON_THIS_THREAD.set(SERVERS_ON_THIS_THREAD.get() + 1);
        }
        TestApp {
            current_thread,
            env,
            address,
            store,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            secret,
            trigger,
            server: Some(server),
        }
    }

    /// Like [`TestApp::spawn`], on a port chosen first so `http.public_url` (and so every link
    /// in pages and mail) points at this very server.
    pub async fn spawn_public(extra: &str) -> TestApp {
        let port = free_port();
        Self::spawn(&merge_toml(
            &format!(
                "[http]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n"
            ),
            extra,
        ))
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Waits for the outbox transport to hold `n` messages; returns them parsed, oldest first.
    pub async fn outbox(&self, n: usize) -> Vec<String> {
        let dir = self.env.path().join("data/outbox");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                        .collect()
                })
                .unwrap_or_default();
            if files.len() >= n {
                files.sort();
                return files
                    .iter()
                    .map(|f| std::fs::read_to_string(f).unwrap())
                    .collect();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} outbox messages, found {}",
                files.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

/// The first link starting with `prefix` in the text part of a raw message.
pub fn link_in(raw: &str, prefix: &str) -> Option<String> {
    let msg = mail_parser::MessageParser::default().parse(raw.as_bytes())?;
    let text = msg.body_text(0)?.into_owned();
    let start = text.find(prefix)?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '"')
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// An admin API call with the right token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        self.trigger.trigger();
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if self.current_thread {
            SERVERS_ON_THIS_THREAD.set(SERVERS_ON_THIS_THREAD.get().saturating_sub(1));
        }
        self.trigger.trigger();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Unsubscribes the stored subscriber `email` as a reader's click would (test set-up).
pub async fn unsubscribe_by_email(store: &Store, email: &str) {
    let s = store
        .get_subscriber_by_email(&verdicts::subscribers::SubscriberEmail::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{email} is stored"));
    store.unsubscribe(s.id, &Default::default()).await.unwrap();
}

/// Adds `n` confirmed subscribers `{prefix}{i}@example.org` (i zero-padded to `width`).
pub async fn add_confirmed(store: &Store, n: usize, prefix: &str, width: usize) {
    use verdicts::store::subscribers::NewSubscriber;
    use verdicts::subscribers::SubscriberEmail;
    let emails: Vec<SubscriberEmail> = (0..n)
        .map(|i| SubscriberEmail::parse(&format!("{prefix}{i:0width$}@example.org")).unwrap())
        .collect();
    let rows: Vec<(NewSubscriber<'_>, String)> = emails
        .iter()
        .map(|e| {
            (
                NewSubscriber {
                    email: e,
                    name: None,
                    confirmed: true,
                },
                format!("suppression-of-{e}"),
            )
        })
        .collect();
    store
        .add_subscribers(&rows, &Default::default())
        .await
        .unwrap();
}

/// A test database with `n` confirmed subscribers and a frozen issue #1 (week 2026-W47) of two
/// comparisons; returns the store and the issue's id.
pub async fn frozen_issue(env: &TestEnv, n: usize) -> (Store, i64) {
    use verdicts::comparisons::import::parse_json;
    use verdicts::store::comparisons::Source;
    let store = env.store().await;
    let text = serde_json::Value::Array(vec![
        comparison_json("alpha-vs-beta", "Alpha vs Beta", "2026-11-17T10:00:00Z"),
        comparison_json("gamma-vs-delta", "Gamma vs Delta", "2026-11-18T10:00:00Z"),
    ])
    .to_string();
    store
        .upsert_comparisons(&parse_json(&text).unwrap(), Source::Json, false)
        .await
        .unwrap();
    add_confirmed(&store, n, "r", 4).await;
    let settings = env.settings("");
    let (issue, _) = verdicts::issues::freeze::create_issue(
        &store,
        &verdicts::render::Renderer::new().unwrap(),
        &settings,
        "2026-W47".parse().unwrap(),
    )
    .await
    .unwrap()
    .expect("week 47 has comparisons");
    (store, issue.id)
}

/// A `verdicts worker` process that is killed if the test ends without stopping it (a failed
/// assertion must not leave it sending).
pub struct Worker(pub Option<std::process::Child>);

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `verdicts worker` for this test with the extra environment `vars`.
pub fn spawn_worker(env: &TestEnv, vars: &[(String, String)]) -> Worker {
    let mut cmd = env.command();
    cmd.arg("worker")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    Worker(Some(cmd.spawn().expect("spawning verdicts worker")))
}

/// The application layer over a test database, as the CLI and `serve` build it.
pub fn app(store: &Store, settings: &Settings) -> verdicts::app::App {
    verdicts::app::App::new(
        store.clone(),
        std::sync::Arc::new(settings.clone()),
        settings.secret_key().expect("a secret key"),
        std::sync::Arc::new(verdicts::render::Renderer::new().expect("templates")),
    )
}

/// Starts the send of a ready or scheduled issue, as an operator's `send` does; returns the
/// number of recipients in its ledger.
pub async fn start_send(store: &Store, issue_id: i64) -> i64 {
    use verdicts::issues::{ActionKind, IssueStatus};
    store
        .start_send(
            issue_id,
            &IssueStatus::allowing(ActionKind::Send),
            &verdicts::issues::variants::CategoryMap::default(),
        )
        .await
        .expect("starting the send")
        .expect("a ready or scheduled issue")
}

/// Waits until a stopped send is at rest: no row of the issue is leased any more and every
/// message the server took (`received`) is settled as sent in the ledger. From then on only a new claim
/// could send, and a paused or cancelled issue gets none. Returns the messages received.
pub async fn quiesced(store: &Store, issue_id: i64, received: impl Fn() -> usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (leased, sent): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN lease_owner IS NOT NULL THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END), 0)
               FROM deliveries WHERE issue_id = $1",
        )
        .bind(issue_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        let received = received();
        if leased == 0 && received as i64 == sent {
            return received;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still busy: {leased} leased, {sent} sent, {received} received"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `serve` on its own port with links pointing at itself, stopped when dropped.
pub struct Server {
    pub public: String,
    trigger: verdicts::shutdown::ShutdownTrigger,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

/// Starts the whole application (as `verdicts serve` does) on `port`, `http.public_url` set to
/// it, with `extra` TOML on top (e.g. [`smtp::SmtpSink::transport`], or another process of the
/// same installation, configured differently).
pub async fn serve_with(env: &TestEnv, port: u16, extra: &str) -> Server {
    let public = format!("http://127.0.0.1:{port}");
    let settings = env.settings(&merge_toml(
        &format!("[http]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"{public}\"\n"),
        extra,
    ));
    let app = verdicts::startup::Application::build(settings)
        .await
        .unwrap();
    let (trigger, stop) = verdicts::shutdown::channel();
    tokio::spawn(app.run_until_stopped(stop));
    Server { public, trigger }
}

/// `issue send N` over SMTP into `sink`, links pointing at `public`.
pub fn send_issue(env: &TestEnv, sink: &smtp::SmtpSink, public: &str, number: &str) {
    let out = env
        .command()
        .env("VERDICTS__MAIL__TRANSPORT", "smtp")
        .env("VERDICTS__SMTP__URL", sink.url())
        .env("VERDICTS__HTTP__PUBLIC_URL", public)
        .args(["issue", "send", number])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
