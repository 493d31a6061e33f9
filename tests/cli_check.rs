//! `hostgate check` end to end: the built binary over the manifests and policies in
//! `tests/data/cli/` (never the shipped `policies/`, whose content changes on its own).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

const POLICIES: &str = "tests/data/cli/policies";
const DATA: &str = "tests/data/cli";

fn hostgate() -> Command {
    let mut c = Command::cargo_bin("hostgate").expect("hostgate binary");
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("NO_COLOR")
        .env_remove("HOSTGATE_POLICIES");
    c
}

/// `hostgate check --policies tests/data/cli/policies <args>`
fn check(args: &[&str]) -> Command {
    let mut c = hostgate();
    c.arg("check").args(["--policies", POLICIES]).args(args);
    c
}

fn data(path: &str) -> String {
    format!("{DATA}/{path}")
}

fn stdout_of(c: &mut Command) -> (i32, String, String) {
    let out = c.output().expect("runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

#[test]
fn allowed_objects_exit_0() {
    check(&[&data("manifests/allowed.yaml")])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "Pod agents/agent (tests/data/cli/manifests/allowed.yaml, document 1): ALLOWED by policy agents\n",
        ))
        .stdout(predicate::str::ends_with(
            "1 object in 1 file: 1 allowed, 0 denied, 0 warned, 0 audited; 1 skipped; 0 errors\n",
        ));
}

#[test]
fn denied_objects_exit_1_with_findings_under_their_object() {
    let (code, out, err) = stdout_of(&mut check(&[&data("manifests/denied.yaml")]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("DaemonSet agents/rogue (tests/data/cli/manifests/denied.yaml, document 1): DENIED\n  deny  [HG-IMAGE-01] spec.template.spec.containers[0].image: "),
        "{out}"
    );
    assert!(
        out.contains("Pod default/plain (tests/data/cli/manifests/denied.yaml, document 2): ALLOWED (not a HostProcess pod)\n"),
        "{out}"
    );
    assert_eq!(err, "");
}

#[test]
fn warnings_fail_only_with_fail_on_warn() {
    let warned = data("manifests/nested/warned.yaml");
    check(&[&warned])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "ALLOWED with warnings by policy lenient\n  warn  [HG-IMAGE-01]",
        ));
    check(&["--fail-on", "warn", &warned]).assert().code(1);
    check(&["--fail-on", "deny", &warned]).assert().code(0);
}

#[test]
fn directories_are_read_recursively_in_order_skipping_hidden_and_other_files() {
    let (code, out, err) = stdout_of(&mut check(&["-v", &data("manifests")]));
    assert_eq!(code, 1, "{out}{err}");
    let headers: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with("skipped"))
        .collect();
    assert_eq!(
        headers,
        [
            "Pod agents/agent (tests/data/cli/manifests/allowed.yaml, document 1): ALLOWED by policy agents",
            "DaemonSet agents/rogue (tests/data/cli/manifests/denied.yaml, document 1): DENIED",
            "Pod default/plain (tests/data/cli/manifests/denied.yaml, document 2): ALLOWED (not a HostProcess pod)",
            "CronJob agents/nightly (tests/data/cli/manifests/nested/deeper/list.json, document 1, item 2): ALLOWED by policy agents",
            "Pod lenient/lenient-agent (tests/data/cli/manifests/nested/warned.yaml, document 1): ALLOWED with warnings by policy lenient",
            "5 objects in 4 files: 3 allowed, 1 denied, 1 warned, 0 audited; 2 skipped; 0 errors",
        ]
    );
    let skipped: Vec<&str> = out.lines().filter(|l| l.starts_with("skipped")).collect();
    assert_eq!(
        skipped,
        [
            "skipped v1 Service agents/agent (tests/data/cli/manifests/allowed.yaml, document 2): not a kind hostgate judges",
            "skipped v1 ConfigMap agents/settings (tests/data/cli/manifests/nested/deeper/list.json, document 1, item 1): not a kind hostgate judges",
        ]
    );
    // Without -v, skipped objects are only counted.
    let (_, out, _) = stdout_of(&mut check(&[&data("manifests")]));
    assert!(!out.contains("skipped v1"), "{out}");
}

