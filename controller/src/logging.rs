//! Where the `berth` binary's log goes and how it reads: text for people (the default) or JSON lines for a log
//! pipeline, at a level from `--log-level`, else `RUST_LOG`, else `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `{"timestamp":..,"level":"INFO","fields":{"message":..,"object":..},"target":..}`.
    Json,
}

/// What to log: `--log-level` (any `RUST_LOG` directive: `debug`, `info,berth_controller=debug`) wins over
/// `RUST_LOG`; with neither, `info`.
pub fn filter(level: Option<&str>) -> EnvFilter {
    let directives = level.map(str::to_string).or_else(|| std::env::var("RUST_LOG").ok()).filter(|d| !d.is_empty());
    directives.and_then(|d| EnvFilter::try_new(d).ok()).unwrap_or_else(|| EnvFilter::new("info"))
}

/// Sets up logging to stderr for the whole process. Call once, first.
pub fn init(format: LogFormat, level: Option<&str>) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter(level));
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(false).with_current_span(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_and_info_is_the_default() {
        assert_eq!(filter(Some("debug")).to_string(), "debug");
        assert_eq!(filter(Some("warn,berth_controller=trace")).to_string(), "berth_controller=trace,warn");
        // An unparsable level falls back to info rather than to nothing.
        assert_eq!(filter(Some("=[")).to_string(), "info");
    }
}
