//! `hostgate suggest`: the least-privilege `HostProcessPolicy` set that admits exactly the
//! HostProcess pods and workload templates given.
//!
//! One policy per (namespace, service account): it matches only that pair, allows exactly the
//! images (as written), accounts, privileged annotations, volume types and host paths the
//! objects use, and requires the limits they set, at the largest value set. Nothing is
//! invented: a tag is kept (with a comment recommending a digest), and where the objects set no
//! limits none are required (with a comment saying so). The output is YAML that
//! `hostgate check --policies` reads, with a comment per policy naming its objects.
//!
//! The property the tests hold it to: the objects pass `hostgate check` with the suggested
//! policies, and changing any one pinned field of an object makes it fail.

use std::collections::{BTreeMap, BTreeSet};

use crate::object::Workload;
use crate::policy::image::has_digest;
use crate::policy::winpath::WinPath;
use crate::policy::{LEAST_PRIVILEGE_USER, Mode, PolicySet, volume_type};
use crate::quantity::Quantity;
use crate::rules::structural::{self, StructuralOptions};

use super::report::SourceRef;

/// What `hostgate suggest` needs besides the objects.
#[derive(Debug, Clone)]
pub struct SuggestOptions {
    /// The mode of every suggested policy (`Audit` for a first rollout).
    pub mode: Mode,
    /// Namespace of objects that set no `metadata.namespace`.
    pub default_namespace: String,
}

impl Default for SuggestOptions {
    fn default() -> Self {
        SuggestOptions {
            mode: Mode::Enforce,
            default_namespace: "default".to_owned(),
        }
    }
}

/// The largest limit seen (parsed, and as written), and whether some container sets none.
type LimitSeen = (Option<(Quantity, String)>, bool);

/// What the objects of one (namespace, service account) use.
#[derive(Debug, Default)]
struct Group {
    objects: Vec<String>,
    images: BTreeSet<String>,
    users: BTreeSet<String>,
    /// Containers that name no account (defaulting gives them Local service).
    unnamed_users: BTreeSet<String>,
    annotations: BTreeSet<&'static str>,
    volume_types: BTreeSet<&'static str>,
    host_paths: BTreeSet<String>,
    /// Host paths no prefix can admit (not absolute Windows paths).
    bad_host_paths: BTreeSet<String>,
    /// Per resource: the largest limit set, and whether some container sets none.
    limits: BTreeMap<&'static str, LimitSeen>,
    unparsable_limits: BTreeSet<String>,
}

/// The suggested policies as YAML, and the HostProcess objects left out (refused by the
/// apiserver whatever the policy says), each with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    /// YAML documents, one policy each, with comments.
    pub yaml: String,
    /// How many policies.
    pub policies: usize,
    /// Objects that no policy can admit, with why.
    pub left_out: Vec<String>,
}

fn describe(w: &Workload, namespace: &str, source: &SourceRef) -> String {
    let name = if w.name().is_empty() {
        "<unnamed>"
    } else {
        w.name()
    };
    format!("{} {namespace}/{name} ({source})", w.kind().name())
}

