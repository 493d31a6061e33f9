//! `hostgate check --cluster`: what already runs, judged exactly as manifests are.
//!
//! Namespaces (metadata only, for their labels), the seven workload kinds and Pods are listed
//! page by page (`limit` and `continue`), so that 50,000 pods never make one giant response,
//! and each object is judged by [`super::judge`] as it arrives, with the same options, defaults
//! and policies as offline input, into the same [`Report`]. An object whose controller is
//! itself judged (a DaemonSet's pods, a Deployment's ReplicaSets, a CronJob's Jobs) is skipped:
//! its pod template is its owner's. `--pods` judges owned pods too.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt as _};
use serde::de::DeserializeOwned;

use super::report::{Report, Skipped, SourceRef};
use super::{CheckOptions, NamespaceLabels, judge};
use crate::object::Workload;
use crate::policy::{CompiledPolicy, HostProcessPolicy};

/// Objects asked for per list request.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// Which part of the cluster to judge.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// One namespace, or `None` for all of them.
    pub namespace: Option<String>,
    /// Judge pods whose controller is judged too.
    pub owned_pods: bool,
    /// Objects per list request.
    pub page_size: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            namespace: None,
            owned_pods: false,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// A list request the apiserver refused or that failed on the way.
#[derive(Debug, thiserror::Error)]
#[error("listing {resource}: {source}")]
pub struct ClusterError {
    /// What was being listed (`pods`, `apps/v1 daemonsets`, …).
    pub resource: String,
    /// Why it failed.
    #[source]
    pub source: kube::Error,
}

/// Fetches a list page by page (`limit`, then each `continue` token), handing each page's
/// items to `each`.
async fn each_page<T, F, Fut>(
    resource: &str,
    page_size: u32,
    mut fetch: F,
    mut each: impl FnMut(Vec<T>),
) -> Result<(), ClusterError>
where
    T: Clone,
    F: FnMut(ListParams) -> Fut,
    Fut: std::future::Future<Output = kube::Result<kube::core::ObjectList<T>>>,
{
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(page_size);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = fetch(params).await.map_err(|source| ClusterError {
            resource: resource.to_owned(),
            source,
        })?;
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        each(page.items);
        if token.is_none() {
            return Ok(());
        }
    }
}

/// Lists every object of `K` (in `namespace`, or everywhere), one page at a time, handing each
/// object to `each`.
async fn list_pages<K>(
    client: &Client,
    namespace: Option<&str>,
    page_size: u32,
    mut each: impl FnMut(K),
) -> Result<(), ClusterError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let resource = format!("{} {}", K::api_version(&()), K::plural(&()));
    let api = &api;
    each_page(
        &resource,
        page_size,
        |params| async move { api.list(&params).await },
        |items| items.into_iter().for_each(&mut each),
    )
    .await
}

/// Every namespace's labels.
pub async fn namespace_labels(
    client: &Client,
    page_size: u32,
) -> Result<NamespaceLabels, ClusterError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let api = &api;
    let mut labels = NamespaceLabels::new();
    each_page(
        "v1 namespaces",
        page_size,
        |params| async move { api.list_metadata(&params).await },
        |items| {
            for ns in &items {
                let name = ns.name_any();
                labels.declare(&name);
                for (k, v) in ns.labels() {
                    labels.insert(&name, k, v);
                }
            }
        },
    )
    .await?;
    Ok(labels)
}

/// The cluster's `HostProcessPolicy` objects, compiled; invalid ones are left out (the webhook
/// does not enforce them either) and returned as `name: reason`.
pub async fn policies(
    client: &Client,
    page_size: u32,
) -> Result<(Vec<CompiledPolicy>, Vec<String>), ClusterError> {
    let api: Api<HostProcessPolicy> = Api::all(client.clone());
    let api = &api;
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    each_page(
        "hostgate.io/v1alpha1 hostprocesspolicies",
        page_size,
        |params| async move { api.list(&params).await },
        |items| {
            for mut p in items {
                let name = p.name_any();
                p.status = None;
                match CompiledPolicy::compile(p) {
                    Ok(c) => valid.push(c),
                    Err(e) => invalid.push(format!("{name}: {e}")),
                }
            }
        },
    )
    .await?;
    Ok((valid, invalid))
}

