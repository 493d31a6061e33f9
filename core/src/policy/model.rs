//! The `HostProcessPolicy` resource (`hostgate.io/v1alpha1`, cluster-scoped): the same types are
//! read from YAML files and, through the CRD generated from them, from the cluster.
//!
//! Every struct rejects unknown fields, and every field is documented: the docs become the
//! CRD's OpenAPI descriptions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of hostgate's resources.
pub const GROUP: &str = "hostgate.io";
/// Current version of `HostProcessPolicy`.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of `HostProcessPolicy`.
pub const API_VERSION: &str = "hostgate.io/v1alpha1";
/// `kind` of the policy resource.
pub const KIND: &str = "HostProcessPolicy";

/// Which Windows HostProcess pods may run, and under what constraints.
///
/// A HostProcess pod is admitted only if at least one policy matches it (namespace, namespace
/// labels, service account) and every constraint of that policy holds. A policy with a
/// `profile` admits nothing: it refuses (or warns about, or audits) every HostProcess pod it
/// matches, whatever other policies say.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hostgate.io",
    version = "v1alpha1",
    kind = "HostProcessPolicy",
    plural = "hostprocesspolicies",
    shortname = "hpp",
    status = "HostProcessPolicyStatus",
    category = "hostgate",
    doc = "Which Windows HostProcess pods may run, and under what constraints (hostgate.io).",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".spec.profile"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostProcessPolicySpec {
    /// What happens when a matched pod breaks a constraint: `Enforce` refuses it, `Warn` admits
    /// it with warnings returned to the client, `Audit` admits it and records the findings in
    /// the audit log. Defaults to `Enforce`.
    #[serde(default)]
    pub mode: Mode,

    /// A built-in profile to apply instead of `allow`/`require`. `baseline` reproduces Pod
    /// Security Admission's `windowsHostProcess` check: no HostProcess pod is admitted in what
    /// this policy matches, with PSA's own message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,

    /// Which pods this policy applies to. An empty `match` applies to every pod.
    #[serde(default, rename = "match")]
    pub match_: MatchSpec,

    /// What admitted pods may use. Absent lists use the documented defaults.
    #[serde(default)]
    pub allow: AllowSpec,

    /// What admitted pods must declare.
    #[serde(default)]
    pub require: RequireSpec,

    /// Values the mutating webhook fills in for pods this policy admits, when they are missing.
    #[serde(default)]
    pub defaults: DefaultsSpec,
}

/// Enforcement mode of a policy.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Mode {
    /// Refuse pods that break a constraint.
    #[default]
    Enforce,
    /// Admit them, and return the findings to the client as warnings.
    Warn,
    /// Admit them, and record the findings as audit annotations.
    Audit,
}

impl Mode {
    /// The mode's name as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "Enforce",
            Mode::Warn => "Warn",
            Mode::Audit => "Audit",
        }
    }
}

/// A built-in, fixed rule set.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Pod Security Admission's `windowsHostProcess` check (level baseline).
    Baseline,
}

/// Which pods a policy applies to. Every field that is set must match (logical AND).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchSpec {
    /// Namespace names. Absent or empty: any namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,

    /// A label selector over the pod's namespace. Every namespace carries
    /// `kubernetes.io/metadata.name: <name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Service accounts as `<namespace>/<name>`; `<namespace>/*` matches every service account of
    /// that namespace. Absent or empty: any service account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
}

/// What admitted pods may use.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowSpec {
    /// Image patterns. `*` matches any run of characters except `/`, `**` matches across `/`,
    /// `?` one character. A pattern is tried against the image as written and against its fully
    /// qualified form (`nginx` → `docker.io/library/nginx:latest`). Absent or empty: any image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,

    /// Host accounts containers may run as (`windowsOptions.runAsUserName`, own or inherited
    /// from the pod), compared case-insensitively as Windows does. When set, every container must
    /// name its account. Absent or empty: any account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_as_user_names: Vec<String>,

    /// RuntimeClasses admitted pods may name (`spec.runtimeClassName`). When set, a pod must
    /// name one of them: a pod that names none runs under the node's default handler, outside
    /// hostgate's node check (`hostgate serve --runtime-class` names one for the pods it
    /// approves). Absent or empty: any RuntimeClass, or none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_class_names: Vec<String>,

    /// Volumes admitted pods may declare.
    #[serde(default)]
    pub volumes: VolumeAllow,

    /// The privileged pod annotations the pod may carry. Absent or empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<PrivilegedAnnotation>,

    /// Ephemeral containers (`kubectl debug`) that may be added to admitted pods. On a
    /// HostProcess pod an ephemeral container runs on the host with the pod's account, so
    /// absent means none at all; the node refuses them on the same terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_containers: Option<EphemeralAllow>,
}

