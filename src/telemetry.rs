//! Logging: human-readable lines by default, JSON lines with `log.format = "json"` or `--log-json`.
//! The level comes from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls are ignored (tests call it repeatedly).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// How long a repeated error stays quiet before it is logged again with its count.
pub const REPEAT_QUIET: std::time::Duration = std::time::Duration::from_secs(60);

/// Rate-limited logging: whether to log `message` at `site` now. The first occurrence logs; the
/// same message at the same site again within [`REPEAT_QUIET`] only counts; after that (or when
/// the message changes) it logs again, and `Some(n)` says how many were left out since. A full
/// disk or a database that is down fails every request the same way: one line, then a count,
/// instead of hundreds of lines a second.
pub fn log_now(site: &'static str, message: &str) -> Option<u64> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    use std::time::Instant;
    /// Per site: the last message logged, when, and how many were left out since.
    type Seen = HashMap<&'static str, (String, Instant, u64)>;
    static SEEN: LazyLock<Mutex<Seen>> = LazyLock::new(Default::default);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match seen.get_mut(site) {
        Some((last, at, count))
            if last.as_str() == message && now.duration_since(*at) < REPEAT_QUIET =>
        {
            *count += 1;
            None
        }
        Some((last, at, count)) => {
            let left_out = std::mem::take(count);
            *last = message.to_string();
            *at = now;
            Some(left_out)
        }
        None => {
            seen.insert(site, (message.to_string(), now, 0));
            Some(0)
        }
    }
}

/// `tracing::warn!` / `error!` through [`log_now`]: `log_repeated!(warn, "site", error = e,
/// "text")` logs the first of a run of identical errors and then one line a minute with
/// `repeated` (how many were left out).
#[macro_export]
macro_rules! log_repeated {
    ($level:ident, $site:expr, $err:expr, $($rest:tt)+) => {{
        let message = format!("{:#}", $err);
        if let Some(repeated) = $crate::telemetry::log_now($site, &message) {
            if repeated > 0 {
                tracing::$level!(error = %message, repeated, $($rest)+);
            } else {
                tracing::$level!(error = %message, $($rest)+);
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::log_now;

    #[test]
    fn a_repeated_error_logs_once_then_counts() {
        assert_eq!(log_now("test-site", "disk full"), Some(0));
        assert_eq!(log_now("test-site", "disk full"), None);
        assert_eq!(log_now("test-site", "disk full"), None);
        assert_eq!(
            log_now("test-site", "another error"),
            Some(2),
            "a new message logs at once, with the count of the old one"
        );
        assert_eq!(log_now("other-site", "disk full"), Some(0), "per site");
    }
}
