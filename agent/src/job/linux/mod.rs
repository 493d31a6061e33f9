//! Linux backend: one job = one cgroup per hierarchy.
//!
//! # Layouts
//!
//! * **Pure v2** ([`CgroupSetup::Unified`]): the job is `<root>/<parent>/<name>`; limits in
//!   `memory.max` (+ `memory.swap.max`), `cpu.max`, `cpu.weight`, `pids.max`; the manager
//!   enables `cpu memory pids` in `cgroup.subtree_control` from the root down to the parent.
//! * **Hybrid** ([`CgroupSetup::Hybrid`], systemd's "hybrid" mode): the job is one
//!   directory in each v1 controller hierarchy (`memory/`, `cpu/`, `cpuacct/`, `pids/`, a
//!   combined `cpu,cpuacct` counted once) for limits and statistics, plus one in the
//!   controller-less v2 tree `unified/`, which is the authority on membership (`cgroup.procs`),
//!   emptiness (`cgroup.events` `populated`) and killing (`cgroup.kill`).
//!
//! In both, the v2 directory's `cgroup.procs` (recursively, in case a privileged workload made
//! sub-cgroups) lists the job's processes.
//!
//! # Starting processes inside the job
//!
//! A process must never run outside its job, so it is not moved in after `spawn` (which would
//! let it fork escapees first). The job opens the `cgroup.procs` file of each of its
//! directories once, when it is created (`O_WRONLY | O_CLOEXEC`); [`Job::spawn`] gives the raw
//! descriptors to a `pre_exec` hook, and the forked child writes `"0"` to each with plain
//! `write(2)` before `execve` — async-signal-safe, no allocation in the child (see
//! `raw::start_inside`). If a write fails, `std` reports the error through its exec-error
//! pipe and `spawn` fails without the program ever running. The alternative,
//! `clone3(CLONE_INTO_CGROUP)`, only helps when the whole job is one v2 cgroup (not on a
//! hybrid host, where the v1 controller hierarchies must be joined too) and would mean
//! re-implementing `std::process::Command` (stdio, error pipe, `execvp` search); the `pre_exec`
//! route works for both layouts with `std`'s well-tested spawning.
//!
//! # Killing
//!
//! `cgroup.kill` (Linux 5.14+) kills the whole subtree atomically, forks included. Without it
//! the backend runs a freeze-free kill loop: `SIGKILL` every pid listed in `cgroup.procs`, wait
//! briefly for `populated 0`, repeat until the job is empty or the kill timeout passes.
//! Signals go through `pidfd_open` + a check of `/proc/<pid>/cgroup` + `pidfd_send_signal`, so
//! a pid recycled by an unrelated process between listing and signalling is never hit.
//!
//! # Cost
//!
//! The first migration into a cgroup after a quiet spell waits for an RCU grace period
//! (`cgroup_threadgroup_rwsem`, shared by all hierarchies), which can take milliseconds on a
//! kernel built with `CONFIG_RCU_LAZY`; mounting the v2 hierarchy with the `favordynmods`
//! option (Linux 6.0+) avoids most of that wait, so hosts that start many jobs should use it
//! (`agent/benches/job.rs` measures job start-up).
//! `clone3(CLONE_INTO_CGROUP)` would avoid it on pure v2 only. Teardown waits for
//! `populated 0` (see `wait_empty`), not for the kernel's rate-limited notification.
//!
//! # Why not `cgroups-rs` or youki's `libcgroups`
//!
//! `cgroups-rs` picks v1 on a hybrid host and ignores `unified/` (no `cgroup.kill`, no
//! `populated` events), hard-wires `/sys/fs/cgroup` via mountinfo (no fake tree for tests), and
//! only moves existing processes in (`add_task`); `libcgroups` brings OCI-spec types and
//! supports the hybrid layout only for v1 resource control. The backend needs about fifteen
//! control files; writing them directly keeps every decision visible and testable.

use std::fs::{File, OpenOptions};
use std::io::{PipeReader, PipeWriter};
use std::num::NonZeroU32;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use std::{io, thread};

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;
use rustix::process::Signal;

