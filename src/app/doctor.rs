//! `verdicts doctor`: the installation as a mailbox provider will see it, and how to fix each
//! problem. One [`Check`] per line: `spf`, `dkim` (one per configured selector), `dmarc`,
//! `return_path`, `smtp`, `public_url`, `site`, `database`, `secret_key`.
//!
//! Every DNS question goes through [`crate::dns::Resolver`] (`dns.nameservers`, `dns.timeout`),
//! so a DNS server that does not answer makes each DNS check fail saying so, within the timeout.
//! The SMTP check connects, secures and logs in as `smtp.url` asks, then quits: no mail is sent.

use std::net::IpAddr;
use std::path::Path;

use super::checks::Check;
use crate::config::{
    DkimSettings, HttpUrl, MailSettings, SecuritySettings, Settings, SiteSettings, SmtpSettings,
    Transport as TransportKind,
};
use crate::delivery::dkim::SigningKey;
use crate::dns::{Answer, MailRoute, Resolver};
use crate::store::Store;

/// The domain the shipped configuration uses in its examples.
const EXAMPLE_DOMAIN: &str = "shiporskip.example";

/// Runs every check. `database` is the opened store, or why it could not be opened (the other
/// checks still run). Takes all of `Settings` because it looks at every section.
pub async fn report(settings: &Settings, database: Result<&Store, String>) -> Vec<Check> {
    let mut checks = Vec::new();
    let from_domain = settings.mail.from.0.email.domain().to_ascii_lowercase();
    let resolver = Resolver::new(&settings.dns).map_err(|e| format!("{e:#}"));
    match &resolver {
        Ok(r) => {
            let smtp_host = match settings.mail.transport {
                TransportKind::Smtp => Some(settings.smtp.url.host.as_str()),
                TransportKind::Outbox => None,
            };
            // Receivers check SPF on the envelope sender: the return path's domain, when it is
            // another than the From domain, is checked too.
            let envelope_domain = settings
                .mail
                .return_path
                .as_ref()
                .map(|rp| rp.0.domain().to_ascii_lowercase())
                .filter(|d| *d != from_domain);
            let envelope_spf = async {
                match &envelope_domain {
                    Some(d) => Some(spf(r, d, "mail.return_path", smtp_host).await),
                    None => None,
                }
            };
            let (spf, envelope_spf, dkim, dmarc, return_path) = tokio::join!(
                spf(r, &from_domain, "mail.from", smtp_host),
                envelope_spf,
                dkim(r, &settings.dkim),
                dmarc(r, &from_domain, &settings.dkim),
                return_path(r, &settings.mail),
            );
            checks.push(spf);
            checks.extend(envelope_spf);
            checks.extend(dkim);
            checks.push(dmarc);
            checks.push(return_path);
        }
        Err(e) => {
            for name in ["spf", "dkim", "dmarc", "return_path"] {
                checks.push(Check::fail(
                    name,
                    format!("no DNS resolver: {e}"),
                    "set dns.nameservers (e.g. [\"127.0.0.1:53\"])",
                ));
            }
        }
    }
    checks.push(smtp(&settings.mail, &settings.smtp, &settings.dns).await);
    checks.push(public_url(
        &settings.http.public_url,
        settings.mail.transport,
    ));
    checks.push(site(&settings.site, &settings.mail, &settings.newsletter));
    checks.push(match database {
        Ok(store) => match store.ping().await {
            Ok(()) => Check::ok(
                "database",
                format!("{} answers", settings.database.url.redacted()),
            ),
            Err(e) => Check::fail(
                "database",
                format!("{}: {e:#}", settings.database.url.redacted()),
                "check database.url and that the database server runs",
            ),
        },
        Err(e) => Check::fail(
            "database",
            e,
            "check database.url and that the database server runs",
        ),
    });
    checks.push(secret_key(&settings.security));
    checks
}

/// The fix for a DNS server that did not answer.
fn dns_fix(resolver: &Resolver) -> String {
    format!(
        "make the DNS server answer, or point dns.nameservers at one that does (asked: {}; dns.timeout bounds each look-up)",
        resolver.servers()
    )
}

