//! The one DNS resolver of verdicts: every look-up (the `doctor`'s SPF, DKIM, DMARC and
//! return-path checks, the signup's domain check, and the host names of the SMTP relay and the
//! bounce mailbox, see [`Resolver::connect`]) goes through [`Resolver`], built from `[dns]`
//! (`dns.nameservers`, `dns.timeout`). The one exception is the database URL's host, which
//! sqlx resolves itself (through the system's resolver).
//!
//! Answers are typed, so callers decide on what DNS said, not on error strings: the name does not
//! exist (NXDOMAIN), it exists without records of the type, a domain that declares it takes no
//! mail (null MX, RFC 7505), or the resolver failed (no answer within `dns.timeout`, refused,
//! SERVFAIL). A look-up never waits longer than `dns.timeout`.
//!
//! Built on hickory-resolver: an async, pure-Rust stub resolver on tokio that lets us name the
//! servers and the timeout, and that tells NXDOMAIN from "no records" (the std/libc resolver can
//! do neither, nor look up TXT or MX).

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};

use crate::config::DnsSettings;

/// What DNS said about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records of the type asked for.
    Found(T),
    /// The name exists but has no records of that type.
    NoRecords,
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// No usable answer: time-out, refused, server failure. The text says which.
    Failed(String),
}

impl<T> Answer<T> {
    /// The records, or nothing for every other answer.
    pub fn found(self) -> Option<T> {
        match self {
            Answer::Found(t) => Some(t),
            _ => None,
        }
    }
}

/// The mail exchangers of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mx {
    /// Host names, lowest preference first.
    Hosts(Vec<String>),
    /// A null MX (`0 .`, RFC 7505): the domain declares that it accepts no mail.
    Null,
}

/// Where mail for a domain goes (RFC 5321 §5.1), as a signup or bounce check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailRoute {
    /// Its MX hosts.
    Mx(Vec<String>),
    /// No MX: its own A/AAAA address (the implicit MX).
    Address(Vec<IpAddr>),
    /// A null MX: it accepts no mail.
    NullMx,
    /// Neither MX nor address records.
    Nowhere,
    /// The domain does not exist.
    NxDomain,
    /// The resolver failed; nothing is known.
    Failed(String),
}

/// The resolver of `[dns]`; cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    timeout: Duration,
    servers: String,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resolver({}, {:?})", self.servers, self.timeout)
    }
}