use self::fs::{child_dirs, create_dir, keyed_value, parse_pids, write_in};
use super::{
    Job, JobError, JobLimits, JobManager, JobName, JobProcess, JobStats, ProcessSpec, StopSignal,
    WrappedIoError,
};

mod fs;
mod pidfd;
mod raw;
mod setup;
mod v1;
mod v2;

pub(crate) use setup::online_cpus;
pub use setup::{
    CgroupConfig, CgroupSetup, DEFAULT_CGROUP_ROOT, DEFAULT_PARENT, V2_CONTROLLERS, detect_setup,
};

/// The platform's job manager.
pub type PlatformJobManager = CgroupJobManager;
/// The platform's job.
pub type PlatformJob = CgroupJob;
/// The platform's process handle.
pub type PlatformProcess = CgroupProcess;

/// Creates cgroup-backed jobs below a parent cgroup (see the module docs).
#[derive(Debug)]
pub struct CgroupJobManager {
    config: CgroupConfig,
    hierarchies: setup::Hierarchies,
    host_cpus: NonZeroU32,
}

impl CgroupJobManager {
    /// Detects the layout (unless configured), creates the parent cgroups and, on v2, enables
    /// the controllers for them.
    pub fn new(config: CgroupConfig) -> Result<Self, JobError> {
        config.validate()?;
        let setup = match config.setup {
            Some(setup) => setup,
            None => detect_setup(&config.root)?,
        };
        let hierarchies = setup::Hierarchies::resolve(&config.root, setup);
        if !hierarchies.unified.is_dir() {
            return Err(JobError::UnsupportedSetup {
                root: config.root.clone(),
                reason: format!("no v2 hierarchy at {}", hierarchies.unified.display()),
            });
        }
        for root in hierarchies.roots() {
            let parent = root.join(&config.parent);
            std::fs::create_dir_all(&parent).map_err(|err| WrappedIoError::CreateDir {
                err,
                path: parent.clone(),
            })?;
        }
        if setup == CgroupSetup::Unified {
            let mut dir = hierarchies.unified.clone();
            setup::enable_controllers(&dir)?;
            for component in config.parent.components() {
                dir.push(component);
                setup::enable_controllers(&dir)?;
            }
        }
        let host_cpus = config.host_cpus.unwrap_or_else(setup::online_cpus);
        Ok(Self {
            config,
            hierarchies,
            host_cpus,
        })
    }

    /// [`CgroupJobManager::new`] with the default configuration (`/sys/fs/cgroup`,
    /// parent `hostgate`).
    pub fn detect() -> Result<Self, JobError> {
        Self::new(CgroupConfig::default())
    }

    /// The detected (or configured) layout.
    pub fn setup(&self) -> CgroupSetup {
        self.hierarchies.setup
    }

    /// The configuration in use.
    pub fn config(&self) -> &CgroupConfig {
        &self.config
    }

    /// The parent cgroup directory in every hierarchy, the v2 one first.
    pub fn parent_dirs(&self) -> Vec<PathBuf> {
        self.hierarchies
            .roots()
            .into_iter()
            .map(|r| r.join(&self.config.parent))
            .collect()
    }

    fn job_dirs(&self, name: &JobName) -> JobDirs {
        let under = |root: &Path| root.join(&self.config.parent).join(name.as_str());
        let h = &self.hierarchies;
        let unified = under(&h.unified);
        let rel = Path::new("/").join(&self.config.parent).join(name.as_str());
        let all = h.roots().iter().map(|r| under(r)).collect();
        JobDirs {
            unified_rel: rel.to_string_lossy().into_owned(),
            unified,
            memory: h.memory.as_deref().map(under),
            cpu: h.cpu.as_deref().map(under),
            cpuacct: h.cpuacct.as_deref().map(under),
            pids: h.pids.as_deref().map(under),
            all,
        }
    }

    fn inner(&self, name: &JobName, dirs: JobDirs, procs_files: Vec<File>) -> JobInner {
        JobInner {
            name: name.clone(),
            setup: self.hierarchies.setup,
            has_kill: self.config.use_cgroup_kill && dirs.unified.join("cgroup.kill").is_file(),
            dirs,
            host_cpus: self.host_cpus,
            kill_timeout: self.config.kill_timeout,
            procs_files,
            orphans: Mutex::new(Some(Vec::new())),
        }
    }
}

