//! Job limits and the pure conversions that produce and consume them.
//!
//! Nothing here does I/O or depends on the platform, so every rule is unit tested on Linux
//! (unlike hcsshim's Windows-only `cpurate_test.go`).
//!
//! # Where the numbers come from
//!
//! * Kubernetes → CRI (kubelet, HP-KLT-03): `CpuMaximum = 10 * limits.cpu.MilliValue() /
//!   ProcessorCount`, clamped to `1..=10000`, set only when the CPU limit is non-zero;
//!   `MemoryLimitInBytes = limits.memory`; requests are ignored, shares/count never set.
//!   → [`kubelet_cpu_maximum`], [`JobLimits::from_kubernetes`].
//! * OCI Windows resources → job object (hcsshim `specToLimits`, HP-JOB-05): count, maximum and
//!   shares are mutually exclusive; `rate = count * 10000 / host_procs` (minimum 1) with the
//!   count capped to the host's logical processors; otherwise `rate = maximum`; weight
//!   `1 + (8 * shares) / 10000`; memory truncated to whole MiB, `< 1 MiB` ⇒ no limit.
//!   → [`calculate_job_cpu_rate`], [`cpu_weight_from_shares`], [`job_memory_limit`],
//!   [`JobLimits::from_oci_windows`].
//! * Job limits → Linux cgroups: a CPU rate `r` (of 10000 = the whole machine) on `N` logical
//!   CPUs with the period [`CFS_PERIOD_US`] is the quota `r * N * 100000 / 10000` µs
//!   ([`CpuMax`], [`cfs_quota_us`]); a weight `w` (1..=9, Windows default 5) is `cpu.weight =
//!   20 * w` on v2 ([`cgroup_v2_cpu_weight`]) and `cpu.shares = 1024 * w / 5` on v1
//!   ([`cgroup_v1_cpu_shares`]), so that the Windows default weight 5 maps to each kernel's
//!   default (100 and 1024) and the ratio between two jobs' weights is kept.
//! * Job limits → Win32 job object information: [`WindowsLimitPlan`].

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// Smallest valid CPU rate (0.01 % of the machine).
pub const CPU_RATE_MIN: u32 = 1;
/// Largest valid CPU rate (the whole machine).
pub const CPU_RATE_MAX: u32 = 10_000;
/// Smallest valid CPU weight.
pub const CPU_WEIGHT_MIN: u32 = 1;
/// Largest valid CPU weight.
pub const CPU_WEIGHT_MAX: u32 = 9;
/// The Windows scheduler's default job weight.
pub const CPU_WEIGHT_DEFAULT: u32 = 5;
/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// CFS period used for every job, in microseconds (the kernel default).
pub const CFS_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota the kernel accepts, in microseconds (`min_cfs_quota_period`, 1 ms).
pub const CFS_QUOTA_MIN_US: u64 = 1_000;
/// Largest CFS quota the kernel accepts, in microseconds (`max_cfs_runtime`, 2^44 - 1 µs).
pub const CFS_QUOTA_MAX_US: u64 = (1 << 44) - 1;

/// Why a limit or a conversion was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// A CPU rate outside `1..=10000` (hcsshim's message).
    #[error("processor rate of `{0}` is invalid (valid: 1..=10000)")]
    CpuRateOutOfRange(u64),
    /// A CPU weight outside `1..=9` (hcsshim's message).
    #[error("processor weight value of `{0}` is invalid (valid: 1..=9)")]
    CpuWeightOutOfRange(u64),
    /// More than one of CPU count, maximum and shares was set (HP-JOB-05).
    #[error(
        "invalid spec - Windows Container CPU Count: '{count}', Limit: '{maximum}', and Weight: '{shares}' are mutually exclusive"
    )]
    CpuSettingsMutuallyExclusive {
        /// `windows.resources.cpu.count`.
        count: u64,
        /// `windows.resources.cpu.maximum`.
        maximum: u64,
        /// `windows.resources.cpu.shares`.
        shares: u64,
    },
    /// A job cannot have both a hard CPU cap and a CPU weight (one rate-control setting on Windows).
    #[error("a CPU rate and a CPU weight are mutually exclusive")]
    RateAndWeight,
    /// A memory limit of zero bytes.
    #[error("a memory limit must be at least one byte; use no limit instead")]
    ZeroMemory,
    /// A process limit of zero.
    #[error("a process limit must be at least 1; use no limit instead")]
    ZeroProcesses,
}

