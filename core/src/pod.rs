//! One view over a pod spec: pod level plus init, regular and ephemeral containers, with the
//! field paths the apiserver uses in its messages.
//!
//! Every rule walks containers through [`PodView::containers`], which visits them in the
//! apiserver's order (`VisitContainersWithPath`: initContainers, containers, ephemeralContainers),
//! so no rule can forget a list. Views borrow from the k8s-openapi objects and allocate nothing;
//! field paths are only rendered when a finding needs one.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, EphemeralContainer, Lifecycle, PodSpec, Probe,
    ResourceRequirements, SecurityContext, VolumeMount, WindowsSecurityContextOptions,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Pod annotation that makes hcsshim give the container the shim's own token (usually SYSTEM)
/// whatever `runAsUserName` says (HP-JOB-06, HP-JOB-11).
pub const ANNOTATION_INHERIT_USER: &str = "microsoft.com/hostprocess-inherit-user";
/// Pod annotation that moves the container's root file system (HP-JOB-03, HP-JOB-11).
pub const ANNOTATION_ROOTFS_LOCATION: &str = "microsoft.com/hostprocess-rootfs-location";
/// The annotations above count as requesting HostProcess power (`docs/rules.md`, HP-JOB-11).
pub const PRIVILEGED_ANNOTATIONS: [&str; 2] = [ANNOTATION_INHERIT_USER, ANNOTATION_ROOTFS_LOCATION];

/// Which container list a container belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContainerKind {
    /// `initContainers`
    Init,
    /// `containers`
    Regular,
    /// `ephemeralContainers`
    Ephemeral,
}

impl ContainerKind {
    /// The field name of the list in a pod spec.
    pub fn field(self) -> &'static str {
        match self {
            ContainerKind::Init => "initContainers",
            ContainerKind::Regular => "containers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        }
    }
}

/// The spec path of a pod spec inside its object: `spec` for a Pod, `spec.template.spec` for most
/// workloads, `spec.jobTemplate.spec.template.spec` for a CronJob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecPath(pub &'static str);

impl SpecPath {
    /// The path of a Pod's own spec.
    pub const POD: SpecPath = SpecPath("spec");
    /// The path of a pod template in Deployments, DaemonSets, StatefulSets, ReplicaSets,
    /// ReplicationControllers and Jobs.
    pub const TEMPLATE: SpecPath = SpecPath("spec.template.spec");
    /// The path of a CronJob's pod template.
    pub const CRON_TEMPLATE: SpecPath = SpecPath("spec.jobTemplate.spec.template.spec");

    /// `<spec>.<field>`
    pub fn field(self, field: &str) -> String {
        format!("{}.{field}", self.0)
    }

    /// The path of the metadata that belongs with this spec (`metadata` or
    /// `spec.template.metadata`).
    pub fn metadata(self) -> String {
        match self.0.strip_suffix("spec") {
            Some(prefix) if !prefix.is_empty() => format!("{prefix}metadata"),
            _ => "metadata".to_owned(),
        }
    }
}

impl fmt::Display for SpecPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A container of any of the three lists, by reference.
#[derive(Debug, Clone, Copy)]
pub struct ContainerRef<'a> {
    /// The list it belongs to.
    pub kind: ContainerKind,
    /// Its index in that list.
    pub index: usize,
    /// `name`
    pub name: &'a str,
    /// `image`
    pub image: Option<&'a str>,
    /// `command`
    pub command: &'a [String],
    /// `args`
    pub args: &'a [String],
    /// `workingDir`
    pub working_dir: Option<&'a str>,
    /// `env`
    pub env: &'a [EnvVar],
    /// `envFrom`
    pub env_from: &'a [EnvFromSource],
    /// `volumeMounts`
    pub volume_mounts: &'a [VolumeMount],
    /// `ports`
    pub ports: &'a [ContainerPort],
    /// `resources`
    pub resources: Option<&'a ResourceRequirements>,
    /// `securityContext`
    pub security_context: Option<&'a SecurityContext>,
    /// `lifecycle` (exec hooks run host commands in a HostProcess container)
    pub lifecycle: Option<&'a Lifecycle>,
    /// `livenessProbe`
    pub liveness_probe: Option<&'a Probe>,
    /// `readinessProbe`
    pub readiness_probe: Option<&'a Probe>,
    /// `startupProbe`
    pub startup_probe: Option<&'a Probe>,
    /// `restartPolicy` (sidecar init containers)
    pub restart_policy: Option<&'a str>,
    /// `stdin`
    pub stdin: bool,
    /// `tty`
    pub tty: bool,
}

fn slice<T>(v: &Option<Vec<T>>) -> &[T] {
    v.as_deref().unwrap_or(&[])
}

