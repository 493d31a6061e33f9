use std::collections::BTreeMap;

use hostgate_core::approval::{ANNOTATION, ApprovedPod, SigningIdentity, TrustStore, generate_key};
use hostgate_core::object::Workload;
use hostgate_core::policy::PolicySet;
use hostgate_core::policy::load::parse_policies;

use super::*;
use crate::job::limits::OciWindowsResources;
use crate::kubelet::LinuxResources;
use crate::shim::request::PodRef;
use crate::verify::RuntimeResources;

const POLICY: &str = r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: node-agent}
spec:
  match: {namespaces: [agents]}
  allow:
    runAsUserNames: ['NT AUTHORITY\SYSTEM']
    volumes: {types: [configMap], hostPathPrefixes: ['/var/log']}
  defaults: {runAsUserName: 'NT AUTHORITY\SYSTEM'}
"#;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: agent-1, namespace: agents}
spec:
  hostNetwork: true
  securityContext: {windowsOptions: {hostProcess: true, runAsUserName: 'NT AUTHORITY\SYSTEM'}}
  volumes:
  - {name: logs, hostPath: {path: /var/log/agent}}
  - {name: conf, configMap: {name: agent}}
  containers:
  - name: main
    image: registry.example/agent:1.2
    command: [sh, -c]
    args: ['echo $(LEVEL)']
    env: [{name: LEVEL, value: '3'}]
    volumeMounts:
    - {name: logs, mountPath: /logs}
    - {name: conf, mountPath: /conf}
    resources: {limits: {cpu: 500m, memory: 64Mi}}
"#;

const UID: &str = "0b3c5a1e-uid";
const SANDBOX: &str = "5f2e";

struct Fixture {
    signer: SigningIdentity,
    gate: Gate,
}

fn policies(yaml: &str) -> PolicySet {
    let (list, errors) = parse_policies(yaml.as_bytes(), "test");
    assert!(errors.is_empty(), "{errors:?}");
    PolicySet::new(list).expect("unique")
}

fn fixture_with(policy: &str, windows: bool) -> Fixture {
    let signer = SigningIdentity::new(generate_key().expect("key"));
    let mut trust = TrustStore::default();
    trust.add(signer.verifying_key());
    let cpus = NonZeroU32::new(2).expect("non-zero");
    let settings = Settings {
        kubelet_root_dir: if windows {
            "C:\\var\\lib\\kubelet".to_owned()
        } else {
            "/var/lib/kubelet".to_owned()
        },
        ..Settings::default()
    };
    let gate = Gate::new(
        Ok(Verifier::new(trust, policies(policy))),
        settings,
        cpus,
        windows,
    );
    Fixture { signer, gate }
}

fn fixture() -> Fixture {
    fixture_with(POLICY, false)
}

fn approval(f: &Fixture, pod_yaml: &str) -> String {
    let v: serde_json::Value = serde_yaml::from_str(pod_yaml).expect("yaml");
    let w = Workload::from_value(v).expect("valid").expect("pod");
    let view = w.pod().expect("spec");
    f.signer
        .sign(ApprovedPod::describe(&view, "agents"), "node-agent", 1)
}

fn mount(destination: &str, source: &str, kind: &str, read_only: bool) -> SpecMount {
    SpecMount {
        destination: destination.to_owned(),
        source: source.to_owned(),
        kind: kind.to_owned(),
        read_only,
    }
}

/// The request containerd 1.6 makes for POD's container, as a Linux kubelet sends it.
fn request(approval: &str) -> RuntimeRequest {
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION.to_owned(), approval.to_owned());
    RuntimeRequest {
        kind: Some(TaskKind::Container),
        pod: PodRef {
            namespace: "agents".to_owned(),
            name: "agent-1".to_owned(),
            uid: UID.to_owned(),
            sandbox_id: SANDBOX.to_owned(),
        },
        container_name: Some("main".to_owned()),
        image: Some("registry.example/agent:1.2".to_owned()),
        annotations,
        args: vec!["sh".into(), "-c".into(), "echo 3".into()],
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("HOSTNAME".into(), "node-1".into()),
            ("LEVEL".into(), "3".into()),
            ("KUBERNETES_SERVICE_HOST".into(), "10.0.0.1".into()),
        ],
        cwd: Some("/".to_owned()),
        user_name: None,
        mounts: vec![
            mount("/proc", "proc", "proc", false),
            mount("/dev", "tmpfs", "tmpfs", false),
            mount("/sys/fs/cgroup", "cgroup", "cgroup", true),
            mount(
                "/etc/hosts",
                &format!("/var/lib/kubelet/pods/{UID}/etc-hosts"),
                "bind",
                false,
            ),
            mount(
                "/dev/termination-log",
                &format!("/var/lib/kubelet/pods/{UID}/containers/main/1a2b"),
                "bind",
                false,
            ),
            mount(
                "/etc/hostname",
                &format!(
                    "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{SANDBOX}/hostname"
                ),
                "bind",
                false,
            ),
            mount("/logs", "/var/log/agent", "bind", false),
            mount(
                "/conf",
                &format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~configmap/conf"),
                "bind",
                true,
            ),
        ],
        resources: RuntimeResources::Linux(LinuxResources {
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_bytes: 64 << 20,
        }),
        root_path: Some("rootfs".to_owned()),
    }
}