/// Suggests policies for the HostProcess objects among `objects`.
pub fn suggest(objects: &[(SourceRef, Workload)], opts: &SuggestOptions) -> Suggestion {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut left_out = Vec::new();
    for (source, w) in objects {
        let Some(pod) = w.pod() else { continue };
        if !pod.requests_host_process() {
            continue;
        }
        let namespace = w
            .namespace()
            .filter(|n| !n.is_empty())
            .unwrap_or(&opts.default_namespace);
        let mut errors = Vec::new();
        structural::check(&pod, StructuralOptions::default(), &mut errors);
        if let Some(e) = errors.first() {
            left_out.push(format!(
                "{}: the apiserver refuses it ({e})",
                describe(w, namespace, source)
            ));
            continue;
        }
        let g = groups
            .entry((namespace.to_owned(), pod.service_account().to_owned()))
            .or_default();
        g.objects.push(describe(w, namespace, source));
        for (key, _) in pod.privileged_annotations() {
            if let Some(k) = crate::pod::PRIVILEGED_ANNOTATIONS
                .into_iter()
                .find(|k| *k == key)
            {
                g.annotations.insert(k);
            }
        }
        for c in pod.containers() {
            g.images.insert(c.image.unwrap_or("").to_owned());
            match pod.effective_run_as_user_name(&c) {
                Some(user) => {
                    g.users.insert(normalize_domain(user));
                }
                None => {
                    g.unnamed_users.insert(c.name.to_owned());
                }
            }
        }
        for v in pod.spec.volumes.iter().flatten() {
            match (volume_type(v), &v.host_path) {
                ("hostPath", Some(h)) => {
                    if WinPath::parse(&h.path).is_ok() {
                        g.host_paths.insert(h.path.clone());
                    } else {
                        g.bad_host_paths.insert(h.path.clone());
                    }
                }
                (kind, _) => {
                    g.volume_types.insert(kind);
                }
            }
        }
        for c in pod.runnable_containers() {
            for resource in ["cpu", "memory"] {
                let entry = g.limits.entry(resource).or_insert((None, false));
                let value = c
                    .resources
                    .and_then(|r| r.limits.as_ref())
                    .and_then(|l| l.get(resource));
                match value.map(|q| (Quantity::parse(&q.0), &q.0)) {
                    None => entry.1 = true,
                    Some((Ok(q), text)) => {
                        if entry.0.as_ref().is_none_or(|(max, _)| q > *max) {
                            entry.0 = Some((q, text.clone()));
                        }
                    }
                    Some((Err(_), text)) => {
                        g.unparsable_limits.insert(format!("{resource}: {text}"));
                        entry.1 = true;
                    }
                }
            }
        }
    }

    let mut yaml = String::new();
    let mut names = BTreeSet::new();
    for ((namespace, account), g) in &groups {
        let name = unique_name(&format!("{namespace}-{account}"), &mut names);
        if !yaml.is_empty() {
            yaml.push_str("---\n");
        }
        write_policy(&mut yaml, &name, namespace, account, g, opts.mode);
    }
    if groups.is_empty() {
        yaml.push_str(
            "# No HostProcess pod or workload template in the input: nothing to admit.\n",
        );
    }
    Suggestion {
        yaml,
        policies: groups.len(),
        left_out,
    }
}

/// `nt authority\system` → `NT AUTHORITY\system`: what defaulting writes.
fn normalize_domain(user: &str) -> String {
    match user.split_once('\\') {
        Some((domain, rest)) if domain.eq_ignore_ascii_case("NT AUTHORITY") => {
            format!("NT AUTHORITY\\{rest}")
        }
        _ => user.to_owned(),
    }
}

/// A lowercase RFC 1123 subdomain made from `base`, not yet in `taken`.
fn unique_name(base: &str, taken: &mut BTreeSet<String>) -> String {
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(240);
    let name = name.trim_matches(['-', '.']).to_owned();
    let name = if name.is_empty() {
        "hostprocess".to_owned()
    } else {
        name
    };
    let mut candidate = name.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{name}-{n}");
        n += 1;
    }
    candidate
}

