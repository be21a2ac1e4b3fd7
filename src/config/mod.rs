//! Layered, typed settings.
//!
//! Layers, later ones win: the embedded `config/default.toml` → `config/local.toml` (if present,
//! git-ignored) → `--config FILE` → environment `VERDICTS__SECTION__KEY`. Every value is parsed
//! into a checked type here, once; a bad value stops start-up with `key: what is wrong`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod bounces;
mod database;
mod delivery;
mod dns;
mod http;
mod mail;
mod newsletter;
mod schedule;
mod signup;
mod site;
mod tracking;

pub use bounces::*;
pub use database::*;
pub use delivery::*;
pub use dns::*;
pub use http::*;
pub use mail::*;
pub use newsletter::*;
pub use schedule::*;
pub use signup::*;
pub use site::*;
pub use tracking::*;

/// The committed defaults, compiled in so the binary runs from any folder.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Where the optional, git-ignored local overrides live (relative to the working directory).
pub const LOCAL_TOML: &str = "config/local.toml";

/// Prefix of environment overrides: `VERDICTS__DATABASE__URL` sets `database.url`.
pub const ENV_PREFIX: &str = "VERDICTS__";

/// Settings could not be loaded: each line names the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// One `key: message` line per problem.
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(problem: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![problem.into()],
        }
    }
}

/// All settings of one process, checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub mail: MailSettings,
    pub smtp: SmtpSettings,
    pub signup: SignupSettings,
    pub newsletter: NewsletterSettings,
    #[serde(default)]
    pub dkim: DkimSettings,
    pub delivery: DeliverySettings,
    pub schedule: ScheduleSettings,
    pub security: SecuritySettings,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
    pub site: SiteSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub bounces: BounceSettings,
    #[serde(default)]
    pub webhooks: WebhookSettings,
    #[serde(default)]
    pub templates: TemplateSettings,
    #[serde(default)]
    pub dns: DnsSettings,
    pub tracking: TrackingSettings,
}

/// Minimum length of `security.secret_key`: it signs unsubscribe links.
pub const MIN_SECRET_LEN: usize = 32;
/// Minimum length of `admin.token`.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;
/// The range of `webhooks.max_age`: below it a provider's own delivery delay would refuse
/// genuine calls; above it a Mailgun token could be replayed after its record is forgotten
/// ([`crate::app::App::claim_webhook_nonce`] keeps tokens for twice this, at least a day).
pub const MIN_WEBHOOK_MAX_AGE: Duration = Duration::from_secs(10);
pub const MAX_WEBHOOK_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

