//! `hostgate check` and `hostgate test` as a library: the same engine as the webhook, over
//! manifest files.
//!
//! - [`check`] reads files, directories and standard input ([`input`]), splits them into
//!   documents and `List` items, judges every Pod and workload with
//!   [`engine::evaluate`], and returns a [`Report`]; [`output`] writes
//!   it as text, JSON, JUnit XML or SARIF.
//! - [`suite`] runs co-located policy test cases (`hostgate-test.yaml`).
//!
//! Reading is bounded (a size limit per file, [`crate::manifest`]'s limits per document) and
//! never panics on bad input: every problem becomes an [`InputError`] naming the file, the
//! document, the `List` item and the field. Plain block-style YAML takes a fast path
//! ([`yaml`]) that gives the same results as the full reader several times faster.

pub mod cluster;
pub mod input;
pub mod namespaces;
mod objects;
pub mod output;
pub mod position;
pub mod report;
pub mod suggest;
pub mod suite;
pub mod yaml;

use std::sync::Arc;

pub use input::{DEFAULT_MAX_FILE_SIZE, Input};
pub use namespaces::NamespaceLabels;
pub use report::{
    FailOn, InputError, ObjectResult, Report, Skipped, SourceRef, Status, Summary, Verdict,
};

use crate::engine::{self, EvalContext};
use crate::manifest::ReadError;
use crate::object::Workload;
use crate::policy::PolicySet;
use crate::policy::load::load_policies;
use crate::rules::ids;
use crate::rules::structural::StructuralOptions;
use objects::{Expanded, Read, Tree};
use position::Position;

/// Why a document without `apiVersion` and `kind` is not judged.
pub const NOT_AN_OBJECT: &str =
    "not a Kubernetes object (neither apiVersion nor kind; --strict makes this an error)";

/// Everything a check needs besides its inputs.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The policies, compiled once.
    pub policies: PolicySet,
    /// Namespace of objects that do not set `metadata.namespace`.
    pub default_namespace: String,
    /// Known namespace labels, for `namespaceSelector`s.
    pub namespace_labels: NamespaceLabels,
    /// Cluster facts for the structural rules (`--allow-privileged`).
    pub structural: StructuralOptions,
    /// Largest input file read.
    pub max_file_size: u64,
    /// Judge HostProcess objects as the mutating webhook would default them (as the cluster
    /// does), rather than exactly as written.
    pub apply_defaults: bool,
    /// Documents with neither `apiVersion` nor `kind` are errors instead of being skipped as
    /// "not a Kubernetes object".
    pub strict: bool,
    /// A HostProcess object must be admitted by a policy (`HG-MATCH-01` otherwise). False for
    /// `--no-policies` and `--profile structural`, which judge only the structural rules and
    /// the profile.
    pub require_admission: bool,
    /// With defaults: the RuntimeClass a webhook run with `--runtime-class` names for the
    /// HostProcess objects it approves that name none.
    pub runtime_class: Option<String>,
}

