//! A recording fake of the job layer, for tests of what sits above it (the pod runner, the
//! container runner) on machines without root or cgroups. Enabled by the `fake-jobs` feature.
//!
//! A [`FakeJob`] is a set of process groups: every process it spawns is an ordinary child of
//! the test process, leader of a new process group, so signalling or terminating the job
//! reaches the whole tree a process started (except descendants that leave the group with
//! `setsid`/`setpgid`, which a real job would still hold: tests of escapes belong to the real
//! backends). Limits are validated and recorded, not enforced.
//!
//! A process group is known by its leader's pid; the job forgets a group once it has seen it
//! empty with its leader exited, before the number can be reused. Between a caller reaping a
//! leader ([`JobProcess::wait`]) and the job's next look at its groups, the number of a group
//! that emptied meanwhile could in principle be reused; with the kernel's large pid space and
//! tests' short lives this is not a concern for a test double.
//!
//! Every call that changes something is appended to one log shared by the manager and its jobs
//! ([`FakeJobManager::calls`]), in the order it happened, so a test can assert what was
//! created with which limits, what was started, and how it was stopped and destroyed.

use std::ffi::OsString;
use std::io::{PipeReader, PipeWriter};
use std::num::NonZeroU32;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hostgate_test_support::procs;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{
    Job, JobError, JobLimits, JobManager, JobName, JobProcess, JobStats, ProcessSpec, StopSignal,
    TERMINATE_TIMEOUT,
};

/// How often waits look at the job's processes again.
const POLL: Duration = Duration::from_millis(1);

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`JobManager::create`] succeeded.
    Create {
        /// The job.
        job: String,
        /// The limits it was created with.
        limits: JobLimits,
    },
    /// [`JobManager::remove_stale`].
    RemoveStale {
        /// The job name asked for.
        job: String,
    },
    /// [`Job::set_limits`] succeeded.
    SetLimits {
        /// The job.
        job: String,
        /// The new limits.
        limits: JobLimits,
    },
    /// [`Job::spawn`], successful or not.
    Spawn {
        /// The job.
        job: String,
        /// [`ProcessSpec::program`].
        program: PathBuf,
        /// [`ProcessSpec::args`].
        args: Vec<OsString>,
        /// [`ProcessSpec::env`].
        env: Vec<(OsString, OsString)>,
        /// [`ProcessSpec::working_dir`].
        working_dir: Option<PathBuf>,
        /// The new process, `None` if it could not be started.
        pid: Option<u32>,
    },
    /// [`Job::signal_all`].
    Signal {
        /// The job.
        job: String,
        /// The signal.
        signal: StopSignal,
        /// How many processes it was delivered to.
        delivered: usize,
    },
    /// [`Job::terminate`].
    Terminate {
        /// The job.
        job: String,
    },
    /// [`Job::wait_empty`] returned.
    WaitEmpty {
        /// The job.
        job: String,
        /// Whether the job was empty (the wait did not run out).
        empty: bool,
    },
    /// [`Job::destroy`]: every process was killed and the job removed.
    Destroy {
        /// The job.
        job: String,
    },
    /// The job was dropped without [`Job::destroy`] (and torn down all the same).
    Dropped {
        /// The job.
        job: String,
    },
}

impl Call {
    /// The job the call concerns.
    pub fn job(&self) -> &str {
        match self {
            Call::Create { job, .. }
            | Call::RemoveStale { job }
            | Call::SetLimits { job, .. }
            | Call::Spawn { job, .. }
            | Call::Signal { job, .. }
            | Call::Terminate { job }
            | Call::WaitEmpty { job, .. }
            | Call::Destroy { job }
            | Call::Dropped { job } => job,
        }
    }
}

#[derive(Debug, Default)]
struct Log {
    calls: Vec<Call>,
    live: Vec<String>,
}

type SharedLog = Arc<Mutex<Log>>;

fn lock(log: &SharedLog) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The fake [`JobManager`] (see the module docs).
#[derive(Debug, Clone)]
pub struct FakeJobManager {
    log: SharedLog,
    host_cpus: NonZeroU32,
}

impl Default for FakeJobManager {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeJobManager {
    /// A manager that reports 4 logical processors, so that CPU rates do not depend on the
    /// machine the tests run on.
    pub fn new() -> Self {
        Self::with_host_cpus(NonZeroU32::new(4).expect("4 is not zero"))
    }

