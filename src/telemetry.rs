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

/// A run of errors counts as over once its site has been quiet this long: the count left out
/// since its last line is logged then, so the last of it is not lost.
pub const RUN_OVER_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`log_now`] decided about one occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// How many of *this* message were left out since it was last logged (0: first time).
    pub repeated: u64,
    /// The message this site logged before, when it changed, and how many of it were left out
    /// since its last line (logged on its own line, not on the new message's).
    pub before: Option<(String, u64)>,
}

/// One site's run of errors.
#[derive(Debug)]
struct Run {
    message: String,
    level: &'static str,
    /// When the message was last logged.
    logged_at: std::time::Instant,
    /// When it last happened.
    seen_at: std::time::Instant,
    /// Left out since it was last logged.
    count: u64,
}

type Runs = std::collections::HashMap<&'static str, Run>;

fn runs() -> std::sync::MutexGuard<'static, Runs> {
    use std::sync::{LazyLock, Mutex};
    static RUNS: LazyLock<Mutex<Runs>> = LazyLock::new(|| {
        // Logs the counts of runs that ended (see [`RUN_OVER_AFTER`]), once a second.
        let _ = std::thread::Builder::new()
            .name("log-repeated".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    flush_ended(std::time::Instant::now());
                }
            });
        Mutex::new(Default::default())
    });
    RUNS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Rate-limited logging: whether to log `message` at `site` now (`level` is the macro's,
/// `"warn"` or `"error"`). The first occurrence logs; the same message at the same site again
/// within [`REPEAT_QUIET`] only counts; after that it logs again with `repeated` (how many were
/// left out). A new message logs at once, and the old one's count goes on a line of its own.
/// When a site has been quiet for [`RUN_OVER_AFTER`], the count left out is logged then. A full
/// disk or a database that is down fails every request the same way: one line, then a count,
/// instead of hundreds of lines a second.
pub fn log_now(site: &'static str, level: &'static str, message: &str) -> Option<Logged> {
    log_at(&mut runs(), site, level, message, std::time::Instant::now())
}

fn log_at(
    runs: &mut Runs,
    site: &'static str,
    level: &'static str,
    message: &str,
    now: std::time::Instant,
) -> Option<Logged> {
    let Some(run) = runs.get_mut(site) else {
        runs.insert(
            site,
            Run {
                message: message.to_string(),
                level,
                logged_at: now,
                seen_at: now,
                count: 0,
            },
        );
        return Some(Logged {
            repeated: 0,
            before: None,
        });
    };
    run.seen_at = now;
    run.level = level;
    if run.message != message {
        let before = std::mem::take(&mut run.count);
        let old = std::mem::replace(&mut run.message, message.to_string());
        run.logged_at = now;
        return Some(Logged {
            repeated: 0,
            before: (before > 0).then_some((old, before)),
        });
    }
    if now.duration_since(run.logged_at) < REPEAT_QUIET {
        run.count += 1;
        return None;
    }
    run.logged_at = now;
    Some(Logged {
        repeated: std::mem::take(&mut run.count),
        before: None,
    })
}

/// The runs quiet for [`RUN_OVER_AFTER`] with a count left out: their counts, taken.
fn take_ended(
    runs: &mut Runs,
    now: std::time::Instant,
) -> Vec<(&'static str, &'static str, String, u64)> {
    runs.iter_mut()
        .filter(|(_, r)| r.count > 0 && now.duration_since(r.seen_at) >= RUN_OVER_AFTER)
        .map(|(site, r)| {
            (
                *site,
                r.level,
                r.message.clone(),
                std::mem::take(&mut r.count),
            )
        })
        .collect()
}

/// Logs the counts of the runs that ended; [`log_now`]'s thread calls it every second, and a
/// process may call it before it exits.
pub fn flush_ended(now: std::time::Instant) {
    let ended = take_ended(&mut runs(), now);
    for (site, level, message, repeated) in ended {
        log_repeated_line(site, level, &message, repeated);
    }
}

/// The line that closes a run of errors: how many more of `message` there were.
pub fn log_repeated_line(site: &'static str, level: &str, message: &str, repeated: u64) {
    if level == "error" {
        tracing::error!(error = %message, repeated, site, "the same error again since its last line");
    } else {
        tracing::warn!(error = %message, repeated, site, "the same error again since its last line");
    }
}

/// `tracing::warn!` / `error!` through [`log_now`]: `log_repeated!(warn, "site", error = e,
/// "text")` logs the first of a run of identical errors and then one line a minute with
/// `repeated` (how many were left out); the count of a run that changed or ended gets a line of
/// its own.
#[macro_export]
macro_rules! log_repeated {
    ($level:ident, $site:expr, $err:expr, $($rest:tt)+) => {{
        let message = format!("{:#}", $err);
        if let Some(logged) = $crate::telemetry::log_now($site, stringify!($level), &message) {
            if let Some((before, n)) = &logged.before {
                $crate::telemetry::log_repeated_line($site, stringify!($level), before, *n);
            }
            if logged.repeated > 0 {
                tracing::$level!(error = %message, repeated = logged.repeated, $($rest)+);
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
        use std::time::{Duration, Instant};
        let mut runs = Runs::default();
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        let first = Logged {
            repeated: 0,
            before: None,
        };
        assert_eq!(
            log_at(&mut runs, "a", "warn", "disk full", at(0)),
            Some(first.clone())
        );
        assert_eq!(log_at(&mut runs, "a", "warn", "disk full", at(1)), None);
        assert_eq!(log_at(&mut runs, "a", "warn", "disk full", at(2)), None);
        assert_eq!(
            log_at(&mut runs, "a", "warn", "another error", at(3)),
            Some(Logged {
                repeated: 0,
                before: Some(("disk full".into(), 2)),
            }),
            "a new message logs at once with no count of its own; the old count is the old \
             message's"
        );
        assert_eq!(
            log_at(&mut runs, "a", "warn", "disk full", at(4)),
            Some(first.clone()),
            "nothing of the other message was left out: no count carried"
        );
        assert_eq!(
            log_at(&mut runs, "b", "warn", "disk full", at(4)),
            Some(first.clone()),
            "per site"
        );
        // The same message a minute after its line: logged again with its count.
        for s in 5..30 {
            assert_eq!(log_at(&mut runs, "a", "warn", "disk full", at(s)), None);
        }
        assert_eq!(
            log_at(&mut runs, "a", "warn", "disk full", at(64)),
            Some(Logged {
                repeated: 25,
                before: None,
            })
        );
    }

    #[test]
    fn the_count_of_a_run_that_ended_is_not_lost() {
        use std::time::{Duration, Instant};
        let mut runs = Runs::default();
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        log_at(&mut runs, "a", "error", "disk full", at(0));
        for s in 1..=3 {
            assert_eq!(log_at(&mut runs, "a", "error", "disk full", at(s)), None);
        }
        assert!(take_ended(&mut runs, at(5)).is_empty(), "still running");
        assert_eq!(
            take_ended(&mut runs, at(3 + RUN_OVER_AFTER.as_secs())),
            vec![("a", "error", "disk full".to_string(), 3)],
            "the errors stopped: the three left out are logged"
        );
        assert!(take_ended(&mut runs, at(40)).is_empty(), "once");
        // It comes back within the minute of its line: still counted, not logged.
        assert_eq!(log_at(&mut runs, "a", "error", "disk full", at(41)), None);
        assert_eq!(
            take_ended(&mut runs, at(60)),
            vec![("a", "error", "disk full".to_string(), 1)]
        );
    }
}
