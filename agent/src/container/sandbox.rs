//! The per-container sandbox directory (hcsshim's `C:\hpc\<id>\`, HP-JOB-03 fallback layout)
//! and its mounts: creation, and removal that never deletes through a mount.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::layout::MountPlan;

/// A sandbox-level failure, with the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file-system operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was attempted (`create directory`, `link`, `remove`, …).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The sandbox directory exists already (another container with that id, or a leftover).
    #[error("sandbox {} already exists", path.display())]
    Exists {
        /// The directory.
        path: PathBuf,
    },
    /// Something is still mounted below the sandbox: it is not removed, so that nothing is
    /// deleted through the mount.
    #[error("{} is still mounted; the sandbox {} was left in place", mount.display(), sandbox.display())]
    StillMounted {
        /// The sandbox.
        sandbox: PathBuf,
        /// The mount point.
        mount: PathBuf,
    },
}

/// The file in a sandbox that records the host links made for it, so that a later agent can
/// remove them if this one dies (`<link>\t<target>` per line).
pub const LINKS_RECORD: &str = ".hostgate-links";

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SandboxError + use<> {
    let path = path.to_owned();
    move |source| SandboxError::Io {
        action,
        path,
        source,
    }
}

/// How a mount ended up being exposed (reported for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// A symlink to the source.
    Symlink,
    /// A read-only bind mount of the source.
    ReadOnlyBind,
}

/// A created sandbox. Dropping it removes it (errors are logged); [`Sandbox::remove`] reports
/// them.
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
    binds: Vec<PathBuf>,
    links: Vec<(PathBuf, PathBuf)>,
    exposures: Vec<(String, Exposure, bool)>,
    /// A directory this sandbox did not create (a container's mounted root file system): only
    /// what was laid out in it is removed, never the directory or its mount.
    adopted: bool,
    /// The entries laid out in an adopted directory (symlinks and bind targets).
    created: Vec<PathBuf>,
    removed: bool,
}