fn admitted(f: &Fixture, req: &RuntimeRequest) -> Admitted {
    match f.gate.admit(req) {
        Ok(Admission::Container(a)) => *a,
        other => panic!("expected admission, got {other:?}"),
    }
}

fn refused(f: &Fixture, req: &RuntimeRequest) -> String {
    match f.gate.admit(req) {
        Err(e) => hostgate_core::chain::Chain(&e).to_string(),
        Ok(a) => panic!("expected a refusal, got {a:?}"),
    }
}

#[test]
fn an_approved_container_is_admitted_with_its_mounts_and_limits() {
    let f = fixture();
    let a = admitted(&f, &request(&approval(&f, POD)));
    assert_eq!(a.policy, "node-agent");
    assert_eq!(a.name, "main");
    assert_eq!(a.args, ["sh", "-c", "echo 3"]);
    let destinations: Vec<&str> = a.mounts.iter().map(|m| m.destination.as_str()).collect();
    assert_eq!(destinations, ["/logs", "/conf"]);
    assert!(a.mounts[1].read_only);
    assert_eq!(a.limits.memory_bytes, Some(64 << 20));
    assert!(a.limits.cpu_rate.is_some());
}

#[test]
fn sandboxes_pass_and_foreign_specs_do_not() {
    let f = fixture();
    let mut req = request("");
    req.kind = Some(TaskKind::Sandbox);
    req.annotations.clear();
    assert_eq!(f.gate.admit(&req).expect("sandbox"), Admission::Sandbox);
    req.kind = None;
    assert!(matches!(f.gate.admit(&req), Err(GateRefusal::NotFromCri)));
}

