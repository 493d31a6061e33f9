//! Where a container's mounts appear (pure).
//!
//! hcsshim has two layouts (HP-JOB-03/04). With the bind filter, a mount is bound at its
//! destination inside the container's silo (private to it, shadowing what is there), plus a
//! best-effort symlink in the rootfs; without it (the "fallback" layout) there is only the
//! symlink `<rootfs>\<destination without drive letter>` → source. Linux has no silo, so the
//! agent does this:
//!
//! * **In the sandbox, always**: `<sandbox>/<destination without drive letter>`, `\` and `/`
//!   both separators (`C:\etc\app` and `/etc/app` both become `<sandbox>/etc/app`). A
//!   writable mount is a symlink to the source (hcsshim's fallback layout). A read-only mount
//!   is a read-only bind mount of the source there (Linux, root), so the container cannot
//!   write through it even as root; where bind mounts are not possible it is a symlink too and
//!   a warning says that readOnly is not enforced. ConfigMap and Secret mounts are always
//!   read-only, as with the kubelet.
//! * **At an absolute Linux destination** (`/etc/app`, not `C:\…`), in addition, a symlink
//!   `/etc/app` → `<sandbox>/etc/app`, so programs written for Linux containers find their
//!   files where the pod says, with the sandbox's read-only protection. It is created only if
//!   that is safe: nothing exists at the destination (nothing on the host is ever replaced or
//!   shadowed, unlike bindflt, because the host has no private view), and its parent directory
//!   exists and is reached without symlinks. It is removed when the container ends, if it
//!   still points into the sandbox. Otherwise a warning names the sandbox path to use. The
//!   link is visible to the whole host (there is no silo); `--absolute-mount-links false`
//!   turns it off.
//!
//! Refused, as by hcsshim or because the symlink layout cannot do it safely: a mount without
//! source or destination, named-pipe sources, destinations with `..` or at the sandbox root,
//! two mounts at one destination, and a mount inside another one (creating the inner one
//! would write into the outer mount's source on the host).

use std::path::{Component, Path, PathBuf};

/// A mount requested for a container: what a runtime gets in the OCI spec's `mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The host path to expose (a hostPath, or a directory the runner prepared for an emptyDir,
    /// ConfigMap or Secret volume).
    pub source: PathBuf,
    /// The `mountPath` as written in the pod (`C:\config`, `/etc/app`, …).
    pub destination: String,
    /// Whether the container must not write through this mount.
    pub read_only: bool,
}

/// Why a mount or path cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// hcsshim: `invalid OCI spec - a mount must have both source and a destination`.
    #[error("a mount must have both a source and a destination (destination {destination:?})")]
    Incomplete {
        /// The destination.
        destination: String,
    },
    /// hcsshim refuses named pipe sources.
    #[error(
        "named pipe mounts are not supported for job containers ({source_path:?}): interact with the pipe directly"
    )]
    NamedPipe {
        /// The source.
        source_path: String,
    },
    /// The path would resolve outside the sandbox.
    #[error("path {path:?} must not contain '..'")]
    Escapes {
        /// The path.
        path: String,
    },
    /// The destination is the sandbox itself.
    #[error("mount destination {path:?} is the root of the sandbox")]
    Root {
        /// The path.
        path: String,
    },
    /// Two mounts at the same place.
    #[error("two mounts have the destination {path:?}")]
    Duplicate {
        /// The destination.
        path: String,
    },
    /// One mount inside another: the symlink layout would create the inner one inside the
    /// outer mount's source on the host.
    #[error("mount {inner:?} is inside mount {outer:?}, which the symlink layout cannot do")]
    Nested {
        /// The outer destination.
        outer: String,
        /// The inner destination.
        inner: String,
    },
}

/// hcsshim's `stripDriveLetter`: `C:\x` → `\x`, `C:` → `` (the root).
pub fn strip_drive_letter(path: &str) -> &str {
    let b = path.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        &path[2..]
    } else {
        path
    }
}