/// A YAML single-quoted scalar.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn write_policy(
    out: &mut String,
    name: &str,
    namespace: &str,
    account: &str,
    g: &Group,
    mode: Mode,
) {
    // Writing to a String cannot fail.
    let mut w = |s: String| out.push_str(&s);
    w(format!(
        "# Suggested by `hostgate suggest` for service account {account:?} in namespace {namespace:?}, from:\n"
    ));
    for o in &g.objects {
        w(format!("#   {o}\n"));
    }
    if account == "default" {
        w(format!(
            "# This matches every pod in {namespace:?} that names no service account: give these\n# workloads an account of their own and suggest again.\n"
        ));
    }
    w(format!(
        "apiVersion: {}\nkind: {}\nmetadata:\n  name: {}\nspec:\n  mode: {}\n  match:\n    namespaces: [{}]\n    serviceAccounts: [{}]\n  allow:\n    images:\n",
        crate::policy::API_VERSION,
        crate::policy::KIND,
        quote(name),
        mode.as_str(),
        quote(namespace),
        quote(&format!("{namespace}/{account}")),
    ));
    for image in &g.images {
        if has_digest(image) {
            w(format!("    - {}\n", quote(image)));
        } else {
            w(format!(
                "    - {}  # a tag can be moved to other content: pin it by digest (image@sha256:…) and suggest again\n",
                quote(image)
            ));
        }
    }
    let mut users = g.users.clone();
    if !g.unnamed_users.is_empty() {
        users.insert(LEAST_PRIVILEGE_USER.to_owned());
        w(format!(
            "    # {} no runAsUserName: defaulting runs {} as {LEAST_PRIVILEGE_USER}.\n",
            plural_containers(&g.unnamed_users),
            if g.unnamed_users.len() == 1 {
                "it"
            } else {
                "them"
            }
        ));
    }
    w("    runAsUserNames:\n".to_owned());
    for u in &users {
        w(format!("    - {}\n", quote(u)));
    }
    if !g.annotations.is_empty() {
        w("    annotations:\n".to_owned());
        for a in &g.annotations {
            w(format!("    - {}\n", quote(a)));
        }
    }
    w("    volumes:\n".to_owned());
    let types: Vec<String> = g.volume_types.iter().map(|t| quote(t)).collect();
    w(format!("      types: [{}]\n", types.join(", ")));
    if !g.bad_host_paths.is_empty() {
        let paths: Vec<String> = g.bad_host_paths.iter().map(|p| format!("{p:?}")).collect();
        w(format!(
            "      # Not absolute Windows paths, so no prefix can admit them: {}\n",
            paths.join(", ")
        ));
    }
    if g.host_paths.is_empty() {
        w("      hostPathPrefixes: []\n".to_owned());
    } else {
        w("      hostPathPrefixes:\n".to_owned());
        for p in &g.host_paths {
            w(format!("      - {}\n", quote(p)));
        }
    }
    w("  require:\n".to_owned());
    let all_digests = g.images.iter().all(|i| has_digest(i));
    w(format!("    imageDigest: {all_digests}\n"));
    let mut required = Vec::new();
    let mut notes = Vec::new();
    for (resource, (max, some_unset)) in &g.limits {
        match (max, some_unset) {
            (Some((_, text)), false) => required.push(format!("{resource}: {}", quote(text))),
            (Some(_), true) => notes.push(format!(
                "some containers set no {resource} limit, so none is required; set one on every container and suggest again"
            )),
            (None, _) => notes.push(format!(
                "no container sets a {resource} limit, so none is required (hostgate invents no numbers); limits become the job object's limits on the node: set them and suggest again"
            )),
        }
    }
    for u in &g.unparsable_limits {
        notes.push(format!("not a quantity: {u}"));
    }
    for n in &notes {
        w(format!("    # {n}\n"));
    }
    if !required.is_empty() {
        w(format!("    limits: {{{}}}\n", required.join(", ")));
    }
    if !users.iter().any(|u| u == LEAST_PRIVILEGE_USER)
        && let Some(first) = users.iter().next()
    {
        // hostgate requires a default account when Local service is not allowed; it only ever
        // applies to containers that name none, and every container here names one.
        w(format!(
            "  defaults:\n    runAsUserName: {}\n",
            quote(first)
        ));
    }
}

fn plural_containers(names: &BTreeSet<String>) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    if names.len() == 1 {
        format!("container {} sets", quoted.join(", "))
    } else {
        format!("containers {} set", quoted.join(", "))
    }
}

