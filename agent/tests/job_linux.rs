//! The Linux job backend against the real cgroup file system.
//!
//! These tests need root and a writable cgroup hierarchy (v2, or the v1/v2 hybrid): without
//! them each prints why and is skipped, or fails when `CI` is set (see
//! `hostgate_test_support::prereq`). They run in parallel threads: every job has a unique name
//! and every workload carries `HOSTGATE_TEST_MARKER=<job name>` in its environment, so
//! leftovers are found by scanning `/proc/*/environ`. Waits are bounded by a generous deadline
//! (a failure, never a performance check): there are no timing assertions.
#![cfg(target_os = "linux")]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::num::NonZeroU32;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hostgate_agent::job::limits::{CpuMax, MIB, cfs_quota_us};
use hostgate_agent::job::sys::{CgroupConfig, CgroupJob, CgroupJobManager, CgroupSetup};
use hostgate_agent::job::{
    Job, JobError, JobLimits, JobManager, JobName, JobProcess, ProcessSpec, StdioSpec, StopOutcome,
    StopSignal,
};
use hostgate_test_support::procs::{self, stat_of};
use hostgate_test_support::{DEADLINE, Prereq, require, unique_name, wait_until};

const PARENT: &str = "hostgate-test";
const MARKER: &str = "HOSTGATE_TEST_MARKER";

fn manager_with(host_cpus: Option<u32>) -> CgroupJobManager {
    manager_from(CgroupConfig {
        parent: PathBuf::from(PARENT),
        host_cpus: host_cpus.and_then(NonZeroU32::new),
        ..CgroupConfig::default()
    })
}

/// A manager; callers have checked the prerequisites, so a failure here is a bug.
fn manager_from(config: CgroupConfig) -> CgroupJobManager {
    CgroupJobManager::new(config).unwrap_or_else(|err| panic!("cgroup manager: {err} ({err:?})"))
}

fn manager() -> CgroupJobManager {
    manager_with(None)
}

fn unique(test: &str) -> JobName {
    JobName::new(unique_name(test)).expect("valid name")
}

/// `/bin/sh -c script` with only the marker in its environment (plus PATH for the tools).
fn sh(job: &JobName, script: &str) -> ProcessSpec {
    ProcessSpec::new("/bin/sh")
        .args(["-c", script])
        .env(MARKER, job.as_str())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
}

/// Live processes (not zombies) whose environment carries the marker of `job`.
fn marked_processes(job: &JobName) -> Vec<u32> {
    procs::marked(MARKER, job.as_str())
}

fn wait_for_pids(job: &CgroupJob, n: usize) {
    wait_until(&format!("{n} processes in {}", job.name()), || {
        job.pids().expect("pids").len() == n
    });
}

fn assert_nothing_left(name: &JobName, dirs: &[PathBuf]) {
    procs::assert_gone(dirs);
    procs::assert_no_marked(MARKER, name.as_str());
}

/// Reads lines from a pipe until one equals `want`.
fn read_until_line(reader: impl Read, want: &str) {
    let mut lines = BufReader::new(reader).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line == want => return,
            Some(Ok(_)) => {}
            other => panic!("pipe ended before {want:?}: {other:?}"),
        }
    }
}

#[test]
fn spawned_process_starts_inside_every_hierarchy() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("inside");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    let mut proc = job
        .spawn(
            sh(
                &name,
                "cat /proc/self/cgroup; echo \"env=$(env | sort | tr '\\n' ' ')\"; pwd",
            )
            .working_dir("/tmp")
            .stdout(StdioSpec::Pipe),
        )
        .expect("spawn");
    let mut out = String::new();
    proc.take_stdout()
        .expect("stdout pipe")
        .read_to_string(&mut out)
        .expect("read");
    assert!(proc.wait().expect("wait").success());
    let suffix = format!("/{PARENT}/{name}");
    let lines: Vec<&str> = out.lines().collect();
    // v2 membership (and on hybrid, every controller hierarchy used).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("0::") && l.ends_with(&suffix)),
        "{out}"
    );
    if job.setup() == CgroupSetup::Hybrid {
        for controller in ["memory", "pids", "cpu"] {
            assert!(
                lines.iter().any(|l| l
                    .split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == controller))
                    && l.ends_with(&suffix)),
                "{controller} not joined: {out}"
            );
        }
    }
    // The environment is exactly the given one (sh adds PWD, SHLVL, _ itself).
    let env_line = lines
        .iter()
        .find(|l| l.starts_with("env="))
        .expect("env line");
    assert!(env_line.contains(&format!("{MARKER}={name}")), "{env_line}");
    assert!(!env_line.contains("HOME="), "{env_line}");
    assert!(!env_line.contains("CARGO"), "{env_line}");
    assert_eq!(lines.last(), Some(&"/tmp"));
    let dirs = job.cgroup_dirs().to_vec();
    job.destroy().expect("destroy");
    assert_nothing_left(&name, &dirs);
}