/// A hard CPU cap as a share of the whole machine × 100, `1..=10000`
/// (Windows `JOBOBJECT_CPU_RATE_CONTROL_INFORMATION.CpuRate`): 10000 = every logical processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuRate(u16);

impl CpuRate {
    /// The whole machine.
    pub const FULL: Self = Self(10_000);

    /// Validates a rate.
    pub fn new(rate: u64) -> Result<Self, LimitsError> {
        match u16::try_from(rate) {
            Ok(r) if (CPU_RATE_MIN as u16..=CPU_RATE_MAX as u16).contains(&r) => Ok(Self(r)),
            _ => Err(LimitsError::CpuRateOutOfRange(rate)),
        }
    }

    /// The rate, `1..=10000`.
    pub const fn get(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for CpuRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/10000", self.0)
    }
}

/// A relative CPU weight, `1..=9` (Windows `JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED`;
/// 5 is the scheduler's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuWeight(u8);

impl CpuWeight {
    /// The Windows default weight, 5.
    pub const DEFAULT: Self = Self(5);

    /// Validates a weight.
    pub fn new(weight: u64) -> Result<Self, LimitsError> {
        match u8::try_from(weight) {
            Ok(w) if (CPU_WEIGHT_MIN as u8..=CPU_WEIGHT_MAX as u8).contains(&w) => Ok(Self(w)),
            _ => Err(LimitsError::CpuWeightOutOfRange(weight)),
        }
    }

    /// The weight, `1..=9`.
    pub const fn get(self) -> u32 {
        self.0 as u32
    }
}

/// Resource limits of one job. `None` means "no limit"; applying limits replaces all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobLimits {
    /// Job-wide memory limit in bytes (Windows: commit limit `JOB_OBJECT_LIMIT_JOB_MEMORY`;
    /// Linux: `memory.max` / `memory.limit_in_bytes`, swap not allowed beyond it).
    pub memory_bytes: Option<u64>,
    /// Hard CPU cap (Windows `HARD_CAP` rate; Linux `cpu.max` / CFS quota).
    pub cpu_rate: Option<CpuRate>,
    /// Relative CPU weight (Windows `WEIGHT_BASED`; Linux `cpu.weight` / `cpu.shares`).
    /// Mutually exclusive with [`JobLimits::cpu_rate`].
    pub cpu_weight: Option<CpuWeight>,
    /// Maximum number of live processes (Windows `ActiveProcessLimit`; Linux `pids.max`, which
    /// counts threads too).
    pub max_processes: Option<u32>,
}

