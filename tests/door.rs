//! The door of the list: a signup's domain must take mail (asked of a real DNS server on
//! loopback, dnsmasq), and throwaway domains are refused. Over HTTP against the running app,
//! counting what the database holds afterwards. Both databases.

mod common;

use common::TestApp;
use common::dns::{DnsServer, Zone};
use reqwest::StatusCode;
use serde_json::json;

fn zone() -> Zone {
    Zone::default()
        .local("test")
        .mx("mx.test", "mail.mx.test", 10)
        .host("mail.mx.test", "127.0.0.2")
        .host("aonly.test", "127.0.0.3")
        .mx("nullmx.test", ".", 0)
        .host("nullmx.test", "127.0.0.4")
        .txt("nothing.test", "v=spf1 -all")
}

async fn subscribe(app: &TestApp, email: &str) -> (StatusCode, String) {
    let r = app
        .client
        .post(app.url("/subscribe"))
        .form(&[("email", email), ("name", "Ada")])
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn rows(app: &TestApp) -> (i64, i64, i64) {
    let count = |table: &str| {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let pool = app.store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    (
        count("subscribers").await,
        count("consents").await,
        count("outbound_mail").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_domain_must_take_mail_and_dns_failure_lets_it_in() {
    let dns = DnsServer::start(&zone());
    let blocked = tempfile::tempdir().unwrap();
    let file = blocked.path().join("blocked.txt");
    std::fs::write(&file, "# throwaway\nburner.test\n").unwrap();
    let app = TestApp::spawn(&format!(
        "[dns]\nnameservers = [{:?}]\ntimeout = \"1s\"\n\
         [signup]\nblocked_domains = [\"throwaway.test\"]\nblocked_domains_file = {:?}\n",
        dns.address(),
        file.display().to_string(),
    ))
    .await;

    // MX, and A without MX: in.
    for email in ["ada@mx.test", "bob@aonly.test"] {
        let (status, page) = subscribe(&app, email).await;
        assert_eq!(status, StatusCode::OK, "{email}: {page}");
        assert!(page.contains("Check your inbox"), "{email}: {page}");
    }
    assert_eq!(rows(&app).await.0, 2);
    let before = rows(&app).await;

    // NXDOMAIN, null MX, neither MX nor address: refused, the form kept, nothing written.
    for email in ["cy@gone.test", "dee@nullmx.test", "eve@nothing.test"] {
        let (status, page) = subscribe(&app, email).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{email}: {page}");
        assert!(
            page.contains("That domain cannot receive email"),
            "{email}: {page}"
        );
        assert!(page.contains(&format!("value=\"{email}\"")), "{page}");
    }
    // Throwaway domains (the list and the file), subdomains included; their DNS is not asked
    // (they do not exist here, and the answer says "not accepted", not "cannot receive").
    for email in [
        "fay@throwaway.test",
        "gus@x.throwaway.test",
        "hal@burner.test",
        "ivy@a.b.burner.test",
    ] {
        let (status, page) = subscribe(&app, email).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{email}: {page}");
        assert!(page.contains("are not accepted"), "{email}: {page}");
    }
    // JSON callers get the same refusal.
    let r = app
        .client
        .post(app.url("/subscribe"))
        .json(&json!({"email": "jo@gone.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("That domain cannot receive email"),
        "{body}"
    );
    assert_eq!(rows(&app).await, before, "a refused signup writes nothing");

    // The DNS server stops: an unknown domain is let in (fail-open), promptly; a refused one
    // stays refused from the cache.
    dns.stop();
    let started = std::time::Instant::now();
    let (status, page) = subscribe(&app, "kim@later.test").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rows(&app).await.0, 3);
    let (status, _) = subscribe(&app, "lee@gone.test").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(rows(&app).await.0, 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_block_list_stops_start_up_naming_the_key() {
    let env = common::TestEnv::new().await;
    let out = env
        .command()
        .env("VERDICTS__SIGNUP__BLOCKED_DOMAINS", "[\"not a domain\"]")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("signup.blocked_domains"), "{stderr}");
}