impl JobManager for CgroupJobManager {
    type Job = CgroupJob;

    fn create(&self, name: &JobName, limits: &JobLimits) -> Result<CgroupJob, JobError> {
        limits.validate()?;
        let dirs = self.job_dirs(name);
        let already = |dir: &Path| JobError::AlreadyExists {
            name: name.to_string(),
            location: dir.display().to_string(),
        };
        if let Some(existing) = dirs.all.iter().find(|d| d.exists()) {
            return Err(already(existing));
        }
        let mut created: Vec<&Path> = Vec::new();
        let rollback = |created: &[&Path]| {
            for dir in created.iter().rev() {
                if let Err(err) = std::fs::remove_dir(dir) {
                    tracing::warn!(dir = %dir.display(), error = %err, "rollback: cannot remove cgroup");
                }
            }
        };
        for dir in &dirs.all {
            match create_dir(dir) {
                Ok(true) => created.push(dir),
                Ok(false) => {
                    rollback(&created);
                    return Err(already(dir));
                }
                Err(err) => {
                    rollback(&created);
                    return Err(err.into());
                }
            }
        }
        let mut procs_files = Vec::with_capacity(dirs.all.len());
        for dir in &dirs.all {
            let path = dir.join("cgroup.procs");
            match OpenOptions::new().write(true).open(&path) {
                Ok(file) => procs_files.push(file),
                Err(err) => {
                    rollback(&created);
                    return Err(WrappedIoError::Open { err, path }.into());
                }
            }
        }
        // From here on, dropping `job` tears everything down.
        let job = CgroupJob {
            inner: Arc::new(self.inner(name, dirs, procs_files)),
            torn_down: false,
        };
        job.set_limits(limits)?;
        Ok(job)
    }

    fn remove_stale(&self, name: &JobName) -> Result<bool, JobError> {
        let dirs = self.job_dirs(name);
        if !dirs.all.iter().any(|d| d.exists()) {
            return Ok(false);
        }
        let inner = self.inner(name, dirs, Vec::new());
        inner.teardown()?;
        Ok(true)
    }

    fn host_logical_processors(&self) -> NonZeroU32 {
        self.host_cpus
    }
}

/// The directories of one job.
#[derive(Debug, Clone)]
struct JobDirs {
    /// The v2 directory: membership, `cgroup.events`, `cgroup.kill` (and, on pure v2, limits).
    unified: PathBuf,
    /// The v2 directory as `/proc/<pid>/cgroup` shows it (`/<parent>/<name>`).
    unified_rel: String,
    /// Hybrid only: the v1 controller directories.
    memory: Option<PathBuf>,
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    pids: Option<PathBuf>,
    /// Every distinct directory, the v2 one first.
    all: Vec<PathBuf>,
}

/// State shared between a job and the handles of its processes.
#[derive(Debug)]
struct JobInner {
    name: JobName,
    setup: CgroupSetup,
    dirs: JobDirs,
    has_kill: bool,
    host_cpus: NonZeroU32,
    kill_timeout: Duration,
    /// `cgroup.procs` of every directory in `dirs.all`, opened for the `pre_exec` hook.
    procs_files: Vec<File>,
    /// Children whose handle was dropped while they ran: reaped once the job is empty.
    /// `None` once the job has been emptied and removed.
    orphans: Mutex<Option<Vec<Child>>>,
}

/// A cgroup-backed job (see the module docs). Dropping it kills and removes it.
#[derive(Debug)]
pub struct CgroupJob {
    inner: Arc<JobInner>,
    torn_down: bool,
}

impl CgroupJob {
    /// The job's cgroup directories, the v2 one first (hybrid: then memory, cpu, cpuacct, pids).
    pub fn cgroup_dirs(&self) -> &[PathBuf] {
        &self.inner.dirs.all
    }