impl Sandbox {
    /// Creates `<root>/<id>` and lays out the mounts. `bind_read_only`: expose read-only mounts
    /// as read-only bind mounts where the host allows it (Linux, root); otherwise, or if that
    /// fails, as symlinks (the read-only flag is then not enforced, with a warning). On error
    /// everything created so far is removed.
    pub fn create(
        root: &Path,
        id: &str,
        plans: &[MountPlan],
        bind_read_only: bool,
    ) -> Result<Self, SandboxError> {
        fs::create_dir_all(root).map_err(io_err("create directory", root))?;
        let dir = root.join(id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(SandboxError::Exists { path: dir });
            }
            Err(e) => return Err(io_err("create directory", &dir)(e)),
        }
        let sandbox = Sandbox {
            dir,
            binds: Vec::new(),
            links: Vec::new(),
            exposures: Vec::new(),
            adopted: false,
            created: Vec::new(),
            removed: false,
        };
        sandbox.lay_out(plans, bind_read_only)
    }

    /// Uses an existing directory as the sandbox (a container's root file system, mounted by
    /// the runtime: hcsshim's volume at `C:\hpc\<id>\`) and lays the mounts out in it.
    /// Removing the sandbox removes only what was laid out; the directory and anything
    /// mounted on it stay for the runtime to release. A mount destination that exists in the
    /// directory already is an error (nothing is shadowed).
    pub fn adopt(
        dir: &Path,
        plans: &[MountPlan],
        bind_read_only: bool,
    ) -> Result<Self, SandboxError> {
        if !dir.is_dir() {
            return Err(io_err("use directory", dir)(io::Error::from(
                io::ErrorKind::NotFound,
            )));
        }
        let sandbox = Sandbox {
            dir: dir.to_owned(),
            binds: Vec::new(),
            links: Vec::new(),
            exposures: Vec::new(),
            adopted: true,
            created: Vec::new(),
            removed: false,
        };
        sandbox.lay_out(plans, bind_read_only)
    }

    fn lay_out(self, plans: &[MountPlan], bind_read_only: bool) -> Result<Self, SandboxError> {
        let mut sandbox = self;
        for plan in plans {
            if let Err(err) = sandbox.expose(plan, bind_read_only) {
                if let Err(cleanup) = sandbox.remove() {
                    tracing::warn!(error = %cleanup, "cannot remove a half-created sandbox");
                }
                return Err(err);
            }
        }
        Ok(sandbox)
    }

    /// The sandbox directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Per mount destination: how it is exposed in the sandbox, and whether a host link was
    /// created at the destination itself.
    pub fn exposures(&self) -> &[(String, Exposure, bool)] {
        &self.exposures
    }

    fn expose(&mut self, plan: &MountPlan, bind_read_only: bool) -> Result<(), SandboxError> {
        let target = &plan.in_sandbox;
        if let Some(parent) = target.parent() {
            // Nested mounts are refused by the layout, so no parent is a mount or a link.
            fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
        }
        let mut exposure = Exposure::Symlink;
        if plan.mount.read_only {
            if bind_read_only {
                match sys::bind_read_only(&plan.mount.source, target) {
                    Ok(()) => {
                        self.binds.push(target.clone());
                        exposure = Exposure::ReadOnlyBind;
                    }
                    Err(err) => tracing::warn!(
                        destination = %plan.mount.destination,
                        error = %err,
                        "cannot make a read-only bind mount; exposing a symlink, readOnly is not enforced"
                    ),
                }
            } else {
                tracing::warn!(
                    destination = %plan.mount.destination,
                    "read-only bind mounts are disabled; exposing a symlink, readOnly is not enforced"
                );
            }
        }
        if exposure == Exposure::Symlink {
            symlink(&plan.mount.source, target).map_err(io_err("link", target))?;
        }
        if self.adopted {
            self.created.push(target.clone());
        }
        let mut linked = false;
        if let Some(link) = &plan.host_link {
            match create_host_link(link, target) {
                Ok(()) => {
                    self.links.push((link.clone(), target.clone()));
                    linked = true;
                    self.record_links()?;
                }
                Err(why) => tracing::warn!(
                    destination = %plan.mount.destination,
                    "not linked at the destination itself: {why}; it is available in the sandbox at {}",
                    target.display()
                ),
            }
        }
        self.exposures
            .push((plan.mount.destination.clone(), exposure, linked));
        Ok(())
    }

    fn record_links(&self) -> Result<(), SandboxError> {
        let mut text = String::new();
        for (link, target) in &self.links {
            text.push_str(&format!("{}\t{}\n", link.display(), target.display()));
        }
        let path = self.dir.join(LINKS_RECORD);
        fs::write(&path, text).map_err(io_err("write", &path))
    }

    /// Removes what a dead agent left of a sandbox: the host links its record names (only
    /// those that still point into it), every mount below it, then the directory.
    pub fn remove_leftover(dir: &Path) -> Result<(), SandboxError> {
        let links = fs::read_to_string(dir.join(LINKS_RECORD))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(link, target)| (PathBuf::from(link), PathBuf::from(target)))
            .filter(|(_, target)| target.starts_with(dir))
            .collect();
        let mut leftover = Sandbox {
            dir: dir.to_owned(),
            binds: Vec::new(),
            links,
            exposures: Vec::new(),
            adopted: false,
            created: Vec::new(),
            removed: false,
        };
        leftover.remove()
    }

    /// Removes the host links (those still pointing into the sandbox), unmounts the bind mounts
    /// and anything else mounted below the sandbox, then deletes the sandbox. If a mount
    /// cannot be removed, the sandbox is left in place (never deleted through a mount).
    pub fn remove(&mut self) -> Result<(), SandboxError> {
        if self.removed {
            return Ok(());
        }
        let mut first: Option<SandboxError> = None;
        for (link, target) in self.links.drain(..).rev() {
            if fs::read_link(&link).is_ok_and(|t| t == target)
                && let Err(e) = fs::remove_file(&link)
                && e.kind() != io::ErrorKind::NotFound
            {
                first.get_or_insert(io_err("remove", &link)(e));
            }
        }
        for bind in self.binds.drain(..).rev() {
            if let Err(e) = sys::unmount(&bind) {
                first.get_or_insert(io_err("unmount", &bind)(e));
            }
        }
        if self.adopted {
            for entry in self.created.drain(..).rev() {
                let removed = match fs::symlink_metadata(&entry) {
                    Ok(m) if m.is_dir() => fs::remove_dir(&entry),
                    Ok(_) => fs::remove_file(&entry),
                    Err(e) => Err(e),
                };
                if let Err(e) = removed
                    && e.kind() != io::ErrorKind::NotFound
                {
                    first.get_or_insert(io_err("remove", &entry)(e));
                }
            }
            self.removed = first.is_none();
            return first.map_or(Ok(()), Err);
        }
        if let Some(mount) = sys::mounts_below(&self.dir)
            .into_iter()
            .find(|m| sys::unmount(m).is_err())
        {
            return Err(first.unwrap_or(SandboxError::StillMounted {
                sandbox: self.dir.clone(),
                mount,
            }));
        }
        if let Some(mount) = sys::mounts_below(&self.dir).into_iter().next() {
            return Err(SandboxError::StillMounted {
                sandbox: self.dir.clone(),
                mount,
            });
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                first.get_or_insert(io_err("remove", &self.dir)(e));
            }
        }
        self.removed = first.is_none();
        match first {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(err) = self.remove() {
            tracing::warn!(sandbox = %self.dir.display(), error = %err, "cannot remove sandbox");
        }
    }
}

