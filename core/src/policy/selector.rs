//! Label selectors (`matchLabels`, `matchExpressions`) over namespace labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The label every namespace carries with its own name (set by the apiserver since 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A validated selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Validates a selector; errors name the offending field below the selector.
    pub fn compile(sel: &LabelSelector) -> Result<Self, (String, String)> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            let values = e.values.clone().unwrap_or_default();
            let at = |field: &str| format!("matchExpressions[{i}].{field}");
            let req = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err((
                        at("values"),
                        format!("must be non-empty for operator {}", e.operator),
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err((
                        at("values"),
                        format!("must be empty for operator {}", e.operator),
                    ));
                }
                "In" => Requirement::In(e.key.clone(), values),
                "NotIn" => Requirement::NotIn(e.key.clone(), values),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                other => {
                    return Err((
                        at("operator"),
                        format!(
                            "unsupported operator {other:?}: use In, NotIn, Exists or DoesNotExist"
                        ),
                    ));
                }
            };
            if e.key.is_empty() {
                return Err((at("key"), "must not be empty".to_owned()));
            }
            requirements.push(req);
        }
        Ok(Selector { requirements })
    }

    /// Evaluates the selector against a namespace's labels. `labels` may be unknown (`None`);
    /// the namespace's name label is always known.
    pub fn matches(&self, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |key: &str| -> Option<&str> {
            if key == NAMESPACE_NAME_LABEL {
                return Some(namespace);
            }
            labels?.get(key).map(String::as_str)
        };
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| vs.iter().all(|x| x != v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(yaml: &str) -> Result<Selector, (String, String)> {
        let s: LabelSelector = serde_yaml::from_str(yaml).expect("selector parses");
        Selector::compile(&s)
    }

    #[test]
    fn evaluates_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [
            (
                "pod-security.kubernetes.io/enforce".to_owned(),
                "baseline".to_owned(),
            ),
            ("team".to_owned(), "windows".to_owned()),
        ]
        .into();
        let s = sel("{matchExpressions: [{key: pod-security.kubernetes.io/enforce, operator: In, values: [baseline, restricted]}]}")
            .expect("valid");
        assert!(s.matches("ns", Some(&labels)));
        assert!(!s.matches("ns", None));
        let s = sel("{matchLabels: {team: windows}, matchExpressions: [{key: env, operator: DoesNotExist}]}")
            .expect("valid");
        assert!(s.matches("ns", Some(&labels)));
        let s = sel("{matchExpressions: [{key: team, operator: NotIn, values: [windows]}]}")
            .expect("valid");
        assert!(!s.matches("ns", Some(&labels)));
        assert!(s.matches("ns", None));
        let s = sel("{matchLabels: {kubernetes.io/metadata.name: kube-system}}").expect("valid");
        assert!(s.matches("kube-system", None));
        assert!(!s.matches("default", Some(&labels)));
        assert!(sel("{}").expect("valid").matches("any", None));
    }

    #[test]
    fn rejects_invalid_expressions() {
        assert_eq!(
            sel("{matchExpressions: [{key: a, operator: In}]}")
                .err()
                .map(|e| e.0),
            Some("matchExpressions[0].values".to_owned())
        );
        assert_eq!(
            sel("{matchExpressions: [{key: a, operator: Exists, values: [x]}]}")
                .err()
                .map(|e| e.0),
            Some("matchExpressions[0].values".to_owned())
        );
        assert_eq!(
            sel("{matchExpressions: [{key: a, operator: Equals, values: [x]}]}")
                .err()
                .map(|e| e.0),
            Some("matchExpressions[0].operator".to_owned())
        );
    }
}
