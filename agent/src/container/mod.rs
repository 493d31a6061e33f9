//! Run one container in a job: sandbox, environment, mounts, logs and stop semantics, with no
//! knowledge of pods. This is the piece a containerd shim's task service would call for a
//! `Create` + `Start` (with the runtime spec already verified by [`crate::verify`]).
//!
//! What [`Container::start`] does, after hcsshim's job containers (HP-JOB-03/04/07):
//!
//! 1. creates the sandbox `<sandbox_root>/<id>/` (hcsshim `C:\hpc\<id>\`) and lays the mounts
//!    out in it ([`layout`], [`sandbox`]);
//! 2. builds the environment ([`env::build_env`]): the base environment, the container's
//!    variables with `%CONTAINER_SANDBOX_MOUNT_POINT%` / `$env:CONTAINER_SANDBOX_MOUNT_POINT`
//!    expanded, `CONTAINER_SANDBOX_MOUNT_POINT` (with a trailing separator), `PATH` + sandbox;
//! 3. expands the arguments and the working directory (default: the sandbox; created if
//!    missing);
//! 4. creates the job with the container's limits and starts the first ("init") process in it,
//!    its stdout and stderr piped into the CRI log file and the [`logs::LogSink`].
//!
//! [`Container::wait`] waits for the init process; when it exits, every process left in the
//! job gets `SIGTERM` (Windows: the stop event), the job is terminated after the grace period
//! (HP-JOB-08), then the job and the sandbox are removed. A [`Stopper`] asks for the same
//! sequence from another thread (pod stop, agent shutdown).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crate::job::{
    Job, JobError, JobLimits, JobManager, JobName, JobProcess, JobStats, ProcessSpec, StdioSpec,
    StopOutcome, StopSignal,
};

pub mod env;
pub mod layout;
pub mod logs;
pub mod sandbox;

pub use layout::{LayoutError, Mount};
pub use logs::{ConsoleSink, LogSink, MemorySink, Stream};
pub use sandbox::{Exposure, SandboxError};

/// What to run: a container as a runtime sees it (the OCI spec's process, mounts and
/// resources), after the kubelet's work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Unique id: the job's name and the sandbox directory's name ([`JobName`] rules).
    pub id: String,
    /// The container's name, for logs.
    pub name: String,
    /// `argv`: the program, then its arguments (`command` + `args`, `$(VAR)` already expanded).
    /// Sandbox spellings are expanded at start.
    pub args: Vec<String>,
    /// The container's environment variables, in order (later ones win).
    pub env: Vec<(String, String)>,
    /// `workingDir`; `None` = the sandbox.
    pub working_dir: Option<String>,
    /// The mounts.
    pub mounts: Vec<Mount>,
    /// The job limits (from the CPU and memory limits, plus any agent-wide process limit).
    pub limits: JobLimits,
    /// The account to run as (`runAsUserName`). Recorded for logs; on Linux every process runs
    /// as the agent's own user.
    pub user: Option<String>,
    /// The container's root file system, already mounted by the runtime (a containerd shim):
    /// it becomes the sandbox (`CONTAINER_SANDBOX_MOUNT_POINT`) instead of a new directory
    /// `<sandbox_root>/<id>`, and is left in place when the container ends.
    pub rootfs: Option<PathBuf>,
}

impl ContainerSpec {
    /// Checks everything that can be checked without touching the host: a valid id, a
    /// program, valid limits, a mount layout and a working directory that stay in the sandbox.
    pub fn validate(&self) -> Result<(), ContainerError> {
        let invalid = |reason: String| ContainerError::Invalid {
            container: self.name.clone(),
            reason,
        };
        JobName::new(self.id.as_str()).map_err(|e| invalid(e.to_string()))?;
        match self.args.first() {
            Some(p) if !p.is_empty() => {}
            _ => return Err(invalid("no program to run".to_owned())),
        }
        self.limits
            .validate()
            .map_err(|e| invalid(format!("invalid limits: {e}")))?;
        let probe = Path::new("/sandbox");
        layout::plan(&self.mounts, probe, false).map_err(|source| ContainerError::Layout {
            container: self.name.clone(),
            source,
        })?;
        env::working_dir(self.working_dir.as_deref(), probe).map_err(|source| {
            ContainerError::Layout {
                container: self.name.clone(),
                source,
            }
        })?;
        Ok(())
    }
}

