//! The objects hostgate judges: Pods, and the pod templates of workload controllers.
//!
//! Three ways to read an AdmissionReview's object, sharing one core (`LeanMeta`, the lean
//! spec types and `Spec::assemble`, which builds the [`Workload`]):
//!
//! - [`ReviewObject`]: the object decoded in the same pass as the review around it (the
//!   webhook's path for every review the kube-apiserver sends);
//! - [`Workload::from_json`] (`LeanObject`): the object from its own JSON text, with
//!   `metadata.managedFields` and `status` skipped unread (the fallback when the one-pass decode
//!   refuses, and `oldObject` of pod updates);
//! - the full k8s-openapi types, only to name the field of a type error.
//!
//! Each fast path is kept because it pays. `benches/review.rs` (`decode` group) on the captured
//! reviews, two alternating runs on the shared 2-core machine at a load average of 8.5 to 10
//! (so only the ordering and rough ratios carry over):
//!
//! | review | one pass (`ReviewObject`) | envelope, then `LeanObject` | envelope with the full k8s-openapi type |
//! |---|---|---|---|
//! | HostProcess pod, 3,287 B | 18.1–19.2 µs | 23.0–30.7 µs | 26.7–27.8 µs |
//! | DaemonSet | 12.1–14.3 µs | 16.6–17.0 µs | 21.6–24.8 µs |
//!
//! One pass saves a quarter to a third of the decode over the plain serde path; skipping
//! `managedFields` unread saves most of the rest, which is why `LeanObject` stays as the
//! fallback and the `oldObject` decoder rather than the full types.

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Pod, PodSpec, PodTemplateSpec, ReplicationController, ReplicationControllerSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::manifest::{self, FieldError};
use crate::pod::{PodView, SpecPath};

/// A kind hostgate judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `v1 Pod`
    Pod,
    /// `apps/v1 Deployment`
    Deployment,
    /// `apps/v1 DaemonSet`
    DaemonSet,
    /// `apps/v1 StatefulSet`
    StatefulSet,
    /// `apps/v1 ReplicaSet`
    ReplicaSet,
    /// `v1 ReplicationController`
    ReplicationController,
    /// `batch/v1 Job`
    Job,
    /// `batch/v1 CronJob`
    CronJob,
}

impl Kind {
    /// Every judged kind.
    pub const ALL: [Kind; 8] = [
        Kind::Pod,
        Kind::Deployment,
        Kind::DaemonSet,
        Kind::StatefulSet,
        Kind::ReplicaSet,
        Kind::ReplicationController,
        Kind::Job,
        Kind::CronJob,
    ];

    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::DaemonSet => "DaemonSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
        }
    }

    /// The `apiVersion` the kind is served at.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Pod | Kind::ReplicationController => "v1",
            Kind::Deployment | Kind::DaemonSet | Kind::StatefulSet | Kind::ReplicaSet => "apps/v1",
            Kind::Job | Kind::CronJob => "batch/v1",
        }
    }

    /// The API group (empty for core).
    pub fn group(self) -> &'static str {
        match self.api_version().split_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }

    /// Looks a kind up by name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Where the pod spec sits in objects of this kind.
    pub fn spec_path(self) -> SpecPath {
        match self {
            Kind::Pod => SpecPath::POD,
            Kind::CronJob => SpecPath::CRON_TEMPLATE,
            _ => SpecPath::TEMPLATE,
        }
    }
}

/// A judged object.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// A Pod.
    Pod(Box<Pod>),
    /// A Deployment.
    Deployment(Box<Deployment>),
    /// A DaemonSet.
    DaemonSet(Box<DaemonSet>),
    /// A StatefulSet.
    StatefulSet(Box<StatefulSet>),
    /// A ReplicaSet.
    ReplicaSet(Box<ReplicaSet>),
    /// A ReplicationController.
    ReplicationController(Box<ReplicationController>),
    /// A Job.
    Job(Box<Job>),
    /// A CronJob.
    CronJob(Box<CronJob>),
}