#[test]
fn hundred_process_tree_is_gone_after_terminate_and_destroy() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("tree");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    let mut init = job
        .spawn(sh(
            &name,
            "i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done; wait",
        ))
        .expect("spawn");
    wait_for_pids(&job, 101);
    // A process in the middle of execve(2) can briefly show an empty environment.
    wait_until("101 marked processes", || {
        marked_processes(&name).len() == 101
    });
    assert_eq!(job.stats().expect("stats").active_processes, 101);
    job.terminate().expect("terminate");
    assert!(job.wait_empty(DEADLINE).expect("wait_empty"));
    assert_eq!(job.pids().expect("pids"), Vec::<u32>::new());
    let dirs = job.cgroup_dirs().to_vec();
    job.destroy().expect("destroy");
    assert_eq!(init.wait().expect("wait").signal(), Some(libc::SIGKILL));
    assert_nothing_left(&name, &dirs);
}

#[test]
fn double_forked_setsid_grandchild_is_killed() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("setsid");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    // The subshell forks `setsid`, which (forking again) makes a new session whose leader
    // reports its pid and becomes `sleep`; the subshell exits at once, orphaning it.
    let mut init = job
        .spawn(
            sh(
                &name,
                "(setsid -f sh -c 'echo \"grandchild $$\"; exec sleep 1000' </dev/null 2>&1 &); \
                 echo ready; exec sleep 1000",
            )
            .stdout(StdioSpec::Pipe),
        )
        .expect("spawn");
    let mut grandchild = None;
    let mut ready = false;
    let mut lines = BufReader::new(init.take_stdout().expect("stdout")).lines();
    while grandchild.is_none() || !ready {
        let line = lines.next().expect("line").expect("read");
        if line == "ready" {
            ready = true;
        } else if let Some(pid) = line.strip_prefix("grandchild ") {
            grandchild = Some(pid.parse::<u32>().expect("pid"));
        }
    }
    let grandchild = grandchild.expect("grandchild pid");
    wait_for_pids(&job, 2);
    assert_eq!(job.pids().expect("pids"), {
        let mut v = vec![init.pid(), grandchild];
        v.sort_unstable();
        v
    });
    // It left our process tree and session: reparented, and leader of its own session.
    let grandchild_stat = stat_of(grandchild).expect("grandchild alive");
    assert_ne!(grandchild_stat.ppid, init.pid());
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(
        i32::try_from(grandchild).expect("pid"),
    )))
    .expect("getsid");
    assert_eq!(i64::from(sid.as_raw()), i64::from(grandchild));
    let dirs = job.cgroup_dirs().to_vec();
    job.destroy().expect("destroy");
    assert_eq!(init.wait().expect("wait").signal(), Some(libc::SIGKILL));
    assert_nothing_left(&name, &dirs);
}