#[test]
fn every_refusal_has_its_own_reason() {
    let f = fixture();
    let good = approval(&f, POD);
    let other_key = fixture();
    let foreign = approval(&other_key, POD);
    let (payload, _) = good.split_once('.').expect("two parts");
    let (_, foreign_sig) = foreign.split_once('.').expect("two parts");
    let tampered = format!("{payload}.{foreign_sig}");

    type Edit = Box<dyn Fn(&mut RuntimeRequest)>;
    // (what, edit of the good request, text the refusal must contain)
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "unsigned",
            Box::new(|r| {
                r.annotations.remove(ANNOTATION);
            }),
            "not signed",
        ),
        (
            "tampered",
            Box::new(move |r| {
                r.annotations.insert(ANNOTATION.into(), tampered.clone());
            }),
            "signature",
        ),
        (
            "unknown key",
            Box::new(move |r| {
                r.annotations.insert(ANNOTATION.into(), foreign.clone());
            }),
            "not trusted",
        ),
        (
            "garbage",
            Box::new(|r| {
                r.annotations.insert(ANNOTATION.into(), "!!!".into());
            }),
            "does not verify",
        ),
        (
            "10 MB",
            Box::new(|r| {
                r.annotations
                    .insert(ANNOTATION.into(), "a".repeat(10 << 20));
            }),
            "does not verify",
        ),
        (
            "namespace",
            Box::new(|r| r.pod.namespace = "default".into()),
            "approved for namespace \"agents\"",
        ),
        (
            "ephemeral",
            Box::new(|r| r.container_name = Some("debugger".into())),
            "not in the approval",
        ),
        (
            "image",
            Box::new(|r| r.image = Some("registry.example/agent:1.3".into())),
            "is not the approved image",
        ),
        (
            "args",
            Box::new(|r| r.args[2] = "echo pwned".into()),
            "args: approved",
        ),
        (
            "env changed",
            Box::new(|r| r.env[2].1 = "9".into()),
            "env LEVEL: approved",
        ),
        (
            "env added",
            Box::new(|r| r.env.push(("LD_PRELOAD".into(), "/x.so".into()))),
            "env LD_PRELOAD: not approved",
        ),
        (
            "hostPath source",
            Box::new(|r| r.mounts[6].source = "/etc".into()),
            "approved source",
        ),
        (
            "writable configMap",
            Box::new(|r| r.mounts[7].read_only = false),
            "approved read-only",
        ),
        (
            "volume of another pod",
            Box::new(|r| {
                r.mounts[7].source =
                    "/var/lib/kubelet/pods/other/volumes/kubernetes.io~configmap/conf".into();
            }),
            "this pod's kubelet directory",
        ),
        (
            "extra host mount",
            Box::new(|r| r.mounts.push(mount("/host", "/", "bind", false))),
            "neither an approved volume mount",
        ),
        (
            "dot-dot",
            Box::new(|r| {
                r.mounts[3].source = format!("/var/lib/kubelet/pods/{UID}/../../../../etc/shadow");
            }),
            "contains `..`",
        ),
        (
            "missing volume",
            Box::new(|r| {
                r.mounts.remove(6);
            }),
            "approved but missing",
        ),
        (
            "no memory limit",
            Box::new(|r| {
                r.resources = RuntimeResources::Linux(LinuxResources {
                    cpu_quota: 50_000,
                    cpu_period: 100_000,
                    memory_limit_bytes: 0,
                });
            }),
            "memory limit: approved at most",
        ),
        (
            "more cpu",
            Box::new(|r| {
                r.resources = RuntimeResources::Linux(LinuxResources {
                    cpu_quota: 200_000,
                    cpu_period: 100_000,
                    memory_limit_bytes: 64 << 20,
                });
            }),
            "cpu limit: approved at most",
        ),
        (
            "not CRI",
            Box::new(|r| r.kind = None),
            "not created through CRI",
        ),
        (
            "no container name",
            Box::new(|r| r.container_name = None),
            "io.kubernetes.cri.container-name",
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (what, edit, want) in cases {
        let mut req = request(&good);
        edit(&mut req);
        let text = refused(&f, &req);
        assert!(text.contains(want), "{what}: {text}");
        assert!(
            seen.insert(text.clone()),
            "{what}: the same reason as another case: {text}"
        );
    }
    // Less than approved is fine.
    let mut req = request(&good);
    req.resources = RuntimeResources::Linux(LinuxResources {
        cpu_quota: 10_000,
        cpu_period: 100_000,
        memory_limit_bytes: 32 << 20,
    });
    assert_eq!(admitted(&f, &req).limits.memory_bytes, Some(32 << 20));
}

#[test]
fn a_withdrawn_or_unadmitted_policy_refuses() {
    let f = fixture();
    let good = approval(&f, POD);
    // The node's copy no longer allows the hostPath prefix.
    let stricter = Fixture {
        gate: Gate::new(
            Ok(Verifier::new(
                {
                    let mut t = TrustStore::default();
                    t.add(f.signer.verifying_key());
                    t
                },
                policies(&POLICY.replace("'/var/log'", "'/srv'")),
            )),
            Settings::default(),
            NonZeroU32::new(2).expect("non-zero"),
            false,
        ),
        signer: SigningIdentity::new(generate_key().expect("key")),
    };
    let text = refused(&stricter, &request(&good));
    assert!(text.contains("HG-VOLUME-02"), "{text}");
}

#[test]
fn a_node_without_trust_refuses_everything_but_sandboxes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = crate::shim::node::NodeDir::new(dir.path());
    let gate = Gate::new(
        node.verifier(),
        Settings::default(),
        NonZeroU32::new(2).expect("non-zero"),
        false,
    );
    let f = fixture();
    let err = gate
        .admit(&request(&approval(&f, POD)))
        .expect_err("fail closed");
    assert!(matches!(err, GateRefusal::Node(_)), "{err}");
    let mut sandbox = request("");
    sandbox.kind = Some(TaskKind::Sandbox);
    assert!(gate.admit(&sandbox).is_ok());
}

