//! The gate: may this container run here? One decision per container, made in the `start`
//! action (so that a refusal is the container's `StartError`) and again in `Create` (the
//! authoritative one: containerd 2.x does not run `start` for later containers of a pod).
//!
//! The pod sandbox is a placeholder task that runs nothing, so it always passes. A container
//! runs only if all of these hold, each refusal with its own reason ([`GateRefusal`]):
//!
//! 1. the spec came from CRI (a container type annotation) and the node's trust keys and
//!    policies load (else nothing runs: fail closed);
//! 2. the pod's `hostgate.io/approval` annotation (let through by the handler's
//!    `pod_annotations`) verifies with a trusted key, the node's policies admit the pod it
//!    describes and the approving policy still does ([`Verifier::verify_value`]);
//! 3. the pod's namespace is the approved one, and the container is one of the approved
//!    containers. A container that is not is an ephemeral container (`kubectl debug`): it runs
//!    only if the approving policy's `spec.allow.ephemeralContainers` allows its image, argv
//!    and account (`HG-EPHEMERAL-01`…`04`, [`ephemeral_approval`]), and then as an
//!    approved container with that argv and nothing else: no volume mounts, no variables
//!    beyond the runtime's, no limits;
//! 4. on Windows, containerd marked the container as a HostProcess container;
//! 5. the image is the approved one (compared as references: `busybox` is
//!    `docker.io/library/busybox:latest`; an approved digest must be the runtime's digest);
//! 6. every mount is accounted for: an approved volume mount (a hostPath at its approved path,
//!    any other volume below this pod's directory in the kubelet's root), a runtime default
//!    (`proc`, `sysfs`, `tmpfs`… at `/proc`, `/dev`, `/sys`, `/run`), one of the kubelet's
//!    files of this pod (`etc-hosts`, the termination log) or one of containerd's files of
//!    this sandbox (`hostname`, `resolv.conf`, `shm`);
//! 7. the process, environment, user and resources match the approved container
//!    ([`check_container`], the comparison the static runner makes too): argv after the
//!    kubelet's `$(VAR)` expansion, every approved variable present and equal (extra ones
//!    only `PATH`, `HOSTNAME`, service links or [`Settings::tolerated_env`]), the user where
//!    the spec carries one (Windows), limits not above the approved ones.
//!
//! Everything here is pure: the decision depends on the request and the node's state only.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::sync::Arc;

use hostgate_core::approval::{Approval, ApprovedContainer};
use hostgate_core::policy::volume_type;
use hostgate_core::rules::ephemeral::EphemeralRequest;
use k8s_openapi::api::core::v1::WindowsSecurityContextOptions;

use super::node::{NodeError, Settings};
use super::request::{RuntimeRequest, SpecMount, TaskKind, annotations};
use crate::container::Mount;
use crate::job::JobLimits;
use crate::verify::{
    Refusal, RuntimeCheck, RuntimeContainer, RuntimeMount, Verifier, check_container,
};

/// Variables containerd sets in every container on its own.
pub const RUNTIME_ENV: [&str; 2] = ["PATH", "HOSTNAME"];

