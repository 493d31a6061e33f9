//! `hostgate-agent run` end to end: approved pods signed here with fresh keys, policies written
//! to a temporary directory, containers in real cgroups.
//!
//! These tests need root and writable cgroups: without them each prints why and is skipped, or
//! fails when `CI` is set (see `hostgate_test_support::prereq`; `pod_fake.rs` tests the pod
//! lifecycle without root). Every pod has a unique name and every container carries
//! `HG_TEST_MARKER=<pod>` in its environment, so processes left behind are found by scanning
//! `/proc/*/environ`. Waits are bounded by generous deadlines (failures, not performance
//! checks): no timing assertions.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hostgate_agent::container::{MemorySink, Stream};
use hostgate_agent::job::limits::{CpuMax, cfs_quota_us, kubelet_cpu_maximum};
use hostgate_agent::job::sys::{CgroupConfig, CgroupJobManager, CgroupSetup};
use hostgate_agent::job::{Job, JobManager};
use hostgate_agent::pod::{NodeInfo, PodManifest, PodOutcome, PodRunner, RunError, RunnerOptions};
use hostgate_agent::stop::{StopReason, StopToken};
use hostgate_agent::verify::Verifier;
use hostgate_test_support::pods::{MARKER, NAMESPACE, Signer, failing_init, pod, refusals};
use hostgate_test_support::procs::{self, assert_empty_dir, assert_nothing_mounted_under};
use hostgate_test_support::{Prereq, require, unique_name as unique, wait_until};
use serde_json::{Value, json};

const PARENT: &str = "hostgate-agent-test";

/// Keys, policies, state and log directories in one temporary directory.
struct Harness {
    dir: tempfile::TempDir,
    signer: Signer,
}

impl Harness {
    /// Callers have checked the prerequisites (root, cgroups).
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = Signer::create(dir.path());
        Self { dir, signer }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn verifier(&self) -> Verifier {
        Verifier::load(&self.path("keys"), &[self.path("policies")]).expect("verifier")
    }

    fn options(&self) -> RunnerOptions {
        let manager = manager();
        let mut o = RunnerOptions::new(
            self.path("state"),
            self.path("logs"),
            NodeInfo::detect(manager.host_logical_processors()),
        );
        o.backoff = Duration::from_millis(10);
        o.backoff_max = Duration::from_millis(40);
        o.grace_period = Some(Duration::from_millis(500));
        o
    }

    fn runner(&self, tweak: impl FnOnce(&mut RunnerOptions)) -> (PodRunner, Arc<MemorySink>) {
        let sink = Arc::new(MemorySink::default());
        let mut options = self.options();
        options.sink = Some(sink.clone());
        tweak(&mut options);
        let runner = PodRunner::new(self.verifier(), Arc::new(manager()), options);
        (runner, sink)
    }

    /// Signs `pod` as the webhook would and returns the manifest.
    fn signed(&self, pod: Value) -> PodManifest {
        PodManifest {
            pod: self.signer.sign(pod),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    /// Nothing of the run is left: no sandbox, pod directory or mount under the state
    /// directory, no cgroup and no process of the pod.
    fn assert_nothing_left(&self, pod: &str) {
        let state = self.path("state");
        for sub in ["hpc", "pods"] {
            assert_empty_dir(&state.join(sub));
        }
        assert_nothing_mounted_under(&state);
        let needle = format!("{NAMESPACE}_{pod}_");
        for parent in manager().parent_dirs() {
            let left: Vec<_> = fs::read_dir(&parent)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with(&needle))
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                left.is_empty(),
                "cgroups left in {}: {left:?}",
                parent.display()
            );
        }
        procs::assert_no_marked(MARKER, pod);
    }
}

/// The job manager; callers have checked the prerequisites, so a failure here is a bug.
fn manager() -> CgroupJobManager {
    CgroupJobManager::new(CgroupConfig {
        parent: PathBuf::from(PARENT),
        ..CgroupConfig::default()
    })
    .unwrap_or_else(|err| panic!("cgroup manager: {err}"))
}

/// Waits until the number of live processes carrying the pod's marker satisfies `expect`.
/// Always polled, never read once (see `procs::marked`).
fn wait_for_marked(pod: &str, what: &str, expect: impl Fn(usize) -> bool) {
    procs::wait_for_marked(MARKER, pod, what, expect);
}

