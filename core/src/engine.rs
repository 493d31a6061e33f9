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
        let mut message = format!(
            "no HostProcessPolicy admits HostProcess pods in namespace {:?} with service account {:?}",
            ctx.namespace,
            pod.service_account()
        );
        // A pod that sets hostProcess nowhere is a HostProcess pod only through an annotation:
        // point at the annotation, and say so.
        let path = match pod.privileged_annotations().next() {
            Some((key, _)) if !pod.has_host_process_setting() => {
                message.push_str(&format!(
                    " (it sets hostProcess nowhere: its annotation {key} makes it a HostProcess pod)"
                ));
                format!("{}.annotations[{key}]", pod.path.metadata())
            }
            _ => pod.path.0.to_owned(),
        };
        d.denials
            .push(Finding::new(ids::NO_POLICY, path, message).with_containers(containers));
        return;
    }
    for (_, found) in failures {
        d.denials.extend(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Workload;
    use crate::policy::load::parse_policies;

    fn policies(yaml: &str) -> PolicySet {
        let (list, errs) = parse_policies(yaml.as_bytes(), "test");
        assert!(errs.is_empty(), "{errs:?}");
        PolicySet::new(list).expect("unique names")
    }

    fn decide(
        set: &PolicySet,
        pod_yaml: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Decision {
        let value: serde_json::Value = serde_yaml::from_str(pod_yaml).expect("pod parses");
        let w = Workload::from_value(value).expect("valid").expect("judged");
        let ns = w.namespace().unwrap_or("default").to_owned();
        let ctx = EvalContext {
            namespace: &ns,
            namespace_labels: labels,
            structural: StructuralOptions::default(),
        };
        evaluate(set, &w.pod().expect("pod"), &ctx)
    }

    fn rules(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.rule).collect()
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn csi_pod(image: &str, user: &str, extra: &str) -> String {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: csi, namespace: kube-system}}
spec:
  serviceAccountName: csi-proxy
  hostNetwork: true
  securityContext: {{windowsOptions: {{hostProcess: true, runAsUserName: '{user}'}}}}
  containers:
  - name: csi-proxy
    image: {image}
    resources: {{limits: {{cpu: 500m, memory: 128Mi}}}}
{extra}"#
        )
    }

    const CSI_POLICY: &str = r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: csi-proxy}
spec:
  match: {namespaces: [kube-system], serviceAccounts: [kube-system/csi-proxy]}
  allow:
    images: ["registry.example/csi-proxy@sha256:*"]
    runAsUserNames: ['NT AUTHORITY\SYSTEM']
    volumes: {hostPathPrefixes: ['C:\var\lib\kubelet']}
  require: {imageDigest: true, limits: {cpu: "1", memory: 256Mi}}
  defaults: {runAsUserName: 'NT AUTHORITY\SYSTEM'}
"#;

    #[test]
    fn admits_a_compliant_pod_and_names_the_policy() {
        let set = policies(CSI_POLICY);
        let image = format!("registry.example/csi-proxy@{DIGEST}");
        let d = decide(&set, &csi_pod(&image, "NT AUTHORITY\\SYSTEM", ""), None);
        assert!(d.allowed, "{d:?}");
        assert!(d.host_process);
        assert_eq!(d.policy.as_deref(), Some("csi-proxy"));
        assert_eq!(d.mode, Some(Mode::Enforce));
        assert_eq!(
            d.summary(),
            "HostProcess pod admitted by policy \"csi-proxy\""
        );
    }

    #[test]
    fn reports_every_constraint_that_fails() {
        let set = policies(CSI_POLICY);
        let extra = r#"    volumeMounts: [{name: host, mountPath: 'C:\host'}]
  volumes:
  - {name: host, hostPath: {path: 'C:\Windows'}}
  - {name: nfs, nfs: {server: x, path: /}}"#;
        let pod = csi_pod(
            "evil.example/x:latest",
            "NT Authority\\Local service",
            extra,
        )
        .replace("cpu: 500m", "cpu: \"2\"");
        let d = decide(&set, &pod, None);
        assert!(!d.allowed);
        assert_eq!(
            rules(&d.denials),
            [
                "HG-IMAGE-01",
                "HG-IMAGE-02",
                "HG-USER-03",
                "HG-USER-02",
                "HG-VOLUME-02",
                "HG-VOLUME-01",
                "HG-LIMITS-02",
            ]
        );
        assert!(
            d.denials
                .iter()
                .all(|f| f.policy.as_deref() == Some("csi-proxy"))
        );
        let host_path = &d.denials[4];
        assert_eq!(host_path.path, "spec.volumes[0].hostPath.path");
        assert_eq!(host_path.containers, ["csi-proxy"]);
        let user = &d.denials[3];
        assert_eq!(
            user.path,
            "spec.securityContext.windowsOptions.runAsUserName"
        );
        assert!(
            d.summary()
                .starts_with("denied: [HG-IMAGE-01] spec.containers[0].image:")
        );
    }

    #[test]
    fn no_matching_policy_denies_with_namespace_and_service_account() {
        let set = policies(CSI_POLICY);
        let image = format!("registry.example/csi-proxy@{DIGEST}");
        let pod = csi_pod(&image, "NT AUTHORITY\\SYSTEM", "")
            .replace("namespace: kube-system", "namespace: default");
        let d = decide(&set, &pod, None);
        assert!(!d.allowed);
        assert_eq!(rules(&d.denials), ["HG-MATCH-01"]);
        assert_eq!(
            d.denials[0].message,
            "no HostProcessPolicy admits HostProcess pods in namespace \"default\" with service account \"csi-proxy\""
        );
        let empty = PolicySet::default();
        assert!(!decide(&empty, &pod, None).allowed);
    }

    #[test]
    fn an_annotation_only_host_process_pod_is_told_which_annotation_made_it_one() {
        let pod = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logs, namespace: logging}
