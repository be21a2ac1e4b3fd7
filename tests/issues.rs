//! The weekly issue: selection across weeks, rendering, injection safety, size, preview, archive
//! and the admin API for comparisons. Runs on SQLite or PostgreSQL.

mod common;

use common::{HAIKU_PAGE, SONNET_PAGE, TestApp, TestEnv, comparison_json, fixture};
use reqwest::Method;
use serde_json::{Value, json};
use verdicts::comparisons::Comparison;
use verdicts::comparisons::import::parse_json;
use verdicts::issues::IsoWeek;
use verdicts::issues::freeze::{Created, create_issue};
use verdicts::render::{IssueInput, MARKER_START, Personalizer, Renderer, SlotValues};
use verdicts::store::comparisons::Source;

fn page(name: &str) -> Comparison {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    Comparison::from_page_text(
        &text,
        &verdicts::comparisons::page::PageContext {
            base_url: "https://shiporskip.example",
            published_at: "2026-11-18T10:00:00Z".parse().unwrap(),
        },
    )
    .unwrap()
}

fn week(s: &str) -> IsoWeek {
    s.parse().unwrap()
}

#[test]
fn the_captured_pages_render_with_every_name_score_and_count() {
    // Plain links, so the comparison pages themselves are in the mail (see tests/engagement.rs
    // for the counted `/r/` links).
    let settings = verdicts::config::Settings::from_toml("[tracking]\nclicks = false").unwrap();
    let comparisons = [page(SONNET_PAGE), page(HAIKU_PAGE)];
    let r = Renderer::new()
        .unwrap()
        .render_issue(
            &settings,
            &IssueInput {
                number: 12,
                week: week("2026-W47"),
                comparisons: &comparisons,
                secret: &verdicts::config::SecretKey::from_bytes(b"test key for rendering issues"),
                previous: &[],
                positions: None,
            },
        )
        .unwrap();
    assert_eq!(
        r.subject,
        "Claude 4 Sonnet vs SmolVLM2-2B and 1 more verdict — Weekly AI Tool Verdicts #12"
    );
    let p = Personalizer::new(&r.html, &r.text);
    let v = SlotValues::for_recipient(
        "ada@example.org",
        "Weekly AI Tool Verdicts",
        "https://news.example/unsubscribe/TOKEN",
        verdicts::engagement::SAMPLE_READER.to_string(),
    );
    let (html, text) = (p.html(&v), p.text(&v));
    for c in &comparisons {
        for part in [&html, &text] {
            assert!(part.contains(c.title()), "title {}", c.title());
            assert!(part.contains(c.url()), "url {}", c.url());
            for t in c.tools() {
                assert!(part.contains(&t.name), "tool {}", t.name);
                assert!(
                    part.contains(&format!("{} ship / {} skip", t.panel.ship, t.panel.skip)),
                    "panel counts of {}",
                    t.name
                );
                assert!(part.contains(&format!("{}% ship", t.panel.ship_percent())));
                assert!(
                    part.contains(&verdicts::render::escape_html(&t.pricing))
                        || part.contains(&t.pricing)
                );
            }
        }
    }
    // Structure: one button and one scorecard per comparison, every score in the scorecards.
    assert_eq!(html.matches("Read the full comparison").count(), 2);
    assert_eq!(html.matches("class=\"sc\"").count(), 2);
    for c in &comparisons {
        for r in c.reviews() {
            assert!(
                html.contains(&format!("<b>{}</b>", r.score)),
                "score {} of {:?}",
                r.score,
                r.persona
            );
        }
    }
    let haiku_rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("Claude Haiku Open Weights vs"))
        .filter(|l| l.trim_start().starts_with("Skeptic") || l.trim_start().starts_with("Founder"))
        .collect();
    assert_eq!(haiku_rows.len(), 2, "{text}");
    assert!(haiku_rows[0].contains("52 skip") && haiku_rows[0].contains("78 ship"));
    assert!(haiku_rows[1].contains("45 skip") && haiku_rows[1].contains("72 ship"));
    // Footer: why, unsubscribe, address; no marker left.
    assert!(html.contains("Sent to ada@example.org because you subscribed"));
    assert!(html.contains("href=\"https://news.example/unsubscribe/TOKEN\""));
    assert!(html.contains("1 Example Street"));
    assert!(text.contains("Unsubscribe with one click: https://news.example/unsubscribe/TOKEN"));
    assert!(!html.contains(MARKER_START) && !text.contains(MARKER_START));
    // The text part is written for reading, not stripped HTML.
    assert!(
        !text.contains('<') || !text.contains("<td"),
        "no markup in the text part"
    );
}

