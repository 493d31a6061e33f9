//! Defaulting of HostProcess pods: the fields people get wrong, filled in so that the pod works
//! on the node, and never in a way the apiserver would reject (HP-API-08 in `docs/rules.md`).
//!
//! 1. Pod-level `hostProcess: true` when every container sets it (kubelet bug #110140: some
//!    releases only honoured the pod-level value).
//! 2. Pod-level `runAsUserName` when some container would otherwise run as the image's default
//!    user, which HostProcess containers cannot use: the admitting policy's default, else the least
//!    privileged account `NT AUTHORITY\Local service`.
//! 3. The `NT AUTHORITY` domain spelled exactly so (the node compares it case-sensitively).
//! 4. `nodeSelector: {kubernetes.io/os: windows}` when no OS is selected.
//! 5. The admitting policy's default limits on init and regular containers that set none (they
//!    become the job object's limits) — unless the container requests more, which the apiserver
//!    would refuse.
//!
//! 6. When told to ([`DefaultingOptions::runtime_class`], `hostgate serve --runtime-class`), the
//!    RuntimeClass whose handler checks the pod again on the node, for a pod that names none, and
//!    only if a policy then admits it. Never by default: the apiserver refuses a pod that names a
//!    RuntimeClass that does not exist.
//!
//! `hostNetwork` is never defaulted (KEP-1981 keeps it explicit), nor `spec.os`.
//!
//! The policy whose defaults apply is the first matching policy that admits the defaulted pod, so
//! defaulting and admission agree: [`default_workload`] tries each in turn. When none admits
//! it, the first matching policy's defaults apply, so findings name only what defaulting cannot
//! fix.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, EphemeralContainer, PodSecurityContext, PodSpec, ResourceRequirements,
    SecurityContext, WindowsSecurityContextOptions,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use crate::decision::Decision;
use crate::engine::{EvalContext, evaluate};
use crate::object::Workload;
use crate::pod::{PodView, SpecPath};
use crate::policy::{DefaultsSpec, LEAST_PRIVILEGE_USER, PolicySet};
use crate::quantity::Quantity;
use crate::rules::structural;

/// The node selector label for the operating system.
pub const OS_LABEL: &str = "kubernetes.io/os";
const NT_AUTHORITY: &str = "NT AUTHORITY";

/// The fields of a pod spec that [`apply`] may change, kept to undo a policy's defaults that do
/// not lead to admission. Trying each policy on a copy of the whole object cost a copy per
/// matching policy, and a decoded `Container` is 2,144 bytes whatever it holds: with 4,000
/// containers, 8.6 MB per policy tried.
struct Undo {
    security_context: Option<PodSecurityContext>,
    node_selector: Option<BTreeMap<String, String>>,
    runtime_class_name: Option<String>,
    init_containers: Option<Vec<ContainerFields>>,
    containers: Vec<ContainerFields>,
}

/// What [`apply`] may change in a container.
type ContainerFields = (Option<SecurityContext>, Option<ResourceRequirements>);

impl Undo {
    fn take(spec: &PodSpec) -> Self {
        let fields = |c: &Container| (c.security_context.clone(), c.resources.clone());
        Undo {
            security_context: spec.security_context.clone(),
            node_selector: spec.node_selector.clone(),
            runtime_class_name: spec.runtime_class_name.clone(),
            init_containers: spec
                .init_containers
                .as_ref()
                .map(|list| list.iter().map(fields).collect()),
            containers: spec.containers.iter().map(fields).collect(),
        }
    }

    fn restore(self, spec: &mut PodSpec) {
        spec.security_context = self.security_context;
        spec.node_selector = self.node_selector;
        spec.runtime_class_name = self.runtime_class_name;
        let put = |list: &mut Vec<Container>, saved: Vec<ContainerFields>| {
            for (c, (security_context, resources)) in list.iter_mut().zip(saved) {
                c.security_context = security_context;
                c.resources = resources;
            }
        };
        match self.init_containers {
            Some(saved) => put(spec.init_containers.get_or_insert_with(Vec::new), saved),
            None => spec.init_containers = None,
        }
        put(&mut spec.containers, self.containers);
    }
}

/// One field hostgate filled in or corrected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Field path, in the apiserver's notation.
    pub path: String,
    /// What was done.
    pub description: String,
    /// The field was there and was corrected (not filled in).
    #[serde(skip)]
    pub corrected: bool,
}