    /// A manager that reports `host_cpus` logical processors.
    pub fn with_host_cpus(host_cpus: NonZeroU32) -> Self {
        Self {
            log: SharedLog::default(),
            host_cpus,
        }
    }

    /// Every recorded call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.log).calls.clone()
    }

    /// The recorded calls that concern `job`, in order.
    pub fn calls_for(&self, job: &str) -> Vec<Call> {
        lock(&self.log)
            .calls
            .iter()
            .filter(|c| c.job() == job)
            .cloned()
            .collect()
    }

    /// The jobs created and not yet destroyed or dropped.
    pub fn live_jobs(&self) -> Vec<String> {
        lock(&self.log).live.clone()
    }
}

impl JobManager for FakeJobManager {
    type Job = FakeJob;

    fn create(&self, name: &JobName, limits: &JobLimits) -> Result<FakeJob, JobError> {
        limits.validate()?;
        let mut log = lock(&self.log);
        if log.live.iter().any(|j| j == name.as_str()) {
            return Err(JobError::AlreadyExists {
                name: name.to_string(),
                location: "the fake job manager".to_owned(),
            });
        }
        log.live.push(name.to_string());
        log.calls.push(Call::Create {
            job: name.to_string(),
            limits: *limits,
        });
        drop(log);
        Ok(FakeJob {
            name: name.clone(),
            log: Arc::clone(&self.log),
            children: Mutex::new(Vec::new()),
            torn_down: Mutex::new(false),
        })
    }

    fn remove_stale(&self, name: &JobName) -> Result<bool, JobError> {
        lock(&self.log).calls.push(Call::RemoveStale {
            job: name.to_string(),
        });
        Ok(false)
    }

    fn host_logical_processors(&self) -> NonZeroU32 {
        self.host_cpus
    }
}

/// A child process of the test and the process group it leads.
type SharedChild = Arc<Mutex<Child>>;

/// The fake [`Job`]: the process groups of the processes it spawned.
#[derive(Debug)]
pub struct FakeJob {
    name: JobName,
    log: SharedLog,
    children: Mutex<Vec<(u32, SharedChild)>>,
    torn_down: Mutex<bool>,
}

impl FakeJob {
    fn record(&self, call: Call) {
        lock(&self.log).calls.push(call);
    }

    /// The live members of each process group of the job. A group found empty whose leader
    /// has exited is forgotten: it can never gain a member again, and once its leader is
    /// reaped the number may be given to an unrelated process group.
    fn members(&self) -> Vec<(u32, Vec<u32>)> {
        let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        let groups: Vec<u32> = children.iter().map(|(pgid, _)| *pgid).collect();
        let members = group_members(&groups);
        children.retain(|(pgid, child)| {
            let empty = members.iter().any(|(g, pids)| g == pgid && pids.is_empty());
            let exited = || {
                child
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .try_wait()
                    .is_ok_and(|status| status.is_some())
            };
            !(empty && exited())
        });
        members
    }

    /// Sends `signal` to every process group that still has a live member; returns how many
    /// processes they had.
    fn signal_groups(&self, signal: Signal) -> Result<usize, JobError> {
        let members = self.members();
        let mut delivered = 0;
        for (pgid, pids) in members {
            if pids.is_empty() {
                continue;
            }
            let group = Pid::from_raw(i32::try_from(pgid).unwrap_or(i32::MAX));
            match killpg(group, signal) {
                Ok(()) => delivered += pids.len(),
                Err(nix::errno::Errno::ESRCH) => {}
                Err(errno) => {
                    return Err(JobError::Signal {
                        pid: pgid,
                        source: errno.into(),
                    });
                }
            }
        }
        Ok(delivered)
    }

    fn is_empty(&self) -> bool {
        self.members().iter().all(|(_, pids)| pids.is_empty())
    }

    fn poll_empty(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills everything, waits for it to go and reaps the children. Once.
    fn tear_down(&self, call: Call) -> Result<(), JobError> {
        {
            let mut done = self
                .torn_down
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *done {
                return Ok(());
            }
            *done = true;
        }
        let killed = self.signal_groups(Signal::SIGKILL);
        let empty = self.poll_empty(TERMINATE_TIMEOUT);
        for (_, child) in self
            .children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let mut child = child.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = child.try_wait();
        }
        {
            let mut log = lock(&self.log);
            log.live.retain(|j| j != self.name.as_str());
            log.calls.push(call);
        }
        killed?;
        if empty {
            Ok(())
        } else {
            Err(JobError::NotEmpty {
                job: self.name.to_string(),
                waited: TERMINATE_TIMEOUT,
            })
        }
    }
}