/// Agent-wide settings for running containers.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where sandboxes are created (`<sandbox_root>/<id>/`).
    pub sandbox_root: PathBuf,
    /// The base environment of every process (see [`env::build_env`]).
    pub base_env: Vec<(String, String)>,
    /// Create links at absolute Linux mount destinations where safe (see
    /// [`layout::MountPlan::host_link`]).
    pub host_links: bool,
    /// Expose read-only mounts as read-only bind mounts (Linux, root).
    pub bind_read_only: bool,
    /// Grace period between the stop signal and termination when the init process exits.
    pub grace_period: Duration,
}

/// The default `PATH` of containers on Linux (containerd's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl RuntimeOptions {
    /// Options with the sandboxes under `sandbox_root`, the [`default_base_env`], links and
    /// read-only binds on, 30 s grace.
    pub fn new(sandbox_root: impl Into<PathBuf>) -> Self {
        Self {
            sandbox_root: sandbox_root.into(),
            base_env: default_base_env(),
            host_links: true,
            bind_read_only: true,
            grace_period: Duration::from_secs(30),
        }
    }
}

/// The base environment: on Windows the agent's own (standing in for the account's
/// environment block), elsewhere `PATH` and `HOME`.
#[cfg(windows)]
pub fn default_base_env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

/// The base environment: on Windows the agent's own (standing in for the account's
/// environment block), elsewhere `PATH` and `HOME`.
#[cfg(not(windows))]
pub fn default_base_env() -> Vec<(String, String)> {
    let home = match std::env::var("HOME") {
        Ok(home) if !home.is_empty() => home,
        _ => "/".to_owned(),
    };
    vec![
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), home),
    ]
}

/// Where a container's output goes.
/// Files to use as the init process's standard streams as they are (a runtime's FIFOs),
/// instead of piping its output into a log file and sink.
#[derive(Debug, Default)]
pub struct DirectStdio {
    /// Standard input (`None`: `/dev/null`).
    pub stdin: Option<File>,
    /// Standard output (`None`: `/dev/null`).
    pub stdout: Option<File>,
    /// Standard error (`None`: `/dev/null`).
    pub stderr: Option<File>,
}

#[derive(Debug, Default)]
pub struct LogOptions {
    /// The CRI log file (created with its parent directories; replaced if it exists).
    pub file: Option<PathBuf>,
    /// Where records are shown besides (the console).
    pub sink: Option<Arc<dyn LogSink>>,
    /// Give the process these streams directly; `file` and `sink` are then unused.
    pub stdio: Option<DirectStdio>,
}