#[test]
fn memory_limit_kills_the_hog_and_is_reported() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("oom");
    let limit = 32 * MIB;
    let job = manager
        .create(
            &name,
            &JobLimits {
                memory_bytes: Some(limit),
                ..JobLimits::default()
            },
        )
        .expect("create");
    // `tail` buffers an endless line without newlines: it grows until the OOM killer stops it.
    let mut init = job
        .spawn(sh(&name, "tail /dev/zero; echo \"tail: $?\""))
        .expect("spawn");
    let status = init.wait().expect("wait");
    assert!(status.success(), "sh survives, tail is killed: {status:?}");
    let stats = job.stats().expect("stats");
    assert!(stats.oom_kills >= 1, "{stats:?}");
    assert!(stats.memory_limit_events >= 1, "{stats:?}");
    if let Some(peak) = stats.memory_peak_bytes {
        assert!(peak <= limit, "{stats:?}");
        assert!(peak > limit / 2, "{stats:?}");
    }
    let dirs = job.cgroup_dirs().to_vec();
    job.destroy().expect("destroy");
    assert_nothing_left(&name, &dirs);
}

#[test]
fn memory_limit_oom_kill_exit_status() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("oom-exit");
    let job = manager
        .create(
            &name,
            &JobLimits {
                memory_bytes: Some(16 * MIB),
                ..JobLimits::default()
            },
        )
        .expect("create");
    let mut hog = job
        .spawn(
            ProcessSpec::new("/usr/bin/tail")
                .arg("/dev/zero")
                .env(MARKER, name.as_str()),
        )
        .expect("spawn");
    assert_eq!(hog.wait().expect("wait").signal(), Some(libc::SIGKILL));
    assert!(job.stats().expect("stats").oom_kills >= 1);
    job.destroy().expect("destroy");
}

#[test]
fn pids_limit_holds() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("pids");
    let max = 4;
    let job = manager
        .create(
            &name,
            &JobLimits {
                max_processes: Some(max),
                ..JobLimits::default()
            },
        )
        .expect("create");
    let mut init = job
        .spawn(
            sh(
                &name,
                "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 >/dev/null 2>&1 & echo started; done",
            )
            .stdout(StdioSpec::Pipe)
            .stderr(StdioSpec::Pipe),
        )
        .expect("spawn");
    let mut stdout = String::new();
    init.take_stdout()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    let mut stderr = String::new();
    init.take_stderr()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = init.wait().expect("wait");
    let started = stdout.lines().filter(|l| *l == "started").count();
    assert!(
        !status.success(),
        "the shell fails when fork fails: {stderr}"
    );
    assert!(stderr.to_lowercase().contains("fork"), "{stderr}");
    assert_eq!(started, max as usize - 1, "sh + {} sleepers", max - 1);
    assert!(job.pids().expect("pids").len() < max as usize);
    job.destroy().expect("destroy");
}

#[test]
fn cpu_bandwidth_matches_500m_cpu_limit() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager_with(Some(2));
    let host = manager.host_logical_processors();
    assert_eq!(host.get(), 2);
    let limits = JobLimits::from_kubernetes(500, 0, host);
    let name = unique("cpu");
    let job = manager.create(&name, &limits).expect("create");
    let dir = job.cpu_dir().expect("cpu controller").to_path_buf();
    let read = |f: &str| fs::read_to_string(dir.join(f)).expect(f).trim().to_owned();
    match job.setup() {
        CgroupSetup::Unified => {
            assert_eq!(read("cpu.max"), "50000 100000");
            assert_eq!(
                read("cpu.max"),
                CpuMax::from_rate(limits.cpu_rate, host).to_string()
            );
        }
        CgroupSetup::Hybrid => {
            assert_eq!(read("cpu.cfs_quota_us"), "50000");
            assert_eq!(read("cpu.cfs_period_us"), "100000");
            assert_eq!(
                read("cpu.cfs_quota_us"),
                cfs_quota_us(limits.cpu_rate, host).to_string()
            );
        }
    }
    // Lifting the limit resets the knob.
    job.set_limits(&JobLimits::default()).expect("reset");
    match job.setup() {
        CgroupSetup::Unified => assert_eq!(read("cpu.max"), "max 100000"),
        CgroupSetup::Hybrid => assert_eq!(read("cpu.cfs_quota_us"), "-1"),
    }
    job.destroy().expect("destroy");
}

