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

/// The committed defaults, compiled in so the binary runs from any folder.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

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
    pub site: SiteSettings,
    #[serde(default)]
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    10
}

/// A database address we know how to open.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub enum DatabaseUrl {
    /// `sqlite://PATH`; the file (and its folder) are created if missing.
    Sqlite { path: PathBuf, url: String },
    /// `postgres://…` or `postgresql://…`.
    Postgres(SecretString),
}

impl DatabaseUrl {
    /// The URL handed to sqlx (contains the password for PostgreSQL: never log it).
    pub fn connect_url(&self) -> String {
        match self {
            DatabaseUrl::Sqlite { path, .. } => {
                format!("sqlite://{}?mode=rwc", path.display())
            }
            DatabaseUrl::Postgres(url) => url.expose_secret().to_string(),
        }
    }

    /// The URL with any password masked, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite { url, .. } => url.clone(),
            DatabaseUrl::Postgres(url) => match url::Url::parse(url.expose_secret()) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    u.to_string()
                }
                Err(_) => "postgres://***".into(),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let Some((scheme, rest)) = value.split_once("://") else {
            return Err(format!(
                "{value:?} is not a URL (expected sqlite://PATH or postgres://…)"
            ));
        };
        match scheme {
            "sqlite" => {
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(
                        "sqlite:// needs a file path, e.g. sqlite://data/verdicts.db".into(),
                    );
                }
                if path == ":memory:" {
                    return Err(
                        "an in-memory SQLite database loses everything at exit; give a file path"
                            .into(),
                    );
                }
                Ok(DatabaseUrl::Sqlite {
                    path: PathBuf::from(path),
                    url: value.clone(),
                })
            }
            "postgres" | "postgresql" => {
                url::Url::parse(&value).map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
                Ok(DatabaseUrl::Postgres(SecretString::from(value)))
            }
            other => Err(format!(
                "unsupported scheme {other:?} (expected sqlite or postgres)"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    pub public_url: HttpUrl,
}

/// An absolute `http`/`https` URL without a trailing slash, so paths can be appended.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `base` + `/path…`.
    pub fn join(&self, path: &str) -> String {
        format!("{}/{}", self.0, path.trim_start_matches('/'))
    }
    pub fn host(&self) -> String {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let parsed = url::Url::parse(&value).map_err(|e| format!("{value:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{value:?} must be an http:// or https:// URL"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("{value:?} has no host"));
        }
        Ok(HttpUrl(value.trim_end_matches('/').to_string()))
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Outbox,
    Smtp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    pub transport: Transport,
    pub outbox_dir: PathBuf,
    pub from: MailboxSetting,
    #[serde(default)]
    pub reply_to: Option<MailboxSetting>,
    /// Optional address for `List-Unsubscribe: <mailto:…>` next to the https link.
    #[serde(default)]
    pub unsubscribe_mailto: Option<MailboxSetting>,
}

/// A display name and address such as `Verdicts <news@example.org>`, checked by lettre's parser.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct MailboxSetting(pub lettre::message::Mailbox);

impl TryFrom<String> for MailboxSetting {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.contains(['\r', '\n']) {
            return Err("must not contain line breaks".into());
        }
        lettre::message::Mailbox::from_str(&value)
            .map(MailboxSetting)
            .map_err(|e| format!("{value:?} is not a mail address: {e}"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub url: SmtpUrl,
    #[serde(default = "default_smtp_timeout")]
    pub timeout_seconds: u64,
}

fn default_smtp_timeout() -> u64 {
    30
}

/// `smtp://` or `smtps://` URL; may carry credentials, so its `Debug` masks the password.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct SmtpUrl(SecretString);

impl SmtpUrl {
    /// The full URL including credentials: for the transport builder only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(self.0.expose_secret()) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                write!(f, "{u}")
            }
            Err(_) => f.write_str("smtp://***"),
        }
    }
}

