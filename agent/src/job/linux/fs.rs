//! Small cgroupfs file helpers whose errors carry the path (youki `common::write_cgroup_file`).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::job::WrappedIoError;

/// Writes `data` to an existing control file in one `write(2)` (no creation: a missing file
/// means a missing controller).
pub(crate) fn write_file(path: &Path, data: &str) -> Result<(), WrappedIoError> {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|err| WrappedIoError::Open {
            err,
            path: path.to_owned(),
        })?;
    file.write_all(data.as_bytes())
        .map_err(|err| WrappedIoError::Write {
            err,
            path: path.to_owned(),
            data: data.to_owned(),
        })
}

/// `write_file(dir/name, data)`.
pub(crate) fn write_in(dir: &Path, name: &str, data: &str) -> Result<(), WrappedIoError> {
    write_file(&dir.join(name), data)
}

/// Reads a control file.
pub(crate) fn read_file(path: &Path) -> Result<String, WrappedIoError> {
    fs::read_to_string(path).map_err(|err| WrappedIoError::Read {
        err,
        path: path.to_owned(),
    })
}

/// Reads a control file that may be absent (controller or kernel feature missing): `None`.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, WrappedIoError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(WrappedIoError::Read {
            err,
            path: path.to_owned(),
        }),
    }
}

/// Parses a file holding one unsigned integer.
pub(crate) fn parse_u64(path: &Path, content: &str) -> Result<u64, WrappedIoError> {
    content.trim().parse().map_err(|_| WrappedIoError::Parse {
        path: path.to_owned(),
        detail: format!("expected an unsigned integer, got {:?}", content.trim()),
    })
}

/// Reads a file holding one unsigned integer.
pub(crate) fn read_u64(path: &Path) -> Result<u64, WrappedIoError> {
    parse_u64(path, &read_file(path)?)
}

/// Reads a file holding one unsigned integer, `None` if the file is absent.
pub(crate) fn read_u64_optional(path: &Path) -> Result<Option<u64>, WrappedIoError> {
    read_optional(path)?
        .map(|s| parse_u64(path, &s))
        .transpose()
}

/// The value of `key` in a flat-keyed file (`key value` per line: `cpu.stat`,
/// `memory.events`, `cgroup.events`, `memory.oom_control`); `None` if the key is absent.
pub(crate) fn keyed_value(
    path: &Path,
    content: &str,
    key: &str,
) -> Result<Option<u64>, WrappedIoError> {
    for line in content.lines() {
        let mut words = line.split_ascii_whitespace();
        if words.next() == Some(key) {
            let value = words.next().unwrap_or_default();
            return value.parse().map(Some).map_err(|_| WrappedIoError::Parse {
                path: path.to_owned(),
                detail: format!("expected an unsigned integer for {key:?}, got {value:?}"),
            });
        }
    }
    Ok(None)
}

/// Parses `cgroup.procs` (one pid per line).
pub(crate) fn parse_pids(path: &Path, content: &str) -> Result<Vec<u32>, WrappedIoError> {
    content
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse().map_err(|_| WrappedIoError::Parse {
                path: path.to_owned(),
                detail: format!("expected a process id, got {l:?}"),
            })
        })
        .collect()
}

/// Creates a directory; `Ok(false)` if it exists already.
pub(crate) fn create_dir(path: &Path) -> Result<bool, WrappedIoError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(WrappedIoError::CreateDir {
            err,
            path: path.to_owned(),
        }),
    }
}

/// The sub-directories (child cgroups) of a cgroup directory; empty if it does not exist.
pub(crate) fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, WrappedIoError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(WrappedIoError::ReadDir {
                err,
                path: dir.to_owned(),
            });
        }
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| WrappedIoError::ReadDir {
            err,
            path: dir.to_owned(),
        })?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values() {
        let p = Path::new("memory.events");
        let content = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed_value(p, content, "max").ok(), Some(Some(12)));
        assert_eq!(keyed_value(p, content, "oom").ok(), Some(Some(3)));
        assert_eq!(keyed_value(p, content, "oom_kill").ok(), Some(Some(2)));
        assert_eq!(keyed_value(p, content, "absent").ok(), Some(None));
        assert!(keyed_value(p, "max x\n", "max").is_err());
        assert!(keyed_value(p, "max\n", "max").is_err());
    }

    #[test]
    fn pids() {
        let p = Path::new("cgroup.procs");
        assert_eq!(parse_pids(p, "").ok(), Some(vec![]));
        assert_eq!(parse_pids(p, "1\n22\n333\n").ok(), Some(vec![1, 22, 333]));
        let err = parse_pids(p, "1\nx\n").expect_err("bad pid");
        assert_eq!(err.path(), p);
    }

    #[test]
    fn errors_carry_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("memory.max");
        let err = write_file(&missing, "max").expect_err("missing control file");
        assert_eq!(err.path(), missing);
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert!(err.to_string().contains("memory.max"), "{err}");
        assert_eq!(read_optional(&missing).ok(), Some(None));
        assert_eq!(read_u64_optional(&missing).ok(), Some(None));
        fs::write(&missing, "7\n").expect("fixture");
        assert_eq!(read_u64(&missing).ok(), Some(7));
        write_file(&missing, "max").expect("overwrite");
        assert_eq!(read_file(&missing).ok().as_deref(), Some("max"));
    }
}
