//! The few `/proc` readers cleanup needs: mounts, cgroup hierarchies and processes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`, the fields the harness uses.
#[derive(Debug, Clone)]
pub(crate) struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

/// The mount table of this process's mount namespace, in mount order.
pub(crate) fn mounts() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape_octal(fields.get(4)?)),
                fs_type: (*fields.get(sep + 1)?).to_owned(),
                super_options: (*fields.get(sep + 3)?).to_owned(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(oct).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct CgroupHierarchy {
    pub mount_point: PathBuf,
    /// `true` for cgroup2.
    pub unified: bool,
    /// v1: the controllers (and `name=`) of the mount's options.
    controllers: Vec<String>,
}

impl CgroupHierarchy {
    pub fn has_controller(&self, name: &str) -> bool {
        if self.unified {
            fs::read_to_string(self.mount_point.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == name))
        } else {
            self.controllers.iter().any(|c| c == name)
        }
    }
}

/// Every cgroup (v1) and cgroup2 mount.
pub(crate) fn cgroup_mounts() -> io::Result<Vec<CgroupHierarchy>> {
    Ok(mounts()?
        .into_iter()
        .filter_map(|m| match m.fs_type.as_str() {
            "cgroup2" => Some(CgroupHierarchy {
                mount_point: m.mount_point,
                unified: true,
                controllers: Vec::new(),
            }),
            "cgroup" => Some(CgroupHierarchy {
                mount_point: m.mount_point,
                unified: false,
                controllers: m.super_options.split(',').map(str::to_owned).collect(),
            }),
            _ => None,
        })
        .collect())
}

/// The pids in `/proc`.
pub(crate) fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A process's arguments (empty for kernel threads and processes already gone).
pub(crate) fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn cwd(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The cgroup paths of a process, one per hierarchy line of `/proc/<pid>/cgroup`.
pub(crate) fn cgroup_paths(pid: i32) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|t| {
            t.lines()
                .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Identity and state of a process: `(state letter, start time in clock ticks)`.
pub(crate) fn stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: parse after the last `)`.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// A process that still runs: present and not a zombie (zombies have released everything but
/// their pid and wait for a parent that is not ours to reap them).
pub(crate) fn is_live(pid: i32, start: u64) -> bool {
    matches!(stat(pid), Some((state, s)) if s == start && state != 'Z' && state != 'X')
}

/// `path` is `dir` or below it.
pub(crate) fn is_under(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_and_escapes() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext4 /dev/root rw\n\
                    40 30 0:35 / /sys/fs/cgroup/memory rw shared:2 - cgroup cgroup rw,memory\n";
        let m = parse_mountinfo(text);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(m[0].fs_type, "ext4");
        assert_eq!(m[1].super_options, "rw,memory");
    }

    #[test]
    fn own_stat_parses() {
        let (state, start) = stat(std::process::id() as i32).expect("own stat");
        assert!(state == 'R' || state == 'S', "{state}");
        assert!(is_live(std::process::id() as i32, start));
    }
}
