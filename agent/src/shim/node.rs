//! What a node gives the shim: its directory of trusted keys and policies (kept current by
//! `hostgate-agent sync --dest`), and the shim's settings.
//!
//! The directory is `HOSTGATE_NODE_DIR` (which the shim inherits from containerd), else
//! `/var/lib/hostgate` (`C:\ProgramData\hostgate` on Windows). Below it, `sync` maintains
//! `current -> .versions/<version>` with `trust/` and `policies/` inside; a directory laid out
//! by hand (plain `trust/` and `policies/`) works too. The shim resolves `current` **once** per
//! load and reads both below the result, so a sync in the middle never mixes versions (and if
//! two syncs retire the resolved version while it is read, the read fails and the load starts
//! over from the new `current`).
//!
//! Nothing here is optional for a container to run: a missing, empty or unreadable trust
//! directory, or policies that do not load, refuse every container (fail closed).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sync::{CURRENT, POLICIES, TRUST};
use crate::verify::{LoadError, Verifier};

/// The environment variable that names the node directory.
pub const NODE_DIR_ENV: &str = "HOSTGATE_NODE_DIR";
/// The settings file below the node directory.
pub const SETTINGS_FILE: &str = "shim.yaml";
/// Largest settings file read.
const MAX_SETTINGS_BYTES: u64 = 64 * 1024;

/// The node directory on Windows when `HOSTGATE_NODE_DIR` is not set (the chart's `agent.dest`
/// and the installer's `--node-dir` must be this one).
pub const WINDOWS_NODE_DIR: &str = r"C:\ProgramData\hostgate";

/// The node directory when `HOSTGATE_NODE_DIR` is not set.
pub fn default_node_dir() -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(WINDOWS_NODE_DIR)
    } else {
        PathBuf::from("/var/lib/hostgate")
    }
}

/// The kubelet's root directory when the settings name none.
pub fn default_kubelet_root() -> String {
    if cfg!(windows) {
        r"C:\var\lib\kubelet".to_owned()
    } else {
        "/var/lib/kubelet".to_owned()
    }
}

/// How the shim runs an admitted container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunMode {
    /// The shim runs the container itself, as a job.
    #[default]
    Native,
    /// After the gate, the platform's own shim takes over (`delegateShim`), started with
    /// exactly the arguments, standard streams and working directory containerd gave this
    /// one: hcsshim keeps running the job containers, hostgate adds the approval check.
    Delegate,
}

/// The platform's stock shim for delegate mode.
pub fn default_delegate_shim() -> String {
    if cfg!(windows) {
        "containerd-shim-runhcs-v1.exe".to_owned()
    } else {
        "containerd-shim-runc-v2".to_owned()
    }
}

/// The shim's settings (`<node dir>/shim.yaml`; every field optional).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Settings {
    /// The kubelet's `--root-dir`: the per-pod volumes, token and hosts files live below
    /// `<kubeletRootDir>/pods/<pod uid>/`.
    pub kubelet_root_dir: String,
    /// Environment variables tolerated besides the approved ones, for variables an image
    /// defines (`ENV`). `PATH` and `HOSTNAME`, which containerd always sets, and the kubelet's
    /// service links are tolerated without being listed.
    pub tolerated_env: Vec<String>,
    /// Seconds between the stop signal and termination when a container's first process exits
    /// and others are left (hcsshim waits 5 s).
    pub grace_period_seconds: u64,
    /// The parent cgroup of the containers' jobs (Linux).
    pub cgroup_parent: String,
    /// How admitted containers are run.
    pub mode: RunMode,
    /// The shim delegate mode hands containers to (a name looked up on `PATH`, or a path).
    pub delegate_shim: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            kubelet_root_dir: default_kubelet_root(),
            tolerated_env: Vec::new(),
            grace_period_seconds: 5,
            cgroup_parent: "hostgate".to_owned(),
            mode: RunMode::Native,
            delegate_shim: default_delegate_shim(),
        }
    }
}

