//! Runner benchmarks (Linux, root, writable cgroups; skipped otherwise).
//!
//! * `runner/approved_spec_to_first_process`: from a parsed, signed manifest to the first
//!   container's program exec'd inside its job: verify the approval, re-evaluate the policies,
//!   resolve the container and check it against the approval, create the pod directory
//!   ([`PodRunner::prepare`]), then create the sandbox and the job and spawn
//!   ([`PodRunner::start`]). Stopping and cleaning up are not timed. Iterations run back to
//!   back.
//! * `runner/approved_spec_to_first_process_after_idle`: the same with 250 ms of idleness
//!   (untimed; `HOSTGATE_BENCH_IDLE_MS` changes it) before each iteration, which is what a node starting an occasional pod sees:
//!   the first cgroup migration after a quiet spell waits for an RCU grace period.
//! * `runner/verify_only`: [`Verifier::verify_pod`] alone (signature, payload comparison,
//!   policy re-evaluation).
//! * `runner/teardown_100_process_container`: a running container whose init process has 100
//!   sleeping children (started and awaited untimed); timed: stop with a zero grace period
//!   (`SIGTERM` + kill), wait, remove the job, sandbox and pod directory.
//!
//! Run: `CARGO_TARGET_DIR=/tmp/target-agent cargo bench -p hostgate-agent --bench runner`;
//! estimates are in `/tmp/target-agent/criterion/runner/*/new/estimates.json`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

