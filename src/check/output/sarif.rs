//! SARIF 2.1.0, for code scanning (GitHub, GitLab, Azure DevOps).
//!
//! One run; `tool.driver.rules` is the rule catalogue ([`crate::rules::CATALOGUE`]); one result
//! per finding with `level` `error` (deny), `warning` (warn) or `note` (audit), the file as the
//! artifact, the offending field's line and column as the region (the document's first line
//! when the field's position is unknown), and the field path as the logical location. Bad inputs are tool execution notifications, and make `executionSuccessful` false.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;
use serde::ser::SerializeSeq;
use serde_json::{Value, json};

use crate::check::report::{ObjectResult, Report};
use crate::decision::Finding;
use crate::rules::CATALOGUE;

/// The SARIF version written.
pub const VERSION: &str = "2.1.0";
/// The schema of that version.
pub const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
/// Where the tool is documented.
pub const INFORMATION_URI: &str = "https://github.com/hostgate/hostgate";

/// A file name as a URI reference: relative paths stay relative, absolute ones become `file://`
/// URIs; everything outside RFC 3986's unreserved characters and `/` is percent-encoded.
pub fn file_uri(file: &str) -> String {
    let path = file.replace('\\', "/");
    let mut out = String::with_capacity(path.len() + 8);
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Writes the report as a SARIF log. Results are serialized as they are produced, never held
/// as a whole tree in memory.
pub fn write(w: &mut dyn Write, report: &Report) -> io::Result<()> {
    let mut rules: Vec<Rule<'_>> = CATALOGUE
        .iter()
        .map(|r| Rule {
            id: r.id,
            name: Some(r.name),
            short_description: Text { text: r.name },
            full_description: Some(Text {
                text: r.description,
            }),
            help_uri: Some(format!("{INFORMATION_URI}#{}", r.id.to_ascii_lowercase())),
            default_configuration: Level { level: "error" },
        })
        .collect();
    let mut index: HashMap<&str, usize> = CATALOGUE
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id, i))
        .collect();
    // A rule the catalogue does not know still gets a descriptor.
    for f in report.results.iter().flat_map(|r| r.decision.findings()) {
        index.entry(f.rule).or_insert_with(|| {
            rules.push(Rule {
                id: f.rule,
                name: None,
                short_description: Text { text: f.rule },
                full_description: None,
                help_uri: None,
                default_configuration: Level { level: "error" },
            });
            rules.len() - 1
        });
    }

    let notifications: Vec<Value> = report
        .errors
        .iter()
        .map(|e| {
            let mut location = json!({"artifactLocation": {"uri": file_uri(&e.file)}});
            if let Some(line) = e.line {
                location["region"] = json!({"startLine": line});
            }
            json!({
                "level": "error",
                "message": {"text": e.to_string()},
                "locations": [{"physicalLocation": location}],
            })
        })
        .collect();

    let log = Log {
        version: VERSION,
        schema: SCHEMA,
        runs: [Run {
            tool: Tool {
                driver: Driver {
                    name: "hostgate",
                    information_uri: INFORMATION_URI,
                    version: env!("CARGO_PKG_VERSION"),
                    rules,
                },
            },
            invocations: [Invocation {
                execution_successful: report.errors.is_empty(),
                tool_execution_notifications: notifications,
            }],
            results: Results {
                report,
                index: &index,
            },
        }],
    };
    serde_json::to_writer_pretty(&mut *w, &log)?;
    writeln!(w)
}

#[derive(Serialize)]
struct Log<'a> {
    version: &'static str,
    #[serde(rename = "$schema")]
    schema: &'static str,
    runs: [Run<'a>; 1],
}

#[derive(Serialize)]
struct Run<'a> {
    tool: Tool<'a>,
    invocations: [Invocation; 1],
    results: Results<'a>,
}

#[derive(Serialize)]
struct Tool<'a> {
    driver: Driver<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver<'a> {
    name: &'static str,
    information_uri: &'static str,
    version: &'static str,
    rules: Vec<Rule<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    short_description: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_description: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_uri: Option<String>,
    default_configuration: Level,
}

