//! cgroup v2 knobs and statistics of one job directory (pure v2 hosts).
//!
//! Files: `memory.max`, `memory.swap.max`, `cpu.max`, `cpu.weight`, `pids.max` (written);
//! `cgroup.controllers`, `cpu.stat`, `memory.current`, `memory.peak`, `memory.events` (read).

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use super::fs::{keyed_value, read_file, read_optional, read_u64_optional, write_in};
use crate::job::limits::{CpuMax, cgroup_v2_cpu_weight};
use crate::job::{JobError, JobLimits, WrappedIoError};

/// The controllers enabled for a cgroup (`cgroup.controllers`; empty if absent).
pub(crate) fn controllers(dir: &Path) -> Result<Vec<String>, WrappedIoError> {
    Ok(read_optional(&dir.join("cgroup.controllers"))?
        .unwrap_or_default()
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Writes every limit of `limits` into the job's cgroup `dir` (a `None` limit resets the knob
/// to `max`). A limit whose controller is not enabled for `dir` is an error; an unset limit
/// whose controller is missing is skipped.
pub(crate) fn apply(dir: &Path, limits: &JobLimits, host_cpus: NonZeroU32) -> Result<(), JobError> {
    let controllers = controllers(dir)?;
    let has = |c: &str| controllers.iter().any(|x| x == c);
    let unavailable = |controller: &'static str| JobError::ControllerUnavailable {
        controller,
        path: dir.to_owned(),
    };

    if has("memory") {
        let max = limits
            .memory_bytes
            .map_or_else(|| "max".to_owned(), |b| b.to_string());
        write_in(dir, "memory.max", &max)?;
        // The job limit is a commit limit on Windows: swapping beyond it is not allowed.
        if dir.join("memory.swap.max").exists() {
            let swap = if limits.memory_bytes.is_some() {
                "0"
            } else {
                "max"
            };
            write_in(dir, "memory.swap.max", swap)?;
        }
    } else if limits.memory_bytes.is_some() {
        return Err(unavailable("memory"));
    }

    if has("cpu") {
        write_in(
            dir,
            "cpu.max",
            &CpuMax::from_rate(limits.cpu_rate, host_cpus).to_string(),
        )?;
        write_in(
            dir,
            "cpu.weight",
            &cgroup_v2_cpu_weight(limits.cpu_weight).to_string(),
        )?;
    } else if limits.cpu_rate.is_some() || limits.cpu_weight.is_some() {
        return Err(unavailable("cpu"));
    }

    if has("pids") {
        let max = limits
            .max_processes
            .map_or_else(|| "max".to_owned(), |n| n.to_string());
        write_in(dir, "pids.max", &max)?;
    } else if limits.max_processes.is_some() {
        return Err(unavailable("pids"));
    }
    Ok(())
}

/// CPU and memory statistics of a v2 cgroup directory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stats {
    pub(crate) cpu_user: Duration,
    pub(crate) cpu_system: Duration,
    pub(crate) memory_current: u64,
    pub(crate) memory_peak: Option<u64>,
    pub(crate) memory_max_events: u64,
    pub(crate) oom_events: Option<u64>,
    pub(crate) oom_kills: u64,
}

/// CPU time from `cpu.stat` (`user_usec`, `system_usec`; present in every v2 cgroup).
pub(crate) fn cpu_times(dir: &Path) -> Result<(Duration, Duration), WrappedIoError> {
    let path = dir.join("cpu.stat");
    let content = read_file(&path)?;
    let user = keyed_value(&path, &content, "user_usec")?.unwrap_or(0);
    let system = keyed_value(&path, &content, "system_usec")?.unwrap_or(0);
    Ok((Duration::from_micros(user), Duration::from_micros(system)))
}

