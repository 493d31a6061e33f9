//! Validated, ready-to-evaluate policies and the [`PolicySet`].
//!
//! Everything that can be decided once per policy (patterns, selectors, quantities, host path
//! prefixes) is decided here, so that evaluating a pod parses nothing and allocates only for
//! findings. This module validates what belongs to the policy as a whole (name, match, profile,
//! defaults); each constraint family compiles and checks its own part in [`crate::rules`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::model::{HostProcessPolicy, Mode, Profile};
use super::selector::Selector;
use crate::decision::Finding;
use crate::pod::PodView;
use crate::rules::annotations::AnnotationRule;
use crate::rules::ephemeral::{EphemeralRequest, EphemeralRule};
use crate::rules::images::ImageRule;
use crate::rules::limits::{LimitRule, positive_quantity};
use crate::rules::runtime::RuntimeClassRule;
use crate::rules::structural::run_as_user_name_errors;
use crate::rules::users::{LEAST_PRIVILEGE_USER, UserRule, same_account};
use crate::rules::volumes::VolumeRule;

/// A policy that is not valid, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InvalidPolicy {
    /// Field path inside the policy object (`spec.allow.images[2]`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl InvalidPolicy {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidPolicy {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A policy ready for evaluation.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    name: Arc<str>,
    mode: Mode,
    profile: Option<Profile>,
    namespaces: Vec<String>,
    namespace_selector: Option<Selector>,
    service_accounts: Vec<(String, Option<String>)>,
    annotations: AnnotationRule,
    images: ImageRule,
    users: UserRule,
    volumes: VolumeRule,
    limits: LimitRule,
    runtime_class: RuntimeClassRule,
    ephemeral: EphemeralRule,
    source: Arc<HostProcessPolicy>,
}

impl CompiledPolicy {
    /// Validates and compiles a policy object.
    pub fn compile(policy: HostProcessPolicy) -> Result<Self, InvalidPolicy> {
        let name = policy
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| InvalidPolicy::new("metadata.name", "is required"))?;
        if !is_dns1123_subdomain(&name) {
            return Err(InvalidPolicy::new(
                "metadata.name",
                format!("{name:?} must be a lowercase RFC 1123 subdomain"),
            ));
        }
        let spec = &policy.spec;

        if spec.profile.is_some() {
            let defaults = super::model::HostProcessPolicySpec::default();
            for (field, set) in [
                ("spec.allow", spec.allow != defaults.allow),
                ("spec.require", spec.require != defaults.require),
                ("spec.defaults", spec.defaults != defaults.defaults),
            ] {
                if set {
                    return Err(InvalidPolicy::new(
                        field,
                        "cannot be combined with spec.profile: a profile admits no HostProcess pod",
                    ));
                }
            }
        }

        for (i, ns) in spec.match_.namespaces.iter().enumerate() {
            if !is_dns1123_label(ns) {
                return Err(InvalidPolicy::new(
                    format!("spec.match.namespaces[{i}]"),
                    format!("{ns:?} is not a namespace name"),
                ));
            }
        }
        let namespace_selector = spec
            .match_
            .namespace_selector
            .as_ref()
            .map(|s| {
                Selector::compile(s).map_err(|(path, msg)| {
                    InvalidPolicy::new(format!("spec.match.namespaceSelector.{path}"), msg)
                })
            })
            .transpose()?;
        let mut service_accounts = Vec::new();
        for (i, sa) in spec.match_.service_accounts.iter().enumerate() {
            let parsed = sa.split_once('/').and_then(|(ns, name)| {
                let name = (name != "*").then(|| name.to_owned());
                (is_dns1123_label(ns) && name.as_deref().is_none_or(is_dns1123_subdomain))
                    .then(|| (ns.to_owned(), name))
            });
            service_accounts.push(parsed.ok_or_else(|| {
                InvalidPolicy::new(
                    format!("spec.match.serviceAccounts[{i}]"),
                    format!("{sa:?} must be <namespace>/<name> or <namespace>/*"),
                )
            })?);
        }

