//! Telemetry: tracing initialisation and the one file that defines every Prometheus metric.

pub mod metrics;

use crate::config::{LogFormat, LoggingConfig};

/// Logs go to stderr; `RUST_LOG` overrides `logging.level` for ad-hoc debugging.
pub fn init_tracing(logging: &LoggingConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&logging.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match logging.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests) keeps the first subscriber; nothing to do.
    drop(result);
}
