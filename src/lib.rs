//! hostgate: admission control for Windows HostProcess pods — the webhook and the command line.
//!
//! The policy engine, the rules, defaulting and the approval contract live in
//! [`hostgate_core`] (re-exported here under the same module names, so `hostgate::engine` and
//! `hostgate_core::engine` are one module). This crate adds what runs in a cluster or a CI job:
//!
//! * [`server`]: `hostgate serve`, the HTTPS webhook (TLS, routes, metrics, policy reload);
//!   [`admission`] is its request → decision → response step;
//! * [`check`]: `hostgate check` and `hostgate test` over manifest files;
//! * [`telemetry`]: logging setup.

#![forbid(unsafe_code)]

pub use hostgate_core::{
    approval, decision, defaults, engine, manifest, mutate, object, pod, policy, quantity, rules,
    shape,
};

pub mod admission;
pub mod check;
pub mod server;
pub mod telemetry;
