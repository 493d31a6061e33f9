//! hostgate: admission control for Windows HostProcess pods.
//!
//! Start with [`engine::evaluate`]: it takes a [`policy::PolicySet`], a [`pod::PodView`] and an
//! [`engine::EvalContext`], and returns a [`decision::Decision`]. [`object::Workload`] reads Pods
//! and workload templates; [`policy::load`] reads policies; [`manifest`] reads YAML and JSON
//! safely. The webhook, `hostgate check` and the node agent are thin layers over these.

#![forbid(unsafe_code)]

#[cfg(feature = "server")]
pub mod admission;
pub mod approval;
pub mod check;
pub mod decision;
pub mod defaults;
pub mod engine;
pub mod manifest;
pub mod mutate;
pub mod object;
pub mod pod;
pub mod policy;
pub mod quantity;
pub mod rules;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod telemetry;
