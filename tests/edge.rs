//! The public edge on a real socket: slow and idle connections are cut off, the connection cap
//! holds, every response carries the security headers, every route a stranger can hit in bulk
//! is rate-limited with `Retry-After`, and behind a proxy the client is the entry the proxy
//! appended. Both databases.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port_of(app)))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent and
/// when it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(start.elapsed()),
                );
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
        }
    }
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_off() {
    let app = TestApp::spawn("[http]\nheader_timeout = \"400ms\"").await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // One header line every 100 ms, never the blank line that ends the headers (slowloris).
    let start = Instant::now();
    let mut cut_off = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream
            .write_all(format!("X-Slow-{i}: x\r\n").as_bytes())
            .await
            .is_err()
        {
            cut_off = true;
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            cut_off = true;
            break;
        }
    }
    let held = start.elapsed();
    assert!(
        cut_off,
        "the slow client was still connected after {held:?}"
    );
    assert!(
        held >= Duration::from_millis(300) && held < Duration::from_secs(2),
        "cut off after {held:?}, expected about 400 ms"
    );
    app.stop().await;
}

#[tokio::test]
async fn idle_sockets_are_closed() {
    let app = TestApp::spawn("[http]\nheader_timeout = \"400ms\"").await;
    // A socket that never sends a byte.
    let mut silent = connect(&app).await;
    // A keep-alive connection that made one request and then went quiet.
    let mut kept = connect(&app).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let closed = closed.expect("the idle keep-alive connection was closed");
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}");
    let (nothing, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "the silent socket was still open after 5 s"
    );
    assert!(!nothing.contains("200 OK"), "{nothing}");
    app.stop().await;
}

#[tokio::test]
async fn a_body_sent_byte_by_byte_gets_408() {
    let app = TestApp::spawn("[http]\nrequest_timeout = \"500ms\"").await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /subscribe HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n",
        )
        .await
        .unwrap();
    let start = Instant::now();
    let writer = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream.write_all(b"e").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1200), writer).await;
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(app.store.count_rows("subscribers").await.unwrap(), 0);
    app.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = TestApp::spawn("[http]\nmax_connections = 2\nheader_timeout = \"3s\"").await;
    let first = connect(&app).await;
    let _second = connect(&app).await;
    let client = reqwest::Client::new();
    let health = app.url("/healthz");
    let held = tokio::time::timeout(Duration::from_millis(500), client.get(&health).send()).await;
    assert!(
        held.is_err(),
        "a third connection was served beyond the cap"
    );
    drop(first);
    let r = tokio::time::timeout(Duration::from_secs(5), client.get(&health).send())
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn("").await;
    let unsubscribe = format!(
        "/unsubscribe/{}",
        verdicts::subscribers::tokens::unsubscribe_token(&app.secret, 1)
    );
    let pages = [
        ("/", 200, false),
        ("/archive", 200, false),
        ("/healthz", 200, false),
        ("/no-such-page", 404, false),
        ("/api/issues", 401, false),
        (
            "/confirm/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            410,
            true,
        ),
        (unsubscribe.as_str(), 200, true),
        ("/unsubscribe/short", 404, true),
    ];
    for (path, status, token_page) in pages {
        let r = app.get(path).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        if token_page {
            assert_eq!(h["cache-control"], "no-store", "{path}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        } else {
            assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        }
    }
    app.stop().await;
}

/// 5 requests a minute per client and bucket (`/confirm` and `/unsubscribe` share one, `/api`
/// has its own): the 6th gets 429 with `Retry-After`, and one bucket running out does not
/// close the other.
#[tokio::test]
async fn confirm_unsubscribe_and_api_are_rate_limited_with_retry_after() {
    let app = TestApp::spawn("[http]\nrate_limit_per_minute = 5").await;
    let confirm = "/confirm/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let unsubscribe = "/unsubscribe/short";
    let post = |path: &'static str| app.client.post(app.url(path)).send();
    for path in [confirm, confirm, confirm, unsubscribe, unsubscribe] {
        assert_ne!(post(path).await.unwrap().status(), 429, "{path}");
    }
    for path in [unsubscribe, confirm] {
        let r = post(path).await.unwrap();
        assert_eq!(r.status(), 429, "{path}");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{path}: Retry-After {wait}");
        assert!(r.text().await.unwrap().contains("Too many requests"));
    }
    let api = || app.admin(reqwest::Method::GET, "/api/issues").send();
    for i in 0..5 {
        assert_eq!(api().await.unwrap().status(), 200, "API call #{i}");
    }
    let r = api().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("Too many requests"));
    assert!(v["retry_after"].as_u64().is_some_and(|s| s >= 1), "{v}");
    // Routes without a limit still answer.
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

