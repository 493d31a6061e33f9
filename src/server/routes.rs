//! HTTP routes: thin handlers over [`AppState::review`].
//!
//! | route | answer |
//! |---|---|
//! | `POST /validate`, `POST /mutate` | 200 AdmissionReview; 400 malformed review; 413 body too large (at once when its `Content-Length` says so); 415 not JSON; 500 internal error; 503 no policies yet; 408 not answered within the request timeout (waiting for the concurrency limit or for the review's share of the memory budget counts) |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once policies and TLS are loaded, 503 before and during shutdown |
//! | `GET /metrics` | Prometheus text |
//!
//! The probes and `/metrics` are served outside the reviews' concurrency limit, here and on the
//! health port ([`health_router`]).
//!
//! Every review holds a share of the review memory budget for as long as it runs, sized from its
//! `Content-Length` before the body is read ([`crate::shape::review_peak_bytes`]): reviews in
//! flight never need more memory than the budget, whatever their shape.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Semaphore, SemaphorePermit};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument as _;

use super::state::{AppState, ReviewError};
use crate::admission::{Endpoint, Verdict};
use crate::shape::{ShapeLimits, review_peak_bytes};
use crate::telemetry::{capped, cut};

/// Longest error message a 4xx answer carries (serde's messages quote the offending value).
const MAX_ERROR_BYTES: usize = 4096;

/// Longest name-like field (uid, kind, namespace, name, policy) in a review's log lines: the
/// longest Kubernetes name is 253 bytes.
const MAX_NAME_FIELD: usize = 256;

fn capped_field(text: &str) -> std::borrow::Cow<'_, str> {
    cut(text, MAX_NAME_FIELD)
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time to read a request and answer it.
    pub request_timeout: Duration,
    /// Requests handled at once; more wait.
    pub max_concurrent_requests: usize,
    /// Memory the reviews in flight may take together; a review waits (within the request
    /// timeout) until its share is free.
    pub review_memory_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 3 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 1024,
            review_memory_budget: 64 * 1024 * 1024,
        }
    }
}

/// The TLS port's router: the reviews, with their limits, and the probes.
pub fn router(state: Arc<AppState>, limits: Limits) -> Router {
    let gate = Arc::new(ReviewGate::new(&limits, state.shape_limits()));
    let validate = {
        let gate = Arc::clone(&gate);
        move |State(state): State<Arc<AppState>>, request: Request| async move {
            review(&state, Endpoint::Validate, request, &gate).await
        }
    };
    let mutate = move |State(state): State<Arc<AppState>>, request: Request| async move {
        review(&state, Endpoint::Mutate, request, &gate).await
    };
    let reviews = Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests,
        ));
    reviews
        .merge(probes())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}

/// The health port's router: `/healthz`, `/readyz` and `/metrics` only.
pub fn health_router(state: Arc<AppState>, limits: Limits) -> Router {
    probes()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}

fn probes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// What a review must get before its body is read: a body under the limit, and its share of the
/// review memory budget.
#[derive(Debug)]
struct ReviewGate {
    max_body: usize,
    shape: ShapeLimits,
    /// One permit per KiB of the budget.
    memory: Semaphore,
    budget_kib: u32,
}

impl ReviewGate {
    fn new(limits: &Limits, shape: ShapeLimits) -> Self {
        let budget_kib = u32::try_from(limits.review_memory_budget / 1024)
            .unwrap_or(u32::MAX)
            .max(1);
        ReviewGate {
            max_body: limits.max_body_bytes,
            shape,
            memory: Semaphore::new(budget_kib as usize),
            budget_kib,
        }
    }

    /// Waits for the share of a `body_len`-byte review (the whole budget at most, so that one
    /// review larger than the budget runs alone rather than never).
    async fn reserve(&self, body_len: usize) -> Option<SemaphorePermit<'_>> {
        let kib = review_peak_bytes(body_len, self.shape).div_ceil(1024);
        let kib = u32::try_from(kib).unwrap_or(u32::MAX).min(self.budget_kib);
        self.memory.acquire_many(kib).await.ok()
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Whether a body read failed because the body is over the limit.
fn too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

async fn review(
    state: &AppState,
    endpoint: Endpoint,
    request: Request,
    gate: &ReviewGate,
) -> Response {
    let span = tracing::info_span!(
        "review",
        endpoint = endpoint.as_str(),
        uid = tracing::field::Empty,
        kind = tracing::field::Empty,
        namespace = tracing::field::Empty,
        name = tracing::field::Empty,
        operation = tracing::field::Empty,
        decision = tracing::field::Empty,
        policy = tracing::field::Empty,
    );
    async move {
        let (parts, body) = request.into_parts();
        if !is_json(&parts.headers) {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            );
        }
        let max = gate.max_body;
        let announced = content_length(&parts.headers).unwrap_or(max).min(max);
        // Held until the answer is encoded: the review's share of the memory budget.
        // A review waits here for its share; the request timeout (408) bounds the wait. The
        // budget's semaphore is never closed, so `None` would be a bug, answered 503.
        let Some(_memory) = gate.reserve(announced).await else {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "hostgate cannot take reviews: its review memory budget is closed",
            );
        };
        let body = match axum::body::to_bytes(Body::new(body), max).await {
            Ok(b) => b,
            Err(e) if too_large(&e) => {
                return json_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading the request body failed");
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                );
            }
        };
        match state.review(endpoint, &body) {
            Ok((outcome, json)) => {
                // The request chooses these strings: each is cut, so the line stays bounded.
                let span = tracing::Span::current();
                span.record("uid", capped_field(&outcome.uid).as_ref());
                span.record("kind", capped_field(&outcome.kind).as_ref());
                span.record("namespace", capped_field(&outcome.namespace).as_ref());
                span.record("name", capped_field(&outcome.name).as_ref());
                span.record("operation", outcome.operation);
                span.record("decision", outcome.verdict.as_str());
                if let Some(p) = &outcome.policy {
                    span.record("policy", capped_field(p).as_ref());
                }
                match outcome.verdict {
                    Verdict::Denied | Verdict::Warned => {
                        let (deny, warn, audit) = outcome.counts();
                        tracing::info!(denials = deny, warnings = warn, audits = audit, "review");
                        tracing::debug!(
                            message = capped(&outcome.response.result.message).as_ref(),
                            "review findings"
                        );
                    }
                    _ => tracing::debug!(mutated = outcome.mutated, "review"),
                }
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    json,
                )
                    .into_response()
            }
            Err(ReviewError::Malformed(e)) => {
                let text = e.to_string();
                tracing::info!(error = capped(&text).as_ref(), "malformed review");
                json_error(StatusCode::BAD_REQUEST, &cut(&text, MAX_ERROR_BYTES))
            }
            Err(ReviewError::NotReady) => json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "hostgate has not loaded a policy set yet",
            ),
            Err(ReviewError::Internal { uid, source }) => internal(&uid, &source),
        }
    }
    .instrument(span)
    .await
}

/// 500 with a generic message; the detail goes to the log with the review's uid.
fn internal(uid: &str, error: &dyn std::error::Error) -> Response {
    tracing::error!(uid = capped_field(uid).as_ref(), error = %crate::telemetry::Chain(error), "internal error answering a review");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "hostgate could not answer this review; the details are in its log",
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ok").into_response()
    } else if state.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "policies or TLS not loaded yet",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
