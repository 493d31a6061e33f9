//! hostgate node agent: runs approved Windows HostProcess containers as job objects
//! (cgroups on Linux).
//!
//! The pieces, from the bottom up:
//!
//! * [`job`]: a job (Win32 job object / cgroup) with limits that dies as a whole;
//! * [`container`]: run one container in a job (sandbox, environment, mounts, logs, stop),
//!   with no knowledge of pods;
//! * [`verify`]: check an approval against what is about to run, a whole pod or one
//!   container's runtime view (what a containerd shim sees);
//! * [`kubelet`]: the kubelet's own rules (`$(VAR)` expansion, limits → runtime resources);
//! * [`pod`]: the static pod runner behind `hostgate-agent run`, composed from the above;
//! * [`sync`]: keeps the node's copy of the trusted keys and policies current
//!   (`hostgate-agent sync`);
//! * [`cli`]: the command line.

pub mod cli;
pub mod container;
pub mod install;
pub mod job;
pub mod kubelet;
#[cfg(any(target_os = "linux", windows))]
pub mod pod;
#[cfg(any(target_os = "linux", windows))]
pub mod shim;
pub mod stop;
pub mod sync;
pub mod verify;