    /// The job's v2 cgroup directory.
    pub fn unified_dir(&self) -> &Path {
        &self.inner.dirs.unified
    }

    /// The cgroup layout of the job.
    pub fn setup(&self) -> CgroupSetup {
        self.inner.setup
    }

    /// Whether the kernel offers `cgroup.kill` (otherwise the kill loop is used).
    pub fn has_cgroup_kill(&self) -> bool {
        self.inner.has_kill
    }

    /// The directory holding the CPU bandwidth knobs (`cpu.max` on v2,
    /// `cpu.cfs_quota_us` on v1), if the CPU controller is available.
    pub fn cpu_dir(&self) -> Option<&Path> {
        match self.inner.setup {
            CgroupSetup::Unified => Some(&self.inner.dirs.unified),
            CgroupSetup::Hybrid => self.inner.dirs.cpu.as_deref(),
        }
    }
}

impl Job for CgroupJob {
    type Process = CgroupProcess;

    fn name(&self) -> &JobName {
        &self.inner.name
    }

    fn set_limits(&self, limits: &JobLimits) -> Result<(), JobError> {
        self.inner.set_limits(limits)
    }

    fn spawn(&self, spec: ProcessSpec) -> Result<CgroupProcess, JobError> {
        self.inner.spawn(spec, Arc::downgrade(&self.inner))
    }

    fn pids(&self) -> Result<Vec<u32>, JobError> {
        Ok(self.inner.pids()?)
    }

    fn stats(&self) -> Result<JobStats, JobError> {
        self.inner.stats()
    }

