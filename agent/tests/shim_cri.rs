//! `containerd-shim-hostgate-v1` behind a real containerd, driven over CRI as the kubelet
//! drives it (the `agent/harness` crate): approved pods run as jobs, everything else is refused
//! at `StartContainer` with its own reason, and nothing is left behind.
//!
//! Each test starts its own containerd with a `hostgate` runtime handler whose shim is this
//! package's binary (found through containerd's `PATH`), and a node directory
//! (`HOSTGATE_NODE_DIR`) with a fresh signing key's public half and the test's policies.
//! Approvals are made by `hostgate_core::mutate::mutate_value`, the function behind
//! `hostgate mutate --signing-key`. These tests need root, containerd, runc, the static busybox
//! and cgroups: without them each says why and returns, except under `CI`, where a missing
//! prerequisite fails the test. Waits are bounded (failures, not performance checks).
#![cfg(target_os = "linux")]

mod shim_common;

use std::collections::BTreeSet;
use std::fs;

use hostgate_core::approval::ANNOTATION;
use hostgate_node_harness::{
    ContainerSpec, ContainerState, MountSpec, PAUSE_IMAGE, PodSpec, Prereq, Stream, read_cri_log,
    skip_unless,
};
use hostgate_test_support::procs::marked;
use hostgate_test_support::{eventually, wait_until};
use k8s_openapi::api::core::v1::Pod;
use shim_common::{
    DEADLINE, LONG_RUNNING, MARKER, Node, POLICY, job_dirs, pod_yaml, shim_processes,
};

#[test]
fn approved_pod_runs_and_reports_exit_code_times_and_log() {
    skip_unless!(Prereq::RUNC);
    let node = Node::start(POLICY);
    let pod = node.approve(&pod_yaml(
        "exit-code",
        "[sh, -c, 'echo out; echo err >&2; exit 3']",
        "",
    ));
    let run = node.run(&pod);
    let id = run.containers[0].clone();
    let info = node
        .cri
        .wait_container_exited(&id, DEADLINE)
        .expect("exits");
    assert_eq!(info.state, ContainerState::Exited, "{info:?}");
    assert_eq!(info.exit_code, 3, "{info:?}");
    assert_eq!(info.reason, "Error", "{info:?}");
    let created = info.created_at.expect("created_at");
    assert!(info.started_at.is_some() && info.finished_at.expect("finished") >= created);
    let lines = read_cri_log(&info.log_path).expect("CRI log");
    assert!(
        lines.contains(&(Stream::Stdout, "out".to_owned())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Stream::Stderr, "err".to_owned())),
        "{lines:?}"
    );
    node.teardown(&run);
    node.assert_clean();
}

/// Creates `pod`'s sandbox and its first container as `edit` changes it, expects
/// `StartContainer` to fail, and returns the error text and the container's status message;
/// checks that the refusal created no process, job or mount.
fn refused_with(
    node: &Node,
    pod: &Pod,
    edit: impl FnOnce(&mut ContainerSpec, &mut PodSpec),
) -> String {
    let mut pod_spec = node.pod_spec(pod);
    let mut spec = node.container_specs(pod).remove(0);
    edit(&mut spec, &mut pod_spec);
    spec.env.push((MARKER.to_owned(), pod_spec.uid.clone()));
    let cri_pod = node.cri.run_pod_sandbox(&pod_spec).expect("RunPodSandbox");
    let id = node
        .cri
        .create_container(&cri_pod.id, &spec, &cri_pod.config)
        .expect("CreateContainer");
    let err = node
        .cri
        .start_container(&id)
        .expect_err("StartContainer must fail")
        .to_string();
    let info = node.cri.container_status(&id).expect("ContainerStatus");
    assert_eq!(info.state, ContainerState::Exited, "{info:?}");
    assert_eq!(info.reason, "StartError", "{info:?}");
    assert!(info.message.contains("hostgate refused"), "{info:?}");
    assert!(
        marked(MARKER, &pod_spec.uid).is_empty(),
        "a refused container ran"
    );
    node.assert_clean();
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&id),
        "a refused container's root file system is mounted"
    );
    node.cri.remove_container(&id).expect("RemoveContainer");
    node.cri
        .stop_pod_sandbox(&cri_pod.id)
        .expect("StopPodSandbox");
    node.cri
        .remove_pod_sandbox(&cri_pod.id)
        .expect("RemovePodSandbox");
    format!("{err}\n{}", info.message)
}

