//! `hostgate test`: policy test cases that live next to the policies, in the spirit of
//! `kyverno test`.
//!
//! A suite is a `hostgate-test.yaml` file, usually in a policy's `tests/` directory:
//!
//! ```yaml
//! apiVersion: hostgate.io/v1alpha1
//! kind: PolicyTest
//! metadata: {name: csi-proxy}
//! policies: [../policy.yaml]        # relative to this file; default: the directory above tests/
//! profile: baseline                 # optional built-in profile
//! namespaces:                       # optional namespace labels, for namespaceSelector
//!   kube-system: {pod-security.kubernetes.io/enforce: privileged}
//! resources: [pass.yaml, fail.yaml] # manifests relative to this file (multi-document, Lists)
//! results:
//! - resources: [csi-proxy-node]     # metadata.name, or Kind/name
//!   result: allow                   # allow | warn | audit | deny
//!   policy: csi-proxy               # optional
//!   rules: [HG-IMAGE-01]            # optional
//! ```
//!
//! Meaning of `result`: `allow` = allowed with no warnings and no audit findings; `warn` =
//! allowed with at least one warning; `audit` = allowed with at least one audit finding;
//! `deny` = refused. `policy` is the admitting policy for `allow`, `warn` and `audit`; for
//! `deny` some denial must come from it. Every id in `rules` must be among the denials (`deny`),
//! warnings (`warn`) or audit findings (`audit`); `rules` cannot be given with `allow`.
//!
//! Each pair of a `results` entry and an object it names is a case that passes or fails. A suite
//! is in error (not merely failing) when the file is malformed, a policy or resource does not
//! load, a named object does not exist, or a judged object is covered by no entry.
//! `docs/policy-tests.md` describes the format for policy authors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::output::xml::escape;
use super::report::{ObjectResult, Report, SourceRef, Verdict};
use super::{CheckOptions, NamespaceLabels, check_bytes, input, load_policies};
use crate::decision::{Decision, Finding};
use crate::manifest;
use crate::policy::{API_VERSION, Profile};

/// The file name of a suite.
pub const FILE_NAME: &str = "hostgate-test.yaml";
/// `kind` of a suite.
pub const KIND: &str = "PolicyTest";
/// `kind` of the JSON report of `hostgate test`.
pub const REPORT_KIND: &str = "PolicyTestReport";

/// Largest suite file read.
const MAX_SUITE_FILE: u64 = 1024 * 1024;

/// A `hostgate-test.yaml` file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTest {
    /// `hostgate.io/v1alpha1`
    pub api_version: String,
    /// `PolicyTest`
    pub kind: String,
    /// The suite's name.
    pub metadata: TestMetadata,
    /// Policy files and directories, relative to the suite file. Absent: the directory above the
    /// suite's `tests/` directory (directories are loaded without their `tests/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// A built-in profile to add (`baseline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// Labels per namespace, for `namespaceSelector`s.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Manifest files, relative to the suite file.
    pub resources: Vec<String>,
    /// What is expected of the objects in `resources`.
    pub results: Vec<ExpectedResult>,
}

/// `metadata` of a suite.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestMetadata {
    /// The suite's name.
    pub name: String,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One expectation, for one or more objects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedResult {
    /// Object names (`metadata.name`), or `Kind/name`.
    pub resources: Vec<String>,
    /// The expected verdict.
    pub result: Expect,
    /// The admitting policy (`allow`, `warn`, `audit`), or a policy some denial comes from
    /// (`deny`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Rule ids that must all be among the denials, warnings or audit findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

/// An expected (or actual) verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Allowed, with no warnings and no audit findings.
    Allow,
    /// Allowed, with at least one warning.
    Warn,
    /// Allowed, with at least one audit finding.
    Audit,
    /// Refused.
    Deny,
}

