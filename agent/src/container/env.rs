//! hcsshim's process-start rules for job containers (HP-JOB-07), as pure functions: the
//! sandbox variable and its expansion, the environment, `PATH`, the working directory.

use std::path::{Path, PathBuf};

use super::layout::{self, LayoutError};

/// The variable that tells a HostProcess container where its sandbox (the container image's
/// volume) is.
pub const SANDBOX_VAR: &str = "CONTAINER_SANDBOX_MOUNT_POINT";
/// The `cmd.exe` spelling that is expanded.
pub const SANDBOX_VAR_CMD: &str = "%CONTAINER_SANDBOX_MOUNT_POINT%";
/// The PowerShell spelling that is expanded.
pub const SANDBOX_VAR_PS: &str = "$env:CONTAINER_SANDBOX_MOUNT_POINT";

/// The host's path separator.
pub const SEPARATOR: char = std::path::MAIN_SEPARATOR;
/// The separator between `PATH` entries.
#[cfg(windows)]
pub const PATH_LIST_SEPARATOR: char = ';';
/// The separator between `PATH` entries.
#[cfg(not(windows))]
pub const PATH_LIST_SEPARATOR: char = ':';

/// The value of [`SANDBOX_VAR`]: the sandbox path with a trailing separator, as hcsshim sets it
/// (`C:\hpc\<id>\`).
pub fn mount_point_value(sandbox: &Path) -> String {
    let mut s = sandbox.to_string_lossy().into_owned();
    if !s.ends_with(SEPARATOR) {
        s.push(SEPARATOR);
    }
    s
}

/// The sandbox path without a trailing separator, which the two spellings expand to.
pub fn mount_point_expansion(sandbox: &Path) -> String {
    let s = sandbox.to_string_lossy();
    let trimmed = s.trim_end_matches(SEPARATOR);
    if trimmed.is_empty() {
        s.into_owned()
    } else {
        trimmed.to_owned()
    }
}

/// hcsshim's `replaceWithMountPoint`: replaces every `%CONTAINER_SANDBOX_MOUNT_POINT%` and
/// `$env:CONTAINER_SANDBOX_MOUNT_POINT` with `mount_point` (the sandbox without trailing
/// separator) and says whether anything was replaced. Case-sensitive, as in hcsshim.
pub fn replace_with_mount_point(s: &str, mount_point: &str) -> (String, bool) {
    if !s.contains(SANDBOX_VAR) {
        return (s.to_owned(), false);
    }
    let replaced = s
        .replace(SANDBOX_VAR_CMD, mount_point)
        .replace(SANDBOX_VAR_PS, mount_point);
    let changed = replaced != s;
    (replaced, changed)
}

/// The environment of a container's processes (HP-JOB-07):
///
/// 1. `base`: the account's default environment (Windows: `CreateEnvironmentBlock`; Linux:
///    what the agent is configured with, by default `PATH` and `HOME`);
/// 2. then the container's own variables, with the sandbox spellings expanded in their values;
/// 3. then [`SANDBOX_VAR`] = the sandbox with a trailing separator;
/// 4. every `PATH` gets the sandbox (with trailing separator) appended (Windows: also the
///    PowerShell and WMI directories, as hcsshim does).
///
/// A later definition of a name replaces an earlier one in place (names compare
/// case-insensitively on Windows, as its environment does).
pub fn build_env(
    base: &[(String, String)],
    container: &[(String, String)],
    sandbox: &Path,
) -> Vec<(String, String)> {
    let with_sep = mount_point_value(sandbox);
    let without_sep = mount_point_expansion(sandbox);
    let mut env: Vec<(String, String)> = Vec::with_capacity(base.len() + container.len() + 1);
    let mut set = |name: &str, value: String| match env.iter_mut().find(|(k, _)| same_name(k, name))
    {
        Some(entry) => entry.1 = value,
        None => env.push((name.to_owned(), value)),
    };
    for (k, v) in base {
        set(k, v.clone());
    }
    for (k, v) in container {
        set(k, replace_with_mount_point(v, &without_sep).0);
    }
    set(SANDBOX_VAR, with_sep.clone());
    for (k, v) in &mut env {
        if same_name(k, "PATH") {
            if !v.is_empty() && !v.ends_with(PATH_LIST_SEPARATOR) {
                v.push(PATH_LIST_SEPARATOR);
            }
            v.push_str(&with_sep);
            if cfg!(windows) {
                v.push_str(
                    r";C:\WINDOWS\System32\WindowsPowerShell\v1.0\;C:\WINDOWS\System32\Wbem",
                );
            }
        }
    }
    env
}

