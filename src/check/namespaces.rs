//! Namespace labels for `namespaceSelector`s, from `--namespace-labels FILE` and
//! `--namespace-label ns:key=value`.
//!
//! The file holds either a map `{namespace: {key: value}}`, or `v1 Namespace` objects (several
//! documents, a YAML list, or a `kind: List` / `NamespaceList`), as `kubectl get ns -o yaml`
//! prints them.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::manifest;

/// Labels by namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceLabels(BTreeMap<String, BTreeMap<String, String>>);

impl NamespaceLabels {
    /// No labels known.
    pub fn new() -> Self {
        Self::default()
    }

    /// The labels of `namespace`, if any are known.
    pub fn get(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.0.get(namespace)
    }

    /// Sets one label.
    pub fn insert(&mut self, namespace: &str, key: &str, value: &str) {
        self.0
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
    }

    /// Adds (or overrides) every label of `other`.
    pub fn merge(&mut self, other: NamespaceLabels) {
        for (ns, labels) in other.0 {
            self.0.entry(ns).or_default().extend(labels);
        }
    }

    /// Makes `namespace` known, with no labels yet.
    pub fn declare(&mut self, namespace: &str) {
        self.0.entry(namespace.to_owned()).or_default();
    }

    /// Parses `ns:key=value` (the value may be empty).
    pub fn parse_flag(flag: &str) -> Result<(String, String, String), String> {
        let bad = || format!("{flag:?} is not <namespace>:<key>=<value>");
        let (ns, label) = flag.split_once(':').ok_or_else(bad)?;
        let (key, value) = label.split_once('=').ok_or_else(bad)?;
        if ns.is_empty() || key.is_empty() {
            return Err(bad());
        }
        Ok((ns.to_owned(), key.to_owned(), value.to_owned()))
    }

