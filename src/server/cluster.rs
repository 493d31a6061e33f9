//! Policies and namespace labels from the cluster (`--policy-source cluster|both`), and the
//! signing key's public half published for the node agents (`--publish-public-key`).
//!
//! Two kube-runtime watchers feed the same atomic swap as policy files:
//!
//! - `HostProcessPolicy` objects: each is compiled on arrival. A valid object replaces its last
//!   version; an invalid one keeps the last good version of that object in force (or none) and
//!   gets status condition `Accepted=False` with the reason; a valid one `Accepted=True`.
//! - Namespaces (metadata only): their labels, for `namespaceSelector`.
//!
//! Nothing is installed until both have completed their initial list, so readiness stays false
//! until the webhook has the whole picture. Watch errors are logged and counted; the watchers
//! retry with back-off and re-list, and the last good set stays in force meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt as _};

use super::state::AppState;
use crate::policy::{CompiledPolicy, HostProcessPolicy, HostProcessPolicyStatus};

/// The condition type written to every policy's status.
pub const CONDITION_ACCEPTED: &str = "Accepted";
/// Field manager of hostgate's status patches.
pub const FIELD_MANAGER: &str = "hostgate";

/// Watches HostProcessPolicy objects until the stream ends (it does not, short of a panic).
pub async fn watch_policies(client: Client, state: Arc<AppState>) {
    let api: Api<HostProcessPolicy> = Api::all(client);
    let mut valid: BTreeMap<String, CompiledPolicy> = BTreeMap::new();
    let mut buffer: Option<BTreeMap<String, CompiledPolicy>> = None;
    let mut synced = false;
    let mut events = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                state.metrics.watch_errors.inc();
                tracing::warn!(error = %e, resource = "hostprocesspolicies", "watch failed; retrying");
                continue;
            }
        };
        match event {
            Event::Init => buffer = Some(BTreeMap::new()),
            Event::InitApply(policy) => {
                let previous = valid.get(&policy.name_any()).cloned();
                let target = buffer.as_mut().unwrap_or(&mut valid);
                accept(&api, &state, policy, previous, target).await;
            }
            Event::InitDone => {
                if let Some(b) = buffer.take() {
                    valid = b;
                }
                synced = true;
                install(&api, &state, &valid).await;
            }
            Event::Apply(policy) => {
                let previous = valid.get(&policy.name_any()).cloned();
                accept(&api, &state, policy, previous, &mut valid).await;
                if synced {
                    install(&api, &state, &valid).await;
                }
            }
            Event::Delete(policy) => {
                valid.remove(&policy.name_any());
                if synced {
                    install(&api, &state, &valid).await;
                }
            }
        }
    }
}

/// Installs the cluster set and marks policies shadowed by a file policy.
async fn install(
    api: &Api<HostProcessPolicy>,
    state: &AppState,
    valid: &BTreeMap<String, CompiledPolicy>,
) {
    let shadowed = state.set_cluster_policies(valid.clone());
    tracing::info!(policies = valid.len(), "cluster policies in force");
    for name in shadowed {
        tracing::warn!(policy = %name, "a policy file of the same name takes precedence");
        if let Some(p) = valid.get(&name) {
            let generation = p.source().metadata.generation;
            write_status(
                api,
                &name,
                p.source().status.as_ref(),
                generation,
                "False",
                "Shadowed",
                "a policy file of the same name takes precedence over this object",
            )
            .await;
        }
    }
}

/// Compiles one object; a valid one goes into `target`, an invalid one leaves the last good
/// version (`previous`) in place. Either way its status says so.
async fn accept(
    api: &Api<HostProcessPolicy>,
    state: &AppState,
    policy: HostProcessPolicy,
    previous: Option<CompiledPolicy>,
    target: &mut BTreeMap<String, CompiledPolicy>,
) {
    let name = policy.name_any();
    let generation = policy.metadata.generation;
    let status = policy.status.clone();
    // The object as stored, without its status, is what is compiled.
    let mut spec_only = policy;
    spec_only.status = None;
    match CompiledPolicy::compile(spec_only) {
        Ok(compiled) => {
            target.insert(name.clone(), compiled);
            write_status(
                api,
                &name,
                status.as_ref(),
                generation,
                "True",
                "Valid",
                "the policy is in force",
            )
            .await;
        }
        Err(e) => {
            state.metrics.policy_reload_errors.inc();
            let kept = previous.is_some();
            if let Some(p) = previous {
                target.insert(name.clone(), p);
            }
            let message = if kept {
                format!("{e}; the last accepted version of this policy stays in force")
            } else {
                format!("{e}; this policy is not in force")
            };
            tracing::error!(policy = %name, error = %e, kept, "policy object rejected");
            write_status(
                api,
                &name,
                status.as_ref(),
                generation,
                "False",
                "Invalid",
                &message,
            )
            .await;
        }
    }
}