/// Compiles suggested YAML into a policy set, as `hostgate check --policies` would.
pub fn compile(yaml: &str) -> Result<PolicySet, String> {
    let (policies, errors) = crate::policy::load::parse_policies(yaml.as_bytes(), "suggested");
    if let Some(e) = errors.first() {
        return Err(e.to_string());
    }
    PolicySet::new(policies).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::report::{Report, Verdict};
    use crate::check::{CheckOptions, check_bytes};
    use std::sync::Arc;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn csi() -> String {
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: csi-proxy\n  namespace: kube-system\nspec:\n  selector:\n    matchLabels: {k8s-app: csi-proxy}\n  template:\n    metadata:\n      labels: {k8s-app: csi-proxy}\n    spec:\n      hostNetwork: true\n      securityContext:\n        windowsOptions:\n          hostProcess: true\n          runAsUserName: NT AUTHORITY\\SYSTEM\n      containers:\n      - name: csi-proxy\n        image: ghcr.io/kubernetes-sigs/sig-windows/csi-proxy:v1.1.3\n".to_owned()
    }

    fn logs() -> String {
        format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: fluent-bit\n  namespace: logging\nspec:\n  selector:\n    matchLabels: {{app: fluent-bit}}\n  template:\n    metadata:\n      labels: {{app: fluent-bit}}\n    spec:\n      serviceAccountName: fluent-bit\n      hostNetwork: true\n      securityContext:\n        windowsOptions:\n          hostProcess: true\n      initContainers:\n      - name: init\n        image: docker.io/fluent/fluent-bit@{DIGEST}\n        resources:\n          limits: {{cpu: 100m, memory: 64Mi}}\n      containers:\n      - name: fluent-bit\n        image: cr.fluentbit.io/fluent/fluent-bit@{DIGEST}\n        resources:\n          limits: {{cpu: 200m, memory: 128Mi}}\n        volumeMounts:\n        - {{name: logs, mountPath: C:\\var\\log}}\n      volumes:\n      - name: logs\n        hostPath: {{path: 'C:\\var\\log'}}\n      - name: config\n        configMap: {{name: fluent-bit}}\n"
        )
    }

    fn annotated() -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: exporter\n  namespace: monitoring\n  annotations:\n    microsoft.com/hostprocess-inherit-user: \"true\"\nspec:\n  serviceAccountName: exporter\n  containers:\n  - name: exporter\n    image: ghcr.io/prometheus-community/windows-exporter@{DIGEST}\n    resources:\n      limits: {{cpu: 250m, memory: 128Mi}}\n"
        )
    }

    const PLAIN: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: plain}\nspec:\n  containers: [{name: c, image: nginx}]\n";
    const NO_HOST_NETWORK: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: refused, namespace: x}\nspec:\n  securityContext: {windowsOptions: {hostProcess: true}}\n  containers: [{name: c, image: nginx}]\n";

    fn read(text: &str) -> Vec<(SourceRef, Workload)> {
        let mut report = Report::default();
        let mut objects = Vec::new();
        let opts = CheckOptions::new(PolicySet::default());
        super::super::read_bytes(
            &mut report,
            Arc::from("in.yaml"),
            text.as_bytes(),
            &opts,
            Some(&mut objects),
        );
        assert_eq!(report.errors, []);
        objects
    }

    fn outcomes(text: &str, set: PolicySet) -> Vec<(String, Verdict, Vec<&'static str>)> {
        let mut report = Report::default();
        check_bytes(
            &mut report,
            Arc::from("in.yaml"),
            text.as_bytes(),
            &CheckOptions::new(set),
        );
        assert_eq!(report.errors, [], "{text}");
        report
            .results
            .into_iter()
            .map(|r| {
                let rules = r.decision.findings().map(|f| f.rule).collect();
                (r.name, r.verdict, rules)
            })
            .collect()
    }

    fn all() -> String {
        [
            csi(),
            logs(),
            annotated(),
            PLAIN.to_owned(),
            NO_HOST_NETWORK.to_owned(),
        ]
        .join("---\n")
    }

    #[test]
    fn the_input_passes_with_its_suggestion_and_any_pinned_change_fails() {
        let input = all();
        let s = suggest(&read(&input), &SuggestOptions::default());
        assert_eq!(s.policies, 3, "{}", s.yaml);
        assert_eq!(s.left_out.len(), 1);
        assert!(
            s.left_out[0].starts_with(
                "Pod x/refused (in.yaml, document 5): the apiserver refuses it ([HP-API-03]"
            ),
            "{:?}",
            s.left_out
        );
        let set = || compile(&s.yaml).unwrap_or_else(|e| panic!("{e}\n{}", s.yaml));
        for (name, outcome, rules) in outcomes(&input, set()) {
            if name == "refused" {
                continue;
            }
            assert_eq!(outcome, Verdict::Allowed, "{name}: {rules:?}\n{}", s.yaml);
        }

        // Each pinned field, changed in one object: (object, from, to, rule that catches it).
        let changes: &[(&str, String, String, &str)] = &[
            ("csi-proxy", "namespace: kube-system".into(), "namespace: other".into(), "HG-MATCH-01"),
            ("csi-proxy", "hostNetwork: true".into(), "serviceAccountName: other\n      hostNetwork: true".into(), "HG-MATCH-01"),
            ("csi-proxy", "csi-proxy:v1.1.3".into(), "csi-proxy:v1.1.4".into(), "HG-IMAGE-01"),
            ("csi-proxy", "NT AUTHORITY\\SYSTEM".into(), "NT AUTHORITY\\Network service".into(), "HG-USER-02"),
            ("fluent-bit", "path: 'C:\\var\\log'".into(), "path: 'C:\\var'".into(), "HG-VOLUME-02"),
            ("fluent-bit", "configMap: {name: fluent-bit}".into(), "secret: {secretName: fluent-bit}".into(), "HG-VOLUME-01"),
            ("fluent-bit", "cpu: 200m".into(), "cpu: 300m".into(), "HG-LIMITS-02"),
            ("fluent-bit", "memory: 64Mi".into(), "memory: 129Mi".into(), "HG-LIMITS-02"),
            ("fluent-bit", "limits: {cpu: 100m, memory: 64Mi}".into(), "limits: {memory: 64Mi}".into(), "HG-LIMITS-01"),
            ("fluent-bit", format!("docker.io/fluent/fluent-bit@{DIGEST}"), "docker.io/fluent/fluent-bit:3.0".into(), "HG-IMAGE-02"),
            ("fluent-bit", "hostProcess: true".into(), "hostProcess: true\n          runAsUserName: NT AUTHORITY\\SYSTEM".into(), "HG-USER-02"),
            ("exporter", "microsoft.com/hostprocess-inherit-user: \"true\"".into(), "microsoft.com/hostprocess-inherit-user: \"true\"\n    microsoft.com/hostprocess-rootfs-location: C:\\x".into(), "HG-ANNOT-01"),
        ];
        for (object, from, to, rule) in changes {
            let source = match *object {
                "csi-proxy" => csi(),
                "fluent-bit" => logs(),
                _ => annotated(),
            };
            assert!(source.contains(from.as_str()), "{from}");
            let changed = source.replacen(from.as_str(), to, 1);
            let got = outcomes(&changed, set());
            assert_eq!(
                got[0].1,
                Verdict::Denied,
                "{object}: {from} -> {to}: {got:?}"
            );
            assert!(got[0].2.contains(rule), "{object}: {from} -> {to}: {got:?}");
        }
    }

    #[test]
    fn output_pins_what_is_written_and_invents_nothing() {
        let s = suggest(
            &read(&all()),
            &SuggestOptions {
                mode: Mode::Audit,
                ..SuggestOptions::default()
            },
        );
        let y = &s.yaml;
        assert_eq!(y.matches("  mode: Audit\n").count(), 3, "{y}");
        assert!(
            y.contains("#   DaemonSet kube-system/csi-proxy (in.yaml, document 1)\n"),
            "{y}"
        );
        assert!(
            y.contains(
                "    - 'ghcr.io/kubernetes-sigs/sig-windows/csi-proxy:v1.1.3'  # a tag can be moved"
            ),
            "{y}"
        );
        assert!(
            y.contains("no container sets a cpu limit, so none is required"),
            "{y}"
        );
        assert!(y.contains("    # containers \"fluent-bit\", \"init\" set no runAsUserName: defaulting runs them as NT AUTHORITY\\Local service.\n"), "{y}");
        assert!(
            y.contains("    limits: {cpu: '200m', memory: '128Mi'}\n"),
            "{y}"
        );
        assert!(
            y.contains("    serviceAccounts: ['logging/fluent-bit']\n"),
            "{y}"
        );
        assert!(
            y.contains("    serviceAccounts: ['kube-system/default']\n"),
            "{y}"
        );
        assert_eq!(
            y.matches("# This matches every pod in \"kube-system\" that names no service account")
                .count(),
            1,
            "{y}"
        );
        assert!(
            y.contains("    - 'microsoft.com/hostprocess-inherit-user'\n"),
            "{y}"
        );
        assert!(!y.contains("nginx"), "{y}");
        assert!(compile(y).is_ok());
        let none = suggest(&read(PLAIN), &SuggestOptions::default());
        assert_eq!(none.policies, 0);
        assert!(none.yaml.starts_with("# No HostProcess pod"));
    }

    #[test]
    fn names_are_valid_and_unique() {
        let mut taken = BTreeSet::new();
        assert_eq!(
            unique_name("kube-system-csi_proxy", &mut taken),
            "kube-system-csi-proxy"
        );
        assert_eq!(
            unique_name("kube-system-csi.proxy", &mut taken),
            "kube-system-csi.proxy"
        );
        assert_eq!(
            unique_name("kube-system-csi-proxy", &mut taken),
            "kube-system-csi-proxy-2"
        );
        assert_eq!(unique_name("--", &mut taken), "hostprocess");
    }
}
