//! Which cgroup layout the host has, where its hierarchies are, and the backend's
//! configuration.

use std::num::NonZeroU32;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, FsType, TMPFS_MAGIC, statfs};

use super::fs::{read_optional, write_in};
use super::v2;
use crate::job::{JobError, WrappedIoError};

/// The default cgroup root.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The default parent of all jobs, below each hierarchy's root.
pub const DEFAULT_PARENT: &str = "hostgate";
/// The v2 controllers the backend enables for its jobs on a pure v2 host.
pub const V2_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// The cgroup layout of a host (youki `CgroupSetup`, without pure v1, which has no
/// `cgroup.kill` nor a single membership hierarchy and is not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupSetup {
    /// cgroup v2 only, mounted at the root (`cgroup2` file system).
    Unified,
    /// A `tmpfs` root with the controllers on v1 hierarchies (`memory/`, `cpu/`, `cpuacct/`,
    /// `pids/`) and a controller-less v2 hierarchy at `unified/`, used for membership,
    /// `cgroup.events` and `cgroup.kill`.
    Hybrid,
}

/// Configuration of the Linux backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupConfig {
    /// Where the cgroup file systems are mounted. Tests point it at a fake tree.
    pub root: PathBuf,
    /// The parent of all jobs below each hierarchy root: a relative path of plain components
    /// (default `hostgate`). Created if missing; on v2 the controllers are enabled for it.
    pub parent: PathBuf,
    /// The layout; `None` = detect from `root` with `statfs(2)` ([`detect_setup`]).
    pub setup: Option<CgroupSetup>,
    /// The number of logical CPUs that a CPU rate of 10000 stands for; `None` = the CPUs
    /// online on this host.
    pub host_cpus: Option<NonZeroU32>,
    /// How long terminating, destroying or dropping a job waits for its processes to go.
    pub kill_timeout: Duration,
    /// Use `cgroup.kill` where the kernel has it (Linux 5.14+). `false` forces the SIGKILL
    /// loop that older kernels get, e.g. to test it.
    pub use_cgroup_kill: bool,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from(DEFAULT_CGROUP_ROOT),
            parent: PathBuf::from(DEFAULT_PARENT),
            setup: None,
            host_cpus: None,
            kill_timeout: Duration::from_secs(10),
            use_cgroup_kill: true,
        }
    }
}

impl CgroupConfig {
    /// Checks that `parent` is relative and made of plain components (no `..`, no root), so
    /// jobs cannot end up outside the hierarchy root.
    pub fn validate(&self) -> Result<(), JobError> {
        let invalid = |reason: &str| JobError::InvalidConfig {
            reason: format!("parent cgroup {:?} {reason}", self.parent),
        };
        if self.parent.as_os_str().is_empty() {
            return Err(invalid("must not be empty"));
        }
        for component in self.parent.components() {
            match component {
                Component::Normal(c) if !c.to_string_lossy().starts_with('.') => {}
                Component::Normal(_) => return Err(invalid("must not have hidden components")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(invalid("must be relative to the cgroup root"));
                }
                Component::ParentDir | Component::CurDir => {
                    return Err(invalid("must not contain '.' or '..'"));
                }
            }
        }
        if self.kill_timeout.is_zero() {
            return Err(JobError::InvalidConfig {
                reason: "kill_timeout must not be zero".to_owned(),
            });
        }
        Ok(())
    }
}

/// Detects the layout below `root` from file-system magic numbers: `cgroup2` at the root is
/// [`CgroupSetup::Unified`]; `tmpfs` at the root with a `cgroup2` `unified/` is
/// [`CgroupSetup::Hybrid`]; anything else is unsupported.
pub fn detect_setup(root: &Path) -> Result<CgroupSetup, JobError> {
    let root_fs = fs_type(root)?;
    let unified = root.join("unified");
    let unified_fs = if root_fs == TMPFS_MAGIC && unified.is_dir() {
        Some(fs_type(&unified)?)
    } else {
        None
    };
    classify(root_fs, unified_fs).map_err(|reason| JobError::UnsupportedSetup {
        root: root.to_owned(),
        reason: reason.to_owned(),
    })
}

fn fs_type(path: &Path) -> Result<FsType, WrappedIoError> {
    statfs(path)
        .map(|s| s.filesystem_type())
        .map_err(|errno| WrappedIoError::Statfs {
            err: errno.into(),
            path: path.to_owned(),
        })
}

