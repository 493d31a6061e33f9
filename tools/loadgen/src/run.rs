//! The run: connections, workers, the open-loop scheduler thread, and the report.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use rustls::ClientConfig;
use serde::Serialize;

use crate::bodies::{Body, Cycle};
use crate::client::{Conn, Connector, Negotiated, Protocol};
use crate::parse::Rate;
use crate::review::check_answer;
use crate::schedule::{Schedule, run_scheduler};
use crate::stats::{Stats, Summary};
use crate::target::Target;

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The URL.
    pub target: Target,
    /// The resolved (and checked) address.
    pub addr: SocketAddr,
    /// TLS client configuration for `https://`.
    pub tls: Option<Arc<ClientConfig>>,
    /// Name checked against the server certificate (default: the URL's host).
    pub server_name: String,
    /// HTTP/1.1 or HTTP/2.
    pub protocol: Protocol,
    /// Connections kept open.
    pub connections: usize,
    /// HTTP/2: concurrent requests per connection (1 for HTTP/1.1).
    pub streams: usize,
    /// Open-loop rate or `max`.
    pub rate: Rate,
    /// Measurement window.
    pub duration: Duration,
    /// Load sent before the window, not recorded.
    pub warmup: Duration,
    /// Longest wait for one answer.
    pub timeout: Duration,
    /// Request method.
    pub method: Method,
    /// `Content-Type` of requests with a body.
    pub content_type: String,
    /// The bodies, cycled.
    pub bodies: Vec<Body>,
    /// Check that 2xx answers are AdmissionReviews for the request.
    pub expect_review: bool,
    /// Runtime worker threads (for the report).
    pub threads: usize,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Target URL.
    pub url: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// Negotiated TLS version (empty for `http://`).
    pub tls_version: String,
    /// Negotiated cipher suite.
    pub cipher: String,
    /// `closed` (`--rate max`) or `open`.
    pub mode: &'static str,
    /// Open loop: the requested rate.
    pub target_rate: Option<f64>,
    /// Connections.
    pub connections: usize,
    /// Streams per connection.
    pub streams: usize,
    /// Runtime threads.
    pub threads: usize,
    /// Measurement window, seconds.
    pub duration_s: f64,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Distinct bodies.
    pub bodies: usize,
    /// Their mean size in bytes.
    pub body_bytes_mean: usize,
    /// Figures.
    #[serde(flatten)]
    pub summary: Summary,
    /// The first error message seen, for diagnosis.
    pub first_error: Option<String>,
}

impl Report {
    /// Whether every request in the window got a good answer.
    pub fn clean(&self) -> bool {
        self.summary.errors == 0 && self.summary.non_2xx == 0 && self.summary.bad_reviews == 0
    }

    /// Human-readable rendering.
    pub fn to_text(&self) -> String {
        let s = &self.summary;
        let mut o = String::new();
        let tls = if self.tls_version.is_empty() {
            "no TLS".to_owned()
        } else {
            format!("{} {}", self.tls_version, self.cipher)
        };
        let _ = writeln!(o, "target      {} ({}, {tls})", self.url, self.protocol);
        let mode = match self.target_rate {
            Some(r) => format!("open loop at {r}/s (latency from intended send time)"),
            None => "closed loop, --rate max (latency from actual send time)".to_owned(),
        };
        let _ = writeln!(o, "mode        {mode}");
        let _ = writeln!(
            o,
            "load        {} connection(s) x {} stream(s), {} thread(s), {:.1}s (+{:.1}s warm-up), {} bod{} of {} B mean",
            self.connections,
            self.streams,
            self.threads,
            self.duration_s,
            self.warmup_s,
            self.bodies,
            if self.bodies == 1 { "y" } else { "ies" },
            self.body_bytes_mean
        );
        let _ = writeln!(
            o,
            "requests    {} answered: {} 2xx, {} non-2xx{}; {} errors{}; {} unsent",
            s.answered,
            s.ok,
            s.non_2xx,
            breakdown(s.non_2xx_by_status.iter()),
            s.errors,
            breakdown(s.errors_by_kind.iter()),
            s.unsent
        );
        if s.allowed + s.denied + s.bad_reviews > 0 {
            let _ = writeln!(
                o,
                "reviews     {} allowed, {} denied, {} bad",
                s.allowed, s.denied, s.bad_reviews
            );
        }
        let _ = writeln!(o, "rate        {:.1} answers/s", s.rate);
        let l = &s.latency_ms;
        let _ = writeln!(
            o,
            "latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        if let Some(g) = &s.send_lag_ms {
            let _ = writeln!(
                o,
                "send lag ms p50 {:.3}  p99 {:.3}  max {:.3}  (intended -> sent: generator + waiting for a free connection)",
                g.p50, g.p99, g.max
            );
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(o, "first error {e}");
        }
        o
    }
}