#[test]
fn windows_specs_compare_the_user_and_need_the_host_process_annotation() {
    let f = fixture_with(&POLICY.replace("'/var/log'", "'C:\\var\\log'"), true);
    let pod = POD
        .replace("path: /var/log/agent", "path: 'C:\\var\\log\\agent'")
        .replace("mountPath: /logs", "mountPath: 'C:\\logs'")
        .replace("mountPath: /conf", "mountPath: 'C:\\conf'");
    let good = approval(&f, &pod);
    let windows_request = || {
        let mut r = request(&good);
        r.mounts = vec![
            mount("C:\\logs", "C:\\var\\log\\agent", "", false),
            mount(
                "C:\\conf",
                &format!(
                    "c:\\var\\lib\\kubelet\\pods\\{UID}\\volumes\\kubernetes.io~configmap\\conf"
                ),
                "",
                true,
            ),
        ];
        r.user_name = Some("NT AUTHORITY\\SYSTEM".to_owned());
        r.resources = RuntimeResources::Windows(OciWindowsResources {
            cpu_maximum: 2500,
            memory_limit_bytes: 64 << 20,
            ..OciWindowsResources::default()
        });
        r.annotations
            .insert(annotations::WINDOWS_HOST_PROCESS.into(), "true".into());
        r
    };
    admitted(&f, &windows_request());
    let mut r = windows_request();
    r.user_name = Some("NT AUTHORITY\\Local service".to_owned());
    assert!(refused(&f, &r).contains("user: approved"));
    let mut r = windows_request();
    r.annotations
        .insert(annotations::WINDOWS_HOST_PROCESS.into(), "false".into());
    assert!(refused(&f, &r).contains("not a HostProcess container"));
}

#[test]
fn image_references_compare_as_runtimes_normalise_them() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let other = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    // (approved, runtime, same)
    let cases = [
        ("busybox", "docker.io/library/busybox:latest", true),
        ("busybox:1", "docker.io/library/busybox:1", true),
        ("busybox:1", "docker.io/library/busybox:2", false),
        (
            "hostgate/busybox:test",
            "docker.io/hostgate/busybox:test",
            true,
        ),
        ("localhost:5000/x:1", "localhost:5000/x:1", true),
        ("localhost:5000/x", "localhost:5000/x:latest", true),
        ("reg.example/x:1", "docker.io/x:1", false),
        (
            &format!("reg.example/x@{digest}") as &str,
            &format!("reg.example/x@{digest}") as &str,
            true,
        ),
        (
            &format!("reg.example/x@{digest}"),
            &format!("reg.example/x:1@{digest}"),
            true,
        ),
        (
            &format!("reg.example/x@{digest}"),
            &format!("reg.example/x@{other}"),
            false,
        ),
        (&format!("reg.example/x@{digest}"), "reg.example/x:1", false),
        ("reg.example/x:1", &format!("reg.example/x@{digest}"), false),
        (
            "reg.example/x:1",
            &format!("reg.example/x:1@{digest}"),
            true,
        ),
    ];
    for (approved, runtime, want) in cases {
        assert_eq!(
            same_image(approved, runtime),
            want,
            "{approved} vs {runtime}"
        );
    }
}

/// POLICY with `kubectl debug` allowed: one debug image, a shell running one command or `ps`.
fn ephemeral_policy(accounts: &str) -> String {
    POLICY.replace(
        "    volumes: {types: [configMap], hostPathPrefixes: ['/var/log']}\n",
        &format!(
            "    volumes: {{types: [configMap], hostPathPrefixes: ['/var/log']}}\n    ephemeralContainers:\n      images: ['registry.example/debug:*']\n      commands: [[sh, -c, '*'], [ps]]\n{accounts}"
        ),
    )
}

/// What containerd 1.6 is asked to run for `kubectl debug --image registry.example/debug:1
/// -- sh -c 'ls /'` on POD: no volume mounts, only the runtime's variables.
fn debug_request(approval: &str) -> RuntimeRequest {
    let mut r = request(approval);
    r.container_name = Some("debugger".to_owned());
    r.image = Some("registry.example/debug:1".to_owned());
    r.args = vec!["sh".into(), "-c".into(), "ls /".into()];
    r.env.retain(|(k, _)| k != "LEVEL");
    r.mounts
        .retain(|m| m.destination != "/logs" && m.destination != "/conf");
    for m in &mut r.mounts {
        m.source = m
            .source
            .replace("/containers/main/", "/containers/debugger/");
    }
    r.resources = RuntimeResources::Linux(LinuxResources::default());
    r
}

