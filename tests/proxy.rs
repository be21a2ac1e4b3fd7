//! Behind a real proxy (issue 26): Debian's nginx on loopback, running `deploy/nginx.conf` —
//! the file the README recommends, with only its ports, TLS lines and paths substituted — in
//! front of the real server. Through it: the client address, and so the rate limits and the
//! consent records, is the one nginx appends to `X-Forwarded-For`, whatever the client wrote;
//! console cookies are `Secure` when `http.public_url` is https; slow clients are cut off by
//! the proxy's timeouts (shortened here; the shipped values are asserted); the access log
//! keeps no token of a mailed link. Both databases.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running nginx, stopped when dropped.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx's access log (`deploy/nginx.conf`'s format) so far.
    fn access_log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("access.log")).unwrap_or_default()
    }

    /// Waits until nginx's error log has a line containing `needle`.
    async fn wait_for_log(&self, needle: &str, within: Duration) {
        let log = self._dir.path().join("error.log");
        let deadline = Instant::now() + within;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text
                .lines()
                .any(|l| l.contains(needle) && l.contains("sending"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx never logged {needle:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `deploy/nginx.conf` for loopback: listens on a free port of 127.0.0.1 (plain HTTP: the TLS
/// lines go), proxies to `upstream_port`, writes its access log into `dir`.
fn loopback_config(upstream_port: u16, port: u16, dir: &str) -> String {
    let recommended =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"))
            .unwrap();
    let mut out = String::new();
    for line in recommended.lines() {
        let code = line.split('#').next().unwrap().trim();
        let line = match code {
            "server 127.0.0.1:8080;" => format!("    server 127.0.0.1:{upstream_port};"),
            "listen 443 ssl;" => format!("    listen 127.0.0.1:{port};"),
            "http2 on;" => continue,
            // The shipped timeouts, shortened so the test waits seconds, not half a minute;
            // that they are the shipped ones is asserted below.
            "client_header_timeout 10s;" => "    client_header_timeout 2s;".to_string(),
            "send_timeout 30s;" => "    send_timeout 2s;".to_string(),
            c if c.starts_with("ssl_certificate") => continue,
            "access_log /var/log/nginx/verdicts.access.log verdicts;" => {
                format!("    access_log {dir}/access.log verdicts;")
            }
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    for shipped in [
        "client_header_timeout 10s;",
        "send_timeout 30s;",
        // Below verdicts' http.header_timeout (10 s), which closes idle upstream connections.
        "keepalive_timeout 5s;",
    ] {
        assert!(
            recommended.contains(shipped),
            "deploy/nginx.conf: {shipped} changed"
        );
    }
    for expected in [
        format!("server 127.0.0.1:{upstream_port};"),
        format!("listen 127.0.0.1:{port};"),
        "client_header_timeout 2s;".to_string(),
        "send_timeout 2s;".to_string(),
        format!("access_log {dir}/access.log verdicts;"),
    ] {
        assert!(out.contains(&expected), "deploy/nginx.conf changed shape");
    }
    out
}

async fn start_nginx(app: &TestApp) -> Nginx {
    let upstream: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::write(
        dir.path().join("verdicts.conf"),
        loopback_config(upstream, port, &d),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               include {d}/verdicts.conf;\n}}\n"
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/nginx")
        .args(["-p", &d, "-e", &format!("{d}/error.log"), "-c"])
        .arg(dir.path().join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx (Debian's nginx package) runs");
    let mut nginx = Nginx {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && r.status() == 200
        {
            return nginx;
        }
        if let Some(status) = nginx.child.try_wait().unwrap() {
            let log =
                std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
            panic!("nginx exited with {status}: {log}");
        }
        assert!(Instant::now() < deadline, "nginx did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The settings `deploy/nginx.conf` says go with it.
const BEHIND_NGINX: &str = "[http]\npublic_url = \"https://news.example.org\"\n\
    max_connections_per_client = 0\n[signup]\ntrust_forwarded_for = true\n";

/// A client of nginx from `source` (another loopback address).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_the_proxys_entry_drives_rate_limits_and_cookies_are_secure() {
    let app = TestApp::spawn(&format!(
        "{BEHIND_NGINX}rate_limit_per_minute = 3\nconfirmations_per_mailbox_per_hour = 100\n"
    ))
    .await;
    let nginx = start_nginx(&app).await;
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", nginx.port);

    // From 127.0.0.3, five signups, each with another forged left entry: the address nginx
    // appends is what counts, so the fourth is refused.
    let three = client_from("127.0.0.3");
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = three
            .post(url("/subscribe"))
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .form(&[("email", format!("proxied{i}@example.org"))])
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // Another client address has its own quota.
    let r = client_from("127.0.0.4")
        .post(url("/subscribe"))
        .form(&[("email", "other@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ips: Vec<Option<String>> = sqlx::query_scalar("SELECT ip FROM consents ORDER BY id")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        ips,
        vec![
            s("127.0.0.3"),
            s("127.0.0.3"),
            s("127.0.0.3"),
            s("127.0.0.4")
        ],
        "the consent records hold the address nginx saw"
    );

    // public_url is https: the console's cookies are Secure (and HttpOnly, SameSite=Strict).
    let r = three.get(url("/admin/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("verdicts_login_csrf="))
        .expect("the login form's cookie")
        .to_string();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    drop(nginx);
    app.stop().await;
}

/// The proxy's timeouts from `deploy/nginx.conf` cut slow clients off: headers never
/// finished (`client_header_timeout 10s`) and a client that stops reading its answers
/// (`send_timeout 30s`); meanwhile other clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_slow_clients_are_cut_off() {
    let app = TestApp::spawn(BEHIND_NGINX).await;
    let nginx = start_nginx(&app).await;
    let port = nginx.port;

    // Headers five lines a second, never finished.
    let slowloris = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: news.example.org\r\n")
            .await
            .unwrap();
        let start = Instant::now();
        for i in 0..200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stream
                .write_all(format!("X-Slow-{i}: x\r\n").as_bytes())
                .await
                .is_err()
            {
                return start.elapsed();
            }
            let mut probe = [0u8; 256];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(5), stream.read(&mut probe)).await
            {
                return start.elapsed();
            }
        }
        panic!("the slow header client was still connected after 40 s");
    });

    // Pipelined requests whose answers are never read.
    const PIPELINED: usize = 4000;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let all = b"GET /admin/static/console.css HTTP/1.1\r\nHost: news.example.org\r\n\r\n"
            .repeat(PIPELINED);
        let _ = tokio::time::timeout(Duration::from_secs(60), write.write_all(&all)).await;
        write
    });

    // Others are served meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let r = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(start.elapsed() < Duration::from_secs(1));

    let held = slowloris.await.unwrap();
    assert!(
        held >= Duration::from_millis(1500) && held < Duration::from_secs(6),
        "the slow header client was cut off after {held:?} (client_header_timeout 2s)"
    );

    // Not reading for longer than send_timeout: nginx closes (its log says so); what was in
    // flight is all that arrives.
    nginx
        .wait_for_log("timed out", Duration::from_secs(30))
        .await;
    let mut answered = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut text = Vec::new();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => text.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let line = b"HTTP/1.1 200 OK";
    answered += text.windows(line.len()).filter(|w| w == line).count();
    assert!(
        closed,
        "the stalled reader is still connected ({answered} answers read)"
    );
    assert!(answered < PIPELINED, "every answer was sent: never cut off");
    writer.abort();
    drop(nginx);
    app.stop().await;
}

/// The path prefixes whose next segment is a token, as `deploy/nginx.conf`'s log map lists them.
fn redacted_prefixes() -> Vec<String> {
    let conf =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"))
            .unwrap();
    let alternatives = regex::Regex::new(r"\(\?<verdicts_prefix>/\(([^)]*)\)\)")
        .unwrap()
        .captures(&conf)
        .expect("deploy/nginx.conf maps token paths for its access log")[1]
        .to_string();
    alternatives.split('|').map(|p| format!("/{p}/")).collect()
}

/// Issue 26 (audit): nginx's access log kept every mailed link — `/r/…`, `/confirm/…`,
/// `/admin/reset/…` — whole, so whoever reads the log could click them. Through
/// `deploy/nginx.conf` a GET of each token path leaves a line with `[token]` in place of the
/// token, other paths are logged as they are, and every route of the server with a `{token}`
/// segment is one the log map covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_the_access_log_keeps_no_tokens() {
    let prefixes = redacted_prefixes();
    // Every `…/{token}` route of the server is covered by the map.
    let route = regex::Regex::new(r#""(/[a-z/]*?)/\{token\}"#).unwrap();
    let mut routes = Vec::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                routes.extend(route.captures_iter(&text).map(|c| format!("{}/", &c[1])));
            }
        }
    }
    assert!(routes.len() >= 8, "token routes found: {routes:?}");
    for r in &routes {
        assert!(
            prefixes.contains(r),
            "{r}{{token}} is not in deploy/nginx.conf's log map {prefixes:?}"
        );
    }

    let app = TestApp::spawn(BEHIND_NGINX).await;
    let nginx = start_nginx(&app).await;
    let client = client_from("127.0.0.5");
    let secret = "Tok3nThatMustNotBeLogged";
    let mut token_paths: Vec<String> = prefixes.iter().map(|p| format!("{p}{secret}")).collect();
    token_paths.push(format!("/unsubscribe/{secret}/stay"));
    for path in
        token_paths
            .iter()
            .map(String::as_str)
            .chain(["/archive", "/admin/reset", "/healthz"])
    {
        let r = client
            .get(format!("http://127.0.0.1:{}{path}", nginx.port))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 502, "{path}");
    }
    // nginx writes each line when its request ends (unbuffered): wait for the last one.
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = nginx.access_log();
        if log
            .lines()
            .any(|l| l.starts_with("127.0.0.5 ") && l.contains("\"GET /healthz\""))
        {
            break log;
        }
        assert!(Instant::now() < deadline, "access log:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!log.contains(secret), "a token in the access log:\n{log}");
    for prefix in &prefixes {
        assert!(
            log.contains(&format!("\"GET {prefix}[token]\"")),
            "{prefix} not logged:\n{log}"
        );
    }
    for plain in [
        "\"GET /archive\"",
        "\"GET /admin/reset\"",
        "\"GET /healthz\"",
    ] {
        assert!(log.contains(plain), "{plain} not logged:\n{log}");
    }
    assert!(
        log.lines()
            .all(|l| l.starts_with("127.0.0.5 ") || l.starts_with("127.0.0.1 ")),
        "{log}"
    );
    drop(nginx);
    app.stop().await;
}