impl Job for FakeJob {
    type Process = FakeProcess;

    fn name(&self) -> &JobName {
        &self.name
    }

    fn set_limits(&self, limits: &JobLimits) -> Result<(), JobError> {
        limits.validate()?;
        self.record(Call::SetLimits {
            job: self.name.to_string(),
            limits: *limits,
        });
        Ok(())
    }

    fn spawn(&self, spec: ProcessSpec) -> Result<FakeProcess, JobError> {
        let spawn_error = |source| JobError::Spawn {
            program: spec.program.clone(),
            job: self.name.to_string(),
            source,
        };
        let mut recorded = Call::Spawn {
            job: self.name.to_string(),
            program: spec.program.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            working_dir: spec.working_dir.clone(),
            pid: None,
        };
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .process_group(0);
        if let Some(dir) = &spec.working_dir {
            cmd.current_dir(dir);
        }
        let started = (|| {
            let (stdin, stdin_parent) = spec.stdin.into_input()?;
            let (stdout, stdout_parent) = spec.stdout.into_output()?;
            let (stderr, stderr_parent) = spec.stderr.into_output()?;
            cmd.stdin(stdin).stdout(stdout).stderr(stderr);
            let child = cmd.spawn()?;
            Ok((child, stdin_parent, stdout_parent, stderr_parent))
        })();
        // The parent's copies of the child's pipe ends go now: EOF when the child exits.
        drop(cmd);
        let (child, stdin, stdout, stderr) = match started {
            Ok(started) => started,
            Err(source) => {
                self.record(recorded);
                return Err(spawn_error(source));
            }
        };
        let pid = child.id();
        if let Call::Spawn { pid: p, .. } = &mut recorded {
            *p = Some(pid);
        }
        self.record(recorded);
        let child = Arc::new(Mutex::new(child));
        self.children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((pid, Arc::clone(&child)));
        Ok(FakeProcess {
            pid,
            child,
            stdin,
            stdout,
            stderr,
        })
    }

    fn pids(&self) -> Result<Vec<u32>, JobError> {
        let mut pids: Vec<u32> = self
            .members()
            .into_iter()
            .flat_map(|(_, pids)| pids)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn stats(&self) -> Result<JobStats, JobError> {
        Ok(JobStats {
            active_processes: u32::try_from(self.pids()?.len()).unwrap_or(u32::MAX),
            ..JobStats::default()
        })
    }

    fn signal_all(&self, signal: StopSignal) -> Result<usize, JobError> {
        let delivered = match signal {
            StopSignal::Terminate => self.signal_groups(Signal::SIGTERM)?,
            StopSignal::Interrupt => self.signal_groups(Signal::SIGINT)?,
            StopSignal::Kill => self.signal_groups(Signal::SIGKILL)?,
        };
        self.record(Call::Signal {
            job: self.name.to_string(),
            signal,
            delivered,
        });
        Ok(delivered)
    }

    fn terminate(&self) -> Result<(), JobError> {
        self.record(Call::Terminate {
            job: self.name.to_string(),
        });
        self.signal_groups(Signal::SIGKILL).map(|_| ())
    }

    fn wait_empty(&self, timeout: Duration) -> Result<bool, JobError> {
        let empty = self.poll_empty(timeout);
        self.record(Call::WaitEmpty {
            job: self.name.to_string(),
            empty,
        });
        Ok(empty)
    }

    fn destroy(self) -> Result<(), JobError> {
        self.tear_down(Call::Destroy {
            job: self.name.to_string(),
        })
    }
}

impl Drop for FakeJob {
    fn drop(&mut self) {
        let _ = self.tear_down(Call::Dropped {
            job: self.name.to_string(),
        });
    }
}

/// A process of a [`FakeJob`]: an ordinary child process.
#[derive(Debug)]
pub struct FakeProcess {
    pid: u32,
    child: SharedChild,
    stdin: Option<PipeWriter>,
    stdout: Option<PipeReader>,
    stderr: Option<PipeReader>,
}

impl FakeProcess {
    fn wait_error(&self, source: std::io::Error) -> JobError {
        JobError::Wait {
            pid: self.pid,
            source,
        }
    }
}

impl JobProcess for FakeProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn take_stdin(&mut self) -> Option<PipeWriter> {
        self.stdin.take()
    }

