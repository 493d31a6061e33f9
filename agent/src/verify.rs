//! Verify an approval against what is about to run.
//!
//! Two callers, two views of "what is about to run":
//!
//! * **A whole pod** (the static runner): [`Verifier::verify_pod`] checks the
//!   `hostgate.io/approval` annotation's signature, compares the signed payload with the pod
//!   ([`hostgate_core::approval::Approval::matches`]), re-evaluates the policies with the engine and
//!   checks that the policy named in the approval is still loaded and still admits the pod.
//! * **One container's runtime view** (a containerd shim, which sees only the OCI spec and the
//!   pod annotations passed through to it): [`Verifier::verify_value`] does the signature and
//!   policy part on the pod the payload describes, and [`check_container`] compares one
//!   [`RuntimeContainer`] — name, argv, env, user, mounts, limits — with the approved
//!   container. The static runner also runs [`check_container`] on every container it is
//!   about to start, so both paths are exercised.
//!
//! Every refusal is a [`Refusal`] with its own [`Refusal::exit_code`].

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;

use hostgate_core::approval::{
    ANNOTATION, Approval, ApprovalError, ApprovedContainer, ApprovedPod, KeyError, TrustStore,
};
use hostgate_core::decision::{Decision, Finding};
use hostgate_core::engine::{EvalContext, evaluate};
use hostgate_core::pod::{ANNOTATION_INHERIT_USER, PodView, SpecPath};
use hostgate_core::policy::load::{PolicyErrors, load_paths};
use hostgate_core::policy::{Mode, PolicySet, volume_type};
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, PodSpec, ResourceRequirements, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::job::JobLimits;
use crate::job::limits::OciWindowsResources;
use crate::kubelet;
use crate::kubelet::LinuxResources;

/// The classes of refusal, each with its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// No approval annotation.
    Unsigned,
    /// The approval is malformed, signed by an untrusted key, or its signature is wrong.
    BadSignature,
    /// The pod (or container) differs from what was approved.
    Changed,
    /// The policies loaded here do not admit the pod (or it is not a HostProcess pod).
    NotAdmitted,
    /// The policy that approved the pod is not loaded here or no longer admits it.
    PolicyWithdrawn,
}

impl RefusalKind {
    /// The agent's exit code for this refusal (10–14).
    pub fn exit_code(self) -> u8 {
        match self {
            RefusalKind::Unsigned => 10,
            RefusalKind::BadSignature => 11,
            RefusalKind::Changed => 12,
            RefusalKind::NotAdmitted => 13,
            RefusalKind::PolicyWithdrawn => 14,
        }
    }
}

/// Why a pod or container is not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `hostgate.io/approval` annotation.
    #[error("refused: the pod is not signed (no {ANNOTATION} annotation)")]
    Unsigned,
    /// The approval does not verify.
    #[error("refused: the approval does not verify")]
    BadApproval(#[source] ApprovalError),
    /// What is about to run is not what was approved.
    #[error("refused: changed after approval: {}", .differences.join("; "))]
    Changed {
        /// Every difference, with the field path and both values.
        differences: Vec<String>,
    },
    /// The engine, with the policies loaded here, does not admit the pod.
    #[error("refused: no policy admits the pod: {}", Findings(.findings))]
    NotAdmitted {
        /// The engine's denials.
        findings: Vec<Finding>,
    },
    /// The pod does not ask for HostProcess power; the agent runs only HostProcess pods.
    #[error("refused: not a HostProcess pod; the agent only runs approved HostProcess pods")]
    NotHostProcess,
    /// The approving policy is gone or no longer admits the pod.
    #[error("refused: the approving policy {policy:?} {reason}")]
    PolicyWithdrawn {
        /// The policy named in the approval.
        policy: String,
        /// What is wrong with it, including its findings.
        reason: String,
    },
}

struct Findings<'a>(&'a [Finding]);

impl fmt::Display for Findings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, finding) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{finding}")?;
        }
        Ok(())
    }
}

impl Refusal {
    /// The class of the refusal.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::Unsigned => RefusalKind::Unsigned,
            Refusal::BadApproval(_) => RefusalKind::BadSignature,
            Refusal::Changed { .. } => RefusalKind::Changed,
            Refusal::NotAdmitted { .. } | Refusal::NotHostProcess => RefusalKind::NotAdmitted,
            Refusal::PolicyWithdrawn { .. } => RefusalKind::PolicyWithdrawn,
        }
    }

    /// The agent's exit code (see [`RefusalKind::exit_code`]).
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }
}

impl From<ApprovalError> for Refusal {
    fn from(e: ApprovalError) -> Self {
        match e {
            ApprovalError::Missing => Refusal::Unsigned,
            ApprovalError::Mismatch(differences) => Refusal::Changed { differences },
            other => Refusal::BadApproval(other),
        }
    }
}