/// Why the node's trust, policies or settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No trust directory: nothing can be verified, so nothing runs.
    #[error("no trusted keys at {}: run `hostgate-agent sync --dest {}`", path.display(), root.display())]
    NoTrust {
        /// The trust directory looked for.
        path: PathBuf,
        /// The node directory.
        root: PathBuf,
    },
    /// `current` exists but does not resolve.
    #[error("cannot resolve {}", path.display())]
    Current {
        /// The link.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The keys or the policies do not load.
    #[error("cannot load the node's trust and policies from {}", root.display())]
    Load {
        /// The directory they were read from.
        root: PathBuf,
        /// What failed.
        #[source]
        source: LoadError,
    },
    /// The settings file exists but cannot be used.
    #[error("invalid settings file {}: {message}", path.display())]
    Settings {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A node directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDir {
    root: PathBuf,
}

impl NodeDir {
    /// The directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `HOSTGATE_NODE_DIR` if set and not empty, else [`default_node_dir`].
    pub fn from_env() -> Self {
        match std::env::var_os(NODE_DIR_ENV) {
            Some(v) if !v.is_empty() => Self::new(v),
            _ => Self::new(default_node_dir()),
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `trust/` and `policies/` are read from: the target of `current`, resolved once,
    /// or the directory itself when there is no `current`.
    pub fn resolve(&self) -> Result<PathBuf, NodeError> {
        let current = self.root.join(CURRENT);
        match fs::symlink_metadata(&current) {
            Ok(_) => fs::canonicalize(&current).map_err(|source| NodeError::Current {
                path: current,
                source,
            }),
            Err(_) => Ok(self.root.clone()),
        }
    }

    /// Loads the trusted keys and the policies of one version.
    pub fn verifier(&self) -> Result<Verifier, NodeError> {
        self.verifier_from(self.resolve()?)
    }

    /// Loads the version at `base`. If that fails because `current` has moved on meanwhile
    /// (two syncs retired `base` while it was read: it is renamed away before anything in it
    /// is deleted, so the read fails rather than seeing part of it), loads the new version.
    fn verifier_from(&self, mut base: PathBuf) -> Result<Verifier, NodeError> {
        const ATTEMPTS: usize = 3;
        for _ in 1..ATTEMPTS {
            match self.verifier_at(&base) {
                Ok(v) => return Ok(v),
                Err(e) => match self.resolve() {
                    Ok(now) if now != base => base = now,
                    _ => return Err(e),
                },
            }
        }
        self.verifier_at(&base)
    }

    fn verifier_at(&self, base: &Path) -> Result<Verifier, NodeError> {
        let trust = base.join(TRUST);
        if !trust.is_dir() {
            return Err(NodeError::NoTrust {
                path: trust,
                root: self.root.clone(),
            });
        }
        let policies = base.join(POLICIES);
        let paths: Vec<PathBuf> = if policies.exists() {
            vec![policies]
        } else {
            Vec::new()
        };
        Verifier::load(&trust, &paths).map_err(|source| NodeError::Load {
            root: base.to_owned(),
            source,
        })
    }

    /// Reads `<dir>/shim.yaml`; defaults when it does not exist.
    pub fn settings(&self) -> Result<Settings, NodeError> {
        let path = self.root.join(SETTINGS_FILE);
        let invalid = |message: String| NodeError::Settings {
            path: path.clone(),
            message,
        };
        let text = match fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(invalid(e.to_string())),
            Ok(m) if m.len() > MAX_SETTINGS_BYTES => {
                return Err(invalid(format!("larger than {MAX_SETTINGS_BYTES} bytes")));
            }
            Ok(_) => fs::read_to_string(&path).map_err(|e| invalid(e.to_string()))?,
        };
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        let settings: Settings = serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if settings.kubelet_root_dir.is_empty() {
            return Err(invalid("kubeletRootDir must not be empty".to_owned()));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostgate_core::approval::generate_key_pair;

    const POLICY: &str = "apiVersion: hostgate.io/v1alpha1\nkind: HostProcessPolicy\nmetadata: {name: p}\nspec: {}\n";

    fn version(root: &Path, name: &str) -> PathBuf {
        let dir = root.join(".versions").join(name);
        fs::create_dir_all(dir.join(TRUST)).expect("mkdir");
        fs::create_dir_all(dir.join(POLICIES)).expect("mkdir");
        generate_key_pair(&dir.join(TRUST)).expect("key");
        fs::write(dir.join(POLICIES).join("p.yaml"), POLICY).expect("policy");
        dir
    }

    #[test]
    fn current_is_resolved_once_and_plain_directories_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = NodeDir::new(dir.path());
        assert!(matches!(node.verifier(), Err(NodeError::NoTrust { .. })));

        let v1 = version(dir.path(), "v1");
        std::os::unix::fs::symlink(".versions/v1", dir.path().join(CURRENT)).expect("link");
        assert_eq!(
            node.resolve().expect("resolves"),
            fs::canonicalize(&v1).expect("v1")
        );
        let verifier = node.verifier().expect("loads");
        assert_eq!(verifier.policies().len(), 1);

        // A plain layout, as an admin might write it.
        let plain = tempfile::tempdir().expect("tempdir");
        fs::create_dir(plain.path().join(TRUST)).expect("mkdir");
        let node = NodeDir::new(plain.path());
        let err = node.verifier().expect_err("empty trust");
        assert!(
            format!("{:?}", std::error::Error::source(&err)).contains("Keys"),
            "{err:?}"
        );
        generate_key_pair(&plain.path().join(TRUST)).expect("key");
        assert_eq!(node.verifier().expect("loads").policies().len(), 0);
        fs::create_dir(plain.path().join(POLICIES)).expect("mkdir");
        fs::write(plain.path().join(POLICIES).join("bad.yaml"), "kind: Nope\n").expect("write");
        assert!(matches!(node.verifier(), Err(NodeError::Load { .. })));
    }

    #[test]
    fn a_version_retired_while_being_read_gives_way_to_the_current_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = NodeDir::new(dir.path());
        let v1 = version(dir.path(), "v1");
        std::os::unix::fs::symlink(".versions/v1", dir.path().join(CURRENT)).expect("link");
        let stale = node.resolve().expect("resolves");
        // Two syncs later: v2 is current and v1 has been renamed away and deleted.
        version(dir.path(), "v2");
        fs::remove_file(dir.path().join(CURRENT)).expect("unlink");
        std::os::unix::fs::symlink(".versions/v2", dir.path().join(CURRENT)).expect("link");
        fs::remove_dir_all(&v1).expect("prune");
        let verifier = node.verifier_from(stale.clone()).expect("loads v2");
        assert_eq!(verifier.policies().len(), 1);

        // Nothing to move on to: the failure is the answer.
        fs::remove_dir_all(dir.path().join(".versions/v2")).expect("remove");
        assert!(node.verifier_from(stale).is_err());
    }

    #[test]
    fn settings_default_and_refuse_unknown_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = NodeDir::new(dir.path());
        assert_eq!(node.settings().expect("defaults"), Settings::default());
        fs::write(
            dir.path().join(SETTINGS_FILE),
            "kubeletRootDir: /srv/kubelet\ntoleratedEnv: [JAVA_HOME]\ngracePeriodSeconds: 2\n",
        )
        .expect("write");
        let s = node.settings().expect("reads");
        assert_eq!(s.kubelet_root_dir, "/srv/kubelet");
        assert_eq!(s.tolerated_env, ["JAVA_HOME"]);
        assert_eq!(s.grace_period_seconds, 2);
        assert_eq!(s.cgroup_parent, "hostgate");
        fs::write(dir.path().join(SETTINGS_FILE), "kubeletRoot: /x\n").expect("write");
        let err = node.settings().expect_err("unknown field");
        assert!(err.to_string().contains("kubeletRoot"), "{err}");
    }
}