/// Errors of [`Container::start`] and [`Container::wait`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// The spec cannot be run as given.
    #[error("container {container:?}: {reason}")]
    Invalid {
        /// The container.
        container: String,
        /// Why.
        reason: String,
    },
    /// A mount or the working directory cannot be laid out.
    #[error("container {container:?}: invalid mounts or working directory")]
    Layout {
        /// The container.
        container: String,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// The sandbox could not be prepared or removed.
    #[error("container {container:?}: sandbox")]
    Sandbox {
        /// The container.
        container: String,
        /// Why.
        #[source]
        source: SandboxError,
    },
    /// The working directory or the log file could not be created.
    #[error("container {container:?}: cannot create {}", path.display())]
    Io {
        /// The container.
        container: String,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The job could not be created, stopped or removed.
    #[error("container {container:?}: job")]
    Job {
        /// The container.
        container: String,
        /// Why.
        #[source]
        source: JobError,
    },
    /// The program could not be started (not found, not executable, …): the container
    /// failed to start, as with the kubelet's `StartError`.
    #[error("container {container:?}: cannot start {program:?}")]
    Start {
        /// The container.
        container: String,
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: JobError,
    },
}

impl ContainerError {
    /// Whether the container failed to start because of its program (a container failure,
    /// subject to its restart policy) rather than because of the spec or the host.
    pub fn is_start_failure(&self) -> bool {
        matches!(self, ContainerError::Start { .. })
    }

    /// Whether the spec itself is at fault (invalid, or a layout that cannot be made).
    pub fn is_invalid_spec(&self) -> bool {
        matches!(
            self,
            ContainerError::Invalid { .. } | ContainerError::Layout { .. }
        )
    }
}

/// How a container ended.
#[derive(Debug, Clone)]
pub struct ContainerExit {
    /// The init process's exit status.
    pub status: ExitStatus,
    /// Its exit code, or 128 + the signal that killed it (the kubelet's convention).
    pub exit_code: i32,
    /// The killing signal, if any.
    pub signal: Option<i32>,
    /// Whether the job's memory limit made the OOM killer act.
    pub oom_killed: bool,
    /// Whether a stop was requested (so a non-zero exit may be the stop's doing).
    pub stop_requested: bool,
    /// How the processes left in the job after the init process ended.
    pub remaining: StopOutcome,
    /// The job's resource usage at the end.
    pub stats: Option<JobStats>,
    /// When the init process started.
    pub started_at: SystemTime,
    /// When the container was cleaned up.
    pub finished_at: SystemTime,
}

impl ContainerExit {
    /// Exit code 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0
    }

    /// The kubelet's termination reason: `Completed`, `OOMKilled` or `Error`.
    pub fn reason(&self) -> &'static str {
        if self.succeeded() {
            "Completed"
        } else if self.oom_killed {
            "OOMKilled"
        } else {
            "Error"
        }
    }
}

/// Exit code, or 128 + signal.
pub fn exit_code_of(status: ExitStatus) -> (i32, Option<i32>) {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return (128 + sig, Some(sig));
        }
    }
    (status.code().unwrap_or(-1), None)
}

struct StopState {
    deadline: Option<Instant>,
    finished: bool,
}

struct Shared<J> {
    name: String,
    job: RwLock<Option<J>>,
    stop: Mutex<StopState>,
    cv: Condvar,
}

impl<J: Job> Shared<J> {
    fn with_job<R>(&self, f: impl FnOnce(&J) -> R) -> Option<R> {
        let guard = self.job.read().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().map(f)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StopState> {
        self.stop.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Asks a running container to stop: every process gets the stop signal now and the job is
/// terminated when the grace period ends (sooner if a later request has a shorter one).
pub trait Stop: Send + Sync {
    /// Requests the stop. Returns at once; [`Container::wait`] reports the end.
    fn stop(&self, grace: Duration);
}

/// The [`Stop`] handle of one container.
pub struct Stopper<J> {
    shared: Arc<Shared<J>>,
}

impl<J> std::fmt::Debug for Stopper<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopper")
            .field("container", &self.shared.name)
            .finish()
    }
}

impl<J> Clone for Stopper<J> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<J: Job> Stopper<J> {
    /// Runs `f` on the job while the container has one (until it has ended and been cleaned
    /// up): signals, pids and statistics for a runtime's task service.
    pub fn with_job<R>(&self, f: impl FnOnce(&J) -> R) -> Option<R> {
        self.shared.with_job(f)
    }

