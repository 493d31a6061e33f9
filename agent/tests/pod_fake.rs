//! The pod lifecycle of `hostgate-agent run` (`PodRunner`) on the recording fake of the job
//! layer (`job::fake`, feature `fake-jobs`): no root, no cgroups, so these tests run on every
//! Linux machine. The containers are real processes; the fake records every call of the
//! runner into the job layer, which the tests assert on: which jobs were created with which
//! limits, in which order, how they were stopped, and that each was destroyed.
//!
//! `run_linux.rs` runs the same runner on real cgroups, as root.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hostgate_agent::container::{MemorySink, Stream};
use hostgate_agent::job::fake::{Call, FakeJobManager};
use hostgate_agent::job::limits::{CpuRate, MIB, kubelet_cpu_maximum};
use hostgate_agent::job::{JobLimits, JobManager, StopSignal};
use hostgate_agent::pod::{NodeInfo, PodManifest, PodOutcome, PodRunner, RunError, RunnerOptions};
use hostgate_agent::stop::{StopReason, StopToken};
use hostgate_agent::verify::Verifier;
use hostgate_test_support::pods::{MARKER, NAMESPACE, Signer, failing_init, pod, refusals};
use hostgate_test_support::procs::{self, assert_empty_dir};
use hostgate_test_support::{unique_name, wait_until};
use serde_json::{Value, json};

/// A signer, a fake job manager and the runner's directories in one temporary directory.
struct Bed {
    dir: tempfile::TempDir,
    signer: Signer,
    jobs: Arc<FakeJobManager>,
    sink: Arc<MemorySink>,
}

impl Bed {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = Signer::create(dir.path());
        Self {
            dir,
            signer,
            jobs: Arc::new(FakeJobManager::new()),
            sink: Arc::new(MemorySink::default()),
        }
    }

    fn runner(&self, tweak: impl FnOnce(&mut RunnerOptions)) -> PodRunner<FakeJobManager> {
        let path = |p: &str| self.dir.path().join(p);
        let verifier = Verifier::load(&path("keys"), &[path("policies")]).expect("verifier");
        let mut options = RunnerOptions::new(
            path("state"),
            path("logs"),
            NodeInfo::detect(self.jobs.host_logical_processors()),
        );
        options.backoff = Duration::from_millis(10);
        options.backoff_max = Duration::from_millis(40);
        options.grace_period = Some(Duration::from_millis(300));
        // Links at absolute paths and read-only bind mounts need root.
        options.host_links = false;
        options.bind_read_only = false;
        options.sink = Some(self.sink.clone());
        tweak(&mut options);
        PodRunner::new(verifier, Arc::clone(&self.jobs), options)
    }

    fn signed(&self, pod: Value) -> PodManifest {
        PodManifest {
            pod: self.signer.sign(pod),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    /// `container:line` for every line the containers printed on stdout, in order.
    fn output(&self) -> Vec<String> {
        self.sink
            .records()
            .into_iter()
            .filter(|(_, stream, _)| *stream == Stream::Stdout)
            .map(|(c, _, l)| format!("{c}:{l}"))
            .collect()
    }

    /// The container of each job created for `pod`, in creation order, with its limits.
    fn created(&self, pod: &str) -> Vec<(String, JobLimits)> {
        self.jobs
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Create { job, limits } => Some((container_of(pod, &job)?, limits)),
                _ => None,
            })
            .collect()
    }

    /// Every job was destroyed (none merely dropped), no process of the pod is left, and the
    /// state directory holds no sandbox or pod directory.
    fn assert_nothing_left(&self, pod: &str) {
        let calls = self.jobs.calls();
        for call in &calls {
            if let Call::Create { job, .. } = call {
                assert!(
                    calls.contains(&Call::Destroy { job: job.clone() }),
                    "{job} was not destroyed: {calls:#?}"
                );
            }
            assert!(!matches!(call, Call::Dropped { .. }), "{call:?}");
        }
        assert_eq!(self.jobs.live_jobs(), Vec::<String>::new());
        procs::assert_no_marked(MARKER, pod);
        for sub in ["hpc", "pods"] {
            assert_empty_dir(&self.dir.path().join("state").join(sub));
        }
    }
}