/// Behind one trusted proxy, the client is the rightmost `X-Forwarded-For` entry: a client that
/// writes its own entries to the left neither escapes the rate limit nor gets them recorded.
#[tokio::test]
async fn behind_a_proxy_the_rightmost_forwarded_entry_is_the_client() {
    let app = TestApp::spawn(
        "[signup]\ntrust_forwarded_for = true\nrate_limit_per_minute = 3\n\
         confirmations_per_mailbox_per_hour = 100",
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = app
            .client
            .post(app.url("/subscribe"))
            .header("X-Forwarded-For", format!("198.51.100.{i}, 203.0.113.9"))
            .form(&[("email", format!("xff{i}@example.org"))])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let ips: Vec<Option<String>> = sqlx::query_scalar("SELECT ip FROM consents ORDER BY id")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert_eq!(ips, vec![Some("203.0.113.9".to_string()); 3]);
    // A second proxy line: the proxy appends its own line, which wins.
    let r = app
        .client
        .post(app.url("/subscribe"))
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-For", "192.0.2.44")
        .form(&[("email", "xff-lines@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let last: Option<String> =
        sqlx::query_scalar("SELECT ip FROM consents ORDER BY id DESC LIMIT 1")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(last.as_deref(), Some("192.0.2.44"));
    app.stop().await;
}

#[tokio::test]
async fn without_a_trusted_proxy_forwarded_headers_are_ignored() {
    let app = TestApp::spawn("[signup]\nrate_limit_per_minute = 2").await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let r = app
            .client
            .post(app.url("/subscribe"))
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .form(&[("email", format!("direct{i}@example.org"))])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    let ips: Vec<Option<String>> = sqlx::query_scalar("SELECT ip FROM consents ORDER BY id")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert_eq!(ips, vec![Some("127.0.0.1".to_string()); 2]);
    app.stop().await;
}

/// JSON bodies are objects, without duplicate keys: an array is not a signup or an issue, and
/// `{"week": A, "week": B}` is not B. Each is refused with a clear message and writes nothing.
#[tokio::test]
async fn json_bodies_are_objects_without_duplicate_keys() {
    let app = TestApp::spawn("[signup]\nrate_limit_per_minute = 1000").await;
    let subscribe_cases = [
        (
            r#"["a@example.org"]"#,
            "must be a JSON object, not an array",
        ),
        (r#""a@example.org""#, "must be a JSON object, not a string"),
        (
            r#"{"email":"a@example.org","email":"b@example.org"}"#,
            "duplicate key \"email\"",
        ),
    ];
    for (body, expected) in subscribe_cases {
        let r = app
            .client
            .post(app.url("/subscribe"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let v: serde_json::Value = r.json().await.unwrap();
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(expected), "{body}: {error}");
    }
    let api_cases = [
        ("/api/issues", r#"["2026-W47"]"#, "not an array"),
        (
            "/api/issues",
            r#"{"week":"2026-W01","week":"2026-W47"}"#,
            "duplicate key \"week\"",
        ),
        (
            "/api/comparisons",
            r#"{"slug":"a-vs-b","slug":"c-vs-d"}"#,
            "duplicate key \"slug\"",
        ),
        (
            "/api/comparisons",
            r#"[{"slug":"a-vs-b","title":"A","title":"B"}]"#,
            "duplicate key \"title\"",
        ),
    ];
    for (path, body, expected) in api_cases {
        let r = app
            .admin(reqwest::Method::POST, path)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{path} {body}");
        let v: serde_json::Value = r.json().await.unwrap();
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(expected), "{path} {body}: {error}");
    }
    for table in ["subscribers", "issues", "comparisons"] {
        assert_eq!(app.store.count_rows(table).await.unwrap(), 0, "{table}");
    }
    app.stop().await;
}
