//! The approval contract shared by the webhook (which signs) and the node agent (which verifies).
//!
//! An admitted HostProcess pod carries one annotation, [`ANNOTATION`], whose value is
//! self-contained:
//!
//! ```text
//! <base64url(payload JSON)>.<base64url(Ed25519 signature)>
//! ```
//!
//! The signature covers [`SIGNING_CONTEXT`] followed by the exact payload bytes, so nothing is
//! re-serialized before verification. The payload ([`Approval`]) names the signing key (`kid`), the
//! admitting policy, the issue time, and every security-relevant field of the pod
//! ([`ApprovedPod`]): namespace, service account, pod-level `windowsOptions` and `hostNetwork`,
//! the RuntimeClass (when the pod names one: the node re-evaluates the policies on this payload,
//! and a policy may require the class), volumes, the privileged `microsoft.com/hostprocess-*` annotations, and per init and regular
//! container its name, image, command, args, working directory, env, volume mounts, limits,
//! `windowsOptions`, lifecycle hooks and probes (exec hooks and probes run host commands in a
//! HostProcess container), its own `restartPolicy` (sidecars), `stdin` and `tty`. Not the pod
//! name: controllers name pods after admission.
//!
//! The payload names ConfigMaps and Secrets (`env[].valueFrom`, `envFrom`, volumes) but not their
//! contents, which change independently of the pod; a node component resolves them itself.
//!
//! Because the payload is self-contained, a node component that never sees the Pod object (a
//! containerd shim sees one container's runtime spec) can compare what it is asked to run with
//! [`Approval::container`]. The static runner compares the whole pod with [`Approval::matches`].
//!
//! Keys: Ed25519, PKCS#8 PEM for private keys and SPKI PEM for public keys. A key id is the first
//! 16 hex digits of SHA-256 over the raw 32-byte public key. [`generate_key_pair`] writes
//! `<kid>.key` and `<kid>.pub`; [`TrustStore::load_dir`] reads every `*.pub` in a directory, so
//! keys rotate by adding the new public key to the agents before the webhook signs with it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, Lifecycle, Pod, Probe, Volume, VolumeMount,
    WindowsSecurityContextOptions,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::decision::Decision;
use crate::pod::{ContainerKind, ContainerRef, PodView, SpecPath};

/// The pod annotation that carries the approval.
pub const ANNOTATION: &str = "hostgate.io/approval";
/// Prefix of the signed bytes, so that a signature over an approval can never be replayed as a
/// signature over anything else.
pub const SIGNING_CONTEXT: &[u8] = b"hostgate.io/approval/v1\n";
/// Payload format version.
pub const VERSION: u32 = 1;
/// Largest annotation value accepted for verification (the apiserver caps all annotations of an
/// object at 256 KiB together).
pub const MAX_ANNOTATION_LEN: usize = 256 * 1024;

/// The signed payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    /// Payload format version ([`VERSION`]).
    pub v: u32,
    /// Id of the key that signed it.
    pub kid: String,
    /// The policy that admitted the pod.
    pub policy: String,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
    /// What was approved.
    #[serde(flatten)]
    pub pod: ApprovedPod,
}

/// The security-relevant fields of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovedPod {
    /// Namespace.
    pub namespace: String,
    /// Service account (defaulted to `default`).
    pub service_account: String,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `spec.securityContext.windowsOptions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_options: Option<WindowsSecurityContextOptions>,
    /// `spec.runtimeClassName`: which handler the pod was approved to run under. Absent when
    /// the pod names none, so such approvals read exactly as before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// The privileged `microsoft.com/hostprocess-*` annotations and their values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `spec.volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// `spec.initContainers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<ApprovedContainer>,
    /// `spec.containers`.
    pub containers: Vec<ApprovedContainer>,
}

/// The security-relevant fields of one container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovedContainer {
    /// `name`
    pub name: String,
    /// `image`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `command`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// `args`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `workingDir`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `env`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// `envFrom`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// `volumeMounts`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// `resources.limits`
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    /// `securityContext.windowsOptions`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_options: Option<WindowsSecurityContextOptions>,
    /// `lifecycle`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// `livenessProbe`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// `readinessProbe`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// `startupProbe`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// `restartPolicy` (sidecar init containers)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    /// `stdin`
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// `tty`
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
}

