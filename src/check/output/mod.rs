//! Writing reports: text for people, JSON for scripts, JUnit XML and SARIF for CI systems.

pub mod json;
pub mod junit;
pub mod sarif;
pub mod text;
pub(crate) mod xml;

use std::io::{self, Write};

use super::report::{FailOn, Report};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Grouped per object, with a summary line.
    #[default]
    Text,
    /// One `CheckReport` document (see [`json`]).
    Json,
    /// JUnit XML: a test suite per file, a test case per object.
    Junit,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
}

/// When to colour text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// When standard output is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether to colour, given whether the output is a terminal and the value of `NO_COLOR`.
    pub fn enabled(self, is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
}

/// How to write a report.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputOptions {
    /// The format.
    pub format: Format,
    /// ANSI colours (text only).
    pub color: bool,
    /// List skipped objects (text only; JSON always lists them).
    pub verbose: bool,
    /// Only objects with findings (text only).
    pub quiet: bool,
    /// What counts as a failure (JUnit failures, SARIF's `executionSuccessful`).
    pub fail_on: FailOn,
}

/// Writes `report` in the chosen format.
pub fn write_report(w: &mut dyn Write, report: &Report, opts: &OutputOptions) -> io::Result<()> {
    match opts.format {
        Format::Text => text::write(w, report, opts),
        Format::Json => json::write(w, report),
        Format::Junit => junit::write(w, report, opts.fail_on),
        Format::Sarif => sarif::write(w, report),
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A report with one object of each outcome, an error, a skipped object, and nasty text.

    use std::sync::Arc;

    use crate::check::report::*;
    use crate::decision::{Decision, Finding};
    use crate::policy::Mode;

    fn source(file: &str, document: usize, item: Option<usize>) -> SourceRef {
        SourceRef {
            file: Arc::from(file),
            document,
            item,
            line: Some(document * 10),
        }
    }

    fn result(name: &str, file: &str, decision: Decision) -> ObjectResult {
        ObjectResult {
            defaulted: Vec::new(),
            locations: std::collections::BTreeMap::new(),
            source: source(file, 1, None),
            api_version: "apps/v1",
            kind: "DaemonSet",
            namespace: "kube-system".into(),
            name: name.into(),
            verdict: Verdict::of(&decision),
            decision,
        }
    }

    pub(crate) fn report() -> Report {
        let policy: Arc<str> = Arc::from("csi-proxy");
        let deny = Finding::new(
            "HG-IMAGE-01",
            "spec.template.spec.containers[0].image".into(),
            "image \"x<&>\\\"y\u{1}\" is not allowed".into(),
        )
        .with_policy(&policy)
        .with_containers(vec!["c&1".into()]);
        let deny2 = Finding::new(
            "HP-API-03",
            "spec.template.spec.hostNetwork".into(),
            "Invalid value: false: hostNetwork must be true".into(),
        );
        let warn = Finding::new(
            "HG-USER-02",
            "spec.template.spec.securityContext.windowsOptions.runAsUserName".into(),
            "not allowed".into(),
        )
        .with_policy(&policy);
        let audit = Finding::new(
            "HG-LIMITS-01",
            "spec.template.spec.containers[0].resources.limits.cpu".into(),
            "missing".into(),
        );
        Report {
            files: 3,
            results: vec![
                result(
                    "ok",
                    "deploy/a.yaml",
                    Decision {
                        allowed: true,
                        host_process: true,
                        policy: Some(Arc::clone(&policy)),
                        mode: Some(Mode::Enforce),
                        ..Decision::default()
                    },
                ),
                result(
                    "bad <one>",
                    "deploy/a.yaml",
                    Decision {
                        allowed: false,
                        host_process: true,
                        denials: vec![deny, deny2],
                        ..Decision::default()
                    },
                ),
                result(
                    "warned",
                    "deploy/b.yaml",
                    Decision {
                        allowed: true,
                        host_process: true,
                        policy: Some(Arc::clone(&policy)),
                        mode: Some(Mode::Warn),
                        warnings: vec![warn],
                        ..Decision::default()
                    },
                ),
                result(
                    "audited",
                    "deploy/b.yaml",
                    Decision {
                        allowed: true,
                        host_process: true,
                        policy: Some(Arc::clone(&policy)),
                        mode: Some(Mode::Audit),
                        audits: vec![audit],
                        ..Decision::default()
                    },
                ),
            ],
            skipped: vec![Skipped {
                source: source("deploy/b.yaml", 3, Some(2)),
                api_version: "v1".into(),
                kind: "Service".into(),
                namespace: None,
                name: Some("svc".into()),
                owner: None,
            }],
            not_objects: vec![source("chart/values.yaml", 1, None)],
            errors: vec![InputError {
                file: Arc::from("bad file's \"name\".yaml"),
                document: Some(2),
                item: None,
                line: Some(7),
                path: Some("spec.containers[0]".into()),
                message: "invalid type: string \"true\" <]]>".into(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn color_choice() {
        assert!(ColorChoice::Auto.enabled(true, None));
        assert!(ColorChoice::Auto.enabled(true, Some(OsStr::new(""))));
        assert!(!ColorChoice::Auto.enabled(true, Some(OsStr::new("1"))));
        assert!(!ColorChoice::Auto.enabled(false, None));
        assert!(ColorChoice::Always.enabled(false, Some(OsStr::new("1"))));
        assert!(!ColorChoice::Never.enabled(true, None));
    }
}
