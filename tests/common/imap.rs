//! A real IMAP server on loopback for tests: Debian's Dovecot with a throw-away configuration
//! (one user, Maildir storage, plain IMAP on 127.0.0.1), run in the foreground as a child
//! process and stopped with SIGTERM on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "bounces";
pub const PASSWORD: &str = "imap-secret-1";

/// A running Dovecot.
pub struct Dovecot {
    /// Plain IMAP (loopback).
    pub port: u16,
    /// IMAP over TLS, when started with [`Dovecot::start_tls`].
    pub tls_port: Option<u16>,
    dir: tempfile::TempDir,
    /// The private CA of the TLS listener (kept for as long as Dovecot runs).
    ca: Option<super::submission::TestCa>,
    child: Option<Child>,
}

impl Dovecot {
    /// Plain IMAP on loopback only.
    pub fn start() -> Dovecot {
        Self::start_with(false)
    }

    /// Plain IMAP and IMAPS, the latter with a certificate for 127.0.0.1 issued by a test CA
    /// (its PEM: [`Dovecot::ca_file`]).
    pub fn start_tls() -> Dovecot {
        Self::start_with(true)
    }

    /// The test CA that issued the IMAPS certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(&self.ca.as_ref().expect("started with TLS").ca_file)
    }

    fn start_with(tls: bool) -> Dovecot {
        let binary = "/usr/sbin/dovecot";
        assert!(
            Path::new(binary).exists(),
            "IMAP tests need Dovecot (apt-get install dovecot-imapd)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // Mail processes run as nobody (Dovecot refuses root).
        std::os::unix::fs::chown(d.join("mail"), Some(65534), Some(65534)).unwrap();
        std::fs::write(
            d.join("passwd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"),
        )
        .unwrap();
        let port = super::free_port();
        let tls_port = tls.then(super::free_port);
        let mut ca_keep = None;
        let (ssl, imaps_port) = match tls_port {
            Some(p) => {
                // The same private CA the submission-server tests use.
                let ca = super::submission::TestCa::new();
                let ssl = format!(
                    "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
                    ca.server_cert().display(),
                    ca.server_key().display()
                );
                ca_keep = Some(ca);
                (ssl, p)
            }
            None => ("ssl = no\n".to_string(), 0),
        };
        let conf = format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
             log_path = {d}/log\n{ssl}disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\nmail_location = maildir:{d}/mail/%u\n\
             first_valid_uid = 1\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/mail/%u\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps_port}\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n",
            d = d.display()
        );
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        let child = Command::new(binary)
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dovecot");
        let mut dovecot = Dovecot {
            ca: ca_keep,
            port,
            tls_port,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let listening = |p: u16| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
        while !listening(port) || tls_port.is_some_and(|p| !listening(p)) {
            if let Some(status) = dovecot.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "dovecot exited with {status}: {}",
                    std::fs::read_to_string(dovecot.dir.path().join("log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "dovecot did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        dovecot
    }

    /// `imaps://bounces:…@127.0.0.1:PORT/INBOX`.
    pub fn tls_url(&self) -> String {
        format!(
            "imaps://{USER}:{PASSWORD}@127.0.0.1:{}/INBOX",
            self.tls_port.expect("started with start_tls")
        )
    }

    /// `imap://bounces:…@127.0.0.1:PORT/INBOX`.
    pub fn url(&self) -> String {
        format!("imap://{USER}:{PASSWORD}@127.0.0.1:{}/INBOX", self.port)
    }

    async fn session(&self) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap().unwrap();
        let mut session = client
            .login(USER, PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        session.select("INBOX").await.unwrap();
        session
    }

    /// Delivers messages into the INBOX with IMAP APPEND.
    pub async fn append(&self, messages: &[String]) {
        let mut session = self.session().await;
        for m in messages {
            session
                .append("INBOX", None, None, m.as_bytes())
                .await
                .unwrap();
        }
        session.logout().await.unwrap();
    }

    /// UIDs matching an IMAP SEARCH (e.g. `UNSEEN`, `FLAGGED`).
    pub async fn search(&self, query: &str) -> Vec<u32> {
        let mut session = self.session().await;
        let mut uids: Vec<u32> = session
            .uid_search(query)
            .await
            .unwrap()
            .into_iter()
            .collect();
        uids.sort_unstable();
        session.logout().await.unwrap();
        uids
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            use nix::sys::signal::{Signal, kill};
            use nix::unistd::Pid;
            // SIGTERM: the master stops its login, auth and imap processes too.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