/// Why an object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// Not a mapping with `apiVersion` and `kind`.
    #[error("not a Kubernetes object: {0}")]
    NotAnObject(String),
    /// A judged kind at a version the apiserver does not serve.
    #[error("apiVersion: {found:?} is not served for kind {kind} (expected {expected:?})")]
    WrongApiVersion {
        /// The kind.
        kind: &'static str,
        /// What the object says.
        found: String,
        /// What the apiserver serves.
        expected: &'static str,
    },
    /// A field of the wrong type.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The object has no pod spec to judge.
    #[error("{0}: Required value: a pod spec is required")]
    MissingSpec(&'static str),
}

/// `apiVersion` and `kind` of a document, if it has them.
pub fn type_of(value: &Value) -> Option<(&str, &str)> {
    let obj = value.as_object()?;
    Some((obj.get("apiVersion")?.as_str()?, obj.get("kind")?.as_str()?))
}

impl Workload {
    /// Reads a document. `Ok(None)` for kinds hostgate does not judge.
    pub fn from_value(value: Value) -> Result<Option<Workload>, ObjectError> {
        let Some((api_version, kind_name)) = type_of(&value) else {
            return Err(ObjectError::NotAnObject(
                "apiVersion and kind must be strings".to_owned(),
            ));
        };
        let Some(kind) = Kind::from_name(kind_name) else {
            return Ok(None);
        };
        if api_version != kind.api_version() {
            return Err(ObjectError::WrongApiVersion {
                kind: kind.name(),
                found: api_version.to_owned(),
                expected: kind.api_version(),
            });
        }
        let w = match kind {
            Kind::Pod => Workload::Pod(manifest::from_value(value)?),
            Kind::Deployment => Workload::Deployment(manifest::from_value(value)?),
            Kind::DaemonSet => Workload::DaemonSet(manifest::from_value(value)?),
            Kind::StatefulSet => Workload::StatefulSet(manifest::from_value(value)?),
            Kind::ReplicaSet => Workload::ReplicaSet(manifest::from_value(value)?),
            Kind::ReplicationController => {
                Workload::ReplicationController(manifest::from_value(value)?)
            }
            Kind::Job => Workload::Job(manifest::from_value(value)?),
            Kind::CronJob => Workload::CronJob(manifest::from_value(value)?),
        };
        if w.pod().is_none() {
            return Err(ObjectError::MissingSpec(match kind {
                Kind::Pod => "spec",
                Kind::CronJob => "spec.jobTemplate.spec.template.spec",
                _ => "spec.template.spec",
            }));
        }
        Ok(Some(w))
    }