/// The container name in a job name `<namespace>_<pod>_<container>.<run>.<restart>`.
fn container_of(pod: &str, job: &str) -> Option<String> {
    let rest = job.strip_prefix(&format!("{NAMESPACE}_{pod}_"))?;
    Some(rest.split('.').next()?.to_owned())
}

/// Runs the pod to its end.
fn run(runner: &PodRunner<FakeJobManager>, manifest: &PodManifest) -> PodOutcome {
    let pod = runner.prepare(manifest).expect("prepare");
    runner.run(pod, &StopToken::new()).expect("runs")
}

/// A pod running in a thread of the test.
struct Running {
    thread: std::thread::JoinHandle<Result<PodOutcome, RunError>>,
    stop: StopToken,
}

impl Running {
    fn start(runner: PodRunner<FakeJobManager>, manifest: PodManifest) -> Self {
        let stop = StopToken::new();
        let token = stop.clone();
        let thread = std::thread::spawn(move || runner.run(runner.prepare(&manifest)?, &token));
        Self { thread, stop }
    }

    /// Stops the pod as the agent's signal handler would and returns how it ended.
    fn stop(self, reason: StopReason) -> PodOutcome {
        self.stop.stop(reason);
        self.thread.join().expect("no panic").expect("runs")
    }
}

#[test]
fn init_containers_run_one_by_one_before_the_containers_with_their_limits() {
    let bed = Bed::new();
    let name = unique_name("order");
    let mut p = pod(
        &name,
        "Never",
        &[("first", "echo one"), ("second", "echo two")],
        &[("main", "echo three")],
    );
    p["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "500m", "memory": "64Mi"}});
    let runner = bed.runner(|o| o.max_processes = Some(7));
    let outcome = run(&runner, &bed.signed(p));
    assert_eq!(outcome.exit_code(), 0, "{outcome}");
    assert_eq!(bed.output(), ["first:one", "second:two", "main:three"]);

    let host = bed.jobs.host_logical_processors();
    let unlimited = JobLimits {
        max_processes: Some(7),
        ..JobLimits::default()
    };
    let limited = JobLimits {
        memory_bytes: Some(64 * MIB),
        cpu_rate: kubelet_cpu_maximum(500, host),
        ..unlimited
    };
    assert_eq!(limited.cpu_rate, CpuRate::new(1250).ok(), "500m of 4 CPUs");
    assert_eq!(
        bed.created(&name),
        [
            ("first".to_owned(), unlimited),
            ("second".to_owned(), unlimited),
            ("main".to_owned(), limited),
        ]
    );
    // One at a time: each init container's job is gone before the next one's is created.
    let lifecycle: Vec<String> = bed
        .jobs
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Create { job, .. } => Some(format!("create {}", container_of(&name, &job)?)),
            Call::Destroy { job } => Some(format!("destroy {}", container_of(&name, &job)?)),
            _ => None,
        })
        .collect();
    assert_eq!(
        lifecycle,
        [
            "create first",
            "destroy first",
            "create second",
            "destroy second",
            "create main",
            "destroy main"
        ]
    );
    // The job runs the container's command with its environment, in its sandbox.
    let spawned: Vec<_> = bed
        .jobs
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Spawn {
                program,
                args,
                env,
                working_dir,
                pid,
                ..
            } => Some((program, args, env, working_dir, pid)),
            _ => None,
        })
        .collect();
    assert_eq!(spawned.len(), 3);
    let (program, args, env, working_dir, pid) = &spawned[2];
    assert_eq!(program.to_str(), Some("/bin/sh"));
    assert_eq!(args, &["-c", "echo three"]);
    assert!(
        env.contains(&(MARKER.into(), name.clone().into())),
        "{env:?}"
    );
    let sandbox = env
        .iter()
        .find(|(k, _)| k == "CONTAINER_SANDBOX_MOUNT_POINT")
        .map(|(_, v)| v.clone())
        .expect("sandbox variable");
    assert_eq!(
        working_dir.as_ref().map(|d| d.join("")),
        Some(std::path::PathBuf::from(sandbox))
    );
    assert!(pid.is_some());
    bed.assert_nothing_left(&name);
}