fn lines(sink: &MemorySink, container: &str) -> Vec<String> {
    sink.records()
        .into_iter()
        .filter(|(c, s, _)| c == container && *s == Stream::Stdout)
        .map(|(_, _, l)| l)
        .collect()
}

/// Runs the pod in a thread; returns the join handle and the stop token.
fn spawn_run(
    runner: PodRunner,
    manifest: PodManifest,
) -> (
    std::thread::JoinHandle<Result<PodOutcome, RunError>>,
    StopToken,
) {
    let stop = StopToken::new();
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        let pod = runner.prepare(&manifest)?;
        runner.run(pod, &s)
    });
    (handle, stop)
}

#[test]
fn hundred_process_container_is_gone_after_stop() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    let name = unique("tree");
    let (runner, sink) = h.runner(|_| {});
    let manifest = h.signed(pod(
        &name,
        "Always",
        &[],
        &[(
            "tree",
            "i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done; echo ready; wait",
        )],
    ));
    let (run, stop) = spawn_run(runner, manifest);
    wait_until("ready", || {
        lines(&sink, "tree").contains(&"ready".to_owned())
    });
    wait_for_marked(&name, "the shell and its 100 sleepers", |n| n >= 101);
    stop.stop(StopReason::Terminate);
    let outcome = run.join().expect("no panic").expect("runs");
    assert_eq!(outcome.exit_code(), 0, "Always + clean stop: {outcome}");
    assert_eq!(outcome.stopped_by, Some(StopReason::Terminate));
    h.assert_nothing_left(&name);
}

#[test]
fn setsid_grandchild_dies_when_the_init_process_exits() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    let name = unique("setsid");
    let (runner, sink) = h.runner(|o| o.grace_period = Some(Duration::from_millis(200)));
    // The grandchild leaves the session, ignores SIGTERM and outlives the init process, which
    // exits 0 at once: the job's stop sequence (SIGTERM, grace, kill) must end it.
    // `$$$$` is `$$` once the kubelet's `$(VAR)` expansion has turned `$$` into `$`.
    let script = "(setsid -f sh -c 'trap \"\" TERM; echo \"grandchild $$$$\"; exec sleep 1000' </dev/null &); \
                  sleep 0.2; echo done";
    let manifest = h.signed(pod(&name, "Never", &[], &[("main", script)]));
    let pod = runner.prepare(&manifest).expect("prepare");
    let outcome = runner.run(pod, &StopToken::new()).expect("runs");
    assert_eq!(outcome.exit_code(), 0, "{outcome}");
    let out = lines(&sink, "main");
    let grandchild: u32 = out
        .iter()
        .find_map(|l| l.strip_prefix("grandchild "))
        .expect("grandchild reported")
        .parse()
        .expect("pid");
    assert!(out.contains(&"done".to_owned()), "{out:?}");
    h.assert_nothing_left(&name);
    let alive = fs::read(format!("/proc/{grandchild}/environ")).is_ok_and(|e| {
        e.split(|b| *b == 0)
            .any(|kv| kv == format!("{MARKER}={name}").as_bytes())
    });
    assert!(!alive, "grandchild {grandchild} survived");
}

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    let name = unique("oom");
    let (runner, _) = h.runner(|_| {});
    let mut p = pod(&name, "Never", &[], &[]);
    p["spec"]["containers"] = json!([{
        "name": "hog",
        "command": ["/usr/bin/tail", "/dev/zero"],
        "env": [{"name": MARKER, "value": name}],
        "resources": {"limits": {"memory": "32Mi"}},
    }]);
    let manifest = h.signed(p);
    let pod = runner.prepare(&manifest).expect("prepare");
    let outcome = runner.run(pod, &StopToken::new()).expect("runs");
    assert_eq!(outcome.exit_code(), 1, "{outcome}");
    let last = outcome.containers[0].last.clone().expect("ran");
    assert_eq!(
        (last.exit_code, last.reason),
        (137, "OOMKilled"),
        "{outcome}"
    );
    h.assert_nothing_left(&name);
}