    /// Reads an object of a known kind from JSON text (an AdmissionReview's `object`). Type errors
    /// carry the field path.
    ///
    /// `metadata.managedFields` and `status` are skipped without being decoded: hostgate neither
    /// judges nor patches them, and in a captured review `managedFields` alone is a third of the
    /// object's bytes. The objects this returns have both fields empty.
    pub fn from_json(kind: Kind, json: &str) -> Result<Workload, FieldError> {
        fn typed<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, FieldError> {
            // Called only once the lean decoder failed: the full decoder finds the field path.
            serde_json::from_str(json).map_err(|_| {
                let mut de = serde_json::Deserializer::from_str(json);
                match serde_path_to_error::deserialize::<_, T>(&mut de) {
                    Err(e) => FieldError {
                        path: e.path().to_string(),
                        message: e.into_inner().to_string(),
                    },
                    Ok(_) => FieldError {
                        path: String::new(),
                        message: "invalid object".to_owned(),
                    },
                }
            })
        }
        fn lean<S: serde::de::DeserializeOwned>(
            kind: Kind,
            json: &str,
            spec: fn(Option<S>) -> Spec,
        ) -> Option<Workload> {
            let o = serde_json::from_str::<LeanObject<S>>(json).ok()?;
            o.is_a(kind)
                .then(|| Spec::assemble(o.metadata, spec(o.spec)))
        }
        let workload = match kind {
            Kind::Pod => lean(kind, json, Spec::Pod),
            Kind::Deployment => lean(kind, json, Spec::Deployment),
            Kind::DaemonSet => lean(kind, json, Spec::DaemonSet),
            Kind::StatefulSet => lean(kind, json, Spec::StatefulSet),
            Kind::ReplicaSet => lean(kind, json, Spec::ReplicaSet),
            Kind::ReplicationController => lean(kind, json, Spec::ReplicationController),
            Kind::Job => lean(kind, json, Spec::Job),
            Kind::CronJob => lean(kind, json, Spec::CronJob),
        };
        if let Some(w) = workload {
            return Ok(w);
        }
        Ok(match kind {
            Kind::Pod => Workload::Pod(typed(json)?),
            Kind::Deployment => Workload::Deployment(typed(json)?),
            Kind::DaemonSet => Workload::DaemonSet(typed(json)?),
            Kind::StatefulSet => Workload::StatefulSet(typed(json)?),
            Kind::ReplicaSet => Workload::ReplicaSet(typed(json)?),
            Kind::ReplicationController => Workload::ReplicationController(typed(json)?),
            Kind::Job => Workload::Job(typed(json)?),
            Kind::CronJob => Workload::CronJob(typed(json)?),
        })
    }