#[test]
fn an_ephemeral_container_runs_only_as_the_approving_policy_allows() {
    // Refused by a policy that allows none (the default), whatever it runs.
    let f = fixture();
    let text = refused(&f, &debug_request(&approval(&f, POD)));
    assert!(text.contains("not in the approval"), "{text}");
    assert!(text.contains("HG-EPHEMERAL-01"), "{text}");

    let f = fixture_with(&ephemeral_policy(""), false);
    let good = approval(&f, POD);
    let a = admitted(&f, &debug_request(&good));
    assert!(a.ephemeral);
    assert_eq!(a.policy, "node-agent");
    assert_eq!(a.name, "debugger");
    assert_eq!(a.args, ["sh", "-c", "ls /"]);
    assert!(a.mounts.is_empty(), "{:?}", a.mounts);
    assert_eq!(a.limits, JobLimits::default());
    let mut ps = debug_request(&good);
    ps.args = vec!["ps".into()];
    assert!(admitted(&f, &ps).ephemeral);
    // The approved containers are unaffected.
    assert!(!admitted(&f, &request(&good)).ephemeral);

    type Edit = Box<dyn Fn(&mut RuntimeRequest)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "image",
            Box::new(|r| r.image = Some("registry.example/agent:1.2".into())),
            "HG-EPHEMERAL-02",
        ),
        (
            "command",
            Box::new(|r| r.args = vec!["sh".into(), "-c".into(), "ls".into(), "/".into()]),
            "HG-EPHEMERAL-03",
        ),
        (
            "the image's entrypoint, resolved by the runtime",
            Box::new(|r| r.args = vec!["/bin/debug-shell".into()]),
            "HG-EPHEMERAL-03",
        ),
        (
            "a pod volume",
            Box::new(|r| {
                r.mounts
                    .push(mount("/logs", "/var/log/agent", "bind", false))
            }),
            "mount \"/logs\"",
        ),
        (
            "another container's termination log",
            Box::new(|r| {
                r.mounts.push(mount(
                    "/dev/termination-log",
                    &format!("/var/lib/kubelet/pods/{UID}/containers/main/1a2b"),
                    "bind",
                    false,
                ));
            }),
            "mount \"/dev/termination-log\"",
        ),
        (
            "an extra variable",
            Box::new(|r| r.env.push(("LD_PRELOAD".into(), "/tmp/x.so".into()))),
            "LD_PRELOAD",
        ),
        (
            "no image annotation",
            Box::new(|r| r.image = None),
            "io.kubernetes.cri.image-name",
        ),
    ];
    for (what, edit, want) in cases {
        let mut r = debug_request(&good);
        edit(&mut r);
        let text = refused(&f, &r);
        assert!(text.contains(want), "{what}: {text:?} lacks {want:?}");
    }
}

#[test]
fn an_ephemeral_container_on_windows_keeps_the_pod_account_unless_accounts_are_listed() {
    let windows_debug = |f: &Fixture, user: &str| {
        let mut r = debug_request(&approval(f, POD));
        r.mounts.clear();
        r.user_name = Some(user.to_owned());
        r.resources = RuntimeResources::Windows(OciWindowsResources::default());
        r.annotations
            .insert(annotations::WINDOWS_HOST_PROCESS.into(), "true".into());
        r
    };
    let f = fixture_with(&ephemeral_policy(""), true);
    admitted(&f, &windows_debug(&f, "NT AUTHORITY\\SYSTEM"));
    let text = refused(&f, &windows_debug(&f, "NT AUTHORITY\\LOCAL SERVICE"));
    assert!(text.contains("user: approved"), "{text}");

    let f = fixture_with(
        &ephemeral_policy("      runAsUserNames: ['NT AUTHORITY\\LOCAL SERVICE']\n"),
        true,
    );
    let a = admitted(&f, &windows_debug(&f, "NT AUTHORITY\\LOCAL SERVICE"));
    assert_eq!(a.user.as_deref(), Some("NT AUTHORITY\\LOCAL SERVICE"));
    let text = refused(&f, &windows_debug(&f, "NT AUTHORITY\\SYSTEM"));
    assert!(text.contains("HG-EPHEMERAL-04"), "{text}");
    let mut r = windows_debug(&f, "NT AUTHORITY\\LOCAL SERVICE");
    r.annotations
        .insert(annotations::WINDOWS_HOST_PROCESS.into(), "false".into());
    assert!(refused(&f, &r).contains("not a HostProcess container"));
}
