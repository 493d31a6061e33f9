//! Policies from the cluster, against kube's mock service (tower-test): the initial list gates
//! readiness, namespace labels feed selectors, a bad policy object gets an `Accepted=False`
//! status while the last good version stays in force, a watch error is counted and retried, and
//! the public key is published.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hostgate::server::cluster;
use hostgate::server::state::{AppState, PolicySource};
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

type MockHandle = Handle<Request<Body>, Response<Body>>;

fn policy(name: &str, generation: i64, service_accounts: Value) -> Value {
    json!({
        "apiVersion": "hostgate.io/v1alpha1",
        "kind": "HostProcessPolicy",
        "metadata": {"name": name, "generation": generation, "resourceVersion": "1"},
        "spec": {
            "match": {
                "serviceAccounts": service_accounts,
                "namespaceSelector": {"matchLabels": {"hostgate.io/hostprocess": "allowed"}}
            },
            "allow": {"images": ["registry.example/*"]}
        }
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

/// What the fake apiserver saw and how it answers.
#[derive(Default)]
struct Recorded {
    status_patches: Vec<(String, Value)>,
    configmap_patches: Vec<(String, Value)>,
    policy_watches: usize,
}

/// Answers list, watch and patch requests as the apiserver would. `policy_watch` gives the
/// answer to the n-th policy watch (`None`: keep the request open, as an idle watch does).
async fn apiserver(
    mut handle: MockHandle,
    recorded: Arc<Mutex<Recorded>>,
    policies: Vec<Value>,
    policy_watch: impl Fn(usize) -> Option<Response<Body>>,
) {
    // Open watches are parked here: dropping them would end them with an error.
    let mut parked: Vec<SendResponse<Response<Body>>> = Vec::new();
    while let Some((request, send)) = handle.next_request().await {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let watch = query.contains("watch=true");
        match (method.as_str(), path.as_str(), watch) {
            ("GET", "/apis/hostgate.io/v1alpha1/hostprocesspolicies", false) => {
                send.send_response(json_response(
                    StatusCode::OK,
                    &json!({
                        "apiVersion": "hostgate.io/v1alpha1",
                        "kind": "HostProcessPolicyList",
                        "metadata": {"resourceVersion": "5"},
                        "items": policies,
                    }),
                ));
            }
            ("GET", "/apis/hostgate.io/v1alpha1/hostprocesspolicies", true) => {
                let n = {
                    let mut r = recorded.lock().expect("lock");
                    r.policy_watches += 1;
                    r.policy_watches
                };
                match policy_watch(n) {
                    Some(response) => send.send_response(response),
                    None => parked.push(send),
                }
            }
            ("GET", "/api/v1/namespaces", false) => {
                send.send_response(json_response(
                    StatusCode::OK,
                    &json!({
                        "apiVersion": "meta.k8s.io/v1",
                        "kind": "PartialObjectMetadataList",
                        "metadata": {"resourceVersion": "7"},
                        "items": [
                            {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                             "metadata": {"name": "windows-agents", "labels": {"hostgate.io/hostprocess": "allowed", "kubernetes.io/metadata.name": "windows-agents"}}},
                            {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                             "metadata": {"name": "default", "labels": {"kubernetes.io/metadata.name": "default"}}},
                        ],
                    }),
                ));
            }
            ("GET", "/api/v1/namespaces", true) => parked.push(send),
            ("PATCH", p, false)
                if p.starts_with("/apis/hostgate.io/v1alpha1/hostprocesspolicies/")
                    && p.ends_with("/status") =>
            {
                let name = p
                    .trim_end_matches("/status")
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let body = body_json(request).await;
                recorded
                    .lock()
                    .expect("lock")
                    .status_patches
                    .push((name.clone(), body));
                send.send_response(json_response(StatusCode::OK, &policy(&name, 1, json!([]))));
            }
            ("PATCH", p, false)
                if p.starts_with("/api/v1/namespaces/") && p.contains("/configmaps/") =>
            {
                let body = body_json(request).await;
                recorded
                    .lock()
                    .expect("lock")
                    .configmap_patches
                    .push((p.to_owned(), body));
                send.send_response(json_response(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keys", "namespace": "hostgate"}}),
                ));
            }
            other => panic!("unexpected request {other:?} ?{query}"),
        }
    }
}

async fn body_json(request: Request<Body>) -> Value {
    use http_body_util::BodyExt as _;
    let bytes = request
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("JSON patch body")
}

fn watch_events(events: &[(&str, Value)]) -> Response<Body> {
    let mut body = Vec::new();
    for (kind, object) in events {
        body.extend(serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json"));
        body.push(b'\n');
    }
    Response::builder()
        .status(StatusCode::OK)
        .body(Body::from(body))
        .expect("response")
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    hostgate_test_support::wait::eventually_async(what, async || check()).await;
}

fn cluster_state() -> Arc<AppState> {
    let state = Arc::new(AppState::new(None, None, true));
    state.set_policy_source(PolicySource::Cluster);
    state.set_tls_ready();
    state
}

fn condition(patch: &Value) -> (&str, &str, &str) {
    let c = &patch["status"]["conditions"][0];
    (
        c["status"].as_str().unwrap_or(""),
        c["reason"].as_str().unwrap_or(""),
        c["message"].as_str().unwrap_or(""),
    )
}

#[tokio::test]
async fn initial_sync_gates_readiness_and_bad_objects_keep_the_last_good_version() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let state = cluster_state();
    let recorded = Arc::new(Mutex::new(Recorded::default()));

    let good = policy("agents", 1, json!(["windows-agents/*"]));
    let broken = policy("broken", 1, json!(["no-slash"]));
    // The first watch delivers an invalid new version of the good policy.
    let update = policy("agents", 2, json!(["still-no-slash"]));
    let server = tokio::spawn(apiserver(
        handle,
        Arc::clone(&recorded),
        vec![good, broken],
        move |n| (n == 1).then(|| watch_events(&[("MODIFIED", update.clone())])),
    ));
    assert!(!state.is_ready(), "not ready before the first list");

    let policies = tokio::spawn(cluster::watch_policies(client.clone(), Arc::clone(&state)));
    // Policies alone are not enough: namespaces must be listed too.
    eventually("the policy list", || {
        recorded.lock().expect("lock").status_patches.len() >= 2
    })
    .await;
    assert!(!state.is_ready(), "not ready until namespaces are listed");
    let namespaces = tokio::spawn(cluster::watch_namespaces(client, Arc::clone(&state)));
    eventually("readiness", || state.is_ready()).await;

    let snapshot = state.policies().expect("installed");
    assert!(snapshot.set.get("agents").is_some());
    assert!(
        snapshot.set.get("broken").is_none(),
        "an invalid object is not in force"
    );
    assert_eq!(
        snapshot
            .namespaces
            .get("windows-agents")
            .and_then(|l| l.get("hostgate.io/hostprocess"))
            .map(String::as_str),
        Some("allowed")
    );

    // Status: accepted, rejected with the field, then the bad update keeps the last good one.
    eventually("the status of the bad update", || {
        recorded.lock().expect("lock").status_patches.len() >= 3
    })
    .await;
    let r = recorded.lock().expect("lock");
    let by_name: BTreeMap<&str, Vec<&Value>> =
        r.status_patches
            .iter()
            .fold(BTreeMap::new(), |mut m, (n, v)| {
                m.entry(n.as_str()).or_default().push(v);
                m
            });
    assert_eq!(
        condition(by_name["agents"][0]),
        ("True", "Valid", "the policy is in force")
    );
    let (status, reason, message) = condition(by_name["broken"][0]);
    assert_eq!((status, reason), ("False", "Invalid"));
    assert!(
        message.contains("spec.match.serviceAccounts[0]") && message.contains("not in force"),
        "{message}"
    );
    let (status, _, message) = condition(by_name["agents"][1]);
    assert_eq!(status, "False");
    assert!(
        message.contains("last accepted version of this policy stays in force"),
        "{message}"
    );
    assert_eq!(by_name["agents"][1]["status"]["observedGeneration"], 2);
    drop(r);
    let still = state.policies().expect("installed");
    assert!(
        still.set.get("agents").is_some(),
        "the last good version stays"
    );
    assert!(
        state
            .metrics
            .encode()
            .contains("hostgate_policy_reload_errors_total 2")
    );

    policies.abort();
    namespaces.abort();
    server.abort();
}

#[tokio::test]
async fn a_watch_error_is_counted_and_retried_without_losing_the_set() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let state = cluster_state();
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let good = policy("agents", 1, json!(["windows-agents/*"]));
    let server = tokio::spawn(apiserver(handle, Arc::clone(&recorded), vec![good], |n| {
        (n == 1).then(|| {
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "message": "etcdserver: leader changed", "reason": "InternalError", "code": 500}),
            )
        })
    }));
    let policies = tokio::spawn(cluster::watch_policies(client.clone(), Arc::clone(&state)));
    let namespaces = tokio::spawn(cluster::watch_namespaces(client, Arc::clone(&state)));
    eventually("readiness", || state.is_ready()).await;
    eventually("the watch error to be counted", || {
        state
            .metrics
            .encode()
            .contains("hostgate_watch_errors_total 1")
    })
    .await;
    eventually("a retried watch", || {
        recorded.lock().expect("lock").policy_watches >= 2
    })
    .await;
    assert!(
        state.is_ready(),
        "a watch error does not drop the set in force"
    );
    assert!(
        state
            .policies()
            .expect("installed")
            .set
            .get("agents")
            .is_some()
    );
    policies.abort();
    namespaces.abort();
    server.abort();
}

#[tokio::test]
async fn the_public_key_is_published_for_the_agents() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let server = tokio::spawn(apiserver(handle, Arc::clone(&recorded), vec![], |_| None));
    let signer =
        hostgate::approval::SigningIdentity::new(hostgate::approval::generate_key().expect("key"));
    let pem = signer.public_key_pem().expect("pem");
    cluster::publish_public_key(
        client,
        signer.kid().to_owned(),
        pem.clone(),
        "hostgate".into(),
        "hostgate-keys".into(),
    )
    .await;
    let r = recorded.lock().expect("lock");
    let (path, body) = &r.configmap_patches[0];
    assert_eq!(path, "/api/v1/namespaces/hostgate/configmaps/hostgate-keys");
    assert_eq!(body["data"][format!("{}.pub", signer.kid())], json!(pem));
    drop(r);
    server.abort();
}