/// The shim's one line, as containerd embeds it in the container's message.
fn refusal_line(text: &str) -> String {
    let start = text.rfind("hostgate refused").unwrap_or(0);
    let line = &text[start..];
    line.split(['\n', '\r']).next().unwrap_or(line).to_owned()
}

#[test]
fn refusals_have_distinct_reasons_and_start_nothing() {
    skip_unless!(Prereq::RUNC);
    let node = Node::start(POLICY);
    let yaml = pod_yaml(
        "refused",
        "[sh, -c, 'echo $(GREETING); sleep 1']",
        "env: [{name: GREETING, value: hello}], resources: {limits: {memory: 64Mi}}, workingDir: /work, \
         volumeMounts: [{name: scratch, mountPath: /scratch}], ",
    )
    .replace(
        "containers: [",
        "volumes: [{name: scratch, hostPath: {path: /tmp/hg-shim-scratch}}], containers: [",
    );
    let approved = node.approve(&yaml);
    let approval = approved.metadata.annotations.as_ref().expect("annotations")[ANNOTATION].clone();
    let (payload, signature) = approval.split_once('.').expect("two parts");
    let other = Node::start(POLICY);
    let foreign = other
        .approve(&yaml)
        .metadata
        .annotations
        .expect("annotations")[ANNOTATION]
        .clone();

    type Edit = Box<dyn Fn(&mut ContainerSpec, &mut PodSpec)>;
    let set_approval = |value: String| -> Edit {
        Box::new(move |_, p| {
            p.annotations.insert(ANNOTATION.to_owned(), value.clone());
        })
    };
    // (case, edit of what the kubelet sends, text the refusal names)
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "unsigned",
            Box::new(|_, p| {
                p.annotations.remove(ANNOTATION);
            }),
            "not signed",
        ),
        (
            "tampered",
            set_approval(format!("{}x.{signature}", &payload[..payload.len() - 1])),
            "does not verify",
        ),
        ("unknown key", set_approval(foreign), "not trusted"),
        (
            "another namespace",
            Box::new(|_, p| p.namespace = "default".into()),
            "approved for namespace",
        ),
        (
            "ephemeral",
            Box::new(|c, _| c.name = "debugger".into()),
            "not in the approval",
        ),
        (
            "image",
            Box::new(|c, _| c.image = PAUSE_IMAGE.into()),
            "is not the approved image",
        ),
        (
            "command",
            Box::new(|c, _| c.command[2] = "id".into()),
            "args: approved",
        ),
        (
            "env changed",
            Box::new(|c, _| c.env[0].1 = "bye".into()),
            "env GREETING: approved",
        ),
        (
            "env added",
            Box::new(|c, _| c.env.push(("LD_PRELOAD".into(), "/x.so".into()))),
            "env LD_PRELOAD: not approved",
        ),
        (
            "working dir",
            Box::new(|c, _| c.working_dir = Some("/root".into())),
            "working directory",
        ),
        (
            "extra mount",
            Box::new(|c, _| {
                c.mounts.push(MountSpec {
                    host_path: "/etc".into(),
                    container_path: "/host-etc".into(),
                    readonly: true,
                })
            }),
            "neither an approved volume mount",
        ),
        (
            "hostPath moved",
            Box::new(|c, _| c.mounts[0].host_path = "/var".into()),
            "approved source",
        ),
        (
            "more memory",
            Box::new(|c, _| c.resources.memory_limit_bytes = Some(1 << 30)),
            "memory limit: approved at most",
        ),
    ];
    let mut seen = BTreeSet::new();
    for (case, edit, want) in &cases {
        let text = refused_with(&node, &approved, |c, p| edit(c, p));
        assert!(text.contains(want), "{case}: {text}");
        let reason = refusal_line(&text);
        assert!(
            seen.insert(reason.clone()),
            "{case}: same reason as another case: {reason}"
        );
    }

    // The node's policies change after the approval: the pod's next start is refused.
    fs::write(
        node.node_dir.join("policies/policy.yaml"),
        POLICY.replace("hostPathPrefixes: ['/tmp']", "hostPathPrefixes: ['/srv']"),
    )
    .expect("new policy");
    let text = refused_with(&node, &approved, |_, _| {});
    assert!(text.contains("HG-VOLUME-02"), "{text}");
}

