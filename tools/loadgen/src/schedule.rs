//! The open-loop schedule: request `k` is due at `start + k / rate`, for every such time before
//! `end`. The scheduler thread ([`run_scheduler`]) sleeps until the next due time and hands out
//! everything that is due (catching up at once if it was late), so a late scheduler never
//! silently lowers the offered rate; latency is measured from these intended times.

use std::time::{Duration, Instant};

/// Intended send times of an open-loop run.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    end: Instant,
    nanos_per_request: f64,
    next: u64,
}

impl Schedule {
    /// `rate` requests per second from `start` (inclusive) to `end` (exclusive).
    ///
    /// # Panics
    /// If `rate` is not positive and finite (the command line rejects such rates).
    pub fn new(start: Instant, end: Instant, rate: f64) -> Self {
        assert!(rate.is_finite() && rate > 0.0, "rate must be positive");
        Schedule {
            start,
            end,
            nanos_per_request: 1e9 / rate,
            next: 0,
        }
    }

    /// The intended send time of request `k` (computed from `k`, so errors do not accumulate).
    pub fn intended(&self, k: u64) -> Instant {
        let nanos = (k as f64 * self.nanos_per_request).round();
        self.start + Duration::from_nanos(nanos as u64)
    }

    /// The next send time not yet handed out, or `None` once the schedule is exhausted.
    pub fn peek(&self) -> Option<Instant> {
        let t = self.intended(self.next);
        (t < self.end).then_some(t)
    }

    /// Appends to `out` every send time due at `now` (intended ≤ now), oldest first.
    pub fn take_due(&mut self, now: Instant, out: &mut Vec<Instant>) {
        while let Some(t) = self.peek() {
            if t > now {
                break;
            }
            out.push(t);
            self.next += 1;
        }
    }

    /// How many send times have been handed out.
    pub fn handed_out(&self) -> u64 {
        self.next
    }

    /// How many send times the whole schedule holds.
    pub fn total(&self) -> u64 {
        let span = self.end.saturating_duration_since(self.start).as_nanos() as f64;
        // Smallest k with intended(k) >= end; computed by stepping to be exact under rounding.
        let mut k = (span / self.nanos_per_request).floor() as u64;
        while k > 0 && self.intended(k - 1) >= self.end {
            k -= 1;
        }
        while self.intended(k) < self.end {
            k += 1;
        }
        k
    }
}

/// Runs `schedule` on the current thread: sleeps until each send time and calls `emit` with
/// every time that is due. Stops when the schedule is exhausted or `emit` returns `false`.
/// Meant for a dedicated OS thread, whose sleep is far finer than the async runtime's 1 ms
/// timer wheel.
pub fn run_scheduler(mut schedule: Schedule, mut emit: impl FnMut(Instant) -> bool) {
    let mut due = Vec::with_capacity(64);
    while let Some(next) = schedule.peek() {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
            continue;
        }
        schedule.take_due(now, &mut due);
        for t in due.drain(..) {
            if !emit(t) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn times_are_evenly_spaced_from_start() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, t0 + ms(10), 1000.0);
        assert_eq!(s.intended(0), t0);
        assert_eq!(s.intended(1), t0 + ms(1));
        assert_eq!(s.intended(7), t0 + ms(7));
        assert_eq!(s.total(), 10);
    }

    #[test]
    fn no_drift_over_many_requests() {
        let t0 = Instant::now();
        // 3 per second: 1/3 s is not representable exactly; request 3_000_000 must still be at 1e6 s.
        let s = Schedule::new(t0, t0 + Duration::from_secs(2_000_000), 3.0);
        assert_eq!(s.intended(3_000_000), t0 + Duration::from_secs(1_000_000));
    }

    #[test]
    fn take_due_hands_out_each_time_once_in_order() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, t0 + ms(10), 1000.0);
        let mut out = Vec::new();
        s.take_due(t0, &mut out);
        assert_eq!(out, vec![t0]);
        out.clear();
        // Nothing new is due before the next millisecond.
        s.take_due(t0 + Duration::from_micros(999), &mut out);
        assert!(out.is_empty());
        // A late scheduler catches up with everything that is due, oldest first.
        s.take_due(t0 + Duration::from_micros(4500), &mut out);
        assert_eq!(out, vec![t0 + ms(1), t0 + ms(2), t0 + ms(3), t0 + ms(4)]);
        assert_eq!(s.handed_out(), 5);
        out.clear();
        // Far past the end: only the remaining times before `end`.
        s.take_due(t0 + ms(1000), &mut out);
        assert_eq!(out.len(), 5);
        assert_eq!(out.last().copied(), Some(t0 + ms(9)));
        assert_eq!(s.peek(), None);
        assert_eq!(s.handed_out(), s.total());
    }

    #[test]
    fn total_matches_rate_times_span() {
        let t0 = Instant::now();
        for (rate, secs, want) in [
            (5000.0, 10, 50_000),
            (1000.0, 10, 10_000),
            (3.0, 1, 3),
            (0.5, 10, 5),
        ] {
            let s = Schedule::new(t0, t0 + Duration::from_secs(secs), rate);
            assert_eq!(s.total(), want, "rate {rate} for {secs}s");
        }
        let empty = Schedule::new(t0, t0, 100.0);
        assert_eq!(empty.total(), 0);
        assert_eq!(empty.peek(), None);
    }

    #[test]
    fn scheduler_emits_the_whole_schedule_in_order() {
        // A schedule entirely in the past: no sleeping, everything emitted at once.
        let t0 = Instant::now();
        let s = Schedule::new(t0, t0 + Duration::from_micros(100), 100_000.0);
        let mut seen = Vec::new();
        run_scheduler(s.clone(), |t| {
            seen.push(t);
            true
        });
        assert_eq!(seen.len() as u64, s.total());
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        // The receiver going away stops it.
        let mut n = 0;
        run_scheduler(s, |_| {
            n += 1;
            n < 3
        });
        assert_eq!(n, 3);
    }
}
