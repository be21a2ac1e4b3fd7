//! The operator console at `/admin`: accounts from the CLI, login with CSRF protection and
//! throttling, server-side sessions, and the pages in a real headless Chromium (issue created,
//! previewed, test-sent to a real SMTP sink, scheduled and cancelled; a subscriber found and
//! removed), with screenshots of every page at 390 and 1280 px. Runs on SQLite, and on
//! PostgreSQL with `VERDICTS_TEST_DATABASE_URL`.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::browser::{browser, shot, start_chromedriver};
use common::smtp::SmtpSink;
use common::{TestApp, TestEnv, comparison_json, screenshot_dir};
use fantoccini::Locator;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use verdicts::issues::IssueStatus;
use verdicts::store::Store;
use verdicts::subscribers::SubscriberEmail;

const OWNER: &str = "owner@example.org";
const EDITOR: &str = "editor@example.org";
const PASSWORD: &str = "correct horse battery staple";

/// Runs `verdicts ARGS…` with `stdin` as standard input.
fn cli_with_stdin(env: &TestEnv, args: &[&str], stdin: &str) -> common::CliOutput {
    let mut child = env
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running verdicts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    common::CliOutput::from(child.wait_with_output().unwrap())
}

fn add_operator(env: &TestEnv, email: &str, role: &str) {
    cli_with_stdin(
        env,
        &[
            "operators",
            "add",
            email,
            "--role",
            role,
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    )
    .ok();
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

/// The `Set-Cookie` header of `response` for cookie `name`, whole.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// The value of a `Set-Cookie` line.
fn cookie_value(line: &str) -> String {
    line.split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

/// The first hidden `csrf_token` of a page.
fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("a csrf_token field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

/// A signed-in operator over plain HTTP: the session cookie and the session's CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

impl Session {
    fn get(&self, app: &TestApp, path: &str) -> reqwest::RequestBuilder {
        app.client
            .get(app.url(path))
            .header("cookie", format!("verdicts_session={}", self.cookie))
    }

    fn post(&self, app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        app.client
            .post(app.url(path))
            .header("cookie", format!("verdicts_session={}", self.cookie))
            .form(form)
    }
}

/// Fetches the login form (its double-submit cookie and token) and posts `email`/`password`.
async fn attempt_login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    attempt_login_with_code(app, email, password, "").await
}

/// [`attempt_login`] with the form's two-factor field `totp`.
async fn attempt_login_with_code(
    app: &TestApp,
    email: &str,
    password: &str,
    totp: &str,
) -> reqwest::Response {
    let page = app.get("/admin/login").await;
    assert_eq!(page.status(), 200);
    let cookie = cookie_value(&set_cookie(&page, "verdicts_login_csrf").expect("a login cookie"));
    let html = page.text().await.unwrap();
    let token = csrf_in(&html);
    assert_eq!(
        token, cookie,
        "double submit: the form carries the cookie's token"
    );
    app.client
        .post(app.url("/admin/login"))
        .header("cookie", format!("verdicts_login_csrf={cookie}"))
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf_token", &token),
            ("totp", totp),
        ])
        .send()
        .await
        .unwrap()
}

async fn login(app: &TestApp, email: &str) -> Session {
    let r = attempt_login(app, email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "login of {email}");
    assert_eq!(r.headers()["location"], "/admin");
    let cookie = cookie_value(&set_cookie(&r, "verdicts_session").expect("a session cookie"));
    let mut session = Session {
        cookie,
        csrf: String::new(),
    };
    let page = session.get(app, "/admin").send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(email), "the dashboard names {email}");
    session.csrf = csrf_in(&html);
    session
}

/// Comparisons of week 2026-W47 through the admin API, and `n` confirmed subscribers.
async fn seed(app: &TestApp, subscribers: usize) {
    let body = Value::Array(vec![
        comparison_json("alpha-vs-beta", "Alpha vs Beta", "2026-11-17T10:00:00Z"),
        comparison_json("gamma-vs-delta", "Gamma vs Delta", "2026-11-18T10:00:00Z"),
    ]);
    let r = app
        .admin(Method::POST, "/api/comparisons")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    common::add_confirmed(&app.store, subscribers, "reader", 2).await;
}

