//! `verdicts serve`: starts on the embedded defaults, migrates, answers health checks, keeps its
//! generated secret key across restarts and stops cleanly on SIGTERM.

mod common;

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::TestEnv;
use verdicts::shutdown;
use verdicts::startup::Application;

#[tokio::test]
async fn application_answers_health_checks_and_stops_on_signal() {
    let env = TestEnv::new().await;
    let app = Application::build(env.settings("")).await.expect("builds");
    let port = app.port();
    assert_ne!(port, 0);
    let (trigger, stop) = shutdown::channel();
    let server = tokio::spawn(app.run_until_stopped(stop));

    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let ready = client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let missing = client
        .get(format!("http://127.0.0.1:{port}/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("stops within 10 s")
        .unwrap()
        .expect("stops cleanly");
}

fn spawn_serve(env: &TestEnv, port: u16) -> Child {
    env.command()
        .arg("serve")
        .env("VERDICTS__HTTP__BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns verdicts serve")
}

async fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await
            && r.status() == 200
        {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("serve exited early with {status}");
        }
        assert!(Instant::now() < deadline, "serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM, waits for exit, returns (exit code, stderr).
fn terminate(mut child: Child) -> (i32, String) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code().unwrap_or(-1), stderr)
}

#[tokio::test]
async fn serve_generates_a_secret_key_once_and_exits_cleanly() {
    let env = TestEnv::new().await;
    let port = common::free_port();
    let mut child = spawn_serve(&env, port);
    wait_healthy(port, &mut child).await;
    let (code, log) = terminate(child);
    assert_eq!(code, 0, "clean exit on SIGTERM; log:\n{log}");
    assert!(log.contains("generated a new secret key"), "{log}");
    assert!(log.contains("data/secret_key"), "the log says where: {log}");
    assert!(log.contains("scheduler started"), "{log}");

    let key_path = env.path().join("data/secret_key");
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert_eq!(key.trim().len(), 64, "32 random bytes, hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner may read the key");
    }
    if !env.is_postgres() {
        assert!(env.path().join("data/verdicts.db").is_file());
    }

    // A restart reuses the key, so links signed before keep working.
    let port = common::free_port();
    let mut child = spawn_serve(&env, port);
    wait_healthy(port, &mut child).await;
    let (code, log) = terminate(child);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("generated a new secret key"), "{log}");
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key);
}

#[tokio::test]
async fn serve_refuses_a_port_in_use_with_a_clear_error() {
    let env = TestEnv::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = env
        .command()
        .arg("serve")
        .env("VERDICTS__HTTP__BIND", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http.bind: cannot listen on"), "{stderr}");
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let env = TestEnv::new().await;
    let first = env.cli(&["--json", "migrate"]);
    let first: serde_json::Value = serde_json::from_str(first.ok()).unwrap();
    assert!(first["applied"].as_u64().unwrap() >= 1);
    let second = env.cli(&["--json", "migrate"]);
    let second: serde_json::Value = serde_json::from_str(second.ok()).unwrap();
    assert_eq!(second["applied"], 0);
}

#[tokio::test]
async fn logs_are_json_lines_with_the_flag() {
    let env = TestEnv::new().await;
    let port = common::free_port();
    let mut child = env
        .command()
        .args(["--log-json", "serve"])
        .env("VERDICTS__HTTP__BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child).await;
    let (code, log) = terminate(child);
    assert_eq!(code, 0);
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
        assert!(v["fields"]["message"].is_string(), "{l}");
    }
}
