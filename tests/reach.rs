//! Reach: operators restyle from files (`templates.dir`, `templates export|check`), readers
//! follow an Atom feed of the archive, the email's design survives clients that drop `<style>`,
//! and SpamAssassin (local rules) finds nothing to score in the issue, confirmation or welcome
//! mail.

mod common;

use std::path::Path;
use std::process::Command;

use common::{SONNET_PAGE, TestApp, TestEnv, screenshot_dir};
use verdicts::issues::IssueStatus;

/// Imports the two captured pages into week 2026-W47.
fn import_pages(env: &TestEnv) {
    env.cli(&[
        "comparisons",
        "import",
        "--published-at",
        "2026-11-18T10:00:00Z",
        common::fixture(SONNET_PAGE).to_str().unwrap(),
        common::fixture(common::HAIKU_PAGE).to_str().unwrap(),
    ])
    .ok();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restyles_the_email_from_files_and_check_names_broken_ones() {
    let env = TestEnv::new().await;
    import_pages(&env);
    // Export the built-ins; a second export refuses to overwrite.
    let out = env.cli(&["templates", "export", "custom"]);
    let written = format!(
        "{} templates written",
        verdicts::render::builtin_templates().len()
    );
    assert!(out.ok().contains(&written), "{}", out.stdout);
    assert!(env.path().join("custom/email/issue.mjml").is_file());
    let again = env.cli(&["templates", "export", "custom"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("exist already; nothing written"));

    // A preview with the built-ins, then with an edited issue template.
    env.cli(&["issue", "preview", "--week", "2026-W47", "--out", "before"])
        .ok();
    let issue = env.path().join("custom/email/issue.mjml");
    let source = read(&issue).replace(
        "Issue #{{ number }} · {{ date_range }}",
        "Edition №{{ number }} · {{ date_range }}",
    );
    std::fs::write(&issue, &source).unwrap();
    let mut cmd = env.command();
    cmd.env("VERDICTS__TEMPLATES__DIR", "custom")
        .args(["issue", "preview", "--week", "2026-W47", "--out", "after"]);
    common::CliOutput::from(cmd.output().unwrap()).ok();
    let before = read(&env.path().join("before/issue.html"));
    let after = read(&env.path().join("after/issue.html"));
    assert!(before.contains("Issue #1 ·") && !before.contains("Edition"));
    assert!(after.contains("Edition №1 ·") && !after.contains("Issue #1 ·"));
    // Files not in the folder fall back to the built-ins: the text part is unchanged.
    assert_eq!(
        read(&env.path().join("before/issue.txt")),
        read(&env.path().join("after/issue.txt"))
    );

    // Frozen issues keep what they were rendered with.
    env.cli(&["issue", "create", "--week", "2026-W47"]).ok();
    std::fs::write(&issue, source.replace("Edition №", "Volume ")).unwrap();
    let mut cmd = env.command();
    cmd.env("VERDICTS__TEMPLATES__DIR", "custom")
        .args(["issue", "preview", "--week", "2026-W47", "--out", "frozen"]);
    common::CliOutput::from(cmd.output().unwrap()).ok();
    let frozen = read(&env.path().join("frozen/issue.html"));
    assert!(
        frozen.contains("Issue #1 ·") && !frozen.contains("Volume"),
        "the frozen issue is what it was created with"
    );

    // check: a clean folder passes; a Tera error and an MJML error are each named with the file
    // and the line, in one run, and the exit code is 2.
    std::fs::write(&issue, &source).unwrap();
    let ok = env.cli(&["templates", "check", "custom"]);
    assert!(ok.ok().contains("every template renders"), "{}", ok.stdout);
    let signup = env.path().join("custom/web/signup.html");
    let mut page: Vec<String> = read(&signup).lines().map(str::to_string).collect();
    page[3] = format!("{} {{{{ 1 + }}}}", page[3]);
    std::fs::write(&signup, page.join("\n")).unwrap();
    std::fs::write(
        &issue,
        source.replacen("<mj-column>", "<mj-column bogus=>", 1),
    )
    .unwrap();
    let mjml_line = source
        .lines()
        .position(|l| l.contains("<mj-column>"))
        .unwrap()
        + 1;
    std::fs::write(env.path().join("custom/email/isue.mjml"), "typo").unwrap();
    let bad = env.cli(&["templates", "check", "custom"]);
    assert_eq!(bad.code, 2, "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stderr.contains("custom/web/signup.html line 4:"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr
            .contains(&format!("custom/email/issue.mjml line {mjml_line}: MJML:")),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("isue.mjml: not a template name"));
    // serve and every command refuse to start on broken templates, naming the file.
    let mut cmd = env.command();
    cmd.env("VERDICTS__TEMPLATES__DIR", "custom")
        .args(["issue", "list"]);
    let out = common::CliOutput::from(cmd.output().unwrap());
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("custom/web/signup.html line 4"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_has_an_atom_feed_of_sent_issues_without_personal_data() {
    let app = TestApp::spawn("[schedule]\ncron = \"0 0 9 1 1 *\"").await;
    import_pages(&app.env);
    common::add_confirmed(&app.store, 3, "feedreader", 2).await;
    app.env.cli(&["issue", "create", "--week", "2026-W47"]).ok();
    // A ready issue is not public yet: an empty feed.
    let r = app.get("/archive/feed.xml").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    let feed: atom_syndication::Feed = r.text().await.unwrap().parse().unwrap();
    assert!(feed.entries().is_empty());
    assert_eq!(feed.title().as_str(), "Weekly AI Tool Verdicts");

    let issue = app.store.get_issue_by_number(1).await.unwrap().unwrap();
    app.store
        .set_issue_status(issue.id, IssueStatus::Sent, None)
        .await
        .unwrap();
    let body = app.get("/archive/feed.xml").await.text().await.unwrap();
    let feed: atom_syndication::Feed = body.parse().expect("well-formed Atom");
    assert_eq!(feed.entries().len(), 1);
    let e = &feed.entries()[0];
    assert_eq!(e.title().as_str(), issue.subject.as_deref().unwrap());
    assert!(e.links()[0].href().ends_with("/archive/1"));
    let summary = e.summary().unwrap().as_str();
    assert!(
        summary.contains("Claude 4 Sonnet vs SmolVLM2-2B")
            && summary.contains("Claude Haiku Open Weights vs SmolVLM2 Turbo")
            && summary.contains("Nov 16 – 22, 2026"),
        "{summary}"
    );
    assert!(
        feed.links()
            .iter()
            .any(|l| l.rel() == "self" && l.href().ends_with("/archive/feed.xml"))
    );
    assert!(!body.contains("feedreader") && !body.contains("@example"));
    // The archive pages point feed readers at it.
    for path in ["/archive", "/archive/1"] {
        let page = app.get(path).await.text().await.unwrap();
        assert!(
            page.contains("rel=\"alternate\" type=\"application/atom+xml\"")
                && page.contains("/archive/feed.xml\""),
            "{path}"
        );
    }
    app.stop().await;
}

/// The preview `.eml` is what readers get: it carries List-Archive, and its design is in
/// `style` attributes, so a client that drops `<style>` still shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_design_survives_without_style_blocks() {
    let env = TestEnv::new().await;
    import_pages(&env);
    env.cli(&["issue", "preview", "--week", "2026-W47", "--out", "pv"])
        .ok();
    let eml = read(&env.path().join("pv/issue.eml"));
    let msg = mail_parser::MessageParser::default()
        .parse(eml.as_bytes())
        .unwrap();
    assert_eq!(
        msg.header_raw("List-Archive").map(str::trim),
        Some("<http://127.0.0.1:8080/archive/1>")
    );
    let html = read(&env.path().join("pv/issue.html"));
    // Every styled class carries its look inline.
    for (class, property) in [
        ("pill", "border-radius:999px"),
        ("badge", "border-radius:8px"),
        ("sm", "font-size:13px"),
    ] {
        let tags: Vec<&str> = html
            .split('<')
            .filter(|t| t.contains(&format!("class=\"{class}\"")))
            .collect();
        assert!(!tags.is_empty(), "no .{class}");
        for t in &tags {
            assert!(t.contains(property), ".{class} without {property}: {t}");
        }
    }
    assert!(html.contains("@media only screen and (max-width: 480px)"));
    // Strip every <style>, as Gmail with a non-Google account does, and look at it.
    let mut stripped = html.clone();
    while let Some(start) = stripped.find("<style") {
        let end = stripped[start..]
            .find("</style>")
            .map_or(stripped.len(), |e| start + e + 8);
        stripped.replace_range(start..end, "");
    }
    assert!(!stripped.contains("<style"));
    assert!(stripped.contains("border-radius:999px"));
    let file = env.path().join("no-style.html");
    std::fs::write(&file, &stripped).unwrap();
    let dir = screenshot_dir("email-without-style");
    for width in [390, 1024] {
        let out = dir.join(format!("issue-no-style-{width}.png"));
        common::screenshot(&format!("file://{}", file.display()), width, 2200, &out);
        assert!(
            std::fs::metadata(&out).unwrap().len() > 10_000,
            "a blank page?"
        );
    }
}

/// SpamAssassin's score of a raw message with local rules only (`-L`): the total and the
/// rules that fired.
fn spamassassin_score(raw: &str) -> (f64, String) {
    let mut child = Command::new("spamassassin")
        .args(["-L", "-t"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the SpamAssassin test needs spamassassin (apt-get install spamassassin)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(raw.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let score = report
        .lines()
        .find_map(|l| {
            l.strip_prefix("X-Spam-Status: ")
                .and_then(|s| s.split("score=").nth(1))
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<f64>().ok())
        })
        .unwrap_or_else(|| panic!("no X-Spam-Status in SpamAssassin's output:\n{report}"));
    let details = report
        .split("Content analysis details:")
        .nth(1)
        .unwrap_or("")
        .to_string();
    (score, details)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spamassassin_scores_the_issue_confirmation_and_welcome_mails_clean() {
    let app = TestApp::spawn_public("[schedule]\ncron = \"0 0 9 1 1 *\"").await;
    import_pages(&app.env);
    app.env
        .cli(&["issue", "preview", "--week", "2026-W47", "--out", "pv"])
        .ok();
    let issue = read(&app.env.path().join("pv/issue.eml"));
    // A reader signs up and confirms: the confirmation and the welcome mail.
    let r = app
        .client
        .post(app.url("/subscribe"))
        .form(&[("email", "reader@example.org"), ("name", "Ada")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let confirm = app.outbox(1).await.remove(0);
    let link = common::link_in(&confirm, &app.url("/confirm/")).expect("a confirm link");
    let r = app.client.post(&link).send().await.unwrap();
    assert!(r.status().is_success() || r.status().is_redirection());
    let mails = app.outbox(2).await;
    let welcome = mails
        .into_iter()
        .find(|m| m.contains("Subject: Welcome"))
        .expect("a welcome mail");
    for (name, raw) in [
        ("issue", issue),
        ("confirmation", confirm),
        ("welcome", welcome),
    ] {
        let (score, details) = spamassassin_score(&raw);
        assert!(score <= 0.5, "{name} scores {score}:{details}");
    }
    app.stop().await;
}

/// A page on another origin, served by a second server on loopback.
async fn serve_page(port: u16, html: String) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let app = axum::Router::new().fallback(axum::routing::get(move || {
        let html = html.clone();
        async move { axum::response::Html(html) }
    }));
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

/// The site embeds the signup: the fetch snippet and the plain form, run from a page on
/// another loopback origin in real Chromium; a page of an origin not allowed gets nothing in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_embeds_the_signup_from_another_origin() {
    use common::browser::{browser, shot, start_chromedriver};
    let (site, stranger) = (common::free_port(), common::free_port());
    let app = TestApp::spawn_public(&format!(
        "[site]\nbase_url = \"http://127.0.0.1:{site}\"\n[schedule]\ncron = \"0 0 9 1 1 *\""
    ))
    .await;
    let snippet = app.get("/embed/snippet.html").await.text().await.unwrap();
    assert!(snippet.contains(&format!("action=\"{}\"", app.url("/subscribe"))));
    assert!(snippet.contains(&format!(
        "name=\"redirect\" value=\"http://127.0.0.1:{site}\""
    )));
    let page = app.get("/embed").await.text().await.unwrap();
    assert!(
        page.contains("&lt;form method=&quot;post&quot;")
            || page.contains("&lt;form method=\"post\"")
    );
    let html = |title: &str| {
        format!(
            "<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{snippet}</body></html>"
        )
    };
    let _a = serve_page(site, html("Claude vs Smol — Ship or Skip")).await;
    let _b = serve_page(stranger, html("Somewhere else")).await;

    // CORS at the HTTP level: the site's origin is allowed, another is not.
    for (origin, allowed) in [(site, true), (stranger, false)] {
        let origin = format!("http://127.0.0.1:{origin}");
        let r = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/subscribe"))
            .header("Origin", &origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
            .await
            .unwrap();
        let acao = r
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(acao, allowed.then_some(origin), "preflight");
    }

    let driver = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, 1024, profile.path()).await;
    let dir = screenshot_dir("embed");
    // The fetch variant, from the site's page.
    sign_up_on(
        &client,
        &format!("http://127.0.0.1:{site}/compare/claude-vs-smol"),
        "#verdicts-signup",
        "fetch-reader@example.org",
    )
    .await;
    let status = wait_for_text(
        &client,
        "#verdicts-signup [role=status]",
        "confirmation link",
    )
    .await;
    assert!(
        status.contains("a confirmation link is on its way"),
        "{status}"
    );
    shot(&client, &dir, "fetch-variant-done").await;
    let mail = app.outbox(1).await.remove(0);
    assert!(mail.contains("To: fetch-reader@example.org"), "{mail}");

    // The plain form returns the reader to the site with the outcome.
    sign_up_on(
        &client,
        &format!("http://127.0.0.1:{site}/compare/claude-vs-smol"),
        "form[method=post]",
        "form-reader@example.org",
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let back = loop {
        let url = client.current_url().await.unwrap();
        if url.port() == Some(site) && url.query().is_some() {
            break url;
        }
        assert!(std::time::Instant::now() < deadline, "not sent back: {url}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(back.query(), Some("signup=ok"));
    shot(&client, &dir, "plain-form-back-on-the-site").await;
    app.outbox(2).await;

    // A page of an origin that is not allowed: the browser refuses the answer, nothing written.
    sign_up_on(
        &client,
        &format!("http://127.0.0.1:{stranger}/"),
        "#verdicts-signup",
        "stranger-reader@example.org",
    )
    .await;
    let status = wait_for_text(&client, "#verdicts-signup [role=status]", "could not reach").await;
    assert!(status.contains("could not reach"), "{status}");
    let found = app
        .store
        .get_subscriber_by_email(
            &verdicts::subscribers::SubscriberEmail::parse("stranger-reader@example.org").unwrap(),
        )
        .await
        .unwrap();
    assert!(found.is_none(), "a refused origin wrote nothing");
    client.close().await.unwrap();

    // A form's redirect to an origin that is not allowed: refused, nothing written.
    let r = app
        .client
        .post(app.url("/subscribe"))
        .form(&[
            ("email", "redirected@example.org"),
            ("redirect", "https://evil.example/phish"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.headers().get("location").is_none());
    let found = app
        .store
        .get_subscriber_by_email(
            &verdicts::subscribers::SubscriberEmail::parse("redirected@example.org").unwrap(),
        )
        .await
        .unwrap();
    assert!(found.is_none());
    app.stop().await;
}

/// Opens `url` and signs `email` up through the form matching `css`, as a reader would.
async fn sign_up_on(client: &fantoccini::Client, url: &str, css: &str, email: &str) {
    use fantoccini::Locator;
    client.goto(url).await.unwrap();
    let form = client.find(Locator::Css(css)).await.unwrap();
    form.find(Locator::Css("input[name=email]"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    form.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits (up to 10 s) until the element's text contains `part`; returns the text.
async fn wait_for_text(client: &fantoccini::Client, css: &str, part: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(e) = client.find(fantoccini::Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if t.contains(part) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    last
}