/// Why a container is not run. Each variant is a distinct reason.
#[derive(Debug, thiserror::Error)]
pub enum GateRefusal {
    /// The bundle's runtime spec cannot be read.
    #[error("cannot read the runtime spec")]
    Spec(#[source] super::request::RequestError),
    /// The spec does not say it is a CRI container.
    #[error(
        "not created through CRI (no {} annotation): the hostgate runtime only runs approved pod containers",
        annotations::CONTAINER_TYPE
    )]
    NotFromCri,
    /// A CRI annotation the gate needs is missing.
    #[error("the runtime spec has no {0} annotation")]
    MissingAnnotation(&'static str),
    /// The node's keys, policies or settings are unavailable.
    #[error("the node cannot verify approvals")]
    Node(#[source] Arc<NodeError>),
    /// The approval or the policies refuse the pod (unsigned, bad signature, not admitted,
    /// policy withdrawn) or the container differs from the approved one.
    #[error(transparent)]
    Verify(#[from] Refusal),
    /// The pod runs in another namespace than the approved one.
    #[error("approved for namespace {approved:?}, but the pod runs in {runtime:?}")]
    Namespace {
        /// The approved namespace.
        approved: String,
        /// The namespace CRI reports.
        runtime: String,
    },
    /// The container is not one of the approved containers, so it is an ephemeral container
    /// (`kubectl debug`), and the approving policy does not allow it.
    #[error(
        "container {name:?} is not in the approval, and the approving policy does not allow it as an ephemeral container: {reasons}"
    )]
    Ephemeral {
        /// The container's name.
        name: String,
        /// The policy's findings, joined.
        reasons: String,
    },
    /// On Windows, containerd did not mark the container as a HostProcess container.
    #[error(
        "not a HostProcess container ({} is {value:?}): the hostgate runtime only runs HostProcess containers",
        annotations::WINDOWS_HOST_PROCESS
    )]
    NotHostProcess {
        /// The annotation's value (empty when absent).
        value: String,
    },
    /// The image is not the approved one.
    #[error("image {runtime:?} is not the approved image {approved:?}")]
    Image {
        /// The approved image.
        approved: String,
        /// The image CRI reports.
        runtime: String,
    },
    /// A mount is not accounted for.
    #[error("mount {destination:?} from {source_path:?} is not allowed: {reason}")]
    Mount {
        /// Where it would appear.
        destination: String,
        /// What would be mounted.
        source_path: String,
        /// Why it is not allowed.
        reason: String,
    },
    /// The working directory is not the approved one.
    #[error("working directory {runtime:?} is not the approved {approved:?}")]
    WorkingDir {
        /// The approved one.
        approved: String,
        /// The spec's.
        runtime: String,
    },
    /// The resources cannot be turned into job limits.
    #[error("invalid resources: {0}")]
    Resources(String),
}

/// What the gate lets run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The pod sandbox: a placeholder without a process.
    Sandbox,
    /// An approved container.
    Container(Box<Admitted>),
}

/// An approved container and how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The policy that approved the pod (and, for an ephemeral container, allowed it).
    pub policy: String,
    /// The container's name.
    pub name: String,
    /// Whether it is an ephemeral container, allowed by the policy rather than the approval.
    pub ephemeral: bool,
    /// `argv`, as the spec has it (verified).
    pub args: Vec<String>,
    /// The environment, as the spec has it (verified).
    pub env: Vec<(String, String)>,
    /// The approved working directory (`None`: the sandbox).
    pub working_dir: Option<String>,
    /// The user (Windows).
    pub user: Option<String>,
    /// The approved volume mounts, to expose in the sandbox.
    pub mounts: Vec<Mount>,
    /// The job's limits: the spec's resources (at most the approved limits).
    pub limits: JobLimits,
}

/// The node's side of the decision, read once per shim process.
#[derive(Debug, Clone)]
pub struct Gate {
    verifier: Result<Verifier, Arc<NodeError>>,
    settings: Settings,
    host_logical_processors: NonZeroU32,
    windows: bool,
}