impl<'a> ContainerRef<'a> {
    fn regular(kind: ContainerKind, index: usize, c: &'a Container) -> Self {
        ContainerRef {
            kind,
            index,
            name: &c.name,
            image: c.image.as_deref(),
            command: slice(&c.command),
            args: slice(&c.args),
            working_dir: c.working_dir.as_deref(),
            env: slice(&c.env),
            env_from: slice(&c.env_from),
            volume_mounts: slice(&c.volume_mounts),
            ports: slice(&c.ports),
            resources: c.resources.as_ref(),
            security_context: c.security_context.as_ref(),
            lifecycle: c.lifecycle.as_ref(),
            liveness_probe: c.liveness_probe.as_ref(),
            readiness_probe: c.readiness_probe.as_ref(),
            startup_probe: c.startup_probe.as_ref(),
            restart_policy: c.restart_policy.as_deref(),
            stdin: c.stdin.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
        }
    }

    fn ephemeral(index: usize, c: &'a EphemeralContainer) -> Self {
        ContainerRef {
            kind: ContainerKind::Ephemeral,
            index,
            name: &c.name,
            image: c.image.as_deref(),
            command: slice(&c.command),
            args: slice(&c.args),
            working_dir: c.working_dir.as_deref(),
            env: slice(&c.env),
            env_from: slice(&c.env_from),
            volume_mounts: slice(&c.volume_mounts),
            ports: slice(&c.ports),
            resources: c.resources.as_ref(),
            security_context: c.security_context.as_ref(),
            lifecycle: c.lifecycle.as_ref(),
            liveness_probe: c.liveness_probe.as_ref(),
            readiness_probe: c.readiness_probe.as_ref(),
            startup_probe: c.startup_probe.as_ref(),
            restart_policy: c.restart_policy.as_deref(),
            stdin: c.stdin.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
        }
    }

    /// `securityContext.windowsOptions`
    pub fn windows_options(&self) -> Option<&'a WindowsSecurityContextOptions> {
        self.security_context?.windows_options.as_ref()
    }

    /// `securityContext.windowsOptions.hostProcess` as written on the container.
    pub fn host_process(&self) -> Option<bool> {
        self.windows_options()?.host_process
    }

    /// `securityContext.windowsOptions.runAsUserName` as written on the container.
    pub fn run_as_user_name(&self) -> Option<&'a str> {
        self.windows_options()?.run_as_user_name.as_deref()
    }

    /// The container's field path, e.g. `spec.initContainers[0]`.
    pub fn path(&self, spec: SpecPath) -> String {
        format!("{}.{}[{}]", spec.0, self.kind.field(), self.index)
    }

    /// A path below the container, e.g. `spec.containers[1].securityContext.windowsOptions`.
    pub fn path_to(&self, spec: SpecPath, rest: &str) -> String {
        format!("{}.{}[{}].{rest}", spec.0, self.kind.field(), self.index)
    }
}

/// A pod spec with its metadata and the path where it sits in its object.
#[derive(Debug, Clone, Copy)]
pub struct PodView<'a> {
    /// The spec.
    pub spec: &'a PodSpec,
    /// The pod's (or template's) metadata: labels and annotations live here.
    pub metadata: Option<&'a ObjectMeta>,
    /// Where `spec` sits in the object.
    pub path: SpecPath,
}

impl<'a> PodView<'a> {
    /// A view of `spec` at `path`.
    pub fn new(spec: &'a PodSpec, metadata: Option<&'a ObjectMeta>, path: SpecPath) -> Self {
        PodView {
            spec,
            metadata,
            path,
        }
    }