    /// Reads a labels file. Errors name the file, document and field.
    pub fn load(path: &Path) -> Result<Self, String> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| format!("{name}: {e}"))?;
        if meta.len() > manifest_limit() {
            return Err(format!(
                "{name}: {} bytes is larger than the {}-byte limit for namespace files",
                meta.len(),
                manifest_limit()
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
        Self::parse(&bytes, &name)
    }

    /// Reads labels from YAML or JSON text; `source` names it in errors.
    pub fn parse(bytes: &[u8], source: &str) -> Result<Self, String> {
        let (docs, err) = manifest::read_documents(bytes);
        if let Some(e) = err {
            return Err(format!("{source}: {e}"));
        }
        let mut out = NamespaceLabels::new();
        for doc in docs {
            let at = |path: &str, msg: &str| {
                let sep = if path.is_empty() { "" } else { ": " };
                format!("{source}: document {}{sep}{path}: {msg}", doc.index)
            };
            match &doc.value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        out.add_namespace(item, &format!("[{i}]"))
                            .map_err(|(p, m)| at(&p, &m))?;
                    }
                }
                Value::Object(map)
                    if map.contains_key("kind") || map.contains_key("apiVersion") =>
                {
                    match map.get("kind").and_then(Value::as_str) {
                        Some("List" | "NamespaceList") => {
                            let items = map
                                .get("items")
                                .and_then(Value::as_array)
                                .ok_or_else(|| at("items", "expected a list of Namespaces"))?;
                            for (i, item) in items.iter().enumerate() {
                                out.add_namespace(item, &format!("items[{i}]"))
                                    .map_err(|(p, m)| at(&p, &m))?;
                            }
                        }
                        _ => out
                            .add_namespace(&doc.value, "")
                            .map_err(|(p, m)| at(&p, &m))?,
                    }
                }
                Value::Object(map) => {
                    for (ns, labels) in map {
                        out.declare(ns);
                        let labels = match labels {
                            Value::Null => continue,
                            Value::Object(l) => l,
                            _ => return Err(at(ns, "expected a map of labels")),
                        };
                        for (k, v) in labels {
                            let v = label_value(v)
                                .ok_or_else(|| at(&format!("{ns}.{k}"), "expected a string"))?;
                            out.insert(ns, k, &v);
                        }
                    }
                }
                _ => {
                    return Err(at(
                        "",
                        "expected a map {namespace: {key: value}} or Namespace objects",
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Adds one `v1 Namespace` object found at `path`.
    fn add_namespace(&mut self, value: &Value, path: &str) -> Result<(), (String, String)> {
        let field = |f: &str| {
            if path.is_empty() {
                f.to_owned()
            } else {
                format!("{path}.{f}")
            }
        };
        let kind = value.get("kind").and_then(Value::as_str);
        if kind != Some("Namespace") {
            return Err((
                field("kind"),
                format!("expected \"Namespace\", found {kind:?}"),
            ));
        }
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                (
                    field("metadata.name"),
                    "a Namespace needs a name".to_owned(),
                )
            })?;
        self.declare(name);
        match value.pointer("/metadata/labels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let v = label_value(v).ok_or_else(|| {
                        (
                            field(&format!("metadata.labels.{k}")),
                            "expected a string".to_owned(),
                        )
                    })?;
                    self.insert(name, k, &v);
                }
            }
            Some(_) => {
                return Err((
                    field("metadata.labels"),
                    "expected a map of labels".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

/// Label values are strings; YAML writes `enabled: true` or `version: 1` easily, so scalars are
/// taken as their text.
fn label_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn manifest_limit() -> u64 {
    super::input::DEFAULT_MAX_FILE_SIZE
}

impl FromIterator<(String, BTreeMap<String, String>)> for NamespaceLabels {
    fn from_iter<I: IntoIterator<Item = (String, BTreeMap<String, String>)>>(iter: I) -> Self {
        NamespaceLabels(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(
            NamespaceLabels::parse_flag(
                "kube-system:pod-security.kubernetes.io/enforce=privileged"
            ),
            Ok((
                "kube-system".into(),
                "pod-security.kubernetes.io/enforce".into(),
                "privileged".into()
            ))
        );
        assert_eq!(
            NamespaceLabels::parse_flag("ns:k="),
            Ok(("ns".into(), "k".into(), String::new()))
        );
        for bad in ["ns", "ns:k", ":k=v", "ns:=v"] {
            assert!(NamespaceLabels::parse_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn map_form() {
        let l = NamespaceLabels::parse(
            b"kube-system: {pod-security.kubernetes.io/enforce: privileged, n: 1}\nempty:\n",
            "ns.yaml",
        )
        .expect("parses");
        let ks = l.get("kube-system").expect("known");
        assert_eq!(ks["pod-security.kubernetes.io/enforce"], "privileged");
        assert_eq!(ks["n"], "1");
        assert_eq!(l.get("empty").map(BTreeMap::len), Some(0));
        assert_eq!(l.get("other"), None);
    }

    #[test]
    fn namespace_objects_lists_and_documents() {
        let text = br#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: a, labels: {team: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
---
- apiVersion: v1
  kind: Namespace
  metadata: {name: c, labels: {env: prod}}
"#;
        let l = NamespaceLabels::parse(text, "ns.yaml").expect("parses");
        assert_eq!(l.get("a").map(|m| m["team"].as_str()), Some("x"));
        assert_eq!(l.get("b").map(BTreeMap::len), Some(0));
        assert_eq!(l.get("c").map(|m| m["env"].as_str()), Some("prod"));
    }

    #[test]
    fn errors_name_document_and_field() {
        let err = NamespaceLabels::parse(
            b"a: {x: 1}\n---\nkind: List\nitems:\n- kind: Namespace\n  metadata: {labels: {}}\n",
            "ns.yaml",
        )
        .expect_err("no name");
        assert_eq!(
            err,
            "ns.yaml: document 2: items[0].metadata.name: a Namespace needs a name"
        );
        let err = NamespaceLabels::parse(b"a: [x]\n", "ns.yaml").expect_err("not a map");
        assert_eq!(err, "ns.yaml: document 1: a: expected a map of labels");
        let err = NamespaceLabels::parse(b"kind: Pod\n", "ns.yaml").expect_err("not a ns");
        assert!(
            err.starts_with("ns.yaml: document 1: kind: expected \"Namespace\""),
            "{err}"
        );
        let err = NamespaceLabels::parse(b"a: [\n", "ns.yaml").expect_err("syntax");
        assert!(err.starts_with("ns.yaml: document 1: "), "{err}");
    }
}
