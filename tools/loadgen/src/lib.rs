//! `hostgate-loadgen`: a small, bounded HTTPS load generator for the hostgate webhook benchmark.
//!
//! It POSTs request bodies (typically real AdmissionReview captures) to one URL over a fixed
//! pool of keep-alive connections (HTTP/1.1, or HTTP/2 with `--h2`), either
//!
//! * **closed loop** (`--rate max`): every connection sends its next request as soon as the
//!   previous answer is in, which measures saturation throughput; or
//! * **open loop** (`--rate R`): a scheduler thread hands out send *tokens* at the intended
//!   times `start + k/R` to whichever connection is idle, and the latency of each request is
//!   measured from its **intended** send time, not from when a connection got round to sending
//!   it. A slow answer therefore counts against every request that had to wait behind it
//!   (no coordinated omission, as in wrk2 or HdrHistogram's own recommendation).
//!
//! Latencies go into [`hdrhistogram`] histograms (one per worker, merged at the end).
//! Runs are bounded: sending stops after `--duration` (plus `--warmup`), answers still in
//! flight get at most `--timeout`, and only loopback targets are accepted unless
//! `--allow-remote` is given.
//!
//! The pure parts (schedule, statistics, review check, target and argument parsing) live in
//! their own modules with unit tests; [`run`] is the I/O engine.

pub mod bodies;
pub mod client;
pub mod parse;
pub mod review;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod target;
