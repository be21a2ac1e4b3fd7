//! `[signup]`: the form, its limits and the door.

use super::*;

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

pub(super) fn default_reminder_after() -> DurationSetting {
    DurationSetting(Duration::from_secs(24 * 3600))
}

pub(super) fn default_pending_ttl() -> DurationSetting {
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

pub(super) fn default_confirmations_per_mailbox() -> u32 {
    3
}