/// `k=v; k=v` tags of a DKIM or DMARC record, keys lower-cased, values trimmed.
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The SPF record of `domain` (the domain of `setting`): one record that authorises a sender.
async fn spf(resolver: &Resolver, domain: &str, setting: &str, smtp_host: Option<&str>) -> Check {
    let relay = smtp_host
        .map(|h| format!("a:{h} "))
        .unwrap_or_else(|| "ip4:YOUR.RELAY.ADDRESS ".into());
    let fix = format!(
        "publish {domain}. IN TXT \"v=spf1 {relay}-all\" (your relay's addresses, or the include: it documents)"
    );
    let records = match resolver.txt(domain).await {
        Answer::Found(records) => records,
        Answer::NoRecords => {
            return Check::fail(
                "spf",
                format!("{domain} ({setting}) has no TXT record, so no SPF"),
                fix,
            );
        }
        Answer::NxDomain => {
            return Check::fail(
                "spf",
                format!("{domain} ({setting}) does not exist in DNS"),
                fix,
            );
        }
        Answer::Failed(e) => return Check::fail("spf", e, dns_fix(resolver)),
    };
    let spf: Vec<&String> = records
        .iter()
        .filter(|r| {
            let r = r.trim().to_ascii_lowercase();
            r == "v=spf1" || r.starts_with("v=spf1 ")
        })
        .collect();
    match spf.as_slice() {
        [] => Check::fail(
            "spf",
            format!("{domain} ({setting}) publishes no SPF record"),
            fix,
        ),
        [one] => {
            let terms: Vec<&str> = one.split_whitespace().skip(1).collect();
            let all = terms
                .iter()
                .copied()
                .find(|m| m.trim_start_matches(['+', '-', '~', '?']) == "all");
            // Modifiers carry '=' (redirect=, exp=); mechanisms do not (a:, ip4:, include:…).
            let mechanisms: Vec<&str> = terms
                .iter()
                .copied()
                .filter(|t| !t.contains('='))
                .filter(|t| t.trim_start_matches(['+', '-', '~', '?']) != "all")
                .collect();
            let redirect = terms
                .iter()
                .any(|t| t.to_ascii_lowercase().starts_with("redirect="));
            match all {
                Some("+all") | Some("all") => Check::warn(
                    "spf",
                    format!("{domain} ({setting}): \"{one}\" lets anyone send as {domain}"),
                    format!("end the record with -all or ~all instead: {fix}"),
                ),
                _ if mechanisms.is_empty() && !redirect => Check::fail(
                    "spf",
                    format!(
                        "{domain} ({setting}): \"{one}\" authorises no sender, so every message fails SPF"
                    ),
                    fix,
                ),
                _ => Check::ok("spf", format!("{domain} ({setting}): \"{one}\"")),
            }
        }
        several => Check::fail(
            "spf",
            format!(
                "{domain} publishes {} SPF records; receivers treat that as an error (RFC 7208)",
                several.len()
            ),
            format!("merge them into one record: {fix}"),
        ),
    }
}

/// One line per configured selector.
async fn dkim(resolver: &Resolver, d: &DkimSettings) -> Vec<Check> {
    let keygen = "run `verdicts dkim keygen --selector verdicts --out config/dkim.pem`, publish the record it prints, and set dkim.domain, dkim.selector and dkim.private_key_file";
    let Some(domain) = d.domain.as_deref() else {
        return vec![Check::fail(
            "dkim",
            "no DKIM key is configured: mail leaves unsigned, and Gmail, Yahoo and Microsoft reject or spam it",
            keygen,
        )];
    };
    let mut keys = Vec::new();
    if let (Some(selector), Some(file)) = (&d.selector, &d.private_key_file) {
        keys.push((selector.as_str(), file.as_path(), "dkim.private_key_file"));
    }
    if let (Some(selector), Some(file)) = (&d.ed25519_selector, &d.ed25519_key_file) {
        keys.push((selector.as_str(), file.as_path(), "dkim.ed25519_key_file"));
    }
    if keys.is_empty() {
        return vec![Check::fail(
            "dkim",
            "dkim.domain is set but no selector and key are",
            keygen,
        )];
    }
    // The signer `serve` and `issue send` build: a key they would refuse (of the wrong type
    // for its setting, too short, unreadable) fails here as it would stop them.
    if let Err(e) = crate::delivery::dkim::DkimSigner::from_settings(d) {
        let selector = match e.setting() {
            "dkim.ed25519_key_file" => d.ed25519_selector.as_deref(),
            _ => d.selector.as_deref(),
        };
        return vec![Check::fail(
            "dkim",
            format!("{e}: serve and issue send refuse to start with it"),
            keygen_fix(e.setting(), selector.unwrap_or("verdicts")),
        )];
    }
    let mut checks = Vec::new();
    for (selector, file, setting) in keys {
        checks.push(dkim_one(resolver, domain, selector, file, setting).await);
    }
    checks
}