impl Expect {
    /// `allow`, `warn`, `audit` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Warn => "warn",
            Expect::Audit => "audit",
            Expect::Deny => "deny",
        }
    }

    /// The verdict a decision shows (warnings take precedence over audit findings).
    pub fn of(d: &Decision) -> Expect {
        match Verdict::of(d) {
            Verdict::Allowed => Expect::Allow,
            Verdict::Audited => Expect::Audit,
            Verdict::Warned => Expect::Warn,
            Verdict::Denied => Expect::Deny,
        }
    }

    /// Whether `d` satisfies this expectation.
    pub fn holds(self, d: &Decision) -> bool {
        match self {
            Expect::Allow => d.allowed && d.warnings.is_empty() && d.audits.is_empty(),
            Expect::Warn => d.allowed && !d.warnings.is_empty(),
            Expect::Audit => d.allowed && !d.audits.is_empty(),
            Expect::Deny => !d.allowed,
        }
    }

    /// The findings `rules` are looked for in.
    pub fn findings(self, d: &Decision) -> &[Finding] {
        match self {
            Expect::Allow => &[],
            Expect::Warn => &d.warnings,
            Expect::Audit => &d.audits,
            Expect::Deny => &d.denials,
        }
    }
}

/// A suite file, read and checked, with its paths resolved.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The suite file.
    pub file: PathBuf,
    /// Its contents.
    pub test: PolicyTest,
    /// Policy files and directories to load.
    pub policy_paths: Vec<PathBuf>,
}

/// A problem with a suite file, a policy or a resource: the suite cannot run as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteError(pub String);

impl std::fmt::Display for SuiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SuiteError {}

impl Suite {
    /// Reads and checks a suite file.
    pub fn load(file: &Path) -> Result<Suite, SuiteError> {
        let name = file.display().to_string();
        let source = input::SourceFile {
            name: Arc::from(name.as_str()),
            path: Some(file.to_owned()),
        };
        let bytes = input::read(&source, MAX_SUITE_FILE).map_err(|e| SuiteError(e.to_string()))?;
        Self::parse(&bytes, file)
    }

    /// Reads a suite from its bytes; `file` places relative paths and names it in errors.
    pub fn parse(bytes: &[u8], file: &Path) -> Result<Suite, SuiteError> {
        let name = file.display().to_string();
        let err = |path: &str, message: &str| {
            let sep = if path.is_empty() { "" } else { ": " };
            SuiteError(format!("{name}: {path}{sep}{message}"))
        };
        let (docs, read_error) = manifest::read_documents(bytes);
        if let Some(e) = read_error {
            return Err(SuiteError(format!("{name}: {e}")));
        }
        let value = match docs.as_slice() {
            [one] => one.value.clone(),
            [] => return Err(err("", "empty: expected a PolicyTest")),
            _ => return Err(err("", "expected exactly one PolicyTest document")),
        };
        let api_version = value.get("apiVersion").and_then(Value::as_str);
        if api_version != Some(API_VERSION) {
            return Err(err(
                "apiVersion",
                &format!("expected {API_VERSION:?}, found {api_version:?}"),
            ));
        }
        let kind = value.get("kind").and_then(Value::as_str);
        if kind != Some(KIND) {
            return Err(err("kind", &format!("expected {KIND:?}, found {kind:?}")));
        }
        let test: PolicyTest = manifest::from_value(value).map_err(|e| err(&e.path, &e.message))?;
        if test.metadata.name.is_empty() {
            return Err(err("metadata.name", "is required"));
        }
        if test.resources.is_empty() {
            return Err(err("resources", "list at least one manifest file"));
        }
        if test.results.is_empty() {
            return Err(err("results", "list at least one expected result"));
        }
        for (i, r) in test.results.iter().enumerate() {
            if r.resources.is_empty() {
                return Err(err(
                    &format!("results[{i}].resources"),
                    "name at least one object",
                ));
            }
            if r.result == Expect::Allow && !r.rules.is_empty() {
                return Err(err(
                    &format!("results[{i}].rules"),
                    "an allowed object has no findings: use result warn, audit or deny",
                ));
            }
            for (j, rule) in r.rules.iter().enumerate() {
                if crate::rules::info(rule).is_none() {
                    return Err(err(
                        &format!("results[{i}].rules[{j}]"),
                        &format!("unknown rule id {rule:?}"),
                    ));
                }
            }
        }
        let base = file.parent().unwrap_or(Path::new("."));
        let policy_paths = match &test.policies {
            Some(paths) => paths.iter().map(|p| base.join(p)).collect(),
            None if base.file_name().is_some_and(|n| n == "tests") => {
                vec![base.parent().unwrap_or(Path::new(".")).to_owned()]
            }
            None => {
                return Err(err(
                    "policies",
                    "required when the test file is not in a tests/ directory",
                ));
            }
        };
        Ok(Suite {
            file: file.to_owned(),
            test,
            policy_paths,
        })
    }

