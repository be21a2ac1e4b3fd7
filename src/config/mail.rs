//! `[mail]` (transport, sender, return path) and `[smtp]` (the relay).

use super::*;

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
    /// A pooled connection idle longer than this is checked with NOOP before it carries a
    /// message (a relay that drops idle connections sooner wants less).
    #[serde(default = "default_idle_check")]
    pub idle_check: DurationSetting,
}

pub(super) fn default_smtp_timeout() -> u64 {
    30
}

pub(super) fn default_idle_check() -> DurationSetting {
    DurationSetting(Duration::from_secs(3))
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
