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

/// `[tracking]`: what the newsletter counts about its readers (see `GET /privacy`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingSettings {
    /// `tracking.clicks`: comparison links in issue emails go through `/r/{token}`, the same
    /// for every recipient, and each GET counts one click; `false`: plain links.
    #[serde(default = "default_true")]
    pub clicks: bool,
}

impl Default for TrackingSettings {
    fn default() -> Self {
        TrackingSettings { clicks: true }
    }
}

fn default_true() -> bool {
    true
}

/// `[webhooks]`: how each provider's calls are authenticated. A provider whose keys are unset
/// answers 404.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// PEM of the SNS signing certificate (from the message's SigningCertURL, stored by the
    /// operator: this binary makes no outbound HTTP calls).
    #[serde(default)]
    pub ses_signing_cert_file: Option<PathBuf>,
    /// Only notifications of this topic are accepted, when set.
    #[serde(default)]
    pub ses_topic_arn: Option<String>,
    /// The Basic-auth credentials written into Postmark's webhook URL.
    #[serde(default)]
    pub postmark_username: Option<String>,
    #[serde(default)]
    pub postmark_password: Option<SecretString>,
    /// The base64 public key of SendGrid's signed event webhook.
    #[serde(default)]
    pub sendgrid_public_key: Option<String>,
    /// Mailgun's HTTP webhook signing key.
    #[serde(default)]
    pub mailgun_signing_key: Option<SecretString>,
    /// Signed calls older (or newer) than this are refused as replays.
    #[serde(default = "default_webhook_max_age")]
    pub max_age: DurationSetting,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            ses_signing_cert_file: None,
            ses_topic_arn: None,
            postmark_username: None,
            postmark_password: None,
            sendgrid_public_key: None,
            mailgun_signing_key: None,
            max_age: default_webhook_max_age(),
        }
    }
}

fn default_webhook_max_age() -> DurationSetting {
    DurationSetting(Duration::from_secs(300))
}

/// `[dns]`: the resolver every DNS look-up of verdicts uses (`doctor`, and the domain checks).
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

fn default_dns_timeout() -> DurationSetting {
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

/// `templates.dir`: a folder whose files replace the built-in templates of the same name
/// (`email/issue.mjml`, `web/signup.html`, …); missing files fall back to the built-ins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    pub dir: Option<std::path::PathBuf>,
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

/// The `sslmode` values of `database.url` for PostgreSQL, as libpq has them (`allow` is left
/// out: it falls back to clear text after a refused TLS handshake).
pub const SSL_MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

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
                let parsed = url::Url::parse(&value)
                    .map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
                // TLS as libpq spells it; sqlx reads the same parameters.
                for (key, v) in parsed.query_pairs() {
                    match key.as_ref() {
                        "sslmode" if !SSL_MODES.contains(&v.as_ref()) => {
                            return Err(format!(
                                "sslmode={v:?} (use one of {})",
                                SSL_MODES.join(", ")
                            ));
                        }
                        "sslrootcert" if !Path::new(v.as_ref()).is_file() => {
                            return Err(format!("sslrootcert={v:?}: no such file"));
                        }
                        _ => {}
                    }
                }
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
    /// A connection whose request headers are not complete this long after it started waiting
    /// for them is closed. Hyper starts the same clock while a keep-alive connection waits for
    /// its next request, so this is also the idle keep-alive limit.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: DurationSetting,
    /// The whole request, body included, must be handled within this; otherwise 408.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: DurationSetting,
    /// Open connections at most; further clients wait in the listen backlog.
    #[serde(default = "default_max_connections_http")]
    pub max_connections: u32,
    /// A response write that makes no progress this long (the client stopped reading) closes
    /// the connection.
    #[serde(default = "default_write_timeout")]
    pub write_timeout: DurationSetting,
    /// Open connections at most from one client address (an IPv6 /64 counts as one); 0: no
    /// limit.
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: u32,
    /// Requests per minute per client address to `/confirm`, `/unsubscribe` and `/api`
    /// (each its own bucket); 0 disables the limit.
    #[serde(default = "default_http_rate_limit")]
    pub rate_limit_per_minute: u32,
}

