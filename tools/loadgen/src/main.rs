//! `hostgate-loadgen`: see the crate documentation (`src/lib.rs`) and `docs/benchmarks.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hostgate_loadgen::bodies;
use hostgate_loadgen::client::{Protocol, tls_config};
use hostgate_loadgen::parse::{Rate, parse_duration, parse_rate};
use hostgate_loadgen::run::{RunConfig, run};
use hostgate_loadgen::target;

/// Bounded HTTPS load generator for the hostgate benchmark (loopback only).
///
/// POSTs request bodies to URL over keep-alive connections and reports answers, errors,
/// achieved rate and latency percentiles. `--rate max` is a closed loop (saturation);
/// `--rate N` is an open loop at N requests/s whose latencies are measured from each request's
/// intended send time, so a stalled server cannot hide its stall (no coordinated omission).
///
/// Exit status: 0 when every request in the window got a good answer, 2 when some failed
/// (errors, non-2xx, or bad reviews with --expect-review), 1 on a setup error.
#[derive(Debug, Parser)]
#[command(name = "hostgate-loadgen", version)]
struct Args {
    /// Target URL, e.g. https://127.0.0.1:8443/validate.
    url: String,
    /// Keep-alive connections.
    #[arg(short = 'c', long, default_value_t = 16)]
    connections: usize,
    /// `max` (closed loop) or requests per second in total (open loop), e.g. 5000 or 5k.
    #[arg(short = 'r', long, default_value = "max", value_parser = parse_rate)]
    rate: Rate,
    /// Measurement window (e.g. 10s, 500ms).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load sent before the window and not recorded.
    #[arg(short = 'w', long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Longest wait for one answer; answers still in flight at the end get this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Request body file.
    #[arg(short = 'b', long)]
    body: Option<PathBuf>,
    /// File listing body files, one path per line, cycled in order.
    #[arg(short = 'l', long)]
    body_list: Option<PathBuf>,
    /// Request method.
    #[arg(short = 'm', long, default_value = "POST")]
    method: String,
    /// Content-Type of requests with a body.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Check that each 2xx answer is an admission.k8s.io/v1 AdmissionReview response with the
    /// request's uid; counts allowed/denied.
    #[arg(long)]
    expect_review: bool,
    /// PEM CA bundle that signed the server certificate.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Accept any server certificate (still TLS, no verification).
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Name to check the certificate against (default: the URL's host).
    #[arg(long)]
    server_name: Option<String>,
    /// HTTP/2 (ALPN h2) instead of HTTP/1.1.
    #[arg(long)]
    h2: bool,
    /// HTTP/2: concurrent requests per connection.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Runtime threads (1: a single-threaded runtime, like `wrk -t1`).
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
}

fn setup(args: &Args) -> anyhow::Result<RunConfig> {
    let target = target::parse(&args.url).map_err(anyhow::Error::msg)?;
    let addr = target::resolve(&target, args.allow_remote).map_err(anyhow::Error::msg)?;
    let protocol = if args.h2 {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    let tls = if target.tls {
        Some(tls_config(args.cacert.as_deref(), args.insecure, protocol)?)
    } else {
        None
    };
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    anyhow::ensure!(
        args.duration <= Duration::from_secs(3600) && args.warmup <= Duration::from_secs(600),
        "runs are bounded: --duration at most 1h, --warmup at most 10m"
    );
    let method = args
        .method
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid method {:?}", args.method))?;
    Ok(RunConfig {
        server_name: args
            .server_name
            .clone()
            .unwrap_or_else(|| target.host.clone()),
        target,
        addr,
        tls,
        protocol,
        connections: args.connections,
        streams: args.streams,
        rate: args.rate,
        duration: args.duration,
        warmup: args.warmup,
        timeout: args.timeout,
        method,
        content_type: args.content_type.clone(),
        bodies: bodies::load(args.body.as_deref(), args.body_list.as_deref())?,
        expect_review: args.expect_review,
        threads: args.threads,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = setup(&args).and_then(|cfg| {
        let rt = if args.threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.threads)
                .enable_all()
                .build()?
        };
        rt.block_on(run(cfg))
    });
    match result {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("hostgate-loadgen: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                print!("{}", report.to_text());
            }
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("hostgate-loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}
