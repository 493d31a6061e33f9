//! The harness against a real containerd with runc: host-network pods through CRI, as the
//! kubelet runs them.
//!
//! Each test starts its own private containerd (they run in parallel). They need root,
//! containerd, ctr, runc, the static busybox and cgroups: without them each says why on stderr
//! and returns, except under `CI`, where a missing prerequisite fails the test. Waits are
//! bounded by generous deadlines (failures, not performance checks).
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hostgate_node_harness::containerd::K8S_NAMESPACE;
use hostgate_node_harness::log::parse_cri_log;
use hostgate_node_harness::{
    ContainerSpec, ContainerState, Containerd, ContainerdOptions, Cri, Pod, PodSpec, Prereq,
    RuntimeHandler, Stream, read_cri_log, skip_unless,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const DEADLINE: Duration = Duration::from_secs(60);

fn start(options: ContainerdOptions) -> Containerd {
    match Containerd::start(options) {
        Ok(c) => c,
        Err(e) => panic!("starting containerd: {e}"),
    }
}

/// A container that runs until TERM, then exits 0 (its shell is pid 1 of its pid namespace,
/// which ignores TERM without a handler). It prints `ready` once the trap is set: a TERM that
/// came before would be ignored, and StopContainer would end in SIGKILL after its timeout.
fn long_running(name: &str) -> ContainerSpec {
    ContainerSpec::shell(
        name,
        "trap 'exit 0' TERM; echo ready; while :; do sleep 1; done",
    )
}

fn bundle(c: &Containerd, id: &str) -> PathBuf {
    c.state_dir()
        .join("io.containerd.runtime.v2.task")
        .join(K8S_NAMESPACE)
        .join(id)
}

/// Waits until a [`long_running`] container has set its trap.
fn wait_ready(cri: &Cri, id: &str) {
    if let Err(e) = cri.wait_log_line(id, Stream::Stdout, "ready", DEADLINE) {
        panic!("{e}");
    }
}

/// Live (non-zombie) processes with an argument naming `dir` or a working directory under it.
fn processes_of(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']));
        let args = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if !zombie && (args.contains(&needle) || cwd.starts_with(dir)) {
            found.push(format!("{pid}: {args}"));
        }
    }
    found
}

/// The live shim serving `sandbox_id` (runc's shim serves the whole pod under that id).
fn shim_pid(c: &Containerd, sandbox_id: &str) -> Option<i32> {
    let socket = c.socket().to_string_lossy().into_owned();
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let args = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = args
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is = args.iter().any(|a| a == sandbox_id) && args.contains(&socket);
        is.then_some(pid)
    })
}

/// Nothing of `c` is left, checked independently of the harness's own bookkeeping.
fn assert_nothing_left(c: &Containerd, dir: &Path, shim_sockets: &[PathBuf]) {
    let procs = processes_of(dir);
    assert!(procs.is_empty(), "processes left: {procs:#?}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let needle = dir.to_string_lossy().into_owned();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&needle)).collect();
    assert!(left.is_empty(), "mounts left: {left:#?}");
    for s in shim_sockets {
        assert!(!s.exists(), "shim socket left: {}", s.display());
    }
    assert!(!dir.exists(), "directory left: {}", dir.display());
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// The shim socket of the pod exists where the harness computes it, and is the one containerd
/// recorded in the bundle.
fn checked_shim_socket(c: &Containerd, pod: &Pod) -> PathBuf {
    let socket = c.shim_socket_for(K8S_NAMESPACE, &pod.id);
    let address = fs::read_to_string(bundle(c, &pod.id).join("address")).expect("address file");
    assert_eq!(address.trim(), format!("unix://{}", socket.display()));
    assert!(socket.exists(), "{}", socket.display());
    socket
}

#[test]
fn runc_pod_reports_exit_code_times_and_tagged_log() {
    skip_unless!(Prereq::RUNC);
    let c = start(ContainerdOptions::default());
    let cri = c.cri().expect("cri");
    let pod = cri
        .run_pod_sandbox(&PodSpec::new("exit-code"))
        .expect("RunPodSandbox");
    let spec = ContainerSpec::shell("main", "echo out; echo err >&2; exit 3");
    let id = cri.run_container(&pod, &spec).expect("create and start");

    let info = cri.wait_container_exited(&id, DEADLINE).expect("exit");
    assert_eq!(info.state, ContainerState::Exited);
    assert_eq!(info.exit_code, 3, "{info:?}");
    assert_eq!(info.reason, "Error");
    let created = info.created_at.expect("created_at");
    let started = info.started_at.expect("started_at");
    let finished = info.finished_at.expect("finished_at");
    assert!(created <= started, "{info:?}");
    // Not `finished >= started`: containerd stamps `started_at` itself once the task's Start
    // call has returned, while `finished_at` is the shim's exit time, so a container that exits
    // at once can finish "before" it started.
    assert!(finished >= created, "{info:?}");

    // containerd logs to <pod log directory>/<name>/<attempt>.log, one tagged record a line.
    assert_eq!(info.log_path, pod.log_directory().join("main/0.log"));
    let text = fs::read_to_string(&info.log_path).expect("log file");
    let records = parse_cri_log("main/0.log", &text).expect("CRI log format");
    assert!(records.iter().all(|r| !r.partial), "{records:?}");
    let lines = read_cri_log(&info.log_path).expect("log");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.contains(&(Stream::Stdout, "out".to_owned())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Stream::Stderr, "err".to_owned())),
        "{lines:?}"
    );

    cri.remove_container(&id).expect("RemoveContainer");
    cri.stop_pod_sandbox(&pod.id).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod.id).expect("RemovePodSandbox");
    assert!(cri.list_pod_sandboxes().expect("list").is_empty());
}

