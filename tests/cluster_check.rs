//! `hostgate check --cluster` against kube's mock service (tower-test): paginated lists of
//! namespaces, the seven workload kinds and pods, judged as offline input is, with owned pods
//! skipped unless asked for, and policies from the cluster.

use std::sync::{Arc, Mutex};

use hostgate::check::cluster::{self, ClusterOptions};
use hostgate::check::output::{self, Format, OutputOptions};
use hostgate::check::{CheckOptions, FailOn, Status, Verdict};
use hostgate::policy::PolicySet;
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::Handle;

type MockHandle = Handle<Request<Body>, Response<Body>>;

fn hp_spec(image: &str) -> Value {
    json!({
        "hostNetwork": true,
        "securityContext": {"windowsOptions": {"hostProcess": true, "runAsUserName": "NT AUTHORITY\\Local service"}},
        "containers": [{"name": "c", "image": image}]
    })
}

fn daemonset() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "csi-proxy", "namespace": "kube-system", "uid": "ds-1"},
        "spec": {
            "selector": {"matchLabels": {"app": "csi-proxy"}},
            "template": {"metadata": {"labels": {"app": "csi-proxy"}}, "spec": hp_spec("registry.example/csi-proxy:v1")}
        }
    })
}

fn pod(name: &str, namespace: &str, owner: Option<&str>, spec: Value) -> Value {
    let mut meta = json!({"name": name, "namespace": namespace, "uid": format!("pod-{name}")});
    if let Some(uid) = owner {
        meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "csi-proxy", "uid": uid, "controller": true}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

fn pods() -> Vec<Value> {
    let mut out: Vec<Value> = (0..5)
        .map(|i| {
            pod(
                &format!("csi-proxy-{i}"),
                "kube-system",
                Some("ds-1"),
                hp_spec("registry.example/csi-proxy:v1"),
            )
        })
        .collect();
    out.push(pod(
        "agent",
        "windows-agents",
        None,
        hp_spec("registry.example/agent:v2"),
    ));
    out.push(pod(
        "web",
        "windows-agents",
        None,
        json!({"containers": [{"name": "web", "image": "nginx"}]}),
    ));
    out
}

fn cluster_policy() -> Value {
    json!({
        "apiVersion": "hostgate.io/v1alpha1", "kind": "HostProcessPolicy",
        "metadata": {"name": "agents"},
        "spec": {
            "match": {"namespaceSelector": {"matchLabels": {"hostgate.io/hostprocess": "allowed"}}},
            "allow": {"images": ["registry.example/agent:*"]}
        }
    })
}

fn namespaces() -> Vec<Value> {
    ["kube-system", "windows-agents"]
        .iter()
        .map(|n| {
            let mut labels = json!({"kubernetes.io/metadata.name": n});
            if *n == "windows-agents" {
                labels["hostgate.io/hostprocess"] = json!("allowed");
            }
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": n, "labels": labels}})
        })
        .collect()
}

fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// One page of `items` as the apiserver pages: `limit` items from the offset in `continue`.
fn page_body(kind: &str, items: &[Value], query: &str) -> Vec<u8> {
    let limit: usize = query_param(query, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(items.len());
    let start: usize = query_param(query, "continue")
        .and_then(|c| c.strip_prefix("offset-"))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let end = (start + limit).min(items.len());
    let mut metadata = json!({"resourceVersion": "10"});
    if end < items.len() {
        metadata["continue"] = json!(format!("offset-{end}"));
    }
    let body = json!({"apiVersion": "v1", "kind": kind, "metadata": metadata, "items": items[start.min(end)..end]});
    serde_json::to_vec(&body).expect("json")
}

/// The list answer for `path?query`, as bytes.
fn route(path: &str, query: &str) -> Vec<u8> {
    match path {
        "/api/v1/namespaces" => page_body("PartialObjectMetadataList", &namespaces(), query),
        "/apis/hostgate.io/v1alpha1/hostprocesspolicies" => {
            page_body("HostProcessPolicyList", &[cluster_policy()], query)
        }
        "/apis/apps/v1/daemonsets" | "/apis/apps/v1/namespaces/kube-system/daemonsets" => {
            page_body("DaemonSetList", &[daemonset()], query)
        }
        "/api/v1/pods" => page_body("PodList", &pods(), query),
        p if p.ends_with("/pods") => {
            let ns = p
                .trim_start_matches("/api/v1/namespaces/")
                .trim_end_matches("/pods");
            let mine: Vec<Value> = pods()
                .into_iter()
                .filter(|p| p["metadata"]["namespace"] == ns)
                .collect();
            page_body("PodList", &mine, query)
        }
        _ => page_body("List", &[], query),
    }
}

/// Answers every list request; records `path?query` of each.
async fn apiserver(mut handle: MockHandle, seen: Arc<Mutex<Vec<String>>>) {
    while let Some((request, send)) = handle.next_request().await {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        seen.lock().expect("lock").push(format!("{path}?{query}"));
        assert_eq!(request.method(), "GET", "{path}");
        send.send_response(
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from(route(&path, &query)))
                .expect("response"),
        );
    }
}

fn mock() -> (Client, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(apiserver(handle, Arc::clone(&seen)));
    (Client::new(service, "default"), seen, server)
}

async fn cluster_set(client: &Client) -> PolicySet {
    let (valid, invalid) = cluster::policies(client, 2).await.expect("policies");
    assert!(invalid.is_empty(), "{invalid:?}");
    PolicySet::new(valid).expect("set")
}

#[tokio::test]
async fn judges_workloads_and_standalone_pods_page_by_page() {
    let (client, seen, server) = mock();
    let opts = CheckOptions::new(cluster_set(&client).await);
    let cluster_opts = ClusterOptions {
        page_size: 2,
        ..ClusterOptions::default()
    };
    let report = cluster::check_cluster(&client, opts, &cluster_opts)
        .await
        .expect("report");
    let got: Vec<(&str, &str, Verdict)> = report
        .results
        .iter()
        .map(|r| (r.kind, r.name.as_str(), r.verdict))
        .collect();
    assert_eq!(
        got,
        [
            ("DaemonSet", "csi-proxy", Verdict::Denied),
            ("Pod", "agent", Verdict::Allowed),
            ("Pod", "web", Verdict::Allowed),
        ]
    );
    assert_eq!(report.results[0].decision.denials[0].rule, "HG-MATCH-01");
    // The namespace selector matched through the cluster's namespace labels.
    assert_eq!(report.results[1].decision.policy.as_deref(), Some("agents"));
    // The DaemonSet's five pods are skipped: its template is judged.
    assert_eq!(report.skipped.len(), 5);
    assert!(
        report
            .skipped
            .iter()
            .all(|s| s.owner.as_deref() == Some("DaemonSet csi-proxy"))
    );
    assert_eq!(report.status(FailOn::Deny), Status::Failed);

    // Every list is paged; seven pods in pages of two take four requests.
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.iter().all(|r| r.contains("limit=2")), "{seen:?}");
    let pod_requests: Vec<&String> = seen
        .iter()
        .filter(|r| r.starts_with("/api/v1/pods?"))
        .collect();
    assert_eq!(pod_requests.len(), 4, "{pod_requests:?}");
    assert!(
        pod_requests[1].contains("continue=offset-2"),
        "{pod_requests:?}"
    );
    for path in [
        "/apis/batch/v1/cronjobs?",
        "/apis/batch/v1/jobs?",
        "/apis/apps/v1/deployments?",
        "/apis/apps/v1/replicasets?",
        "/apis/apps/v1/statefulsets?",
        "/api/v1/replicationcontrollers?",
    ] {
        assert!(
            seen.iter().any(|r| r.starts_with(path)),
            "{path} not listed: {seen:?}"
        );
    }

    // The same outputs as offline input: the source is the object's apiserver path.
    let mut text = Vec::new();
    output::write_report(
        &mut text,
        &report,
        &OutputOptions {
            format: Format::Text,
            verbose: true,
            ..OutputOptions::default()
        },
    )
    .expect("text");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(
        text.contains("DaemonSet kube-system/csi-proxy (cluster:/apis/apps/v1/namespaces/kube-system/daemonsets/csi-proxy): DENIED\n"),
        "{text}"
    );
    assert!(
        text.contains("skipped v1 Pod kube-system/csi-proxy-0 (cluster:/api/v1/namespaces/kube-system/pods/csi-proxy-0): runs the pod template of DaemonSet csi-proxy, which is judged"),
        "{text}"
    );
    server.abort();
}

