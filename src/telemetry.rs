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
    format!("{level},hyper=warn,h2=warn,rustls=error,tower=warn,kube=info")
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

/// Longest text a log field carries; the rest is cut and counted, so that no log line grows
/// with the request.
pub const MAX_LOG_FIELD: usize = 4096;

/// `text`, cut to [`MAX_LOG_FIELD`] bytes (at a character boundary) with the number of bytes
/// left out.
pub fn capped(text: &str) -> std::borrow::Cow<'_, str> {
    cut(text, MAX_LOG_FIELD)
}

/// `text` cut to at most `max` bytes plus a short note of what was left out.
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}… ({} more bytes)",
        &text[..end],
        text.len() - end
    ))
}

pub use hostgate_core::chain::Chain;

/// A warning that can repeat at the rate of an attacker's requests (a refused connection, a
/// failed accept): logged at most once per `interval` per kind, with the number of repeats left
/// out since the last line. The repeats are counted in `/metrics` by the caller.
#[derive(Debug)]
pub struct RateLimited {
    interval: std::time::Duration,
    last: std::sync::Mutex<std::collections::HashMap<&'static str, (std::time::Instant, u64)>>,
}

impl RateLimited {
    /// At most one line per kind per `interval`.
    pub fn new(interval: std::time::Duration) -> Self {
        RateLimited {
            interval,
            last: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Logs `what` (with `detail`, e.g. the peer) at WARN unless it was logged less than the
    /// interval ago; returns whether it logged.
    pub fn warn(&self, what: &'static str, detail: &str) -> bool {
        let now = std::time::Instant::now();
        let suppressed = {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match last.get_mut(what) {
                Some((at, count)) if now.duration_since(*at) < self.interval => {
                    *count += 1;
                    return false;
                }
                Some((at, count)) => {
                    *at = now;
                    std::mem::take(count)
                }
                None => {
                    last.insert(what, (now, 0));
                    0
                }
            }
        };
        tracing::warn!(
            detail = capped(detail).as_ref(),
            repeats_not_logged = suppressed,
            "{what}"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_counts_what_it_leaves_out() {
        assert_eq!(cut("short", 10), "short");
        let long = "é".repeat(10); // 20 bytes
        assert_eq!(cut(&long, 5), "éé… (16 more bytes)");
    }

    #[test]
    fn repeated_warnings_are_logged_once_per_interval() {
        let limited = RateLimited::new(std::time::Duration::from_secs(3600));
        assert!(limited.warn("refused", "a"));
        assert!(!limited.warn("refused", "b"));
        assert!(limited.warn("other", "c"), "each kind has its own interval");
        let zero = RateLimited::new(std::time::Duration::ZERO);
        assert!(zero.warn("refused", "a"));
        assert!(zero.warn("refused", "b"));
    }
}