#[cfg(unix)]
fn symlink(source: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(source, link)
}

#[cfg(windows)]
fn symlink(source: &Path, link: &Path) -> io::Result<()> {
    if source.is_dir() {
        std::os::windows::fs::symlink_dir(source, link)
    } else {
        std::os::windows::fs::symlink_file(source, link)
    }
}

/// Creates `link` → `target` at an absolute host path, only if that is safe: nothing exists at
/// `link`, and its parent directory exists and is reached without symlinks (so the link lands
/// where it says). Returns why not otherwise. Existing files are never replaced or shadowed.
fn create_host_link(link: &Path, target: &Path) -> Result<(), String> {
    match fs::symlink_metadata(link) {
        Ok(_) => return Err(format!("{} already exists", link.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot inspect {}: {e}", link.display())),
    }
    let parent = link
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", link.display()))?;
    match parent.canonicalize() {
        Ok(canonical) if canonical == parent => {}
        Ok(_) => {
            return Err(format!("{} is reached through a symlink", parent.display()));
        }
        Err(_) => return Err(format!("{} does not exist", parent.display())),
    }
    symlink(target, link).map_err(|e| format!("cannot create {}: {e}", link.display()))
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::path::{Path, PathBuf};

    use nix::mount::{MntFlags, MsFlags, mount, umount2};

    /// Bind-mounts `source` at `target` (created as an empty directory or file first) and
    /// remounts it read-only. On failure nothing is left at `target`.
    pub(super) fn bind_read_only(source: &Path, target: &Path) -> io::Result<()> {
        let meta = std::fs::metadata(source)?;
        if meta.is_dir() {
            std::fs::create_dir(target)?;
        } else {
            // Never an existing file: truncating it would change the image under the mount.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(target)?;
        }
        let undo = |err: io::Error| {
            let _ = if meta.is_dir() {
                std::fs::remove_dir(target)
            } else {
                std::fs::remove_file(target)
            };
            err
        };
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| undo(e.into()))?;
        if let Err(e) = mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        ) {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            return Err(undo(e.into()));
        }
        Ok(())
    }

    /// Detaches the mount at `target`; "not mounted" and "gone" are success.
    pub(super) fn unmount(target: &Path) -> io::Result<()> {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Mount points at or below `dir` (from `/proc/self/mountinfo`), deepest first.
    pub(super) fn mounts_below(dir: &Path) -> Vec<PathBuf> {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = info
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|p| PathBuf::from(unescape(p)))
            .filter(|p| p.starts_with(dir))
            .collect();
        found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        found.dedup();
        found
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    pub(super) fn unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\'
                && i + 3 < b.len()
                && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
            {
                let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
                out.push(v);
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;
    use std::path::{Path, PathBuf};

    pub(super) fn bind_read_only(_source: &Path, _target: &Path) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "read-only bind mounts are only implemented on Linux",
        ))
    }

    pub(super) fn unmount(_target: &Path) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn mounts_below(_dir: &Path) -> Vec<PathBuf> {
        Vec::new()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::container::layout::{Mount, plan};

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(sys::unescape("/a\\040b"), "/a b");
        assert_eq!(sys::unescape("/tab\\011x\\134y"), "/tab\tx\\y");
        assert_eq!(sys::unescape("/plain"), "/plain");
        assert_eq!(sys::unescape("/short\\04"), "/short\\04");
    }

    /// An adopted root file system keeps the image's files: a read-only bind onto a file the
    /// image has is refused before anything is mounted, and the file is left as it was.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_image_file_at_a_read_only_destination_is_refused_untouched() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("app.conf");
        fs::write(&src, "from the volume").expect("write");
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
        fs::write(rootfs.join("etc/app.conf"), "from the image").expect("write");
        let mounts = [Mount {
            source: src,
            destination: "/etc/app.conf".to_owned(),
            read_only: true,
        }];
        let plans = plan(&mounts, &rootfs, true).expect("plan");
        assert!(Sandbox::adopt(&rootfs, &plans, true).is_err());
        assert_eq!(
            fs::read_to_string(rootfs.join("etc/app.conf")).expect("read"),
            "from the image"
        );
    }

    #[test]
    fn symlink_layout_and_removal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        fs::create_dir(&src).expect("mkdir");
        fs::write(src.join("f"), "data").expect("write");
        let root = tmp.path().join("hpc");
        let mounts = [Mount {
            source: src.clone(),
            destination: "C:\\data\\in".to_owned(),
            read_only: false,
        }];
        let plans = plan(&mounts, &root.join("c1"), true).expect("plan");
        let mut sb = Sandbox::create(&root, "c1", &plans, true).expect("create");
        let exposed = sb.path().join("data/in");
        assert_eq!(fs::read_link(&exposed).expect("symlink"), src);
        assert_eq!(fs::read_to_string(exposed.join("f")).expect("read"), "data");
        assert_eq!(
            sb.exposures(),
            [("C:\\data\\in".to_owned(), Exposure::Symlink, false)]
        );
        assert!(matches!(
            Sandbox::create(&root, "c1", &[], true),
            Err(SandboxError::Exists { .. })
        ));
        sb.remove().expect("remove");
        assert!(!root.join("c1").exists());
        // The source survives removal of the link.
        assert_eq!(fs::read_to_string(src.join("f")).expect("read"), "data");
    }

    #[test]
    fn leftovers_of_a_dead_agent_are_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        fs::create_dir(&src).expect("mkdir");
        let root = tmp.path().join("hpc");
        let link = tmp.path().join("app");
        let mounts = [Mount {
            source: src.clone(),
            destination: link.to_string_lossy().into_owned(),
            read_only: false,
        }];
        let plans = plan(&mounts, &root.join("c1"), true).expect("plan");
        let sb = Sandbox::create(&root, "c1", &plans, false).expect("create");
        assert!(fs::symlink_metadata(&link).is_ok());
        // The agent dies: nothing runs its cleanup.
        std::mem::forget(sb);
        // A link the record names but that points elsewhere now is left alone.
        let other = tmp.path().join("other");
        fs::write(
            root.join("c1").join(LINKS_RECORD),
            format!(
                "{}\t{}\n{}\t{}\n",
                link.display(),
                root.join("c1")
                    .join(link.strip_prefix("/").expect("absolute"))
                    .display(),
                other.display(),
                "/elsewhere"
            ),
        )
        .expect("record");
        std::os::unix::fs::symlink("/elsewhere", &other).expect("symlink");
        Sandbox::remove_leftover(&root.join("c1")).expect("removed");
        assert!(!root.join("c1").exists());
        assert!(fs::symlink_metadata(&link).is_err(), "link removed");
        assert!(fs::symlink_metadata(&other).is_ok(), "foreign link kept");
        assert!(src.is_dir());
    }

    #[test]
    fn host_links_never_replace_anything() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("target");
        fs::create_dir(&target).expect("mkdir");
        let link = tmp.path().join("link");
        create_host_link(&link, &target).expect("created");
        assert_eq!(fs::read_link(&link).expect("link"), target);
        let again = create_host_link(&link, &target).expect_err("exists");
        assert!(again.contains("already exists"), "{again}");
        let missing_parent =
            create_host_link(&tmp.path().join("no/such"), &target).expect_err("no parent");
        assert!(
            missing_parent.contains("does not exist"),
            "{missing_parent}"
        );
        // A parent reached through a symlink is refused.
        let through = create_host_link(&link.join("x"), &target).expect_err("symlinked parent");
        assert!(through.contains("symlink"), "{through}");
    }
}
