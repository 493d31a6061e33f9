//! `containerd-shim-hostgate-v1`: the node half in the kubelet's path.
pub mod gate;
pub mod node;
pub mod request;
