//! Prerequisites of tests that need more than a build: root, a writable cgroup hierarchy, a
//! helm or containerd binary.
//!
//! A test states what it needs with [`require!`](crate::require!) (or [`require`]). When
//! something is missing:
//!
//! * on a developer's machine it prints `skipped: <test>: <reason>` to stderr and returns
//!   without running: the test reports `ok`, but the reason is in the output
//!   (`cargo test -- --nocapture` shows it);
//! * when the environment variable `CI` is set (non-empty), it **panics** with the reason: CI
//!   provides every prerequisite (`.ci/run` runs as root and exports `HOSTGATE_HELM`), so a
//!   missing one is a broken CI set-up, and a green run means every test really ran.
//!
//! Tools are never downloaded or installed by a test: each is taken from its environment
//! variable (e.g. `HOSTGATE_HELM`, which `.ci/run` sets from `scripts/install-helm.sh`) or
//! from `PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

/// An external program a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The program's name on `PATH`.
    pub name: &'static str,
    /// The environment variable that names the binary to use instead of `PATH`.
    pub env: &'static str,
    /// Arguments that make the program print its version and exit 0: proof that it runs.
    pub version_args: &'static [&'static str],
}

/// helm, for the chart tests (`scripts/install-helm.sh` installs one into `.tools/bin/`).
pub const HELM: Tool = Tool {
    name: "helm",
    env: "HOSTGATE_HELM",
    version_args: &["version", "--short"],
};

/// containerd, for the tests that drive a real containerd.
pub const CONTAINERD: Tool = Tool {
    name: "containerd",
    env: "HOSTGATE_CONTAINERD",
    version_args: &["--version"],
};

/// curl, for the tests that talk to a server as an outside client would.
pub const CURL: Tool = Tool {
    name: "curl",
    env: "HOSTGATE_CURL",
    version_args: &["--version"],
};

/// One thing a test needs from the machine.
#[derive(Debug, Clone, Copy)]
pub enum Prereq {
    /// The test process runs as root (effective uid 0).
    Root,
    /// A cgroup v2 hierarchy is mounted read-write: the whole tree at `/sys/fs/cgroup`, or the
    /// hybrid layout's `/sys/fs/cgroup/unified` beside the v1 controllers.
    Cgroups,
    /// A program that runs (see [`Tool`]).
    Tool(Tool),
    /// Anything else, checked by a function that says what is missing.
    Check {
        /// What is needed, for messages.
        what: &'static str,
        /// `Err(reason)` when it is not there.
        check: fn() -> Result<(), String>,
    },
}

/// What [`require`] found: the paths of the tools that were asked for.
#[derive(Debug, Clone, Default)]
pub struct Met {
    tools: Vec<(&'static str, &'static Path)>,
}

impl Met {
    /// The binary of a tool that was required. Panics if it was not asked for: a test bug.
    pub fn tool(&self, tool: Tool) -> &'static Path {
        self.tools
            .iter()
            .find(|(name, _)| *name == tool.name)
            .map(|(_, path)| *path)
            .unwrap_or_else(|| panic!("{} was not among the required prerequisites", tool.name))
    }

    /// The helm binary ([`Prereq::Tool`]`(`[`HELM`]`)` must have been required).
    pub fn helm(&self) -> &'static Path {
        self.tool(HELM)
    }
}

/// Whether the tests run in CI: the environment variable `CI` is set and not empty.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Checks every prerequisite. All met: `Some` with the tools' paths. Otherwise [`unmet`] with
/// every reason (which panics in CI) and `None`: the test should return.
pub fn require(test: &str, prereqs: &[Prereq]) -> Option<Met> {
    let mut met = Met::default();
    let mut missing = Vec::new();
    for prereq in prereqs {
        match check(prereq) {
            Ok(Some((name, path))) => met.tools.push((name, path)),
            Ok(None) => {}
            Err(reason) => missing.push(reason),
        }
    }
    if missing.is_empty() {
        Some(met)
    } else {
        unmet(test, &missing.join("; "));
        None
    }
}

