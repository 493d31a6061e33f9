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

use hostgate_node_harness::{ContainerState, Prereq, Stream, read_cri_log, skip_unless};
use shim_common::{DEADLINE, Node, POLICY, pod_yaml};

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