impl JobLimits {
    /// Checks the invariants the newtypes cannot express: no zero limits, and not both a CPU
    /// rate and a CPU weight (one `JOBOBJECT_CPU_RATE_CONTROL_INFORMATION` on Windows).
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.memory_bytes == Some(0) {
            return Err(LimitsError::ZeroMemory);
        }
        if self.max_processes == Some(0) {
            return Err(LimitsError::ZeroProcesses);
        }
        if self.cpu_rate.is_some() && self.cpu_weight.is_some() {
            return Err(LimitsError::RateAndWeight);
        }
        Ok(())
    }

    /// The job limits kubelet + hcsshim derive from a container's Kubernetes limits
    /// (HP-KLT-03 then HP-JOB-05): `cpu_limit_milli` (0 = unset) becomes the hard-cap rate
    /// [`kubelet_cpu_maximum`]; `memory_limit_bytes` (0 = unset) becomes
    /// [`job_memory_limit`]. Requests have no effect; kubelet never sets a weight.
    pub fn from_kubernetes(
        cpu_limit_milli: u64,
        memory_limit_bytes: u64,
        host_logical_processors: NonZeroU32,
    ) -> Self {
        Self {
            memory_bytes: job_memory_limit(memory_limit_bytes),
            cpu_rate: kubelet_cpu_maximum(cpu_limit_milli, host_logical_processors),
            cpu_weight: None,
            max_processes: None,
        }
    }

    /// The job limits hcsshim derives from an OCI spec's `windows.resources` (HP-JOB-05,
    /// `specToLimits`): at most one of count, maximum and shares may be non-zero; a count is
    /// capped to the host's logical processors and becomes [`calculate_job_cpu_rate`]; a
    /// maximum is the rate as is (validated); shares become [`cpu_weight_from_shares`].
    pub fn from_oci_windows(
        resources: &OciWindowsResources,
        host_logical_processors: NonZeroU32,
    ) -> Result<Self, LimitsError> {
        let OciWindowsResources {
            cpu_count,
            cpu_maximum,
            cpu_shares,
            memory_limit_bytes,
        } = *resources;
        let set = [cpu_count, cpu_maximum, cpu_shares]
            .iter()
            .filter(|v| **v != 0)
            .count();
        if set > 1 {
            return Err(LimitsError::CpuSettingsMutuallyExclusive {
                count: cpu_count,
                maximum: cpu_maximum,
                shares: cpu_shares,
            });
        }
        let mut limits = Self {
            memory_bytes: job_memory_limit(memory_limit_bytes),
            ..Self::default()
        };
        if cpu_count != 0 {
            let count = u32::try_from(cpu_count)
                .unwrap_or(u32::MAX)
                .min(host_logical_processors.get());
            limits.cpu_rate = Some(CpuRate::new(u64::from(calculate_job_cpu_rate(
                host_logical_processors,
                count,
            )))?);
        } else if cpu_maximum != 0 {
            limits.cpu_rate = Some(CpuRate::new(cpu_maximum)?);
        } else {
            limits.cpu_weight = cpu_weight_from_shares(cpu_shares)?;
        }
        Ok(limits)
    }
}

/// The CPU and memory fields of an OCI runtime spec's `windows.resources` (0 = unset), as
/// containerd fills them from the CRI request (HP-CTD-04).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OciWindowsResources {
    /// `cpu.count`: number of logical processors.
    pub cpu_count: u64,
    /// `cpu.maximum`: hard-cap rate, 1..=10000.
    pub cpu_maximum: u64,
    /// `cpu.shares`: relative weight, 0..=10000.
    pub cpu_shares: u64,
    /// `memory.limit` in bytes.
    pub memory_limit_bytes: u64,
}

/// Kubelet's `calculateCPUMaximum` (HP-KLT-03): `10 * milli_cpu / host_logical_processors`,
/// clamped to `1..=10000`; `None` when the CPU limit is zero (unset).
pub fn kubelet_cpu_maximum(milli_cpu: u64, host_logical_processors: NonZeroU32) -> Option<CpuRate> {
    if milli_cpu == 0 {
        return None;
    }
    let raw = 10 * u128::from(milli_cpu) / u128::from(host_logical_processors.get());
    let clamped = raw.clamp(u128::from(CPU_RATE_MIN), u128::from(CPU_RATE_MAX));
    // `clamped` is within 1..=10000, so the narrowing and the validation cannot fail.
    u16::try_from(clamped).ok().map(CpuRate)
}

/// The reverse of [`kubelet_cpu_maximum`] that kubelet uses for status
/// (`cpuLimit = CpuMaximum * ProcessorCount / 10`), in milli-CPU.
pub fn milli_cpu_from_rate(rate: CpuRate, host_logical_processors: NonZeroU32) -> u64 {
    u64::from(rate.get()) * u64::from(host_logical_processors.get()) / 10
}

/// hcsshim's `calculateJobCPURate(hostProcs, processorCount)`: `count * 10000 / host_procs`,
/// at least 1. The caller caps `count` to `host_procs` first (as hcsshim does); a larger count
/// gives a rate above 10000 that [`CpuRate::new`] refuses. Saturates instead of overflowing.
pub fn calculate_job_cpu_rate(host_procs: NonZeroU32, count: u32) -> u32 {
    let rate = u64::from(count) * u64::from(CPU_RATE_MAX) / u64::from(host_procs.get());
    u32::try_from(rate).unwrap_or(u32::MAX).max(1)
}