    /// Runs the suite.
    pub fn run(&self) -> SuiteResult {
        let mut out = SuiteResult {
            file: self.file.display().to_string(),
            name: self.test.metadata.name.clone(),
            cases: Vec::new(),
            errors: Vec::new(),
        };
        let policies = match load_policies(&self.policy_paths, self.test.profile) {
            Ok(p) => p,
            Err(errors) => {
                out.errors
                    .extend(errors.0.iter().map(|e| format!("policies: {e}")));
                return out;
            }
        };
        let mut opts = CheckOptions::new(policies);
        opts.namespace_labels = self
            .test
            .namespaces
            .clone()
            .into_iter()
            .collect::<NamespaceLabels>();

        let base = self.file.parent().unwrap_or(Path::new("."));
        let mut report = Report::default();
        for resource in &self.test.resources {
            let file = input::SourceFile {
                name: Arc::from(resource.as_str()),
                path: Some(base.join(resource)),
            };
            match input::read(&file, opts.max_file_size) {
                Ok(bytes) => check_bytes(&mut report, Arc::clone(&file.name), &bytes, &opts),
                Err(e) => report.errors.push(e),
            }
        }
        out.errors
            .extend(report.errors.iter().map(|e| format!("resources: {e}")));

        let mut covered = vec![false; report.results.len()];
        for (i, expected) in self.test.results.iter().enumerate() {
            for (j, wanted) in expected.resources.iter().enumerate() {
                let (kind, name) = match wanted.split_once('/') {
                    Some((k, n)) => (Some(k), n),
                    None => (None, wanted.as_str()),
                };
                let mut found = false;
                for (k, r) in report.results.iter().enumerate() {
                    if r.name == name && kind.is_none_or(|kind| kind == r.kind) {
                        found = true;
                        covered[k] = true;
                        out.cases.push(compare(expected, r));
                    }
                }
                if !found {
                    out.errors.push(format!(
                        "results[{i}].resources[{j}]: no object {wanted:?} in {}",
                        self.test.resources.join(", ")
                    ));
                }
            }
        }
        for (r, _) in report.results.iter().zip(&covered).filter(|(_, c)| !**c) {
            out.errors.push(format!(
                "{} {}/{} ({}) is covered by no entry of results",
                r.kind, r.namespace, r.name, r.source
            ));
        }
        out
    }
}

