//! The Helm chart (`charts/hostgate`) rendered and linted by a real helm.
//!
//! helm is `$HOSTGATE_HELM` (`.ci/run` sets it from `scripts/install-helm.sh`) or `helm` on the
//! PATH; no test installs it. Without one, each helm test prints why and is skipped, or fails
//! when `CI` is set (`hostgate_test_support::prereq`). What is checked:
//!
//! - `helm lint --strict` with the main value combinations;
//! - every object rendered with each structural option parses into its k8s-openapi type with no
//!   unknown or dropped field (the typed value re-serialized must equal the rendered one:
//!   k8s-openapi itself ignores unknown fields); cert-manager objects against their known fields;
//! - the webhooks' CEL `matchConditions`, evaluated by a CEL interpreter on sample objects
//!   (`tests/data/chart/match-conditions.yaml`), select exactly the objects that hostgate itself
//!   considers HostProcess requests;
//! - the rendered policies ConfigMap loads with `hostgate::policy::load`, and `hostgate check` over
//!   the whole rendered chart admits the agent DaemonSet (its install step included) and denies
//!   nothing, with and without the webhook's `--runtime-class`;
//! - the node half: the `RuntimeClass`, the webhook's `--runtime-class`, the agent's install step
//!   (or uninstall step) with the installer's flags, and its node-labelling RBAC;
//! - the `helm test` pod's AdmissionReview gets, from the webhook's router, the answer its script
//!   checks for;
//! - bad values are refused by `values.schema.json`, impossible combinations by
//!   `templates/validate.yaml`;
//! - certificates, keys, names and the namespace exemption;
//! - `charts/hostgate/files/policies` is an exact copy of `policies/*/policy.yaml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hostgate_test_support::prereq::{HELM, Prereq};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const RELEASE: &str = "hg";
const NAMESPACE: &str = "hostgate-system";
/// A Kubernetes version within the chart's `kubeVersion`, so renders do not depend on helm's
/// built-in default.
const KUBE_VERSION: &str = "1.33.0";

fn root() -> &'static Path {
    hostgate_test_support::repo_root()
}

fn chart() -> PathBuf {
    root().join("charts/hostgate")
}

// ---------------------------------------------------------------------------------------------
// helm

/// The helm binary, or `None` after printing why there is none (which fails the test when
/// `CI` is set). The test is named after the thread, which the test harness names so.
fn helm() -> Option<&'static Path> {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a helm test");
    hostgate_test_support::require(test, &[Prereq::Tool(HELM)]).map(|met| met.helm())
}

macro_rules! helm_or_skip {
    () => {
        match helm() {
            Some(h) => h,
            None => return,
        }
    };
}

/// `helm template` with `args` (e.g. `--set a=b`); stdout, or stderr as the error.
fn template(helm: &Path, args: &[&str]) -> Result<String, String> {
    template_in(helm, NAMESPACE, args)
}

fn template_in(helm: &Path, namespace: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm)
        .arg("template")
        .arg(RELEASE)
        .arg(chart())
        .args(["--namespace", namespace, "--kube-version", KUBE_VERSION])
        .args(args)
        .output()
        .expect("helm runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("UTF-8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The rendered objects.
fn render(helm: &Path, args: &[&str]) -> Vec<Value> {
    let text = template(helm, args).unwrap_or_else(|e| panic!("helm template {args:?}: {e}"));
    parse(&text)
}

fn parse(text: &str) -> Vec<Value> {
    let (docs, err) = hostgate::manifest::read_documents(text.as_bytes());
    assert_eq!(err, None, "the rendered chart is valid YAML");
    docs.into_iter().map(|d| d.value).collect()
}

fn kind_of(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| kind_of(o) == kind && name_of(o) == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", kinds(objs)))
}

fn kinds(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .map(|o| format!("{}/{}", kind_of(o), name_of(o)))
        .collect()
}

fn typed<T: DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{}: {e}", name_of(v)))
}

fn webhook_args(objs: &[Value]) -> Vec<String> {
    let d: Deployment = typed(find(objs, "Deployment", "hg-hostgate-webhook"));
    d.spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers[0]
        .args
        .clone()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Strict typing: parse into the k8s-openapi type, serialize back, compare.

/// Differences between the rendered object and its typed round trip: a field the type does not
/// know (dropped), a `null`, or a value of the wrong shape.
fn roundtrip_diff(path: &str, rendered: &Value, typed: &Value, out: &mut Vec<String>) {
    match (rendered, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => roundtrip_diff(&format!("{path}.{k}"), va, vb, out),
                    None => out.push(format!("{path}.{k}: unknown field (or null)")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{k}: appeared in the round trip"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                roundtrip_diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if rendered == typed => {}
        _ => out.push(format!("{path}: {rendered} became {typed}")),
    }
}

fn strict<T: DeserializeOwned + Serialize>(v: &Value) -> Result<(), String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&t).map_err(|e| e.to_string())?;
    let mut diffs = Vec::new();
    roundtrip_diff("", v, &back, &mut diffs);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

/// Known fields of the cert-manager objects the chart renders (cert-manager.io/v1).
fn strict_cert_manager(v: &Value) -> Result<(), String> {
    let allowed: &[&str] = match kind_of(v) {
        "Issuer" => &["selfSigned", "ca"],
        "Certificate" => &[
            "secretName",
            "dnsNames",
            "duration",
            "renewBefore",
            "isCA",
            "commonName",
            "privateKey",
            "usages",
            "issuerRef",
        ],
        other => return Err(format!("unexpected cert-manager kind {other}")),
    };
    let mut errors = Vec::new();
    if v["apiVersion"] != "cert-manager.io/v1" {
        errors.push(format!("apiVersion {}", v["apiVersion"]));
    }
    let top: BTreeSet<&str> = v
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys().map(String::as_str))
        .collect();
    if top != BTreeSet::from(["apiVersion", "kind", "metadata", "spec"]) {
        errors.push(format!("top-level fields {top:?}"));
    }
    let spec = v["spec"].as_object().cloned().unwrap_or_default();
    for k in spec.keys() {
        if !allowed.contains(&k.as_str()) {
            errors.push(format!("spec.{k}: unknown field"));
        }
    }
    if kind_of(v) == "Issuer" && spec.len() != 1 {
        errors.push("an Issuer has exactly one type".to_owned());
    }
    if kind_of(v) == "Certificate" {
        let r = &v["spec"]["issuerRef"];
        for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
            if !["name", "kind", "group"].contains(&k.as_str()) {
                errors.push(format!("spec.issuerRef.{k}: unknown field"));
            }
        }
        if !r["name"].is_string() || v["spec"]["secretName"].as_str().is_none() {
            errors.push("issuerRef.name and secretName are required".to_owned());
        }
        for k in v["spec"]["privateKey"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
        {
            if !["algorithm", "size", "rotationPolicy", "encoding"].contains(&k.as_str()) {
                errors.push(format!("spec.privateKey.{k}: unknown field"));
            }
        }
    }
    // As a dynamic object (what a client applies), with typed metadata.
    match serde_json::from_value::<kube::core::DynamicObject>(v.clone()) {
        Ok(d) => {
            if d.types.as_ref().map(|t| t.kind.as_str()) != Some(kind_of(v)) {
                errors.push("kind lost as a DynamicObject".to_owned());
            }
        }
        Err(e) => errors.push(format!("not a DynamicObject: {e}")),
    }
    if let Err(e) =
        strict::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(&v["metadata"])
    {
        errors.push(format!("metadata: {e}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn check_object(v: &Value) -> Result<(), String> {
    let api = v["apiVersion"].as_str().unwrap_or("");
    match (api, kind_of(v)) {
        ("v1", "ServiceAccount") => strict::<ServiceAccount>(v),
        ("v1", "Service") => strict::<Service>(v),
        ("v1", "ConfigMap") => strict::<ConfigMap>(v),
        ("v1", "Secret") => strict::<Secret>(v),
        ("v1", "Pod") => strict::<Pod>(v),
        ("apps/v1", "Deployment") => strict::<Deployment>(v),
        ("apps/v1", "DaemonSet") => strict::<DaemonSet>(v),
        ("node.k8s.io/v1", "RuntimeClass") => strict::<RuntimeClass>(v),
        ("policy/v1", "PodDisruptionBudget") => strict::<PodDisruptionBudget>(v),
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            strict::<k8s_openapi::api::networking::v1::NetworkPolicy>(v)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => strict::<ClusterRole>(v),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => strict::<ClusterRoleBinding>(v),
        ("rbac.authorization.k8s.io/v1", "Role") => strict::<Role>(v),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => strict::<RoleBinding>(v),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            strict::<MutatingWebhookConfiguration>(v)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            strict::<ValidatingWebhookConfiguration>(v)
        }
        ("cert-manager.io/v1", _) => strict_cert_manager(v),
        (api, kind) => Err(format!("unexpected object {api} {kind}")),
    }
}

#[test]
fn the_strict_check_catches_typos() {
    let good = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 443, "targetPort": "https"}]}});
    assert_eq!(check_object(&good), Ok(()));
    let typo = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 443, "targetPrt": "https"}]}});
    let err = check_object(&typo).expect_err("typo");
    assert!(
        err.contains(".spec.ports[0].targetPrt: unknown field"),
        "{err}"
    );
    let null = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "s", "labels": null}});
    assert!(check_object(&null).is_err(), "a rendered null is reported");
    let cm = serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "c"}, "spec": {"secretName": "s", "issuerRef": {"name": "i"}, "dnsName": []}});
    assert!(
        check_object(&cm)
            .expect_err("typo")
            .contains("spec.dnsName")
    );
}

