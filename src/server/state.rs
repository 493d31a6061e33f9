//! Shared state of the webhook: the policy set in force (swapped atomically), the signing key,
//! readiness and metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;

use super::metrics::Metrics;
use crate::admission::{
    Endpoint, InternalError, MalformedReview, Outcome, ReviewFailure, ReviewOptions, Reviewer,
};
use crate::approval::{SigningIdentity, TrustStore};
use crate::policy::{CompiledPolicy, PolicySet};
use crate::shape::ShapeLimits;
use crate::telemetry::RateLimited;

/// An immutable policy snapshot: what one review sees from start to end.
#[derive(Debug, Default)]
pub struct PolicyState {
    /// The policies.
    pub set: PolicySet,
    /// Labels per namespace, for `namespaceSelector`.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Increments with every successful load.
    pub generation: u64,
}

/// Where policies come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicySource {
    /// Policy files and directories.
    #[default]
    Files,
    /// `HostProcessPolicy` objects in the cluster.
    Cluster,
    /// Both; a file policy wins over a cluster object of the same name.
    Both,
}

impl PolicySource {
    fn files(self) -> bool {
        matches!(self, PolicySource::Files | PolicySource::Both)
    }

    fn cluster(self) -> bool {
        matches!(self, PolicySource::Cluster | PolicySource::Both)
    }
}

/// The last good input of every source; a policy set is built once all required ones are in.
#[derive(Debug, Default)]
struct Sources {
    mode: PolicySource,
    files: Option<Vec<CompiledPolicy>>,
    cluster: Option<BTreeMap<String, CompiledPolicy>>,
    namespaces: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

impl Sources {
    fn complete(&self) -> bool {
        (!self.mode.files() || self.files.is_some())
            && (!self.mode.cluster() || (self.cluster.is_some() && self.namespaces.is_some()))
    }

