//! The node fixture of the shim tests: a private containerd with the `hostgate` handler, a
//! node directory with trusted keys and policies, and the kubelet's translation of a Pod into
//! CRI calls.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostgate_core::approval::{SigningIdentity, generate_key_pair};
use hostgate_core::mutate::mutate_value;
use hostgate_core::policy::PolicySet;
use hostgate_core::policy::load::parse_policies;
use hostgate_node_harness::{
    ContainerSpec, Containerd, ContainerdOptions, Cri, Pod as CriPod, PodSpec, RuntimeHandler,
};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

pub const DEADLINE: Duration = Duration::from_secs(60);
pub const NAMESPACE: &str = "hg-shim";
pub const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-hostgate-v1");
/// An environment variable some tests add to find a container's processes in `/proc`.
pub const MARKER: &str = "HG_SHIM_MARKER";

/// Admits HostProcess pods in `hg-shim` running the test image, with hostPaths below `/tmp`.
pub const POLICY: &str = r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: shim-test}
spec:
  match: {namespaces: [hg-shim]}
  allow:
    images: ['docker.io/hostgate/busybox:test']
    runAsUserNames: ['NT AUTHORITY\SYSTEM']
    volumes: {types: [configMap, emptyDir], hostPathPrefixes: ['/tmp']}
  defaults: {runAsUserName: 'NT AUTHORITY\SYSTEM'}
"#;

/// A command that runs until SIGTERM, then exits 0, and prints `ready` once its trap is set.
pub const LONG_RUNNING: &str =
    "[sh, -c, 'trap \"exit 0\" TERM; echo ready; while :; do sleep 1; done']";

/// A HostProcess pod of one container `main` running `command`; `extra` is more container
/// fields (YAML flow entries, each ending with `, `).
pub fn pod_yaml(name: &str, command: &str, extra: &str) -> String {
    format!(
        "{{apiVersion: v1, kind: Pod, metadata: {{name: {name}, namespace: {NAMESPACE}, uid: {name}-uid}},
          spec: {{hostNetwork: true,
            securityContext: {{windowsOptions: {{hostProcess: true}}}},
            containers: [{{name: main, image: 'docker.io/hostgate/busybox:test', {extra}command: {command}}}]}}}}"
    )
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A node: containerd, its CRI client, the node directory and the signing key.
pub struct Node {
    pub cri: Cri,
    pub containerd: Containerd,
    pub dir: tempfile::TempDir,
    pub node_dir: PathBuf,
    pub signer: SigningIdentity,
    pub policies: PolicySet,
    /// The shim's job cgroups go below this parent (the node's `shim.yaml`), one per node.
    pub cgroup_parent: String,
}

impl Drop for Node {
    /// A failed test may leave jobs whose shim is gone: kill them with their cgroups.
    fn drop(&mut self) {
        for dir in job_dirs(&self.cgroup_parent) {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let (Ok(m), Ok(job)) = (
                hostgate_agent::job::sys::CgroupJobManager::new(
                    hostgate_agent::job::sys::CgroupConfig {
                        parent: self.cgroup_parent.clone().into(),
                        ..Default::default()
                    },
                ),
                hostgate_agent::job::JobName::new(name),
            ) {
                use hostgate_agent::job::JobManager as _;
                let _ = m.remove_stale(&job);
            }
        }
        for root in CGROUP_ROOTS {
            let _ = fs::remove_dir(Path::new(root).join(&self.cgroup_parent));
        }
    }
}

/// What [`Node::run`] created.
#[derive(Debug, Clone)]
pub struct Run {
    pub pod: CriPod,
    pub containers: Vec<String>,
}

fn policy_set(yaml: &str) -> PolicySet {
    let (list, errors) = parse_policies(yaml.as_bytes(), "test");
    assert!(errors.is_empty(), "{errors:?}");
    PolicySet::new(list).expect("unique names")
}

impl Node {
    /// containerd with the `hostgate` handler and a node directory trusting a new key.
    pub fn start(policy: &str) -> Self {
        Self::start_with(policy, |o| o)
    }

    /// [`Node::start`] with more containerd options.
    pub fn start_with(
        policy: &str,
        more: impl FnOnce(ContainerdOptions) -> ContainerdOptions,
    ) -> Self {
        Self::start_inner(policy, true, more)
    }

    /// A node whose containerd does not know the `hostgate` handler yet (for the installer);
    /// `shim_dir` is on containerd's `PATH`.
    pub fn start_without_handler(policy: &str, shim_dir: &Path) -> Self {
        let dir = shim_dir.to_owned();
        Self::start_inner(policy, false, move |o| o.path_prepend(dir))
    }