/// hcsshim's `calculateJobCPUWeight`: `1 + (8 * shares) / 10000` for non-zero shares
/// (`None` for 0); the result must be within `1..=9`, i.e. `shares <= 10000`.
pub fn cpu_weight_from_shares(shares: u64) -> Result<Option<CpuWeight>, LimitsError> {
    if shares == 0 {
        return Ok(None);
    }
    let weight = 1 + 8 * u128::from(shares) / 10_000;
    let weight = u64::try_from(weight).unwrap_or(u64::MAX);
    CpuWeight::new(weight).map(Some)
}

/// hcsshim's memory rule: the limit in bytes truncated to whole MiB, then back to bytes;
/// `None` below 1 MiB (including 0 = unset).
pub fn job_memory_limit(bytes: u64) -> Option<u64> {
    let mib = bytes / MIB;
    (mib > 0).then(|| mib * MIB)
}

/// A cgroup v2 `cpu.max` value: quota (or unlimited) and period, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    /// The quota per period; `None` = `max`.
    pub quota_us: Option<u64>,
    /// The period.
    pub period_us: u64,
}

impl CpuMax {
    /// The `cpu.max` for a CPU rate on `host_cpus` logical CPUs with the period
    /// [`CFS_PERIOD_US`]: quota `rate * host_cpus * 100000 / 10000` µs, clamped to the kernel's
    /// `[CFS_QUOTA_MIN_US, CFS_QUOTA_MAX_US]` (so the smallest effective cap is 1 % of one CPU).
    pub fn from_rate(rate: Option<CpuRate>, host_cpus: NonZeroU32) -> Self {
        let quota_us = rate.map(|r| {
            let quota =
                u128::from(r.get()) * u128::from(host_cpus.get()) * u128::from(CFS_PERIOD_US)
                    / u128::from(CPU_RATE_MAX);
            let clamped = quota.clamp(u128::from(CFS_QUOTA_MIN_US), u128::from(CFS_QUOTA_MAX_US));
            u64::try_from(clamped).unwrap_or(CFS_QUOTA_MAX_US)
        });
        Self {
            quota_us,
            period_us: CFS_PERIOD_US,
        }
    }
}

impl fmt::Display for CpuMax {
    /// The `cpu.max` file format: `"<quota> <period>"` or `"max <period>"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.quota_us {
            Some(q) => write!(f, "{q} {}", self.period_us),
            None => write!(f, "max {}", self.period_us),
        }
    }
}

/// The cgroup v1 `cpu.cfs_quota_us` value for a CPU rate: the [`CpuMax`] quota, or `-1`
/// (unlimited). The period (`cpu.cfs_period_us`) is always [`CFS_PERIOD_US`].
pub fn cfs_quota_us(rate: Option<CpuRate>, host_cpus: NonZeroU32) -> i64 {
    match CpuMax::from_rate(rate, host_cpus).quota_us {
        // At most CFS_QUOTA_MAX_US (2^44 - 1), which fits an i64.
        Some(q) => i64::try_from(q).unwrap_or(i64::MAX),
        None => -1,
    }
}

/// cgroup v2 `cpu.weight` for a job weight: `20 * w` (1 → 20, 5 → 100 = the kernel default,
/// 9 → 180). `None` (no weight) is the default 100.
pub fn cgroup_v2_cpu_weight(weight: Option<CpuWeight>) -> u64 {
    20 * u64::from(weight.unwrap_or(CpuWeight::DEFAULT).get())
}

/// cgroup v1 `cpu.shares` for a job weight: `1024 * w / 5` (1 → 204, 5 → 1024 = the kernel
/// default, 9 → 1843). `None` (no weight) is the default 1024.
pub fn cgroup_v1_cpu_shares(weight: Option<CpuWeight>) -> u64 {
    1024 * u64::from(weight.unwrap_or(CpuWeight::DEFAULT).get()) / 5
}

/// Converts a Windows `LARGE_INTEGER` time in 100-ns units to a [`Duration`] (negative → 0).
pub fn duration_from_100ns(ticks: i64) -> Duration {
    let ticks = u64::try_from(ticks).unwrap_or(0);
    Duration::new(
        ticks / 10_000_000,
        u32::try_from((ticks % 10_000_000) * 100).unwrap_or(0),
    )
}