fn breakdown<'a, K: std::fmt::Display + 'a>(it: impl Iterator<Item = (K, &'a u64)>) -> String {
    let parts: Vec<String> = it.map(|(k, v)| format!("{k}: {v}")).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// A connection shared by the stream workers of one connection (one worker for HTTP/1.1),
/// reopened after an error.
#[derive(Debug)]
struct Slot {
    connector: Connector,
    conn: tokio::sync::Mutex<Option<(u64, Conn)>>,
    generation: AtomicU64,
}

impl Slot {
    fn new(connector: Connector) -> Self {
        Slot {
            connector,
            conn: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// Opens the connection if there is none; returns what it negotiated.
    async fn open(&self) -> anyhow::Result<Negotiated> {
        let mut g = self.conn.lock().await;
        let (conn, negotiated) = self.connector.connect().await?;
        *g = Some((self.generation.fetch_add(1, Ordering::Relaxed) + 1, conn));
        Ok(negotiated)
    }

    /// A handle to send on: HTTP/2 handles are clones; the HTTP/1.1 one is taken out and
    /// must be given back with [`Slot::checkin`].
    async fn checkout(&self) -> anyhow::Result<(u64, Conn)> {
        let mut g = self.conn.lock().await;
        let (generation, conn) = match g.take() {
            Some(c) => c,
            None => {
                let (conn, _) = self.connector.connect().await?;
                (self.generation.fetch_add(1, Ordering::Relaxed) + 1, conn)
            }
        };
        match conn.try_clone() {
            Some(handle) => {
                *g = Some((generation, conn));
                Ok((generation, handle))
            }
            None => Ok((generation, conn)),
        }
    }

    async fn checkin(&self, generation: u64, conn: Conn) {
        if let Conn::Http1(_) = conn {
            let mut g = self.conn.lock().await;
            if g.is_none() {
                *g = Some((generation, conn));
            }
        }
    }

    /// Drops the connection of `generation` after an error (HTTP/1.1: it was already taken out).
    async fn invalidate(&self, generation: u64) {
        let mut g = self.conn.lock().await;
        if g.as_ref().is_some_and(|(gen_, _)| *gen_ == generation) {
            *g = None;
        }
    }
}

/// Shared, read-only parts of a run.
#[derive(Debug)]
struct Shared {
    target: Target,
    protocol: Protocol,
    method: Method,
    content_type: String,
    cycle: Cycle,
    expect_review: bool,
    timeout: Duration,
    measure_start: Instant,
    end: Instant,
}

impl Shared {
    fn request(&self, body: &Body) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut b = Request::builder().method(self.method.clone());
        b = match self.protocol {
            // HTTP/1.1: origin-form path plus Host; HTTP/2: absolute URI (:scheme, :authority).
            Protocol::Http1 => b
                .uri(self.target.path.as_str())
                .header(HOST, self.target.authority.as_str()),
            Protocol::Http2 => b.uri(self.target.uri.clone()),
        };
        if !body.bytes.is_empty() {
            b = b.header(CONTENT_TYPE, self.content_type.as_str());
        }
        Ok(b.body(Full::new(body.bytes.clone()))?)
    }
}

fn error_kind(e: &hyper::Error) -> &'static str {
    if e.is_parse() || e.is_parse_status() || e.is_user() {
        "protocol"
    } else if e.is_closed() || e.is_incomplete_message() || e.is_canceled() {
        "closed"
    } else {
        "io"
    }
}

fn note(stats: &mut Stats, first: &mut Option<String>, record: bool, kind: &str, msg: String) {
    if record {
        stats.record_error(kind);
    }
    if first.is_none() {
        *first = Some(format!("{kind}: {msg}"));
    }
}

struct WorkerOut {
    stats: Stats,
    first_error: Option<String>,
}

/// `None`: closed loop; `Some`: open loop fed by the scheduler.
async fn worker(
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    tokens: Option<async_channel::Receiver<Instant>>,
) -> WorkerOut {
    let mut stats = Stats::new();
    let mut first_error: Option<String> = None;
    loop {
        let intended = match &tokens {
            None => {
                if Instant::now() >= shared.end {
                    break;
                }
                None
            }
            Some(rx) => match rx.recv().await {
                Ok(t) => {
                    if Instant::now() >= shared.end {
                        // Due but never sent: the rate was not sustained. Drain the rest.
                        if t >= shared.measure_start {
                            stats.unsent += 1;
                        }
                        continue;
                    }
                    Some(t)
                }
                Err(_) => break,
            },
        };
        let (generation, mut conn) = match slot.checkout().await {
            Ok(c) => c,
            Err(e) => {
                let record = intended.unwrap_or_else(Instant::now) >= shared.measure_start;
                note(
                    &mut stats,
                    &mut first_error,
                    record,
                    "connect",
                    e.to_string(),
                );
                // Do not spin on a refused connection; stay bounded by the end of the run.
                let pause = Instant::now() + Duration::from_millis(10);
                tokio::time::sleep_until(pause.min(shared.end).into()).await;
                continue;
            }
        };
        let body = shared.cycle.next_body();
        let req = match shared.request(body) {
            Ok(r) => r,
            Err(e) => {
                note(&mut stats, &mut first_error, true, "request", e.to_string());
                break;
            }
        };
        let sent = Instant::now();
        let exchange = async {
            let resp = conn.send(req).await?;
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, bytes))
        };
        let result = tokio::time::timeout(shared.timeout, exchange).await;
        let done = Instant::now();
        let record = match intended {
            Some(t) => t >= shared.measure_start,
            None => done >= shared.measure_start && done < shared.end,
        };
        match result {
            Ok(Ok((status, bytes))) => {
                slot.checkin(generation, conn).await;
                if record {
                    let start = intended.unwrap_or(sent);
                    stats.record_answer(status, done.duration_since(start));
                    if let Some(t) = intended {
                        stats.record_send_lag(sent.saturating_duration_since(t));
                    }
                    if shared.expect_review && (200..300).contains(&status) {
                        match check_answer(&bytes, body.uid.as_deref()) {
                            Ok(true) => stats.allowed += 1,
                            Ok(false) => stats.denied += 1,
                            Err(e) => {
                                stats.bad_reviews += 1;
                                if first_error.is_none() {
                                    first_error = Some(format!(
                                        "bad review ({e:?}): {}",
                                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                slot.invalidate(generation).await;
                note(
                    &mut stats,
                    &mut first_error,
                    record,
                    error_kind(&e),
                    e.to_string(),
                );
            }
            Err(_) => {
                slot.invalidate(generation).await;
                note(
                    &mut stats,
                    &mut first_error,
                    record,
                    "timeout",
                    format!("no answer within {:?}", shared.timeout),
                );
            }
        }
    }
    WorkerOut { stats, first_error }
}

#[cfg(target_os = "linux")]
fn fine_timer_slack() {
    // The default 50 µs timer slack would make every open-loop send up to 50 µs late.
    let _ = nix::sys::prctl::set_timerslack(1_000);
}

#[cfg(not(target_os = "linux"))]
fn fine_timer_slack() {}

/// Runs the load and returns the report. Must be called inside a Tokio runtime.
pub async fn run(cfg: RunConfig) -> anyhow::Result<Report> {
    anyhow::ensure!(cfg.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(cfg.streams > 0, "--streams must be at least 1");
    anyhow::ensure!(
        cfg.protocol == Protocol::Http2 || cfg.streams == 1,
        "--streams > 1 needs --h2 (HTTP/1.1 sends one request at a time per connection)"
    );
    anyhow::ensure!(!cfg.duration.is_zero(), "--duration must be positive");
    anyhow::ensure!(!cfg.timeout.is_zero(), "--timeout must be positive");

    let connector = Connector::new(cfg.addr, cfg.tls.clone(), &cfg.server_name, cfg.protocol)?;
    // Open every connection (and handshake) before the clock starts.
    let slots: Vec<Arc<Slot>> = (0..cfg.connections)
        .map(|_| Arc::new(Slot::new(connector.clone())))
        .collect();
    let mut opening = tokio::task::JoinSet::new();
    for slot in &slots {
        let slot = Arc::clone(slot);
        opening.spawn(async move { slot.open().await });
    }
    let mut negotiated = Negotiated::default();
    while let Some(r) = opening.join_next().await {
        negotiated =
            r?.map_err(|e| anyhow::anyhow!("cannot connect to {}: {e:#}", cfg.target.uri))?;
    }

    let bodies = cfg.bodies.len();
    let body_bytes_mean = cfg.bodies.iter().map(|b| b.bytes.len()).sum::<usize>() / bodies.max(1);
    let start = Instant::now();
    let measure_start = start + cfg.warmup;
    let end = measure_start + cfg.duration;
    let shared = Arc::new(Shared {
        target: cfg.target.clone(),
        protocol: cfg.protocol,
        method: cfg.method.clone(),
        content_type: cfg.content_type.clone(),
        cycle: Cycle::new(cfg.bodies.clone()),
        expect_review: cfg.expect_review,
        timeout: cfg.timeout,
        measure_start,
        end,
    });

    let (tokens, scheduler) = match cfg.rate {
        Rate::Max => (None, None),
        Rate::PerSecond(rate) => {
            let (tx, rx) = async_channel::unbounded::<Instant>();
            let schedule = Schedule::new(start, end, rate);
            let handle = std::thread::Builder::new()
                .name("loadgen-scheduler".to_owned())
                .spawn(move || {
                    fine_timer_slack();
                    run_scheduler(schedule, |t| tx.send_blocking(t).is_ok());
                })?;
            (Some(rx), Some(handle))
        }
    };

    let mut workers = tokio::task::JoinSet::new();
    for slot in &slots {
        for _ in 0..cfg.streams {
            workers.spawn(worker(
                Arc::clone(&shared),
                Arc::clone(slot),
                tokens.clone(),
            ));
        }
    }
    drop(tokens);
    let mut stats = Stats::new();
    let mut first_error = None;
    while let Some(r) = workers.join_next().await {
        let out = r?;
        stats.merge(&out.stats);
        if first_error.is_none() {
            first_error = out.first_error;
        }
    }
    if let Some(h) = scheduler {
        let _ = h.join();
    }
    drop(slots);

    Ok(Report {
        url: cfg.target.uri.to_string(),
        protocol: cfg.protocol.as_str(),
        tls_version: negotiated.tls_version,
        cipher: negotiated.cipher,
        mode: match cfg.rate {
            Rate::Max => "closed",
            Rate::PerSecond(_) => "open",
        },
        target_rate: match cfg.rate {
            Rate::Max => None,
            Rate::PerSecond(r) => Some(r),
        },
        connections: cfg.connections,
        streams: cfg.streams,
        threads: cfg.threads,
        duration_s: cfg.duration.as_secs_f64(),
        warmup_s: cfg.warmup.as_secs_f64(),
        bodies,
        body_bytes_mean,
        summary: stats.summary(cfg.duration),
        first_error,
    })
}