#[test]
fn process_limit_from_max_processes_holds() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    let name = unique("pids");
    // Pods have no process-count field: the agent's --max-processes sets pids.max.
    let (runner, sink) = h.runner(|o| o.max_processes = Some(5));
    // dash gives up with "Cannot fork" at the first fork the limit refuses.
    let manifest = h.signed(pod(
        &name,
        "Never",
        &[],
        &[(
            "forker",
            "i=0; while [ $i -lt 20 ]; do sleep 1000 & i=$((i+1)); echo started $i; done",
        )],
    ));
    let pod = runner.prepare(&manifest).expect("prepare");
    let container = runner.start(&pod, &pod.containers[0], 0).expect("start");
    let stderr = |sink: &MemorySink| {
        sink.records()
            .into_iter()
            .filter(|(_, s, _)| *s == Stream::Stderr)
            .map(|(_, _, l)| l)
            .collect::<Vec<_>>()
    };
    wait_until("a refused fork", || {
        stderr(&sink)
            .iter()
            .any(|l| l.to_lowercase().contains("fork"))
    });
    let pids = container
        .with_job(|j| j.pids().expect("pids"))
        .expect("job");
    assert!(pids.len() <= 5, "{} processes: {pids:?}", pids.len());
    wait_for_marked(&name, "3 to 5 live processes", |n| (3..=5).contains(&n));
    assert!(
        lines(&sink, "forker").len() < 20,
        "{:?}",
        lines(&sink, "forker")
    );
    use hostgate_agent::container::Stop;
    container.stopper().stop(Duration::ZERO);
    let exit = container.wait().expect("wait");
    assert_ne!(exit.exit_code, 0, "the shell failed: {exit:?}");
    pod.cleanup().expect("cleanup");
    h.assert_nothing_left(&name);
}

#[test]
fn cpu_limit_becomes_the_cgroup_cpu_bandwidth() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    let name = unique("cpu");
    let (runner, _) = h.runner(|_| {});
    let mut p = pod(&name, "Never", &[], &[]);
    p["spec"]["containers"] = json!([{
        "name": "spin",
        "command": ["/bin/sleep", "1000"],
        "env": [{"name": MARKER, "value": name}],
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
    }]);
    let manifest = h.signed(p);
    let pod = runner.prepare(&manifest).expect("prepare");
    let container = runner.start(&pod, &pod.containers[0], 0).expect("start");
    let host = runner.manager().host_logical_processors();
    let rate = kubelet_cpu_maximum(500, host);
    let (setup, dir) = container
        .with_job(|j| (j.setup(), j.cpu_dir().expect("cpu controller").to_owned()))
        .expect("job");
    let read = |f: &str| fs::read_to_string(dir.join(f)).expect(f).trim().to_owned();
    match setup {
        CgroupSetup::Unified => {
            assert_eq!(read("cpu.max"), CpuMax::from_rate(rate, host).to_string());
        }
        CgroupSetup::Hybrid => {
            assert_eq!(read("cpu.cfs_period_us"), "100000");
            assert_eq!(
                read("cpu.cfs_quota_us"),
                cfs_quota_us(rate, host).to_string()
            );
        }
    }
    // 500m is half of one CPU whatever the host: quota / period = 0.5.
    assert_eq!(
        CpuMax::from_rate(rate, host).quota_us,
        Some(50_000),
        "{rate:?} on {host}"
    );
    use hostgate_agent::container::Stop;
    container.stopper().stop(Duration::ZERO);
    container.wait().expect("wait");
    pod.cleanup().expect("cleanup");
    h.assert_nothing_left(&name);
}

#[test]
fn refusals_have_distinct_reasons_and_codes() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    let (runner, _) = h.runner(|_| {});
    let refuse = |m: &PodManifest| match runner.prepare(m) {
        Err(RunError::Refused(r)) => (r.exit_code(), r.to_string()),
        Err(other) => panic!("expected a refusal, got {other:?}"),
        Ok(_) => panic!("expected a refusal, got a prepared pod"),
    };
    let name = unique("refused");
    let approved = h.signed(pod(&name, "Never", &[], &[("main", "echo hi")]));
    for case in refusals(&h.signer, &approved.pod, h.dir.path()) {
        let manifest = PodManifest {
            pod: case.pod,
            ..approved.clone()
        };
        let (code, text) = refuse(&manifest);
        assert_eq!(code, case.exit_code, "{}: {text}", case.what);
        for needle in case.says {
            assert!(text.contains(needle), "{}: {text}", case.what);
        }
    }

    // Nothing was created for any of them.
    h.assert_nothing_left(&name);
    assert!(!h.path("logs").exists());
}

