//! Fixtures for tests that start real processes (the agent's job and pod tests).
//!
//! Tests run in parallel threads of one process, so every job or pod gets a
//! [`unique_name`], and every process a test starts carries `<marker>=<name>` in its
//! environment: [`marked`] then finds the processes of one test by scanning
//! `/proc/*/environ`, whatever became of their parents.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::wait::wait_until;

/// `<prefix>-<pid>-<n>`: unique within this test binary (the counter) and among test
/// binaries running at the same time (the pid). A valid job name for any short prefix.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The live processes whose environment holds `marker=value`. Zombies have no environment
/// and are not counted. A single scan can miss a process that is inside `execve` (its
/// environment reads empty until the new image is set up), so poll with [`wait_for_marked`].
pub fn marked(marker: &str, value: &str) -> Vec<u32> {
    let needle = format!("{marker}={value}");
    all_pids()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .collect()
}

/// The ids of every process in `/proc` (zombies included), in directory order.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Waits until the number of processes marked `marker=value` satisfies `expect`.
pub fn wait_for_marked(marker: &str, value: &str, what: &str, expect: impl Fn(usize) -> bool) {
    wait_until(what, || expect(marked(marker, value).len()));
}

/// Waits until no process is marked `marker=value` (killed processes disappear from `/proc`
/// once their parent, or init for orphans, has reaped them).
pub fn assert_no_marked(marker: &str, value: &str) {
    wait_for_marked(marker, value, &format!("no process marked {value}"), |n| {
        n == 0
    });
}

/// A process's state letter, parent, process group and start time (`/proc/<pid>/stat` fields
/// 3, 4, 5 and 22), `None` once it is gone. Parent and start time together tell a process from
/// a later one with the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The parent's pid.
    pub ppid: u32,
    /// The process group.
    pub pgid: u32,
    /// `R`, `S`, `Z`…
    pub state: char,
    /// Start time after boot, in clock ticks.
    pub start: u64,
}

/// Reads `/proc/<pid>/stat`.
pub fn stat_of(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(stat: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may contain spaces and parentheses.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split(' ').collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Panics unless none of `paths` exists.
pub fn assert_gone<P: AsRef<Path>>(paths: &[P]) {
    for path in paths {
        let path = path.as_ref();
        assert!(
            fs::symlink_metadata(path).is_err(),
            "{} was left behind",
            path.display()
        );
    }
}

/// Panics unless `dir` is missing or empty, listing what is left.
pub fn assert_empty_dir(dir: &Path) {
    let left: Vec<_> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
}

/// Panics if a mount point of this process lies below `dir`.
pub fn assert_nothing_mounted_under(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("/proc/self/mountinfo");
    let dir = dir.to_string_lossy();
    assert!(
        !mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|point| point.starts_with(dir.as_ref())),
        "a mount is left under {dir}"
    );
}

/// The sorted names of the entries of `dir` that contain `needle` (e.g. the temporary
/// directory before and after a test, to show it left nothing there).
pub fn entries_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(needle))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn names_are_unique() {
        let (a, b) = (unique_name("t"), unique_name("t"));
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t-{}-", std::process::id())), "{a}");
    }

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                ppid: 7,
                pgid: 42,
                state: 'S',
                start: 123_456
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        let me = stat_of(std::process::id()).expect("this process");
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
    }

    #[test]
    fn marked_processes_are_found_until_they_are_gone() {
        let value = unique_name("marked");
        let mut child = Command::new("sleep")
            .arg("1000")
            .env("HOSTGATE_SUPPORT_MARKER", &value)
            .spawn()
            .expect("spawn");
        wait_for_marked("HOSTGATE_SUPPORT_MARKER", &value, "the sleeper", |n| n == 1);
        assert_eq!(marked("HOSTGATE_SUPPORT_MARKER", &value), [child.id()]);
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert_no_marked("HOSTGATE_SUPPORT_MARKER", &value);
    }

    #[test]
    fn leftover_assertions() {
        let dir = std::env::temp_dir().join(unique_name("hostgate-support"));
        assert_gone(&[&dir]);
        assert_empty_dir(&dir);
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join("f"), "x").expect("write");
        let left = std::panic::catch_unwind(|| assert_empty_dir(&dir));
        assert!(left.is_err(), "a file is left");
        assert_eq!(entries_containing(&dir, "f"), ["f"]);
        fs::remove_dir_all(&dir).expect("cleanup");
        assert_nothing_mounted_under(&dir);
    }
}
