//! The log setup `jobmaster` and `taskexecutor` share: one flag spelling
//! (`--log-format text|json`) and colour only where a person reads it.
//!
//! Text logs carry ANSI colour only when the output is a terminal and `NO_COLOR` is unset or
//! empty (<https://no-color.org>): a log redirected to a file, a pipe or journald must hold
//! plain text, not `\x1b[` sequences that every grep and log shipper then has to strip.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The log flags of both daemons.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LogArgs {
    /// Log format; filter with RUST_LOG [default filter: info]. Text is coloured only on a
    /// terminal and without NO_COLOR.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The old spelling of `--log-format json` (taskexecutor), kept so scripts keep working.
    #[arg(long, hide = true, conflicts_with = "log_format")]
    pub log_json: bool,
}

impl LogArgs {
    /// The format asked for, by either spelling.
    pub fn format(&self) -> LogFormat {
        if self.log_json {
            LogFormat::Json
        } else {
            self.log_format
        }
    }
}

/// Whether text logs get ANSI colour: only on a terminal, and never when `NO_COLOR` holds a
/// non-empty value.
pub fn use_colour(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Whether text written to stderr gets ANSI colour (for tools that log there).
pub fn stderr_colour() -> bool {
    use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// Installs the global subscriber: stdout, filtered by `RUST_LOG` (default `info`).
/// `spans` chooses which span events are logged (the jobmaster logs each failover span's
/// close, with its duration).
pub fn init(format: LogFormat, spans: FmtSpan) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(spans);
    match format {
        LogFormat::Text => builder
            .with_ansi(use_colour(
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    fn parse(args: &[&str]) -> Result<LogFormat, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map(|c| c.log.format())
    }

    #[test]
    fn log_format_takes_text_or_json_and_the_old_log_json_spelling_still_means_json() {
        assert_eq!(parse(&[]).unwrap(), LogFormat::Text);
        assert_eq!(parse(&["--log-format", "json"]).unwrap(), LogFormat::Json);
        assert_eq!(parse(&["--log-format", "text"]).unwrap(), LogFormat::Text);
        assert_eq!(parse(&["--log-json"]).unwrap(), LogFormat::Json);
        assert!(parse(&["--log-format", "yaml"]).is_err());
        assert!(parse(&["--log-json", "--log-format", "text"]).is_err());
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new("1"))));
    }
}