impl Resolver {
    /// Builds the resolver: `dns.nameservers` (UDP, TCP for long answers), or the system's
    /// configuration when that list is empty. Caches nothing between look-ups, so a fixed
    /// record shows at once.
    pub fn new(dns: &DnsSettings) -> anyhow::Result<Resolver> {
        let timeout = dns.timeout.0;
        let (config, mut opts, servers) = if dns.nameservers.is_empty() {
            let (config, opts) = hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                anyhow::anyhow!(
                    "dns.nameservers is empty and the system's resolver configuration cannot be read ({e}); set dns.nameservers"
                )
            })?;
            let servers = config
                .name_servers()
                .iter()
                .map(|s| s.socket_addr.to_string())
                .collect::<Vec<_>>();
            (config, opts, format!("system: {}", servers.join(", ")))
        } else {
            let mut config = ResolverConfig::new();
            for server in &dns.nameservers {
                config.add_name_server(NameServerConfig::new(server.0, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(server.0, Protocol::Tcp));
            }
            let servers = dns
                .nameservers
                .iter()
                .map(|s| s.0.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            (config, ResolverOpts::default(), servers)
        };
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        let inner = hickory_resolver::Resolver::builder_with_config(
            config,
            TokioConnectionProvider::default(),
        )
        .with_options(opts)
        .build();
        Ok(Resolver {
            inner,
            timeout,
            servers,
        })
    }

    /// The servers asked, for messages (`127.0.0.1:5353` or `system: …`).
    pub fn servers(&self) -> &str {
        &self.servers
    }

    /// Runs one look-up within `dns.timeout` and sorts its outcome.
    async fn ask<T, F>(&self, name: &str, what: &str, lookup: F) -> Answer<T>
    where
        F: std::future::Future<Output = Result<T, ResolveError>>,
    {
        match tokio::time::timeout(self.timeout, lookup).await {
            Err(_) => Answer::Failed(format!(
                "no answer for {what} {name} within {} (dns.timeout; servers {})",
                humantime::format_duration(self.timeout),
                self.servers
            )),
            Ok(Ok(found)) => Answer::Found(found),
            Ok(Err(e)) if e.is_nx_domain() => Answer::NxDomain,
            Ok(Err(e)) if e.is_no_records_found() => Answer::NoRecords,
            Ok(Err(e)) => Answer::Failed(format!(
                "{what} look-up of {name} failed: {e} (servers {})",
                self.servers
            )),
        }
    }

    /// The TXT records at `name`, each record's strings joined (as SPF, DKIM and DMARC read them).
    pub async fn txt(&self, name: &str) -> Answer<Vec<String>> {
        let fqdn = fqdn(name);
        match self.ask(name, "TXT", self.inner.txt_lookup(fqdn)).await {
            Answer::Found(lookup) => {
                let records: Vec<String> = lookup
                    .iter()
                    .map(|txt| {
                        txt.txt_data()
                            .iter()
                            .map(|part| String::from_utf8_lossy(part).into_owned())
                            .collect::<String>()
                    })
                    .collect();
                if records.is_empty() {
                    Answer::NoRecords
                } else {
                    Answer::Found(records)
                }
            }
            Answer::NoRecords => Answer::NoRecords,
            Answer::NxDomain => Answer::NxDomain,
            Answer::Failed(e) => Answer::Failed(e),
        }
    }

    /// The MX records of `domain`: its hosts, or a null MX.
    pub async fn mx(&self, domain: &str) -> Answer<Mx> {
        match self
            .ask(domain, "MX", self.inner.mx_lookup(fqdn(domain)))
            .await
        {
            Answer::Found(lookup) => {
                let mut records: Vec<(u16, String)> = lookup
                    .iter()
                    .map(|mx| (mx.preference(), mx.exchange().to_ascii()))
                    .collect();
                records.sort();
                let null = records.len() == 1 && records[0].1 == "." && records[0].0 == 0;
                match (records.is_empty(), null) {
                    (true, _) => Answer::NoRecords,
                    (false, true) => Answer::Found(Mx::Null),
                    (false, false) => Answer::Found(Mx::Hosts(
                        records
                            .into_iter()
                            .map(|(_, host)| host.trim_end_matches('.').to_string())
                            .collect(),
                    )),
                }
            }
            Answer::NoRecords => Answer::NoRecords,
            Answer::NxDomain => Answer::NxDomain,
            Answer::Failed(e) => Answer::Failed(e),
        }
    }

    /// The A and AAAA addresses of `domain`.
    pub async fn has_address(&self, domain: &str) -> Answer<Vec<IpAddr>> {
        match self
            .ask(domain, "A/AAAA", self.inner.lookup_ip(fqdn(domain)))
            .await
        {
            Answer::Found(lookup) => {
                let ips: Vec<IpAddr> = lookup.iter().collect();
                if ips.is_empty() {
                    Answer::NoRecords
                } else {
                    Answer::Found(ips)
                }
            }
            Answer::NoRecords => Answer::NoRecords,
            Answer::NxDomain => Answer::NxDomain,
            Answer::Failed(e) => Answer::Failed(e),
        }
    }

    /// Where mail for `domain` goes: MX, else A/AAAA (RFC 5321 §5.1); a null MX takes none.
    pub async fn mail_route(&self, domain: &str) -> MailRoute {
        match self.mx(domain).await {
            Answer::Found(Mx::Hosts(hosts)) => MailRoute::Mx(hosts),
            Answer::Found(Mx::Null) => MailRoute::NullMx,
            Answer::NxDomain => MailRoute::NxDomain,
            Answer::Failed(e) => MailRoute::Failed(e),
            Answer::NoRecords => match self.has_address(domain).await {
                Answer::Found(ips) => MailRoute::Address(ips),
                Answer::NoRecords => MailRoute::Nowhere,
                Answer::NxDomain => MailRoute::NxDomain,
                Answer::Failed(e) => MailRoute::Failed(e),
            },
        }
    }
}

/// Why [`Resolver::connect`] could not open a connection.
#[derive(Debug)]
pub enum ConnectError {
    /// The host name did not resolve (the text says how: NXDOMAIN, no records, the DNS server
    /// down or silent within `dns.timeout`).
    Dns(String),
    /// Every address refused or failed; the last error.
    Io(std::io::Error),
    /// No address answered within the time given.
    TimedOut,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Dns(e) => write!(f, "DNS: {e}"),
            ConnectError::Io(e) => e.fmt(f),
            ConnectError::TimedOut => f.write_str("no answer"),
        }
    }
}

impl Resolver {
    /// The addresses of a host to connect to: the host itself when it is an IP address
    /// (`[::1]` too), loopback for `localhost` (RFC 6761: never asked of DNS), else its A and
    /// AAAA records through this resolver (bounded by `dns.timeout`).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if bare.eq_ignore_ascii_case("localhost") || bare.eq_ignore_ascii_case("localhost.") {
            return Ok(vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ]);
        }
        match self.has_address(bare).await {
            Answer::Found(ips) => Ok(ips),
            Answer::NoRecords => Err(format!(
                "{bare} has no A or AAAA record (servers {})",
                self.servers
            )),
            Answer::NxDomain => Err(format!(
                "{bare} does not exist (NXDOMAIN; servers {})",
                self.servers
            )),
            Answer::Failed(e) => Err(e),
        }
    }

    /// Opens a TCP connection to `host:port`: the host resolved through this resolver (see
    /// [`Resolver::addresses`]), then its addresses tried in turn until one connects, all
    /// within `timeout` from the first address on. The caller keeps the host name for TLS
    /// (SNI and the certificate's name).
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream, ConnectError> {
        let ips = self.addresses(host).await.map_err(ConnectError::Dns)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        for ip in ips {
            let addr = std::net::SocketAddr::new(ip, port);
            match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = Some(e),
                Err(_) => return Err(ConnectError::TimedOut),
            }
        }
        Err(last.map_or(ConnectError::TimedOut, ConnectError::Io))
    }
}

/// `name` as an absolute name, so no search domain is appended.
fn fqdn(name: &str) -> String {
    let name = name.trim();
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_absolute_once() {
        assert_eq!(fqdn("example.org"), "example.org.");
        assert_eq!(fqdn("example.org."), "example.org.");
    }
}