fn default_header_timeout() -> DurationSetting {
    DurationSetting(Duration::from_secs(10))
}

fn default_request_timeout() -> DurationSetting {
    DurationSetting(Duration::from_secs(30))
}

fn default_max_connections_http() -> u32 {
    1024
}

fn default_write_timeout() -> DurationSetting {
    DurationSetting(Duration::from_secs(30))
}

fn default_max_connections_per_client() -> u32 {
    64
}

fn default_http_rate_limit() -> u32 {
    60
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
    /// Envelope sender for bounces (`bounces@example.org`): issue messages leave with
    /// `bounces+TOKEN@example.org` (VERP), transactional mail with the address itself.
    #[serde(default)]
    pub return_path: Option<ReturnPath>,
}

/// `mail.return_path`: a bare address whose local part has no `+` (the VERP separator).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ReturnPath(pub lettre::Address);

impl TryFrom<String> for ReturnPath {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let address = lettre::Address::from_str(value.trim())
            .map_err(|e| format!("{value:?} is not a bare mail address: {e}"))?;
        if address.user().contains('+') {
            return Err(format!(
                "{value:?}: the local part must not contain '+' (VERP adds +TOKEN to it)"
            ));
        }
        if !address.user().is_ascii() || !address.domain().is_ascii() {
            return Err(format!("{value:?}: must be an ASCII address"));
        }
        Ok(ReturnPath(address))
    }
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
    /// Bounds every SMTP step: connecting, the greeting, STARTTLS and the TLS handshake, EHLO,
    /// AUTH, NOOP and each command of a message.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_seconds: u64,
    /// A PEM bundle of extra trusted roots (a private relay's CA), trusted beside the public
    /// roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_smtp_timeout() -> u64 {
    30
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`: TLS from the first byte (RFC 8314), default port 465.
    Implicit,
    /// `smtp://…?tls=required`: STARTTLS or nothing is sent, default port 587.
    Required,
    /// `smtp://…?tls=opportunistic`: STARTTLS when the server offers it.
    Opportunistic,
    /// `smtp://` (or `?tls=none`): plain text, for a relay on the same host or network.
    None,
}

impl SmtpTls {
    /// Whether every byte after the handshake is encrypted, whatever the server offers.
    pub fn guaranteed(self) -> bool {
        matches!(self, SmtpTls::Implicit | SmtpTls::Required)
    }
}

/// A login for the SMTP server, percent-decoded from the URL's userinfo.
#[derive(Clone)]
pub struct SmtpCredentials {
    pub user: String,
    pub password: SecretString,
}