    /// Kills every process of the job now (the init process's exit then ends the container).
    pub fn terminate(&self) {
        terminate(&self.shared);
    }
}

impl<J: Job + 'static> Stop for Stopper<J> {
    fn stop(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        {
            let mut st = self.shared.state();
            if st.finished || st.deadline.is_some_and(|d| d <= deadline) {
                return;
            }
            st.deadline = Some(deadline);
        }
        self.shared.cv.notify_all();
        let name = &self.shared.name;
        match self
            .shared
            .with_job(|j| j.signal_all(StopSignal::Terminate))
        {
            Some(Err(err)) => tracing::warn!(container = %name, error = %err, "cannot signal"),
            Some(Ok(n)) => tracing::debug!(container = %name, processes = n, "stop signal sent"),
            None => return,
        }
        if grace.is_zero() {
            terminate(&self.shared);
            return;
        }
        let shared = Arc::clone(&self.shared);
        let spawned = thread::Builder::new()
            .name(format!("stop-{name}"))
            .spawn(move || {
                let mut st = shared.state();
                loop {
                    if st.finished {
                        return;
                    }
                    let Some(deadline) = st.deadline else { return };
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    st = shared
                        .cv
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                drop(st);
                terminate(&shared);
            });
        if let Err(err) = spawned {
            tracing::warn!(container = %name, error = %err, "no stop timer: terminating now");
            terminate(&self.shared);
        }
    }
}

fn terminate<J: Job>(shared: &Shared<J>) {
    if let Some(Err(err)) = shared.with_job(|j| j.terminate()) {
        tracing::warn!(container = %shared.name, error = %err, "cannot terminate the job");
    }
}

/// A running container (see the module docs). Dropping it without [`Container::wait`] kills
/// its processes and removes its job and sandbox.
pub struct Container<J: Job> {
    shared: Arc<Shared<J>>,
    init: Option<J::Process>,
    sandbox: sandbox::Sandbox,
    pumps: Vec<JoinHandle<()>>,
    pid: u32,
    grace: Duration,
    started_at: SystemTime,
}

impl<J: Job> std::fmt::Debug for Container<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("name", &self.shared.name)
            .field("pid", &self.pid)
            .field("sandbox", &self.sandbox.path())
            .finish_non_exhaustive()
    }
}

/// How long [`Container::wait`] waits for the log readers once the job is empty.
const PUMP_TIMEOUT: Duration = Duration::from_secs(5);

