//! `containerd-shim-hostgate-v1`: the node half in the kubelet's path.
//!
//! The kubelet has no admission hook of its own: every container goes kubelet → CRI →
//! containerd → the shim of the pod's runtime handler. Registered for a `hostgate` handler
//! (`runtime_type = "io.containerd.hostgate.v1"`), this shim sees each container's runtime
//! spec before any process exists, verifies the pod's signed approval against it with the
//! node's trust keys and policies ([`gate`]), and runs what is admitted as a job through the
//! agent's job layer, exactly as `hostgate-agent run` does. Everything else (images, volumes,
//! tokens, probes, restarts, logs) stays the kubelet's and containerd's.
//!
//! The pieces, from the outside in:
//!
//! * [`actions`]: containerd's `start` action (gate, one shim per pod grouped by sandbox id,
//!   the bundle's `address` and `shim.pid`) and `delete` action (cleanup after a dead shim);
//! * [`task`]: the ttrpc task service and events, conversions only;
//! * [`service`]: what each task RPC does, in our own types;
//! * [`runtime`]: `Create` → request → gate → task; [`instance`]: the task trait, with the
//!   sandbox [`instance::Placeholder`] and the [`instance::JobInstance`];
//! * [`gate`], [`request`], [`node`]: the decision and its inputs; [`rootfs`], [`stdio`]:
//!   the container's image mount and its streams.
//!
//! `docs/node-shim.md` in the repository describes the behaviour and how to install it.

pub mod actions;
pub mod gate;
pub mod instance;
pub mod node;
pub mod request;
pub mod rootfs;
pub mod runtime;
pub mod service;
pub mod stdio;
pub mod task;

/// The runtime type containerd maps to this binary (`containerd-shim-hostgate-v1`).
pub const RUNTIME_ID: &str = "io.containerd.hostgate.v1";

/// A protobuf timestamp for `t`.
pub(crate) fn task_timestamp(
    t: std::time::SystemTime,
) -> containerd_shim::protos::protobuf::MessageField<
    containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp,
> {
    task::timestamp(t)
}