    fn start_inner(
        policy: &str,
        handler: bool,
        more: impl FnOnce(ContainerdOptions) -> ContainerdOptions,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let node_dir = dir.path().join("node");
        fs::create_dir_all(node_dir.join("trust")).expect("trust dir");
        fs::create_dir_all(node_dir.join("policies")).expect("policies dir");
        let (_, private, _) = generate_key_pair(&node_dir.join("trust")).expect("key pair");
        let signer = SigningIdentity::from_pem_file(&private).expect("signing key");
        // The private key stays out of the node's trust directory.
        let kept = dir.path().join("signing.pem");
        fs::rename(&private, &kept).expect("move the private key");
        fs::write(node_dir.join("policies/policy.yaml"), policy).expect("policy");
        let cgroup_parent = format!(
            "hostgate-shim-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        fs::write(
            node_dir.join("shim.yaml"),
            // The marker variable some tests add is not in any approval: tolerated here, as an
            // admin tolerates an image's own variables.
            format!(
                "cgroupParent: {cgroup_parent}\ngracePeriodSeconds: 2\ntoleratedEnv: [{MARKER}]\n"
            ),
        )
        .expect("shim settings");
        let mut options = ContainerdOptions::default().env("HOSTGATE_NODE_DIR", node_dir.clone());
        if handler {
            let shim_dir = Path::new(SHIM).parent().expect("shim directory").to_owned();
            options = options
                .handler(
                    RuntimeHandler::new("hostgate", "io.containerd.hostgate.v1")
                        .pod_annotation("hostgate.io/*"),
                )
                .path_prepend(shim_dir);
        }
        let containerd =
            Containerd::start(more(options)).unwrap_or_else(|e| panic!("containerd: {e}"));
        let cri = containerd.cri().expect("CRI client");
        Node {
            policies: policy_set(policy),
            dir,
            node_dir,
            signer,
            containerd,
            cri,
            cgroup_parent,
        }
    }

    /// The pod as `/mutate` (or `hostgate mutate --signing-key`) leaves it: defaulted and
    /// signed.
    pub fn approve(&self, yaml: &str) -> Pod {
        let value: Value = serde_yaml::from_str(yaml).expect("pod YAML");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let m = mutate_value(
            &self.policies,
            value,
            NAMESPACE,
            None,
            Some(&self.signer),
            now,
            Default::default(),
        )
        .expect("mutates");
        assert!(m.signed, "the test pod must be approved: {:?}", m.decision);
        serde_json::from_value(m.value).expect("a Pod")
    }

    /// The pod as written, without an approval.
    pub fn unsigned(&self, yaml: &str) -> Pod {
        let value: Value = serde_yaml::from_str(yaml).expect("pod YAML");
        serde_json::from_value(value).expect("a Pod")
    }

    /// The sandbox config the kubelet sends for `pod`, with the `hostgate` handler.
    pub fn pod_spec(&self, pod: &Pod) -> PodSpec {
        let meta = &pod.metadata;
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut spec = PodSpec::new(meta.name.clone().unwrap_or_default())
            .namespace(meta.namespace.clone().unwrap_or_default())
            .uid(format!("{}-{n}", meta.uid.clone().unwrap_or_default()))
            .runtime_handler("hostgate");
        for (k, v) in meta.annotations.clone().unwrap_or_default() {
            spec = spec.annotation(k, v);
        }
        spec
    }