    fn signal_all(&self, signal: StopSignal) -> Result<usize, JobError> {
        let signo = match signal {
            StopSignal::Terminate => Signal::TERM,
            StopSignal::Interrupt => Signal::INT,
            StopSignal::Kill => {
                let n = self.inner.pids()?.len();
                self.inner.terminate()?;
                return Ok(n);
            }
        };
        let mut delivered = 0;
        for pid in self.inner.pids()? {
            if self.inner.signal_member(pid, signo)? {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    fn terminate(&self) -> Result<(), JobError> {
        self.inner.terminate()
    }

    fn wait_empty(&self, timeout: Duration) -> Result<bool, JobError> {
        self.inner.wait_empty(timeout)
    }

    fn destroy(mut self) -> Result<(), JobError> {
        self.torn_down = true;
        self.inner.teardown()
    }
}

impl Drop for CgroupJob {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if let Err(err) = self.inner.teardown() {
            tracing::warn!(job = %self.inner.name, error = %err, "cannot remove dropped job");
        }
    }
}

impl JobInner {
    fn set_limits(&self, limits: &JobLimits) -> Result<(), JobError> {
        limits.validate()?;
        let dirs = &self.dirs;
        match self.setup {
            CgroupSetup::Unified => v2::apply(&dirs.unified, limits, self.host_cpus),
            CgroupSetup::Hybrid => {
                let unavailable = |controller: &'static str| JobError::ControllerUnavailable {
                    controller,
                    path: dirs.unified.clone(),
                };
                match &dirs.memory {
                    Some(dir) => v1::apply_memory(dir, limits.memory_bytes)?,
                    None if limits.memory_bytes.is_some() => return Err(unavailable("memory")),
                    None => {}
                }
                match &dirs.cpu {
                    Some(dir) => {
                        v1::apply_cpu(dir, limits.cpu_rate, limits.cpu_weight, self.host_cpus)?
                    }
                    None if limits.cpu_rate.is_some() || limits.cpu_weight.is_some() => {
                        return Err(unavailable("cpu"));
                    }
                    None => {}
                }
                match &dirs.pids {
                    Some(dir) => v1::apply_pids(dir, limits.max_processes)?,
                    None if limits.max_processes.is_some() => return Err(unavailable("pids")),
                    None => {}
                }
                Ok(())
            }
        }
    }

    fn spawn(&self, spec: ProcessSpec, me: Weak<JobInner>) -> Result<CgroupProcess, JobError> {
        let spawn_error = |source: io::Error| JobError::Spawn {
            program: spec.program.clone(),
            job: self.name.to_string(),
            source,
        };
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &spec.working_dir {
            cmd.current_dir(dir);
        }
        let (stdin, stdin_parent) = spec.stdin.into_input().map_err(spawn_error)?;
        let (stdout, stdout_parent) = spec.stdout.into_output().map_err(spawn_error)?;
        let (stderr, stderr_parent) = spec.stderr.into_output().map_err(spawn_error)?;
        cmd.stdin(stdin).stdout(stdout).stderr(stderr);
        let fds: Vec<RawFd> = self.procs_files.iter().map(AsRawFd::as_raw_fd).collect();
        raw::start_inside(&mut cmd, fds);
        let child = cmd.spawn().map_err(spawn_error)?;
        // Close the parent's copies of the child's pipe ends now, so that EOF arrives when
        // the child (and whoever inherited them) exits.
        drop(cmd);
        Ok(CgroupProcess {
            pid: child.id(),
            child: Some(child),
            status: None,
            stdin: stdin_parent,
            stdout: stdout_parent,
            stderr: stderr_parent,
            job: me,
            kill_timeout: self.kill_timeout,
        })
    }

    /// Every pid in the v2 directory and its sub-cgroups, sorted.
    fn pids(&self) -> Result<Vec<u32>, WrappedIoError> {
        let mut pids = Vec::new();
        let mut stack = vec![self.dirs.unified.clone()];
        while let Some(dir) = stack.pop() {
            let path = dir.join("cgroup.procs");
            match std::fs::read_to_string(&path) {
                Ok(content) => pids.extend(parse_pids(&path, &content)?),
                // Removed concurrently (a sub-cgroup) or not there (stale job half created).
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(WrappedIoError::Read { err, path }),
            }
            stack.extend(child_dirs(&dir)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn stats(&self) -> Result<JobStats, JobError> {
        let active_processes = u32::try_from(self.pids()?.len()).unwrap_or(u32::MAX);
        let dirs = &self.dirs;
        let stats = match self.setup {
            CgroupSetup::Unified => {
                let s = v2::stats(&dirs.unified)?;
                JobStats {
                    active_processes,
                    cpu_user: s.cpu_user,
                    cpu_system: s.cpu_system,
                    memory_current_bytes: s.memory_current,
                    memory_peak_bytes: s.memory_peak,
                    memory_limit_events: s.memory_max_events,
                    oom_events: s.oom_events,
                    oom_kills: s.oom_kills,
                }
            }
            CgroupSetup::Hybrid => {
                let cpu = match &dirs.cpuacct {
                    Some(dir) => v1::cpu_times(dir)?,
                    None => None,
                };
                let (cpu_user, cpu_system) = match cpu {
                    Some(times) => times,
                    None => v2::cpu_times(&dirs.unified)?,
                };
                let memory = match &dirs.memory {
                    Some(dir) => Some(v1::memory_stats(dir)?),
                    None => None,
                };
                JobStats {
                    active_processes,
                    cpu_user,
                    cpu_system,
                    memory_current_bytes: memory.map_or(0, |m| m.current),
                    memory_peak_bytes: memory.map(|m| m.peak),
                    memory_limit_events: memory.map_or(0, |m| m.limit_hits),
                    oom_events: None,
                    oom_kills: memory.map_or(0, |m| m.oom_kills),
                }
            }
        };
        Ok(stats)
    }

    /// Whether `/proc/<pid>/cgroup` puts the process in this job's v2 cgroup (or below).
    fn is_member(&self, pid: u32) -> bool {
        let Ok(content) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return false;
        };
        let rel = self.dirs.unified_rel.as_str();
        content
            .lines()
            .filter_map(|line| line.strip_prefix("0::"))
            .any(|path| {
                path == rel
                    || path
                        .strip_prefix(rel)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
    }

    /// Sends `signo` to `pid` if it is (still) a member of the job. Returns whether it was
    /// delivered; a process that is gone is not an error.
    fn signal_member(&self, pid: u32, signo: Signal) -> Result<bool, JobError> {
        let signal_error = |source: io::Error| JobError::Signal { pid, source };
        match pidfd::open(pid) {
            Ok(pidfd) => {
                // The pidfd pins the process: if it is a member now, the signal reaches it
                // and nobody else.
                if !self.is_member(pid) {
                    return Ok(false);
                }
                match pidfd::send_signal(&pidfd, signo) {
                    Ok(()) => Ok(true),
                    Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(false),
                    Err(err) => Err(signal_error(err)),
                }
            }
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => {
                // Before Linux 5.3: best effort with kill(2).
                if !self.is_member(pid) {
                    return Ok(false);
                }
                let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
                    return Ok(false);
                };
                let signal = nix::sys::signal::Signal::try_from(signo.as_raw())
                    .map_err(|errno| signal_error(errno.into()))?;
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw_pid), signal) {
                    Ok(()) => Ok(true),
                    Err(nix::errno::Errno::ESRCH) => Ok(false),
                    Err(errno) => Err(signal_error(errno.into())),
                }
            }
            Err(err) => Err(signal_error(err)),
        }
    }

    fn terminate(&self) -> Result<(), JobError> {
        if self.has_kill {
            write_in(&self.dirs.unified, "cgroup.kill", "1")?;
            return Ok(());
        }
        self.kill_loop()
    }

    /// The freeze-free fallback without `cgroup.kill`: SIGKILL every member until none is
    /// left (a process forked while a pass runs is caught by the next pass).
    fn kill_loop(&self) -> Result<(), JobError> {
        let start = Instant::now();
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            for pid in pids {
                self.signal_member(pid, Signal::KILL)?;
            }
            if self.wait_empty(Duration::from_millis(10))? {
                return Ok(());
            }
            if start.elapsed() >= self.kill_timeout {
                return Err(JobError::NotEmpty {
                    job: self.name.to_string(),
                    waited: start.elapsed(),
                });
            }
        }
    }

    /// Waits for `populated 0` in `cgroup.events`, sleeping in `ppoll(2)` on the file (the
    /// kernel signals `POLLPRI` when it changes). The kernel rate-limits those notifications
    /// (`CGROUP_FILE_NOTIFY_MIN_INTV`, 10 ms, delivered by a timer), which would add up to
    /// ~20 ms to every teardown, so the file is also re-read with a back-off from 50 µs to
    /// 10 ms. Without `cgroup.events` (before Linux 4.5) it polls `cgroup.procs`.
    fn wait_empty(&self, timeout: Duration) -> Result<bool, JobError> {
        let deadline = Instant::now() + timeout;
        let path = self.dirs.unified.join("cgroup.events");
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return self.wait_empty_by_polling(deadline);
            }
            Err(err) => return Err(WrappedIoError::Open { err, path }.into()),
        };
        let mut buf = [0u8; 256];
        let mut pause = Duration::from_micros(50);
        loop {
            let n = file
                .read_at(&mut buf, 0)
                .map_err(|err| WrappedIoError::Read {
                    err,
                    path: path.clone(),
                })?;
            let content = String::from_utf8_lossy(&buf[..n]);
            if keyed_value(&path, &content, "populated")? == Some(0) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
            let wait = TimeSpec::from_duration((deadline - now).min(pause));
            match ppoll(&mut fds, Some(wait), None) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(errno) => {
                    return Err(JobError::Os {
                        call: "ppoll(cgroup.events)",
                        source: errno.into(),
                    });
                }
            }
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    fn wait_empty_by_polling(&self, deadline: Instant) -> Result<bool, JobError> {
        let mut pause = Duration::from_micros(500);
        loop {
            if self.pids()?.is_empty() {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Kill everything, wait for the job to empty, remove every directory (sub-cgroups
    /// first), reap the children whose handles were dropped.
    fn teardown(&self) -> Result<(), JobError> {
        if self.dirs.unified.exists() {
            self.terminate()?;
            if !self.wait_empty(self.kill_timeout)? {
                return Err(JobError::NotEmpty {
                    job: self.name.to_string(),
                    waited: self.kill_timeout,
                });
            }
        }
        let deadline = Instant::now() + self.kill_timeout;
        let mut first_error = None;
        for dir in self.dirs.all.iter().rev() {
            if let Err(err) = remove_tree(dir, deadline) {
                first_error.get_or_insert(err);
            }
        }
        let orphans = self
            .orphans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for mut child in orphans.into_iter().flatten() {
            // Dead (the job is empty): this returns as soon as the exit is recorded.
            let _ = child.wait();
        }
        match first_error {
            Some(err) => Err(err.into()),
            None => Ok(()),
        }
    }
}

/// Removes a cgroup directory and its sub-cgroups, deepest first. `rmdir` can briefly fail
/// with `EBUSY` while the last tasks finish exiting: retried until `deadline`.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), WrappedIoError> {
    for child in child_dirs(dir)? {
        remove_tree(&child, deadline)?;
    }
    let mut pause = Duration::from_micros(200);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(err) => {
                return Err(WrappedIoError::RemoveDir {
                    err,
                    path: dir.to_owned(),
                });
            }
        }
    }
}

/// A process started in a [`CgroupJob`]. Dropping it does not kill the process; if it is
/// still running, it is handed to its job, which reaps it after killing the job.
#[derive(Debug)]
pub struct CgroupProcess {
    pid: u32,
    /// `None` only while dropping.
    child: Option<Child>,
    status: Option<ExitStatus>,
    stdin: Option<PipeWriter>,
    stdout: Option<PipeReader>,
    stderr: Option<PipeReader>,
    job: Weak<JobInner>,
    kill_timeout: Duration,
}

impl CgroupProcess {
    fn wait_error(&self, source: io::Error) -> JobError {
        JobError::Wait {
            pid: self.pid,
            source,
        }
    }