/// Reports that `test` (or a step of it) cannot run here because of `reason`: prints
/// `skipped: <test>: <reason>`, or panics when [`in_ci`].
pub fn unmet(test: &str, reason: &str) {
    unmet_in(in_ci(), test, reason);
}

fn unmet_in(ci: bool, test: &str, reason: &str) {
    if ci {
        panic!("{test}: {reason} (CI is set: a missing prerequisite fails the test)");
    }
    eprintln!("skipped: {test}: {reason}");
}

/// The name of the enclosing function, with its module path (for a test: the test's name).
#[macro_export]
macro_rules! test_name {
    () => {{
        fn here() {}
        let name = ::std::any::type_name_of_val(&here);
        name.strip_suffix("::here").unwrap_or(name)
    }};
}

/// `require!(Prereq::Root, Prereq::Cgroups)`: the [`Met`] prerequisites, or returns from the
/// calling test after [`unmet`] (which panics in CI).
#[macro_export]
macro_rules! require {
    ($($prereq:expr),+ $(,)?) => {
        match $crate::prereq::require($crate::test_name!(), &[$($prereq),+]) {
            ::std::option::Option::Some(met) => met,
            ::std::option::Option::None => return,
        }
    };
}

fn check(prereq: &Prereq) -> Result<Option<(&'static str, &'static Path)>, String> {
    match prereq {
        Prereq::Root => match effective_uid() {
            Some(0) => Ok(None),
            Some(uid) => Err(format!("needs root (runs as uid {uid})")),
            None => Err("needs root (the effective uid cannot be read)".to_owned()),
        },
        Prereq::Cgroups => {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| format!("needs cgroups (no /proc/self/mountinfo: {e})"))?;
            writable_cgroup2(&mountinfo).map(|_| None)
        }
        Prereq::Tool(tool) => cached_tool(*tool).map(|path| Some((tool.name, path))),
        Prereq::Check { what, check: test } => {
            test().map_err(|reason| format!("needs {what}: {reason}"))?;
            Ok(None)
        }
    }
}

/// The effective uid from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    effective_uid_in(&status)
}

fn effective_uid_in(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The read-write cgroup2 mount at `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`, from
/// `/proc/self/mountinfo` text.
fn writable_cgroup2(mountinfo: &str) -> Result<PathBuf, String> {
    let mut read_only = None;
    for line in mountinfo.lines() {
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = mount.split(' ').collect();
        let (Some(point), Some(options)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        if fs.split(' ').next() != Some("cgroup2")
            || !matches!(*point, "/sys/fs/cgroup" | "/sys/fs/cgroup/unified")
        {
            continue;
        }
        if options.split(',').any(|o| o == "rw") {
            return Ok(PathBuf::from(point));
        }
        read_only = Some(*point);
    }
    Err(match read_only {
        Some(point) => format!("needs a writable cgroup v2 hierarchy ({point} is read-only)"),
        None => {
            "needs a cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified".to_owned()
        }
    })
}

/// Each tool is looked for once per test binary.
fn cached_tool(tool: Tool) -> Result<&'static Path, String> {
    type Found = Vec<(&'static str, Result<&'static Path, String>)>;
    static FOUND: Mutex<Found> = Mutex::new(Vec::new());
    let mut found = FOUND.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, result)) = found.iter().find(|(name, _)| *name == tool.name) {
        return result.clone();
    }
    let result =
        find_tool(tool, std::env::var_os(tool.env)).map(|p| &*Box::leak(p.into_boxed_path()));
    found.push((tool.name, result.clone()));
    result
}

