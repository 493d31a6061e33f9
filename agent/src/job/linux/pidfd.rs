//! Process descriptors, through `rustix`: `pidfd_open(2)` (Linux 5.3+) gives a descriptor that
//! refers to one process for as long as it is open, and `pidfd_send_signal(2)` signals through
//! it, so a signal never reaches another process that was given the same pid later.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::process::{Pid, PidfdFlags, Signal};

/// `pidfd_open(pid, 0)`. Fails with `ENOSYS` before Linux 5.3, `ESRCH` when no such process
/// exists (also for a pid beyond `pid_t`), `EINVAL` for pid 0, as the system call does.
pub(crate) fn open(pid: u32) -> io::Result<OwnedFd> {
    if pid == 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// `pidfd_send_signal(pidfd, signal, NULL, 0)`: with no `siginfo_t`, the process sees the
/// signal as if it came from `kill(2)`.
pub(crate) fn send_signal(pidfd: impl AsFd, signal: Signal) -> io::Result<()> {
    Ok(rustix::process::pidfd_send_signal(pidfd, signal)?)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    use super::*;

    #[test]
    fn a_signal_through_a_pidfd_reaches_its_process() {
        let mut child = Command::new("sleep").arg("1000").spawn().expect("spawn");
        match open(child.id()) {
            Ok(fd) => {
                send_signal(&fd, Signal::KILL).expect("signal");
                assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
            }
            Err(e) => {
                // Kernels before 5.3: the caller falls back to kill(2).
                assert_eq!(e.raw_os_error(), Some(libc::ENOSYS));
                child.kill().expect("kill");
                child.wait().expect("wait");
            }
        }
    }

    #[test]
    fn pids_that_cannot_exist() {
        for (pid, errno) in [(u32::MAX, libc::ESRCH), (0, libc::EINVAL)] {
            let err = open(pid).expect_err("no such process");
            assert!(
                err.raw_os_error() == Some(errno) || err.raw_os_error() == Some(libc::ENOSYS),
                "{pid}: {err}"
            );
        }
    }
}
