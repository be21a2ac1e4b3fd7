//! What readers are told, as a reader meets it: the schedule sentence comes from
//! `schedule.cron` and `schedule.timezone` (signup form, confirmation, "stay subscribed"), and
//! the unsubscribe page's "Stay subscribed" keeps the subscription instead of going to the
//! signup form. Over HTTP against the running app. Both databases.

mod common;

use common::TestApp;
use verdicts::subscribers::{SubscriberEmail, SubscriberStatus};

const SENTENCE: &str = "Two emails a week, on Tuesdays and Fridays at 07:30 Europe/Berlin";

async fn app() -> TestApp {
    TestApp::spawn("[schedule]\ncron = \"0 30 7 * * Tue,Fri\"\ntimezone = \"Europe/Berlin\"\n")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_sentence_follows_the_configured_cron() {
    let app = app().await;
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains(SENTENCE), "{page}");
    assert!(!page.contains("Monday"), "{page}");

    // The confirmation page says it too.
    let r = app
        .client
        .post(app.url("/subscribe"))
        .form(&[("email", "ada@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mail = app.outbox(1).await.remove(0);
    let link = common::link_in(&mail, &format!("{}/confirm/", "http://127.0.0.1:8080"))
        .expect("a confirmation link");
    let token = link.rsplit('/').next().unwrap();
    let r = app
        .client
        .post(app.url(&format!("/confirm/{token}")))
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("is confirmed"), "{page}");
    assert!(page.contains(SENTENCE), "{page}");
    assert!(!page.contains("Monday morning"), "{page}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stay_subscribed_keeps_the_subscription() {
    let app = app().await;
    common::add_confirmed(&app.store, 1, "reader", 1).await;
    let email = SubscriberEmail::parse("reader0@example.org").unwrap();
    let id = app
        .store
        .get_subscriber_by_email(&email)
        .await
        .unwrap()
        .unwrap()
        .id;
    let token = verdicts::subscribers::tokens::unsubscribe_token(&app.secret, id);
    let page = app
        .get(&format!("/unsubscribe/{token}"))
        .await
        .text()
        .await
        .unwrap();
    // The link next to "Stay subscribed" is this reader's, not the signup form.
    let at = page
        .find(">Stay subscribed<")
        .expect("a Stay subscribed link");
    let href_start = page[..at].rfind("href=\"").unwrap() + 6;
    let href = &page[href_start..at - 1];
    assert!(
        href.ends_with(&format!("/unsubscribe/{token}/stay")),
        "{href}"
    );
    let path = href.trim_start_matches("http://127.0.0.1:8080");
    let r = app.get(path).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("You are still subscribed"), "{page}");
    assert!(page.contains(SENTENCE), "{page}");
    let status = app
        .store
        .get_subscriber_by_email(&email)
        .await
        .unwrap()
        .unwrap()
        .status;
    assert_eq!(status, SubscriberStatus::Confirmed);

    // A forged or foreign-looking token gets the not-found page, not a reassurance.
    let mut forged = token.clone().into_bytes();
    forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let r = app.get(&format!("/unsubscribe/{forged}/stay")).await;
    assert_eq!(r.status(), 404);
    app.stop().await;
}
