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
/// confirmed readers and issue #1 frozen with the app's own key; and the SMTP sink the issue
/// goes to. The app's own delivery worker sends there too: `issue send` and the worker are two
/// senders of one installation, and either may deliver a message (it went to the outbox when
/// the worker won the race, and the sink waited in vain).
async fn app_with_issue(extra: &str) -> (TestApp, SmtpSink) {
    app_with_comparisons(
        extra,
        vec![
            comparison_json("alpha-vs-beta", "Alpha vs Beta", "2026-11-17T10:00:00Z"),
            comparison_json("gamma-vs-delta", "Gamma vs Delta", "2026-11-18T10:00:00Z"),
        ],
    )
    .await
}

/// [`app_with_issue`] with these comparisons.
async fn app_with_comparisons(
    extra: &str,
    comparisons: Vec<serde_json::Value>,
) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start();
    let port = free_port();
    let http = format!(
        "{}[http]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n{extra}",
        sink.transport()
    );
    let app = TestApp::spawn(&http).await;
    let text = serde_json::Value::Array(comparisons).to_string();
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
    (app, sink)
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
        // The parts of the issue for readers with categories are rendered by the sender.
        .env("VERDICTS__HTTP__PUBLIC_URL", &app.address)
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

/// `GET /api/issues/{number}/engagement`.
async fn engagement(app: &TestApp, number: i64) -> serde_json::Value {
    let r = app
        .admin(
            reqwest::Method::GET,
            &format!("/api/issues/{number}/engagement"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn tallies(app: &TestApp, slug: &str) -> serde_json::Value {
    let r = app.get(&format!("/votes/{slug}.json")).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_from_received_mail_count_once_per_reader_per_tool() {
    let (app, sink) = app_with_issue("").await;
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
        &app.env
            .settings(&format!("[http]\npublic_url = \"{}\"\n", app.address)),
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
    let html2 = issue2.html.unwrap();
    let block = &html2[html2
        .find("Last issue, readers said")
        .expect("the block in HTML")..];
    // Its link goes through issue 1's own /r/ link for that comparison, never straight to the
    // page (clicks are on), and counts for issue 1, where the comparison was.
    assert!(!html2.contains(&format!("{SITE}/compare/")), "{html2}");
    assert!(!text2.contains(&format!("{SITE}/compare/")), "{text2}");
    let alpha_click = links(&ada.text(), &app.url("/r/"))[0].clone();
    assert_eq!(
        links(block, &app.url("/r/"))[0],
        alpha_click,
        "the previous block links issue 1's counted link"
    );
    let r = app.client.get(&alpha_click).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        format!("{SITE}/compare/alpha-vs-beta")
    );
    assert_eq!(engagement(&app, 1).await["links"][0]["clicks"], 1);

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
    let (app, sink) = app_with_issue("rate_limit_per_minute = 2").await;
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
    let (app, sink) = app_with_issue("").await;
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
    // Voters per comparison, as the API's `voters`.
    assert!(
        section.contains(
            "<td>alpha-vs-beta</td><td>Claude 4 Sonnet</td><td>0 ship</td><td>0 skip</td><td rowspan=\"2\">1 voter</td>"
        ),
        "{section}"
    );
    assert!(
        section.contains(
            "<td>gamma-vs-delta</td><td>Claude 4 Sonnet</td><td>0 ship</td><td>0 skip</td><td rowspan=\"2\">0 voters</td>"
        ),
        "{section}"
    );

    // A look at it, phone and desktop (the page as the operator got it, its stylesheet from
    // this server).
    let file = app.env.path().join("console-issue.html");
    std::fs::write(
        &file,
        page.replacen(
            "<head>",
            &format!("<head><base href=\"{}/\">", app.address),
            1,
        ),
    )
    .unwrap();
    let dir = common::screenshot_dir("engagement");
    for (width, height) in [(390, 2600), (1280, 1700)] {
        let url = format!("file://{}", file.display());
        let out = dir.join(format!("console-issue-{width}.png"));
        // Chromium loads the stylesheet from this very server: not on the test's own thread.
        tokio::task::spawn_blocking(move || common::screenshot(&url, width, height, &out))
            .await
            .unwrap();
    }

    // The web version has no vote links (there is nobody to vote as) and no leftover markers.
    let archive = app.get("/archive/1").await.text().await.unwrap();
    assert!(!archive.contains("/vote/"), "{archive}");
    assert!(!archive.contains('\u{E000}'));
    assert!(archive.contains("Panel: "));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_clicks_false_gives_plain_links() {
    let (app, sink) = app_with_issue("[tracking]\nclicks = false\n").await;
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
    let (app, _sink) = app_with_issue("[site]\nbase_url = \"https://shiporskip.example\"\n").await;
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
    assert!(privacy.contains("pseudonymous, not anonymous"), "{privacy}");
    let dir = common::screenshot_dir("engagement");
    for (width, height) in [(390, 1500), (1200, 1000)] {
        let url = app.url("/privacy");
        let out = dir.join(format!("privacy-{width}.png"));
        // Chromium waits for this very server: not on the test's own thread.
        tokio::task::spawn_blocking(move || common::screenshot(&url, width, height, &out))
            .await
            .unwrap();
    }
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

/// Waits until `n` votes are stored.
async fn wait_for_votes(store: &Store, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while vote_rows(store).await.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} votes expected, {} stored",
            vote_rows(store).await.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vote_page_works_without_javascript_on_a_phone_and_a_desktop() {
    use common::browser::{browser, browser_with, click_at, shot, start_chromedriver};
    use fantoccini::Locator;
    let (app, sink) = app_with_issue("").await;
    let mails = received(&app, &sink).await;
    let dir = common::screenshot_dir("engagement");
    let driver = start_chromedriver();
    for (i, width) in [390u32, 1024].into_iter().enumerate() {
        let ship = vote_link(&mails[i], "SmolVLM2-2B", "Ship");
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
        // Where the button is at this width (ChromeDriver can query a page only with
        // JavaScript on; the page has none, so the layout is the same without it).
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
        let (x, y, w, h) = b
            .find(Locator::Css("form button"))
            .await
            .unwrap()
            .rectangle()
            .await
            .unwrap();
        b.close().await.unwrap();
        assert_eq!(
            vote_rows(&app.store).await.len(),
            i,
            "opening the page counts nothing"
        );
        // JavaScript off: open the page, press the button with the mouse, as a reader would.
        let profile = tempfile::tempdir().unwrap();
        let b = browser_with(&driver, width, profile.path(), false).await;
        b.goto(&ship).await.unwrap();
        shot(&b, &dir, &format!("vote-nojs-{width}")).await;
        let before = b.screenshot().await.unwrap();
        assert_eq!(vote_rows(&app.store).await.len(), i, "still nothing");
        click_at(&b, x + w / 2.0, y + h / 2.0).await;
        wait_for_votes(&app.store, i + 1).await;
        // The answer is on its way once the vote is stored: wait until the page looks different
        // (the same URL before and after, and no JavaScript to ask the page with).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while b.screenshot().await.unwrap() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the answer page never showed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shot(&b, &dir, &format!("voted-nojs-{width}")).await;
        b.close().await.unwrap();
        assert_eq!(
            vote_rows(&app.store).await.len(),
            i + 1,
            "the button counts, once"
        );
    }
    let t = tallies(&app, "alpha-vs-beta").await;
    assert_eq!(t["tools"][1]["ship"], 2);
    app.stop().await;
}

/// `tracking.clicks` turned off after an issue went out with counted links: those links keep
/// reaching the comparison, and count nothing (the privacy page then says "no clicks").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_sent_with_clicks_on_count_nothing_once_clicks_are_off() {
    let (app, sink) = app_with_issue("").await;
    let mails = received(&app, &sink).await;
    let alpha = links(&mails[0].text(), &app.url("/r/"))[0].clone();
    // The same installation (database, key) restarted with clicks off.
    let port = free_port();
    let off = common::serve_with(&app.env, port, "[tracking]\nclicks = false\n").await;
    let alpha_off = alpha.replace(&app.address, &off.public);
    assert_ne!(alpha_off, alpha);
    for _ in 0..3 {
        let r = app.client.get(&alpha_off).send().await.unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(
            r.headers()["location"],
            format!("{SITE}/compare/alpha-vs-beta")
        );
    }
    let e = engagement(&app, 1).await;
    assert_eq!(e["links"][0]["clicks"], 0, "{e}");
    assert_eq!(e["links"][1]["clicks"], 0, "{e}");
    let privacy = app
        .client
        .get(format!("{}/privacy", off.public))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(privacy.contains("No clicks."), "{privacy}");
    // The process with clicks on still counts the same link.
    assert_eq!(app.client.get(&alpha).send().await.unwrap().status(), 302);
    assert_eq!(engagement(&app, 1).await["links"][0]["clicks"], 1);
    drop(off);
    app.stop().await;
}

/// Makes the database refuse every write of a click count (as a full disk or a read-only
/// database would), on either database.
async fn refuse_click_counts(store: &Store) {
    let statements: &[&str] = match store.backend() {
        verdicts::store::Backend::Sqlite => {
            &["CREATE TRIGGER refuse_clicks BEFORE INSERT ON link_clicks
              BEGIN SELECT RAISE(ABORT, 'the database refuses writes'); END"]
        }
        verdicts::store::Backend::Postgres => &[
            "CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql
              AS $$ BEGIN RAISE EXCEPTION 'the database refuses writes'; END $$",
            "CREATE TRIGGER refuse_clicks BEFORE INSERT OR UPDATE ON link_clicks
              FOR EACH ROW EXECUTE FUNCTION refuse_writes()",
        ],
    };
    for s in statements.iter().copied() {
        sqlx::query(s).execute(store.pool()).await.unwrap();
    }
}

/// A click whose count cannot be written still reaches the comparison (it was a 500 page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_whose_count_cannot_be_written_still_reaches_the_comparison() {
    let (app, sink) = app_with_issue("").await;
    let mails = received(&app, &sink).await;
    let alpha = links(&mails[0].text(), &app.url("/r/"))[0].clone();
    refuse_click_counts(&app.store).await;
    for _ in 0..3 {
        let r = app.client.get(&alpha).send().await.unwrap();
        assert_eq!(r.status(), 302, "sent on, not a 500 page");
        assert_eq!(
            r.headers()["location"],
            format!("{SITE}/compare/alpha-vs-beta")
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM link_clicks")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing was written");
    assert_eq!(engagement(&app, 1).await["links"][0]["clicks"], 0);
    // Writes back: clicks count again.
    sqlx::query("DROP TRIGGER refuse_clicks")
        .execute(app.store.pool())
        .await
        .ok();
    sqlx::query("DROP TRIGGER IF EXISTS refuse_clicks ON link_clicks")
        .execute(app.store.pool())
        .await
        .ok();
    assert_eq!(app.client.get(&alpha).send().await.unwrap().status(), 302);
    assert_eq!(engagement(&app, 1).await["links"][0]["clicks"], 1);
    app.stop().await;
}

/// Readers behind one office or carrier address each vote (their genuine links count against
/// each of them, not against the address); links that are not genuine still count against the
/// address, and the address's quota for the other token pages is untouched by genuine votes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_behind_one_address_all_vote_and_forged_links_are_limited() {
    let (app, sink) = app_with_issue("rate_limit_per_minute = 2").await;
    let mails = received(&app, &sink).await;
    // Three readers from 127.0.0.1, each opening their link and pressing the button: six
    // requests from one address under a limit of two a minute.
    for m in &mails {
        let ship = vote_link(m, "SmolVLM2-2B", "Ship");
        assert_eq!(
            app.client.get(&ship).send().await.unwrap().status(),
            200,
            "{}",
            m.rcpt
        );
        assert_eq!(
            app.client.post(&ship).send().await.unwrap().status(),
            200,
            "{}",
            m.rcpt
        );
    }
    assert_eq!(vote_rows(&app.store).await.len(), 3);
    assert_eq!(tallies(&app, "alpha-vs-beta").await["tools"][1]["ship"], 3);
    // One reader is still limited: their third request in the minute.
    let again = vote_link(&mails[0], "SmolVLM2-2B", "Skip");
    let r = app.client.post(&again).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(vote_rows(&app.store).await[0].3, "ship", "nothing changed");
    // The genuine votes spent none of the address's quota for the other token pages.
    assert_eq!(app.get("/unsubscribe/not-a-token").await.status(), 404);
    // Links that are not genuine count against the address: 404 until its quota is spent.
    let ship = vote_link(&mails[1], "SmolVLM2-2B", "Ship");
    let mut statuses = Vec::new();
    for i in 0..3u8 {
        let mut forged = ship.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' + i {
            b'a' + i
        } else {
            b'A' + i
        };
        let forged = String::from_utf8(forged).unwrap();
        statuses.push(
            app.client
                .post(&forged)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [404, 429, 429],
        "one left in the quota after the 404 above"
    );
    assert_eq!(vote_rows(&app.store).await.len(), 3);
    app.stop().await;
}

/// A reader who chose categories gets a part of the issue; their vote and click links keep the
/// issue's positions, so both count for the right comparison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_with_categories_votes_and_clicks_on_the_right_comparison() {
    let with_categories = |slug: &str, title: &str, at: &str, category: &str| {
        let mut v = comparison_json(slug, title, at);
        for i in 0..2 {
            v["tools"][i]["category"] = category.into();
        }
        v
    };
    let (app, sink) = app_with_comparisons(
        "",
        vec![
            with_categories(
                "alpha-vs-beta",
                "Alpha vs Beta",
                "2026-11-17T10:00:00Z",
                "Chat",
            ),
            with_categories(
                "gamma-vs-delta",
                "Gamma vs Delta",
                "2026-11-18T10:00:00Z",
                "Image",
            ),
        ],
    )
    .await;
    let ada = app
        .store
        .get_subscriber_by_email(
            &verdicts::subscribers::SubscriberEmail::parse("r0000@example.org").unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(
        app.store
            .set_subscriber_categories(ada, &["Image".to_string()])
            .await
            .unwrap()
    );
    let mails = received(&app, &sink).await;
    let (ada_mail, bob_mail) = (&mails[0], &mails[1]);
    assert_eq!(ada_mail.rcpt, "r0000@example.org");
    let text = ada_mail.text();
    assert!(text.contains("Gamma vs Delta"), "{text}");
    assert!(!text.contains("Alpha vs Beta"), "only her category: {text}");
    // Her one comparison link is everyone's link to Gamma vs Delta (position 1 of the issue).
    let clicks = links(&text, &app.url("/r/"));
    assert_eq!(clicks.len(), 1, "{text}");
    assert_eq!(clicks[0], links(&bob_mail.text(), &app.url("/r/"))[1]);
    let r = app.client.get(&clicks[0]).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        format!("{SITE}/compare/gamma-vs-delta")
    );
    // Her vote counts for Gamma vs Delta.
    let skip = vote_link(ada_mail, "SmolVLM2-2B", "Skip");
    let page = app
        .client
        .get(&skip)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Gamma vs Delta"), "{page}");
    assert_eq!(app.client.post(&skip).send().await.unwrap().status(), 200);
    let e = engagement(&app, 1).await;
    assert_eq!(
        e,
        serde_json::json!({
            "links": [
                {"url": format!("{SITE}/compare/alpha-vs-beta"), "clicks": 0},
                {"url": format!("{SITE}/compare/gamma-vs-delta"), "clicks": 1},
            ],
            "votes": [
                {"slug": "alpha-vs-beta", "tools": [
                    {"name": "Claude 4 Sonnet", "ship": 0, "skip": 0},
                    {"name": "SmolVLM2-2B", "ship": 0, "skip": 0}], "voters": 0},
                {"slug": "gamma-vs-delta", "tools": [
                    {"name": "Claude 4 Sonnet", "ship": 0, "skip": 0},
                    {"name": "SmolVLM2-2B", "ship": 0, "skip": 1}], "voters": 1},
            ]
        })
    );
    app.stop().await;
}

/// With an explicit `signup.allowed_origins`, the tallies answer CORS for those origins only
/// (not the site's own, which the list replaces), and say `Vary: Origin` so a shared cache
/// does not hand one origin's answer to another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tallies_follow_an_explicit_allowed_origins_and_vary_on_origin() {
    let (app, _sink) = app_with_issue(
        "[signup]\nallowed_origins = [\"https://friends.example\", \"https://shiporskip.example\"]\n",
    )
    .await;
    let get = |origin: &'static str| {
        let client = app.client.clone();
        let url = app.url("/votes/alpha-vs-beta.json");
        async move {
            client
                .get(url)
                .header("Origin", origin)
                .send()
                .await
                .unwrap()
        }
    };
    for origin in ["https://friends.example", SITE] {
        let r = get(origin).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["access-control-allow-origin"], origin);
        let vary: Vec<String> = r
            .headers()
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .collect();
        assert!(
            vary.iter()
                .any(|v| v.split(',').any(|p| p.trim() == "origin")),
            "{vary:?}"
        );
        assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    }
    let r = get("https://evil.example").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let vary = r
        .headers()
        .get("vary")
        .map(|v| v.to_str().unwrap().to_ascii_lowercase());
    assert!(
        vary.as_deref().is_some_and(|v| v.contains("origin")),
        "every answer varies on Origin, the refused ones too: {vary:?}"
    );
    app.stop().await;
}