#[test]
fn init_containers_run_in_order_and_a_failure_stops_the_pod() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    let name = unique("init");
    let (runner, sink) = h.runner(|_| {});
    let mut p = pod(
        &name,
        "Never",
        &[
            ("first", "echo first >> /shared/order; echo first"),
            ("second", "echo second >> /shared/order; echo second"),
        ],
        &[("main", "cat /shared/order")],
    );
    let mount = json!([{"name": "shared", "mountPath": "C:\\shared"}]);
    for list in ["initContainers", "containers"] {
        for c in p["spec"][list].as_array_mut().expect("list") {
            c["volumeMounts"] = mount.clone();
            let script = c["command"][2]
                .as_str()
                .expect("script")
                .replace("/shared", "$CONTAINER_SANDBOX_MOUNT_POINT/shared");
            c["command"][2] = json!(script);
        }
    }
    p["spec"]["volumes"] = json!([{"name": "shared", "emptyDir": {}}]);
    let pod_ok = h.signed(p.clone());
    let prepared = runner.prepare(&pod_ok).expect("prepare");
    let outcome = runner.run(prepared, &StopToken::new()).expect("runs");
    assert_eq!(outcome.exit_code(), 0, "{outcome}");
    assert_eq!(lines(&sink, "main"), ["first", "second"]);
    let order: Vec<String> = sink
        .records()
        .into_iter()
        .map(|(c, _, l)| format!("{c}:{l}"))
        .collect();
    assert_eq!(
        order,
        ["first:first", "second:second", "main:first", "main:second"]
    );
    h.assert_nothing_left(&name);

    // The first init container fails: nothing else runs, the pod fails.
    let name = unique("init-fail");
    let (runner, sink) = h.runner(|_| {});
    let prepared = runner
        .prepare(&h.signed(failing_init(&name)))
        .expect("prepare");
    let outcome = runner.run(prepared, &StopToken::new()).expect("runs");
    assert_eq!(outcome.exit_code(), 1, "{outcome}");
    let last: Vec<Option<i32>> = outcome
        .containers
        .iter()
        .map(|c| c.last.as_ref().map(|l| l.exit_code))
        .collect();
    assert_eq!(last, [Some(3), None, None]);
    assert_eq!(
        sink.records()
            .into_iter()
            .map(|(c, _, l)| format!("{c}:{l}"))
            .collect::<Vec<_>>(),
        ["first:failing"]
    );
    h.assert_nothing_left(&name);
}

