//! Engine benchmarks: one evaluation of a parsed pod (typical and worst case), and reading plus
//! judging manifests end to end (the work of `hostgate check` per object).
//!
//! Run: `cargo bench --bench engine`. Figures go into the issue notes; no test asserts on time.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hostgate::engine::{EvalContext, evaluate};
use hostgate::manifest::read_documents;
use hostgate::object::Workload;
use hostgate::policy::PolicySet;
use hostgate::policy::load::load_paths;

const DIGEST: &str = "sha256:4f5c2b7e8d0a9c1b3e6f7a8d9c0b1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d";

fn shipped_policies() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    match load_paths(&[dir]) {
        Ok(set) => set,
        Err(e) => panic!("shipped policies must load: {e}"),
    }
}

fn workload(yaml: &str) -> Workload {
    let (docs, err) = read_documents(yaml.as_bytes());
    assert!(err.is_none(), "{err:?}");
    let value = docs.into_iter().next().map(|d| d.value);
    match value.map(Workload::from_value) {
        Some(Ok(Some(w))) => w,
        other => panic!("bench manifest must be a judged workload: {other:?}"),
    }
}

/// The csi-proxy DaemonSet the shipped csi-proxy policy admits.
fn typical() -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: csi-proxy, namespace: kube-system}}
spec:
  selector: {{matchLabels: {{k8s-app: csi-proxy}}}}
  template:
    metadata: {{labels: {{k8s-app: csi-proxy}}}}
    spec:
      serviceAccountName: csi-proxy
      nodeSelector: {{kubernetes.io/os: windows}}
      hostNetwork: true
      securityContext:
        windowsOptions: {{hostProcess: true, runAsUserName: 'NT AUTHORITY\SYSTEM'}}
      containers:
      - name: csi-proxy
        image: ghcr.io/kubernetes-sigs/sig-windows/csi-proxy@{DIGEST}
        args: [-v=2]
        resources:
          requests: {{cpu: 100m, memory: 64Mi}}
          limits: {{cpu: 500m, memory: 128Mi}}
"#
    )
}

/// The worst case we can build for one pod against the shipped policies: it matches the most
/// permissive admitting policy's namespace and service account, has 100 init and 100 regular
/// containers that each break every constraint (image, digest, user, limits), 50 hostPath
/// volumes outside the prefixes and both privileged annotations, so every check runs to the end
/// and every finding is rendered.
fn worst() -> String {
    let mut s = String::from(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: worst
  namespace: calico-system
  annotations: {microsoft.com/hostprocess-inherit-user: "true", microsoft.com/hostprocess-rootfs-location: 'C:\x'}
spec:
  serviceAccountName: calico-node
  hostNetwork: true
  os: {name: windows}
  securityContext: {windowsOptions: {hostProcess: true, runAsUserName: 'NT Authority\Network Service'}}
  volumes:
"#,
    );
    for i in 0..50 {
        s.push_str(&format!(
            "  - {{name: v{i}, hostPath: {{path: 'C:\\Windows\\System32\\d{i}'}}}}\n"
        ));
    }
    for list in ["initContainers", "containers"] {
        s.push_str(&format!("  {list}:\n"));
        for i in 0..100 {
            s.push_str(&format!(
                "  - {{name: {list}-{i}, image: 'evil.example/x{i}:latest', securityContext: {{windowsOptions: {{runAsUserName: 'nt authority\\u{i}'}}}}, volumeMounts: [{{name: v{}, mountPath: 'C:\\m'}}], resources: {{limits: {{cpu: '64', memory: 64Gi}}}}}}\n",
                i % 50
            ));
        }
    }
    s
}

fn bench_evaluate(c: &mut Criterion) {
    let set = shipped_policies();
    let mut group = c.benchmark_group("evaluate");
    for (name, yaml) in [
        ("typical_daemonset", typical()),
        ("worst_case_pod", worst()),
    ] {
        let w = workload(&yaml);
        let ns = w.namespace().unwrap_or("default").to_owned();
        let ctx = EvalContext::new(&ns);
        let view = w.pod().expect("pod spec");
        let d = evaluate(&set, &view, &ctx);
        if name == "typical_daemonset" {
            assert!(d.allowed, "typical pod must be admitted: {d:?}");
        } else {
            assert!(
                !d.allowed && d.denials.len() > 500,
                "worst case must fail everywhere"
            );
        }
        group.bench_function(name, |b| {
            b.iter(|| evaluate(black_box(&set), black_box(&view), &ctx))
        });
    }
    group.finish();
}

/// Parse + judge, as `hostgate check` does per manifest, over the shared workload generator's
/// pod shape (half of them HostProcess pods).
fn bench_manifests(c: &mut Criterion) {
    let set = shipped_policies();
    let labels: BTreeMap<String, String> = BTreeMap::new();
    let manifests: Vec<String> = (0..100)
        .map(|i| {
            let hp = if i % 2 == 0 {
                "  hostNetwork: true\n  securityContext: {windowsOptions: {hostProcess: true, runAsUserName: 'NT AUTHORITY\\SYSTEM'}}\n"
            } else {
                ""
            };
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i:05}\n  namespace: team-a\n  labels: {{app: app-{i}, tier: windows}}\n  annotations: {{example.com/owner: team}}\nspec:\n{hp}  nodeSelector: {{kubernetes.io/os: windows}}\n  containers:\n  - name: main\n    image: mcr.microsoft.com/windows/nanoserver:ltsc2022\n    command: [powershell.exe, -Command, Start-Sleep 3600]\n    env: [{{name: VAR_0, value: value-0}}, {{name: VAR_1, value: value-1}}, {{name: VAR_2, value: value-2}}, {{name: VAR_3, value: value-3}}]\n    resources: {{requests: {{cpu: 100m, memory: 128Mi}}, limits: {{cpu: 500m, memory: 256Mi}}}}\n    volumeMounts: [{{name: logs, mountPath: 'C:\\logs'}}]\n  - name: sidecar\n    image: mcr.microsoft.com/windows/nanoserver:ltsc2022\n    command: [powershell.exe, -Command, Start-Sleep 3600]\n    resources: {{requests: {{cpu: 100m, memory: 128Mi}}, limits: {{cpu: 500m, memory: 256Mi}}}}\n    volumeMounts: [{{name: logs, mountPath: 'C:\\logs'}}]\n  volumes: [{{name: logs, emptyDir: {{}}}}]\n"
            )
        })
        .collect();
    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(manifests.len() as u64));
    group.bench_function("parse_and_judge_100_pod_manifests", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut denied = 0usize;
                for m in &manifests {
                    let (docs, _) = read_documents(m.as_bytes());
                    for doc in docs {
                        if let Ok(Some(w)) = Workload::from_value(doc.value) {
                            let ns = w.namespace().unwrap_or("default");
                            let ctx = EvalContext {
                                namespace_labels: Some(&labels),
                                ..EvalContext::new(ns)
                            };
                            if let Some(view) = w.pod() {
                                denied += usize::from(!evaluate(&set, &view, &ctx).allowed);
                            }
                        }
                    }
                }
                assert_eq!(denied, 50);
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench_evaluate, bench_manifests);
criterion_main!(benches);
