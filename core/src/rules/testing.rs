//! Test helpers shared by the rule families' table tests: a pod from a line of YAML, and the
//! findings one check appends for it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::decision::Finding;
use crate::pod::{PodView, SpecPath};

/// A pod spec with its metadata, owned, so tests can borrow a [`PodView`] of it.
pub(crate) struct TestPod {
    spec: PodSpec,
    metadata: ObjectMeta,
}

/// A pod from its spec written as (flow-style) YAML.
pub(crate) fn pod(spec: &str) -> TestPod {
    pod_with_annotations(spec, &[])
}

/// A pod from its spec and the given annotations.
pub(crate) fn pod_with_annotations(spec: &str, annotations: &[(&str, &str)]) -> TestPod {
    let spec: PodSpec = serde_yaml::from_str(spec).expect("test pod spec parses");
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    TestPod {
        spec,
        metadata: ObjectMeta {
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
    }
}

/// What `check` appends for `pod`.
pub(crate) fn findings(
    pod: &TestPod,
    check: impl FnOnce(&PodView<'_>, &mut Vec<Finding>),
) -> Vec<Finding> {
    let view = PodView::new(&pod.spec, Some(&pod.metadata), SpecPath::POD);
    let mut out = Vec::new();
    check(&view, &mut out);
    out
}