#[test]
fn restart_policies_are_honoured() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    // The count survives restarts in an emptyDir, as the kubelet keeps a pod's emptyDir.
    let counting = |name: &str, policy: &str, script: &str| {
        let mut p = pod(name, policy, &[], &[("c", script)]);
        p["spec"]["volumes"] = json!([{"name": "state", "emptyDir": {}}]);
        p["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "state", "mountPath": "C:\\state"}]);
        p
    };
    let count = "f=$CONTAINER_SANDBOX_MOUNT_POINT/state/n; n=$(cat $f 2>/dev/null || echo 0); \
                 n=$((n+1)); echo $n > $f; echo run $n;";

    // OnFailure: fails twice, then succeeds.
    let name = unique("onfailure");
    let (runner, sink) = h.runner(|_| {});
    let m = h.signed(counting(
        &name,
        "OnFailure",
        &format!("{count} [ $n -ge 3 ]"),
    ));
    let outcome = runner
        .run(runner.prepare(&m).expect("prepare"), &StopToken::new())
        .expect("runs");
    assert_eq!(outcome.exit_code(), 0, "{outcome}");
    assert_eq!(outcome.containers[0].restarts, 2);
    assert_eq!(lines(&sink, "c"), ["run 1", "run 2", "run 3"]);
    // Each run has its own CRI log file.
    for r in 0..3 {
        let log = h.path(&format!("logs/{NAMESPACE}_{name}/c/{r}.log"));
        let text = fs::read_to_string(&log).expect("log file");
        assert!(
            text.ends_with(&format!(" stdout F run {}\n", r + 1)),
            "{text}"
        );
    }
    h.assert_nothing_left(&name);

    // Never: one failure ends it.
    let name = unique("never");
    let (runner, _) = h.runner(|_| {});
    let m = h.signed(counting(&name, "Never", &format!("{count} exit 7")));
    let outcome = runner
        .run(runner.prepare(&m).expect("prepare"), &StopToken::new())
        .expect("runs");
    assert_eq!(outcome.exit_code(), 1, "{outcome}");
    assert_eq!(outcome.containers[0].restarts, 0);
    assert_eq!(
        outcome.containers[0].last.as_ref().map(|l| l.exit_code),
        Some(7)
    );
    h.assert_nothing_left(&name);

    // Always: restarted after success too, until the agent stops.
    let name = unique("always");
    let (runner, sink) = h.runner(|_| {});
    let m = h.signed(counting(&name, "Always", &format!("{count} exit 0")));
    let (run, stop) = spawn_run(runner, m);
    wait_until("three runs", || lines(&sink, "c").len() >= 3);
    stop.stop(StopReason::Interrupt);
    let outcome = run.join().expect("no panic").expect("runs");
    assert_eq!(outcome.exit_code(), 0, "{outcome}");
    assert!(outcome.containers[0].restarts >= 2, "{outcome}");
    h.assert_nothing_left(&name);
}

#[test]
fn sandbox_environment_mounts_and_logs() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    let name = unique("sandbox");
    let host_dir = h.path("host-parent");
    fs::create_dir_all(&host_dir).expect("mkdir");
    let abs_dest = host_dir.join("conf");
    let script = r#"
echo "mp=$CONTAINER_SANDBOX_MOUNT_POINT"
echo "path=$PATH"
echo "pwd=$(pwd)"
printf 'arg=%s\n' "$1"
echo "conf=$CONF"
echo "cm=$(cat "$CONTAINER_SANDBOX_MOUNT_POINT/etc/app/a.conf")"
echo "abs=$(cat "$ABS/a.conf")"
echo "secret=$(cat "$CONTAINER_SANDBOX_MOUNT_POINT/secrets/token")"
if echo x > "$CONTAINER_SANDBOX_MOUNT_POINT/etc/app/new" 2>/dev/null; then echo ro=writable; else echo ro=refused; fi
echo data > "$CONTAINER_SANDBOX_MOUNT_POINT/scratch/file" && echo rw=ok
echo "to stderr" >&2
"#;
    let p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": "Never",
            "hostNetwork": true,
            "securityContext": {"windowsOptions": {"hostProcess": true, "runAsUserName": "NT AUTHORITY\\SYSTEM"}},
            "volumes": [
                {"name": "app", "configMap": {"name": "app"}},
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "scratch", "emptyDir": {}},
            ],
            "containers": [{
                "name": "probe",
                "command": ["/bin/sh", "-c", script, "sh", "%CONTAINER_SANDBOX_MOUNT_POINT%\\bin\\tool.exe"],
                "workingDir": "C:\\work\\dir",
                "env": [
                    {"name": MARKER, "value": name},
                    {"name": "CONF", "value": "$env:CONTAINER_SANDBOX_MOUNT_POINT/etc/app"},
                    {"name": "ABS", "value": abs_dest.to_string_lossy()},
                ],
                "volumeMounts": [
                    {"name": "app", "mountPath": "C:\\etc\\app"},
                    {"name": "app", "mountPath": abs_dest.to_string_lossy(), "readOnly": true},
                    {"name": "creds", "mountPath": "C:\\secrets"},
                    {"name": "scratch", "mountPath": "C:\\scratch"},
                ],
            }],
        }
    });
    let mut manifest = h.signed(p);
    manifest.config_maps.insert(
        "app".into(),
        BTreeMap::from([("a.conf".into(), b"x=1".to_vec())]),
    );
    // The Secret comes from --config-dir.
    fs::create_dir_all(h.path("config/creds")).expect("mkdir");
    fs::write(h.path("config/creds/token"), "t0k3n").expect("write");
    let (runner, sink) = h.runner(|o| o.config_dir = Some(h.path("config")));
    let pod = runner.prepare(&manifest).expect("prepare");
    let outcome = runner.run(pod, &StopToken::new()).expect("runs");
    assert_eq!(outcome.exit_code(), 0, "{outcome}");
    let out: BTreeMap<String, String> = lines(&sink, "probe")
        .into_iter()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let mp = out["mp"].clone();
    let sandbox = mp.trim_end_matches('/');
    assert!(mp.ends_with('/'), "trailing separator: {mp}");
    assert!(
        mp.starts_with(&h.path("state/hpc").to_string_lossy().into_owned()),
        "{mp}"
    );
    assert!(out["path"].ends_with(&format!(":{mp}")), "{}", out["path"]);
    assert_eq!(out["pwd"], format!("{sandbox}/work/dir"));
    assert_eq!(out["arg"], format!("{sandbox}\\bin\\tool.exe"));
    assert_eq!(out["conf"], format!("{sandbox}/etc/app"));
    assert_eq!(out["cm"], "x=1");
    assert_eq!(out["abs"], "x=1");
    assert_eq!(out["secret"], "t0k3n");
    assert_eq!(out["ro"], "refused", "ConfigMap volumes are read-only");
    assert_eq!(out["rw"], "ok");
    assert!(
        sink.records()
            .contains(&("probe".to_owned(), Stream::Stderr, "to stderr".to_owned()))
    );
    // The CRI log file has both streams.
    let log = fs::read_to_string(h.path(&format!("logs/{NAMESPACE}_{name}/probe/0.log")))
        .expect("log file");
    assert!(
        log.lines().any(|l| l.ends_with(" stderr F to stderr")),
        "{log}"
    );
    assert!(log.lines().any(|l| l.ends_with(" stdout F rw=ok")), "{log}");
    // The absolute link is gone with the pod; its parent is left as it was.
    assert!(fs::symlink_metadata(&abs_dest).is_err());
    assert!(host_dir.is_dir());
    h.assert_nothing_left(&name);
}

