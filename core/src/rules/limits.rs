//! `HG-LIMITS-01` and `HG-LIMITS-02`: resource limits, which become the job's limits on the node.
//!
//! A HostProcess container's `resources.limits` are the only bound on what it can take from the
//! host: the kubelet turns `limits.cpu` into a hard CPU rate and `limits.memory` into the job
//! object's memory limit (`HP-KLT-03` and `HP-JOB-05` in `docs/rules.md`); requests have no
//! effect there. A policy's `spec.require.limits` makes each named limit mandatory on every
//! init and regular container, at most the given quantity. (Ephemeral containers take no
//! resources, so the apiserver refuses limits on them.)

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use crate::decision::Finding;
use crate::pod::PodView;
use crate::policy::{InvalidPolicy, RequireSpec};
use crate::quantity::Quantity;
use crate::rules::ids;

/// A maximum as written in the policy and as parsed.
pub type LimitMax = (String, Quantity);

/// The limit constraints of one policy.
#[derive(Debug, Clone, Default)]
pub struct LimitRule {
    cpu: Option<LimitMax>,
    memory: Option<LimitMax>,
}

impl LimitRule {
    /// Compiles `spec.require.limits`: each maximum must be a positive quantity.
    pub fn compile(require: &RequireSpec) -> Result<Self, InvalidPolicy> {
        let limits = require.limits.clone().unwrap_or_default();
        Ok(LimitRule {
            cpu: limit_max(limits.cpu.as_ref(), "spec.require.limits.cpu")?,
            memory: limit_max(limits.memory.as_ref(), "spec.require.limits.memory")?,
        })
    }

    /// The maximum for `resource` (`cpu` or `memory`), if the policy sets one.
    pub fn max(&self, resource: &str) -> Option<&LimitMax> {
        match resource {
            "cpu" => self.cpu.as_ref(),
            "memory" => self.memory.as_ref(),
            _ => None,
        }
    }

    /// Appends a finding for every missing or excessive limit of every runnable container.
    pub fn check(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        for (resource, max) in [("cpu", &self.cpu), ("memory", &self.memory)] {
            let Some((max_text, max)) = max else {
                continue;
            };
            for c in pod.runnable_containers() {
                let path = || c.path_to(pod.path, &format!("resources.limits.{resource}"));
                let value = c
                    .resources
                    .and_then(|r| r.limits.as_ref())
                    .and_then(|l| l.get(resource));
                let Some(value) = value else {
                    out.push(
                        Finding::new(
                            ids::LIMIT_MISSING,
                            path(),
                            format!("a {resource} limit is required (at most {max_text})"),
                        )
                        .with_containers(vec![c.name.to_owned()]),
                    );
                    continue;
                };
                let message = match Quantity::parse(&value.0) {
                    Ok(q) if q <= *max => continue,
                    Ok(_) => format!(
                        "{resource} limit {} exceeds the maximum {max_text}",
                        value.0
                    ),
                    Err(e) => format!("{resource} limit {:?} is not a quantity: {e}", value.0),
                };
                out.push(
                    Finding::new(ids::LIMIT_EXCEEDED, path(), message)
                        .with_containers(vec![c.name.to_owned()]),
                );
            }
        }
    }
}

fn limit_max(q: Option<&ApiQuantity>, path: &str) -> Result<Option<LimitMax>, InvalidPolicy> {
    q.map(|q| positive_quantity(q, path).map(|parsed| (q.0.clone(), parsed)))
        .transpose()
}

/// Parses a quantity that must be greater than zero (a maximum, or a default limit).
pub fn positive_quantity(q: &ApiQuantity, path: &str) -> Result<Quantity, InvalidPolicy> {
    let parsed =
        Quantity::parse(&q.0).map_err(|e| InvalidPolicy::new(path, format!("{:?}: {e}", q.0)))?;
    if parsed.is_negative() || parsed.is_zero() {
        return Err(InvalidPolicy::new(
            path,
            format!("{:?} must be positive", q.0),
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LimitMaxima;
    use crate::rules::testing::{findings, pod};

    fn rule(cpu: Option<&str>, memory: Option<&str>) -> LimitRule {
        LimitRule::compile(&RequireSpec {
            limits: Some(LimitMaxima {
                cpu: cpu.map(|c| ApiQuantity(c.to_owned())),
                memory: memory.map(|m| ApiQuantity(m.to_owned())),
            }),
            ..Default::default()
        })
        .expect("compiles")
    }

    #[test]
    fn table() {
        // (max cpu, max memory, container limits, expected (rule, path))
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            &'a [(&'a str, &'a str)],
        );
        let cases: &[Case<'_>] = &[
            (None, None, "{}", &[]),
            (Some("1"), None, "{cpu: 500m}", &[]),
            (Some("1"), None, "{cpu: '1'}", &[]),
            (
                Some("1"),
                None,
                "{cpu: 1001m}",
                &[("HG-LIMITS-02", "spec.containers[0].resources.limits.cpu")],
            ),
            (
                Some("1"),
                None,
                "{}",
                &[("HG-LIMITS-01", "spec.containers[0].resources.limits.cpu")],
            ),
            (
                Some("1"),
                None,
                "{cpu: lots}",
                &[("HG-LIMITS-02", "spec.containers[0].resources.limits.cpu")],
            ),
            (None, Some("256Mi"), "{memory: 268435456}", &[]),
            (
                None,
                Some("256Mi"),
                "{memory: 257Mi}",
                &[("HG-LIMITS-02", "spec.containers[0].resources.limits.memory")],
            ),
            (
                Some("2"),
                Some("1Gi"),
                "{}",
                &[
                    ("HG-LIMITS-01", "spec.containers[0].resources.limits.cpu"),
                    ("HG-LIMITS-01", "spec.containers[0].resources.limits.memory"),
                ],
            ),
        ];
        for (cpu, memory, limits, want) in cases {
            let spec = format!("{{containers: [{{name: a, resources: {{limits: {limits}}}}}]}}");
            let got = findings(&pod(&spec), |p, out| rule(*cpu, *memory).check(p, out));
            let got: Vec<(&str, &str)> = got.iter().map(|f| (f.rule, f.path.as_str())).collect();
            assert_eq!(
                &got, want,
                "cpu {cpu:?}, memory {memory:?}, limits {limits}"
            );
        }
    }

    #[test]
    fn ephemeral_containers_need_no_limits() {
        let spec = "{containers: [{name: a, resources: {limits: {cpu: 100m}}}], ephemeralContainers: [{name: e}]}";
        assert!(findings(&pod(spec), |p, out| rule(Some("1"), None).check(p, out)).is_empty());
    }

    #[test]
    fn maxima_must_be_positive_quantities() {
        for (cpu, ok) in [("1", true), ("0", false), ("-1", false), ("x", false)] {
            let got = LimitRule::compile(&RequireSpec {
                limits: Some(LimitMaxima {
                    cpu: Some(ApiQuantity(cpu.to_owned())),
                    memory: None,
                }),
                ..Default::default()
            });
            assert_eq!(got.is_ok(), ok, "{cpu}");
            if let Err(e) = got {
                assert_eq!(e.path, "spec.require.limits.cpu");
            }
        }
    }
}