/// `cluster:<apiserver path>` of an object, where `file` names files for offline input.
fn source_of<K: Resource<DynamicType = ()>>(meta: &ObjectMeta) -> SourceRef {
    let group = K::group(&());
    let prefix = if group.is_empty() {
        format!("/api/{}", K::version(&()))
    } else {
        format!("/apis/{group}/{}", K::version(&()))
    };
    let namespace = meta.namespace.as_deref().unwrap_or("");
    let name = meta.name.as_deref().unwrap_or("");
    SourceRef {
        file: Arc::from(format!(
            "cluster:{prefix}/namespaces/{namespace}/{}/{name}",
            K::plural(&())
        )),
        document: 0,
        item: None,
        line: None,
    }
}

/// The uid of the object's controller, if it has one.
fn controller_uid(meta: &ObjectMeta) -> Option<(&str, String)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.uid.as_str(), format!("{} {}", o.kind, o.name)))
}

/// Judges what runs in the cluster. `opts.namespace_labels` are applied over the cluster's.
pub async fn check_cluster(
    client: &Client,
    mut opts: CheckOptions,
    cluster: &ClusterOptions,
) -> Result<Report, ClusterError> {
    let mut labels = namespace_labels(client, cluster.page_size).await?;
    labels.merge(std::mem::take(&mut opts.namespace_labels));
    opts.namespace_labels = labels;
    // Pods in the cluster were created without ephemeral containers (the apiserver refuses
    // them on create); any they have now came through the ephemeralcontainers subresource.
    let mut pod_opts = opts.clone();
    pod_opts.structural.create = false;

    let mut report = Report::default();
    let mut judged: HashSet<String> = HashSet::new();
    let ns = cluster.namespace.as_deref();
    let page = cluster.page_size;

    macro_rules! workloads {
        ($kind:ty, $variant:ident) => {
            list_pages::<$kind>(client, ns, page, |o| {
                let meta = o.metadata.clone();
                let source = source_of::<$kind>(&meta);
                if let Some((uid, owner)) = controller_uid(&meta)
                    && judged.contains(uid)
                {
                    report.skipped.push(owned::<$kind>(source, &meta, owner));
                    judged.extend(meta.uid.clone());
                    return;
                }
                judged.extend(meta.uid.clone());
                report
                    .results
                    .push(judge(&Workload::$variant(Box::new(o)), source, &opts));
            })
            .await?
        };
    }
    // Owners before what they own.
    workloads!(CronJob, CronJob);
    workloads!(Job, Job);
    workloads!(Deployment, Deployment);
    workloads!(ReplicaSet, ReplicaSet);
    workloads!(StatefulSet, StatefulSet);
    workloads!(DaemonSet, DaemonSet);
    workloads!(ReplicationController, ReplicationController);
    list_pages::<Pod>(client, ns, page, |p| {
        let source = source_of::<Pod>(&p.metadata);
        if !cluster.owned_pods
            && let Some((uid, owner)) = controller_uid(&p.metadata)
            && judged.contains(uid)
        {
            report
                .skipped
                .push(owned::<Pod>(source, &p.metadata, owner));
            return;
        }
        let w = Workload::Pod(Box::new(p));
        report.results.push(judge(&w, source, &pod_opts));
    })
    .await?;
    Ok(report)
}

fn owned<K: Resource<DynamicType = ()>>(
    source: SourceRef,
    meta: &ObjectMeta,
    owner: String,
) -> Skipped {
    Skipped {
        source,
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        owner: Some(owner),
    }
}
