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
}
