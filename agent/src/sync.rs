//! `hostgate-agent sync`: keeps this node's copy of the webhook's public keys and of the policies
//! current, for whatever verifies approvals here (`hostgate-agent run`, a runtime shim).
//!
//! In the cluster the sources are the chart's ConfigMaps as the kubelet mounts them (visible
//! files are symlinks into a hidden `..data` directory that the kubelet swaps); on a node they
//! must become plain directories that outlive the pod. Every pass:
//!
//! 1. reads a snapshot of the sources: every visible `*.pub` of the trust directory, every
//!    visible `*.yaml`/`*.yml`/`*.json` below the policy directory (hidden entries and `tests/`
//!    skipped, as [`hostgate_core::policy::load`] does);
//! 2. compares its digest with the installed version's: unchanged, nothing is written;
//! 3. writes it into a new version directory and validates **that copy** with the loaders the
//!    verifier uses ([`TrustStore::load_dir`], [`load_paths`]): what is validated is exactly
//!    what gets installed;
//! 4. swaps one symlink, `DEST/current`, to the new version. `DEST/trust` and `DEST/policies`
//!    are fixed links through it, so both change together. The previous version is kept, older
//!    ones are removed.
//!
//! An invalid snapshot is never installed: the last good version stays in force and the reason
//! is logged (once per distinct problem). Layout:
//!
//! ```text
//! DEST/.versions/<unix-nanos>-<digest>/{trust,policies}/…
//! DEST/current  -> .versions/<unix-nanos>-<digest>
//! DEST/trust    -> current/trust
//! DEST/policies -> current/policies
//! ```
//!
//! On Unix the swap is a rename of a new symlink over the old one, which is atomic. On Windows a
//! directory symlink cannot be renamed over another, so the old link is removed and the new one
//! created, as the kubelet does for `..data` there: a reader that finds `DEST/current` missing
//! retries. A reader that needs trust keys and policies of one version resolves `DEST/current`
//! once (`canonicalize`) and reads below the result. A retired version is renamed away before
//! anything in it is deleted, so such a read gets all of one version or an error, never part of
//! one.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostgate_core::approval::{KeyError, TrustStore};
use hostgate_core::chain::Chain;
use hostgate_core::policy::load::{PolicyErrors, load_paths};
use sha2::{Digest as _, Sha256};

use crate::stop::StopToken;

/// Environment variable a HostProcess container gets: where its volumes are (containerd 1.6
/// symlink layout; still valid with 1.7+ bind mounts).
pub const SANDBOX_MOUNT_POINT_ENV: &str = "CONTAINER_SANDBOX_MOUNT_POINT";
/// Name of the link to the installed version, below the destination.
pub const CURRENT: &str = "current";
/// The trust-keys link below the destination.
pub const TRUST: &str = "trust";
/// The policies link below the destination.
pub const POLICIES: &str = "policies";
/// Directory of the installed versions, below the destination.
pub const VERSIONS: &str = ".versions";
/// Largest single source file read.
pub const MAX_FILE: u64 = 4 * 1024 * 1024;
/// Most source files read per pass.
pub const MAX_FILES: usize = 10_000;

/// What to sync where.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Directory of trusted public keys (`*.pub`).
    pub trust_keys: PathBuf,
    /// Directory of policy files.
    pub policies: PathBuf,
    /// Where the node's copy lives.
    pub dest: PathBuf,
}

/// The result of one pass that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// A new version was installed.
    Installed {
        /// Its directory name below `DEST/.versions`.
        version: String,
        /// Trusted key ids.
        keys: Vec<String>,
        /// Number of policies.
        policies: usize,
    },
    /// The sources are what is installed.
    Unchanged,
}

/// Why a pass installed nothing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A source could not be read.
    #[error("reading {path}")]
    ReadSource {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A source is too large.
    #[error("{path}: {what}")]
    TooLarge {
        /// The file or directory.
        path: PathBuf,
        /// The limit that was hit.
        what: String,
    },
    /// The trusted keys are invalid (or there are none yet).
    #[error("trusted keys are not usable")]
    InvalidKeys(#[source] KeyError),
    /// The policies do not load.
    #[error("policies do not load")]
    InvalidPolicies(#[source] PolicyErrors),
    /// The destination could not be written.
    #[error("installing into {path}")]
    Install {
        /// What was being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl SyncError {
    /// Whether the sources are at fault (as opposed to this node).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            SyncError::InvalidKeys(_) | SyncError::InvalidPolicies(_) | SyncError::TooLarge { .. }
        )
    }
}

/// The sources' content at one moment: relative path (with `/`) to bytes, per set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `*.pub` files of the trust directory.
    pub trust: BTreeMap<String, Vec<u8>>,
    /// Policy files below the policy directory.
    pub policies: BTreeMap<String, Vec<u8>>,
}