/// The binary named by `from_env` (the tool's variable) if set, else the tool on `PATH`;
/// either must run its version command.
fn find_tool(tool: Tool, from_env: Option<OsString>) -> Result<PathBuf, String> {
    let runs = |path: &Path| {
        Command::new(path)
            .args(tool.version_args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())
            .and_then(|out| {
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "{}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            })
    };
    match from_env.filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            runs(&path).map(|()| path.clone()).map_err(|e| {
                format!(
                    "needs {}: ${}={} does not run ({e})",
                    tool.name,
                    tool.env,
                    path.display()
                )
            })
        }
        None => {
            let path = PathBuf::from(tool.name);
            runs(&path).map(|()| path).map_err(|e| {
                format!(
                    "needs {}: ${} is not set and `{}` on PATH does not run ({e})",
                    tool.name, tool.env, tool.name
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_prerequisite_is_a_skip_on_a_developer_machine() {
        unmet_in(false, "some_test", "needs root");
    }

    #[test]
    #[should_panic(expected = "some_test: needs root (CI is set")]
    fn a_missing_prerequisite_fails_in_ci() {
        unmet_in(true, "some_test", "needs root");
    }

    #[test]
    fn nothing_required_is_met() {
        assert!(require("t", &[]).is_some());
    }

    #[test]
    fn a_failed_check_names_what_is_missing() {
        let prereq = Prereq::Check {
            what: "a unicorn",
            check: || Err("none in this stable".to_owned()),
        };
        assert_eq!(
            check(&prereq).err().as_deref(),
            Some("needs a unicorn: none in this stable")
        );
        let ok = Prereq::Check {
            what: "nothing",
            check: || Ok(()),
        };
        assert_eq!(check(&ok), Ok(None));
    }

    #[test]
    fn the_test_name_is_the_enclosing_function() {
        let name = crate::test_name!();
        assert!(
            name.ends_with("prereq::tests::the_test_name_is_the_enclosing_function"),
            "{name}"
        );
    }

    #[test]
    fn effective_uid_is_the_second_uid_field() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n";
        assert_eq!(effective_uid_in(status), Some(0));
        assert_eq!(effective_uid_in("Name:\tx\n"), None);
        assert!(effective_uid().is_some(), "Linux has /proc/self/status");
    }

    #[test]
    fn cgroup2_mounts_from_mountinfo() {
        let hybrid = "30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,relatime shared:10 - cgroup2 cgroup2 rw\n\
                      32 30 0:28 / /sys/fs/cgroup/memory rw shared:11 - cgroup cgroup rw,memory\n";
        assert_eq!(
            writable_cgroup2(hybrid),
            Ok(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(writable_cgroup2(pure), Ok(PathBuf::from("/sys/fs/cgroup")));
        let read_only = "29 23 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n";
        assert!(writable_cgroup2(read_only).is_err_and(|e| e.contains("read-only")));
        let elsewhere = "29 23 0:26 / /mnt/cg rw - cgroup2 cgroup2 rw\n";
        assert!(writable_cgroup2(elsewhere).is_err());
    }

    #[test]
    fn tools_come_from_their_variable_or_path() {
        let sh = Tool {
            name: "sh",
            env: "HOSTGATE_TEST_SH",
            version_args: &["-c", "exit 0"],
        };
        assert_eq!(find_tool(sh, None), Ok(PathBuf::from("sh")));
        assert_eq!(
            find_tool(sh, Some("/bin/sh".into())),
            Ok(PathBuf::from("/bin/sh"))
        );
        let err = find_tool(sh, Some("/nonexistent/sh".into())).expect_err("no such file");
        assert!(
            err.contains("$HOSTGATE_TEST_SH=/nonexistent/sh does not run"),
            "{err}"
        );
        let failing = Tool {
            version_args: &["-c", "echo broken >&2; exit 3"],
            ..sh
        };
        let err = find_tool(failing, None).expect_err("exits 3");
        assert!(err.contains("broken"), "{err}");
        let absent = Tool {
            name: "hostgate-no-such-program",
            env: "HOSTGATE_NO_SUCH_PROGRAM",
            version_args: &[],
        };
        let err = find_tool(absent, None).expect_err("not on PATH");
        assert!(
            err.contains("$HOSTGATE_NO_SUCH_PROGRAM is not set"),
            "{err}"
        );
    }
}