/// The ephemeral containers a policy allows. Each must use one of the images, run exactly one of
/// the commands, and (when accounts are listed) run as one of the accounts.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EphemeralAllow {
    /// Image patterns, as in `allow.images`. Required, at least one.
    pub images: Vec<String>,

    /// Allowed commands, each the full argv (`command` followed by `args`); an element `*`
    /// stands for any one argument, and an empty list allows the image's own entrypoint.
    /// Required, at least one. Write them without `$(VAR)` references: the node compares the
    /// argv after the kubelet expanded them.
    pub commands: Vec<Vec<String>>,

    /// Accounts the ephemeral container may run as (its `runAsUserName`, else the pod's),
    /// compared case-insensitively. Absent or empty: the pod's accounts rules alone apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_as_user_names: Vec<String>,
}

/// Volumes admitted pods may declare.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeAllow {
    /// Volume types by their field name in the pod spec (`configMap`, `secret`, `projected`,
    /// `downwardAPI`, `emptyDir`, `persistentVolumeClaim`, `csi`, …). `hostPath` is governed by
    /// `hostPathPrefixes` instead. Absent: `configMap`, `secret`, `projected`, `downwardAPI`,
    /// `emptyDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,

    /// Host directories (and `\\.\pipe\` names) a `hostPath` volume may point into, compared
    /// case-insensitively by path component, with `/` and `\` alike. Absent or empty: no
    /// `hostPath` volume at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_path_prefixes: Vec<String>,
}

/// The pod annotations that raise a HostProcess pod's power.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, JsonSchema)]
pub enum PrivilegedAnnotation {
    /// Gives the containers the container runtime's own token (usually SYSTEM) regardless of
    /// `runAsUserName`.
    #[serde(rename = "microsoft.com/hostprocess-inherit-user")]
    InheritUser,
    /// Moves the containers' root file system on the host.
    #[serde(rename = "microsoft.com/hostprocess-rootfs-location")]
    RootfsLocation,
}

impl PrivilegedAnnotation {
    /// The annotation key.
    pub fn key(self) -> &'static str {
        match self {
            PrivilegedAnnotation::InheritUser => crate::pod::ANNOTATION_INHERIT_USER,
            PrivilegedAnnotation::RootfsLocation => crate::pod::ANNOTATION_ROOTFS_LOCATION,
        }
    }
}

/// What admitted pods must declare.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequireSpec {
    /// Every image must be pinned by digest (`…@sha256:<64 hex digits>`).
    #[serde(default)]
    pub image_digest: bool,

    /// Limits every init and regular container must set, and their maxima. On the node they
    /// become the job object's limits (memory commit, CPU rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitMaxima>,
}

/// Resource limits: each one given must be set on every container, at most this value.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitMaxima {
    /// Maximum `limits.cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Maximum `limits.memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// Values the mutating webhook sets when they are missing from an admitted pod.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultsSpec {
    /// Pod-level `windowsOptions.runAsUserName` for pods in which some container has none.
    /// Without it, hostgate uses the least privileged account, `NT AUTHORITY\Local service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user_name: Option<String>,

    /// Limits added to containers that set none (`cpu`, `memory`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
}

/// Observed state of a policy, written by the webhook.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostProcessPolicyStatus {
    /// `Accepted`: `True` when the policy is in force, `False` with reason `Invalid` and the
    /// error as message otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Why the CRD could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("rendering the CustomResourceDefinition")]
pub struct CrdError(#[source] serde_yaml::Error);

/// The `hostprocesspolicies.hostgate.io` CustomResourceDefinition as YAML, generated from these
/// types (the chart ships this exact text).
pub fn crd_yaml() -> Result<String, CrdError> {
    use kube::CustomResourceExt as _;
    let body = serde_yaml::to_string(&HostProcessPolicy::crd()).map_err(CrdError)?;
    Ok(format!(
        "# Generated by `hostgate crd` from src/policy/model.rs; do not edit.\n{body}"
    ))
}