/// The path of `destination` relative to a sandbox: drive letter removed, `\` and `/` both
/// separators, `.` and empty components dropped. `..` is refused. An empty result (the sandbox
/// root) is allowed only if `allow_root`.
pub fn sandbox_relative(destination: &str, allow_root: bool) -> Result<PathBuf, LayoutError> {
    let mut rel = PathBuf::new();
    for part in strip_drive_letter(destination).split(['\\', '/']) {
        match part {
            "" | "." => {}
            ".." => {
                return Err(LayoutError::Escapes {
                    path: destination.to_owned(),
                });
            }
            other => rel.push(other),
        }
    }
    if rel.as_os_str().is_empty() && !allow_root {
        return Err(LayoutError::Root {
            path: destination.to_owned(),
        });
    }
    Ok(rel)
}

/// Whether `destination` is an absolute path of this host that a link could be created at:
/// on Linux a `/…` path (not a Windows `C:\…` path); on Windows a drive-letter path.
pub fn host_absolute(destination: &str) -> Option<PathBuf> {
    let path = Path::new(destination);
    if cfg!(windows) {
        return path.is_absolute().then(|| path.to_owned());
    }
    if !destination.starts_with('/') || destination.contains('\\') {
        return None;
    }
    let mut clean = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => clean.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (clean != Path::new("/")).then_some(clean)
}

/// How one mount is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// The mount as requested.
    pub mount: Mount,
    /// `<sandbox>/<destination without drive letter>`: a symlink to the source, or, for a
    /// read-only mount, a read-only bind mount of it where the host allows (Linux as root).
    pub in_sandbox: PathBuf,
    /// For an absolute host path (`/etc/app` on Linux), where a symlink to
    /// [`MountPlan::in_sandbox`] is created if that is safe: nothing exists there yet and the
    /// parent directory exists without symlinks on the way. `None` for Windows-style
    /// destinations on Linux, or when links are disabled.
    pub host_link: Option<PathBuf>,
}

