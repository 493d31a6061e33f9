//! The CRD committed in the chart is exactly what `hostgate crd` generates from the Rust types.
//! After changing src/policy/model.rs: `cargo run -- crd > charts/hostgate/crds/hostprocesspolicies.hostgate.io.yaml`.

use hostgate_test_support::repo_root;

#[test]
fn chart_crd_matches_the_types() {
    let path = repo_root().join("charts/hostgate/crds/hostprocesspolicies.hostgate.io.yaml");
    let committed = std::fs::read_to_string(&path).expect("the chart's CRD");
    let generated = hostgate::policy::crd_yaml().expect("renders");
    assert!(
        committed == generated,
        "{} is out of date; regenerate it with `cargo run -- crd > {}`",
        path.display(),
        path.display()
    );
}

/// Every shipped policy passes the CRD's own OpenAPI schema (what the apiserver checks on
/// `kubectl apply`), and a policy with a bad enum value does not.
#[test]
fn shipped_policies_pass_the_crd_schema() {
    let crd: serde_json::Value =
        serde_yaml::from_str(&hostgate::policy::crd_yaml().expect("renders")).expect("yaml");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let validator = jsonschema::validator_for(schema).expect("the CRD schema compiles");
    let root = repo_root().join("policies");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).expect("policies") {
        let file = entry.expect("entry").path().join("policy.yaml");
        let text = std::fs::read_to_string(&file).expect("policy.yaml");
        let (docs, err) = hostgate::manifest::read_documents(text.as_bytes());
        assert_eq!(err, None);
        for doc in docs {
            let errors: Vec<String> = validator
                .iter_errors(&doc.value)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", file.display());
            checked += 1;
        }
    }
    assert!(checked >= 6);
    let bad = serde_json::json!({
        "apiVersion": "hostgate.io/v1alpha1", "kind": "HostProcessPolicy",
        "metadata": {"name": "x"}, "spec": {"mode": "Sometimes"}
    });
    assert!(
        !validator.is_valid(&bad),
        "the schema refuses an unknown mode"
    );
}
