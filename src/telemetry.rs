//! Structured logs: `tracing` with an env filter, as text or JSON lines.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the span fields of the review.
    Json,
}

/// The filter used when `RUST_LOG` is unset: hostgate at `level`, noisy dependencies quiet.
pub fn default_filter(level: &str) -> String {
    format!("{level},hyper=warn,h2=warn,rustls=warn,tower=warn,kube=info")
}

/// Installs the global subscriber. `RUST_LOG` overrides `level`. Logs go to stderr, so that
/// stdout stays free for command output.
pub fn init(format: LogFormat, level: &str, color: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests) leaves the first subscriber in place.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(color).with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
    };
}
