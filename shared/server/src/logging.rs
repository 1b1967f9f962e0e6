//! Structured logs: human text or one JSON object per line.

use tracing_subscriber::{EnvFilter, fmt};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global subscriber writing to stderr. The filter (EnvFilter syntax) is
/// `filter` (a service's `--log` / `STRATA_*_LOG`) when given and not empty, else `RUST_LOG` when set,
/// else `default`: the flag names what this process should log and wins over the generic
/// variable. An invalid filter is an error, not a silent fallback. Calling it twice is
/// harmless (the first subscriber stays).
pub fn init_tracing(format: LogFormat, filter: Option<&str>, default: &str) -> Result<(), String> {
    // an empty `--log` (an env variable set to nothing, say) is no filter, not one that logs
    // nothing at all (`off` says that on purpose)
    let filter = match filter.filter(|f| !f.trim().is_empty()) {
        Some(f) => parse_filter(f)?,
        None => match std::env::var("RUST_LOG") {
            Ok(f) if !f.trim().is_empty() => {
                EnvFilter::try_new(&f).map_err(|e| format!("invalid RUST_LOG {f:?}: {e}"))?
            }
            _ => EnvFilter::try_new(default).map_err(|e| format!("invalid log filter: {e}"))?,
        },
    };
    // colour only for a person at a terminal: a log file or collector gets plain text
    // (NO_COLOR, https://no-color.org, turns it off there too)
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

fn parse_filter(f: &str) -> Result<EnvFilter, String> {
    // EnvFilter::try_new accepts a directive it cannot use by dropping it with a warning on
    // stderr; the builder's strict parse refuses it instead
    EnvFilter::builder()
        .parse(f)
        .map_err(|e| format!("invalid log filter {f:?}: {e}"))
}

/// A clap value parser for `--log`: the same check as [`init_tracing`], at parse time, so a
/// bad filter is a usage error naming the flag.
pub fn log_filter(f: &str) -> Result<String, String> {
    if f.trim().is_empty() {
        return Ok(String::new());
    }
    parse_filter(f).map(|_| f.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_not_dropped() {
        for ok in ["info", "strata=debug,tower=warn", "warn"] {
            log_filter(ok).unwrap();
        }
        // empty: no filter given, so the default applies (it used to log nothing at all)
        assert_eq!(log_filter("").unwrap(), "");
        for bad in ["strata=bogus", "=[[bad", "info,strata=nope"] {
            let e = log_filter(bad).unwrap_err();
            assert!(e.contains("invalid log filter"), "{bad}: {e}");
        }
    }
}
