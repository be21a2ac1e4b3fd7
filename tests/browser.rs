//! A reader in a real headless browser (Debian's Chromium through ChromeDriver): open the signup
//! page, fill and submit the form, follow the emailed link, confirm, then unsubscribe through the
//! page. Screenshots of every page are saved for a person to look at.

mod common;

use std::time::{Duration, Instant};

use common::browser::{browser, shot, start_chromedriver};
use common::{TestApp, link_in, screenshot_dir};
use fantoccini::Locator;
use verdicts::subscribers::{SubscriberEmail, SubscriberStatus};

/// Clicks the page's submit button, as a reader would.
async fn submit(client: &fantoccini::Client) {
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits (up to 10 s) until the page's `<h1>` reads `expected`: a click navigates
/// asynchronously, and the old page's heading goes stale meanwhile.
async fn expect_heading(client: &fantoccini::Client, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(h1) = client.find(Locator::Css("h1")).await
            && let Ok(text) = h1.text().await
        {
            if text == expected {
                return;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected the heading {expected:?}, the page shows {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_signs_up_confirms_and_leaves_in_a_browser() {
    let app = TestApp::spawn_public("").await;
    let driver = start_chromedriver();
    let dir = screenshot_dir("signup-flow");
    let profile = tempfile::tempdir().unwrap();
    for width in [390u32, 1280] {
        let client = browser(&driver, width, profile.path()).await;
        let email = format!("reader{width}@example.org");

        client.goto(&app.url("/")).await.unwrap();
        expect_heading(&client, "Weekly AI Tool Verdicts").await;
        shot(&client, &dir, &format!("{width}-1-signup")).await;
        client
            .find(Locator::Css("#email"))
            .await
            .unwrap()
            .send_keys(&email)
            .await
            .unwrap();
        client
            .find(Locator::Css("#name"))
            .await
            .unwrap()
            .send_keys("Ada")
            .await
            .unwrap();
        submit(&client).await;
        expect_heading(&client, "Check your inbox").await;
        shot(&client, &dir, &format!("{width}-2-check-inbox")).await;

        let mails = app.outbox(if width == 390 { 1 } else { 3 }).await;
        let confirm = mails
            .iter()
            .rev()
            .find_map(|m| link_in(m, &app.url("/confirm/")))
            .expect("a confirmation link");
        client.goto(&confirm).await.unwrap();
        expect_heading(&client, "One more click").await;
        shot(&client, &dir, &format!("{width}-3-confirm")).await;
        submit(&client).await;
        expect_heading(&client, "You're in").await;
        shot(&client, &dir, &format!("{width}-4-confirmed")).await;
        let parsed = SubscriberEmail::parse(&email).unwrap();
        let row = app
            .store
            .get_subscriber_by_email(&parsed)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.status, SubscriberStatus::Confirmed);
        assert_eq!(row.name.as_deref(), Some("Ada"));

        let mails = app.outbox(if width == 390 { 2 } else { 4 }).await;
        let unsubscribe = mails
            .iter()
            .rev()
            .find_map(|m| link_in(m, &app.url("/unsubscribe/")))
            .expect("an unsubscribe link in the welcome mail");
        client.goto(&unsubscribe).await.unwrap();
        expect_heading(&client, "Unsubscribe from Weekly AI Tool Verdicts?").await;
        shot(&client, &dir, &format!("{width}-5-unsubscribe")).await;
        submit(&client).await;
        expect_heading(&client, "You are unsubscribed").await;
        shot(&client, &dir, &format!("{width}-6-unsubscribed")).await;
        let row = app
            .store
            .get_subscriber_by_email(&parsed)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.status, SubscriberStatus::Unsubscribed);
        client.close().await.unwrap();
    }
    println!("screenshots of the signup flow in {}", dir.display());
    app.stop().await;
}