    /// The container configs the kubelet sends for `pod`'s containers (Linux kubelet: no
    /// `windowsOptions`; `$(VAR)` expanded; limits as CFS quota and memory limit; hostPath
    /// volumes mounted at their path).
    pub fn container_specs(&self, pod: &Pod) -> Vec<ContainerSpec> {
        let spec = pod.spec.as_ref().expect("spec");
        let volumes: BTreeMap<String, String> = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| Some((v.name.clone(), v.host_path.as_ref()?.path.clone())))
            .collect();
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| {
                let env: BTreeMap<String, String> = c
                    .env
                    .iter()
                    .flatten()
                    .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                    .collect();
                let command = hostgate_agent::kubelet::process_args(
                    c.command.as_deref().unwrap_or_default(),
                    &[],
                    &env,
                );
                let args = hostgate_agent::kubelet::process_args(
                    &[],
                    c.args.as_deref().unwrap_or_default(),
                    &env,
                );
                let mut cs = ContainerSpec::new(c.name.clone())
                    .image(c.image.clone().unwrap_or_default())
                    .command(command)
                    .args(args);
                for e in c.env.iter().flatten() {
                    let value = hostgate_agent::kubelet::expand_with(
                        e.value.as_deref().unwrap_or(""),
                        &env,
                    );
                    cs = cs.env(e.name.clone(), value);
                }
                if let Some(w) = &c.working_dir {
                    cs = cs.working_dir(w.clone());
                }
                for m in c.volume_mounts.iter().flatten() {
                    if let Some(host) = volumes.get(&m.name) {
                        cs = cs.mount(
                            host.clone(),
                            m.mount_path.clone(),
                            m.read_only.unwrap_or(false),
                        );
                    }
                }
                let limits = c
                    .resources
                    .as_ref()
                    .and_then(|r| r.limits.clone())
                    .unwrap_or_default();
                let linux = hostgate_agent::kubelet::linux_resources(&limits).expect("limits");
                if linux.memory_limit_bytes > 0 {
                    cs.resources.memory_limit_bytes = Some(linux.memory_limit_bytes);
                }
                if linux.cpu_quota > 0 {
                    cs.resources.cpu_quota = Some(linux.cpu_quota);
                    cs.resources.cpu_period = i64::try_from(linux.cpu_period).ok();
                }
                cs
            })
            .collect()
    }

    /// RunPodSandbox, then CreateContainer + StartContainer for each container, in order;
    /// panics on any error.
    pub fn run(&self, pod: &Pod) -> Run {
        let cri_pod = self
            .cri
            .run_pod_sandbox(&self.pod_spec(pod))
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", self.containerd.log_tail(40)));
        let containers = self
            .container_specs(pod)
            .iter()
            .map(|c| {
                self.cri.run_container(&cri_pod, c).unwrap_or_else(|e| {
                    panic!("start {}: {e}\n{}", c.name, self.containerd.log_tail(40))
                })
            })
            .collect();
        Run {
            pod: cri_pod,
            containers,
        }
    }

    /// Creates `pod`'s sandbox and first container, expects `StartContainer` to fail, lets
    /// `inspect` look at the refused container (by id) while it still exists, removes both, and
    /// returns the error's text.
    pub fn start_refused(&self, pod: &Pod, inspect: impl FnOnce(&str)) -> String {
        let sandbox = self
            .cri
            .run_pod_sandbox(&self.pod_spec(pod))
            .expect("RunPodSandbox");
        let id = self
            .cri
            .create_container(&sandbox.id, &self.container_specs(pod)[0], &sandbox.config)
            .expect("CreateContainer");
        let err = self
            .cri
            .start_container(&id)
            .expect_err("StartContainer must fail")
            .to_string();
        inspect(&id);
        self.cri.remove_container(&id).expect("RemoveContainer");
        self.cri
            .stop_pod_sandbox(&sandbox.id)
            .expect("StopPodSandbox");
        self.cri
            .remove_pod_sandbox(&sandbox.id)
            .expect("RemovePodSandbox");
        err
    }

    /// Stops and removes everything of `run`.
    pub fn teardown(&self, run: &Run) {
        for id in &run.containers {
            self.cri.stop_container(id, 2).expect("StopContainer");
            self.cri.remove_container(id).expect("RemoveContainer");
        }
        self.cri
            .stop_pod_sandbox(&run.pod.id)
            .expect("StopPodSandbox");
        self.cri
            .remove_pod_sandbox(&run.pod.id)
            .expect("RemovePodSandbox");
    }

    /// No job cgroup of the shim left.
    pub fn assert_clean(&self) {
        let left = job_dirs(&self.cgroup_parent);
        assert!(left.is_empty(), "job cgroups left: {left:?}");
    }

    /// Waits until a container prints `ready` on its standard output.
    pub fn wait_ready(&self, id: &str) {
        if let Err(e) =
            self.cri
                .wait_log_line(id, hostgate_node_harness::Stream::Stdout, "ready", DEADLINE)
        {
            panic!("{e}\n{}", self.containerd.log_tail(40));
        }
    }

    /// The bundle directory of task `id`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.containerd
            .state_dir()
            .join("io.containerd.runtime.v2.task/k8s.io")
            .join(id)
    }

    /// The live shim processes serving the pod of sandbox `sandbox_id`.
    pub fn shims_of(&self, sandbox_id: &str) -> Vec<u32> {
        shim_processes()
            .into_iter()
            .filter(|(_, args)| args.iter().any(|a| a == sandbox_id))
            .map(|(pid, _)| pid)
            .collect()
    }
}

/// The cgroup hierarchies jobs live in on this machine (v1 controllers and the v2 tree).
pub const CGROUP_ROOTS: [&str; 5] = [
    "/sys/fs/cgroup/unified",
    "/sys/fs/cgroup/memory",
    "/sys/fs/cgroup/pids",
    "/sys/fs/cgroup/cpu,cpuacct",
    "/sys/fs/cgroup",
];

/// The job cgroups below `parent`, in every hierarchy.
pub fn job_dirs(parent: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for root in CGROUP_ROOTS {
        for entry in fs::read_dir(Path::new(root).join(parent))
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path().is_dir() {
                found.push(entry.path());
            }
        }
    }
    found
}

/// Live `containerd-shim-hostgate-v1` processes and their arguments.
pub fn shim_processes() -> Vec<(u32, Vec<String>)> {
    let mut found = Vec::new();
    for pid in hostgate_test_support::procs::all_pids() {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let zombie = hostgate_test_support::procs::stat_of(pid).is_none_or(|s| s.state == 'Z');
        if !zombie
            && args
                .first()
                .is_some_and(|a| a.ends_with("containerd-shim-hostgate-v1"))
        {
            found.push((pid, args));
        }
    }
    found
}
