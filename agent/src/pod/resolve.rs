//! The kubelet's part, for a static pod: who the pod is, each container's environment
//! (`env`, `valueFrom`, `envFrom`), argv and mounts.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;

use hostgate_core::pod::ContainerRef;
use hostgate_core::quantity::Quantity as Exact;
use k8s_openapi::api::core::v1::{EnvVarSource, Pod};

use super::manifest::{ConfigDirError, ConfigKind, ConfigSource};
use super::volumes::{PodVolumes, plain_relative};
use crate::container::Mount;
use crate::kubelet;
use crate::verify::RuntimeMount;

/// Why a container cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A field the agent cannot honour, or a reference that does not resolve.
    #[error("{path}: {message}")]
    Invalid {
        /// Field path (`spec.containers[0].env[2].valueFrom`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The config directory could not be read.
    #[error("{path}")]
    ConfigDir {
        /// Field path.
        path: String,
        /// Why.
        #[source]
        source: ConfigDirError,
    },
}

fn invalid(path: String, message: impl Into<String>) -> ResolveError {
    ResolveError::Invalid {
        path,
        message: message.into(),
    }
}

/// Who the pod is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// `metadata.namespace`, default `default`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`, or a random one.
    pub uid: String,
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

impl PodIdentity {
    /// Reads and validates the names (they become path components).
    pub fn of(pod: &Pod) -> Result<Self, ResolveError> {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        if !is_dns_label(&namespace) {
            return Err(invalid(
                "metadata.namespace".to_owned(),
                format!("{namespace:?} is not a valid namespace name (RFC 1123 label)"),
            ));
        }
        let name = pod.metadata.name.clone().ok_or_else(|| {
            invalid(
                "metadata.name".to_owned(),
                "Required value: a static pod needs a name",
            )
        })?;
        if !is_dns_subdomain(&name) {
            return Err(invalid(
                "metadata.name".to_owned(),
                format!("{name:?} is not a valid pod name (RFC 1123 subdomain)"),
            ));
        }
        let uid = pod.metadata.uid.clone().unwrap_or_else(random_uid);
        Ok(Self {
            namespace,
            name,
            uid,
        })
    }
}

/// Checks a container name (a path component of its logs).
pub fn check_container_name(c: &ContainerRef<'_>, path: &str) -> Result<(), ResolveError> {
    if is_dns_label(c.name) {
        Ok(())
    } else {
        Err(invalid(
            format!("{path}.name"),
            format!(
                "{:?} is not a valid container name (RFC 1123 label)",
                c.name
            ),
        ))
    }
}