async fn dkim_one(
    resolver: &Resolver,
    domain: &str,
    selector: &str,
    file: &Path,
    setting: &'static str,
) -> Check {
    let key = match SigningKey::from_file(setting, file) {
        Ok(key) => key,
        Err(e) => {
            return Check::fail(
                "dkim",
                format!("selector {selector}: {e}"),
                keygen_fix(setting, selector),
            );
        }
    };
    let name = format!("{selector}._domainkey.{domain}");
    let record = key.dns_record();
    let publish = format!(
        "publish {name}. IN TXT \"{record}\" (`verdicts dkim keygen` prints it split into 255-byte strings)"
    );
    let records = match resolver.txt(&name).await {
        Answer::Found(records) => records,
        Answer::NoRecords | Answer::NxDomain => {
            return Check::fail("dkim", format!("no DKIM record at {name}"), publish);
        }
        Answer::Failed(e) => return Check::fail("dkim", e, dns_fix(resolver)),
    };
    let ours = key.public_key_base64();
    let published: Vec<Vec<(String, String)>> = records
        .iter()
        .map(|r| tags(r))
        .filter(|t| tag(t, "p").is_some())
        .collect();
    if published.is_empty() {
        return Check::fail(
            "dkim",
            format!("the TXT record at {name} is not a DKIM key (no p=)"),
            publish,
        );
    }
    let algorithm = key.algorithm();
    let matches = published.iter().any(|t| {
        let p: String = tag(t, "p")
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let k = tag(t, "k").unwrap_or("rsa");
        p == ours && k.eq_ignore_ascii_case(algorithm.key_type())
    });
    if matches {
        Check::ok(
            "dkim",
            format!("selector {selector}: {name} holds the public key of {setting} ({algorithm})"),
        )
    } else if published
        .iter()
        .any(|t| tag(t, "p").is_some_and(str::is_empty))
    {
        Check::fail(
            "dkim",
            format!("selector {selector}: the key at {name} is revoked (empty p=)"),
            publish,
        )
    } else {
        Check::fail(
            "dkim",
            format!(
                "selector {selector}: {name} holds another key than {setting} ({algorithm}): receivers will fail every signature"
            ),
            publish,
        )
    }
}

/// How to make a usable key for `setting`: the Ed25519 key needs `--algorithm ed25519`.
fn keygen_fix(setting: &str, selector: &str) -> String {
    let algorithm = match setting {
        "dkim.ed25519_key_file" => " --algorithm ed25519",
        _ => "",
    };
    format!(
        "point {setting} at a usable key: `verdicts dkim keygen{algorithm} --selector {selector} --out FILE` makes one and prints the record to publish"
    )
}

/// The organizational domain, approximated as the last two labels (no public suffix list).
fn organizational(domain: &str) -> String {
    let labels: Vec<&str> = domain.trim_end_matches('.').split('.').collect();
    labels[labels.len().saturating_sub(2)..].join(".")
}

