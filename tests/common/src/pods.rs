//! HostProcess pods for the node agent's tests, signed as the webhook signs admitted pods,
//! with a directory holding the trusted key and a policy that admits them.
//!
//! Every container runs `/bin/sh -c <script>` and carries [`MARKER`]`=<pod name>` in its
//! environment, so that its processes can be found in `/proc` (see [`crate::procs`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use hostgate_core::approval::{ANNOTATION, ApprovedPod, SigningIdentity, generate_key_pair};
use hostgate_core::object::Workload;
use hostgate_core::pod::{PodView, SpecPath};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// The namespace of every test pod; [`POLICY_YAML`] admits HostProcess pods there.
pub const NAMESPACE: &str = "hg-agent-test";
/// The name of the admitting policy.
pub const POLICY: &str = "agent-test";
/// The environment variable that marks a test pod's processes.
pub const MARKER: &str = "HG_TEST_MARKER";

/// The policy that admits the test pods: `NT AUTHORITY\SYSTEM`, ConfigMap, Secret and
/// emptyDir volumes, host paths under `C:\tmp`.
pub const POLICY_YAML: &str = r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: agent-test}
spec:
  match: {namespaces: [hg-agent-test]}
  allow:
    runAsUserNames: ['NT AUTHORITY\SYSTEM']
    volumes: {types: [configMap, secret, emptyDir], hostPathPrefixes: ['C:\tmp']}
  defaults: {runAsUserName: 'NT AUTHORITY\SYSTEM'}
"#;

/// Signs pods with a key that `<dir>/keys` trusts; `<dir>/policies` holds [`POLICY_YAML`].
#[derive(Debug)]
pub struct Signer {
    identity: SigningIdentity,
}

impl Signer {
    /// Creates a key pair in `<dir>/keys` and the policy in `<dir>/policies`.
    pub fn create(dir: &Path) -> Self {
        let (_, private, _) = generate_key_pair(&dir.join("keys")).expect("keygen");
        let identity = SigningIdentity::from_pem_file(&private).expect("private key");
        fs::create_dir_all(dir.join("policies")).expect("mkdir policies");
        fs::write(dir.join("policies/agent-test.yaml"), POLICY_YAML).expect("policy");
        Self { identity }
    }

    /// The pod with an approval of exactly its current content, as the webhook signs it.
    pub fn sign(&self, pod: Value) -> Pod {
        let mut pod = pod_of(pod);
        let approval = approval_of(&self.identity, &pod);
        set_approval(&mut pod, approval);
        pod
    }
}

/// A HostProcess pod in [`NAMESPACE`]; `init` and `containers` are `(name, script)`.
pub fn pod(name: &str, restart: &str, init: &[(&str, &str)], containers: &[(&str, &str)]) -> Value {
    let c = |(cname, script): &(&str, &str)| {
        json!({
            "name": cname,
            "command": ["/bin/sh", "-c", script],
            "env": [{"name": MARKER, "value": name}],
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": restart,
            "hostNetwork": true,
            "securityContext": {"windowsOptions": {"hostProcess": true, "runAsUserName": "NT AUTHORITY\\SYSTEM"}},
            "initContainers": init.iter().map(c).collect::<Vec<_>>(),
            "containers": containers.iter().map(c).collect::<Vec<_>>(),
        }
    })
}

/// A `restartPolicy: Never` pod whose first init container prints `failing` and exits 3, with
/// a second init container and a regular container (`main`) that must then never run.
pub fn failing_init(name: &str) -> Value {
    pod(
        name,
        "Never",
        &[("first", "echo failing; exit 3"), ("second", "echo second")],
        &[("main", "echo main")],
    )
}

/// A pod object from its JSON.
pub fn pod_of(value: Value) -> Pod {
    match Workload::from_value(value)
        .expect("valid pod")
        .expect("a pod")
    {
        Workload::Pod(p) => *p,
        other => panic!("not a pod: {other:?}"),
    }
}

fn approval_of(identity: &SigningIdentity, pod: &Pod) -> String {
    let spec = pod.spec.as_ref().expect("spec");
    let view = PodView::new(spec, Some(&pod.metadata), SpecPath::POD);
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    identity.sign(
        ApprovedPod::describe(&view, &namespace),
        POLICY,
        1_700_000_000,
    )
}

fn set_approval(pod: &mut Pod, approval: String) {
    pod.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION.to_owned(), approval);
}

/// A way a node must refuse to run a pod.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// What is wrong with it.
    pub what: &'static str,
    /// The pod.
    pub pod: Pod,
    /// The agent's exit code for it.
    pub exit_code: u8,
    /// Text the refusal must contain.
    pub says: Vec<&'static str>,
}

/// The refusals of an approval, built from `approved` (a pod that `signer` signed and the
/// policy admits): unsigned (10), signed by a key the node does not trust (11), changed after
/// signing (12, naming the changed fields), admitted by no policy (13). `scratch` receives the
/// untrusted key.
pub fn refusals(signer: &Signer, approved: &Pod, scratch: &Path) -> Vec<Refusal> {
    let mut unsigned = approved.clone();
    unsigned.metadata.annotations = None;

    let (_, key, _) = generate_key_pair(&scratch.join("untrusted")).expect("keygen");
    let stranger = SigningIdentity::from_pem_file(&key).expect("key");
    let mut foreign = approved.clone();
    set_approval(&mut foreign, approval_of(&stranger, approved));

    let mut changed = approved.clone();
    let spec = changed.spec.as_mut().expect("spec");
    spec.containers[0].command = Some(vec!["/bin/sh".into(), "-c".into(), "rm -rf /".into()]);
    spec.host_network = Some(false);

    let mut elsewhere = serde_json::to_value(approved).expect("json");
    elsewhere["metadata"]["namespace"] = json!("hg-unmatched");
    elsewhere["metadata"]["annotations"] = json!({});
    let elsewhere = signer.sign(elsewhere);

    vec![
        Refusal {
            what: "unsigned",
            pod: unsigned,
            exit_code: 10,
            says: vec!["not signed"],
        },
        Refusal {
            what: "signed by an untrusted key",
            pod: foreign,
            exit_code: 11,
            says: vec![],
        },
        Refusal {
            what: "changed after signing",
            pod: changed,
            exit_code: 12,
            says: vec!["containers[0].command[2]", "hostNetwork"],
        },
        Refusal {
            what: "admitted by no policy",
            pod: elsewhere,
            exit_code: 13,
            says: vec!["HG-MATCH-01"],
        },
    ]
}