/// Why the verifier could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The trusted public keys could not be read.
    #[error("cannot load the trusted keys")]
    Keys(#[source] KeyError),
    /// The policies could not be read.
    #[error("cannot load the policies")]
    Policies(#[source] PolicyErrors),
}

/// A verified approval and the engine's decision on the pod.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signed payload.
    pub approval: Approval,
    /// The local evaluation (its warnings and audits are worth logging).
    pub decision: Decision,
}

/// The trusted keys and the policies of this node.
#[derive(Debug, Clone)]
pub struct Verifier {
    trust: TrustStore,
    policies: PolicySet,
}

impl Verifier {
    /// A verifier over these keys and policies.
    pub fn new(trust: TrustStore, policies: PolicySet) -> Self {
        Self { trust, policies }
    }

    /// Reads every `*.pub` key of `keys_dir` and the policies under `policy_paths`.
    pub fn load<P: AsRef<Path>>(keys_dir: &Path, policy_paths: &[P]) -> Result<Self, LoadError> {
        let trust = TrustStore::load_dir(keys_dir).map_err(LoadError::Keys)?;
        let policies = load_paths(policy_paths).map_err(LoadError::Policies)?;
        Ok(Self::new(trust, policies))
    }

    /// The policies.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// Verifies a pod about to run in `namespace`: approval present, signature good, payload
    /// equal to the pod, policies admit it, the approving policy still does.
    pub fn verify_pod(&self, pod: &PodView<'_>, namespace: &str) -> Result<Verified, Refusal> {
        let value = pod
            .annotations()
            .and_then(|a| a.get(ANNOTATION))
            .ok_or(Refusal::Unsigned)?;
        let approval = self.trust.verify(value)?;
        approval.matches(&ApprovedPod::describe(pod, namespace))?;
        let decision = self.admit(pod, namespace, &approval.policy)?;
        Ok(Verified { approval, decision })
    }

    /// The shim's form: verifies an approval annotation value on its own and re-evaluates the
    /// policies on the pod its payload describes ([`pod_from_approval`]). Compare each
    /// container with [`check_container`] before running it.
    pub fn verify_value(&self, value: &str) -> Result<Verified, Refusal> {
        let approval = self.trust.verify(value)?;
        let pod = pod_from_approval(&approval.pod);
        let spec = pod.spec.as_ref().ok_or(Refusal::NotHostProcess)?;
        let view = PodView::new(spec, Some(&pod.metadata), SpecPath::POD);
        let decision = self.admit(&view, &approval.pod.namespace, &approval.policy)?;
        Ok(Verified { approval, decision })
    }

    /// Evaluates the pod with every policy, then checks the approving policy on its own.
    fn admit(
        &self,
        pod: &PodView<'_>,
        namespace: &str,
        approving: &str,
    ) -> Result<Decision, Refusal> {
        let decision = evaluate(&self.policies, pod, &EvalContext::new(namespace));
        if !decision.allowed {
            return Err(Refusal::NotAdmitted {
                findings: decision.denials,
            });
        }
        if !decision.host_process {
            return Err(Refusal::NotHostProcess);
        }
        let withdrawn = |reason: String| Refusal::PolicyWithdrawn {
            policy: approving.to_owned(),
            reason,
        };
        let policy = self
            .policies
            .admitting()
            .iter()
            .find(|p| &**p.name() == approving)
            .ok_or_else(|| withdrawn("is not loaded on this node".to_owned()))?;
        if !policy.matches(namespace, None, pod.service_account()) {
            return Err(withdrawn(format!(
                "no longer matches namespace {namespace:?} and service account {:?}",
                pod.service_account()
            )));
        }
        let mut findings = Vec::new();
        policy.check(pod, &mut findings);
        if !findings.is_empty() && policy.mode() == Mode::Enforce {
            return Err(withdrawn(format!(
                "no longer admits the pod: {}",
                Findings(&findings)
            )));
        }
        Ok(decision)
    }
}