#[test]
fn stop_leaves_nothing_behind() {
    skip_unless!(Prereq::RUNC);
    let mut c = start(ContainerdOptions::default());
    let dir = c.dir().to_path_buf();
    let cri = c.cri().expect("cri");
    let pod = cri
        .run_pod_sandbox(&PodSpec::new("cleanup"))
        .expect("RunPodSandbox");
    let id = cri
        .run_container(&pod, &long_running("main"))
        .expect("start");
    wait_ready(&cri, &id);
    let socket = checked_shim_socket(&c, &pod);
    assert!(
        !processes_of(&dir).is_empty(),
        "no shim found for {}",
        dir.display()
    );

    cri.stop_container(&id, 10).expect("StopContainer");
    let info = cri.wait_container_exited(&id, DEADLINE).expect("exit");
    assert_eq!(info.exit_code, 0, "{info:?}");
    cri.remove_container(&id).expect("RemoveContainer");
    cri.stop_pod_sandbox(&pod.id).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod.id).expect("RemovePodSandbox");
    drop(cri);

    c.stop().expect("stop");
    assert_nothing_left(&c, &dir, &[socket]);
    c.stop().expect("stop is idempotent");
}

#[test]
fn stop_cleans_up_running_pods() {
    skip_unless!(Prereq::RUNC);
    let mut c = start(ContainerdOptions::default());
    let dir = c.dir().to_path_buf();
    let cri = c.cri().expect("cri");
    let pod = cri
        .run_pod_sandbox(&PodSpec::new("left-running"))
        .expect("RunPodSandbox");
    let id = cri
        .run_container(&pod, &long_running("main"))
        .expect("start");
    wait_ready(&cri, &id);
    let socket = checked_shim_socket(&c, &pod);

    // The test "forgets" its pod: the harness stops it through CRI.
    c.stop().expect("stop");
    assert_nothing_left(&c, &dir, &[socket]);
}

#[test]
fn stop_after_a_containerd_crash_leaves_nothing_behind() {
    skip_unless!(Prereq::RUNC);
    let mut c = start(ContainerdOptions::default());
    let dir = c.dir().to_path_buf();
    let cri = c.cri().expect("cri");
    let pod = cri
        .run_pod_sandbox(&PodSpec::new("crash"))
        .expect("RunPodSandbox");
    let id = cri
        .run_container(&pod, &long_running("main"))
        .expect("start");
    wait_ready(&cri, &id);
    let socket = checked_shim_socket(&c, &pod);
    let shim = shim_pid(&c, &pod.id).expect("shim process");

    // Without containerd, CRI cannot help: the forced steps must find the shim, the
    // containers, the mounts and the socket on their own.
    let pid = c.pid().expect("containerd pid");
    kill(Pid::from_raw(pid.cast_signed()), Signal::SIGKILL).expect("kill containerd");
    c.stop().expect("stop");
    assert!(
        fs::read_to_string(format!("/proc/{shim}/stat")).map_or(true, |s| s
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))),
        "shim {shim} survived"
    );
    assert_nothing_left(&c, &dir, &[socket]);
}

#[test]
fn running_pod_survives_a_containerd_restart() {
    skip_unless!(Prereq::RUNC);
    let mut c = start(ContainerdOptions::default());
    let cri = c.cri().expect("cri");
    let pod = cri
        .run_pod_sandbox(&PodSpec::new("restart"))
        .expect("RunPodSandbox");
    let id = cri
        .run_container(&pod, &long_running("main"))
        .expect("start");
    wait_ready(&cri, &id);
    let shim = shim_pid(&c, &pod.id).expect("shim process");
    let before = c.pid();

    c.restart().expect("restart");
    assert_ne!(c.pid(), before, "a new containerd process");
    assert_eq!(
        shim_pid(&c, &pod.id),
        Some(shim),
        "the same shim serves the pod"
    );

    // The client made before the restart reconnects on its own.
    let info = cri.container_status(&id).expect("status after restart");
    assert_eq!(info.state, ContainerState::Running, "{info:?}");
    let sandbox = cri.pod_sandbox_status(&pod.id).expect("sandbox status");
    assert_eq!(
        sandbox.state,
        hostgate_node_harness::api::PodSandboxState::SandboxReady as i32
    );

    // And the restarted containerd still controls it.
    cri.stop_container(&id, 10).expect("StopContainer");
    let info = cri.wait_container_exited(&id, DEADLINE).expect("exit");
    assert_eq!(info.exit_code, 0, "{info:?}");
    cri.remove_container(&id).expect("RemoveContainer");
    cri.stop_pod_sandbox(&pod.id).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod.id).expect("RemovePodSandbox");
}