/// Reads `cpu.stat`, `memory.current`, `memory.peak` and `memory.events` of `dir`; memory
/// files that are absent (controller not enabled, `memory.peak` before Linux 5.19) read as
/// 0 / `None`.
pub(crate) fn stats(dir: &Path) -> Result<Stats, WrappedIoError> {
    let (cpu_user, cpu_system) = cpu_times(dir)?;
    let memory_current = read_u64_optional(&dir.join("memory.current"))?.unwrap_or(0);
    let memory_peak = read_u64_optional(&dir.join("memory.peak"))?;
    let events_path = dir.join("memory.events");
    let (memory_max_events, oom_events, oom_kills) = match read_optional(&events_path)? {
        Some(content) => (
            keyed_value(&events_path, &content, "max")?.unwrap_or(0),
            keyed_value(&events_path, &content, "oom")?,
            keyed_value(&events_path, &content, "oom_kill")?.unwrap_or(0),
        ),
        None => (0, None, 0),
    };
    Ok(Stats {
        cpu_user,
        cpu_system,
        memory_current,
        memory_peak,
        memory_max_events,
        oom_events,
        oom_kills,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::job::limits::{CpuRate, CpuWeight};

    /// youki `set_fixture`: write a control file into the fake cgroup directory.
    fn set_fixture(dir: &Path, name: &str, content: &str) {
        fs::write(dir.join(name), content).expect("write fixture");
    }

    fn get(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).expect("read back")
    }

    fn fake_job(controllers: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        set_fixture(dir.path(), "cgroup.controllers", controllers);
        for f in ["memory.max", "cpu.max", "cpu.weight", "pids.max"] {
            set_fixture(dir.path(), f, "");
        }
        dir
    }

    fn host(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    #[test]
    fn apply_all_limits() {
        let dir = fake_job("cpuset cpu io memory hugetlb pids rdma misc\n");
        set_fixture(dir.path(), "memory.swap.max", "max");
        let limits = JobLimits {
            memory_bytes: Some(64 << 20),
            cpu_rate: CpuRate::new(2500).ok(),
            cpu_weight: None,
            max_processes: Some(32),
        };
        apply(dir.path(), &limits, host(2)).expect("apply");
        assert_eq!(get(dir.path(), "memory.max"), "67108864");
        assert_eq!(get(dir.path(), "memory.swap.max"), "0");
        assert_eq!(get(dir.path(), "cpu.max"), "50000 100000");
        assert_eq!(get(dir.path(), "cpu.weight"), "100");
        assert_eq!(get(dir.path(), "pids.max"), "32");
    }

    #[test]
    fn apply_resets_to_max() {
        let dir = fake_job("cpu memory pids");
        set_fixture(dir.path(), "memory.swap.max", "0");
        set_fixture(dir.path(), "memory.max", "1048576");
        set_fixture(dir.path(), "cpu.max", "1000 100000");
        set_fixture(dir.path(), "pids.max", "5");
        apply(dir.path(), &JobLimits::default(), host(4)).expect("apply");
        assert_eq!(get(dir.path(), "memory.max"), "max");
        assert_eq!(get(dir.path(), "memory.swap.max"), "max");
        assert_eq!(get(dir.path(), "cpu.max"), "max 100000");
        assert_eq!(get(dir.path(), "cpu.weight"), "100");
        assert_eq!(get(dir.path(), "pids.max"), "max");
    }

    #[test]
    fn apply_weight() {
        let dir = fake_job("cpu");
        let limits = JobLimits {
            cpu_weight: CpuWeight::new(9).ok(),
            ..JobLimits::default()
        };
        apply(dir.path(), &limits, host(2)).expect("apply");
        assert_eq!(get(dir.path(), "cpu.weight"), "180");
        assert_eq!(get(dir.path(), "cpu.max"), "max 100000");
        // Controllers that are absent but not needed are skipped.
        assert_eq!(get(dir.path(), "memory.max"), "");
    }

    #[test]
    fn missing_controller_is_reported() {
        let dir = fake_job("cpu memory");
        let limits = JobLimits {
            max_processes: Some(3),
            ..JobLimits::default()
        };
        match apply(dir.path(), &limits, host(2)) {
            Err(JobError::ControllerUnavailable { controller, path }) => {
                assert_eq!(controller, "pids");
                assert_eq!(path, dir.path());
            }
            other => panic!("expected ControllerUnavailable, got {other:?}"),
        }
    }

    #[test]
    fn missing_control_file_error_has_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        set_fixture(dir.path(), "cgroup.controllers", "pids");
        let limits = JobLimits {
            max_processes: Some(3),
            ..JobLimits::default()
        };
        let err = apply(dir.path(), &limits, host(1)).expect_err("no pids.max");
        match err {
            JobError::Io(io) => assert_eq!(io.path(), dir.path().join("pids.max")),
            other => panic!("expected Io, got {other:?}"),
        }
    }

    #[test]
    fn read_stats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        set_fixture(
            d,
            "cpu.stat",
            "usage_usec 3500\nuser_usec 2500\nsystem_usec 1000\nnr_periods 0\n",
        );
        set_fixture(d, "memory.current", "4096\n");
        set_fixture(d, "memory.peak", "8192\n");
        set_fixture(
            d,
            "memory.events",
            "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n",
        );
        assert_eq!(
            stats(d).expect("stats"),
            Stats {
                cpu_user: Duration::from_micros(2500),
                cpu_system: Duration::from_micros(1000),
                memory_current: 4096,
                memory_peak: Some(8192),
                memory_max_events: 7,
                oom_events: Some(2),
                oom_kills: 1,
            }
        );
        // Without the memory controller and memory.peak.
        for f in ["memory.current", "memory.peak", "memory.events"] {
            fs::remove_file(d.join(f)).expect("remove");
        }
        let s = stats(d).expect("stats");
        assert_eq!(
            (
                s.memory_current,
                s.memory_peak,
                s.memory_max_events,
                s.oom_events,
                s.oom_kills
            ),
            (0, None, 0, None, 0)
        );
    }
}