/// Compares one object's decision with an expectation.
fn compare(expected: &ExpectedResult, r: &ObjectResult) -> CaseResult {
    let d = &r.decision;
    let mut reasons = Vec::new();
    let actual = Expect::of(d);
    if !expected.result.holds(d) {
        reasons.push(format!(
            "expected {}, got {}",
            expected.result.as_str(),
            actual.as_str()
        ));
    }
    if let Some(want) = &expected.policy {
        match expected.result {
            Expect::Deny => {
                if !d
                    .denials
                    .iter()
                    .any(|f| f.policy.as_deref() == Some(want.as_str()))
                {
                    reasons.push(format!("no denial comes from policy {want}"));
                }
            }
            _ => {
                if d.policy.as_deref() != Some(want.as_str()) {
                    reasons.push(match &d.policy {
                        Some(p) => format!("admitted by policy {p}, not {want}"),
                        None => format!("not admitted by policy {want}"),
                    });
                }
            }
        }
    }
    let findings = expected.result.findings(d);
    for rule in &expected.rules {
        if !findings.iter().any(|f| f.rule == rule) {
            reasons.push(format!(
                "rule {rule} is not among the {}",
                match expected.result {
                    Expect::Deny => "denials",
                    Expect::Warn => "warnings",
                    _ => "audit findings",
                }
            ));
        }
    }
    let rules_of = |fs: &[Finding]| {
        let mut ids: Vec<String> = fs.iter().map(|f| f.rule.to_owned()).collect();
        ids.dedup();
        ids
    };
    CaseResult {
        object: ObjectRef {
            kind: r.kind,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            source: r.source.clone(),
        },
        passed: reasons.is_empty(),
        expected: Judgement {
            result: expected.result,
            policy: expected.policy.clone(),
            rules: expected.rules.clone(),
        },
        actual: Judgement {
            result: actual,
            policy: d.policy.as_deref().map(str::to_owned),
            rules: rules_of(actual.findings(d)),
        },
        reasons,
        decision: d.clone(),
    }
}

/// An object a case is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    /// Its kind.
    pub kind: &'static str,
    /// The namespace it was judged in.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Where it came from (the file as written in `resources`).
    pub source: SourceRef,
}

/// What a test case expects of an object, or what the engine decided: the result with its
/// admitting policy and rule ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    /// allow, warn, audit or deny.
    pub result: Expect,
    /// The admitting policy (expected: as written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Rule ids (expected: as written; actual: those of the findings that go with `result`).
    pub rules: Vec<String>,
}

impl std::fmt::Display for Judgement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.result.as_str())?;
        if let Some(p) = &self.policy {
            write!(f, " by policy {p}")?;
        }
        if !self.rules.is_empty() {
            write!(f, " [{}]", self.rules.join(", "))?;
        }
        Ok(())
    }
}

/// One object checked against one expectation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    /// The object.
    pub object: ObjectRef,
    /// Whether the expectation holds.
    pub passed: bool,
    /// What the suite expects.
    pub expected: Judgement,
    /// What the engine decided.
    pub actual: Judgement,
    /// Why the case failed (empty when it passed).
    pub reasons: Vec<String>,
    /// The full decision.
    pub decision: Decision,
}

/// The outcome of one suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteResult {
    /// The suite file.
    pub file: String,
    /// `metadata.name` (the file name when it could not be read).
    pub name: String,
    /// Every case, in the order of `results`.
    pub cases: Vec<CaseResult>,
    /// Why the suite cannot run as written (malformed file, policy or resource errors, unknown
    /// or uncovered objects).
    pub errors: Vec<String>,
}

impl SuiteResult {
    /// A suite that could not be loaded.
    pub fn failed_to_load(file: &Path, error: SuiteError) -> Self {
        SuiteResult {
            file: file.display().to_string(),
            name: file.display().to_string(),
            cases: Vec::new(),
            errors: vec![error.0],
        }
    }

    /// No errors and every case passed.
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.cases.iter().all(|c| c.passed)
    }
}