#[test]
fn memory_limit_is_reported_as_oom_killed() {
    skip_unless!(Prereq::RUNC);
    let c = start(ContainerdOptions::default());
    let cri = c.cri().expect("cri");
    let pod = cri
        .run_pod_sandbox(&PodSpec::new("oom"))
        .expect("RunPodSandbox");
    // dd fills a 256 MiB buffer from /dev/zero: far above the 32 MiB limit, and with no swap
    // allowed the kernel's OOM killer ends it inside the read.
    let limit = 32 << 20;
    let mut spec = ContainerSpec::new("hog")
        .command(["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"])
        .memory_limit(limit);
    spec.resources.memory_swap_limit_bytes = Some(limit);
    let id = cri.run_container(&pod, &spec).expect("start");
    let mut info = cri.wait_container_exited(&id, DEADLINE).expect("exit");
    // containerd learns of the OOM and of the exit from two separate shim events; should the
    // exit be processed first, the reason follows shortly after.
    let start = std::time::Instant::now();
    while info.reason != "OOMKilled" && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
        info = cri.container_status(&id).expect("status");
    }
    assert_eq!(info.reason, "OOMKilled", "{info:?}");
    assert_eq!(info.exit_code, 137, "{info:?}");
}

#[test]
fn extra_handler_passes_listed_pod_annotations() {
    skip_unless!(Prereq::RUNC);
    let c = start(
        ContainerdOptions::default().handler(
            RuntimeHandler::new("alt", "io.containerd.runc.v2")
                .pod_annotation("hostgate.io/*")
                .container_annotation("hostgate.io/*"),
        ),
    );
    let cri = c.cri().expect("cri");
    let spec = PodSpec::new("annotated")
        .runtime_handler("alt")
        .annotation("hostgate.io/approval", "signed")
        .annotation("other.io/note", "dropped");
    let pod = cri.run_pod_sandbox(&spec).expect("RunPodSandbox");
    let id = cri
        .run_container(
            &pod,
            &long_running("main").annotation("hostgate.io/container", "yes"),
        )
        .expect("start");
    wait_ready(&cri, &id);

    let annotations = |id: &str| -> serde_json::Value {
        let spec = fs::read(bundle(&c, id).join("config.json")).expect("config.json");
        let spec: serde_json::Value = serde_json::from_slice(&spec).expect("OCI spec");
        spec["annotations"].clone()
    };
    let sandbox = annotations(&pod.id);
    assert_eq!(sandbox["hostgate.io/approval"], "signed", "{sandbox}");
    assert!(sandbox.get("other.io/note").is_none(), "{sandbox}");
    assert_eq!(sandbox["io.kubernetes.cri.container-type"], "sandbox");
    let container = annotations(&id);
    assert_eq!(container["hostgate.io/approval"], "signed", "{container}");
    assert_eq!(container["hostgate.io/container"], "yes", "{container}");
    assert_eq!(container["io.kubernetes.cri.sandbox-id"], pod.id.as_str());
    // The extra runc handler keeps its state under the instance, like the default one.
    assert!(c.runc_root().join(&id).exists());
}

#[test]
fn extra_handler_shim_is_found_on_the_prepended_path_with_the_extra_env() {
    skip_unless!(Prereq::RUNC);
    // A shim that records how containerd ran it, then refuses to start.
    let bin = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let shim = bin.path().join("containerd-shim-hgtest-v1");
    fs::write(
        &shim,
        "#!/bin/sh\nenv > \"$HG_TEST_OUT/env.$1.$$\"\necho 'hgtest shim refuses' >&2\nexit 1\n",
    )
    .expect("write shim");
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).expect("chmod");

    let c = start(
        ContainerdOptions::default()
            .handler(RuntimeHandler::new("hgtest", "io.containerd.hgtest.v1"))
            .path_prepend(bin.path())
            .env("HG_TEST_OUT", out.path()),
    );
    let cri = c.cri().expect("cri");
    let err = cri
        .run_pod_sandbox(&PodSpec::new("refused").runtime_handler("hgtest"))
        .expect_err("the shim refuses");
    assert!(err.to_string().contains("hgtest shim refuses"), "{err}");

    let env_files: Vec<PathBuf> = fs::read_dir(out.path())
        .expect("out")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(!env_files.is_empty(), "the shim never ran");
    let env = fs::read_to_string(&env_files[0]).expect("env");
    assert!(
        env.lines()
            .any(|l| l == format!("HG_TEST_OUT={}", out.path().display())),
        "{env}"
    );
    // containerd's `opt` plugin puts its own `bin` (under the instance) first; the prepended
    // directory comes next, before the inherited PATH.
    let path = env
        .lines()
        .find_map(|l| l.strip_prefix("PATH="))
        .expect("PATH");
    let first_outside = std::env::split_paths(path).find(|p| !p.starts_with(c.dir()));
    assert_eq!(first_outside.as_deref(), Some(bin.path()), "{path}");
}
