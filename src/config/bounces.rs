//! `[bounces]`: soft-bounce rule, attribution and the IMAP bounce mailbox.

use super::*;

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

pub(super) fn default_imap_poll() -> DurationSetting {
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

pub(super) fn default_soft_limit() -> u32 {
    3
}

pub(super) fn default_soft_window() -> DurationSetting {
    DurationSetting(Duration::from_secs(30 * 24 * 3600))
}

pub(super) fn default_stall_after() -> DurationSetting {
    DurationSetting(Duration::from_secs(300))
}