/// The outcome of defaulting a workload.
#[derive(Debug, Clone, Default)]
pub struct Defaulted {
    /// What changed (empty when nothing did).
    pub changes: Vec<Change>,
    /// The policy whose defaults were applied, when one admits the defaulted pod.
    pub policy: Option<Arc<str>>,
    /// The decision on the defaulted workload.
    pub decision: Decision,
}

/// What defaulting does besides the policies' own defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultingOptions<'a> {
    /// The RuntimeClass given to a HostProcess pod that names none, when a policy admits the pod
    /// with it (`hostgate serve --runtime-class`). The webhook passes it for pods being created
    /// and for pod templates only: `runtimeClassName` cannot change on a pod that exists.
    pub runtime_class: Option<&'a str>,
}

/// Defaults a workload in place for the policies in `set`, and evaluates the result.
///
/// Pods that do not set `hostProcess` anywhere, Linux pods, and pods the apiserver will refuse
/// anyway (structural errors) are left alone.
pub fn default_workload(
    set: &PolicySet,
    workload: &mut Workload,
    ctx: &EvalContext<'_>,
) -> Defaulted {
    default_workload_with(set, workload, ctx, DefaultingOptions::default())
}

/// [`default_workload`], with the defaults that depend on how the webhook is configured. The
/// RuntimeClass is part of each admitting policy's candidate (a policy that requires it then
/// admits a pod that names none), and it is never set when no policy admits the pod.
pub fn default_workload_with(
    set: &PolicySet,
    workload: &mut Workload,
    ctx: &EvalContext<'_>,
    options: DefaultingOptions<'_>,
) -> Defaulted {
    let Some(view) = workload.pod() else {
        return Defaulted::default();
    };
    let eligible = view.has_host_process_setting() && view.os_name() != Some("linux") && {
        let mut errors = Vec::new();
        structural::check(&view, ctx.structural, &mut errors);
        errors.is_empty()
    };
    if !eligible {
        let decision = evaluate(set, &view, ctx);
        return Defaulted {
            decision,
            ..Defaulted::default()
        };
    }
    let path = view.path;
    let service_account = view.service_account().to_owned();

    // Try each matching policy's defaults; keep the first that leads to admission by it. The
    // decision on the first policy's defaults alone is kept: it is the answer when none admits.
    let mut first_decision: Option<Decision> = None;
    let mut first_tried = false;
    for policy in set.admitting() {
        if !policy.matches(ctx.namespace, ctx.namespace_labels, &service_account) {
            continue;
        }
        let Some((spec, _)) = workload.pod_spec_mut() else {
            break;
        };
        let undo = Undo::take(spec);
        let mut changes = apply(spec, path, Some(policy.defaults()));
        let policy_changes = changes.len();
        if let Some(class) = options.runtime_class {
            runtime_class(spec, path, class, &mut changes);
        }
        let Some(view) = workload.pod() else {
            break;
        };
        let decision = evaluate(set, &view, ctx);
        if decision.allowed && decision.policy.as_ref() == Some(policy.name()) {
            return Defaulted {
                changes,
                policy: Some(policy.name().clone()),
                decision,
            };
        }
        if !first_tried && changes.len() == policy_changes {
            first_decision = Some(decision);
        }
        first_tried = true;
        if let Some((spec, _)) = workload.pod_spec_mut() {
            undo.restore(spec);
        }
    }

    // No policy admits it: apply the first matching policy's defaults (or only the
    // policy-independent ones), so that the findings name only what defaulting cannot fix. No
    // RuntimeClass: it routes approved pods only.
    let first = set
        .admitting()
        .iter()
        .find(|p| p.matches(ctx.namespace, ctx.namespace_labels, &service_account));
    let changes = match workload.pod_spec_mut() {
        Some((spec, _)) => apply(spec, path, first.map(|p| p.defaults())),
        None => Vec::new(),
    };
    // The same object the first policy's try judged, unless the RuntimeClass was part of it.
    let decision = match (first_decision, workload.pod()) {
        (Some(decision), _) => decision,
        (None, Some(view)) => evaluate(set, &view, ctx),
        (None, None) => Decision::default(),
    };
    Defaulted {
        changes,
        policy: None,
        decision,
    }
}

