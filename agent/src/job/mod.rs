//! The job abstraction of the node agent: a named group of processes with resource limits that
//! dies as a whole.
//!
//! A Windows HostProcess container runs inside a Win32 job object (hcsshim
//! `internal/jobcontainers`); on Linux, where hostgate is developed and tested, the same
//! abstraction is backed by cgroups. One trait pair, [`JobManager`] (creates jobs) and [`Job`]
//! (one job), with one implementation per platform, selected once in [`sys`] (runwasi's
//! `#[cfg_attr(…, path = …)]` split); callers write [`PlatformJobManager`] and never `#[cfg]`.
//!
//! Guarantees of every backend:
//!
//! * **Kill on close.** Dropping a [`Job`] without [`Job::destroy`] kills every process in it
//!   and removes the job (Windows `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`; Linux: `cgroup.kill`
//!   or a kill loop, then `rmdir`).
//! * **Born inside.** [`Job::spawn`] starts the process inside the job: no instruction of the
//!   program runs outside it (Windows: created suspended, assigned, resumed; Linux: the child
//!   joins the cgroups between `fork` and `exec`).
//! * **Stop = signal, grace period, terminate** ([`Job::stop`], hcsshim `shutdown`).
//!
//! Every limit conversion is a pure function in [`limits`].

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{PipeReader, PipeWriter};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

mod error;
pub mod limits;
pub mod win32_params;

#[cfg_attr(target_os = "linux", path = "linux/mod.rs")]
#[cfg_attr(windows, path = "windows_backend.rs")]
#[cfg(any(target_os = "linux", windows))]
pub mod sys;

#[cfg(all(test, not(windows)))]
mod windows_std_stub;
/// Elsewhere than on Windows, the unit tests type-check the Windows backend (never run it)
/// against the real `windows-sys` declarations and a stand-in for `std::os::windows`.
#[cfg(all(test, not(windows)))]
#[path = "windows_backend.rs"]
#[allow(dead_code)]
mod windows_typecheck;

pub use error::{InvalidNameError, JobError, WrappedIoError};
pub use limits::{CpuRate, CpuWeight, JobLimits, LimitsError};
#[cfg(any(target_os = "linux", windows))]
pub use sys::{PlatformJob, PlatformJobManager, PlatformProcess};

/// The host's logical processors, as the platform's job manager counts them (the kubelet's
/// divisor for CPU limits), without creating a manager.
pub fn host_logical_processors() -> NonZeroU32 {
    #[cfg(target_os = "linux")]
    {
        sys::online_cpus()
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::thread::available_parallelism()
            .ok()
            .and_then(|n| u32::try_from(n.get()).ok())
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN)
    }
}

#[cfg(all(target_os = "linux", feature = "fake-jobs"))]
pub mod fake;

/// How long [`Job::stop`] waits for the job to empty after terminating it.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates jobs. One per agent; cheap to share (`Send + Sync`).
pub trait JobManager: Send + Sync + fmt::Debug {
    /// The job type of this backend.
    type Job: Job;

    /// Creates the job `name` with `limits` (validated with [`JobLimits::validate`]).
    ///
    /// Fails with [`JobError::AlreadyExists`] if a job of that name exists, live or left over
    /// by a crashed agent (see [`JobManager::remove_stale`]); a half-created job is rolled back.
    fn create(&self, name: &JobName, limits: &JobLimits) -> Result<Self::Job, JobError>;

    /// Kills and removes a job of that name that no live handle owns (left by a crashed agent).
    /// Returns whether there was one. Must not be called for a job this process still holds.
    fn remove_stale(&self, name: &JobName) -> Result<bool, JobError>;

    /// The number of logical processors of the host, the denominator of CPU rates
    /// ([`limits::kubelet_cpu_maximum`], [`limits::calculate_job_cpu_rate`]).
    fn host_logical_processors(&self) -> NonZeroU32;
}

/// One job. Dropping it kills every process in it and removes it (see the module docs).
///
/// Methods take `&self`, so a job can be shared between a thread that waits and one that stops.
pub trait Job: Send + Sync + fmt::Debug {
    /// The handle to a process started by [`Job::spawn`].
    type Process: JobProcess;

    /// The job's name.
    fn name(&self) -> &JobName;

