//! The shim against runc behind one private containerd, through CRI as the kubelet drives it
//! (the `agent/harness` crate, as the shim tests use it). Not a criterion benchmark: each
//! sample is a whole pod start, a few tenths of a second, and the two runtimes are measured
//! alternately in one run so that the machine's drift hits both alike.
//!
//! Printed, as medians with [min–max]:
//!
//! * `RunPodSandbox`, `CreateContainer`, `StartContainer` and their sum, per runtime;
//! * teardown of a 100-process container that ignores SIGTERM: `StopContainer(timeout)`'s
//!   duration minus the timeout (the grace period);
//! * the resident memory (VmRSS) of each runtime's shim process with a pod running.
//!
//! Needs root, containerd, runc, the static busybox and cgroups (skips otherwise).
//! Run: `cargo bench -p hostgate-agent --bench shim` (`HOSTGATE_BENCH_ROUNDS`, default 20).

#[cfg(target_os = "linux")]
#[path = "../tests/shim_common/mod.rs"]
mod shim_common;

#[cfg(target_os = "linux")]
fn main() {
    bench::run();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("skipped: the shim benchmark needs Linux");
}

#[cfg(target_os = "linux")]
mod bench {
    use std::fs;
    use std::time::{Duration, Instant};

    use hostgate_node_harness::{ContainerSpec, Prereq, Stream};
    use k8s_openapi::api::core::v1::Pod;

    use super::shim_common::{DEADLINE, MARKER, Node, POLICY, pod_yaml, shim_processes};

    const GRACE_SECONDS: i64 = 1;

    struct Sample {
        sandbox: Duration,
        create: Duration,
        start: Duration,
    }

    fn stats(label: &str, mut v: Vec<Duration>) -> Duration {
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let median = v[v.len() / 2];
        println!(
            "{label:<44} median {:>8.2} ms [{:.2}–{:.2}] (n={})",
            ms(median),
            ms(v[0]),
            ms(v[v.len() - 1]),
            v.len()
        );
        median
    }

    /// One pod start, timed per CRI call; torn down untimed.
    fn sample(node: &Node, pod: &Pod, handler: &str) -> Sample {
        let mut pod_spec = node.pod_spec(pod);
        pod_spec.runtime_handler = handler.to_owned();
        let spec = node.container_specs(pod).remove(0);
        let t0 = Instant::now();
        let cri_pod = node.cri.run_pod_sandbox(&pod_spec).expect("RunPodSandbox");
        let t1 = Instant::now();
        let id = node
            .cri
            .create_container(&cri_pod.id, &spec, &cri_pod.config)
            .expect("CreateContainer");
        let t2 = Instant::now();
        node.cri.start_container(&id).expect("StartContainer");
        let t3 = Instant::now();
        node.cri.stop_container(&id, 0).expect("stop");
        node.cri.remove_container(&id).expect("remove");
        node.cri.stop_pod_sandbox(&cri_pod.id).expect("stop pod");
        node.cri
            .remove_pod_sandbox(&cri_pod.id)
            .expect("remove pod");
        Sample {
            sandbox: t1 - t0,
            create: t2 - t1,
            start: t3 - t2,
        }
    }

    /// `StopContainer` on 100 processes that ignore SIGTERM, minus the grace period.
    fn teardown(node: &Node, pod: &Pod, handler: &str) -> Duration {
        let mut pod_spec = node.pod_spec(pod);
        pod_spec.runtime_handler = handler.to_owned();
        let mut spec: ContainerSpec = node.container_specs(pod).remove(0);
        let marker = pod_spec.uid.clone();
        spec.env.push((MARKER.to_owned(), marker.clone()));
        let cri_pod = node.cri.run_pod_sandbox(&pod_spec).expect("RunPodSandbox");
        let id = node.cri.run_container(&cri_pod, &spec).expect("start");
        node.cri
            .wait_log_line(&id, Stream::Stdout, "ready", DEADLINE)
            .expect("ready");
        hostgate_test_support::wait_until("100 processes", || {
            hostgate_test_support::procs::marked(MARKER, &marker).len() >= 100
        });
        let t0 = Instant::now();
        node.cri
            .stop_container(&id, GRACE_SECONDS)
            .expect("StopContainer");
        let took = t0.elapsed();
        hostgate_test_support::wait_until("nothing left", || {
            hostgate_test_support::procs::marked(MARKER, &marker).is_empty()
        });
        node.cri.remove_container(&id).expect("remove");
        node.cri.stop_pod_sandbox(&cri_pod.id).expect("stop pod");
        node.cri
            .remove_pod_sandbox(&cri_pod.id)
            .expect("remove pod");
        took.saturating_sub(Duration::from_secs(GRACE_SECONDS.unsigned_abs()))
    }

