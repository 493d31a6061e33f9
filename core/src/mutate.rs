//! `hostgate mutate`: the offline twin of `/mutate`.
//!
//! Each judged object is defaulted exactly as the webhook would; a HostProcess Pod that a policy
//! admits gets a signed approval when a key is given (so that an admin can approve a static pod
//! for a node that admission never sees), and any approval hostgate did not sign is removed.
//! Objects of other kinds pass through unchanged.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::approval::{self, SigningIdentity};
use crate::decision::Decision;
use crate::defaults::{self, Change, DefaultingOptions};
use crate::engine::EvalContext;
use crate::object::{ObjectError, Workload};
use crate::policy::PolicySet;

/// One mutated document.
#[derive(Debug, Clone)]
pub struct Mutated {
    /// The object after defaulting (and signing).
    pub value: Value,
    /// What defaulting changed.
    pub changes: Vec<Change>,
    /// The decision on the defaulted object (`None` for kinds hostgate does not judge).
    pub decision: Option<Decision>,
    /// Whether an approval was signed.
    pub signed: bool,
}

/// Defaults (and signs) one document. `namespace` applies to objects that name none;
/// `defaulting` carries the webhook's own defaults (`--runtime-class`), which apply here as to a
/// pod being created.
pub fn mutate_value(
    set: &PolicySet,
    value: Value,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
    signer: Option<&SigningIdentity>,
    now: u64,
    defaulting: DefaultingOptions<'_>,
) -> Result<Mutated, ObjectError> {
    let Some(mut workload) = Workload::from_value(value.clone())? else {
        return Ok(Mutated {
            value,
            changes: Vec::new(),
            decision: None,
            signed: false,
        });
    };
    let ns = workload.namespace().unwrap_or(namespace).to_owned();
    let ctx = EvalContext {
        namespace_labels,
        ..EvalContext::new(&ns)
    };
    let defaulted = defaults::default_workload_with(set, &mut workload, &ctx, defaulting);
    let signed = match &mut workload {
        Workload::Pod(pod) => approval::approve(pod, &defaulted.decision, signer, &ns, now),
        _ => false,
    };
    let mut out = workload.to_value();
    // Keep `apiVersion` and `kind` first, as people write them.
    if let Value::Object(map) = &mut out {
        let mut ordered = serde_json::Map::new();
        for key in ["apiVersion", "kind"] {
            if let Some(v) = map.remove(key) {
                ordered.insert(key.to_owned(), v);
            }
        }
        ordered.append(map);
        out = Value::Object(ordered);
    }
    Ok(Mutated {
        value: out,
        changes: defaulted.changes,
        decision: Some(defaulted.decision),
        signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::{TrustStore, generate_key};
    use crate::policy::load::parse_policies;

    const POLICY: &str = r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: static}
spec:
  match: {namespaces: [kube-system]}
  allow: {runAsUserNames: ['NT AUTHORITY\Local service']}
"#;

    /// Mutates `pod` with the static policy and a new key; the trust store that verifies it.
    fn mutate_static(pod: &str, defaulting: DefaultingOptions<'_>) -> (Mutated, TrustStore) {
        let (p, _) = parse_policies(POLICY.as_bytes(), "t");
        let set = PolicySet::new(p).expect("set");
        let signer = SigningIdentity::new(generate_key().expect("key"));
        let pod: Value = serde_yaml::from_str(pod).expect("yaml");
        let m = mutate_value(&set, pod, "default", None, Some(&signer), 1, defaulting)
            .expect("mutates");
        let mut trust = TrustStore::default();
        trust.add(signer.verifying_key());
        (m, trust)
    }

    const STATIC_POD: &str = "{apiVersion: v1, kind: Pod, metadata: {name: s, namespace: kube-system, annotations: {hostgate.io/approval: forged}}, spec: {hostNetwork: true, containers: [{name: a, image: x, securityContext: {windowsOptions: {hostProcess: true}}}]}}";

    #[test]
    fn static_pod_is_defaulted_signed_and_verifies() {
        let (m, trust) = mutate_static(STATIC_POD, DefaultingOptions::default());
        assert!(m.signed);
        assert_eq!(
            m.value["spec"]["securityContext"]["windowsOptions"]["runAsUserName"],
            "NT AUTHORITY\\Local service"
        );
        assert!(m.value["spec"].get("runtimeClassName").is_none());
        let w = Workload::from_value(m.value).expect("valid").expect("pod");
        let approval = trust
            .verify_pod(&w.pod().expect("spec"), "kube-system")
            .expect("the signed static pod verifies");
        assert_eq!(approval.policy, "static");
    }

    #[test]
    fn the_runtime_class_is_named_before_signing_and_the_approval_carries_it() {
        let routed = DefaultingOptions {
            runtime_class: Some("hostgate"),
        };
        let (m, trust) = mutate_static(STATIC_POD, routed);
        assert!(m.signed);
        assert_eq!(m.value["spec"]["runtimeClassName"], "hostgate");
        let w = Workload::from_value(m.value).expect("valid").expect("pod");
        let approval = trust
            .verify_pod(&w.pod().expect("spec"), "kube-system")
            .expect("verifies");
        assert_eq!(approval.pod.runtime_class_name.as_deref(), Some("hostgate"));
    }

    #[test]
    fn refused_pods_lose_any_approval_and_other_kinds_pass_through() {
        let set = PolicySet::default();
        let pod: Value = serde_yaml::from_str(
            "{apiVersion: v1, kind: Pod, metadata: {name: s, annotations: {hostgate.io/approval: forged}}, spec: {hostNetwork: true, securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a}]}}",
        )
        .expect("yaml");
        let m =
            mutate_value(&set, pod, "default", None, None, 1, Default::default()).expect("mutates");
        assert!(!m.signed);
        assert!(m.value["metadata"].get("annotations").is_none());
        let cm: Value = serde_yaml::from_str(
            "{apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {a: b}}",
        )
        .expect("yaml");
        let m = mutate_value(
            &set,
            cm.clone(),
            "default",
            None,
            None,
            1,
            Default::default(),
        )
        .expect("passes");
        assert_eq!(m.value, cm);
        assert!(m.decision.is_none());
    }
}
