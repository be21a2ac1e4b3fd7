//! Readers talk back (issue 24): an issue sent to a real SMTP server (Postfix's smtp-sink), its
//! received messages read, and their vote and click links followed over HTTP against the
//! running app. Both databases.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::smtp::{Received, SmtpSink};
use common::{ADMIN_TOKEN, TestApp, comparison_json, free_port};
use verdicts::comparisons::import::parse_json;
use verdicts::store::Store;
use verdicts::store::comparisons::Source;

const SITE: &str = "https://shiporskip.example";

/// The app on a known port (so every link in the mail points at it), two comparisons, three
/// confirmed readers and issue #1 frozen with the app's own key.
async fn app_with_issue(extra: &str) -> TestApp {
    let port = free_port();
    let http = format!(
        "[http]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n{extra}"
    );
    let app = TestApp::spawn(&http).await;
    let text = serde_json::Value::Array(vec![
        comparison_json("alpha-vs-beta", "Alpha vs Beta", "2026-11-17T10:00:00Z"),
        comparison_json("gamma-vs-delta", "Gamma vs Delta", "2026-11-18T10:00:00Z"),
    ])
    .to_string();
    app.store
        .upsert_comparisons(&parse_json(&text).unwrap(), Source::Json, false)
        .await
        .unwrap();
    common::add_confirmed(&app.store, 3, "r", 4).await;
    let settings = app.env.settings(&http);
    verdicts::issues::freeze::create_issue(
        &app.store,
        &verdicts::render::Renderer::new().unwrap(),
        &settings,
        "2026-W47".parse().unwrap(),
    )
    .await
    .unwrap();
    app
}

/// `verdicts issue send 1` to `sink` (same database and key file as the app).
fn send(app: &TestApp, sink: &SmtpSink) {
    let out = app
        .env
        .command()
        .args(["issue", "send", "1"])
        .env("VERDICTS__MAIL__TRANSPORT", "smtp")
        .env("VERDICTS__SMTP__URL", sink.url())
        .env("VERDICTS__SMTP__TIMEOUT_SECONDS", "5")
        .output()
        .unwrap();
    let out = common::CliOutput::from(out);
    assert!(out.ok().contains("3 sent"), "{}", out.stdout);
}

async fn received(app: &TestApp, sink: &SmtpSink) -> Vec<Received> {
    send(app, sink);
    let mut mails = sink.wait_for(3, Duration::from_secs(15)).await;
    mails.sort_by(|a, b| a.rcpt.cmp(&b.rcpt));
    assert_eq!(mails.len(), 3);
    mails
}

/// Every link in `text` that starts with `prefix`, in order.
fn links(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
                .unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .collect()
}

/// The vote link of `tool` and `choice` ("Ship"/"Skip") in the text part of a message.
fn vote_link(m: &Received, tool: &str, choice: &str) -> String {
    let text = m.text();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{tool}: {choice} ")))
        .unwrap_or_else(|| panic!("no {choice} link for {tool} in:\n{text}"));
    line.rsplit(' ').next().unwrap().to_string()
}