#[test]
fn a_node_without_trusted_keys_refuses_every_container() {
    skip_unless!(Prereq::RUNC);
    let node = Node::start(POLICY);
    let pod = node.approve(&pod_yaml("no-trust", "[sh, -c, 'true']", ""));
    fs::remove_dir_all(node.node_dir.join("trust")).expect("remove trust");
    let text = refused_with(&node, &pod, |_, _| {});
    assert!(text.contains("no trusted keys"), "{text}");
}

#[test]
fn only_hostgate_annotations_reach_one_shim_per_pod_which_exits_after_its_last_task() {
    skip_unless!(Prereq::RUNC);
    let node = Node::start(POLICY);
    let yaml = pod_yaml("two", LONG_RUNNING, "")
        .replace("metadata: {", "metadata: {annotations: {example.com/secret: s3cret}, ")
        .replace(
            "containers: [{name: main,",
            "containers: [{name: second, image: 'docker.io/hostgate/busybox:test', command: [sh, -c, 'trap \"exit 0\" TERM; echo ready; while :; do sleep 1; done']}, {name: main,",
        );
    let pod = node.approve(&yaml);
    let run = node.run(&pod);
    for id in &run.containers {
        node.wait_ready(id);
        let config = fs::read_to_string(node.bundle(id).join("config.json")).expect("config.json");
        assert!(config.contains(ANNOTATION), "the approval reaches the shim");
        assert!(
            !config.contains("example.com/secret"),
            "other pod annotations do not"
        );
    }
    let shims = node.shims_of(&run.pod.id);
    assert_eq!(shims.len(), 1, "one shim process per pod: {shims:?}");
    node.teardown(&run);
    wait_until("the pod's shim exits", || {
        node.shims_of(&run.pod.id).is_empty()
    });
    node.assert_clean();
}

#[test]
fn fifty_pods_leave_no_process_cgroup_mount_socket_or_bundle() {
    skip_unless!(Prereq::RUNC);
    let node = Node::start(POLICY);
    let pod = node.approve(&pod_yaml("cycle", "[sh, -c, 'echo hi']", ""));
    let mut sockets = Vec::new();
    for _ in 0..50 {
        let run = node.run(&pod);
        // The pod's shim serves on the socket containerd derives from the sandbox id.
        let socket = node.containerd.shim_socket_for("k8s.io", &run.pod.id);
        assert!(socket.exists(), "no shim socket at {}", socket.display());
        sockets.push(socket);
        node.cri
            .wait_container_exited(&run.containers[0], DEADLINE)
            .expect("exits");
        node.teardown(&run);
    }
    wait_until("no shim process", || {
        shim_processes().iter().all(|(_, a)| {
            !a.iter()
                .any(|x| x.contains(node.containerd.dir().to_str().unwrap_or("?")))
        })
    });
    node.assert_clean();
    let tasks = node
        .containerd
        .state_dir()
        .join("io.containerd.runtime.v2.task/k8s.io");
    wait_until("no bundle left", || {
        fs::read_dir(&tasks).map_or(true, |d| d.count() == 0)
    });
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = node.containerd.dir().to_string_lossy().into_owned();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(&dir) && l.contains("rootfs")),
        "root file systems left mounted"
    );
    let left: Vec<_> = sockets.iter().filter(|s| s.exists()).collect();
    assert!(left.is_empty(), "shim sockets left: {left:?}");
}

