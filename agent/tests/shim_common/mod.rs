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
    pub dir: tempfile::TempDir,
    pub node_dir: PathBuf,
    pub signer: SigningIdentity,
    pub policies: PolicySet,
    pub containerd: Containerd,
    pub cri: Cri,
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
        let shim_dir = Path::new(SHIM).parent().expect("shim directory").to_owned();
        let options = ContainerdOptions::default()
            .handler(
                RuntimeHandler::new("hostgate", "io.containerd.hostgate.v1")
                    .pod_annotation("hostgate.io/*"),
            )
            .path_prepend(shim_dir)
            .env("HOSTGATE_NODE_DIR", node_dir.clone())
            .env("HOSTGATE_TEST_CGROUP", "1");
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
        let left = shim_cgroups();
        assert!(left.is_empty(), "job cgroups left: {left:?}");
    }
}

/// The job cgroups below the shim's parent, in every hierarchy.
pub fn shim_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for root in [
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup",
    ] {
        let parent = Path::new(root).join("hostgate");
        for entry in fs::read_dir(&parent).into_iter().flatten().flatten() {
            if entry.path().is_dir() && entry.file_name().len() == 64 {
                found.push(entry.path());
            }
        }
    }
    found
}