#[test]
fn two_hundred_runs_leave_nothing_behind() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    let name = unique("cycles");
    let (runner, _) = h.runner(|o| o.sink = None);
    let tmp_before = tmp_entries();
    let mut p = pod(&name, "Never", &[], &[]);
    p["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    // Half the runs leave a sleeping child behind when the init process exits.
    p["spec"]["containers"] = json!([{
        "name": "c",
        "command": ["/bin/sh", "-c", "[ -n \"$LEAVE\" ] && sleep 1000 & exit 0"],
        "env": [{"name": MARKER, "value": name}, {"name": "LEAVE", "value": "1"}],
        "volumeMounts": [{"name": "scratch", "mountPath": "C:\\scratch", "readOnly": true}],
    }]);
    let manifest = h.signed(p);
    for i in 0..200 {
        let pod = runner.prepare(&manifest).expect("prepare");
        let outcome = runner.run(pod, &StopToken::new()).expect("runs");
        assert_eq!(outcome.exit_code(), 0, "run {i}: {outcome}");
    }
    h.assert_nothing_left(&name);
    assert_eq!(tmp_entries(), tmp_before, "new entries in /tmp");
}

fn tmp_entries() -> Vec<String> {
    let tmp = Path::new("/tmp");
    let mut v = procs::entries_containing(tmp, "hostgate");
    v.extend(procs::entries_containing(tmp, "hpc"));
    v.sort();
    v.dedup();
    v
}

fn write_inputs(h: &Harness, manifest: &PodManifest, file: &str) -> PathBuf {
    let path = h.path(file);
    fs::write(&path, serde_json::to_vec(&manifest.pod).expect("json")).expect("write");
    path
}

fn agent(h: &Harness, manifest: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostgate-agent"));
    cmd.arg("run")
        .arg("-f")
        .arg(manifest)
        .arg("--trust-keys")
        .arg(h.path("keys"))
        .arg("--policies")
        .arg(h.path("policies"))
        .arg("--state-dir")
        .arg(h.path("state"))
        .arg("--log-dir")
        .arg(h.path("logs"))
        .arg("--cgroup-parent")
        .arg(PARENT)
        .arg("--restart-backoff")
        .arg("10ms")
        .arg("--grace-period")
        .arg("500ms");
    cmd
}

