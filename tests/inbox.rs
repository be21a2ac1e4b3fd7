//! No accidental sends, over the command line, the admin API and the console (HTTP and
//! Chromium): pre-send checks and their `force`, the console's recipient confirmation, no issue
//! for a future week, no issue for a week with nothing new; and the doctor's report at
//! `GET /api/doctor` and `/admin/deliverability`. Both databases.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::browser::{browser, shot, start_chromedriver};
use common::{TestApp, TestEnv, comparison_json, screenshot_dir};
use fantoccini::Locator;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use verdicts::issues::IssueStatus;

const OWNER: &str = "owner@shiporskip.example";
const PASSWORD: &str = "correct horse battery staple";

fn add_owner(env: &TestEnv) {
    let mut child = env
        .command()
        .args([
            "operators",
            "add",
            OWNER,
            "--role",
            "owner",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    common::CliOutput::from(child.wait_with_output().unwrap()).ok();
}

/// Comparisons of week 2026-W47 and `n` confirmed readers.
async fn seed(app: &TestApp, n: usize) {
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
    common::add_confirmed(&app.store, n, "reader", 2).await;
}

async fn create(app: &TestApp, week: &str) -> (StatusCode, Value) {
    let r = app
        .admin(Method::POST, "/api/issues")
        .json(&json!({ "week": week }))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn issue_count(app: &TestApp) -> usize {
    app.store.list_issues().await.unwrap().len()
}

/// Comparisons none of which is in an issue yet.
async fn unissued(app: &TestApp) -> usize {
    app.store
        .unissued_comparisons(chrono::Utc::now() + chrono::Duration::days(3650), 100)
        .await
        .unwrap()
        .len()
}

/// The ISO week after the current one.
fn next_week() -> String {
    let next = chrono::Utc::now() + chrono::Duration::days(7);
    let w = chrono::Datelike::iso_week(&next);
    format!("{}-W{:02}", w.year(), w.week())
}

#[tokio::test]
async fn no_issue_for_a_future_week_through_cli_api_and_console() {
    let app = TestApp::spawn("").await;
    seed(&app, 2).await;
    // A comparison published now would be frozen into a future week's issue.
    let future = next_week();
    let (status, body) = create(&app, &future).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("after the current week"),
        "{body}"
    );
    let (status, _) = create(&app, "9999-W52").await;
    assert_eq!(status, 422);
    let out = app.env.cli(&["issue", "create", "--week", "2099-W11"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("week: 2099-W11 is after the current week"),
        "{}",
        out.stderr
    );
    assert_eq!(issue_count(&app).await, 0, "nothing frozen");
    assert_eq!(unissued(&app).await, 2, "every comparison still free");

    // The console: an error page, nothing frozen.
    add_owner(&app.env);
    let session = login(&app).await;
    let r = session
        .post(&app, "/admin/issues", &[("week", &future)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("after the current week"));
    assert_eq!(issue_count(&app).await, 0);

    // The real week still gets both.
    let (status, body) = create(&app, "2026-W47").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["issue"]["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_week_with_nothing_new_leaves_no_issue_through_cli_api_and_console() {
    let app = TestApp::spawn("").await;
    seed(&app, 1).await;
    let out = app.env.cli(&["issue", "create", "--week", "2026-W40"]);
    let text = out.ok();
    assert!(
        text.contains("2026-W40 has nothing new: no issue written"),
        "{text}"
    );
    let out = app
        .env
        .cli(&["--json", "issue", "create", "--week", "2026-W41"]);
    let json: Value = serde_json::from_str(out.ok().trim()).unwrap();
    assert_eq!(json["nothing_new"], true);
    assert!(json["issue"].is_null());
    let (status, body) = create(&app, "2026-W42").await;
    assert_eq!(status, 200);
    assert_eq!(body["nothing_new"], true, "{body}");
    add_owner(&app.env);
    let session = login(&app).await;
    let r = session
        .post(&app, "/admin/issues", &[("week", "2026-W43")])
        .send()
        .await
        .unwrap();
    let page = follow(&app, &session, r).await;
    assert!(
        page.contains("2026-W43 has no new comparisons: no issue was made"),
        "{page}"
    );
    assert_eq!(issue_count(&app).await, 0, "no empty issue left behind");
    let listed = app.env.cli(&["issue", "list"]).ok().to_string();
    assert!(!listed.contains("empty"), "{listed}");
}

/// A signed-in console session over plain HTTP.
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
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("csrf_token", &self.csrf));
        app.client
            .post(app.url(path))
            .header("cookie", format!("verdicts_session={}", self.cookie))
            .form(&fields)
    }
}

fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("a csrf_token field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

fn cookie(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v[name.len() + 1..].split(';').next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

/// Follows a console redirect with its flash cookie; the page's HTML.
async fn follow(app: &TestApp, session: &Session, r: reqwest::Response) -> String {
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let flash = cookie(&r, "verdicts_flash");
    app.client
        .get(app.url(&to))
        .header(
            "cookie",
            format!(
                "verdicts_session={}; verdicts_flash={flash}",
                session.cookie
            ),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn login(app: &TestApp) -> Session {
    let page = app.get("/admin/login").await;
    let login_cookie = cookie(&page, "verdicts_login_csrf");
    let token = csrf_in(&page.text().await.unwrap());
    let r = app
        .client
        .post(app.url("/admin/login"))
        .header("cookie", format!("verdicts_login_csrf={login_cookie}"))
        .form(&[
            ("email", OWNER),
            ("password", PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let mut session = Session {
        cookie: cookie(&r, "verdicts_session"),
        csrf: String::new(),
    };
    let html = session
        .get(app, "/admin")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    session.csrf = csrf_in(&html);
    session
}