impl CheckOptions {
    /// Defaults: namespace `default`, no labels, a default cluster, 16 MiB files.
    pub fn new(policies: PolicySet) -> Self {
        CheckOptions {
            policies,
            default_namespace: "default".to_owned(),
            namespace_labels: NamespaceLabels::new(),
            structural: StructuralOptions::default(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            apply_defaults: true,
            strict: false,
            require_admission: true,
            runtime_class: None,
        }
    }
}

/// Checks every object in `inputs`.
pub fn check(inputs: &[Input], opts: &CheckOptions) -> Report {
    let mut report = Report::default();
    let files = input::expand(inputs, &mut report.errors);
    report.files += report.errors.len();
    for file in &files {
        report.files += 1;
        match input::read(file, opts.max_file_size) {
            Ok(bytes) => check_bytes(&mut report, Arc::clone(&file.name), &bytes, opts),
            Err(e) => report.errors.push(e),
        }
    }
    report
}

/// Reads every judged kind of object in `inputs` without judging it (for `hostgate suggest`);
/// skipped kinds, non-objects and errors go to the report as `hostgate check` counts them.
pub fn read_objects(inputs: &[Input], opts: &CheckOptions) -> (Vec<(SourceRef, Workload)>, Report) {
    let mut report = Report::default();
    let mut objects = Vec::new();
    let files = input::expand(inputs, &mut report.errors);
    report.files += report.errors.len();
    for file in &files {
        report.files += 1;
        match input::read(file, opts.max_file_size) {
            Ok(bytes) => read_bytes(
                &mut report,
                Arc::clone(&file.name),
                &bytes,
                opts,
                Some(&mut objects),
            ),
            Err(e) => report.errors.push(e),
        }
    }
    (objects, report)
}

/// Checks the objects in one file's bytes, adding to `report`.
pub fn check_bytes(report: &mut Report, file: Arc<str>, bytes: &[u8], opts: &CheckOptions) {
    read_bytes(report, file, bytes, opts, None);
}

fn read_bytes(
    report: &mut Report,
    file: Arc<str>,
    bytes: &[u8],
    opts: &CheckOptions,
    keep: Option<&mut Vec<(SourceRef, Workload)>>,
) {
    let mut run = Run {
        report,
        opts,
        file: &file,
        keep,
    };
    if let Some(parsed) = yaml::parse_file(bytes) {
        for d in &parsed.docs {
            let locate = |path: &str| Some(parsed.locate(d, &position::segments(path)));
            run.document(&d.node, d.index, Some(d.line), &locate);
        }
        return;
    }
    let (docs, err) = crate::manifest::read_documents(bytes);
    let lines = yaml::document_lines(bytes);
    let line = |index: usize| lines.get(index - 1).copied().flatten();
    // Parsed for positions only when some object has a finding.
    let trees = std::cell::OnceCell::new();
    for (k, d) in docs.iter().enumerate() {
        let locate = |path: &str| {
            let trees = trees.get_or_init(|| position::trees(bytes));
            // Both readers leave out empty documents; if they disagree, positions are unknown.
            (trees.len() == docs.len())
                .then(|| trees.get(k))
                .flatten()
                .map(|t| t.locate(&position::segments(path)))
        };
        run.document(&d.value, d.index, line(d.index), &locate);
    }
    if let Some(e) = err {
        let (document, message) = match e {
            ReadError::Syntax { document, message } => (Some(document), message),
            ReadError::TooLarge { document, limit } => (
                Some(document),
                format!("expands to more than {limit} values (YAML alias bomb?)"),
            ),
            other => (None, other.to_string()),
        };
        run.report.errors.push(InputError {
            file: Arc::clone(&file),
            document,
            item: None,
            line: document.and_then(line),
            path: None,
            message,
        });
    }
}

/// One file being checked.
struct Run<'r> {
    report: &'r mut Report,
    opts: &'r CheckOptions,
    file: &'r Arc<str>,
    /// Keep the objects here instead of judging them ([`read_objects`]).
    keep: Option<&'r mut Vec<(SourceRef, Workload)>>,
}

/// Where a field path of the current document is.
type Locate<'l> = &'l dyn Fn(&str) -> Option<Position>;

