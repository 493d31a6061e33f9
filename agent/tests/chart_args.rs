//! The chart's agent DaemonSet (`charts/hostgate`) as this agent reads it: every variant of the
//! install step that helm renders parses with the agent's own command line into the options its
//! values mean, `sync` writes where the installer and the shim look, and the chart's RuntimeClass
//! names the handler and the node label the installer sets. A flag renamed on one side fails
//! here rather than on a Windows node.
//!
//! helm is `$HOSTGATE_HELM` or `helm` on the PATH; without one each test says why and returns,
//! or fails when `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser as _;
use hostgate_agent::cli::{Cli, Command as AgentCommand};
use hostgate_agent::install::{HANDLER, NODE_LABEL, Options, RestartMode, Version};
use hostgate_agent::shim::node::WINDOWS_NODE_DIR;
use hostgate_test_support::prereq::{HELM, Prereq};
use serde_json::Value;

/// The rendered chart's objects, or `None` when there is no helm (said why).
fn render(test: &str, set: &[&str]) -> Option<Vec<Value>> {
    let met = hostgate_test_support::require(test, &[Prereq::Tool(HELM)])?;
    let chart = hostgate_test_support::repo_root().join("charts/hostgate");
    let out = Command::new(met.helm())
        .args(["template", "hg"])
        .arg(chart)
        .args(["--namespace", "hostgate-system", "--kube-version", "1.33.0"])
        .args(set)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template {set:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut objects = Vec::new();
    for doc in String::from_utf8(out.stdout).expect("UTF-8").split("\n---") {
        let value: Value = serde_yaml::from_str(doc).expect("YAML");
        if !value.is_null() {
            objects.push(value);
        }
    }
    Some(objects)
}

fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// `hostgate-agent ARGS` as the container runs it (its `command` is the agent).
fn parse(container: &Value) -> AgentCommand {
    assert_eq!(container["command"][0], "hostgate-agent.exe");
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string").to_owned())
        .collect();
    Cli::try_parse_from(std::iter::once("hostgate-agent".to_owned()).chain(args.clone()))
        .unwrap_or_else(|e| panic!("the agent does not take {args:?}: {e}"))
        .command
}

/// The install step's options and sync's destination.
fn agent_steps(objects: &[Value]) -> (AgentCommand, PathBuf) {
    let pod = &object(objects, "DaemonSet")["spec"]["template"]["spec"];
    let init = parse(&pod["initContainers"][0]);
    let AgentCommand::Sync(sync) = parse(&pod["containers"][0]) else {
        panic!("the main container syncs")
    };
    (init, sync.dest)
}

fn install_options(command: &AgentCommand) -> Options {
    match command {
        AgentCommand::Install(args) | AgentCommand::Uninstall(args) => args.options(),
        other => panic!("an install step, not {other:?}"),
    }
}

#[test]
fn the_default_install_step_is_what_a_windows_node_with_containerd_needs() {
    let Some(objects) = render("the_default_install_step", &[]) else {
        return;
    };
    let (init, dest) = agent_steps(&objects);
    assert!(matches!(init, AgentCommand::Install(_)), "{init:?}");
    let o = install_options(&init);
    assert_eq!(
        o.config,
        Path::new(r"C:\Program Files\containerd\config.toml")
    );
    assert_eq!(o.version, None, "auto-detected");
    assert_eq!(
        o.shim_dir.as_deref(),
        Some(Path::new(r"C:\Program Files\containerd"))
    );
    assert_eq!(
        o.containerd.as_deref(),
        Some(Path::new(r"C:\Program Files\containerd\containerd.exe"))
    );
    assert_eq!(o.address, Path::new(r"\\.\pipe\containerd-containerd"));
    assert_eq!(o.restart, RestartMode::WindowsService);
    assert_eq!(o.restart_timeout, Duration::from_secs(60));
    assert!(o.delegate, "runhcs runs the admitted containers");
    assert!(!o.dry_run);
    // The kubelet expands $(NODE_NAME) from the downward API before the agent starts.
    assert_eq!(o.label_node.as_deref(), Some("$(NODE_NAME)"));
    // One node directory: where sync writes, where the installer writes shim.yaml, and where
    // the shim reads on Windows without HOSTGATE_NODE_DIR.
    assert_eq!(o.node_dir, Path::new(WINDOWS_NODE_DIR));
    assert_eq!(dest, Path::new(WINDOWS_NODE_DIR));

    // The RuntimeClass selects what the installer registers and labels.
    let rc = object(&objects, "RuntimeClass");
    assert_eq!(rc["handler"], HANDLER);
    assert_eq!(rc["scheduling"]["nodeSelector"][NODE_LABEL.0], NODE_LABEL.1);
}

#[test]
fn the_uninstall_step_undoes_the_same_install() {
    let Some(objects) = render(
        "the_uninstall_step",
        &["--set", "agent.install.action=uninstall"],
    ) else {
        return;
    };
    let (init, _) = agent_steps(&objects);
    assert!(matches!(init, AgentCommand::Uninstall(_)), "{init:?}");
    let Some(installed) = render("the_uninstall_step", &[]) else {
        return;
    };
    let (install, _) = agent_steps(&installed);
    let (a, b) = (install_options(&install), install_options(&init));
    assert_eq!(
        (
            &a.config,
            &a.shim_dir,
            a.restart,
            &a.label_node,
            &a.node_dir
        ),
        (
            &b.config,
            &b.shim_dir,
            b.restart,
            &b.label_node,
            &b.node_dir
        ),
        "the same files, restart and node"
    );
}

#[test]
fn every_install_value_reaches_the_installer() {
    let Some(objects) = render(
        "every_install_value",
        &[
            "--set",
            "agent.install.mode=native,agent.install.restart=none,agent.install.restartTimeout=5,\
             agent.install.binDir=D:/ctr,agent.install.containerdConfig=D:/ctr/config.toml,\
             agent.install.containerdAddress=//./pipe/ctr",
            "--set-string",
            "agent.install.configVersion=3",
        ],
    ) else {
        return;
    };
    let (init, _) = agent_steps(&objects);
    let o = install_options(&init);
    assert_eq!(o.config, Path::new("D:/ctr/config.toml"));
    assert_eq!(o.version, Some(Version::V3));
    assert_eq!(o.shim_dir.as_deref(), Some(Path::new("D:/ctr")));
    assert_eq!(o.address, Path::new("//./pipe/ctr"));
    assert_eq!(o.restart, RestartMode::None);
    assert_eq!(o.restart_timeout, Duration::from_secs(5));
    assert!(!o.delegate);
}