#[tokio::test]
async fn owned_pods_on_request_and_one_namespace() {
    let (client, seen, server) = mock();
    let opts = CheckOptions::new(cluster_set(&client).await);
    let cluster_opts = ClusterOptions {
        namespace: Some("kube-system".into()),
        owned_pods: true,
        page_size: 100,
    };
    let report = cluster::check_cluster(&client, opts, &cluster_opts)
        .await
        .expect("report");
    let names: Vec<&str> = report.results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "csi-proxy",
            "csi-proxy-0",
            "csi-proxy-1",
            "csi-proxy-2",
            "csi-proxy-3",
            "csi-proxy-4"
        ]
    );
    assert!(report.results.iter().all(|r| r.verdict == Verdict::Denied));
    assert!(report.skipped.is_empty());
    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.iter()
            .any(|r| r.starts_with("/api/v1/namespaces/kube-system/pods?")),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|r| r.starts_with("/api/v1/pods?")),
        "{seen:?}"
    );
    server.abort();
}

#[tokio::test]
async fn a_refused_list_is_an_error_naming_the_resource() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        while let Some((_, send)) = handle.next_request().await {
            let status = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "message": "namespaces is forbidden", "reason": "Forbidden", "code": 403});
            send.send_response(
                Response::builder()
                    .status(StatusCode::FORBIDDEN)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&status).expect("json")))
                    .expect("response"),
            );
        }
    });
    let client = Client::new(service, "default");
    let err = cluster::check_cluster(
        &client,
        CheckOptions::new(PolicySet::default()),
        &ClusterOptions::default(),
    )
    .await
    .expect_err("forbidden");
    assert!(
        err.to_string().starts_with("listing v1 namespaces: "),
        "{err}"
    );
    server.abort();
}