/// The pod an approval describes, as a Pod object (for re-evaluating policies where only the
/// payload is known). Fields outside the payload are unset.
pub fn pod_from_approval(approved: &ApprovedPod) -> Pod {
    let container = |c: &ApprovedContainer| Container {
        name: c.name.clone(),
        image: c.image.clone(),
        command: (!c.command.is_empty()).then(|| c.command.clone()),
        args: (!c.args.is_empty()).then(|| c.args.clone()),
        working_dir: c.working_dir.clone(),
        env: (!c.env.is_empty()).then(|| c.env.clone()),
        env_from: (!c.env_from.is_empty()).then(|| c.env_from.clone()),
        volume_mounts: (!c.volume_mounts.is_empty()).then(|| c.volume_mounts.clone()),
        resources: (!c.limits.is_empty()).then(|| ResourceRequirements {
            limits: Some(c.limits.clone()),
            ..ResourceRequirements::default()
        }),
        security_context: c.windows_options.clone().map(|w| SecurityContext {
            windows_options: Some(w),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            namespace: Some(approved.namespace.clone()),
            annotations: (!approved.annotations.is_empty()).then(|| approved.annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(approved.service_account.clone()),
            host_network: Some(approved.host_network),
            runtime_class_name: approved.runtime_class_name.clone(),
            security_context: approved
                .windows_options
                .clone()
                .map(|w| PodSecurityContext {
                    windows_options: Some(w),
                    ..PodSecurityContext::default()
                }),
            volumes: (!approved.volumes.is_empty()).then(|| approved.volumes.clone()),
            init_containers: (!approved.init_containers.is_empty())
                .then(|| approved.init_containers.iter().map(container).collect()),
            containers: approved.containers.iter().map(container).collect(),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// One mount as a runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeMount {
    /// Where it appears (the pod's `mountPath`).
    pub destination: String,
    /// The host path behind it.
    pub source: String,
    /// Whether it is read-only.
    pub read_only: bool,
}

/// The resources a runtime is asked to apply, as the OCI spec carries them: `windows.resources`
/// from a Windows kubelet, `linux.resources` from a Linux one (where hostgate is developed and
/// a `hostgate` runtime handler may also run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeResources {
    /// `windows.resources` (HP-KLT-03, HP-CTD-04).
    Windows(OciWindowsResources),
    /// `linux.resources`.
    Linux(LinuxResources),
}

impl RuntimeResources {
    /// The job limits these resources give (hcsshim's rules for Windows, CFS quota for Linux).
    pub fn job_limits(&self, host_logical_processors: NonZeroU32) -> Result<JobLimits, String> {
        match self {
            RuntimeResources::Windows(w) => {
                JobLimits::from_oci_windows(w, host_logical_processors).map_err(|e| e.to_string())
            }
            RuntimeResources::Linux(l) => Ok(l.job_limits(host_logical_processors)),
        }
    }

    /// What the kubelet of this spec's platform writes for `limits`: the approved side of a
    /// comparison goes through the same conversion, and so the same rounding (a Linux kubelet's
    /// minimum CFS quota), as the runtime's.
    fn for_limits(
        &self,
        limits: &BTreeMap<String, Quantity>,
        host_logical_processors: NonZeroU32,
    ) -> Result<RuntimeResources, kubelet::LimitError> {
        Ok(match self {
            RuntimeResources::Windows(_) => {
                RuntimeResources::Windows(kubelet::oci_resources(limits, host_logical_processors)?)
            }
            RuntimeResources::Linux(_) => {
                RuntimeResources::Linux(kubelet::linux_resources(limits)?)
            }
        })
    }
}

/// One container as a runtime sees it: the OCI spec's process, mounts and resources.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeContainer<'a> {
    /// The container name (CRI metadata).
    pub name: &'a str,
    /// `process.args`: `command` + `args` after the kubelet's `$(VAR)` expansion.
    pub args: &'a [String],
    /// `process.env`, in order.
    pub env: &'a [(String, String)],
    /// `process.user.username`.
    pub user: Option<&'a str>,
    /// `mounts`.
    pub mounts: &'a [RuntimeMount],
    /// `windows.resources` or `linux.resources`.
    pub resources: RuntimeResources,
}

/// What [`check_container`] tolerates besides the approval.
#[derive(Debug, Clone)]
pub struct RuntimeCheck {
    /// The node's logical processors (the kubelet's divisor for CPU limits).
    pub host_logical_processors: NonZeroU32,
    /// Mount destinations the runtime adds on its own (the kubelet's termination-message file).
    pub extra_mount_destinations: Vec<String>,
    /// Environment variables the runtime may add besides the approved ones (image `ENV`,
    /// for instance). The kubelet's service-link variables are always tolerated.
    pub extra_env: Vec<String>,
    /// Whether the runtime view carries the user name to compare with `runAsUserName`. A
    /// Windows runtime spec does (`process.user.username`); a Linux kubelet drops
    /// `windowsOptions`, so a Linux runtime spec has only numeric ids.
    pub compare_user: bool,
}

impl RuntimeCheck {
    /// Tolerates the kubelet's termination-message mounts and nothing else.
    pub fn new(host_logical_processors: NonZeroU32) -> Self {
        Self {
            host_logical_processors,
            extra_mount_destinations: vec![
                "/dev/termination-log".to_owned(),
                "C:\\dev\\termination-log".to_owned(),
            ],
            extra_env: Vec::new(),
            compare_user: true,
        }
    }
}

/// Whether `name` is one of the kubelet's service-link variables (`KUBERNETES_SERVICE_HOST`,
/// `<SVC>_SERVICE_PORT_<PORT>`, `<SVC>_PORT_<N>_TCP_ADDR`, …).
pub fn is_service_link_var(name: &str) -> bool {
    let upper_ident = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    };
    if !upper_ident(name) {
        return false;
    }
    name.ends_with("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
        || name.ends_with("_PORT")
        || name.contains("_PORT_")
}

/// Compares one container's runtime view with its approved form; on success returns the
/// approved container. Every difference is listed:
///
/// * argv must equal the approved `command` + `args` expanded with the runtime env; without an
///   approved `command` the image's entrypoint comes first, so only the tail is compared;
/// * every approved `env` entry must be there with its (expanded) value; `valueFrom` entries
///   must be present (optional ones may be absent), their content is not part of the
///   approval; other variables are refused unless an approved `envFrom` could have produced
///   them, they are service links, or [`RuntimeCheck::extra_env`] names them;
/// * the user must be the effective approved `runAsUserName` (unless the approved pod inherits
///   the runtime's user);
/// * every mount must be an approved `volumeMount` with the same read-only flag (ConfigMap and
///   Secret mounts are always read-only) and, for hostPath volumes, the approved path;
/// * the resources must not give the job more than the approved limits do: each approved CPU
///   or memory limit must be there, at most as large (a runtime may ask for less).
pub fn check_container<'a>(
    approval: &'a Approval,
    c: &RuntimeContainer<'_>,
    opts: &RuntimeCheck,
) -> Result<&'a ApprovedContainer, Refusal> {
    let Some(approved) = approval.container(c.name) else {
        return Err(Refusal::Changed {
            differences: vec![format!("container {:?} is not in the approval", c.name)],
        });
    };
    let mut diffs = Vec::new();
    let at = |field: &str| format!("container {:?} {field}", c.name);

    let runtime_env: BTreeMap<String, String> = c.env.iter().cloned().collect();
    check_env(approved, &runtime_env, opts, &at, &mut diffs);

    let command = kubelet::process_args(&approved.command, &[], &runtime_env);
    let args = kubelet::process_args(&[], &approved.args, &runtime_env);
    if command.is_empty() {
        if !c.args.ends_with(&args) {
            diffs.push(format!(
                "{}: approved (after the image entrypoint) {:?}, found {:?}",
                at("args"),
                args,
                c.args
            ));
        }
    } else {
        let want: Vec<String> = command.into_iter().chain(args).collect();
        if c.args != want.as_slice() {
            diffs.push(format!(
                "{}: approved {:?}, found {:?}",
                at("args"),
                want,
                c.args
            ));
        }
    }

    let inherits_user = approval
        .pod
        .annotations
        .get(ANNOTATION_INHERIT_USER)
        .is_some_and(|v| v == "true");
    let approved_user = approved
        .windows_options
        .as_ref()
        .and_then(|w| w.run_as_user_name.as_deref())
        .or_else(|| {
            approval
                .pod
                .windows_options
                .as_ref()
                .and_then(|w| w.run_as_user_name.as_deref())
        });
    if let Some(user) = approved_user
        && !inherits_user
        && opts.compare_user
        && c.user != Some(user)
    {
        diffs.push(format!(
            "{}: approved {user:?}, found {:?}",
            at("user"),
            c.user
        ));
    }

    check_mounts(approval, approved, c.mounts, opts, &at, &mut diffs);

    check_resources(approved, &c.resources, opts, &at, &mut diffs);

    if diffs.is_empty() {
        Ok(approved)
    } else {
        Err(Refusal::Changed { differences: diffs })
    }
}