spec:
  selector: {matchLabels: {app: logs}}
  template:
    metadata:
      labels: {app: logs}
      annotations: {microsoft.com/hostprocess-inherit-user: "true"}
    spec:
      containers: [{name: agent, image: registry.example/agent}]
"#;
        let d = decide(&PolicySet::default(), pod, None);
        assert!(d.host_process && !d.allowed);
        assert_eq!(rules(&d.denials), ["HG-MATCH-01"]);
        assert_eq!(
            d.denials[0].path,
            "spec.template.metadata.annotations[microsoft.com/hostprocess-inherit-user]"
        );
        assert_eq!(
            d.denials[0].message,
            "no HostProcessPolicy admits HostProcess pods in namespace \"logging\" with service account \"default\" (it sets hostProcess nowhere: its annotation microsoft.com/hostprocess-inherit-user makes it a HostProcess pod)"
        );
        // A pod that also sets hostProcess keeps the plain message at the spec.
        let both = pod.replace(
            "containers: [{name: agent, image: registry.example/agent}]",
            "hostNetwork: true\n      securityContext: {windowsOptions: {hostProcess: true}}\n      containers: [{name: agent, image: registry.example/agent}]",
        );
        let d = decide(&PolicySet::default(), &both, None);
        assert_eq!(d.denials[0].path, "spec.template.spec");
        assert!(!d.denials[0].message.contains("annotation"));
    }

    #[test]
    fn non_host_process_pods_are_not_our_business() {
        let d = decide(
            &PolicySet::default(),
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: a, image: nginx}]}}",
            None,
        );
        assert!(d.allowed && !d.host_process && d.denials.is_empty());
        assert_eq!(d.summary(), "not a HostProcess pod");
    }

    #[test]
    fn privileged_annotations_alone_request_host_process_power() {
        let pod = "{apiVersion: v1, kind: Pod, metadata: {name: p, annotations: {microsoft.com/hostprocess-inherit-user: 'true'}}, spec: {containers: [{name: a, image: nginx}]}}";
        let d = decide(&PolicySet::default(), pod, None);
        assert!(d.host_process && !d.allowed);
        let set = policies(
            "{apiVersion: hostgate.io/v1alpha1, kind: HostProcessPolicy, metadata: {name: any}, spec: {}}",
        );
        let d = decide(&set, pod, None);
        assert_eq!(rules(&d.denials), ["HG-ANNOT-01"]);
        assert_eq!(
            d.denials[0].path,
            "metadata.annotations[microsoft.com/hostprocess-inherit-user]"
        );
    }

    #[test]
    fn first_clean_policy_admits_and_lenient_modes_admit_with_findings() {
        let set = policies(
            r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: a-strict}
spec: {allow: {images: ["registry.example/**"]}}
---
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: b-warn}
spec: {mode: Warn, require: {imageDigest: true}}
---
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: c-audit}
spec: {mode: Audit, allow: {runAsUserNames: ['NT AUTHORITY\Local service']}}
"#,
        );
        let pod = |image: &str| {
            format!(
                "{{apiVersion: v1, kind: Pod, metadata: {{name: p}}, spec: {{hostNetwork: true, securityContext: {{windowsOptions: {{hostProcess: true}}}}, containers: [{{name: a, image: '{image}'}}]}}}}"
            )
        };
        let d = decide(&set, &pod("registry.example/x:1"), None);
        assert_eq!(d.policy.as_deref(), Some("a-strict"));
        assert!(d.warnings.is_empty());

        let d = decide(&set, &pod("other.example/x:1"), None);
        assert!(d.allowed);
        assert_eq!(d.policy.as_deref(), Some("b-warn"));
        assert_eq!(d.mode, Some(Mode::Warn));
        assert_eq!(rules(&d.warnings), ["HG-IMAGE-02"]);
        assert!(d.denials.is_empty() && d.audits.is_empty());
    }

    #[test]
    fn audit_mode_records_instead_of_refusing() {
        let set = policies(
            "{apiVersion: hostgate.io/v1alpha1, kind: HostProcessPolicy, metadata: {name: audit}, spec: {mode: Audit, require: {imageDigest: true}}}",
        );
        let d = decide(
            &set,
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {hostNetwork: true, securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a, image: x}]}}",
            None,
        );
        assert!(d.allowed);
        assert_eq!(rules(&d.audits), ["HG-IMAGE-02"]);
        assert_eq!(d.mode, Some(Mode::Audit));
    }

    #[test]
    fn profile_policies_veto_and_use_namespace_labels() {
        let set = policies(
            r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: anything}
spec: {}
---
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: baseline}
spec:
  profile: baseline
  match:
    namespaceSelector:
      matchExpressions: [{key: pod-security.kubernetes.io/enforce, operator: In, values: [baseline, restricted]}]