/// Applies the defaults to one pod spec at `path`; returns what changed.
pub fn apply(spec: &mut PodSpec, path: SpecPath, defaults: Option<&DefaultsSpec>) -> Vec<Change> {
    let mut changes = Vec::new();
    pod_host_process(spec, path, &mut changes);
    run_as_user_name(spec, path, defaults, &mut changes);
    node_selector(spec, path, &mut changes);
    if let Some(d) = defaults {
        limits(spec, path, &d.limits, &mut changes);
    }
    changes
}

/// Names `class` as the pod's RuntimeClass when it names none.
fn runtime_class(spec: &mut PodSpec, path: SpecPath, class: &str, changes: &mut Vec<Change>) {
    if spec
        .runtime_class_name
        .as_deref()
        .is_some_and(|n| !n.is_empty())
    {
        return;
    }
    spec.runtime_class_name = Some(class.to_owned());
    changes.push(Change {
        path: path.field("runtimeClassName"),
        description: format!(
            "set to {class:?}: the RuntimeClass whose handler checks approved pods again on the node"
        ),
        corrected: false,
    });
}

fn container_host_process(c: &Container) -> Option<bool> {
    c.security_context
        .as_ref()?
        .windows_options
        .as_ref()?
        .host_process
}

fn ephemeral_host_process(c: &EphemeralContainer) -> Option<bool> {
    c.security_context
        .as_ref()?
        .windows_options
        .as_ref()?
        .host_process
}

fn pod_windows_options(spec: &mut PodSpec) -> &mut WindowsSecurityContextOptions {
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default)
        .windows_options
        .get_or_insert_with(WindowsSecurityContextOptions::default)
}

fn pod_host_process(spec: &mut PodSpec, path: SpecPath, changes: &mut Vec<Change>) {
    let view = PodView::new(spec, None, path);
    if view.pod_host_process().is_some() || view.container_count() == 0 {
        return;
    }
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .all(|c| container_host_process(c) == Some(true))
        && spec
            .ephemeral_containers
            .iter()
            .flatten()
            .all(|c| ephemeral_host_process(c) == Some(true));
    if all {
        pod_windows_options(spec).host_process = Some(true);
        changes.push(Change {
            path: path.field("securityContext.windowsOptions.hostProcess"),
            description: "set to true, as every container sets it".to_owned(),
            corrected: false,
        });
    }
}

fn run_as_user_name(
    spec: &mut PodSpec,
    path: SpecPath,
    defaults: Option<&DefaultsSpec>,
    changes: &mut Vec<Change>,
) {
    // Correct the domain spelling wherever a name is set.
    let user_path = "securityContext.windowsOptions.runAsUserName";
    if let Some(name) = spec
        .security_context
        .as_mut()
        .and_then(|s| s.windows_options.as_mut())
        .and_then(|w| w.run_as_user_name.as_mut())
        && normalize_domain(name)
    {
        changes.push(Change {
            path: path.field(user_path),
            description: format!("domain spelled {NT_AUTHORITY:?}"),
            corrected: true,
        });
    }
    let lists: [(&str, &mut Vec<Container>); 2] = [
        (
            "initContainers",
            spec.init_containers.get_or_insert_with(Vec::new),
        ),
        ("containers", &mut spec.containers),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter_mut().enumerate() {
            if let Some(name) = c
                .security_context
                .as_mut()
                .and_then(|s| s.windows_options.as_mut())
                .and_then(|w| w.run_as_user_name.as_mut())
                && normalize_domain(name)
            {
                changes.push(Change {
                    path: format!("{}.{list}[{i}].{user_path}", path.0),
                    description: format!("domain spelled {NT_AUTHORITY:?}"),
                    corrected: true,
                });
            }
        }
    }
    if spec.init_containers.as_ref().is_some_and(Vec::is_empty) {
        spec.init_containers = None;
    }

    let view = PodView::new(spec, None, path);
    let missing = view
        .containers()
        .any(|c| view.effective_run_as_user_name(&c).is_none());
    if missing {
        let user = defaults
            .and_then(|d| d.run_as_user_name.clone())
            .unwrap_or_else(|| LEAST_PRIVILEGE_USER.to_owned());
        changes.push(Change {
            path: path.field(user_path),
            description: format!(
                "set to {user:?}: containers without one would run as the image's default user"
            ),
            corrected: false,
        });
        pod_windows_options(spec).run_as_user_name = Some(user);
    }
}