    /// Serializes the object to JSON.
    pub fn to_value(&self) -> Value {
        let v = match self {
            Workload::Pod(o) => serde_json::to_value(o),
            Workload::Deployment(o) => serde_json::to_value(o),
            Workload::DaemonSet(o) => serde_json::to_value(o),
            Workload::StatefulSet(o) => serde_json::to_value(o),
            Workload::ReplicaSet(o) => serde_json::to_value(o),
            Workload::ReplicationController(o) => serde_json::to_value(o),
            Workload::Job(o) => serde_json::to_value(o),
            Workload::CronJob(o) => serde_json::to_value(o),
        };
        // Serializing k8s-openapi types to a JSON value cannot fail.
        v.unwrap_or(Value::Null)
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Workload::Pod(_) => Kind::Pod,
            Workload::Deployment(_) => Kind::Deployment,
            Workload::DaemonSet(_) => Kind::DaemonSet,
            Workload::StatefulSet(_) => Kind::StatefulSet,
            Workload::ReplicaSet(_) => Kind::ReplicaSet,
            Workload::ReplicationController(_) => Kind::ReplicationController,
            Workload::Job(_) => Kind::Job,
            Workload::CronJob(_) => Kind::CronJob,
        }
    }

    /// The object's own metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Workload::Pod(o) => &o.metadata,
            Workload::Deployment(o) => &o.metadata,
            Workload::DaemonSet(o) => &o.metadata,
            Workload::StatefulSet(o) => &o.metadata,
            Workload::ReplicaSet(o) => &o.metadata,
            Workload::ReplicationController(o) => &o.metadata,
            Workload::Job(o) => &o.metadata,
            Workload::CronJob(o) => &o.metadata,
        }
    }

    /// `metadata.name` (or `generateName`), for messages.
    pub fn name(&self) -> &str {
        let m = self.metadata();
        m.name
            .as_deref()
            .or(m.generate_name.as_deref())
            .unwrap_or("")
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// The pod spec, mutable, with its path.
    pub fn pod_spec_mut(&mut self) -> Option<(&mut PodSpec, SpecPath)> {
        fn template(t: Option<&mut PodTemplateSpec>) -> Option<(&mut PodSpec, SpecPath)> {
            Some((t?.spec.as_mut()?, SpecPath::TEMPLATE))
        }
        match self {
            Workload::Pod(p) => Some((p.spec.as_mut()?, SpecPath::POD)),
            Workload::Deployment(o) => template(o.spec.as_mut().map(|s| &mut s.template)),
            Workload::DaemonSet(o) => template(o.spec.as_mut().map(|s| &mut s.template)),
            Workload::StatefulSet(o) => template(o.spec.as_mut().map(|s| &mut s.template)),
            Workload::ReplicaSet(o) => template(o.spec.as_mut().and_then(|s| s.template.as_mut())),
            Workload::ReplicationController(o) => {
                template(o.spec.as_mut().and_then(|s| s.template.as_mut()))
            }
            Workload::Job(o) => template(o.spec.as_mut().map(|s| &mut s.template)),
            Workload::CronJob(o) => Some((
                o.spec.job_template.spec.as_mut()?.template.spec.as_mut()?,
                SpecPath::CRON_TEMPLATE,
            )),
        }
    }

    /// The pod spec to judge, with its metadata and path.
    pub fn pod(&self) -> Option<PodView<'_>> {
        fn template(t: Option<&PodTemplateSpec>, path: SpecPath) -> Option<PodView<'_>> {
            let t = t?;
            Some(PodView::new(t.spec.as_ref()?, t.metadata.as_ref(), path))
        }
        match self {
            Workload::Pod(p) => Some(PodView::new(
                p.spec.as_ref()?,
                Some(&p.metadata),
                SpecPath::POD,
            )),
            Workload::Deployment(o) => {
                template(o.spec.as_ref().map(|s| &s.template), SpecPath::TEMPLATE)
            }
            Workload::DaemonSet(o) => {
                template(o.spec.as_ref().map(|s| &s.template), SpecPath::TEMPLATE)
            }
            Workload::StatefulSet(o) => {
                template(o.spec.as_ref().map(|s| &s.template), SpecPath::TEMPLATE)
            }
            Workload::ReplicaSet(o) => template(
                o.spec.as_ref().and_then(|s| s.template.as_ref()),
                SpecPath::TEMPLATE,
            ),
            Workload::ReplicationController(o) => template(
                o.spec.as_ref().and_then(|s| s.template.as_ref()),
                SpecPath::TEMPLATE,
            ),
            Workload::Job(o) => template(o.spec.as_ref().map(|s| &s.template), SpecPath::TEMPLATE),
            Workload::CronJob(o) => template(
                o.spec.job_template.spec.as_ref().map(|s| &s.template),
                SpecPath::CRON_TEMPLATE,
            ),
        }
    }
}

/// An object as the lean decoder reads it: `status` and unknown fields are skipped unparsed.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanObject<S> {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<LeanMeta>,
    #[serde(default = "Option::default")]
    spec: Option<S>,
}

impl<S> LeanObject<S> {
    /// Whether `apiVersion` and `kind`, where present, are the kind's (as k8s-openapi checks).
    fn is_a(&self, kind: Kind) -> bool {
        self.api_version
            .as_deref()
            .is_none_or(|v| v == kind.api_version())
            && self.kind.as_deref().is_none_or(|k| k == kind.name())
    }
}

/// The `spec` of a judged kind, as the lean decoders read it.
// Short-lived: one per decoded object, moved once into the object's box.
#[allow(clippy::large_enum_variant)]
enum Spec {
    Pod(Option<PodSpec>),
    Deployment(Option<DeploymentSpec>),
    DaemonSet(Option<DaemonSetSpec>),
    StatefulSet(Option<StatefulSetSpec>),
    ReplicaSet(Option<ReplicaSetSpec>),
    ReplicationController(Option<ReplicationControllerSpec>),
    Job(Option<JobSpec>),
    CronJob(Option<CronJobSpec>),
}

