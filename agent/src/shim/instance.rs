//! One task of the shim as a small trait of our own, so that the task service (and the
//! containerd crate behind it) only sees "start, signal, wait, clean up":
//!
//! * [`Placeholder`]: the pod sandbox, a task without a process (as hcsshim runs a HostProcess
//!   pod's sandbox: there is no pause container to run on the host);
//! * [`JobInstance`]: a container run as a job through [`crate::container::Container`], the
//!   same code the static runner uses.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::SystemTime;

use hostgate_core::chain::Chain;

use crate::container::{
    Container, ContainerError, ContainerSpec, DirectStdio, LogOptions, RuntimeOptions, Stopper,
};
use crate::job::{Job as _, JobError, JobManager, StopSignal};

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit status containerd reports (128 + signal for a signalled process).
    pub status: u32,
    /// When it ended.
    pub at: SystemTime,
    /// Whether the job's memory limit killed it.
    pub oom_killed: bool,
}

/// Called once when a task's process has ended (and, for a container, its job is gone).
pub type ExitHook = Arc<dyn Fn(u32, &Exit) + Send + Sync>;

/// Why an instance operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The task has not been started.
    #[error("the task has not been started")]
    NotStarted,
    /// The task is started already.
    #[error("the task is already started")]
    AlreadyStarted,
    /// The task's process has ended.
    #[error("the task's process has already exited")]
    Exited,
    /// The task is still running.
    #[error("the task is still running")]
    Running,
    /// The standard streams could not be opened.
    #[error("cannot open {path}")]
    Stdio {
        /// The FIFO or file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The container could not be started.
    #[error("cannot start the container")]
    Container(#[source] ContainerError),
    /// The job refused an operation.
    #[error("job operation failed")]
    Job(#[source] JobError),
    /// A signal could not be delivered.
    #[error("cannot deliver signal {signal}: {reason}")]
    Signal {
        /// The signal number.
        signal: u32,
        /// Why.
        reason: String,
    },
}

/// A task: a placeholder or a container.
pub trait Instance: Send + Sync {
    /// Starts the task; returns its pid (0 for a task without a process).
    fn start(&self) -> Result<u32, InstanceError>;
    /// The pid (0 until started, or for a task without a process).
    fn pid(&self) -> u32;
    /// Sends `signal` (a Unix signal number, as containerd sends them) to the init process, or
    /// to every process of the task when `all`.
    fn kill(&self, signal: u32, all: bool) -> Result<(), InstanceError>;
    /// Blocks until the task has ended.
    fn wait(&self) -> Exit;
    /// How the task ended, if it has.
    fn exited(&self) -> Option<Exit>;
    /// The pids of the task's processes.
    fn pids(&self) -> Result<Vec<u32>, InstanceError>;
    /// Releases what the task holds once it has ended (or was never started).
    fn delete(&self) -> Result<Option<Exit>, InstanceError>;
}

/// SIGKILL, which containerd sends when a graceful stop timed out.
pub const SIGKILL: u32 = 9;
/// SIGTERM.
pub const SIGTERM: u32 = 15;
/// SIGINT.
pub const SIGINT: u32 = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlaceholderState {
    Created,
    Running,
    Exited(Exit),
}

/// The pod sandbox: runs nothing, "exits" when it is killed.
pub struct Placeholder {
    state: Mutex<PlaceholderState>,
    cv: Condvar,
    on_exit: ExitHook,
}

impl std::fmt::Debug for Placeholder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placeholder")
            .field("state", &*lock(&self.state))
            .finish_non_exhaustive()
    }
}

impl Placeholder {
    /// A new, created placeholder.
    pub fn new(on_exit: ExitHook) -> Self {
        Self {
            state: Mutex::new(PlaceholderState::Created),
            cv: Condvar::new(),
            on_exit,
        }
    }
}

impl Instance for Placeholder {
    fn start(&self) -> Result<u32, InstanceError> {
        let mut st = lock(&self.state);
        match *st {
            PlaceholderState::Created => {
                *st = PlaceholderState::Running;
                Ok(0)
            }
            PlaceholderState::Running => Err(InstanceError::AlreadyStarted),
            PlaceholderState::Exited(_) => Err(InstanceError::Exited),
        }
    }

    fn pid(&self) -> u32 {
        0
    }

    fn kill(&self, signal: u32, _all: bool) -> Result<(), InstanceError> {
        let exit = {
            let mut st = lock(&self.state);
            if let PlaceholderState::Exited(_) = *st {
                return Err(InstanceError::Exited);
            }
            let exit = Exit {
                status: 128 + signal,
                at: SystemTime::now(),
                oom_killed: false,
            };
            *st = PlaceholderState::Exited(exit);
            exit
        };
        self.cv.notify_all();
        (self.on_exit)(0, &exit);
        Ok(())
    }

