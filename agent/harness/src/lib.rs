//! A test harness that drives a real containerd over CRI, the way the kubelet does.
//!
//! The node half of hostgate is a containerd runtime shim: the only way to test it honestly is to
//! run containerd, register the shim as a runtime handler and send the CRI calls the kubelet
//! would send. This crate provides the pieces, each usable from a plain `#[test]` function:
//!
//! | module | what it does |
//! |---|---|
//! | [`prereq`] | checks root, the binaries and cgroups; skips locally, **fails** under `CI` |
//! | [`image`] | builds OCI-layout image archives from the static busybox: no registry needed |
//! | [`containerd`] | a private containerd (own root, state, socket, config) and its cleanup |
//! | [`cri`] | a blocking CRI v1 client with kubelet-shaped helpers |
//! | [`log`] | reads the CRI container log format |
//!
//! ```no_run
//! use hostgate_node_harness::{Containerd, ContainerdOptions, ContainerSpec, PodSpec, Prereq};
//!
//! # fn t() -> Result<(), hostgate_node_harness::HarnessError> {
//! if hostgate_node_harness::require("example", Prereq::RUNC).is_some() {
//!     return Ok(());
//! }
//! let containerd = Containerd::start(ContainerdOptions::default())?;
//! let cri = containerd.cri()?;
//! let pod = cri.run_pod_sandbox(&PodSpec::new("example"))?;
//! let id = cri.create_container(&pod.id, &ContainerSpec::new("c").command(["true"]), &pod.config)?;
//! cri.start_container(&id)?;
//! # Ok(()) }
//! ```
//!
//! Everything is Linux-only: containerd's CRI plugin with runc, overlayfs and cgroups. On other
//! systems the crate is empty.
#![cfg(target_os = "linux")]

pub mod containerd;
pub mod cri;
mod error;
pub mod image;
pub mod log;
pub mod prereq;
mod procfs;

pub use containerd::{Containerd, ContainerdOptions, RuntimeHandler, Timings};
pub use cri::{
    ContainerInfo, ContainerSpec, ContainerState, Cri, MountSpec, Pod, PodSpec, Resources,
};
pub use error::HarnessError;
pub use image::{BUSYBOX_IMAGE, OciImage, PAUSE_IMAGE};
pub use log::{LogLine, Stream, parse_cri_log, read_cri_log};
pub use prereq::{Prereq, Skip, require};

/// Re-export of the CRI v1 bindings, for requests the helpers do not cover.
pub use k8s_cri::v1 as api;
