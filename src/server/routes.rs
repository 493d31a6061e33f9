//! HTTP routes: thin handlers over [`AppState::review`].
//!
//! | route | answer |
//! |---|---|
//! | `POST /validate`, `POST /mutate` | 200 AdmissionReview; 400 malformed review; 413 body too large; 415 not JSON; 503 no policies yet |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once policies and TLS are loaded, 503 before and during shutdown |
//! | `GET /metrics` | Prometheus text |

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument as _;

use super::state::{AppState, ReviewError};
use crate::admission::{Endpoint, Verdict};

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time to read a request and answer it.
    pub request_timeout: Duration,
    /// Requests handled at once; more wait.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 3 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 1024,
        }
    }
}

/// The router with every route and limit.
pub fn router(state: Arc<AppState>, limits: Limits) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}

async fn validate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    review(&state, Endpoint::Validate, &headers, &body).await
}

async fn mutate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    review(&state, Endpoint::Mutate, &headers, &body).await
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

async fn review(
    state: &AppState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
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
        if !is_json(headers) {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            );
        }
        match state.review(endpoint, body) {
            Ok(outcome) => {
                let span = tracing::Span::current();
                span.record("uid", outcome.uid.as_str());
                span.record("kind", outcome.kind.as_str());
                span.record("namespace", outcome.namespace.as_str());
                span.record("name", outcome.name.as_str());
                span.record("operation", outcome.operation);
                span.record("decision", outcome.verdict.as_str());
                if let Some(p) = &outcome.policy {
                    span.record("policy", p.as_str());
                }
                match outcome.verdict {
                    Verdict::Denied | Verdict::Warned => {
                        tracing::info!(message = outcome.response.result.message.as_str(), "review")
                    }
                    _ => tracing::debug!(mutated = outcome.mutated, "review"),
                }
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    outcome.to_json(),
                )
                    .into_response()
            }
            Err(ReviewError::Malformed(e)) => {
                tracing::info!(error = %e, "malformed review");
                json_error(StatusCode::BAD_REQUEST, &e.to_string())
            }
            Err(ReviewError::NotReady) => json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "hostgate has not loaded a policy set yet",
            ),
        }
    }
    .instrument(span)
    .await
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
