//! The door of the list: before a signup is queued for its batch ([`super::signup_writer`]),
//! its domain must be able to receive mail, and must not be a throwaway domain.
//!
//! - `signup.blocked_domains` and `signup.blocked_domains_file` name domains refused outright,
//!   their subdomains included.
//! - The domain's mail route comes from [`crate::dns::Resolver`] (`[dns]`): MX hosts, or A/AAAA
//!   where there is no MX, let the signup in; a domain that does not exist (NXDOMAIN), declares
//!   it takes no mail (null MX, RFC 7505) or has neither MX nor address is refused. A resolver
//!   failure or time-out lets the signup in: a slow DNS server must not close the list.
//!
//! Definite answers are kept for [`CACHE_FOR`] in a small map, so a burst of signups from one
//! provider asks DNS once; failures are not kept. The look-up happens before the batch, never
//! inside a database transaction.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{DnsSettings, SignupSettings};
use crate::dns::{MailRoute, Resolver};

/// How long a definite DNS answer is kept.
pub const CACHE_FOR: Duration = Duration::from_secs(600);
/// Most domains kept; the map is emptied when it is full.
const CACHE_SIZE: usize = 10_000;

/// What the door says to a signup's domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The domain takes mail (or DNS could not tell).
    Open,
    /// `signup.blocked_domains`: a throwaway domain.
    Blocked,
    /// DNS says no mail can be delivered there (NXDOMAIN, null MX, neither MX nor address).
    CannotReceive,
}

impl Entry {
    /// What the reader is told when refused.
    pub fn message(&self) -> Option<&'static str> {
        match self {
            Entry::Open => None,
            Entry::Blocked => Some(
                "Addresses at that domain are not accepted; please sign up with your own address.",
            ),
            Entry::CannotReceive => {
                Some("That domain cannot receive email; please check the address after the @.")
            }
        }
    }
}

/// The door; one per process, shared by the request handlers.
#[derive(Debug)]
pub struct Door {
    resolver: Option<Resolver>,
    blocked: HashSet<String>,
    cache: Mutex<HashMap<String, (Instant, bool)>>,
}

impl Door {
    /// Builds the door from `[signup]` (the block lists; the file is read now) and `[dns]`.
    /// A resolver that cannot be built (no `dns.nameservers` and no system configuration)
    /// leaves only the block lists, with a warning.
    pub fn new(signup: &SignupSettings, dns: &DnsSettings) -> anyhow::Result<Door> {
        let mut blocked: HashSet<String> = signup
            .blocked_domains
            .iter()
            .map(|d| normalise(d))
            .collect();
        if let Some(path) = &signup.blocked_domains_file {
            blocked.extend(read_list(path)?);
        }
        let resolver = match Resolver::new(dns) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "signup domains are not checked in DNS");
                None
            }
        };
        Ok(Door {
            resolver,
            blocked,
            cache: Mutex::default(),
        })
    }

    /// Whether `domain` (ASCII, as [`crate::subscribers::SubscriberEmail::domain`]) may sign up.
    pub async fn check(&self, domain: &str) -> Entry {
        let domain = normalise(domain);
        if self.is_blocked(&domain) {
            return Entry::Blocked;
        }
        let Some(resolver) = &self.resolver else {
            return Entry::Open;
        };
        if let Some(takes_mail) = self.cached(&domain) {
            return if takes_mail {
                Entry::Open
            } else {
                Entry::CannotReceive
            };
        }
        let takes_mail = match resolver.mail_route(&domain).await {
            MailRoute::Mx(_) | MailRoute::Address(_) => true,
            MailRoute::NullMx | MailRoute::Nowhere | MailRoute::NxDomain => false,
            MailRoute::Failed(e) => {
                tracing::warn!(%domain, error = %e, "signup domain not checked: DNS failed; accepted");
                return Entry::Open;
            }
        };
        self.remember(domain, takes_mail);
        if takes_mail {
            Entry::Open
        } else {
            Entry::CannotReceive
        }
    }

    /// The domain or one of its parents is on a block list.
    fn is_blocked(&self, domain: &str) -> bool {
        let mut rest = domain;
        loop {
            if self.blocked.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => rest = parent,
                _ => return false,
            }
        }
    }

    fn cached(&self, domain: &str) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(domain)
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, takes_mail)| *takes_mail)
    }

    fn remember(&self, domain: String, takes_mail: bool) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_SIZE {
            cache.clear();
        }
        cache.insert(domain, (Instant::now(), takes_mail));
    }
}

/// Lower case, without a trailing dot or surrounding space.
fn normalise(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `signup.blocked_domains_file`: one domain a line, blank lines and `#` comments skipped.
fn read_list(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "signup.blocked_domains_file: cannot read {}",
            path.display()
        )
    })?;
    let mut domains = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let domain = normalise(line);
        if !crate::config::is_dns_name(&domain) {
            anyhow::bail!(
                "signup.blocked_domains_file: {}:{}: {line:?} is not a domain name",
                path.display(),
                n + 1
            );
        }
        domains.push(domain);
    }
    Ok(domains)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn door(blocked: &[&str]) -> Door {
        Door {
            resolver: None,
            blocked: blocked.iter().map(|d| normalise(d)).collect(),
            cache: Mutex::default(),
        }
    }

    #[tokio::test]
    async fn blocked_domains_and_their_subdomains_are_refused() {
        let door = door(&["mailinator.com", "Temp-Mail.ORG."]);
        for (domain, entry) in [
            ("mailinator.com", Entry::Blocked),
            ("eu.mailinator.com", Entry::Blocked),
            ("a.b.MAILINATOR.com", Entry::Blocked),
            ("temp-mail.org", Entry::Blocked),
            ("notmailinator.com", Entry::Open),
            ("mailinator.com.example", Entry::Open),
            ("com", Entry::Open),
        ] {
            assert_eq!(door.check(domain).await, entry, "{domain}");
        }
    }

    #[test]
    fn the_file_is_one_domain_a_line_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocked.txt");
        std::fs::write(
            &path,
            "# throwaway\nmailinator.com\n\n  Yopmail.com  # and its kin\n",
        )
        .unwrap();
        assert_eq!(read_list(&path).unwrap(), ["mailinator.com", "yopmail.com"]);
        std::fs::write(&path, "ok.example\nnot a domain\n").unwrap();
        let e = read_list(&path).unwrap_err().to_string();
        assert!(
            e.contains("signup.blocked_domains_file") && e.contains(":2:"),
            "{e}"
        );
    }
}