#[test]
fn stop_kills_a_tree_that_ignores_sigterm_and_a_setsid_grandchild() {
    skip_unless!(Prereq::RUNC);
    let node = Node::start(POLICY);
    let script = "trap '' TERM; setsid sh -c 'trap \"\" TERM; sleep 1000' & \
                  i=0; while [ $i -lt 20 ]; do sleep 1000 & i=$((i+1)); done; \
                  echo ready; while :; do sleep 1; done";
    let yaml = pod_yaml("stubborn", &format!("[sh, -c, {script:?}]"), "");
    let pod = node.approve(&yaml);
    let pod_spec = node.pod_spec(&pod);
    let mut spec = node.container_specs(&pod).remove(0);
    spec.env.push((MARKER.to_owned(), pod_spec.uid.clone()));
    let marker = pod_spec.uid.clone();
    let cri_pod = node.cri.run_pod_sandbox(&pod_spec).expect("RunPodSandbox");
    let id = node.cri.run_container(&cri_pod, &spec).expect("starts");
    node.wait_ready(&id);
    wait_until("22 processes", || marked(MARKER, &marker).len() >= 22);
    node.cri.stop_container(&id, 2).expect("StopContainer");
    let info = node
        .cri
        .wait_container_exited(&id, DEADLINE)
        .expect("exits");
    assert_eq!(info.exit_code, 137, "{info:?}");
    wait_until("nothing of the tree left", || {
        marked(MARKER, &marker).is_empty()
    });
    node.cri.remove_container(&id).expect("RemoveContainer");
    node.cri
        .stop_pod_sandbox(&cri_pod.id)
        .expect("StopPodSandbox");
    node.cri
        .remove_pod_sandbox(&cri_pod.id)
        .expect("RemovePodSandbox");
    node.assert_clean();
}

#[test]
fn the_memory_limit_is_enforced_and_reported_oom_killed() {
    skip_unless!(Prereq::RUNC);
    let node = Node::start(POLICY);
    let yaml = pod_yaml(
        "hog",
        "[sh, -c, 'dd if=/dev/zero of=/dev/null bs=256M count=1']",
        "resources: {limits: {memory: 32Mi}}, ",
    );
    let pod = node.approve(&yaml);
    let run = node.run(&pod);
    let id = &run.containers[0];
    let info = node.cri.wait_container_exited(id, DEADLINE).expect("exits");
    assert_ne!(info.exit_code, 0, "{info:?}");
    // containerd records the OOM event and the exit separately.
    let info = eventually("the OOMKilled reason", || {
        let info = node.cri.container_status(id).expect("status");
        (info.reason == "OOMKilled").then_some(info)
    });
    assert_eq!(info.exit_code, 137, "{info:?}");
    node.teardown(&run);
    node.assert_clean();
}

