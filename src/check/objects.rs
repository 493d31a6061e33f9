//! From documents to objects: `List` expansion, skipped kinds, and reading judged objects the
//! fast way (typed deserialization straight from the parsed tree) with the slow way
//! ([`Workload::from_value`], which names the field at fault) as the reference for every error.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::yaml::Node;
use crate::object::{Kind, ObjectError, Workload};

/// A parsed document tree: the fast path's [`Node`] or a `serde_json::Value`.
pub(crate) trait Tree: Sized {
    /// The value of `key` in a mapping.
    fn field(&self, key: &str) -> Option<&Self>;
    /// The string, if this is one.
    fn text(&self) -> Option<&str>;
    /// The items, if this is a sequence.
    fn items(&self) -> Option<&[Self]>;
    /// Whether this is null.
    fn is_null(&self) -> bool;
    /// The equivalent JSON value.
    fn to_value(&self) -> Value;
    /// Reads a judged object of `kind`; `None` on any error (the caller then asks
    /// [`Workload::from_value`] what is wrong).
    fn typed(&self, kind: Kind) -> Option<Workload>;
}

impl Tree for Node<'_> {
    fn field(&self, key: &str) -> Option<&Self> {
        self.get(key)
    }
    fn text(&self) -> Option<&str> {
        self.as_str()
    }
    fn items(&self) -> Option<&[Self]> {
        match self {
            Node::Seq(items) => Some(items),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }
    fn to_value(&self) -> Value {
        Node::to_value(self)
    }
    fn typed(&self, kind: Kind) -> Option<Workload> {
        typed(kind, self)
    }
}

impl Tree for Value {
    fn field(&self, key: &str) -> Option<&Self> {
        self.as_object()?.get(key)
    }
    fn text(&self) -> Option<&str> {
        self.as_str()
    }
    fn items(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }
    fn is_null(&self) -> bool {
        self.is_null()
    }
    fn to_value(&self) -> Value {
        self.clone()
    }
    fn typed(&self, kind: Kind) -> Option<Workload> {
        typed(kind, self)
    }
}

/// Deserializes `kind` from `d` without tracking field paths (several times faster than
/// `serde_path_to_error`); `None` on any error or a missing pod spec.
fn typed<'de, D: Deserializer<'de>>(kind: Kind, d: D) -> Option<Workload> {
    fn boxed<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Option<Box<T>> {
        T::deserialize(d).ok().map(Box::new)
    }
    let w = match kind {
        Kind::Pod => Workload::Pod(boxed::<Pod, D>(d)?),
        Kind::Deployment => Workload::Deployment(boxed::<Deployment, D>(d)?),
        Kind::DaemonSet => Workload::DaemonSet(boxed::<DaemonSet, D>(d)?),
        Kind::StatefulSet => Workload::StatefulSet(boxed::<StatefulSet, D>(d)?),
        Kind::ReplicaSet => Workload::ReplicaSet(boxed::<ReplicaSet, D>(d)?),
        Kind::ReplicationController => {
            Workload::ReplicationController(boxed::<ReplicationController, D>(d)?)
        }
        Kind::Job => Workload::Job(boxed::<Job, D>(d)?),
        Kind::CronJob => Workload::CronJob(boxed::<CronJob, D>(d)?),
    };
    w.pod().is_some().then_some(w)
}

/// A kind hostgate does not judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unjudged {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// What one object turned out to be.
#[derive(Debug)]
pub(crate) enum Read {
    Judged(Box<Workload>),
    Skipped(Unjudged),
    /// Neither `apiVersion` nor `kind`: a Helm `values.yaml`, a `kustomization.yaml`, a JSON
    /// schema… not a Kubernetes object at all.
    NotObject,
    Bad(ObjectError),
}

/// Reads one object, with exactly the results of [`Workload::from_value`].
pub(crate) fn read_object<T: Tree>(t: &T) -> Read {
    if t.field("apiVersion").is_none() && t.field("kind").is_none() {
        // Only the absence of both: a document that has either but does not decode is bad
        // input, so that a typo never lets a HostProcess pod through unjudged.
        return Read::NotObject;
    }
    let api_version = t.field("apiVersion").and_then(T::text);
    let kind_name = t.field("kind").and_then(T::text);
    if let (Some(api_version), Some(kind_name)) = (api_version, kind_name) {
        match Kind::from_name(kind_name) {
            None => {
                let meta = |key: &str| {
                    t.field("metadata")
                        .and_then(|m| m.field(key))
                        .and_then(T::text)
                        .map(str::to_owned)
                };
                return Read::Skipped(Unjudged {
                    api_version: api_version.to_owned(),
                    kind: kind_name.to_owned(),
                    namespace: meta("namespace"),
                    name: meta("name"),
                });
            }
            Some(kind) if kind.api_version() == api_version => {
                if let Some(w) = t.typed(kind) {
                    return Read::Judged(Box::new(w));
                }
            }
            Some(_) => {}
        }
    }
    match Workload::from_value(t.to_value()) {
        Ok(Some(w)) => Read::Judged(Box::new(w)),
        // Not reached: unjudged kinds are handled above.
        Ok(None) => Read::Skipped(Unjudged {
            api_version: api_version.unwrap_or_default().to_owned(),
            kind: kind_name.unwrap_or_default().to_owned(),
            namespace: None,
            name: None,
        }),
        Err(e) => Read::Bad(e),
    }
}

