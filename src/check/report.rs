//! What `hostgate check` found: one [`ObjectResult`] per judged object, the objects it skipped,
//! and the inputs it could not read.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::decision::Decision;

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRef {
    /// The file as given on the command line (or found below a directory); `<stdin>` for `-`.
    pub file: Arc<str>,
    /// 1-based document in the file (`---`-separated YAML documents, or concatenated JSON
    /// values); 0 for an object read from a cluster, whose `file` is `cluster:<apiserver path>`.
    pub document: usize,
    /// 1-based item of a `List` document (`items[item - 1]`), when the object is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// 1-based line where the document starts, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// `file, document N[, item M]`; only `file` for objects read from a cluster (document 0).
impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == 0 {
            return f.write_str(&self.file);
        }
        write!(f, "{}, document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

/// The verdict on one object, in one word. The webhook's [`crate::admission::Verdict`] has the
/// same meaning for a review (it counts audits as `allowed` and adds `skipped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Allowed, with no warnings and no audit findings.
    Allowed,
    /// Allowed, with at least one audit finding and no warnings.
    Audited,
    /// Allowed, with at least one warning.
    Warned,
    /// Refused.
    Denied,
}

impl Verdict {
    /// The verdict on a decision.
    pub fn of(d: &Decision) -> Verdict {
        if !d.allowed {
            Verdict::Denied
        } else if !d.warnings.is_empty() {
            Verdict::Warned
        } else if !d.audits.is_empty() {
            Verdict::Audited
        } else {
            Verdict::Allowed
        }
    }

    /// `allowed`, `audited`, `warned` or `denied`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Audited => "audited",
            Verdict::Warned => "warned",
            Verdict::Denied => "denied",
        }
    }
}

/// Which outcomes make `hostgate check` fail (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailOn {
    /// Only denials.
    #[default]
    Deny,
    /// Denials and warnings.
    Warn,
    /// Denials, warnings and audit findings.
    Audit,
}

impl FailOn {
    /// Whether an object with `verdict` fails the run.
    pub fn fails(self, verdict: Verdict) -> bool {
        match self {
            FailOn::Deny => verdict == Verdict::Denied,
            FailOn::Warn => verdict >= Verdict::Warned,
            FailOn::Audit => verdict >= Verdict::Audited,
        }
    }
}

/// How a run ended, which the CLI maps to its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything read and nothing failed: exit 0.
    Passed,
    /// Some object failed (see [`FailOn`]): exit 1.
    Failed,
    /// Some input could not be read or is not a valid object: exit 2, whatever else happened.
    BadInput,
}

impl Status {
    /// 0, 1 or 2.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Passed => 0,
            Status::Failed => 1,
            Status::BadInput => 2,
        }
    }
}

/// One judged object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectResult {
    /// Where it came from.
    pub source: SourceRef,
    /// Its `apiVersion`.
    pub api_version: &'static str,
    /// Its `kind`.
    pub kind: &'static str,
    /// The namespace it was judged in: `metadata.namespace`, else `--namespace`.
    pub namespace: String,
    /// `metadata.name` (or `generateName`); empty if neither is set.
    pub name: String,
    /// The verdict in one word (the JSON key is `outcome`, as it always was).
    #[serde(rename = "outcome")]
    pub verdict: Verdict,
    /// The engine's decision.
    pub decision: Decision,
    /// What hostgate's mutating webhook would fill in before judging (see `crate::defaults`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub defaulted: Vec<crate::defaults::Change>,
    /// Where each finding's field is in the file, by field path: the field itself, or its
    /// deepest ancestor that the file has (a required field that is missing).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub locations: BTreeMap<String, super::position::Position>,
}

/// An object of a kind hostgate does not judge (a Service, a ConfigMap…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// Where it came from.
    pub source: SourceRef,
    /// Its `apiVersion`.
    pub api_version: String,
    /// Its `kind`.
    pub kind: String,
    /// `metadata.namespace`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For `check --cluster`: the judged controller (`DaemonSet csi-proxy`) whose pod template
    /// this object runs, which is why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// An input that could not be read, or a document that is not a valid object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputError {
    /// The file (`<stdin>` for `-`).
    pub file: Arc<str>,
    /// 1-based document, when the error is inside one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// 1-based item of a `List` document, when the error is inside one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// 1-based line where the document starts, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Field path inside the object (`spec.containers[0].securityContext…`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    /// An error about a whole file.
    pub fn file(file: Arc<str>, message: impl Into<String>) -> Self {
        InputError {
            file,
            document: None,
            item: None,
            line: None,
            path: None,
            message: message.into(),
        }
    }
}

