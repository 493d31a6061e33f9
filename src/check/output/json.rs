//! The JSON report: one `CheckReport` document.
//!
//! ```json
//! {
//!   "apiVersion": "hostgate.io/v1alpha1",
//!   "kind": "CheckReport",
//!   "results": [
//!     {
//!       "source": {"file": "deploy/csi.yaml", "document": 2, "item": 1, "line": 14},
//!       "apiVersion": "apps/v1",
//!       "kind": "DaemonSet",
//!       "namespace": "kube-system",
//!       "name": "csi-proxy",
//!       "outcome": "denied",
//!       "decision": {
//!         "allowed": false,
//!         "hostProcess": true,
//!         "policy": "csi-proxy",
//!         "mode": "Enforce",
//!         "denials": [{"rule": "HG-IMAGE-01", "path": "spec.template.spec.containers[0].image",
//!                      "containers": ["csi-proxy"], "message": "…", "policy": "csi-proxy"}],
//!         "warnings": [],
//!         "audits": []
//!       }
//!     }
//!   ],
//!   "errors": [
//!     {"file": "bad.yaml", "document": 1, "item": 3, "line": 1, "path": "spec.containers[0]…",
//!      "message": "invalid type: …", "text": "bad.yaml: document 1, item 3: spec…: invalid type: …"}
//!   ],
//!   "skipped": [
//!     {"source": {"file": "deploy/csi.yaml", "document": 1, "line": 1},
//!      "apiVersion": "v1", "kind": "ServiceAccount", "namespace": "kube-system", "name": "csi-proxy"}
//!   ],
//!   "notObjects": [{"file": "chart/values.yaml", "document": 1, "line": 1}],
//!   "summary": {"files": 3, "objects": 1, "allowed": 0, "audited": 0, "warned": 0, "denied": 1,
//!               "skipped": 1, "notObjects": 1, "errors": 1}
//! }
//! ```
//!
//! Stability: fields are only ever added. Optional fields are left out when unknown:
//! `source.item` (not a `List` item), `source.line`, and in `errors` `document`, `item`, `line`,
//! `path`; in `decision`, `policy` and `mode` (no admitting policy) and empty finding lists.
//! `outcome` is one of `allowed`, `audited`, `warned`, `denied`; `decision` is the engine's
//! [`Decision`](crate::decision::Decision) as the webhook logs it.

use std::io::{self, Write};

use serde::Serialize;

use crate::check::report::{InputError, ObjectResult, Report, Skipped, SourceRef, Summary};
use crate::policy::API_VERSION;

/// `kind` of the JSON report.
pub const KIND: &str = "CheckReport";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    api_version: &'static str,
    kind: &'static str,
    results: &'a [ObjectResult],
    errors: Vec<ErrorEntry<'a>>,
    skipped: &'a [Skipped],
    not_objects: &'a [SourceRef],
    summary: Summary,
}

#[derive(Serialize)]
struct ErrorEntry<'a> {
    #[serde(flatten)]
    error: &'a InputError,
    text: String,
}

/// Writes the report as one JSON document and a newline.
pub fn write(w: &mut dyn Write, report: &Report) -> io::Result<()> {
    let envelope = Envelope {
        api_version: API_VERSION,
        kind: KIND,
        results: &report.results,
        errors: report
            .errors
            .iter()
            .map(|e| ErrorEntry {
                error: e,
                text: e.to_string(),
            })
            .collect(),
        skipped: &report.skipped,
        not_objects: &report.not_objects,
        summary: report.summary(),
    };
    serde_json::to_writer_pretty(&mut *w, &envelope)?;
    writeln!(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::output::fixtures;
    use serde_json::{Value, json};

    #[test]
    fn documented_shape() {
        let mut out = Vec::new();
        write(&mut out, &fixtures::report()).expect("writes");
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["apiVersion"], "hostgate.io/v1alpha1");
        assert_eq!(v["kind"], "CheckReport");
        assert_eq!(v["results"].as_array().map(Vec::len), Some(4));
        let bad = &v["results"][1];
        assert_eq!(
            bad["source"],
            json!({"file": "deploy/a.yaml", "document": 1, "line": 10})
        );
        assert_eq!(bad["apiVersion"], "apps/v1");
        assert_eq!(bad["kind"], "DaemonSet");
        assert_eq!(bad["outcome"], "denied");
        assert_eq!(bad["decision"]["allowed"], false);
        assert_eq!(bad["decision"]["denials"][0]["rule"], "HG-IMAGE-01");
        assert_eq!(bad["decision"]["denials"][0]["containers"], json!(["c&1"]));
        assert_eq!(v["results"][2]["decision"]["mode"], "Warn");
        assert_eq!(
            v["errors"][0],
            json!({
                "file": "bad file's \"name\".yaml", "document": 2, "line": 7,
                "path": "spec.containers[0]", "message": "invalid type: string \"true\" <]]>",
                "text": "bad file's \"name\".yaml: document 2: spec.containers[0]: invalid type: string \"true\" <]]>"
            })
        );
        assert_eq!(v["skipped"][0]["source"]["item"], 2);
        assert_eq!(
            v["notObjects"],
            json!([{"file": "chart/values.yaml", "document": 1, "line": 10}])
        );
        assert_eq!(
            v["summary"],
            json!({"files": 3, "objects": 4, "allowed": 1, "audited": 1, "warned": 1, "denied": 1, "skipped": 1, "notObjects": 1, "errors": 1})
        );
    }
}
