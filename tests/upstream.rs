//! The manifests projects publish for their Windows HostProcess DaemonSets
//! (`tests/data/upstream/`, each naming its source and version in its first line), against the
//! shipped example policies, Pod Security Admission's baseline, and `hostgate suggest`.

use std::path::{Path, PathBuf};

use hostgate::check::suggest::{SuggestOptions, compile, suggest};
use hostgate::check::{self, CheckOptions, Input, Report, Verdict};
use hostgate::policy::load::load_paths;
use hostgate::policy::{Mode, PolicySet, Profile};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn upstream(name: &str) -> PathBuf {
    root().join("tests/data/upstream").join(name)
}

fn shipped() -> PolicySet {
    load_paths(&[root().join("policies")]).unwrap_or_else(|e| panic!("{e}"))
}

fn run_text(text: &str, set: PolicySet) -> Report {
    let mut report = Report::default();
    check::check_bytes(
        &mut report,
        "upstream".into(),
        text.as_bytes(),
        &CheckOptions::new(set),
    );
    assert_eq!(report.errors, [], "{text}");
    report
}

/// (file, judged objects, outcome under the shipped policies as published)
const MANIFESTS: [(&str, usize, Verdict); 6] = [
    ("calico-node-v3.25.yaml", 1, Verdict::Allowed),
    ("calico-node.yaml", 1, Verdict::Allowed),
    ("csi-proxy.yaml", 1, Verdict::Denied),
    ("flannel.yaml", 1, Verdict::Allowed),
    ("kube-proxy.yaml", 1, Verdict::Allowed),
    ("windows-exporter.yaml", 1, Verdict::Denied),
];

fn read(name: &str) -> String {
    std::fs::read_to_string(upstream(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_manifest_names_its_source_in_its_first_line() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("tests/data/upstream"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let listed: Vec<&str> = MANIFESTS.iter().map(|(f, _, _)| *f).collect();
    assert_eq!(files, listed, "every upstream manifest is tested");
    for (file, _, _) in MANIFESTS {
        let text = read(file);
        let first = text.lines().next().unwrap_or("");
        assert!(first.starts_with("# "), "{file}: {first}");
        assert!(
            first.contains("not downloaded") || first.contains("downloaded from"),
            "{file} must say how it was obtained: {first}"
        );
    }
}

#[test]
fn the_shipped_examples_admit_them_or_their_readme_says_what_to_change() {
    for (file, objects, want) in MANIFESTS {
        let report = run_text(&read(file), shipped());
        assert_eq!(report.results.len(), objects, "{file}");
        for r in &report.results {
            assert_eq!(r.verdict, want, "{file}: {:?}", r.decision.denials);
            if want == Verdict::Denied {
                let rules: Vec<&str> = r.decision.denials.iter().map(|f| f.rule).collect();
                assert_eq!(rules, ["HG-MATCH-01"], "{file}");
            }
        }
    }
    // policies/csi-proxy/README.md: a dedicated service account and a digest.
    let digest = "sha256:9f1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let csi = read("csi-proxy.yaml")
        .replace(
            "      hostNetwork: true\n",
            "      hostNetwork: true\n      serviceAccountName: csi-proxy\n",
        )
        .replace(":v1.1.3", &format!("@{digest}"));
    let r = run_text(&csi, shipped());
    assert_eq!(
        r.results[0].verdict,
        Verdict::Allowed,
        "{:?}",
        r.results[0].decision
    );
    assert_eq!(r.results[0].decision.policy.as_deref(), Some("csi-proxy"));
    // The account alone is not enough: the tag is refused.
    let tag_only = read("csi-proxy.yaml").replace(
        "      hostNetwork: true\n",
        "      hostNetwork: true\n      serviceAccountName: csi-proxy\n",
    );
    let rules: Vec<&str> = run_text(&tag_only, shipped()).results[0]
        .decision
        .denials
        .iter()
        .map(|f| f.rule)
        .collect();
    assert_eq!(rules, ["HG-IMAGE-01", "HG-IMAGE-02"]);
    // policies/windows-exporter/README.md: a dedicated service account.
    let exporter = read("windows-exporter.yaml").replace(
        "      hostNetwork: true\n",
        "      hostNetwork: true\n      serviceAccountName: windows-exporter\n",
    );
    let r = run_text(&exporter, shipped());
    assert_eq!(
        r.results[0].verdict,
        Verdict::Allowed,
        "{:?}",
        r.results[0].decision
    );
}

#[test]
fn baseline_refuses_every_one_with_psa_s_check_only() {
    for (file, _, _) in MANIFESTS {
        let set = PolicySet::default().with_profile(Profile::Baseline);
        let mut opts = CheckOptions::new(set);
        opts.require_admission = false;
        let report = check::check(&[Input::Path(upstream(file))], &opts);
        assert_eq!(report.errors, [], "{file}");
        for r in &report.results {
            let rules: Vec<&str> = r.decision.denials.iter().map(|f| f.rule).collect();
            assert_eq!(rules, ["HP-PSA-01"], "{file}");
            // Pod-level hostProcess: PSA names the pod, at the field the file has.
            assert!(
                r.decision.denials[0]
                    .message
                    .starts_with("hostProcess (pod "),
                "{file}"
            );
            let at = r
                .locations
                .get(&r.decision.denials[0].path)
                .unwrap_or_else(|| panic!("{file}: no location for the PSA finding"));
            assert!(at.line > 1, "{file}: {at:?}");
        }
    }
}

#[test]
fn suggest_admits_each_manifest_and_nothing_else() {
    for (file, _, _) in MANIFESTS {
        let opts = CheckOptions::new(PolicySet::default());
        let (objects, report) = check::read_objects(&[Input::Path(upstream(file))], &opts);
        assert_eq!(report.errors, [], "{file}");
        let s = suggest(
            &objects,
            &SuggestOptions {
                mode: Mode::Enforce,
                ..SuggestOptions::default()
            },
        );
        assert_eq!(s.left_out, Vec::<String>::new(), "{file}");
        let set = compile(&s.yaml).unwrap_or_else(|e| panic!("{file}: {e}\n{}", s.yaml));
        let text = read(file);
        let r = run_text(&text, set.clone());
        for o in &r.results {
            assert_eq!(
                o.verdict,
                Verdict::Allowed,
                "{file}: {:?}\n{}",
                o.decision,
                s.yaml
            );
        }
        // The same object in another namespace is not admitted.
        let elsewhere = text.replacen("  namespace: ", "  namespace: x", 1);
        let r = run_text(&elsewhere, set);
        assert_eq!(r.results[0].verdict, Verdict::Denied, "{file}");
    }
}
