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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_with_nothing_new_leaves_no_issue_through_cli_api_and_console() {
    let app = TestApp::spawn("").await;
    seed(&app, 1).await;
    let out = app.env.cli(&["issue", "create", "--week", "2026-W40"]);
    let text = out.ok();
    assert!(
        text.contains("2026-W40 has nothing new: no issue written"),
        "{text}"
    );
    // What was looked at, and what to do about it.
    assert!(
        text.contains("no comparison published before 2026-10-05 00:00 UTC waits for an issue")
            && text.contains("verdicts comparisons import"),
        "{text}"
    );
    // `issue send` with no issue says that nothing went out, and how to name one.
    let out = app.env.cli(&["issue", "send"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("no issue given, nothing was sent")
            && out.stderr.contains("verdicts issue list"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
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

/// An app with `n` confirmed readers and issue #1 (2026-W47) ready; with `broken`, its frozen
/// HTML carries a relative link (the `links` check fails).
async fn ready_issue(n: usize, broken: bool) -> (TestApp, i64) {
    let app = TestApp::spawn("").await;
    seed(&app, n).await;
    let (status, body) = create(&app, "2026-W47").await;
    assert_eq!(status, 201, "{body}");
    let id = body["issue"]["id"].as_i64().unwrap();
    if broken {
        sqlx::query("UPDATE issues SET html = html || $1 WHERE id = $2")
            .bind("<p><a href=\"/relative-page\">our archive</a></p>")
            .bind(id)
            .execute(app.store.pool())
            .await
            .unwrap();
    }
    (app, id)
}

async fn status(app: &TestApp, id: i64) -> IssueStatus {
    app.store.get_issue(id).await.unwrap().unwrap().status
}

async fn deliveries(app: &TestApp, id: i64) -> i64 {
    app.store.delivery_counts(id).await.unwrap().total
}

fn checks_of(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn status_of<'a>(checks: &'a [Value], name: &str) -> &'a str {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} in {checks:?}"))["status"]
        .as_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_check_reports_every_check_of_a_frozen_issue() {
    let (app, id) = ready_issue(1, false).await;
    let out = app.env.cli(&["--json", "issue", "check", "1"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let checks = checks_of(&out.stdout);
    for name in [
        "html_size",
        "links",
        "images",
        "text_part",
        "list_unsubscribe",
        "subject",
        "spamassassin",
    ] {
        assert_ne!(status_of(&checks, name), "fail", "{checks:?}");
    }
    // The test settings' public_url is plain http: its links and List-Unsubscribe warn.
    assert_eq!(status_of(&checks, "links"), "warn");
    assert_eq!(status_of(&checks, "list_unsubscribe"), "warn");
    let sa = checks
        .iter()
        .find(|c| c["check"] == "spamassassin")
        .unwrap();
    assert!(sa["detail"].as_str().unwrap().contains("score"), "{sa}");
    // The same over the API; a checked issue is unchanged.
    let r = app
        .admin(Method::GET, "/api/issues/1/checks")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(status(&app, id).await, IssueStatus::Ready);
    // An empty week or a missing issue: exit 2.
    let out = app.env.cli(&["issue", "check", "7"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_refuses_the_send_naming_it_until_forced_over_cli_and_api() {
    let (app, id) = ready_issue(3, true).await;
    let out = app.env.cli(&["issue", "check", "1"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("fail  links"), "{}", out.stdout);
    assert!(out.stdout.contains("/relative-page"), "{}", out.stdout);
    assert!(
        out.stderr.contains("1 check(s) failed: links"),
        "{}",
        out.stderr
    );

    // CLI: refused, exit 2, nothing changes.
    let out = app.env.cli(&["issue", "send", "1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("the pre-send check links failed"),
        "{}",
        out.stderr
    );
    assert_eq!(status(&app, id).await, IssueStatus::Ready);
    assert_eq!(deliveries(&app, id).await, 0);

    // API: 422 naming the check, nothing changes; then forced.
    let r = app
        .admin(Method::POST, "/api/issues/1/send")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(body.contains("links"), "{body}");
    assert_eq!(status(&app, id).await, IssueStatus::Ready);
    assert_eq!(deliveries(&app, id).await, 0);
    let r = app
        .admin(Method::POST, "/api/issues/1/send")
        .json(&json!({ "force": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(deliveries(&app, id).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_a_failing_issue_with_force() {
    let (app, id) = ready_issue(2, true).await;
    let out = app.env.cli(&["issue", "send", "1", "--force"]);
    let text = out.ok();
    assert!(text.contains("2 sent, 0 failed"), "{text}");
    assert_eq!(status(&app, id).await, IssueStatus::Sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_send_needs_the_right_recipient_count_and_force_over_http() {
    let (app, id) = ready_issue(3, false).await;
    add_owner(&app.env);
    let session = login(&app).await;
    let page = session
        .get(&app, "/admin/issues/1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("This issue will go to <strong>3</strong> recipients"),
        "{page}"
    );
    assert!(page.contains("id=\"confirm_recipients\""));
    for (form, why) in [
        (vec![], "type the number of recipients"),
        (
            vec![("confirm_recipients", "2")],
            "would go to 3 recipients, not 2",
        ),
        (vec![("confirm_recipients", "three")], "is not a number"),
    ] {
        let r = session
            .post(&app, "/admin/issues/1/send", &form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{form:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains(why), "{why}: {html}");
        assert_eq!(status(&app, id).await, IssueStatus::Ready);
        assert_eq!(deliveries(&app, id).await, 0);
    }
    // A reader joins after the page was shown: the old number no longer sends.
    common::add_confirmed(&app.store, 1, "late", 2).await;
    let r = session
        .post(&app, "/admin/issues/1/send", &[("confirm_recipients", "3")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(deliveries(&app, id).await, 0);
    let r = session
        .post(&app, "/admin/issues/1/send", &[("confirm_recipients", "4")])
        .send()
        .await
        .unwrap();
    let html = follow(&app, &session, r).await;
    assert!(html.contains("sending to 4 recipients"), "{html}");
    assert_eq!(deliveries(&app, id).await, 4);

    // A failing check: refused naming it, then sent with the box ticked.
    let (app, id) = ready_issue(2, true).await;
    add_owner(&app.env);
    let session = login(&app).await;
    let r = session
        .post(&app, "/admin/issues/1/send", &[("confirm_recipients", "2")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("the pre-send check links failed"), "{html}");
    assert_eq!(deliveries(&app, id).await, 0);
    let r = session
        .post(
            &app,
            "/admin/issues/1/send",
            &[("confirm_recipients", "2"), ("force", "on")],
        )
        .send()
        .await
        .unwrap();
    let html = follow(&app, &session, r).await;
    assert!(html.contains("sending to 2 recipients"), "{html}");
    assert_eq!(deliveries(&app, id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_report_is_at_the_api_and_on_the_console() {
    let app = TestApp::spawn("[dns]\nnameservers = [\"127.0.0.1:9\"]\ntimeout = \"300ms\"\n").await;
    let r = app.get("/api/doctor").await;
    assert_eq!(r.status(), 401, "the admin token is required");
    let r = app.admin(Method::GET, "/api/doctor").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ok"], false);
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for name in [
        "spf",
        "dkim",
        "dmarc",
        "return_path",
        "smtp",
        "public_url",
        "site",
        "database",
        "secret_key",
    ] {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }
    assert!(body["failed"].as_array().unwrap().contains(&json!("dkim")));
    add_owner(&app.env);
    let session = login(&app).await;
    let page = session
        .get(&app, "/admin/deliverability")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("href=\"/admin/deliverability\" aria-current=\"page\""),
        "in the nav"
    );
    assert!(html.contains("class=\"check-dkim\""));
    assert!(html.contains("verdicts dkim keygen"), "the fix is shown");
    assert!(html.contains("checks failed"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_confirms_a_send_in_a_browser() {
    // Four readers, one paused: the form states 3, and the one skipped apart.
    let (app, id) = ready_issue(4, false).await;
    pause_one(&app).await;
    add_owner(&app.env);
    let driver = start_chromedriver();
    let dir = screenshot_dir("inbox");
    for width in [1280, 390] {
        let profile = tempfile::tempdir().unwrap();
        let client = browser(&driver, width, profile.path()).await;
        client.goto(&app.url("/admin")).await.unwrap();
        fill(&client, "#email", OWNER).await;
        fill(&client, "#password", PASSWORD).await;
        click(&client, "button[type=submit]").await;
        wait_for(&client, "h1", "Dashboard").await;
        client
            .goto(&app.url("/admin/deliverability"))
            .await
            .unwrap();
        wait_for(&client, "h1", "Deliverability").await;
        wait_for(&client, "#summary", "failed").await;
        shot(&client, &dir, &format!("{width}-deliverability")).await;
        client.goto(&app.url("/admin/issues/1")).await.unwrap();
        wait_for(&client, "#recipients", "will go to 3 recipients").await;
        wait_for(
            &client,
            "#skipped",
            "1 paused or without a matching category is skipped",
        )
        .await;
        client
            .execute(
                "document.getElementById('actions').scrollIntoView()",
                vec![],
            )
            .await
            .unwrap();
        shot(&client, &dir, &format!("{width}-send-form")).await;
        if width == 390 {
            // Without a number the browser does not submit; a wrong one is refused.
            click(&client, "#do-send").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(status(&app, id).await, IssueStatus::Ready);
            fill(&client, "#confirm_recipients", "5").await;
            click(&client, "#do-send").await;
            wait_for(&client, "body", "would go to 3 recipients, not 5").await;
            assert_eq!(status(&app, id).await, IssueStatus::Ready);
            assert_eq!(deliveries(&app, id).await, 0);
            client.goto(&app.url("/admin/issues/1")).await.unwrap();
            fill(&client, "#confirm_recipients", "3").await;
            click(&client, "#do-send").await;
            wait_for(&client, "#flash", "sending to 3 recipients").await;
            let counts = app.store.delivery_counts(id).await.unwrap();
            assert_eq!((counts.total - counts.skipped, counts.skipped), (3, 1));
        }
        client.close().await.unwrap();
    }
}

async fn wait_for(client: &fantoccini::Client, css: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
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

/// Waits (at most 20 s) until `done` holds of issue `id`.
async fn wait_issue(
    app: &TestApp,
    id: i64,
    what: &str,
    done: impl Fn(&verdicts::store::issues::IssueRow) -> bool,
) -> verdicts::store::issues::IssueRow {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let issue = app.store.get_issue(id).await.unwrap().unwrap();
        if done(&issue) {
            return issue;
        }
        assert!(Instant::now() < deadline, "{what}: {issue:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes a scheduled issue due now (its time was set an hour ahead, so the checks of the
/// schedule itself could not race its start).
async fn due_now(app: &TestApp, id: i64) {
    sqlx::query("UPDATE issues SET scheduled_for = 0 WHERE id = $1 AND status = 'scheduled'")
        .bind(id)
        .execute(app.store.pool())
        .await
        .unwrap();
}

/// Breaks the frozen HTML of issue `id` (a relative link: `links` fails).
async fn break_links(app: &TestApp, id: i64) {
    sqlx::query("UPDATE issues SET html = html || $1 WHERE id = $2")
        .bind("<p><a href=\"/relative-page\">our archive</a></p>")
        .bind(id)
        .execute(app.store.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_runs_the_checks_like_a_send_over_the_cli() {
    let (app, id) = ready_issue(2, true).await;
    // Refused naming the check, nothing changes.
    let out = app.env.cli(&["issue", "schedule", "1", "--at", "+1h"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("not scheduled: the pre-send check links failed")
            && out.stderr.contains("/relative-page"),
        "{}",
        out.stderr
    );
    assert_eq!(status(&app, id).await, IssueStatus::Ready);
    // Forced: scheduled as forced, and it sends when due although `links` still fails.
    let out = app
        .env
        .cli(&["issue", "schedule", "1", "--at", "+1h", "--force"]);
    assert!(out.ok().contains("forced"), "{}", out.stdout);
    assert!(
        app.store
            .get_issue(id)
            .await
            .unwrap()
            .unwrap()
            .scheduled_forced
    );
    due_now(&app, id).await;
    wait_issue(&app, id, "the forced schedule sends", |i| {
        i.status != IssueStatus::Scheduled
    })
    .await;
    assert_eq!(deliveries(&app, id).await, 2);

    // Unforced, and failing when it comes due: back to ready, nothing sent, and why.
    let (app, id) = ready_issue(2, false).await;
    let out = app.env.cli(&["issue", "schedule", "1", "--at", "+1h"]);
    assert!(
        out.ok().contains("the pre-send checks run again then"),
        "{}",
        out.stdout
    );
    break_links(&app, id).await;
    due_now(&app, id).await;
    let issue = wait_issue(&app, id, "the due start is refused", |i| {
        i.status == IssueStatus::Ready
    })
    .await;
    assert_eq!(deliveries(&app, id).await, 0);
    let reason = issue.status_reason.unwrap();
    assert!(
        reason.contains("the scheduled start at") && reason.contains("links failed"),
        "{reason}"
    );
    let out = app.env.cli(&["issue", "status", "1"]);
    let text = out.ok();
    assert!(
        text.contains("status:   ready") && text.contains("the pre-send check links failed"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_runs_the_checks_like_a_send_over_the_api() {
    let (app, id) = ready_issue(3, true).await;
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let r = app
        .admin(Method::POST, "/api/issues/1/schedule")
        .json(&json!({ "at": at }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("not scheduled") && body.contains("links"),
        "{body}"
    );
    assert_eq!(status(&app, id).await, IssueStatus::Ready);
    let r = app
        .admin(Method::POST, "/api/issues/1/schedule")
        .json(&json!({ "at": at, "force": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["issue"]["scheduled_forced"], true, "{body}");
    due_now(&app, id).await;
    wait_issue(&app, id, "the forced schedule sends", |i| {
        i.status != IssueStatus::Scheduled
    })
    .await;
    assert_eq!(deliveries(&app, id).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_in_the_console_states_and_confirms_recipients_and_runs_the_checks() {
    let (app, id) = ready_issue(2, true).await;
    add_owner(&app.env);
    let session = login(&app).await;
    let page = session
        .get(&app, "/admin/issues/1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"schedule_confirm_recipients\""),
        "{page}"
    );
    assert!(page.contains("id=\"schedule_force\""), "{page}");
    let at = (chrono::Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    for (form, why) in [
        (vec![("at", at.as_str())], "type the number of recipients"),
        (
            vec![("at", at.as_str()), ("confirm_recipients", "3")],
            "would go to 2 recipients, not 3: nothing was scheduled",
        ),
        (
            vec![("at", at.as_str()), ("confirm_recipients", "2")],
            "not scheduled: the pre-send check links failed",
        ),
    ] {
        let r = session
            .post(&app, "/admin/issues/1/schedule", &form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{form:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains(why), "{why}: {html}");
        assert_eq!(status(&app, id).await, IssueStatus::Ready);
    }
    let r = session
        .post(
            &app,
            "/admin/issues/1/schedule",
            &[("at", &at), ("confirm_recipients", "2"), ("force", "on")],
        )
        .send()
        .await
        .unwrap();
    let html = follow(&app, &session, r).await;
    assert!(
        html.contains("scheduled for") && html.contains("forced"),
        "{html}"
    );
    assert_eq!(status(&app, id).await, IssueStatus::Scheduled);
    due_now(&app, id).await;
    wait_issue(&app, id, "the forced schedule sends", |i| {
        i.status != IssueStatus::Scheduled
    })
    .await;
    assert_eq!(deliveries(&app, id).await, 2);

    // Unforced and failing when due: the page says why it is ready again.
    let (app, id) = ready_issue(1, false).await;
    add_owner(&app.env);
    let session = login(&app).await;
    let r = session
        .post(
            &app,
            "/admin/issues/1/schedule",
            &[("at", &at), ("confirm_recipients", "1")],
        )
        .send()
        .await
        .unwrap();
    let html = follow(&app, &session, r).await;
    assert!(
        html.contains("the pre-send checks run again then"),
        "{html}"
    );
    break_links(&app, id).await;
    due_now(&app, id).await;
    wait_issue(&app, id, "the due start is refused", |i| {
        i.status == IssueStatus::Ready
    })
    .await;
    let page = session
        .get(&app, "/admin/issues/1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"status-reason\"") && page.contains("the scheduled start at"),
        "{page}"
    );
    assert_eq!(deliveries(&app, id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fire_sends_nothing_of_an_issue_that_fails_a_check() {
    use verdicts::app::schedule::FireOutcome;
    let (app, id) = ready_issue(2, true).await;
    let settings = app.env.settings("");
    // The fire for 2026-W47 finds its issue ready, checks it, and leaves it.
    let at = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 23, 9, 0, 0).unwrap();
    let outcome = common::app(&app.store, &settings).fire(at).await.unwrap();
    match &outcome {
        FireOutcome::Refused { week, reason } => {
            assert_eq!(week.to_string(), "2026-W47");
            assert!(reason.contains("links failed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(status(&app, id).await, IssueStatus::Ready);
    assert_eq!(deliveries(&app, id).await, 0);
    let text = app.env.cli(&["issue", "status", "1"]).ok().to_string();
    assert!(
        text.contains("the scheduled fire at") && text.contains("links failed"),
        "{text}"
    );
    // Fixed, an operator's send clears the reason.
    let r = app
        .admin(Method::POST, "/api/issues/1/send")
        .json(&json!({ "force": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        app.store
            .get_issue(id)
            .await
            .unwrap()
            .unwrap()
            .status_reason
            .is_none()
    );
}

/// Readers 0 and 1 of `ready_issue` get the issue; reader 2 is paused for two weeks.
async fn pause_one(app: &TestApp) {
    let id = app
        .store
        .get_subscriber_by_email(
            &verdicts::subscribers::SubscriberEmail::parse("reader02@example.org").unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(
        app.store
            .set_paused_until(id, Some(chrono::Utc::now() + chrono::Duration::days(14)))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_go_to_counts_the_readers_the_send_reaches() {
    let (app, id) = ready_issue(3, false).await;
    pause_one(&app).await;
    add_owner(&app.env);
    let session = login(&app).await;
    let page = session
        .get(&app, "/admin/issues/1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("This issue will go to <strong>2</strong> recipients"),
        "{page}"
    );
    assert!(
        page.contains("1 paused or without a matching category is skipped"),
        "{page}"
    );
    let r = session
        .post(&app, "/admin/issues/1/send", &[("confirm_recipients", "3")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("would go to 2 recipients, not 3 (1 paused or without a matching category is skipped): nothing was sent; confirm 2 to send"),
        "{html}"
    );
    assert_eq!(status(&app, id).await, IssueStatus::Ready);
    assert_eq!(deliveries(&app, id).await, 0);
    let text = app.env.cli(&["issue", "status", "1"]).ok().to_string();
    assert!(
        text.contains(
            "will go to: 2 recipients; 1 paused or without a matching category is skipped"
        ),
        "{text}"
    );
    let r = session
        .post(&app, "/admin/issues/1/send", &[("confirm_recipients", "2")])
        .send()
        .await
        .unwrap();
    let html = follow(&app, &session, r).await;
    assert!(
        html.contains(
            "sending to 2 recipients; 1 paused or without a matching category is skipped"
        ),
        "{html}"
    );
    let counts = app.store.delivery_counts(id).await.unwrap();
    assert_eq!((counts.pending + counts.sent, counts.skipped), (2, 1));

    // A reader whose categories match none of the issue's comparisons is left out too.
    let (app, _) = ready_issue(3, false).await;
    let reader = app
        .store
        .get_subscriber_by_email(
            &verdicts::subscribers::SubscriberEmail::parse("reader00@example.org").unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .id;
    app.store
        .set_subscriber_categories(reader, &["No Such Category".into()])
        .await
        .unwrap();
    pause_one(&app).await;
    let out = app.env.cli(&["--json", "issue", "status", "1"]);
    let v: Value = serde_json::from_str(out.ok().trim()).unwrap();
    assert_eq!(
        v["audience"],
        json!({ "recipients": 1, "paused": 1, "no_matching_category": 1 }),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_unsent_issue_releases_its_comparisons_over_cli_and_api() {
    let app = TestApp::spawn("").await;
    seed(&app, 2).await;
    // The operator's mistake: the wrong (earlier-than-meant) week takes both comparisons.
    let out = app.env.cli(&["issue", "create", "--week", "2026-W48"]);
    assert!(
        out.ok().contains("created issue #1 for 2026-W48"),
        "{}",
        out.stdout
    );
    assert_eq!(unissued(&app).await, 0);
    let out = app.env.cli(&["issue", "cancel", "1"]);
    let text = out.ok();
    assert!(
        text.contains("cancelled") && text.contains("its 2 comparison(s) wait for the next issue"),
        "{text}"
    );
    assert_eq!(unissued(&app).await, 2, "both comparisons are free again");
    let listed = app
        .env
        .cli(&["--json", "comparisons", "list"])
        .ok()
        .to_string();
    let listed: Value = serde_json::from_str(listed.trim()).unwrap();
    for c in listed.as_array().unwrap() {
        assert!(c["issue_week"].is_null(), "{c}");
    }
    // The real week gets them, and takes number #1 (no reader saw the cancelled one).
    let (status_code, body) = create(&app, "2026-W47").await;
    assert_eq!(status_code, 201, "{body}");
    assert_eq!(body["issue"]["number"], 1);
    assert_eq!(body["issue"]["items"].as_array().unwrap().len(), 2);
    // Over the API: cancel the real week, then make the week again.
    let r = app
        .admin(Method::POST, "/api/issues/2026-W47/cancel")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"]["done"], "released", "{body}");
    assert_eq!(body["result"]["comparisons"], 2, "{body}");
    assert_eq!(unissued(&app).await, 2);
    let (status_code, body) = create(&app, "2026-W47").await;
    assert_eq!(status_code, 201, "the week is made again: {body}");
    assert_eq!(body["issue"]["status"], "ready");
    assert_eq!(body["issue"]["items"].as_array().unwrap().len(), 2);
    // A cancelled 2026-W48 is still listed; creating it again finds nothing new.
    let out = app.env.cli(&["issue", "create", "--week", "2026-W48"]);
    assert!(
        out.ok().contains("2026-W48 has nothing new"),
        "{}",
        out.stdout
    );

    // Cancelled once a send started: what went out stays, the comparisons stay with it.
    let r = app
        .admin(Method::POST, "/api/issues/2026-W47/send")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .admin(Method::POST, "/api/issues/2026-W47/cancel")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"]["done"], "moved", "{body}");
    assert_eq!(unissued(&app).await, 0);
}