#[derive(Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct Level {
    level: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    execution_successful: bool,
    tool_execution_notifications: Vec<Value>,
}

/// Every finding of every object, serialized one at a time.
struct Results<'a> {
    report: &'a Report,
    index: &'a HashMap<&'a str, usize>,
}

impl Serialize for Results<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for r in &self.report.results {
            let d = &r.decision;
            for (level, findings) in [
                ("error", &d.denials),
                ("warning", &d.warnings),
                ("note", &d.audits),
            ] {
                for f in findings {
                    let rule_index = self.index.get(f.rule).copied().unwrap_or_default();
                    seq.serialize_element(&result(r, f, level, rule_index))?;
                }
            }
        }
        seq.end()
    }
}

fn result(r: &ObjectResult, f: &Finding, level: &str, rule_index: usize) -> Value {
    let name = if r.name.is_empty() {
        "<unnamed>"
    } else {
        &r.name
    };
    let mut physical = json!({"artifactLocation": {"uri": file_uri(&r.source.file)}});
    if let Some(at) = r.locations.get(&f.path) {
        physical["region"] = json!({"startLine": at.line, "startColumn": at.column});
    } else if let Some(line) = r.source.line {
        physical["region"] = json!({"startLine": line});
    }
    let mut properties = json!({
        "kind": r.kind,
        "namespace": r.namespace,
        "name": r.name,
        "document": r.source.document,
    });
    if let Some(item) = r.source.item {
        properties["item"] = json!(item);
    }
    if let Some(p) = &f.policy {
        properties["policy"] = json!(&**p);
    }
    if !f.containers.is_empty() {
        properties["containers"] = json!(f.containers);
    }
    json!({
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": level,
        "message": {"text": format!("{} {}/{name}: {f}", r.kind, r.namespace)},
        "locations": [{
            "physicalLocation": physical,
            "logicalLocations": [{
                "name": f.path.rsplit('.').next().unwrap_or(&f.path),
                "fullyQualifiedName": f.path,
                "kind": "member",
            }],
        }],
        "properties": properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::output::fixtures;

    #[test]
    fn structure() {
        let mut out = Vec::new();
        write(&mut out, &fixtures::report()).expect("writes");
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["version"], "2.1.0");
        assert_eq!(v["$schema"], SCHEMA);
        let run = &v["runs"][0];
        assert_eq!(run["tool"]["driver"]["name"], "hostgate");
        let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
        let ids: Vec<&str> = rules.iter().filter_map(|r| r["id"].as_str()).collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        let results = run["results"].as_array().expect("results");
        let levels: Vec<&str> = results.iter().filter_map(|r| r["level"].as_str()).collect();
        assert_eq!(levels, ["error", "error", "warning", "note"]);
        for r in results {
            let i = r["ruleIndex"].as_u64().expect("index") as usize;
            assert_eq!(rules[i]["id"], r["ruleId"]);
            let loc = &r["locations"][0];
            assert!(loc["physicalLocation"]["artifactLocation"]["uri"].is_string());
            assert!(loc["logicalLocations"][0]["fullyQualifiedName"].is_string());
        }
        assert_eq!(
            results[0]["locations"][0]["physicalLocation"],
            json!({"artifactLocation": {"uri": "deploy/a.yaml"}, "region": {"startLine": 10}})
        );
        assert_eq!(
            results[0]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
            "spec.template.spec.containers[0].image"
        );
        assert_eq!(run["invocations"][0]["executionSuccessful"], false);
    }

    #[test]
    fn uris() {
        assert_eq!(file_uri("deploy/a b.yaml"), "deploy/a%20b.yaml");
        assert_eq!(file_uri("/abs/x#1.yaml"), "file:///abs/x%231.yaml");
        assert_eq!(file_uri("<stdin>"), "%3Cstdin%3E");
        assert_eq!(file_uri("dir\\ü.yaml"), "dir/%C3%BC.yaml");
    }
}