/// A checked `smtp.url`: `smtp://[user:pass@]host[:port][?tls=required|opportunistic|none]` or
/// `smtps://[user:pass@]host[:port]`. Credentials are only accepted with TLS that cannot be
/// skipped (implicit, or `tls=required`), so they never cross the network in clear text. Its
/// `Debug` masks the password.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<SmtpCredentials>,
    redacted: String,
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl TryFrom<String> for SmtpUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let parsed = url::Url::parse(&value).map_err(|e| format!("not a URL: {e}"))?;
        let implicit = match parsed.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => {
                return Err(format!(
                    "unsupported scheme {other:?} (expected smtp or smtps)"
                ));
            }
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let mut tls = if implicit {
            SmtpTls::Implicit
        } else {
            SmtpTls::None
        };
        for (key, v) in parsed.query_pairs() {
            match (key.as_ref(), implicit) {
                ("tls", true) => {
                    return Err("smtps:// is TLS from the start: drop ?tls=".into());
                }
                ("tls", false) => {
                    tls = match v.as_ref() {
                        "required" => SmtpTls::Required,
                        "opportunistic" => SmtpTls::Opportunistic,
                        "none" => SmtpTls::None,
                        other => {
                            return Err(format!(
                                "tls={other:?} (use required, opportunistic or none)"
                            ));
                        }
                    }
                }
                (other, _) => return Err(format!("unknown parameter {other:?} (only tls=)")),
            }
        }
        let port = parsed.port().unwrap_or(match tls {
            SmtpTls::Implicit => 465,
            SmtpTls::Required => 587,
            SmtpTls::Opportunistic | SmtpTls::None => 25,
        });
        // Userinfo is percent-decoded as RFC 3986 says (a `+` is a plus, not a space).
        let decode = |part: &str, what: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| format!("the {what} is not UTF-8 once percent-decoded"))
        };
        let credentials = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            Some(SmtpCredentials {
                user: decode(parsed.username(), "user name")?,
                password: SecretString::from(decode(
                    parsed.password().unwrap_or_default(),
                    "password",
                )?),
            })
        };
        if credentials.is_some() && !tls.guaranteed() {
            return Err(
                "carries credentials without TLS: they would cross the network in clear text; \
                 use smtps:// or add ?tls=required"
                    .into(),
            );
        }
        let mut shown = parsed.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        Ok(SmtpUrl {
            host,
            port,
            tls,
            credentials,
            redacted: shown.to_string(),
        })
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
    /// Confirmation mails per mailbox per hour, however the address is spelled (plus-tags,
    /// case): a stranger cannot bomb one inbox through `victim+1@`, `victim+2@`, …
    #[serde(default = "default_confirmations_per_mailbox")]
    pub confirmations_per_mailbox_per_hour: u32,
    /// Origins whose pages may post a signup from the browser (CORS) and that a form's
    /// `redirect` may return to; empty: the origin of `site.base_url`.
    #[serde(default)]
    pub allowed_origins: Vec<WebOrigin>,
    /// Throwaway domains refused at signup, their subdomains included.
    #[serde(default)]
    pub blocked_domains: Vec<String>,
    /// More blocked domains, one a line (`#` starts a comment); read at start-up.
    #[serde(default)]
    pub blocked_domains_file: Option<PathBuf>,
    /// A reader still pending this long after signing up gets one reminder (by the worker).
    #[serde(default = "default_reminder_after")]
    pub reminder_after: DurationSetting,
    /// A reader still pending this long after signing up is deleted (by the worker).
    #[serde(default = "default_pending_ttl")]
    pub pending_ttl: DurationSetting,
}

fn default_reminder_after() -> DurationSetting {
    DurationSetting(Duration::from_secs(24 * 3600))
}

fn default_pending_ttl() -> DurationSetting {
    DurationSetting(Duration::from_secs(7 * 24 * 3600))
}

/// `scheme://host[:port]` of a web page, as browsers send it in `Origin`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WebOrigin(pub String);

impl TryFrom<String> for WebOrigin {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let url = HttpUrl::try_from(value.clone())?;
        let parsed = url::Url::parse(url.as_str()).map_err(|e| e.to_string())?;
        if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!(
                "{value:?} is not an origin: give scheme://host[:port] without a path"
            ));
        }
        Ok(WebOrigin(parsed.origin().ascii_serialization()))
    }
}

impl SignupSettings {
    /// The origins allowed to post signups from the browser (see `allowed_origins`).
    pub fn origins(&self, site: &SiteSettings) -> Vec<String> {
        if self.allowed_origins.is_empty() {
            url::Url::parse(site.base_url.as_str())
                .map(|u| vec![u.origin().ascii_serialization()])
                .unwrap_or_default()
        } else {
            self.allowed_origins.iter().map(|o| o.0.clone()).collect()
        }
    }
}