#[test]
fn standard_input() {
    let manifest = std::fs::read(data("manifests/denied.yaml")).expect("read");
    check(&["-"])
        .write_stdin(manifest)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "DaemonSet agents/rogue (<stdin>, document 1): DENIED",
        ));
}

#[test]
fn no_path_is_a_usage_error() {
    hostgate()
        .args(["check", "--policies", POLICIES])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Usage: hostgate check"));
}

/// Each kind of bad input: exit 2 and `<file>: document <n>: <field path>: <message>`.
#[test]
fn bad_inputs_exit_2_with_file_document_and_field() {
    let cases: [(&str, &str); 4] = [
        (
            "bad/truncated.yaml",
            "error: tests/data/cli/bad/truncated.yaml: document 1: ",
        ),
        (
            "bad/wrong-api.yaml",
            "error: tests/data/cli/bad/wrong-api.yaml: document 1: apiVersion: \"extensions/v1beta1\" is not served for kind DaemonSet (expected \"apps/v1\")\n",
        ),
        (
            "bad/host-process-string.yaml",
            "error: tests/data/cli/bad/host-process-string.yaml: document 1: spec.containers[0].securityContext.windowsOptions.hostProcess: invalid type: string \"true\", expected a boolean",
        ),
        (
            "bad/alias-bomb.yaml",
            "error: tests/data/cli/bad/alias-bomb.yaml: document 1: expands to more than",
        ),
    ];
    for (file, want) in cases {
        let (code, out, err) = stdout_of(&mut check(&[&data(file)]));
        assert_eq!(code, 2, "{file}: {out}{err}");
        assert!(
            err.starts_with(want),
            "{file}:\n{err}\nwant prefix:\n{want}"
        );
        assert!(out.ends_with("; 1 error\n"), "{out}");
    }
}

#[test]
fn binary_and_non_utf8_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("binary.yaml");
    std::fs::write(&binary, [0x7f, b'E', b'L', b'F', 0, 1, 2, 3, 0xff]).expect("write");
    let latin1 = dir.path().join("latin1.yaml");
    std::fs::write(
        &latin1,
        b"apiVersion: v1\nkind: Pod\nmetadata: {name: caf\xe9}\n",
    )
    .expect("write");
    let (code, _, err) = stdout_of(&mut check(&[&path(&binary), &path(&latin1)]));
    assert_eq!(code, 2);
    assert!(
        err.contains("binary.yaml: binary data (NUL byte at offset 4), not YAML or JSON\n"),
        "{err}"
    );
    assert!(
        err.contains("latin1.yaml: not UTF-8 text (invalid byte at offset 45)\n"),
        "{err}"
    );
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_50_mb_file_is_refused_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.yaml");
    let line = b"# padding padding padding padding padding padding padding padding\n";
    let mut bytes = Vec::with_capacity(50 * 1024 * 1024 + line.len());
    while bytes.len() < 50 * 1024 * 1024 {
        bytes.extend_from_slice(line);
    }
    std::fs::write(&big, &bytes).expect("write");
    let (code, _, err) = stdout_of(&mut check(&[&path(&big)]));
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "big.yaml: {} bytes is larger than the 16777216-byte limit (--max-file-size); not read",
            bytes.len()
        )),
        "{err}"
    );
    // A smaller limit applies to ordinary files too.
    check(&["--max-file-size", "100", &data("manifests/allowed.yaml")])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("larger than the 100-byte limit"));
    check(&["--max-file-size", "lots", &data("manifests/allowed.yaml")])
        .assert()
        .code(2);
}