impl Snapshot {
    /// Reads both sources.
    pub fn read(config: &SyncConfig) -> Result<Snapshot, SyncError> {
        let mut trust = BTreeMap::new();
        let mut count = 0;
        read_dir_files(
            &config.trust_keys,
            "",
            false,
            &mut trust,
            &mut count,
            &|name| name.ends_with(".pub"),
        )?;
        let mut policies = BTreeMap::new();
        read_dir_files(
            &config.policies,
            "",
            true,
            &mut policies,
            &mut count,
            &|name| name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"),
        )?;
        Ok(Snapshot { trust, policies })
    }

    /// A content digest: hex SHA-256 over both sets' paths and bytes.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (set, files) in [("trust", &self.trust), ("policies", &self.policies)] {
            h.update(set.as_bytes());
            h.update([0]);
            for (name, bytes) in files {
                h.update((name.len() as u64).to_le_bytes());
                h.update(name.as_bytes());
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn read_dir_files(
    dir: &Path,
    prefix: &str,
    recursive: bool,
    out: &mut BTreeMap<String, Vec<u8>>,
    count: &mut usize,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<(), SyncError> {
    let read_err = |source| SyncError::ReadSource {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            (!name.starts_with('.') && name != "tests").then(|| (name, e.path()))
        })
        .collect();
    entries.sort();
    for (name, path) in entries {
        // Follows symlinks: a mounted ConfigMap's files are links into `..data`.
        let meta = fs::metadata(&path).map_err(|source| SyncError::ReadSource {
            path: path.clone(),
            source,
        })?;
        let rel = format!("{prefix}{name}");
        if meta.is_dir() {
            if recursive {
                read_dir_files(&path, &format!("{rel}/"), true, out, count, wanted)?;
            }
            continue;
        }
        if !wanted(&name) {
            continue;
        }
        if meta.len() > MAX_FILE {
            return Err(SyncError::TooLarge {
                path,
                what: format!("larger than {MAX_FILE} bytes"),
            });
        }
        *count += 1;
        if *count > MAX_FILES {
            return Err(SyncError::TooLarge {
                path: dir.to_owned(),
                what: format!("more than {MAX_FILES} files"),
            });
        }
        let bytes = fs::read(&path).map_err(|source| SyncError::ReadSource { path, source })?;
        out.insert(rel, bytes);
    }
    Ok(())
}

/// Keeps `DEST` in step with the sources.
#[derive(Debug)]
pub struct Syncer {
    config: SyncConfig,
    last_problem: Option<String>,
}

impl Syncer {
    /// A syncer for `config`; relative source paths are resolved against
    /// `$CONTAINER_SANDBOX_MOUNT_POINT` when it is set (see [`resolve_source`]).
    pub fn new(config: SyncConfig) -> Self {
        Syncer {
            config,
            last_problem: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// The installed version's directory name, if any.
    pub fn installed_version(&self) -> Option<String> {
        installed_version(&self.config.dest)
    }

    /// One pass: read, compare, validate, install.
    pub fn sync_once(&mut self) -> Result<SyncOutcome, SyncError> {
        let snapshot = Snapshot::read(&self.config)?;
        let digest = snapshot.digest();
        let short = &digest[..16];
        if let Some(v) = self.installed_version()
            && v.rsplit('-').next() == Some(short)
            && self.config.dest.join(TRUST).is_dir()
            && self.config.dest.join(POLICIES).is_dir()
        {
            return Ok(SyncOutcome::Unchanged);
        }
        install(&self.config.dest, &snapshot, short)
    }

    /// Runs passes every `interval` until `stop` fires. Failures are logged (each distinct one
    /// once) and the last good version stays installed.
    pub fn run(&mut self, interval: Duration, stop: &StopToken) {
        loop {
            let _ = self.pass_logged();
            if stop.sleep(interval) {
                tracing::info!("stopping");
                return;
            }
        }
    }

    /// One pass, logged; returns its result.
    pub fn pass_logged(&mut self) -> Result<SyncOutcome, String> {
        match self.sync_once() {
            Ok(outcome) => {
                if let SyncOutcome::Installed {
                    version,
                    keys,
                    policies,
                } = &outcome
                {
                    tracing::info!(
                        dest = %self.config.dest.display(),
                        %version,
                        keys = %keys.join(","),
                        policies,
                        "installed"
                    );
                }
                if self.last_problem.take().is_some() {
                    tracing::info!("sources are valid again");
                }
                Ok(outcome)
            }
            Err(err) => {
                let text = Chain(&err).to_string();
                if self.last_problem.as_deref() != Some(text.as_str()) {
                    match self.installed_version() {
                        Some(v) => tracing::warn!(
                            installed = %v,
                            "not installed, keeping the last good version: {text}"
                        ),
                        None => tracing::warn!("not installed, nothing installed yet: {text}"),
                    }
                    self.last_problem = Some(text.clone());
                }
                Err(text)
            }
        }
    }
}

/// The version `DEST/current` points at.
pub fn installed_version(dest: &Path) -> Option<String> {
    let target = fs::read_link(dest.join(CURRENT)).ok()?;
    target.file_name()?.to_str().map(str::to_owned)
}

/// Resolves a relative source path against `sandbox` (`$CONTAINER_SANDBOX_MOUNT_POINT`, where a
/// HostProcess container's volumes are with either containerd layout) when given; absolute
/// paths, and relative ones outside a HostProcess container, are kept.
pub fn resolve_source(path: &Path, sandbox: Option<&std::ffi::OsStr>) -> PathBuf {
    match sandbox {
        Some(root) if !root.is_empty() && path.is_relative() => Path::new(root).join(path),
        _ => path.to_owned(),
    }
}

fn install_err(path: &Path) -> impl FnOnce(io::Error) -> SyncError + '_ {
    move |source| SyncError::Install {
        path: path.to_owned(),
        source,
    }
}

fn install(dest: &Path, snapshot: &Snapshot, short: &str) -> Result<SyncOutcome, SyncError> {
    let versions = dest.join(VERSIONS);
    fs::create_dir_all(&versions).map_err(install_err(&versions))?;
    secure_dir(dest).map_err(install_err(dest))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let version = format!("{nanos:020}-{short}");
    let staging = versions.join(format!(".staging-{version}"));
    let _ = fs::remove_dir_all(&staging);
    let written = write_tree(&staging, snapshot).map_err(install_err(&staging));
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    // Validate the copy that is about to be installed, with the loaders the verifier uses.
    let checked = TrustStore::load_dir(&staging.join(TRUST))
        .map_err(SyncError::InvalidKeys)
        .and_then(|trust| {
            load_paths(&[staging.join(POLICIES)])
                .map(|set| (trust, set))
                .map_err(SyncError::InvalidPolicies)
        });
    let (trust, set) = match checked {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let final_dir = versions.join(&version);
    fs::rename(&staging, &final_dir).map_err(install_err(&final_dir))?;
    let previous = installed_version(dest);
    swap_link(dest, &Path::new(VERSIONS).join(&version)).map_err(install_err(dest))?;
    ensure_fixed_link(dest, TRUST).map_err(install_err(dest))?;
    ensure_fixed_link(dest, POLICIES).map_err(install_err(dest))?;
    prune(&versions, &version, previous.as_deref());
    Ok(SyncOutcome::Installed {
        version,
        keys: trust.key_ids().map(str::to_owned).collect(),
        policies: set.len(),
    })
}

fn write_tree(root: &Path, snapshot: &Snapshot) -> io::Result<()> {
    for (set, files) in [(TRUST, &snapshot.trust), (POLICIES, &snapshot.policies)] {
        let base = root.join(set);
        fs::create_dir_all(&base)?;
        for (rel, bytes) in files {
            let path = base.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut f = fs::File::create(&path)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
    }
    Ok(())
}

/// Points `DEST/current` at `target` (relative to `DEST`).
#[cfg(unix)]
fn swap_link(dest: &Path, target: &Path) -> io::Result<()> {
    let tmp = dest.join(format!(".{CURRENT}.tmp"));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    // rename(2) replaces the old link atomically: a reader sees the old or the new version.
    fs::rename(&tmp, dest.join(CURRENT))?;
    if let Ok(d) = fs::File::open(dest) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Points `DEST\current` at `target`: remove, then create, as the kubelet swaps `..data` on
/// Windows (a directory link cannot be renamed over another).
#[cfg(windows)]
fn swap_link(dest: &Path, target: &Path) -> io::Result<()> {
    let link = dest.join(CURRENT);
    match fs::remove_dir(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::windows::fs::symlink_dir(target, &link)
}

/// Creates `DEST/<name> -> current/<name>` once.
fn ensure_fixed_link(dest: &Path, name: &str) -> io::Result<()> {
    let link = dest.join(name);
    let want = Path::new(CURRENT).join(name);
    match fs::read_link(&link) {
        Ok(t) if t == want => return Ok(()),
        Ok(_) => remove_link(&link)?,
        Err(_) if fs::symlink_metadata(&link).is_ok() => {
            // Something else is there (an older layout, or a hand-made directory).
            let meta = fs::symlink_metadata(&link)?;
            if meta.is_dir() {
                fs::remove_dir_all(&link)?;
            } else {
                fs::remove_file(&link)?;
            }
        }
        Err(_) => {}
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&want, &link)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::symlink_dir(&want, &link)
    }
}

fn remove_link(link: &Path) -> io::Result<()> {
    #[cfg(windows)]
    {
        fs::remove_dir(link).or_else(|_| fs::remove_file(link))
    }
    #[cfg(not(windows))]
    {
        fs::remove_file(link)
    }
}

/// Removes every version but `current` and `previous`, and leftover staging directories.
///
/// A version is first renamed out of the way (`.trash-<version>`), then deleted: a reader that
/// resolved `current` to it before and reads below that path either reads all of it (nothing is
/// deleted while the path resolves) or fails to open something and retries; it never gets a
/// set with files missing. A version that cannot be renamed (on Windows, while a reader has it
/// open) is left for the next pass.
fn prune(versions: &Path, current: &str, previous: Option<&str>) {
    let Ok(entries) = fs::read_dir(versions) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == current || Some(name.as_ref()) == previous {
            continue;
        }
        let doomed = if name.starts_with('.') {
            // Staging or trash left by an interrupted pass: no reader resolves to it.
            entry.path()
        } else {
            let trash = versions.join(format!("{TRASH_PREFIX}{name}"));
            if let Err(e) = fs::rename(entry.path(), &trash) {
                tracing::debug!(path = %entry.path().display(), error = %e, "cannot retire an old version yet");
                continue;
            }
            trash
        };
        if let Err(e) = fs::remove_dir_all(&doomed) {
            tracing::debug!(path = %doomed.display(), error = %e, "cannot remove an old version");
        }
    }
}

/// Where a version goes while it is deleted.
const TRASH_PREFIX: &str = ".trash-";

/// Only the agent's own account (and administrators) may change what the node trusts.
#[cfg(unix)]
fn secure_dir(dest: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(dest)?.permissions().mode();
    if mode & 0o022 != 0 {
        fs::set_permissions(dest, fs::Permissions::from_mode(mode & !0o022))?;
    }
    Ok(())
}

/// Only SYSTEM and Administrators may write below the destination; Users may read. Under
/// `C:\ProgramData` the inherited ACL would let any local account (including
/// `NT AUTHORITY\Local service`, which other HostProcess pods run as) add a trusted key.
#[cfg(windows)]
fn secure_dir(dest: &Path) -> io::Result<()> {
    let status = std::process::Command::new("icacls")
        .arg(dest)
        .args([
            "/inheritance:r",
            "/grant:r",
            "*S-1-5-18:(OI)(CI)F",
            "*S-1-5-32-544:(OI)(CI)F",
            "*S-1-5-32-545:(OI)(CI)RX",
            "/Q",
        ])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("icacls failed: {status}")))
    }
}

#[cfg(not(any(unix, windows)))]
fn secure_dir(_dest: &Path) -> io::Result<()> {
    Ok(())
}

/// `N keys, M policies` for messages.
#[derive(Debug)]
pub struct Counts<'a>(pub &'a SyncOutcome);

impl fmt::Display for Counts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SyncOutcome::Installed {
                version,
                keys,
                policies,
            } => write!(
                f,
                "installed {version}: {} key(s), {policies} policies",
                keys.len()
            ),
            SyncOutcome::Unchanged => f.write_str("unchanged"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sources_follow_the_sandbox_mount_point() {
        let sandbox = std::ffi::OsStr::new("/hpc");
        assert_eq!(
            resolve_source(Path::new("etc/keys"), Some(sandbox)),
            PathBuf::from("/hpc/etc/keys")
        );
        assert_eq!(
            resolve_source(Path::new("/etc/keys"), Some(sandbox)),
            PathBuf::from("/etc/keys")
        );
        assert_eq!(
            resolve_source(Path::new("etc/keys"), None),
            PathBuf::from("etc/keys")
        );
        assert_eq!(
            resolve_source(Path::new("etc/keys"), Some(std::ffi::OsStr::new(""))),
            PathBuf::from("etc/keys")
        );
    }

    #[test]
    fn digest_depends_on_names_and_bytes() {
        let mut a = Snapshot::default();
        a.trust.insert("k.pub".into(), b"x".to_vec());
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.trust.insert("k.pub".into(), b"y".to_vec());
        assert_ne!(a.digest(), b.digest());
        let mut c = Snapshot::default();
        c.policies.insert("k.pub".into(), b"x".to_vec());
        assert_ne!(a.digest(), c.digest());
    }
}
