//! Changing files on a node without leaving it half-changed: every write goes to a temporary
//! file in the same directory and is renamed over the target, after checking that nobody changed
//! the target since it was read; the admin's original configuration is kept as a backup that
//! `uninstall` restores byte for byte.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Why a file could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A file operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is read-only: the admin does not want it changed.
    #[error("{} is read-only; make it writable or configure containerd by hand", .0.display())]
    ReadOnly(PathBuf),
    /// Someone else changed the file between reading and writing it.
    #[error("{} changed while it was being edited; nothing was written, run again", .0.display())]
    Concurrent(PathBuf),
    /// The shim binary to install is missing or not executable.
    #[error("the shim binary {} {reason}", path.display())]
    Binary {
        /// The binary.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError + use<> {
    let path = path.to_owned();
    move |source| FileError::Io {
        action,
        path,
        source,
    }
}

/// A file as it was read, to write it back only if it is still so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The file.
    pub path: PathBuf,
    /// Its bytes when read (`None`: it did not exist).
    pub bytes: Option<Vec<u8>>,
}

impl Snapshot {
    /// Reads `path` (a missing file is a snapshot too).
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let bytes = match fs::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read", path)(e)),
        };
        Ok(Self {
            path: path.to_owned(),
            bytes,
        })
    }

    /// The content as text (lossy: containerd's files are UTF-8 TOML).
    pub fn text(&self) -> Option<String> {
        self.bytes
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// Refuses a read-only file.
    pub fn check_writable(&self) -> Result<(), FileError> {
        match fs::metadata(&self.path) {
            Ok(m) if m.permissions().readonly() => Err(FileError::ReadOnly(self.path.clone())),
            _ => Ok(()),
        }
    }

    /// Writes `content` in place of the file, atomically, if the file is still as it was read
    /// (`None` content removes it). Keeps the file's permissions.
    pub fn replace(&self, content: Option<&[u8]>) -> Result<(), FileError> {
        let now = Snapshot::read(&self.path)?;
        if now.bytes != self.bytes {
            return Err(FileError::Concurrent(self.path.clone()));
        }
        match content {
            Some(bytes) => write_atomic(&self.path, bytes),
            None => match fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err("remove", &self.path)(e)),
            },
        }
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`,
/// keeping `path`'s permissions.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_like(path, bytes, path)
}

/// [`write_atomic`] with the permissions of `like` (when it exists): a backup of a file that
/// holds registry credentials must be as private as the file.
pub fn write_atomic_like(path: &Path, bytes: &[u8], like: &Path) -> Result<(), FileError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let tmp = temp_beside(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if let Ok(m) = fs::metadata(like) {
            f.set_permissions(m.permissions())?;
        }
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err("write", path))
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.hostgate-{}.tmp", std::process::id()))
}

/// The SHA-256 of `bytes`, hex.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The backup of the admin's original configuration, beside it.
pub fn backup_path(config: &Path) -> PathBuf {
    sibling(config, "hostgate-backup")
}

/// The digest of the configuration as the installer left it, beside it: `uninstall` restores
/// the backup only while the file is still exactly that.
pub fn installed_path(config: &Path) -> PathBuf {
    sibling(config, "hostgate-installed")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map_or_else(
        || "config.toml".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    path.with_file_name(format!("{name}.{suffix}"))
}

/// What happened to the shim binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// The same bytes were there already.
    Unchanged,
    /// Installed; the previous binary (if any) is kept at the given path.
    Installed {
        /// Where the previous binary went.
        previous: Option<PathBuf>,
    },
}

/// Checks that `source` is a file that can be run.
pub fn check_binary(source: &Path) -> Result<Vec<u8>, FileError> {
    let meta = fs::metadata(source).map_err(|_| FileError::Binary {
        path: source.to_owned(),
        reason: "does not exist",
    })?;
    if !meta.is_file() {
        return Err(FileError::Binary {
            path: source.to_owned(),
            reason: "is not a file",
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(FileError::Binary {
                path: source.to_owned(),
                reason: "is not executable",
            });
        }
    }
    fs::read(source).map_err(io_err("read", source))
}

/// Puts `bytes` (the shim) at `target` atomically, keeping the binary that was there as
/// `<target>.previous`. A running binary is never overwritten in place: the new one is renamed
/// over it (Windows, where a running executable cannot be replaced, moves it aside first).
pub fn place_binary(bytes: &[u8], target: &Path) -> Result<Placed, FileError> {
    let current = Snapshot::read(target)?;
    if current.bytes.as_deref() == Some(bytes) {
        return Ok(Placed::Unchanged);
    }
    let tmp = temp_beside(target);
    let staged = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(fs::Permissions::from_mode(0o755))?;
        }
        f.sync_all()
    })();
    if let Err(e) = staged {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp)(e));
    }
    let previous = current.bytes.as_ref().map(|_| previous_path(target));
    if let Some(prev) = &previous {
        fs::copy(target, prev).map_err(io_err("keep", prev))?;
    }
    if let Err(e) = fs::rename(&tmp, target) {
        // A running executable on Windows: move it aside, then put the new one in place.
        let moved = previous
            .as_ref()
            .is_some_and(|prev| fs::rename(target, prev).is_ok());
        if !moved || fs::rename(&tmp, target).is_err() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("replace", target)(e));
        }
    }
    Ok(Placed::Installed { previous })
}

/// Where the replaced shim binary is kept.
pub fn previous_path(target: &Path) -> PathBuf {
    sibling(target, "previous")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_refuses_a_file_changed_since_it_was_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        fs::write(&path, "a").expect("write");
        let snap = Snapshot::read(&path).expect("read");
        fs::write(&path, "b").expect("someone else");
        assert!(matches!(
            snap.replace(Some(b"c")),
            Err(FileError::Concurrent(_))
        ));
        assert_eq!(fs::read_to_string(&path).expect("read"), "b");
        let snap = Snapshot::read(&path).expect("read");
        snap.replace(Some(b"c")).expect("replace");
        assert_eq!(fs::read_to_string(&path).expect("read"), "c");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        Snapshot::read(&path)
            .expect("read")
            .replace(None)
            .expect("remove");
        assert!(!path.exists());
    }

    #[cfg(unix)]
    #[test]
    fn read_only_files_and_bad_binaries_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        fs::write(&path, "a").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).expect("chmod");
        assert!(matches!(
            Snapshot::read(&path).expect("read").check_writable(),
            Err(FileError::ReadOnly(_))
        ));
        let missing = dir.path().join("none");
        assert!(
            check_binary(&missing)
                .expect_err("missing")
                .to_string()
                .contains("does not exist")
        );
        let plain = dir.path().join("plain");
        fs::write(&plain, "x").expect("write");
        assert!(
            check_binary(&plain)
                .expect_err("not executable")
                .to_string()
                .contains("not executable")
        );
        assert!(
            check_binary(dir.path())
                .expect_err("dir")
                .to_string()
                .contains("not a file")
        );
    }

    #[test]
    fn binaries_are_placed_atomically_keeping_the_previous_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("containerd-shim-hostgate-v1");
        assert_eq!(
            place_binary(b"one", &target).expect("place"),
            Placed::Installed { previous: None }
        );
        assert_eq!(
            place_binary(b"one", &target).expect("again"),
            Placed::Unchanged
        );
        assert_eq!(
            place_binary(b"two", &target).expect("upgrade"),
            Placed::Installed {
                previous: Some(previous_path(&target))
            }
        );
        assert_eq!(fs::read(&target).expect("read"), b"two");
        assert_eq!(fs::read(previous_path(&target)).expect("read"), b"one");
    }
}