async fn create_issue(app: &TestApp) -> i64 {
    let r = app
        .admin(Method::POST, "/api/issues")
        .json(&serde_json::json!({"week": "2026-W47"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["issue"]["id"]
        .as_i64()
        .unwrap()
}

async fn issue_status(store: &Store, id: i64) -> IssueStatus {
    store.get_issue(id).await.unwrap().unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_are_managed_from_the_command_line() {
    let env = TestEnv::new().await;
    let store = env.store().await;
    // Bad input: a clear message, exit 2, nothing written.
    for (args, stdin, expected) in [
        (
            vec!["operators", "add", OWNER, "--password-stdin"],
            "too short\n",
            "at least 12 characters",
        ),
        (
            vec!["operators", "add", "not an address", "--password-stdin"],
            "long enough password\n",
            "EMAIL",
        ),
        (
            vec![
                "operators",
                "add",
                OWNER,
                "--role",
                "admin",
                "--password-stdin",
            ],
            "long enough password\n",
            "owner or editor",
        ),
        (
            vec!["operators", "add", OWNER],
            "long enough password\n",
            "--password-stdin",
        ),
    ] {
        let out = cli_with_stdin(&env, &args, stdin);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert_eq!(store.count_rows("operators").await.unwrap(), 0, "{args:?}");
    }

    // The first operator is an owner by default; the password is stored as Argon2id.
    let out = cli_with_stdin(
        &env,
        &["operators", "add", "Owner@Example.org", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.ok()
            .contains("added operator owner@example.org (owner)")
    );
    add_operator(&env, EDITOR, "editor");
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM operators WHERE email = $1")
        .bind(OWNER)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains(PASSWORD));

    let out = cli_with_stdin(
        &env,
        &["operators", "add", EDITOR, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("is an operator already"),
        "{}",
        out.stderr
    );

    let out = env.cli(&["--json", "operators", "list"]);
    let list: Value = serde_json::from_str(out.ok()).unwrap();
    let roles: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["email"].as_str().unwrap(), o["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [(OWNER, "owner"), (EDITOR, "editor")]);
    assert!(!out.stdout.contains("argon2"), "hashes are never listed");

    // A new password replaces the hash.
    cli_with_stdin(
        &env,
        &["operators", "passwd", EDITOR, "--password-stdin"],
        "another long password\n",
    )
    .ok();
    let new_hash: String =
        sqlx::query_scalar("SELECT password_hash FROM operators WHERE email = $1")
            .bind(EDITOR)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(verdicts::operators::verify_password(
        &new_hash,
        "another long password"
    ));

    // The last owner stays; an unknown address is an input error.
    let out = env.cli(&["operators", "remove", OWNER]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("last owner"), "{}", out.stderr);
    let out = env.cli(&["operators", "remove", "nobody@example.org"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("not an operator"), "{}", out.stderr);
    env.cli(&["operators", "remove", EDITOR]).ok();
    assert_eq!(store.count_rows("operators").await.unwrap(), 1);
    let actions: Vec<String> = log(&store).await.into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        actions,
        [
            "operators.add",
            "operators.add",
            "operators.passwd",
            "operators.remove"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_use_strict_cookies_and_die_on_logout() {
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");

    let r = app.get("/admin").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/admin/login");

    let login_page = app.get("/admin/login").await;
    let pre = set_cookie(&login_page, "verdicts_login_csrf").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(pre.contains(attribute), "{pre}");
    }
    assert!(!pre.contains("Secure"), "plain http: {pre}");

    let r = attempt_login(&app, OWNER, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let line = set_cookie(&r, "verdicts_session").unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=604800",
    ] {
        assert!(line.contains(attribute), "{line}");
    }
    assert!(!line.contains("Secure"), "{line}");
    let session = login(&app, OWNER).await;
    let page = session.get(&app, "/admin").send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["cache-control"], "no-store");

    // Logging out needs the session's CSRF token too.
    let r = session
        .post(&app, "/admin/logout", &[("csrf_token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = session.get(&app, "/admin").send().await.unwrap();
    assert_eq!(r.status(), 200, "a refused logout leaves the session alive");

    let r = session
        .post(&app, "/admin/logout", &[("csrf_token", &session.csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookie(&r, "verdicts_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    // The old cookie is dead server-side, whoever still holds it.
    let r = session.get(&app, "/admin").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = session
        .post(&app, "/admin/issues", &[("csrf_token", &session.csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.store.count_rows("issues").await.unwrap(), 0);
    assert_eq!(
        app.store.count_rows("operator_sessions").await.unwrap(),
        1,
        "the first login's session is left; the logged-out one is gone"
    );

    // A new password ends every session of that operator.
    let other = login(&app, OWNER).await;
    cli_with_stdin(
        &app.env,
        &["operators", "passwd", OWNER, "--password-stdin"],
        "a brand new password\n",
    )
    .ok();
    let r = other.get(&app, "/admin").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let actions: Vec<(String, String)> = log(&app.store).await;
    assert!(actions.contains(&(format!("operator:{OWNER}"), "operators.login".into())));
    assert!(actions.contains(&(format!("operator:{OWNER}"), "operators.logout".into())));
    app.stop().await;
}

/// The session's server-side expiry (milliseconds), and its creation.
async fn session_times(store: &Store) -> (i64, i64) {
    sqlx::query_as("SELECT expires_at, created_at FROM operator_sessions")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn set_session_times(store: &Store, expires_at: i64, created_at: i64) {
    sqlx::query("UPDATE operator_sessions SET expires_at = $1, created_at = $2")
        .bind(expires_at)
        .bind(created_at)
        .execute(store.writer())
        .await
        .unwrap();
}

/// A session ends 12 hours after its last use (sliding), 7 days after login at the latest;
/// its expiry is written about once a minute, not on every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_renewed_on_use_at_most_once_a_minute() {
    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");
    let session = login(&app, OWNER).await;
    let now = || chrono::Utc::now().timestamp_millis();
    let (at_login, _) = session_times(&app.store).await;
    assert!(
        (at_login - now() - 12 * HOUR).abs() < MINUTE,
        "12 h at login"
    );
    let r = session.get(&app, "/admin").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        session_times(&app.store).await.0,
        at_login,
        "used within a minute of login: nothing written"
    );

    // Idle for 11 h 59 min 30 s: thirty seconds left. One use gives it 12 hours again.
    let login_time = now() - 12 * HOUR + 30_000;
    set_session_times(&app.store, now() + 30_000, login_time).await;
    let r = session
        .get(&app, "/admin/subscribers")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (renewed, _) = session_times(&app.store).await;
    assert!(
        renewed > now() + 12 * HOUR - MINUTE,
        "extended to 12 h from now: {} min left",
        (renewed - now()) / MINUTE
    );
    // Progress polls and pages within the minute write nothing.
    for path in ["/admin/progress.json", "/admin", "/admin/bounces"] {
        let r = session.get(&app, path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    assert_eq!(session_times(&app.store).await.0, renewed);

    // Never beyond 7 days after login.
    let login_time = now() - 7 * 24 * HOUR + HOUR;
    set_session_times(&app.store, now() + 30_000, login_time).await;
    let r = session.get(&app, "/admin").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        session_times(&app.store).await.0,
        login_time + 7 * 24 * HOUR,
        "capped at 7 days after login"
    );

    // An expired session is not revived by its cookie.
    let expired = now() - 1_000;
    set_session_times(&app.store, expired, login_time).await;
    let r = session.get(&app, "/admin").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/admin/login");
    assert_eq!(session_times(&app.store).await.0, expired);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_behind_https() {
    let port = common::free_port();
    let app = TestApp::spawn(&format!(
        "[http]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"https://console.example\"\n"
    ))
    .await;
    add_operator(&app.env, OWNER, "owner");
    let r = attempt_login(&app, OWNER, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let line = set_cookie(&r, "verdicts_session").unwrap();
    assert!(
        line.contains("Secure") && line.contains("SameSite=Strict"),
        "{line}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_the_right_csrf_token_is_403_and_changes_nothing() {
    let app = TestApp::spawn("").await;
    seed(&app, 2).await;
    let id = create_issue(&app).await;
    add_operator(&app.env, OWNER, "owner");
    add_operator(&app.env, EDITOR, "editor");
    let owner = login(&app, OWNER).await;
    let editor = login(&app, EDITOR).await;
    let reader = "reader00@example.org";
    let log_before = log(&app.store).await.len();

    let posts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/admin/issues/1/cancel", vec![]),
        ("/admin/issues/1/send", vec![]),
        ("/admin/issues/1/test-send", vec![("to", reader)]),
        ("/admin/issues/1/schedule", vec![("at", "2030-01-01T09:00")]),
        ("/admin/issues", vec![("week", "2026-W48")]),
        ("/admin/subscribers", vec![("email", "new@example.org")]),
        ("/admin/subscribers/remove", vec![("email", reader)]),
        (
            "/admin/operators",
            vec![
                ("email", "x@example.org"),
                ("role", "owner"),
                ("password", PASSWORD),
            ],
        ),
        ("/admin/operators/remove", vec![("email", EDITOR)]),
        ("/admin/logout", vec![]),
    ];
    for (path, fields) in &posts {
        // Without a token, with a wrong one, and with another operator's (valid) token.
        for token in [None, Some("not-the-token"), Some(editor.csrf.as_str())] {
            let mut form = fields.clone();
            if let Some(t) = token {
                form.push(("csrf_token", t));
            }
            let r = owner.post(&app, path, &form).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} with {token:?}");
            let body = r.text().await.unwrap();
            assert!(body.contains("security token"), "{path}: {body}");
        }
    }
    // A multipart upload without the token: refused as well.
    let form = reqwest::multipart::Form::new().text(
        "text",
        serde_json::to_string(&comparison_json(
            "new-vs-old",
            "New vs Old",
            "2026-11-19T10:00:00Z",
        ))
        .unwrap(),
    );
    let r = app
        .client
        .post(app.url("/admin/comparisons"))
        .header("cookie", format!("verdicts_session={}", owner.cookie))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    assert_eq!(issue_status(&app.store, id).await, IssueStatus::Ready);
    assert_eq!(app.store.count_rows("issues").await.unwrap(), 1);
    assert_eq!(app.store.count_rows("subscribers").await.unwrap(), 2);
    assert_eq!(app.store.count_rows("comparisons").await.unwrap(), 2);
    assert_eq!(app.store.count_rows("operators").await.unwrap(), 2);
    assert_eq!(app.store.count_rows("operator_sessions").await.unwrap(), 2);
    assert_eq!(log(&app.store).await.len(), log_before, "nothing logged");

    // The login form's own double-submit pair.
    let r = app
        .client
        .post(app.url("/admin/login"))
        .form(&[
            ("email", OWNER),
            ("password", PASSWORD),
            ("csrf_token", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, "verdicts_session").is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operators_cookie_never_acts_as_another() {
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");
    add_operator(&app.env, EDITOR, "editor");
    let owner = login(&app, OWNER).await;
    let editor = login(&app, EDITOR).await;
    assert_ne!(owner.cookie, editor.cookie);
    assert_ne!(owner.csrf, editor.csrf);

    for (session, email) in [
        (&owner, "by-owner@example.org"),
        (&editor, "by-editor@example.org"),
    ] {
        let r = session
            .post(
                &app,
                "/admin/subscribers",
                &[("csrf_token", &session.csrf), ("email", email)],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{email}");
    }
    let page = editor
        .get(&app, "/admin")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(EDITOR) && !page.contains(&format!("{OWNER} ·")));
    let adds: Vec<(String, String)> = log(&app.store)
        .await
        .into_iter()
        .filter(|(_, a)| a == "subscribers.add")
        .collect();
    assert_eq!(
        adds,
        [
            (format!("operator:{OWNER}"), "subscribers.add".to_string()),
            (format!("operator:{EDITOR}"), "subscribers.add".to_string()),
        ]
    );
    // The consent record names the operator who added the address.
    let sources: Vec<String> = sqlx::query_scalar("SELECT source FROM subscribers ORDER BY id")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert_eq!(
        sources,
        [format!("operator:{OWNER}"), format!("operator:{EDITOR}")]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_wrong_passwords_get_429() {
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");
    for i in 0..10 {
        let r = attempt_login(&app, OWNER, "wrong password!").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        assert!(set_cookie(&r, "verdicts_session").is_none());
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Wrong address or password")
        );
    }
    // Now even the right password waits.
    let r = attempt_login(&app, OWNER, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    assert!(set_cookie(&r, "verdicts_session").is_none());
    assert_eq!(app.store.count_rows("operator_sessions").await.unwrap(), 0);
    // An unknown address gets the same answer as a wrong password.
    let r = attempt_login(&app, "nobody@example.org", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Only failures count: a correct password after a few wrong ones works, successful logins
/// never use up the allowance (on one address or from one client), and the tenth failure
/// still locks the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_failed_logins_are_throttled() {
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");
    for i in 0..9 {
        let r = attempt_login(&app, OWNER, "wrong password!").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "wrong password {i}");
    }
    for i in 0..4 {
        let r = attempt_login(&app, OWNER, PASSWORD).await;
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "right password {i} after nine wrong ones"
        );
        assert!(set_cookie(&r, "verdicts_session").is_some());
    }
    let r = attempt_login(&app, OWNER, "wrong password!").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the tenth failure");
    let r = attempt_login(&app, OWNER, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(app.store.count_rows("operator_sessions").await.unwrap(), 4);
    app.stop().await;
}

/// Two processes serving the console — two application cores on one database — count the same
/// failures: ten wrong passwords for one address, spread over both, lock it in both, and a
/// success in either still never counts. Before, each process counted its own, so N `serve`
/// processes behind one address gave a guesser N times the tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_counted_across_processes() {
    use verdicts::app::operators::LoginOutcome;
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");
    let settings = app.env.settings("");
    let first = common::app(&app.store, &settings);
    let second = common::app(&app.env.store().await, &settings);
    let client: std::net::IpAddr = "192.0.2.44".parse().unwrap();
    for i in 0..10 {
        let core = if i % 2 == 0 { &first } else { &second };
        let out = core.log_in(OWNER, "wrong password!", client).await.unwrap();
        assert!(
            matches!(out, LoginOutcome::Refused),
            "wrong password {i}: {out:?}"
        );
        if i == 4 {
            // The right password in the middle gives its place back, in both.
            let out = second.log_in(OWNER, PASSWORD, client).await.unwrap();
            assert!(matches!(out, LoginOutcome::SignedIn(_)), "{out:?}");
        }
    }
    for core in [&first, &second] {
        match core.log_in(OWNER, PASSWORD, client).await.unwrap() {
            // About a minute from the tenth failure; eleven Argon2id hashes of a debug build
            // on a loaded machine may have taken some of it.
            LoginOutcome::Throttled { retry_after } => assert!(
                retry_after > Duration::from_secs(30) && retry_after <= Duration::from_secs(60),
                "{retry_after:?}"
            ),
            other => panic!("the address is locked in every process: {other:?}"),
        }
    }
    // Through HTTP as well (a third process's view of the same buckets).
    let r = attempt_login(&app, OWNER, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another address from another client is not affected.
    let other: std::net::IpAddr = "192.0.2.45".parse().unwrap();
    let out = first
        .log_in(EDITOR, "wrong password!", other)
        .await
        .unwrap();
    assert!(matches!(out, LoginOutcome::Refused), "{out:?}");
    // One bucket per address and per client with failures: ada's, 192.0.2.44's (and those of
    // the HTTP attempt's client, which was refused before counting), the editor's and .45's.
    let buckets = app.store.count_rows("login_throttle").await.unwrap();
    assert_eq!(buckets, 4, "{buckets} buckets");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_owners_manage_operators() {
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");
    add_operator(&app.env, EDITOR, "editor");
    let owner = login(&app, OWNER).await;
    let editor = login(&app, EDITOR).await;

    let r = editor.get(&app, "/admin/operators").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("only an owner can manage operators")
    );
    let dashboard = editor
        .get(&app, "/admin")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !dashboard.contains("href=\"/admin/operators\""),
        "no link for editors"
    );
    let r = editor
        .post(
            &app,
            "/admin/operators",
            &[
                ("csrf_token", &editor.csrf),
                ("email", "x@example.org"),
                ("role", "owner"),
                ("password", PASSWORD),
            ],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = editor
        .post(
            &app,
            "/admin/operators/remove",
            &[("csrf_token", &editor.csrf), ("email", OWNER)],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.store.count_rows("operators").await.unwrap(), 2);

    // An owner adds (with the password policy) and removes; removal ends the sessions.
    let r = owner
        .post(
            &app,
            "/admin/operators",
            &[
                ("csrf_token", &owner.csrf),
                ("email", "x@example.org"),
                ("role", "editor"),
                ("password", "short"),
            ],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("at least 12 characters"));
    assert_eq!(app.store.count_rows("operators").await.unwrap(), 2);
    let r = owner
        .post(
            &app,
            "/admin/operators/remove",
            &[("csrf_token", &owner.csrf), ("email", EDITOR)],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = editor.get(&app, "/admin").send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "a removed operator is signed out"
    );
    let page = owner
        .get(&app, "/admin/operators")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(OWNER) && !page.contains(EDITOR));

    // An operator added in the console signs in with the password the owner chose.
    let r = owner
        .post(
            &app,
            "/admin/operators",
            &[
                ("csrf_token", &owner.csrf),
                ("email", "New.Editor@Example.org"),
                ("role", "editor"),
                ("password", PASSWORD),
            ],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let newcomer = login(&app, "new.editor@example.org").await;
    let r = newcomer.get(&app, "/admin/operators").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "added as an editor");
    let actions = log(&app.store).await;
    for action in ["operators.add", "operators.remove"] {
        assert!(
            actions.contains(&(format!("operator:{OWNER}"), action.into())),
            "{action} in {actions:?}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_state_is_a_409_page_and_bad_input_changes_nothing() {
    let app = TestApp::spawn("").await;
    seed(&app, 2).await;
    let id = create_issue(&app).await;
    add_operator(&app.env, OWNER, "owner");
    let s = login(&app, OWNER).await;
    let csrf = s.csrf.as_str();
    for (path, fields, status, message) in [
        (
            "/admin/issues/1/pause",
            vec![],
            409,
            "cannot pause issue 2026-W47: the issue is ready",
        ),
        ("/admin/issues/1/resume", vec![], 409, "cannot resume"),
        (
            "/admin/issues/1/test-send",
            vec![("to", "not an address")],
            422,
            "to:",
        ),
        (
            "/admin/issues/1/schedule",
            vec![("at", "next monday")],
            422,
            "is not a time",
        ),
        ("/admin/issues/9/send", vec![], 404, "no issue #9"),
        ("/admin/issues/1/explode", vec![], 404, "no action"),
        (
            "/admin/issues",
            vec![("week", "2026-W99")],
            422,
            "not an ISO week",
        ),
        ("/admin/subscribers", vec![("email", "@@")], 422, "email:"),
    ] {
        let mut form = fields.clone();
        form.push(("csrf_token", csrf));
        let r = s.post(&app, path, &form).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(message), "{path}: {body}");
    }
    assert_eq!(issue_status(&app.store, id).await, IssueStatus::Ready);
    assert_eq!(app.store.count_rows("subscribers").await.unwrap(), 2);
    assert_eq!(app.store.count_rows("issues").await.unwrap(), 1);

    // A comparison upload that does not parse names the field and writes nothing.
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", s.csrf.clone())
        .text("text", "{\"slug\": \"x\"}");
    let r = app
        .client
        .post(app.url("/admin/comparisons"))
        .header("cookie", format!("verdicts_session={}", s.cookie))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("text:"));
    assert_eq!(app.store.count_rows("comparisons").await.unwrap(), 2);

    // A good one (a real page capture, dated by the form) lands and is logged.
    let page = std::fs::read_to_string(common::fixture(common::HAIKU_PAGE)).unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", s.csrf.clone())
        .part(
            "file",
            reqwest::multipart::Part::text(page).file_name("haiku.txt"),
        )
        .text("published_at", "2026-11-19T08:00");
    let r = app
        .client
        .post(app.url("/admin/comparisons"))
        .header("cookie", format!("verdicts_session={}", s.cookie))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.store.count_rows("comparisons").await.unwrap(), 3);
    let list = s
        .get(&app, "/admin/comparisons")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("2026-11-19 08:00"), "{list}");
    assert!(
        log(&app.store)
            .await
            .contains(&(format!("operator:{OWNER}"), "comparisons.import".into()))
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The console in a real browser.

/// Waits (up to 10 s) until `css` exists and its text contains `expected`.
async fn expect_text(client: &fantoccini::Client, css: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(el) = client.find(Locator::Css(css)).await
            && let Ok(text) = el.text().await
        {
            if text.contains(expected) {
                return;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {css} to contain {expected:?}; it shows {last:?}");
}

async fn click(client: &fantoccini::Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn fill(client: &fantoccini::Client, css: &str, text: &str) {
    let el = client.find(Locator::Css(css)).await.unwrap();
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

async fn sign_in(client: &fantoccini::Client, app: &TestApp) {
    client.goto(&app.url("/admin")).await.unwrap();
    expect_text(client, "h1", "Sign in").await;
    fill(client, "#email", OWNER).await;
    fill(client, "#password", PASSWORD).await;
    click(client, "button[type=submit]").await;
    expect_text(client, "h1", "Dashboard").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_an_issue_in_a_browser() {
    let sink = SmtpSink::start();
    let app = TestApp::spawn_public(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = {:?}\ntimeout_seconds = 5\n\
         [schedule]\ncron = \"0 0 9 * * Mon\"\n",
        sink.url()
    ))
    .await;
    seed(&app, 3).await;
    add_operator(&app.env, OWNER, "owner");
    let driver = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let dir = screenshot_dir("console");

    // The whole flow at phone width.
    let client = browser(&driver, 390, profile.path()).await;
    sign_in(&client, &app).await;
    shot(&client, &dir, "390-1-dashboard-empty").await;
    fill(&client, "#week", "2026-W47").await;
    click(&client, "form[action='/admin/issues'] button").await;
    expect_text(&client, "#flash", "Issue #1 of 2026-W47 created").await;
    expect_text(&client, "#issue-status", "ready").await;
    let preview = client.find(Locator::Css("iframe#preview")).await.unwrap();
    assert!(
        preview.attr("sandbox").await.unwrap().is_some(),
        "a sandboxed frame"
    );
    // The preview route serves the frozen issue, sandboxed by its own CSP as well.
    client.enter_frame(0).await.unwrap();
    expect_text(&client, "body", "Alpha vs Beta").await;
    client.enter_parent_frame().await.unwrap();
    shot(&client, &dir, "390-2-issue-ready").await;

    // Test send to the real SMTP sink.
    fill(&client, "#to", "proof@example.org").await;
    click(&client, "#do-test-send").await;
    expect_text(&client, "#flash", "a [TEST] copy went to proof@example.org").await;
    let received = sink.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt, "proof@example.org");
    assert!(
        received[0].subject().starts_with("[TEST] "),
        "{}",
        received[0].subject()
    );
    assert!(received[0].text().contains("Alpha vs Beta"));

    // Schedule (the form's default time, an hour from now; the count confirmed), then cancel.
    fill(&client, "#schedule_confirm_recipients", "3").await;
    click(&client, "#do-schedule").await;
    expect_text(&client, "#issue-status", "scheduled").await;
    expect_text(&client, "#flash", "scheduled for").await;
    let issue = app.store.get_issue_by_number(1).await.unwrap().unwrap();
    assert_eq!(issue.status, IssueStatus::Scheduled);
    let at = issue.scheduled_for.unwrap();
    let ahead = at - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::zero() && ahead <= chrono::Duration::hours(1),
        "{at}"
    );
    shot(&client, &dir, "390-3-issue-scheduled").await;
    click(&client, "#do-cancel").await;
    expect_text(&client, "#issue-status", "cancelled").await;
    assert_eq!(
        issue_status(&app.store, issue.id).await,
        IssueStatus::Cancelled
    );
    assert!(
        client.find(Locator::Css("#do-send")).await.is_err(),
        "no send on a cancelled issue"
    );
    shot(&client, &dir, "390-4-issue-cancelled").await;

    // A long list pages with plain links: 120 people who left, 100 a page.
    common::add_confirmed(&app.store, 120, "former", 3).await;
    sqlx::query("UPDATE subscribers SET status = 'unsubscribed' WHERE email LIKE 'former%'")
        .execute(app.store.writer())
        .await
        .unwrap();
    client
        .goto(&app.url("/admin/subscribers?status=unsubscribed"))
        .await
        .unwrap();
    expect_text(&client, "#subscribers-pager", "1–100 of 120").await;
    click(&client, "#subscribers-pager a.older").await;
    expect_text(&client, "#subscribers-pager", "101–120 of 120").await;
    let rows = client
        .find_all(Locator::Css("#found tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 20, "the last page");
    shot(&client, &dir, "390-5a-subscribers-paged").await;
    click(&client, "#subscribers-pager a.newer").await;
    expect_text(&client, "#subscribers-pager", "1–100 of 120").await;
    expect_text(&client, "#found", "former119@example.org").await;

    // Find a subscriber and remove them.
    client.goto(&app.url("/admin/subscribers")).await.unwrap();
    expect_text(&client, "#status-counts", "confirmed 3").await;
    fill(&client, "#q", "reader01").await;
    click(&client, "form[role=search] button").await;
    expect_text(&client, "#found", "reader01@example.org").await;
    let rows = client
        .find_all(Locator::Css("#found tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one match");
    shot(&client, &dir, "390-5-subscribers-found").await;
    click(
        &client,
        "#found button[aria-label='Remove reader01@example.org']",
    )
    .await;
    expect_text(&client, "#flash", "Removed reader01@example.org").await;
    expect_text(&client, "#status-counts", "confirmed 2").await;
    let gone = SubscriberEmail::parse("reader01@example.org").unwrap();
    assert!(
        app.store
            .get_subscriber_by_email(&gone)
            .await
            .unwrap()
            .is_none()
    );

    // The dashboard shows who did what.
    client.goto(&app.url("/admin")).await.unwrap();
    expect_text(&client, "#activity", "subscribers.remove").await;
    expect_text(&client, "#activity", "issue.cancel").await;
    shot(&client, &dir, "390-6-dashboard").await;
    let actions: Vec<(String, String)> = log(&app.store).await;
    let me = format!("operator:{OWNER}");
    for action in [
        "operators.login",
        "issue.create",
        "issue.test-send",
        "issue.schedule",
        "issue.cancel",
        "subscribers.remove",
    ] {
        assert!(
            actions.contains(&(me.clone(), action.into())),
            "{action} in {actions:?}"
        );
    }
    // A reader with categories (all of this issue's), for the reader page.
    let (reader_id,): (i64,) =
        sqlx::query_as("SELECT id FROM subscribers WHERE status = 'confirmed' ORDER BY id LIMIT 1")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    app.store
        .set_subscriber_categories(reader_id, &["Developer Tools".into()])
        .await
        .unwrap();
    let reader_page = format!("/admin/subscribers/{reader_id}");
    for (path, name) in [
        (reader_page.as_str(), "390-6a-reader"),
        ("/admin/comparisons", "390-7-comparisons"),
        ("/admin/bounces", "390-8-bounces"),
        ("/admin/operators", "390-9-operators"),
    ] {
        client.goto(&app.url(path)).await.unwrap();
        expect_text(&client, "h1", "").await;
        shot(&client, &dir, name).await;
    }
    // Phone width: nothing wider than the screen.
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow {overflow}"
    );
    client.close().await.unwrap();

    // Every page at desktop width; the dashboard follows a live send through its script.
    let client = browser(&driver, 1280, tempfile::tempdir().unwrap().path()).await;
    client.goto(&app.url("/admin/login")).await.unwrap();
    expect_text(&client, "h1", "Sign in").await;
    shot(&client, &dir, "1280-0-login").await;
    sign_in(&client, &app).await;
    let more = Value::Array(vec![comparison_json(
        "epsilon-vs-zeta",
        "Epsilon vs Zeta",
        "2026-11-25T10:00:00Z",
    )]);
    let r = app
        .admin(Method::POST, "/api/comparisons")
        .json(&more)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .admin(Method::POST, "/api/issues")
        .json(&serde_json::json!({"week": "2026-W48"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // 2026-W47 was cancelled before any delivery: 2026-W48 takes its comparisons and number.
    client.goto(&app.url("/admin")).await.unwrap();
    expect_text(
        &client,
        "li[data-issue='1'] [data-field=figures]",
        "0 of 0 sent",
    )
    .await;
    let r = app
        .admin(Method::POST, "/api/issues/1/send")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // No reload: the polling script updates the figures and the status.
    expect_text(
        &client,
        "li[data-issue='1'] [data-field=figures]",
        "2 of 2 sent",
    )
    .await;
    expect_text(&client, "li[data-issue='1'] [data-field=status]", "sent").await;
    assert_eq!(sink.wait_for(3, Duration::from_secs(15)).await.len(), 3);
    shot(&client, &dir, "1280-1-dashboard").await;
    // Sent: now the reader takes a break, for the reader page.
    app.store
        .set_paused_until(
            reader_id,
            Some(chrono::Utc::now() + chrono::Duration::weeks(4)),
        )
        .await
        .unwrap();
    for (path, name) in [
        ("/admin/issues/2026-W47", "1280-2-issue-cancelled"),
        ("/admin/issues/1", "1280-3-issue-sent"),
        ("/admin/subscribers", "1280-4-subscribers"),
        ("/admin/comparisons", "1280-5-comparisons"),
        ("/admin/bounces", "1280-6-bounces"),
        ("/admin/operators", "1280-7-operators"),
        (reader_page.as_str(), "1280-8-reader"),
    ] {
        client.goto(&app.url(path)).await.unwrap();
        expect_text(&client, "h1", "").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        shot(&client, &dir, name).await;
    }
    client.close().await.unwrap();
    println!("screenshots of the console in {}", dir.display());
    app.stop().await;
    sink.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_searched_counted_and_exported() {
    let app = TestApp::spawn("").await;
    seed(&app, 3).await;
    add_operator(&app.env, EDITOR, "editor");
    let s = login(&app, EDITOR).await;
    let r = s
        .post(
            &app,
            "/admin/subscribers",
            &[
                ("csrf_token", &s.csrf),
                ("email", "Pending.Person@Example.org"),
                ("name", "Pat"),
            ],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = s
        .get(&app, "/admin/subscribers?q=PENDING.person")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("pending.person@example.org"), "{page}");
    assert!(
        !page.contains("reader00@example.org"),
        "only the match is listed"
    );
    for expected in [
        "confirmed</a> <strong>3</strong>",
        "pending</a> <strong>1</strong>",
    ] {
        assert!(page.contains(expected), "{expected} in the counts");
    }
    // By domain: `@example.org` is the domain's start (not the address's), any case; a word
    // without `@` finds the start of the address or of its domain.
    add_operator_subscriber(&s, &app, "other@Mail.Example.org").await;
    let found = |q: &'static str| {
        let s = &s;
        let app = &app;
        async move {
            let html = s
                .get(app, &format!("/admin/subscribers?q={q}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if html.contains("No subscriber matches") {
                return Vec::new();
            }
            let mut found: Vec<String> = html
                .split("aria-label=\"History of ")
                .skip(1)
                .map(|rest| rest[..rest.find('"').unwrap()].to_string())
                .collect();
            found.sort();
            found
        }
    };
    let everyone_at_example = vec![
        "pending.person@example.org".to_string(),
        "reader00@example.org".into(),
        "reader01@example.org".into(),
        "reader02@example.org".into(),
    ];
    assert_eq!(found("%40example.org").await, everyone_at_example);
    assert_eq!(found("%40EXAM").await, everyone_at_example);
    assert_eq!(found("example").await, everyone_at_example);
    assert_eq!(found("%40mail").await, vec!["other@mail.example.org"]);
    assert_eq!(found("mail.example").await, vec!["other@mail.example.org"]);
    assert_eq!(found("other").await, vec!["other@mail.example.org"]);
    assert_eq!(found("reader01%40").await, vec!["reader01@example.org"]);
    assert!(found("%40nowhere.test").await.is_empty());
    assert!(found("%40example.org.uk").await.is_empty());
    assert!(
        found("ample").await.is_empty(),
        "the middle of a part is not searched"
    );
    // LIKE wildcards typed in the box are literal.
    let page = s
        .get(&app, "/admin/subscribers?q=%25")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("No subscriber matches"), "{page}");
    let page = s
        .get(&app, "/admin/subscribers?status=confirmed")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("reader02@example.org") && !page.contains("pending.person"));
    let r = s
        .get(&app, "/admin/subscribers?status=gone")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let r = s.get(&app, "/admin/subscribers.csv").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "email,name,status,created_at,confirmed_at,unsubscribed_at"
    );
    assert_eq!(lines.len(), 6, "{csv}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pending.person@example.org,Pat,pending,"))
    );
    assert!(
        log(&app.store)
            .await
            .contains(&(format!("operator:{EDITOR}"), "subscribers.export".into()))
    );
    app.stop().await;
}

/// Adds `email` (pending) through the console's form.
async fn add_operator_subscriber(s: &Session, app: &TestApp, email: &str) {
    let r = s
        .post(
            app,
            "/admin/subscribers",
            &[("csrf_token", s.csrf.as_str()), ("email", email)],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// The issue page shows the pre-send checks of `issue check` before Send (run once in the
/// background, so the page answers at once), and not on an issue that can no longer be sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_page_shows_the_pre_send_checks() {
    let app = TestApp::spawn("").await;
    seed(&app, 2).await;
    create_issue(&app).await;
    add_operator(&app.env, EDITOR, "editor");
    let s = login(&app, EDITOR).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let page = loop {
        let page = s
            .get(&app, "/admin/issues/1")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("id=\"checks\""), "{page}");
        if page.contains("id=\"check-rows\"") {
            break page;
        }
        assert!(page.contains("Running the pre-send checks"), "{page}");
        assert!(
            std::time::Instant::now() < deadline,
            "the checks never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The same checks and results as `verdicts issue check`.
    let out = app.env.cli(&["--json", "issue", "check", "1"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let checks: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(checks.len() >= 6, "{checks:?}");
    for c in &checks {
        let row = format!(
            "<tr class=\"check-{}\"><td>{}</td>",
            c["status"].as_str().unwrap(),
            c["check"].as_str().unwrap()
        );
        assert!(page.contains(&row), "{row} in {page}");
    }
    // The test settings' public_url is plain http: links warn, with the fix.
    assert!(page.contains("<tr class=\"check-warn\"><td>links</td>"));
    assert!(page.contains("Fix: serve them over https"));
    assert!(page.contains("warning(s), nothing failed"), "{page}");
    // Cancelled: nothing to send, no checks.
    let r = s
        .post(
            &app,
            "/admin/issues/1/cancel",
            &[("csrf_token", s.csrf.as_str())],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Cancelled before any delivery, it gave its number back: its page is under its week.
    let page = s
        .get(&app, "/admin/issues/2026-W47")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"issue-status\">cancelled"), "{page}");
    assert!(!page.contains("id=\"checks\""), "{page}");
    app.stop().await;
}

/// The pager `id` of a page: its summary and the links it offers, by class, as paths.
fn pager_of(html: &str, id: &str) -> (String, Vec<(String, String)>) {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no pager {id}"));
    let nav = &html[start..start + html[start..].find("</nav>").unwrap()];
    let summary = nav
        .split("<span class=\"muted\">")
        .nth(1)
        .unwrap()
        .split("</span>")
        .next()
        .unwrap()
        .to_string();
    let links = nav
        .split("<a href=\"")
        .skip(1)
        .map(|a| {
            let href = a[..a.find('"').unwrap()]
                .replace("&amp;", "&")
                .replace("&#x2F;", "/")
                .replace("&#47;", "/");
            let class = a.split("class=\"").nth(1).unwrap();
            (class[..class.find('"').unwrap()].to_string(), href)
        })
        .collect();
    (summary, links)
}

fn link<'a>(links: &'a [(String, String)], class: &str) -> Option<&'a str> {
    links
        .iter()
        .find(|(c, _)| c == class)
        .map(|(_, href)| href.as_str())
}

/// The addresses in the table `id` of a page.
fn addresses_in(html: &str, id: &str) -> Vec<String> {
    let start = html.find(&format!("id=\"{id}\"")).unwrap();
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    table
        .split("<td>")
        .skip(1)
        .map(|c| c[..c.find("</td>").unwrap()].to_string())
        .filter(|c| c.ends_with("@example.org"))
        .collect()
}

/// Subscribers, bounced subscribers, failed deliveries and the operator log come a page at a
/// time, with plain links to the newer and older pages (the filters kept) and the counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lists_are_paged_with_plain_links() {
    let app = TestApp::spawn("").await;
    seed(&app, 250).await;
    add_operator(&app.env, EDITOR, "editor");
    let s = login(&app, EDITOR).await;
    let get = |path: String| {
        let request = s.get(&app, &path);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.text().await.unwrap()
        }
    };

    // 250 subscribers: three pages, newest first, every address once.
    let html = get("/admin/subscribers?status=confirmed".into()).await;
    let (summary, links) = pager_of(&html, "subscribers-pager");
    assert_eq!(summary, "1–100 of 250");
    assert_eq!(link(&links, "newer"), None);
    assert_eq!(link(&links, "newest"), None);
    let first = addresses_in(&html, "found");
    assert_eq!(first.len(), 100);
    assert_eq!(first[0], "reader249@example.org");
    let older = link(&links, "older").expect("a link to older subscribers");
    assert!(
        older.starts_with("/admin/subscribers?status=confirmed&after="),
        "{older}"
    );
    let html = get(older.to_string()).await;
    let (summary, links) = pager_of(&html, "subscribers-pager");
    assert_eq!(summary, "101–200 of 250");
    let second = addresses_in(&html, "found");
    assert_eq!(second[0], "reader149@example.org");
    let html = get(link(&links, "older").unwrap().to_string()).await;
    let (summary, last_links) = pager_of(&html, "subscribers-pager");
    assert_eq!(summary, "201–250 of 250");
    let third = addresses_in(&html, "found");
    assert_eq!(third.len(), 50);
    assert_eq!(third[49], "reader00@example.org");
    assert_eq!(link(&last_links, "older"), None);
    let mut all: Vec<&String> = first.iter().chain(&second).chain(&third).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 250, "every subscriber on exactly one page");
    // Back: the newer link shows the page before, the newest link the first.
    let html = get(link(&last_links, "newer").unwrap().to_string()).await;
    assert_eq!(addresses_in(&html, "found"), second);
    let html = get(link(&last_links, "newest").unwrap().to_string()).await;
    assert_eq!(addresses_in(&html, "found"), first);
    // A search is paged too, and its links keep the query.
    let html = get("/admin/subscribers?q=reader1".into()).await;
    let (summary, links) = pager_of(&html, "subscribers-pager");
    assert_eq!(summary, "1–100 of 110", "reader10–19, reader100–199");
    assert!(link(&links, "older").unwrap().contains("q=reader1&"));
    // A place that is not one is the caller's error.
    let r = s
        .get(&app, "/admin/subscribers?after=yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Bounces: 120 bounced subscribers and 130 failed deliveries (failed at the same moment:
    // the id breaks the tie), each list paged on its own.
    sqlx::query(
        "UPDATE subscribers SET status = 'bounced'
          WHERE id IN (SELECT id FROM subscribers ORDER BY id LIMIT 120)",
    )
    .execute(app.store.writer())
    .await
    .unwrap();
    let issue = create_issue(&app).await;
    sqlx::query(
        "INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, last_error, updated_at)
         SELECT $1, id, 'failed', 3, '550 no such user', 1700000000000 FROM subscribers
          WHERE status = 'confirmed'",
    )
    .bind(issue)
    .execute(app.store.writer())
    .await
    .unwrap();
    let html = get("/admin/bounces".into()).await;
    let (summary, bounced_links) = pager_of(&html, "bounced-pager");
    assert_eq!(summary, "1–100 of 120");
    let (summary, failure_links) = pager_of(&html, "failures-pager");
    assert_eq!(summary, "1–100 of 130");
    let failures_first = addresses_in(&html, "recent-failures");
    let failures_older = link(&failure_links, "older").unwrap().to_string();
    assert!(failures_older.starts_with("/admin/bounces?failures_after="));
    let html = get(failures_older).await;
    let (summary, failure_links) = pager_of(&html, "failures-pager");
    assert_eq!(summary, "101–130 of 130");
    let failures_second = addresses_in(&html, "recent-failures");
    assert_eq!(failures_first.len() + failures_second.len(), 130);
    assert!(failures_second.iter().all(|a| !failures_first.contains(a)));
    // The bounced list's link keeps the failures where they are.
    let (_, bounced_links_here) = pager_of(&html, "bounced-pager");
    let bounced_older = link(&bounced_links_here, "older").unwrap();
    assert!(
        bounced_older.contains("failures_after=") && bounced_older.contains("bounced_after="),
        "{bounced_older}"
    );
    let html = get(bounced_older.to_string()).await;
    assert_eq!(pager_of(&html, "bounced-pager").0, "101–120 of 120");
    assert_eq!(pager_of(&html, "failures-pager").0, "101–130 of 130");
    assert!(link(&bounced_links, "newer").is_none());
    assert!(link(&failure_links, "newer").is_some());

    // The operator log: the dashboard shows the newest entries and links to all of it.
    for i in 0..150 {
        app.store
            .log_operator_action("cli", "subscribers.add", None, &format!("entry {i}"))
            .await
            .unwrap();
    }
    let total = app.store.count_rows("operator_log").await.unwrap();
    let html = get("/admin".into()).await;
    assert!(html.contains("href=\"/admin/log\"") || html.contains("href=\"&#x2F;admin&#x2F;log\""));
    let html = get("/admin/log".into()).await;
    let (summary, links) = pager_of(&html, "log-pager");
    assert_eq!(summary, format!("1–100 of {total}"));
    assert!(html.contains("entry 149") && !html.contains("entry 0<"));
    let html = get(link(&links, "older").unwrap().to_string()).await;
    assert_eq!(
        pager_of(&html, "log-pager").0,
        format!("101–{total} of {total}")
    );
    assert!(html.contains("entry 0<"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_bounces_show_their_reasons() {
    // A relay that refuses every recipient for good.
    let sink = SmtpSink::start_with(&["-f", "RCPT", "-B", "550 5.1.1 User unknown"]);
    let app = TestApp::spawn(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = {:?}\ntimeout_seconds = 5\n",
        sink.url()
    ))
    .await;
    seed(&app, 2).await;
    let id = create_issue(&app).await;
    add_operator(&app.env, OWNER, "owner");
    let s = login(&app, OWNER).await;

    // Sent from the console, it fails for both recipients and bounces them.
    let r = s
        .post(
            &app,
            "/admin/issues/1/send",
            &[("csrf_token", &s.csrf), ("confirm_recipients", "2")],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let deadline = Instant::now() + Duration::from_secs(30);
    while issue_status(&app.store, id).await != IssueStatus::Sent {
        assert!(Instant::now() < deadline, "the send did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sink.messages().is_empty());

    let page = s
        .get(&app, "/admin/bounces")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bounced = &page[page.find("id=\"bounced\"").expect("a bounced table")..];
    let bounced = &bounced[..bounced.find("</table>").unwrap()];
    assert!(bounced.contains("reader00@example.org") && bounced.contains("reader01@example.org"));
    let failures = &page[page
        .find("id=\"recent-failures\"")
        .expect("a failures table")..];
    assert_eq!(
        failures.matches("5.1.1 User unknown").count(),
        2,
        "{failures}"
    );
    assert!(failures.contains("href=\"/admin/issues/1\""));

    let page = s
        .get(&app, "/admin/issues/1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"failures\"") && page.contains("5.1.1 User unknown"));
    assert!(page.contains("id=\"do-retry-failed\"") && page.contains("id=\"do-test-send\""));
    for absent in [
        "do-send",
        "do-pause",
        "do-resume",
        "do-cancel",
        "do-schedule",
    ] {
        assert!(
            !page.contains(&format!("id=\"{absent}\"")),
            "{absent} on a sent issue"
        );
    }

    // The preview is served sandboxed; only the console may frame it.
    let r = s.get(&app, "/admin/issues/1/preview").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.starts_with("sandbox;") && csp.contains("frame-ancestors 'self'"),
        "{csp}"
    );
    assert!(r.text().await.unwrap().contains("Alpha vs Beta"));

    // Retry puts the failed recipients back in line, logged with the operator's address.
    let r = s
        .post(
            &app,
            "/admin/issues/1/retry-failed",
            &[("csrf_token", &s.csrf)],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let actions = log(&app.store).await;
    for action in ["issue.send", "issue.retry-failed"] {
        assert!(
            actions.contains(&(format!("operator:{OWNER}"), action.into())),
            "{action}"
        );
    }
    app.stop().await;
    sink.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_page_escapes_content_and_sends_its_csp() {
    let app = TestApp::spawn("").await;
    let mut evil = comparison_json(
        "evil-vs-good",
        "<img src=x onerror=alert(1)> vs Good",
        "2026-11-17T10:00:00Z",
    );
    evil["tools"][0]["name"] = "<script>alert(2)</script>".into();
    let r = app
        .admin(Method::POST, "/api/comparisons")
        .json(&evil)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    create_issue(&app).await;
    add_operator(&app.env, OWNER, "owner");
    let s = login(&app, OWNER).await;
    for path in [
        "/admin",
        "/admin/issues/1",
        "/admin/subscribers",
        "/admin/comparisons",
        "/admin/bounces",
        "/admin/operators",
    ] {
        let r = s.get(&app, path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        let html = r.text().await.unwrap();
        assert!(
            !html.contains("<img src=x") && !html.contains("<script>alert"),
            "{path}"
        );
    }
    let html = s
        .get(&app, "/admin/comparisons")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt; vs Good"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(2)&lt;&#x2F;script&gt;")
            || html.contains("&lt;script&gt;alert(2)&lt;/script&gt;")
    );
    // The login page too, before anyone signs in.
    let r = app.get("/admin/login").await;
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    app.stop().await;
}

/// The code an authenticator app shows now for an `otpauth://` URI.
fn code_now(uri: &str) -> String {
    let totp = totp_rs::Totp::from_url(uri).expect("a valid otpauth URI");
    totp.generate(chrono::Utc::now().timestamp() as u64)
        .to_string()
}

/// Issue 26, finding 7: two-factor sign-in (RFC 6238). `verdicts operators totp` enrols; then
/// the password alone, a wrong code, a reused code or a used recovery code gets the same 401
/// as a wrong password and no session; a fresh code or an unused recovery code signs in. The
/// database holds neither the secret nor the recovery codes. `--disable` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_codes_right_wrong_reused_and_missing() {
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");
    let out = app.env.cli(&["--json", "operators", "totp", OWNER]);
    let enrolment: Value = serde_json::from_str(out.ok().trim()).unwrap();
    let uri = enrolment["otpauth_uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let codes: Vec<String> = enrolment["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    let human = app.env.cli(&["operators", "list"]);
    human.ok();

    let refused = |r: &reqwest::Response, what: &str| {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            set_cookie(r, "verdicts_session").is_none(),
            "{what}: no session"
        );
    };
    let r = attempt_login_with_code(&app, OWNER, PASSWORD, "").await;
    refused(&r, "an enrolled operator without a code");
    let body = r.text().await.unwrap();
    assert!(body.contains("Wrong address or password"), "{body}");
    assert!(body.contains("name=\"totp\""), "the form asks for the code");
    let code = code_now(&uri);
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    refused(
        &attempt_login_with_code(&app, OWNER, PASSWORD, &wrong).await,
        "a wrong code",
    );
    refused(
        &attempt_login_with_code(&app, OWNER, PASSWORD, "12345").await,
        "five digits",
    );
    refused(
        &attempt_login_with_code(&app, OWNER, "wrong password!", &code).await,
        "a right code with a wrong password",
    );
    let r = attempt_login_with_code(&app, OWNER, PASSWORD, &code).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the right code");
    assert!(set_cookie(&r, "verdicts_session").is_some());
    refused(
        &attempt_login_with_code(&app, OWNER, PASSWORD, &code).await,
        "the same code again (within its step)",
    );
    // A recovery code works once, typed in any case.
    let r = attempt_login_with_code(&app, OWNER, PASSWORD, &codes[0].to_uppercase()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "an unused recovery code");
    refused(
        &attempt_login_with_code(&app, OWNER, PASSWORD, &codes[0]).await,
        "a used recovery code",
    );
    let actions: Vec<String> = log(&app.store).await.into_iter().map(|(_, a)| a).collect();
    assert!(
        actions.contains(&"operators.totp".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"operators.recovery_code".to_string()),
        "{actions:?}"
    );

    // What the database holds gives neither the secret nor a recovery code.
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap()
        .to_string();
    let sealed: String = sqlx::query_scalar("SELECT secret_sealed FROM operator_totp")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert!(!sealed.contains(&secret), "{sealed}");
    let hashes: Vec<String> = sqlx::query_scalar("SELECT code_hash FROM operator_recovery_codes")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert_eq!(hashes.len(), 10);
    for c in &codes {
        let bare = c.replace('-', "");
        assert!(
            hashes.iter().all(|h| !h.contains(&bare)),
            "{c} stored in clear"
        );
    }

    // Unknown operator: exit 2, nothing written. --disable: the password alone again.
    let out = app.env.cli(&["operators", "totp", "nobody@example.org"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = app.env.cli(&["operators", "totp", OWNER, "--disable"]);
    assert!(out.ok().contains("removed"), "{}", out.stdout);
    assert_eq!(app.store.count_rows("operator_totp").await.unwrap(), 0);
    assert_eq!(
        app.store
            .count_rows("operator_recovery_codes")
            .await
            .unwrap(),
        0
    );
    login(&app, OWNER).await;
    app.stop().await;
}

/// Enrolment on the console, in Chromium: the current password starts it (a wrong one shows
/// nothing); the account page then shows a QR code (inline SVG) and the key; a wrong code
/// leaves it off and shows the code again; the right one with the password turns it on and
/// shows the recovery codes once; then signing in needs a code. Screenshots at 390 and 1280 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_turns_on_two_factor_on_the_console() {
    let app = TestApp::spawn_public("").await;
    add_operator(&app.env, OWNER, "owner");
    let driver = start_chromedriver();
    let dir = screenshot_dir("console");
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, 390, profile.path()).await;
    sign_in(&client, &app).await;
    client.goto(&app.url("/admin/account")).await.unwrap();
    expect_text(&client, "#totp-off", "Off").await;
    shot(&client, &dir, "390-9-account-off").await;
    // The current password starts it: a wrong one shows nothing to scan.
    fill(&client, "#start-password", "not my password").await;
    click(&client, "form[action='/admin/account/totp/start'] button").await;
    expect_text(&client, "#flash", "password is not right").await;
    assert!(
        client.find(Locator::Css("#totp-qr")).await.is_err(),
        "no QR code without the password"
    );
    fill(&client, "#start-password", PASSWORD).await;
    click(&client, "form[action='/admin/account/totp/start'] button").await;
    expect_text(&client, "#flash", "Scan the code").await;
    let svg = client
        .find(Locator::Css("#totp-qr svg"))
        .await
        .expect("a QR code");
    let size = svg.rectangle().await.unwrap();
    assert!(size.2 >= 150.0, "QR width {}", size.2);
    shot(&client, &dir, "390-9-account-scan").await;
    let secret = client
        .find(Locator::Css("#totp-secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    fill(&client, "#confirm-totp", "000000").await;
    fill(&client, "#confirm-password", PASSWORD).await;
    click(&client, "form[action='/admin/account/totp/confirm'] button").await;
    expect_text(&client, "#flash", "not right").await;
    // With the password given, the code to scan is shown again.
    client
        .find(Locator::Css("#totp-qr svg"))
        .await
        .expect("the QR code again after a wrong code");
    assert_eq!(
        sqlx::query_scalar::<_, Option<i64>>("SELECT confirmed_at FROM operator_totp")
            .fetch_one(app.store.pool())
            .await
            .unwrap(),
        None,
        "a wrong code leaves it pending"
    );
    let r = attempt_login(&app, OWNER, PASSWORD).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "pending: the password alone still signs in"
    );
    let uri = app_uri(&app).await;
    assert!(uri.contains(&secret), "the page shows the stored secret");
    fill(&client, "#confirm-totp", &code_now(&uri)).await;
    fill(&client, "#confirm-password", PASSWORD).await;
    shot(&client, &dir, "390-9-account-confirm").await;
    click(&client, "form[action='/admin/account/totp/confirm'] button").await;
    expect_text(&client, "#recovery-codes", "-").await;
    let mut recovery = Vec::new();
    for el in client
        .find_all(Locator::Css("#recovery-codes li code"))
        .await
        .unwrap()
    {
        recovery.push(el.text().await.unwrap());
    }
    assert_eq!(recovery.len(), 10);
    shot(&client, &dir, "390-9-account-recovery-codes").await;
    // The codes are not shown again.
    client.goto(&app.url("/admin/account")).await.unwrap();
    expect_text(&client, "#totp-on", "10 recovery codes left").await;
    assert!(!client.source().await.unwrap().contains(&recovery[0]));
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow {overflow}"
    );
    client.close().await.unwrap();

    // Now the password alone does not sign in; a recovery code does, once.
    let r = attempt_login(&app, OWNER, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = attempt_login_with_code(&app, OWNER, PASSWORD, &recovery[0]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // At desktop width, signing in with the form's code field.
    let client = browser(&driver, 1280, tempfile::tempdir().unwrap().path()).await;
    client.goto(&app.url("/admin/login")).await.unwrap();
    fill(&client, "#email", OWNER).await;
    fill(&client, "#password", PASSWORD).await;
    fill(&client, "#totp", &recovery[1]).await;
    shot(&client, &dir, "1280-0-login-two-factor").await;
    click(&client, "button[type=submit]").await;
    expect_text(&client, "h1", "Dashboard").await;
    client.goto(&app.url("/admin/account")).await.unwrap();
    expect_text(&client, "#totp-on", "8 recovery codes left").await;
    shot(&client, &dir, "1280-9-account-on").await;
    // Off again (from the server): the page asks for the password to set it up.
    app.env.cli(&["operators", "totp", OWNER, "--disable"]).ok();
    client.goto(&app.url("/admin/account")).await.unwrap();
    expect_text(&client, "#totp-off", "Off").await;
    fill(&client, "#start-password", PASSWORD).await;
    click(&client, "form[action='/admin/account/totp/start'] button").await;
    expect_text(&client, "#flash", "Scan the code").await;
    shot(&client, &dir, "1280-9-account-scan").await;
    client.close().await.unwrap();
    app.stop().await;
}

/// The otpauth URI of the owner's stored secret, rebuilt the way an app would hold it (the
/// test has the app's secret key).
async fn app_uri(app: &TestApp) -> String {
    let (id, sealed): (i64, String) =
        sqlx::query_as("SELECT operator_id, secret_sealed FROM operator_totp")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    let secret = verdicts::operators::totp::unseal(&app.secret, id, &sealed).expect("opens");
    verdicts::operators::totp::otpauth_uri(&secret, "test", OWNER)
}

/// Posts the `/admin/reset` request form for `email` (with its double-submit token).
async fn ask_reset(app: &TestApp, email: &str) -> reqwest::Response {
    let page = app.get("/admin/reset").await;
    assert_eq!(page.status(), 200);
    let cookie = cookie_value(&set_cookie(&page, "verdicts_login_csrf").expect("a form cookie"));
    let token = csrf_in(&page.text().await.unwrap());
    app.client
        .post(app.url("/admin/reset"))
        .header("cookie", format!("verdicts_login_csrf={cookie}"))
        .form(&[("email", email), ("csrf_token", &token)])
        .send()
        .await
        .unwrap()
}

/// Follows a mailed link's form: GET it, then POST the new password (and code).
async fn follow_link(app: &TestApp, link: &str, password: &str, totp: &str) -> reqwest::Response {
    let page = app.client.get(link).send().await.unwrap();
    let cookie = set_cookie(&page, "verdicts_login_csrf").map(|c| cookie_value(&c));
    let status = page.status();
    let html = page.text().await.unwrap();
    if status != StatusCode::OK {
        return app.client.get(link).send().await.unwrap();
    }
    app.client
        .post(link)
        .header("cookie", format!("verdicts_login_csrf={}", cookie.unwrap()))
        .form(&[
            ("csrf_token", csrf_in(&html).as_str()),
            ("password", password),
            ("totp", totp),
        ])
        .send()
        .await
        .unwrap()
}

/// The page's text without the per-request form token (to compare two answers).
fn without_token(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    match html.find(marker) {
        Some(start) => {
            let start = start + marker.len();
            let end = start + html[start..].find('"').unwrap();
            format!("{}{}", &html[..start], &html[end..])
        }
        None => html.to_string(),
    }
}

/// `/admin/reset`: the same answer for an operator and an unknown address, one mail (to the
/// operator) with a link; opening the link changes nothing; a short password is refused and
/// keeps the link; the link sets a new password and signs in once; an expired link is dead;
/// a fourth request in the hour mails nothing; an operator with two-factor sign-in also needs
/// a code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailed_sign_in_link_works_once_and_tells_nothing() {
    let app = TestApp::spawn_public("").await;
    add_operator(&app.env, OWNER, "owner");
    let known = ask_reset(&app, OWNER).await;
    let unknown = ask_reset(&app, "stranger@example.org").await;
    assert_eq!(known.status(), 200);
    assert_eq!(unknown.status(), 200);
    let (known, unknown) = (known.text().await.unwrap(), unknown.text().await.unwrap());
    assert!(
        known.contains("If that address belongs to an operator"),
        "{known}"
    );
    assert_eq!(
        without_token(&known),
        without_token(&unknown),
        "the same answer"
    );
    let mails = app.outbox(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.outbox(1).await.len(),
        1,
        "no mail for the unknown address"
    );
    let mail = &mails[0];
    assert!(mail.contains(&format!("To: {OWNER}")), "{mail}");
    let prefix = app.url("/admin/reset/");
    let link = common::link_in(mail, &prefix).expect("a link");

    // What the operator sees (a browser opening the link uses nothing either).
    let dir = screenshot_dir("console");
    for (width, height) in [(390, 844), (1280, 800)] {
        for (name, url) in [
            ("reset-request", app.url("/admin/reset")),
            ("reset-link", link.clone()),
            ("login", app.url("/admin/login")),
        ] {
            let out = dir.join(format!("{width}-{name}.png"));
            // Chromium waits for this very server: not on the test's own thread.
            tokio::task::spawn_blocking(move || common::screenshot(&url, width, height, &out))
                .await
                .unwrap();
        }
    }
    // Opening it (a mail scanner would) uses nothing; a short password keeps it.
    let page = app.client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let r = follow_link(&app, &link, "short", "").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let new_password = "a brand new password 2026";
    let r = follow_link(&app, &link, new_password, "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/admin");
    assert!(set_cookie(&r, "verdicts_session").is_some());
    // Once.
    let r = follow_link(&app, &link, "another new password!", "").await;
    assert_eq!(r.status(), StatusCode::GONE);
    // The old password is gone, the new one works.
    assert_eq!(
        attempt_login(&app, OWNER, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt_login(&app, OWNER, new_password).await.status(),
        StatusCode::SEE_OTHER
    );

    // An expired link is dead.
    ask_reset(&app, OWNER).await;
    let mails = app.outbox(2).await;
    let link2 = common::link_in(&mails[1], &prefix).unwrap();
    sqlx::query("UPDATE operator_reset_tokens SET expires_at = 0 WHERE used_at IS NULL")
        .execute(app.store.pool())
        .await
        .unwrap();
    assert_eq!(
        app.client.get(&link2).send().await.unwrap().status(),
        StatusCode::GONE
    );

    // Three links an hour: the fourth request answers the same and mails nothing.
    let third = ask_reset(&app, OWNER).await;
    assert_eq!(third.status(), 200);
    app.outbox(3).await;
    let fourth = ask_reset(&app, OWNER).await;
    assert_eq!(fourth.status(), 200);
    assert_eq!(
        without_token(&fourth.text().await.unwrap()),
        without_token(&unknown)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.outbox(3).await.len(), 3);

    // With two-factor sign-in, the link alone does not sign in.
    sqlx::query("DELETE FROM operator_reset_tokens")
        .execute(app.store.pool())
        .await
        .unwrap();
    let out = app.env.cli(&["--json", "operators", "totp", OWNER]);
    let enrolment: Value = serde_json::from_str(out.ok().trim()).unwrap();
    let uri = enrolment["otpauth_uri"].as_str().unwrap().to_string();
    ask_reset(&app, OWNER).await;
    let mails = app.outbox(4).await;
    let link4 = common::link_in(&mails[3], &prefix).unwrap();
    let page = app
        .client
        .get(&link4)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"totp\""), "the form asks for the code");
    let r = follow_link(&app, &link4, "yet another password!", "").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no code");
    assert!(set_cookie(&r, "verdicts_session").is_none());
    let r = follow_link(&app, &link4, "yet another password!", &code_now(&uri)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "with the code");
    app.stop().await;
}

/// Requests for sign-in links count in the login throttle: the eleventh for one address
/// within a minute is 429 with `Retry-After`, whether or not the address is an operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_link_requests_are_throttled() {
    let app = TestApp::spawn("").await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let r = ask_reset(&app, "stranger@example.org").await;
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..10], [200; 10]);
    assert_eq!(statuses[10], 429);
    app.stop().await;
}

/// The operator's two-factor row: `None` when off, `Some(confirmed)` otherwise.
async fn totp_row(app: &TestApp) -> Option<bool> {
    sqlx::query_scalar::<_, Option<i64>>("SELECT confirmed_at FROM operator_totp")
        .fetch_optional(app.store.pool())
        .await
        .unwrap()
        .map(|c| c.is_some())
}

/// The one-shot message a redirect leaves for the next page (`kind:text`).
fn flash_of(r: &reqwest::Response) -> Option<String> {
    use base64::Engine as _;
    let value = cookie_value(&set_cookie(r, "verdicts_flash")?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Issue 26 (audit): turning two-factor sign-in off on the console took any number of guessed
/// codes from a session. Now each wrong code counts in the failed-login throttle like a
/// sign-in: after 10 wrong codes even the right one gets 429 with `Retry-After`, and two-factor
/// sign-in stays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_wrong_codes_to_turn_off_two_factor_get_429() {
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");
    let out = app.env.cli(&["--json", "operators", "totp", OWNER]);
    let enrolment: Value = serde_json::from_str(out.ok().trim()).unwrap();
    let uri = enrolment["otpauth_uri"].as_str().unwrap().to_string();
    let recovery = enrolment["recovery_codes"][0].as_str().unwrap().to_string();
    // Signed in with a recovery code: the app's current code stays unused.
    let r = attempt_login_with_code(&app, OWNER, PASSWORD, &recovery).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = cookie_value(&set_cookie(&r, "verdicts_session").unwrap());
    let mut s = Session {
        cookie,
        csrf: String::new(),
    };
    s.csrf = csrf_in(
        &s.get(&app, "/admin/account")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let code = code_now(&uri);
    let wrong = format!(
        "{:06}",
        (code.parse::<u32>().unwrap() + 500_000) % 1_000_000
    );
    for i in 0..10 {
        let r = s
            .post(
                &app,
                "/admin/account/totp/disable",
                &[("csrf_token", s.csrf.as_str()), ("totp", wrong.as_str())],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "wrong code {i}");
        assert!(
            flash_of(&r).is_some_and(|f| f.starts_with("error:That code is not right")),
            "{:?}",
            flash_of(&r)
        );
    }
    let r = s
        .post(
            &app,
            "/admin/account/totp/disable",
            &[("csrf_token", s.csrf.as_str()), ("totp", code.as_str())],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=61).contains(&retry_after(&r)), "{}", retry_after(&r));
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Too many wrong passwords or codes")
    );
    assert_eq!(
        totp_row(&app).await,
        Some(true),
        "two-factor sign-in stays on"
    );
    app.stop().await;
}

/// Issue 26 (audit): a session alone could enrol two-factor sign-in — a stolen cookie could
/// enrol the thief's authenticator and lock the operator out. Now starting and confirming take
/// the current password: without it or with a wrong one nothing is made and no secret is
/// shown; a plain GET of a pending enrolment shows no secret either; a wrong code with the
/// right password shows the code again (422); the right password and code turn it on. The
/// tries count in the login throttle: the tenth failure makes the right password wait (429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_two_factor_takes_the_current_password() {
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");
    let s = login(&app, OWNER).await;
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let mut form: Vec<(&str, &str)> = vec![("csrf_token", s.csrf.as_str())];
        form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
        let request = s.post(&app, path, &form);
        async move { request.send().await.unwrap() }
    };
    const START: &str = "/admin/account/totp/start";
    const CONFIRM: &str = "/admin/account/totp/confirm";
    // No password, a wrong one: refused, nothing made, nothing to scan.
    for password in [None, Some("wrong password!")] {
        let fields = password
            .map(|p| vec![("password", p.to_string())])
            .unwrap_or_default();
        let r = post(START, fields).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{password:?}");
        assert_eq!(
            flash_of(&r).as_deref(),
            Some("error:That password is not right; nothing was changed.")
        );
        assert_eq!(totp_row(&app).await, None, "{password:?}: nothing made");
        let page = s
            .get(&app, "/admin/account")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !page.contains("otpauth://") && !page.contains("totp-qr"),
            "{page}"
        );
    }
    // The right password: pending, and the secret shown in that answer only.
    let r = post(START, vec![("password", PASSWORD.to_string())]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"totp-qr\""), "{page}");
    assert_eq!(totp_row(&app).await, Some(false), "pending");
    let uri = app_uri(&app).await;
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap()
        .to_string();
    assert!(page.contains(&secret));
    let again = s
        .get(&app, "/admin/account")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(again.contains("totp-pending"), "{again}");
    assert!(
        !again.contains(&secret) && !again.contains("totp-qr"),
        "a GET shows no secret"
    );
    // Confirming: the right code without the password, or with a wrong one, stays pending.
    let code = code_now(&uri);
    for password in ["", "wrong password!"] {
        let r = post(
            CONFIRM,
            vec![("password", password.to_string()), ("totp", code.clone())],
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{password:?}");
        assert_eq!(
            totp_row(&app).await,
            Some(false),
            "{password:?}: still pending"
        );
    }
    // The right password and a wrong code: the code to scan again.
    let wrong = format!(
        "{:06}",
        (code.parse::<u32>().unwrap() + 500_000) % 1_000_000
    );
    let r = post(
        CONFIRM,
        vec![("password", PASSWORD.to_string()), ("totp", wrong)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("not right") && page.contains(&secret),
        "{page}"
    );
    assert_eq!(totp_row(&app).await, Some(false));
    // Both right: on, recovery codes shown.
    let r = post(
        CONFIRM,
        vec![("password", PASSWORD.to_string()), ("totp", code)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("id=\"recovery-codes\""));
    assert_eq!(totp_row(&app).await, Some(true));
    // Five failures so far; five more wrong passwords, then the right one waits.
    for _ in 0..5 {
        let r = post(START, vec![("password", "wrong password!".to_string())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    let r = post(START, vec![("password", PASSWORD.to_string())]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=61).contains(&retry_after(&r)));
    app.stop().await;
}

/// Issue 26 (audit): following one sign-in link, or setting a password any other way, left
/// the operator's other links working — an older mail could undo the new password. Now a
/// followed link uses up the others in the same transaction, and so does `operators passwd`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_ends_every_other_sign_in_link() {
    let app = TestApp::spawn_public("").await;
    add_operator(&app.env, OWNER, "owner");
    let prefix = app.url("/admin/reset/");
    ask_reset(&app, OWNER).await;
    let first = common::link_in(&app.outbox(1).await[0], &prefix).expect("a link");
    ask_reset(&app, OWNER).await;
    let second = common::link_in(&app.outbox(2).await[1], &prefix).expect("a link");
    assert_ne!(first, second);
    assert_eq!(app.client.get(&second).send().await.unwrap().status(), 200);
    let r = follow_link(&app, &first, "a brand new password 2026", "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = follow_link(&app, &second, "the attacker's password!", "").await;
    assert_eq!(r.status(), StatusCode::GONE, "the other link is used up");
    assert_eq!(
        attempt_login(&app, OWNER, "a brand new password 2026")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );

    // `operators passwd` on the server: a link mailed before is dead too.
    ask_reset(&app, OWNER).await;
    let third = common::link_in(&app.outbox(3).await[2], &prefix).expect("a link");
    assert_eq!(app.client.get(&third).send().await.unwrap().status(), 200);
    cli_with_stdin(
        &app.env,
        &["operators", "passwd", OWNER, "--password-stdin"],
        "set on the server 2026\n",
    )
    .ok();
    assert_eq!(
        app.client.get(&third).send().await.unwrap().status(),
        StatusCode::GONE
    );
    let r = follow_link(&app, &third, "the attacker's password!", "").await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(
        attempt_login(&app, OWNER, "set on the server 2026")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}

/// The subscribers list shows who is paused (until when) and how long a pending reader has
/// waited since signing up, and which categories they chose; the reader's page shows the same
/// and a change of address or a repermission waiting for an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscribers_list_shows_pauses_and_pending_age() {
    let app = TestApp::spawn("").await;
    add_operator(&app.env, OWNER, "owner");
    seed(&app, 2).await;
    let r = app
        .client
        .post(app.url("/subscribe"))
        .form(&[("email", "waiting@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let now = chrono::Utc::now().timestamp_millis();
    let day = 24 * 3600 * 1000_i64;
    sqlx::query("UPDATE subscribers SET paused_until = $1 WHERE email = 'reader00@example.org'")
        .bind(now + 20 * day)
        .execute(app.store.pool())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE subscribers SET last_confirmation_sent_at = $1 WHERE email = 'waiting@example.org'",
    )
    .bind(now - 2 * day - 3 * 3600 * 1000 - 60_000)
    .execute(app.store.pool())
    .await
    .unwrap();
    // A pause that has passed shows nothing.
    sqlx::query("UPDATE subscribers SET paused_until = $1 WHERE email = 'reader01@example.org'")
        .bind(now - day)
        .execute(app.store.pool())
        .await
        .unwrap();
    let session = login(&app, OWNER).await;
    let html = session
        .get(&app, "/admin/subscribers")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = |email: &str| {
        let at = html.find(&format!("<td>{email}</td>")).expect(email);
        html[at..at + html[at..].find("</tr>").unwrap()].to_string()
    };
    let paused = chrono::DateTime::from_timestamp_millis(now + 20 * day)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        row("reader00@example.org").contains(&format!("paused until {paused}")),
        "{}",
        row("reader00@example.org")
    );
    assert!(!row("reader01@example.org").contains("paused"));
    assert!(
        row("waiting@example.org").contains("pending for 2 d 3 h"),
        "{}",
        row("waiting@example.org")
    );

    // Categories, a change of address waiting for its link and an unanswered repermission:
    // on the list and on the reader's page.
    let id = |email: &'static str| {
        let store = app.store.clone();
        async move {
            store
                .get_subscriber_by_email(
                    &verdicts::subscribers::SubscriberEmail::parse(email).unwrap(),
                )
                .await
                .unwrap()
                .unwrap()
                .id
        }
    };
    let (r0, r1, waiting) = (
        id("reader00@example.org").await,
        id("reader01@example.org").await,
        id("waiting@example.org").await,
    );
    assert!(
        app.store
            .set_subscriber_categories(r0, &["Chat".into(), "Image".into()])
            .await
            .unwrap()
    );
    sqlx::query(
        "INSERT INTO email_changes (token_hash, subscriber_id, new_email, created_at, expires_at)
         VALUES ('h', $1, 'moved@example.org', $2, $3)",
    )
    .bind(r0)
    .bind(now)
    .bind(now + day)
    .execute(app.store.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE subscribers SET repermission_deadline = $1 WHERE id = $2")
        .bind(now + 14 * day)
        .bind(r0)
        .execute(app.store.pool())
        .await
        .unwrap();
    let html = session
        .get(&app, "/admin/subscribers")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = |email: &str| {
        let at = html.find(&format!("<td>{email}</td>")).expect(email);
        html[at..at + html[at..].find("</tr>").unwrap()].to_string()
    };
    assert!(
        row("reader00@example.org").contains(&format!("paused until {paused}"))
            && row("reader00@example.org").contains(" · only Chat, Image</td>"),
        "{}",
        row("reader00@example.org")
    );
    assert!(!row("reader01@example.org").contains("only"));
    let page = |id: i64| {
        let (session, app) = (&session, &app);
        async move {
            let r = session
                .get(app, &format!("/admin/subscribers/{id}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let fact = |html: &str, id: &str| {
        let at = html.find(&format!("<dd id=\"{id}\">")).expect(id) + id.len() + 10;
        html[at..at + html[at..].find("</dd>").unwrap()].to_string()
    };
    let deadline = chrono::DateTime::from_timestamp_millis(now + 14 * day)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let html = page(r0).await;
    assert!(
        fact(&html, "paused").starts_with(&format!("until {paused}")),
        "{html}"
    );
    assert_eq!(fact(&html, "pending"), "—");
    assert_eq!(fact(&html, "categories"), "Chat, Image");
    assert_eq!(
        fact(&html, "new-address"),
        "moved@example.org, not confirmed yet"
    );
    assert!(
        fact(&html, "asked").starts_with(&format!("still want it? unanswered; lapses {deadline}")),
        "{html}"
    );
    let html = page(r1).await;
    assert_eq!(
        ["paused", "pending", "categories", "new-address", "asked"].map(|f| fact(&html, f)),
        ["—", "—", "everything", "—", "—"]
    );
    let html = page(waiting).await;
    assert_eq!(fact(&html, "pending"), "for 2 d 3 h");
}

/// A DSN for `rcpt` quoting the message we sent (its Message-ID ties it to the delivery).
fn hard_bounce_for(rcpt: &str, original: &str) -> String {
    format!(
        "Return-Path: <>\r\nDate: Mon, 23 Nov 2026 09:00:10 +0000\r\n\
         From: MAILER-DAEMON@relay.example.net (Mail Delivery System)\r\nTo: verdicts@shiporskip.example\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMessage-Id: <dsn-1@relay.example.net>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\n<{rcpt}>: 550 5.1.1 User unknown\r\n\r\n\
         --b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example.net\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n\
         --b1\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\n--b1--\r\n"
    )
}

/// The rows of the table `id` in `html`, each as its cells' text (tags stripped).
fn table_rows(html: &str, id: &str) -> Vec<Vec<String>> {
    let Some(start) = html.find(&format!("id=\"{id}\"")) else {
        return Vec::new();
    };
    let table = &html[start..];
    let table = &table[..table.find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    let strip = |cell: &str| {
        let mut out = String::new();
        let mut in_tag = false;
        for c in cell.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    body.split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    strip(&format!(
                        "<td{}",
                        &cell[..cell.find("</td>").unwrap_or(cell.len())]
                    ))
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_tells_a_readers_whole_story() {
    let app = TestApp::spawn_public("").await;
    seed(&app, 3).await;
    add_operator(&app.env, OWNER, "owner");
    let s = login(&app, OWNER).await;
    let get = |path: &'static str| {
        let (s, app) = (&s, &app);
        async move {
            let r = s.get(app, path).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.text().await.unwrap()
        }
    };

    // The dashboard: subscribers by status, what waits for the next issue, the log in the nav.
    let page = get("/admin").await;
    let counts = &page[page.find("id=\"subscriber-counts\"").expect("counts")..];
    assert!(
        counts.contains("confirmed</a> <strong>3</strong>"),
        "{counts}"
    );
    assert!(counts.contains("bounced</a> <strong>0</strong>"));
    assert!(page.contains("2 comparisons in no issue yet"), "{page}");
    assert!(page.contains("Alpha vs Beta") && page.contains("Gamma vs Delta"));
    assert!(
        page.contains("<a href=\"/admin/log\""),
        "the log is in the navigation"
    );
    assert!(
        page.contains("action=\"/admin/issues\""),
        "something to create an issue from"
    );
    let id = create_issue(&app).await;
    let page = get("/admin").await;
    assert!(page.contains("Nothing waiting"), "{page}");
    assert!(
        !page.contains("action=\"/admin/issues\""),
        "no create form with nothing to put in an issue"
    );

    // Sent to the outbox; nothing failed, so no "Retry failed".
    let r = s
        .post(
            &app,
            "/admin/issues/1/send",
            &[("csrf_token", &s.csrf), ("confirm_recipients", "3")],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let deadline = Instant::now() + Duration::from_secs(30);
    while issue_status(&app.store, id).await != IssueStatus::Sent {
        assert!(Instant::now() < deadline, "the send did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = get("/admin/issues/1").await;
    assert!(!page.contains("id=\"do-retry-failed\""), "nothing failed");

    // reader01's message comes back as a hard bounce.
    let mails = app.outbox(3).await;
    let original = mails
        .iter()
        .find(|m| m.contains("To: reader01@example.org"))
        .expect("reader01's issue");
    let dsn = app.env.write(
        "dsn.eml",
        &hard_bounce_for("reader01@example.org", original),
    );
    app.env
        .cli(&["--json", "bounces", "import", dsn.to_str().unwrap()])
        .ok();
    let (kind, code, matched, source): (String, Option<String>, Option<String>, String) =
        sqlx::query_as("SELECT kind, status_code, matched_by, source FROM bounce_events")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(kind, "hard");

    // The bounces page: when, kind, code and reason, issue, how it was matched, from where.
    let page = get("/admin/bounces").await;
    let rows = table_rows(&page, "bounce-events");
    assert_eq!(rows.len(), 1, "{page}");
    let row = &rows[0];
    assert_eq!(row[1], "hard");
    assert_eq!(row[2], "reader01@example.org");
    assert_eq!(row[3], code.clone().unwrap_or_default());
    assert!(row[4].contains("User unknown"), "{row:?}");
    assert_eq!(row[5], "#1 · 2026-W47");
    assert_eq!(row[6], matched.clone().unwrap_or_default());
    assert_eq!(row[7], source);
    assert!(page.contains("href=\"/admin/issues/1\""));
    let reader = app
        .store
        .get_subscriber_by_email(&SubscriberEmail::parse("reader01@example.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(page.contains(&format!("href=\"/admin/subscribers/{}\"", reader.id)));

    // The reader's page: every consent event, delivery and report, with times and sources.
    let path: &'static str =
        Box::leak(format!("/admin/subscribers/{}", reader.id).into_boxed_str());
    let page = get(path).await;
    assert!(page.contains("<h1>reader01@example.org</h1>"), "{page}");
    let history = table_rows(&page, "history");
    let count = |sql: &'static str| {
        let pool = app.store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(reader.id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let consents =
        count("SELECT CAST(COUNT(*) AS BIGINT) FROM consents WHERE subscriber_id = $1").await;
    let deliveries =
        count("SELECT CAST(COUNT(*) AS BIGINT) FROM deliveries WHERE subscriber_id = $1").await;
    let bounces =
        count("SELECT CAST(COUNT(*) AS BIGINT) FROM bounce_events WHERE subscriber_id = $1").await;
    assert_eq!((deliveries, bounces), (1, 1));
    let arrival = if consents == 0 { 1 } else { 0 };
    assert_eq!(
        history.len() as i64,
        consents + arrival + deliveries + bounces,
        "{history:?}"
    );
    let what: Vec<&str> = history.iter().map(|r| r[1].as_str()).collect();
    assert!(what.contains(&"Issue #1 · 2026-W47 sent"), "{what:?}");
    assert!(
        what.contains(&"Hard bounce (issue #1 · 2026-W47)"),
        "{what:?}"
    );
    let bounce_row = history
        .iter()
        .find(|r| r[1].starts_with("Hard bounce"))
        .unwrap();
    assert_eq!(bounce_row[2], source);
    assert!(bounce_row[3].contains("User unknown"), "{bounce_row:?}");
    // Oldest first.
    let times: Vec<&str> = history.iter().map(|r| r[0].as_str()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    assert!(page.contains("bounced"), "the reader's status");

    // No such reader: a 404 page, not an error.
    for path in ["/admin/subscribers/999999", "/admin/subscribers/nobody"] {
        let r = s.get(&app, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // What the operator sees, at phone width and on a desktop.
    let driver = start_chromedriver();
    let dir = screenshot_dir("console");
    for width in [390, 1280] {
        let profile = tempfile::tempdir().unwrap();
        let client = browser(&driver, width, profile.path()).await;
        sign_in(&client, &app).await;
        shot(&client, &dir, &format!("{width}-day-dashboard")).await;
        for (name, path, heading) in [
            ("bounces", "/admin/bounces", "Bounces and failures"),
            ("reader", path, "reader01@example.org"),
            ("log", "/admin/log", "Operator log"),
        ] {
            client.goto(&app.url(path)).await.unwrap();
            expect_text(&client, "h1", heading).await;
            shot(&client, &dir, &format!("{width}-day-{name}")).await;
        }
        client.close().await.unwrap();
    }
    println!("screenshots of the console in {}", dir.display());
    app.stop().await;
}