    /// Replaces the job's limits: `None` fields remove the corresponding limit.
    fn set_limits(&self, limits: &JobLimits) -> Result<(), JobError>;

    /// Starts a process inside the job.
    fn spawn(&self, spec: ProcessSpec) -> Result<Self::Process, JobError>;

    /// The ids of the processes currently in the job (sorted, without duplicates).
    fn pids(&self) -> Result<Vec<u32>, JobError>;

    /// Resource usage and limit events of the job so far.
    fn stats(&self) -> Result<JobStats, JobError>;

    /// Sends `signal` to every process in the job and returns to how many it was delivered:
    /// processes on Linux, process groups (one per spawned process) on Windows.
    /// [`StopSignal::Kill`] is [`Job::terminate`] and counts the processes killed. Polite
    /// signals are best effort on Windows (see [`StopSignal`]): 0 means nobody could be asked,
    /// and [`Job::stop`] then falls back to terminating after the grace period.
    fn signal_all(&self, signal: StopSignal) -> Result<usize, JobError>;

    /// Kills every process in the job now (Linux `cgroup.kill` / SIGKILL loop, Windows
    /// `TerminateJobObject`). Does not wait: see [`Job::wait_empty`].
    fn terminate(&self) -> Result<(), JobError>;

    /// Waits until no process is left in the job, at most `timeout`. Returns whether it is empty.
    fn wait_empty(&self, timeout: Duration) -> Result<bool, JobError>;

    /// Kills every process, waits until they are gone and removes the job (cgroup directories,
    /// job object handle). Errors are reported here; dropping a job does the same silently.
    fn destroy(self) -> Result<(), JobError>
    where
        Self: Sized;

    /// The hcsshim stop sequence (HP-JOB-08): `signal` to every process, wait up to `grace`
    /// for the job to empty, otherwise [`Job::terminate`] and wait up to [`TERMINATE_TIMEOUT`].
    fn stop(&self, signal: StopSignal, grace: Duration) -> Result<StopOutcome, JobError> {
        if signal != StopSignal::Kill {
            self.signal_all(signal)?;
            if self.wait_empty(grace)? {
                return Ok(StopOutcome::Graceful);
            }
        }
        self.terminate()?;
        if self.wait_empty(TERMINATE_TIMEOUT)? {
            Ok(StopOutcome::Terminated)
        } else {
            Err(JobError::NotEmpty {
                job: self.name().to_string(),
                waited: TERMINATE_TIMEOUT,
            })
        }
    }
}

/// How [`Job::stop`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Every process exited within the grace period.
    Graceful,
    /// The job had to be terminated.
    Terminated,
}

/// A process started inside a job.
///
/// Dropping the handle does not kill the process (the job does that); the backend reaps it
/// when it exits, so no zombie is left behind.
pub trait JobProcess: Send + fmt::Debug {
    /// The process id.
    fn pid(&self) -> u32;

    /// The write end of the child's stdin, if [`StdioSpec::Pipe`] was requested (once).
    fn take_stdin(&mut self) -> Option<PipeWriter>;

    /// The read end of the child's stdout, if [`StdioSpec::Pipe`] was requested (once).
    fn take_stdout(&mut self) -> Option<PipeReader>;

    /// The read end of the child's stderr, if [`StdioSpec::Pipe`] was requested (once).
    fn take_stderr(&mut self) -> Option<PipeReader>;

    /// Waits for the process to exit.
    fn wait(&mut self) -> Result<ExitStatus, JobError>;

    /// Returns the exit status if the process has exited.
    fn try_wait(&mut self) -> Result<Option<ExitStatus>, JobError>;

    /// Waits at most `timeout` for the process to exit.
    fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, JobError>;
}

/// A request to stop, delivered to every process of a job by [`Job::signal_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopSignal {
    /// Polite shutdown request. Linux: `SIGTERM`. Windows: the role of `CTRL_SHUTDOWN_EVENT`;
    /// `GenerateConsoleCtrlEvent` can only target a process group with `CTRL_BREAK_EVENT`, so
    /// that is sent to the process group of every process the job started (each is created
    /// with `CREATE_NEW_PROCESS_GROUP`). It reaches console programs sharing the agent's
    /// console only; hcsshim's remote-thread `CtrlRoutine` hack (HP-JOB-09) is not copied.
    Terminate,
    /// Interactive interrupt. Linux: `SIGINT`. Windows: `CTRL_C_EVENT` cannot be targeted at a
    /// process group, so this is delivered like [`StopSignal::Terminate`].
    Interrupt,
    /// Immediate kill, cannot be caught. Linux: `SIGKILL` (`cgroup.kill`). Windows:
    /// `TerminateJobObject`.
    Kill,
}

