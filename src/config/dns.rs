//! `[dns]`: the one resolver of every DNS look-up (but the database host's: sqlx resolves it).

use super::*;

/// `[dns]`: the resolver every DNS look-up of verdicts uses (`doctor`, the domain checks, the
/// SMTP relay's and the IMAP mailbox's host names); sqlx resolves the database host itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// `host:port` (or a bare address, port 53) of the servers to ask; empty: the system's
    /// resolver configuration (`/etc/resolv.conf`).
    #[serde(default)]
    pub nameservers: Vec<NameServer>,
    /// A look-up that has no answer within this is a failure (never a hang).
    #[serde(default = "default_dns_timeout")]
    pub timeout: DurationSetting,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            nameservers: Vec::new(),
            timeout: default_dns_timeout(),
        }
    }
}

pub(super) fn default_dns_timeout() -> DurationSetting {
    DurationSetting(Duration::from_secs(2))
}

/// One entry of `dns.nameservers`: `127.0.0.1:5353`, `[::1]:53` or a bare address (port 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct NameServer(pub SocketAddr);

impl TryFrom<String> for NameServer {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let v = value.trim();
        if let Ok(addr) = v.parse::<SocketAddr>() {
            return Ok(NameServer(addr));
        }
        v.parse::<std::net::IpAddr>()
            .map(|ip| NameServer(SocketAddr::new(ip, 53)))
            .map_err(|_| format!("{value:?} is not an address like 127.0.0.1:53 or [::1]:53"))
    }
}