        let allow = &spec.allow;
        let annotations = AnnotationRule::compile(allow);
        let images = ImageRule::compile(allow, &spec.require)?;
        let users = UserRule::compile(allow)?;
        let volumes = VolumeRule::compile(&allow.volumes)?;
        let limits = LimitRule::compile(&spec.require)?;
        let runtime_class = RuntimeClassRule::compile(allow)?;
        let ephemeral = EphemeralRule::compile(allow.ephemeral_containers.as_ref())?;

        let defaults = &spec.defaults;
        if let Some(user) = &defaults.run_as_user_name {
            if let Some((_, msg)) = run_as_user_name_errors(user).into_iter().next() {
                return Err(InvalidPolicy::new(
                    "spec.defaults.runAsUserName",
                    format!("{user:?}: {msg}"),
                ));
            }
            if !allow.run_as_user_names.is_empty()
                && !allow
                    .run_as_user_names
                    .iter()
                    .any(|u| same_account(u, user))
            {
                return Err(InvalidPolicy::new(
                    "spec.defaults.runAsUserName",
                    format!("{user:?} is not in spec.allow.runAsUserNames"),
                ));
            }
        } else if !allow.run_as_user_names.is_empty()
            && !allow
                .run_as_user_names
                .iter()
                .any(|u| same_account(u, LEAST_PRIVILEGE_USER))
            && spec.profile.is_none()
        {
            // Defaulting would write the least-privilege account, which this policy refuses.
            return Err(InvalidPolicy::new(
                "spec.defaults.runAsUserName",
                format!(
                    "is required when spec.allow.runAsUserNames does not include {LEAST_PRIVILEGE_USER:?}"
                ),
            ));
        }
        for (key, value) in &defaults.limits {
            let path = format!("spec.defaults.limits.{key}");
            if !matches!(key.as_str(), "cpu" | "memory") {
                return Err(InvalidPolicy::new(
                    path,
                    "only cpu and memory can be defaulted",
                ));
            }
            let max = limits.max(key);
            let q = positive_quantity(value, &path)?;
            if let Some((text, max)) = max
                && q > *max
            {
                return Err(InvalidPolicy::new(
                    path,
                    format!("{} exceeds spec.require.limits.{key} ({text})", value.0),
                ));
            }
        }

        Ok(CompiledPolicy {
            name: Arc::from(name),
            mode: spec.mode,
            profile: spec.profile,
            namespaces: spec.match_.namespaces.clone(),
            namespace_selector,
            service_accounts,
            annotations,
            images,
            users,
            volumes,
            limits,
            runtime_class,
            ephemeral,
            source: Arc::new(policy),
        })
    }

    /// A built-in policy that applies `profile` everywhere, in `Enforce` mode
    /// (`hostgate check --profile baseline`).
    pub fn builtin_profile(profile: Profile) -> Self {
        let name = match profile {
            Profile::Baseline => "builtin-baseline",
        };
        let policy = HostProcessPolicy::new(
            name,
            super::model::HostProcessPolicySpec {
                profile: Some(profile),
                ..Default::default()
            },
        );
        CompiledPolicy {
            name: Arc::from(name),
            mode: Mode::Enforce,
            profile: Some(profile),
            namespaces: Vec::new(),
            namespace_selector: None,
            service_accounts: Vec::new(),
            annotations: AnnotationRule::default(),
            images: ImageRule::default(),
            users: UserRule::default(),
            volumes: VolumeRule::default(),
            limits: LimitRule::default(),
            runtime_class: RuntimeClassRule::default(),
            ephemeral: EphemeralRule::default(),
            source: Arc::new(policy),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The policy's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The profile, for restricting policies.
    pub fn profile(&self) -> Option<Profile> {
        self.profile
    }

    /// The policy as written.
    pub fn source(&self) -> &HostProcessPolicy {
        &self.source
    }

    /// The defaults of the policy.
    pub fn defaults(&self) -> &super::model::DefaultsSpec {
        &self.source.spec.defaults
    }

    /// Whether the policy applies to a pod of `service_account` in `namespace`.
    pub fn matches(
        &self,
        namespace: &str,
        namespace_labels: Option<&BTreeMap<String, String>>,
        service_account: &str,
    ) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
            && self
                .namespace_selector
                .as_ref()
                .is_none_or(|s| s.matches(namespace, namespace_labels))
            && (self.service_accounts.is_empty()
                || self.service_accounts.iter().any(|(ns, name)| {
                    ns == namespace && name.as_deref().is_none_or(|n| n == service_account)
                }))
    }

    /// Checks every constraint of an admitting policy; appends what fails to `out`.
    pub fn check(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        let start = out.len();
        self.annotations.check(pod, out);
        self.images.check(pod, out);
        self.users.check(pod, out);
        self.volumes.check(pod, out);
        self.limits.check(pod, out);
        self.runtime_class.check(pod, out);
        if pod.requests_host_process() {
            self.ephemeral.check(pod, out);
        }
        for f in &mut out[start..] {
            f.policy = Some(Arc::clone(&self.name));
        }
    }

    /// The policy's ephemeral-container rule (`spec.allow.ephemeralContainers`).
    pub fn ephemeral(&self) -> &EphemeralRule {
        &self.ephemeral
    }

    /// The node's question for one ephemeral container of a HostProcess pod this policy
    /// admitted: the findings that refuse it (none: allowed). Field paths start at
    /// `ephemeralContainer`.
    pub fn check_ephemeral(&self, request: &EphemeralRequest<'_>) -> Vec<Finding> {
        let mut out = Vec::new();
        let path = |field: &str| {
            if field.is_empty() {
                "ephemeralContainer".to_owned()
            } else {
                format!("ephemeralContainer.{field}")
            }
        };
        self.ephemeral.check_request(request, &path, &mut out);
        for f in &mut out {
            f.policy = Some(Arc::clone(&self.name));
        }
        out
    }
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// An immutable, validated set of policies, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    admitting: Vec<CompiledPolicy>,
    profiles: Vec<CompiledPolicy>,
}