#[test]
fn a_failing_init_container_stops_the_pod() {
    let bed = Bed::new();
    let name = unique_name("initfail");
    let outcome = run(&bed.runner(|_| {}), &bed.signed(failing_init(&name)));
    assert_eq!(outcome.exit_code(), 1, "{outcome}");
    let ran: Vec<(&str, Option<i32>)> = outcome
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.last.as_ref().map(|l| l.exit_code)))
        .collect();
    assert_eq!(ran, [("first", Some(3)), ("second", None), ("main", None)]);
    let created: Vec<String> = bed.created(&name).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        created,
        ["first"],
        "nothing after the failed init container"
    );
    bed.assert_nothing_left(&name);
}

#[test]
fn restart_policies_decide_how_often_a_container_starts() {
    let bed = Bed::new();
    let counting = |name: &str, policy: &str, then: &str| {
        // The count survives restarts in an emptyDir, as the kubelet keeps a pod's emptyDir.
        let script = format!(
            "f=$CONTAINER_SANDBOX_MOUNT_POINT/state/n; n=$(cat $f 2>/dev/null || echo 0); \
             n=$((n+1)); echo $n > $f; echo run $n; {then}"
        );
        let mut p = pod(name, policy, &[], &[("c", &script)]);
        p["spec"]["volumes"] = json!([{"name": "state", "emptyDir": {}}]);
        p["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "state", "mountPath": "C:\\state"}]);
        bed.signed(p)
    };
    let runner = bed.runner(|_| {});

    let on_failure = unique_name("onfailure");
    let outcome = run(&runner, &counting(&on_failure, "OnFailure", "[ $n -ge 3 ]"));
    assert_eq!(outcome.exit_code(), 0, "{outcome}");
    assert_eq!(outcome.containers[0].restarts, 2);
    assert_eq!(bed.created(&on_failure).len(), 3);

    let never = unique_name("never");
    let outcome = run(&runner, &counting(&never, "Never", "exit 7"));
    assert_eq!(outcome.exit_code(), 1, "{outcome}");
    assert_eq!(bed.created(&never).len(), 1);

    let on_success = unique_name("onsuccess");
    let outcome = run(&runner, &counting(&on_success, "OnFailure", "exit 0"));
    assert_eq!(outcome.exit_code(), 0, "{outcome}");
    assert_eq!(bed.created(&on_success).len(), 1, "success is final");

    // Always: restarted after success too, until the pod is stopped.
    let always = unique_name("always");
    let running = Running::start(bed.runner(|_| {}), counting(&always, "Always", "exit 0"));
    wait_until("three runs", || bed.created(&always).len() >= 3);
    let outcome = running.stop(StopReason::Interrupt);
    assert_eq!(outcome.exit_code(), 0, "{outcome}");
    assert_eq!(outcome.stopped_by, Some(StopReason::Interrupt));
    assert!(outcome.containers[0].restarts >= 2, "{outcome}");
    for pod in [&on_failure, &never, &on_success, &always] {
        bed.assert_nothing_left(pod);
    }
}

#[test]
fn refused_pods_create_nothing_and_have_distinct_reasons() {
    let bed = Bed::new();
    let runner = bed.runner(|_| {});
    let name = unique_name("refused");
    let approved = bed.signed(pod(&name, "Never", &[], &[("main", "echo hi")]));
    let mut seen = Vec::new();
    for case in refusals(&bed.signer, &approved.pod, bed.dir.path()) {
        let manifest = PodManifest {
            pod: case.pod,
            ..approved.clone()
        };
        let refusal = match runner.prepare(&manifest) {
            Err(RunError::Refused(r)) => r,
            Err(other) => panic!("{}: expected a refusal, got {other:?}", case.what),
            Ok(_) => panic!("{}: expected a refusal, got a prepared pod", case.what),
        };
        let text = refusal.to_string();
        assert_eq!(refusal.exit_code(), case.exit_code, "{}: {text}", case.what);
        for needle in &case.says {
            assert!(text.contains(needle), "{}: {text}", case.what);
        }
        seen.push((refusal.exit_code(), text));
    }
    let mut codes: Vec<u8> = seen.iter().map(|(c, _)| *c).collect();
    codes.dedup();
    assert_eq!(codes, [10, 11, 12, 13], "{seen:#?}");
    // The approved pod itself runs; the refused ones never reached the job layer.
    assert_eq!(bed.jobs.calls(), []);
    assert_eq!(run(&runner, &approved).exit_code(), 0);
    assert_eq!(bed.created(&name).len(), 1);
    bed.assert_nothing_left(&name);
}

#[test]
fn a_stop_signals_every_container_then_terminates_after_the_grace_period() {
    let bed = Bed::new();
    let name = unique_name("stop");
    let manifest = bed.signed(pod(
        &name,
        "Always",
        &[],
        &[
            (
                "polite",
                "trap 'echo bye; exit 0' TERM; echo up; sleep 1000 & wait",
            ),
            (
                "stubborn",
                "trap '' TERM; echo up; while :; do sleep 1000; done",
            ),
        ],
    ));
    // A grace period far longer than the polite container needs to leave.
    let runner = bed.runner(|o| o.grace_period = Some(Duration::from_secs(5)));
    let running = Running::start(runner, manifest);
    wait_until("both containers up", || {
        let out = bed.output();
        out.contains(&"polite:up".to_owned()) && out.contains(&"stubborn:up".to_owned())
    });
    let outcome = running.stop(StopReason::Terminate);
    assert_eq!(outcome.exit_code(), 0, "{outcome}");
    assert!(bed.output().contains(&"polite:bye".to_owned()));

    let steps = |container: &str| -> Vec<&'static str> {
        let job = bed
            .jobs
            .calls()
            .into_iter()
            .find_map(|c| match c {
                Call::Create { job, .. }
                    if container_of(&name, &job).as_deref() == Some(container) =>
                {
                    Some(job)
                }
                _ => None,
            })
            .expect("created");
        bed.jobs
            .calls_for(&job)
            .iter()
            .map(|c| match c {
                Call::Create { .. } => "create",
                Call::Spawn { .. } => "spawn",
                Call::Signal {
                    signal: StopSignal::Terminate,
                    ..
                } => "signal",
                Call::Signal { .. } => "other signal",
                Call::WaitEmpty { empty: true, .. } => "empty",
                Call::WaitEmpty { empty: false, .. } => "grace over",
                Call::Terminate { .. } => "terminate",
                Call::Destroy { .. } => "destroy",
                _ => "other",
            })
            .collect()
    };
    // The polite container leaves on the signal: never terminated, then destroyed.
    let polite = steps("polite");
    assert_eq!(polite[..3], ["create", "spawn", "signal"], "{polite:?}");
    assert!(!polite.contains(&"terminate"), "{polite:?}");
    assert_eq!(polite.last(), Some(&"destroy"), "{polite:?}");
    // The stubborn one ignores it: terminated once the grace period is over, then destroyed.
    let stubborn = steps("stubborn");
    assert_eq!(stubborn[..3], ["create", "spawn", "signal"], "{stubborn:?}");
    let terminated = stubborn
        .iter()
        .position(|s| *s == "terminate")
        .expect("terminated");
    assert!(
        stubborn[..terminated].iter().all(|s| *s != "empty"),
        "{stubborn:?}"
    );
    assert_eq!(stubborn.last(), Some(&"destroy"), "{stubborn:?}");
    bed.assert_nothing_left(&name);
}

#[test]
fn a_program_that_cannot_start_is_a_start_error_and_its_job_is_removed() {
    let bed = Bed::new();
    let name = unique_name("nostart");
    let mut p = pod(&name, "Never", &[], &[]);
    p["spec"]["containers"] = json!([{
        "name": "missing",
        "command": ["/nonexistent/program"],
        "env": [{"name": MARKER, "value": name}],
    }]);
    let outcome = run(&bed.runner(|_| {}), &bed.signed(p));
    assert_eq!(outcome.exit_code(), 1, "{outcome}");
    let last = outcome.containers[0].last.clone().expect("a run");
    assert_eq!((last.exit_code, last.reason), (128, "StartError"));
    let spawns: Vec<_> = bed
        .jobs
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Spawn { program, pid, .. } => Some((program, pid)),
            _ => None,
        })
        .collect();
    assert_eq!(spawns, [("/nonexistent/program".into(), None)]);
    bed.assert_nothing_left(&name);
}