    fn wait(&self) -> Exit {
        let mut st = lock(&self.state);
        loop {
            if let PlaceholderState::Exited(exit) = *st {
                return exit;
            }
            st = self.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn exited(&self) -> Option<Exit> {
        match *lock(&self.state) {
            PlaceholderState::Exited(exit) => Some(exit),
            _ => None,
        }
    }

    fn pids(&self) -> Result<Vec<u32>, InstanceError> {
        Ok(Vec::new())
    }

    fn delete(&self) -> Result<Option<Exit>, InstanceError> {
        match *lock(&self.state) {
            PlaceholderState::Running => Err(InstanceError::Running),
            PlaceholderState::Created => Ok(None),
            PlaceholderState::Exited(exit) => Ok(Some(exit)),
        }
    }
}

/// The FIFOs (or files) containerd gives a task for its standard streams; empty = none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    /// Standard input.
    pub stdin: String,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl StdioPaths {
    fn open(&self) -> Result<DirectStdio, InstanceError> {
        let open = |path: &str, input: bool| -> Result<Option<File>, InstanceError> {
            if path.is_empty() {
                return Ok(None);
            }
            super::stdio::open(path, input)
                .map(Some)
                .map_err(|source| InstanceError::Stdio {
                    path: path.to_owned(),
                    source,
                })
        };
        Ok(DirectStdio {
            stdin: open(&self.stdin, true)?,
            stdout: open(&self.stdout, false)?,
            stderr: open(&self.stderr, false)?,
        })
    }
}

enum JobState<J: crate::job::Job> {
    Created(Box<ContainerSpec>),
    Running {
        pid: u32,
        stopper: Stopper<J>,
    },
    Exited(Exit),
    /// `start` is laying out and spawning the container: `kill` and `delete` wait for it.
    Starting,
    /// Deleted before it was started.
    Discarded,
}

/// A container run as a job.
pub struct JobInstance<M: JobManager> {
    manager: Arc<M>,
    options: RuntimeOptions,
    stdio: StdioPaths,
    state: Arc<(Mutex<JobState<M::Job>>, Condvar)>,
    on_exit: ExitHook,
    /// Released by [`Instance::delete`] (the mounted root file system).
    resources: Mutex<Option<Box<dyn Send>>>,
}

impl<M: JobManager> std::fmt::Debug for JobInstance<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobInstance")
            .field("stdio", &self.stdio)
            .finish_non_exhaustive()
    }
}

impl<M: JobManager + 'static> JobInstance<M> {
    /// A created container: `spec` runs at [`Instance::start`]; `resources` (the mounted
    /// root file system) are released at [`Instance::delete`].
    pub fn new(
        manager: Arc<M>,
        spec: ContainerSpec,
        options: RuntimeOptions,
        stdio: StdioPaths,
        resources: Option<Box<dyn Send>>,
        on_exit: ExitHook,
    ) -> Self {
        Self {
            manager,
            options,
            stdio,
            state: Arc::new((
                Mutex::new(JobState::Created(Box::new(spec))),
                Condvar::new(),
            )),
            on_exit,
            resources: Mutex::new(resources),
        }
    }

    fn finished(&self, exit: Exit, pid: u32) {
        finish(&self.state, &self.on_exit, exit, pid);
    }

    /// Ends a start: the state it leads to, and whoever waits in [`Self::settled`] goes on.
    fn settle(&self, to: JobState<M::Job>) {
        *lock(&self.state.0) = to;
        self.state.1.notify_all();
    }

    /// The state once no start is in progress: a `Kill` or `Delete` that arrives while the
    /// container is being laid out and spawned acts on what the start led to (the running
    /// container, or the created one after a failed start), never on a half-started one.
    fn settled(&self) -> MutexGuard<'_, JobState<M::Job>> {
        let (m, cv) = &*self.state;
        let mut st = lock(m);
        while matches!(*st, JobState::Starting) {
            st = cv.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st
    }
}

fn finish<J: crate::job::Job>(
    state: &(Mutex<JobState<J>>, Condvar),
    on_exit: &ExitHook,
    exit: Exit,
    pid: u32,
) {
    *lock(&state.0) = JobState::Exited(exit);
    state.1.notify_all();
    on_exit(pid, &exit);
}

