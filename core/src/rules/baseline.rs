//! HP-PSA-01: Pod Security Admission's `windowsHostProcess` check (level baseline, every policy
//! version), reproduced with the same reason and detail text.
//!
//! The check looks at pod level *and* every container list, ephemeral containers included; a
//! container that merely inherits the pod-level value is not named (the pod is).

use super::ids;
use crate::decision::Finding;
use crate::pod::PodView;

/// PSA's forbidden reason for this check.
pub const REASON: &str = "hostProcess";

/// Runs the check; on failure appends one finding whose message is PSA's
/// `hostProcess (<detail>)`.
pub fn check(pod: &PodView<'_>, out: &mut Vec<Finding>) {
    let pod_set = pod.pod_host_process() == Some(true);
    let mut bad = Vec::new();
    let mut first_path = None;
    for c in pod.containers() {
        if c.host_process() == Some(true) {
            if first_path.is_none() {
                first_path =
                    Some(c.path_to(pod.path, "securityContext.windowsOptions.hostProcess"));
            }
            bad.push(c.name.to_owned());
        }
    }
    if !pod_set && bad.is_empty() {
        return;
    }
    let mut setters = Vec::with_capacity(2);
    if pod_set {
        setters.push("pod".to_owned());
    }
    if !bad.is_empty() {
        // PSA names every container (`pluralize` + `joinQuote`), however many there are.
        let noun = if bad.len() == 1 {
            "container"
        } else {
            "containers"
        };
        setters.push(format!("{noun} \"{}\"", bad.join("\", \"")));
    }
    let detail = format!(
        "{} must not set securityContext.windowsOptions.hostProcess=true",
        setters.join(" and ")
    );
    let path = if pod_set {
        pod.path.field("securityContext.windowsOptions.hostProcess")
    } else {
        first_path.unwrap_or_else(|| pod.path.0.to_owned())
    };
    out.push(
        Finding::new(ids::PSA_HOST_PROCESS, path, format!("{REASON} ({detail})"))
            .with_containers(bad),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::SpecPath;
    use k8s_openapi::api::core::v1::PodSpec;

    fn run(yaml: &str) -> Vec<Finding> {
        let spec: PodSpec = serde_yaml::from_str(yaml).expect("spec parses");
        let view = PodView::new(&spec, None, SpecPath::POD);
        let mut out = Vec::new();
        check(&view, &mut out);
        out
    }

    /// Cases of upstream `check_windowsHostProcess_test.go`.
    #[test]
    fn psa_detail_strings() {
        let hp = "securityContext: {windowsOptions: {hostProcess: true}}";
        let cases = [
            (
                format!("{{{hp}, containers: [{{name: a}}]}}"),
                "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)",
            ),
            (
                format!("{{containers: [{{name: a, {hp}}}]}}"),
                "hostProcess (container \"a\" must not set securityContext.windowsOptions.hostProcess=true)",
            ),
            (
                format!(
                    "{{{hp}, initContainers: [{{name: a, {hp}}}], containers: [{{name: b}}, {{name: c, {hp}}}], ephemeralContainers: [{{name: d, {hp}}}]}}"
                ),
                "hostProcess (pod and containers \"a\", \"c\", \"d\" must not set securityContext.windowsOptions.hostProcess=true)",
            ),
        ];
        for (yaml, want) in cases {
            let got = run(&yaml);
            assert_eq!(got.len(), 1, "{yaml}");
            assert_eq!(got[0].message, want);
            assert_eq!(got[0].rule, "HP-PSA-01");
        }
    }

    #[test]
    fn false_and_unset_pass() {
        assert!(run("{containers: [{name: a}]}").is_empty());
        assert!(run("{securityContext: {windowsOptions: {hostProcess: false}}, containers: [{name: a, securityContext: {windowsOptions: {hostProcess: false}}}]}").is_empty());
    }
}
