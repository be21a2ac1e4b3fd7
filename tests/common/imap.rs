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
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dovecot {
    pub fn start() -> Dovecot {
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
        let conf = format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
             log_path = {d}/log\nssl = no\ndisable_plaintext_auth = no\n\
             auth_mechanisms = plain login\nmail_location = maildir:{d}/mail/%u\n\
             first_valid_uid = 1\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/mail/%u\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
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
            port,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
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