// ---------------------------------------------------------------------------------------------
// Lint and render

#[test]
fn helm_lint_strict() {
    let helm = helm_or_skip!();
    for set in [
        &[][..],
        &["--set", "certManager.enabled=true"],
        &[
            "--set",
            "agent.enabled=false,runtimeClass.enabled=false,policies.source=files",
        ],
        &[
            "--set",
            "agent.install.action=uninstall,webhook.hostNetwork=true",
        ],
    ] {
        let out = Command::new(helm)
            .args(["lint", "--strict", "--namespace", NAMESPACE])
            .arg(chart())
            .args(set)
            .output()
            .expect("helm runs");
        assert!(
            out.status.success(),
            "helm lint --strict {set:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

struct Scenario {
    name: &'static str,
    args: Vec<String>,
    /// Kinds that must be there (`Kind/name`, or just `Kind`).
    present: &'static [&'static str],
    /// Kinds that must not.
    absent: &'static [&'static str],
    /// Further checks.
    check: fn(&[Value]),
}

fn set(values: &str) -> Vec<String> {
    vec!["--set".to_owned(), values.to_owned()]
}

fn scenarios() -> Vec<Scenario> {
    let data = root().join("tests/data/chart");
    vec![
        Scenario {
            name: "defaults",
            args: vec![],
            present: &[
                "Deployment/hg-hostgate-webhook",
                "Service/hg-hostgate-webhook",
                "ServiceAccount/hg-hostgate-webhook",
                "PodDisruptionBudget/hg-hostgate-webhook",
                "ClusterRole/hg-hostgate-webhook",
                "ClusterRoleBinding/hg-hostgate-webhook",
                "Role/hg-hostgate-webhook",
                "RoleBinding/hg-hostgate-webhook",
                "MutatingWebhookConfiguration/hg-hostgate",
                "ValidatingWebhookConfiguration/hg-hostgate",
                "Secret/hg-hostgate-webhook-tls",
                "Secret/hg-hostgate-signing-key",
                "ConfigMap/hg-hostgate-public-keys",
                "ConfigMap/hg-hostgate-policies",
                "DaemonSet/hg-hostgate-agent",
                "ServiceAccount/hg-hostgate-agent",
                "ClusterRole/hg-hostgate-agent",
                "ClusterRoleBinding/hg-hostgate-agent",
                "RuntimeClass/hostgate",
                "Pod/hg-hostgate-test",
            ],
            absent: &["Certificate", "Issuer", "ConfigMap/hg-hostgate-trusted-keys"],
            check: |objs| {
                let args = webhook_args(objs);
                for want in [
                    "serve",
                    "--secure-port=8443",
                    "--policy-source=both",
                    "--policies=/etc/hostgate/policies",
                    "--signing-key=/etc/hostgate/signing/signing.key",
                    "--publish-public-key=hostgate-system/hg-hostgate-public-keys",
                    "--log-format=json",
                    "--shutdown-delay=5s",
                    "--shutdown-timeout=25s",
                    "--runtime-class=hostgate",
                ] {
                    assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
                }
                let d: Deployment = typed(find(objs, "Deployment", "hg-hostgate-webhook"));
                let spec = d.spec.expect("spec");
                assert_eq!(spec.replicas, Some(2));
                let pod = spec.template.spec.expect("pod");
                assert_eq!(pod.termination_grace_period_seconds, Some(35));
                assert_eq!(pod.automount_service_account_token, Some(true));
                assert_eq!(
                    pod.node_selector.expect("nodeSelector")["kubernetes.io/os"],
                    "linux"
                );
                let psc = pod.security_context.expect("pod securityContext");
                assert_eq!(psc.run_as_non_root, Some(true));
                assert_eq!(psc.run_as_user, Some(65532));
                assert_eq!(
                    psc.seccomp_profile.expect("seccomp").type_,
                    "RuntimeDefault"
                );
                let anti = pod
                    .affinity
                    .and_then(|a| a.pod_anti_affinity)
                    .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
                    .expect("preferred pod anti-affinity");
                assert_eq!(anti[0].pod_affinity_term.topology_key, "kubernetes.io/hostname");
                let c = &pod.containers[0];
                let sc = c.security_context.clone().expect("container securityContext");
                assert_eq!(sc.read_only_root_filesystem, Some(true));
                assert_eq!(sc.allow_privilege_escalation, Some(false));
                assert_eq!(
                    sc.capabilities.and_then(|c| c.drop),
                    Some(vec!["ALL".to_owned()])
                );
                let limits = c.resources.clone().and_then(|r| r.limits).expect("limits");
                assert!(limits.contains_key("cpu") && limits.contains_key("memory"));
                for (probe, path) in [
                    (c.liveness_probe.clone(), "/healthz"),
                    (c.readiness_probe.clone(), "/readyz"),
                ] {
                    // On the health port, outside the review limits (issue 12).
                    let get = probe.and_then(|p| p.http_get).expect("httpGet probe");
                    assert_eq!(get.path.as_deref(), Some(path));
                    assert_eq!(get.scheme.as_deref(), Some("HTTP"));
                    assert_eq!(
                        get.port,
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                            "health".to_owned()
                        )
                    );
                }
                assert!(args.iter().any(|a| a == "--health-port=8080"), "{args:?}");
                let svc: Service = typed(find(objs, "Service", "hg-hostgate-webhook"));
                let port = &svc.spec.expect("spec").ports.expect("ports")[0];
                assert_eq!(port.port, 443);
                assert_eq!(
                    port.target_port,
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                        "https".into()
                    ))
                );
                let pdb: PodDisruptionBudget =
                    typed(find(objs, "PodDisruptionBudget", "hg-hostgate-webhook"));
                let pdb = pdb.spec.expect("spec");
                assert_eq!(
                    pdb.min_available,
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
                );
                assert_eq!(
                    pdb.selector.and_then(|s| s.match_labels),
                    Some(BTreeMap::from([
                        ("app.kubernetes.io/component".to_owned(), "webhook".to_owned()),
                        ("app.kubernetes.io/instance".to_owned(), "hg".to_owned()),
                        ("app.kubernetes.io/name".to_owned(), "hostgate".to_owned()),
                    ])),
                    "stable selector labels only"
                );
                assert_eq!(pod.host_network, None, "on the pod network by default");
                check_rbac(objs);
                check_agent(objs);
                check_install_step(objs);
                check_runtime_class(objs);
                check_webhook_configurations(objs);
            },
        },
        Scenario {
            name: "cert-manager with the chart's own CA issuer",
            args: set("certManager.enabled=true"),
            present: &[
                "Issuer/hg-hostgate-selfsigned",
                "Certificate/hg-hostgate-ca",
                "Issuer/hg-hostgate-ca",
                "Certificate/hg-hostgate-webhook-tls",
            ],
            absent: &["Secret/hg-hostgate-webhook-tls"],
            check: |objs| {
                let cert = find(objs, "Certificate", "hg-hostgate-webhook-tls");
                assert_eq!(cert["spec"]["secretName"], "hg-hostgate-webhook-tls");
                assert_eq!(cert["spec"]["issuerRef"]["name"], "hg-hostgate-ca");
                assert!(
                    cert["spec"]["dnsNames"]
                        .as_array()
                        .expect("dnsNames")
                        .contains(&Value::from("hg-hostgate-webhook.hostgate-system.svc"))
                );
                assert_eq!(find(objs, "Certificate", "hg-hostgate-ca")["spec"]["isCA"], true);
                for kind in [
                    "MutatingWebhookConfiguration",
                    "ValidatingWebhookConfiguration",
                ] {
                    let c = find(objs, kind, "hg-hostgate");
                    assert_eq!(
                        c["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                        "hostgate-system/hg-hostgate-webhook-tls"
                    );
                    for w in c["webhooks"].as_array().expect("webhooks") {
                        assert!(w["clientConfig"].get("caBundle").is_none(), "injected");
                    }
                }
            },
        },
        Scenario {
            name: "cert-manager with an existing ClusterIssuer",
            args: set("certManager.enabled=true,certManager.issuerRef.name=corp-ca,certManager.issuerRef.kind=ClusterIssuer"),
            present: &["Certificate/hg-hostgate-webhook-tls"],
            absent: &["Issuer", "Certificate/hg-hostgate-ca", "Secret/hg-hostgate-webhook-tls"],
            check: |objs| {
                let r = &find(objs, "Certificate", "hg-hostgate-webhook-tls")["spec"]["issuerRef"];
                assert_eq!(r["name"], "corp-ca");
                assert_eq!(r["kind"], "ClusterIssuer");
            },
        },
        Scenario {
            name: "agent off",
            args: set("agent.enabled=false,runtimeClass.enabled=false"),
            present: &["ConfigMap/hg-hostgate-policies"],
            absent: &[
                "DaemonSet",
                "ServiceAccount/hg-hostgate-agent",
                "ClusterRole/hg-hostgate-agent",
                "RuntimeClass",
            ],
            check: |objs| {
                let data = policy_files(objs);
                assert!(!data.contains_key("chart-agent.yaml"));
                assert!(data.contains_key("csi-proxy.yaml"));
            },
        },
        Scenario {
            name: "inline extra policies",
            args: vec!["-f".into(), data.join("values-extra-policies.yaml").display().to_string()],
            present: &["ConfigMap/hg-hostgate-policies"],
            absent: &[],
            check: |objs| {
                let data = policy_files(objs);
                assert!(data.contains_key("extra-00-windows-exporter-lab.yaml"), "{:?}", data.keys());
                assert!(data.contains_key("extra-01-audit-everything-in-lab.yaml"));
                assert!(data.contains_key("baseline.yaml"));
                let set = load_policy_files(&data);
                assert_eq!(set.len(), 8 + 1 + 2, "shipped, agent and extra policies");
            },
        },
        Scenario {
            name: "shipped policies off",
            args: set("policies.shipped=false"),
            present: &["ConfigMap/hg-hostgate-policies"],
            absent: &[],
            check: |objs| {
                let data = policy_files(objs);
                assert_eq!(
                    data.keys().collect::<Vec<_>>(),
                    ["chart-agent.yaml"],
                    "only the agent's own policy"
                );
                assert_eq!(load_policy_files(&data).len(), 1);
            },
        },
        Scenario {
            name: "policies from files only",
            args: set("policies.source=files"),
            present: &["Role/hg-hostgate-webhook"],
            absent: &["ClusterRole/hg-hostgate-webhook", "ClusterRoleBinding/hg-hostgate-webhook"],
            check: |objs| {
                assert!(webhook_args(objs).contains(&"--policy-source=files".to_owned()));
            },
        },
        Scenario {
            name: "policies from the cluster only",
            args: set("policies.source=cluster,policies.shipped=false,agent.enabled=false,runtimeClass.enabled=false"),
            present: &["ClusterRole/hg-hostgate-webhook"],
            absent: &["ConfigMap/hg-hostgate-policies", "DaemonSet"],
            check: |objs| {
                let args = webhook_args(objs);
                assert!(args.contains(&"--policy-source=cluster".to_owned()));
                assert!(!args.iter().any(|a| a.starts_with("--policies")), "{args:?}");
            },
        },
        Scenario {
            name: "no approvals, no cluster: no API access at all",
            args: set("approvals.enabled=false,agent.enabled=false,runtimeClass.enabled=false,policies.source=files"),
            present: &["ConfigMap/hg-hostgate-policies"],
            absent: &[
                "Role",
                "RoleBinding",
                "ClusterRole",
                "Secret/hg-hostgate-signing-key",
                "ConfigMap/hg-hostgate-public-keys",
            ],
            check: |objs| {
                let args = webhook_args(objs);
                assert!(!args.iter().any(|a| a.starts_with("--signing-key")));
                assert!(!args.iter().any(|a| a.starts_with("--publish-public-key")));
                let d: Deployment = typed(find(objs, "Deployment", "hg-hostgate-webhook"));
                let pod = d.spec.expect("spec").template.spec.expect("pod");
                assert_eq!(pod.automount_service_account_token, Some(false));
            },
        },
        Scenario {
            name: "previous public keys trusted, own signing Secret",
            args: vec![
                "--set-string".into(),
                "approvals.trustedPublicKeys.old\\.pub=-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----".into(),
                "--set".into(),
                "approvals.existingSecret=my-key,approvals.existingSecretKey=k.key".into(),
            ],
            present: &["ConfigMap/hg-hostgate-trusted-keys"],
            absent: &["Secret/hg-hostgate-signing-key"],
            check: |objs| {
                let args = webhook_args(objs);
                assert!(args.contains(&"--trust-keys=/etc/hostgate/trusted-keys".to_owned()));
                assert!(args.contains(&"--signing-key=/etc/hostgate/signing/k.key".to_owned()));
                let cm: ConfigMap = typed(find(objs, "ConfigMap", "hg-hostgate-trusted-keys"));
                let pem = &cm.data.expect("data")["old.pub"];
                assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
                let d: Deployment = typed(find(objs, "Deployment", "hg-hostgate-webhook"));
                let volumes = d.spec.expect("s").template.spec.expect("p").volumes.expect("v");
                let signing = volumes.iter().find(|v| v.name == "signing-key").expect("vol");
                assert_eq!(
                    signing.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
                    Some("my-key")
                );
            },
        },
        Scenario {
            name: "images pinned by digest, PDB by maxUnavailable, no test hook",
            args: set(&format!(
                "webhook.image.digest=sha256:{a},agent.image.digest=sha256:{b},\
                 webhook.podDisruptionBudget.minAvailable=null,webhook.podDisruptionBudget.maxUnavailable=1,\
                 tests.enabled=false",
                a = "a".repeat(64),
                b = "b".repeat(64)
            )),
            present: &["DaemonSet/hg-hostgate-agent"],
            absent: &["Pod"],
            check: |objs| {
                let ds: DaemonSet = typed(find(objs, "DaemonSet", "hg-hostgate-agent"));
                let image = ds.spec.expect("s").template.spec.expect("p").containers[0]
                    .image
                    .clone()
                    .expect("image");
                assert_eq!(image, format!("ghcr.io/hostgate/hostgate-agent@sha256:{}", "b".repeat(64)));
                let agent_policy = &policy_files(objs)["chart-agent.yaml"];
                assert!(agent_policy.contains("imageDigest: true"), "{agent_policy}");
                assert!(agent_policy.contains(&image), "{agent_policy}");
                let d: Deployment = typed(find(objs, "Deployment", "hg-hostgate-webhook"));
                assert!(
                    d.spec.expect("s").template.spec.expect("p").containers[0]
                        .image
                        .as_deref()
                        .is_some_and(|i| i.ends_with(&format!("@sha256:{}", "a".repeat(64))))
                );
                let pdb = find(objs, "PodDisruptionBudget", "hg-hostgate-webhook");
                assert_eq!(pdb["spec"]["maxUnavailable"], 1);
                assert!(pdb["spec"].get("minAvailable").is_none());
            },
        },
        Scenario {
            name: "the handler installed, no RuntimeClass",
            args: set("runtimeClass.enabled=false"),
            present: &["DaemonSet/hg-hostgate-agent", "ClusterRole/hg-hostgate-agent"],
            absent: &["RuntimeClass"],
            check: |objs| {
                assert!(
                    !webhook_args(objs).iter().any(|a| a.starts_with("--runtime-class")),
                    "nothing to route pods to"
                );
                check_install_step(objs);
            },
        },
        Scenario {
            name: "no node half: sync only",
            args: set("runtimeClass.enabled=false,agent.install.enabled=false"),
            present: &["DaemonSet/hg-hostgate-agent"],
            absent: &[
                "RuntimeClass",
                "ClusterRole/hg-hostgate-agent",
                "ClusterRoleBinding/hg-hostgate-agent",
            ],
            check: |objs| {
                let pod = agent_pod(objs);
                assert!(pod.init_containers.is_none(), "no install step");
                let volumes: Vec<&str> = pod
                    .volumes
                    .iter()
                    .flatten()
                    .map(|v| v.name.as_str())
                    .collect();
                assert_eq!(volumes, ["trust-keys", "policies"], "no token at all");
                let policy = &policy_files(objs)["chart-agent.yaml"];
                assert!(policy.contains("types: [configMap]\n"), "{policy}");
            },
        },
        Scenario {
            name: "cleaning the nodes up before helm uninstall",
            args: set("agent.install.action=uninstall"),
            present: &["RuntimeClass/hostgate", "ClusterRole/hg-hostgate-agent"],
            absent: &[],
            check: |objs| {
                assert!(
                    !webhook_args(objs).iter().any(|a| a.starts_with("--runtime-class")),
                    "the webhook stops routing pods while their nodes lose the handler"
                );
                let init = install_step(objs);
                assert_eq!(init.name, "uninstall");
                let args = init.args.clone().expect("args");
                assert_eq!(args[1], "uninstall");
                for want in [
                    r"--containerd-config=C:\Program Files\containerd\config.toml",
                    r"--shim-dir=C:\Program Files\containerd",
                    "--restart=windows-service",
                    "--label-node=$(NODE_NAME)",
                ] {
                    assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
                }
            },
        },
        Scenario {
            name: "native mode on containerd 2.x, no restart, own paths and apiserver",
            args: vec![
                "--set".into(),
                "agent.install.mode=native,agent.install.restart=none,agent.install.restartTimeout=120,\
                 agent.install.binDir=D:/containerd/bin/,agent.install.containerdConfig=D:/containerd/config.toml,\
                 agent.install.apiServer.host=10.0.0.1,agent.install.apiServer.port=6443"
                    .into(),
                "--set-string".into(),
                "agent.install.configVersion=3".into(),
            ],
            present: &["DaemonSet/hg-hostgate-agent"],
            absent: &[],
            check: |objs| {
                let init = install_step(objs);
                let args = init.args.clone().expect("args");
                for want in [
                    "--containerd-config=D:/containerd/config.toml",
                    "--config-version=3",
                    "--shim-dir=D:/containerd/bin/",
                    "--restart=none",
                    "--restart-timeout=120",
                ] {
                    assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
                }
                assert!(!args.iter().any(|a| a == "--delegate"), "{args:?}");
                let env: BTreeMap<String, String> = init
                    .env
                    .iter()
                    .flatten()
                    .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                    .collect();
                assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.0.0.1");
                assert_eq!(env["KUBERNETES_SERVICE_PORT"], "6443");
            },
        },
        Scenario {
            name: "webhook on the host network",
            args: set("webhook.hostNetwork=true,webhook.port=9443"),
            present: &["Deployment/hg-hostgate-webhook"],
            absent: &[],
            check: |objs| {
                assert!(webhook_args(objs).contains(&"--secure-port=9443".to_owned()));
                let d: Deployment = typed(find(objs, "Deployment", "hg-hostgate-webhook"));
                let pod = d.spec.expect("spec").template.spec.expect("pod");
                assert_eq!(pod.host_network, Some(true));
                assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
                let port = &pod.containers[0].ports.as_ref().expect("ports")[0];
                assert_eq!(port.container_port, 9443);
                assert_eq!(port.name.as_deref(), Some("https"), "the Service targets it by name");
            },
        },
        Scenario {
            name: "exemptions and selectors merged with the release namespace",
            args: set("admission.exemptNamespaces={monitoring,hostgate-system},admission.validating.workloads=false,admission.objectSelector.matchLabels.hostgate\\.io/review=yes"),
            present: &["ValidatingWebhookConfiguration/hg-hostgate"],
            absent: &[],
            check: |objs| {
                let v = find(objs, "ValidatingWebhookConfiguration", "hg-hostgate");
                let webhooks = v["webhooks"].as_array().expect("webhooks");
                assert_eq!(webhooks.len(), 1, "workload webhooks off");
                let expr = &webhooks[0]["namespaceSelector"]["matchExpressions"][0];
                assert_eq!(expr["operator"], "NotIn");
                assert_eq!(
                    expr["values"],
                    serde_json::json!(["hostgate-system", "monitoring"]),
                    "the release namespace first, no duplicate"
                );
                assert_eq!(webhooks[0]["objectSelector"]["matchLabels"]["hostgate.io/review"], "yes");
            },
        },
        Scenario {
            name: "client certificate and network policy",
            args: [
                set("webhook.clientCA.pem=-----BEGIN CERTIFICATE-----"),
                set("webhook.networkPolicy.enabled=true,webhook.networkPolicy.from[0].ipBlock.cidr=10.0.0.10/32"),
                set("webhook.networkPolicy.healthFrom[0].namespaceSelector.matchLabels.name=monitoring"),
            ]
            .concat(),
            present: &["ConfigMap/hg-hostgate-client-ca", "NetworkPolicy/hg-hostgate-webhook"],
            // Its curl has no client certificate.
            absent: &["Pod/hg-hostgate-test"],
            check: |objs| {
                let args = webhook_args(objs);
                assert!(args.iter().any(|a| a == "--client-ca-file=/etc/hostgate/client-ca/ca.crt"), "{args:?}");
                let ca = find(objs, "ConfigMap", "hg-hostgate-client-ca");
                assert!(ca["data"]["ca.crt"].as_str().is_some_and(|p| p.starts_with("-----BEGIN")));
                let np = find(objs, "NetworkPolicy", "hg-hostgate-webhook");
                let ingress = np["spec"]["ingress"].as_array().expect("ingress");
                assert_eq!(ingress.len(), 2);
                assert_eq!(ingress[0]["ports"][0]["port"], "https");
                assert_eq!(ingress[0]["from"][0]["ipBlock"]["cidr"], "10.0.0.10/32");
                assert_eq!(ingress[1]["ports"][0]["port"], "health");
            },
        },
        Scenario {
            name: "health port off: probes on the HTTPS port",
            args: set("webhook.healthPort=0"),
            present: &["Service/hg-hostgate-webhook"],
            absent: &["NetworkPolicy", "ConfigMap/hg-hostgate-client-ca"],
            check: |objs| {
                assert!(webhook_args(objs).iter().any(|a| a == "--health-port=0"));
                let d: Deployment = typed(find(objs, "Deployment", "hg-hostgate-webhook"));
                let c = &d.spec.expect("spec").template.spec.expect("pod").containers[0];
                for probe in [&c.liveness_probe, &c.readiness_probe] {
                    let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("httpGet");
                    assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
                }
                let svc = find(objs, "Service", "hg-hostgate-webhook");
                let ports = svc["spec"]["ports"].as_array().expect("ports");
                assert_eq!(ports.len(), 1, "no metrics port");
            },
        },
    ]
}