#[test]
fn a_pod_with_ten_thousand_containers_is_evaluated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wide.yaml");
    let mut text = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: wide\n  namespace: agents\nspec:\n  hostNetwork: true\n  securityContext:\n    windowsOptions:\n      hostProcess: true\n      runAsUserName: NT AUTHORITY\\Local service\n  containers:\n",
    );
    for i in 0..10_000 {
        text.push_str(&format!(
            "  - name: c{i}\n    image: registry.example/agent:{i}\n"
        ));
    }
    // One container breaks the policy: the finding names it among 10,000.
    text = text.replace("registry.example/agent:9999", "docker.io/x:1");
    std::fs::write(&file, text).expect("write");
    let (code, out, err) = stdout_of(&mut check(&[&path(&file)]));
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("Pod agents/wide ("), "{out}");
    assert!(
        out.contains("[HG-IMAGE-01] spec.containers[9999].image: "),
        "{}",
        &out[..out.len().min(2000)]
    );
}

#[test]
fn bad_input_dominates_but_everything_readable_is_reported() {
    let (code, out, err) = stdout_of(&mut check(&[
        &data("manifests/denied.yaml"),
        &data("bad/wrong-api.yaml"),
        &data("does-not-exist.yaml"),
    ]));
    assert_eq!(code, 2);
    assert!(out.contains("DaemonSet agents/rogue"), "{out}");
    assert!(out.ends_with("; 0 skipped; 2 errors\n"), "{out}");
    assert!(
        err.contains("error: tests/data/cli/does-not-exist.yaml: No such file or directory"),
        "{err}"
    );
}

#[test]
fn json_report() {
    let (code, out, _) = stdout_of(&mut check(&[
        "-o",
        "json",
        &data("manifests"),
        &data("bad/host-process-string.yaml"),
    ]));
    assert_eq!(code, 2);
    let v: Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["apiVersion"], "hostgate.io/v1alpha1");
    assert_eq!(v["kind"], "CheckReport");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 5);
    let rogue = results
        .iter()
        .find(|r| r["name"] == "rogue")
        .expect("rogue");
    assert_eq!(rogue["kind"], "DaemonSet");
    assert_eq!(rogue["apiVersion"], "apps/v1");
    assert_eq!(rogue["namespace"], "agents");
    assert_eq!(rogue["outcome"], "denied");
    assert_eq!(
        rogue["source"]["file"],
        "tests/data/cli/manifests/denied.yaml"
    );
    assert_eq!(rogue["source"]["document"], 1);
    assert_eq!(rogue["source"]["line"], 2);
    assert_eq!(rogue["decision"]["allowed"], false);
    assert_eq!(rogue["decision"]["denials"][0]["rule"], "HG-IMAGE-01");
    assert_eq!(rogue["decision"]["denials"][0]["containers"][0], "rogue");
    let cron = results
        .iter()
        .find(|r| r["kind"] == "CronJob")
        .expect("cron job");
    assert_eq!(cron["source"]["item"], 2);
    assert_eq!(cron["decision"]["policy"], "agents");
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0]["path"],
        "spec.containers[0].securityContext.windowsOptions.hostProcess"
    );
    assert_eq!(errors[0]["document"], 1);
    assert_eq!(v["skipped"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["summary"]["objects"], 5);
    assert_eq!(v["summary"]["denied"], 1);
    assert_eq!(v["summary"]["warned"], 1);
    assert_eq!(v["summary"]["errors"], 1);
}

