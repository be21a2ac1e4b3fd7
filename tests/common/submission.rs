//! A real submission server on loopback: `tests/smtp_server.py` (aiosmtpd) with STARTTLS or
//! implicit TLS under a private CA made here with the `openssl` CLI, AUTH checked against a file
//! the test can change, and the misbehaviours of real servers (idle connections dropped, AUTH
//! never answered). It logs every login attempt and message as JSON lines, which the tests read.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A private CA and a server certificate it signed for `127.0.0.1`, `localhost` and
/// `relay.verdicts.test` (a name only the tests' DNS server knows).
pub struct TestCa {
    dir: TempDir,
    /// The CA certificate: what `smtp.ca_file` points at.
    pub ca_file: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("the openssl CLI");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=verdicts test CA",
            ],
        ]
        .concat());
        run(&[
            &["req"],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat());
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:relay.verdicts.test\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let ca_file = dir.path().join("ca.pem").display().to_string();
        TestCa { dir, ca_file }
    }

    /// The server certificate (PEM) the CA signed.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server certificate's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// How the server behaves.
#[derive(Default)]
pub struct ServerOptions<'a> {
    /// Certificates for STARTTLS (required) or, with `implicit`, TLS from the first byte.
    pub tls: Option<&'a TestCa>,
    pub implicit: bool,
    /// Require AUTH with this user and password (over TLS unless `auth_without_tls`).
    pub login: Option<(&'a str, &'a str)>,
    pub auth_without_tls: bool,
    pub silent_auth: bool,
    /// Drop connections idle this long, with `"421"` first or `"close"` silently.
    pub idle: Option<(f64, &'a str)>,
    pub smtputf8: bool,
    /// Close each connection right after its first message.
    pub close_after_message: bool,
    /// Listen here (e.g. a port a test saw refused before), else on a free port.
    pub port: Option<u16>,
    /// Refuse every Nth message (1: every one) at the end of DATA with `refuse_reply` (default
    /// `421 4.7.0 …`, after which the server closes the connection).
    pub refuse_every: u32,
    pub refuse_reply: Option<&'a str>,
}

/// A running server, killed on drop.
pub struct Submission {
    pub port: u16,
    dir: TempDir,
    child: Child,
}

impl Submission {
    pub fn start(o: &ServerOptions<'_>) -> Submission {
        let dir = tempfile::tempdir().unwrap();
        let port = o.port.unwrap_or_else(super::free_port);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--out")
            .arg(dir.path())
            .arg("--log")
            .arg(dir.path().join("log.jsonl"));
        if let Some(ca) = o.tls {
            cmd.arg("--cert").arg(ca.cert()).arg("--key").arg(ca.key());
            cmd.arg(if o.implicit {
                "--implicit"
            } else {
                "--starttls"
            });
        }
        let auth_file = dir.path().join("login.txt");
        if let Some((user, password)) = o.login {
            std::fs::write(&auth_file, format!("{user}\n{password}")).unwrap();
            cmd.arg("--auth-file").arg(&auth_file);
        }
        if o.auth_without_tls {
            cmd.arg("--auth-without-tls");
        }
        if o.silent_auth {
            cmd.arg("--silent-auth");
        }
        if let Some((seconds, mode)) = o.idle {
            cmd.args(["--idle", &seconds.to_string(), "--idle-mode", mode]);
        }
        if o.smtputf8 {
            cmd.arg("--smtputf8");
        }
        if o.close_after_message {
            cmd.arg("--close-after-message");
        }
        if o.refuse_every > 0 {
            cmd.args(["--refuse-every", &o.refuse_every.to_string()]);
        }
        if let Some(reply) = o.refuse_reply {
            cmd.args(["--refuse-reply", reply]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (pip install -r tests/requirements.txt)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the submission server did not start");
        assert_eq!(line.trim(), "READY", "the submission server did not start");
        Submission { port, dir, child }
    }

    /// Changes the password the server accepts from now on.
    pub fn set_login(&self, user: &str, password: &str) {
        let path = self.dir.path().join("login.txt");
        std::fs::write(path.with_extension("tmp"), format!("{user}\n{password}")).unwrap();
        std::fs::rename(path.with_extension("tmp"), path).unwrap();
    }

    /// Every logged event, oldest first.
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// The recipients of every message received, one entry per message.
    pub fn recipients(&self) -> Vec<String> {
        self.events_of("message")
            .iter()
            .flat_map(|m| m["rcpt"].as_array().cloned().unwrap_or_default())
            .map(|r| r.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until `n` messages arrived (or panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.events_of("message");
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages, got {} after {timeout:?}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