/// Finds every `hostgate-test.yaml` at or below `paths` (a path may also name a suite file),
/// in name order, skipping hidden directories.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SuiteError> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), SuiteError> {
        if depth > 32 {
            return Ok(());
        }
        let entries =
            std::fs::read_dir(dir).map_err(|e| SuiteError(format!("{}: {e}", dir.display())))?;
        let mut children: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        children.sort();
        for child in children {
            if child.is_dir() {
                walk(&child, depth + 1, out)?;
            } else if child.file_name().is_some_and(|n| n == FILE_NAME) {
                out.push(child);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| SuiteError(format!("{}: {e}", p.display())))?;
        if meta.is_dir() {
            walk(p, 0, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Loads and runs one suite file.
pub fn run_file(file: &Path) -> SuiteResult {
    match Suite::load(file) {
        Ok(s) => s.run(),
        Err(e) => {
            let mut result = SuiteResult::failed_to_load(file, e);
            if let Some(name) = name_of_malformed(file) {
                result.name = name;
            }
            result
        }
    }
}

/// `metadata.name` of a suite file that does not load, if it can be read at all.
fn name_of_malformed(file: &Path) -> Option<String> {
    let source = input::SourceFile {
        name: Arc::from(""),
        path: Some(file.to_owned()),
    };
    let bytes = input::read(&source, MAX_SUITE_FILE).ok()?;
    let (docs, _) = manifest::read_documents(&bytes);
    let value = &docs.first()?.value;
    value.pointer("/metadata/name")?.as_str().map(str::to_owned)
}

/// Every suite of one `hostgate test` run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TestReport {
    /// The suites, in discovery order.
    pub suites: Vec<SuiteResult>,
}

/// Counts over a [`TestReport`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TestSummary {
    /// Suites run.
    pub suites: usize,
    /// Cases run.
    pub cases: usize,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Suite errors.
    pub errors: usize,
}

impl TestReport {
    /// Runs every suite file.
    pub fn run(files: &[PathBuf]) -> Self {
        TestReport {
            suites: files.iter().map(|f| run_file(f)).collect(),
        }
    }

    /// Counts.
    pub fn summary(&self) -> TestSummary {
        let mut s = TestSummary {
            suites: self.suites.len(),
            ..TestSummary::default()
        };
        for suite in &self.suites {
            s.cases += suite.cases.len();
            s.passed += suite.cases.iter().filter(|c| c.passed).count();
            s.errors += suite.errors.len();
        }
        s.failed = s.cases - s.passed;
        s
    }

    /// 2 if any suite is in error, 1 if any case failed, else 0.
    pub fn exit_code(&self) -> u8 {
        let s = self.summary();
        if s.errors > 0 {
            2
        } else if s.failed > 0 {
            1
        } else {
            0
        }
    }
}

/// Writes `PASS`/`FAIL`/`ERROR` lines per suite and a summary.
pub fn write_text(w: &mut dyn Write, report: &TestReport, color: bool) -> io::Result<()> {
    let paint = |code: &'static str, text: &'static str| {
        if color {
            format!("{code}{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    for suite in &report.suites {
        writeln!(w, "{}: {}", suite.file, suite.name)?;
        for c in &suite.cases {
            let o = &c.object;
            let name = if o.name.is_empty() {
                "<unnamed>"
            } else {
                &o.name
            };
            if c.passed {
                writeln!(
                    w,
                    "  {} {} {}/{name} ({}): {}",
                    paint("\x1b[32m", "PASS"),
                    o.kind,
                    o.namespace,
                    o.source,
                    c.actual
                )?;
            } else {
                writeln!(
                    w,
                    "  {} {} {}/{name} ({}): expected {}; got {}: {}",
                    paint("\x1b[1;31m", "FAIL"),
                    o.kind,
                    o.namespace,
                    o.source,
                    c.expected,
                    c.actual,
                    c.reasons.join("; ")
                )?;
                for f in c.decision.findings() {
                    writeln!(w, "       {f}")?;
                }
            }
        }
        for e in &suite.errors {
            writeln!(w, "  {} {e}", paint("\x1b[1;31m", "ERROR"))?;
        }
    }
    let s = report.summary();
    writeln!(
        w,
        "{} {}, {} {}: {} passed, {} failed; {} {}",
        s.suites,
        if s.suites == 1 { "suite" } else { "suites" },
        s.cases,
        if s.cases == 1 { "case" } else { "cases" },
        s.passed,
        s.failed,
        s.errors,
        if s.errors == 1 { "error" } else { "errors" }
    )
}

/// Writes a `PolicyTestReport` JSON document: `{"apiVersion", "kind", "suites": [{"file",
/// "name", "passed", "cases": [{"object", "passed", "expected", "actual", "reasons",
/// "decision"}], "errors"}], "summary": {"suites", "cases", "passed", "failed", "errors"}}`.
pub fn write_json(w: &mut dyn Write, report: &TestReport) -> io::Result<()> {
    #[derive(Serialize)]
    struct SuiteJson<'a> {
        #[serde(flatten)]
        suite: &'a SuiteResult,
        passed: bool,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope<'a> {
        api_version: &'static str,
        kind: &'static str,
        suites: Vec<SuiteJson<'a>>,
        summary: TestSummary,
    }
    let envelope = Envelope {
        api_version: API_VERSION,
        kind: REPORT_KIND,
        suites: report
            .suites
            .iter()
            .map(|s| SuiteJson {
                suite: s,
                passed: s.passed(),
            })
            .collect(),
        summary: report.summary(),
    };
    serde_json::to_writer_pretty(&mut *w, &envelope)?;
    writeln!(w)
}

/// Writes JUnit XML: a `<testsuite>` per suite, a `<testcase>` per case, an `<error>` test case
/// per suite error.
pub fn write_junit(w: &mut dyn Write, report: &TestReport) -> io::Result<()> {
    let s = report.summary();
    writeln!(w, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        w,
        r#"<testsuites name="hostgate test" tests="{}" failures="{}" errors="{}">"#,
        s.cases + s.errors,
        s.failed,
        s.errors
    )?;
    for suite in &report.suites {
        let failed = suite.cases.iter().filter(|c| !c.passed).count();
        writeln!(
            w,
            r#"  <testsuite name="{}" file="{}" tests="{}" failures="{failed}" errors="{}" skipped="0">"#,
            escape(&suite.name),
            escape(&suite.file),
            suite.cases.len() + suite.errors.len(),
            suite.errors.len()
        )?;
        for c in &suite.cases {
            let o = &c.object;
            let mut name = String::new();
            let _ = write!(
                name,
                "{} {}/{}: {}",
                o.kind, o.namespace, o.name, c.expected
            );
            write!(
                w,
                r#"    <testcase classname="{}" name="{}" file="{}""#,
                escape(&suite.name),
                escape(&name),
                escape(&o.source.file)
            )?;
            if c.passed {
                writeln!(w, "/>")?;
                continue;
            }
            let body = c
                .decision
                .findings()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            writeln!(w, ">")?;
            writeln!(
                w,
                r#"      <failure message="{}" type="{}">{}</failure>"#,
                escape(&format!(
                    "expected {}; got {}: {}",
                    c.expected,
                    c.actual,
                    c.reasons.join("; ")
                )),
                c.actual.result.as_str(),
                escape(&body)
            )?;
            writeln!(w, "    </testcase>")?;
        }
        for (i, e) in suite.errors.iter().enumerate() {
            writeln!(
                w,
                r#"    <testcase classname="{}" name="error {}"><error message="{}" type="SuiteError"/></testcase>"#,
                escape(&suite.name),
                i + 1,
                escape(e)
            )?;
        }
        writeln!(w, "  </testsuite>")?;
    }
    writeln!(w, "</testsuites>")
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: agent}
spec:
  match: {namespaces: [agents]}
  allow:
    images: ["registry.example/*"]
    runAsUserNames: ['NT AUTHORITY\Local service']
---
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: lenient}
spec:
  mode: Warn
  match: {namespaces: [lenient]}
  allow:
    images: ["registry.example/*"]
"#;

    fn pod(name: &str, ns: &str, image: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hostNetwork: true\n  securityContext:\n    windowsOptions: {{hostProcess: true, runAsUserName: 'NT AUTHORITY\\Local service'}}\n  containers:\n  - {{name: c, image: {image}}}\n"
        )
    }

    /// A policy directory with `tests/` holding `resources.yaml` and the given suite.
    fn layout(suite: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_dir = dir.path().join("agent");
        std::fs::create_dir_all(policy_dir.join("tests")).expect("mkdir");
        std::fs::write(policy_dir.join("policy.yaml"), POLICY).expect("write");
        let resources = [
            pod("good", "agents", "registry.example/a"),
            pod("bad-image", "agents", "docker.io/a"),
            pod("elsewhere", "other", "registry.example/a"),
            pod("warned", "lenient", "docker.io/a"),
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: plain}, spec: {containers: [{name: c}]}}\n- {apiVersion: v1, kind: Service, metadata: {name: svc}}\n".to_owned(),
        ]
        .join("---\n");
        std::fs::write(policy_dir.join("tests/resources.yaml"), resources).expect("write");
        let file = policy_dir.join("tests").join(FILE_NAME);
        std::fs::write(&file, suite).expect("write");
        (dir, file)
    }

    const PASSING: &str = r#"apiVersion: hostgate.io/v1alpha1
