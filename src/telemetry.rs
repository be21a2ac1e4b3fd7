//! Logging: human-readable lines by default, JSON lines with `log.format = "json"` or `--log-json`.
//!
//! The level comes from `RUST_LOG` when it is set. Otherwise the long-running commands (`serve`,
//! `worker`) log `info`, and the interactive ones log only warnings and errors, so their own
//! output (a table, a progress bar) is not interleaved with log lines; `-v` brings back `info`,
//! `-vv` `debug`. Colours only on a terminal, and never with `NO_COLOR` set
//! (<https://no-color.org>).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Which kind of command is logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `serve`, `worker`: the log is the output.
    Service,
    /// Every other command: the log is an aside; `verbose` counts `-v` flags.
    Interactive { verbose: u8 },
}

/// The filter used when `RUST_LOG` is not set.
pub fn default_filter(mode: Mode) -> &'static str {
    match mode {
        Mode::Service | Mode::Interactive { verbose: 1 } => "info,sqlx=warn,tower_http=warn",
        Mode::Interactive { verbose: 0 } => "warn",
        Mode::Interactive { .. } => "debug,sqlx=info,tower_http=info,hyper=info,rustls=info",
    }
}

/// Whether to colour log lines written to stderr.
pub fn use_colour() -> bool {
    colour_for(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// Colour on a terminal unless `NO_COLOR` is set to anything but the empty string.
fn colour_for(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber once; later calls are ignored (tests call it repeatedly).
pub fn init(format: LogFormat, mode: Mode) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter(mode)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(use_colour())
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
    use super::*;

    #[test]
    fn interactive_commands_are_quiet_unless_asked() {
        assert_eq!(default_filter(Mode::Interactive { verbose: 0 }), "warn");
        assert!(default_filter(Mode::Interactive { verbose: 1 }).starts_with("info"));
        assert!(default_filter(Mode::Interactive { verbose: 3 }).starts_with("debug"));
        assert!(default_filter(Mode::Service).starts_with("info"));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour_for(true, None));
        assert!(!colour_for(false, None));
        assert!(!colour_for(true, Some(OsStr::new("1"))));
        assert!(
            colour_for(true, Some(OsStr::new(""))),
            "an empty NO_COLOR does not count"
        );
    }

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