impl<J: Job + 'static> Container<J> {
    /// Prepares the sandbox, creates the job and starts the init process (see the module
    /// docs). On error nothing is left behind.
    pub fn start<M>(
        manager: &M,
        spec: ContainerSpec,
        options: &RuntimeOptions,
        logs: LogOptions,
    ) -> Result<Self, ContainerError>
    where
        M: JobManager<Job = J>,
    {
        spec.validate()?;
        let name = spec.name.clone();
        let layout_err = |source| ContainerError::Layout {
            container: name.clone(),
            source,
        };
        let io_err = |path: &Path| {
            let container = name.clone();
            let path = path.to_owned();
            move |source| ContainerError::Io {
                container,
                path,
                source,
            }
        };
        let job_name = JobName::new(spec.id.as_str()).map_err(|e| ContainerError::Invalid {
            container: name.clone(),
            reason: e.to_string(),
        })?;
        let dir = match &spec.rootfs {
            Some(rootfs) => rootfs.clone(),
            None => options.sandbox_root.join(&spec.id),
        };
        let plans = layout::plan(&spec.mounts, &dir, options.host_links).map_err(layout_err)?;
        let sandbox = match &spec.rootfs {
            Some(rootfs) => sandbox::Sandbox::adopt(rootfs, &plans, options.bind_read_only),
            None => sandbox::Sandbox::create(
                &options.sandbox_root,
                &spec.id,
                &plans,
                options.bind_read_only,
            ),
        }
        .map_err(|source| ContainerError::Sandbox {
            container: name.clone(),
            source,
        })?;
        let args = env::expand_args(&spec.args, sandbox.path());
        let environment = env::build_env(&options.base_env, &spec.env, sandbox.path());
        let working_dir =
            env::working_dir(spec.working_dir.as_deref(), sandbox.path()).map_err(layout_err)?;
        create_private_dir_all(&working_dir).map_err(io_err(&working_dir))?;
        let log_file = match (&logs.file, &logs.stdio) {
            (Some(path), None) => Some(Mutex::new(open_log(path).map_err(io_err(path))?)),
            _ => None,
        };
        if let Some(user) = &spec.user
            && !cfg!(windows)
        {
            tracing::debug!(container = %name, user, "runAsUserName is not applied on Linux");
        }

        let job =
            manager
                .create(&job_name, &spec.limits)
                .map_err(|source| ContainerError::Job {
                    container: name.clone(),
                    source,
                })?;
        let program = env::resolve_program(&args[0], sandbox.path(), &environment);
        let mut process_spec = ProcessSpec::new(&program)
            .args(args[1..].iter().map(OsString::from))
            .working_dir(&working_dir);
        let direct = logs.stdio.is_some();
        match logs.stdio {
            Some(stdio) => {
                let file = |f: Option<File>| f.map_or(StdioSpec::Null, StdioSpec::File);
                process_spec.stdin = file(stdio.stdin);
                process_spec.stdout = file(stdio.stdout);
                process_spec.stderr = file(stdio.stderr);
            }
            None => {
                process_spec.stdout = StdioSpec::Pipe;
                process_spec.stderr = StdioSpec::Pipe;
            }
        }
        process_spec.env = environment
            .into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        let started_at = SystemTime::now();
        let mut init = match job.spawn(process_spec) {
            Ok(p) => p,
            Err(source) => {
                if let Err(err) = job.destroy() {
                    tracing::warn!(container = %name, error = %err, "cannot remove the job");
                }
                return Err(ContainerError::Start {
                    container: name,
                    program: args[0].clone(),
                    source,
                });
            }
        };
        let pid = init.pid();
        let shared = Arc::new(Shared {
            name: name.clone(),
            job: RwLock::new(Some(job)),
            stop: Mutex::new(StopState {
                deadline: None,
                finished: false,
            }),
            cv: Condvar::new(),
        });
        let log_file = log_file.map(Arc::new);
        let mut pumps = Vec::with_capacity(2);
        let streams = if direct {
            [(None, Stream::Stdout), (None, Stream::Stderr)]
        } else {
            [
                (init.take_stdout(), Stream::Stdout),
                (init.take_stderr(), Stream::Stderr),
            ]
        };
        for (reader, stream) in streams {
            let Some(reader) = reader else { continue };
            let file = log_file.clone();
            let sink = logs.sink.clone();
            let container = name.clone();
            let pump = thread::Builder::new()
                .name(format!("log-{name}-{stream}"))
                .spawn(move || {
                    logs::pump(reader, stream, &container, file.as_deref(), sink.as_ref());
                });
            match pump {
                Ok(handle) => pumps.push(handle),
                Err(err) => {
                    tracing::warn!(container = %name, error = %err, "no log reader: output is lost");
                }
            }
        }
        tracing::debug!(container = %name, pid, sandbox = %sandbox.path().display(), "started");
        Ok(Container {
            shared,
            init: Some(init),
            sandbox,
            pumps,
            pid,
            grace: options.grace_period,
            started_at,
        })
    }

    /// The init process's id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The sandbox directory.
    pub fn sandbox(&self) -> &Path {
        self.sandbox.path()
    }

    /// How each mount is exposed.
    pub fn exposures(&self) -> &[(String, Exposure, bool)] {
        self.sandbox.exposures()
    }

    /// Runs `f` on the job while the container runs (statistics, process lists, tests).
    pub fn with_job<R>(&self, f: impl FnOnce(&J) -> R) -> Option<R> {
        self.shared.with_job(f)
    }

    /// A handle that stops the container from another thread.
    pub fn stopper(&self) -> Stopper<J> {
        Stopper {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits for the init process, stops what is left in the job (signal, grace period,
    /// terminate), removes the job and the sandbox, and reports how the container ended.
    pub fn wait(mut self) -> Result<ContainerExit, ContainerError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<ContainerExit, ContainerError> {
        let name = self.shared.name.clone();
        let job_err = |source| ContainerError::Job {
            container: name.clone(),
            source,
        };
        let waited = match self.init.as_mut() {
            Some(init) => init.wait(),
            None => Err(JobError::Wait {
                pid: self.pid,
                source: io::Error::from(io::ErrorKind::NotFound),
            }),
        };
        let (deadline, stop_requested) = {
            let st = self.shared.state();
            (st.deadline, st.deadline.is_some())
        };
        let grace = deadline.map_or(self.grace, |d| d.saturating_duration_since(Instant::now()));
        let stopped = self
            .shared
            .with_job(|j| j.stop(StopSignal::Terminate, grace));
        let stats = self.shared.with_job(|j| j.stats().ok()).flatten();
        {
            self.shared.state().finished = true;
        }
        self.shared.cv.notify_all();
        self.join_pumps();
        let job = self
            .shared
            .job
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let destroyed = job.map(Job::destroy).unwrap_or(Ok(()));
        let removed = self.sandbox.remove();
        self.init = None;

        let status = waited.map_err(job_err)?;
        let remaining = stopped
            .unwrap_or(Ok(StopOutcome::Graceful))
            .map_err(job_err)?;
        destroyed.map_err(job_err)?;
        removed.map_err(|source| ContainerError::Sandbox {
            container: name.clone(),
            source,
        })?;
        let (exit_code, signal) = exit_code_of(status);
        let oom_killed = exit_code != 0 && stats.is_some_and(|s| s.oom_kills > 0);
        Ok(ContainerExit {
            status,
            exit_code,
            signal,
            oom_killed,
            stop_requested,
            remaining,
            stats,
            started_at: self.started_at,
            finished_at: SystemTime::now(),
        })
    }

    fn join_pumps(&mut self) {
        let deadline = Instant::now() + PUMP_TIMEOUT;
        for pump in self.pumps.drain(..) {
            // The job is empty, so every writer of the pipes is gone, unless a process
            // outside the job got hold of one: never hang on it.
            while !pump.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            if pump.is_finished() {
                let _ = pump.join();
            } else {
                tracing::warn!(container = %self.shared.name, "log reader still busy; detached");
            }
        }
    }
}

impl<J: Job> Drop for Container<J> {
    fn drop(&mut self) {
        if self.init.is_none() {
            return;
        }
        {
            self.shared.state().finished = true;
        }
        self.shared.cv.notify_all();
        // Dropping the job kills every process and removes it; the sandbox removes itself.
        let job = self
            .shared
            .job
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(job);
    }
}

fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            id: "ns_pod_c.1.0".to_owned(),
            name: "c".to_owned(),
            args: vec!["/bin/true".to_owned()],
            ..ContainerSpec::default()
        }
    }

    #[test]
    fn spec_validation() {
        assert!(spec().validate().is_ok());
        let cases: Vec<(ContainerSpec, &str)> = vec![
            (
                ContainerSpec {
                    id: "../x".to_owned(),
                    ..spec()
                },
                "invalid job name",
            ),
            (
                ContainerSpec {
                    args: vec![],
                    ..spec()
                },
                "no program",
            ),
            (
                ContainerSpec {
                    args: vec![String::new()],
                    ..spec()
                },
                "no program",
            ),
            (
                ContainerSpec {
                    working_dir: Some("C:\\..\\x".to_owned()),
                    ..spec()
                },
                "working directory",
            ),
            (
                ContainerSpec {
                    mounts: vec![Mount {
                        source: "/s".into(),
                        destination: "C:\\".to_owned(),
                        read_only: false,
                    }],
                    ..spec()
                },
                "mounts",
            ),
            (
                ContainerSpec {
                    limits: JobLimits {
                        max_processes: Some(0),
                        ..JobLimits::default()
                    },
                    ..spec()
                },
                "limits",
            ),
        ];
        for (s, want) in cases {
            let err = s.validate().expect_err(want);
            assert!(err.to_string().contains(want), "{err} / {want}");
            assert!(err.is_invalid_spec());
            assert!(!err.is_start_failure());
        }
    }

    #[test]
    fn exit_codes_and_reasons() {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(exit_code_of(ExitStatus::from_raw(0)), (0, None));
            assert_eq!(exit_code_of(ExitStatus::from_raw(3 << 8)), (3, None));
            assert_eq!(exit_code_of(ExitStatus::from_raw(9)), (137, Some(9)));
            assert_eq!(exit_code_of(ExitStatus::from_raw(15)), (143, Some(15)));
        }
    }
}