#[test]
fn ten_comparisons_stay_under_gmail_clipping() {
    let settings = verdicts::config::Settings::from_toml("").unwrap();
    let (a, b) = (page(SONNET_PAGE), page(HAIKU_PAGE));
    let ten: Vec<Comparison> = (0..10)
        .map(|i| if i % 2 == 0 { a.clone() } else { b.clone() })
        .collect();
    let r = Renderer::new()
        .unwrap()
        .render_issue(
            &settings,
            &IssueInput {
                number: 99,
                week: week("2026-W47"),
                comparisons: &ten,
                secret: &verdicts::config::SecretKey::from_bytes(b"test key for rendering issues"),
                previous: &[],
                positions: None,
            },
        )
        .unwrap();
    let html = Personalizer::new(&r.html, &r.text).html(&SlotValues::for_recipient(
        "a.very.long.address.for.testing@subdomain.example.org",
        "Weekly AI Tool Verdicts",
        "https://news.example/unsubscribe/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        verdicts::engagement::SAMPLE_READER.to_string(),
    ));
    assert_eq!(html.matches("Read the full comparison").count(), 10);
    assert!(
        html.len() < 102 * 1024,
        "HTML is {} bytes; Gmail clips above 102 KB",
        html.len()
    );
    assert!(r.subject.contains("and 9 more verdicts"));
}

#[test]
fn hostile_content_renders_as_text_everywhere() {
    let settings = verdicts::config::Settings::from_toml("").unwrap();
    let mut v = comparison_json("evil", "Evil", "2026-11-18T10:00:00Z");
    let nasty = "<script>alert(1)</script> </mj-text><mj-raw><b>raw</b></mj-raw> \"quoted\" 'single' & Ampersand — Zürich 東京";
    v["title"] = format!("A {nasty} vs B").into();
    v["tools"][0]["name"] = format!("Tool {nasty}").into();
    v["tools"][0]["tagline"] = nasty.into();
    v["tools"][1]["pricing"] = nasty.into();
    v["tools"][0]["initial"] = "<".into();
    for r in v["reviews"].as_array_mut().unwrap() {
        r["text"] = format!("{nasty}. More text after the first sentence here.").into();
    }
    v["url"] = "https://shiporskip.example/compare/evil?a=1&b=\"2\"".into();
    let c = Comparison::from_json_value(v).expect("hostile text is still valid content");
    let r = Renderer::new()
        .unwrap()
        .render_issue(
            &settings,
            &IssueInput {
                number: 1,
                week: week("2026-W47"),
                comparisons: std::slice::from_ref(&c),
                secret: &verdicts::config::SecretKey::from_bytes(b"test key for rendering issues"),
                previous: &[],
                positions: None,
            },
        )
        .expect("mrml never fails on hostile text");
    let p = Personalizer::new(&r.html, &r.text);
    for values in [
        SlotValues::for_recipient(
            "a@example.org",
            "W",
            "https://x/unsubscribe/T",
            verdicts::engagement::SAMPLE_READER.to_string(),
        ),
        SlotValues::for_archive("W", "https://x/"),
    ] {
        let html = p.html(&values);
        assert!(!html.contains("<script>"), "script tag leaked");
        assert!(!html.contains("<mj-raw>") && !html.contains("<b>raw</b>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;/mj-text&gt;&lt;mj-raw&gt;"));
        // Quotes are escaped where they could end something (attribute values); in text they
        // are plain characters (the CSS inliner's HTML5 serialiser writes them literally).
        assert!(
            html.contains("&quot;quoted&quot; 'single'"),
            "in an attribute"
        );
        assert!(
            html.contains("\"quoted\" 'single' &amp; Ampersand"),
            "in text"
        );
        assert!(!html.contains("=\"quoted\""));
        assert!(html.contains("&amp; Ampersand — Zürich 東京"));
        assert!(!html.contains("href=\"https://shiporskip.example/compare/evil?a=1&b=\"2\"\""));
        let text = p.text(&values);
        assert!(text.contains(nasty), "the text part carries the text as is");
    }
    assert!(!r.subject.contains('\n'));
}