#[test]
fn junit_report_parses_as_xml() {
    let (code, out, _) = stdout_of(&mut check(&[
        "-o",
        "junit",
        &data("manifests"),
        &data("bad/wrong-api.yaml"),
    ]));
    assert_eq!(code, 2);
    let doc = roxmltree::Document::parse(&out).expect("well-formed XML");
    let suites: Vec<_> = doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(
        suites.len(),
        5,
        "one test suite per file with objects or errors"
    );
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    let failures: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .collect();
    let errors = doc
        .descendants()
        .filter(|n| n.has_tag_name("error"))
        .count();
    assert_eq!((cases, failures.len(), errors), (6, 1, 1));
    let failed_case = failures[0].parent().expect("testcase");
    assert_eq!(failed_case.attribute("classname"), Some("DaemonSet"));
    assert_eq!(failed_case.attribute("name"), Some("agents/rogue"));
    assert_eq!(failures[0].attribute("type"), Some("HG-IMAGE-01"));
    assert_eq!(doc.root_element().attribute("failures"), Some("1"));
    // With --fail-on warn the warned pod fails as well.
    let (_, out, _) = stdout_of(&mut check(&[
        "-o",
        "junit",
        "--fail-on",
        "warn",
        &data("manifests"),
    ]));
    let doc = roxmltree::Document::parse(&out).expect("well-formed XML");
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("failure"))
            .count(),
        2
    );
}

#[test]
fn sarif_report_has_the_required_structure() {
    let (code, out, _) = stdout_of(&mut check(&["-o", "sarif", &data("manifests")]));
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["version"], "2.1.0");
    assert!(
        v["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("sarif-schema-2.1.0")),
        "{}",
        v["$schema"]
    );
    let run = &v["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "hostgate");
    assert!(driver["informationUri"].is_string());
    assert!(driver["version"].is_string());
    let rules: Vec<&str> = driver["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["id"].as_str().expect("rule id"))
        .collect();
    let mut unique = rules.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), rules.len(), "rule ids are unique");
    let results = run["results"].as_array().expect("results");
    assert!(!results.is_empty());
    for r in results {
        let id = r["ruleId"].as_str().expect("ruleId");
        assert!(rules.contains(&id), "{id} is among the rules");
        assert!(
            ["error", "warning", "note"].contains(&r["level"].as_str().expect("level")),
            "{r}"
        );
        assert!(r["message"]["text"].is_string());
        let loc = &r["locations"][0];
        assert!(
            loc["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("tests/data/cli/manifests/")),
            "{loc}"
        );
        assert!(
            loc["physicalLocation"]["region"]["startLine"]
                .as_u64()
                .is_some()
        );
        assert!(loc["logicalLocations"][0]["fullyQualifiedName"].is_string());
    }
    let levels: Vec<&str> = results.iter().filter_map(|r| r["level"].as_str()).collect();
    assert!(
        levels.contains(&"error") && levels.contains(&"warning"),
        "{levels:?}"
    );
}

#[test]
fn policies_default_to_the_current_directory_then_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(data("manifests/allowed.yaml"));
    let policies: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join(POLICIES);
    let mut c = hostgate();
    c.current_dir(dir.path()).args(["check", &path(&manifest)]);
    c.assert().code(2).stderr(predicate::str::contains(
        "no policies: ./policies does not exist and HOSTGATE_POLICIES is not set",
    ));
    let mut c = hostgate();
    c.current_dir(dir.path())
        .env("HOSTGATE_POLICIES", &policies)
        .args(["check", &path(&manifest)]);
    c.assert()
        .code(0)
        .stdout(predicate::str::contains("ALLOWED by policy agents"));
    // ./policies wins over the environment.
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    let mut c = hostgate();
    c.current_dir(dir.path())
        .env("HOSTGATE_POLICIES", &policies)
        .args(["check", &path(&manifest)]);
    c.assert()
        .code(1)
        .stdout(predicate::str::contains("[HG-MATCH-01]"));
}

#[test]
fn bad_policies_exit_2_naming_the_file() {
    hostgate()
        .args([
            "check",
            "--policies",
            &data("bad-policies.yaml"),
            &data("manifests/allowed.yaml"),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "tests/data/cli/bad-policies.yaml: document 1: spec.alow: unknown field `alow`",
        ));
}