impl ApprovedContainer {
    fn from_ref(c: &ContainerRef<'_>) -> Self {
        ApprovedContainer {
            name: c.name.to_owned(),
            image: c.image.map(str::to_owned),
            command: c.command.to_vec(),
            args: c.args.to_vec(),
            working_dir: c.working_dir.map(str::to_owned),
            env: c.env.to_vec(),
            env_from: c.env_from.to_vec(),
            volume_mounts: c.volume_mounts.to_vec(),
            limits: c
                .resources
                .and_then(|r| r.limits.clone())
                .unwrap_or_default(),
            windows_options: c.windows_options().cloned(),
            lifecycle: c.lifecycle.cloned(),
            liveness_probe: c.liveness_probe.cloned(),
            readiness_probe: c.readiness_probe.cloned(),
            startup_probe: c.startup_probe.cloned(),
            restart_policy: c.restart_policy.map(str::to_owned),
            stdin: c.stdin,
            tty: c.tty,
        }
    }
}

impl ApprovedPod {
    /// Describes a pod as the approval contract sees it.
    pub fn describe(pod: &PodView<'_>, namespace: &str) -> Self {
        let mut init_containers = Vec::new();
        let mut containers = Vec::new();
        for c in pod.runnable_containers() {
            let described = ApprovedContainer::from_ref(&c);
            match c.kind {
                ContainerKind::Init => init_containers.push(described),
                _ => containers.push(described),
            }
        }
        ApprovedPod {
            namespace: namespace.to_owned(),
            service_account: pod.service_account().to_owned(),
            host_network: pod.host_network(),
            windows_options: pod.windows_options().cloned(),
            runtime_class_name: pod.spec.runtime_class_name.clone(),
            annotations: pod
                .privileged_annotations()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            volumes: pod.spec.volumes.clone().unwrap_or_default(),
            init_containers,
            containers,
        }
    }
}

/// Why an approval was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// The pod has no approval annotation.
    #[error("the pod carries no {ANNOTATION} annotation")]
    Missing,
    /// The value is not `<payload>.<signature>` in base64url, or the payload is not an approval.
    #[error("the {ANNOTATION} annotation is malformed: {0}")]
    Malformed(String),
    /// Signed by a key this node does not trust.
    #[error("the approval is signed by key {0:?}, which is not trusted here")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the approval signature does not verify (key {0:?})")]
    BadSignature(String),
    /// The payload describes another pod.
    #[error("the approval does not match the pod: {}", .0.join("; "))]
    Mismatch(Vec<String>),
}

/// A key pair problem.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("key file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a key of the expected kind.
    #[error("{path}: not an Ed25519 {what} in PEM form ({reason})")]
    Format {
        /// The file.
        path: PathBuf,
        /// `private key (PKCS#8)` or `public key (SPKI)`.
        what: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// The directory holds no public key.
    #[error("{0}: no *.pub key found")]
    Empty(PathBuf),
    /// The operating system's random number generator failed.
    #[error("cannot read random bytes: {0}")]
    Random(String),
}

/// The key id of a public key.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A private key that signs approvals.
pub struct SigningIdentity {
    kid: String,
    key: SigningKey,
}

impl fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningIdentity {
    /// Wraps a key.
    pub fn new(key: SigningKey) -> Self {
        SigningIdentity {
            kid: key_id(&key.verifying_key()),
            key,
        }
    }

    /// The public key as SPKI PEM, as `hostgate keygen` writes it and trust stores read it.
    pub fn public_key_pem(&self) -> Option<String> {
        self.key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .ok()
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Format {
            path: path.to_owned(),
            what: "private key (PKCS#8)",
            reason: e.to_string(),
        })?;
        Ok(Self::new(key))
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs an approval of `pod` by `policy`, issued at `iat` (Unix seconds), and returns the
    /// annotation value.
    pub fn sign(&self, pod: ApprovedPod, policy: &str, iat: u64) -> String {
        let approval = Approval {
            v: VERSION,
            kid: self.kid.clone(),
            policy: policy.to_owned(),
            iat,
            pod,
        };
        // Serializing plain data structures to JSON cannot fail.
        let payload = serde_json::to_vec(&approval).unwrap_or_default();
        let signature = self.key.sign(&signed_bytes(&payload));
        format!(
            "{}.{}",
            B64.encode(&payload),
            B64.encode(signature.to_bytes())
        )
    }
}

