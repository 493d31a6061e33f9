//! Text for people: a header line per object, a line per finding, a summary.
//!
//! ```text
//! DaemonSet kube-system/csi-proxy (deploy/csi.yaml, document 2): DENIED
//!   deny  [HG-IMAGE-01] spec.template.spec.containers[0].image: … (policy csi-proxy; container "csi-proxy")
//! 3 objects in 2 files: 1 allowed, 2 denied, 0 warned, 0 audited; 4 skipped; 0 errors
//! ```

use std::io::{self, Write};

use super::OutputOptions;
use crate::check::report::{Report, Verdict};

const RED: &str = "\x1b[1;31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

#[derive(Clone, Copy)]
struct Paint {
    on: bool,
}

impl Paint {
    fn start(self, code: &'static str) -> &'static str {
        if self.on { code } else { "" }
    }
    fn end(self) -> &'static str {
        if self.on { RESET } else { "" }
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// Writes the report (errors excepted: see [`write_errors`]).
pub fn write(w: &mut dyn Write, report: &Report, opts: &OutputOptions) -> io::Result<()> {
    let p = Paint { on: opts.color };
    for r in &report.results {
        if opts.quiet && r.verdict == Verdict::Allowed {
            continue;
        }
        let name = if r.name.is_empty() {
            "<unnamed>"
        } else {
            &r.name
        };
        write!(w, "{} {}/{} ({}): ", r.kind, r.namespace, name, r.source)?;
        let d = &r.decision;
        let (color, verdict) = match r.verdict {
            Verdict::Denied => (RED, "DENIED"),
            Verdict::Allowed => (GREEN, "ALLOWED"),
            Verdict::Warned => (YELLOW, "ALLOWED with warnings"),
            Verdict::Audited => (CYAN, "ALLOWED with audit findings"),
        };
        write!(w, "{}{verdict}{}", p.start(color), p.end())?;
        match (&d.policy, r.verdict) {
            (_, Verdict::Denied) => writeln!(w)?,
            (Some(policy), _) => writeln!(w, " by policy {policy}")?,
            (None, _) if !d.host_process => writeln!(w, " (not a HostProcess pod)")?,
            (None, _) => writeln!(w)?,
        }
        for (label, color, findings) in [
            ("deny ", RED, &d.denials),
            ("warn ", YELLOW, &d.warnings),
            ("audit", CYAN, &d.audits),
        ] {
            for f in findings {
                writeln!(w, "  {}{label}{} {f}", p.start(color), p.end())?;
            }
        }
        for c in &r.defaulted {
            writeln!(
                w,
                "  {}would be defaulted{}: {}: {}",
                p.start(DIM),
                p.end(),
                c.path,
                c.description
            )?;
        }
    }
    if opts.verbose {
        for s in &report.skipped {
            write!(
                w,
                "{}skipped{} {} {} ",
                p.start(DIM),
                p.end(),
                s.api_version,
                s.kind
            )?;
            match (&s.namespace, &s.name) {
                (Some(ns), Some(name)) => write!(w, "{ns}/{name} ")?,
                (None, Some(name)) => write!(w, "{name} ")?,
                _ => {}
            }
            match &s.owner {
                Some(owner) => writeln!(
                    w,
                    "({}): runs the pod template of {owner}, which is judged (--pods judges pods too)",
                    s.source
                )?,
                None => writeln!(w, "({}): not a kind hostgate judges", s.source)?,
            }
        }
        for source in &report.not_objects {
            writeln!(
                w,
                "{}skipped{} ({source}): not a Kubernetes object (neither apiVersion nor kind)",
                p.start(DIM),
                p.end(),
            )?;
        }
    }
    let s = report.summary();
    let not_objects = match s.not_objects {
        0 => String::new(),
        1 => "; 1 not a Kubernetes object".to_owned(),
        n => format!("; {n} not Kubernetes objects"),
    };
    writeln!(
        w,
        "{} {} in {} {}: {} allowed, {} denied, {} warned, {} audited; {} skipped{not_objects}; {} {}",
        s.objects,
        plural(s.objects, "object", "objects"),
        s.files,
        plural(s.files, "file", "files"),
        s.allowed,
        s.denied,
        s.warned,
        s.audited,
        s.skipped,
        s.errors,
        plural(s.errors, "error", "errors"),
    )
}

/// Writes one `error: <file>: document <n>: <path>: <message>` line per bad input.
pub fn write_errors(w: &mut dyn Write, report: &Report, color: bool) -> io::Result<()> {
    let p = Paint { on: color };
    for e in &report.errors {
        writeln!(w, "{}error{}: {e}", p.start(RED), p.end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::output::fixtures;

    fn render(opts: &OutputOptions) -> String {
        let mut out = Vec::new();
        write(&mut out, &fixtures::report(), opts).expect("writes");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn groups_findings_under_their_object() {
        let text = render(&OutputOptions::default());
        let want = r#"DaemonSet kube-system/ok (deploy/a.yaml, document 1): ALLOWED by policy csi-proxy
DaemonSet kube-system/bad <one> (deploy/a.yaml, document 1): DENIED
  deny  [HG-IMAGE-01] spec.template.spec.containers[0].image: image "x<&>\"y\u{1}" is not allowed (policy csi-proxy; container "c&1")
  deny  [HP-API-03] spec.template.spec.hostNetwork: Invalid value: false: hostNetwork must be true
DaemonSet kube-system/warned (deploy/b.yaml, document 1): ALLOWED with warnings by policy csi-proxy
  warn  [HG-USER-02] spec.template.spec.securityContext.windowsOptions.runAsUserName: not allowed (policy csi-proxy)
DaemonSet kube-system/audited (deploy/b.yaml, document 1): ALLOWED with audit findings by policy csi-proxy
  audit [HG-LIMITS-01] spec.template.spec.containers[0].resources.limits.cpu: missing
4 objects in 3 files: 1 allowed, 1 denied, 1 warned, 1 audited; 1 skipped; 1 not a Kubernetes object; 1 error
"#;
        assert_eq!(text, want.replace("\\u{1}", "\u{1}"));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn quiet_verbose_and_colour() {
        let text = render(&OutputOptions {
            quiet: true,
            verbose: true,
            color: true,
            ..OutputOptions::default()
        });
        assert!(!text.contains("kube-system/ok "), "{text}");
        assert!(text.contains("\x1b[1;31mDENIED\x1b[0m"), "{text}");
        assert!(
            text.contains("skipped\x1b[0m v1 Service svc (deploy/b.yaml, document 3, item 2): not a kind hostgate judges"),
            "{text}"
        );
        assert!(
            text.contains("skipped\x1b[0m (chart/values.yaml, document 1): not a Kubernetes object (neither apiVersion nor kind)"),
            "{text}"
        );
        let mut err = Vec::new();
        write_errors(&mut err, &fixtures::report(), false).expect("writes");
        assert_eq!(
            String::from_utf8(err).expect("utf-8"),
            "error: bad file's \"name\".yaml: document 2: spec.containers[0]: invalid type: string \"true\" <]]>\n"
        );
    }
}