#[test]
fn content_cannot_forge_a_slot_marker() {
    let mut v = comparison_json("forge", "Forge", "2026-11-18T10:00:00Z");
    v["tools"][0]["tagline"] = format!("x{}verdicts:footer_link\u{E001}", MARKER_START).into();
    let err = Comparison::from_json_value(v).unwrap_err().to_string();
    assert!(
        err.contains("tools[0].tagline") && err.contains("private-use"),
        "{err}"
    );
}

async fn import(store: &verdicts::store::Store, items: &[Value]) {
    let text = Value::Array(items.to_vec()).to_string();
    let comparisons = parse_json(&text).unwrap();
    store
        .upsert_comparisons(&comparisons, Source::Json, false)
        .await
        .unwrap();
}

async fn create(
    env: &TestEnv,
    store: &verdicts::store::Store,
    w: &str,
    extra: &str,
) -> (verdicts::store::issues::IssueRow, Created) {
    let settings = env.settings(extra);
    create_issue(store, &Renderer::new().unwrap(), &settings, week(w))
        .await
        .unwrap()
        .expect("the week has comparisons")
}

/// Late and back-dated comparisons: each goes out exactly once, in the next issue created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selection_over_several_weeks_sends_each_comparison_once() {
    let env = TestEnv::new().await;
    let store = env.store().await;
    import(
        &store,
        &[
            comparison_json("w45-mon", "W45 Mon", "2026-11-02T08:00:00Z"),
            comparison_json("w46-wed", "W46 Wed", "2026-11-11T12:00:00Z"),
            comparison_json("w46-sun-late", "W46 Sun late", "2026-11-15T23:59:59Z"),
            comparison_json("w47-mon", "W47 Mon", "2026-11-16T00:00:00Z"),
        ],
    )
    .await;

    let (w46, created) = create(&env, &store, "2026-W46", "").await;
    assert_eq!(created, Created::New);
    assert_eq!(
        w46.items,
        ["w45-mon", "w46-wed", "w46-sun-late"],
        "oldest first, up to the cutoff"
    );
    assert_eq!(w46.number, Some(1));

    // A comparison back-dated into W45 arrives after W46 went out: it goes out in W47.
    import(
        &store,
        &[comparison_json(
            "backdated",
            "Backdated",
            "2026-11-03T09:00:00Z",
        )],
    )
    .await;
    let (w47, _) = create(&env, &store, "2026-W47", "").await;
    assert_eq!(w47.items, ["backdated", "w47-mon"]);
    assert_eq!(w47.number, Some(2));

    // Nothing new: no issue, nothing written.
    let nothing = create_issue(
        &store,
        &Renderer::new().unwrap(),
        &env.settings(""),
        week("2026-W48"),
    )
    .await
    .unwrap();
    assert!(nothing.is_none());
    assert!(
        store
            .get_issue_by_week(week("2026-W48"))
            .await
            .unwrap()
            .is_none()
    );

    // Creating again finds the same issue; nothing changes.
    let (again, created) = create(&env, &store, "2026-W47", "").await;
    assert_eq!(created, Created::Existing);
    assert_eq!(again.id, w47.id);

    // The cap rolls the rest to the next week.
    import(
        &store,
        &[
            comparison_json("w49-a", "A", "2026-11-30T10:00:00Z"),
            comparison_json("w49-b", "B", "2026-12-01T10:00:00Z"),
            comparison_json("w49-c", "C", "2026-12-02T10:00:00Z"),
        ],
    )
    .await;
    let (w49, _) = create(&env, &store, "2026-W49", "[newsletter]\nmax_items = 2").await;
    assert_eq!(w49.items, ["w49-a", "w49-b"]);
    let (w50, _) = create(&env, &store, "2026-W50", "[newsletter]\nmax_items = 2").await;
    assert_eq!(w50.items, ["w49-c"]);
    assert_eq!(w50.number, Some(4));

    // Every comparison went out exactly once.
    let issued: Vec<String> = store
        .list_issues()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|i| i.items)
        .collect();
    let mut sorted = issued.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        issued.len(),
        sorted.len(),
        "no comparison twice: {issued:?}"
    );
    assert_eq!(
        issued.len(),
        store.count_comparisons().await.unwrap() as usize
    );
}

