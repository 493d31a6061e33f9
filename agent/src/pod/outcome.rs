//! How a pod run ends, and the agent's exit codes (pure).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every container that had to succeed exited 0; or restartPolicy `Always` and the agent was stopped by a signal and cleaned up |
//! | 1 | the pod failed: a container that had to succeed failed (non-zero exit, killed, OOM, could not start) and its restart policy does not run it again |
//! | 2 | usage error (command line) |
//! | 3 | agent error: cgroups unavailable, sandbox/volume/log I/O, or a cleanup that failed (something may be left behind; the message says what) |
//! | 4 | invalid input: manifest unreadable or not one Pod (+ ConfigMaps/Secrets), unsupported field, missing ConfigMap/Secret/key, keys or policies that cannot be loaded |
//! | 10 | refused: the pod carries no approval |
//! | 11 | refused: the approval is malformed, signed by an untrusted key, or its signature is wrong |
//! | 12 | refused: the pod (or a container) was changed after approval |
//! | 13 | refused: no loaded policy admits the pod (or it is not a HostProcess pod) |
//! | 14 | refused: the approving policy is not loaded here or no longer admits the pod |
//! | 130 / 143 | stopped by `SIGINT` / `SIGTERM` before the pod completed (restartPolicy `OnFailure` / `Never`) |

use std::fmt;

use super::restart::RestartPolicy;
use crate::stop::StopReason;

/// Exit code: success.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code: the pod failed.
pub const EXIT_POD_FAILED: u8 = 1;
/// Exit code: usage error (clap's).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the agent itself failed.
pub const EXIT_AGENT_ERROR: u8 = 3;
/// Exit code: the input is invalid or unsupported.
pub const EXIT_INVALID_INPUT: u8 = 4;

/// The end of one container run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Exit code (128 + signal for a killed process; 128 when it could not start).
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`.
    pub reason: &'static str,
}

/// The result of one container over all its runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerResult {
    /// The container name.
    pub name: String,
    /// Whether it is an init container.
    pub init: bool,
    /// How many times it was restarted.
    pub restarts: u32,
    /// How its last run ended; `None` if it never ran (an earlier init container failed, or
    /// the agent stopped first).
    pub last: Option<RunSummary>,
}

impl ContainerResult {
    /// Whether its last run succeeded.
    pub fn succeeded(&self) -> bool {
        self.last.as_ref().is_some_and(|l| l.exit_code == 0)
    }
}

/// The result of a pod run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOutcome {
    /// The pod's restart policy.
    pub restart_policy: RestartPolicy,
    /// Init containers in order, then regular containers.
    pub containers: Vec<ContainerResult>,
    /// Set when the agent was asked to stop before the pod completed.
    pub stopped_by: Option<StopReason>,
}

impl PodOutcome {
    /// Whether every container ran and succeeded.
    pub fn succeeded(&self) -> bool {
        self.containers.iter().all(ContainerResult::succeeded)
    }

    /// The agent's exit code for this outcome (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self.stopped_by {
            Some(_) if self.restart_policy == RestartPolicy::Always => EXIT_SUCCESS,
            Some(reason) => reason.signal_exit_code(),
            None if self.succeeded() => EXIT_SUCCESS,
            None => EXIT_POD_FAILED,
        }
    }
}

impl fmt::Display for PodOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stopped_by {
            Some(reason) => write!(f, "stopped ({reason:?})")?,
            None if self.succeeded() => f.write_str("succeeded")?,
            None => f.write_str("failed")?,
        }
        for c in &self.containers {
            let kind = if c.init {
                "init container"
            } else {
                "container"
            };
            match &c.last {
                Some(l) => write!(
                    f,
                    "; {kind} {:?}: {} (exit code {}, {} restarts)",
                    c.name, l.reason, l.exit_code, c.restarts
                )?,
                None => write!(f, "; {kind} {:?}: not run", c.name)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, code: Option<i32>) -> ContainerResult {
        ContainerResult {
            name: name.to_owned(),
            init: false,
            restarts: 0,
            last: code.map(|exit_code| RunSummary {
                exit_code,
                reason: if exit_code == 0 { "Completed" } else { "Error" },
            }),
        }
    }

    #[test]
    fn exit_code_mapping() {
        let outcome = |policy, codes: &[Option<i32>], stopped| PodOutcome {
            restart_policy: policy,
            containers: codes
                .iter()
                .enumerate()
                .map(|(i, c)| result(&format!("c{i}"), *c))
                .collect(),
            stopped_by: stopped,
        };
        use RestartPolicy::*;
        let cases = [
            (outcome(Never, &[Some(0), Some(0)], None), 0),
            (outcome(Never, &[Some(0), Some(1)], None), 1),
            (outcome(OnFailure, &[Some(0)], None), 0),
            (outcome(Never, &[Some(137)], None), 1),
            (outcome(Never, &[Some(1), None], None), 1), // init failed, main never ran
            (
                outcome(Always, &[Some(143)], Some(StopReason::Terminate)),
                0,
            ),
            (outcome(Always, &[None], Some(StopReason::Interrupt)), 0),
            (
                outcome(Never, &[Some(143)], Some(StopReason::Terminate)),
                143,
            ),
            (
                outcome(OnFailure, &[Some(0)], Some(StopReason::Interrupt)),
                130,
            ),
        ];
        for (o, want) in cases {
            assert_eq!(o.exit_code(), want, "{o}");
        }
    }

    #[test]
    fn summary_text() {
        let o = PodOutcome {
            restart_policy: RestartPolicy::Never,
            containers: vec![
                ContainerResult {
                    init: true,
                    ..result("setup", Some(0))
                },
                result("main", Some(3)),
                result("side", None),
            ],
            stopped_by: None,
        };
        assert_eq!(
            o.to_string(),
            "failed; init container \"setup\": Completed (exit code 0, 0 restarts); container \"main\": Error (exit code 3, 0 restarts); container \"side\": not run"
        );
    }
}
