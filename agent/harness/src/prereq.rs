//! What a containerd test needs from the machine, and what to do when it is missing.
//!
//! A developer without root (or without containerd installed) should still be able to run
//! `cargo test`: such tests print why they skip and return. CI, on the other hand, must never
//! turn green because everything skipped, so when the environment variable `CI` is set to
//! anything non-empty a missing prerequisite **panics** instead.
//!
//! ```no_run
//! use hostgate_node_harness::{Prereq, skip_unless};
//!
//! #[test]
//! fn runs_a_pod() {
//!     skip_unless!(Prereq::RUNC);
//!     // … the test proper
//! }
//! ```

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The static busybox the images are built from (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// One thing a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prereq {
    /// Running as root (containerd, mounts, cgroups).
    Root,
    /// `containerd` on `PATH`.
    Containerd,
    /// `ctr` on `PATH` (image import).
    Ctr,
    /// `runc` and `containerd-shim-runc-v2` on `PATH` (the default runtime handler; the pause
    /// container of every pod runs under it unless the handler says otherwise).
    Runc,
    /// A statically linked busybox at [`BUSYBOX`]: it is copied into an image whose root holds
    /// nothing else.
    Busybox,
    /// A mounted memory cgroup controller (v1 or v2) in which root can create a group.
    Cgroups,
}

impl Prereq {
    /// Everything a test that runs pods under containerd's runc handler needs.
    pub const RUNC: &'static [Prereq] = &[
        Prereq::Root,
        Prereq::Containerd,
        Prereq::Ctr,
        Prereq::Runc,
        Prereq::Busybox,
        Prereq::Cgroups,
    ];

    /// Checks this prerequisite; `Err` says what is missing.
    pub fn check(self) -> Result<(), String> {
        match self {
            Prereq::Root => {
                if nix::unistd::geteuid().is_root() {
                    Ok(())
                } else {
                    Err("needs root".to_owned())
                }
            }
            Prereq::Containerd => on_path("containerd").map(drop),
            Prereq::Ctr => on_path("ctr").map(drop),
            Prereq::Runc => {
                on_path("runc")?;
                on_path("containerd-shim-runc-v2").map(drop)
            }
            Prereq::Busybox => check_static_elf(Path::new(BUSYBOX)),
            Prereq::Cgroups => check_cgroups(),
        }
    }
}

/// Why a test did not run: the prerequisites found missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// The test that asked.
    pub test: String,
    /// One reason per missing prerequisite.
    pub reasons: Vec<String>,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.test, self.reasons.join("; "))
    }
}

/// Checks `what` without any policy: `Some` lists what is missing.
pub fn check(test: &str, what: &[Prereq]) -> Option<Skip> {
    let reasons: Vec<String> = what
        .iter()
        .filter_map(|p| p.check().err().map(|e| format!("{p:?}: {e}")))
        .collect();
    (!reasons.is_empty()).then(|| Skip {
        test: test.to_owned(),
        reasons,
    })
}

/// Whether this run is CI's: the variable `CI` is set to something non-empty (the policy of
/// `hostgate-test-support`, shared by every privileged test of the workspace).
pub use hostgate_test_support::in_ci;

/// Checks `what` and applies the workspace's CI policy ([`hostgate_test_support::unmet`]).
///
/// Returns `None` when everything is there. Otherwise, under CI (see [`in_ci`]) it **panics**
/// with the reasons; outside CI it prints `skipped: <test>: <reasons>` to stderr and returns the
/// [`Skip`], and the caller returns. [`skip_unless!`](crate::skip_unless) does both in one line.
pub fn require(test: &str, what: &[Prereq]) -> Option<Skip> {
    let skip = check(test, what)?;
    hostgate_test_support::unmet(test, &skip.reasons.join("; "));
    Some(skip)
}

/// The running test's name: libtest names each test's thread after the test.
pub fn current_test(fallback: &str) -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => fallback.to_owned(),
    }
}

/// `skip_unless!(Prereq::RUNC)`: returns from the calling test when a prerequisite is missing
/// (outside CI), panics under CI. See [`require`].
#[macro_export]
macro_rules! skip_unless {
    ($what:expr) => {
        if $crate::prereq::require(&$crate::prereq::current_test(module_path!()), $what).is_some() {
            return;
        }
    };
}

/// Finds `name` on `PATH`, as the shell would.
pub fn on_path(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| format!("`{name}` not found on PATH"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// An executable ELF file without a program interpreter (`PT_INTERP`), i.e. static.
fn check_static_elf(path: &Path) -> Result<(), String> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(1 << 16).read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !is_executable(path) {
        return Err(format!("{} is not executable", path.display()));
    }
    match elf_has_interpreter(&bytes) {
        Some(false) => Ok(()),
        Some(true) => Err(format!(
            "{} is dynamically linked (install busybox-static)",
            path.display()
        )),
        None => Err(format!("{} is not a 64-bit ELF file", path.display())),
    }
}

/// `Some(true)` when the 64-bit little-endian ELF image has a `PT_INTERP` program header; `None`
/// when `bytes` is not such an image (or its program headers lie beyond `bytes`).
fn elf_has_interpreter(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(bytes.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

/// A memory controller is mounted (cgroup v1 `memory`, or v2 listing `memory`), and root can
/// create a group in it.
fn check_cgroups() -> Result<(), String> {
    let hierarchies =
        crate::procfs::cgroup_mounts().map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    let dir = hierarchies
        .iter()
        .find(|h| h.has_controller("memory"))
        .map(|h| h.mount_point.clone())
        .ok_or_else(|| "no cgroup hierarchy with the memory controller".to_owned())?;
    // Unique per call: tests of one binary check in parallel threads.
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!("hostgate-harness-probe-{}-{n}", std::process::id()));
    fs::create_dir(&probe)
        .and_then(|()| fs::remove_dir(&probe))
        .map_err(|e| format!("cannot create a cgroup in {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_interpreter_detection() {
        let mut elf = vec![0u8; 0x40 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        assert_eq!(elf_has_interpreter(&elf), Some(false));
        elf[0x40..0x44].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert_eq!(elf_has_interpreter(&elf), Some(true));
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn skip_lists_every_reason() {
        let skip = Skip {
            test: "t".into(),
            reasons: vec!["Root: needs root".into(), "Ctr: missing".into()],
        };
        assert_eq!(skip.to_string(), "t: Root: needs root; Ctr: missing");
    }
}