/// Rewrites a case variant of `NT AUTHORITY\` to the exact spelling; true if it changed.
fn normalize_domain(name: &mut String) -> bool {
    match name.split_once('\\') {
        Some((domain, user))
            if domain != NT_AUTHORITY && domain.eq_ignore_ascii_case(NT_AUTHORITY) =>
        {
            *name = format!("{NT_AUTHORITY}\\{user}");
            true
        }
        _ => false,
    }
}

fn node_selector(spec: &mut PodSpec, path: SpecPath, changes: &mut Vec<Change>) {
    let selector = spec.node_selector.get_or_insert_with(BTreeMap::new);
    if !selector.contains_key(OS_LABEL) {
        selector.insert(OS_LABEL.to_owned(), "windows".to_owned());
        changes.push(Change {
            path: format!("{}.nodeSelector[{OS_LABEL}]", path.0),
            description: "set to \"windows\": HostProcess containers only run on Windows nodes"
                .to_owned(),
            corrected: false,
        });
    }
}

fn limits(
    spec: &mut PodSpec,
    path: SpecPath,
    defaults: &BTreeMap<String, ApiQuantity>,
    changes: &mut Vec<Change>,
) {
    if defaults.is_empty() {
        return;
    }
    let lists: [(&str, Option<&mut Vec<Container>>); 2] = [
        ("initContainers", spec.init_containers.as_mut()),
        ("containers", Some(&mut spec.containers)),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.into_iter().flatten().enumerate() {
            let resources = c
                .resources
                .get_or_insert_with(ResourceRequirements::default);
            for (resource, value) in defaults {
                let has_limit = resources
                    .limits
                    .as_ref()
                    .is_some_and(|l| l.contains_key(resource));
                if has_limit {
                    continue;
                }
                // A request above the limit would be refused by the apiserver.
                let request_fits = match resources.requests.as_ref().and_then(|r| r.get(resource)) {
                    None => true,
                    Some(req) => match (Quantity::parse(&req.0), Quantity::parse(&value.0)) {
                        (Ok(req), Ok(limit)) => req <= limit,
                        _ => false,
                    },
                };
                if !request_fits {
                    continue;
                }
                resources
                    .limits
                    .get_or_insert_with(BTreeMap::new)
                    .insert(resource.clone(), value.clone());
                changes.push(Change {
                    path: format!("{}.{list}[{i}].resources.limits.{resource}", path.0),
                    description: format!("set to {} (policy default)", value.0),
                    corrected: false,
                });
            }
            if resources == &ResourceRequirements::default() {
                c.resources = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::parse_policies;

    fn workload(yaml: &str) -> Workload {
        let v: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
        Workload::from_value(v).expect("valid").expect("judged")
    }

    fn set(yaml: &str) -> PolicySet {
        let (p, errs) = parse_policies(yaml.as_bytes(), "t");
        assert!(errs.is_empty(), "{errs:?}");
        PolicySet::new(p).expect("set")
    }

    const POLICY: &str = r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: sys}
spec:
  allow: {runAsUserNames: ['NT AUTHORITY\SYSTEM']}
  require: {limits: {cpu: "1", memory: 512Mi}}
  defaults: {runAsUserName: 'NT AUTHORITY\SYSTEM', limits: {cpu: 500m, memory: 256Mi}}
"#;

    #[test]
    fn apply_fills_every_default_but_never_a_limit_below_the_request() {
        let set = set(POLICY);
        let defaults = set.get("sys").expect("policy").defaults().clone();
        let mut w = workload(
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {hostNetwork: true, containers: [{name: a, image: x, securityContext: {windowsOptions: {hostProcess: true}}}, {name: b, image: x, securityContext: {windowsOptions: {hostProcess: true}}, resources: {requests: {cpu: '2'}}}]}}",
        );
        let (spec, path) = w.pod_spec_mut().expect("spec");
        let changes = apply(spec, path, Some(&defaults));
        let paths: Vec<_> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.securityContext.windowsOptions.hostProcess",
                "spec.securityContext.windowsOptions.runAsUserName",
                "spec.nodeSelector[kubernetes.io/os]",
                "spec.containers[0].resources.limits.cpu",
                "spec.containers[0].resources.limits.memory",
                // b requests 2 CPUs: a 500m limit would be refused, so only memory.
                "spec.containers[1].resources.limits.memory",
            ]
        );
    }

    #[test]
    fn without_an_admitting_policy_the_first_matching_policy_defaults_apply() {
        let set = set(POLICY);
        let mut w = workload(
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {hostNetwork: true, containers: [{name: b, image: x, securityContext: {windowsOptions: {hostProcess: true}}, resources: {requests: {cpu: '2'}}}]}}",
        );
        let ctx = EvalContext::new("default");
        let d = default_workload(&set, &mut w, &ctx);
        let paths: Vec<_> = d.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.securityContext.windowsOptions.hostProcess",
                "spec.securityContext.windowsOptions.runAsUserName",
                "spec.nodeSelector[kubernetes.io/os]",
                "spec.containers[0].resources.limits.memory",
            ]
        );
        assert_eq!(d.policy, None);
        assert!(!d.decision.allowed);
        let rules: Vec<_> = d.decision.denials.iter().map(|f| f.rule).collect();
        assert_eq!(
            rules,
            ["HG-LIMITS-01"],
            "only the CPU limit defaulting could not add"
        );
        // The decision kept from the first policy's try is the one on the object as left.
        assert_eq!(d.decision, evaluate(&set, &w.pod().expect("pod"), &ctx));
        // With no matching policy, only the policy-independent defaults apply.
        let mut w = workload(
            "{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: elsewhere}, spec: {hostNetwork: true, containers: [{name: b, image: x, securityContext: {windowsOptions: {hostProcess: true}}}]}}",
        );
        let other = set_in(POLICY, "[only-here]");
        let d = default_workload(&other, &mut w, &EvalContext::new("elsewhere"));
        assert_eq!(d.changes.len(), 3);
        assert_eq!(
            w.pod()
                .and_then(|v| v.windows_options())
                .and_then(|o| o.run_as_user_name.clone()),
            Some(LEAST_PRIVILEGE_USER.to_owned())
        );
    }

    fn set_in(policy: &str, namespaces: &str) -> PolicySet {
        set(&policy.replace(
            "spec:\n",
            &format!("spec:\n  match: {{namespaces: {namespaces}}}\n"),
        ))
    }

    #[test]
    fn first_admitting_policy_wins_and_its_defaults_apply() {
        let set = set(POLICY);
        let mut w = workload(
            "{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: ds}, spec: {selector: {}, template: {spec: {hostNetwork: true, securityContext: {windowsOptions: {hostProcess: true, runAsUserName: 'nt authority\\system'}}, containers: [{name: a, image: x}]}}}}",
        );
        let d = default_workload(&set, &mut w, &EvalContext::new("default"));
        assert_eq!(d.policy.as_deref(), Some("sys"));
        assert!(d.decision.allowed);
        let view = w.pod().expect("pod");
        assert_eq!(
            view.windows_options()
                .and_then(|o| o.run_as_user_name.as_deref()),
            Some("NT AUTHORITY\\system")
        );
        assert_eq!(
            d.changes[0].path,
            "spec.template.spec.securityContext.windowsOptions.runAsUserName"
        );
        let limits = view.spec.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .expect("limits");
        assert_eq!(limits["cpu"].0, "500m");
    }

    /// A policy whose defaults do not lead to admission leaves no trace of them.
    #[test]
    fn undo_restores_what_apply_changed() {
        for spec in [
            "{hostNetwork: true, containers: [{name: a, image: x, securityContext: {windowsOptions: {hostProcess: true, runAsUserName: 'nt authority\\system'}}}, {name: b, image: y, resources: {requests: {cpu: 100m}}, securityContext: {windowsOptions: {hostProcess: true}}}]}",
            "{hostNetwork: true, initContainers: [{name: i, image: z}], containers: [{name: a, image: x}], nodeSelector: {a: b}, securityContext: {windowsOptions: {hostProcess: true}}}",
        ] {
            let original: PodSpec = serde_yaml::from_str(spec).expect("spec");
            let mut changed = original.clone();
            let undo = Undo::take(&changed);
            let defaults: DefaultsSpec = serde_yaml::from_str(
                "{runAsUserName: 'NT AUTHORITY\\SYSTEM', limits: {cpu: 500m, memory: 128Mi}}",
            )
            .expect("defaults");
            let changes = apply(&mut changed, SpecPath::POD, Some(&defaults));
            assert!(!changes.is_empty(), "{spec}");
            assert_ne!(changed, original);
            undo.restore(&mut changed);
            assert_eq!(changed, original, "{spec}");
        }
    }

    #[test]
    fn leaves_other_pods_alone() {
        let set = set(POLICY);
        for yaml in [
            // not HostProcess
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: a}]}}",
            // structurally invalid: the apiserver refuses it anyway
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a}]}}",
            // Linux pod
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {os: {name: linux}, hostNetwork: true, containers: [{name: a, securityContext: {windowsOptions: {hostProcess: true}}}]}}",
        ] {
            let mut w = workload(yaml);
            let before = w.clone();
            let d = default_workload(&set, &mut w, &EvalContext::new("default"));
            assert!(d.changes.is_empty(), "{yaml}");
            assert_eq!(w, before);
        }
    }

    #[test]
    fn the_runtime_class_goes_only_to_pods_a_policy_then_admits() {
        let routed = DefaultingOptions {
            runtime_class: Some("hostgate"),
        };
        let hpc = |extra: &str| {
            workload(&format!(
                "{{apiVersion: v1, kind: Pod, metadata: {{name: p, namespace: ns}}, spec: {{{extra}hostNetwork: true, containers: [{{name: a, image: x, securityContext: {{windowsOptions: {{hostProcess: true}}}}}}]}}}}"
            ))
        };
        let class_of = |w: &Workload| w.pod().and_then(|v| v.spec.runtime_class_name.clone());
        let ctx = EvalContext::new("ns");
        let any = set(POLICY);

        // Admitted and naming none: named, and the change is recorded.
        let mut w = hpc("");
        let d = default_workload_with(&any, &mut w, &ctx, routed);
        assert!(d.decision.allowed, "{:?}", d.decision);
        assert_eq!(class_of(&w).as_deref(), Some("hostgate"));
        assert!(d.changes.iter().any(|c| c.path == "spec.runtimeClassName"));
        // Not told to: nothing.
        let mut w = hpc("");
        default_workload(&any, &mut w, &ctx);
        assert_eq!(class_of(&w), None);
        // A pod that names one keeps it.
        let mut w = hpc("runtimeClassName: other, ");
        default_workload_with(&any, &mut w, &ctx, routed);
        assert_eq!(class_of(&w).as_deref(), Some("other"));
        // No policy admits it: never named.
        let mut w = hpc("");
        let d = default_workload_with(&set_in(POLICY, "[elsewhere]"), &mut w, &ctx, routed);
        assert!(!d.decision.allowed);
        assert_eq!(class_of(&w), None);
        // Not a HostProcess pod: never named.
        let mut w = workload(
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: a}]}}",
        );
        default_workload_with(&any, &mut w, &ctx, routed);
        assert_eq!(class_of(&w), None);

        // A policy that requires the class admits a pod naming none only with the option.
        let requiring = set(&POLICY.replace("allow: {", "allow: {runtimeClassNames: [hostgate], "));
        let mut w = hpc("");
        let d = default_workload(&requiring, &mut w, &ctx);
        let rules: Vec<_> = d.decision.denials.iter().map(|f| f.rule).collect();
        assert_eq!(rules, ["HG-RUNTIME-01"]);
        let mut w = hpc("");
        let d = default_workload_with(&requiring, &mut w, &ctx, routed);
        assert!(d.decision.allowed, "{:?}", d.decision);
        assert_eq!(class_of(&w).as_deref(), Some("hostgate"));
        // A policy that lists another class refuses it, and the pod is left naming none.
        let other = set(&POLICY.replace("allow: {", "allow: {runtimeClassNames: [other], "));
        let mut w = hpc("");
        let d = default_workload_with(&other, &mut w, &ctx, routed);
        let rules: Vec<_> = d.decision.denials.iter().map(|f| f.rule).collect();
        assert_eq!(rules, ["HG-RUNTIME-01"]);
        assert_eq!(class_of(&w), None);
    }

    #[test]
    fn defaulted_pods_pass_the_structural_rules() {
        let set = set(POLICY);
        let mut w = workload(
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {os: {name: windows}, hostNetwork: true, initContainers: [{name: i, securityContext: {windowsOptions: {hostProcess: true}}}], containers: [{name: a, securityContext: {windowsOptions: {hostProcess: true, runAsUserName: 'Nt Authority\\Local service'}}}]}}",
        );
        let d = default_workload(&set, &mut w, &EvalContext::new("default"));
        assert!(!d.changes.is_empty());
        let view = w.pod().expect("pod");
        let mut errors = Vec::new();
        structural::check(&view, Default::default(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }
}