    fn take_stdout(&mut self) -> Option<PipeReader> {
        self.stdout.take()
    }

    fn take_stderr(&mut self) -> Option<PipeReader> {
        self.stderr.take()
    }

    fn wait(&mut self) -> Result<ExitStatus, JobError> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(POLL);
        }
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, JobError> {
        // Polled rather than blocking in `Child::wait`, so that the job can reap the child
        // from another thread while this handle waits.
        let polled = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_wait();
        polled.map_err(|e| self.wait_error(e))
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, JobError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The live (not zombie) members of each process group, from `/proc/*/stat`.
fn group_members(groups: &[u32]) -> Vec<(u32, Vec<u32>)> {
    let mut members: Vec<(u32, Vec<u32>)> = groups.iter().map(|&g| (g, Vec::new())).collect();
    for pid in procs::all_pids() {
        if let Some(stat) = procs::stat_of(pid)
            && stat.state != 'Z'
            && let Some((_, pids)) = members.iter_mut().find(|(g, _)| *g == stat.pgid)
        {
            pids.push(pid);
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;

    use super::*;
    use crate::job::StdioSpec;

    fn sh(script: &str) -> ProcessSpec {
        ProcessSpec::new("/bin/sh")
            .args(["-c", script])
            .env("PATH", "/usr/bin:/bin")
    }

    #[test]
    fn a_job_records_its_life_and_kills_its_tree() {
        let manager = FakeJobManager::new();
        let name = JobName::new(format!("fake-{}", std::process::id())).expect("name");
        let limits = JobLimits {
            max_processes: Some(10),
            ..JobLimits::default()
        };
        let job = manager.create(&name, &limits).expect("create");
        assert!(matches!(
            manager.create(&name, &limits),
            Err(JobError::AlreadyExists { .. })
        ));
        let mut p = job
            .spawn(sh("sleep 1000 & sleep 1000 & echo ready; wait").stdout(StdioSpec::Pipe))
            .expect("spawn");
        let mut ready = [0; 6];
        p.take_stdout()
            .expect("stdout")
            .read_exact(&mut ready)
            .expect("read");
        assert_eq!(&ready, b"ready\n");
        assert_eq!(job.pids().expect("pids").len(), 3);
        assert_eq!(p.wait_timeout(Duration::ZERO).expect("wait"), None);
        assert_eq!(job.signal_all(StopSignal::Kill).expect("kill"), 3);
        assert!(job.wait_empty(TERMINATE_TIMEOUT).expect("wait"));
        assert_eq!(p.wait().expect("wait").signal(), Some(libc::SIGKILL));
        let missing = job.spawn(ProcessSpec::new("/nonexistent"));
        assert!(matches!(missing, Err(JobError::Spawn { .. })));
        job.destroy().expect("destroy");
        assert!(manager.live_jobs().is_empty());
        let job_name = name.to_string();
        let kinds: Vec<&str> = manager
            .calls_for(&job_name)
            .iter()
            .map(|c| match c {
                Call::Create { limits: l, .. } => {
                    assert_eq!(*l, limits);
                    "create"
                }
                Call::Spawn { pid: Some(_), .. } => "spawn",
                Call::Spawn { pid: None, .. } => "spawn failed",
                Call::Signal { .. } => "signal",
                Call::WaitEmpty { empty: true, .. } => "empty",
                Call::Destroy { .. } => "destroy",
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "create",
                "spawn",
                "signal",
                "empty",
                "spawn failed",
                "destroy"
            ]
        );
    }

    #[test]
    fn a_dropped_job_is_torn_down_and_says_so() {
        let manager = FakeJobManager::new();
        let name = JobName::new(format!("dropped-{}", std::process::id())).expect("name");
        let job = manager
            .create(&name, &JobLimits::default())
            .expect("create");
        let mut p = job.spawn(sh("exec sleep 1000")).expect("spawn");
        drop(job);
        assert_eq!(p.wait().expect("wait").signal(), Some(libc::SIGKILL));
        assert_eq!(
            manager.calls().last(),
            Some(&Call::Dropped {
                job: name.to_string()
            })
        );
        assert!(manager.live_jobs().is_empty());
    }
}
