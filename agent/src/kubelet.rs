//! What the kubelet does to a container before the runtime sees it, as pure functions.
//!
//! Both the static pod runner (which plays the kubelet) and [`crate::verify`] (which checks what
//! a runtime is asked to run against an approval, as a containerd shim would) need the same
//! rules:
//!
//! * `$(VAR)` references in `env[].value`, `command` and `args` ([`expand`]: the kubelet's
//!   `third_party/forked/golang/expansion`);
//! * `command` + `args` → the runtime's argv ([`process_args`]);
//! * `resources.limits` → the CRI/OCI Windows resources (HP-KLT-03: [`oci_resources`]), which
//!   the runtime turns into job limits (HP-JOB-05: [`crate::job::JobLimits::from_oci_windows`]).

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use hostgate_core::quantity::Quantity as Exact;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::job::JobLimits;
use crate::job::limits::{CpuRate, OciWindowsResources, job_memory_limit, kubelet_cpu_maximum};

/// Expands `$(NAME)` references in `input` with `lookup`, exactly like the kubelet:
///
/// * `$(NAME)` is replaced by `lookup(NAME)`; an unknown name is left as written, `$(NAME)`;
/// * `$$` is an escaped `$`;
/// * a `$` followed by anything else, or an unterminated `$(`, is copied unchanged.
///
/// (The kubelet works on bytes and mangles a non-ASCII character after a lone `$`; this copies
/// it unchanged.)
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.chars().next() {
            // A `$` at the very end is copied.
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after[1..].find(')') {
                Some(end) => {
                    let name = &after[1..=end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[end + 2..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// [`expand`] with a map of variables.
pub fn expand_with(input: &str, vars: &BTreeMap<String, String>) -> String {
    expand(input, |name| vars.get(name).cloned())
}

/// The runtime's argv for a container: `command` followed by `args`, each expanded with the
/// container's final environment. With no `command`, the image's entrypoint would come first:
/// the caller decides what to do about that (the agent ignores images, so it requires one).
pub fn process_args(
    command: &[String],
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    command
        .iter()
        .chain(args)
        .map(|a| expand_with(a, env))
        .collect()
}

/// Whether `name` is an acceptable environment variable name: printable ASCII without `=`
/// (the apiserver's relaxed rule). The kubelet skips `envFrom` keys that are not.
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

/// Why a limit could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The quantity does not parse.
    #[error("limits.{resource}: {value:?} is not a quantity")]
    Invalid {
        /// `cpu` or `memory`.
        resource: &'static str,
        /// The text.
        value: String,
    },
    /// A negative limit.
    #[error("limits.{resource}: {value:?} must not be negative")]
    Negative {
        /// `cpu` or `memory`.
        resource: &'static str,
        /// The text.
        value: String,
    },
}

fn parse_limit(
    limits: &BTreeMap<String, Quantity>,
    resource: &'static str,
    milli: bool,
) -> Result<u64, LimitError> {
    let Some(q) = limits.get(resource) else {
        return Ok(0);
    };
    let parsed = Exact::parse(&q.0).map_err(|_| LimitError::Invalid {
        resource,
        value: q.0.clone(),
    })?;
    if parsed.is_negative() {
        return Err(LimitError::Negative {
            resource,
            value: q.0.clone(),
        });
    }
    let v = if milli {
        parsed.milli_ceil()
    } else {
        parsed.value_ceil()
    };
    Ok(u64::try_from(v).unwrap_or(u64::MAX))
}

/// The CRI/OCI Windows resources the kubelet derives from a container's `resources.limits`
/// (HP-KLT-03): `cpu.maximum = 10 * limits.cpu.MilliValue() / host LPs` clamped to 1..=10000
/// (only for a non-zero CPU limit), `memory.limit = limits.memory.Value()` bytes. Requests,
/// CPU count and shares are never set.
pub fn oci_resources(
    limits: &BTreeMap<String, Quantity>,
    host_logical_processors: NonZeroU32,
) -> Result<OciWindowsResources, LimitError> {
    let milli = parse_limit(limits, "cpu", true)?;
    let memory = parse_limit(limits, "memory", false)?;
    Ok(OciWindowsResources {
        cpu_count: 0,
        cpu_maximum: kubelet_cpu_maximum(milli, host_logical_processors)
            .map_or(0, |r| u64::from(r.get())),
        cpu_shares: 0,
        memory_limit_bytes: memory,
    })
}

/// The CFS period the Linux kubelet uses for CPU limits (100 ms), in microseconds.
pub const CFS_PERIOD_US: u64 = 100_000;
/// The smallest quota the Linux kubelet writes (1 ms).
pub const MIN_CFS_QUOTA_US: i64 = 1_000;

/// The CPU and memory fields of an OCI runtime spec's `linux.resources` (0 = unset), as a
/// Linux kubelet fills them from a container's limits through CRI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinuxResources {
    /// `cpu.quota` in microseconds per period (0 or negative = unlimited).
    pub cpu_quota: i64,
    /// `cpu.period` in microseconds.
    pub cpu_period: u64,
    /// `memory.limit` in bytes (0 or negative = unlimited).
    pub memory_limit_bytes: i64,
}

impl LinuxResources {
    /// The job limits: the memory limit as hcsshim rounds it, and the quota as a CPU rate
    /// over all host CPUs (`quota / period` CPUs = `10000 * quota / (period * cpus)`), at
    /// least 1.
    pub fn job_limits(&self, host_logical_processors: NonZeroU32) -> JobLimits {
        let memory = u64::try_from(self.memory_limit_bytes).unwrap_or(0);
        let cpu_rate = match (u64::try_from(self.cpu_quota), self.cpu_period) {
            (Ok(quota), period) if quota > 0 && period > 0 => {
                let rate = 10_000 * u128::from(quota)
                    / (u128::from(period) * u128::from(host_logical_processors.get()));
                let rate = u64::try_from(rate.clamp(1, 10_000)).unwrap_or(10_000);
                CpuRate::new(rate).ok()
            }
            _ => None,
        };
        JobLimits {
            memory_bytes: job_memory_limit(memory),
            cpu_rate,
            cpu_weight: None,
            max_processes: None,
        }
    }
}

/// The `linux.resources` a Linux kubelet derives from `resources.limits`: the CFS quota
/// `milli * period / 1000` (at least 1 ms) over a 100 ms period, and the memory limit in bytes.
pub fn linux_resources(limits: &BTreeMap<String, Quantity>) -> Result<LinuxResources, LimitError> {
    let milli = parse_limit(limits, "cpu", true)?;
    let memory = parse_limit(limits, "memory", false)?;
    let cpu_quota = if milli == 0 {
        0
    } else {
        let quota = u128::from(milli) * u128::from(CFS_PERIOD_US) / 1_000;
        i64::try_from(quota)
            .unwrap_or(i64::MAX)
            .max(MIN_CFS_QUOTA_US)
    };
    Ok(LinuxResources {
        cpu_quota,
        cpu_period: if milli == 0 { 0 } else { CFS_PERIOD_US },
        memory_limit_bytes: i64::try_from(memory).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Cases from the kubelet's `expand_test.go`.
    #[test]
    fn expansion_like_the_kubelet() {
        let env = vars(&[
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]);
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_C)$(VAR_A)", "CA"),
            ("$(VAR_A)-$(VAR_B)-$(VAR_C)", "A-B-C"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("$(VAR_REF)", "$(VAR_A)"), // no recursion
            ("$(VAR_EMPTY)", ""),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(", "$("),
            ("$()", "$()"),
            ("$", "$"),
            ("a$", "a$"),
            ("$$", "$"),
            ("$$$$", "$$"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$x$(VAR_B)", "$xB"),
            ("$é$(VAR_B)", "$éB"),
            ("(VAR_A)", "(VAR_A)"),
            ("plain", "plain"),
            ("", ""),
            ("$(VAR_A)$(", "A$("),
            ("$(VAR_A) $(VAR_B", "A $(VAR_B"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_with(input, &env), want, "{input:?}");
        }
    }

    #[test]
    fn argv_is_command_then_args_expanded() {
        let env = vars(&[("PORT", "8080")]);
        let argv = process_args(
            &["/bin/server".to_owned(), "--port=$(PORT)".to_owned()],
            &["$(MISSING)".to_owned(), "$$(PORT)".to_owned()],
            &env,
        );
        assert_eq!(
            argv,
            ["/bin/server", "--port=8080", "$(MISSING)", "$(PORT)"]
        );
        assert!(process_args(&[], &[], &env).is_empty());
    }

    #[test]
    fn env_var_names() {
        for ok in ["A", "a_b", "x.y-z", "1ABC", "with space"] {
            assert!(is_env_var_name(ok), "{ok}");
        }
        for bad in ["", "A=B", "tab\t", "é", "nl\n"] {
            assert!(!is_env_var_name(bad), "{bad:?}");
        }
    }

    fn limits(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect()
    }

    #[test]
    fn limits_to_oci_resources() {
        let two = NonZeroU32::new(2).expect("non-zero");
        let r =
            oci_resources(&limits(&[("cpu", "500m"), ("memory", "128Mi")]), two).expect("valid");
        assert_eq!(
            r,
            OciWindowsResources {
                cpu_count: 0,
                cpu_maximum: 2500,
                cpu_shares: 0,
                memory_limit_bytes: 128 << 20,
            }
        );
        // Rounded up like MilliValue / Value.
        let r =
            oci_resources(&limits(&[("cpu", "0.0001"), ("memory", "1.5")]), two).expect("valid");
        assert_eq!((r.cpu_maximum, r.memory_limit_bytes), (5, 2));
        // Unset and zero: nothing.
        let r = oci_resources(&limits(&[("cpu", "0"), ("ephemeral-storage", "1Gi")]), two)
            .expect("valid");
        assert_eq!(r, OciWindowsResources::default());
        // Clamped to the whole machine.
        let r = oci_resources(&limits(&[("cpu", "64")]), two).expect("valid");
        assert_eq!(r.cpu_maximum, 10_000);
        assert_eq!(
            oci_resources(&limits(&[("cpu", "lots")]), two),
            Err(LimitError::Invalid {
                resource: "cpu",
                value: "lots".to_owned()
            })
        );
        assert!(matches!(
            oci_resources(&limits(&[("memory", "-1Mi")]), two),
            Err(LimitError::Negative {
                resource: "memory",
                ..
            })
        ));
    }
}
