//! `[tracking]` (click counts) and `[webhooks]` (provider signatures and their age).

use super::*;

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

pub(super) fn default_true() -> bool {
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
    /// Signed calls older (or newer) than this are refused as replays (SES, SendGrid, Mailgun;
    /// Postmark signs no timestamp). Between 10 s and 24 h.
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

pub(super) fn default_webhook_max_age() -> DurationSetting {
    DurationSetting(Duration::from_secs(300))
}