impl<M: JobManager + 'static> Instance for JobInstance<M> {
    fn start(&self) -> Result<u32, InstanceError> {
        let spec = {
            let mut st = lock(&self.state.0);
            match std::mem::replace(&mut *st, JobState::Starting) {
                JobState::Created(spec) => spec,
                other => {
                    let err = match &other {
                        JobState::Running { .. } | JobState::Starting => {
                            InstanceError::AlreadyStarted
                        }
                        _ => InstanceError::Exited,
                    };
                    *st = other;
                    return Err(err);
                }
            }
        };
        let stdio = match self.stdio.open() {
            Ok(stdio) => stdio,
            Err(e) => {
                self.settle(JobState::Created(spec));
                return Err(e);
            }
        };
        let logs = LogOptions {
            stdio: Some(stdio),
            ..LogOptions::default()
        };
        let container =
            match Container::start(self.manager.as_ref(), *spec.clone(), &self.options, logs) {
                Ok(c) => c,
                Err(e) => {
                    self.settle(JobState::Created(spec));
                    return Err(InstanceError::Container(e));
                }
            };
        let pid = container.pid();
        self.settle(JobState::Running {
            pid,
            stopper: container.stopper(),
        });
        let state = Arc::clone(&self.state);
        let on_exit = Arc::clone(&self.on_exit);
        let waiter = thread::Builder::new()
            .name(format!("wait-{pid}"))
            .spawn(move || {
                let exit = match container.wait() {
                    Ok(e) => Exit {
                        status: u32::try_from(e.exit_code).unwrap_or(255),
                        at: e.finished_at,
                        oom_killed: e.oom_killed,
                    },
                    Err(err) => {
                        log::warn!("container pid {pid}: {}", Chain(&err));
                        Exit {
                            status: 255,
                            at: SystemTime::now(),
                            oom_killed: false,
                        }
                    }
                };
                finish(&state, &on_exit, exit, pid);
            });
        if let Err(err) = waiter {
            // Without a waiter nobody would report the exit: stop the container now.
            log::error!("cannot start the waiter thread: {err}");
            self.finished(
                Exit {
                    status: 255,
                    at: SystemTime::now(),
                    oom_killed: false,
                },
                pid,
            );
        }
        Ok(pid)
    }

    fn pid(&self) -> u32 {
        match &*lock(&self.state.0) {
            JobState::Running { pid, .. } => *pid,
            _ => 0,
        }
    }

    fn kill(&self, signal: u32, all: bool) -> Result<(), InstanceError> {
        let st = self.settled();
        match &*st {
            // settled() waits while a start is in progress.
            JobState::Starting => Err(InstanceError::NotStarted),
            JobState::Created(_) | JobState::Discarded => {
                drop(st);
                // Nothing runs yet: the task ends without ever starting.
                self.finished(
                    Exit {
                        status: 128 + signal,
                        at: SystemTime::now(),
                        oom_killed: false,
                    },
                    0,
                );
                Ok(())
            }
            JobState::Exited(_) => Err(InstanceError::Exited),
            JobState::Running { pid, stopper } => {
                let (pid, stopper) = (*pid, stopper.clone());
                drop(st);
                deliver(&stopper, pid, signal, all)
            }
        }
    }

    fn wait(&self) -> Exit {
        let (m, cv) = &*self.state;
        let mut st = lock(m);
        loop {
            if let JobState::Exited(exit) = &*st {
                return *exit;
            }
            st = cv.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn exited(&self) -> Option<Exit> {
        match &*lock(&self.state.0) {
            JobState::Exited(exit) => Some(*exit),
            _ => None,
        }
    }

    fn pids(&self) -> Result<Vec<u32>, InstanceError> {
        match &*lock(&self.state.0) {
            JobState::Running { stopper, .. } => stopper
                .with_job(|j| j.pids())
                .unwrap_or(Ok(Vec::new()))
                .map_err(InstanceError::Job),
            _ => Ok(Vec::new()),
        }
    }

    fn delete(&self) -> Result<Option<Exit>, InstanceError> {
        let exit = {
            let mut st = self.settled();
            match &*st {
                // settled() waits while a start is in progress.
                JobState::Running { .. } | JobState::Starting => {
                    return Err(InstanceError::Running);
                }
                JobState::Exited(exit) => Some(*exit),
                JobState::Created(_) | JobState::Discarded => {
                    *st = JobState::Discarded;
                    None
                }
            }
        };
        drop(lock(&self.resources).take());
        Ok(exit)
    }
}

/// Delivers a signal the way a job container takes it: SIGKILL kills the whole job (its
/// init process's end would take the rest down anyway, HP-JOB-08); another signal goes to the
/// init process (`all`: to every process). Windows has no signals: every polite one is the
/// job's stop event for all processes.
fn deliver<J: crate::job::Job + 'static>(
    stopper: &Stopper<J>,
    pid: u32,
    signal: u32,
    all: bool,
) -> Result<(), InstanceError> {
    if signal == SIGKILL {
        stopper.terminate();
        return Ok(());
    }
    if cfg!(windows) || all {
        let polite = if signal == SIGINT {
            StopSignal::Interrupt
        } else {
            StopSignal::Terminate
        };
        return match stopper.with_job(|j| j.signal_all(polite)) {
            Some(Ok(_)) | None => Ok(()),
            Some(Err(e)) => Err(InstanceError::Job(e)),
        };
    }
    signal_process(pid, signal)
}

