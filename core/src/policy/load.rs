//! Loading policies from YAML/JSON files and directories.
//!
//! A directory is read recursively in name order. Hidden entries (`.git`, and the `..data`
//! machinery of a kubelet-mounted ConfigMap, whose visible files are symlinks into it) and
//! `tests/` directories (co-located policy test cases) are skipped. Every document of a loaded file
//! must be a `HostProcessPolicy`; every error names the file, the document and the field.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::compile::{CompiledPolicy, PolicySet};
use super::model::{API_VERSION, HostProcessPolicy, KIND, Profile};
use crate::manifest::{self, ReadError};

/// Largest policy file accepted.
pub const MAX_POLICY_FILE: u64 = 4 * 1024 * 1024;

/// The policy directory used when none is given: `policies/` in the current directory.
pub const DEFAULT_POLICY_DIR: &str = "policies";
/// Environment variable naming the policy directory when `./policies` does not exist.
pub const POLICIES_ENV: &str = "HOSTGATE_POLICIES";

/// The default policy directory: `<cwd>/policies` if it exists, else `$HOSTGATE_POLICIES` if
/// set and not empty.
pub fn default_policy_dir(cwd: &Path, env: Option<&OsStr>) -> Option<PathBuf> {
    let local = cwd.join(DEFAULT_POLICY_DIR);
    if local.is_dir() {
        return Some(PathBuf::from(DEFAULT_POLICY_DIR));
    }
    env.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Loads policies from files and directories (none: an empty set), adding a built-in profile.
pub fn load_policies(
    paths: &[PathBuf],
    profile: Option<Profile>,
) -> Result<PolicySet, PolicyErrors> {
    let set = if paths.is_empty() {
        PolicySet::new(Vec::new()).map_err(|e| {
            PolicyErrors(vec![PolicyError {
                source: String::new(),
                document: None,
                path: None,
                message: e.to_string(),
            }])
        })?
    } else {
        load_paths(paths)?
    };
    Ok(match profile {
        Some(p) => set.with_profile(p),
        None => set,
    })
}

/// Why a policy could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file (or cluster object, `HostProcessPolicy/<name>`) it came from.
    pub source: String,
    /// 1-based document index inside the file, when known.
    pub document: Option<usize>,
    /// Field path inside the document, when known.
    pub path: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        if let Some(p) = &self.path {
            write!(f, ": {p}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PolicyError {}

/// Every error found while loading a set of policies (loading does not stop at the first one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Loads every policy under the given files and directories into one set.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<PolicySet, PolicyErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        collect_files(p.as_ref(), &mut files, &mut errors);
    }
    let mut policies = Vec::new();
    for file in &files {
        match std::fs::metadata(file) {
            Ok(m) if m.len() > MAX_POLICY_FILE => {
                errors.push(file_error(
                    file,
                    format!(
                        "{} bytes is larger than the {MAX_POLICY_FILE}-byte limit for policy files",
                        m.len()
                    ),
                ));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                errors.push(file_error(file, e.to_string()));
                continue;
            }
        }
        match std::fs::read(file) {
            Ok(bytes) => {
                let (parsed, errs) = parse_policies(&bytes, &file.display().to_string());
                policies.extend(parsed);
                errors.extend(errs);
            }
            Err(e) => errors.push(file_error(file, e.to_string())),
        }
    }
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    PolicySet::new(policies).map_err(|e| {
        PolicyErrors(vec![PolicyError {
            source: paths
                .iter()
                .map(|p| p.as_ref().display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            document: None,
            path: Some("metadata.name".to_owned()),
            message: e.to_string(),
        }])
    })
}

/// A fingerprint of every policy file's path and contents under `paths`, to notice changes
/// (including the kubelet's `..data` symlink swap of a mounted ConfigMap) without parsing.
pub fn fingerprint<P: AsRef<Path>>(paths: &[P]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        collect_files(p.as_ref(), &mut files, &mut errors);
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in &files {
        file.hash(&mut hasher);
        match std::fs::read(file) {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(e) => e.kind().hash(&mut hasher),
        }
    }
    errors.len().hash(&mut hasher);
    hasher.finish()
}

fn file_error(file: &Path, message: String) -> PolicyError {
    PolicyError {
        source: file.display().to_string(),
        document: None,
        path: None,
        message,
    }
}

/// Whether a directory entry should be read as policies.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name == "tests"
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<PolicyError>) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            errors.push(file_error(path, e.to_string()));
            return;
        }
    };
    if !meta.is_dir() {
        files.push(path.to_owned());
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) => {
            errors.push(file_error(path, e.to_string()));
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !skipped(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    children.sort();
    for child in children {
        if child.is_dir() {
            collect_files(&child, files, errors);
        } else if is_manifest(&child) {
            files.push(child);
        }
    }
}

/// Parses and compiles the policies in one file's bytes. `source` names the file in errors.
pub fn parse_policies(bytes: &[u8], source: &str) -> (Vec<CompiledPolicy>, Vec<PolicyError>) {
    let (docs, read_error) = manifest::read_documents(bytes);
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    for doc in docs {
        match compile_value(doc.value) {
            Ok(p) => policies.push(p),
            Err((path, message)) => errors.push(PolicyError {
                source: source.to_owned(),
                document: Some(doc.index),
                path,
                message,
            }),
        }
    }
    if let Some(e) = read_error {
        let document = match &e {
            ReadError::Syntax { document, .. } | ReadError::TooLarge { document, .. } => {
                Some(*document)
            }
            _ => None,
        };
        let message = match e {
            ReadError::Syntax { message, .. } => message,
            other => other.to_string(),
        };
        errors.push(PolicyError {
            source: source.to_owned(),
            document,
            path: None,
            message,
        });
    }
    (policies, errors)
}

const TOP_LEVEL_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// Checks type and shape of one document and compiles it. Errors carry the field path.
pub fn compile_value(value: Value) -> Result<CompiledPolicy, (Option<String>, String)> {
    let policy = policy_from_value(value)?;
    CompiledPolicy::compile(policy).map_err(|e| (Some(e.path), e.message))
}

/// Checks type and shape of one document and deserializes it, refusing unknown fields.
pub fn policy_from_value(value: Value) -> Result<HostProcessPolicy, (Option<String>, String)> {
    let Value::Object(map) = &value else {
        return Err((
            None,
            format!("expected a {KIND} object, found {}", kind_of(&value)),
        ));
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    if kind != Some(KIND) {
        return Err((
            Some("kind".to_owned()),
            format!("expected {KIND:?}, found {}", describe(kind)),
        ));
    }
    if api_version != Some(API_VERSION) {
        return Err((
            Some("apiVersion".to_owned()),
            format!("expected {API_VERSION:?}, found {}", describe(api_version)),
        ));
    }
    if let Some(unknown) = map.keys().find(|k| !TOP_LEVEL_FIELDS.contains(&k.as_str())) {
        return Err((Some(unknown.clone()), "unknown field".to_owned()));
    }
    if !map.contains_key("spec") {
        return Err((Some("spec".to_owned()), "is required".to_owned()));
    }
    manifest::from_value::<HostProcessPolicy>(value).map_err(|e| {
        let path = (!e.path.is_empty()).then_some(e.path);
        (path, e.message)
    })
}

fn describe(v: Option<&str>) -> String {
    v.map_or_else(|| "nothing".to_owned(), |s| format!("{s:?}"))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_dir_prefers_the_current_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = std::ffi::OsStr::new("/etc/hostgate/policies");
        assert_eq!(
            default_policy_dir(dir.path(), Some(env)),
            Some(PathBuf::from("/etc/hostgate/policies"))
        );
        assert_eq!(default_policy_dir(dir.path(), None), None);
        assert_eq!(
            default_policy_dir(dir.path(), Some(std::ffi::OsStr::new(""))),
            None
        );
        std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
        assert_eq!(
            default_policy_dir(dir.path(), Some(env)),
            Some(PathBuf::from("policies"))
        );
    }

    fn errors(yaml: &str) -> Vec<String> {
        let (_, errs) = parse_policies(yaml.as_bytes(), "p.yaml");
        errs.iter().map(ToString::to_string).collect()
    }

    const GOOD: &str = r#"
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata: {name: csi-proxy}
spec:
  match: {namespaces: [kube-system], serviceAccounts: [kube-system/csi-proxy]}
  allow:
    images: ["registry.example/csi-proxy@sha256:*"]
    runAsUserNames: ['NT AUTHORITY\SYSTEM']
  require: {limits: {cpu: "1", memory: 256Mi}}
  defaults: {runAsUserName: 'NT AUTHORITY\SYSTEM'}
"#;

    #[test]
    fn loads_a_good_policy() {
        let (policies, errs) = parse_policies(GOOD.as_bytes(), "p.yaml");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(policies.len(), 1);
        assert_eq!(&**policies[0].name(), "csi-proxy");
    }

    #[test]
    fn errors_name_file_document_and_field() {
        let cases = [
            (
                GOOD.replace("allow:", "alow:"),
                "p.yaml: document 1: spec.alow: unknown field `alow`, expected one of `mode`",
            ),
            (
                GOOD.replace("images:", "image:"),
                "p.yaml: document 1: spec.allow.image: unknown field `image`",
            ),
            (
                GOOD.replace("cpu: \"1\"", "cpu: lots"),
                "p.yaml: document 1: spec.require.limits.cpu: \"lots\": quantities must match",
            ),
            (
                GOOD.replace("v1alpha1", "v1"),
                "p.yaml: document 1: apiVersion: expected \"hostgate.io/v1alpha1\", found \"hostgate.io/v1\"",
            ),
            (
                GOOD.replace("kube-system/csi-proxy", "csi-proxy"),
                "p.yaml: document 1: spec.match.serviceAccounts[0]: \"csi-proxy\" must be <namespace>/<name>",
            ),
            (
                GOOD.replace("spec:\n", "spec:\n  mode: Block\n"),
                "p.yaml: document 1: spec.mode: unknown variant `Block`",
            ),
            (
                format!(
                    "{GOOD}---\n{}",
                    GOOD.replace("name: csi-proxy", "name: Bad_Name")
                ),
                "p.yaml: document 2: metadata.name: \"Bad_Name\" must be a lowercase RFC 1123 subdomain",
            ),
            (
                GOOD.replace("kind: HostProcessPolicy", "kind: Pod"),
                "p.yaml: document 1: kind: expected \"HostProcessPolicy\", found \"Pod\"",
            ),
            (
                GOOD.replace("metadata:", "extra: 1\nmetadata:"),
                "p.yaml: document 1: extra: unknown field",
            ),
            (
                GOOD.replace(
                    "defaults: {runAsUserName: 'NT AUTHORITY\\SYSTEM'}",
                    "defaults: {runAsUserName: 'NT AUTHORITY\\Local service'}",
                ),
                "p.yaml: document 1: spec.defaults.runAsUserName: \"NT AUTHORITY\\\\Local service\" is not in spec.allow.runAsUserNames",
            ),
        ];
        for (yaml, want) in cases {
            let got = errors(&yaml);
            assert_eq!(got.len(), 1, "{want}: {got:?}");
            assert!(
                got[0].starts_with(want),
                "got {:?}\nwant prefix {want:?}",
                got[0]
            );
        }
    }

    #[test]
    fn truncated_yaml_is_an_error_with_document() {
        let got = errors(&GOOD[..GOOD.len() - 30]);
        assert!(!got.is_empty());
        assert!(got[0].starts_with("p.yaml: document 1"), "{got:?}");
    }

    #[test]
    fn profile_cannot_carry_constraints() {
        let yaml = GOOD.replace("spec:\n", "spec:\n  profile: baseline\n");
        let got = errors(&yaml);
        assert_eq!(got.len(), 1);
        assert!(
            got[0].contains("spec.allow: cannot be combined with spec.profile"),
            "{got:?}"
        );
    }

    #[test]
    fn directory_loading_skips_tests_and_hidden_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("csi/tests")).expect("mkdir");
        std::fs::create_dir_all(root.join("..2026_11_26")).expect("mkdir");
        std::fs::write(root.join("csi/policy.yaml"), GOOD).expect("write");
        std::fs::write(root.join("csi/tests/pod.yaml"), "kind: Pod").expect("write");
        std::fs::write(root.join("..2026_11_26/ignored.yaml"), "kind: Pod").expect("write");
        std::fs::write(root.join("README.md"), "# not a policy").expect("write");
        let set = load_paths(&[root]).expect("loads");
        assert_eq!(set.len(), 1);

        std::fs::write(root.join("dup.yaml"), GOOD).expect("write");
        let err = load_paths(&[root]).expect_err("duplicate");
        assert!(err.to_string().contains("defined more than once"), "{err}");
    }
}
#[cfg(test)]
mod fingerprint_tests {
    #[test]
    fn fingerprint_changes_with_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("policies");
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(p.join("a.yaml"), "a").expect("write");
        let one = super::fingerprint(&[&p]);
        std::fs::write(p.join("b.yaml"), "b").expect("write");
        let two = super::fingerprint(&[&p]);
        assert_ne!(one, two);
        std::fs::write(p.join("b.yaml"), "c").expect("write");
        assert_ne!(two, super::fingerprint(&[&p]));
    }
}
