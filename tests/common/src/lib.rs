//! Helpers shared by the integration tests of every crate of the workspace (`tests/*.rs`,
//! `agent/tests/*.rs`), so that each exists once:
//!
//! * [`prereq`]: what a test needs from the machine (root, cgroups, helm, containerd…). A
//!   missing prerequisite skips the test with a printed reason on a developer's machine and
//!   **fails** it when the `CI` environment variable is set, so CI cannot pass by skipping.
//! * [`wait`]: bounded polling. Running out of time is a failure that names what was awaited,
//!   never a performance check.
//! * [`paths`]: the repository root and the test data under `tests/data/`.
//! * `pods` (feature `pods`): HostProcess pods signed as the webhook signs them, with the
//!   policy and keys a node needs to admit them, and the ways an approval can be refused.
//! * [`procs`]: fixtures for tests that start real processes: unique names, `/proc` scans for
//!   processes carrying a marker in their environment, "nothing left" assertions.
//!
//! Plain functions and no dependencies beyond `std` unless a feature asks for them (tokio for
//! the async wait, `hostgate-core` for the pods), so that any test crate can call them.

pub mod paths;
#[cfg(feature = "pods")]
pub mod pods;
pub mod prereq;
pub mod procs;
pub mod wait;

pub use paths::{data_path, repo_root};
pub use prereq::{Met, Prereq, Tool, in_ci, require, unmet};
pub use procs::unique_name;
pub use wait::{DEADLINE, eventually, wait_until};