    fn child(&mut self) -> Result<&mut Child, JobError> {
        let pid = self.pid;
        self.child.as_mut().ok_or_else(|| JobError::Wait {
            pid,
            source: io::Error::from_raw_os_error(libc::ECHILD),
        })
    }
}

impl JobProcess for CgroupProcess {
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
        if let Some(status) = self.status {
            return Ok(status);
        }
        // Like `Child::wait`, close our end of stdin first so the child is not blocked on it.
        self.stdin = None;
        let status = self.child()?.wait().map_err(|e| self.wait_error(e))?;
        self.status = Some(status);
        Ok(status)
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, JobError> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = self.child()?.try_wait().map_err(|e| self.wait_error(e))?;
        self.status = status;
        Ok(status)
    }

    /// Sleeps in `poll(2)` on a pidfd of the child (readable when it exits; runwasi's
    /// `pid_fd.rs`), checking with `try_wait` before and after; polls with back-off on kernels
    /// without `pidfd_open`. The child is unreaped until `try_wait` succeeds, so its pid
    /// cannot be recycled meanwhile.
    fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, JobError> {
        let deadline = Instant::now() + timeout;
        if let Some(status) = self.try_wait()? {
            return Ok(Some(status));
        }
        match pidfd::open(self.pid) {
            Ok(pidfd) => loop {
                let now = Instant::now();
                if now >= deadline {
                    return self.try_wait();
                }
                let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
                match ppoll(
                    &mut fds,
                    Some(TimeSpec::from_duration(deadline - now)),
                    None,
                ) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(errno) => return Err(self.wait_error(errno.into())),
                }
                if let Some(status) = self.try_wait()? {
                    return Ok(Some(status));
                }
            },
            Err(_) => {
                let mut pause = Duration::from_micros(500);
                loop {
                    if let Some(status) = self.try_wait()? {
                        return Ok(Some(status));
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        }
    }
}

impl Drop for CgroupProcess {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.status.is_some() || !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        // Still running: the job reaps it after killing it.
        if let Some(job) = self.job.upgrade() {
            let mut orphans = job.orphans.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(orphans) = orphans.as_mut() {
                orphans.push(child);
                return;
            }
        }
        // The job is gone, so the process was killed: reap it, but never hang here.
        self.child = Some(child);
        if !matches!(self.wait_timeout(self.kill_timeout), Ok(Some(_))) {
            tracing::warn!(pid = self.pid, "process outlived its job; not reaped");
        }
        self.child = None;
    }
}
