//! `hostgate serve --runtime-class NAME`: `/mutate` names the RuntimeClass only for the
//! HostProcess pods it approves when they are created and name none, never for any other pod;
//! its patch applies to every AdmissionReview a real kube-apiserver sent
//! (`tests/data/admissionreview`); `/validate` then admits the routed pod (its approval covers the
//! RuntimeClass), and a policy that requires the class refuses a pod that names none.

use std::path::{Path, PathBuf};

use hostgate::admission::{Endpoint, NoLabels, Outcome, Reviewer};
use hostgate::approval::{SigningIdentity, TrustStore, generate_key};
use hostgate::policy::PolicySet;
use hostgate::policy::load::parse_policies;
use serde_json::{Value, json};

const CLASS: &str = "hostgate";

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Every captured review, by file name.
fn captured() -> Vec<(String, Value)> {
    let mut out: Vec<_> = std::fs::read_dir(data("admissionreview"))
        .expect("captured reviews")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            let review = serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
            (name, review)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn review_of(name: &str) -> Value {
    captured()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no captured review {name}"))
        .1
}

/// The webhook tests' policies (they admit the captured HostProcess pods in `default`), or
/// with `require_class` the same with `allow.runtimeClassNames: [hostgate]`.
fn policies(require_class: bool) -> PolicySet {
    let mut text =
        std::fs::read_to_string(data("webhook/policies/test-policies.yaml")).expect("policies");
    if require_class {
        let allow = "  allow:\n    images:";
        assert!(text.contains(allow), "the test policy's allow block");
        text = text.replacen(
            allow,
            "  allow:\n    runtimeClassNames: [hostgate]\n    images:",
            1,
        );
    }
    let (list, errors) = parse_policies(text.as_bytes(), "test-policies.yaml");
    assert!(errors.is_empty(), "{errors:?}");
    PolicySet::new(list).expect("unique names")
}

struct Webhook {
    policies: PolicySet,
    signer: SigningIdentity,
    trust: TrustStore,
}

impl Webhook {
    fn new(require_class: bool) -> Self {
        let signer = SigningIdentity::new(generate_key().expect("key"));
        let mut trust = TrustStore::default();
        trust.add(signer.verifying_key());
        Webhook {
            policies: policies(require_class),
            signer,
            trust,
        }
    }

    fn reviewer(&self, runtime_class: Option<&'static str>) -> Reviewer<'_> {
        Reviewer {
            policies: &self.policies,
            namespaces: &NoLabels,
            signer: Some(&self.signer),
            trust: Some(&self.trust),
            allow_privileged: true,
            now: 1_790_000_000,
            runtime_class,
            options: Default::default(),
        }
    }

    fn review(&self, class: Option<&'static str>, endpoint: Endpoint, review: &Value) -> Outcome {
        let body = serde_json::to_vec(review).expect("json");
        self.reviewer(class)
            .review(endpoint, &body)
            .expect("a well-formed review")
    }
}

/// The request object with the outcome's patch applied (unchanged without a patch).
fn patched(review: &Value, outcome: &Outcome) -> Value {
    let mut object = review["request"]["object"].clone();
    if let Some(bytes) = &outcome.response.patch {
        let patch: json_patch::Patch = serde_json::from_slice(bytes).expect("a JSON Patch");
        json_patch::patch(&mut object, &patch).expect("the patch applies to the request object");
    }
    object
}

fn runtime_class(object: &Value) -> Option<&str> {
    object["spec"]["runtimeClassName"].as_str()
}

/// `review` with `object` as its request object, as the validating webhook receives it.
fn with_object(review: &Value, object: Value) -> Value {
    let mut v = review.clone();
    v["request"]["object"] = object;
    v
}

/// The review was denied, and the message names `finding` (`[RULE] path` or just `[RULE]`).
fn assert_denied(outcome: &Outcome, finding: &str) {
    let message = &outcome.response.result.message;
    assert!(!outcome.response.allowed, "allowed: {message}");
    assert!(message.contains(finding), "{finding} in {message}");
}

#[test]
fn mutate_names_the_class_only_for_pods_it_approves_and_every_patch_applies() {
    let webhook = Webhook::new(false);
    let (mut routed, mut admitted_elsewhere, mut left_alone) = (0, 0, 0);
    for (name, review) in captured() {
        let outcome = webhook.review(Some(CLASS), Endpoint::Mutate, &review);
        let before = &review["request"]["object"];
        let after = patched(&review, &outcome);
        let request = &review["request"];
        let pod_create = request["kind"]["kind"] == "Pod"
            && request["operation"] == "CREATE"
            && request.get("subResource").is_none();
        // `policy` is the policy that admitted the HostProcess pod; signing follows admission.
        let admitted = outcome.policy.is_some();
        assert!(
            !outcome.signed || admitted,
            "{name}: signed but not admitted"
        );
        if admitted && pod_create && runtime_class(before).is_none() {
            assert_eq!(runtime_class(&after), Some(CLASS), "{name}: approved");
            routed += 1;
            // The validating webhook then admits the routed pod: its approval names the class.
            let validated = webhook.review(
                Some(CLASS),
                Endpoint::Validate,
                &with_object(&review, after.clone()),
            );
            assert!(
                validated.response.allowed,
                "{name}: {:?}",
                validated.response
            );
        } else {
            assert_eq!(
                runtime_class(&after),
                runtime_class(before),
                "{name}: not an approved pod being created, the RuntimeClass is left as it was"
            );
            if admitted {
                admitted_elsewhere += 1;
            } else {
                left_alone += 1;
            }
        }
    }
    assert!(routed >= 6, "only {routed} captured pods were routed");
    assert!(
        left_alone >= 20,
        "only {left_alone} reviews were left alone"
    );
    assert_eq!(
        admitted_elsewhere, 0,
        "every admission here is of a created pod"
    );
}

#[test]
fn without_the_flag_nothing_is_routed() {
    let webhook = Webhook::new(false);
    for (name, review) in captured() {
        let outcome = webhook.review(None, Endpoint::Mutate, &review);
        let after = patched(&review, &outcome);
        assert_eq!(
            runtime_class(&after),
            runtime_class(&review["request"]["object"]),
            "{name}"
        );
    }
}

#[test]
fn a_pod_that_names_a_class_keeps_it() {
    let webhook = Webhook::new(false);
    let mut review = review_of("pod-create-hostprocess-valid.mutating.json");
    review["request"]["object"]["spec"]["runtimeClassName"] = json!("runhcs-wcow-process");
    let outcome = webhook.review(Some(CLASS), Endpoint::Mutate, &review);
    assert!(outcome.signed, "the pod is approved");
    let after = patched(&review, &outcome);
    assert_eq!(runtime_class(&after), Some("runhcs-wcow-process"));
}

/// `runtimeClassName` cannot change on an existing pod: a significant update is signed again but
/// never routed, or the apiserver would refuse the update.
#[test]
fn updates_are_never_routed() {
    let webhook = Webhook::new(false);
    let mut review = review_of("pod-update-hostprocess-label.mutating.json");
    assert_eq!(review["request"]["operation"], "UPDATE");
    review["request"]["object"]["spec"]["containers"][0]["image"] =
        json!("mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.1");
    let outcome = webhook.review(Some(CLASS), Endpoint::Mutate, &review);
    assert!(outcome.signed, "a significant update is signed again");
    assert_eq!(runtime_class(&patched(&review, &outcome)), None);
}

#[test]
fn a_policy_that_requires_the_class_refuses_pods_that_name_none() {
    let webhook = Webhook::new(true);
    // A pod through a webhook without --runtime-class names none: /validate refuses it.
    let review = review_of("pod-create-hostprocess-valid.mutating.json");
    let outcome = webhook.review(None, Endpoint::Mutate, &review);
    assert!(!outcome.signed, "no policy admits it without the class");
    let unrouted = patched(&review, &outcome);
    assert_eq!(runtime_class(&unrouted), None);
    let validated = webhook.review(None, Endpoint::Validate, &with_object(&review, unrouted));
    assert_denied(&validated, "[HG-RUNTIME-01] spec.runtimeClassName");

    // With --runtime-class the same pod is routed, signed and admitted.
    let outcome = webhook.review(Some(CLASS), Endpoint::Mutate, &review);
    assert!(outcome.signed);
    let routed = patched(&review, &outcome);
    assert_eq!(runtime_class(&routed), Some(CLASS));
    let validated = webhook.review(
        Some(CLASS),
        Endpoint::Validate,
        &with_object(&review, routed.clone()),
    );
    assert!(validated.response.allowed, "{:?}", validated.response);

    // Another class is refused with its own rule.
    let mut other = routed;
    other["spec"]["runtimeClassName"] = json!("runhcs-wcow-process");
    let validated = webhook.review(
        Some(CLASS),
        Endpoint::Validate,
        &with_object(&review, other),
    );
    assert_denied(&validated, "[HG-RUNTIME-02]");
}

/// Pod templates are judged as their pods will be created: routed when the webhook routes.
#[test]
fn templates_are_judged_as_their_pods_will_be_routed() {
    let webhook = Webhook::new(true);
    let review = review_of("daemonset-create-hostprocess.validating.json");
    let unrouted = webhook.review(None, Endpoint::Validate, &review);
    assert_denied(&unrouted, "[HG-RUNTIME-01]");
    let routed = webhook.review(Some(CLASS), Endpoint::Validate, &review);
    assert!(routed.response.allowed, "{:?}", routed.response);
    assert!(routed.response.patch.is_none(), "/validate never patches");
}

/// The server passes its `--runtime-class` to every review.
#[test]
fn the_server_state_carries_the_flag_into_reviews() {
    let signer = SigningIdentity::new(generate_key().expect("key"));
    let state = hostgate::server::state::AppState::new(Some(signer), None, true)
        .with_runtime_class(Some(CLASS.to_owned()));
    state.install_policies(policies(false), Default::default());
    let review = review_of("pod-create-hostprocess-valid.mutating.json");
    let (outcome, _) = state
        .review(
            Endpoint::Mutate,
            &serde_json::to_vec(&review).expect("json"),
        )
        .expect("answered");
    assert_eq!(runtime_class(&patched(&review, &outcome)), Some(CLASS));
}

// ---------------------------------------------------------------------------------------------
// `hostgate check` and `hostgate mutate` know the same flag.

fn hostgate() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("hostgate").expect("hostgate binary");
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HOSTGATE_POLICIES");
    c
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: default}
spec:
  hostNetwork: true
  securityContext: {windowsOptions: {hostProcess: true}}
  containers:
  - name: agent
    image: mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.0
"#;

/// The requiring policies and the pod, written into `dir`.
fn files(dir: &Path) -> (PathBuf, PathBuf) {
    let text =
        std::fs::read_to_string(data("webhook/policies/test-policies.yaml")).expect("policies");
    let policy = dir.join("policies.yaml");
    std::fs::write(
        &policy,
        text.replacen(
            "  allow:\n    images:",
            "  allow:\n    runtimeClassNames: [hostgate]\n    images:",
            1,
        ),
    )
    .expect("write");
    let pod = dir.join("pod.yaml");
    std::fs::write(&pod, POD).expect("write");
    (policy, pod)
}

#[test]
fn check_judges_as_a_webhook_with_the_flag_would() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (policy, pod) = files(dir.path());
    let without = hostgate()
        .arg("check")
        .arg("-p")
        .arg(&policy)
        .arg(&pod)
        .output()
        .expect("runs");
    assert_eq!(without.status.code(), Some(1), "{without:?}");
    assert!(
        String::from_utf8_lossy(&without.stdout).contains("[HG-RUNTIME-01]"),
        "{without:?}"
    );
    let with = hostgate()
        .args(["check", "--runtime-class", CLASS, "-p"])
        .arg(&policy)
        .arg(&pod)
        .output()
        .expect("runs");
    assert_eq!(with.status.code(), Some(0), "{with:?}");
    // A name that cannot be a RuntimeClass is bad usage.
    let bad = hostgate()
        .args(["check", "--runtime-class", "Not_A_Class", "-p"])
        .arg(&policy)
        .arg(&pod)
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

#[test]
fn mutate_names_the_class_and_signs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (policy, pod) = files(dir.path());
    let keys = dir.path().join("keys");
    let out = hostgate()
        .args(["keygen", "--out"])
        .arg(&keys)
        .output()
        .expect("keygen");
    assert!(out.status.success(), "{out:?}");
    let key = std::fs::read_dir(&keys)
        .expect("keys")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "key"))
        .expect("a private key");
    let out = hostgate()
        .args(["mutate", "--runtime-class", CLASS, "--signing-key"])
        .arg(&key)
        .arg("-p")
        .arg(&policy)
        .arg(&pod)
        .output()
        .expect("mutate");
    assert!(out.status.success(), "{out:?}");
    let (docs, err) = hostgate::manifest::read_documents(&out.stdout);
    assert_eq!(err, None);
    let mutated = &docs[0].value;
    assert_eq!(runtime_class(mutated), Some(CLASS), "{mutated}");
    assert!(mutated["metadata"]["annotations"]["hostgate.io/approval"].is_string());
    // The serve flag is refused without a key to sign with: the node would refuse the pods.
    let serve = hostgate()
        .args(["serve", "--tls-self-signed", "--runtime-class", CLASS])
        .output()
        .expect("serve");
    assert_eq!(serve.status.code(), Some(2), "{serve:?}");
    assert!(String::from_utf8_lossy(&serve.stderr).contains("--signing-key"));
}