kind: PolicyTest
metadata: {name: agent}
resources: [resources.yaml]
results:
- resources: [good]
  result: allow
  policy: agent
- resources: [Pod/bad-image]
  result: deny
  policy: agent
  rules: [HG-IMAGE-01]
- resources: [elsewhere]
  result: deny
  rules: [HG-MATCH-01]
- resources: [warned]
  result: warn
  policy: lenient
  rules: [HG-IMAGE-01]
- resources: [plain]
  result: allow
"#;

    #[test]
    fn a_passing_suite() {
        let (_dir, file) = layout(PASSING);
        let result = run_file(&file);
        assert_eq!(result.errors, Vec::<String>::new());
        assert_eq!(result.cases.len(), 5);
        assert!(result.passed(), "{result:#?}");
        let report = TestReport {
            suites: vec![result],
        };
        assert_eq!(report.exit_code(), 0);
        let mut out = Vec::new();
        write_text(&mut out, &report, false).expect("writes");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains(
                "  PASS Pod agents/good (resources.yaml, document 1): allow by policy agent\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("1 suite, 5 cases: 5 passed, 0 failed; 0 errors\n"),
            "{text}"
        );
    }

    #[test]
    fn each_kind_of_failure() {
        let failing = PASSING
            .replace(
                "result: allow\n  policy: agent",
                "result: allow\n  policy: other",
            )
            .replace("rules: [HG-IMAGE-01]\n", "rules: [HG-IMAGE-02]\n")
            .replace(
                "rules: [HG-MATCH-01]",
                "rules: [HG-MATCH-01]\n  policy: agent",
            )
            .replace("result: warn", "result: audit")
            .replace(
                "- resources: [plain]\n  result: allow",
                "- resources: [plain]\n  result: deny",
            );
        let (_dir, file) = layout(&failing);
        let result = run_file(&file);
        assert_eq!(result.errors, Vec::<String>::new());
        let reasons: Vec<Vec<String>> = result.cases.iter().map(|c| c.reasons.clone()).collect();
        assert_eq!(
            reasons,
            [
                vec!["admitted by policy agent, not other".to_owned()],
                vec!["rule HG-IMAGE-02 is not among the denials".to_owned()],
                vec!["no denial comes from policy agent".to_owned()],
                vec![
                    "expected audit, got warn".to_owned(),
                    "rule HG-IMAGE-02 is not among the audit findings".to_owned()
                ],
                vec!["expected deny, got allow".to_owned()],
            ]
        );
        let report = TestReport {
            suites: vec![result],
        };
        assert_eq!(report.exit_code(), 1);
        let mut out = Vec::new();
        write_text(&mut out, &report, false).expect("writes");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("  FAIL Pod agents/bad-image (resources.yaml, document 2): expected deny by policy agent [HG-IMAGE-02]; got deny [HG-IMAGE-01]: rule HG-IMAGE-02 is not among the denials\n"),
            "{text}"
        );
    }

    #[test]
    fn unknown_and_uncovered_objects_are_errors() {
        let suite = PASSING.replace("[good]", "[missing]");
        let (_dir, file) = layout(&suite);
        let result = run_file(&file);
        assert_eq!(
            result.errors,
            [
                "results[0].resources[0]: no object \"missing\" in resources.yaml",
                "Pod agents/good (resources.yaml, document 1) is covered by no entry of results"
            ]
        );
        assert_eq!(
            TestReport {
                suites: vec![result]
            }
            .exit_code(),
            2
        );
    }

    #[test]
    fn malformed_suites() {
        let cases = [
            (
                PASSING.replace(
                    "result: deny\n  policy: agent",
                    "result: refuse\n  policy: agent",
                ),
                "results[1].result: unknown variant `refuse`",
            ),
            (
                PASSING.replace("resources: [resources.yaml]", "resource: [resources.yaml]"),
                "resource: unknown field `resource`",
            ),
            (
                PASSING.replace("kind: PolicyTest", "kind: Test"),
                "kind: expected \"PolicyTest\"",
            ),
            (
                PASSING.replace("[HG-MATCH-01]", "[HG-NOPE-01]"),
                "results[2].rules[0]: unknown rule id \"HG-NOPE-01\"",
            ),
            (
                PASSING.replace(
                    "- resources: [plain]\n  result: allow",
                    "- resources: [plain]\n  result: allow\n  rules: [HG-IMAGE-01]",
                ),
                "results[4].rules: an allowed object has no findings",
            ),
        ];
        for (text, want) in cases {
            let (_dir, file) = layout(&text);
            let result = run_file(&file);
            assert_eq!(result.errors.len(), 1, "{want}");
            assert!(
                result.errors[0].contains(want),
                "{}\nwant {want}",
                result.errors[0]
            );
            assert_eq!(
                TestReport {
                    suites: vec![result]
                }
                .exit_code(),
                2
            );
        }
        let (_dir, file) = layout(&PASSING.replace("resources.yaml]", "nothing.yaml]"));
        let result = run_file(&file);
        assert!(
            result.errors[0].starts_with("resources: nothing.yaml: "),
            "{:?}",
            result.errors
        );
    }

    #[test]
    fn json_and_junit() {
        let (_dir, file) = layout(&PASSING.replace("result: warn", "result: deny"));
        let report = TestReport {
            suites: vec![run_file(&file)],
        };
        let mut out = Vec::new();
        write_json(&mut out, &report).expect("writes");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["kind"], "PolicyTestReport");
        assert_eq!(v["suites"][0]["passed"], false);
        assert_eq!(v["suites"][0]["cases"][3]["expected"]["result"], "deny");
        assert_eq!(v["suites"][0]["cases"][3]["actual"]["result"], "warn");
        assert_eq!(v["summary"]["failed"], 1);
        let mut out = Vec::new();
        write_junit(&mut out, &report).expect("writes");
        let text = String::from_utf8(out).expect("utf-8");
        let doc = roxmltree::Document::parse(&text).expect("xml");
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("testcase"))
                .count(),
            5
        );
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("failure"))
                .count(),
            1
        );
    }

    #[test]
    fn discovers_suite_files() {
        let (dir, file) = layout(PASSING);
        std::fs::create_dir_all(dir.path().join(".hidden/tests")).expect("mkdir");
        std::fs::write(dir.path().join(".hidden/tests").join(FILE_NAME), "x").expect("write");
        assert_eq!(discover(&[dir.path().to_owned()]), Ok(vec![file.clone()]));
        assert_eq!(discover(std::slice::from_ref(&file)), Ok(vec![file]));
        assert!(discover(&[dir.path().join("nope")]).is_err());
    }
}