fn check_env(
    approved: &ApprovedContainer,
    runtime: &BTreeMap<String, String>,
    opts: &RuntimeCheck,
    at: &impl Fn(&str) -> String,
    diffs: &mut Vec<String>,
) {
    // The kubelet expands an env value with the variables defined before it: envFrom imports
    // and earlier entries (whose runtime values stand in for valueFrom ones).
    let named: Vec<&str> = approved.env.iter().map(|e| e.name.as_str()).collect();
    let mut defined: BTreeMap<String, String> = runtime
        .iter()
        .filter(|(k, _)| !named.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for e in &approved.env {
        let found = runtime.get(&e.name);
        match &e.value_from {
            None => {
                let value = e.value.as_deref().unwrap_or("");
                let want = kubelet::expand_with(value, &defined);
                match found {
                    Some(v) if *v == want => {}
                    Some(v) => diffs.push(format!(
                        "{}: approved {want:?}, found {v:?}",
                        at(&format!("env {}", e.name))
                    )),
                    None => diffs.push(format!(
                        "{}: approved but missing",
                        at(&format!("env {}", e.name))
                    )),
                }
                defined.insert(e.name.clone(), want);
            }
            Some(source) => {
                let optional = source
                    .config_map_key_ref
                    .as_ref()
                    .and_then(|r| r.optional)
                    .or_else(|| source.secret_key_ref.as_ref().and_then(|r| r.optional))
                    .unwrap_or(false);
                match found {
                    Some(v) => {
                        defined.insert(e.name.clone(), v.clone());
                    }
                    None if optional => {}
                    None => diffs.push(format!(
                        "{}: approved (valueFrom) but missing",
                        at(&format!("env {}", e.name))
                    )),
                }
            }
        }
    }
    let prefixes: Vec<&str> = approved
        .env_from
        .iter()
        .map(|f| f.prefix.as_deref().unwrap_or(""))
        .collect();
    for name in runtime.keys() {
        let tolerated = named.contains(&name.as_str())
            || prefixes.iter().any(|p| name.starts_with(p))
            || is_service_link_var(name)
            || opts.extra_env.iter().any(|x| x == name);
        if !tolerated {
            diffs.push(format!("{}: not approved", at(&format!("env {name}"))));
        }
    }
}

/// The approved limits bound the runtime's: whatever the approval limits must be limited at
/// most as much (kubelet conversions on both sides, so rounding is the kubelet's).
fn check_resources(
    approved: &ApprovedContainer,
    runtime: &RuntimeResources,
    opts: &RuntimeCheck,
    at: &impl Fn(&str) -> String,
    diffs: &mut Vec<String>,
) {
    let cpus = opts.host_logical_processors;
    let limits = runtime
        .for_limits(&approved.limits, cpus)
        .map_err(|e| e.to_string())
        .and_then(|approved| Ok((approved.job_limits(cpus)?, runtime.job_limits(cpus)?)));
    let (want, got) = match limits {
        Ok(limits) => limits,
        Err(e) => return diffs.push(format!("{}: {e}", at("resources"))),
    };
    if let Some(max) = want.memory_bytes
        && got.memory_bytes.is_none_or(|m| m > max)
    {
        diffs.push(format!(
            "{}: approved at most {max} bytes, found {}",
            at("resources memory limit"),
            got.memory_bytes
                .map_or_else(|| "no limit".to_owned(), |m| format!("{m} bytes"))
        ));
    }
    if let Some(max) = want.cpu_rate
        && got.cpu_rate.is_none_or(|r| r > max)
    {
        diffs.push(format!(
            "{}: approved at most rate {}, found {}",
            at("resources cpu limit"),
            max.get(),
            got.cpu_rate
                .map_or_else(|| "no limit".to_owned(), |r| format!("rate {}", r.get()))
        ));
    }
}

fn normalize_path(p: &str) -> String {
    let s = p.replace('\\', "/");
    let trimmed = s.trim_end_matches('/');
    if trimmed.is_empty() {
        s
    } else {
        trimmed.to_owned()
    }
}

fn check_mounts(
    approval: &Approval,
    approved: &ApprovedContainer,
    mounts: &[RuntimeMount],
    opts: &RuntimeCheck,
    at: &impl Fn(&str) -> String,
    diffs: &mut Vec<String>,
) {
    for m in mounts {
        let Some(vm) = approved
            .volume_mounts
            .iter()
            .find(|vm| vm.mount_path == m.destination)
        else {
            if !opts.extra_mount_destinations.contains(&m.destination) {
                diffs.push(format!(
                    "{}: not approved",
                    at(&format!("mount {:?}", m.destination))
                ));
            }
            continue;
        };
        let field = at(&format!("mount {:?}", m.destination));
        let volume = approval.pod.volumes.iter().find(|v| v.name == vm.name);
        let always_read_only = volume.is_some_and(|v| {
            matches!(
                volume_type(v),
                "configMap" | "secret" | "downwardAPI" | "projected"
            )
        });
        let want_ro = vm.read_only.unwrap_or(false) || always_read_only;
        if want_ro && !m.read_only {
            diffs.push(format!("{field}: approved read-only, found writable"));
        }
        if let Some(host_path) = volume.and_then(|v| v.host_path.as_ref()) {
            let mut want = normalize_path(&host_path.path);
            if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                want = format!("{want}/{}", normalize_path(sub));
            }
            if normalize_path(&m.source) != want {
                diffs.push(format!(
                    "{field}: approved source {want:?}, found {:?}",
                    m.source
                ));
            }
        }
    }
    for vm in &approved.volume_mounts {
        if !mounts.iter().any(|m| m.destination == vm.mount_path) {
            diffs.push(format!(
                "{}: approved but missing",
                at(&format!("mount {:?}", vm.mount_path))
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use hostgate_core::approval::{SigningIdentity, generate_key};
    use hostgate_core::object::Workload;
    use hostgate_core::policy::load::parse_policies;

    use super::*;

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: proxy, namespace: kube-system}
spec:
  serviceAccountName: kube-proxy
  hostNetwork: true
  securityContext: {windowsOptions: {hostProcess: true, runAsUserName: 'NT AUTHORITY\SYSTEM'}}
  volumes:
  - {name: host, hostPath: {path: 'C:\var\lib\kube-proxy'}}
  - {name: conf, configMap: {name: kube-proxy}}
  containers:
  - name: proxy
    image: registry.example/kube-proxy:1
    command: [kube-proxy.exe, '--hostname=$(NODE)']
    args: ['--v=$(LEVEL)']
    env:
    - {name: LEVEL, value: '2'}
    - {name: LOG, value: 'level $(LEVEL)'}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    volumeMounts:
    - {name: host, mountPath: 'C:\var\lib\kube-proxy'}
    - {name: conf, mountPath: 'C:\etc\kube-proxy', readOnly: false}
    resources: {limits: {cpu: 500m, memory: 128Mi}}
"#;

    const POLICY: &str = r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: kube-proxy}
spec:
  match: {namespaces: [kube-system]}
  allow:
    runAsUserNames: ['NT AUTHORITY\SYSTEM']
    volumes: {hostPathPrefixes: ['C:\var\lib']}
  defaults: {runAsUserName: 'NT AUTHORITY\SYSTEM'}
"#;

    fn workload(yaml: &str) -> Workload {
        let v: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
        Workload::from_value(v).expect("valid").expect("pod")
    }

    /// A Linux kubelet gives a 5m limit its minimum CFS quota (1 ms per 100 ms, 10m): the
    /// approved side is converted the same way, so the container is not refused for it.
    #[test]
    fn a_small_cpu_limit_compares_as_the_linux_kubelet_rounds_it() {
        let approved = ApprovedContainer {
            name: "c".to_owned(),
            limits: [("cpu".to_owned(), Quantity("5m".to_owned()))].into(),
            ..ApprovedContainer::default()
        };
        let opts = RuntimeCheck::new(NonZeroU32::new(2).expect("2"));
        let linux = |cpu_quota| {
            RuntimeResources::Linux(kubelet::LinuxResources {
                cpu_quota,
                cpu_period: 100_000,
                memory_limit_bytes: 0,
            })
        };
        let mut diffs = Vec::new();
        check_resources(
            &approved,
            &linux(1_000),
            &opts,
            &|f: &str| f.to_owned(),
            &mut diffs,
        );
        assert_eq!(diffs, Vec::<String>::new());
        check_resources(
            &approved,
            &linux(50_000),
            &opts,
            &|f: &str| f.to_owned(),
            &mut diffs,
        );
        assert_eq!(diffs.len(), 1, "{diffs:?}");
    }

    fn policies(yaml: &str) -> PolicySet {
        let (list, errs) = parse_policies(yaml.as_bytes(), "test");
        assert!(errs.is_empty(), "{errs:?}");
        PolicySet::new(list).expect("unique")
    }

    struct Fixture {
        id: SigningIdentity,
        verifier: Verifier,
    }

    fn fixture(policy_yaml: &str) -> Fixture {
        let id = SigningIdentity::new(generate_key().expect("key"));
        let mut trust = TrustStore::default();
        trust.add(id.verifying_key());
        Fixture {
            verifier: Verifier::new(trust, policies(policy_yaml)),
            id,
        }
    }

    fn sign(f: &Fixture, yaml: &str, policy: &str) -> String {
        let w = workload(yaml);
        f.id.sign(
            ApprovedPod::describe(&w.pod().expect("pod"), "kube-system"),
            policy,
            1,
        )
    }

    fn with_annotation(yaml: &str, value: &str) -> Workload {
        let mut w = workload(yaml);
        if let Workload::Pod(p) = &mut w {
            p.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(ANNOTATION.to_owned(), value.to_owned());
        }
        w
    }

    fn verify(f: &Fixture, w: &Workload) -> Result<Verified, Refusal> {
        f.verifier.verify_pod(&w.pod().expect("pod"), "kube-system")
    }

    #[test]
    fn refusal_classes_and_exit_codes() {
        let f = fixture(POLICY);
        let value = sign(&f, POD, "kube-proxy");
        let ok = verify(&f, &with_annotation(POD, &value)).expect("verifies");
        assert_eq!(ok.approval.policy, "kube-proxy");

        let unsigned = verify(&f, &workload(POD)).expect_err("unsigned");
        assert_eq!(
            (unsigned.kind(), unsigned.exit_code()),
            (RefusalKind::Unsigned, 10)
        );

        let other = fixture(POLICY);
        let foreign = sign(&other, POD, "kube-proxy");
        let untrusted = verify(&f, &with_annotation(POD, &foreign)).expect_err("untrusted");
        assert_eq!(untrusted.exit_code(), 11);
        assert!(matches!(
            untrusted,
            Refusal::BadApproval(ApprovalError::UnknownKey(_))
        ));
        let (payload, _) = value.split_once('.').expect("two parts");
        let (_, foreign_sig) = foreign.split_once('.').expect("two parts");
        let bad_sig = verify(
            &f,
            &with_annotation(POD, &format!("{payload}.{foreign_sig}")),
        )
        .expect_err("bad signature");
        assert_eq!(bad_sig.exit_code(), 11);
        let malformed = verify(&f, &with_annotation(POD, "garbage")).expect_err("malformed");
        assert_eq!(malformed.exit_code(), 11);

        let changed_yaml = POD.replace("'--v=$(LEVEL)'", "'--v=9'");
        let changed = verify(&f, &with_annotation(&changed_yaml, &value)).expect_err("changed");
        assert_eq!(changed.exit_code(), 12);
        let text = changed.to_string();
        assert!(text.contains("containers[0].args[0]"), "{text}");

        // Admitted by nothing: a policy set that does not match the namespace.
        let g = fixture(&POLICY.replace("[kube-system]", "[other]"));
        let value = sign(&g, POD, "kube-proxy");
        let refused = verify(&g, &with_annotation(POD, &value)).expect_err("no policy");
        assert_eq!(refused.exit_code(), 13);
        assert!(refused.to_string().contains("HG-MATCH-01"), "{refused}");

        // The approving policy is gone, although another one admits the pod.
        let value = sign(&f, POD, "retired-policy");
        let gone = verify(&f, &with_annotation(POD, &value)).expect_err("gone");
        assert_eq!(gone.exit_code(), 14);
        assert!(gone.to_string().contains("is not loaded"), "{gone}");
    }

    #[test]
    fn approving_policy_must_still_admit() {
        // "a-open" admits anything in the namespace and is evaluated first; "kube-proxy" (the
        // approving one) now forbids the hostPath.
        let both = format!(
            "{}\n---\n{}",
            POLICY.replace("C:\\var\\lib", "D:\\elsewhere"),
            "apiVersion: hostgate.io/v1alpha1\nkind: HostProcessPolicy\nmetadata: {name: a-open}\nspec:\n  match: {namespaces: [kube-system]}\n  allow: {volumes: {types: [configMap], hostPathPrefixes: ['C:\\']}}\n"
        );
        let f = fixture(&both);
        let value = sign(&f, POD, "kube-proxy");
        let err = verify(&f, &with_annotation(POD, &value)).expect_err("withdrawn");
        assert_eq!(err.kind(), RefusalKind::PolicyWithdrawn);
        assert!(err.to_string().contains("HG-VOLUME"), "{err}");
    }

    #[test]
    fn non_host_process_pods_are_refused() {
        let plain = POD
            .replace("hostProcess: true, ", "")
            .replace("hostNetwork: true", "hostNetwork: false");
        let f = fixture(POLICY);
        let value = sign(&f, &plain, "kube-proxy");
        let err = verify(&f, &with_annotation(&plain, &value)).expect_err("not HPC");
        assert_eq!(err, Refusal::NotHostProcess);
        assert_eq!(err.exit_code(), 13);
    }

    #[test]
    fn payload_round_trips_through_a_pod() {
        let w = workload(POD);
        let approved = ApprovedPod::describe(&w.pod().expect("pod"), "kube-system");
        let pod = pod_from_approval(&approved);
        let spec = pod.spec.as_ref().expect("spec");
        let view = PodView::new(spec, Some(&pod.metadata), SpecPath::POD);
        assert_eq!(ApprovedPod::describe(&view, "kube-system"), approved);

        let f = fixture(POLICY);
        let value = sign(&f, POD, "kube-proxy");
        let v = f.verifier.verify_value(&value).expect("shim form verifies");
        assert_eq!(v.decision.policy.as_deref(), Some("kube-proxy"));
        let g = fixture(&POLICY.replace("C:\\var\\lib", "D:\\x"));
        let value = sign(&g, POD, "kube-proxy");
        assert_eq!(
            g.verifier
                .verify_value(&value)
                .expect_err("policy")
                .exit_code(),
            13
        );
    }

    /// The node re-evaluates a policy that requires a RuntimeClass on the class the approval
    /// names: the same answer as at admission.
    #[test]
    fn the_approved_runtime_class_is_judged_on_the_node() {
        let requiring = POLICY.replace(
            "  allow:\n",
            "  allow:\n    runtimeClassNames: [hostgate]\n",
        );
        assert_ne!(requiring, POLICY);
        let f = fixture(&requiring);
        let routed = POD.replace(
            "hostNetwork: true",
            "hostNetwork: true\n  runtimeClassName: hostgate",
        );
        let value = sign(&f, &routed, "kube-proxy");
        let v = f
            .verifier
            .verify_value(&value)
            .expect("the routed pod verifies");
        assert_eq!(
            v.approval.pod.runtime_class_name.as_deref(),
            Some("hostgate")
        );
        verify(&f, &with_annotation(&routed, &value)).expect("the static form agrees");
        // An approval of a pod that named no class is refused by the same policy on the node.
        let unrouted = sign(&f, POD, "kube-proxy");
        let err = f.verifier.verify_value(&unrouted).expect_err("no class");
        assert_eq!(err.exit_code(), 13);
        assert!(err.to_string().contains("HG-RUNTIME-01"), "{err}");
    }

    fn runtime_env() -> Vec<(String, String)> {
        [
            ("LEVEL", "2"),
            ("LOG", "level 2"),
            ("NODE", "node-1"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    fn runtime_mounts() -> Vec<RuntimeMount> {
        vec![
            RuntimeMount {
                destination: "C:\\var\\lib\\kube-proxy".to_owned(),
                source: "C:\\var\\lib\\kube-proxy\\".to_owned(),
                read_only: false,
            },
            RuntimeMount {
                destination: "C:\\etc\\kube-proxy".to_owned(),
                source: "C:\\kubelet\\pods\\x\\volumes\\conf".to_owned(),
                read_only: true,
            },
            RuntimeMount {
                destination: "C:\\dev\\termination-log".to_owned(),
                source: "C:\\kubelet\\termination".to_owned(),
                read_only: false,
            },
        ]
    }

    #[test]
    fn container_runtime_view() {
        let f = fixture(POLICY);
        let approval = f
            .verifier
            .verify_value(&sign(&f, POD, "kube-proxy"))
            .expect("ok")
            .approval;
        let two = NonZeroU32::new(2).expect("non-zero");
        let opts = RuntimeCheck::new(two);
        let args: Vec<String> = ["kube-proxy.exe", "--hostname=node-1", "--v=2"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let env = runtime_env();
        let mounts = runtime_mounts();
        let good = RuntimeContainer {
            name: "proxy",
            args: &args,
            env: &env,
            user: Some("NT AUTHORITY\\SYSTEM"),
            mounts: &mounts,
            resources: RuntimeResources::Windows(OciWindowsResources {
                cpu_maximum: 2500,
                memory_limit_bytes: 128 << 20,
                ..OciWindowsResources::default()
            }),
        };
        let approved = check_container(&approval, &good, &opts).expect("matches");
        assert_eq!(approved.name, "proxy");

        let diff = |c: RuntimeContainer<'_>| match check_container(&approval, &c, &opts) {
            Err(Refusal::Changed { differences }) => differences.join("\n"),
            other => panic!("expected a difference, got {other:?}"),
        };
        assert!(
            diff(RuntimeContainer {
                name: "other",
                ..good
            })
            .contains("not in the approval")
        );
        let bad_args = vec!["cmd.exe".to_owned()];
        assert!(
            diff(RuntimeContainer {
                args: &bad_args,
                ..good
            })
            .contains("args")
        );
        let mut env = runtime_env();
        env[1].1 = "level 9".to_owned();
        env.push(("EVIL".to_owned(), "1".to_owned()));
        let d = diff(RuntimeContainer { env: &env, ..good });
        assert!(
            d.contains("env LOG: approved \"level 2\", found \"level 9\""),
            "{d}"
        );
        assert!(d.contains("env EVIL: not approved"), "{d}");
        let env: Vec<(String, String)> = runtime_env()
            .into_iter()
            .filter(|(k, _)| k != "NODE")
            .collect();
        assert!(
            diff(RuntimeContainer { env: &env, ..good })
                .contains("env NODE: approved (valueFrom) but missing")
        );
        assert!(
            diff(RuntimeContainer {
                user: Some("NT AUTHORITY\\Local service"),
                ..good
            })
            .contains("user")
        );
        let mut mounts = runtime_mounts();
        mounts[0].source = "C:\\Windows".to_owned();
        mounts[1].read_only = false;
        mounts.push(RuntimeMount {
            destination: "C:\\extra".to_owned(),
            source: "C:\\".to_owned(),
            read_only: true,
        });
        let d = diff(RuntimeContainer {
            mounts: &mounts,
            ..good
        });
        assert!(
            d.contains("approved source \"C:/var/lib/kube-proxy\""),
            "{d}"
        );
        assert!(d.contains("approved read-only, found writable"), "{d}");
        assert!(d.contains("mount \"C:\\\\extra\": not approved"), "{d}");
        let d = diff(RuntimeContainer {
            mounts: &mounts[..1],
            ..good
        });
        assert!(d.contains("approved but missing"), "{d}");
        let d = diff(RuntimeContainer {
            resources: RuntimeResources::Windows(OciWindowsResources::default()),
            ..good
        });
        assert!(d.contains("resources"), "{d}");
    }

    #[test]
    fn service_link_names() {
        for yes in [
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
            "KUBERNETES_SERVICE_PORT_HTTPS",
            "KUBERNETES_PORT",
            "KUBERNETES_PORT_443_TCP_ADDR",
            "MY_DB_PORT",
        ] {
            assert!(is_service_link_var(yes), "{yes}");
        }
        for no in ["PATH", "LD_PRELOAD", "kubernetes_port", "PORTAL", "SERVICE"] {
            assert!(!is_service_link_var(no), "{no}");
        }
    }
}
