//! The few raw system calls of the Linux backend; the only module of it with `unsafe`.
//!
//! * Joining the job's cgroups in the forked child, before `exec` ([`start_inside`]), with an
//!   empty signal mask (the agent blocks `SIGINT`/`SIGTERM` in its threads to receive them
//!   with `sigwait`, and a child would otherwise inherit that mask and never see a stop
//!   signal).
//! * `pidfd_open(2)` / `pidfd_send_signal(2)`, which `nix` 0.30 does not wrap: they pin a
//!   process's identity so a signal never hits a recycled pid.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
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

/// `pidfd_open(pid, 0)`: a descriptor that refers to this very process, whatever later
/// happens to the pid. `ENOSYS` before Linux 5.3.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: `pidfd_open` takes a pid and a flags word and returns a new descriptor or -1;
    // no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid borrowed descriptor, a signal number, a null `siginfo_t` pointer (the
    // kernel then fills in the default `SI_USER` info, as `kill(2)` does) and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

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

    #[test]
    fn pidfd_of_self_and_of_nobody() {
        match pidfd_open(std::process::id()) {
            Ok(fd) => pidfd_send_signal(fd.as_fd(), 0).expect("signal 0 to self"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOSYS)),
        }
        let err = pidfd_open(u32::MAX).expect_err("no such process");
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    }
}