fn policy_files(objs: &[Value]) -> BTreeMap<String, String> {
    let cm: ConfigMap = typed(find(objs, "ConfigMap", "hg-hostgate-policies"));
    cm.data.expect("data")
}

fn load_policy_files(data: &BTreeMap<String, String>) -> hostgate::policy::PolicySet {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in data {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    hostgate::policy::load::load_paths(&[dir.path()])
        .unwrap_or_else(|e| panic!("the rendered policies load:\n{e}"))
}

fn check_rbac(objs: &[Value]) {
    let cr: ClusterRole = typed(find(objs, "ClusterRole", "hg-hostgate-webhook"));
    let rules = cr.rules.expect("rules");
    let mut granted = BTreeSet::new();
    for r in &rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    granted.insert(format!("{g}/{res}:{v}"));
                }
            }
        }
        assert!(r.resource_names.is_none());
    }
    let want: BTreeSet<String> = [
        "hostgate.io/hostprocesspolicies:get",
        "hostgate.io/hostprocesspolicies:list",
        "hostgate.io/hostprocesspolicies:watch",
        "hostgate.io/hostprocesspolicies/status:patch",
        "hostgate.io/hostprocesspolicies/status:update",
        "/namespaces:get",
        "/namespaces:list",
        "/namespaces:watch",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        granted, want,
        "exactly the cluster-wide rights the webhook needs"
    );
    let role: Role = typed(find(objs, "Role", "hg-hostgate-webhook"));
    let rules = role.rules.expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources, Some(vec!["configmaps".to_owned()]));
    assert_eq!(
        rules[0].resource_names,
        Some(vec!["hg-hostgate-public-keys".to_owned()])
    );
    assert_eq!(rules[0].verbs, ["get", "patch", "update"]);
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let b = find(objs, kind, "hg-hostgate-webhook");
        assert_eq!(b["subjects"][0]["name"], "hg-hostgate-webhook");
        assert_eq!(b["subjects"][0]["namespace"], NAMESPACE);
    }
}

