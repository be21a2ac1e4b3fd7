//! A reader's answers that arrive by mail, as readers meet them over SMTP: a change of address
//! asked on the manage page and confirmed at the new address (the next issue goes there), and
//! `subscribers repermission` end to end (the one-click keep, and the worker unsubscribing at
//! the deadline those who did not keep, each once even with several workers). Bad values and
//! foreign tokens change nothing. Both databases.

mod common;

use std::time::Duration;

use common::TestApp;
use common::smtp::SmtpSink;
use reqwest::StatusCode;
use verdicts::store::Store;
use verdicts::subscribers::tokens::{manage_token, unsubscribe_token};
use verdicts::subscribers::{SubscriberEmail, SubscriberStatus};

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn id_of(store: &Store, email: &str) -> Option<i64> {
    store
        .get_subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
        .await
        .unwrap()
        .map(|s| s.id)
}

async fn email_of(store: &Store, id: i64) -> String {
    store.get_subscriber(id).await.unwrap().unwrap().email
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_changes_address_confirmed_at_the_new_one_and_the_next_issue_goes_there() {
    let sink = SmtpSink::start();
    let app = TestApp::spawn_public(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = \"{}\"\ntimeout_seconds = 5\n\
         [signup]\nblocked_domains = [\"throwaway.example\"]\n",
        sink.url()
    ))
    .await;
    // Two readers and issue #1, not sent yet.
    let (store, _) = common::frozen_issue(&app.env, 2).await;
    let id = id_of(&store, "r0000@example.org").await.unwrap();
    let manage = app.url(&format!("/manage/{}", manage_token(&app.secret, id)));
    let changes = "SELECT COUNT(*) FROM email_changes";
    let queued = "SELECT COUNT(*) FROM outbound_mail";

    // Bad values: a clear error on the page, nothing written, nothing mailed.
    for (email, error) in [
        ("", "email: give the new address."),
        ("not an address", "email:"),
        ("R0000@example.org", "that is the address you have now."),
        (
            "ada@mail.throwaway.example",
            "email: Addresses at that domain are not accepted",
        ),
    ] {
        let r = app
            .client
            .post(&manage)
            .form(&[("action", "email"), ("email", email)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{email:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains(error), "{email:?}: {html}");
        assert!(html.contains("Change your address"), "the page again");
    }
    // Another reader's token opens nothing.
    let foreign = unsubscribe_token(&app.secret, id);
    let r = app
        .client
        .post(app.url(&format!("/manage/{foreign}")))
        .form(&[("action", "email"), ("email", "new@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        (count(&store, changes).await, count(&store, queued).await),
        (0, 0)
    );
    // Another reader's address: the same answer as any address (the page tells no one who
    // subscribes), and no link goes to it.
    let r = app
        .client
        .post(&manage)
        .form(&[("action", "email"), ("email", "r0001@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("we sent a link to r0001@example.org"),
        "{html}"
    );
    assert!(!html.contains("already on the list"), "{html}");
    assert_eq!(count(&store, queued).await, 0, "nothing mailed");
    assert_eq!(email_of(&store, id).await, "r0000@example.org");

    // The change: a link goes to the new address; the address stays until it is confirmed.
    let r = app
        .client
        .post(&manage)
        .form(&[("action", "email"), ("email", " New@Example.org ")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("we sent a link to new@example.org"), "{html}");
    assert!(
        html.contains(
            "Waiting for you to click the link we sent to <strong>new@example.org</strong>"
        )
    );
    let mails = sink.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(mails[0].rcpt, "new@example.org");
    assert_eq!(
        mails[0].subject(),
        "Confirm your new address for Weekly AI Tool Verdicts"
    );
    let link = mails[0]
        .link(&app.url("/address/"))
        .expect("a confirmation link in the text part");
    assert!(mails[0].html().contains(&format!("href=\"{link}\"")));
    assert_eq!(email_of(&store, id).await, "r0000@example.org");
    let shots = common::screenshot_dir("control");
    common::screenshot(&manage, 390, 1500, &shots.join("manage-address-390.png"));
    common::screenshot(
        &manage,
        1200,
        1300,
        &shots.join("manage-address-desktop.png"),
    );

    // Following the link (a mail scanner does) changes nothing: it shows a button.
    let page = app.client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Use this address") && html.contains("new@example.org"));
    assert_eq!(email_of(&store, id).await, "r0000@example.org");
    // A made-up token of the right shape: nothing.
    let forged = app.url(&format!("/address/{}", "A".repeat(43)));
    assert_eq!(app.client.get(&forged).send().await.unwrap().status(), 404);
    assert_eq!(app.client.post(&forged).send().await.unwrap().status(), 404);
    assert_eq!(email_of(&store, id).await, "r0000@example.org");

    // The button applies it, with a consent record; the link is used up.
    let r = app.client.post(&link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Your address is changed"));
    assert_eq!(email_of(&store, id).await, "new@example.org");
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event FROM consents WHERE subscriber_id = $1 ORDER BY at, id")
            .bind(id)
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(events.last().map(String::as_str), Some("email_change"));
    assert_eq!(app.client.post(&link).send().await.unwrap().status(), 404);
    let again = app
        .client
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(again.contains("Already done"), "{again}");

    // The next issue, received over SMTP, goes to the new address.
    let out = app
        .env
        .command()
        .env("VERDICTS__MAIL__TRANSPORT", "smtp")
        .env("VERDICTS__SMTP__URL", sink.url())
        .args(["issue", "send", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = sink.wait_for(3, Duration::from_secs(20)).await;
    let mut rcpts: Vec<&str> = all[1..].iter().map(|m| m.rcpt.as_str()).collect();
    rcpts.sort_unstable();
    assert_eq!(rcpts, ["new@example.org", "r0001@example.org"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repermission_keeps_who_clicks_and_lapses_the_rest_at_the_deadline() {
    let sink = SmtpSink::start();
    let app = TestApp::spawn_public(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = \"{}\"\ntimeout_seconds = 5\n",
        sink.url()
    ))
    .await;
    let store = app.store.clone();
    // Three readers of long standing, one who confirmed today.
    common::add_confirmed(&store, 3, "old", 1).await;
    sqlx::query("UPDATE subscribers SET confirmed_at = 1000")
        .execute(store.writer())
        .await
        .unwrap();
    common::add_confirmed(&store, 1, "new", 1).await;
    let cutoff = "2000-01-01".to_string();
    let asked = "SELECT COUNT(*) FROM subscribers WHERE repermission_deadline IS NOT NULL";
    let queued = "SELECT COUNT(*) FROM outbound_mail WHERE kind = 'repermission'";

    // Bad input: exit 2, a clear message, nothing changes.
    for (args, error) in [
        (vec!["--confirmed-before", "yesterday"], "is not a time"),
        (vec!["--confirmed-before", "2999-01-01"], "is in the future"),
        (
            vec!["--confirmed-before", &cutoff, "--deadline", "2h"],
            "deadline: must be between one day and a year",
        ),
        (
            vec!["--confirmed-before", &cutoff, "--deadline", "soon"],
            "is not a duration",
        ),
    ] {
        let mut all = vec!["subscribers", "repermission"];
        all.extend(args.iter().copied());
        let out = app.env.cli(&all);
        assert_eq!(out.code, 2, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains(error), "{args:?}: {}", out.stderr);
    }
    // The dry run counts and mails nobody.
    let out = app.env.cli(&[
        "--json",
        "subscribers",
        "repermission",
        "--confirmed-before",
        &cutoff,
        "--dry-run",
    ]);
    let dry: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(
        (dry["readers"].as_u64(), dry["dry_run"].as_bool()),
        (Some(3), Some(true))
    );
    assert_eq!(
        (count(&store, asked).await, count(&store, queued).await),
        (0, 0)
    );

    let out = app.env.cli(&[
        "subscribers",
        "repermission",
        "--confirmed-before",
        &cutoff,
        "--deadline",
        "14d",
    ]);
    assert!(
        out.ok().starts_with("asked 3 readers confirmed before"),
        "{}",
        out.stdout
    );
    assert_eq!(count(&store, asked).await, 3);
    // Asking again asks nobody twice.
    let out = app.env.cli(&[
        "--json",
        "subscribers",
        "repermission",
        "--confirmed-before",
        &cutoff,
    ]);
    let again: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(again["readers"], 0);

    let mails = sink.wait_for(3, Duration::from_secs(20)).await;
    let mut rcpts: Vec<&str> = mails.iter().map(|m| m.rcpt.as_str()).collect();
    rcpts.sort_unstable();
    assert_eq!(
        rcpts,
        ["old0@example.org", "old1@example.org", "old2@example.org"]
    );
    assert!(
        mails
            .iter()
            .all(|m| m.subject() == "Still want Weekly AI Tool Verdicts? Keep your subscription")
    );
    let keep = mails
        .iter()
        .find(|m| m.rcpt == "old0@example.org")
        .unwrap()
        .link(&app.url("/keep/"))
        .expect("a keep link");

    // The link shows a button and changes nothing; the button keeps.
    let old0 = id_of(&store, "old0@example.org").await.unwrap();
    let page = app.client.get(&keep).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Keep my subscription"));
    assert!(store.repermission_deadline(old0).await.unwrap().is_some());
    // Foreign and forged tokens: nothing.
    let old1 = id_of(&store, "old1@example.org").await.unwrap();
    for bad in [
        manage_token(&app.secret, old1),
        "x".repeat(32),
        "short".into(),
    ] {
        let url = app.url(&format!("/keep/{bad}"));
        assert_eq!(app.client.get(&url).send().await.unwrap().status(), 404);
        assert_eq!(app.client.post(&url).send().await.unwrap().status(), 404);
    }
    assert!(store.repermission_deadline(old1).await.unwrap().is_some());
    let r = app.client.post(&keep).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You stay subscribed"));
    assert_eq!(store.repermission_deadline(old0).await.unwrap(), None);

    // The deadline passes: the running worker unsubscribes the two who did not keep.
    sqlx::query(
        "UPDATE subscribers SET repermission_deadline = 1 WHERE repermission_deadline IS NOT NULL",
    )
    .execute(store.writer())
    .await
    .unwrap();
    let lapsed = "SELECT COUNT(*) FROM consents WHERE event = 'lapsed'";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count(&store, lapsed).await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker lapses them"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (email, status) in [
        ("old0@example.org", SubscriberStatus::Confirmed),
        ("old1@example.org", SubscriberStatus::Unsubscribed),
        ("old2@example.org", SubscriberStatus::Unsubscribed),
        ("new0@example.org", SubscriberStatus::Confirmed),
    ] {
        let s = store
            .get_subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.status, status, "{email}");
    }
    let kept: i64 = count(&store, "SELECT COUNT(*) FROM consents WHERE event = 'keep'").await;
    assert_eq!(
        (
            kept,
            count(&store, lapsed).await,
            count(&store, asked).await
        ),
        (1, 2, 0)
    );
    app.stop().await;
}

#[tokio::test]
async fn several_workers_lapse_each_reader_once() {
    let env = common::TestEnv::new().await;
    let store = env.store().await;
    let settings = env.settings("");
    common::add_confirmed(&store, 30, "p", 2).await;
    let app = common::app(&store, &settings);
    let r = app
        .repermission(
            &verdicts::app::Actor::Cli,
            chrono::Utc::now() + chrono::Duration::seconds(0),
            Duration::from_secs(86_400),
            false,
        )
        .await
        .unwrap();
    assert_eq!(r.readers, 30);
    // Not due yet: nobody.
    assert!(
        app.lapse_repermissions(chrono::Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    let later = chrono::Utc::now() + chrono::Duration::days(2);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let store = Store::connect(&settings.database).await.unwrap();
        workers.push(common::app(&store, &settings));
    }
    let passes =
        futures_util::future::join_all(workers.iter().map(|w| w.lapse_repermissions(later))).await;
    let mut ids: Vec<i64> = passes
        .into_iter()
        .flat_map(|p| p.unwrap().into_iter().map(|l| l.id))
        .collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((total, ids.len()), (30, 30), "each reader once");
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM consents WHERE event = 'lapsed'"
        )
        .await,
        30
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM subscribers WHERE status = 'unsubscribed'"
        )
        .await,
        30
    );
}