#[cfg(target_os = "linux")]
fn benches(c: &mut Criterion) {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Instant;

    use hostgate_agent::container::{MemorySink, Stop};
    use hostgate_agent::job::sys::{CgroupConfig, CgroupJobManager};
    use hostgate_agent::job::{Job, JobManager};
    use hostgate_agent::pod::{NodeInfo, PodManifest, PodRunner, RunnerOptions};
    use hostgate_agent::verify::Verifier;
    use hostgate_core::approval::{ANNOTATION, ApprovedPod, SigningIdentity, generate_key_pair};
    use hostgate_core::object::Workload;
    use hostgate_core::pod::{PodView, SpecPath};
    use serde_json::json;

    if !nix::unistd::geteuid().is_root() {
        eprintln!("runner benchmarks skipped: need root");
        return;
    }
    let manager = || {
        CgroupJobManager::new(CgroupConfig {
            parent: "hostgate-bench".into(),
            ..CgroupConfig::default()
        })
    };
    let manager = match manager() {
        Ok(m) => Arc::new(m),
        Err(err) => {
            eprintln!("runner benchmarks skipped: {err}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, private, _) = generate_key_pair(&dir.path().join("keys")).expect("keygen");
    let identity = SigningIdentity::from_pem_file(&private).expect("key");
    std::fs::create_dir_all(dir.path().join("policies")).expect("mkdir");
    std::fs::write(
        dir.path().join("policies/bench.yaml"),
        r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: bench}
spec:
  match: {namespaces: [bench], serviceAccounts: [bench/agent]}
  allow:
    images: ["registry.example/agent@sha256:*"]
    runAsUserNames: ['NT AUTHORITY\SYSTEM']
    volumes: {types: [configMap, emptyDir]}
  require: {imageDigest: true, limits: {cpu: "1", memory: 256Mi}}
  defaults: {runAsUserName: 'NT AUTHORITY\SYSTEM'}
"#,
    )
    .expect("policy");
    let verifier =
        Verifier::load(&dir.path().join("keys"), &[dir.path().join("policies")]).expect("load");
    let signed = |script: &str| -> PodManifest {
        let value = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "agent", "namespace": "bench"},
            "spec": {
                "serviceAccountName": "agent",
                "restartPolicy": "Never",
                "hostNetwork": true,
                "securityContext": {"windowsOptions": {"hostProcess": true, "runAsUserName": "NT AUTHORITY\\SYSTEM"}},
                "volumes": [{"name": "conf", "configMap": {"name": "conf"}}, {"name": "scratch", "emptyDir": {}}],
                "containers": [{
                    "name": "agent",
                    "image": format!("registry.example/agent@sha256:{}", "0".repeat(64)),
                    "command": ["/bin/sh", "-c", script],
                    "env": [{"name": "LEVEL", "value": "2"}, {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "volumeMounts": [{"name": "conf", "mountPath": "C:\\etc\\agent"}, {"name": "scratch", "mountPath": "C:\\scratch"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                }],
            }
        });
        let Some(Workload::Pod(mut pod)) = Workload::from_value(value).expect("pod") else {
            panic!("not a pod");
        };
        let approved = {
            let spec = pod.spec.as_ref().expect("spec");
            ApprovedPod::describe(
                &PodView::new(spec, Some(&pod.metadata), SpecPath::POD),
                "bench",
            )
        };
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANNOTATION.to_owned(), identity.sign(approved, "bench", 1));
        PodManifest {
            pod: *pod,
            config_maps: BTreeMap::from([(
                "conf".to_owned(),
                BTreeMap::from([("agent.conf".to_owned(), b"level=2".to_vec())]),
            )]),
            secrets: BTreeMap::new(),
        }
    };
    let mut options = RunnerOptions::new(
        dir.path().join("state"),
        dir.path().join("logs"),
        NodeInfo::detect(manager.host_logical_processors()),
    );
    options.sink = Some(Arc::new(MemorySink::default()));
    let runner = PodRunner::new(verifier.clone(), Arc::clone(&manager), options);

    let mut group = c.benchmark_group("runner");
    group.sample_size(30);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));

    let sleeper = signed("exec sleep 1000");
    let (runner, sleeper) = (&runner, &sleeper);
    let first_process = |pause: Duration| {
        move |iters: u64| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(pause);
                let start = Instant::now();
                let pod = runner.prepare(sleeper).expect("prepare");
                let container = runner.start(&pod, &pod.containers[0], 0).expect("start");
                total += start.elapsed();
                let pid = container.pid();
                assert!(
                    container
                        .with_job(|j| j.pids().expect("pids").contains(&pid))
                        .expect("job")
                );
                container.stopper().stop(Duration::ZERO);
                container.wait().expect("wait");
                pod.cleanup().expect("cleanup");
            }
            total
        }
    };
    group.bench_function("approved_spec_to_first_process", |b| {
        b.iter_custom(first_process(Duration::ZERO));
    });
    group.sample_size(10);
    group.sampling_mode(criterion::SamplingMode::Flat);
    let idle = std::env::var("HOSTGATE_BENCH_IDLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(250), Duration::from_millis);
    group.bench_function("approved_spec_to_first_process_after_idle", |b| {
        b.iter_custom(first_process(idle));
    });
    group.sampling_mode(criterion::SamplingMode::Auto);

    group.sample_size(50);
    let spec = sleeper.pod.spec.as_ref().expect("spec");
    let view = PodView::new(spec, Some(&sleeper.pod.metadata), SpecPath::POD);
    group.bench_function("verify_only", |b| {
        b.iter(|| verifier.verify_pod(&view, "bench").expect("verifies"));
    });

    group.sample_size(10);
    let tree = signed("i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done; echo up; wait");
    group.bench_function("teardown_100_process_container", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pod = runner.prepare(&tree).expect("prepare");
                let container = runner.start(&pod, &pod.containers[0], 0).expect("start");
                let deadline = Instant::now() + Duration::from_secs(30);
                while container.with_job(|j| j.pids().expect("pids").len()) != Some(101) {
                    assert!(Instant::now() < deadline, "tree did not start");
                    std::thread::sleep(Duration::from_millis(1));
                }
                let start = Instant::now();
                container.stopper().stop(Duration::ZERO);
                container.wait().expect("wait");
                pod.cleanup().expect("cleanup");
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

#[cfg(not(target_os = "linux"))]
fn benches(_: &mut Criterion) {
    eprintln!("runner benchmarks only run on Linux");
}

criterion_group!(runner, benches);
criterion_main!(runner);
