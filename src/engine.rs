//! The engine: `evaluate(policies, pod view, request facts) -> Decision`.
//!
//! Pure and synchronous: no I/O, no clock, no logging. The webhook, `hostgate check` and the node
//! agent all call this one function.
//!
//! 1. The structural rules (HP-API) always run; what they find is refused.
//! 2. Profile policies (e.g. `baseline`) that match the pod run their check; findings are refused,
//!    warned about or audited according to the policy's mode, whatever other policies say.
//! 3. A pod that asks for HostProcess power must be admitted by an admitting policy: the first
//!    matching policy (by name) whose constraints all hold admits it. If none does, a matching
//!    `Warn` or `Audit` policy admits it with its findings as warnings or audit records.
//!    Otherwise it is refused with the findings of every matching policy, or with `HG-MATCH-01`
//!    when no policy matches.

use std::collections::BTreeMap;

use crate::decision::{Decision, Finding};
use crate::pod::PodView;
use crate::policy::{Mode, PolicySet, Profile};
use crate::rules::structural::{self, StructuralOptions};
use crate::rules::{baseline, ids};

/// Facts about the request that the pod itself does not carry.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    /// The namespace the pod runs in.
    pub namespace: &'a str,
    /// The namespace's labels, when known (for `namespaceSelector`).
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// Cluster and request facts for the structural rules.
    pub structural: StructuralOptions,
}

impl<'a> EvalContext<'a> {
    /// A context for a pod being created in `namespace`, on a default cluster.
    pub fn new(namespace: &'a str) -> Self {
        EvalContext {
            namespace,
            namespace_labels: None,
            structural: StructuralOptions::default(),
        }
    }
}

/// Evaluates one pod (or pod template).
pub fn evaluate(set: &PolicySet, pod: &PodView<'_>, ctx: &EvalContext<'_>) -> Decision {
    let mut d = Decision {
        host_process: pod.requests_host_process(),
        ..Decision::default()
    };
    structural::check(pod, ctx.structural, &mut d.denials);

    let service_account = pod.service_account();
    let applies = |p: &crate::policy::CompiledPolicy| {
        p.matches(ctx.namespace, ctx.namespace_labels, service_account)
    };

    for policy in set.profiles().iter().filter(|p| applies(p)) {
        let start = d.denials.len();
        match policy.profile() {
            Some(Profile::Baseline) | None => baseline::check(pod, &mut d.denials),
        }
        let found: Vec<Finding> = d
            .denials
            .drain(start..)
            .map(|f| f.with_policy(policy.name()))
            .collect();
        route(&mut d, policy.mode(), found);
    }

    if d.host_process {
        admit(set, pod, ctx, &applies, &mut d);
    }
    d.allowed = d.denials.is_empty();
    if !d.allowed {
        d.policy = None;
        d.mode = None;
    }
    d
}

/// Puts findings where the mode says.
fn route(d: &mut Decision, mode: Mode, findings: Vec<Finding>) {
    match mode {
        Mode::Enforce => d.denials.extend(findings),
        Mode::Warn => d.warnings.extend(findings),
        Mode::Audit => d.audits.extend(findings),
    }
}

fn admit(
    set: &PolicySet,
    pod: &PodView<'_>,
    ctx: &EvalContext<'_>,
    applies: &impl Fn(&crate::policy::CompiledPolicy) -> bool,
    d: &mut Decision,
) {
    let mut matched = 0usize;
    let mut failures: Vec<(usize, Vec<Finding>)> = Vec::new();
    for (i, policy) in set.admitting().iter().enumerate() {
        if !applies(policy) {
            continue;
        }
        matched += 1;
        let mut found = Vec::new();
        policy.check(pod, &mut found);
        if found.is_empty() {
            d.policy = Some(policy.name().clone());
            d.mode = Some(policy.mode());
            return;
        }
        failures.push((i, found));
    }

    // No policy passes cleanly: a matching Warn or Audit policy still admits.
    let lenient = failures
        .iter()
        .position(|(i, _)| set.admitting()[*i].mode() != Mode::Enforce);
    if let Some(pos) = lenient {
        let (i, found) = failures.swap_remove(pos);
        let policy = &set.admitting()[i];
        d.policy = Some(policy.name().clone());
        d.mode = Some(policy.mode());
        route(d, policy.mode(), found);
        return;
    }

    if matched == 0 {
        let containers = pod.containers().map(|c| c.name.to_owned()).collect();
        d.denials.push(
            Finding::new(
                ids::NO_POLICY,
                pod.path.0.to_owned(),
                format!(
                    "no HostProcessPolicy admits HostProcess pods in namespace {:?} with service account {:?}",
                    ctx.namespace,
                    pod.service_account()
                ),
            )
            .with_containers(containers),
        );
        return;
    }
    for (_, found) in failures {
        d.denials.extend(found);
    }
}
