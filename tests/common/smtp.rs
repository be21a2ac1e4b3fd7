//! A real SMTP server on loopback for tests: Postfix's `smtp-sink`, dumping each received message
//! to a file, with optional scripted 4xx/5xx replies.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mail_parser::MessageParser;

/// A running `smtp-sink`. Killed on drop.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Envelope recipient (RCPT TO).
    pub rcpt: String,
    /// The raw message as the sink stored it (its own trace headers first).
    pub raw: String,
    pub path: PathBuf,
}

impl Received {
    /// A header of the message (not of the sink's trace block), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let msg = MessageParser::default().parse(self.raw.as_bytes())?;
        msg.header_raw(name)
            .map(|v| v.replace("\r\n", "").replace('\n', "").trim().to_string())
    }

    pub fn text(&self) -> String {
        let msg = MessageParser::default().parse(self.raw.as_bytes()).unwrap();
        msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default()
    }

    pub fn html(&self) -> String {
        let msg = MessageParser::default().parse(self.raw.as_bytes()).unwrap();
        msg.body_html(0).map(|t| t.into_owned()).unwrap_or_default()
    }

    pub fn subject(&self) -> String {
        let msg = MessageParser::default().parse(self.raw.as_bytes()).unwrap();
        msg.subject().unwrap_or_default().to_string()
    }

    /// The first link in the text part that starts with `prefix`, as a reader would click it.
    pub fn link(&self, prefix: &str) -> Option<String> {
        super::link_in(&self.raw, prefix)
    }
}

fn sink_binary() -> &'static str {
    let path = "/usr/sbin/smtp-sink";
    assert!(
        Path::new(path).exists(),
        "SMTP tests need Postfix's smtp-sink (apt-get install postfix)"
    );
    path
}

impl SmtpSink {
    /// Starts a sink that accepts everything.
    pub fn start() -> SmtpSink {
        Self::start_with(&[])
    }

    /// Starts a sink with extra smtp-sink flags (e.g. `["-r", "RCPT"]` for 4xx on RCPT).
    pub fn start_with(extra: &[&str]) -> SmtpSink {
        Self::start_on(None, extra)
    }

    /// Starts a sink on `port` (or a free one), e.g. to replace a sink that was rejecting mail.
    pub fn start_on(port: Option<u16>, extra: &[&str]) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        for _ in 0..20 {
            let port = port.unwrap_or_else(super::free_port);
            // A name of this sink's own in its greeting: when another server holds the port
            // (a free port is only free until somebody binds it), smtp-sink exits, and a
            // connection that succeeds is to that other server, whose greeting lacks the name.
            static SINKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let name = format!(
                "sink-{}-{}",
                std::process::id(),
                SINKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let mut child = Command::new(sink_binary())
                .args(["-u", "nobody", "-h", &name])
                .args(extra)
                .arg("-d")
                .arg(format!("{}/%Y%m%d%H%M%S.", dir.path().display()))
                .arg(format!("127.0.0.1:{port}"))
                .arg("256")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting smtp-sink");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    use std::io::Read;
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut greeting = [0u8; 256];
                    let n = conn.read(&mut greeting).unwrap_or(0);
                    if String::from_utf8_lossy(&greeting[..n]).contains(&name) {
                        return SmtpSink { port, dir, child };
                    }
                    break; // another server's port: try another one
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("smtp-sink did not start");
    }

    /// Stops the sink, keeping nothing it received.
    pub fn shutdown(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Settings that send through this sink: for a server that runs beside `issue send`, whose
    /// delivery worker is a second sender of the same issue and may deliver any message.
    pub fn transport(&self) -> String {
        format!(
            "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = \"{}\"\ntimeout_seconds = 5\n",
            self.url()
        )
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Received> {
        let mut out = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            let Ok(raw) = std::fs::read_to_string(&path) else {
                continue;
            };
            // A message still being written has no body separator yet.
            if !raw.contains("\n\n") && !raw.contains("\r\n\r\n") {
                continue;
            }
            let rcpt = raw
                .lines()
                .find_map(|l| l.strip_prefix("X-Rcpt-Args: "))
                .map(|r| {
                    r.split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_matches(['<', '>'])
                        .to_string()
                })
                .unwrap_or_default();
            out.push(Received { rcpt, raw, path });
        }
        out
    }

    /// Waits until at least `n` messages arrived (or panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.messages();
            if msgs.len() >= n {
                // Let a message being written finish.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return self.messages();
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages, got {} after {timeout:?}",
                msgs.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
