//! Categories, as readers meet them: each chooses on the manage page linked from an issue
//! received over SMTP, and the next issue, received over SMTP again, carries only the
//! comparisons with a tool in their categories (the whole issue for a reader without a
//! choice; no email for one whose categories match nothing, skipped with a reason of its own).
//! Each distinct set is rendered once. Unknown categories and foreign tokens change nothing.
//! Both databases.

mod common;

use std::time::Duration;

use common::TestEnv;
use common::send_issue as send;
use common::smtp::{Received, SmtpSink};
use reqwest::StatusCode;
use verdicts::engagement::{Choice, vote_choice_token};
use verdicts::store::Store;
use verdicts::subscribers::SubscriberEmail;

/// A comparison whose two tools are in `categories`.
fn comparison(slug: &str, title: &str, at: &str, categories: [&str; 2]) -> serde_json::Value {
    let mut v = common::comparison_json(slug, title, at);
    for (i, c) in categories.iter().enumerate() {
        v["tools"][i]["category"] = (*c).into();
    }
    v
}

async fn id_of(store: &Store, email: &str) -> i64 {
    store
        .get_subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
}

fn one_for<'a>(all: &'a [Received], rcpt: &str) -> &'a Received {
    let mine: Vec<&Received> = all.iter().filter(|m| m.rcpt == rcpt).collect();
    assert_eq!(mine.len(), 1, "{rcpt}: one message");
    mine[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_get_only_the_comparisons_of_their_categories() {
    let env = TestEnv::new().await;
    // Issue #1: two "Developer Tools" comparisons, to five readers.
    let (store, _) = common::frozen_issue(&env, 5).await;
    // Published, not yet in an issue: what the next issue carries.
    use verdicts::comparisons::import::parse_json;
    use verdicts::store::comparisons::Source;
    let next = serde_json::Value::Array(vec![
        comparison(
            "chat-one-vs-chat-two",
            "Chat One vs Chat Two",
            "2026-11-24T10:00:00Z",
            ["Chat", "Chat"],
        ),
        comparison(
            "paint-vs-draw",
            "Paint vs Draw",
            "2026-11-25T10:00:00Z",
            ["Image", "Image"],
        ),
        comparison(
            "coder-vs-sketcher",
            "Coder vs Sketcher",
            "2026-11-26T10:00:00Z",
            ["Code", "Image"],
        ),
    ])
    .to_string();
    store
        .upsert_comparisons(&parse_json(&next).unwrap(), Source::Json, false)
        .await
        .unwrap();

    let sink = SmtpSink::start();
    let server = common::serve_with(&env, common::free_port(), &sink.transport()).await;
    let public = server.public.clone();
    let client = reqwest::Client::new();
    send(&env, &sink, &public, "1");
    let first = sink.wait_for(5, Duration::from_secs(20)).await;
    let manage = |n: usize| {
        one_for(&first, &format!("r{n:04}@example.org"))
            .link(&format!("{public}/manage/"))
            .expect("a manage link")
    };

    // The page lists every category of the published comparisons, none ticked.
    let html = client
        .get(manage(0))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for c in ["Chat", "Code", "Developer Tools", "Image"] {
        assert!(
            html.contains(&format!(
                "<input type=\"checkbox\" name=\"category\" value=\"{c}\"> {c}"
            )),
            "{c} offered, not ticked: {html}"
        );
    }
    assert!(html.contains("You get every comparison."));

    // Bad values and foreign tokens: a clear error, nothing changes.
    let id2 = id_of(&store, "r0002@example.org").await;
    for (form, error) in [
        (
            vec![("action", "categories"), ("category", "Astrology")],
            "category: &quot;Astrology&quot; is not one of the categories",
        ),
        (
            vec![
                ("action", "categories"),
                ("category", "Chat"),
                ("category", ""),
            ],
            "category: an empty choice.",
        ),
    ] {
        let r = client.post(manage(2)).form(&form).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{form:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains(error), "{form:?}: {html}");
        assert!(html.contains("Save categories"), "the page again");
    }
    let foreign = verdicts::subscribers::tokens::unsubscribe_token(
        &env.settings("").secret_key().unwrap(),
        id2,
    );
    let r = client
        .post(format!("{public}/manage/{foreign}"))
        .form(&[("action", "categories"), ("category", "Chat")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        store.subscriber_categories(id2).await.unwrap(),
        Vec::<String>::new()
    );

    // The choices: r0 Chat, r1 Image, r2 nothing, r3 a category the next issue lacks,
    // r4 Chat and Image (which covers the whole next issue).
    for (n, cats) in [
        (0, vec!["Chat"]),
        (1, vec!["Image"]),
        (3, vec!["Developer Tools"]),
        (4, vec!["Image", "Chat"]),
    ] {
        let mut form = vec![("action", "categories")];
        form.extend(cats.iter().map(|c| ("category", *c)));
        let r = client.post(manage(n)).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 200, "r{n}");
        let html = r.text().await.unwrap();
        assert!(
            html.contains("Saved. You get only the comparisons"),
            "{html}"
        );
        for c in &cats {
            assert!(
                html.contains(&format!("name=\"category\" value=\"{c}\" checked> {c}")),
                "{c} ticked: {html}"
            );
        }
    }
    let id4 = id_of(&store, "r0004@example.org").await;
    assert_eq!(
        store.subscriber_categories(id4).await.unwrap(),
        ["Chat", "Image"]
    );
    let shots = common::screenshot_dir("categories");
    common::screenshot(
        &manage(1),
        390,
        1300,
        &shots.join("manage-categories-390.png"),
    );
    common::screenshot(
        &manage(1),
        1200,
        1000,
        &shots.join("manage-categories-desktop.png"),
    );

    // Issue #2, received over SMTP.
    let settings = env.settings("");
    verdicts::issues::freeze::create_issue(
        &store,
        &verdicts::render::Renderer::new().unwrap(),
        &settings,
        "2026-W48".parse().unwrap(),
    )
    .await
    .unwrap()
    .expect("week 48 has comparisons");
    send(&env, &sink, &public, "2");
    let all = sink.wait_for(9, Duration::from_secs(30)).await;
    let second: Vec<Received> = all[5..].to_vec();
    let mut rcpts: Vec<&str> = second.iter().map(|m| m.rcpt.as_str()).collect();
    rcpts.sort_unstable();
    assert_eq!(
        rcpts,
        [
            "r0000@example.org",
            "r0001@example.org",
            "r0002@example.org",
            "r0004@example.org"
        ],
        "r0003's categories match nothing: no email"
    );
    let secret = settings.secret_key().unwrap();
    let carries = |m: &Received, position: u16| {
        let token = vote_choice_token(&secret, 2, position, 0, Choice::Ship);
        let slug =
            ["Chat One vs Chat Two", "Paint vs Draw", "Coder vs Sketcher"][usize::from(position)];
        let (html, text) = (m.html(), m.text());
        let in_html = html.contains(&token) && html.contains(slug);
        let in_text = text.contains(&token) && text.contains(slug);
        assert_eq!(in_html, in_text, "{}: both parts agree on {slug}", m.rcpt);
        in_html
    };
    let expect = [
        (
            "r0000@example.org",
            [true, false, false],
            "Chat One vs Chat Two — ",
        ),
        (
            "r0001@example.org",
            [false, true, true],
            "Paint vs Draw and 1 more verdict — ",
        ),
        (
            "r0002@example.org",
            [true, true, true],
            "Chat One vs Chat Two and 2 more verdicts — ",
        ),
        (
            "r0004@example.org",
            [true, true, true],
            "Chat One vs Chat Two and 2 more verdicts — ",
        ),
    ];
    for (rcpt, positions, subject) in expect {
        let m = one_for(&second, rcpt);
        for (p, want) in positions.iter().enumerate() {
            assert_eq!(carries(m, p as u16), *want, "{rcpt}: position {p}");
        }
        assert!(
            m.subject().starts_with(subject) && m.subject().ends_with("#2"),
            "{rcpt}: {}",
            m.subject()
        );
        // Each still has its own manage and unsubscribe links.
        assert!(m.link(&format!("{public}/manage/")).is_some(), "{rcpt}");
        assert!(m.header("List-Unsubscribe").is_some(), "{rcpt}");
    }

    // The ledger: r3 skipped with its own reason; two sets rendered, once each.
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT s.email, d.status, d.last_error, d.variant FROM deliveries d
           JOIN subscribers s ON s.id = d.subscriber_id JOIN issues i ON i.id = d.issue_id
          WHERE i.number = 2 ORDER BY s.email",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let v = |s: &str| Some(s.to_string());
    assert_eq!(
        rows,
        [
            ("r0000@example.org".into(), "sent".into(), None, v("100")),
            ("r0001@example.org".into(), "sent".into(), None, v("011")),
            ("r0002@example.org".into(), "sent".into(), None, None),
            (
                "r0003@example.org".into(),
                "skipped".into(),
                v("no_matching_comparisons"),
                None
            ),
            ("r0004@example.org".into(), "sent".into(), None, None),
        ]
    );
    let renders: Vec<(String, i64)> =
        sqlx::query_as("SELECT variant, renders FROM issue_variants ORDER BY variant")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(renders, [("011".into(), 1), ("100".into(), 1)]);
    // Two issues and two sets.
    assert_eq!(store.issue_renders_total().await.unwrap(), 4);

    // Back to everything: tick nothing.
    let r = client
        .post(manage(3))
        .form(&[("action", "categories")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Saved. You get every comparison.")
    );
    let id3 = id_of(&store, "r0003@example.org").await;
    assert!(store.subscriber_categories(id3).await.unwrap().is_empty());
    drop(server);
}

/// Crash safety with categories: the sets are rendered by the first worker that needs them
/// (here the renders made when the send started are lost, as in a crash right after the
/// snapshot), kept, and reused by every restart; kill -9 three times mid-send skips nobody,
/// bounds the duplicates, and every reader gets the comparisons of their own set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_categories_skips_nobody_and_renders_each_set_once() {
    use common::workers::{kill9, per_recipient, smtp_env, stop, wait_status};
    use verdicts::comparisons::import::parse_json;
    use verdicts::issues::{IssueAction, IssueKey, IssueStatus};
    use verdicts::store::comparisons::Source;
    let env = TestEnv::new().await;
    let store = env.store().await;
    let n = 300;
    let concurrency = 4;
    let items = serde_json::Value::Array(vec![
        comparison(
            "talk-a-vs-talk-b",
            "Talk A vs Talk B",
            "2026-11-17T10:00:00Z",
            ["Chat", "Chat"],
        ),
        comparison(
            "pic-a-vs-pic-b",
            "Pic A vs Pic B",
            "2026-11-18T10:00:00Z",
            ["Image", "Image"],
        ),
        comparison(
            "dev-a-vs-dev-b",
            "Dev A vs Dev B",
            "2026-11-19T10:00:00Z",
            ["Code", "Code"],
        ),
    ])
    .to_string();
    store
        .upsert_comparisons(&parse_json(&items).unwrap(), Source::Json, false)
        .await
        .unwrap();
    common::add_confirmed(&store, n, "r", 4).await;
    // A third Chat, a third Image, a third nothing (everything).
    sqlx::query(
        "INSERT INTO subscriber_categories (subscriber_id, category)
         SELECT id, CASE id % 3 WHEN 0 THEN 'Chat' ELSE 'Image' END FROM subscribers WHERE id % 3 <> 2",
    )
    .execute(store.writer())
    .await
    .unwrap();
    let settings = env.settings("");
    verdicts::issues::freeze::create_issue(
        &store,
        &verdicts::render::Renderer::new().unwrap(),
        &settings,
        "2026-W47".parse().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let app = common::app(&store, &settings);
    app.perform(
        &verdicts::app::Actor::Cli,
        IssueKey::Number(1),
        IssueAction::Send,
    )
    .await
    .unwrap();
    sqlx::query("DELETE FROM issue_variants")
        .execute(store.writer())
        .await
        .unwrap();

    let sink = SmtpSink::start();
    let vars = smtp_env(
        &sink,
        &[
            ("VERDICTS__DELIVERY__CONCURRENCY", concurrency.to_string()),
            ("VERDICTS__DELIVERY__RATE_PER_SECOND", "100".to_string()),
            ("VERDICTS__DELIVERY__LEASE_SECONDS", "3".to_string()),
        ],
    );
    let kills = 3;
    for round in 0..kills {
        let worker = common::spawn_worker(&env, &vars);
        let target = (round + 1) * n / (kills + 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sink.messages().len() < target {
            assert!(
                std::time::Instant::now() < deadline,
                "the worker sends nothing"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kill9(worker);
    }
    let worker = common::spawn_worker(&env, &vars);
    wait_status(&store, 1, IssueStatus::Sent, Duration::from_secs(60)).await;
    stop(worker);

    let mails = sink.wait_for(n, Duration::from_secs(10)).await;
    let counts = per_recipient(&mails);
    assert_eq!(counts.len(), n, "no reader was skipped");
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    assert!(duplicates <= kills * concurrency, "{duplicates} duplicates");
    // Each reader got the subject of their own set.
    let ids: Vec<(String, i64)> = sqlx::query_as("SELECT email, id FROM subscribers")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let ids: std::collections::HashMap<String, i64> = ids.into_iter().collect();
    for m in &mails {
        let want = match ids[&m.rcpt] % 3 {
            0 => "Talk A vs Talk B — ",
            1 => "Pic A vs Pic B — ",
            _ => "Talk A vs Talk B and 2 more verdicts — ",
        };
        assert!(m.subject().starts_with(want), "{}: {}", m.rcpt, m.subject());
    }
    // Rendered once each by the first worker, reused by the three restarts.
    let renders: Vec<(String, i64)> =
        sqlx::query_as("SELECT variant, renders FROM issue_variants ORDER BY variant")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(renders, [("010".into(), 1), ("100".into(), 1)]);
}
