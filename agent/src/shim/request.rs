//! What containerd asks the shim to run, read from the bundle's `config.json` (the OCI runtime
//! spec containerd's CRI plugin wrote for the container) into the fields the gate compares.
//!
//! The shim sees no Pod: only the spec's process, mounts and resources, the CRI annotations
//! containerd adds to every spec, and the pod annotations the runtime handler lets through
//! (`pod_annotations`). `docs/node-shim.md` lists them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::path::Path;

use oci_spec::runtime::Spec;

use crate::job::limits::OciWindowsResources;
use crate::kubelet::LinuxResources;
use crate::verify::RuntimeResources;

/// CRI annotations containerd puts on every container spec it creates.
pub mod annotations {
    /// `sandbox` for the pod sandbox, `container` for the pod's containers.
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    /// The sandbox (pod) id: the same for every container of a pod.
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    /// The pod's name.
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    /// The pod's namespace.
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    /// The pod's UID.
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    /// The container's name in the pod spec.
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    /// The image, as the kubelet named it.
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    /// Set by containerd on Windows: whether the sandbox is a HostProcess sandbox (`true`).
    pub const WINDOWS_HOST_PROCESS: &str = "microsoft.com/hostprocess-container";
}

/// Largest `config.json` read. Real specs are a few KiB; the pod annotations in it are
/// bounded by the apiserver (256 KiB in all).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// What kind of task a spec describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// A pod sandbox: a placeholder task without a process.
    Sandbox,
    /// A container of a pod.
    Container,
}

/// The pod a container belongs to, from the CRI annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
    /// The sandbox id that groups the pod's containers.
    pub sandbox_id: String,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One mount of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecMount {
    /// Where the container sees it.
    pub destination: String,
    /// What is mounted (a host path for bind mounts, a name like `proc` otherwise).
    pub source: String,
    /// The mount type (`bind`, `proc`, `tmpfs`, … or empty).
    pub kind: String,
    /// Whether it is read-only (`ro` among the options).
    pub read_only: bool,
}

/// What containerd asks to run, as the gate needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeRequest {
    /// Sandbox or container; `None` when the spec carries no CRI container type (not created
    /// through CRI).
    pub kind: Option<TaskKind>,
    /// The pod, from the CRI annotations (fields empty when absent).
    pub pod: PodRef,
    /// The container's name (CRI annotation).
    pub container_name: Option<String>,
    /// The image (CRI annotation).
    pub image: Option<String>,
    /// Every annotation of the spec.
    pub annotations: BTreeMap<String, String>,
    /// `process.args`.
    pub args: Vec<String>,
    /// `process.env`, in order.
    pub env: Vec<(String, String)>,
    /// `process.cwd` (`None` when empty).
    pub cwd: Option<String>,
    /// `process.user.username` (Windows specs).
    pub user_name: Option<String>,
    /// `mounts`.
    pub mounts: Vec<SpecMount>,
    /// `windows.resources` when present, else `linux.resources`.
    pub resources: RuntimeResources,
    /// `root.path` (the rootfs, relative to the bundle unless absolute).
    pub root_path: Option<String>,
}

/// Why `config.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The file is not an OCI runtime spec.
    #[error("{path} is not an OCI runtime spec")]
    Malformed {
        /// The file.
        path: String,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },
}

impl RuntimeRequest {
    /// Reads `<bundle>/config.json`.
    pub fn read_bundle(bundle: &Path) -> Result<Self, RequestError> {
        let path = bundle.join("config.json");
        let shown = path.display().to_string();
        let io = |source| RequestError::Io {
            path: shown.clone(),
            source,
        };
        let file = fs::File::open(&path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(RequestError::TooLarge { path: shown });
        }
        Self::from_json(&bytes).map_err(|source| RequestError::Malformed {
            path: shown,
            source,
        })
    }