fn check_agent(objs: &[Value]) {
    let ds: DaemonSet = typed(find(objs, "DaemonSet", "hg-hostgate-agent"));
    let pod = ds.spec.expect("spec").template.spec.expect("pod");
    assert_eq!(pod.os.as_ref().map(|o| o.name.as_str()), Some("windows"));
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(
        pod.node_selector.as_ref().expect("nodeSelector")["kubernetes.io/os"],
        "windows"
    );
    let w = pod
        .security_context
        .as_ref()
        .and_then(|s| s.windows_options.as_ref())
        .expect("windowsOptions");
    assert_eq!(w.host_process, Some(true));
    assert_eq!(w.run_as_user_name.as_deref(), Some(r"NT AUTHORITY\SYSTEM"));
    let c = &pod.containers[0];
    assert!(
        c.security_context.is_none(),
        "no Linux fields on a Windows pod"
    );
    let limits = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(limits["cpu"].0, "200m");
    assert_eq!(limits["memory"].0, "128Mi");
    let args = c.args.clone().expect("args");
    assert_eq!(
        args,
        [
            "--log-level=info",
            "sync",
            "--trust-keys=etc/hostgate/trust",
            "--policies=etc/hostgate/policies",
            r"--dest=C:\ProgramData\hostgate",
            "--interval=30s",
        ]
    );
    // The relative sources are the mounts (below $CONTAINER_SANDBOX_MOUNT_POINT).
    let mounts: Vec<(&str, &str)> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("trust-keys", "/etc/hostgate/trust"),
            ("policies", "/etc/hostgate/policies")
        ]
    );
    let volumes: Vec<(String, String)> = pod
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.config_map.is_some())
        .map(|v| {
            (
                v.name.clone(),
                v.config_map.as_ref().expect("configMap").name.clone(),
            )
        })
        .collect();
    assert_eq!(
        volumes,
        [
            (
                "trust-keys".to_owned(),
                "hg-hostgate-public-keys".to_owned()
            ),
            ("policies".to_owned(), "hg-hostgate-policies".to_owned())
        ]
    );
}