fn signed_bytes(payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + payload.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(payload);
    msg
}

/// The public keys a verifier trusts, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: BTreeMap<String, VerifyingKey>,
}

impl TrustStore {
    /// Trusts `key`.
    pub fn add(&mut self, key: VerifyingKey) {
        self.keys.insert(key_id(&key), key);
    }

    /// Reads every `*.pub` (SPKI PEM) file of a directory.
    pub fn load_dir(dir: &Path) -> Result<Self, KeyError> {
        let entries = std::fs::read_dir(dir).map_err(|source| KeyError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let mut store = TrustStore::default();
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "pub"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        for path in paths {
            store.add(read_public_key(&path)?);
        }
        if store.keys.is_empty() {
            return Err(KeyError::Empty(dir.to_owned()));
        }
        Ok(store)
    }

    /// The trusted key ids.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Checks the signature of an annotation value and decodes its payload. Does not compare it
    /// with any pod: see [`Approval::matches`].
    pub fn verify(&self, value: &str) -> Result<Approval, ApprovalError> {
        if value.len() > MAX_ANNOTATION_LEN {
            return Err(ApprovalError::Malformed("value is too large".to_owned()));
        }
        let (payload_b64, sig_b64) = value
            .trim()
            .split_once('.')
            .ok_or_else(|| ApprovalError::Malformed("expected <payload>.<signature>".to_owned()))?;
        let payload = B64
            .decode(payload_b64)
            .map_err(|e| ApprovalError::Malformed(format!("payload: {e}")))?;
        let sig_bytes = B64
            .decode(sig_b64)
            .map_err(|e| ApprovalError::Malformed(format!("signature: {e}")))?;
        let signature = Signature::from_slice(&sig_bytes)
            .map_err(|_| ApprovalError::Malformed("signature: not 64 bytes".to_owned()))?;
        // Read the key id before trusting anything else in the payload.
        let kid = serde_json::from_slice::<Value>(&payload)
            .ok()
            .and_then(|v| v.get("kid")?.as_str().map(str::to_owned))
            .ok_or_else(|| ApprovalError::Malformed("payload has no key id".to_owned()))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| ApprovalError::UnknownKey(kid.clone()))?;
        key.verify(&signed_bytes(&payload), &signature)
            .map_err(|_| ApprovalError::BadSignature(kid.clone()))?;
        let approval: Approval = serde_json::from_slice(&payload)
            .map_err(|e| ApprovalError::Malformed(format!("payload: {e}")))?;
        if approval.v != VERSION {
            return Err(ApprovalError::Malformed(format!(
                "payload version {} is not supported",
                approval.v
            )));
        }
        Ok(approval)
    }

    /// Verifies the approval annotation of `pod` and checks that it describes exactly this pod in
    /// `namespace`.
    pub fn verify_pod(
        &self,
        pod: &PodView<'_>,
        namespace: &str,
    ) -> Result<Approval, ApprovalError> {
        let value = pod
            .annotations()
            .and_then(|a| a.get(ANNOTATION))
            .ok_or(ApprovalError::Missing)?;
        let approval = self.verify(value)?;
        approval.matches(&ApprovedPod::describe(pod, namespace))?;
        Ok(approval)
    }
}

impl Approval {
    /// Checks that the approval describes `actual`; the error lists every field that differs.
    pub fn matches(&self, actual: &ApprovedPod) -> Result<(), ApprovalError> {
        if self.pod == *actual {
            return Ok(());
        }
        let approved = serde_json::to_value(&self.pod).unwrap_or(Value::Null);
        let found = serde_json::to_value(actual).unwrap_or(Value::Null);
        let mut diffs = Vec::new();
        diff("", &approved, &found, &mut diffs);
        if diffs.is_empty() {
            diffs.push("the pod differs from the approved one".to_owned());
        }
        Err(ApprovalError::Mismatch(diffs))
    }

    /// The approved container of that name (init or regular), for a runtime that runs containers
    /// one at a time.
    pub fn container(&self, name: &str) -> Option<&ApprovedContainer> {
        self.pod
            .init_containers
            .iter()
            .chain(&self.pod.containers)
            .find(|c| c.name == name)
    }
}