fn random_uid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Not security-relevant: only a stand-in for metadata.uid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = (t ^ u128::from(std::process::id())).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Facts about this node for `fieldRef` and `resourceFieldRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// `spec.nodeName`.
    pub name: String,
    /// `status.hostIP` (and `status.podIP`: HostProcess pods use the host network).
    pub ip: IpAddr,
    /// Logical processors (node allocatable CPU when no limit is set).
    pub cpus: NonZeroU32,
    /// Physical memory in bytes (node allocatable memory when no limit is set).
    pub memory_bytes: u64,
}

impl NodeInfo {
    /// This host: its hostname, the address of its default route (else loopback), its CPUs
    /// and memory.
    pub fn detect(cpus: NonZeroU32) -> Self {
        let name = host_name()
            .map(|h| h.to_ascii_lowercase())
            .unwrap_or_else(|| "localhost".to_owned());
        Self {
            name,
            ip: default_route_ip(),
            cpus,
            memory_bytes: total_memory().unwrap_or(0),
        }
    }
}

#[cfg(unix)]
fn host_name() -> Option<String> {
    nix::unistd::gethostname().ok()?.into_string().ok()
}

#[cfg(not(unix))]
fn host_name() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

/// The local address the kernel would use to reach a public address (no packet is sent).
fn default_route_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The `fieldRef` values the kubelet offers to environment variables.
fn field_value(field: &str, pod: &Pod, id: &PodIdentity, node: &NodeInfo) -> Option<String> {
    let meta = &pod.metadata;
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone().or(s.service_account.clone()))
        .unwrap_or_else(|| "default".to_owned());
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = field.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    match field {
        "metadata.name" => Some(id.name.clone()),
        "metadata.namespace" => Some(id.namespace.clone()),
        "metadata.uid" => Some(id.uid.clone()),
        "spec.nodeName" => Some(node.name.clone()),
        "spec.serviceAccountName" => Some(sa),
        "status.hostIP" | "status.hostIPs" | "status.podIP" | "status.podIPs" => {
            Some(node.ip.to_string())
        }
        _ => keyed("metadata.labels['", meta.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", meta.annotations.as_ref())),
    }
}

/// `resourceFieldRef`: `limits.cpu|memory` (the node's capacity when unset) and
/// `requests.cpu|memory` (defaulted to the limit), rounded up in units of `divisor`.
fn resource_value(
    c: &ContainerRef<'_>,
    resource: &str,
    divisor: Option<&str>,
    node: &NodeInfo,
) -> Result<String, String> {
    let res = c.resources;
    let get = |section: &str, key: &str| -> Option<String> {
        let map = match section {
            "limits" => res.and_then(|r| r.limits.as_ref()),
            _ => res.and_then(|r| r.requests.as_ref()),
        };
        map.and_then(|m| m.get(key)).map(|q| q.0.clone())
    };
    let parse = |text: &str| Exact::parse(text).map_err(|e| format!("{text:?}: {e}"));
    let (section, key) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    let text = match (section, key) {
        ("limits", "cpu") => get("limits", "cpu").unwrap_or_else(|| node.cpus.to_string()),
        ("limits", "memory") => {
            get("limits", "memory").unwrap_or_else(|| node.memory_bytes.to_string())
        }
        ("requests", "cpu" | "memory") => get("requests", key)
            .or_else(|| get("limits", key))
            .unwrap_or_else(|| "0".to_owned()),
        _ => return Err(format!("unsupported resource {resource:?}")),
    };
    let value = parse(&text)?;
    let divisor = parse(divisor.filter(|d| !d.is_empty()).unwrap_or("1"))?;
    let (v, d) = if key == "cpu" {
        (value.milli_ceil(), divisor.milli_ceil())
    } else {
        (value.value_ceil(), divisor.value_ceil())
    };
    if d <= 0 {
        return Err("divisor must be positive".to_owned());
    }
    let q = v.div_euclid(d) + i128::from(v.rem_euclid(d) != 0);
    Ok(q.to_string())
}

/// The container's environment as the kubelet builds it: `envFrom` imports first (keys that
/// are not valid names are skipped), then `env` in order, each value `$(VAR)`-expanded with
/// what is defined so far; `valueFrom` resolved from the pod, the node, and ConfigMaps /
/// Secrets (an `optional` one that is missing leaves the variable unset).
pub fn environment(
    c: &ContainerRef<'_>,
    path: &str,
    pod: &Pod,
    id: &PodIdentity,
    node: &NodeInfo,
    config: &ConfigSource,
) -> Result<Vec<(String, String)>, ResolveError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: &str, value: String| match env
        .iter_mut()
        .find(|(k, _)| k == name)
    {
        Some(e) => e.1 = value,
        None => env.push((name.to_owned(), value)),
    };
    let lookup = |kind: ConfigKind, name: &str, at: &str| {
        config
            .get(kind, name)
            .map_err(|source| ResolveError::ConfigDir {
                path: at.to_owned(),
                source,
            })
    };
    for (i, from) in c.env_from.iter().enumerate() {
        let at = format!("{path}.envFrom[{i}]");
        let (kind, name, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), None) => (ConfigKind::ConfigMap, &r.name, r.optional),
            (None, Some(r)) => (ConfigKind::Secret, &r.name, r.optional),
            _ => return Err(invalid(at, "exactly one of configMapRef and secretRef")),
        };
        let Some(data) = lookup(kind, name, &at)? else {
            if optional.unwrap_or(false) {
                continue;
            }
            return Err(invalid(
                at,
                format!(
                    "{} {name:?} not found (manifest or --config-dir)",
                    kind.as_str()
                ),
            ));
        };
        let prefix = from.prefix.as_deref().unwrap_or("");
        for (key, bytes) in data {
            let var = format!("{prefix}{key}");
            if !kubelet::is_env_var_name(&var) {
                tracing::warn!(container = c.name, key = %var, "skipping an envFrom key that is not a valid variable name");
                continue;
            }
            set(&mut env, &var, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    for (i, e) in c.env.iter().enumerate() {
        let at = format!("{path}.env[{i}]");
        let value = match &e.value_from {
            None => {
                let snapshot: BTreeMap<String, String> = env.iter().cloned().collect();
                Some(kubelet::expand_with(
                    e.value.as_deref().unwrap_or(""),
                    &snapshot,
                ))
            }
            Some(source) => value_from(source, c, &at, pod, id, node, &lookup)?,
        };
        if let Some(value) = value {
            set(&mut env, &e.name, value);
        }
    }
    Ok(env)
}

fn value_from(
    source: &EnvVarSource,
    c: &ContainerRef<'_>,
    at: &str,
    pod: &Pod,
    id: &PodIdentity,
    node: &NodeInfo,
    lookup: &impl Fn(ConfigKind, &str, &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, ResolveError>,
) -> Result<Option<String>, ResolveError> {
    let at = format!("{at}.valueFrom");
    if let Some(f) = &source.field_ref {
        return field_value(&f.field_path, pod, id, node)
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    format!("{at}.fieldRef.fieldPath"),
                    format!("{:?} is not supported", f.field_path),
                )
            });
    }
    if let Some(r) = &source.resource_field_ref {
        if r.container_name
            .as_deref()
            .is_some_and(|n| !n.is_empty() && n != c.name)
        {
            return Err(invalid(
                format!("{at}.resourceFieldRef.containerName"),
                "only the container's own resources are supported",
            ));
        }
        let divisor = r.divisor.as_ref().map(|d| d.0.as_str());
        return resource_value(c, &r.resource, divisor, node)
            .map(Some)
            .map_err(|m| invalid(format!("{at}.resourceFieldRef"), m));
    }
    let (kind, name, key, optional) = match (&source.config_map_key_ref, &source.secret_key_ref) {
        (Some(r), _) => (ConfigKind::ConfigMap, &r.name, &r.key, r.optional),
        (None, Some(r)) => (ConfigKind::Secret, &r.name, &r.key, r.optional),
        (None, None) => {
            return Err(invalid(at, "unsupported valueFrom source"));
        }
    };
    let optional = optional.unwrap_or(false);
    match lookup(kind, name, &at)? {
        Some(data) => match data.get(key) {
            Some(bytes) => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
            None if optional => Ok(None),
            None => Err(invalid(
                at,
                format!("{} {name:?} has no key {key:?}", kind.as_str()),
            )),
        },
        None if optional => Ok(None),
        None => Err(invalid(
            at,
            format!(
                "{} {name:?} not found (manifest or --config-dir)",
                kind.as_str()
            ),
        )),
    }
}

/// The container's mounts: the volume's host path (plus `subPath`), read-only when asked or
/// when the volume is a ConfigMap or Secret. Also returns the runtime view for
/// [`crate::verify::check_container`].
pub fn mounts(
    c: &ContainerRef<'_>,
    path: &str,
    volumes: &PodVolumes,
) -> Result<(Vec<Mount>, Vec<RuntimeMount>), ResolveError> {
    let mut out = Vec::new();
    let mut runtime = Vec::new();
    for (i, vm) in c.volume_mounts.iter().enumerate() {
        let at = format!("{path}.volumeMounts[{i}]");
        if vm.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(invalid(
                format!("{at}.subPathExpr"),
                "is not supported by the node agent",
            ));
        }
        let volume = volumes.get(&vm.name).ok_or_else(|| {
            invalid(
                format!("{at}.name"),
                format!("no volume named {:?}", vm.name),
            )
        })?;
        let mut source: PathBuf = volume.path.clone();
        let mut runtime_source = volume.runtime_source();
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let rel = plain_relative(sub).ok_or_else(|| {
                invalid(format!("{at}.subPath"), "must be relative, without '..'")
            })?;
            source.push(&rel);
            runtime_source = format!("{runtime_source}/{sub}");
        }
        let read_only = vm.read_only.unwrap_or(false) || volume.always_read_only();
        out.push(Mount {
            source,
            destination: vm.mount_path.clone(),
            read_only,
        });
        runtime.push(RuntimeMount {
            destination: vm.mount_path.clone(),
            source: runtime_source,
            read_only,
        });
    }
    Ok((out, runtime))
}

/// A unique container id (job name and sandbox directory): `<ns>_<pod>_<container>.<run>.<restart>`,
/// shortened with a hash when longer than a job name may be.
pub fn container_id(id: &PodIdentity, container: &str, run: &str, restart: u32) -> String {
    let base = format!("{}_{}_{}", id.namespace, id.name, container);
    let suffix = format!(".{run}.{restart}");
    let max = crate::job::JobName::MAX_LEN - suffix.len();
    let base = if base.len() <= max {
        base
    } else {
        // FNV-1a keeps distinct long names distinct.
        let hash = base.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let keep = max - 17;
        let mut cut = base[..keep].to_owned();
        while cut.ends_with(['.', '-', '_']) {
            cut.pop();
        }
        format!("{cut}-{hash:016x}")
    };
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use hostgate_core::pod::{PodView, SpecPath};

    use super::*;
    use crate::job::JobName;
    use crate::pod::manifest::PodManifest;

    const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: app}
data: {LEVEL: "3", bad=key: x, mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: s3cr3t}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: edge
  uid: '1234'
  labels: {app: web}
  annotations: {team: infra}
spec:
  serviceAccountName: runner
  containers:
  - name: main
    command: [/bin/app, '--level=$(LEVEL)', '--node=$(NODE)']
    envFrom:
    - configMapRef: {name: app}
    - prefix: S_
      secretRef: {name: creds}
    - configMapRef: {name: absent, optional: true}
    env:
    - {name: LEVEL, value: '4'}
    - {name: URL, value: 'http://$(NODE):$(PORT)/$(LEVEL)'}
    - {name: PORT, value: '80'}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: TEAM, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['team']"}}}
    - {name: NOPE, valueFrom: {fieldRef: {fieldPath: "metadata.labels['nope']"}}}
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}
    - {name: OPT, valueFrom: {configMapKeyRef: {name: app, key: missing, optional: true}}}
    - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: NODE_CPU, valueFrom: {resourceFieldRef: {resource: requests.cpu}}}
    resources: {limits: {cpu: 250m, memory: 100M}}
"#;

    fn node() -> NodeInfo {
        NodeInfo {
            name: "node-1".to_owned(),
            ip: IpAddr::from([10, 0, 0, 7]),
            cpus: NonZeroU32::new(4).expect("non-zero"),
            memory_bytes: 8 << 30,
        }
    }

    #[test]
    fn environment_like_the_kubelet() {
        let m = PodManifest::parse(MANIFEST.as_bytes(), "m").expect("manifest");
        let id = PodIdentity::of(&m.pod).expect("identity");
        assert_eq!(
            id,
            PodIdentity {
                namespace: "edge".to_owned(),
                name: "web".to_owned(),
                uid: "1234".to_owned()
            }
        );
        let config = ConfigSource::new(&m, None);
        let spec = m.pod.spec.as_ref().expect("spec");
        let view = PodView::new(spec, Some(&m.pod.metadata), SpecPath::POD);
        let c = view.containers().next().expect("container");
        let env =
            environment(&c, "spec.containers[0]", &m.pod, &id, &node(), &config).expect("resolves");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("LEVEL"), Some("4"), "env overrides envFrom");
        assert_eq!(get("mode"), Some("fast"));
        assert_eq!(get("bad=key"), None, "invalid names are skipped");
        assert_eq!(get("S_token"), Some("s3cr3t"));
        // Only earlier variables are expanded.
        assert_eq!(get("URL"), Some("http://$(NODE):$(PORT)/4"));
        assert_eq!(get("NODE"), Some("node-1"));
        assert_eq!(get("POD"), Some("web"));
        assert_eq!(get("NS"), Some("edge"));
        assert_eq!(get("UID"), Some("1234"));
        assert_eq!(get("SA"), Some("runner"));
        assert_eq!(get("IP"), Some("10.0.0.7"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("TEAM"), Some("infra"));
        assert_eq!(get("NOPE"), Some(""));
        assert_eq!(get("TOKEN"), Some("s3cr3t"));
        assert_eq!(get("OPT"), None);
        assert_eq!(get("CPU"), Some("250"));
        assert_eq!(get("MEM"), Some("96")); // 100M / 1Mi = 95.37 → 96
        assert_eq!(get("NODE_CPU"), Some("1")); // requests default to the limit, ceil(0.25)
        // The first definition keeps its place.
        assert_eq!(env.iter().position(|(k, _)| k == "LEVEL"), Some(0));

        let vars: BTreeMap<String, String> = env.into_iter().collect();
        assert_eq!(
            kubelet::process_args(c.command, c.args, &vars),
            ["/bin/app", "--level=4", "--node=node-1"]
        );
    }

    #[test]
    fn unresolvable_references() {
        let cases = [
            (
                "{name: X, valueFrom: {configMapKeyRef: {name: app, key: nope}}}",
                "has no key",
            ),
            (
                "{name: X, valueFrom: {secretKeyRef: {name: gone, key: k}}}",
                "not found",
            ),
            (
                "{name: X, valueFrom: {fieldRef: {fieldPath: spec.hostname}}}",
                "not supported",
            ),
            (
                "{name: X, valueFrom: {resourceFieldRef: {resource: limits.ephemeral-storage}}}",
                "unsupported resource",
            ),
            (
                "{name: X, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: '0'}}}",
                "divisor",
            ),
            (
                "{name: X, valueFrom: {resourceFieldRef: {containerName: other, resource: limits.cpu}}}",
                "own resources",
            ),
        ];
        for (entry, want) in cases {
            let text =
                MANIFEST.replace("    - {name: LEVEL, value: '4'}", &format!("    - {entry}"));
            let m = PodManifest::parse(text.as_bytes(), "m").expect("manifest");
            let id = PodIdentity::of(&m.pod).expect("identity");
            let config = ConfigSource::new(&m, None);
            let spec = m.pod.spec.as_ref().expect("spec");
            let view = PodView::new(spec, Some(&m.pod.metadata), SpecPath::POD);
            let c = view.containers().next().expect("container");
            let err = environment(&c, "spec.containers[0]", &m.pod, &id, &node(), &config)
                .expect_err(want);
            assert!(err.to_string().contains(want), "{err} / {want}");
            assert!(
                err.to_string().starts_with("spec.containers[0].env[0]"),
                "{err}"
            );
        }
    }

    #[test]
    fn identities() {
        let pod = |meta: &str| -> Pod {
            serde_yaml::from_str(&format!("metadata: {meta}\nspec: {{containers: []}}"))
                .expect("pod")
        };
        let id = PodIdentity::of(&pod("{name: p}")).expect("ok");
        assert_eq!(id.namespace, "default");
        assert_eq!(id.uid.len(), 36);
        assert_eq!(id.uid.as_bytes()[14], b'4');
        assert_ne!(id.uid, PodIdentity::of(&pod("{name: p}")).expect("ok").uid);
        for (meta, want) in [
            ("{}", "Required value"),
            ("{name: 'Bad_Name'}", "not a valid pod name"),
            ("{name: p, namespace: 'a/b'}", "namespace"),
            ("{name: '../x'}", "not a valid pod name"),
        ] {
            let err = PodIdentity::of(&pod(meta)).expect_err(want);
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn container_ids_are_valid_job_names() {
        let id = PodIdentity {
            namespace: "kube-system".to_owned(),
            name: "csi.proxy-abc".to_owned(),
            uid: String::new(),
        };
        let cid = container_id(&id, "main", "1f2e-3", 4);
        assert_eq!(cid, "kube-system_csi.proxy-abc_main.1f2e-3.4");
        JobName::new(cid).expect("valid");
        let long = PodIdentity {
            name: format!("{}.{}", "a".repeat(63), "b".repeat(63)),
            ..id.clone()
        };
        let a = container_id(&long, &"c".repeat(63), "1-1", 10);
        let b = container_id(&long, &"d".repeat(63), "1-1", 10);
        assert_ne!(a, b);
        assert!(a.len() <= JobName::MAX_LEN, "{}", a.len());
        JobName::new(a).expect("valid");
    }
}
