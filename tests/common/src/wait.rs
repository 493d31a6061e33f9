//! Bounded polling. The deadlines are generous on purpose: running out of time means the
//! awaited thing did not happen (a bug), not that the machine was slow, and the message says
//! what was awaited. No test measures how long something took.

use std::time::{Duration, Instant};

/// How long a wait lasts before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Pause between two polls.
const POLL: Duration = Duration::from_millis(5);

/// Polls `cond` until it holds; panics naming `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    eventually(what, || cond().then_some(()));
}

/// Polls `probe` until it yields a value and returns it; panics naming `what` after
/// [`DEADLINE`].
pub fn eventually<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    eventually_within(DEADLINE, what, probe)
}

/// [`eventually`] with another deadline.
pub fn eventually_within<T>(deadline: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> T {
    poll(deadline, probe).unwrap_or_else(|| panic!("gave up waiting for {what} after {deadline:?}"))
}

/// Polls `probe` until it yields a value, for at most `deadline`; `None` when time ran out,
/// for callers that must clean up (kill a child) before they fail.
pub fn poll<T>(deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if start.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`] for tests on a tokio runtime: `cond` is awaited, and the pauses yield to
/// the runtime instead of blocking its thread.
#[cfg(feature = "tokio")]
pub async fn eventually_async(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < DEADLINE,
            "gave up waiting for {what} after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value() {
        let mut n = 0;
        let got = eventually("three polls", || {
            n += 1;
            (n == 3).then_some(n * 10)
        });
        assert_eq!(got, 30);
    }

    #[test]
    fn poll_gives_up_with_none() {
        assert_eq!(poll(Duration::from_millis(20), || None::<()>), None);
        assert_eq!(poll(Duration::ZERO, || Some(1)), Some(1));
    }

    #[test]
    #[should_panic(expected = "gave up waiting for something that never happens")]
    fn running_out_of_time_fails_naming_what() {
        eventually_within(
            Duration::from_millis(20),
            "something that never happens",
            || None::<()>,
        );
    }
}
