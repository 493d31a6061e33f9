//! Golden tests: every shipped policy's co-located test cases (`policies/*/tests/hostgate-test.yaml`)
//! pass, every shipped policy directory has cases, and the whole directory loads as one set.

use std::path::PathBuf;

use hostgate::check::suite::{Suite, discover};
use hostgate::policy::load::load_paths;

fn policies_dir() -> PathBuf {
    hostgate_test_support::repo_root().join("policies")
}

#[test]
fn shipped_policies_load_as_one_set() {
    let set = load_paths(&[policies_dir()]).unwrap_or_else(|e| panic!("{e}"));
    assert!(set.len() >= 6, "{} policies", set.len());
}

#[test]
fn every_shipped_policy_has_passing_test_cases() {
    let suites = discover(&[policies_dir()]).unwrap_or_else(|e| panic!("{e}"));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(policies_dir())
        .expect("policies dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in &dirs {
        assert!(
            suites.iter().any(|s| s.starts_with(dir)),
            "{} has no tests/hostgate-test.yaml",
            dir.display()
        );
    }
    let mut cases = 0;
    for file in suites {
        let suite = Suite::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let result = suite.run();
        assert!(
            result.errors.is_empty(),
            "{}: {:?}",
            file.display(),
            result.errors
        );
        for case in &result.cases {
            assert!(
                case.passed,
                "{}: {} {}/{}: expected {:?}, got {:?}: {:?}",
                file.display(),
                case.object.kind,
                case.object.namespace,
                case.object.name,
                case.expected,
                case.actual,
                case.reasons
            );
        }
        // Each suite must exercise both outcomes.
        assert!(
            result.cases.iter().any(|c| c.decision.allowed),
            "{}: no allowed case",
            file.display()
        );
        assert!(
            result.cases.iter().any(|c| !c.decision.allowed),
            "{}: no denied case",
            file.display()
        );
        cases += result.cases.len();
    }
    assert!(cases >= 39, "only {cases} cases");
}