#[test]
fn a_running_pod_survives_a_containerd_restart_and_a_killed_shim_is_cleaned_up() {
    skip_unless!(Prereq::RUNC);
    let mut node = Node::start(POLICY);
    let yaml = pod_yaml("survivor", LONG_RUNNING, "");
    let pod = node.approve(&yaml);
    let run = node.run(&pod);
    let id = run.containers[0].clone();
    node.wait_ready(&id);
    node.containerd.restart().expect("restart containerd");
    node.cri = node.containerd.cri().expect("CRI client");
    let info = node
        .cri
        .container_status(&id)
        .expect("status after restart");
    assert_eq!(info.state, ContainerState::Running, "{info:?}");
    node.cri
        .stop_container(&id, 10)
        .expect("StopContainer after restart");
    let info = node
        .cri
        .wait_container_exited(&id, DEADLINE)
        .expect("exits");
    assert_eq!(info.exit_code, 0, "{info:?}");
    node.cri.remove_container(&id).expect("RemoveContainer");
    node.cri
        .stop_pod_sandbox(&run.pod.id)
        .expect("StopPodSandbox");
    node.cri
        .remove_pod_sandbox(&run.pod.id)
        .expect("RemovePodSandbox");

    // SIGKILL the shim of a running pod: containerd reports the task exited and its `delete`
    // action removes the job, its processes and the root file system mount.
    let run = node.run(&pod);
    let id = run.containers[0].clone();
    node.wait_ready(&id);
    // What the checks below (and `assert_clean`) expect to disappear is there to begin with.
    assert!(
        !job_dirs(&node.cgroup_parent).is_empty(),
        "the running container's job is where assert_clean looks"
    );
    assert!(
        fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .contains(&id),
        "the running container's root file system is mounted under its id"
    );
    let shims = node.shims_of(&run.pod.id);
    assert_eq!(shims.len(), 1, "{shims:?}");
    let pid = i32::try_from(shims[0]).expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the shim");
    let info = node
        .cri
        .wait_container_exited(&id, DEADLINE)
        .expect("reported exited");
    assert_eq!(info.state, ContainerState::Exited, "{info:?}");
    wait_until("the dead shim's job is removed", || {
        job_dirs(&node.cgroup_parent).is_empty()
    });
    // The delete action unmounts after it removed the job: wait for that too.
    wait_until("the dead shim's root file system is unmounted", || {
        !fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .contains(&id)
    });
    node.cri.remove_container(&id).expect("RemoveContainer");
    node.cri
        .stop_pod_sandbox(&run.pod.id)
        .expect("StopPodSandbox");
    node.cri
        .remove_pod_sandbox(&run.pod.id)
        .expect("RemovePodSandbox");
}

#[test]
fn a_runc_pod_on_the_same_containerd_is_unaffected() {
    skip_unless!(Prereq::RUNC);
    let node = Node::start(POLICY);
    let approved = node.approve(&pod_yaml("next-door", LONG_RUNNING, ""));
    let hostgate = node.run(&approved);
    node.wait_ready(&hostgate.containers[0]);
    // The same pod, unsigned, under the default runc handler: runc runs it, the gate is not asked.
    let plain = node.unsigned(&pod_yaml(
        "runc-pod",
        "[sh, -c, 'echo from runc; exit 7']",
        "",
    ));
    let mut spec = node.pod_spec(&plain);
    spec.runtime_handler = String::new();
    let runc_pod = node.cri.run_pod_sandbox(&spec).expect("runc sandbox");
    let c = node.container_specs(&plain).remove(0);
    let id = node
        .cri
        .run_container(&runc_pod, &c)
        .expect("runc container");
    let info = node
        .cri
        .wait_container_exited(&id, DEADLINE)
        .expect("exits");
    assert_eq!(info.exit_code, 7, "{info:?}");
    let lines = read_cri_log(&info.log_path).expect("log");
    assert_eq!(lines, [(Stream::Stdout, "from runc".to_owned())]);
    assert!(
        node.shims_of(&runc_pod.id).is_empty(),
        "the hostgate shim served a runc pod"
    );
    node.cri.remove_container(&id).expect("remove");
    node.cri.stop_pod_sandbox(&runc_pod.id).expect("stop");
    node.cri.remove_pod_sandbox(&runc_pod.id).expect("remove");
    let info = node
        .cri
        .container_status(&hostgate.containers[0])
        .expect("status");
    assert_eq!(info.state, ContainerState::Running, "{info:?}");
    node.teardown(&hostgate);
    node.assert_clean();
}

