//! Restart policy and crash-loop back-off (pure).

use std::time::Duration;

/// The kubelet's initial back-off.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
/// The kubelet's maximum back-off (`MaxContainerBackOff`).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestartPolicy {
    /// Restart whatever the exit code (the default).
    #[default]
    Always,
    /// Restart after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Parses the field; `None` is the default, [`RestartPolicy::Always`].
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("Always") => Ok(Self::Always),
            Some("OnFailure") => Ok(Self::OnFailure),
            Some("Never") => Ok(Self::Never),
            Some(other) => Err(format!(
                "spec.restartPolicy: Unsupported value: {other:?}: supported values: \"Always\", \"OnFailure\", \"Never\""
            )),
        }
    }

    /// Whether a regular container that exited with `exit_code` is restarted.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }

    /// Whether an init container that exited with `exit_code` is run again: the kubelet
    /// retries failed init containers unless the policy is `Never`.
    pub fn restarts_init(self, exit_code: i32) -> bool {
        exit_code != 0 && self != Self::Never
    }

    /// The field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::OnFailure => "OnFailure",
            Self::Never => "Never",
        }
    }
}

/// Crash-loop back-off of one container, like the kubelet's: the delay before the n-th
/// restart is `base * 2^(n-1)`, capped at `max`; it starts over at `base` once the container
/// has run for `2 * max` without failing (the kubelet forgets a back-off entry untouched for
/// twice the maximum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A back-off starting at `base`, capped at `max` (at least `base`).
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            next: base,
        }
    }

    /// The delay before the next restart of a container that ran for `ran_for`, and advances.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.max.saturating_mul(2) {
            self.next = self.base;
        }
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(RestartPolicy::parse(None), Ok(RestartPolicy::Always));
        assert_eq!(
            RestartPolicy::parse(Some("OnFailure")),
            Ok(RestartPolicy::OnFailure)
        );
        assert_eq!(
            RestartPolicy::parse(Some("Never")),
            Ok(RestartPolicy::Never)
        );
        assert!(
            RestartPolicy::parse(Some("always"))
                .expect_err("case-sensitive")
                .contains("Unsupported value")
        );
        let table = [
            (RestartPolicy::Always, 0, true, false),
            (RestartPolicy::Always, 1, true, true),
            (RestartPolicy::OnFailure, 0, false, false),
            (RestartPolicy::OnFailure, 137, true, true),
            (RestartPolicy::Never, 0, false, false),
            (RestartPolicy::Never, 1, false, false),
        ];
        for (p, code, regular, init) in table {
            assert_eq!(p.restarts(code), regular, "{p:?} {code}");
            assert_eq!(p.restarts_init(code), init, "{p:?} {code} init");
        }
    }

    #[test]
    fn kubelet_schedule() {
        let mut b = Backoff::new(DEFAULT_BACKOFF, DEFAULT_BACKOFF_MAX);
        let quick = Duration::from_secs(1);
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay(quick).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
        // A container that ran for 10 minutes starts over.
        assert_eq!(b.next_delay(Duration::from_secs(600)).as_secs(), 10);
        assert_eq!(b.next_delay(Duration::from_secs(599)).as_secs(), 20);
    }

    #[test]
    fn small_and_odd_bases() {
        let mut b = Backoff::new(Duration::from_millis(5), Duration::from_millis(12));
        let ms: Vec<u128> = (0..4)
            .map(|_| b.next_delay(Duration::ZERO).as_millis())
            .collect();
        assert_eq!(ms, [5, 10, 12, 12]);
        // max below base: max is raised to base.
        let mut b = Backoff::new(Duration::from_secs(3), Duration::from_secs(1));
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_secs(3));
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_secs(3));
        // Zero base: restarts immediately, forever.
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.next_delay(Duration::ZERO), Duration::ZERO);
        // No overflow with huge values.
        let mut b = Backoff::new(Duration::MAX / 2, Duration::MAX);
        b.next_delay(Duration::ZERO);
        assert!(b.next_delay(Duration::ZERO) > Duration::MAX / 2);
        b.next_delay(Duration::MAX);
    }
}