fn agent_pod(objs: &[Value]) -> k8s_openapi::api::core::v1::PodSpec {
    let ds: DaemonSet = typed(find(objs, "DaemonSet", "hg-hostgate-agent"));
    ds.spec.expect("spec").template.spec.expect("pod")
}

/// The agent's init container.
fn install_step(objs: &[Value]) -> Container {
    let init = agent_pod(objs).init_containers.expect("an install step");
    assert_eq!(init.len(), 1);
    init[0].clone()
}

/// The install step with the defaults: the installer's flags for a Windows node with containerd
/// in its usual place, the shim from the image, the node directory the shim reads, the node
/// labelled with a token mounted into this container only, and RBAC for exactly that.
fn check_install_step(objs: &[Value]) {
    let pod = agent_pod(objs);
    let init = install_step(objs);
    let sync = &pod.containers[0];
    assert_eq!(init.name, "install");
    assert_eq!(
        init.image, sync.image,
        "the shim comes from the agent's image"
    );
    assert_eq!(init.command, Some(vec!["hostgate-agent.exe".to_owned()]));
    assert_eq!(
        init.resources, sync.resources,
        "within the agent policy's limits"
    );
    assert!(
        init.security_context.is_none(),
        "no Linux fields on a Windows pod"
    );
    assert_eq!(
        init.args.clone().expect("args"),
        [
            "--log-level=info",
            "install",
            r"--containerd-config=C:\Program Files\containerd\config.toml",
            "--config-version=auto",
            r"--shim-dir=C:\Program Files\containerd",
            r"--containerd=C:\Program Files\containerd\containerd.exe",
            r"--containerd-address=\\.\pipe\containerd-containerd",
            "--restart=windows-service",
            "--restart-timeout=60",
            r"--node-dir=C:\ProgramData\hostgate",
            "--delegate",
            "--label-node=$(NODE_NAME)",
        ]
    );
    // The installer's node directory is sync's destination and the shim's default.
    let sync_args = sync.args.clone().expect("args");
    assert!(sync_args.contains(&r"--dest=C:\ProgramData\hostgate".to_owned()));
    let node_name = init
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "NODE_NAME")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|f| f.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(node_name, Some("spec.nodeName"));
    // The token: mounted where the installer reads it, in the install step only.
    let mounts: Vec<(&str, &str)> = init
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [(
            "node-label-token",
            "/var/run/secrets/kubernetes.io/serviceaccount"
        )]
    );
    assert!(
        sync.volume_mounts
            .iter()
            .flatten()
            .all(|m| m.name != "node-label-token"),
        "sync gets no token"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    let token = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "node-label-token")
        .and_then(|v| v.projected.as_ref())
        .expect("a projected token volume");
    let sources = token.sources.as_ref().expect("sources");
    assert_eq!(
        sources[0]
            .service_account_token
            .as_ref()
            .map(|t| t.path.as_str()),
        Some("token")
    );
    assert_eq!(
        sources[1].config_map.as_ref().map(|c| c.name.as_str()),
        Some("kube-root-ca.crt")
    );
    // RBAC: patch on nodes, nothing else, for the agent's service account.
    let role: ClusterRole = typed(find(objs, "ClusterRole", "hg-hostgate-agent"));
    let rules = role.rules.expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].api_groups, Some(vec![String::new()]));
    assert_eq!(rules[0].resources, Some(vec!["nodes".to_owned()]));
    assert_eq!(rules[0].verbs, ["patch"]);
    let binding = find(objs, "ClusterRoleBinding", "hg-hostgate-agent");
    assert_eq!(binding["roleRef"]["name"], "hg-hostgate-agent");
    assert_eq!(binding["subjects"][0]["name"], "hg-hostgate-agent");
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    // The agent's policy admits the token volume.
    let policy = &policy_files(objs)["chart-agent.yaml"];
    assert!(policy.contains("types: [configMap, projected]"), "{policy}");
}

/// The RuntimeClass: the installer's handler, scheduled only on the nodes it labelled, with
/// the Windows tolerations.
fn check_runtime_class(objs: &[Value]) {
    let rc: RuntimeClass = typed(find(objs, "RuntimeClass", "hostgate"));
    assert_eq!(rc.handler, "hostgate");
    let scheduling = rc.scheduling.expect("scheduling");
    assert_eq!(
        scheduling.node_selector,
        Some(BTreeMap::from([(
            "hostgate.io/node".to_owned(),
            "ready".to_owned()
        )]))
    );
    let tolerations: Vec<(Option<&str>, Option<&str>, Option<&str>)> = scheduling
        .tolerations
        .as_ref()
        .expect("tolerations")
        .iter()
        .map(|t| (t.key.as_deref(), t.value.as_deref(), t.effect.as_deref()))
        .collect();
    assert_eq!(
        tolerations,
        [
            (Some("os"), Some("windows"), Some("NoSchedule")),
            (
                Some("node.kubernetes.io/os"),
                Some("windows"),
                Some("NoSchedule")
            )
        ]
    );
}