#[test]
fn delegate_mode_runs_approved_containers_under_runc_and_refuses_before_it() {
    skip_unless!(Prereq::RUNC);
    let node = Node::start(POLICY);
    let settings = node.node_dir.join("shim.yaml");
    let mut text = fs::read_to_string(&settings).expect("settings");
    text.push_str("mode: delegate\n");
    fs::write(&settings, text).expect("delegate mode");

    let approved = node.approve(&pod_yaml(
        "delegated",
        "[sh, -c, 'echo pid=$$$$; exit 5']",
        "",
    ));
    let run = node.run(&approved);
    let info = node
        .cri
        .wait_container_exited(&run.containers[0], DEADLINE)
        .expect("exits");
    assert_eq!(info.exit_code, 5, "{info:?}");
    // runc ran it: the shell is process 1 of the container's own pid namespace (`$$$$` is the
    // kubelet's escape for the shell's `$$`).
    let lines = read_cri_log(&info.log_path).expect("log");
    assert_eq!(lines, [(Stream::Stdout, "pid=1".to_owned())]);
    assert!(
        node.shims_of(&run.pod.id).is_empty(),
        "no hostgate shim serves a delegated pod"
    );
    // The delegate runs containerd-shim-runc-v2 without the harness's runc options, so runc
    // keeps its state in the shim's default root.
    let runc_knows = |id: &str| {
        std::process::Command::new("runc")
            .args(["--root", "/run/containerd/runc/k8s.io", "state", id])
            .output()
            .expect("runc")
            .status
            .success()
    };
    node.teardown(&run);
    let running = node.run(&node.approve(&pod_yaml("delegated-running", LONG_RUNNING, "")));
    assert!(
        runc_knows(&running.containers[0]),
        "runc's state of a running delegated container is where the refusal below looks"
    );
    node.teardown(&running);

    let unsigned = node.unsigned(&pod_yaml("delegate-refused", "[sh, -c, 'echo no']", ""));
    let err = node.start_refused(&unsigned, |id| {
        assert!(!runc_knows(id), "runc knows the refused container");
    });
    assert!(err.contains("hostgate refused"), "{err}");
    assert!(err.contains("not signed"), "{err}");
}

/// `kubectl debug` on a running HostProcess pod: the kubelet creates one more container in the
/// pod's sandbox. It is in no approval, so it runs only when the approving policy's
/// `allow.ephemeralContainers` allows its image and argv, and is refused with the rule's id
/// otherwise (HG-EPHEMERAL-01…04).
#[test]
fn an_ephemeral_container_runs_only_when_the_policy_allows_it() {
    skip_unless!(Prereq::RUNC);
    let policy = POLICY.replace(
        "  defaults:",
        "    ephemeralContainers:\n      images: ['docker.io/hostgate/busybox:*']\n      commands: [[sh, -c, 'echo debugging; exit 4']]\n  defaults:",
    );
    let node = Node::start(&policy);
    let pod = node.approve(&pod_yaml("debugged", LONG_RUNNING, ""));
    let mut run = node.run(&pod);
    let debug = |command: &str| {
        ContainerSpec::new("debugger")
            .image("docker.io/hostgate/busybox:test")
            .command(["sh", "-c", command].map(str::to_owned).to_vec())
    };

    let id = node
        .cri
        .run_container(&run.pod, &debug("echo debugging; exit 4"))
        .unwrap_or_else(|e| panic!("debug container: {e}\n{}", node.containerd.log_tail(30)));
    run.containers.push(id.clone());
    let info = node
        .cri
        .wait_container_exited(&id, DEADLINE)
        .expect("exits");
    assert_eq!(info.exit_code, 4, "{info:?}");
    let lines = read_cri_log(&info.log_path).expect("CRI log");
    assert!(
        lines.contains(&(Stream::Stdout, "debugging".to_owned())),
        "{lines:?}"
    );
    assert!(
        node.containerd
            .log_tail(200)
            .contains("allows it as an ephemeral container"),
        "the shim's log names the policy that allowed it"
    );

    let mut spec = debug("id");
    spec.name = "debugger-2".to_owned();
    let refused = node
        .cri
        .create_container(&run.pod.id, &spec, &run.pod.config)
        .expect("CreateContainer");
    run.containers.push(refused.clone());
    let err = node
        .cri
        .start_container(&refused)
        .expect_err("a command the policy does not list is refused")
        .to_string();
    let line = refusal_line(&err);
    assert!(line.contains("HG-EPHEMERAL-03"), "{line}");
    assert!(line.contains("not in the approval"), "{line}");

    // The pod's own container kept running through both.
    let main = node
        .cri
        .container_status(&run.containers[0])
        .expect("status");
    assert_eq!(main.state, ContainerState::Running, "{main:?}");
    node.teardown(&run);
    node.assert_clean();
}
