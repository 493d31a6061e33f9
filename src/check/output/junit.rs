//! JUnit XML: one `<testsuite>` per input file, one `<testcase classname="<Kind>"
//! name="<namespace>/<name>" file="…" line="…">` per object (`line`: the first failing field's
//! line, else the object's), a `<failure>` for each object that fails the run (`type` = its rule
//! ids; each finding followed by `(at <file>:<line>:<column>)` when its field is located) and an
//! `<error>` test case for each bad input.

use std::io::{self, Write};

use super::xml::escape;
use crate::check::report::{FailOn, InputError, ObjectResult, Report, Verdict};
use crate::decision::Finding;

struct Group<'a> {
    file: &'a str,
    results: Vec<&'a ObjectResult>,
    errors: Vec<&'a InputError>,
}

impl<'a> Group<'a> {
    fn new(file: &'a str) -> Self {
        Group {
            file,
            results: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// Results and errors by file, files in order of first appearance.
fn groups(report: &Report) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for r in &report.results {
        let i = *index.entry(&r.source.file).or_insert_with(|| {
            out.push(Group::new(&r.source.file));
            out.len() - 1
        });
        out[i].results.push(r);
    }
    for e in &report.errors {
        let i = *index.entry(&e.file).or_insert_with(|| {
            out.push(Group::new(&e.file));
            out.len() - 1
        });
        out[i].errors.push(e);
    }
    out
}

/// The findings that make `r` fail under `fail_on`.
fn failing(r: &ObjectResult, fail_on: FailOn) -> Vec<(&'static str, &Finding)> {
    let d = &r.decision;
    let mut out: Vec<(&'static str, &Finding)> = d.denials.iter().map(|f| ("deny", f)).collect();
    if fail_on.fails(Verdict::Warned) {
        out.extend(d.warnings.iter().map(|f| ("warn", f)));
    }
    if fail_on.fails(Verdict::Audited) {
        out.extend(d.audits.iter().map(|f| ("audit", f)));
    }
    out
}

/// Writes the report as JUnit XML.
pub fn write(w: &mut dyn Write, report: &Report, fail_on: FailOn) -> io::Result<()> {
    let groups = groups(report);
    let failures = |g: &Group<'_>| {
        g.results
            .iter()
            .filter(|r| fail_on.fails(r.verdict))
            .count()
    };
    let total_failures: usize = groups.iter().map(failures).sum();
    writeln!(w, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        w,
        r#"<testsuites name="hostgate check" tests="{}" failures="{total_failures}" errors="{}">"#,
        report.results.len() + report.errors.len(),
        report.errors.len()
    )?;
    for g in &groups {
        let file = escape(g.file);
        writeln!(
            w,
            r#"  <testsuite name="{file}" tests="{}" failures="{}" errors="{}" skipped="0">"#,
            g.results.len() + g.errors.len(),
            failures(g),
            g.errors.len()
        )?;
        for r in &g.results {
            let name = if r.name.is_empty() {
                "<unnamed>"
            } else {
                &r.name
            };
            write!(
                w,
                r#"    <testcase classname="{}" name="{}" file="{file}""#,
                escape(r.kind),
                escape(&format!("{}/{name}", r.namespace))
            )?;
            let findings = failing(r, fail_on);
            // The line of the first failing field, else of the object.
            let line = findings
                .iter()
                .find_map(|(_, f)| r.locations.get(&f.path).map(|at| at.line))
                .or(r.source.line);
            if let Some(line) = line {
                write!(w, r#" line="{line}""#)?;
            }
            if fail_on.fails(r.verdict) {
                let mut ids: Vec<&str> = findings.iter().map(|(_, f)| f.rule).collect();
                ids.dedup();
                let message = findings
                    .iter()
                    .map(|(_, f)| f.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                let body = findings
                    .iter()
                    .map(|(label, f)| match r.locations.get(&f.path) {
                        Some(at) => format!("{label}: {f} (at {}:{at})", r.source.file),
                        None => format!("{label}: {f}"),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                writeln!(w, ">")?;
                writeln!(
                    w,
                    r#"      <failure message="{}" type="{}">{}</failure>"#,
                    escape(&message),
                    escape(&ids.join(" ")),
                    escape(&format!("{} ({})\n{body}", r.verdict.as_str(), r.source))
                )?;
                writeln!(w, "    </testcase>")?;
            } else {
                let d = &r.decision;
                let notes: Vec<String> = d
                    .warnings
                    .iter()
                    .map(|f| format!("warn: {f}"))
                    .chain(d.audits.iter().map(|f| format!("audit: {f}")))
                    .collect();
                if notes.is_empty() {
                    writeln!(w, "/>")?;
                } else {
                    writeln!(w, ">")?;
                    writeln!(
                        w,
                        "      <system-out>{}</system-out>",
                        escape(&notes.join("\n"))
                    )?;
                    writeln!(w, "    </testcase>")?;
                }
            }
        }
        for e in &g.errors {
            let name = match (e.document, e.item) {
                (Some(d), Some(i)) => format!("document {d}, item {i}"),
                (Some(d), None) => format!("document {d}"),
                _ => "file".to_owned(),
            };
            writeln!(
                w,
                r#"    <testcase classname="InputError" name="{}" file="{file}">"#,
                escape(&name)
            )?;
            writeln!(
                w,
                r#"      <error message="{}" type="InputError">{}</error>"#,
                escape(&e.message),
                escape(&e.to_string())
            )?;
            writeln!(w, "    </testcase>")?;
        }
        writeln!(w, "  </testsuite>")?;
    }
    writeln!(w, "</testsuites>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::output::fixtures;

    fn render(fail_on: FailOn) -> String {
        let mut out = Vec::new();
        write(&mut out, &fixtures::report(), fail_on).expect("writes");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn parses_as_xml_with_suites_cases_and_failures() {
        let text = render(FailOn::Deny);
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(root.attribute("failures"), Some("1"));
        assert_eq!(root.attribute("errors"), Some("1"));
        let suites: Vec<_> = root
            .children()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        let names: Vec<_> = suites.iter().filter_map(|s| s.attribute("name")).collect();
        assert_eq!(
            names,
            ["deploy/a.yaml", "deploy/b.yaml", "bad file's \"name\".yaml"]
        );
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 5);
        let bad = cases
            .iter()
            .find(|c| c.attribute("name") == Some("kube-system/bad <one>"))
            .expect("the denied object");
        assert_eq!(bad.attribute("classname"), Some("DaemonSet"));
        let failure = bad
            .children()
            .find(|n| n.has_tag_name("failure"))
            .expect("failure");
        assert_eq!(failure.attribute("type"), Some("HG-IMAGE-01 HP-API-03"));
        assert!(
            failure
                .attribute("message")
                .is_some_and(|m| m.contains("x<&>\\\"y\\u{1}"))
        );
        let error = doc
            .descendants()
            .find(|n| n.has_tag_name("error"))
            .expect("error");
        assert_eq!(
            error.attribute("message"),
            Some("invalid type: string \"true\" <]]>")
        );
    }

    #[test]
    fn fail_on_warn_turns_warnings_into_failures() {
        let text = render(FailOn::Warn);
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        assert_eq!(doc.root_element().attribute("failures"), Some("2"));
        let audited = doc
            .descendants()
            .find(|n| n.attribute("name") == Some("kube-system/audited"))
            .expect("audited case");
        assert!(audited.children().any(|n| n.has_tag_name("system-out")));
        let text = render(FailOn::Audit);
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        assert_eq!(doc.root_element().attribute("failures"), Some("3"));
    }
}