/// Every mail a reader can get links `/privacy` in its footer, HTML and text: the
/// confirmation, the reminder, the welcome, the change of address and the repermission mail
/// (the issue email is tested above). Screenshots of each at phone and desktop width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reader_mail_links_privacy_in_its_footer() {
    use verdicts::mail::MailKind;
    let env = common::TestEnv::new().await;
    let settings = env.settings("[http]\npublic_url = \"https://news.example\"\n");
    let composer = verdicts::subscribers::lifecycle::Composer {
        settings: std::sync::Arc::new(settings),
        secret: verdicts::config::SecretKey::from_bytes(b"a key for this test only, 32 bytes"),
        renderer: std::sync::Arc::new(verdicts::render::Renderer::new().unwrap()),
    };
    let token = || "t0k3n".to_string();
    let kinds = [
        MailKind::Confirm { token: token() },
        MailKind::Reminder { token: token() },
        MailKind::Welcome,
        MailKind::EmailChange { token: token() },
        MailKind::Repermission,
    ];
    let privacy = "https://news.example/privacy";
    let dir = common::screenshot_dir("engagement");
    for kind in &kinds {
        let raw = composer
            .compose(kind, 7, "ada@example.org", Some("Ada"))
            .unwrap();
        let message = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("a message");
        assert_eq!(message.text_body_count(), 1, "{}", kind.as_str());
        assert_eq!(message.html_body_count(), 1, "{}", kind.as_str());
        let text = message.body_text(0).unwrap().replace("\r\n", "\n");
        let html = message.body_html(0).unwrap();
        let footer = &text[text.rfind("\n--\n").expect("a signature separator")..];
        assert!(
            footer.contains(&format!("What we count and what we do not: {privacy}")),
            "{}: {text}",
            kind.as_str()
        );
        assert!(
            html.contains(&format!(
                "<a href=\"{privacy}\" style=\"color:#6b7280\">What we count</a>"
            )),
            "{}: {html}",
            kind.as_str()
        );
        let file = env.path().join(format!("{}.html", kind.as_str()));
        std::fs::write(&file, html.as_bytes()).unwrap();
        for (label, width, height) in [("390", 390, 900), ("desktop", 1200, 800)] {
            let out = dir.join(format!("mail-{}-{label}.png", kind.as_str()));
            common::screenshot(&format!("file://{}", file.display()), width, height, &out);
            assert!(
                std::fs::metadata(&out).unwrap().len() > 5_000,
                "a blank page?"
            );
        }
    }
}
