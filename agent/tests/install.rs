//! `hostgate-agent install` / `uninstall` against Debian's containerd 1.6.20 (configuration
//! version 2): the edited file is loaded by a real containerd (private root, state and socket,
//! from `agent/harness`), which then serves the `hostgate` handler: an approved pod runs
//! through it over CRI, an unapproved one is refused. Uninstall restores the file byte for
//! byte; a second install changes nothing; the admin's comments and tables survive.
//! Configuration version 3 (containerd 2.x) is covered by golden-file tests of the edit
//! (`agent/src/install/config/tests.rs`): there is no containerd 2.x binary on these machines.
//!
//! Needs root, containerd, runc, the static busybox and cgroups: without them each test says
//! why and returns, except under `CI`, where a missing prerequisite fails it.
#![cfg(target_os = "linux")]

mod shim_common;

use std::fs;
use std::process::Command;

use hostgate_node_harness::{ContainerState, Prereq, skip_unless};
use shim_common::{DEADLINE, Node, POLICY, SHIM, pod_yaml};

const AGENT: &str = env!("CARGO_BIN_EXE_hostgate-agent");

fn agent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(AGENT)
        .args(args)
        .output()
        .expect("run hostgate-agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn containerd_binary() -> String {
    hostgate_agent::install::restart::find_on_path("containerd")
        .expect("containerd on PATH")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn install_registers_a_handler_containerd_serves_and_uninstall_restores_the_file() {
    skip_unless!(Prereq::RUNC);
    let shim_dir = tempfile::tempdir().expect("shim dir");
    let mut node = Node::start_without_handler(POLICY, shim_dir.path());
    let config = node.containerd.config_path();
    // The admin's own lines, which must survive.
    let mut original = fs::read_to_string(&config).expect("config");
    original = format!(
        "# Managed by the node team: do not reorder.\n{original}\n# End of the admin's file.\n"
    );
    fs::write(&config, &original).expect("write");
    let config_arg = config.to_string_lossy().into_owned();
    let shim_dir_arg = shim_dir.path().to_string_lossy().into_owned();
    let node_dir_arg = node.node_dir.to_string_lossy().into_owned();
    let containerd = containerd_binary();
    let args = |cmd: &'static str, extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            cmd,
            "--containerd-config",
            &config_arg,
            "--shim-dir",
            &shim_dir_arg,
            "--shim-binary",
            SHIM,
            "--containerd",
            &containerd,
            "--node-dir",
            &node_dir_arg,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let run = |a: Vec<String>| agent(&a.iter().map(String::as_str).collect::<Vec<_>>());

    // --dry-run shows the diff and changes nothing.
    let (code, out, err) = run(args("install", &["--dry-run"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("+[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hostgate]"),
        "{out}"
    );
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert_eq!(fs::read_to_string(&config).expect("config"), original);
    assert!(!shim_dir.path().join("containerd-shim-hostgate-v1").exists());

    let (code, out, err) = run(args("install", &[]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("registered the `hostgate` handler"), "{out}");
    let installed = fs::read_to_string(&config).expect("config");
    let mut rest = installed.lines();
    for line in original.lines() {
        assert!(
            rest.any(|l| l == line),
            "the admin's line was lost or moved: {line:?}"
        );
    }
    assert!(shim_dir.path().join("containerd-shim-hostgate-v1").exists());

    // A second install is a no-op and says so.
    let (code, out, err) = run(args("install", &[]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(fs::read_to_string(&config).expect("config"), installed);

    // containerd, restarted on the edited file, serves the handler.
    node.containerd.restart().expect("restart");
    node.cri = node.containerd.cri().expect("CRI");
    let approved = node.approve(&pod_yaml("installed", "[sh, -c, 'echo hi; exit 4']", ""));
    let run_pod = node.run(&approved);
    let info = node
        .cri
        .wait_container_exited(&run_pod.containers[0], DEADLINE)
        .expect("exits");
    assert_eq!(
        (info.state, info.exit_code),
        (ContainerState::Exited, 4),
        "{info:?}"
    );
    node.teardown(&run_pod);
    let unsigned = node.unsigned(&pod_yaml("not-approved", "[sh, -c, 'echo no']", ""));
    let err = node.start_refused(&unsigned, |_| {});
    assert!(err.contains("hostgate refused"), "{err}");

    // Uninstall restores the file byte for byte and removes the shim.
    let (code, out, err) = run(args("uninstall", &[]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored"), "{out}");
    assert_eq!(fs::read_to_string(&config).expect("config"), original);
    assert!(!shim_dir.path().join("containerd-shim-hostgate-v1").exists());
    let leftovers: Vec<_> = fs::read_dir(config.parent().expect("dir"))
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("hostgate"))
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let (code, out, _) = run(args("uninstall", &[]));
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");
}

#[test]
fn bad_configurations_and_binaries_are_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    let shim_dir = dir.path().join("bin");
    fs::create_dir(&shim_dir).expect("mkdir");
    let install = |extra: &[&str]| {
        let mut a = vec![
            "install",
            "--containerd-config",
            config.to_str().expect("utf-8"),
            "--shim-dir",
            shim_dir.to_str().expect("utf-8"),
            "--node-dir",
            dir.path().to_str().expect("utf-8"),
            "--containerd",
            "/nonexistent/containerd",
        ];
        a.extend_from_slice(extra);
        agent(&a)
    };
    let shim = ["--shim-binary", SHIM];
    // (file content, expected message)
    let cases = [
        ("version = [", "is not TOML"),
        ("root = \"/var/lib/containerd\"\n", "no `version` key"),
        ("version = 4\n", "version = 4"),
        (
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hostgate]\nruntime_type = \"io.containerd.runc.v2\"\n",
            "already defined differently",
        ),
    ];
    for (text, want) in cases {
        fs::write(&config, text).expect("write");
        let (code, _, err) = install(&shim);
        assert_eq!(code, 3, "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
        assert_eq!(
            fs::read_to_string(&config).expect("read"),
            text,
            "left untouched"
        );
        assert!(!shim_dir.join("containerd-shim-hostgate-v1").exists());
    }
    fs::write(&config, "version = 2\n").expect("write");
    let (code, _, err) = install(&["--shim-binary", "/nonexistent/shim"]);
    assert_eq!(code, 3);
    assert!(err.contains("does not exist"), "{err}");
    let plain = dir.path().join("not-executable");
    fs::write(&plain, "x").expect("write");
    let (code, _, err) = install(&["--shim-binary", plain.to_str().expect("utf-8")]);
    assert_eq!(code, 3);
    assert!(err.contains("not executable"), "{err}");
    assert_eq!(fs::read_to_string(&config).expect("read"), "version = 2\n");
    // A read-only configuration.
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&config, fs::Permissions::from_mode(0o444)).expect("chmod");
    let (code, _, err) = install(&shim);
    assert_eq!(code, 3);
    assert!(err.contains("read-only"), "{err}");
    // containerd that rejects the result: the previous file is put back.
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).expect("chmod");
    let fake = dir.path().join("containerd");
    fs::write(&fake, "#!/bin/sh\necho 'failed to load TOML' >&2\nexit 1\n").expect("write");
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
    let (code, _, err) = agent(&[
        "install",
        "--containerd-config",
        config.to_str().expect("utf-8"),
        "--shim-dir",
        shim_dir.to_str().expect("utf-8"),
        "--shim-binary",
        SHIM,
        "--node-dir",
        dir.path().to_str().expect("utf-8"),
        "--containerd",
        fake.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("does not load the edited configuration"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(&config).expect("read"),
        "version = 2\n",
        "restored"
    );
    assert!(
        !shim_dir.join("containerd-shim-hostgate-v1").exists(),
        "a refused install places no shim"
    );
    // Delegate mode on containerd 2.x: later containers of a pod would reach the platform's shim
    // without passing the gate.
    fs::write(&config, "version = 3\n").expect("write");
    let (code, _, err) = install(&["--shim-binary", SHIM, "--delegate"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--delegate needs containerd 1.6/1.7"), "{err}");
    assert_eq!(fs::read_to_string(&config).expect("read"), "version = 3\n");
    assert!(!dir.path().join("conf.d").exists(), "no drop-in written");
    assert!(
        !dir.path().join("shim.yaml").exists(),
        "no delegate setting written"
    );
}

/// The backup `uninstall` restores is the file as it was before the latest install, with its
/// permissions: an admin who rewrote the configuration (dropping the handler) between two
/// installs gets the rewrite back, not the first original.
#[test]
fn uninstall_restores_the_file_as_it_was_before_the_latest_install() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    let shim_dir = dir.path().join("bin");
    fs::create_dir(&shim_dir).expect("mkdir");
    // A containerd whose `config dump` shows the handler: the file's content is what is tested.
    let containerd = dir.path().join("containerd");
    fs::write(
        &containerd,
        "#!/bin/sh\necho 'runtime_type = \"io.containerd.hostgate.v1\"'\n",
    )
    .expect("write");
    fs::set_permissions(&containerd, fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = |action: &str| {
        let (code, _, err) = agent(&[
            action,
            "--containerd-config",
            config.to_str().expect("utf-8"),
            "--shim-dir",
            shim_dir.to_str().expect("utf-8"),
            "--shim-binary",
            SHIM,
            "--node-dir",
            dir.path().to_str().expect("utf-8"),
            "--containerd",
            containerd.to_str().expect("utf-8"),
            "--restart",
            "none",
        ]);
        assert_eq!(code, 0, "{action}: {err}");
    };
    let first = "version = 2\n# the admin's first file: registry credentials below\n";
    fs::write(&config, first).expect("write");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod");
    run("install");
    let backup = dir.path().join("config.toml.hostgate-backup");
    assert_eq!(fs::read_to_string(&backup).expect("backup"), first);
    let mode = fs::metadata(&backup).expect("backup").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup is as private as the file");

    let rewritten = "version = 2\n# the admin's rewrite, without the handler\n";
    fs::write(&config, rewritten).expect("write");
    run("install");
    assert!(
        fs::read_to_string(&config)
            .expect("read")
            .contains("hostgate")
    );
    run("uninstall");
    assert_eq!(fs::read_to_string(&config).expect("read"), rewritten);
}