/// `<file>: document <n>[, item <m>]: <field path>: <message>`, leaving out what is not known.
impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
            if let Some(i) = self.item {
                write!(f, ", item {i}")?;
            }
        }
        if let Some(p) = &self.path {
            write!(f, ": {p}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Counts over a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Files read (or attempted).
    pub files: usize,
    /// Judged objects.
    pub objects: usize,
    /// Objects allowed with no findings.
    pub allowed: usize,
    /// Objects allowed with audit findings only.
    pub audited: usize,
    /// Objects allowed with warnings.
    pub warned: usize,
    /// Objects refused.
    pub denied: usize,
    /// Objects of kinds hostgate does not judge.
    pub skipped: usize,
    /// Documents with neither `apiVersion` nor `kind` (Helm values, kustomizations, schemas).
    pub not_objects: usize,
    /// Unreadable inputs and invalid objects.
    pub errors: usize,
}

/// Everything one run of `hostgate check` found, in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Files read (or attempted).
    pub files: usize,
    /// Judged objects.
    pub results: Vec<ObjectResult>,
    /// Objects of kinds hostgate does not judge.
    pub skipped: Vec<Skipped>,
    /// Documents that are not Kubernetes objects (neither `apiVersion` nor `kind`).
    pub not_objects: Vec<SourceRef>,
    /// Unreadable inputs and invalid objects.
    pub errors: Vec<InputError>,
}

impl Report {
    /// Counts.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            files: self.files,
            objects: self.results.len(),
            skipped: self.skipped.len(),
            not_objects: self.not_objects.len(),
            errors: self.errors.len(),
            ..Summary::default()
        };
        for r in &self.results {
            match r.verdict {
                Verdict::Allowed => s.allowed += 1,
                Verdict::Audited => s.audited += 1,
                Verdict::Warned => s.warned += 1,
                Verdict::Denied => s.denied += 1,
            }
        }
        s
    }

    /// How the run ended: bad input dominates failures.
    pub fn status(&self, fail_on: FailOn) -> Status {
        if !self.errors.is_empty() {
            Status::BadInput
        } else if self.results.iter().any(|r| fail_on.fails(r.verdict)) {
            Status::Failed
        } else {
            Status::Passed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: Verdict) -> ObjectResult {
        ObjectResult {
            defaulted: Vec::new(),
            locations: BTreeMap::new(),
            source: SourceRef {
                file: Arc::from("f.yaml"),
                document: 1,
                item: None,
                line: None,
            },
            api_version: "v1",
            kind: "Pod",
            namespace: "default".into(),
            name: "p".into(),
            verdict: outcome,
            decision: Decision::default(),
        }
    }

    #[test]
    fn status_orders_bad_input_over_failures() {
        let mut r = Report::default();
        assert_eq!(r.status(FailOn::Deny), Status::Passed);
        r.results.push(result(Verdict::Warned));
        assert_eq!(r.status(FailOn::Deny), Status::Passed);
        assert_eq!(r.status(FailOn::Warn), Status::Failed);
        r.results.push(result(Verdict::Audited));
        assert!(FailOn::Audit.fails(Verdict::Audited));
        assert!(!FailOn::Warn.fails(Verdict::Audited));
        r.results.push(result(Verdict::Denied));
        assert_eq!(r.status(FailOn::Deny), Status::Failed);
        r.errors
            .push(InputError::file(Arc::from("x.yaml"), "unreadable"));
        assert_eq!(r.status(FailOn::Deny), Status::BadInput);
        assert_eq!(r.status(FailOn::Deny).exit_code(), 2);
        let s = r.summary();
        assert_eq!(
            (s.objects, s.warned, s.audited, s.denied, s.errors),
            (3, 1, 1, 1, 1)
        );
    }

    #[test]
    fn error_display_leaves_out_what_is_unknown() {
        let mut e = InputError::file(Arc::from("a.yaml"), "binary data");
        assert_eq!(e.to_string(), "a.yaml: binary data");
        e.document = Some(2);
        e.item = Some(3);
        e.path = Some("spec.containers[0]".into());
        assert_eq!(
            e.to_string(),
            "a.yaml: document 2, item 3: spec.containers[0]: binary data"
        );
    }
}
