//! Counters and latency histograms, one [`Stats`] per worker, merged into a [`Summary`].

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency tracked exactly (larger values are recorded as this).
pub const MAX_TRACKED: Duration = Duration::from_secs(60);

fn histogram() -> Histogram<u64> {
    // Nanoseconds, 3 significant digits: 0.1% resolution anywhere from 1 µs to 60 s.
    #[allow(clippy::unwrap_used)] // constant, valid bounds
    Histogram::new_with_bounds(1_000, MAX_TRACKED.as_nanos() as u64, 3).unwrap()
}

/// What one worker observed.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of every answered request, in nanoseconds (open loop: from the intended send
    /// time; closed loop: from the actual send time).
    pub latency: Histogram<u64>,
    /// Open loop only: how late each request left compared with its intended time (the
    /// generator's own lag plus waiting for a free connection), in nanoseconds.
    pub send_lag: Histogram<u64>,
    /// Answers received (any status).
    pub answered: u64,
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Answers with another status, by status.
    pub non_2xx: BTreeMap<u16, u64>,
    /// Requests that got no answer, by cause (`connect`, `timeout`, `io`, …).
    pub errors: BTreeMap<String, u64>,
    /// 2xx answers whose body is not the expected AdmissionReview (`--expect-review`).
    pub bad_reviews: u64,
    /// AdmissionReview answers with `allowed: true`.
    pub allowed: u64,
    /// AdmissionReview answers with `allowed: false`.
    pub denied: u64,
    /// Open loop only: send times that came due but could not be sent before the end of the
    /// run (the target rate was not sustained).
    pub unsent: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        Stats {
            latency: histogram(),
            send_lag: histogram(),
            answered: 0,
            ok: 0,
            non_2xx: BTreeMap::new(),
            errors: BTreeMap::new(),
            bad_reviews: 0,
            allowed: 0,
            denied: 0,
            unsent: 0,
        }
    }

    /// Records an answer with `status` that took `latency`.
    pub fn record_answer(&mut self, status: u16, latency: Duration) {
        self.answered += 1;
        self.latency.saturating_record(nanos(latency));
        if (200..300).contains(&status) {
            self.ok += 1;
        } else {
            *self.non_2xx.entry(status).or_default() += 1;
        }
    }

    /// Records how late a request left (open loop).
    pub fn record_send_lag(&mut self, lag: Duration) {
        self.send_lag.saturating_record(nanos(lag));
    }

    /// Records a request that got no answer.
    pub fn record_error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.send_lag.add(&other.send_lag);
        self.answered += other.answered;
        self.ok += other.ok;
        for (k, v) in &other.non_2xx {
            *self.non_2xx.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.bad_reviews += other.bad_reviews;
        self.allowed += other.allowed;
        self.denied += other.denied;
        self.unsent += other.unsent;
    }

    /// Requests that did not end in a good answer: errors, non-2xx and bad reviews.
    pub fn failures(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.non_2xx.values().sum::<u64>() + self.bad_reviews
    }

    /// Summarises over a measurement window of `window`.
    pub fn summary(&self, window: Duration) -> Summary {
        let secs = window.as_secs_f64();
        Summary {
            answered: self.answered,
            ok: self.ok,
            non_2xx: self.non_2xx.values().sum(),
            non_2xx_by_status: self
                .non_2xx
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: self.errors.values().sum(),
            errors_by_kind: self.errors.clone(),
            bad_reviews: self.bad_reviews,
            allowed: self.allowed,
            denied: self.denied,
            unsent: self.unsent,
            rate: if secs > 0.0 {
                self.answered as f64 / secs
            } else {
                0.0
            },
            latency_ms: Percentiles::of(&self.latency),
            send_lag_ms: (!self.send_lag.is_empty()).then(|| Percentiles::of(&self.send_lag)),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Reads the percentiles of a nanosecond histogram (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |ns: u64| ns as f64 / 1e6;
        if h.is_empty() {
            return Percentiles {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1e6,
        }
    }
}

/// The figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Answers received in the measurement window (any status).
    pub answered: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Other answers.
    pub non_2xx: u64,
    /// Other answers by status.
    pub non_2xx_by_status: BTreeMap<String, u64>,
    /// Requests without an answer.
    pub errors: u64,
    /// Requests without an answer, by cause.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// 2xx answers that are not the expected AdmissionReview.
    pub bad_reviews: u64,
    /// Reviews allowed.
    pub allowed: u64,
    /// Reviews denied.
    pub denied: u64,
    /// Open loop: due requests that were never sent.
    pub unsent: u64,
    /// Answers per second over the window.
    pub rate: f64,
    /// Latency percentiles.
    pub latency_ms: Percentiles,
    /// Open loop: send lag percentiles.
    pub send_lag_ms: Option<Percentiles>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn counts_statuses_and_errors_separately() {
        let mut s = Stats::new();
        s.record_answer(200, us(100));
        s.record_answer(204, us(100));
        s.record_answer(400, us(100));
        s.record_answer(503, us(100));
        s.record_answer(503, us(100));
        s.record_error("timeout");
        s.record_error("connect");
        s.record_error("timeout");
        assert_eq!(s.answered, 5);
        assert_eq!(s.ok, 2);
        assert_eq!(s.non_2xx.get(&503), Some(&2));
        assert_eq!(s.errors.get("timeout"), Some(&2));
        assert_eq!(s.failures(), 3 + 3);
        let sum = s.summary(Duration::from_secs(1));
        assert_eq!(sum.non_2xx, 3);
        assert_eq!(sum.errors, 3);
        assert_eq!(sum.non_2xx_by_status.get("400"), Some(&1));
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut s = Stats::new();
        // 1..=1000 µs, once each.
        for i in 1..=1000 {
            s.record_answer(200, us(i));
        }
        let p = Percentiles::of(&s.latency);
        // 3 significant digits: within 0.1%.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        assert!(close(p.p50, 0.500), "{p:?}");
        assert!(close(p.p90, 0.900), "{p:?}");
        assert!(close(p.p99, 0.990), "{p:?}");
        assert!(close(p.p999, 0.999), "{p:?}");
        assert!(close(p.max, 1.000), "{p:?}");
        assert!(close(p.mean, 0.5005), "{p:?}");
    }

    #[test]
    fn huge_latencies_saturate_instead_of_failing() {
        let mut s = Stats::new();
        s.record_answer(200, Duration::from_secs(3600));
        assert_eq!(s.answered, 1);
        let p = Percentiles::of(&s.latency);
        assert!(p.max >= 59_000.0, "{p:?}");
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.record_answer(200, us(100));
        a.allowed += 1;
        b.record_answer(200, us(300));
        b.record_answer(500, us(300));
        b.record_error("io");
        b.record_send_lag(us(5));
        b.denied += 1;
        b.unsent += 4;
        b.bad_reviews += 1;
        a.merge(&b);
        assert_eq!(a.answered, 3);
        assert_eq!(a.ok, 2);
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.send_lag.len(), 1);
        assert_eq!(a.non_2xx.get(&500), Some(&1));
        assert_eq!(a.errors.get("io"), Some(&1));
        assert_eq!((a.allowed, a.denied, a.unsent, a.bad_reviews), (1, 1, 4, 1));
    }

    #[test]
    fn rate_is_answers_over_window() {
        let mut s = Stats::new();
        for _ in 0..500 {
            s.record_answer(200, us(10));
        }
        let sum = s.summary(Duration::from_millis(250));
        assert!((sum.rate - 2000.0).abs() < 1e-9);
        assert!(sum.send_lag_ms.is_none());
        assert_eq!(Stats::new().summary(Duration::ZERO).rate, 0.0);
    }
}