impl TryFrom<String> for SmtpUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let parsed = url::Url::parse(&value).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "smtp" | "smtps") {
            return Err(format!(
                "unsupported scheme {:?} (expected smtp or smtps)",
                parsed.scheme()
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("has no host".into());
        }
        Ok(SmtpUrl(SecretString::from(value)))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupSettings {
    pub confirm_token_ttl: DurationSetting,
    pub resend_interval: DurationSetting,
    pub rate_limit_per_minute: u32,
    pub consent_text_version: SingleLine,
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsletterSettings {
    pub name: SingleLine,
    pub list_id: ListId,
    pub postal_address: SingleLine,
    #[serde(default = "default_max_items")]
    pub max_items: u32,
}

fn default_max_items() -> u32 {
    10
}

/// Text that goes into a header or a one-line footer: non-empty, no CR/LF.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SingleLine(pub String);

impl TryFrom<String> for SingleLine {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if value.chars().any(crate::render::forbidden_char) {
            return Err("must be one line without control or private-use characters".into());
        }
        Ok(SingleLine(value))
    }
}

/// RFC 2919 list identifier: a dot-atom such as `weekly.example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ListId(pub String);

impl TryFrom<String> for ListId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let ok = value.contains('.')
            && value.len() <= 255
            && value.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if ok {
            Ok(ListId(value))
        } else {
            Err(format!(
                "{value:?} is not a list id (dot-separated letters, digits and dashes, e.g. weekly.example.org)"
            ))
        }
    }
}

/// A DNS name as DKIM uses them (selectors, signing domains): dot-separated labels of letters,
/// digits, `-` and `_`.
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSettings {
    pub domain: Option<String>,
    pub selector: Option<String>,
    /// RSA (PKCS#1 or PKCS#8 PEM, at least 2048 bits) or Ed25519 (PKCS#8 PEM or base64 seed).
    pub private_key_file: Option<PathBuf>,
    /// A second, Ed25519 signature beside the first (RFC 8463): its selector and key.
    pub ed25519_selector: Option<String>,
    pub ed25519_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    pub concurrency: u32,
    pub rate_per_second: u32,
    pub max_attempts: u32,
    pub lease_seconds: u64,
    pub retry_base_seconds: u64,
    pub pause_after_failures: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    pub cron: CronSetting,
    pub timezone: TimezoneSetting,
    pub catch_up: DurationSetting,
}

/// A cron expression accepted by the `cron` crate; a 5-field crontab gets `0` seconds prepended.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct CronSetting {
    pub source: String,
    pub schedule: cron::Schedule,
}

impl TryFrom<String> for CronSetting {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let fields = value.split_whitespace().count();
        let expr = if fields == 5 {
            format!("0 {value}")
        } else {
            value.clone()
        };
        cron::Schedule::from_str(&expr)
            .map(|schedule| CronSetting {
                source: value.clone(),
                schedule,
            })
            .map_err(|e| format!("{value:?} is not a cron expression: {e}"))
    }
}

/// An IANA time zone name such as `Europe/Berlin`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct TimezoneSetting(pub chrono_tz::Tz);

impl TryFrom<String> for TimezoneSetting {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        chrono_tz::Tz::from_str(&value)
            .map(TimezoneSetting)
            .map_err(|_| format!("{value:?} is not an IANA time zone (e.g. Europe/Berlin)"))
    }
}

/// A duration written like `6h`, `90m` or `1h 30m`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct DurationSetting(pub Duration);

impl TryFrom<String> for DurationSetting {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        humantime::parse_duration(&value)
            .map(DurationSetting)
            .map_err(|e| format!("{value:?} is not a duration like 6h or 90m: {e}"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    #[serde(default)]
    pub secret_key: Option<SecretString>,
    pub secret_key_file: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub token: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSettings {
    pub name: SingleLine,
    pub base_url: HttpUrl,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(default)]
    pub format: LogFormat,
}

/// Minimum length of `security.secret_key`: it signs unsubscribe links.
pub const MIN_SECRET_LEN: usize = 32;
/// Minimum length of `admin.token`.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

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
        if self.delivery.lease_seconds == 0 {
            problems.push("delivery.lease_seconds: must be at least 1".to_string());
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
                "[newsletter]\nlist_id = \"no spaces allowed\"",
                "newsletter.list_id:",
            ),
            ("[security]\nsecret_key = \"short\"", "security.secret_key:"),
            ("[admin]\ntoken = \"short\"", "admin.token:"),
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
             [smtp]\nurl = \"smtp://user:hunter2SECRET@mail.example.org:587\"\n\
             [database]\nurl = \"postgres://u:pgSECRET@db/x\"",
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("SECRET"), "secret leaked in {debug}");
    }
}