fn check_webhook_configurations(objs: &[Value]) {
    let secret: Secret = typed(find(objs, "Secret", "hg-hostgate-webhook-tls"));
    let data = secret.data.expect("data");
    let ca_b64 = base64_encode(&data["ca.crt"].0);
    let m: MutatingWebhookConfiguration =
        typed(find(objs, "MutatingWebhookConfiguration", "hg-hostgate"));
    let v: ValidatingWebhookConfiguration =
        typed(find(objs, "ValidatingWebhookConfiguration", "hg-hostgate"));
    let mutating = m.webhooks.expect("webhooks");
    let validating = v.webhooks.expect("webhooks");
    assert_eq!(mutating.len(), 1);
    assert_eq!(
        validating
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>(),
        [
            "pods.validate.hostgate.io",
            "workloads.validate.hostgate.io",
            "cronjobs.validate.hostgate.io"
        ]
    );
    let w = &mutating[0];
    assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert_eq!(w.timeout_seconds, Some(3));
    let mut resources = BTreeSet::new();
    for (name, common, rules, timeout) in mutating
        .iter()
        .map(|w| {
            (
                &w.name,
                (
                    &w.admission_review_versions,
                    &w.side_effects,
                    &w.failure_policy,
                    &w.client_config,
                    &w.namespace_selector,
                    &w.match_conditions,
                ),
                &w.rules,
                w.timeout_seconds,
            )
        })
        .chain(validating.iter().map(|w| {
            (
                &w.name,
                (
                    &w.admission_review_versions,
                    &w.side_effects,
                    &w.failure_policy,
                    &w.client_config,
                    &w.namespace_selector,
                    &w.match_conditions,
                ),
                &w.rules,
                w.timeout_seconds,
            )
        }))
    {
        let (versions, side_effects, failure, client, ns, conditions) = common;
        assert_eq!(versions, &["v1"], "{name}");
        assert_eq!(side_effects, "None", "{name}");
        assert_eq!(failure.as_deref(), Some("Fail"), "{name}");
        assert!(timeout.is_some_and(|t| (1..=5).contains(&t)), "{name}");
        let svc = client.service.as_ref().expect("service");
        assert_eq!(
            (svc.name.as_str(), svc.namespace.as_str(), svc.port),
            ("hg-hostgate-webhook", NAMESPACE, Some(443))
        );
        assert_eq!(
            client.ca_bundle.as_ref().map(|b| base64_encode(&b.0)),
            Some(ca_b64.clone()),
            "{name}: the caBundle is the Secret's CA"
        );
        let exprs = ns
            .as_ref()
            .and_then(|s| s.match_expressions.as_ref())
            .expect("namespaceSelector");
        assert_eq!(exprs[0].key, "kubernetes.io/metadata.name");
        assert_eq!(exprs[0].operator, "NotIn");
        assert_eq!(exprs[0].values, Some(vec![NAMESPACE.to_owned()]));
        assert_eq!(conditions.as_ref().map(Vec::len), Some(1), "{name}");
        for r in rules.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for op in r.operations.iter().flatten() {
                    let group = r.api_groups.as_ref().expect("groups").join(",");
                    resources.insert(format!("{name} {group}/{res} {op}"));
                }
            }
        }
    }
    let want: BTreeSet<String> = [
        "pods.mutate.hostgate.io /pods CREATE",
        "pods.mutate.hostgate.io /pods UPDATE",
        "pods.mutate.hostgate.io /pods/ephemeralcontainers UPDATE",
        "pods.validate.hostgate.io /pods CREATE",
        "pods.validate.hostgate.io /pods UPDATE",
        "pods.validate.hostgate.io /pods/ephemeralcontainers UPDATE",
        "workloads.validate.hostgate.io apps/deployments CREATE",
        "workloads.validate.hostgate.io apps/deployments UPDATE",
        "workloads.validate.hostgate.io apps/daemonsets CREATE",
        "workloads.validate.hostgate.io apps/daemonsets UPDATE",
        "workloads.validate.hostgate.io apps/statefulsets CREATE",
        "workloads.validate.hostgate.io apps/statefulsets UPDATE",
        "workloads.validate.hostgate.io apps/replicasets CREATE",
        "workloads.validate.hostgate.io apps/replicasets UPDATE",
        "workloads.validate.hostgate.io batch/jobs CREATE",
        "workloads.validate.hostgate.io batch/jobs UPDATE",
        "workloads.validate.hostgate.io /replicationcontrollers CREATE",
        "workloads.validate.hostgate.io /replicationcontrollers UPDATE",
        "cronjobs.validate.hostgate.io batch/cronjobs CREATE",
        "cronjobs.validate.hostgate.io batch/cronjobs UPDATE",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(resources, want);
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn every_rendered_object_is_a_valid_typed_object() {
    let helm = helm_or_skip!();
    for s in scenarios() {
        let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
        let objs = render(helm, &args);
        let mut errors = Vec::new();
        for o in &objs {
            if let Err(e) = check_object(o) {
                errors.push(format!("{} {}: {e}", kind_of(o), name_of(o)));
            }
            // Every namespaced object names the release namespace explicitly.
            let cluster_scoped = matches!(
                kind_of(o),
                "ClusterRole"
                    | "ClusterRoleBinding"
                    | "MutatingWebhookConfiguration"
                    | "ValidatingWebhookConfiguration"
                    | "RuntimeClass"
            );
            let ns = o["metadata"]["namespace"].as_str();
            if cluster_scoped != ns.is_none() || ns.is_some_and(|n| n != NAMESPACE) {
                errors.push(format!("{} {}: namespace {ns:?}", kind_of(o), name_of(o)));
            }
            let labels = &o["metadata"]["labels"];
            for l in [
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/component",
                "app.kubernetes.io/managed-by",
                "helm.sh/chart",
            ] {
                if !labels[l].is_string() {
                    errors.push(format!("{} {}: no label {l}", kind_of(o), name_of(o)));
                }
            }
        }
        assert!(errors.is_empty(), "{}:\n{}", s.name, errors.join("\n"));
        let names = kinds(&objs);
        for p in s.present {
            assert!(
                names
                    .iter()
                    .any(|n| n == p || n.starts_with(&format!("{p}/"))),
                "{}: {p} missing from {names:?}",
                s.name
            );
        }
        for a in s.absent {
            assert!(
                !names
                    .iter()
                    .any(|n| n == a || n.starts_with(&format!("{a}/"))),
                "{}: {a} should not be rendered: {names:?}",
                s.name
            );
        }
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{}: duplicate objects", s.name);
        (s.check)(&objs);
    }
}

#[test]
fn certificates_and_signing_key_are_usable() {
    let helm = helm_or_skip!();
    let objs = render(helm, &[]);
    let secret: Secret = typed(find(&objs, "Secret", "hg-hostgate-webhook-tls"));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.expect("data");
    let pem_cert = String::from_utf8(data["tls.crt"].0.clone()).expect("PEM");
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_cert.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .expect("SAN extension")
        .expect("SANs")
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sans,
        [
            "hg-hostgate-webhook.hostgate-system.svc",
            "hg-hostgate-webhook.hostgate-system",
            "hg-hostgate-webhook"
        ]
    );
    let ca_pem = String::from_utf8(data["ca.crt"].0.clone()).expect("PEM");
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).expect("PEM");
    let ca = ca.parse_x509().expect("X.509");
    assert_eq!(cert.issuer(), ca.subject(), "signed by the CA in ca.crt");
    assert!(ca.is_ca());
    // The private key is one the webhook's TLS loader reads.
    let key = &data["tls.key"].0;
    assert!(key.starts_with(b"-----BEGIN"), "PEM key");

    // helm's ed25519 key is the PKCS#8 PEM that `hostgate serve --signing-key` reads.
    let signing: Secret = typed(find(&objs, "Secret", "hg-hostgate-signing-key"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("signing.key");
    std::fs::write(&file, &signing.data.expect("data")["signing.key"].0).expect("write");
    let identity = hostgate::approval::SigningIdentity::from_pem_file(&file)
        .expect("the chart's signing key loads");
    assert!(!identity.kid().is_empty());
}

#[test]
fn names_fit_in_63_characters_and_do_not_collide() {
    let helm = helm_or_skip!();
    let long = "x".repeat(63);
    let objs = render(helm, &["--set", &format!("fullnameOverride={long}")]);
    let mut names = BTreeSet::new();
    for o in &objs {
        let name = name_of(o);
        assert!(name.len() <= 63, "{name} is {} characters", name.len());
        assert!(!name.ends_with('-'), "{name}");
        for (k, v) in o["metadata"]["labels"].as_object().expect("labels") {
            assert!(v.as_str().is_some_and(|v| v.len() <= 63), "label {k}={v}");
        }
        names.insert(format!("{}/{name}", kind_of(o)));
    }
    assert_eq!(names.len(), objs.len());
    let d = find(
        &objs,
        "Deployment",
        &format!("{}-webhook", "x".repeat(63 - "-webhook".len())),
    );
    assert!(d["spec"]["template"]["spec"]["volumes"].is_array());
}

// ---------------------------------------------------------------------------------------------
// matchConditions

#[derive(Debug, serde::Deserialize)]
struct MatchSample {
    name: String,
    webhook: String,
    selected: bool,
    object: Value,
}

/// The CEL expression of every webhook, by webhook name.
fn match_expressions(objs: &[Value]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for w in find(objs, kind, "hg-hostgate")["webhooks"]
            .as_array()
            .expect("webhooks")
        {
            let conds = w["matchConditions"].as_array().expect("matchConditions");
            assert_eq!(conds.len(), 1);
            out.insert(
                w["name"].as_str().expect("name").to_owned(),
                conds[0]["expression"]
                    .as_str()
                    .expect("expression")
                    .to_owned(),
            );
        }
    }
    out
}