async fn dmarc(resolver: &Resolver, from_domain: &str, d: &DkimSettings) -> Check {
    let fix = format!(
        "publish _dmarc.{from_domain}. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:dmarc@{from_domain}\""
    );
    let mut found = None;
    let org = organizational(from_domain);
    let mut names = vec![format!("_dmarc.{from_domain}")];
    if org != from_domain {
        names.push(format!("_dmarc.{org}"));
    }
    for name in names {
        match resolver.txt(&name).await {
            Answer::Found(records) => {
                if let Some(r) = records
                    .into_iter()
                    .find(|r| r.trim().to_ascii_lowercase().starts_with("v=dmarc1"))
                {
                    found = Some((name, r));
                    break;
                }
            }
            Answer::NoRecords | Answer::NxDomain => {}
            Answer::Failed(e) => return Check::fail("dmarc", e, dns_fix(resolver)),
        }
    }
    let Some((name, record)) = found else {
        return Check::fail(
            "dmarc",
            format!("no DMARC record at _dmarc.{from_domain}"),
            fix,
        );
    };
    let t = tags(&record);
    let policy = tag(&t, "p").unwrap_or("(none given)").to_string();
    let strict = tag(&t, "adkim").is_some_and(|a| a.eq_ignore_ascii_case("s"));
    let Some(dkim_domain) = d.domain.as_deref().map(str::to_ascii_lowercase) else {
        return Check::fail(
            "dmarc",
            format!(
                "{name}: p={policy}, but no DKIM domain signs for {from_domain}, so nothing aligns"
            ),
            format!("configure DKIM with dkim.domain = \"{from_domain}\""),
        );
    };
    let aligned = if strict {
        dkim_domain == from_domain
    } else {
        organizational(&dkim_domain) == organizational(from_domain)
    };
    if !aligned {
        return Check::fail(
            "dmarc",
            format!(
                "{name}: p={policy}, but the DKIM domain {dkim_domain} does not align with the From domain {from_domain}{}",
                if strict { " (adkim=s)" } else { "" }
            ),
            format!(
                "set dkim.domain = \"{from_domain}\" (and publish its key), or send from an address at {dkim_domain}"
            ),
        );
    }
    Check::ok(
        "dmarc",
        format!("{name}: p={policy}; DKIM d={dkim_domain} aligns with From {from_domain}"),
    )
}