/// Field paths where two JSON values differ, with both values (shortened).
fn diff(path: &str, approved: &Value, found: &Value, out: &mut Vec<String>) {
    const MAX_DIFFS: usize = 20;
    if out.len() >= MAX_DIFFS || approved == found {
        return;
    }
    match (approved, found) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    &child,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ => out.push(format!(
            "{path}: approved {}, found {}",
            short(approved),
            short(found)
        )),
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::Null => "nothing".to_owned(),
        other => other.to_string(),
    };
    if s.len() > 120 {
        let mut end = 117;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| KeyError::Format {
        path: path.to_owned(),
        what: "public key (SPKI)",
        reason: e.to_string(),
    })
}

/// Signs an approval into `pod` when `decision` admits it as a HostProcess pod and a signer is
/// configured; otherwise removes any approval annotation (a user-supplied approval is never
/// trusted). Returns whether it signed.
pub fn approve(
    pod: &mut Pod,
    decision: &Decision,
    signer: Option<&SigningIdentity>,
    namespace: &str,
    now: u64,
) -> bool {
    let approval = match (
        signer,
        decision.allowed && decision.host_process,
        decision.policy.as_deref(),
        pod.spec.as_ref(),
    ) {
        (Some(signer), true, Some(policy), Some(spec)) => {
            let view = PodView::new(spec, None, SpecPath::POD);
            Some(signer.sign(ApprovedPod::describe(&view, namespace), policy, now))
        }
        _ => None,
    };
    let signed = approval.is_some();
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match approval {
        Some(v) => {
            annotations.insert(ANNOTATION.to_owned(), v);
        }
        None => {
            annotations.remove(ANNOTATION);
        }
    }
    if annotations.is_empty() {
        pod.metadata.annotations = None;
    }
    signed
}

/// A new random signing key.
pub fn generate_key() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Generates a key pair and writes `<kid>.key` (mode 0600) and `<kid>.pub` into `dir`, creating
/// it. Returns the key id and both paths.
pub fn generate_key_pair(dir: &Path) -> Result<(String, PathBuf, PathBuf), KeyError> {
    let key = generate_key()?;
    let kid = key_id(&key.verifying_key());
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let private_path = dir.join(format!("{kid}.key"));
    let public_path = dir.join(format!("{kid}.pub"));
    let format_err = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |e: ed25519_dalek::pkcs8::Error| KeyError::Format {
            path,
            what,
            reason: e.to_string(),
        }
    };
    let private_pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(format_err("private key (PKCS#8)", &private_path))?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .map_err(|e| KeyError::Format {
            path: public_path.clone(),
            what: "public key (SPKI)",
            reason: e.to_string(),
        })?;
    write_private(&private_path, private_pem.as_bytes()).map_err(io(&private_path))?;
    std::fs::write(&public_path, public_pem.as_bytes()).map_err(io(&public_path))?;
    Ok((kid, private_path, public_path))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Workload;

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: csi
  annotations: {microsoft.com/hostprocess-inherit-user: "false", unrelated: x}
spec:
  serviceAccountName: csi-proxy
  hostNetwork: true
  securityContext: {windowsOptions: {hostProcess: true, runAsUserName: 'NT AUTHORITY\SYSTEM'}}
  volumes: [{name: k, hostPath: {path: 'C:\var\lib\kubelet'}}]
  initContainers: [{name: init, image: 'registry.example/init:1', command: [init.exe]}]
  containers:
  - name: main
    image: registry.example/csi-proxy:1
    args: [-v=2]
    env: [{name: A, value: b}]
    volumeMounts: [{name: k, mountPath: 'C:\k'}]
    resources: {limits: {cpu: 500m, memory: 128Mi}}