/// The decision of [`detect_setup`] on the magic numbers of the root and of `unified/`.
pub(crate) fn classify(root: FsType, unified: Option<FsType>) -> Result<CgroupSetup, &'static str> {
    if root == CGROUP2_SUPER_MAGIC {
        Ok(CgroupSetup::Unified)
    } else if root == TMPFS_MAGIC {
        match unified {
            Some(u) if u == CGROUP2_SUPER_MAGIC => Ok(CgroupSetup::Hybrid),
            _ => Err("cgroup v1 without a unified (v2) hierarchy is not supported"),
        }
    } else {
        Err("not a cgroup2 or tmpfs mount")
    }
}

/// The hierarchy roots in use: the v2 one, and on a hybrid host the v1 controller
/// hierarchies (canonicalised, so a combined `cpu,cpuacct` mount is one hierarchy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchies {
    pub(crate) setup: CgroupSetup,
    pub(crate) unified: PathBuf,
    pub(crate) memory: Option<PathBuf>,
    pub(crate) cpu: Option<PathBuf>,
    pub(crate) cpuacct: Option<PathBuf>,
    pub(crate) pids: Option<PathBuf>,
}

impl Hierarchies {
    pub(crate) fn resolve(root: &Path, setup: CgroupSetup) -> Self {
        match setup {
            CgroupSetup::Unified => Self {
                setup,
                unified: root.to_owned(),
                memory: None,
                cpu: None,
                cpuacct: None,
                pids: None,
            },
            CgroupSetup::Hybrid => {
                let v1 = |name: &str| {
                    let dir = root.join(name);
                    dir.join("cgroup.procs")
                        .is_file()
                        .then(|| dir.canonicalize().unwrap_or(dir))
                };
                Self {
                    setup,
                    unified: root.join("unified"),
                    memory: v1("memory"),
                    cpu: v1("cpu"),
                    cpuacct: v1("cpuacct"),
                    pids: v1("pids"),
                }
            }
        }
    }

    /// Every distinct hierarchy root, the v2 one first.
    pub(crate) fn roots(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.unified.clone()];
        for dir in [&self.memory, &self.cpu, &self.cpuacct, &self.pids]
            .into_iter()
            .flatten()
        {
            if !roots.contains(dir) {
                roots.push(dir.clone());
            }
        }
        roots
    }
}

/// Enables the [`V2_CONTROLLERS`] that `dir` offers (`cgroup.controllers`) but does not yet
/// pass on (`cgroup.subtree_control`). Best effort: a controller that cannot be enabled
/// (e.g. a systemd-owned ancestor with processes) only fails the limits that need it, with
/// [`JobError::ControllerUnavailable`]. Returns the controllers that could not be enabled.
pub(crate) fn enable_controllers(dir: &Path) -> Result<Vec<&'static str>, WrappedIoError> {
    let available = v2::controllers(dir)?;
    let enabled = read_optional(&dir.join("cgroup.subtree_control"))?.unwrap_or_default();
    let enabled: Vec<&str> = enabled.split_ascii_whitespace().collect();
    let missing: Vec<&'static str> = V2_CONTROLLERS
        .into_iter()
        .filter(|c| available.iter().any(|a| a == c) && !enabled.contains(c))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    if write_in(dir, "cgroup.subtree_control", &all.join(" ")).is_ok() {
        return Ok(Vec::new());
    }
    let mut failed = Vec::new();
    for c in missing {
        if let Err(err) = write_in(dir, "cgroup.subtree_control", &format!("+{c}")) {
            tracing::warn!(controller = c, error = %err, "cannot enable cgroup controller");
            failed.push(c);
        }
    }
    Ok(failed)
}