    /// The set, with cluster objects shadowed by a file policy of the same name left out.
    fn build(&self) -> (PolicySet, Vec<String>) {
        let mut policies: Vec<CompiledPolicy> = self.files.clone().unwrap_or_default();
        let mut shadowed = Vec::new();
        for (name, p) in self.cluster.iter().flatten() {
            if policies.iter().any(|f| &**f.name() == name) {
                shadowed.push(name.clone());
            } else {
                policies.push(p.clone());
            }
        }
        // Names are unique within each source and clashes were removed above.
        let set = PolicySet::new(policies).unwrap_or_default();
        (set, shadowed)
    }
}

/// Why a review could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body is not a well-formed review (400).
    #[error(transparent)]
    Malformed(#[from] MalformedReview),
    /// No policy set has been loaded yet (503).
    #[error("no policy set is loaded yet")]
    NotReady,
    /// hostgate failed to build its answer (500, with a generic message; the detail is logged
    /// with the uid).
    #[error("answering review {uid}")]
    Internal {
        /// The review's uid.
        uid: String,
        /// What failed.
        #[source]
        source: InternalError,
    },
}

impl From<ReviewFailure> for ReviewError {
    fn from(e: ReviewFailure) -> Self {
        match e {
            ReviewFailure::Malformed(m) => ReviewError::Malformed(m),
            ReviewFailure::Internal { uid, source } => ReviewError::Internal { uid, source },
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    policies: ArcSwapOption<PolicyState>,
    sources: Mutex<Sources>,
    signer: Option<SigningIdentity>,
    trust: Option<TrustStore>,
    allow_privileged: bool,
    runtime_class: Option<String>,
    shutting_down: AtomicBool,
    tls_ready: AtomicBool,
    options: ReviewOptions,
    /// Metrics.
    pub metrics: Metrics,
    /// Warnings that can repeat at an attacker's rate, logged at most once per 10 s each.
    pub warnings: RateLimited,
}

impl AppState {
    /// New state with no policies yet.
    pub fn new(
        signer: Option<SigningIdentity>,
        extra_trust: Option<TrustStore>,
        allow_privileged: bool,
    ) -> Self {
        let trust = signer.as_ref().map(|s| {
            let mut store = extra_trust.unwrap_or_default();
            store.add(s.verifying_key());
            store
        });
        AppState {
            policies: ArcSwapOption::empty(),
            sources: Mutex::new(Sources::default()),
            signer,
            trust,
            allow_privileged,
            runtime_class: None,
            shutting_down: AtomicBool::new(false),
            tls_ready: AtomicBool::new(false),
            options: ReviewOptions::default(),
            metrics: Metrics::new(),
            warnings: RateLimited::new(Duration::from_secs(10)),
        }
    }

    /// Names `class` as the RuntimeClass of the HostProcess pods `/mutate` approves that name
    /// none (`--runtime-class`).
    #[must_use]
    pub fn with_runtime_class(mut self, class: Option<String>) -> Self {
        self.runtime_class = class;
        self
    }

    /// Sets how reviews are answered (before the state is shared).
    #[must_use]
    pub fn with_options(mut self, options: ReviewOptions) -> Self {
        self.options = options;
        self
    }

    /// The shape limits of reviewed bodies.
    pub fn shape_limits(&self) -> ShapeLimits {
        self.options.shape
    }

    /// Sets where policies come from (before any is loaded).
    pub fn set_policy_source(&self, mode: PolicySource) {
        self.with_sources(|s| s.mode = mode);
    }

    /// The last good set of file policies.
    pub fn set_file_policies(&self, set: PolicySet) {
        self.with_sources(|s| s.files = Some(set.into_policies()));
    }

    /// The valid cluster policies by name (after the initial list, and on every change).
    pub fn set_cluster_policies(&self, policies: BTreeMap<String, CompiledPolicy>) -> Vec<String> {
        self.with_sources(|s| s.cluster = Some(policies))
    }

    /// Namespace labels (after the initial list, and on every change).
    pub fn set_namespaces(&self, namespaces: BTreeMap<String, BTreeMap<String, String>>) {
        self.with_sources(|s| s.namespaces = Some(namespaces));
    }

    /// Applies a change to the sources and, once every required source is in, installs the set
    /// they make. Returns the cluster policies a file policy shadows.
    fn with_sources(&self, change: impl FnOnce(&mut Sources)) -> Vec<String> {
        // A poisoned lock only means another update panicked midway; the data is still whole.
        let mut sources = self
            .sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut sources);
        if !sources.complete() {
            return Vec::new();
        }
        let (set, shadowed) = sources.build();
        let namespaces = sources.namespaces.clone().unwrap_or_default();
        self.install_policies(set, namespaces);
        shadowed
    }

    /// Installs a new policy set; returns its generation.
    pub fn install_policies(
        &self,
        set: PolicySet,
        namespaces: BTreeMap<String, BTreeMap<String, String>>,
    ) -> u64 {
        let generation = self
            .policies
            .load()
            .as_ref()
            .map_or(1, |p| p.generation + 1);
        let count = set.len();
        self.policies.store(Some(Arc::new(PolicyState {
            set,
            namespaces,
            generation,
        })));
        self.metrics
            .policy_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.metrics
            .policies
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        self.metrics.policy_last_load.set(unix_now_f64());
        generation
    }

    /// The policy snapshot in force.
    pub fn policies(&self) -> Option<Arc<PolicyState>> {
        self.policies.load_full()
    }

    /// Marks the TLS configuration as loaded.
    pub fn set_tls_ready(&self) {
        self.tls_ready.store(true, Ordering::Release);
    }

    /// Readiness flips to false first on shutdown.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Ready: policies loaded, TLS configured, not shutting down.
    pub fn is_ready(&self) -> bool {
        self.policies.load().is_some()
            && self.tls_ready.load(Ordering::Acquire)
            && !self.is_shutting_down()
    }

    /// Reviews one body, encodes the answer and records metrics (a review whose answer cannot
    /// be encoded counts as an error, not as its verdict).
    pub fn review(
        &self,
        endpoint: Endpoint,
        body: &[u8],
    ) -> Result<(Outcome, Vec<u8>), ReviewError> {
        let start = Instant::now();
        let Some(policies) = self.policies() else {
            self.metrics
                .record_failure(endpoint, "unavailable", start.elapsed());
            return Err(ReviewError::NotReady);
        };
        let reviewer = Reviewer {
            policies: &policies.set,
            namespaces: &policies.namespaces,
            signer: self.signer.as_ref(),
            trust: self.trust.as_ref(),
            allow_privileged: self.allow_privileged,
            now: unix_now(),
            runtime_class: self.runtime_class.as_deref(),
            options: self.options,
        };
        let answered =
            reviewer
                .review(endpoint, body)
                .and_then(|outcome| match outcome.to_json() {
                    Ok(json) => Ok((outcome, json)),
                    Err(source) => Err(ReviewFailure::Internal {
                        uid: outcome.uid,
                        source,
                    }),
                });
        match answered {
            Ok((outcome, json)) => {
                self.metrics.record(endpoint, &outcome, start.elapsed());
                Ok((outcome, json))
            }
            Err(e) => {
                let decision = match e {
                    ReviewFailure::Malformed(_) => "malformed",
                    ReviewFailure::Internal { .. } => "error",
                };
                self.metrics
                    .record_failure(endpoint, decision, start.elapsed());
                Err(e.into())
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}
