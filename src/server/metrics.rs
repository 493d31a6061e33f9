//! Every metric the webhook exports, in one place (Prometheus text format on `GET /metrics`).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::admission::{Endpoint, Outcome};

/// Labels of `hostgate_admission_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `validate` or `mutate`.
    pub endpoint: &'static str,
    /// `CREATE`, `UPDATE`, …, or `unknown` for unreadable requests.
    pub operation: &'static str,
    /// Object kind, `other` for kinds hostgate does not judge.
    pub kind: &'static str,
    /// `allowed`, `warned`, `denied`, `skipped`, `malformed` or `unavailable`.
    pub decision: &'static str,
}

/// Labels of `hostgate_admission_findings_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    /// Rule id.
    pub rule: &'static str,
    /// `deny`, `warn` or `audit`.
    pub action: &'static str,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `validate` or `mutate`.
    pub endpoint: &'static str,
}

/// Labels of the connection counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: &'static str,
}

fn new_histogram() -> Histogram {
    // 25 µs … ~1.6 s.
    Histogram::new(exponential_buckets(0.000_025, 2.0, 17))
}

/// The webhook's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    findings: Family<FindingLabels, Counter>,
    latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    approvals: Counter,
    /// Generation of the policy set in force (increments on every successful reload).
    pub policy_generation: Gauge,
    /// Number of policies in force.
    pub policies: Gauge,
    /// Failed policy reloads (the last good set stays in force).
    pub policy_reload_errors: Counter,
    /// Unix time of the last successful policy load.
    pub policy_last_load: Gauge<f64, AtomicU64>,
    /// Expiry (Unix time) of the serving certificate.
    pub certificate_expiry: Gauge<f64, AtomicU64>,
    /// Failed certificate reloads (the last good certificate stays in use).
    pub certificate_reload_errors: Counter,
    /// Successful certificate reloads.
    pub certificate_reloads: Counter,
    /// Errors of the cluster watches (they retry with back-off).
    pub watch_errors: Counter,
    connections_refused: Family<ReasonLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,
    connections_closed: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hostgate");
        let requests = Family::<RequestLabels, Counter>::default();
        let findings = Family::<FindingLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            new_histogram,
        );
        let approvals = Counter::default();
        let policy_generation = Gauge::default();
        let policies = Gauge::default();
        let policy_reload_errors = Counter::default();
        let policy_last_load = Gauge::<f64, AtomicU64>::default();
        let certificate_expiry = Gauge::<f64, AtomicU64>::default();
        let certificate_reload_errors = Counter::default();
        let certificate_reloads = Counter::default();
        let watch_errors = Counter::default();
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections refused: over the connection cap of the port (tls or health), or a failed accept (accept_error)",
            connections_refused.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed (error) or did not finish in time (timeout)",
            handshake_failures.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections closed after their handshake, by why: closed (by the peer or the protocol), silent (no request within the deadline), aged (maximum age), drained (shutdown), dropped (did not close within the grace period)",
            connections_closed.clone(),
        );
        registry.register(
            "admission_requests",
            "Admission reviews by endpoint, operation, kind and decision",
            requests.clone(),
        );
        registry.register(
            "admission_findings",
            "Findings in admission reviews by rule id and action",
            findings.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review, from request to response",
            latency.clone(),
        );
        registry.register(
            "approvals_signed",
            "HostProcess pod approvals signed by /mutate",
            approvals.clone(),
        );
        registry.register(
            "policy_generation",
            "Generation of the policy set in force",
            policy_generation.clone(),
        );
        registry.register("policies", "Policies in force", policies.clone());
        registry.register(
            "policy_reload_errors",
            "Policy reloads that failed; the last good set stays in force",
            policy_reload_errors.clone(),
        );
        registry.register(
            "policy_last_load_timestamp_seconds",
            "Unix time of the last successful policy load",
            policy_last_load.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Expiry of the serving certificate (Unix time)",
            certificate_expiry.clone(),
        );
        registry.register(
            "tls_reload_errors",
            "Certificate reloads that failed; the last good certificate stays in use",
            certificate_reload_errors.clone(),
        );
        registry.register(
            "tls_reloads",
            "Successful certificate reloads",
            certificate_reloads.clone(),
        );
        registry.register(
            "watch_errors",
            "Errors of the HostProcessPolicy and Namespace watches; they retry with back-off",
            watch_errors.clone(),
        );
        Metrics {
            watch_errors,
            connections_refused,
            handshake_failures,
            connections_closed,
            registry,
            requests,
            findings,
            latency,
            approvals,
            policy_generation,
            policies,
            policy_reload_errors,
            policy_last_load,
            certificate_expiry,
            certificate_reload_errors,
            certificate_reloads,
        }
    }

    /// Records a reviewed request.
    pub fn record(&self, endpoint: Endpoint, outcome: &Outcome, elapsed: Duration) {
        let kind = crate::object::Kind::from_name(&outcome.kind).map_or("other", |k| k.name());
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.as_str(),
                operation: outcome.operation,
                kind,
                decision: outcome.verdict.as_str(),
            })
            .inc();
        for (rule, action) in &outcome.findings {
            self.findings
                .get_or_create(&FindingLabels { rule, action })
                .inc();
        }
        if outcome.signed {
            self.approvals.inc();
        }
        self.observe(endpoint, elapsed);
    }

    /// Records a request that could not be reviewed (`malformed` or `unavailable`).
    pub fn record_failure(&self, endpoint: Endpoint, decision: &'static str, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.as_str(),
                operation: "unknown",
                kind: "unknown",
                decision,
            })
            .inc();
        self.observe(endpoint, elapsed);
    }

    fn observe(&self, endpoint: Endpoint, elapsed: Duration) {
        self.latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a refused connection.
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a failed TLS handshake.
    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a closed connection.
    pub fn connection_closed(&self, ended: super::conn::Ended) {
        use super::conn::Ended;
        let reason = match ended {
            Ended::Closed => "closed",
            Ended::Silent => "silent",
            Ended::Aged => "aged",
            Ended::Drained => "drained",
            Ended::Dropped => "dropped",
        };
        self.connections_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