/// What the Windows backend writes into the job object for a [`JobLimits`]; computed here so
/// that the decisions are tested on Linux. The flag values are those of the Windows SDK
/// (`winnt.h`); `windows_backend.rs` asserts at compile time that they equal `windows-sys`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowsLimitPlan {
    /// `JOBOBJECT_BASIC_LIMIT_INFORMATION.LimitFlags`.
    pub limit_flags: u32,
    /// `JOBOBJECT_EXTENDED_LIMIT_INFORMATION.JobMemoryLimit` (0 when not limited).
    pub job_memory_limit: u64,
    /// `JOBOBJECT_BASIC_LIMIT_INFORMATION.ActiveProcessLimit` (0 when not limited).
    pub active_process_limit: u32,
    /// `JOBOBJECT_CPU_RATE_CONTROL_INFORMATION.ControlFlags` (0 = rate control off).
    pub cpu_control_flags: u32,
    /// The `CpuRate` or `Weight` member of the union (0 when off).
    pub cpu_value: u32,
}

/// `JOB_OBJECT_LIMIT_ACTIVE_PROCESS`.
pub const JOB_OBJECT_LIMIT_ACTIVE_PROCESS: u32 = 0x0000_0008;
/// `JOB_OBJECT_LIMIT_JOB_MEMORY`.
pub const JOB_OBJECT_LIMIT_JOB_MEMORY: u32 = 0x0000_0200;
/// `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`.
pub const JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: u32 = 0x0000_2000;
/// `JOB_OBJECT_CPU_RATE_CONTROL_ENABLE`.
pub const JOB_OBJECT_CPU_RATE_CONTROL_ENABLE: u32 = 0x1;
/// `JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED`.
pub const JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED: u32 = 0x2;
/// `JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP`.
pub const JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP: u32 = 0x4;