fn same_name(a: &str, b: &str) -> bool {
    if cfg!(windows) {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// The process arguments with the sandbox spellings expanded (hcsshim expands the command
/// line).
pub fn expand_args(args: &[String], sandbox: &Path) -> Vec<String> {
    let mount_point = mount_point_expansion(sandbox);
    args.iter()
        .map(|a| replace_with_mount_point(a, &mount_point).0)
        .collect()
}

/// The program to start for `argv0`, looked up in the sandbox first, as a HostProcess
/// container's image files are reached there (`CONTAINER_SANDBOX_MOUNT_POINT`):
///
/// * a path with a directory (`/bin/sh`, `C:\tools\x.exe`): the same path below the sandbox
///   (drive letter removed) if a file is there, else the host path as written;
/// * a bare name (`sh`): the first `<sandbox>/<dir>/<name>` that is a file, for each `<dir>`
///   of the process's `PATH` (as the image sets it), then `<sandbox>/<name>`; else the name as
///   written, for the process's own `PATH` search on the host.
///
/// With an empty sandbox (the static runner's, which has no image) nothing is found there and
/// the program is what the pod's `command` says.
pub fn resolve_program(argv0: &str, sandbox: &Path, env: &[(String, String)]) -> PathBuf {
    let is_file = |p: &Path| p.is_file();
    if argv0.contains(['/', '\\']) {
        if let Ok(relative) = layout::sandbox_relative(argv0, false) {
            let inside = sandbox.join(relative);
            let absolute =
                argv0.starts_with(['/', '\\']) || layout::strip_drive_letter(argv0) != argv0;
            if absolute && is_file(&inside) {
                return inside;
            }
        }
        return PathBuf::from(argv0);
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| same_name(k, "PATH"))
        .map_or("", |(_, v)| v.as_str());
    let separator = if cfg!(windows) { ';' } else { ':' };
    for dir in path.split(separator).filter(|d| !d.is_empty()) {
        let Ok(relative) = layout::sandbox_relative(dir, true) else {
            continue;
        };
        let candidate = sandbox.join(relative).join(argv0);
        if is_file(&candidate) {
            return candidate;
        }
    }
    let at_root = sandbox.join(argv0);
    if is_file(&at_root) {
        return at_root;
    }
    PathBuf::from(argv0)
}

/// The working directory (HP-JOB-07, hcsshim without file binding): none → the sandbox; with a
/// sandbox spelling → expanded as is; any other path → joined under the sandbox with its drive
/// letter removed (`C:\work` → `<sandbox>\work`, `/work` → `<sandbox>/work`). The caller
/// creates it if missing. Paths that would leave the sandbox (`..`) are refused.
pub fn working_dir(requested: Option<&str>, sandbox: &Path) -> Result<PathBuf, LayoutError> {
    let Some(requested) = requested.filter(|w| !w.is_empty()) else {
        return Ok(sandbox.to_owned());
    };
    let (expanded, changed) = replace_with_mount_point(requested, &mount_point_expansion(sandbox));
    if changed {
        return Ok(PathBuf::from(expanded));
    }
    let relative = layout::sandbox_relative(requested, true)?;
    Ok(sandbox.join(relative))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn mount_point_forms() {
        let sb = Path::new("/var/lib/hg/hpc/abc");
        assert_eq!(mount_point_value(sb), "/var/lib/hg/hpc/abc/");
        assert_eq!(mount_point_expansion(sb), "/var/lib/hg/hpc/abc");
        let trailing = Path::new("/x/");
        assert_eq!(mount_point_value(trailing), "/x/");
        assert_eq!(mount_point_expansion(trailing), "/x");
        assert_eq!(mount_point_expansion(Path::new("/")), "/");
    }

    #[test]
    fn expansion_of_both_spellings() {
        let mp = "/sb";
        let cases = [
            (
                "%CONTAINER_SANDBOX_MOUNT_POINT%/bin/app",
                "/sb/bin/app",
                true,
            ),
            ("$env:CONTAINER_SANDBOX_MOUNT_POINT/x", "/sb/x", true),
            (
                "%CONTAINER_SANDBOX_MOUNT_POINT%;$env:CONTAINER_SANDBOX_MOUNT_POINT",
                "/sb;/sb",
                true,
            ),
            // Case-sensitive and exact, like hcsshim.
            (
                "%container_sandbox_mount_point%",
                "%container_sandbox_mount_point%",
                false,
            ),
            (
                "$CONTAINER_SANDBOX_MOUNT_POINT",
                "$CONTAINER_SANDBOX_MOUNT_POINT",
                false,
            ),
            (
                "${CONTAINER_SANDBOX_MOUNT_POINT}",
                "${CONTAINER_SANDBOX_MOUNT_POINT}",
                false,
            ),
            (
                "CONTAINER_SANDBOX_MOUNT_POINT",
                "CONTAINER_SANDBOX_MOUNT_POINT",
                false,
            ),
            ("plain", "plain", false),
        ];
        for (input, want, changed) in cases {
            assert_eq!(
                replace_with_mount_point(input, mp),
                (want.to_owned(), changed),
                "{input}"
            );
        }
        assert_eq!(
            expand_args(
                &[
                    "%CONTAINER_SANDBOX_MOUNT_POINT%/run.sh".to_owned(),
                    "-v".to_owned()
                ],
                Path::new("/sb/")
            ),
            ["/sb/run.sh", "-v"]
        );
    }

    #[test]
    fn environment_layering() {
        let base = pairs(&[("PATH", "/usr/bin:/bin"), ("HOME", "/root")]);
        let container = pairs(&[
            ("CONF", "%CONTAINER_SANDBOX_MOUNT_POINT%/etc/app.conf"),
            ("HOME", "/home/app"),
            ("PS", "$env:CONTAINER_SANDBOX_MOUNT_POINT"),
            ("CONTAINER_SANDBOX_MOUNT_POINT", "user tried to override"),
        ]);
        let env = build_env(&base, &container, Path::new("/sb"));
        assert_eq!(
            env,
            pairs(&[
                ("PATH", "/usr/bin:/bin:/sb/"),
                ("HOME", "/home/app"),
                ("CONF", "/sb/etc/app.conf"),
                ("PS", "/sb"),
                ("CONTAINER_SANDBOX_MOUNT_POINT", "/sb/"),
            ])
        );
        // The container's own PATH is extended too; a trailing separator is not doubled.
        let env = build_env(&base, &pairs(&[("PATH", "/opt/bin:")]), Path::new("/sb"));
        assert_eq!(env[0], ("PATH".to_owned(), "/opt/bin:/sb/".to_owned()));
        // No PATH anywhere: none is invented.
        let env = build_env(&[], &pairs(&[("A", "1")]), Path::new("/sb"));
        assert_eq!(
            env,
            pairs(&[("A", "1"), ("CONTAINER_SANDBOX_MOUNT_POINT", "/sb/")])
        );
        // An empty PATH becomes the sandbox alone.
        let env = build_env(&pairs(&[("PATH", "")]), &[], Path::new("/sb"));
        assert_eq!(env[0].1, "/sb/");
    }

    #[test]
    fn working_directories() {
        let sb = Path::new("/hpc/c1");
        let cases: &[(Option<&str>, &str)] = &[
            (None, "/hpc/c1"),
            (Some(""), "/hpc/c1"),
            (Some("%CONTAINER_SANDBOX_MOUNT_POINT%/app"), "/hpc/c1/app"),
            (Some("$env:CONTAINER_SANDBOX_MOUNT_POINT"), "/hpc/c1"),
            (Some("C:\\work\\dir"), "/hpc/c1/work/dir"),
            (Some("c:/work"), "/hpc/c1/work"),
            (Some("C:"), "/hpc/c1"),
            (Some("C:\\"), "/hpc/c1"),
            (Some("/var/app"), "/hpc/c1/var/app"),
            (Some("relative/dir"), "/hpc/c1/relative/dir"),
            (Some("/a/./b//c/"), "/hpc/c1/a/b/c"),
        ];
        for (input, want) in cases {
            assert_eq!(
                working_dir(*input, sb).expect("valid"),
                PathBuf::from(want),
                "{input:?}"
            );
        }
        for bad in ["C:\\..\\Windows", "/../etc", "a/../../b"] {
            assert!(working_dir(Some(bad), sb).is_err(), "{bad}");
        }
    }

    #[test]
    fn programs_are_found_in_the_sandbox_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sb = dir.path();
        std::fs::create_dir_all(sb.join("bin")).expect("mkdir");
        std::fs::create_dir_all(sb.join("usr/local/bin")).expect("mkdir");
        std::fs::write(sb.join("bin/tool"), "").expect("write");
        std::fs::write(sb.join("usr/local/bin/other"), "").expect("write");
        std::fs::write(sb.join("top.exe"), "").expect("write");
        let env = vec![("PATH".to_owned(), "/usr/local/bin:/bin".to_owned())];
        // (argv0, expected)
        let cases: [(&str, PathBuf); 8] = [
            ("tool", sb.join("bin/tool")),
            ("other", sb.join("usr/local/bin/other")),
            ("top.exe", sb.join("top.exe")),
            ("missing", PathBuf::from("missing")),
            ("/bin/tool", sb.join("bin/tool")),
            ("C:\\bin\\tool", sb.join("bin/tool")),
            ("/usr/bin/env", PathBuf::from("/usr/bin/env")),
            ("bin/tool", PathBuf::from("bin/tool")),
        ];
        for (argv0, want) in cases {
            assert_eq!(resolve_program(argv0, sb, &env), want, "{argv0}");
        }
        // No PATH: only the sandbox root, then the name as written.
        assert_eq!(resolve_program("tool", sb, &[]), PathBuf::from("tool"));
        assert_eq!(
            resolve_program("/../etc/x", sb, &env),
            PathBuf::from("/../etc/x")
        );
    }
}
