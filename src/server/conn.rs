//! One accepted connection, from the TLS handshake to its close, with a deadline for every phase.
//!
//! | phase | deadline | on expiry |
//! |---|---|---|
//! | TLS handshake | `handshake` | dropped |
//! | handshake done, first request not begun (no bytes, only the HTTP/2 preface, half a header) | `first_request` | closed |
//! | no request in flight (HTTP/1.1 keep-alive, HTTP/2 with no open stream) | `idle` | closed: HTTP/2 with GOAWAY |
//! | HTTP/2 peer that stops answering PINGs | `h2_keepalive_interval` + `h2_keepalive_timeout` | closed by hyper |
//! | any connection | `max_age` | asked to close (GOAWAY, or `Connection: close` on the next HTTP/1.1 answer) |
//! | asked to close, still open | `close_grace` with a request in flight, else `drain_idle` | dropped |
//!
//! A request in flight is bounded by the router's request timeout, so a connection is never
//! held open by the server's own work for longer than that.
//!
//! Draining ([`Drain`]): from the shutdown signal on, every HTTP/1.1 answer carries
//! `Connection: close`, so clients stop reusing their connections instead of finding them closed
//! under a request. Once the listeners close, HTTP/2 connections get GOAWAY at once (clients
//! retry the streams it did not take elsewhere); an HTTP/1.1 connection, where closing can
//! race a request the client is sending, is closed once it has been silent for `drain_idle`
//! (its next answer closes it anyway).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt as _;

/// The deadlines of one connection's phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time allowed for the TLS handshake.
    pub handshake: Duration,
    /// After the handshake, time allowed until the first request has begun.
    pub first_request: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle: Duration,
    /// How often an HTTP/2 connection is pinged.
    pub h2_keepalive_interval: Duration,
    /// How long an HTTP/2 PING may go unanswered before the connection is closed.
    pub h2_keepalive_timeout: Duration,
    /// Age at which a connection is asked to close, whatever it does.
    pub max_age: Duration,
    /// Time a connection asked to close gets to finish before it is dropped.
    pub close_grace: Duration,
    /// Once the server drains, time an HTTP/1.1 connection may stay silent before it is closed.
    pub drain_idle: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handshake: Duration::from_secs(10),
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            h2_keepalive_interval: Duration::from_secs(10),
            h2_keepalive_timeout: Duration::from_secs(20),
            max_age: Duration::from_secs(600),
            close_grace: Duration::from_secs(15),
            drain_idle: Duration::from_secs(1),
        }
    }
}

/// What a connection's service and its watchdog share.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Requests in flight.
    active: AtomicUsize,
    /// Requests begun so far.
    begun: AtomicU64,
    /// When the last request ended, in milliseconds after `opened`.
    last_end_ms: AtomicU64,
    /// The connection has been asked to close: HTTP/1.1 answers say `Connection: close`.
    closing: AtomicBool,
    /// A request came over HTTP/2.
    http2: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            active: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            http2: AtomicBool::new(false),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// When the connection is next due to be closed for silence (`None` while a request is in
    /// flight: the request timeout bounds that).
    fn silence_deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.begun.load(Ordering::Acquire) == 0 {
            return Some(self.opened + limits.first_request);
        }
        Some(self.last_end() + limits.idle)
    }

    fn last_end(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire))
    }

    /// While draining: when a silent HTTP/1.1 connection is closed.
    fn drain_deadline(&self, limits: &ConnectionLimits, since: Instant) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.last_end().max(since) + limits.drain_idle)
    }
}

/// Where the server is in its shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Drain {
    /// Serving.
    Serving,
    /// Shutdown requested, listeners still open: HTTP/1.1 answers say `Connection: close`.
    Announced,
    /// Listeners closed: every connection is asked to close.
    Closing,
}

/// A request in flight; its drop ends it.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_end_ms.fetch_max(ms, Ordering::AcqRel);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router as one connection's hyper service: counts its requests for the watchdog and
/// says `Connection: close` on HTTP/1.1 answers once the connection or the server is closing.
#[derive(Clone)]
struct Tracked {
    router: Router,
    activity: Arc<Activity>,
    draining: watch::Receiver<Drain>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let http1 = req.version() <= Version::HTTP_11;
        if !http1 {
            self.activity.http2.store(true, Ordering::Release);
        }
        let router = self.router.clone();
        let activity = Arc::clone(&self.activity);
        let draining = self.draining.clone();
        Box::pin(async move {
            let mut response = router.oneshot(req.map(Body::new)).await?;
            let draining = *draining.borrow() != Drain::Serving;
            if http1 && (draining || activity.closing.load(Ordering::Acquire)) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(in_flight);
            Ok(response)
        })
    }
}

/// Why a connection ended, for the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The peer or hyper closed it.
    Closed,
    /// Closed for silence (before the first request, or between requests).
    Silent,
    /// Closed at its maximum age.
    Aged,
    /// Closed because the server drains.
    Drained,
    /// Asked to close, did not within the grace period, and was dropped.
    Dropped,
}

