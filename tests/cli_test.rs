//! `hostgate test` end to end, over the suites in `tests/data/cli/suites/`.

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

const SUITES: &str = "tests/data/cli/suites";

fn hostgate_test(args: &[&str]) -> Command {
    let mut c = Command::cargo_bin("hostgate").expect("hostgate binary");
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("NO_COLOR")
        .arg("test")
        .args(args);
    c
}

fn suite(name: &str) -> String {
    format!("{SUITES}/{name}")
}

#[test]
fn a_passing_suite_exits_0() {
    hostgate_test(&[&suite("passing")])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "tests/data/cli/suites/passing/agents/tests/hostgate-test.yaml: agents\n",
        ))
        .stdout(predicate::str::contains(
            "  PASS Pod agents/agent (resources.yaml, document 1): allow by policy agents\n",
        ))
        .stdout(predicate::str::contains(
            "  PASS Pod agents/rogue (resources.yaml, document 2): deny [HG-IMAGE-01]\n",
        ))
        .stdout(predicate::str::ends_with(
            "1 suite, 3 cases: 3 passed, 0 failed; 0 errors\n",
        ));
}

#[test]
fn a_failing_suite_exits_1_with_expected_and_actual() {
    hostgate_test(&[&suite("failing")])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "  FAIL Pod agents/rogue (resources.yaml, document 2): expected allow; got deny [HG-IMAGE-01]: expected allow, got deny\n",
        ))
        .stdout(predicate::str::contains(
            "  FAIL Pod agents/plain (resources.yaml, document 3): expected deny [HG-MATCH-01]; got allow: expected deny, got allow; rule HG-MATCH-01 is not among the denials\n",
        ))
        .stdout(predicate::str::ends_with(
            "1 suite, 3 cases: 1 passed, 2 failed; 0 errors\n",
        ));
}

#[test]
fn a_malformed_suite_exits_2() {
    hostgate_test(&[&suite("malformed")])
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "ERROR tests/data/cli/suites/malformed/agents/tests/hostgate-test.yaml: results[0].result: unknown variant `maybe`",
        ));
    // Malformed dominates failing.
    hostgate_test(&[&suite("failing"), &suite("malformed")])
        .assert()
        .code(2);
}

#[test]
fn no_suite_found_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    hostgate_test(&[&dir.path().display().to_string()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no hostgate-test.yaml found in"));
    hostgate_test(&["tests/data/cli/nowhere"]).assert().code(2);
}

#[test]
fn json_output() {
    let out = hostgate_test(&["-o", "json", SUITES])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["kind"], "PolicyTestReport");
    let suites = v["suites"].as_array().expect("suites");
    let names: Vec<&str> = suites.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["agents-failing", "agents-malformed", "agents"]);
    assert_eq!(suites[0]["passed"], false);
    assert_eq!(suites[2]["passed"], true);
    let rogue = &suites[0]["cases"][1];
    assert_eq!(rogue["object"]["name"], "rogue");
    assert_eq!(rogue["expected"]["result"], "allow");
    assert_eq!(rogue["actual"]["result"], "deny");
    assert_eq!(rogue["actual"]["rules"][0], "HG-IMAGE-01");
    assert_eq!(
        v["summary"],
        serde_json::json!({"suites": 3, "cases": 6, "passed": 4, "failed": 2, "errors": 1})
    );
}

#[test]
fn junit_output() {
    let out = hostgate_test(&["-o", "junit", SUITES])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let count = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).count();
    assert_eq!(count("testsuite"), 3);
    assert_eq!(count("testcase"), 7);
    assert_eq!(count("failure"), 2);
    assert_eq!(count("error"), 1);
}