#[test]
fn the_binary_runs_refuses_and_stops_on_sigterm() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    // Runs: output prefixed on stdout, exit code 0.
    let name = unique("bin");
    let m = h.signed(pod(
        &name,
        "Never",
        &[],
        &[("hello", "echo hello from $HG_TEST_MARKER")],
    ));
    let file = write_inputs(&h, &m, "ok.json");
    let out = agent(&h, &file).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("[hello] hello from {name}")),
        "{stdout}"
    );
    h.assert_nothing_left(&name);

    // Refuses a changed pod with the differing field and exit code 12.
    let mut changed = m.clone();
    changed.pod.spec.as_mut().expect("spec").containers[0].args = Some(vec!["extra".into()]);
    let file = write_inputs(&h, &changed, "changed.json");
    let out = agent(&h, &file).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{stderr}");
    assert!(stderr.contains("containers[0].args"), "{stderr}");

    // A pod failure is exit code 1; invalid input is 4.
    let name = unique("bin-fail");
    let m = h.signed(pod(&name, "Never", &[], &[("bad", "exit 9")]));
    let file = write_inputs(&h, &m, "fail.json");
    assert_eq!(
        agent(&h, &file).output().expect("runs").status.code(),
        Some(1)
    );
    fs::write(h.path("junk.yaml"), "kind: [").expect("write");
    assert_eq!(
        agent(&h, &h.path("junk.yaml"))
            .output()
            .expect("runs")
            .status
            .code(),
        Some(4)
    );

    // SIGTERM stops an Always pod cleanly: exit code 0, nothing left.
    let name = unique("bin-term");
    let m = h.signed(pod(
        &name,
        "Always",
        &[],
        &[(
            "sleeper",
            "trap 'echo bye; exit 0' TERM; echo up; sleep 1000 & wait",
        )],
    ));
    let file = write_inputs(&h, &m, "term.json");
    let mut child = agent(&h, &file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    while !line.contains("[sleeper] up") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut reader, &mut line).expect("read") > 0,
            "agent ended early"
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("read");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(
        rest.contains("[sleeper] bye"),
        "the container saw SIGTERM: {rest}"
    );
    h.assert_nothing_left(&name);
}

#[test]
fn leftovers_of_a_killed_agent_are_removed_by_the_next_run() {
    require!(Prereq::Root, Prereq::Cgroups);
    let h = Harness::new();
    let name = unique("killed");
    let mut p = pod(
        &name,
        "Always",
        &[],
        &[("sleeper", "echo up; exec sleep 1000")],
    );
    p["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    let link = h.path("link-parent/scratch");
    fs::create_dir_all(h.path("link-parent")).expect("mkdir");
    p["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "scratch", "mountPath": link.to_string_lossy(), "readOnly": true}]);
    let m = h.signed(p);
    let file = write_inputs(&h, &m, "killed.json");
    let mut child = agent(&h, &file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("[sleeper] up") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut reader, &mut line).expect("read") > 0,
            "agent ended early"
        );
    }
    // SIGKILL: the agent cannot clean up. Its container, cgroups, sandbox (with a read-only bind
    // mount), host link and pod directory stay behind.
    child.kill().expect("kill");
    child.wait().expect("reap");
    wait_for_marked(&name, "the container to outlive its agent", |n| n == 1);
    assert!(fs::symlink_metadata(&link).is_ok());
    assert!(
        fs::read_dir(h.path("state/hpc"))
            .expect("hpc")
            .next()
            .is_some()
    );

    // The next run (of any pod) removes all of it first.
    let other = unique("after");
    let m = h.signed(pod(&other, "Never", &[], &[("c", "true")]));
    let file = write_inputs(&h, &m, "after.json");
    let out = agent(&h, &file).output().expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("left by an agent that is gone"), "{stderr}");
    assert!(fs::symlink_metadata(&link).is_err(), "host link removed");
    h.assert_nothing_left(&name);
    h.assert_nothing_left(&other);
}