/// A validated job name: 1 to 128 ASCII letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit. It is one path component below the jobs' parent cgroup (no `/`, no `..`,
/// so it cannot escape the parent) and, on Windows, the suffix of the object name
/// `hostgate_<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobName(String);

impl JobName {
    /// Longest accepted name, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates a name.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidNameError> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("must not be empty")
        } else if name.len() > Self::MAX_LEN {
            Some("must be at most 128 bytes long")
        } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            Some("must start with an ASCII letter or digit")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            Some("may only contain ASCII letters, digits, '-', '_' and '.'")
        } else if name.contains("..") {
            Some("must not contain '..'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidNameError { name, reason }),
            None => Ok(Self(name)),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for JobName {
    type Error = InvalidNameError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

/// Where a standard stream of a spawned process goes.
#[derive(Debug, Default)]
pub enum StdioSpec {
    /// The null device (the default).
    #[default]
    Null,
    /// The agent's own stream.
    Inherit,
    /// A new pipe; the other end is returned by [`JobProcess::take_stdin`] /
    /// [`JobProcess::take_stdout`] / [`JobProcess::take_stderr`].
    Pipe,
    /// An open file or any other file / pipe handle (`File::from(OwnedFd)` /
    /// `File::from(OwnedHandle)`), e.g. a log file, or one end of a pipe shared by stdout and
    /// stderr.
    File(File),
}

#[cfg(unix)]
impl StdioSpec {
    /// For a child's stdin: what the child gets and, for a pipe, the parent's write end.
    pub(crate) fn into_input(self) -> std::io::Result<(std::process::Stdio, Option<PipeWriter>)> {
        self.into_stdio(|(reader, writer)| (reader.into(), writer))
    }

    /// For a child's stdout or stderr: what the child gets and, for a pipe, the parent's read
    /// end.
    pub(crate) fn into_output(self) -> std::io::Result<(std::process::Stdio, Option<PipeReader>)> {
        self.into_stdio(|(reader, writer)| (writer.into(), reader))
    }

    /// The child's side and, for [`StdioSpec::Pipe`], the parent's end of a new pipe, which
    /// `split` picks from the `(reader, writer)` pair.
    fn into_stdio<P>(
        self,
        split: impl FnOnce((PipeReader, PipeWriter)) -> (std::process::Stdio, P),
    ) -> std::io::Result<(std::process::Stdio, Option<P>)> {
        use std::process::Stdio;
        Ok(match self {
            Self::Null => (Stdio::null(), None),
            Self::Inherit => (Stdio::inherit(), None),
            Self::File(file) => (Stdio::from(file), None),
            Self::Pipe => {
                let (child, parent) = split(std::io::pipe()?);
                (child, Some(parent))
            }
        })
    }
}

impl From<File> for StdioSpec {
    fn from(file: File) -> Self {
        Self::File(file)
    }
}

impl From<PipeWriter> for StdioSpec {
    /// The write end of a pipe, for stdout or stderr.
    fn from(pipe: PipeWriter) -> Self {
        #[cfg(unix)]
        let file = File::from(std::os::fd::OwnedFd::from(pipe));
        #[cfg(windows)]
        let file = File::from(std::os::windows::io::OwnedHandle::from(pipe));
        Self::File(file)
    }
}

impl From<PipeReader> for StdioSpec {
    /// The read end of a pipe, for stdin.
    fn from(pipe: PipeReader) -> Self {
        #[cfg(unix)]
        let file = File::from(std::os::fd::OwnedFd::from(pipe));
        #[cfg(windows)]
        let file = File::from(std::os::windows::io::OwnedHandle::from(pipe));
        Self::File(file)
    }
}

/// What to run inside a job. The environment is exactly [`ProcessSpec::env`]: nothing is
/// inherited from the agent.
#[derive(Debug, Default)]
pub struct ProcessSpec {
    /// The program: a path, or a bare name looked up as `std::process::Command` does on
    /// Linux, or by `CreateProcessW`'s search order on Windows (HP-JOB-07's path resolution
    /// belongs to the caller).
    pub program: PathBuf,
    /// The arguments, without the program (`argv[1..]`).
    pub args: Vec<OsString>,
    /// The complete environment.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory; `None` = the agent's.
    pub working_dir: Option<PathBuf>,
    /// Standard input (default: null device).
    pub stdin: StdioSpec,
    /// Standard output (default: null device).
    pub stdout: StdioSpec,
    /// Standard error (default: null device).
    pub stderr: StdioSpec,
}

impl ProcessSpec {
    /// A spec running `program` with no arguments, an empty environment and null stdio.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            ..Self::default()
        }
    }

    /// Appends an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
    #[must_use]
    pub fn working_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Sets stdin.
    #[must_use]
    pub fn stdin(mut self, stdio: impl Into<StdioSpec>) -> Self {
        self.stdin = stdio.into();
        self
    }

    /// Sets stdout.
    #[must_use]
    pub fn stdout(mut self, stdio: impl Into<StdioSpec>) -> Self {
        self.stdout = stdio.into();
        self
    }

    /// Sets stderr.
    #[must_use]
    pub fn stderr(mut self, stdio: impl Into<StdioSpec>) -> Self {
        self.stderr = stdio.into();
        self
    }
}

/// Resource usage and limit events of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Processes currently in the job.
    pub active_processes: u32,
    /// CPU time spent in user mode by all processes, past and present.
    pub cpu_user: Duration,
    /// CPU time spent in kernel mode by all processes, past and present.
    pub cpu_system: Duration,
    /// Memory charged to the job now (Linux `memory.current` / `memory.usage_in_bytes`;
    /// Windows: job commit). 0 when no memory accounting is available.
    pub memory_current_bytes: u64,
    /// Highest memory charge so far (`memory.peak` / `memory.max_usage_in_bytes` /
    /// `PeakJobMemoryUsed`); `None` where the kernel does not report it.
    pub memory_peak_bytes: Option<u64>,
    /// How often the memory limit was hit (v2 `memory.events` `max`; v1 `memory.failcnt` +
    /// `memory.memsw.failcnt`, at least `oom_kills`; Windows `JOB_OBJECT_MSG_JOB_MEMORY_LIMIT`
    /// notifications).
    pub memory_limit_events: u64,
    /// How often the job ran out of memory (v2 `memory.events` `oom`); `None` where not
    /// reported (cgroup v1, Windows).
    pub oom_events: Option<u64>,
    /// Processes killed by the OOM killer because of the job's limit (v2 `oom_kill`, v1
    /// `memory.oom_control` `oom_kill`). Always 0 on Windows, where allocations beyond the
    /// commit limit fail instead.
    pub oom_kills: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names() {
        for ok in [
            "a",
            "0",
            "kube-proxy",
            "ns_pod_container",
            "c.1",
            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
            &"x".repeat(128),
        ] {
            assert!(JobName::new(ok).is_ok(), "{ok:?}");
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "start"),
            ("..", "start"),
            (".hidden", "start"),
            ("-x", "start"),
            ("_x", "start"),
            ("a/b", "contain"),
            ("a/../b", "contain"),
            ("a..b", ".."),
            ("a b", "contain"),
            ("a\0b", "contain"),
            ("a\\b", "contain"),
            ("é", "start"),
            ("aé", "contain"),
            (&"x".repeat(129), "128"),
        ] {
            let err = JobName::new(bad).expect_err(bad);
            assert!(err.reason.contains(why), "{bad:?}: {}", err.reason);
            assert_eq!(err.name, bad);
        }
    }

    #[test]
    fn process_spec_builder() {
        let spec = ProcessSpec::new("/bin/sh")
            .arg("-c")
            .args(["echo", "hi"])
            .env("A", "1")
            .working_dir("/tmp")
            .stdout(StdioSpec::Pipe);
        assert_eq!(spec.program, PathBuf::from("/bin/sh"));
        assert_eq!(spec.args, ["-c", "echo", "hi"]);
        assert_eq!(spec.env, [("A".into(), "1".into())]);
        assert_eq!(spec.working_dir, Some(PathBuf::from("/tmp")));
        assert!(matches!(spec.stdin, StdioSpec::Null));
        assert!(matches!(spec.stdout, StdioSpec::Pipe));
    }
}
