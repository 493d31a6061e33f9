//! Peer conformance: the `baseline` profile must agree with Pod Security Admission's own test
//! fixtures and with Kyverno's `disallow-host-process` test resources (copied into
//! tests/data/conformance from the peers' repositories; see its README).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hostgate::decision::Decision;
use hostgate::engine::{EvalContext, evaluate};
use hostgate::manifest::read_documents;
use hostgate::object::Workload;
use hostgate::policy::{PolicySet, Profile};
use serde::Deserialize;

fn data(rel: &str) -> PathBuf {
    hostgate_test_support::data_path("conformance").join(rel)
}

fn baseline() -> PolicySet {
    PolicySet::default().with_profile(Profile::Baseline)
}

/// Every judged object of a file, by name, with its decision under the baseline profile.
fn decide_file(path: &Path) -> Vec<(String, &'static str, Decision)> {
    let bytes = std::fs::read(path).expect("fixture readable");
    let (docs, err) = read_documents(&bytes);
    assert_eq!(err, None, "{}", path.display());
    let set = baseline();
    docs.into_iter()
        .filter_map(|d| Workload::from_value(d.value).expect("fixture is valid"))
        .map(|w| {
            let ctx = EvalContext::new(w.namespace().unwrap_or("default"));
            let decision = evaluate(&set, &w.pod().expect("pod spec"), &ctx);
            (w.name().to_owned(), w.kind().name(), decision)
        })
        .collect()
}

fn psa_refusal(d: &Decision) -> bool {
    !d.allowed
        && d.denials
            .iter()
            .any(|f| f.rule == "HP-PSA-01" && f.message.contains("hostProcess"))
}

#[test]
fn pod_security_admission_fixtures() {
    let mut checked = 0;
    for level in ["baseline", "restricted"] {
        for (outcome, want_allowed) in [("pass", true), ("fail", false)] {
            let dir = data(&format!("psa/{level}/v1.37/{outcome}"));
            for entry in std::fs::read_dir(&dir).expect("fixture dir") {
                let path = entry.expect("entry").path();
                for (name, _, d) in decide_file(&path) {
                    checked += 1;
                    if want_allowed {
                        assert!(
                            d.allowed,
                            "{}: {name} must be allowed: {d:?}",
                            path.display()
                        );
                    } else {
                        assert!(
                            psa_refusal(&d),
                            "{}: {name} must be refused by HP-PSA-01: {d:?}",
                            path.display()
                        );
                    }
                }
            }
        }
    }
    assert_eq!(checked, 8);
}

/// PSA's exact detail text for its two fail fixtures.
#[test]
fn pod_security_admission_messages() {
    let expect = [
        (
            "windowshostprocess0.yaml",
            "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)",
        ),
        (
            "windowshostprocess1.yaml",
            "hostProcess (containers \"initcontainer1\", \"container1\" must not set securityContext.windowsOptions.hostProcess=true)",
        ),
    ];
    for (file, message) in expect {
        let decided = decide_file(&data(&format!("psa/baseline/v1.37/fail/{file}")));
        let d = &decided[0].2;
        let psa: Vec<_> = d.denials.iter().filter(|f| f.rule == "HP-PSA-01").collect();
        assert_eq!(psa.len(), 1);
        assert_eq!(psa[0].message, message);
    }
}

#[derive(Deserialize)]
struct KyvernoTest {
    results: Vec<KyvernoResult>,
}

#[derive(Deserialize)]
struct KyvernoResult {
    kind: String,
    resources: Vec<String>,
    result: String,
}

#[test]
fn kyverno_cli_test_resources() {
    let decided: BTreeMap<(String, String), Decision> =
        decide_file(&data("kyverno/.kyverno-test/resource.yaml"))
            .into_iter()
            .map(|(name, kind, d)| ((kind.to_owned(), name), d))
            .collect();
    let mut checked = 0;
    for test in [
        ".kyverno-test/kyverno-test.yaml",
        "variants/pod-security-cel/kyverno-test.yaml",
        "variants/pod-security-vpol/kyverno-test.yaml",
    ] {
        let text = std::fs::read_to_string(data(&format!("kyverno/{test}"))).expect("test file");
        let spec: KyvernoTest = serde_yaml::from_str(&text).expect("kyverno test parses");
        for r in spec.results {
            for name in r.resources {
                let d = decided
                    .get(&(r.kind.clone(), name.clone()))
                    .unwrap_or_else(|| panic!("{test}: {} {name} not in resource.yaml", r.kind));
                match r.result.as_str() {
                    "pass" => assert!(d.allowed, "{test}: {name} must pass: {d:?}"),
                    "fail" => assert!(psa_refusal(d), "{test}: {name} must fail: {d:?}"),
                    other => panic!("unexpected result {other}"),
                }
                checked += 1;
            }
        }
    }
    // 16 bad and 18 good resources, listed by each of the three test files.
    assert_eq!(checked, 3 * 33);
}

#[test]
fn kyverno_chainsaw_resources() {
    for (file, good) in [
        ("pod-good.yaml", true),
        ("podcontroller-good.yaml", true),
        ("pod-bad.yaml", false),
        ("podcontroller-bad.yaml", false),
    ] {
        let decided = decide_file(&data(&format!("kyverno/.chainsaw-test/{file}")));
        assert!(!decided.is_empty());
        for (name, kind, d) in decided {
            if good {
                assert!(d.allowed, "{file}: {kind} {name} must be allowed: {d:?}");
            } else {
                assert!(!d.allowed, "{file}: {kind} {name} must be refused: {d:?}");
                assert!(
                    d.denials.iter().any(|f| f.rule == "HP-PSA-01"),
                    "{file}: {kind} {name}: {d:?}"
                );
            }
        }
    }
}

/// Kyverno's pattern ignores pod-level `hostProcess`, which containers inherit. hostgate does not.
#[test]
fn pod_level_only_host_process_is_refused() {
    let yaml = br#"
apiVersion: v1
kind: Pod
metadata: {name: pod-level-only}
spec:
  hostNetwork: true
  securityContext: {windowsOptions: {hostProcess: true}}
  containers: [{name: c, image: registry.k8s.io/pause}]
"#;
    let (docs, _) = read_documents(yaml);
    let w = Workload::from_value(docs[0].value.clone())
        .expect("valid")
        .expect("pod");
    let d = evaluate(
        &baseline(),
        &w.pod().expect("spec"),
        &EvalContext::new("default"),
    );
    assert!(psa_refusal(&d), "{d:?}");
}