    fn rss_kib(pid: u32) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn runc_shim_of(sandbox_id: &str) -> Option<u32> {
        hostgate_test_support::procs::all_pids()
            .into_iter()
            .find(|pid| {
                fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let s = String::from_utf8_lossy(&c);
                    s.starts_with("/usr/bin/containerd-shim-runc-v2") && s.contains(sandbox_id)
                })
            })
    }

    pub fn run() {
        if hostgate_node_harness::require("shim benchmark", Prereq::RUNC).is_some() {
            return;
        }
        let rounds: usize = std::env::var("HOSTGATE_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let node = Node::start(POLICY);
        let long = "[sh, -c, 'trap \"exit 0\" TERM; echo ready; while :; do sleep 1; done']";
        let pod = node.approve(&pod_yaml("bench", long, ""));
        // Warm up both paths (image unpacking, first shim exec from disk).
        sample(&node, &pod, "hostgate");
        sample(&node, &pod, "");
        let (mut shim, mut runc) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            shim.push(sample(&node, &pod, "hostgate"));
            runc.push(sample(&node, &pod, ""));
        }
        println!("== pod start through CRI ({rounds} rounds, alternating)");
        let mut totals = Vec::new();
        for (name, samples) in [("hostgate shim", &shim), ("runc", &runc)] {
            stats(
                &format!("{name}: RunPodSandbox"),
                samples.iter().map(|s| s.sandbox).collect(),
            );
            stats(
                &format!("{name}: CreateContainer"),
                samples.iter().map(|s| s.create).collect(),
            );
            stats(
                &format!("{name}: StartContainer"),
                samples.iter().map(|s| s.start).collect(),
            );
            totals.push(stats(
                &format!("{name}: sandbox + create + start"),
                samples
                    .iter()
                    .map(|s| s.sandbox + s.create + s.start)
                    .collect(),
            ));
        }
        println!(
            "ratio shim / runc (medians of the sums): {:.2}",
            totals[0].as_secs_f64() / totals[1].as_secs_f64()
        );

        println!(
            "== teardown of 100 processes ignoring SIGTERM, after a {GRACE_SECONDS} s grace period"
        );
        let tree = "[sh, -c, 'trap \"\" TERM; i=0; while [ $i -lt 99 ]; do sleep 1000 & i=$((i+1)); done; echo ready; while :; do sleep 1; done']";
        let stubborn = node.approve(&pod_yaml("bench-tree", tree, ""));
        let n = (rounds / 4).max(3);
        let (mut shim_down, mut runc_down) = (Vec::new(), Vec::new());
        for _ in 0..n {
            shim_down.push(teardown(&node, &stubborn, "hostgate"));
            runc_down.push(teardown(&node, &stubborn, ""));
        }
        stats("hostgate shim: StopContainer − grace", shim_down);
        stats("runc: StopContainer − grace", runc_down);

        println!("== resident memory of the shim serving one running pod");
        let mut pods = Vec::new();
        for handler in ["hostgate", ""] {
            for _ in 0..3 {
                let mut spec = node.pod_spec(&pod);
                spec.runtime_handler = handler.to_owned();
                let cri_pod = node.cri.run_pod_sandbox(&spec).expect("pod");
                let id = node
                    .cri
                    .run_container(&cri_pod, &node.container_specs(&pod)[0])
                    .expect("start");
                node.cri
                    .wait_log_line(&id, Stream::Stdout, "ready", DEADLINE)
                    .expect("ready");
                pods.push((handler, cri_pod, id));
            }
        }
        for (name, handler) in [("hostgate shim", "hostgate"), ("runc shim", "")] {
            let rss: Vec<u64> = pods
                .iter()
                .filter(|(h, _, _)| *h == handler)
                .filter_map(|(_, p, _)| {
                    let pid = if handler.is_empty() {
                        runc_shim_of(&p.id)?
                    } else {
                        shim_processes()
                            .into_iter()
                            .find(|(_, args)| args.iter().any(|a| a == &p.id))?
                            .0
                    };
                    rss_kib(pid)
                })
                .collect();
            let max = rss.iter().max().copied().unwrap_or(0);
            println!(
                "{name:<44} VmRSS {rss:?} KiB (max {:.1} MiB)",
                max as f64 / 1024.0
            );
        }
        for (_, p, id) in pods {
            node.cri.stop_container(&id, 5).expect("stop");
            node.cri.remove_container(&id).expect("remove");
            node.cri.stop_pod_sandbox(&p.id).expect("stop pod");
            node.cri.remove_pod_sandbox(&p.id).expect("remove pod");
        }
    }
}
