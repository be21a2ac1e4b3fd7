//! `[security]`, `[admin]`, `[metrics]`, `[site]` and `[log]`.

use super::*;

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