impl Run<'_> {
    fn document<T: Tree>(
        &mut self,
        doc: &T,
        index: usize,
        line: Option<usize>,
        locate: Locate<'_>,
    ) {
        let source = |item: Option<usize>| SourceRef {
            file: Arc::clone(self.file),
            document: index,
            item,
            line,
        };
        match objects::expand(doc) {
            Expanded::One(t) => self.object(t, source(None), &|p: &str| locate(p)),
            Expanded::List(items) => {
                for (i, t) in items.iter().enumerate() {
                    let in_item = |p: &str| locate(&format!("items[{i}].{p}"));
                    self.object(t, source(Some(i + 1)), &in_item);
                }
            }
            Expanded::BadList => self.report.errors.push(InputError {
                file: Arc::clone(self.file),
                document: Some(index),
                item: None,
                line,
                path: Some("items".to_owned()),
                message: "a List must have a list of items".to_owned(),
            }),
        }
    }

    fn object<T: Tree>(&mut self, t: &T, source: SourceRef, locate: Locate<'_>) {
        match objects::read_object(t) {
            Read::Judged(w) if self.keep.is_some() => {
                if let Some(keep) = self.keep.as_mut() {
                    keep.push((source, *w));
                }
            }
            Read::Judged(w) => {
                let mut result = judge(&w, source, self.opts);
                for f in result.decision.findings() {
                    if !result.locations.contains_key(&f.path)
                        && let Some(at) = locate(&f.path)
                    {
                        result.locations.insert(f.path.clone(), at);
                    }
                }
                self.report.results.push(result);
            }
            Read::Skipped(u) => self.report.skipped.push(Skipped {
                source,
                api_version: u.api_version,
                kind: u.kind,
                namespace: u.namespace,
                name: u.name,
                owner: None,
            }),
            Read::NotObject if self.opts.strict => self.report.errors.push(InputError {
                file: source.file,
                document: Some(source.document),
                item: source.item,
                line: source.line,
                path: None,
                message: NOT_AN_OBJECT.to_owned(),
            }),
            Read::NotObject => self.report.not_objects.push(source),
            Read::Bad(e) => {
                let (path, message) = objects::describe(e);
                self.report.errors.push(InputError {
                    file: source.file,
                    document: Some(source.document),
                    item: source.item,
                    line: source.line,
                    path,
                    message,
                });
            }
        }
    }
}

/// Evaluates one object in its namespace.
pub fn judge(w: &Workload, source: SourceRef, opts: &CheckOptions) -> ObjectResult {
    let namespace = w
        .namespace()
        .filter(|n| !n.is_empty())
        .unwrap_or(&opts.default_namespace);
    let mut defaulted = Vec::new();
    let decision = match w.pod() {
        Some(pod) => {
            let ctx = EvalContext {
                namespace,
                namespace_labels: opts.namespace_labels.get(namespace),
                structural: opts.structural,
            };
            if opts.apply_defaults && pod.has_host_process_setting() {
                // Only HostProcess objects are defaulted: the clone is paid for them alone.
                let mut copy = w.clone();
                let defaulting = crate::defaults::DefaultingOptions {
                    runtime_class: opts.runtime_class.as_deref(),
                };
                let d = crate::defaults::default_workload_with(
                    &opts.policies,
                    &mut copy,
                    &ctx,
                    defaulting,
                );
                defaulted = d.changes;
                let mut decision = d.decision;
                if !defaulted.is_empty() {
                    as_written_findings(&mut decision, &pod, &defaulted);
                }
                decision
            } else {
                engine::evaluate(&opts.policies, &pod, &ctx)
            }
        }
        // Workload::from_value refuses objects without a pod spec; nothing to judge.
        None => crate::decision::Decision {
            allowed: true,
            ..Default::default()
        },
    };
    let mut decision = decision;
    if !opts.require_admission {
        // No policy is loaded, so admission can only have said "no policy matches".
        decision.denials.retain(|f| f.rule != ids::NO_POLICY);
        decision.allowed = decision.denials.is_empty();
    }
    ObjectResult {
        source,
        api_version: w.kind().api_version(),
        kind: w.kind().name(),
        namespace: namespace.to_owned(),
        name: w.name().to_owned(),
        verdict: Verdict::of(&decision),
        decision,
        defaulted,
        locations: std::collections::BTreeMap::new(),
    }
}