fn eval_cel(expr: &str, object: &Value) -> Result<bool, String> {
    let program = cel::Program::compile(expr).map_err(|e| format!("compile: {e}"))?;
    let mut ctx = cel::Context::default();
    ctx.add_variable("object", object.clone())
        .map_err(|e| format!("object: {e}"))?;
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("not a bool: {other:?}")),
        Err(e) => Err(format!("evaluation error: {e}")),
    }
}

/// hostgate's own answer: does this object request HostProcess power?
fn hostgate_says(object: &Value) -> bool {
    let Some((_, kind)) = hostgate::object::type_of(object) else {
        return false;
    };
    let kind = hostgate::object::Kind::from_name(kind).expect("a judged kind");
    let json = serde_json::to_string(object).expect("json");
    let w = hostgate::object::Workload::from_json(kind, &json).expect("a valid object");
    w.pod().is_some_and(|p| p.requests_host_process())
}

#[test]
fn match_conditions_select_exactly_the_hostprocess_requests() {
    let helm = helm_or_skip!();
    let objs = render(helm, &[]);
    let exprs = match_expressions(&objs);
    let webhooks_for = |group: &str| -> Vec<&str> {
        match group {
            "pods" => vec!["pods.mutate.hostgate.io", "pods.validate.hostgate.io"],
            "workloads" => vec!["workloads.validate.hostgate.io"],
            "cronjobs" => vec!["cronjobs.validate.hostgate.io"],
            other => panic!("unknown webhook group {other}"),
        }
    };
    let text = std::fs::read_to_string(root().join("tests/data/chart/match-conditions.yaml"))
        .expect("samples");
    let (docs, err) = hostgate::manifest::read_documents(text.as_bytes());
    assert_eq!(err, None);
    let samples: Vec<MatchSample> =
        serde_json::from_value(docs[0].value.clone()).expect("sample list");
    assert!(samples.len() >= 20);
    let mut evaluated = 0;
    let mut failures = Vec::new();
    for s in &samples {
        let engine = hostgate_says(&s.object);
        if engine != s.selected {
            failures.push(format!(
                "{}: hostgate's engine says {engine}, the sample says {}",
                s.name, s.selected
            ));
        }
        for webhook in webhooks_for(&s.webhook) {
            let expr = exprs.get(webhook).expect("webhook has an expression");
            match eval_cel(expr, &s.object) {
                Ok(got) if got == s.selected => evaluated += 1,
                Ok(got) => failures.push(format!("{}: {webhook} selected={got}", s.name)),
                Err(e) => failures.push(format!("{}: {webhook}: {e}", s.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(evaluated > samples.len());
    // Each webhook's expression only relies on fields of its own kinds: a pod expression on a
    // workload, or the reverse, is simply false, never an error.
    let pod = &samples
        .iter()
        .find(|s| s.name == "pod-level hostProcess")
        .expect("sample")
        .object;
    assert_eq!(
        eval_cel(&exprs["cronjobs.validate.hostgate.io"], pod),
        Ok(false)
    );
    assert_eq!(
        eval_cel(&exprs["workloads.validate.hostgate.io"], pod),
        Ok(false)
    );
}

#[test]
fn cel_interpreter_agrees_with_kubernetes_on_the_constructs_used() {
    // What the expressions rely on, in Kubernetes' (cel-go) semantics: has() on a missing key is
    // false, a missing key is an error, `&&` short-circuits past it, `in` tests map keys.
    let obj = serde_json::json!({"spec": {"a": {"b": true}, "list": [{"x": 1}, {}]}, "metadata": {"annotations": {"k": "v"}}});
    assert_eq!(eval_cel("has(object.spec.a)", &obj), Ok(true));
    assert_eq!(eval_cel("has(object.spec.missing)", &obj), Ok(false));
    assert!(eval_cel("object.spec.missing.b == true", &obj).is_err());
    assert_eq!(
        eval_cel(
            "has(object.spec.missing) && object.spec.missing.b == true",
            &obj
        ),
        Ok(false)
    );
    assert_eq!(
        eval_cel("object.spec.list.exists(c, has(c.x) && c.x == 1)", &obj),
        Ok(true)
    );
    assert_eq!(
        eval_cel("'k' in object.metadata.annotations", &obj),
        Ok(true)
    );
    assert_eq!(
        eval_cel("'v' in object.metadata.annotations", &obj),
        Ok(false)
    );
}

// ---------------------------------------------------------------------------------------------
// Policies

#[test]
fn rendered_policies_load_and_hostgate_check_admits_the_chart() {
    let helm = helm_or_skip!();
    let digest = format!("sha256:{}", "c".repeat(64));
    for args in [
        vec![],
        vec!["--set".to_owned(), format!("agent.image.digest={digest}")],
        vec![
            "--set".to_owned(),
            "agent.runAsUserName=hostgate-agents,agent.resources.limits.cpu=1,agent.resources.limits.memory=1Gi".to_owned(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = template(helm, &args).expect("renders");
        let objs = parse(&text);
        let policies = load_policy_files(&policy_files(&objs));
        assert_eq!(policies.len(), 9, "{args:?}: eight shipped policies and the agent's");

        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("chart.yaml");
        std::fs::write(&manifest, &text).expect("write");
        // As the webhook judges pods, and as it would with its --runtime-class (the agent's
        // namespace is exempt, so in the cluster it is never routed; the policy admits it either
        // way).
        for runtime_class in [None, Some("hostgate")] {
            let report = check_rendered(&manifest, policies.clone(), runtime_class);
            let summary = report.summary();
            assert!(report.errors.is_empty(), "{args:?}: {:?}", report.errors);
            assert_eq!(summary.denied, 0, "{args:?}: {:#?}", report.results);
            let agent = report
                .results
                .iter()
                .find(|r| r.kind == "DaemonSet" && r.name == "hg-hostgate-agent")
                .expect("the agent DaemonSet is judged");
            assert_eq!(
                agent.verdict,
                hostgate::check::Verdict::Allowed,
                "{args:?}: {:#?}",
                agent.decision
            );
            assert!(
                agent.decision.policy.as_deref() == Some("hg-hostgate-agent") && agent.decision.host_process,
                "admitted by its own policy: {:#?}",
                agent.decision
            );
            let routed = agent
                .defaulted
                .iter()
                .any(|c| c.path == "spec.template.spec.runtimeClassName");
            assert_eq!(routed, runtime_class.is_some(), "{:?}", agent.defaulted);
        }
    }
}

fn check_rendered(
    manifest: &Path,
    policies: hostgate::policy::PolicySet,
    runtime_class: Option<&str>,
) -> hostgate::check::Report {
    let mut opts = hostgate::check::CheckOptions::new(policies);
    opts.default_namespace = NAMESPACE.to_owned();
    opts.runtime_class = runtime_class.map(str::to_owned);
    hostgate::check::check(
        &[hostgate::check::Input::from_arg(manifest.to_owned())],
        &opts,
    )
}

/// A change to the agent DaemonSet.
type Change = fn(&mut Value);

/// The agent's policy is exact: another image, a digest policy without the digest, or a bigger
/// limit is refused. (The chart's policy is what makes the agent admissible, not a loophole.)
#[test]
fn the_agent_policy_admits_only_the_agent() {
    let helm = helm_or_skip!();
    let digest = format!("sha256:{}", "d".repeat(64));
    let text =
        template(helm, &["--set", &format!("agent.image.digest={digest}")]).expect("renders");
    let objs = parse(&text);
    let policies = Arc::new(policy_files(&objs));
    let ds = find(&objs, "DaemonSet", "hg-hostgate-agent").clone();
    let cases: Vec<(&str, Change)> = vec![
        ("another image", |d: &mut Value| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] =
                Value::from("ghcr.io/evil/agent:latest");
        }),
        ("the tag instead of the digest", |d: &mut Value| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] =
                Value::from("ghcr.io/hostgate/hostgate-agent:0.1.0-windows");
        }),
        ("a larger memory limit", |d: &mut Value| {
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] =
                Value::from("2Gi");
        }),
        ("a host path", |d: &mut Value| {
            d["spec"]["template"]["spec"]["volumes"]
                .as_array_mut()
                .expect("volumes")
                .push(serde_json::json!({"name": "c", "hostPath": {"path": "C:\\"}}));
        }),
        ("another service account", |d: &mut Value| {
            d["spec"]["template"]["spec"]["serviceAccountName"] = Value::from("default");
        }),
        ("another image for the install step", |d: &mut Value| {
            d["spec"]["template"]["spec"]["initContainers"][0]["image"] =
                Value::from("ghcr.io/evil/agent:latest");
        }),
        (
            "a larger CPU limit for the install step",
            |d: &mut Value| {
                d["spec"]["template"]["spec"]["initContainers"][0]["resources"]["limits"]["cpu"] =
                    Value::from("4");
            },
        ),
        ("a secret volume", |d: &mut Value| {
            d["spec"]["template"]["spec"]["volumes"]
                .as_array_mut()
                .expect("volumes")
                .push(serde_json::json!({"name": "s", "secret": {"secretName": "x"}}));
        }),
    ];
    for (what, change) in cases {
        let mut changed = ds.clone();
        change(&mut changed);
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("ds.yaml");
        std::fs::write(&manifest, serde_json::to_string(&changed).expect("json")).expect("write");
        let report = check_rendered(&manifest, load_policy_files(&policies), None);
        assert_eq!(report.results.len(), 1);
        assert_eq!(
            report.results[0].verdict,
            hostgate::check::Verdict::Denied,
            "{what} must be refused"
        );
    }
}

#[test]
fn shipped_policy_copies_equal_the_repository_policies() {
    let copies = root().join("charts/hostgate/files/policies");
    let mut expected = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("policies")).expect("policies/") {
        let dir = entry.expect("entry").path();
        let source = dir.join("policy.yaml");
        if !source.is_file() {
            continue;
        }
        let name = format!("{}.yaml", dir.file_name().expect("name").to_string_lossy());
        let copy = copies.join(&name);
        let want = std::fs::read(&source).expect("policy.yaml");
        let got = std::fs::read(&copy).unwrap_or_default();
        assert!(
            want == got,
            "{} differs from {}; refresh the chart's copies with:\n  \
             for d in policies/*/; do cp \"$d/policy.yaml\" \"charts/hostgate/files/policies/$(basename \"$d\").yaml\"; done",
            copy.display(),
            source.display()
        );
        expected.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&copies)
        .expect("files/policies")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(present, expected, "no stale copies in {}", copies.display());
    assert!(expected.len() >= 6);
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[test]
fn bad_values_are_refused_by_the_schema() {
    let helm = helm_or_skip!();
    for (args, expect) in [
        (vec!["--set", "webhook.replicaCount=two"], "replicaCount"),
        (vec!["--set", "replicaCount=2"], "replicaCount"),
        (vec!["--set", "webhok.port=8443"], "webhok"),
        (
            vec!["--set", "admission.failurePolicy=Sometimes"],
            "failurePolicy",
        ),
        (
            vec!["--set", "admission.validating.timeoutSeconds=60"],
            "timeoutSeconds",
        ),
        (vec!["--set", "agent.image.digest=latest"], "digest"),
        (vec!["--set", "policies.source=etcd"], "source"),
        (vec!["--set", "webhook.port=80"], "port"),
        (vec!["--set", "webhook.logging.format=xml"], "format"),
        (vec!["--set", "agent.resources.limits=null"], "limits"),
        (
            vec![
                "--set",
                "policies.extra[0].kind=Pod,policies.extra[0].apiVersion=v1",
            ],
            "extra",
        ),
        (vec!["--set", "runtimeClass.name=Host_Gate"], "runtimeClass"),
        (vec!["--set", "runtimeClass.enable=true"], "enable"),
        (
            vec!["--set", "runtimeClass.nodeSelector.pool=1"],
            "nodeSelector",
        ),
        (vec!["--set", "webhook.hostNetwork=yes"], "hostNetwork"),
        (vec!["--set", "agent.install.action=remove"], "action"),
        (vec!["--set", "agent.install.mode=sideways"], "mode"),
        (
            vec!["--set", "agent.install.configVersion=4"],
            "configVersion",
        ),
        (vec!["--set", "agent.install.restart=systemd"], "restart"),
        (
            vec!["--set", "agent.install.restartTimeout=0"],
            "restartTimeout",
        ),
        (
            vec!["--set", "agent.install.containerdConfig=config.toml"],
            "containerdConfig",
        ),
        (vec!["--set", "agent.install.apiServer.port=https"], "port"),
    ] {
        let Err(err) = template(helm, &args) else {
            panic!("{args:?} must be refused")
        };
        assert!(
            err.contains("schema") && err.contains(expect),
            "{args:?}: helm's error should come from the schema and name {expect:?}:\n{err}"
        );
    }
}

#[test]
fn impossible_combinations_are_refused() {
    let helm = helm_or_skip!();
    let cases: [(&str, &[&str], &str); 14] = [
        ("kube-system", &[], "namespace of its own"),
        (
            NAMESPACE,
            &["--set", "webhook.networkPolicy.enabled=true"],
            "an empty from admits everyone",
        ),
        (
            NAMESPACE,
            &["--set", "admission.failurePolicy=Ignore"],
            "allowFailOpen",
        ),
        (
            NAMESPACE,
            &["--set", "webhook.podDisruptionBudget.minAvailable=2"],
            "block every node drain",
        ),
        (
            NAMESPACE,
            &["--set", "webhook.podDisruptionBudget.maxUnavailable=1"],
            "not both",
        ),
        (
            NAMESPACE,
            &["--set", "policies.source=cluster"],
            "would not be enforced",
        ),
        (
            NAMESPACE,
            &["--set", "policies.source=cluster,policies.shipped=false"],
            "agent",
        ),
        (
            NAMESPACE,
            &["--set", "approvals.enabled=false"],
            "approvals.enabled",
        ),
        (
            NAMESPACE,
            &[
                "--set",
                "policies.extra[0].apiVersion=hostgate.io/v1alpha1,policies.extra[0].kind=HostProcessPolicy,policies.extra[0].metadata.name=csi-proxy,policies.extra[0].spec.mode=Warn",
            ],
            "already in the set",
        ),
        (
            NAMESPACE,
            &["--set", "agent.enabled=false"],
            "runtimeClass.enabled needs the agent's install step",
        ),
        (
            NAMESPACE,
            &["--set", "agent.install.enabled=false"],
            "runtimeClass.enabled needs the agent's install step",
        ),
        (
            NAMESPACE,
            &["--set", "agent.dest=D:/hostgate"],
            "the shim reads",
        ),
        (
            NAMESPACE,
            &["--set-string", "agent.install.configVersion=3"],
            "delegate needs containerd 1.6/1.7",
        ),
        (
            NAMESPACE,
            &["--set", "approvals.enabled=false,agent.enabled=false"],
            "needs approvals.enabled",
        ),
    ];
    for (ns, args, expect) in cases {
        match template_in(helm, ns, args) {
            Ok(_) => panic!("{ns} {args:?} must fail"),
            Err(err) => assert!(err.contains(expect), "{ns} {args:?}: {err}"),
        }
    }
    // And the escape hatch that says it on purpose.
    template(
        helm,
        &[
            "--set",
            "admission.failurePolicy=Ignore,admission.allowFailOpen=true",
        ],
    )
    .expect("fail-open when acknowledged");
    // The node directory is compared as Windows compares paths.
    template(helm, &["--set", "agent.dest=c:/programdata/hostgate/"])
        .expect("the shim's directory, spelt otherwise");
    // Without the RuntimeClass, delegate mode on containerd 2.x is still refused; native is not.
    template(
        helm,
        &[
            "--set-string",
            "agent.install.configVersion=3,agent.install.mode=native",
        ],
    )
    .expect("native mode on containerd 2.x");
}

/// The `helm test` pod's AdmissionReview, posted to the webhook's router with the rendered
/// policies: HTTP 200, and a body in which the pod's `grep`s find what they look for.
#[tokio::test]
async fn the_helm_test_review_gets_the_answer_the_test_pod_expects() {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let Some(helm) = helm() else { return };
    let objs = render(helm, &[]);
    let pod: Pod = typed(find(&objs, "Pod", "hg-hostgate-test"));
    let container = &pod.spec.expect("spec").containers[0];
    let review = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "REVIEW")
        .and_then(|e| e.value.clone())
        .expect("REVIEW");
    let script = &container.args.as_ref().expect("args")[0];
    let state = Arc::new(hostgate::server::state::AppState::new(None, None, true));
    state.install_policies(load_policy_files(&policy_files(&objs)), Default::default());
    state.set_tls_ready();
    let request = axum::http::Request::post("/validate")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(review))
        .expect("request");
    let response = hostgate::server::routes::router(state, Default::default())
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).expect("UTF-8");
    for needle in [
        r#""kind":"AdmissionReview""#,
        r#""uid":"7d1d7b3c-0000-4000-8000-000000000001""#,
    ] {
        assert!(script.contains(needle), "the test pod greps for {needle}");
        assert!(body.contains(needle), "{needle} in {body}");
    }
    assert!(
        body.contains(r#""allowed":false"#),
        "nothing admits it: {body}"
    );
}
