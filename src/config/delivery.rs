//! `[dkim]` (signing keys) and `[delivery]` (rate, concurrency, the circuit breaker).

use super::*;

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

pub(super) fn default_shutdown_grace() -> DurationSetting {
    DurationSetting(Duration::from_secs(10))
}

pub(super) fn default_window() -> DurationSetting {
    DurationSetting(Duration::from_secs(24 * 3600))
}

pub(super) fn default_max_complaint_rate() -> f64 {
    0.003
}

pub(super) fn default_max_bounce_rate() -> f64 {
    0.05
}

pub(super) fn default_rate_min_sample() -> u32 {
    1000
}