#[test]
fn profile_without_policy_files() {
    // The baseline profile refuses every HostProcess pod; plain pods pass.
    hostgate()
        .args(["check", "--no-policies", "--profile", "baseline"])
        .arg(data("manifests/denied.yaml"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("[HP-PSA-01]"))
        .stdout(predicate::str::contains(
            "Pod default/plain (tests/data/cli/manifests/denied.yaml, document 2): ALLOWED",
        ));
    hostgate()
        .args(["check", "--no-policies", "--policies", POLICIES, "x.yaml"])
        .assert()
        .code(2);
}

#[test]
fn namespace_labels_from_a_file_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        std::fs::read_to_string(data("manifests/allowed.yaml"))
            .expect("read")
            .replace("namespace: agents", "namespace: team-a"),
    )
    .expect("write");
    // Unknown labels: only the namespace name is known, no policy matches.
    check(&[&path(&pod)])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("[HG-MATCH-01]"));
    check(&["--namespace-labels", &data("namespaces.yaml"), &path(&pod)])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("ALLOWED by policy selected"));
    check(&[
        "--namespace-label",
        "team-a:hostgate.io/agents=allowed",
        &path(&pod),
    ])
    .assert()
    .code(0);
    check(&["--namespace-label", "team-a", &path(&pod)])
        .assert()
        .code(2);
    // --namespace applies to objects without metadata.namespace.
    let unnamespaced = dir.path().join("unnamespaced.yaml");
    std::fs::write(
        &unnamespaced,
        std::fs::read_to_string(data("manifests/allowed.yaml"))
            .expect("read")
            .replace("  namespace: agents\n", ""),
    )
    .expect("write");
    check(&[&path(&unnamespaced)]).assert().code(1);
    check(&["--namespace", "agents", &path(&unnamespaced)])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Pod agents/agent ("));
}

#[test]
fn allow_privileged_false() {
    check(&["--allow-privileged=false", &data("manifests/allowed.yaml")])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("[HP-API-04]"));
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let allowed = data("manifests/allowed.yaml");
    check(&[&allowed])
        .assert()
        .stdout(predicate::str::contains("\x1b[").not());
    check(&["--color", "always", &allowed])
        .assert()
        .stdout(predicate::str::contains("\x1b[32mALLOWED\x1b[0m"));
    check(&["--color", "always", &allowed])
        .env("NO_COLOR", "1")
        .assert()
        .stdout(predicate::str::contains("\x1b[32m"));
}

#[test]
fn quiet_shows_only_objects_with_findings() {
    let (_, out, _) = stdout_of(&mut check(&["-q", &data("manifests")]));
    let headers: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(headers.len(), 3, "{out}");
    assert!(headers[0].starts_with("DaemonSet agents/rogue"));
    assert!(headers[1].starts_with("Pod lenient/lenient-agent"));
}