#[test]
fn stop_signals_waits_for_grace_then_terminates() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("stop");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    let mut polite = job
        .spawn(
            sh(
                &name,
                "trap 'exit 0' TERM; echo ready; while :; do sleep 1000 & wait $!; done",
            )
            .stdout(StdioSpec::Pipe),
        )
        .expect("spawn polite");
    let mut stubborn = job
        .spawn(
            sh(
                &name,
                "trap '' TERM; echo ready; while :; do sleep 1000; done",
            )
            .stdout(StdioSpec::Pipe),
        )
        .expect("spawn stubborn");
    read_until_line(polite.take_stdout().expect("stdout"), "ready");
    read_until_line(stubborn.take_stdout().expect("stdout"), "ready");
    // polite sh + its sleep, stubborn sh + its sleep
    wait_for_pids(&job, 4);

    let delivered = job.signal_all(StopSignal::Terminate).expect("signal");
    assert_eq!(delivered, 4);
    assert_eq!(polite.wait().expect("polite exits").code(), Some(0));
    // The stubborn shell ignores SIGTERM (and so does its sleep): the grace period runs out.
    assert!(!job.wait_empty(Duration::from_millis(200)).expect("grace"));
    assert!(job.pids().expect("pids").contains(&stubborn.pid()));
    job.terminate().expect("terminate");
    assert!(job.wait_empty(DEADLINE).expect("wait_empty"));
    assert_eq!(stubborn.wait().expect("wait").signal(), Some(libc::SIGKILL));
    let dirs = job.cgroup_dirs().to_vec();
    job.destroy().expect("destroy");
    assert_nothing_left(&name, &dirs);
}

#[test]
fn stop_sequence_helper() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("stophelper");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    let mut p = job
        .spawn(sh(&name, "echo ready; exec sleep 1000").stdout(StdioSpec::Pipe))
        .expect("spawn");
    read_until_line(p.take_stdout().expect("stdout"), "ready");
    assert_eq!(
        job.stop(StopSignal::Terminate, DEADLINE).expect("stop"),
        StopOutcome::Graceful
    );
    assert_eq!(p.wait().expect("wait").signal(), Some(libc::SIGTERM));
    let mut p = job
        .spawn(
            sh(
                &name,
                "trap '' INT; echo ready; while :; do sleep 1000; done",
            )
            .stdout(StdioSpec::Pipe),
        )
        .expect("spawn");
    read_until_line(p.take_stdout().expect("stdout"), "ready");
    assert_eq!(
        job.stop(StopSignal::Interrupt, Duration::from_millis(50))
            .expect("stop"),
        StopOutcome::Terminated
    );
    assert_eq!(p.wait().expect("wait").signal(), Some(libc::SIGKILL));
    job.destroy().expect("destroy");
    assert_nothing_left(&name, &[]);
}

#[test]
fn dropping_a_job_without_destroy_leaves_nothing() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("drop");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    let init = job
        .spawn(sh(
            &name,
            "i=0; while [ $i -lt 20 ]; do sleep 1000 & i=$((i+1)); done; wait",
        ))
        .expect("spawn");
    wait_for_pids(&job, 21);
    let pid = init.pid();
    let before = stat_of(pid).expect("init alive");
    assert_eq!(before.ppid, std::process::id());
    // Drop the process handle first (the job adopts it), then the job.
    drop(init);
    let dirs = job.cgroup_dirs().to_vec();
    drop(job);
    assert_nothing_left(&name, &dirs);
    // The init process, our child, was reaped: no zombie left behind.
    if let Some(now) = stat_of(pid) {
        assert!(
            !(now.ppid == std::process::id() && now.start == before.start),
            "zombie left behind: state {}",
            now.state
        );
    }
}