    /// Parses a runtime spec.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let spec: Spec = serde_json::from_slice(bytes)?;
        Ok(Self::from_spec(&spec))
    }

    /// The fields of a parsed spec.
    pub fn from_spec(spec: &Spec) -> Self {
        let annotations: BTreeMap<String, String> = spec
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let get = |key: &str| annotations.get(key).cloned();
        let kind = match annotations
            .get(annotations::CONTAINER_TYPE)
            .map(String::as_str)
        {
            Some("sandbox") => Some(TaskKind::Sandbox),
            Some("container") => Some(TaskKind::Container),
            _ => None,
        };
        let pod = PodRef {
            namespace: get(annotations::SANDBOX_NAMESPACE).unwrap_or_default(),
            name: get(annotations::SANDBOX_NAME).unwrap_or_default(),
            uid: get(annotations::SANDBOX_UID).unwrap_or_default(),
            sandbox_id: get(annotations::SANDBOX_ID).unwrap_or_default(),
        };
        let process = spec.process().as_ref();
        let args = process.and_then(|p| p.args().clone()).unwrap_or_default();
        let env = process
            .and_then(|p| p.env().as_ref())
            .map(|env| {
                env.iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (kv.clone(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cwd = process
            .map(|p| p.cwd().to_string_lossy().into_owned())
            .filter(|c| !c.is_empty());
        let user_name = process
            .and_then(|p| p.user().username().clone())
            .filter(|u| !u.is_empty());
        let mounts = spec
            .mounts()
            .as_ref()
            .map(|mounts| {
                mounts
                    .iter()
                    .map(|m| SpecMount {
                        destination: m.destination().to_string_lossy().into_owned(),
                        source: m
                            .source()
                            .as_ref()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        kind: m.typ().clone().unwrap_or_default(),
                        read_only: m
                            .options()
                            .as_ref()
                            .is_some_and(|o| o.iter().any(|o| o.eq_ignore_ascii_case("ro"))),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let windows = spec.windows().as_ref().and_then(|w| w.resources());
        let resources = match windows {
            Some(w) => {
                // oci-spec 0.9 generates no getters for `WindowsResources`' fields; its
                // serialised form has them.
                let v = serde_json::to_value(w).unwrap_or_default();
                let num = |a: &str, b: &str| v[a][b].as_u64().unwrap_or(0);
                RuntimeResources::Windows(OciWindowsResources {
                    cpu_count: num("cpu", "count"),
                    cpu_maximum: num("cpu", "maximum"),
                    cpu_shares: num("cpu", "shares"),
                    memory_limit_bytes: num("memory", "limit"),
                })
            }
            None => {
                let linux = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
                let cpu = linux.and_then(|r| r.cpu().as_ref());
                RuntimeResources::Linux(LinuxResources {
                    cpu_quota: cpu.and_then(|c| c.quota()).unwrap_or(0),
                    cpu_period: cpu.and_then(|c| c.period()).unwrap_or(0),
                    memory_limit_bytes: linux
                        .and_then(|r| r.memory().as_ref())
                        .and_then(|m| m.limit())
                        .unwrap_or(0),
                })
            }
        };
        let root_path = spec
            .root()
            .as_ref()
            .map(|r| r.path().to_string_lossy().into_owned());
        RuntimeRequest {
            kind,
            pod,
            container_name: get(annotations::CONTAINER_NAME),
            image: get(annotations::IMAGE_NAME),
            annotations,
            args,
            env,
            cwd,
            user_name,
            mounts,
            resources,
            root_path,
        }
    }

    /// The annotation's value, if present.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// `<pod> container <name>` for messages.
    pub fn describe(&self) -> String {
        match (&self.kind, &self.container_name) {
            (Some(TaskKind::Sandbox), _) => format!("pod {} sandbox", self.pod),
            (_, Some(name)) => format!("pod {} container {name:?}", self.pod),
            _ => format!("pod {} (unnamed container)", self.pod),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container spec shaped like the one containerd 1.6 writes for a Linux kubelet.
    pub(crate) const LINUX_SPEC: &str = r#"{
      "ociVersion": "1.0.2-dev",
      "process": {
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo hi"],
        "env": ["PATH=/usr/bin:/bin", "HOSTNAME=node", "A=b=c"],
        "cwd": "/"
      },
      "root": {"path": "rootfs"},
      "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]},
        {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/kubelet/pods/u1/etc-hosts", "options": ["rbind", "rprivate", "rw"]},
        {"destination": "/cfg", "type": "bind", "source": "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~configmap/cfg", "options": ["rbind", "ro"]}
      ],
      "annotations": {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": "main",
        "io.kubernetes.cri.sandbox-id": "abc",
        "io.kubernetes.cri.sandbox-name": "pod-1",
        "io.kubernetes.cri.sandbox-namespace": "ns",
        "io.kubernetes.cri.sandbox-uid": "u1",
        "io.kubernetes.cri.image-name": "docker.io/hostgate/busybox:test",
        "hostgate.io/approval": "x.y"
      },
      "linux": {"resources": {"memory": {"limit": 67108864}, "cpu": {"quota": 50000, "period": 100000}}}
    }"#;

    #[test]
    fn reads_what_the_gate_compares() {
        let r = RuntimeRequest::from_json(LINUX_SPEC.as_bytes()).expect("parses");
        assert_eq!(r.kind, Some(TaskKind::Container));
        assert_eq!(r.pod.to_string(), "ns/pod-1");
        assert_eq!(r.pod.uid, "u1");
        assert_eq!(r.pod.sandbox_id, "abc");
        assert_eq!(r.container_name.as_deref(), Some("main"));
        assert_eq!(r.image.as_deref(), Some("docker.io/hostgate/busybox:test"));
        assert_eq!(r.annotation("hostgate.io/approval"), Some("x.y"));
        assert_eq!(r.args, ["sh", "-c", "echo hi"]);
        assert_eq!(r.env[2], ("A".to_owned(), "b=c".to_owned()));
        assert_eq!(r.cwd.as_deref(), Some("/"));
        assert_eq!(r.user_name, None);
        assert_eq!(r.mounts.len(), 3);
        assert!(r.mounts[2].read_only && !r.mounts[1].read_only);
        assert_eq!(r.mounts[0].kind, "proc");
        assert_eq!(
            r.resources,
            RuntimeResources::Linux(LinuxResources {
                cpu_quota: 50_000,
                cpu_period: 100_000,
                memory_limit_bytes: 64 << 20,
            })
        );
        assert_eq!(r.root_path.as_deref(), Some("rootfs"));
        assert_eq!(r.describe(), "pod ns/pod-1 container \"main\"");
    }

    #[test]
    fn windows_specs_carry_a_user_name_and_windows_resources() {
        let spec = r#"{"ociVersion": "1.1.0",
          "process": {"user": {"username": "NT AUTHORITY\\SYSTEM"}, "args": ["cmd.exe"], "cwd": "C:\\hpc"},
          "windows": {"resources": {"cpu": {"maximum": 2500}, "memory": {"limit": 134217728}}},
          "annotations": {"io.kubernetes.cri.container-type": "sandbox", "microsoft.com/hostprocess-container": "true"}}"#;
        let r = RuntimeRequest::from_json(spec.as_bytes()).expect("parses");
        assert_eq!(r.kind, Some(TaskKind::Sandbox));
        assert_eq!(r.user_name.as_deref(), Some("NT AUTHORITY\\SYSTEM"));
        assert_eq!(
            r.resources,
            RuntimeResources::Windows(OciWindowsResources {
                cpu_maximum: 2500,
                memory_limit_bytes: 128 << 20,
                ..OciWindowsResources::default()
            })
        );
        assert_eq!(
            r.annotation(annotations::WINDOWS_HOST_PROCESS),
            Some("true")
        );
    }

    #[test]
    fn specs_not_from_cri_have_no_kind_and_bad_files_are_errors() {
        let r = RuntimeRequest::from_json(br#"{"ociVersion": "1.0.0"}"#).expect("parses");
        assert_eq!(r.kind, None);
        for bad in [
            &b"{"[..],
            b"\"spec\"",
            b"{\"process\": {\"args\": 3}}",
            b"\xff",
        ] {
            assert!(RuntimeRequest::from_json(bad).is_err());
        }
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            RuntimeRequest::read_bundle(dir.path()),
            Err(RequestError::Io { .. })
        ));
        fs::write(dir.path().join("config.json"), "{").expect("write");
        let err = RuntimeRequest::read_bundle(dir.path()).expect_err("malformed");
        assert!(
            err.to_string().ends_with("is not an OCI runtime spec"),
            "{err}"
        );
    }
}