/// The number of logical CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`), falling back to
/// the parallelism available to this process.
pub(crate) fn online_cpus() -> NonZeroU32 {
    let online = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .and_then(|n| u32::try_from(n).ok())
        .and_then(NonZeroU32::new);
    online.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .ok()
            .and_then(|n| u32::try_from(n.get()).ok())
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN)
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use nix::sys::statfs::EXT4_SUPER_MAGIC;

    use super::*;

    #[test]
    fn classify_magic() {
        assert_eq!(
            classify(CGROUP2_SUPER_MAGIC, None),
            Ok(CgroupSetup::Unified)
        );
        assert_eq!(
            classify(TMPFS_MAGIC, Some(CGROUP2_SUPER_MAGIC)),
            Ok(CgroupSetup::Hybrid)
        );
        assert!(classify(TMPFS_MAGIC, None).is_err());
        assert!(classify(TMPFS_MAGIC, Some(TMPFS_MAGIC)).is_err());
        assert!(classify(EXT4_SUPER_MAGIC, None).is_err());
    }

    #[test]
    fn detect_on_a_plain_directory_is_unsupported() {
        let dir = tempfile::tempdir().expect("tempdir");
        match detect_setup(dir.path()) {
            Err(JobError::UnsupportedSetup { root, .. }) => assert_eq!(root, dir.path()),
            other => panic!("a temporary directory is no cgroup root: {other:?}"),
        }
        let err = detect_setup(&dir.path().join("missing")).expect_err("missing root");
        assert!(
            matches!(err, JobError::Io(WrappedIoError::Statfs { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn parent_validation() {
        let with = |parent: &str| CgroupConfig {
            parent: PathBuf::from(parent),
            ..CgroupConfig::default()
        };
        for ok in ["hostgate", "hostgate.slice/jobs", "a/b/c"] {
            assert!(with(ok).validate().is_ok(), "{ok}");
        }
        for bad in ["", "/hostgate", "../x", "a/../b", "./a", ".hidden", "a/.b"] {
            assert!(
                matches!(with(bad).validate(), Err(JobError::InvalidConfig { .. })),
                "{bad}"
            );
        }
        let zero = CgroupConfig {
            kill_timeout: Duration::ZERO,
            ..CgroupConfig::default()
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn hybrid_hierarchies_dedupe_combined_mounts() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        for d in ["unified", "memory", "cpu,cpuacct", "pids", "freezer"] {
            fs::create_dir(r.join(d)).expect("mkdir");
            fs::write(r.join(d).join("cgroup.procs"), "").expect("procs");
        }
        std::os::unix::fs::symlink("cpu,cpuacct", r.join("cpu")).expect("symlink");
        std::os::unix::fs::symlink("cpu,cpuacct", r.join("cpuacct")).expect("symlink");
        let h = Hierarchies::resolve(r, CgroupSetup::Hybrid);
        let canon = |p: &str| r.join(p).canonicalize().expect("canonicalize");
        assert_eq!(h.unified, r.join("unified"));
        assert_eq!(h.cpu, Some(canon("cpu,cpuacct")));
        assert_eq!(h.cpuacct, Some(canon("cpu,cpuacct")));
        assert_eq!(
            h.roots(),
            vec![
                r.join("unified"),
                canon("memory"),
                canon("cpu,cpuacct"),
                canon("pids")
            ]
        );
        // A hierarchy that is not mounted is absent.
        fs::remove_file(r.join("pids").join("cgroup.procs")).expect("rm");
        assert_eq!(Hierarchies::resolve(r, CgroupSetup::Hybrid).pids, None);
        let u = Hierarchies::resolve(r, CgroupSetup::Unified);
        assert_eq!(u.roots(), vec![r.to_path_buf()]);
    }

    #[test]
    fn enable_controllers_writes_missing_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::write(d.join("cgroup.controllers"), "cpuset cpu io memory pids\n").expect("fixture");
        fs::write(d.join("cgroup.subtree_control"), "cpu\n").expect("fixture");
        assert_eq!(enable_controllers(d).expect("enable"), Vec::<&str>::new());
        assert_eq!(
            fs::read_to_string(d.join("cgroup.subtree_control")).expect("read"),
            "+memory +pids"
        );
        // Nothing to do: nothing written.
        fs::write(d.join("cgroup.subtree_control"), "cpu memory pids\n").expect("fixture");
        enable_controllers(d).expect("enable");
        assert_eq!(
            fs::read_to_string(d.join("cgroup.subtree_control")).expect("read"),
            "cpu memory pids\n"
        );
        // Not offered: not requested.
        fs::write(d.join("cgroup.controllers"), "io\n").expect("fixture");
        fs::write(d.join("cgroup.subtree_control"), "").expect("fixture");
        enable_controllers(d).expect("enable");
        assert_eq!(
            fs::read_to_string(d.join("cgroup.subtree_control")).expect("read"),
            ""
        );
        // Cannot write: reported per controller.
        fs::remove_file(d.join("cgroup.subtree_control")).expect("rm");
        fs::write(d.join("cgroup.controllers"), "memory pids\n").expect("fixture");
        assert_eq!(
            enable_controllers(d).expect("enable"),
            vec!["memory", "pids"]
        );
    }

    #[test]
    fn online_cpus_is_sane() {
        assert!(online_cpus().get() >= 1);
    }
}
