//! The raw system calls of the Linux backend; the only module of it with `unsafe`: joining
//! the job's cgroups in the forked child, before `exec` ([`start_inside`]), with an empty
//! signal mask (the agent blocks `SIGINT`/`SIGTERM` in its threads to receive them with
//! `sigwait`, and a child would otherwise inherit that mask and never see a stop signal).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child of `cmd` write `"0"` (= "the calling process") to every `cgroup.procs`
/// in `procs_fds` after `fork` and before `exec`, so the program starts inside the job's
/// cgroups, and clears its signal mask (`std` does not: a child inherits the mask of the
/// thread that spawns it). The descriptors were opened (`O_WRONLY | O_CLOEXEC`) by the parent
/// and must stay open until `spawn` returns; `exec` closes the child's copies.
pub(crate) fn start_inside(cmd: &mut Command, procs_fds: Vec<RawFd>) {
    let hook = move || {
        unblock_all_signals()?;
        join_cgroups(&procs_fds)
    };
    // SAFETY: `pre_exec` requires the closure to be async-signal-safe, because it runs in
    // the child of a `fork` from a multi-threaded process. `unblock_all_signals` only calls
    // `sigemptyset` and `sigprocmask` (async-signal-safe) on a stack value. `join_cgroups`
    // only iterates a slice that was allocated before the fork (no allocation, no lock),
    // calls `write(2)` (async-signal-safe) on descriptors the parent keeps open for the whole
    // `spawn`, and builds an `io::Error` from a raw errno, which does not allocate.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Sets the calling thread's signal mask to the empty set. Runs in the forked child.
fn unblock_all_signals() -> io::Result<()> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initialises the set it is given a valid pointer to.
    if unsafe { libc::sigemptyset(set.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `set` was initialised by `sigemptyset`; a null old-set pointer is allowed.
    if unsafe { libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `"0"` to each descriptor. Runs in the forked child: async-signal-safe only.
fn join_cgroups(procs_fds: &[RawFd]) -> io::Result<()> {
    for &fd in procs_fds {
        // SAFETY: `fd` is a valid open descriptor (see `start_inside`); the buffer is a
        // 1-byte static string, valid for the whole call.
        let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        match written {
            1 => {}
            -1 => return Err(io::Error::last_os_error()),
            _ => return Err(io::Error::from_raw_os_error(libc::EIO)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn join_cgroups_writes_zero_to_each_fd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files: Vec<_> = (0..3)
            .map(|i| std::fs::File::create(dir.path().join(format!("procs{i}"))).expect("create"))
            .collect();
        let fds: Vec<RawFd> = files.iter().map(AsRawFd::as_raw_fd).collect();
        join_cgroups(&fds).expect("write");
        for i in 0..3 {
            let content =
                std::fs::read_to_string(dir.path().join(format!("procs{i}"))).expect("read");
            assert_eq!(content, "0");
        }
        assert_eq!(
            join_cgroups(&[-1]).map_err(|e| e.raw_os_error()),
            Err(Some(libc::EBADF))
        );
    }
}