"#;

    fn workload(yaml: &str) -> Workload {
        let v: Value = serde_yaml::from_str(yaml).expect("yaml");
        Workload::from_value(v).expect("valid").expect("pod")
    }

    #[test]
    fn validly_signed_payloads_with_unknown_fields_are_refused() {
        let key = generate_key().expect("key");
        let id = SigningIdentity::new(key.clone());
        let mut trust = TrustStore::default();
        trust.add(id.verifying_key());
        let w = workload(POD);
        let good = id.sign(ApprovedPod::describe(&w.pod().expect("pod"), "ns"), "p", 1);
        trust
            .verify(&good)
            .expect("the unmodified approval verifies");
        let (payload_b64, _) = good.split_once('.').expect("two parts");
        let payload: Value =
            serde_json::from_slice(&B64.decode(payload_b64).expect("base64")).expect("json");
        // An extra field at the top level and inside a container: both are refused, although
        // the signature over the changed payload is good.
        let mut top = payload.clone();
        top["runAsRoot"] = Value::Bool(true);
        let mut inner = payload;
        inner["containers"][0]["privileged"] = Value::Bool(true);
        for changed in [top, inner] {
            let bytes = serde_json::to_vec(&changed).expect("json");
            let sig = key.sign(&signed_bytes(&bytes));
            let value = format!("{}.{}", B64.encode(&bytes), B64.encode(sig.to_bytes()));
            match trust.verify(&value) {
                Err(ApprovalError::Malformed(m)) => assert!(m.contains("unknown field"), "{m}"),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    }

    fn signed(id: &SigningIdentity, yaml: &str) -> String {
        let w = workload(yaml);
        id.sign(
            ApprovedPod::describe(&w.pod().expect("pod"), "kube-system"),
            "csi-proxy",
            1_764_170_000,
        )
    }

    fn with_approval(yaml: &str, value: &str) -> Workload {
        let mut w = workload(yaml);
        if let Workload::Pod(p) = &mut w {
            p.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(ANNOTATION.to_owned(), value.to_owned());
        }
        w
    }

    fn identity() -> SigningIdentity {
        SigningIdentity::new(generate_key().expect("random"))
    }

    #[test]
    fn sign_then_verify_round_trip() {
        let id = identity();
        let mut store = TrustStore::default();
        store.add(id.verifying_key());
        let value = signed(&id, POD);
        let w = with_approval(POD, &value);
        let approval = store
            .verify_pod(&w.pod().expect("pod"), "kube-system")
            .expect("verifies");
        assert_eq!(approval.policy, "csi-proxy");
        assert_eq!(approval.kid, id.kid());
        assert_eq!(approval.pod.service_account, "csi-proxy");
        assert_eq!(
            approval.pod.annotations,
            BTreeMap::from([(
                "microsoft.com/hostprocess-inherit-user".to_owned(),
                "false".to_owned()
            )])
        );
        let main = approval.container("main").expect("main container");
        assert_eq!(main.args, ["-v=2"]);
        assert_eq!(main.limits["memory"].0, "128Mi");
        assert!(approval.container("init").is_some());
    }

    #[test]
    fn changed_pods_are_refused_with_the_differing_fields() {
        let id = identity();
        let mut store = TrustStore::default();
        store.add(id.verifying_key());
        let value = signed(&id, POD);
        let cases = [
            (
                POD.replace("csi-proxy:1", "csi-proxy:2"),
                "containers[0].image: approved \"registry.example/csi-proxy:1\", found \"registry.example/csi-proxy:2\"",
            ),
            (
                POD.replace("NT AUTHORITY\\SYSTEM", "NT AUTHORITY\\Local service"),
                "windowsOptions.runAsUserName",
            ),
            (
                POD.replace("value: b", "value: c"),
                "containers[0].env[0].value",
            ),
            (
                POD.replace("cpu: 500m", "cpu: \"4\""),
                "containers[0].limits.cpu",
            ),
            (
                POD.replace("\"false\"", "\"true\""),
                "annotations.microsoft.com/hostprocess-inherit-user",
            ),
            (
                POD.replace("serviceAccountName: csi-proxy", "serviceAccountName: other"),
                "serviceAccount",
            ),
            (
                POD.replace("command: [init.exe]", "command: [evil.exe]"),
                "initContainers[0].command[0]",
            ),
            (
                POD.replace(
                    "kubelet'}}]",
                    "kubelet'}}, {name: x, hostPath: {path: 'C:\\'}}]",
                ),
                "volumes",
            ),
        ];
        for (yaml, want) in cases {
            let w = with_approval(&yaml, &value);
            let err = store
                .verify_pod(&w.pod().expect("pod"), "kube-system")
                .expect_err("must not verify");
            let text = err.to_string();
            assert!(matches!(err, ApprovalError::Mismatch(_)), "{text}");
            assert!(text.contains(want), "{text}\nwant {want}");
        }
        // The RuntimeClass is approved too: naming one after signing, or another one, is a
        // change; a pod signed without one carries no such field in its payload.
        let (payload, _) = value.split_once('.').expect("two parts");
        let json: Value = serde_json::from_slice(&B64.decode(payload).expect("b64")).expect("json");
        assert!(json.get("runtimeClassName").is_none(), "{json}");
        let routed = POD.replace(
            "hostNetwork: true",
            "hostNetwork: true\n  runtimeClassName: hostgate",
        );
        let w = with_approval(&routed, &value);
        let err = store
            .verify_pod(&w.pod().expect("pod"), "kube-system")
            .expect_err("a RuntimeClass named after signing");
        assert!(
            err.to_string()
                .contains("runtimeClassName: approved nothing, found \"hostgate\""),
            "{err}"
        );
        let routed_value = signed(&id, &routed);
        let w = with_approval(
            &routed.replace("runtimeClassName: hostgate", "runtimeClassName: other"),
            &routed_value,
        );
        let err = store
            .verify_pod(&w.pod().expect("pod"), "kube-system")
            .expect_err("another RuntimeClass");
        assert!(err.to_string().contains("runtimeClassName"), "{err}");
        let w = with_approval(&routed, &routed_value);
        let approval = store
            .verify_pod(&w.pod().expect("pod"), "kube-system")
            .expect("the routed pod verifies");
        assert_eq!(approval.pod.runtime_class_name.as_deref(), Some("hostgate"));
        // Same pod in another namespace.
        let w = with_approval(POD, &value);
        let err = store
            .verify_pod(&w.pod().expect("pod"), "default")
            .expect_err("namespace");
        assert!(
            err.to_string()
                .contains("namespace: approved \"kube-system\", found \"default\"")
        );
        // Unrelated annotations and the pod name do not matter.
        let w = with_approval(
            &POD.replace("unrelated: x", "unrelated: y")
                .replace("name: csi\n", "name: csi-abcde\n"),
            &value,
        );
        assert!(
            store
                .verify_pod(&w.pod().expect("pod"), "kube-system")
                .is_ok()
        );
    }

    #[test]
    fn forged_unsigned_and_foreign_approvals_are_refused() {
        let id = identity();
        let other = identity();
        let mut store = TrustStore::default();
        store.add(id.verifying_key());
        let w = workload(POD);
        assert_eq!(
            store.verify_pod(&w.pod().expect("pod"), "kube-system"),
            Err(ApprovalError::Missing)
        );

        let foreign = signed(&other, POD);
        assert_eq!(
            store.verify(&foreign),
            Err(ApprovalError::UnknownKey(other.kid().to_owned()))
        );

        // Re-use a valid signature over an edited payload.
        let value = signed(&id, POD);
        let (payload, sig) = value.split_once('.').expect("two parts");
        let mut json: Value =
            serde_json::from_slice(&B64.decode(payload).expect("b64")).expect("json");
        json["policy"] = Value::from("anything");
        let forged = format!(
            "{}.{sig}",
            B64.encode(serde_json::to_vec(&json).expect("json"))
        );
        assert_eq!(
            store.verify(&forged),
            Err(ApprovalError::BadSignature(id.kid().to_owned()))
        );

        for bad in ["", "abc", "a.b", "!!!.???", &format!("{payload}.AAAA")] {
            assert!(
                matches!(store.verify(bad), Err(ApprovalError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keygen_writes_a_pair_the_trust_store_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (kid, private, public) = generate_key_pair(dir.path()).expect("keygen");
        assert_eq!(private, dir.path().join(format!("{kid}.key")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&private)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let id = SigningIdentity::from_pem_file(&private).expect("private key reads");
        assert_eq!(id.kid(), kid);
        let store = TrustStore::load_dir(dir.path()).expect("public keys read");
        assert_eq!(store.key_ids().collect::<Vec<_>>(), [kid.as_str()]);
        assert!(public.exists());
        // A second key for rotation.
        generate_key_pair(dir.path()).expect("second keygen");
        assert_eq!(
            TrustStore::load_dir(dir.path())
                .expect("reads")
                .key_ids()
                .count(),
            2
        );
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            TrustStore::load_dir(empty.path()),
            Err(KeyError::Empty(_))
        ));
        std::fs::write(empty.path().join("bad.pub"), "not a key").expect("write");
        assert!(matches!(
            TrustStore::load_dir(empty.path()),
            Err(KeyError::Format { .. })
        ));
    }
}