/// Makes the findings on a defaulted object speak of the object as written: Pod Security
/// Admission's finding is the one PSA gives for the object as written (defaulting sets
/// pod-level `hostProcess`, which the file may not have), and a finding on a field that only
/// defaulting filled in says so. The verdict stays the defaulted object's, as in the cluster.
fn as_written_findings(
    decision: &mut crate::decision::Decision,
    as_written: &hostgate_core::pod::PodView<'_>,
    defaulted: &[crate::defaults::Change],
) {
    let mut written_psa = None;
    if decision.findings().any(|f| f.rule == ids::PSA_HOST_PROCESS) {
        let mut found = Vec::new();
        hostgate_core::rules::baseline::check(as_written, &mut found);
        written_psa = found.into_iter().next();
    }
    for list in [
        &mut decision.denials,
        &mut decision.warnings,
        &mut decision.audits,
    ] {
        for f in list.iter_mut() {
            if f.rule == ids::PSA_HOST_PROCESS {
                if let Some(w) = &written_psa {
                    f.path.clone_from(&w.path);
                    f.message.clone_from(&w.message);
                    f.containers.clone_from(&w.containers);
                }
            } else if defaulted.iter().any(|c| !c.corrected && c.path == f.path) {
                f.message
                    .push_str(" (this field is not in the file: defaulting would set it)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::parse_policies;

    const POLICY: &str = r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: agents}
spec:
  match:
    namespaceSelector: {matchLabels: {hostgate.io/agents: allowed}}
  allow:
    images: ["registry.example/*"]
    runAsUserNames: ['NT AUTHORITY\Local service']
"#;

    fn opts() -> CheckOptions {
        let (policies, errs) = parse_policies(POLICY.as_bytes(), "p.yaml");
        assert!(errs.is_empty(), "{errs:?}");
        CheckOptions::new(PolicySet::new(policies).expect("set"))
    }

    fn hp_pod(name: &str, ns: Option<&str>, image: &str) -> String {
        let ns = ns
            .map(|n| format!("  namespace: {n}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n{ns}spec:\n  hostNetwork: true\n  securityContext:\n    windowsOptions:\n      hostProcess: true\n      runAsUserName: NT AUTHORITY\\Local service\n  containers:\n  - name: c\n    image: {image}\n"
        )
    }

    fn run(text: &str, opts: &CheckOptions) -> Report {
        let mut r = Report::default();
        check_bytes(&mut r, Arc::from("in.yaml"), text.as_bytes(), opts);
        r
    }

    #[test]
    fn objects_are_judged_as_the_webhook_defaults_them_unless_told_otherwise() {
        let mut o = opts();
        o.namespace_labels
            .insert("agents", "hostgate.io/agents", "allowed");
        // No runAsUserName: the webhook would set NT AUTHORITY\Local service.
        let pod = hp_pod("a", Some("agents"), "registry.example/x")
            .replace("      runAsUserName: NT AUTHORITY\\Local service\n", "");
        let r = run(&pod, &o);
        assert_eq!(r.results[0].verdict, Verdict::Allowed, "{:?}", r.results[0]);
        let paths: Vec<_> = r.results[0]
            .defaulted
            .iter()
            .map(|c| c.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "spec.securityContext.windowsOptions.runAsUserName",
                "spec.nodeSelector[kubernetes.io/os]"
            ]
        );
        o.apply_defaults = false;
        let r = run(&pod, &o);
        assert_eq!(r.results[0].verdict, Verdict::Denied);
        assert_eq!(r.results[0].decision.denials[0].rule, "HG-USER-01");
        assert!(r.results[0].defaulted.is_empty());
    }

    #[test]
    fn a_corrected_field_is_not_said_to_be_missing_from_the_file() {
        let mut o = opts();
        o.namespace_labels
            .insert("agents", "hostgate.io/agents", "allowed");
        // Defaulting corrects the domain's spelling; the account is still not allowed.
        let pod = hp_pod("a", Some("agents"), "registry.example/x").replace(
            "runAsUserName: NT AUTHORITY\\Local service",
            "runAsUserName: nt authority\\system",
        );
        let r = run(&pod, &o);
        let result = &r.results[0];
        assert_eq!(result.verdict, Verdict::Denied, "{result:?}");
        assert_eq!(
            result.defaulted[0].description,
            "domain spelled \"NT AUTHORITY\""
        );
        let denial = &result.decision.denials[0];
        assert_eq!(denial.rule, "HG-USER-02");
        assert_eq!(denial.path, result.defaulted[0].path);
        assert!(
            !denial.message.contains("not in the file"),
            "{}",
            denial.message
        );
    }

    #[test]
    fn namespace_comes_from_the_object_or_the_default() {
        let mut o = opts();
        o.default_namespace = "agents".into();
        o.namespace_labels
            .insert("agents", "hostgate.io/agents", "allowed");
        let text = format!(
            "{}---\n{}",
            hp_pod("a", None, "registry.example/x"),
            hp_pod("b", Some("other"), "registry.example/x")
        );
        let r = run(&text, &o);
        assert_eq!(r.errors, []);
        let got: Vec<_> = r
            .results
            .iter()
            .map(|x| {
                (
                    x.name.as_str(),
                    x.namespace.as_str(),
                    x.verdict,
                    x.source.document,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", "agents", Verdict::Allowed, 1),
                ("b", "other", Verdict::Denied, 2)
            ]
        );
        assert_eq!(r.results[0].decision.policy.as_deref(), Some("agents"));
        assert_eq!(r.results[1].decision.denials[0].rule, "HG-MATCH-01");
    }

    #[test]
    fn lists_items_skipped_kinds_and_errors_keep_their_positions() {
        let o = opts();
        let pod = serde_json::to_string(
            &serde_json::from_str::<serde_json::Value>(
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}"#,
            )
            .expect("json"),
        )
        .expect("json");
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc}}\n---\napiVersion: v1\nkind: List\nitems:\n- {pod}\n- apiVersion: v1\n  kind: ConfigMap\n- apiVersion: v1\n  kind: Pod\n  spec:\n    containers:\n    - name: c\n      securityContext:\n        windowsOptions:\n          hostProcess: \"true\"\n---\nkind: Deployment\napiVersion: extensions/v1beta1\n---\na: [1\n"
        );
        let r = run(&text, &o);
        assert_eq!(r.results.len(), 1);
        assert_eq!(
            r.results[0].source.to_string(),
            "in.yaml, document 2, item 1"
        );
        assert_eq!(r.results[0].verdict, Verdict::Allowed);
        let skipped: Vec<_> = r
            .skipped
            .iter()
            .map(|s| (s.kind.as_str(), s.source.document, s.source.item))
            .collect();
        assert_eq!(skipped, [("Service", 1, None), ("ConfigMap", 2, Some(2))]);
        let errors: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].starts_with("in.yaml: document 2, item 3: spec.containers[0].securityContext.windowsOptions.hostProcess: invalid type: string \"true\""),
            "{}",
            errors[0]
        );
        assert_eq!(
            errors[1],
            "in.yaml: document 3: apiVersion: \"extensions/v1beta1\" is not served for kind Deployment (expected \"apps/v1\")"
        );
        assert!(
            errors[2].starts_with("in.yaml: document 4: "),
            "{}",
            errors[2]
        );
        assert_eq!(r.errors[2].line, Some(23));
        assert_eq!(r.status(FailOn::Deny), Status::BadInput);
    }

    #[test]
    fn allow_privileged_false_reaches_the_structural_rules() {
        let mut o = opts();
        o.namespace_labels
            .insert("default", "hostgate.io/agents", "allowed");
        let text = hp_pod("a", None, "registry.example/x");
        assert_eq!(run(&text, &o).results[0].verdict, Verdict::Allowed);
        o.structural.allow_privileged = false;
        let r = run(&text, &o);
        assert_eq!(r.results[0].verdict, Verdict::Denied);
        assert!(
            r.results[0]
                .decision
                .denials
                .iter()
                .any(|f| f.rule == "HP-API-04")
        );
    }

    /// A pod that is HostProcess at container level only, as the issue reported it.
    const CONTAINER_LEVEL: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: c-only\n  namespace: agents\nspec:\n  hostNetwork: true\n  containers:\n  - name: agent\n    image: registry.example/agent\n    securityContext:\n      windowsOptions:\n        hostProcess: true\n        runAsUserName: NT AUTHORITY\\Local service\n";

    fn baseline_opts() -> CheckOptions {
        let mut o = opts();
        o.policies = o
            .policies
            .clone()
            .with_profile(crate::policy::Profile::Baseline);
        o
    }

    #[test]
    fn findings_speak_of_the_object_as_written_and_point_at_the_field() {
        let psa_path = "spec.containers[0].securityContext.windowsOptions.hostProcess";
        let want_message = "hostProcess (container \"agent\" must not set securityContext.windowsOptions.hostProcess=true)";
        let json = serde_json::to_string_pretty(
            &serde_yaml::from_str::<serde_json::Value>(CONTAINER_LEVEL).expect("yaml"),
        )
        .expect("json");
        let crlf_bom = format!("\u{feff}{}", CONTAINER_LEVEL.replace('\n', "\r\n"));
        // Flow style takes the full reader and the serde-saphyr locator.
        let flow = CONTAINER_LEVEL.replace(
            "    securityContext:\n      windowsOptions:\n        hostProcess: true\n        runAsUserName: NT AUTHORITY\\Local service\n",
            "    securityContext: {windowsOptions: {hostProcess: true, runAsUserName: 'NT AUTHORITY\\Local service'}}\n",
        );
        let cases = [
            (
                CONTAINER_LEVEL.to_owned(),
                Position {
                    line: 13,
                    column: 9,
                },
            ),
            (
                crlf_bom,
                Position {
                    line: 13,
                    column: 9,
                },
            ),
            (
                flow,
                Position {
                    line: 11,
                    column: 40,
                },
            ),
            (
                json,
                Position {
                    line: 15,
                    column: 13,
                },
            ),
        ];
        for (text, at) in cases {
            let r = run(&text, &baseline_opts());
            let result = &r.results[0];
            let psa: Vec<_> = result
                .decision
                .denials
                .iter()
                .filter(|f| f.rule == "HP-PSA-01")
                .collect();
            assert_eq!(psa.len(), 1, "{text}");
            assert_eq!(psa[0].path, psa_path, "{text}");
            assert_eq!(psa[0].message, want_message, "{text}");
            assert_eq!(result.locations.get(psa_path), Some(&at), "{text}");
            // Defaulting set pod-level hostProcess; it is reported on its own.
            assert!(
                result
                    .defaulted
                    .iter()
                    .any(|c| c.path == "spec.securityContext.windowsOptions.hostProcess"),
                "{:?}",
                result.defaulted
            );
        }
    }

    #[test]
    fn findings_in_list_items_and_missing_fields_are_located() {
        let mut o = opts();
        o.policies = PolicySet::default();
        let item = CONTAINER_LEVEL
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
            .replacen("  apiVersion", "- apiVersion", 1);
        let text = format!("apiVersion: v1\nkind: List\nitems:\n{item}");
        let r = run(&text, &o);
        let result = &r.results[0];
        // HG-MATCH-01 is about the whole spec: the `spec:` key of the item.
        assert_eq!(result.decision.denials[0].rule, "HG-MATCH-01");
        assert_eq!(
            result.locations.get("spec"),
            Some(&Position { line: 9, column: 3 })
        );
    }

    #[test]
    fn a_pod_with_ten_thousand_containers_is_judged() {
        let o = opts();
        let mut text = String::from(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers:\n",
        );
        for i in 0..10_000 {
            text.push_str(&format!("  - name: c{i}\n    image: registry.example/x\n"));
        }
        let r = run(&text, &o);
        assert_eq!(r.errors, []);
        assert_eq!(r.results[0].verdict, Verdict::Allowed);
    }
}