/// Patches `status` unless it already says the same (status patches come back as watch events).
async fn write_status(
    api: &Api<HostProcessPolicy>,
    name: &str,
    current: Option<&HostProcessPolicyStatus>,
    generation: Option<i64>,
    status: &str,
    reason: &str,
    message: &str,
) {
    let existing =
        current.and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_ACCEPTED));
    let unchanged = existing
        .is_some_and(|c| c.status == status && c.reason == reason && c.message == message)
        && current.and_then(|s| s.observed_generation) == generation;
    if unchanged {
        return;
    }
    let transition = match existing {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(jiff::Timestamp::now()),
    };
    let condition = Condition {
        type_: CONDITION_ACCEPTED.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: transition,
        observed_generation: generation,
    };
    let patch = serde_json::json!({
        "status": HostProcessPolicyStatus {
            conditions: vec![condition],
            observed_generation: generation,
        }
    });
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(policy = %name, error = %e, "cannot write the policy status");
    }
}

/// Watches namespace labels (metadata only).
pub async fn watch_namespaces(client: Client, state: Arc<AppState>) {
    // `Api<PartialObjectMeta<_>>` makes metadata-only requests: labels are all we need.
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
    let mut labels: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut buffer: Option<BTreeMap<String, BTreeMap<String, String>>> = None;
    let mut synced = false;
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let entry = |ns: &PartialObjectMeta<Namespace>| (ns.name_any(), ns.labels().clone());
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                state.metrics.watch_errors.inc();
                tracing::warn!(error = %e, resource = "namespaces", "watch failed; retrying");
                continue;
            }
        };
        match event {
            Event::Init => buffer = Some(BTreeMap::new()),
            Event::InitApply(ns) => {
                let (name, l) = entry(&ns);
                buffer.as_mut().unwrap_or(&mut labels).insert(name, l);
            }
            Event::InitDone => {
                if let Some(b) = buffer.take() {
                    labels = b;
                }
                synced = true;
                state.set_namespaces(labels.clone());
            }
            Event::Apply(ns) => {
                let (name, l) = entry(&ns);
                if labels.get(&name) != Some(&l) {
                    labels.insert(name, l);
                    if synced {
                        state.set_namespaces(labels.clone());
                    }
                }
            }
            Event::Delete(ns) => {
                if labels.remove(&ns.name_any()).is_some() && synced {
                    state.set_namespaces(labels.clone());
                }
            }
        }
    }
}

/// Writes the public key into `namespace/name` (an existing ConfigMap) as `<kid>.pub`, retrying
/// with back-off until it succeeds.
pub async fn publish_public_key(
    client: Client,
    signer_kid: String,
    public_pem: String,
    namespace: String,
    name: String,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let patch = serde_json::json!({ "data": { format!("{signer_kid}.pub"): public_pem } });
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(configmap = %format!("{namespace}/{name}"), kid = %signer_kid, "public key published");
                return;
            }
            Err(e) => {
                tracing::warn!(configmap = %format!("{namespace}/{name}"), error = %e, "cannot publish the public key; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(60));
            }
        }
    }
}

/// Drives both watchers; only used where errors would otherwise be dropped silently.
pub async fn run(client: Client, state: Arc<AppState>) {
    let policies = tokio::spawn(watch_policies(client.clone(), Arc::clone(&state)));
    let namespaces = tokio::spawn(watch_namespaces(client, state));
    let _ = futures_util::future::join(policies, namespaces).await;
}