fn default_confirmations_per_mailbox() -> u32 {
    3
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
        if value.chars().any(crate::text::forbidden_char) {
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
    /// Complaints per message sent above which a sending issue pauses (Gmail's line: 0.3 %).
    #[serde(default = "default_max_complaint_rate")]
    pub max_complaint_rate: f64,
    /// Hard bounces per message sent above which a sending issue pauses.
    #[serde(default = "default_max_bounce_rate")]
    pub max_bounce_rate: f64,
    /// The rates count only once at least this many messages of the issue went out.
    #[serde(default = "default_rate_min_sample")]
    pub rate_min_sample: u32,
    /// Transport failures with no message accepted for this long pause the issue.
    #[serde(default = "default_stall_after")]
    pub stall_after: DurationSetting,
    /// At most this many messages per `window` across every worker (a relay's daily quota);
    /// 0 means no window limit. A send that reaches it pauses and resumes when the window allows.
    #[serde(default)]
    pub window_limit: u64,
    /// The sliding window of `window_limit`.
    #[serde(default = "default_window")]
    pub window: DurationSetting,
    /// After SIGTERM, how long the process may take to record what it sent; the rest is left
    /// to the lease (as after kill -9) and the process exits.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: DurationSetting,
}

fn default_shutdown_grace() -> DurationSetting {
    DurationSetting(Duration::from_secs(10))
}

fn default_window() -> DurationSetting {
    DurationSetting(Duration::from_secs(24 * 3600))
}

fn default_max_complaint_rate() -> f64 {
    0.003
}

fn default_max_bounce_rate() -> f64 {
    0.05
}

fn default_rate_min_sample() -> u32 {
    1000
}

/// `[bounces]`: what soft bounces add up to, and where reports are read from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BounceSettings {
    /// This many soft bounces of one subscriber within `soft_window` mark them bounced.
    #[serde(default = "default_soft_limit")]
    pub soft_limit: u32,
    #[serde(default = "default_soft_window")]
    pub soft_window: DurationSetting,
    /// The bounce mailbox `serve` polls: `imaps://user:pass@host/INBOX`.
    #[serde(default)]
    pub imap_url: Option<ImapUrl>,
    #[serde(default = "default_imap_poll")]
    pub imap_poll: DurationSetting,
    /// Handled messages are moved to this folder; unset: flagged `\Seen` in place.
    #[serde(default)]
    pub imap_done_folder: Option<String>,
    /// A PEM bundle of extra trusted roots for `imaps://` (a private mail server's CA), beside
    /// the public roots.
    #[serde(default)]
    pub imap_ca_file: Option<PathBuf>,
    /// Which mailed reports (the mailbox, `bounces import`) are applied; unset: `verp` when
    /// `mail.return_path` is set, else `any`. Webhooks are authenticated by their provider.
    #[serde(default)]
    pub attribution: Option<Attribution>,
}

/// `bounces.attribution`: how much a mailed report must prove before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attribution {
    /// Only reports addressed to (or quoting) a VERP address whose signed tag verifies: anyone
    /// can mail a bounce mailbox, nobody else can make that address.
    Verp,
    /// Also the weaker clues: the original's Message-ID, its List-Unsubscribe link, the
    /// recipient the report names (for reports that do not come back to our envelope sender).
    Any,
}

impl BounceSettings {
    /// `bounces.attribution`, or its default for this `mail.return_path`.
    pub fn attribution(&self, return_path_set: bool) -> Attribution {
        self.attribution.unwrap_or(if return_path_set {
            Attribution::Verp
        } else {
            Attribution::Any
        })
    }
}

impl Default for BounceSettings {
    fn default() -> Self {
        BounceSettings {
            soft_limit: default_soft_limit(),
            soft_window: default_soft_window(),
            imap_url: None,
            imap_poll: default_imap_poll(),
            imap_done_folder: None,
            imap_ca_file: None,
            attribution: None,
        }
    }
}

fn default_imap_poll() -> DurationSetting {
    DurationSetting(Duration::from_secs(60))
}

/// `bounces.imap_url`, checked when the config loads; its `Debug` hides the password.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct ImapUrl(pub crate::bounces::mailbox::Mailbox);

impl TryFrom<String> for ImapUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        crate::bounces::mailbox::Mailbox::from_url(&value).map(ImapUrl)
    }
}

impl fmt::Debug for ImapUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

fn default_soft_limit() -> u32 {
    3
}

fn default_soft_window() -> DurationSetting {
    DurationSetting(Duration::from_secs(30 * 24 * 3600))
}

fn default_stall_after() -> DurationSetting {
    DurationSetting(Duration::from_secs(300))
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

/// `GET /metrics`: who may read it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Bearer token for `/metrics`; unset: `admin.token`; neither set: `/metrics` is 404.
    pub token: Option<SecretString>,
}

impl Settings {
    /// The token `/metrics` answers to: `metrics.token`, else `admin.token`.
    pub fn metrics_token(&self) -> Option<&SecretString> {
        self.metrics.token.as_ref().or(self.admin.token.as_ref())
    }
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