#[test]
fn two_hundred_cycles_leave_nothing_behind() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let prefix = format!("cycle-{}-", std::process::id());
    let tmp_before = tmp_entries(&prefix);
    let mut spawned = Vec::new();
    for i in 0..200 {
        let name = JobName::new(format!("{prefix}{i}")).expect("name");
        let job = manager
            .create(
                &name,
                &JobLimits::from_kubernetes(250, 64 * MIB, manager.host_logical_processors()),
            )
            .expect("create");
        let mut p = if i % 2 == 0 {
            job.spawn(sh(&name, "exit 0")).expect("spawn")
        } else {
            job.spawn(sh(&name, "exec sleep 1000")).expect("spawn")
        };
        spawned.push((p.pid(), stat_of(p.pid()).map(|s| s.start)));
        if i % 2 == 0 {
            assert!(p.wait().expect("wait").success());
        }
        job.destroy().expect("destroy");
        if i % 2 == 1 {
            assert_eq!(p.wait().expect("wait").signal(), Some(libc::SIGKILL));
        }
    }
    for parent in manager.parent_dirs() {
        let leftovers: Vec<_> = fs::read_dir(&parent)
            .expect("parent")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    for (pid, start) in spawned {
        if let (Some(now), Some(start)) = (stat_of(pid), start) {
            assert!(
                !(now.ppid == std::process::id() && now.start == start),
                "process {pid} left behind (state {})",
                now.state
            );
        }
    }
    assert_eq!(tmp_entries(&prefix), tmp_before);
}

fn tmp_entries(prefix: &str) -> Vec<String> {
    procs::entries_containing(&std::env::temp_dir(), prefix)
}

#[test]
fn remove_stale_cleans_up_after_a_crashed_agent() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("stale");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    let mut p = job.spawn(sh(&name, "exec sleep 1000")).expect("spawn");
    wait_for_pids(&job, 1);
    let dirs = job.cgroup_dirs().to_vec();
    // A crash: nobody tears the job down.
    std::mem::forget(job);
    match manager.create(&name, &JobLimits::default()) {
        Err(JobError::AlreadyExists { name: n, .. }) => assert_eq!(n, name.as_str()),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert!(manager.remove_stale(&name).expect("remove_stale"));
    assert_eq!(p.wait().expect("wait").signal(), Some(libc::SIGKILL));
    assert_nothing_left(&name, &dirs);
    assert!(!manager.remove_stale(&name).expect("nothing left"));
}

#[test]
fn spawn_failure_is_reported_and_nothing_runs() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("nosuch");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    match job.spawn(ProcessSpec::new("/nonexistent/program")) {
        Err(JobError::Spawn {
            program,
            job: j,
            source,
        }) => {
            assert_eq!(program, Path::new("/nonexistent/program"));
            assert_eq!(j, name.as_str());
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert!(job.pids().expect("pids").is_empty());
    assert!(job.wait_empty(Duration::ZERO).expect("empty"));
    job.destroy().expect("destroy");
}

#[test]
fn stats_account_cpu_time_and_wait_timeout() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("stats");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    let mut busy = job
        .spawn(sh(
            &name,
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
        ))
        .expect("spawn");
    assert!(busy.wait_timeout(DEADLINE).expect("wait").is_some());
    let stats = job.stats().expect("stats");
    assert!(
        stats.cpu_user + stats.cpu_system > Duration::ZERO,
        "{stats:?}"
    );
    assert!(stats.memory_peak_bytes.is_none_or(|p| p > 0), "{stats:?}");
    assert_eq!(stats.active_processes, 0);
    let mut sleeper = job.spawn(sh(&name, "exec sleep 1000")).expect("spawn");
    assert_eq!(
        sleeper
            .wait_timeout(Duration::from_millis(20))
            .expect("wait"),
        None
    );
    job.terminate().expect("terminate");
    let status = sleeper
        .wait_timeout(DEADLINE)
        .expect("wait")
        .expect("exited");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    job.destroy().expect("destroy");
}

#[test]
fn limits_are_validated_and_duplicate_names_refused() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("dup");
    let bad = JobLimits {
        max_processes: Some(0),
        ..JobLimits::default()
    };
    assert!(matches!(
        manager.create(&name, &bad),
        Err(JobError::InvalidLimits(_))
    ));
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    assert!(matches!(
        manager.create(&name, &JobLimits::default()),
        Err(JobError::AlreadyExists { .. })
    ));
    assert!(matches!(
        job.set_limits(&bad),
        Err(JobError::InvalidLimits(_))
    ));
    let dirs = job.cgroup_dirs().to_vec();
    job.destroy().expect("destroy");
    assert_nothing_left(&name, &dirs);
}