/// Serves `route` over plain HTTP on loopback, one request per connection, for the binary.
fn http_apiserver() -> std::net::SocketAddr {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let target = request_line.split(' ').nth(1).unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let body = route(path, query);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body));
        }
    });
    addr
}

/// The binary: `--cluster` gives the same outputs and exit codes as files.
#[test]
fn the_binary_checks_a_cluster_with_the_usual_outputs_and_exit_codes() {
    let addr = http_apiserver();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster: {{server: 'http://{addr}'}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: mock\n  context: {{cluster: mock, user: u, namespace: windows-agents}}\ncurrent-context: mock\n"
        ),
    )
    .expect("write");
    let hostgate = || {
        let mut c = assert_cmd::Command::cargo_bin("hostgate").expect("binary");
        c.env_remove("KUBECONFIG")
            .args([
                "check",
                "--cluster",
                "--policy-source",
                "cluster",
                "--kubeconfig",
            ])
            .arg(&kubeconfig);
        c
    };
    // All namespaces: the DaemonSet in kube-system is denied.
    let out = hostgate()
        .args(["-A", "-o", "json"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["summary"]["denied"], 1);
    assert_eq!(v["summary"]["skipped"], 5);
    assert_eq!(
        v["results"][0]["source"],
        json!({"file": "cluster:/apis/apps/v1/namespaces/kube-system/daemonsets/csi-proxy", "document": 0})
    );
    // The context's namespace: everything there is admitted.
    let out = hostgate().output().expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Pod windows-agents/agent (cluster:/api/v1/namespaces/windows-agents/pods/agent): ALLOWED by policy agents\n")
    );
    // SARIF works the same way.
    let out = hostgate()
        .args(["-n", "kube-system", "-o", "sarif"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("sarif");
    assert_eq!(v["runs"][0]["results"][0]["ruleId"], "HG-MATCH-01");
    // Cluster policies need --cluster.
    let out = assert_cmd::Command::cargo_bin("hostgate")
        .expect("binary")
        .args(["check", "--policy-source", "cluster", "x.yaml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("add --cluster"), "{err}");
}