#[cfg(unix)]
fn signal_process(pid: u32, signal: u32) -> Result<(), InstanceError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let err = |reason: String| InstanceError::Signal { signal, reason };
    let sig = i32::try_from(signal)
        .ok()
        .and_then(|s| Signal::try_from(s).ok())
        .ok_or_else(|| err("not a signal".to_owned()))?;
    let pid = i32::try_from(pid).map_err(|_| err("pid out of range".to_owned()))?;
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(not(unix))]
fn signal_process(pid: u32, signal: u32) -> Result<(), InstanceError> {
    whole_jobs_only(pid, signal)
}

/// Windows has no per-process signals ([`deliver`] signals the whole job instead, so this is
/// never reached there); compiled and tested everywhere.
pub fn whole_jobs_only(_pid: u32, signal: u32) -> Result<(), InstanceError> {
    Err(InstanceError::Signal {
        signal,
        reason: "only whole jobs can be signalled here".to_owned(),
    })
}

/// Where a task's root file system is mounted: `<bundle>/<root.path>`.
pub fn rootfs_dir(bundle: &std::path::Path, root_path: Option<&str>) -> PathBuf {
    match root_path {
        Some(p) if std::path::Path::new(p).is_absolute() => PathBuf::from(p),
        Some(p) => bundle.join(p),
        None => bundle.join("rootfs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn placeholders_run_nothing_and_exit_when_killed() {
        let exits = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&exits);
        let p = Placeholder::new(Arc::new(move |_, e: &Exit| {
            seen.store(e.status, Ordering::SeqCst);
        }));
        assert!(matches!(p.delete(), Ok(None)));
        assert_eq!(p.start().expect("starts"), 0);
        assert!(matches!(p.start(), Err(InstanceError::AlreadyStarted)));
        assert!(p.pids().expect("pids").is_empty());
        assert!(matches!(p.delete(), Err(InstanceError::Running)));
        assert!(p.exited().is_none());
        p.kill(SIGKILL, true).expect("kill");
        assert_eq!(p.wait().status, 137);
        assert_eq!(exits.load(Ordering::SeqCst), 137);
        assert!(matches!(p.kill(SIGTERM, false), Err(InstanceError::Exited)));
        assert_eq!(p.delete().expect("delete").map(|e| e.status), Some(137));
    }

    /// A `Kill` that arrives while `start` lays out and spawns the container acts on what the
    /// start led to, not on the half-started task (which it used to end, with an exit event
    /// for a container that then ran on).
    #[cfg(feature = "fake-jobs")]
    #[test]
    fn a_kill_during_a_start_waits_for_the_start_to_settle() {
        use crate::job::fake::FakeJobManager;
        let exits = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&exits);
        let instance = Arc::new(JobInstance::new(
            Arc::new(FakeJobManager::new()),
            ContainerSpec::default(),
            RuntimeOptions::new("/nonexistent"),
            StdioPaths::default(),
            None,
            Arc::new(move |_, e: &Exit| seen.store(e.status, Ordering::SeqCst)),
        ));
        // What `start` does first.
        let spec = match std::mem::replace(&mut *lock(&instance.state.0), JobState::Starting) {
            JobState::Created(spec) => spec,
            _ => panic!("a new instance is created"),
        };
        let killer = {
            let instance = Arc::clone(&instance);
            thread::spawn(move || instance.kill(SIGKILL, true))
        };
        thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(exits.load(Ordering::SeqCst), 0, "the kill did not wait");
        // The start fails and leaves the task created: the kill now ends it.
        instance.settle(JobState::Created(spec));
        killer.join().expect("killer").expect("kill");
        assert_eq!(exits.load(Ordering::SeqCst), 137);
        assert_eq!(instance.wait().status, 137);
    }

    #[test]
    fn per_process_signals_are_refused_where_only_jobs_take_them() {
        let err = whole_jobs_only(1, SIGTERM).expect_err("refused");
        assert!(err.to_string().contains("only whole jobs"), "{err}");
    }

    #[test]
    fn rootfs_paths() {
        let b = std::path::Path::new("/run/b");
        assert_eq!(rootfs_dir(b, None), PathBuf::from("/run/b/rootfs"));
        assert_eq!(
            rootfs_dir(b, Some("rootfs")),
            PathBuf::from("/run/b/rootfs")
        );
        assert_eq!(rootfs_dir(b, Some("/abs")), PathBuf::from("/abs"));
    }
}