/// Lays out `mounts` under `sandbox`. Refuses incomplete mounts, named pipes, destinations
/// with `..` or at the sandbox root, duplicates and nested destinations.
pub fn plan(
    mounts: &[Mount],
    sandbox: &Path,
    host_links: bool,
) -> Result<Vec<MountPlan>, LayoutError> {
    let mut plans: Vec<MountPlan> = Vec::with_capacity(mounts.len());
    let mut rels: Vec<(PathBuf, &str)> = Vec::with_capacity(mounts.len());
    for m in mounts {
        let source = m.source.to_string_lossy();
        if m.destination.is_empty() || source.is_empty() {
            return Err(LayoutError::Incomplete {
                destination: m.destination.clone(),
            });
        }
        if source.starts_with(r"\\.\pipe\") {
            return Err(LayoutError::NamedPipe {
                source_path: source.into_owned(),
            });
        }
        let rel = sandbox_relative(&m.destination, false)?;
        for (other, other_dest) in &rels {
            if *other == rel {
                return Err(LayoutError::Duplicate {
                    path: m.destination.clone(),
                });
            }
            let (outer, inner) = if rel.starts_with(other) {
                (*other_dest, m.destination.as_str())
            } else if other.starts_with(&rel) {
                (m.destination.as_str(), *other_dest)
            } else {
                continue;
            };
            return Err(LayoutError::Nested {
                outer: outer.to_owned(),
                inner: inner.to_owned(),
            });
        }
        rels.push((rel.clone(), &m.destination));
        plans.push(MountPlan {
            mount: m.clone(),
            in_sandbox: sandbox.join(&rel),
            host_link: if host_links {
                host_absolute(&m.destination)
            } else {
                None
            },
        });
    }
    Ok(plans)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mount(source: &str, destination: &str) -> Mount {
        Mount {
            source: PathBuf::from(source),
            destination: destination.to_owned(),
            read_only: false,
        }
    }

    /// hcsshim `mounts_test.go` shapes plus Linux paths.
    #[test]
    fn relative_paths() {
        let cases: &[(&str, &str)] = &[
            ("C:\\path\\to\\mount", "path/to/mount"),
            ("c:\\x", "x"),
            ("D:/data", "data"),
            ("\\path", "path"),
            ("/etc/config", "etc/config"),
            ("relative\\dir", "relative/dir"),
            ("/a/./b//c/", "a/b/c"),
        ];
        for (input, want) in cases {
            assert_eq!(
                sandbox_relative(input, false).expect("valid"),
                PathBuf::from(want),
                "{input}"
            );
        }
        assert_eq!(strip_drive_letter("C:"), "");
        assert_eq!(strip_drive_letter("1:\\x"), "1:\\x");
        assert_eq!(sandbox_relative("C:", true).expect("root"), PathBuf::new());
        for root in ["C:", "C:\\", "/", ".", ""] {
            assert!(
                matches!(sandbox_relative(root, false), Err(LayoutError::Root { .. })),
                "{root:?}"
            );
        }
        for bad in ["C:\\..\\Windows", "/etc/../..", ".."] {
            assert!(
                matches!(
                    sandbox_relative(bad, true),
                    Err(LayoutError::Escapes { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn host_absolute_destinations() {
        assert_eq!(host_absolute("/etc/app"), Some(PathBuf::from("/etc/app")));
        assert_eq!(host_absolute("/etc//app/"), Some(PathBuf::from("/etc/app")));
        assert_eq!(host_absolute("/etc/./app"), Some(PathBuf::from("/etc/app")));
        for no in [
            "C:\\config",
            "c:/config",
            "relative",
            "/",
            "//",
            "/a/../b",
            "/a\\b",
        ] {
            assert_eq!(host_absolute(no), None, "{no}");
        }
    }

    #[test]
    fn plans() {
        let sb = Path::new("/hpc/c1");
        let mut ro = mount("/src/cm", "/etc/app");
        ro.read_only = true;
        let plans = plan(
            &[mount("/var/lib/k", "C:\\var\\lib\\k"), ro.clone()],
            sb,
            true,
        )
        .expect("valid");
        assert_eq!(plans[0].in_sandbox, PathBuf::from("/hpc/c1/var/lib/k"));
        assert_eq!(plans[0].host_link, None);
        assert_eq!(plans[1].in_sandbox, PathBuf::from("/hpc/c1/etc/app"));
        assert_eq!(plans[1].host_link, Some(PathBuf::from("/etc/app")));
        assert!(plans[1].mount.read_only);
        let plans = plan(std::slice::from_ref(&ro), sb, false).expect("valid");
        assert_eq!(plans[0].host_link, None);
    }

    #[test]
    fn refused_plans() {
        let sb = Path::new("/hpc/c1");
        let cases: Vec<(Vec<Mount>, &str)> = vec![
            (vec![mount("", "/x")], "source and a destination"),
            (vec![mount("/s", "")], "source and a destination"),
            (
                vec![mount("\\\\.\\pipe\\docker_engine", "/p")],
                "named pipe",
            ),
            (vec![mount("/s", "C:\\")], "root of the sandbox"),
            (vec![mount("/s", "/a/../../b")], "'..'"),
            (vec![mount("/s", "/a"), mount("/t", "C:\\a")], "two mounts"),
            (
                vec![mount("/s", "/a"), mount("/t", "/a/b")],
                "inside mount \"/a\"",
            ),
            (
                vec![mount("/t", "/a/b"), mount("/s", "/a")],
                "inside mount \"/a\"",
            ),
        ];
        for (mounts, want) in cases {
            let err = plan(&mounts, sb, true).expect_err(want);
            assert!(err.to_string().contains(want), "{err} / {want}");
        }
        // Siblings with a common prefix are not nested.
        assert!(plan(&[mount("/s", "/ab"), mount("/t", "/a")], sb, true).is_ok());
    }
}