async fn vote_rows(store: &Store) -> Vec<(i64, i64, String, String)> {
    sqlx::query_as(
        "SELECT comparison_id, tool, voter, choice FROM votes ORDER BY comparison_id, tool, voter",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// Signs an operator in to the console over HTTP; returns the session cookie.
async fn console_session(app: &TestApp) -> String {
    use std::io::Write;
    let mut child = app
        .env
        .command()
        .args(["operators", "add", "ada@example.org", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery staple\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let cookie_of = |r: &reqwest::Response, name: &str| -> String {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap().to_string())
            .unwrap_or_else(|| panic!("a {name} cookie"))
    };
    let page = app.get("/admin/login").await;
    let csrf = cookie_of(&page, "verdicts_login_csrf");
    let r = app
        .client
        .post(app.url("/admin/login"))
        .header("cookie", format!("verdicts_login_csrf={csrf}"))
        .form(&[
            ("email", "ada@example.org"),
            ("password", "correct horse battery staple"),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    cookie_of(&r, "verdicts_session")
}

async fn tallies(app: &TestApp, slug: &str) -> serde_json::Value {
    let r = app.get(&format!("/votes/{slug}.json")).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_from_received_mail_count_once_per_reader_per_tool() {
    let app = app_with_issue("").await;
    let sink = SmtpSink::start();
    let mails = received(&app, &sink).await;
    let (ada, bob, cy) = (&mails[0], &mails[1], &mails[2]);
    assert_eq!(ada.rcpt, "r0000@example.org");

    // Four vote links per comparison in the text part, the same links in the HTML part, and a
    // different reader part for each reader.
    let first_tool = "Claude 4 Sonnet";
    let text_votes = links(&ada.text(), &app.url("/vote/"));
    assert_eq!(text_votes.len(), 8, "{}", ada.text());
    let html = ada.html();
    for l in &text_votes {
        assert!(
            html.contains(l.as_str()),
            "{l} is in the HTML part too: {}",
            &html[html.find("vote/").unwrap_or(0).saturating_sub(200)..][..400]
        );
    }
    let ship = vote_link(ada, first_tool, "Ship");
    assert_ne!(ship, vote_link(bob, first_tool, "Ship"));
    assert!(ada.text().contains("Panel: "), "the bottom line");
    assert!(ada.text().contains(&app.url("/privacy")), "privacy link");
    assert!(html.contains(&app.url("/privacy")));

    // GET shows one button and counts nothing.
    let page = app.get(&ship[app.address.len()..]).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let body = page.text().await.unwrap();
    assert!(body.contains("Ship Claude 4 Sonnet?"), "{body}");
    assert!(body.contains("Alpha vs Beta"), "{body}");
    assert!(body.contains("method=\"post\""), "{body}");
    assert!(
        vote_rows(&app.store).await.is_empty(),
        "a GET writes nothing"
    );

    // POST counts, once; voting again replaces.
    let post = |url: String| {
        let client = app.client.clone();
        async move { client.post(url).send().await.unwrap() }
    };
    let r = post(ship.clone()).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("your vote is counted"));
    assert_eq!(vote_rows(&app.store).await.len(), 1);
    assert_eq!(post(ship.clone()).await.status(), 200);
    let rows = vote_rows(&app.store).await;
    assert_eq!(rows.len(), 1, "the same vote twice is one vote");
    assert_eq!(rows[0].3, "ship");
    let t = tallies(&app, "alpha-vs-beta").await;
    assert_eq!(
        t,
        serde_json::json!({"slug": "alpha-vs-beta", "tools": [
            {"name": "Claude 4 Sonnet", "ship": 1, "skip": 0},
            {"name": "SmolVLM2-2B", "ship": 0, "skip": 0}], "voters": 1})
    );
    assert_eq!(post(vote_link(ada, first_tool, "Skip")).await.status(), 200);
    let rows = vote_rows(&app.store).await;
    assert_eq!(rows.len(), 1, "a re-vote replaces");
    assert_eq!(rows[0].3, "skip");
    // The same reader on the other tool: a second vote, still one voter.
    assert_eq!(
        post(vote_link(ada, "SmolVLM2-2B", "Ship")).await.status(),
        200
    );
    // A second reader adds one.
    assert_eq!(post(vote_link(bob, first_tool, "Skip")).await.status(), 200);
    let t = tallies(&app, "alpha-vs-beta").await;
    assert_eq!(
        t,
        serde_json::json!({"slug": "alpha-vs-beta", "tools": [
            {"name": "Claude 4 Sonnet", "ship": 0, "skip": 2},
            {"name": "SmolVLM2-2B", "ship": 1, "skip": 0}], "voters": 2})
    );

    // The next issue shows these tallies in a short block.
    let next = serde_json::Value::Array(vec![comparison_json(
        "epsilon-vs-zeta",
        "Epsilon vs Zeta",
        "2026-11-25T10:00:00Z",
    )])
    .to_string();
    app.store
        .upsert_comparisons(&parse_json(&next).unwrap(), Source::Json, false)
        .await
        .unwrap();
    let (issue2, _) = verdicts::issues::freeze::create_issue(
        &app.store,
        &verdicts::render::Renderer::new().unwrap(),
        &app.env.settings(""),
        "2026-W48".parse().unwrap(),
    )
    .await
    .unwrap()
    .expect("a week with something new");
    let text2 = issue2.text.unwrap();
    assert!(
        text2.contains(
            "Last issue, readers said:\n    Alpha vs Beta: Claude 4 Sonnet 0% ship (2 votes) · SmolVLM2-2B 100% ship (1 vote)\n"
        ),
        "{text2}"
    );
    assert!(!text2.contains("Gamma vs Delta:"), "no votes, no line");
    assert!(issue2.html.unwrap().contains("Last issue, readers said"));

    // Stored votes name nobody: no subscriber id or address, only the keyed hash.
    let columns: Vec<String> = match app.store.backend() {
        verdicts::store::Backend::Sqlite => {
            sqlx::query_scalar("SELECT name FROM pragma_table_info('votes') ORDER BY cid")
                .fetch_all(app.store.pool())
                .await
                .unwrap()
        }
        verdicts::store::Backend::Postgres => sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns
              WHERE table_name = 'votes' ORDER BY ordinal_position",
        )
        .fetch_all(app.store.pool())
        .await
        .unwrap(),
    };
    assert_eq!(columns, ["comparison_id", "tool", "voter", "choice"]);
    let voters: BTreeSet<String> = vote_rows(&app.store)
        .await
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(voters.len(), 2);
    for v in &voters {
        assert_eq!(v.len(), 32);
        assert!(!v.contains("r000"), "{v}");
    }
    let before = vote_rows(&app.store).await;

    // A forged token: one character changed, or another reader's part spliced in: 404 for GET
    // and POST, nothing written.
    let mut forged = ship.clone().into_bytes();
    let last = forged.len() - 5;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let path_of = |u: &str| u[app.address.len()..].to_string();
    assert_eq!(app.get(&path_of(&forged)).await.status(), 404);
    assert_eq!(post(forged).await.status(), 404);
    assert_eq!(post(app.url("/vote/short")).await.status(), 404);
    assert_eq!(vote_rows(&app.store).await, before);

    // An unsubscribed reader's links and an erased reader's: 404, nothing written.
    common::unsubscribe_by_email(&app.store, "r0001@example.org").await;
    let bob_ship = vote_link(bob, "SmolVLM2-2B", "Ship");
    assert_eq!(app.get(&path_of(&bob_ship)).await.status(), 404);
    assert_eq!(post(bob_ship).await.status(), 404);
    let cy_ship = vote_link(cy, first_tool, "Ship");
    assert_eq!(
        app.get(&path_of(&cy_ship)).await.status(),
        200,
        "still a reader"
    );
    let out = app.env.cli(&["subscribers", "remove", "r0002@example.org"]);
    out.ok();
    assert_eq!(app.get(&path_of(&cy_ship)).await.status(), 404);
    assert_eq!(post(cy_ship).await.status(), 404);
    assert_eq!(vote_rows(&app.store).await, before);

    // The totals reach /metrics.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("verdicts_reader_votes 3"), "{metrics}");
    app.stop().await;
}

/// Readers behind one address share the token pages' quota: a click over it still reaches the
/// comparison (it was a 429 page), and only the clicks within it count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_over_the_rate_limit_still_reaches_the_comparison_uncounted() {
    let app = app_with_issue("rate_limit_per_minute = 2").await;
    let sink = SmtpSink::start();
    let mails = received(&app, &sink).await;
    let alpha = links(&mails[0].text(), &app.url("/r/"))[0].clone();
    for _ in 0..4 {
        let r = app.client.get(&alpha).send().await.unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(
            r.headers()["location"],
            format!("{SITE}/compare/alpha-vs-beta")
        );
    }
    let engagement: serde_json::Value = app
        .admin(reqwest::Method::GET, "/api/issues/1/engagement")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(engagement["links"][0]["clicks"], 2, "{engagement}");
    // A forged link is still refused, over the limit or not.
    let forged = format!("{}xx", &alpha[..alpha.len() - 2]);
    assert_eq!(app.client.get(&forged).send().await.unwrap().status(), 404);
    // The vote pages keep their limit.
    let vote = vote_link(&mails[1], "SmolVLM2-2B", "Skip");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            app.client
                .get(&vote)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_links_are_the_same_for_everyone_and_count_gets_only() {
    let app = app_with_issue("").await;
    let sink = SmtpSink::start();
    let mails = received(&app, &sink).await;
    let per_reader: Vec<Vec<String>> = mails
        .iter()
        .map(|m| links(&m.text(), &app.url("/r/")))
        .collect();
    assert_eq!(
        per_reader[0].len(),
        2,
        "one per comparison: {}",
        mails[0].text()
    );
    assert!(
        per_reader.iter().all(|l| *l == per_reader[0]),
        "identical for every recipient: {per_reader:?}"
    );
    let html = mails[0].html();
    assert!(html.contains(&per_reader[0][0]) && html.contains(&per_reader[0][1]));
    assert!(
        !html.contains(&format!("href=\"{SITE}/compare/")),
        "no comparison link bypasses /r/"
    );
    assert!(!mails[0].text().contains(&format!("{SITE}/compare/")));
    assert!(
        !html.to_ascii_lowercase().contains("<img"),
        "no pixel, no image at all"
    );

    let alpha = per_reader[0][0].clone();
    let r = app.client.get(&alpha).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        format!("{SITE}/compare/alpha-vs-beta")
    );
    let r = app.client.head(&alpha).send().await.unwrap();
    assert_eq!(r.status(), 302, "HEAD answers like GET");
    assert_eq!(
        r.headers()["location"],
        format!("{SITE}/compare/alpha-vs-beta")
    );
    let forged = format!("{}B", &alpha[..alpha.len() - 1]);
    let forged = if forged == alpha {
        format!("{}C", &alpha[..alpha.len() - 1])
    } else {
        forged
    };
    assert_eq!(app.client.get(&forged).send().await.unwrap().status(), 404);

    // One vote, to see it in the engagement too.
    let vote = vote_link(&mails[2], "SmolVLM2-2B", "Skip");
    assert_eq!(app.client.post(vote).send().await.unwrap().status(), 200);

    let engagement: serde_json::Value = app
        .admin(reqwest::Method::GET, "/api/issues/1/engagement")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        engagement,
        serde_json::json!({
            "links": [
                {"url": format!("{SITE}/compare/alpha-vs-beta"), "clicks": 1},
                {"url": format!("{SITE}/compare/gamma-vs-delta"), "clicks": 0},
            ],
            "votes": [
                {"slug": "alpha-vs-beta", "tools": [
                    {"name": "Claude 4 Sonnet", "ship": 0, "skip": 0},
                    {"name": "SmolVLM2-2B", "ship": 0, "skip": 1}], "voters": 1},
                {"slug": "gamma-vs-delta", "tools": [
                    {"name": "Claude 4 Sonnet", "ship": 0, "skip": 0},
                    {"name": "SmolVLM2-2B", "ship": 0, "skip": 0}], "voters": 0},
            ]
        })
    );
    assert_eq!(
        app.client
            .get(app.url("/api/issues/1/engagement"))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "operators only"
    );
    assert_eq!(
        app.admin(reqwest::Method::GET, "/api/issues/7/engagement")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("verdicts_link_clicks_total 1"),
        "{metrics}"
    );

    // The console's issue page shows the same.
    let session = console_session(&app).await;
    let page = app
        .client
        .get(app.url("/admin/issues/1"))
        .header("cookie", format!("verdicts_session={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let section = &page[page
        .find("id=\"engagement\"")
        .expect("an engagement section")..];
    assert!(
        section.contains(&format!(
            "<td><a href=\"{SITE}/compare/alpha-vs-beta\">{SITE}/compare/alpha-vs-beta</a></td><td>1 click</td>"
        )),
        "{section}"
    );
    assert!(
        section
            .contains("<td>alpha-vs-beta</td><td>SmolVLM2-2B</td><td>0 ship</td><td>1 skip</td>"),
        "{section}"
    );

    // The web version has no vote links (there is nobody to vote as) and no leftover markers.
    let archive = app.get("/archive/1").await.text().await.unwrap();
    assert!(!archive.contains("/vote/"), "{archive}");
    assert!(!archive.contains('\u{E000}'));
    assert!(archive.contains("Panel: "));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_clicks_false_gives_plain_links() {
    let app = app_with_issue("[tracking]\nclicks = false\n").await;
    let sink = SmtpSink::start();
    let mails = received(&app, &sink).await;
    let text = mails[0].text();
    assert!(links(&text, &app.url("/r/")).is_empty(), "{text}");
    assert!(text.contains(&format!(
        "Read the full comparison: {SITE}/compare/alpha-vs-beta"
    )));
    assert!(!mails[0].html().contains("/r/"));
    assert_eq!(links(&text, &app.url("/vote/")).len(), 8, "votes stay");
    let privacy = app.get("/privacy").await.text().await.unwrap();
    assert!(
        privacy.contains("go straight to the comparison pages"),
        "{privacy}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tallies_answer_cors_for_the_site_only() {
    let app = app_with_issue("[site]\nbase_url = \"https://shiporskip.example\"\n").await;
    let r = app
        .client
        .get(app.url("/votes/alpha-vs-beta.json"))
        .header("Origin", SITE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], SITE);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["voters"], 0);
    let r = app
        .client
        .get(app.url("/votes/alpha-vs-beta.json"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url("/votes/alpha-vs-beta.json"),
        )
        .header("Origin", SITE)
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], SITE);
    assert_eq!(app.get("/votes/no-such-thing.json").await.status(), 404);
    assert_eq!(app.get("/votes/alpha-vs-beta").await.status(), 404);
    let privacy = app.get("/privacy").await;
    assert_eq!(privacy.status(), 200);
    let privacy = privacy.text().await.unwrap();
    assert!(privacy.contains("no tracking pixel"), "{privacy}");
    let signup = app.get("/").await.text().await.unwrap();
    assert!(
        signup.contains(&app.url("/privacy")),
        "the signup page links it"
    );
    app.stop().await;
}

/// The page's form action: what a browser without JavaScript posts to.
fn form_action(page: &str) -> String {
    let at = page
        .find("<form method=\"post\" action=\"")
        .expect("a POST form")
        + 28;
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vote_page_works_without_javascript_on_a_phone_and_a_desktop() {
    use common::browser::{browser, browser_with, shot, start_chromedriver};
    use fantoccini::Locator;
    let app = app_with_issue("").await;
    let sink = SmtpSink::start();
    let mails = received(&app, &sink).await;
    let dir = common::screenshot_dir("engagement");
    let driver = start_chromedriver();
    for (i, width) in [390u32, 1024].into_iter().enumerate() {
        let ship = vote_link(&mails[i], "SmolVLM2-2B", "Ship");
        // JavaScript off (ChromeDriver cannot query the page then, so only look at it).
        let profile = tempfile::tempdir().unwrap();
        let b = browser_with(&driver, width, profile.path(), false).await;
        b.goto(&ship).await.unwrap();
        shot(&b, &dir, &format!("vote-nojs-{width}")).await;
        b.close().await.unwrap();
        assert_eq!(
            vote_rows(&app.store).await.len(),
            i,
            "opening the page counts nothing"
        );
        // The page is a plain form with no script: posting it is all a browser does.
        let page = app
            .client
            .get(&ship)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!page.contains("<script"), "{page}");
        assert_eq!(form_action(&page), ship);
        // And a real browser pressing the button.
        let profile = tempfile::tempdir().unwrap();
        let b = browser(&driver, width, profile.path()).await;
        b.goto(&ship).await.unwrap();
        let heading = b
            .find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(heading, "Ship SmolVLM2-2B?");
        b.find(Locator::Css("form button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        b.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(
                "//h1[normalize-space()='Thanks, your vote is counted']",
            ))
            .await
            .unwrap();
        shot(&b, &dir, &format!("voted-{width}")).await;
        b.close().await.unwrap();
        assert_eq!(
            vote_rows(&app.store).await.len(),
            i + 1,
            "the button counts"
        );
    }
    let t = tallies(&app, "alpha-vs-beta").await;
    assert_eq!(t["tools"][1]["ship"], 2);
    app.stop().await;
}