impl Spec {
    /// The object, with `status` and `metadata.managedFields` left empty.
    fn assemble(metadata: Option<LeanMeta>, spec: Spec) -> Workload {
        let metadata = metadata.map(ObjectMeta::from).unwrap_or_default();
        match spec {
            Spec::Pod(spec) => Workload::Pod(Box::new(Pod {
                metadata,
                spec,
                status: None,
            })),
            Spec::Deployment(spec) => Workload::Deployment(Box::new(Deployment {
                metadata,
                spec,
                status: None,
            })),
            Spec::DaemonSet(spec) => Workload::DaemonSet(Box::new(DaemonSet {
                metadata,
                spec,
                status: None,
            })),
            Spec::StatefulSet(spec) => Workload::StatefulSet(Box::new(StatefulSet {
                metadata,
                spec,
                status: None,
            })),
            Spec::ReplicaSet(spec) => Workload::ReplicaSet(Box::new(ReplicaSet {
                metadata,
                spec,
                status: None,
            })),
            Spec::ReplicationController(spec) => {
                Workload::ReplicationController(Box::new(ReplicationController {
                    metadata,
                    spec,
                    status: None,
                }))
            }
            Spec::Job(spec) => Workload::Job(Box::new(Job {
                metadata,
                spec,
                status: None,
            })),
            Spec::CronJob(spec) => Workload::CronJob(Box::new(CronJob {
                metadata,
                spec: spec.unwrap_or_default(),
                status: None,
            })),
        }
    }
}

pub use review_object::ReviewObject;

/// The one-pass decoder of an AdmissionReview's object (the webhook's hot path).
mod review_object {
    use serde::Deserialize;
    use serde::de::{self, Deserializer, MapAccess, Visitor};

    use super::{Kind, LeanMeta, Spec, Workload};

    impl Spec {
        /// Reads the spec of `kind` from a map's value.
        fn next_value<'de, A: MapAccess<'de>>(kind: Kind, map: &mut A) -> Result<Spec, A::Error> {
            Ok(match kind {
                Kind::Pod => Spec::Pod(map.next_value()?),
                Kind::Deployment => Spec::Deployment(map.next_value()?),
                Kind::DaemonSet => Spec::DaemonSet(map.next_value()?),
                Kind::StatefulSet => Spec::StatefulSet(map.next_value()?),
                Kind::ReplicaSet => Spec::ReplicaSet(map.next_value()?),
                Kind::ReplicationController => Spec::ReplicationController(map.next_value()?),
                Kind::Job => Spec::Job(map.next_value()?),
                Kind::CronJob => Spec::CronJob(map.next_value()?),
            })
        }

        /// An object of `kind` without a spec.
        fn missing(kind: Kind) -> Spec {
            match kind {
                Kind::Pod => Spec::Pod(None),
                Kind::Deployment => Spec::Deployment(None),
                Kind::DaemonSet => Spec::DaemonSet(None),
                Kind::StatefulSet => Spec::StatefulSet(None),
                Kind::ReplicaSet => Spec::ReplicaSet(None),
                Kind::ReplicationController => Spec::ReplicationController(None),
                Kind::Job => Spec::Job(None),
                Kind::CronJob => Spec::CronJob(None),
            }
        }
    }

    /// An AdmissionReview's `object`, decoded in the same pass as the review around it, so the
    /// object's bytes are read once rather than first skipped (to find its end) and then decoded.
    ///
    /// The object's `kind` must come before its `spec`, as the kube-apiserver writes it; `None` is an
    /// object of a kind hostgate does not judge. Whatever this decoder refuses (spec before kind,
    /// wrong apiVersion, a type error) makes the review's one-pass decode fail, and the review is then
    /// read again with [`Workload::from_json`], whose errors name the field: so this decoder only
    /// ever succeeds where `from_json` gives the same object.
    #[derive(Debug)]
    pub struct ReviewObject(pub Option<Workload>);

    impl<'de> Deserialize<'de> for ReviewObject {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ReviewObject, D::Error> {
            deserializer.deserialize_map(ReviewObjectVisitor)
        }
    }