/// Two policies with the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {0:?} is defined more than once")]
pub struct DuplicatePolicy(pub String);

impl PolicySet {
    /// Builds a set; names must be unique.
    pub fn new(policies: Vec<CompiledPolicy>) -> Result<Self, DuplicatePolicy> {
        let mut all = policies;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = all.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(DuplicatePolicy(w[0].name.to_string()));
        }
        let (profiles, admitting) = all.into_iter().partition(|p| p.profile.is_some());
        Ok(PolicySet {
            admitting,
            profiles,
        })
    }

    /// Adds a built-in profile that applies everywhere.
    #[must_use]
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profiles.push(CompiledPolicy::builtin_profile(profile));
        self
    }

    /// Every policy, by value (built-in profiles included).
    pub fn into_policies(self) -> Vec<CompiledPolicy> {
        let mut all = self.admitting;
        all.extend(self.profiles);
        all
    }

    /// Policies that can admit HostProcess pods, by name.
    pub fn admitting(&self) -> &[CompiledPolicy] {
        &self.admitting
    }

    /// Policies that apply a profile, by name.
    pub fn profiles(&self) -> &[CompiledPolicy] {
        &self.profiles
    }

    /// Every policy.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledPolicy> {
        self.admitting.iter().chain(&self.profiles)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.admitting.len() + self.profiles.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A policy by name.
    pub fn get(&self, name: &str) -> Option<&CompiledPolicy> {
        self.iter().find(|p| &*p.name == name)
    }

    /// Whether an ephemeral container may be added to a HostProcess pod of `service_account` in
    /// `namespace`: `Ok` with the first matching admitting policy (by name) that allows it,
    /// else every matching policy's findings (`HG-MATCH-01` when none matches). Profiles admit
    /// nothing, so they allow nothing either.
    pub fn allows_ephemeral(
        &self,
        namespace: &str,
        namespace_labels: Option<&BTreeMap<String, String>>,
        service_account: &str,
        request: &EphemeralRequest<'_>,
    ) -> Result<Arc<str>, Vec<Finding>> {
        let mut refusals = Vec::new();
        for policy in self
            .admitting
            .iter()
            .filter(|p| p.matches(namespace, namespace_labels, service_account))
        {
            let found = policy.check_ephemeral(request);
            if found.is_empty() {
                return Ok(Arc::clone(&policy.name));
            }
            refusals.extend(found);
        }
        if refusals.is_empty() {
            refusals.push(Finding::new(
                crate::rules::ids::NO_POLICY,
                "ephemeralContainer".to_owned(),
                format!(
                    "no HostProcessPolicy admits HostProcess pods in namespace {namespace:?} with service account {service_account:?}"
                ),
            ));
        }
        Err(refusals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<CompiledPolicy, InvalidPolicy> {
        let policy: HostProcessPolicy = serde_yaml::from_str(yaml).expect("policy parses");
        CompiledPolicy::compile(policy)
    }

    fn policy(spec: &str) -> String {
        format!(
            "{{apiVersion: hostgate.io/v1alpha1, kind: HostProcessPolicy, metadata: {{name: p}}, spec: {spec}}}"
        )
    }

    #[test]
    fn refusals_name_the_field_at_fault() {
        // (policy, path of the refusal)
        let cases: &[(String, &str)] = &[
            (
                "{apiVersion: hostgate.io/v1alpha1, kind: HostProcessPolicy, metadata: {}, spec: {}}".to_owned(),
                "metadata.name",
            ),
            (
                "{apiVersion: hostgate.io/v1alpha1, kind: HostProcessPolicy, metadata: {name: Not_DNS}, spec: {}}".to_owned(),
                "metadata.name",
            ),
            (policy("{match: {namespaces: [ok, 'Bad NS']}}"), "spec.match.namespaces[1]"),
            (policy("{match: {serviceAccounts: [kube-system]}}"), "spec.match.serviceAccounts[0]"),
            (policy("{match: {serviceAccounts: ['a/b', 'x/Y_']}}"), "spec.match.serviceAccounts[1]"),
            (
                policy("{match: {namespaceSelector: {matchExpressions: [{key: k, operator: Sideways}]}}}"),
                "spec.match.namespaceSelector.matchExpressions[0].operator",
            ),
            (policy("{profile: baseline, allow: {images: [x]}}"), "spec.allow"),
            (policy("{profile: baseline, defaults: {runAsUserName: 'NT AUTHORITY\\SYSTEM'}}"), "spec.defaults"),
            (
                policy("{allow: {runAsUserNames: ['NT AUTHORITY\\SYSTEM']}}"),
                "spec.defaults.runAsUserName",
            ),
            (
                policy("{allow: {runAsUserNames: ['NT AUTHORITY\\SYSTEM']}, defaults: {runAsUserName: 'NT AUTHORITY\\Local service'}}"),
                "spec.defaults.runAsUserName",
            ),
            (policy("{defaults: {limits: {storage: 1Gi}}}"), "spec.defaults.limits.storage"),
            (policy("{defaults: {limits: {cpu: '0'}}}"), "spec.defaults.limits.cpu"),
            (
                policy("{require: {limits: {memory: 256Mi}}, defaults: {limits: {memory: 512Mi}}}"),
                "spec.defaults.limits.memory",
            ),
            // Each family reports its own field.
            (policy("{allow: {images: ['']}}"), "spec.allow.images[0]"),
            (policy("{allow: {volumes: {types: [nfs, bogus]}}}"), "spec.allow.volumes.types[1]"),
            (policy("{require: {limits: {cpu: '-1'}}}"), "spec.require.limits.cpu"),
            (
                policy("{allow: {runtimeClassNames: [hostgate, 'Bad Name']}}"),
                "spec.allow.runtimeClassNames[1]",
            ),
        ];
        for (yaml, path) in cases {
            let err = compile(yaml).expect_err(yaml);
            assert_eq!(err.path, *path, "{yaml}: {err}");
        }
    }

    #[test]
    fn valid_policies_compile() {
        for yaml in [
            policy("{}"),
            policy("{profile: baseline, mode: Warn}"),
            policy(
                "{match: {namespaces: [kube-system], serviceAccounts: ['kube-system/*', 'kube-system/csi-proxy']}}",
            ),
            policy(
                "{allow: {runAsUserNames: ['NT AUTHORITY\\SYSTEM']}, defaults: {runAsUserName: 'nt authority\\system'}}",
            ),
            policy(
                "{require: {limits: {cpu: '1', memory: 256Mi}}, defaults: {limits: {cpu: 500m, memory: 256Mi}}}",
            ),
        ] {
            compile(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        }
    }

    #[test]
    fn matching_table() {
        let p = compile(&policy(
            "{match: {namespaces: [kube-system, agents], serviceAccounts: ['kube-system/csi-proxy', 'agents/*']}}",
        ))
        .expect("compiles");
        // (namespace, service account, matches)
        for (ns, sa, want) in [
            ("kube-system", "csi-proxy", true),
            ("kube-system", "default", false),
            ("agents", "anything", true),
            ("default", "csi-proxy", false),
        ] {
            assert_eq!(p.matches(ns, None, sa), want, "{ns}/{sa}");
        }
        let any = compile(&policy("{}")).expect("compiles");
        assert!(any.matches("whatever", None, "default"));
        let labelled = compile(&policy(
            "{match: {namespaceSelector: {matchLabels: {hostgate.io/agents: allowed}}}}",
        ))
        .expect("compiles");
        let labels: BTreeMap<String, String> =
            [("hostgate.io/agents".to_owned(), "allowed".to_owned())].into();
        assert!(labelled.matches("ns", Some(&labels), "default"));
        assert!(!labelled.matches("ns", None, "default"));
    }

    #[test]
    fn findings_carry_the_policy_name() {
        let p = compile(&policy("{allow: {images: [good]}}")).expect("compiles");
        let spec: k8s_openapi::api::core::v1::PodSpec =
            serde_yaml::from_str("{containers: [{name: a, image: bad}]}").expect("spec");
        let view = PodView::new(&spec, None, crate::pod::SpecPath::POD);
        let mut out = Vec::new();
        p.check(&view, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].policy.as_deref(), Some("p"));
    }

    /// The node's question for one ephemeral container: the first matching policy that allows
    /// it, else every matching policy's reasons, else HG-MATCH-01.
    #[test]
    fn ephemeral_containers_are_allowed_by_a_matching_policy_only() {
        let none = compile(&policy("{match: {namespaces: [a]}}")).expect("compiles");
        let debug = compile(
            "{apiVersion: hostgate.io/v1alpha1, kind: HostProcessPolicy, metadata: {name: q}, spec: {match: {namespaces: [a]}, allow: {ephemeralContainers: {images: ['dbg:*'], commands: [[cmd.exe, /c, ipconfig]]}}}}",
        )
        .expect("compiles");
        let set = PolicySet::new(vec![none, debug]).expect("set");
        let argv = ["cmd.exe", "/c", "ipconfig"].map(str::to_owned);
        let request = EphemeralRequest {
            image: "dbg:1",
            argv: &argv,
            run_as_user_name: None,
        };
        assert_eq!(
            set.allows_ephemeral("a", None, "default", &request)
                .as_deref(),
            Ok("q")
        );
        let shell = ["cmd.exe"].map(str::to_owned);
        let refused = set
            .allows_ephemeral(
                "a",
                None,
                "default",
                &EphemeralRequest {
                    argv: &shell,
                    ..request
                },
            )
            .expect_err("refused");
        let ids: Vec<(&str, Option<&str>)> = refused
            .iter()
            .map(|f| (f.rule, f.policy.as_deref()))
            .collect();
        assert_eq!(
            ids,
            [
                ("HG-EPHEMERAL-01", Some("p")),
                ("HG-EPHEMERAL-03", Some("q"))
            ]
        );
        assert_eq!(refused[1].path, "ephemeralContainer.command");
        let elsewhere = set
            .allows_ephemeral("b", None, "default", &request)
            .expect_err("no policy matches");
        assert_eq!(elsewhere[0].rule, "HG-MATCH-01");
    }

    #[test]
    fn sets_refuse_duplicates_and_keep_profiles_apart() {
        let a = compile(&policy("{}")).expect("compiles");
        assert_eq!(
            PolicySet::new(vec![a.clone(), a.clone()]).expect_err("duplicate"),
            DuplicatePolicy("p".to_owned())
        );
        let set = PolicySet::new(vec![a])
            .expect("set")
            .with_profile(Profile::Baseline);
        assert_eq!(set.admitting().len(), 1);
        assert_eq!(set.profiles().len(), 1);
        assert_eq!(set.len(), 2);
        assert!(set.get("builtin-baseline").is_some());
    }
}
