//! What the engine concludes: findings (rule id, field path, containers, message) and the
//! decision that names the admitting policy or every reason for refusal.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::policy::Mode;

/// One rule that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Rule id: `HP-API-…` and `HP-PSA-01` (`docs/rules.md`), `HG-…` for hostgate's
    /// own policy constraints.
    pub rule: &'static str,
    /// Field path in the object, in the apiserver's notation (`spec.containers[0].image`).
    pub path: String,
    /// Names of the containers concerned (empty when the finding is about the pod as a whole).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    /// What is wrong. For the `HP-API` rules this is the apiserver's own text after the path
    /// (`Invalid value: false: hostNetwork must be true …`).
    pub message: String,
    /// The policy whose constraint this is, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Arc<str>>,
}

impl Finding {
    /// A finding that belongs to no policy.
    pub fn new(rule: &'static str, path: String, message: String) -> Self {
        Finding {
            rule,
            path,
            containers: Vec::new(),
            message,
            policy: None,
        }
    }

    /// Names the containers concerned.
    #[must_use]
    pub fn with_containers(mut self, containers: Vec<String>) -> Self {
        self.containers = containers;
        self
    }

    /// Attributes the finding to a policy.
    #[must_use]
    pub fn with_policy(mut self, policy: &Arc<str>) -> Self {
        self.policy = Some(Arc::clone(policy));
        self
    }
}

/// `[RULE] path: message`, plus the policy and containers when known.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.rule, self.path, self.message)?;
        match (&self.policy, self.containers.as_slice()) {
            (None, []) => Ok(()),
            (Some(p), []) => write!(f, " (policy {p})"),
            (None, names) => write!(f, " ({})", ContainerList(names)),
            (Some(p), names) => write!(f, " (policy {p}; {})", ContainerList(names)),
        }
    }
}

/// `container "a"` / `containers "a", "b"`
#[derive(Debug, Clone, Copy)]
pub struct ContainerList<'a>(pub &'a [String]);

impl fmt::Display for ContainerList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Names shown before the rest is counted, so that a pod with thousands of containers
        /// still gets a readable message.
        const SHOWN: usize = 10;
        let noun = if self.0.len() == 1 {
            "container"
        } else {
            "containers"
        };
        f.write_str(noun)?;
        for (i, name) in self.0.iter().take(SHOWN).enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}\"{name}\"")?;
        }
        if self.0.len() > SHOWN {
            write!(f, " and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// The outcome of evaluating one pod (or pod template).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Whether the object may be admitted.
    pub allowed: bool,
    /// Whether the pod asks for HostProcess power (pod level, any container, or a privileged
    /// `microsoft.com/hostprocess-*` annotation).
    pub host_process: bool,
    /// The policy that admitted a HostProcess pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Arc<str>>,
    /// The mode of the admitting policy (a `Warn` or `Audit` policy admits with findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Every reason the object is refused (empty when allowed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denials: Vec<Finding>,
    /// Findings of `Warn`-mode policies: returned to the user as warnings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Finding>,
    /// Findings of `Audit`-mode policies: recorded in the audit log only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audits: Vec<Finding>,
}

impl Decision {
    /// Every finding of the decision, denials first.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.denials
            .iter()
            .chain(&self.warnings)
            .chain(&self.audits)
    }

    /// A one-line summary for logs and admission responses: the admitting policy, or the rule ids
    /// and paths of every denial.
    pub fn summary(&self) -> String {
        if self.allowed {
            return match (&self.policy, self.host_process) {
                (Some(p), _) => format!("HostProcess pod admitted by policy \"{p}\""),
                (None, true) => "allowed".to_owned(),
                (None, false) => "not a HostProcess pod".to_owned(),
            };
        }
        let mut out = String::from("denied: ");
        for (i, f) in self.denials.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            out.push_str(&f.to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_display_names_rule_path_policy_and_containers() {
        let policy: Arc<str> = Arc::from("csi-proxy");
        let f = Finding::new(
            "HG-IMAGE-01",
            "spec.containers[0].image".into(),
            "image \"x\" is not allowed".into(),
        )
        .with_policy(&policy)
        .with_containers(vec!["a".into(), "b".into()]);
        assert_eq!(
            f.to_string(),
            "[HG-IMAGE-01] spec.containers[0].image: image \"x\" is not allowed (policy csi-proxy; containers \"a\", \"b\")"
        );
        let g = Finding::new("HP-API-02", "spec".into(), "Invalid value: \"\": x".into())
            .with_containers(vec!["a".into()]);
        assert_eq!(
            g.to_string(),
            "[HP-API-02] spec: Invalid value: \"\": x (container \"a\")"
        );
        let many: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
        assert_eq!(
            ContainerList(&many).to_string(),
            "containers \"c0\", \"c1\", \"c2\", \"c3\", \"c4\", \"c5\", \"c6\", \"c7\", \"c8\", \"c9\" and 2 more"
        );
    }
}
