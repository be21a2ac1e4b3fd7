//! `[http]`: the listener, its limits and the public URL.

use super::*;

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

pub(super) fn default_header_timeout() -> DurationSetting {
    DurationSetting(Duration::from_secs(10))
}

pub(super) fn default_request_timeout() -> DurationSetting {
    DurationSetting(Duration::from_secs(30))
}

pub(super) fn default_max_connections_http() -> u32 {
    1024
}

pub(super) fn default_write_timeout() -> DurationSetting {
    DurationSetting(Duration::from_secs(30))
}

pub(super) fn default_max_connections_per_client() -> u32 {
    64
}

pub(super) fn default_http_rate_limit() -> u32 {
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