/// Two creators racing for the same week: one issue, every comparison once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creation_yields_one_issue() {
    let env = TestEnv::new().await;
    let store = env.store().await;
    import(
        &store,
        &[
            comparison_json("a", "A", "2026-11-17T10:00:00Z"),
            comparison_json("b", "B", "2026-11-18T10:00:00Z"),
        ],
    )
    .await;
    let settings = env.settings("");
    let renderer = Renderer::new().unwrap();
    let (x, y) = tokio::join!(
        create_issue(&store, &renderer, &settings, week("2026-W47")),
        create_issue(&store, &renderer, &settings, week("2026-W47")),
    );
    let (x, y) = (x.unwrap().unwrap(), y.unwrap().unwrap());
    assert_eq!(x.0.id, y.0.id);
    assert_eq!(store.list_issues().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_writes_html_text_and_a_complete_eml() {
    let env = TestEnv::new().await;
    env.cli(&[
        "comparisons",
        "import",
        "--published-at",
        "2026-11-18T10:00:00Z",
        fixture(SONNET_PAGE).to_str().unwrap(),
        fixture(HAIKU_PAGE).to_str().unwrap(),
    ])
    .ok();
    let out = env.cli(&["issue", "preview", "--week", "2026-W47", "--out", "pv"]);
    let stdout = out.ok();
    assert!(
        stdout.contains("draft of issue #1 for 2026-W47"),
        "{stdout}"
    );
    for f in ["issue.html", "issue.txt", "issue.eml"] {
        assert!(stdout.contains(&format!("pv/{f}")), "{stdout}");
    }
    let eml = std::fs::read_to_string(env.path().join("pv/issue.eml")).unwrap();
    let headers = &eml[..eml.find("\r\n\r\n").expect("header/body split")];
    for h in [
        "From: \"Weekly AI Tool Verdicts\" <verdicts@shiporskip.example>",
        "To: \"Preview Reader\" <reader@example.org>",
        "Subject: ",
        "Date: ",
        "Message-ID: <issue-1.preview@shiporskip.example>",
        "List-Id: \"Weekly AI Tool Verdicts\" <weekly-verdicts.shiporskip.example>",
        "List-Unsubscribe: <http://127.0.0.1:8080/unsubscribe/PREVIEW>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "Content-Type: multipart/alternative;",
    ] {
        assert!(headers.contains(h), "missing {h:?} in:\n{headers}");
    }
    assert!(eml.contains("Content-Type: text/plain; charset=utf-8"));
    assert!(eml.contains("Content-Type: text/html; charset=utf-8"));
    // A preview freezes nothing.
    let list = env.cli(&["--json", "issue", "list"]);
    assert_eq!(serde_json::from_str::<Value>(list.ok()).unwrap(), json!([]));
    // An unknown week or a week with nothing new is an input error.
    let out = env.cli(&["issue", "preview", "--week", "2026-W60"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = env.cli(&["issue", "preview", "--week", "2026-W40"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nothing to send"), "{}", out.stderr);

    // Screenshots at phone and desktop width, for a person to look at.
    let dir = common::screenshot_dir("email");
    let html = env.path().join("pv/issue.html");
    for width in [375, 1024] {
        let png = dir.join(format!("issue-{width}.png"));
        common::screenshot(&format!("file://{}", html.display()), width, 2400, &png);
        let bytes = std::fs::read(&png).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{}",
            png.display()
        );
    }
    println!("email screenshots in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_shows_only_started_issues_without_personal_data() {
    let app = TestApp::spawn("").await;
    import(
        &app.store,
        &[comparison_json(
            "a",
            "Alpha vs Beta",
            "2026-11-17T10:00:00Z",
        )],
    )
    .await;
    let r = app
        .admin(Method::POST, "/api/issues")
        .json(&json!({ "week": "2026-W47" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let issue: Value = r.json().await.unwrap();
    assert_eq!(issue["issue"]["number"], 1);

    // Frozen but not sent: not public yet.
    assert_eq!(app.get("/archive/1").await.status(), 404);
    let list = app.get("/archive").await.text().await.unwrap();
    assert!(list.contains("No issue has gone out yet"), "{list}");

    let id = issue["issue"]["id"].as_i64().unwrap();
    app.store
        .set_issue_status(id, verdicts::issues::IssueStatus::Sent, None)
        .await
        .unwrap();
    let list = app.get("/archive").await.text().await.unwrap();
    assert!(
        list.contains("#1 · Alpha vs Beta — Weekly AI Tool Verdicts #1"),
        "{list}"
    );
    let page = app.get("/archive/1").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Alpha vs Beta"));
    assert!(html.contains("You are reading the web version"));
    assert!(html.contains("Get it every week"));
    assert!(
        !html.contains("Unsubscribe") && !html.contains("Sent to"),
        "no personal data"
    );
    assert!(!html.contains(MARKER_START));

    for bad in ["/archive/2", "/archive/abc", "/archive/-1", "/nowhere"] {
        let r = app.get(bad).await;
        assert_eq!(r.status(), 404, "{bad}");
        assert!(r.text().await.unwrap().contains("Page not found"));
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_imports_comparisons_only_with_the_token() {
    let app = TestApp::spawn("").await;
    let body = comparison_json("pushed", "Pushed vs Pulled", "2026-11-18T10:00:00Z");
    let url = app.url("/api/comparisons");
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("no token", None),
        ("wrong token", Some("Bearer nope")),
        ("token prefix", Some("Bearer test-admin-token")),
        ("not bearer", Some("Basic dGVzdA==")),
    ];
    for (name, auth) in cases {
        let mut req = app.client.post(&url).json(&body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{name}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    assert_eq!(
        app.store.count_comparisons().await.unwrap(),
        0,
        "nothing written"
    );

    let mut bad = body.clone();
    bad["reviews"][0]["score"] = 140.into();
    let bad_cases: Vec<(&str, String, &str)> = vec![
        ("score", bad.to_string(), "reviews[0].score"),
        ("malformed", "{\"slug\":".into(), "malformed JSON"),
        (
            "not utf-8",
            String::from_utf8_lossy(b"\xff").into(),
            "malformed JSON",
        ),
    ];
    for (name, text, expected) in bad_cases {
        let r = app
            .admin(Method::POST, "/api/comparisons")
            .header("content-type", "application/json")
            .body(text)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{name}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().contains(expected),
            "{name}: {v}"
        );
    }
    let big = "x".repeat(3 * 1024 * 1024);
    let r = app
        .admin(Method::POST, "/api/comparisons")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        app.store.count_comparisons().await.unwrap(),
        0,
        "nothing written"
    );

    let r = app
        .admin(Method::POST, "/api/comparisons")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["imported"][0]["slug"], "pushed");
    assert_eq!(v["imported"][0]["action"], "created");
    let r = app
        .admin(Method::POST, "/api/comparisons")
        .json(&json!([body]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "an update");
    assert_eq!(app.store.count_comparisons().await.unwrap(), 1);

    let r = app
        .admin(Method::GET, "/api/issues/2026-W47")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .admin(Method::GET, "/api/issues/soon")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_closed_without_a_configured_token() {
    let env = TestEnv::new().await;
    let app = verdicts::startup::Application::build(env.settings(""))
        .await
        .unwrap();
    let port = app.port();
    let (trigger, stop) = verdicts::shutdown::channel();
    let server = tokio::spawn(app.run_until_stopped(stop));
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/issues"))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("set admin.token"));
    trigger.trigger();
    server.await.unwrap().unwrap();
}
