//! Pods shaped like bench/gen-workload.py's (two containers with env, limits and a mount; every
//! other one HostProcess), shared by the benchmarks that need many of them.

use serde_json::{Value, json};

/// Pod number `i` in `namespace`, with a `metadata.uid`.
pub fn pod(i: usize, namespace: &str) -> Value {
    let container = |name: &str| {
        json!({
            "name": name, "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022",
            "command": ["powershell.exe", "-Command", "Start-Sleep 3600"],
            "env": (0..4).map(|k| json!({"name": format!("VAR_{k}"), "value": format!("value-{k}")})).collect::<Vec<_>>(),
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
            "volumeMounts": [{"name": "logs", "mountPath": "C:\\logs"}]
        })
    };
    let mut spec = json!({
        "nodeSelector": {"kubernetes.io/os": "windows"},
        "containers": [container("main"), container("sidecar")],
        "volumes": [{"name": "logs", "emptyDir": {}}]
    });
    if i.is_multiple_of(2) {
        spec["hostNetwork"] = json!(true);
        spec["securityContext"] = json!({"windowsOptions": {"hostProcess": true, "runAsUserName": "NT AUTHORITY\\SYSTEM"}});
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i:05}"), "namespace": namespace, "uid": format!("uid-{i}"),
                     "labels": {"app": format!("app-{}", i % 17), "tier": "windows"},
                     "annotations": {"example.com/owner": "team"}},
        "spec": spec
    })
}
