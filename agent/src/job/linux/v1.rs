//! cgroup v1 knobs and statistics, for the v1/v2 hybrid layout (controllers on v1).
//!
//! Files: `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` (when swap accounting is
//! on), `cpu.cfs_period_us`, `cpu.cfs_quota_us`, `cpu.shares`, `pids.max` (written);
//! `memory.usage_in_bytes`, `memory.max_usage_in_bytes`, `memory.failcnt`,
//! `memory.oom_control`, `cpuacct.usage_user`, `cpuacct.usage_sys` (read).

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use super::fs::{keyed_value, read_optional, read_u64, read_u64_optional, write_in};
use crate::job::limits::{CFS_PERIOD_US, CpuRate, CpuWeight, cfs_quota_us, cgroup_v1_cpu_shares};
use crate::job::{JobError, WrappedIoError};

/// Sets `memory.limit_in_bytes` (`-1` = unlimited) and, when swap accounting exists,
/// `memory.memsw.limit_in_bytes` to the same value, so memory + swap stay within the limit as
/// a Windows commit limit does. The kernel requires `limit <= memsw` at every moment, so the
/// order of the two writes depends on whether the limit grows or shrinks.
pub(crate) fn apply_memory(dir: &Path, limit: Option<u64>) -> Result<(), JobError> {
    let value = limit.map_or_else(|| "-1".to_owned(), |b| b.to_string());
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    match read_optional(&memsw)? {
        None => write_in(dir, "memory.limit_in_bytes", &value)?,
        Some(current) => {
            let current = super::fs::parse_u64(&memsw, &current)?;
            if limit.unwrap_or(u64::MAX) > current {
                write_in(dir, "memory.memsw.limit_in_bytes", &value)?;
                write_in(dir, "memory.limit_in_bytes", &value)?;
            } else {
                write_in(dir, "memory.limit_in_bytes", &value)?;
                write_in(dir, "memory.memsw.limit_in_bytes", &value)?;
            }
        }
    }
    Ok(())
}

/// Sets the CFS bandwidth (`cpu.cfs_period_us` = 100 ms, `cpu.cfs_quota_us` from the rate or
/// `-1`) and `cpu.shares` from the weight.
pub(crate) fn apply_cpu(
    dir: &Path,
    rate: Option<CpuRate>,
    weight: Option<CpuWeight>,
    host_cpus: NonZeroU32,
) -> Result<(), JobError> {
    write_in(dir, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
    write_in(
        dir,
        "cpu.cfs_quota_us",
        &cfs_quota_us(rate, host_cpus).to_string(),
    )?;
    write_in(dir, "cpu.shares", &cgroup_v1_cpu_shares(weight).to_string())?;
    Ok(())
}

/// Sets `pids.max` (`max` = unlimited).
pub(crate) fn apply_pids(dir: &Path, max: Option<u32>) -> Result<(), JobError> {
    let value = max.map_or_else(|| "max".to_owned(), |n| n.to_string());
    write_in(dir, "pids.max", &value)?;
    Ok(())
}

/// v1 memory statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryStats {
    pub(crate) current: u64,
    pub(crate) peak: u64,
    pub(crate) limit_hits: u64,
    pub(crate) oom_kills: u64,
}

/// Reads `memory.usage_in_bytes`, `memory.max_usage_in_bytes`, the limit hits and the
/// `oom_kill` counter of `memory.oom_control` (Linux 4.13+; 0 when absent).
///
/// A charge is tried against memory+swap first, then memory, and the counter that refuses it
/// counts the failure; with both limits equal (see [`apply_memory`]) most hits land in
/// `memory.memsw.failcnt`. Limit hits are therefore `memory.failcnt + memory.memsw.failcnt`.
/// Some kernels do not track `failcnt` at all (observed on a 6.18 hybrid host: both stay 0
/// while the OOM killer acts on the limit); since every OOM kill of the group means the
/// limit was hit, the count reported is never below `oom_kill`.
pub(crate) fn memory_stats(dir: &Path) -> Result<MemoryStats, WrappedIoError> {
    let oom_path = dir.join("memory.oom_control");
    let oom_kills = match read_optional(&oom_path)? {
        Some(content) => keyed_value(&oom_path, &content, "oom_kill")?.unwrap_or(0),
        None => 0,
    };
    let failcnt = read_u64(&dir.join("memory.failcnt"))?
        + read_u64_optional(&dir.join("memory.memsw.failcnt"))?.unwrap_or(0);
    Ok(MemoryStats {
        current: read_u64(&dir.join("memory.usage_in_bytes"))?,
        peak: read_u64(&dir.join("memory.max_usage_in_bytes"))?,
        limit_hits: failcnt.max(oom_kills),
        oom_kills,
    })
}