impl Gate {
    /// A gate over the node's verifier (or why there is none), its settings and CPU count.
    /// `windows`: specs come from a Windows kubelet (user names compared, the HostProcess
    /// annotation required).
    pub fn new(
        verifier: Result<Verifier, NodeError>,
        settings: Settings,
        host_logical_processors: NonZeroU32,
        windows: bool,
    ) -> Self {
        Self {
            verifier: verifier.map_err(Arc::new),
            settings,
            host_logical_processors,
            windows,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Decides on one task.
    pub fn admit(&self, req: &RuntimeRequest) -> Result<Admission, GateRefusal> {
        match req.kind {
            None => return Err(GateRefusal::NotFromCri),
            Some(TaskKind::Sandbox) => return Ok(Admission::Sandbox),
            Some(TaskKind::Container) => {}
        }
        let name = req
            .container_name
            .as_deref()
            .ok_or(GateRefusal::MissingAnnotation(annotations::CONTAINER_NAME))?;
        if req.pod.namespace.is_empty() {
            return Err(GateRefusal::MissingAnnotation(
                annotations::SANDBOX_NAMESPACE,
            ));
        }
        let verifier = self
            .verifier
            .as_ref()
            .map_err(|e| GateRefusal::Node(Arc::clone(e)))?;
        let value = req
            .annotation(hostgate_core::approval::ANNOTATION)
            .ok_or(Refusal::Unsigned)?;
        let verified = verifier.verify_value(value)?;
        if verified.approval.pod.namespace != req.pod.namespace {
            return Err(GateRefusal::Namespace {
                approved: verified.approval.pod.namespace.clone(),
                runtime: req.pod.namespace.clone(),
            });
        }
        let ephemeral = verified.approval.container(name).is_none();
        let approval = if ephemeral {
            Cow::Owned(ephemeral_approval(verifier, &verified.approval, name, req)?)
        } else {
            Cow::Borrowed(&verified.approval)
        };
        let approval = approval.as_ref();
        let approved = approval
            .container(name)
            .ok_or_else(|| GateRefusal::Ephemeral {
                name: name.to_owned(),
                reasons: "it is missing from the approval it was added to".to_owned(),
            })?;
        if self.windows {
            let value = req
                .annotation(annotations::WINDOWS_HOST_PROCESS)
                .unwrap_or("");
            if value != "true" {
                return Err(GateRefusal::NotHostProcess {
                    value: value.to_owned(),
                });
            }
        }
        check_image(approved, req.image.as_deref())?;
        let mounts = self.classify_mounts(req, approval, approved)?;
        if let Some(want) = approved.working_dir.as_deref().filter(|w| !w.is_empty())
            && req.cwd.as_deref() != Some(want)
        {
            return Err(GateRefusal::WorkingDir {
                approved: want.to_owned(),
                runtime: req.cwd.clone().unwrap_or_default(),
            });
        }
        let mut check = RuntimeCheck::new(self.host_logical_processors);
        check.extra_mount_destinations.clear();
        check.extra_env = RUNTIME_ENV
            .iter()
            .map(|v| (*v).to_owned())
            .chain(self.settings.tolerated_env.iter().cloned())
            .collect();
        check.compare_user = self.windows;
        check_container(
            approval,
            &RuntimeContainer {
                name,
                args: &req.args,
                env: &req.env,
                user: req.user_name.as_deref(),
                mounts: &mounts,
                resources: req.resources,
            },
            &check,
        )?;
        let limits = req
            .resources
            .job_limits(self.host_logical_processors)
            .map_err(GateRefusal::Resources)?;
        Ok(Admission::Container(Box::new(Admitted {
            policy: approval.policy.clone(),
            name: name.to_owned(),
            ephemeral,
            args: req.args.clone(),
            env: req.env.clone(),
            working_dir: approved.working_dir.clone().filter(|w| !w.is_empty()),
            user: req.user_name.clone(),
            mounts: mounts
                .iter()
                .map(|m| Mount {
                    source: m.source.clone().into(),
                    destination: m.destination.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            limits,
        })))
    }

    /// Splits the spec's mounts into the approved volume mounts (returned, for
    /// [`check_container`] to compare) and those the runtime adds on its own (accepted here
    /// when they are what they claim to be); anything else is refused.
    fn classify_mounts(
        &self,
        req: &RuntimeRequest,
        approval: &Approval,
        approved: &ApprovedContainer,
    ) -> Result<Vec<RuntimeMount>, GateRefusal> {
        let pod_dir = format!(
            "{}/pods/{}",
            normalize(&self.settings.kubelet_root_dir),
            req.pod.uid
        );
        let mut volume_mounts = Vec::new();
        for m in &req.mounts {
            let refuse = |reason: &str| GateRefusal::Mount {
                destination: m.destination.clone(),
                source_path: m.source.clone(),
                reason: reason.to_owned(),
            };
            if m.source.split(['/', '\\']).any(|c| c == "..") {
                return Err(refuse("the source path contains `..`"));
            }
            let source = normalize(&m.source);
            let vm = approved
                .volume_mounts
                .iter()
                .find(|vm| normalize(&vm.mount_path) == normalize(&m.destination));
            if let Some(vm) = vm {
                let volume = approval.pod.volumes.iter().find(|v| v.name == vm.name);
                let host_path = volume.is_some_and(|v| volume_type(v) == "hostPath");
                if !host_path {
                    if req.pod.uid.is_empty() {
                        return Err(GateRefusal::MissingAnnotation(annotations::SANDBOX_UID));
                    }
                    if !under(&source, &pod_dir) {
                        return Err(refuse(&format!(
                            "volume {:?} must come from this pod's kubelet directory {pod_dir}",
                            vm.name
                        )));
                    }
                }
                volume_mounts.push(RuntimeMount {
                    destination: m.destination.clone(),
                    source: m.source.clone(),
                    read_only: m.read_only,
                });
                continue;
            }
            if is_runtime_default(m) {
                continue;
            }
            if !req.pod.uid.is_empty() && is_kubelet_pod_file(&source, &pod_dir, approved) {
                continue;
            }
            if is_sandbox_file(m, &source, &req.pod.sandbox_id) {
                continue;
            }
            return Err(refuse(
                "it is neither an approved volume mount nor a file the kubelet or containerd provides for this pod",
            ));
        }
        Ok(volume_mounts)
    }
}

/// The approval extended with ephemeral container `name`, if the approving policy allows what
/// the runtime is asked to run: its image, its argv (after the kubelet's `$(VAR)` expansion, and
/// with the image's entrypoint resolved, so a policy's `[]` entrypoint command never matches
/// here) and its account (the spec's user on Windows, else the pod's). The approving policy is
/// the one to ask: [`Verifier::verify_value`] has just checked that it is loaded and still
/// admits the pod.
///
/// The added container is what the gate then compares the spec with: this argv, this image, no
/// variables, mounts or limits of its own (Kubernetes allows an ephemeral container neither
/// resources nor ports; a volume mount would need an approval to say which volume it may see),
/// and the pod's account unless the policy lists ephemeral accounts.
fn ephemeral_approval(
    verifier: &Verifier,
    approval: &Approval,
    name: &str,
    req: &RuntimeRequest,
) -> Result<Approval, GateRefusal> {
    let refuse = |reasons: String| GateRefusal::Ephemeral {
        name: name.to_owned(),
        reasons,
    };
    let policy = verifier
        .policies()
        .get(&approval.policy)
        .ok_or_else(|| refuse(format!("policy {:?} is not loaded", approval.policy)))?;
    let image = req
        .image
        .as_deref()
        .ok_or(GateRefusal::MissingAnnotation(annotations::IMAGE_NAME))?;
    let pod_user = approval
        .pod
        .windows_options
        .as_ref()
        .and_then(|w| w.run_as_user_name.as_deref());
    let findings = policy.check_ephemeral(&EphemeralRequest {
        image,
        argv: &req.args,
        run_as_user_name: req.user_name.as_deref().or(pod_user),
    });
    if !findings.is_empty() {
        let reasons: Vec<String> = findings
            .iter()
            .map(|f| format!("[{}] {}", f.rule, f.message))
            .collect();
        return Err(refuse(reasons.join("; ")));
    }
    let windows_options = req
        .user_name
        .as_ref()
        .filter(|_| policy.ephemeral().lists_accounts())
        .map(|user| WindowsSecurityContextOptions {
            host_process: Some(true),
            run_as_user_name: Some(user.clone()),
            ..WindowsSecurityContextOptions::default()
        });
    let mut extended = approval.clone();
    extended.pod.containers.push(ApprovedContainer {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        command: req.args.clone(),
        windows_options,
        ..ApprovedContainer::default()
    });
    Ok(extended)
}

/// Pseudo file systems the runtime mounts in every Linux container. A host process sees the
/// host's anyway; they carry no host data of their own.
fn is_runtime_default(m: &SpecMount) -> bool {
    const KINDS: [&str; 7] = [
        "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2",
    ];
    const ROOTS: [&str; 4] = ["/proc", "/dev", "/sys", "/run"];
    let destination = normalize(&m.destination);
    KINDS.contains(&m.kind.as_str())
        && !m.source.starts_with(['/', '\\'])
        && ROOTS.iter().any(|r| under(&destination, r))
}

/// The kubelet's own files of this pod: its hosts file and the container's termination log.
fn is_kubelet_pod_file(source: &str, pod_dir: &str, approved: &ApprovedContainer) -> bool {
    source == format!("{pod_dir}/etc-hosts")
        || under(source, &format!("{pod_dir}/containers/{}", approved.name))
}

/// containerd's per-sandbox files (`/etc/hostname`, `/etc/resolv.conf`, `/etc/hosts`,
/// `/dev/shm`), kept below `…/io.containerd.grpc.v1.cri/sandboxes/<sandbox id>/`.
fn is_sandbox_file(m: &SpecMount, source: &str, sandbox_id: &str) -> bool {
    const DESTINATIONS: [&str; 4] = [
        "/etc/hostname",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/dev/shm",
    ];
    !sandbox_id.is_empty()
        && DESTINATIONS.contains(&normalize(&m.destination).as_str())
        && source.contains(&format!(
            "/io.containerd.grpc.v1.cri/sandboxes/{sandbox_id}/"
        ))
}

/// `/` separators, no trailing separator, a lower-case drive letter.
fn normalize(path: &str) -> String {
    let mut s = path.replace('\\', "/");
    while s.len() > 1 && s.ends_with('/') {
        s.pop();
    }
    let b = s.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_uppercase() {
        s.replace_range(0..1, &s[0..1].to_ascii_lowercase());
    }
    s
}

/// Whether `path` is `dir` or below it (component-wise).
fn under(path: &str, dir: &str) -> bool {
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn check_image(approved: &ApprovedContainer, runtime: Option<&str>) -> Result<(), GateRefusal> {
    let Some(want) = approved.image.as_deref().filter(|i| !i.is_empty()) else {
        return Ok(());
    };
    let runtime = runtime.ok_or(GateRefusal::MissingAnnotation(annotations::IMAGE_NAME))?;
    if same_image(want, runtime) {
        Ok(())
    } else {
        Err(GateRefusal::Image {
            approved: want.to_owned(),
            runtime: runtime.to_owned(),
        })
    }
}

/// An image reference split as the container runtimes normalise it.
#[derive(Debug, PartialEq, Eq)]
struct ImageRef {
    /// `registry/repository`, with `docker.io` and `library/` filled in.
    name: String,
    /// The tag; `latest` when neither tag nor digest is given.
    tag: Option<String>,
    /// `sha256:…`.
    digest: Option<String>,
}

fn parse_image(reference: &str) -> ImageRef {
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d.to_owned())),
        None => (reference, None),
    };
    // A tag follows the last `:` after the last `/` (a registry port comes before a `/`).
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_owned())),
        None => (rest, None),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_registry = name.contains('/') && (first.contains(['.', ':']) || first == "localhost");
    let name = match (has_registry, name.contains('/')) {
        (true, _) => name.to_owned(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    let tag = match (&tag, &digest) {
        (None, None) => Some("latest".to_owned()),
        _ => tag,
    };
    ImageRef { name, tag, digest }
}

/// Whether the image CRI reports is the approved one: the same repository, and the approved
/// digest if there is one, else the approved tag (a runtime that adds the digest to the tag is
/// fine; one that reports only a digest for a tag-approved image is refused, since nothing
/// here can tell what the tag pointed at).
pub fn same_image(approved: &str, runtime: &str) -> bool {
    let a = parse_image(approved);
    let r = parse_image(runtime);
    if a.name != r.name {
        return false;
    }
    match (&a.digest, &r.digest) {
        (Some(want), Some(got)) => want == got,
        (Some(_), None) => false,
        (None, _) => a.tag == r.tag,
    }
}

#[cfg(test)]
mod tests;
