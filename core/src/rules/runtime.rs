//! `HG-RUNTIME-01` and `HG-RUNTIME-02`: which RuntimeClass an admitted pod runs under.
//!
//! The kubelet hands a pod to the runtime handler of its RuntimeClass, and a pod that names none
//! goes to the node's default handler. hostgate's node check (`containerd-shim-hostgate-v1`)
//! sees only the pods of the `hostgate` handler, so a HostProcess pod that names no RuntimeClass,
//! or another one, would run with an approval nobody on the node verifies. A policy that lists
//! `spec.allow.runtimeClassNames` admits only pods that name one of them; the webhook's
//! `--runtime-class` fills in its class for the pods it approves that name none, before they are
//! judged, so that a policy can require the class without every manifest naming it.

use crate::decision::Finding;
use crate::pod::PodView;
use crate::policy::{AllowSpec, InvalidPolicy};
use crate::rules::ids;

/// The RuntimeClass constraint of one policy.
#[derive(Debug, Clone, Default)]
pub struct RuntimeClassRule {
    allowed: Vec<String>,
}

/// Whether `name` can be a RuntimeClass's name: a lowercase RFC 1123 subdomain, as the
/// apiserver requires of `spec.runtimeClassName`.
pub fn is_runtime_class_name(name: &str) -> bool {
    crate::policy::is_dns1123_subdomain(name)
}

impl RuntimeClassRule {
    /// Takes `spec.allow.runtimeClassNames`; each must be a RuntimeClass name.
    pub fn compile(allow: &AllowSpec) -> Result<Self, InvalidPolicy> {
        for (i, name) in allow.runtime_class_names.iter().enumerate() {
            if !is_runtime_class_name(name) {
                return Err(InvalidPolicy::new(
                    format!("spec.allow.runtimeClassNames[{i}]"),
                    format!("{name:?} is not a RuntimeClass name (a lowercase RFC 1123 subdomain)"),
                ));
            }
        }
        Ok(RuntimeClassRule {
            allowed: allow.runtime_class_names.clone(),
        })
    }

    /// Appends a finding when the policy lists RuntimeClasses and the pod names none of them.
    pub fn check(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        if self.allowed.is_empty() {
            return;
        }
        let path = pod.path.field("runtimeClassName");
        let allowed = self.allowed.join(", ");
        match pod.spec.runtime_class_name.as_deref() {
            // The finding is about the pod as a whole: no container list.
            None | Some("") => out.push(Finding::new(
                ids::RUNTIME_CLASS_MISSING,
                path,
                format!(
                    "names no RuntimeClass, so it would run outside hostgate's node check; \
                     it must name one of: {allowed}"
                ),
            )),
            Some(name) if !self.allowed.iter().any(|a| a == name) => out.push(Finding::new(
                ids::RUNTIME_CLASS_NOT_ALLOWED,
                path,
                format!(
                    "RuntimeClass {name:?} is not one of the allowed RuntimeClasses: {allowed}"
                ),
            )),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, pod};

    #[test]
    fn table() {
        // (allowed, the pod's runtimeClassName, expected rule)
        let cases: &[(&[&str], Option<&str>, Option<&str>)] = &[
            (&[], None, None),
            (&[], Some("anything"), None),
            (&["hostgate"], Some("hostgate"), None),
            (&["hostgate"], None, Some("HG-RUNTIME-01")),
            (&["hostgate"], Some(""), Some("HG-RUNTIME-01")),
            (
                &["hostgate"],
                Some("runhcs-wcow-process"),
                Some("HG-RUNTIME-02"),
            ),
            // Compared exactly, as the apiserver looks RuntimeClasses up.
            (&["hostgate"], Some("hostgate-v2"), Some("HG-RUNTIME-02")),
            (&["hostgate", "hostgate-v2"], Some("hostgate-v2"), None),
        ];
        for (allowed, name, want) in cases {
            let rule = RuntimeClassRule::compile(&AllowSpec {
                runtime_class_names: allowed.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            })
            .expect("compiles");
            let spec = match name {
                Some(n) => {
                    format!("{{runtimeClassName: '{n}', containers: [{{name: a}}, {{name: b}}]}}")
                }
                None => "{containers: [{name: a}, {name: b}]}".to_owned(),
            };
            let got = findings(&pod(&spec), |v, out| rule.check(v, out));
            let rules: Vec<&str> = got.iter().map(|f| f.rule).collect();
            assert_eq!(
                rules,
                want.iter().copied().collect::<Vec<_>>(),
                "{allowed:?} {name:?}"
            );
            for f in &got {
                assert_eq!(f.path, "spec.runtimeClassName");
                assert!(f.containers.is_empty(), "about the pod as a whole");
            }
        }
    }

    #[test]
    fn names_must_be_runtime_class_names() {
        for (bad, index) in [(&["ok", "Not_A_Name"][..], 1), (&[""][..], 0)] {
            let err = RuntimeClassRule::compile(&AllowSpec {
                runtime_class_names: bad.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            })
            .expect_err("refused");
            assert_eq!(err.path, format!("spec.allow.runtimeClassNames[{index}]"));
        }
        assert!(is_runtime_class_name("hostgate"));
        assert!(is_runtime_class_name("runhcs-wcow.process"));
        assert!(!is_runtime_class_name("Hostgate"));
        assert!(!is_runtime_class_name("-x"));
    }
}