impl Settings {
    /// Loads the layers in order; `config_file` is the `--config` argument.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(config_file, Env::prefixed(ENV_PREFIX).split("__"))
    }

    fn load_with_env(config_file: Option<&Path>, env: Env) -> Result<Settings, ConfigError> {
        let mut figment = Figment::new().merge(Toml::string(DEFAULT_TOML));
        if Path::new(LOCAL_TOML).is_file() {
            figment = figment.merge(Toml::file(LOCAL_TOML));
        }
        if let Some(file) = config_file {
            if !file.is_file() {
                return Err(ConfigError::one(format!(
                    "--config {}: no such file",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(env);
        let settings: Settings = figment.extract().map_err(from_figment)?;
        settings.check()?;
        Ok(settings)
    }

    /// Loads from one TOML text layered over the defaults (tests and tools).
    pub fn from_toml(overrides: &str) -> Result<Settings, ConfigError> {
        let settings: Settings = Figment::new()
            .merge(Toml::string(DEFAULT_TOML))
            .merge(Toml::string(overrides))
            .extract()
            .map_err(from_figment)?;
        settings.check()?;
        Ok(settings)
    }

    /// Rules that span several keys or that serde cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.database.max_connections == 0 {
            problems.push("database.max_connections: must be at least 1".to_string());
        }
        if self.delivery.concurrency == 0 || self.delivery.concurrency > 1000 {
            problems.push("delivery.concurrency: must be between 1 and 1000".to_string());
        }
        if self.delivery.lease_seconds < 3 {
            // Heartbeats renew leases every third of the lease: below 3 s they would beat
            // faster than once a second.
            problems.push("delivery.lease_seconds: must be at least 3".to_string());
        }
        let window = self.delivery.window.0;
        if window < Duration::from_secs(1) || window > Duration::from_secs(31 * 24 * 3600) {
            problems.push("delivery.window: must be between 1s and 31 days".to_string());
        }
        if self.delivery.pause_after_failures == 0 {
            problems.push("delivery.pause_after_failures: must be at least 1".to_string());
        }
        if self.delivery.max_attempts == 0 || self.delivery.max_attempts > 100 {
            problems.push("delivery.max_attempts: must be between 1 and 100".to_string());
        }
        if self.newsletter.max_items == 0 || self.newsletter.max_items > 100 {
            problems.push("newsletter.max_items: must be between 1 and 100".to_string());
        }
        if self.delivery.stall_after.0.is_zero() {
            problems.push("delivery.stall_after: must be more than 0".to_string());
        }
        if self.delivery.shutdown_grace.0.is_zero()
            || self.delivery.shutdown_grace.0 > Duration::from_secs(3600)
        {
            problems
                .push("delivery.shutdown_grace: must be more than 0 and at most 1h".to_string());
        }
        for (key, rate) in [
            (
                "delivery.max_complaint_rate",
                self.delivery.max_complaint_rate,
            ),
            ("delivery.max_bounce_rate", self.delivery.max_bounce_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                problems.push(format!("{key}: must be between 0 and 1"));
            }
        }
        if self.webhooks.postmark_username.is_some() != self.webhooks.postmark_password.is_some() {
            problems.push(
                "webhooks: set both webhooks.postmark_username and webhooks.postmark_password, or neither"
                    .to_string(),
            );
        }
        for domain in &self.signup.blocked_domains {
            if !is_dns_name(domain.trim().trim_end_matches('.')) {
                problems.push(format!(
                    "signup.blocked_domains: {domain:?} is not a domain name"
                ));
            }
        }
        if let Some(path) = &self.signup.blocked_domains_file
            && !path.is_file()
        {
            problems.push(format!(
                "signup.blocked_domains_file: {} is not a file",
                path.display()
            ));
        }
        if self.signup.reminder_after.0 < Duration::from_secs(1) {
            problems.push("signup.reminder_after: must be at least 1s".to_string());
        }
        if self.signup.pending_ttl.0 <= self.signup.reminder_after.0 {
            problems
                .push("signup.pending_ttl: must be longer than signup.reminder_after".to_string());
        }
        let dns_timeout = self.dns.timeout.0;
        if dns_timeout < Duration::from_millis(100) || dns_timeout > Duration::from_secs(60) {
            problems.push("dns.timeout: must be between 100ms and 60s".to_string());
        }
        if let Some(path) = &self.webhooks.ses_signing_cert_file
            && !path.is_file()
        {
            problems.push(format!(
                "webhooks.ses_signing_cert_file: {} is not a file",
                path.display()
            ));
        }
        if let Some(path) = &self.bounces.imap_ca_file
            && !path.is_file()
        {
            problems.push(format!(
                "bounces.imap_ca_file: {} is not a file",
                path.display()
            ));
        }
        if self.bounces.soft_limit == 0 {
            problems.push("bounces.soft_limit: must be at least 1".to_string());
        }
        if self.smtp.timeout_seconds == 0 {
            problems.push("smtp.timeout_seconds: must be at least 1".to_string());
        }
        let dkim = [
            self.dkim.domain.is_some(),
            self.dkim.selector.is_some(),
            self.dkim.private_key_file.is_some(),
        ];
        if dkim.iter().any(|set| *set) && !dkim.iter().all(|set| *set) {
            problems.push(
                "dkim: set all of dkim.domain, dkim.selector and dkim.private_key_file, or none"
                    .to_string(),
            );
        }
        match (&self.dkim.ed25519_selector, &self.dkim.ed25519_key_file) {
            (None, None) => {}
            (Some(_), Some(_)) if dkim.iter().all(|set| *set) => {}
            (Some(_), Some(_)) => problems.push(
                "dkim.ed25519_key_file: a second signature needs the first (dkim.domain, \
                 dkim.selector, dkim.private_key_file)"
                    .to_string(),
            ),
            _ => problems.push(
                "dkim: set both dkim.ed25519_selector and dkim.ed25519_key_file, or neither"
                    .to_string(),
            ),
        }
        for (key, value) in [
            ("dkim.selector", &self.dkim.selector),
            ("dkim.ed25519_selector", &self.dkim.ed25519_selector),
            ("dkim.domain", &self.dkim.domain),
        ] {
            if let Some(v) = value
                && !is_dns_name(v)
            {
                problems.push(format!(
                    "{key}: {v:?} is not a DNS name (dot-separated letters, digits, - and _)"
                ));
            }
        }
        if let Some(key) = &self.security.secret_key
            && key.expose_secret().len() < MIN_SECRET_LEN
        {
            problems.push(format!(
                "security.secret_key: must be at least {MIN_SECRET_LEN} characters"
            ));
        }
        if let Some(token) = &self.admin.token
            && token.expose_secret().len() < MIN_ADMIN_TOKEN_LEN
        {
            problems.push(format!(
                "admin.token: must be at least {MIN_ADMIN_TOKEN_LEN} characters"
            ));
        }
        if let Some(token) = &self.metrics.token
            && token.expose_secret().len() < MIN_ADMIN_TOKEN_LEN
        {
            problems.push(format!(
                "metrics.token: must be at least {MIN_ADMIN_TOKEN_LEN} characters"
            ));
        }
        let header = self.http.header_timeout.0;
        if header < Duration::from_millis(10) || header > Duration::from_secs(300) {
            problems.push("http.header_timeout: must be between 10ms and 5m".to_string());
        }
        if self.http.request_timeout.0 < Duration::from_millis(10) {
            problems.push("http.request_timeout: must be at least 10ms".to_string());
        }
        if self.http.max_connections == 0 {
            problems.push("http.max_connections: must be at least 1".to_string());
        }
        if self.bounces.attribution == Some(Attribution::Verp) && self.mail.return_path.is_none() {
            problems.push(
                "bounces.attribution: `verp` needs mail.return_path (the VERP envelope sender)"
                    .to_string(),
            );
        }
        let max_age = self.webhooks.max_age.0;
        if max_age < MIN_WEBHOOK_MAX_AGE || max_age > MAX_WEBHOOK_MAX_AGE {
            problems.push(
                "webhooks.max_age: must be between 10s and 24h (0 refuses every call; past a day \
                 a replayed Mailgun token could outlive its record)"
                    .to_string(),
            );
        }
        let write = self.http.write_timeout.0;
        if write < Duration::from_millis(10) || write > Duration::from_secs(3600) {
            problems.push("http.write_timeout: must be between 10ms and 1h".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The secret that signs tokens: `security.secret_key`, or the one stored in
    /// `security.secret_key_file`, generated there on first use so tokens survive restarts.
    pub fn secret_key(&self) -> anyhow::Result<SecretKey> {
        use anyhow::Context;
        if let Some(key) = &self.security.secret_key {
            return Ok(SecretKey(key.expose_secret().as_bytes().to_vec()));
        }
        let path = &self.security.secret_key_file;
        if path.is_file() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the secret key from {}", path.display()))?;
            let text = text.trim();
            if text.len() < MIN_SECRET_LEN {
                anyhow::bail!(
                    "security.secret_key_file: {} holds fewer than {MIN_SECRET_LEN} characters",
                    path.display()
                );
            }
            return Ok(SecretKey(text.as_bytes().to_vec()));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let text = hex::encode(bytes);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {} for the secret key", dir.display()))?;
        }
        write_private(path, &text)
            .with_context(|| format!("storing a new secret key in {}", path.display()))?;
        tracing::info!(path = %path.display(), "generated a new secret key and stored it");
        Ok(SecretKey(text.into_bytes()))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{text}\n"))
}

/// Key material for HMAC-signed tokens. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key from raw bytes (tests and tools; the application reads it from settings).
    pub fn from_bytes(bytes: &[u8]) -> SecretKey {
        SecretKey(bytes.to_vec())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// Turns figment's errors into `key: message (in SOURCE)` lines.
fn from_figment(err: figment::Error) -> ConfigError {
    let problems = err
        .into_iter()
        .map(|e| {
            let mut key = e.path.join(".");
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                // figment's path already ends with the unknown field.
                if !key.ends_with(field.as_str()) {
                    key = if key.is_empty() {
                        field.clone()
                    } else {
                        format!("{key}.{field}")
                    };
                }
                let source = source_of(&e);
                return format!("{key}: unknown key{source}");
            }
            if let figment::error::Kind::MissingField(field) = &e.kind {
                key = if key.is_empty() {
                    field.to_string()
                } else {
                    format!("{key}.{field}")
                };
                return format!("{key}: missing");
            }
            let source = source_of(&e);
            let message = match &e.kind {
                figment::error::Kind::Message(m) => m.clone(),
                other => other.to_string(),
            };
            if key.is_empty() {
                format!("{message}{source}")
            } else {
                format!("{key}: {message}{source}")
            }
        })
        .collect();
    ConfigError { problems }
}

fn source_of(e: &figment::Error) -> String {
    let Some(meta) = e.metadata.as_ref() else {
        return String::new();
    };
    match &meta.source {
        Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
        _ if meta.name.contains("environment") => " (from the environment)".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_are_safe() {
        let s = Settings::from_toml("").expect("defaults are valid");
        assert!(matches!(s.database.url, DatabaseUrl::Sqlite { .. }));
        assert_eq!(s.mail.transport, Transport::Outbox);
        assert!(s.admin.token.is_none());
        assert_eq!(s.schedule.cron.source, "0 0 9 * * Mon");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                "[database]\nurl = \"mysql://x/y\"",
                "database.url: unsupported scheme \"mysql\"",
            ),
            ("[database]\nfoo = 1", "database.foo: unknown key"),
            ("[nope]\nx = 1", "nope: unknown key"),
            ("[http]\nbind = \"localhost\"", "http.bind:"),
            ("[http]\npublic_url = \"ftp://x\"", "http.public_url:"),
            ("[schedule]\ncron = \"every monday\"", "schedule.cron:"),
            (
                "[schedule]\ntimezone = \"Mars/Olympus\"",
                "schedule.timezone:",
            ),
            ("[schedule]\ncatch_up = \"soon\"", "schedule.catch_up:"),
            ("[mail]\ntransport = \"pigeon\"", "mail.transport:"),
            ("[mail]\nfrom = \"not an address\"", "mail.from:"),
            ("[smtp]\nurl = \"http://x\"", "smtp.url:"),
            (
                "[smtp]\nurl = \"smtp://u:p@relay.example\"",
                "smtp.url: carries credentials without TLS",
            ),
            (
                "[smtp]\nurl = \"smtp://u:p@relay.example?tls=none\"",
                "smtp.url: carries credentials without TLS",
            ),
            (
                "[smtp]\nurl = \"smtp://u:p@relay.example?tls=opportunistic\"",
                "smtp.url: carries credentials without TLS",
            ),
            (
                "[smtp]\nurl = \"smtp://relay.example?tls=yes\"",
                "smtp.url: tls=\"yes\"",
            ),
            (
                "[smtp]\nurl = \"smtp://relay.example?tsl=required\"",
                "smtp.url: unknown parameter",
            ),
            (
                "[smtp]\nurl = \"smtps://relay.example?tls=none\"",
                "smtp.url: smtps://",
            ),
            (
                "[database]\nurl = \"postgres://db/x?sslmode=always\"",
                "database.url: sslmode=\"always\"",
            ),
            (
                "[database]\nurl = \"postgres://db/x?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem\"",
                "database.url: sslrootcert=",
            ),
            (
                "[newsletter]\nlist_id = \"no spaces allowed\"",
                "newsletter.list_id:",
            ),
            ("[security]\nsecret_key = \"short\"", "security.secret_key:"),
            ("[admin]\ntoken = \"short\"", "admin.token:"),
            ("[metrics]\ntoken = \"short\"", "metrics.token:"),
            ("[http]\nheader_timeout = \"0s\"", "http.header_timeout:"),
            ("[http]\nheader_timeout = \"soon\"", "http.header_timeout:"),
            ("[http]\nmax_connections = 0", "http.max_connections:"),
            ("[http]\nwrite_timeout = \"0s\"", "http.write_timeout:"),
            ("[http]\nwrite_timeout = \"never\"", "http.write_timeout:"),
            (
                "[http]\nmax_connections_per_client = -1",
                "http.max_connections_per_client",
            ),
            ("[bounces]\nattribution = \"verp\"", "bounces.attribution:"),
            ("[bounces]\nattribution = \"some\"", "bounces.attribution"),
            ("[dkim]\ndomain = \"x.org\"", "dkim: set all"),
            (
                "[dkim]\ned25519_selector = \"e\"",
                "dkim: set both dkim.ed25519_selector and dkim.ed25519_key_file",
            ),
            (
                "[dkim]\ned25519_selector = \"e\"\ned25519_key_file = \"k\"",
                "dkim.ed25519_key_file: a second signature needs the first",
            ),
            (
                "[dkim]\ndomain = \"x.org\"\nselector = \"a; b\"\nprivate_key_file = \"k\"",
                "dkim.selector: \"a; b\" is not a DNS name",
            ),
            ("[delivery]\nconcurrency = 0", "delivery.concurrency:"),
            (
                "[mail]\nreturn_path = \"bounces+x@shiporskip.example\"",
                "mail.return_path:",
            ),
            ("[mail]\nreturn_path = \"nobody\"", "mail.return_path:"),
            (
                "[delivery]\nmax_bounce_rate = 1.5",
                "delivery.max_bounce_rate:",
            ),
            ("[bounces]\nsoft_limit = 0", "bounces.soft_limit:"),
            (
                "[webhooks]\npostmark_username = \"pm\"",
                "webhooks: set both webhooks.postmark_username and webhooks.postmark_password",
            ),
            (
                "[webhooks]\nses_signing_cert_file = \"/nonexistent/sns.pem\"",
                "webhooks.ses_signing_cert_file: /nonexistent/sns.pem is not a file",
            ),
            (
                "[bounces]\nimap_url = \"imap://u:p@imap.example.org/INBOX\"",
                "bounces.imap_url: imap:// sends the password in the clear",
            ),
            ("[bounces]\nsoft_window = \"often\"", "bounces.soft_window:"),
            ("[webhooks]\nmax_age = \"0s\"", "webhooks.max_age:"),
            ("[webhooks]\nmax_age = \"25h\"", "webhooks.max_age:"),
        ];
        for (toml, expected) in cases {
            let err = Settings::from_toml(toml).expect_err(toml).to_string();
            assert!(
                err.contains(expected),
                "for {toml:?} expected {expected:?} in:\n{err}"
            );
        }
    }

    #[test]
    fn smtp_urls_get_their_default_ports_tls_and_decoded_credentials() {
        let url = |u: &str| SmtpUrl::try_from(u.to_string()).expect(u);
        let cases = [
            ("smtp://relay.example", 25, SmtpTls::None),
            (
                "smtp://relay.example?tls=opportunistic",
                25,
                SmtpTls::Opportunistic,
            ),
            ("smtp://relay.example?tls=required", 587, SmtpTls::Required),
            (
                "smtp://relay.example:2525?tls=required",
                2525,
                SmtpTls::Required,
            ),
            ("smtps://relay.example", 465, SmtpTls::Implicit),
            ("smtps://relay.example:4650", 4650, SmtpTls::Implicit),
        ];
        for (u, port, tls) in cases {
            let parsed = url(u);
            assert_eq!((parsed.port, parsed.tls), (port, tls), "{u}");
            assert_eq!(parsed.host, "relay.example");
            assert!(parsed.credentials.is_none());
        }
        let parsed = url("smtp://news%40shiporskip.example:a+b%20c%25d@relay.example?tls=required");
        let creds = parsed.credentials.as_ref().expect("credentials");
        assert_eq!(creds.user, "news@shiporskip.example");
        assert_eq!(
            creds.password.expose_secret(),
            "a+b c%d",
            "a literal + stays +"
        );
        assert!(!format!("{parsed:?}").contains("a+b"), "{parsed:?}");
        assert_eq!(url("smtp://[::1]:25").host, "::1");
    }

    #[test]
    fn postgres_urls_take_libpq_tls_parameters() {
        for mode in SSL_MODES {
            let s = Settings::from_toml(&format!(
                "[database]\nurl = \"postgres://u@db/x?sslmode={mode}\""
            ));
            assert!(s.is_ok(), "sslmode={mode}: {:?}", s.err());
        }
    }

    #[test]
    fn five_field_cron_gets_seconds() {
        let s = Settings::from_toml("[schedule]\ncron = \"30 8 * * Tue\"").unwrap();
        let next = s
            .schedule
            .cron
            .schedule
            .upcoming(chrono::Utc)
            .next()
            .unwrap();
        assert_eq!(next.format("%H:%M:%S").to_string(), "08:30:00");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = Settings::from_toml(
            "[security]\nsecret_key = \"0123456789abcdef0123456789abcdefSECRET\"\n\
             [admin]\ntoken = \"admintoken-SECRET-123\"\n\
             [smtp]\nurl = \"smtp://user:hunter2SECRET@mail.example.org:587?tls=required\"\n\
             [database]\nurl = \"postgres://u:pgSECRET@db/x\"\n\
             [bounces]\nimap_url = \"imaps://bounces:imapSECRET@imap.example.org/INBOX\"\n\
             [webhooks]\npostmark_username = \"pm\"\npostmark_password = \"pmSECRET\"\n\
             mailgun_signing_key = \"mgSECRET\"",
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("SECRET"), "secret leaked in {debug}");
    }
}