/// A document: one object, or the items of a `List`.
pub(crate) enum Expanded<'t, T> {
    One(&'t T),
    List(&'t [T]),
    /// A `kind: List` whose `items` is not a list.
    BadList,
}

/// `kind: List`, and `kind: <Something>List` with an `items` list, are expanded.
pub(crate) fn expand<T: Tree>(t: &T) -> Expanded<'_, T> {
    match t.field("kind").and_then(T::text) {
        Some("List") => match t.field("items") {
            None => Expanded::List(&[]),
            Some(items) if items.is_null() => Expanded::List(&[]),
            Some(items) => items.items().map_or(Expanded::BadList, Expanded::List),
        },
        Some(kind) if kind.ends_with("List") => t
            .field("items")
            .and_then(T::items)
            .map_or(Expanded::One(t), Expanded::List),
        _ => Expanded::One(t),
    }
}

/// Field path and message of an object error, for `<file>: document <n>: <path>: <message>`.
pub(crate) fn describe(e: ObjectError) -> (Option<String>, String) {
    match e {
        ObjectError::WrongApiVersion {
            kind,
            found,
            expected,
        } => (
            Some("apiVersion".to_owned()),
            format!("{found:?} is not served for kind {kind} (expected {expected:?})"),
        ),
        ObjectError::Field(f) => ((!f.path.is_empty()).then_some(f.path), f.message),
        ObjectError::MissingSpec(path) => (
            Some(path.to_owned()),
            "Required value: a pod spec is required".to_owned(),
        ),
        other => (None, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::yaml;

    const DS: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: csi-proxy
  namespace: kube-system
  labels: {k8s-app: csi-proxy}
spec:
  selector:
    matchLabels:
      k8s-app: csi-proxy
  template:
    metadata:
      labels:
        k8s-app: csi-proxy
      annotations:
        microsoft.com/hostprocess-inherit-user: "true"
    spec:
      serviceAccountName: csi-proxy
      hostNetwork: true
      securityContext:
        windowsOptions:
          hostProcess: true
          runAsUserName: NT AUTHORITY\SYSTEM
      containers:
      - name: csi-proxy
        image: ghcr.io/kubernetes-sigs/sig-windows/csi-proxy@sha256:0123
        args: ["-v=2"]
        ports:
        - containerPort: 8080
          protocol: TCP
        resources:
          limits:
            cpu: 500m
            memory: 128Mi
        env:
        - name: NODE
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
      volumes:
      - name: pipes
        hostPath:
          path: \\.\pipe\csi-proxy
          type: ""
      tolerations:
      - operator: Exists
        tolerationSeconds: 30
"#;

    fn judged(r: Read) -> Workload {
        match r {
            Read::Judged(w) => *w,
            other => panic!("not judged: {other:?}"),
        }
    }

    #[test]
    fn fast_typed_reading_equals_the_reference() {
        // Block style only, so that the fast path applies.
        let text = DS
            .replace(
                "labels: {k8s-app: csi-proxy}",
                "labels:\n    k8s-app: csi-proxy",
            )
            .replace("args: [\"-v=2\"]", "args:\n        - -v=2");
        let docs = yaml::parse(text.as_bytes()).expect("fast path applies");
        let node = &docs[0].node;
        let fast = node.typed(Kind::DaemonSet).expect("fast typed read");
        let reference = Workload::from_value(node.to_value())
            .expect("reads")
            .expect("judged");
        assert_eq!(fast, reference);
        assert_eq!(judged(read_object(node)), reference);
        // And through a JSON value.
        assert_eq!(judged(read_object(&node.to_value())), reference);
    }

    #[test]
    fn errors_are_the_references_errors() {
        let bad = [
            (
                DS.replace("hostProcess: true", "hostProcess: \"true\""),
                Some("spec.template.spec.securityContext.windowsOptions.hostProcess"),
            ),
            (
                DS.replace("apps/v1", "extensions/v1beta1"),
                Some("apiVersion"),
            ),
            (
                DS.replace("containerPort: 8080", "containerPort: http"),
                Some("spec.template.spec.containers[0].ports[0].containerPort"),
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n".to_owned(),
                Some("spec"),
            ),
            ("kind: 5\napiVersion: v1\n".to_owned(), None),
        ];
        for (text, path) in bad {
            let (docs, err) = yaml::read_documents(text.as_bytes());
            assert_eq!(err, None);
            let node_read = yaml::parse(text.as_bytes()).map(|d| read_object(&d[0].node));
            for r in [Some(read_object(&docs[0].value)), node_read]
                .into_iter()
                .flatten()
            {
                match r {
                    Read::Bad(e) => assert_eq!(describe(e).0.as_deref(), path, "{text}"),
                    other => panic!("not an error: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn lists_and_skipped_kinds() {
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "ns"}},
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}
            ]
        });
        let Expanded::List(items) = expand(&list) else {
            panic!("a list")
        };
        assert_eq!(items.len(), 2);
        match read_object(&items[0]) {
            Read::Skipped(u) => {
                assert_eq!(
                    (u.kind.as_str(), u.name.as_deref(), u.namespace.as_deref()),
                    ("Service", Some("svc"), Some("ns"))
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(judged(read_object(&items[1])).name(), "p");

        let pod_list = serde_json::json!({"apiVersion": "v1", "kind": "PodList", "items": []});
        assert!(matches!(expand(&pod_list), Expanded::List([])));
        let not_a_list = serde_json::json!({"apiVersion": "x/v1", "kind": "AllowList", "spec": {}});
        assert!(matches!(expand(&not_a_list), Expanded::One(_)));
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": {"a": 1}});
        assert!(matches!(expand(&bad), Expanded::BadList));
    }
}