/// A repository as it is: Helm values, a kustomization and a JSON schema are skipped and counted
/// (listed with -v); `--strict` makes them errors; a document with `kind` but no `apiVersion`
/// stays bad input.
#[test]
fn documents_that_are_not_kubernetes_objects_are_skipped_and_counted() {
    let repo = data("repo/chart");
    let (code, out, err) = stdout_of(&mut check(&[
        "-v",
        &repo,
        &data("repo/kustomization.yaml"),
        &data("repo/schema.json"),
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Pod agents/agent (tests/data/cli/repo/chart/templates.yaml, document 1): ALLOWED by policy agents\n"),
        "{out}"
    );
    for listed in [
        "skipped (tests/data/cli/repo/chart/templates.yaml, document 2): not a Kubernetes object (neither apiVersion nor kind)\n",
        "skipped (tests/data/cli/repo/chart/values.yaml, document 1): not a Kubernetes object (neither apiVersion nor kind)\n",
        "skipped (tests/data/cli/repo/kustomization.yaml, document 1): not a Kubernetes object (neither apiVersion nor kind)\n",
        "skipped (tests/data/cli/repo/schema.json, document 1): not a Kubernetes object (neither apiVersion nor kind)\n",
    ] {
        assert!(out.contains(listed), "{listed}\nnot in\n{out}");
    }
    assert!(
        out.ends_with("1 object in 4 files: 1 allowed, 0 denied, 0 warned, 0 audited; 0 skipped; 4 not Kubernetes objects; 0 errors\n"),
        "{out}"
    );
    let (_, quiet, _) = stdout_of(&mut check(&[&repo]));
    assert!(!quiet.contains("not a Kubernetes object ("), "{quiet}");

    let (code, _, err) = stdout_of(&mut check(&["--strict", &repo]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "error: tests/data/cli/repo/chart/values.yaml: document 1: not a Kubernetes object"
        ),
        "{err}"
    );

    let (code, json, _) = stdout_of(&mut check(&["-o", "json", &repo]));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["summary"]["notObjects"], 2);
    assert_eq!(
        v["notObjects"][1]["file"],
        "tests/data/cli/repo/chart/values.yaml"
    );

    let (code, _, err) = stdout_of(&mut check(&[&data("repo/typo")]));
    assert_eq!(
        code, 2,
        "a typo must never let a HostProcess pod through: {err}"
    );
    assert!(
        err.contains("tests/data/cli/repo/typo/pod.yaml: document 1: "),
        "{err}"
    );
}

/// `--no-policies` runs only the structural rules (and a profile): no HG-MATCH-01.
/// `--profile structural` answers "would the apiserver accept this as written?".
#[test]
fn modes_run_the_rule_families_their_help_names() {
    let (code, out, err) =
        stdout_of(hostgate().args(["check", "--no-policies", &data("manifests/denied.yaml")]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "DaemonSet agents/rogue (tests/data/cli/manifests/denied.yaml, document 1): ALLOWED\n"
        ),
        "{out}"
    );
    assert!(!out.contains("HG-"), "{out}");

    let files = [
        data("manifests/denied.yaml"),
        data("modes/no-host-network.yaml"),
    ];
    let (code, out, _) = stdout_of(
        hostgate()
            .args(["check", "--profile", "structural", "-o", "json"])
            .args(&files),
    );
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let results = v["results"].as_array().expect("results");
    let verdicts: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or(""),
                r["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("rogue", "allowed"),
            ("plain", "allowed"),
            ("no-host-network", "denied")
        ]
    );
    let rules: Vec<&str> = results[2]["decision"]["denials"]
        .as_array()
        .expect("denials")
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert_eq!(rules, ["HP-API-03"]);
    // As written: nothing is defaulted.
    assert!(
        results.iter().all(|r| r.get("defaulted").is_none()),
        "{out}"
    );
    // The same file with defaults and policies still gets HP-API-03, plus policy findings.
    let (_, out, _) = stdout_of(&mut check(&[&data("modes/no-host-network.yaml")]));
    assert!(out.contains("[HP-API-03]"), "{out}");

    hostgate()
        .args([
            "check",
            "--profile",
            "structural",
            "--policies",
            POLICIES,
            "x.yaml",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--profile structural loads no policies",
        ));
}