async fn return_path(resolver: &Resolver, mail: &MailSettings) -> Check {
    let (address, setting) = match &mail.return_path {
        Some(rp) => (rp.0.to_string(), "mail.return_path"),
        None => (
            mail.from.0.email.to_string(),
            "mail.from (mail.return_path is unset)",
        ),
    };
    let domain = address
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    let fix = format!(
        "publish {domain}. IN MX 10 your-mail-host. for the mailbox that receives bounces (bounces.imap_url reads it), or set mail.return_path to an address that receives mail"
    );
    match resolver.mail_route(&domain).await {
        MailRoute::Mx(hosts) => Check::ok(
            "return_path",
            format!(
                "bounces to {address} ({setting}) go to MX {}",
                hosts.join(", ")
            ),
        ),
        MailRoute::Address(ips) => Check::ok(
            "return_path",
            format!(
                "bounces to {address} ({setting}): {domain} has no MX, so they go to its address {}",
                ips.iter()
                    .map(IpAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        MailRoute::NullMx => Check::fail(
            "return_path",
            format!("{domain} publishes a null MX (RFC 7505): bounces to {address} are refused"),
            fix,
        ),
        MailRoute::Nowhere => Check::fail(
            "return_path",
            format!("{domain} has neither MX nor A/AAAA records: bounces to {address} are lost"),
            fix,
        ),
        MailRoute::NxDomain => Check::fail(
            "return_path",
            format!("{domain} does not exist in DNS: bounces to {address} are lost"),
            fix,
        ),
        MailRoute::Failed(e) => Check::fail("return_path", e, dns_fix(resolver)),
    }
}

/// Connects, secures and logs in as `smtp.url` asks, says NOOP and QUIT: no mail.
async fn smtp(mail: &MailSettings, smtp: &SmtpSettings, dns: &crate::config::DnsSettings) -> Check {
    if mail.transport == TransportKind::Outbox {
        return Check::warn(
            "smtp",
            format!(
                "mail.transport = \"outbox\": mail is written to {}, nothing is sent",
                mail.outbox_dir.display()
            ),
            "set mail.transport = \"smtp\" and smtp.url to your relay",
        );
    }
    let url = &smtp.url;
    let tls = match url.tls {
        crate::config::SmtpTls::Implicit => "implicit TLS",
        crate::config::SmtpTls::Required => "STARTTLS (required)",
        crate::config::SmtpTls::Opportunistic => "STARTTLS when offered",
        crate::config::SmtpTls::None => "no TLS",
    };
    let login = url
        .credentials
        .as_ref()
        .map_or("no login".to_string(), |c| {
            format!("logged in as {}", c.user)
        });
    let transport = match crate::mail::transport::Transport::new(mail, smtp, dns, 1) {
        Ok(t) => t,
        Err(e) => {
            return Check::fail(
                "smtp",
                format!("{e:#}"),
                "fix the smtp.* setting the message names",
            );
        }
    };
    match transport.check().await {
        Ok(()) => Check::ok(
            "smtp",
            format!(
                "{}:{}: connected, {tls}, {login}, quit; no mail sent",
                url.host, url.port
            ),
        ),
        Err(e) => Check::fail(
            "smtp",
            format!("{}:{} ({tls}): {e:#}", url.host, url.port),
            "check smtp.url (host, port, ?tls=, user and password) and smtp.ca_file, and that the relay accepts this login",
        ),
    }
}

/// Whether a URL's host is this machine.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

fn public_url(url: &HttpUrl, transport: TransportKind) -> Check {
    let fix = "set http.public_url to the https address readers reach this server at (e.g. https://news.example.org)";
    if transport == TransportKind::Outbox {
        return Check::ok(
            "public_url",
            format!("{url} (mail.transport = outbox: no reader sees these links yet)"),
        );
    }
    if is_loopback_host(&url.host()) {
        return Check::warn(
            "public_url",
            format!(
                "{url} is this machine: the confirm and unsubscribe links in every email will not open for readers"
            ),
            fix,
        );
    }
    if url.as_str().starts_with("http://") {
        return Check::warn(
            "public_url",
            format!("{url} is plain http: links in every email travel unencrypted"),
            fix,
        );
    }
    Check::ok("public_url", format!("{url}"))
}

fn is_example(domain: &str) -> bool {
    let d = domain.to_ascii_lowercase();
    d == EXAMPLE_DOMAIN || d.ends_with(&format!(".{EXAMPLE_DOMAIN}"))
}

/// The shipped example postal address (config/default.toml).
const EXAMPLE_POSTAL_ADDRESS: &str = "Ship or Skip, 1 Example Street, 10115 Berlin, Germany";

fn site(
    site: &SiteSettings,
    mail: &MailSettings,
    newsletter: &crate::config::NewsletterSettings,
) -> Check {
    let mut examples = Vec::new();
    if is_example(&site.base_url.host()) {
        examples.push(format!("site.base_url = {}", site.base_url));
    }
    if is_example(mail.from.0.email.domain()) {
        examples.push(format!("mail.from = {}", mail.from.0));
    }
    // Every issue carries both: the List-Id header, and the address in the footer (the law
    // asks for a real one).
    if is_example(&newsletter.list_id.0) {
        examples.push(format!("newsletter.list_id = {}", newsletter.list_id.0));
    }
    if newsletter.postal_address.0.trim() == EXAMPLE_POSTAL_ADDRESS {
        examples.push(format!(
            "newsletter.postal_address = {}",
            newsletter.postal_address.0
        ));
    }
    if examples.is_empty() {
        Check::ok(
            "site",
            format!("site.base_url {}, mail.from {}", site.base_url, mail.from.0),
        )
    } else {
        Check::warn(
            "site",
            format!("still the shipped example: {}", examples.join(", ")),
            "set site.base_url to your site, mail.from to your sending address, newsletter.list_id to a name under your domain and newsletter.postal_address to your real postal address (config/local.toml)",
        )
    }
}

fn secret_key(security: &SecuritySettings) -> Check {
    if security.secret_key.is_some() {
        return Check::ok("secret_key", "security.secret_key is set");
    }
    let path = &security.secret_key_file;
    let fix = format!(
        "keep {} private (chmod 600) and back it up with the database; it signs every reader's link",
        path.display()
    );
    let Ok(meta) = std::fs::metadata(path) else {
        return Check::warn(
            "secret_key",
            format!(
                "{} does not exist yet: the first `serve` generates it",
                path.display()
            ),
            format!(
                "start `verdicts serve` once, then back up {}",
                path.display()
            ),
        );
    };
    let len = std::fs::read_to_string(path)
        .map(|t| t.trim().len())
        .unwrap_or(0);
    if len < crate::config::MIN_SECRET_LEN {
        return Check::fail(
            "secret_key",
            format!(
                "{} holds fewer than {} characters",
                path.display(),
                crate::config::MIN_SECRET_LEN
            ),
            fix,
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Check::warn(
            "secret_key",
            format!("{} is readable by others (mode {mode:o})", path.display()),
            fix,
        );
    }
    Check::ok("secret_key", format!("{} (mode {mode:o})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_alignment() {
        let t = tags("v=DMARC1; p=quarantine; adkim=s");
        assert_eq!(tag(&t, "p"), Some("quarantine"));
        assert_eq!(tag(&t, "adkim"), Some("s"));
        assert_eq!(organizational("news.example.org"), "example.org");
        assert_eq!(organizational("example.org"), "example.org");
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("news.example.org"));
    }
}