/// Tears a 100-process tree down with the SIGKILL loop used where `cgroup.kill` is missing.
#[test]
fn kill_loop_fallback_tears_down_a_tree() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager_from(CgroupConfig {
        parent: PathBuf::from(PARENT),
        use_cgroup_kill: false,
        ..CgroupConfig::default()
    });
    let name = unique("killloop");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    assert!(!job.has_cgroup_kill());
    let mut init = job
        .spawn(sh(
            &name,
            "i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done; wait",
        ))
        .expect("spawn");
    wait_for_pids(&job, 101);
    assert_eq!(job.signal_all(StopSignal::Kill).expect("kill"), 101);
    assert!(job.wait_empty(DEADLINE).expect("wait_empty"));
    let dirs = job.cgroup_dirs().to_vec();
    job.destroy().expect("destroy");
    assert_eq!(init.wait().expect("wait").signal(), Some(libc::SIGKILL));
    assert_nothing_left(&name, &dirs);
}

/// The pure-v2 code paths (membership, `cgroup.events`, `cgroup.kill`, `cpu.stat`, missing
/// controllers): on a hybrid host by treating its controller-less `unified/` tree as the root,
/// on a pure v2 host on the real root (where every other test takes these paths too).
#[test]
fn pure_v2_layout_on_the_unified_hierarchy() {
    require!(Prereq::Root, Prereq::Cgroups);
    let hybrid = Path::new("/sys/fs/cgroup/unified");
    let root = if hybrid.join("cgroup.procs").is_file() {
        hybrid
    } else {
        Path::new("/sys/fs/cgroup")
    };
    let manager = manager_from(CgroupConfig {
        root: root.to_path_buf(),
        parent: PathBuf::from(PARENT),
        ..CgroupConfig::default()
    });
    assert_eq!(manager.setup(), CgroupSetup::Unified);
    let name = unique("v2");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    assert_eq!(job.cgroup_dirs(), [root.join(PARENT).join(name.as_str())]);
    let controllers =
        fs::read_to_string(job.unified_dir().join("cgroup.controllers")).expect("controllers");
    if !controllers.split_whitespace().any(|c| c == "memory") {
        match job.set_limits(&JobLimits {
            memory_bytes: Some(64 * MIB),
            ..JobLimits::default()
        }) {
            Err(JobError::ControllerUnavailable { controller, .. }) => {
                assert_eq!(controller, "memory");
            }
            other => panic!("expected ControllerUnavailable, got {other:?}"),
        }
    }
    let mut init = job
        .spawn(sh(
            &name,
            "i=0; while [ $i -lt 10 ]; do sleep 1000 & i=$((i+1)); done; \
             j=0; while [ $j -lt 20000 ]; do j=$((j+1)); done; wait",
        ))
        .expect("spawn");
    wait_for_pids(&job, 11);
    let stats = job.stats().expect("stats");
    assert_eq!(stats.active_processes, 11);
    let dirs = job.cgroup_dirs().to_vec();
    job.destroy().expect("destroy");
    assert_eq!(init.wait().expect("wait").signal(), Some(libc::SIGKILL));
    assert_nothing_left(&name, &dirs);
}

#[test]
fn processes_start_with_an_empty_signal_mask() {
    require!(Prereq::Root, Prereq::Cgroups);
    let manager = manager();
    let name = unique("sigmask");
    let job = manager
        .create(&name, &JobLimits::default())
        .expect("create");
    // The agent blocks SIGINT and SIGTERM in its threads (to sigwait for them); a child that
    // inherited that mask would never see a stop signal.
    let mut blocked = nix::sys::signal::SigSet::empty();
    blocked.add(nix::sys::signal::Signal::SIGTERM);
    blocked.add(nix::sys::signal::Signal::SIGINT);
    let old = blocked
        .thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK)
        .expect("block");
    let spawned = job.spawn(sh(&name, "grep SigBlk /proc/self/status").stdout(StdioSpec::Pipe));
    old.thread_set_mask().expect("restore");
    let mut proc = spawned.expect("spawn");
    let mut out = String::new();
    proc.take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(proc.wait().expect("wait").success());
    assert_eq!(
        out.split_whitespace().nth(1),
        Some("0000000000000000"),
        "{out}"
    );
    job.destroy().expect("destroy");
}