/// CPU time from `cpuacct.usage_user` / `cpuacct.usage_sys` (nanoseconds); `None` if the
/// kernel lacks them (before 4.16), in which case the caller uses the unified `cpu.stat`.
pub(crate) fn cpu_times(dir: &Path) -> Result<Option<(Duration, Duration)>, WrappedIoError> {
    let user = read_u64_optional(&dir.join("cpuacct.usage_user"))?;
    let sys = read_u64_optional(&dir.join("cpuacct.usage_sys"))?;
    Ok(match (user, sys) {
        (Some(u), Some(s)) => Some((Duration::from_nanos(u), Duration::from_nanos(s))),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn set_fixture(dir: &Path, name: &str, content: &str) {
        fs::write(dir.join(name), content).expect("write fixture");
    }

    fn get(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).expect("read back")
    }

    const UNLIMITED: &str = "9223372036854771712";

    #[test]
    fn memory_without_swap_accounting() {
        let dir = tempfile::tempdir().expect("tempdir");
        set_fixture(dir.path(), "memory.limit_in_bytes", UNLIMITED);
        apply_memory(dir.path(), Some(32 << 20)).expect("apply");
        assert_eq!(get(dir.path(), "memory.limit_in_bytes"), "33554432");
        apply_memory(dir.path(), None).expect("reset");
        assert_eq!(get(dir.path(), "memory.limit_in_bytes"), "-1");
    }

    #[test]
    fn memory_with_swap_accounting_both_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        set_fixture(dir.path(), "memory.limit_in_bytes", UNLIMITED);
        set_fixture(dir.path(), "memory.memsw.limit_in_bytes", UNLIMITED);
        apply_memory(dir.path(), Some(32 << 20)).expect("shrink");
        assert_eq!(get(dir.path(), "memory.limit_in_bytes"), "33554432");
        assert_eq!(get(dir.path(), "memory.memsw.limit_in_bytes"), "33554432");
        apply_memory(dir.path(), Some(64 << 20)).expect("grow");
        assert_eq!(get(dir.path(), "memory.limit_in_bytes"), "67108864");
        assert_eq!(get(dir.path(), "memory.memsw.limit_in_bytes"), "67108864");
        apply_memory(dir.path(), None).expect("reset");
        assert_eq!(get(dir.path(), "memory.memsw.limit_in_bytes"), "-1");
    }

    /// The write order keeps `limit <= memsw`. Observed by making `memory.limit_in_bytes`
    /// unwritable (a directory): a grow has already written memsw when the limit write fails,
    /// a shrink has not.
    #[test]
    fn memory_write_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("memory.limit_in_bytes")).expect("mkdir");
        set_fixture(dir.path(), "memory.memsw.limit_in_bytes", "2097152");
        let err = apply_memory(dir.path(), Some(1 << 20)).expect_err("shrink fails");
        assert!(matches!(err, JobError::Io(ref e) if e.path().ends_with("memory.limit_in_bytes")));
        assert_eq!(get(dir.path(), "memory.memsw.limit_in_bytes"), "2097152");
        let err = apply_memory(dir.path(), Some(4 << 20)).expect_err("grow fails");
        assert!(matches!(err, JobError::Io(ref e) if e.path().ends_with("memory.limit_in_bytes")));
        assert_eq!(get(dir.path(), "memory.memsw.limit_in_bytes"), "4194304");
    }

    #[test]
    fn cpu_quota_and_shares() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"] {
            set_fixture(dir.path(), f, "");
        }
        let host = NonZeroU32::new(2).expect("non-zero");
        apply_cpu(dir.path(), CpuRate::new(2500).ok(), None, host).expect("apply");
        assert_eq!(get(dir.path(), "cpu.cfs_period_us"), "100000");
        assert_eq!(get(dir.path(), "cpu.cfs_quota_us"), "50000");
        assert_eq!(get(dir.path(), "cpu.shares"), "1024");
        apply_cpu(dir.path(), None, CpuWeight::new(1).ok(), host).expect("weight");
        assert_eq!(get(dir.path(), "cpu.cfs_quota_us"), "-1");
        assert_eq!(get(dir.path(), "cpu.shares"), "204");
    }

    #[test]
    fn pids() {
        let dir = tempfile::tempdir().expect("tempdir");
        set_fixture(dir.path(), "pids.max", "max");
        apply_pids(dir.path(), Some(10)).expect("apply");
        assert_eq!(get(dir.path(), "pids.max"), "10");
        apply_pids(dir.path(), None).expect("reset");
        assert_eq!(get(dir.path(), "pids.max"), "max");
    }

    #[test]
    fn stats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        set_fixture(d, "memory.usage_in_bytes", "1000\n");
        set_fixture(d, "memory.max_usage_in_bytes", "2000\n");
        set_fixture(d, "memory.failcnt", "0\n");
        set_fixture(
            d,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
        );
        assert_eq!(
            memory_stats(d).expect("memory").limit_hits,
            4,
            "at least oom_kill"
        );
        set_fixture(d, "memory.failcnt", "3\n");
        set_fixture(d, "memory.memsw.failcnt", "5\n");
        assert_eq!(
            memory_stats(d).expect("memory"),
            MemoryStats {
                current: 1000,
                peak: 2000,
                limit_hits: 8,
                oom_kills: 4
            }
        );
        assert_eq!(cpu_times(d).expect("cpu"), None);
        set_fixture(d, "cpuacct.usage_user", "1500000000\n");
        set_fixture(d, "cpuacct.usage_sys", "250\n");
        assert_eq!(
            cpu_times(d).expect("cpu"),
            Some((Duration::from_millis(1500), Duration::from_nanos(250)))
        );
    }
}