    struct ReviewObjectVisitor;

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "camelCase")]
    enum ObjectField {
        ApiVersion,
        Kind,
        Metadata,
        Spec,
        #[serde(other)]
        Other,
    }

    impl<'de> Visitor<'de> for ReviewObjectVisitor {
        type Value = ReviewObject;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a Kubernetes object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReviewObject, A::Error> {
            fn once<T, E: de::Error>(slot: &Option<T>, name: &'static str) -> Result<(), E> {
                match slot {
                    Some(_) => Err(E::duplicate_field(name)),
                    None => Ok(()),
                }
            }
            let mut api_version: Option<Option<String>> = None;
            // Outer None: no `kind` yet; inner None: a kind hostgate does not judge.
            let mut kind: Option<Option<Kind>> = None;
            let mut metadata: Option<Option<LeanMeta>> = None;
            let mut spec: Option<Spec> = None;
            while let Some(field) = map.next_key()? {
                match field {
                    ObjectField::ApiVersion => {
                        once(&api_version, "apiVersion")?;
                        api_version = Some(map.next_value()?);
                    }
                    ObjectField::Kind => {
                        once(&kind, "kind")?;
                        let name: Option<String> = map.next_value()?;
                        kind = Some(name.as_deref().and_then(Kind::from_name));
                    }
                    ObjectField::Metadata => {
                        once(&metadata, "metadata")?;
                        metadata = Some(map.next_value()?);
                    }
                    ObjectField::Spec => {
                        once(&spec, "spec")?;
                        match kind {
                            Some(Some(k)) => spec = Some(Spec::next_value(k, &mut map)?),
                            Some(None) => {
                                map.next_value::<de::IgnoredAny>()?;
                            }
                            None => return Err(de::Error::custom("spec before kind")),
                        }
                    }
                    ObjectField::Other => {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
            }
            let kind = match kind {
                Some(Some(kind)) => kind,
                Some(None) => return Ok(ReviewObject(None)),
                None => return Err(de::Error::missing_field("kind")),
            };
            if api_version
                .flatten()
                .is_some_and(|v| v != kind.api_version())
            {
                return Err(de::Error::custom("apiVersion is not the kind's"));
            }
            let spec = spec.unwrap_or_else(|| Spec::missing(kind));
            Ok(ReviewObject(Some(Spec::assemble(metadata.flatten(), spec))))
        }
    }
}

/// [`ObjectMeta`] without `managedFields`, which serde then skips unparsed.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    annotations: Option<std::collections::BTreeMap<String, String>>,
    creation_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<std::collections::BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl From<LeanMeta> for ObjectMeta {
    fn from(m: LeanMeta) -> ObjectMeta {
        ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_kind_with_its_template_path() {
        let template = json!({"spec": {"containers": [{"name": "a"}]}});
        let cases = [
            (
                json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a"}]}}),
                "spec",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"selector": {}, "template": template}}),
                "spec.template.spec",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "spec": {"selector": {}, "template": template}}),
                "spec.template.spec",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"selector": {}, "template": template}}),
                "spec.template.spec",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"selector": {}, "template": template}}),
                "spec.template.spec",
            ),
            (
                json!({"apiVersion": "v1", "kind": "ReplicationController", "spec": {"template": template}}),
                "spec.template.spec",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": template}}),
                "spec.template.spec",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
                "spec.jobTemplate.spec.template.spec",
            ),
        ];
        for (value, path) in cases {
            let w = Workload::from_value(value).expect("reads").expect("judged");
            let view = w.pod().expect("has a pod spec");
            assert_eq!(view.path.0, path, "{:?}", w.kind());
            assert_eq!(view.spec.containers[0].name, "a");
        }
    }

    #[test]
    fn review_objects_decode_every_kind_without_managed_fields_or_status() {
        let template =
            json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "a"}]}});
        let meta = json!({
            "name": "o", "namespace": "ns", "uid": "u-1", "generation": 2,
            "labels": {"app": "a"}, "annotations": {"k": "v"},
            "managedFields": [{"manager": "kubectl", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
        });
        let specs = [
            (Kind::Pod, json!({"containers": [{"name": "a"}]})),
            (
                Kind::Deployment,
                json!({"selector": {}, "template": template}),
            ),
            (
                Kind::DaemonSet,
                json!({"selector": {}, "template": template}),
            ),
            (
                Kind::StatefulSet,
                json!({"selector": {}, "template": template}),
            ),
            (
                Kind::ReplicaSet,
                json!({"selector": {}, "template": template}),
            ),
            (Kind::ReplicationController, json!({"template": template})),
            (Kind::Job, json!({"template": template})),
            (
                Kind::CronJob,
                json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}),
            ),
        ];
        for (kind, spec) in specs {
            let object = json!({
                "apiVersion": kind.api_version(), "kind": kind.name(),
                "metadata": meta, "spec": spec, "status": {"phase": 7, "anything": [1, 2]},
            });
            let lean = Workload::from_json(kind, &object.to_string()).expect("decodes");
            assert_eq!(lean.kind(), kind);
            let m = lean.metadata();
            assert_eq!(m.managed_fields, None, "{kind:?}");
            assert_eq!(
                (m.name.as_deref(), m.uid.as_deref(), m.generation),
                (Some("o"), Some("u-1"), Some(2))
            );
            assert_eq!(lean.pod().expect("pod spec").spec.containers[0].name, "a");
            let value = lean.to_value();
            assert!(value.get("status").is_none(), "{kind:?}: {value}");

            // Everything but managedFields and status is what the full decoder reads.
            let mut full = object.clone();
            full["metadata"]
                .as_object_mut()
                .map(|m| m.remove("managedFields"));
            full.as_object_mut().map(|o| o.remove("status"));
            let full = Workload::from_value(full)
                .expect("full decode")
                .expect("judged");
            assert_eq!(lean, full, "{kind:?}");
        }
    }

    #[test]
    fn review_object_errors_keep_their_field_paths() {
        let cases = [
            (
                json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "a"}}),
                "spec.containers",
            ),
            // k8s-openapi checks these at the object's level; its message names the value.
            (json!({"apiVersion": "v2", "kind": "Pod", "spec": {}}), "."),
            (
                json!({"apiVersion": "v1", "kind": "Service", "spec": {}}),
                ".",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": 1}}}),
                "metadata.labels.a",
            ),
        ];
        for (object, path) in cases {
            let err = Workload::from_json(Kind::Pod, &object.to_string()).expect_err("refused");
            assert_eq!(err.path, path, "{object}: {err:?}");
        }
    }

    #[test]
    fn skips_other_kinds_and_refuses_wrong_versions() {
        assert_eq!(
            Workload::from_value(json!({"apiVersion": "v1", "kind": "Service"})),
            Ok(None)
        );
        let err =
            Workload::from_value(json!({"apiVersion": "extensions/v1beta1", "kind": "DaemonSet"}))
                .expect_err("wrong version");
        assert_eq!(
            err.to_string(),
            "apiVersion: \"extensions/v1beta1\" is not served for kind DaemonSet (expected \"apps/v1\")"
        );
        let err = Workload::from_value(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
        )
        .expect_err("no spec");
        assert_eq!(
            err.to_string(),
            "spec: Required value: a pod spec is required"
        );
    }

    #[test]
    fn host_process_as_string_names_the_field() {
        let err = Workload::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "spec": {"containers": [{"name": "a", "securityContext": {"windowsOptions": {"hostProcess": "true"}}}]}
        }))
        .expect_err("type error");
        let text = err.to_string();
        assert!(
            text.starts_with("spec.containers[0].securityContext.windowsOptions.hostProcess: invalid type: string \"true\""),
            "{text}"
        );
    }
}