impl WindowsLimitPlan {
    /// The plan for `limits` (validated first). Kill-on-job-close is always set: closing the
    /// last handle kills every process (HP-JOB-02). Rate and weight are exclusive (checked by
    /// [`JobLimits::validate`]).
    pub fn new(limits: &JobLimits) -> Result<Self, LimitsError> {
        limits.validate()?;
        let mut limit_flags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        let mut job_memory_limit = 0;
        let mut active_process_limit = 0;
        if let Some(bytes) = limits.memory_bytes {
            limit_flags |= JOB_OBJECT_LIMIT_JOB_MEMORY;
            job_memory_limit = bytes;
        }
        if let Some(n) = limits.max_processes {
            limit_flags |= JOB_OBJECT_LIMIT_ACTIVE_PROCESS;
            active_process_limit = n;
        }
        let (cpu_control_flags, cpu_value) = match (limits.cpu_rate, limits.cpu_weight) {
            (Some(rate), _) => (
                JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP,
                rate.get(),
            ),
            (None, Some(weight)) => (
                JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED,
                weight.get(),
            ),
            (None, None) => (0, 0),
        };
        Ok(Self {
            limit_flags,
            job_memory_limit,
            active_process_limit,
            cpu_control_flags,
            cpu_value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero in test")
    }

    fn rate(r: u64) -> CpuRate {
        CpuRate::new(r).expect("valid rate in test")
    }

    fn weight(w: u64) -> CpuWeight {
        CpuWeight::new(w).expect("valid weight in test")
    }

    #[test]
    fn cpu_rate_bounds() {
        for (input, ok) in [
            (0, false),
            (1, true),
            (5000, true),
            (10_000, true),
            (10_001, false),
            (65_536 + 5, false),
            (u64::MAX, false),
        ] {
            assert_eq!(CpuRate::new(input).is_ok(), ok, "rate {input}");
        }
        assert_eq!(
            CpuRate::new(0).expect_err("0 is invalid").to_string(),
            "processor rate of `0` is invalid (valid: 1..=10000)"
        );
        assert_eq!(CpuRate::FULL.get(), 10_000);
    }

    #[test]
    fn cpu_weight_bounds() {
        for (input, ok) in [
            (0, false),
            (1, true),
            (5, true),
            (9, true),
            (10, false),
            (256 + 5, false),
            (u64::MAX, false),
        ] {
            assert_eq!(CpuWeight::new(input).is_ok(), ok, "weight {input}");
        }
        assert_eq!(CpuWeight::DEFAULT.get(), 5);
    }

    /// HP-KLT-03: `10 * milli / LPs`, clamped to 1..=10000, none for 0.
    #[test]
    fn kubelet_cpu_maximum_table() {
        let cases: &[(u64, u32, Option<u32>)] = &[
            (0, 2, None),
            (500, 2, Some(2500)),
            (1000, 2, Some(5000)),
            (2000, 2, Some(10_000)),
            (4000, 2, Some(10_000)), // clamped high
            (1, 2, Some(5)),         // 10/2 = 5
            (1, 64, Some(1)),        // 10/64 = 0 → clamped low
            (100, 1, Some(1000)),
            (250, 4, Some(625)),
            (333, 3, Some(1110)),
            (1500, 8, Some(1875)),
            (u64::MAX, 1, Some(10_000)), // no overflow
            (u64::MAX, u32::MAX, Some(10_000)),
        ];
        for &(milli, lps, want) in cases {
            assert_eq!(
                kubelet_cpu_maximum(milli, nz(lps)).map(CpuRate::get),
                want,
                "milli {milli} on {lps} LPs"
            );
        }
    }

    #[test]
    fn milli_cpu_reverse() {
        assert_eq!(milli_cpu_from_rate(rate(2500), nz(2)), 500);
        assert_eq!(milli_cpu_from_rate(rate(10_000), nz(64)), 64_000);
        assert_eq!(milli_cpu_from_rate(rate(1), nz(1)), 0);
    }

    /// hcsshim `cpurate_test.go` cases plus bounds.
    #[test]
    fn calculate_job_cpu_rate_table() {
        let cases: &[(u32, u32, u32)] = &[
            (10, 1, 1000),
            (10, 5, 5000),
            (20, 5, 2500),
            (1, 1, 10_000),
            (1, 0, 1),
            (3, 1, 3333),
            (64, 64, 10_000),
            (10_001, 1, 1),          // 10000/10001 = 0 → 1
            (1, u32::MAX, u32::MAX), // saturates, does not wrap
        ];
        for &(host, count, want) in cases {
            assert_eq!(
                calculate_job_cpu_rate(nz(host), count),
                want,
                "rate({host}, {count})"
            );
        }
    }

    #[test]
    fn weight_from_shares_table() {
        let cases: &[(u64, Result<Option<u32>, LimitsError>)] = &[
            (0, Ok(None)),
            (1, Ok(Some(1))),
            (1249, Ok(Some(1))),
            (1250, Ok(Some(2))),
            (5000, Ok(Some(5))),
            (9999, Ok(Some(8))),
            (10_000, Ok(Some(9))),
            (10_001, Ok(Some(9))),
            (11_250, Err(LimitsError::CpuWeightOutOfRange(10))),
            (
                u64::MAX,
                Err(LimitsError::CpuWeightOutOfRange(
                    1 + u64::try_from(8 * u128::from(u64::MAX) / 10_000).unwrap_or(u64::MAX),
                )),
            ),
        ];
        for (shares, want) in cases {
            assert_eq!(
                &cpu_weight_from_shares(*shares).map(|w| w.map(CpuWeight::get)),
                want,
                "shares {shares}"
            );
        }
    }

    #[test]
    fn memory_limit_table() {
        let cases: &[(u64, Option<u64>)] = &[
            (0, None),
            (1, None),
            (MIB - 1, None),
            (MIB, Some(MIB)),
            (MIB + 1, Some(MIB)),
            (256 * MIB + 12_345, Some(256 * MIB)),
            (1_000_000_000, Some(953 * MIB)), // 1G (decimal) → 953 MiB
            (u64::MAX, Some((u64::MAX / MIB) * MIB)),
        ];
        for &(bytes, want) in cases {
            assert_eq!(job_memory_limit(bytes), want, "bytes {bytes}");
        }
    }

    #[test]
    fn from_kubernetes() {
        let limits = JobLimits::from_kubernetes(500, 256 * MIB + 5, nz(2));
        assert_eq!(
            limits,
            JobLimits {
                memory_bytes: Some(256 * MIB),
                cpu_rate: Some(rate(2500)),
                cpu_weight: None,
                max_processes: None,
            }
        );
        assert_eq!(
            JobLimits::from_kubernetes(0, 0, nz(2)),
            JobLimits::default()
        );
        assert_eq!(
            JobLimits::from_kubernetes(0, MIB - 1, nz(8)).memory_bytes,
            None
        );
        assert!(
            JobLimits::from_kubernetes(u64::MAX, u64::MAX, nz(1))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn from_oci_windows_table() {
        let host = nz(4);
        let res = |cpu_count, cpu_maximum, cpu_shares| OciWindowsResources {
            cpu_count,
            cpu_maximum,
            cpu_shares,
            memory_limit_bytes: 0,
        };
        // count → rate, capped to host LPs
        let l = JobLimits::from_oci_windows(&res(1, 0, 0), host).expect("count");
        assert_eq!(l.cpu_rate, Some(rate(2500)));
        let l = JobLimits::from_oci_windows(&res(100, 0, 0), host).expect("capped count");
        assert_eq!(l.cpu_rate, Some(CpuRate::FULL));
        let l = JobLimits::from_oci_windows(&res(u64::MAX, 0, 0), host).expect("huge count");
        assert_eq!(l.cpu_rate, Some(CpuRate::FULL));
        // maximum as is
        let l = JobLimits::from_oci_windows(&res(0, 1234, 0), host).expect("maximum");
        assert_eq!(l.cpu_rate, Some(rate(1234)));
        assert_eq!(
            JobLimits::from_oci_windows(&res(0, 10_001, 0), host),
            Err(LimitsError::CpuRateOutOfRange(10_001))
        );
        // shares → weight
        let l = JobLimits::from_oci_windows(&res(0, 0, 5000), host).expect("shares");
        assert_eq!((l.cpu_rate, l.cpu_weight), (None, Some(weight(5))));
        // exclusivity
        for (c, m, s) in [(1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)] {
            assert!(
                matches!(
                    JobLimits::from_oci_windows(&res(c, m, s), host),
                    Err(LimitsError::CpuSettingsMutuallyExclusive { .. })
                ),
                "{c} {m} {s}"
            );
        }
        // nothing set
        let l = JobLimits::from_oci_windows(&OciWindowsResources::default(), host).expect("none");
        assert_eq!(l, JobLimits::default());
        // memory
        let l = JobLimits::from_oci_windows(
            &OciWindowsResources {
                memory_limit_bytes: 10 * MIB + 1,
                ..OciWindowsResources::default()
            },
            host,
        )
        .expect("memory");
        assert_eq!(l.memory_bytes, Some(10 * MIB));
    }

    #[test]
    fn validate() {
        let ok = JobLimits {
            memory_bytes: Some(1),
            cpu_rate: Some(rate(1)),
            cpu_weight: None,
            max_processes: Some(1),
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            JobLimits {
                memory_bytes: Some(0),
                ..ok
            }
            .validate(),
            Err(LimitsError::ZeroMemory)
        );
        assert_eq!(
            JobLimits {
                max_processes: Some(0),
                ..ok
            }
            .validate(),
            Err(LimitsError::ZeroProcesses)
        );
        assert_eq!(
            JobLimits {
                cpu_weight: Some(weight(3)),
                ..ok
            }
            .validate(),
            Err(LimitsError::RateAndWeight)
        );
    }

    /// rate r on N CPUs ⇒ quota r * N * 100000 / 10000 µs, clamped to the kernel's range.
    #[test]
    fn cpu_max_table() {
        let cases: &[(Option<u32>, u32, &str, i64)] = &[
            (None, 2, "max 100000", -1),
            (Some(2500), 2, "50000 100000", 50_000), // 500m on 2 LPs = 0.5 CPU
            (Some(5000), 2, "100000 100000", 100_000),
            (Some(10_000), 2, "200000 100000", 200_000),
            (Some(10_000), 1, "100000 100000", 100_000),
            (Some(1), 1, "1000 100000", 1000), // 10 µs → kernel minimum
            (Some(1), 64, "1000 100000", 1000), // 640 µs → kernel minimum
            (Some(1), 100, "1000 100000", 1000),
            (Some(1), 200, "2000 100000", 2000),
            (Some(1666), 3, "49980 100000", 49_980), // 500m on 3 LPs, kubelet's truncation
            (Some(10_000), 256, "25600000 100000", 25_600_000),
            // 4.3e14 µs would exceed the kernel's maximum quota: clamped, no overflow.
            (
                Some(10_000),
                u32::MAX,
                "17592186044415 100000",
                17_592_186_044_415,
            ),
        ];
        for &(r, cpus, want, want_v1) in cases {
            let r = r.map(|r| rate(u64::from(r)));
            assert_eq!(
                CpuMax::from_rate(r, nz(cpus)).to_string(),
                want,
                "{r:?} on {cpus}"
            );
            assert_eq!(cfs_quota_us(r, nz(cpus)), want_v1, "{r:?} on {cpus}");
        }
    }

    #[test]
    fn kubernetes_to_cpu_max_500m_on_2() {
        let host = nz(2);
        let limits = JobLimits::from_kubernetes(500, 0, host);
        assert_eq!(
            CpuMax::from_rate(limits.cpu_rate, host),
            CpuMax {
                quota_us: Some(50_000),
                period_us: 100_000
            }
        );
    }

    #[test]
    fn weight_mappings() {
        let cases: &[(Option<u64>, u64, u64)] = &[
            (None, 100, 1024),
            (Some(1), 20, 204),
            (Some(2), 40, 409),
            (Some(5), 100, 1024),
            (Some(8), 160, 1638),
            (Some(9), 180, 1843),
        ];
        for &(w, v2, v1) in cases {
            let w = w.map(weight);
            assert_eq!(cgroup_v2_cpu_weight(w), v2, "{w:?}");
            assert_eq!(cgroup_v1_cpu_shares(w), v1, "{w:?}");
        }
        // Order preserved, and within the kernels' ranges (v2 1..=10000, v1 >= 2).
        for w in 1..9 {
            assert!(
                cgroup_v2_cpu_weight(Some(weight(w))) < cgroup_v2_cpu_weight(Some(weight(w + 1)))
            );
            assert!(
                cgroup_v1_cpu_shares(Some(weight(w))) < cgroup_v1_cpu_shares(Some(weight(w + 1)))
            );
        }
    }

    #[test]
    fn durations_from_100ns() {
        assert_eq!(duration_from_100ns(0), Duration::ZERO);
        assert_eq!(duration_from_100ns(-5), Duration::ZERO);
        assert_eq!(duration_from_100ns(1), Duration::from_nanos(100));
        assert_eq!(duration_from_100ns(10_000_000), Duration::from_secs(1));
        assert_eq!(
            duration_from_100ns(25_000_001),
            Duration::new(2, 500_000_100)
        );
        assert_eq!(
            duration_from_100ns(i64::MAX),
            Duration::new(922_337_203_685, 477_580_700)
        );
    }

    #[test]
    fn windows_plan() {
        let plan = WindowsLimitPlan::new(&JobLimits::default()).expect("empty");
        assert_eq!(
            plan,
            WindowsLimitPlan {
                limit_flags: JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
                job_memory_limit: 0,
                active_process_limit: 0,
                cpu_control_flags: 0,
                cpu_value: 0,
            }
        );
        let plan = WindowsLimitPlan::new(&JobLimits {
            memory_bytes: Some(64 * MIB),
            cpu_rate: Some(rate(2500)),
            cpu_weight: None,
            max_processes: Some(10),
        })
        .expect("full");
        assert_eq!(plan.limit_flags, 0x2000 | 0x200 | 0x8);
        assert_eq!(plan.job_memory_limit, 64 * MIB);
        assert_eq!(plan.active_process_limit, 10);
        assert_eq!(plan.cpu_control_flags, 0x1 | 0x4);
        assert_eq!(plan.cpu_value, 2500);
        let plan = WindowsLimitPlan::new(&JobLimits {
            cpu_weight: Some(weight(7)),
            ..JobLimits::default()
        })
        .expect("weight");
        assert_eq!((plan.cpu_control_flags, plan.cpu_value), (0x1 | 0x2, 7));
        assert_eq!(
            WindowsLimitPlan::new(&JobLimits {
                cpu_rate: Some(rate(1)),
                cpu_weight: Some(weight(1)),
                ..JobLimits::default()
            }),
            Err(LimitsError::RateAndWeight)
        );
    }
}
