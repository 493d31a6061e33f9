//! The shim's `start` action on bad input, run as containerd runs it (in the bundle directory,
//! with containerd's flags): every case is one clean line on standard error and exit status 1,
//! never a panic, never a shim started. No containerd is needed: a refused `start` never gets
//! as far as spawning the shim server.
#![cfg(target_os = "linux")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::Signer as _;
use hostgate_core::approval::{
    ANNOTATION, ApprovedPod, SIGNING_CONTEXT, SigningIdentity, generate_key,
};
use hostgate_core::object::Workload;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-hostgate-v1");

const POLICY: &str = "apiVersion: hostgate.io/v1alpha1\nkind: HostProcessPolicy\nmetadata: {name: p}\nspec:\n  match: {namespaces: [ns]}\n";

const POD: &str = "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: ns}, spec: {hostNetwork: true, securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: main, image: 'docker.io/hostgate/busybox:test', command: [sh]}]}}";

struct Fixture {
    dir: tempfile::TempDir,
    key: ed25519_dalek::SigningKey,
    signer: SigningIdentity,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = dir.path().join("node");
        fs::create_dir_all(node.join("trust")).expect("trust");
        fs::create_dir_all(node.join("policies")).expect("policies");
        fs::write(node.join("policies/p.yaml"), POLICY).expect("policy");
        let key = generate_key().expect("key");
        let signer = SigningIdentity::new(key.clone());
        let pem = signer.public_key_pem().expect("pem");
        fs::write(
            node.join("trust").join(format!("{}.pub", signer.kid())),
            pem,
        )
        .expect("pub");
        Self { dir, key, signer }
    }

    fn node(&self) -> PathBuf {
        self.dir.path().join("node")
    }

    fn approval(&self) -> String {
        let v: serde_json::Value = serde_yaml::from_str(POD).expect("yaml");
        let w = Workload::from_value(v).expect("valid").expect("pod");
        self.signer
            .sign(ApprovedPod::describe(&w.pod().expect("spec"), "ns"), "p", 1)
    }

    /// Signs `payload` as the webhook signs a payload (whatever it holds).
    fn sign_raw(&self, payload: &[u8]) -> String {
        let mut msg = SIGNING_CONTEXT.to_vec();
        msg.extend_from_slice(payload);
        let sig = self.key.sign(&msg);
        format!("{}.{}", B64.encode(payload), B64.encode(sig.to_bytes()))
    }

    /// Runs `start` in a bundle holding `config`; returns (status, stdout, stderr).
    fn start(&self, config: &str) -> (Option<i32>, String, String) {
        let bundle = tempfile::tempdir_in(self.dir.path()).expect("bundle");
        fs::write(bundle.path().join("config.json"), config).expect("config.json");
        run_start(bundle.path(), &self.node())
    }
}

fn run_start(bundle: &Path, node: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(SHIM)
        .args([
            "-namespace",
            "k8s.io",
            "-id",
            "c1",
            "-address",
            "/nonexistent/containerd.sock",
            "start",
        ])
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", "/nonexistent/containerd.sock.ttrpc")
        .env("HOSTGATE_NODE_DIR", node)
        .output()
        .expect("run the shim");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A container spec as containerd's CRI plugin writes it, with `approval` (if any).
fn spec(approval: Option<&str>) -> String {
    let mut annotations = serde_json::json!({
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": "main",
        "io.kubernetes.cri.sandbox-id": "s1",
        "io.kubernetes.cri.sandbox-name": "a",
        "io.kubernetes.cri.sandbox-namespace": "ns",
        "io.kubernetes.cri.sandbox-uid": "u1",
        "io.kubernetes.cri.image-name": "docker.io/hostgate/busybox:test"
    });
    if let Some(a) = approval {
        annotations[ANNOTATION] = serde_json::Value::String(a.to_owned());
    }
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "env": ["PATH=/bin"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "annotations": annotations,
    })
    .to_string()
}

fn assert_refused(case: &str, (status, stdout, stderr): (Option<i32>, String, String), want: &str) {
    assert_eq!(status, Some(1), "{case}: {stderr}");
    assert!(
        stdout.is_empty(),
        "{case}: nothing on stdout (no address): {stdout}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{case}: one line: {stderr}");
    assert!(
        lines[0].starts_with("hostgate refused "),
        "{case}: {stderr}"
    );
    assert!(lines[0].contains(want), "{case}: wants {want:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{case}: {stderr}");
}

#[test]
fn bad_specs_and_approvals_are_one_line_refusals() {
    let f = Fixture::new();
    let good = f.approval();
    let (payload, _) = good.split_once('.').expect("two parts");
    let mut extra: serde_json::Value =
        serde_json::from_slice(&B64.decode(payload).expect("b64")).expect("json");
    extra["containers"][0]["privileged"] = serde_json::Value::Bool(true);
    let unknown_field = f.sign_raw(&serde_json::to_vec(&extra).expect("json"));
    let not_json = f.sign_raw(b"not json at all");
    let huge = "a".repeat(10 << 20);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "malformed config.json",
            "{\"process\": ".to_owned(),
            "is not an OCI runtime spec",
        ),
        (
            "not from CRI",
            "{\"ociVersion\": \"1.0.2\"}".to_owned(),
            "not created through CRI",
        ),
        ("unsigned", spec(None), "not signed"),
        ("10 MB approval", spec(Some(&huge)), "too large"),
        ("invalid base64", spec(Some("%%%.%%%")), "does not verify"),
        ("payload not JSON", spec(Some(&not_json)), "does not verify"),
        (
            "payload with unknown fields",
            spec(Some(&unknown_field)),
            "unknown field",
        ),
    ];
    for (case, config, want) in cases {
        assert_refused(case, f.start(&config), want);
    }
}

#[test]
fn a_node_that_cannot_verify_refuses_every_container() {
    let config = spec(Some(&Fixture::new().approval()));
    // (case, how the node directory is broken, text the refusal names)
    type Break = fn(&Path);
    let cases: [(&str, Break, &str); 4] = [
        (
            "no trust directory",
            |n| fs::remove_dir_all(n.join("trust")).expect("rm"),
            "no trusted keys",
        ),
        (
            "empty trust directory",
            |n| {
                for e in fs::read_dir(n.join("trust")).expect("dir").flatten() {
                    fs::remove_file(e.path()).expect("rm");
                }
            },
            "no *.pub key found",
        ),
        (
            "a bad key",
            |n| fs::write(n.join("trust/bad.pub"), "not a key").expect("write"),
            "not an Ed25519",
        ),
        (
            "policies that do not load",
            |n| {
                fs::write(
                    n.join("policies/broken.yaml"),
                    "kind: HostProcessPolicy\nspec: [",
                )
                .expect("write")
            },
            "cannot load the policies",
        ),
    ];
    for (case, break_node, want) in cases {
        let f = Fixture::new();
        break_node(&f.node());
        assert_refused(case, f.start(&config), want);
    }
    // A node directory that does not exist at all.
    let f = Fixture::new();
    let bundle = tempfile::tempdir().expect("bundle");
    fs::write(bundle.path().join("config.json"), &config).expect("config");
    assert_refused(
        "no node directory",
        run_start(bundle.path(), &f.dir.path().join("missing")),
        "no trusted keys",
    );
}