    /// Every container, in the apiserver's order: init, regular, ephemeral.
    pub fn containers(&self) -> impl Iterator<Item = ContainerRef<'a>> + 'a {
        let spec = self.spec;
        let init = slice(&spec.init_containers)
            .iter()
            .enumerate()
            .map(|(i, c)| ContainerRef::regular(ContainerKind::Init, i, c));
        let regular = spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| ContainerRef::regular(ContainerKind::Regular, i, c));
        let ephemeral = slice(&spec.ephemeral_containers)
            .iter()
            .enumerate()
            .map(|(i, c)| ContainerRef::ephemeral(i, c));
        init.chain(regular).chain(ephemeral)
    }

    /// Init and regular containers: the ones that run with resources in a job object.
    pub fn runnable_containers(&self) -> impl Iterator<Item = ContainerRef<'a>> + 'a {
        self.containers()
            .filter(|c| c.kind != ContainerKind::Ephemeral)
    }

    /// Number of containers in all three lists.
    pub fn container_count(&self) -> usize {
        slice(&self.spec.init_containers).len()
            + self.spec.containers.len()
            + slice(&self.spec.ephemeral_containers).len()
    }

    /// `spec.securityContext.windowsOptions`
    pub fn windows_options(&self) -> Option<&'a WindowsSecurityContextOptions> {
        self.spec
            .security_context
            .as_ref()?
            .windows_options
            .as_ref()
    }

    /// `spec.securityContext.windowsOptions.hostProcess` as written.
    pub fn pod_host_process(&self) -> Option<bool> {
        self.windows_options()?.host_process
    }

    /// Whether `c` is a HostProcess container: its own value, else the pod's (HP-KLT-01).
    pub fn is_host_process_container(&self, c: &ContainerRef<'_>) -> bool {
        c.host_process()
            .or_else(|| self.pod_host_process())
            .unwrap_or(false)
    }

    /// The `runAsUserName` a container runs as: its own value, else the pod's (HP-KLT-01).
    /// `None` means the image's default user.
    pub fn effective_run_as_user_name(&self, c: &ContainerRef<'a>) -> Option<&'a str> {
        c.run_as_user_name().or_else(|| {
            self.windows_options()
                .and_then(|w| w.run_as_user_name.as_deref())
        })
    }

    /// `spec.hostNetwork`, false when unset (it is never defaulted).
    pub fn host_network(&self) -> bool {
        self.spec.host_network.unwrap_or(false)
    }

    /// The pod's annotations.
    pub fn annotations(&self) -> Option<&'a BTreeMap<String, String>> {
        self.metadata?.annotations.as_ref()
    }

    /// The privileged `microsoft.com/hostprocess-*` annotations present on the pod.
    pub fn privileged_annotations(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let annotations = self.annotations();
        PRIVILEGED_ANNOTATIONS.into_iter().filter_map(move |key| {
            annotations
                .and_then(|a| a.get_key_value(key))
                .map(|(k, v)| (k.as_str(), v.as_str()))
        })
    }

    /// Whether the pod asks for HostProcess power: pod-level `hostProcess: true`, any HostProcess
    /// container, or a privileged `microsoft.com/hostprocess-*` annotation.
    pub fn requests_host_process(&self) -> bool {
        self.has_host_process_setting() || self.privileged_annotations().next().is_some()
    }

    /// Whether pod level or any container sets or inherits `hostProcess: true`.
    pub fn has_host_process_setting(&self) -> bool {
        self.pod_host_process() == Some(true)
            || self.containers().any(|c| c.host_process() == Some(true))
    }

    /// `spec.serviceAccountName`, falling back to the deprecated `serviceAccount`, then `default`
    /// as the ServiceAccount admission plugin would set it.
    pub fn service_account(&self) -> &'a str {
        self.spec
            .service_account_name
            .as_deref()
            .or(self.spec.service_account.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
    }

    /// `spec.os.name`, if set.
    pub fn os_name(&self) -> Option<&'a str> {
        self.spec.os.as_ref().map(|os| os.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec};

    fn container(name: &str, hp: Option<bool>) -> Container {
        Container {
            name: name.into(),
            security_context: hp.map(|hp| SecurityContext {
                windows_options: Some(WindowsSecurityContextOptions {
                    host_process: Some(hp),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn visits_all_lists_in_apiserver_order_with_paths() {
        let spec = PodSpec {
            init_containers: Some(vec![container("i0", None)]),
            containers: vec![container("c0", None), container("c1", None)],
            ephemeral_containers: Some(vec![EphemeralContainer {
                name: "e0".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let view = PodView::new(&spec, None, SpecPath::TEMPLATE);
        let seen: Vec<_> = view
            .containers()
            .map(|c| (c.name, c.path(view.path)))
            .collect();
        assert_eq!(
            seen,
            [
                ("i0", "spec.template.spec.initContainers[0]".to_owned()),
                ("c0", "spec.template.spec.containers[0]".to_owned()),
                ("c1", "spec.template.spec.containers[1]".to_owned()),
                ("e0", "spec.template.spec.ephemeralContainers[0]".to_owned()),
            ]
        );
        assert_eq!(view.container_count(), 4);
        assert_eq!(view.runnable_containers().count(), 3);
    }

    #[test]
    fn host_process_inheritance() {
        let spec = PodSpec {
            security_context: Some(PodSecurityContext {
                windows_options: Some(WindowsSecurityContextOptions {
                    host_process: Some(true),
                    run_as_user_name: Some("NT AUTHORITY\\Local service".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers: vec![container("a", None), container("b", Some(false))],
            ..Default::default()
        };
        let view = PodView::new(&spec, None, SpecPath::POD);
        let hp: Vec<_> = view
            .containers()
            .map(|c| view.is_host_process_container(&c))
            .collect();
        assert_eq!(hp, [true, false]);
        let c = view.containers().next().expect("one container");
        assert_eq!(
            view.effective_run_as_user_name(&c),
            Some("NT AUTHORITY\\Local service")
        );
        assert!(view.requests_host_process());
    }

    #[test]
    fn metadata_path_follows_spec_path() {
        assert_eq!(SpecPath::POD.metadata(), "metadata");
        assert_eq!(SpecPath::TEMPLATE.metadata(), "spec.template.metadata");
        assert_eq!(
            SpecPath::CRON_TEMPLATE.metadata(),
            "spec.jobTemplate.spec.template.metadata"
        );
    }
}