/// The HTTP side of the server, shared by every connection of one port.
#[derive(Clone)]
pub struct HttpServer {
    builder: Arc<auto::Builder<hyper_util::rt::TokioExecutor>>,
    router: Router,
    limits: ConnectionLimits,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// HTTP/1.1 and HTTP/2 over `router`, with `header_read_timeout` for HTTP/1.1 headers.
    pub fn new(router: Router, limits: ConnectionLimits, header_read_timeout: Duration) -> Self {
        let mut builder = auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(Some(header_read_timeout));
        builder
            .http2()
            .timer(hyper_util::rt::TokioTimer::new())
            .max_concurrent_streams(Some(256))
            .keep_alive_interval(Some(limits.h2_keepalive_interval))
            .keep_alive_timeout(limits.h2_keepalive_timeout);
        HttpServer {
            builder: Arc::new(builder),
            router,
            limits,
        }
    }

    /// The deadlines.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Serves one connection (after its handshake) until it ends; every phase has a deadline.
    /// `draining` follows the server's shutdown.
    pub async fn serve<I>(&self, io: I, mut draining: watch::Receiver<Drain>) -> Ended
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let service = Tracked {
            router: self.router.clone(),
            activity: Arc::clone(&activity),
            draining: draining.clone(),
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let limits = self.limits;
        let aged = activity.opened + limits.max_age;
        // Set once the connection has been asked to close, with the reason.
        let mut closing: Option<(Instant, Ended)> = None;
        // Set once the listeners have closed.
        let mut drain_since: Option<Instant> = None;
        // An HTTP/1.1 connection past its age: its next answer closes it.
        let mut aged_http1 = false;
        loop {
            let wake = match (closing, drain_since) {
                // Nothing in flight: only the close itself (GOAWAY) is left to do.
                (Some((since, _)), _) if activity.active.load(Ordering::Acquire) == 0 => {
                    since + limits.drain_idle.min(limits.close_grace)
                }
                (Some((since, _)), _) => since + limits.close_grace,
                (None, Some(since)) => activity
                    .drain_deadline(&limits, since)
                    .unwrap_or_else(|| Instant::now() + limits.drain_idle),
                (None, None) => {
                    let silence = activity
                        .silence_deadline(&limits)
                        .unwrap_or_else(|| Instant::now() + limits.idle);
                    if aged_http1 {
                        silence
                    } else {
                        silence.min(aged)
                    }
                }
            };
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return closing.map_or(Ended::Closed, |(_, why)| why);
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if let Some((since, _)) = closing {
                        let active = activity.active.load(Ordering::Acquire) > 0;
                        let grace = if active { limits.close_grace } else { limits.drain_idle.min(limits.close_grace) };
                        if now >= since + grace {
                            return Ended::Dropped;
                        }
                        continue;
                    }
                    let silent = |deadline: Option<Instant>| deadline.is_some_and(|d| now >= d);
                    let why = if let Some(since) = drain_since {
                        if !silent(activity.drain_deadline(&limits, since)) {
                            continue;
                        }
                        Ended::Drained
                    } else if silent(activity.silence_deadline(&limits)) {
                        Ended::Silent
                    } else if now >= aged && !aged_http1 {
                        let begun = activity.begun.load(Ordering::Acquire) > 0;
                        if begun && !activity.http2.load(Ordering::Acquire) {
                            // Closing an idle HTTP/1.1 connection races the client's next
                            // request: its next answer says Connection: close instead.
                            activity.closing.store(true, Ordering::Release);
                            aged_http1 = true;
                            continue;
                        }
                        Ended::Aged
                    } else {
                        continue;
                    };
                    activity.closing.store(true, Ordering::Release);
                    conn.as_mut().graceful_shutdown();
                    closing = Some((now, why));
                }
                changed = draining.changed(), if closing.is_none() && drain_since.is_none() => {
                    if changed.is_err() || *draining.borrow() == Drain::Closing {
                        activity.closing.store(true, Ordering::Release);
                        drain_since = Some(Instant::now());
                        if activity.http2.load(Ordering::Acquire) {
                            conn.as_mut().graceful_shutdown();
                            closing = Some((Instant::now(), Ended::Drained));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_deadline_follows_the_phase() {
        let limits = ConnectionLimits {
            first_request: Duration::from_secs(3),
            idle: Duration::from_secs(7),
            ..ConnectionLimits::default()
        };
        let a = Arc::new(Activity::new());
        assert_eq!(
            a.silence_deadline(&limits),
            Some(a.opened + Duration::from_secs(3))
        );
        let in_flight = a.begin();
        assert_eq!(a.silence_deadline(&limits), None, "a request is in flight");
        drop(in_flight);
        let deadline = a.silence_deadline(&limits).expect("idle again");
        assert!(
            deadline >= a.opened + Duration::from_secs(7),
            "{deadline:?}"
        );
    }
}
