//! Mounting a container's root file system where its spec expects it (`<bundle>/rootfs`), from
//! the mounts containerd's snapshotter prepared (`CreateTaskRequest.rootfs`: an `overlay` mount,
//! or a read-only `bind` for an image of one layer).
//!
//! On Windows containerd hands over `windows-layer` mounts, which only hcsshim's layer APIs can
//! turn into a volume: the native mode refuses them with a message pointing at delegate mode.

use std::path::{Path, PathBuf};

/// One mount from containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    /// `overlay`, `bind`, …
    pub kind: String,
    /// What to mount.
    pub source: String,
    /// Mount options (flags such as `ro`, and file system data such as `lowerdir=…`).
    pub options: Vec<String>,
}

/// Why the root file system could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// More than one mount: nothing in containerd's snapshotters produces that for a rootfs.
    #[error("{0} root file system mounts given; one is supported")]
    Several(usize),
    /// The mount failed.
    #[error("cannot mount the {kind} root file system at {}", target.display())]
    Mount {
        /// The mount type.
        kind: String,
        /// Where.
        target: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// This platform's native mode cannot mount this kind of root file system.
    #[error(
        "cannot mount a {0} root file system here: run the shim in delegate mode, which hands containers to the platform's shim after the approval check"
    )]
    Unsupported(String),
}

/// A mounted root file system; unmounted when dropped.
#[derive(Debug)]
pub struct Mounted {
    target: PathBuf,
}

impl Mounted {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.target) {
            log::warn!("cannot unmount {}: {e}", self.target.display());
        }
    }
}

/// Splits mount options into flags and file system data, as mount(8) does.
#[cfg(target_os = "linux")]
fn split_options(options: &[String]) -> (nix::mount::MsFlags, Vec<String>) {
    use nix::mount::MsFlags;
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            other => data.push(other.to_owned()),
        }
    }
    (flags, data)
}

/// Mounts `mounts` (at most one) at `target`. No mount: the spec's root is used as it is.
#[cfg(target_os = "linux")]
pub fn mount(mounts: &[RootfsMount], target: &Path) -> Result<Option<Mounted>, RootfsError> {
    use nix::mount::{MsFlags, mount as sys_mount};
    let m = match mounts {
        [] => return Ok(None),
        [m] => m,
        more => return Err(RootfsError::Several(more.len())),
    };
    let err = |source: std::io::Error| RootfsError::Mount {
        kind: m.kind.clone(),
        target: target.to_owned(),
        source,
    };
    std::fs::create_dir_all(target).map_err(err)?;
    let (flags, data) = split_options(&m.options);
    let data = data.join(",");
    if m.kind == "bind" || flags.contains(MsFlags::MS_BIND) {
        let bind = flags & (MsFlags::MS_BIND | MsFlags::MS_REC) | MsFlags::MS_BIND;
        sys_mount(
            Some(m.source.as_str()),
            target,
            None::<&str>,
            bind,
            None::<&str>,
        )
        .map_err(|e| err(e.into()))?;
        let mounted = Mounted {
            target: target.to_owned(),
        };
        if flags.contains(MsFlags::MS_RDONLY) {
            let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            sys_mount(None::<&str>, target, None::<&str>, remount, None::<&str>)
                .map_err(|e| err(e.into()))?;
        }
        return Ok(Some(mounted));
    }
    sys_mount(
        Some(m.source.as_str()),
        target,
        Some(m.kind.as_str()),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|e| err(e.into()))?;
    Ok(Some(Mounted {
        target: target.to_owned(),
    }))
}

/// Windows: `windows-layer` mounts need hcsshim; refused (see the module docs).
#[cfg(not(target_os = "linux"))]
pub fn mount(mounts: &[RootfsMount], _target: &Path) -> Result<Option<Mounted>, RootfsError> {
    refuse_layers(mounts)
}

/// The native mode's answer on Windows, compiled and tested everywhere: no mount is nothing to
/// do, any mount is one it cannot make.
pub fn refuse_layers(mounts: &[RootfsMount]) -> Result<Option<Mounted>, RootfsError> {
    match mounts.first() {
        None => Ok(None),
        Some(m) => Err(RootfsError::Unsupported(m.kind.clone())),
    }
}

/// Detaches whatever is mounted at `target` ("not mounted" and "gone" are success).
pub fn unmount(target: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::mount::{MntFlags, umount2};
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = target;
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        use nix::mount::MsFlags;
        let (flags, data) = split_options(&[
            "ro".into(),
            "nosuid".into(),
            "index=off".into(),
            "lowerdir=/a:/b".into(),
            "rw".into(),
        ]);
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(data, ["index=off", "lowerdir=/a:/b"]);
    }

    #[test]
    fn windows_layers_are_refused_with_a_pointer_to_delegate_mode() {
        assert!(refuse_layers(&[]).expect("none").is_none());
        let layer = RootfsMount {
            kind: "windows-layer".into(),
            source: "C:\\ProgramData\\containerd\\snapshots\\1".into(),
            options: vec![],
        };
        let err = refuse_layers(&[layer]).expect_err("refused");
        assert!(err.to_string().contains("windows-layer"), "{err}");
        assert!(err.to_string().contains("delegate mode"), "{err}");
    }

    #[test]
    fn several_mounts_are_refused_and_none_is_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(mount(&[], dir.path()).expect("none").is_none());
        let m = RootfsMount {
            kind: "bind".into(),
            source: "/".into(),
            options: vec![],
        };
        assert!(matches!(
            mount(&[m.clone(), m], dir.path()),
            Err(RootfsError::Several(2))
        ));
    }
}
