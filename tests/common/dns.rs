//! A real DNS server on loopback: Debian's `dnsmasq` (package dnsmasq-base) answering only the
//! records given on its command line, authoritative (NXDOMAIN for unknown names) under the
//! zones given with `local`. Killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The records to serve.
#[derive(Default, Clone)]
pub struct Zone {
    args: Vec<String>,
}

impl Zone {
    /// Authoritative for `zone`: unknown names under it are NXDOMAIN.
    pub fn local(mut self, zone: &str) -> Zone {
        self.args.push(format!("--local=/{zone}/"));
        self
    }

    /// A TXT record, split into the 255-byte strings DNS allows (dnsmasq separates strings at
    /// commas, so `value` has none).
    pub fn txt(mut self, name: &str, value: &str) -> Zone {
        assert!(!value.contains(','), "{value}");
        let parts: Vec<String> = value
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        self.args
            .push(format!("--txt-record={name},{}", parts.join(",")));
        self
    }

    /// An MX record (`host` `.` with preference 0 is a null MX).
    pub fn mx(mut self, domain: &str, host: &str, preference: u16) -> Zone {
        self.args
            .push(format!("--mx-host={domain},{host},{preference}"));
        self
    }

    /// An A (or AAAA) record.
    pub fn host(mut self, name: &str, ip: &str) -> Zone {
        self.args.push(format!("--host-record={name},{ip}"));
        self
    }
}

/// A running dnsmasq.
pub struct DnsServer {
    pub port: u16,
    child: Child,
}

impl DnsServer {
    pub fn start(zone: &Zone) -> DnsServer {
        let port = super::free_port();
        let child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                "--cache-size=0",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
            ])
            .args(&zone.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        // dnsmasq listens on TCP too: ready once that port accepts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "dnsmasq did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        DnsServer { port, child }
    }

    /// `dns.nameservers` for this server.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server (its port then answers nothing).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
