//! hostgate-core: the pure part of hostgate, shared by the webhook, `hostgate check` and the node
//! agent (including its containerd shim).
//!
//! Start with [`engine::evaluate`]: it takes a [`policy::PolicySet`], a [`pod::PodView`] and an
//! [`engine::EvalContext`], and returns a [`decision::Decision`]. From the outside in:
//!
//! * [`manifest`] reads YAML and JSON safely (sizes, depth, field paths in errors);
//!   [`object::Workload`] turns a document into a Pod or a workload's pod template;
//! * [`pod::PodView`] is the one view of a pod spec every rule reads (pod level, init, regular
//!   and ephemeral containers, with their field paths);
//! * [`policy`] is the `HostProcessPolicy` model, its compilation and loading (files, directories
//!   and the default directory);
//! * [`rules`] holds every check, one module per family: the apiserver's own validation
//!   (`HP-API-…`), Pod Security Admission (`HP-PSA-01`) and the policy constraints (`HG-…`);
//!   `docs/rules.md` in the repository explains each id;
//! * [`engine`] decides; [`defaults`] fills in what `/mutate` fills in; [`mutate`] is
//!   `hostgate mutate`, defaulting and signing whole documents offline;
//! * [`approval`] is the contract between the two halves: the signed payload the webhook writes
//!   and the node verifies.
//!
//! No I/O happens in the engine and no async, HTTP or Kubernetes client code lives here: the
//! build keeps it that way, since this crate's dependencies are all the shim links.

#![forbid(unsafe_code)]

pub mod approval;
pub mod chain;
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
pub mod shape;