"#,
        );
        let pod = "{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: team}, spec: {hostNetwork: true, securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a, image: x}]}}";
        assert_eq!(decide(&set, pod, None).policy.as_deref(), Some("anything"));
        let labels = BTreeMap::from([(
            "pod-security.kubernetes.io/enforce".to_owned(),
            "baseline".to_owned(),
        )]);
        let d = decide(&set, pod, Some(&labels));
        assert!(!d.allowed);
        assert_eq!(rules(&d.denials), ["HP-PSA-01"]);
        assert_eq!(
            d.denials[0].message,
            "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)"
        );
        assert_eq!(d.denials[0].policy.as_deref(), Some("baseline"));
    }

    #[test]
    fn structural_errors_are_always_refused() {
        let set = policies(
            "{apiVersion: hostgate.io/v1alpha1, kind: HostProcessPolicy, metadata: {name: anything}, spec: {}}",
        );
        let d = decide(
            &set,
            "{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: ds}, spec: {selector: {}, template: {spec: {securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a, image: x}]}}}}",
            None,
        );
        assert!(!d.allowed);
        assert_eq!(rules(&d.denials), ["HP-API-03"]);
        assert_eq!(d.denials[0].path, "spec.template.spec.hostNetwork");
        assert_eq!(d.policy, None);
    }

    #[test]
    fn service_account_wildcards_and_selectors_match() {
        let set = policies(
            "{apiVersion: hostgate.io/v1alpha1, kind: HostProcessPolicy, metadata: {name: sys}, spec: {match: {serviceAccounts: ['kube-system/*'], namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}}}",
        );
        let pod = |ns: &str| {
            format!(
                "{{apiVersion: v1, kind: Pod, metadata: {{name: p, namespace: {ns}}}, spec: {{serviceAccountName: whatever, hostNetwork: true, securityContext: {{windowsOptions: {{hostProcess: true}}}}, containers: [{{name: a, image: x}}]}}}}"
            )
        };
        assert!(decide(&set, &pod("kube-system"), None).allowed);
        assert!(!decide(&set, &pod("default"), None).allowed);
    }

    #[test]
    fn inherit_user_annotation_replaces_the_user_check_when_allowed() {
        let set = policies(
            "{apiVersion: hostgate.io/v1alpha1, kind: HostProcessPolicy, metadata: {name: sys}, spec: {allow: {runAsUserNames: ['NT AUTHORITY\\Local service'], annotations: [microsoft.com/hostprocess-inherit-user]}}}",
        );
        let d = decide(
            &set,
            "{apiVersion: v1, kind: Pod, metadata: {name: p, annotations: {microsoft.com/hostprocess-inherit-user: 'true'}}, spec: {hostNetwork: true, securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a, image: x}]}}",
            None,
        );
        assert!(d.allowed, "{d:?}");
    }

    #[test]
    fn unset_user_is_reported_once_at_pod_level() {
        let set = policies(
            "{apiVersion: hostgate.io/v1alpha1, kind: HostProcessPolicy, metadata: {name: p}, spec: {allow: {runAsUserNames: ['NT AUTHORITY\\Local service']}}}",
        );
        let d = decide(
            &set,
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {hostNetwork: true, securityContext: {windowsOptions: {hostProcess: true}}, initContainers: [{name: i, image: x}], containers: [{name: a, image: x}, {name: b, image: x, securityContext: {windowsOptions: {runAsUserName: 'NT AUTHORITY\\Local service'}}}]}}",
            None,
        );
        assert_eq!(rules(&d.denials), ["HG-USER-01"]);
        assert_eq!(d.denials[0].containers, ["i", "a"]);
        assert_eq!(
            d.denials[0].path,
            "spec.securityContext.windowsOptions.runAsUserName"
        );
    }
}