#[test]
fn an_annotation_only_host_process_pod_is_told_which_annotation_made_it_one() {
    let (code, out, _) = stdout_of(&mut check(&[&data("modes/annotation-only.yaml")]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("deny  [HG-MATCH-01] metadata.annotations[microsoft.com/hostprocess-inherit-user]: no HostProcessPolicy admits HostProcess pods in namespace \"team-a\" with service account \"default\" (it sets hostProcess nowhere: its annotation microsoft.com/hostprocess-inherit-user makes it a HostProcess pod)"),
        "{out}"
    );
}

/// Findings on the file as written: PSA's text for the container-level-only pod, the defaults
/// reported on their own, and every format pointing at the `hostProcess: true` line.
#[test]
fn findings_point_at_the_field_as_written_in_every_format() {
    let file = data("modes/container-level.yaml");
    let args = ["check", "--no-policies", "--profile", "baseline"];
    let (code, out, _) = stdout_of(hostgate().args(args).arg(&file));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  deny  [HP-PSA-01] spec.containers[0].securityContext.windowsOptions.hostProcess: hostProcess (container \"agent\" must not set securityContext.windowsOptions.hostProcess=true) (policy builtin-baseline; container \"agent\")\n"),
        "{out}"
    );
    assert!(
        out.contains("  would be defaulted: spec.securityContext.windowsOptions.hostProcess: set to true, as every container sets it\n"),
        "{out}"
    );

    let (_, sarif, _) = stdout_of(hostgate().args(args).args(["-o", "sarif", &file]));
    let v: Value = serde_json::from_str(&sarif).expect("sarif");
    let result = &v["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "HP-PSA-01");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"],
        serde_json::json!({"startLine": 14, "startColumn": 9})
    );

    let (_, json, _) = stdout_of(hostgate().args(args).args(["-o", "json", &file]));
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(
        v["results"][0]["locations"]["spec.containers[0].securityContext.windowsOptions.hostProcess"],
        serde_json::json!({"line": 14, "column": 9})
    );

    let (_, junit, _) = stdout_of(hostgate().args(args).args(["-o", "junit", &file]));
    let doc = roxmltree::Document::parse(&junit).expect("xml");
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase"))
        .expect("testcase");
    assert_eq!(case.attribute("line"), Some("14"));
    let failure = case
        .children()
        .find(|n| n.has_tag_name("failure"))
        .and_then(|n| n.text())
        .unwrap_or("");
    assert!(
        failure.contains("(at tests/data/cli/modes/container-level.yaml:14:9)"),
        "{failure}"
    );
}

/// `hostgate suggest` prints policies that `hostgate check -p` reads and that admit the input.
#[test]
fn suggest_prints_policies_that_admit_exactly_the_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = [
        data("manifests/denied.yaml"),
        data("modes/container-level.yaml"),
    ];
    let (code, yaml, err) = stdout_of(hostgate().args(["suggest", "--mode", "Audit"]).args(&input));
    assert_eq!(code, 0, "{err}");
    assert!(yaml.contains("kind: HostProcessPolicy\n"), "{yaml}");
    assert!(yaml.contains("  mode: Audit\n"), "{yaml}");
    assert!(
        yaml.contains(
            "#   DaemonSet agents/rogue (tests/data/cli/manifests/denied.yaml, document 1)\n"
        ),
        "{yaml}"
    );
    let policies = dir.path().join("suggested.yaml");
    std::fs::write(&policies, &yaml).expect("write");
    let (code, out, err) = stdout_of(
        hostgate()
            .args(["check", "--fail-on", "audit", "--policies"])
            .arg(&policies)
            .args(&input),
    );
    assert_eq!(code, 0, "{out}{err}\n{yaml}");
    // Standard input, and bad input exits 2.
    hostgate()
        .args(["suggest", "-"])
        .write_stdin(std::fs::read(data("manifests/denied.yaml")).expect("read"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "serviceAccounts: ['agents/default']",
        ));
    hostgate()
        .args(["suggest", &data("bad/wrong-api.yaml")])
        .assert()
        .code(2);
}

/// A pod with an ephemeral container: refused as a create by the apiserver's own rule, and
/// judged with --update as the webhook judges `kubectl debug`, where the policy allows none.
#[test]
fn ephemeral_containers_are_judged_as_updates() {
    let (code, stdout, _) = stdout_of(&mut check(&[&data("ephemeral/debugged.yaml")]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("[HP-API-05]"), "{stdout}");
    let (code, stdout, _) = stdout_of(&mut check(&["--update", &data("ephemeral/debugged.yaml")]));
    assert_eq!(code, 1, "{stdout}");
    assert!(!stdout.contains("[HP-API-05]"), "{stdout}");
    assert!(
        stdout
            .contains("[HG-EPHEMERAL-01] spec.ephemeralContainers[0]: ephemeral container refused"),
        "{stdout}"
    );
}
