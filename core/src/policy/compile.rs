//! Validated, ready-to-evaluate policies, and the constraint checks (`HG-…` rules).
//!
//! Everything that can be decided once per policy (patterns, selectors, quantities, host path
//! prefixes) is decided here, so that evaluating a pod parses nothing and allocates only for
//! findings.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Volume;

use super::image::{self, ImagePattern};
use super::model::{HostProcessPolicy, Mode, PrivilegedAnnotation, Profile};
use super::selector::Selector;
use super::winpath::WinPath;
use crate::decision::Finding;
use crate::pod::{ANNOTATION_INHERIT_USER, PodView};
use crate::quantity::Quantity;
use crate::rules::ids;
use crate::rules::structural::run_as_user_name_errors;

/// A policy that is not valid, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InvalidPolicy {
    /// Field path inside the policy object (`spec.allow.images[2]`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl InvalidPolicy {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidPolicy {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The volume types allowed when a policy does not list any.
pub const DEFAULT_VOLUME_TYPES: [&str; 5] = [
    "configMap",
    "secret",
    "projected",
    "downwardAPI",
    "emptyDir",
];

/// Every volume type of the core v1 API, by its field name.
pub const VOLUME_TYPES: [&str; 30] = [
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

/// The least privileged account a HostProcess container can run as.
pub const LEAST_PRIVILEGE_USER: &str = "NT AUTHORITY\\Local service";

const NT_AUTHORITY: &str = "NT AUTHORITY";

/// A policy ready for evaluation.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    name: Arc<str>,
    mode: Mode,
    profile: Option<Profile>,
    namespaces: Vec<String>,
    namespace_selector: Option<Selector>,
    service_accounts: Vec<(String, Option<String>)>,
    images: Vec<ImagePattern>,
    users: Vec<String>,
    volume_types: Vec<String>,
    host_path_prefixes: Vec<(String, WinPath)>,
    annotations: Vec<PrivilegedAnnotation>,
    require_digest: bool,
    max_cpu: Option<(String, Quantity)>,
    max_memory: Option<(String, Quantity)>,
    source: Arc<HostProcessPolicy>,
}

impl CompiledPolicy {
    /// Validates and compiles a policy object.
    pub fn compile(policy: HostProcessPolicy) -> Result<Self, InvalidPolicy> {
        let name = policy
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| InvalidPolicy::new("metadata.name", "is required"))?;
        if !is_dns1123_subdomain(&name) {
            return Err(InvalidPolicy::new(
                "metadata.name",
                format!("{name:?} must be a lowercase RFC 1123 subdomain"),
            ));
        }
        let spec = &policy.spec;

        if spec.profile.is_some() {
            let defaults = super::model::HostProcessPolicySpec::default();
            for (field, set) in [
                ("spec.allow", spec.allow != defaults.allow),
                ("spec.require", spec.require != defaults.require),
                ("spec.defaults", spec.defaults != defaults.defaults),
            ] {
                if set {
                    return Err(InvalidPolicy::new(
                        field,
                        "cannot be combined with spec.profile: a profile admits no HostProcess pod",
                    ));
                }
            }
        }

        for (i, ns) in spec.match_.namespaces.iter().enumerate() {
            if !is_dns1123_label(ns) {
                return Err(InvalidPolicy::new(
                    format!("spec.match.namespaces[{i}]"),
                    format!("{ns:?} is not a namespace name"),
                ));
            }
        }
        let namespace_selector = spec
            .match_
            .namespace_selector
            .as_ref()
            .map(|s| {
                Selector::compile(s).map_err(|(path, msg)| {
                    InvalidPolicy::new(format!("spec.match.namespaceSelector.{path}"), msg)
                })
            })
            .transpose()?;
        let mut service_accounts = Vec::new();
        for (i, sa) in spec.match_.service_accounts.iter().enumerate() {
            let parsed = sa.split_once('/').and_then(|(ns, name)| {
                let name = (name != "*").then(|| name.to_owned());
                (is_dns1123_label(ns) && name.as_deref().is_none_or(is_dns1123_subdomain))
                    .then(|| (ns.to_owned(), name))
            });
            service_accounts.push(parsed.ok_or_else(|| {
                InvalidPolicy::new(
                    format!("spec.match.serviceAccounts[{i}]"),
                    format!("{sa:?} must be <namespace>/<name> or <namespace>/*"),
                )
            })?);
        }

        let allow = &spec.allow;
        let mut images = Vec::new();
        for (i, pattern) in allow.images.iter().enumerate() {
            let compiled = if pattern.is_empty() {
                Err("must not be empty".to_owned())
            } else {
                ImagePattern::new(pattern).map_err(|e| e.to_string())
            }
            .map_err(|e| InvalidPolicy::new(format!("spec.allow.images[{i}]"), e))?;
            images.push(compiled);
        }
        for (i, user) in allow.run_as_user_names.iter().enumerate() {
            if let Some((_, msg)) = run_as_user_name_errors(user).into_iter().next() {
                return Err(InvalidPolicy::new(
                    format!("spec.allow.runAsUserNames[{i}]"),
                    format!("{user:?}: {msg}"),
                ));
            }
        }
        let volume_types = match &allow.volumes.types {
            None => DEFAULT_VOLUME_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            Some(types) => {
                for (i, t) in types.iter().enumerate() {
                    let path = format!("spec.allow.volumes.types[{i}]");
                    if t == "hostPath" {
                        return Err(InvalidPolicy::new(
                            path,
                            "hostPath volumes are allowed by spec.allow.volumes.hostPathPrefixes",
                        ));
                    }
                    if !VOLUME_TYPES.contains(&t.as_str()) {
                        return Err(InvalidPolicy::new(
                            path,
                            format!("unknown volume type {t:?}"),
                        ));
                    }
                }
                types.clone()
            }
        };
        let mut host_path_prefixes = Vec::new();
        for (i, prefix) in allow.volumes.host_path_prefixes.iter().enumerate() {
            let parsed = WinPath::parse(prefix).map_err(|e| {
                InvalidPolicy::new(
                    format!("spec.allow.volumes.hostPathPrefixes[{i}]"),
                    format!("{prefix:?} {e}"),
                )
            })?;
            host_path_prefixes.push((prefix.clone(), parsed));
        }

        let limits = spec.require.limits.clone().unwrap_or_default();
        let max_cpu = limit_max(limits.cpu.as_ref(), "spec.require.limits.cpu")?;
        let max_memory = limit_max(limits.memory.as_ref(), "spec.require.limits.memory")?;

        let defaults = &spec.defaults;
        if let Some(user) = &defaults.run_as_user_name {
            if let Some((_, msg)) = run_as_user_name_errors(user).into_iter().next() {
                return Err(InvalidPolicy::new(
                    "spec.defaults.runAsUserName",
                    format!("{user:?}: {msg}"),
                ));
            }
            if !allow.run_as_user_names.is_empty()
                && !allow
                    .run_as_user_names
                    .iter()
                    .any(|u| same_account(u, user))
            {
                return Err(InvalidPolicy::new(
                    "spec.defaults.runAsUserName",
                    format!("{user:?} is not in spec.allow.runAsUserNames"),
                ));
            }
        } else if !allow.run_as_user_names.is_empty()
            && !allow
                .run_as_user_names
                .iter()
                .any(|u| same_account(u, LEAST_PRIVILEGE_USER))
            && spec.profile.is_none()
        {
            // Defaulting would write the least-privilege account, which this policy refuses.
            return Err(InvalidPolicy::new(
                "spec.defaults.runAsUserName",
                format!(
                    "is required when spec.allow.runAsUserNames does not include {LEAST_PRIVILEGE_USER:?}"
                ),
            ));
        }
        for (key, value) in &defaults.limits {
            let path = format!("spec.defaults.limits.{key}");
            let max = match key.as_str() {
                "cpu" => &max_cpu,
                "memory" => &max_memory,
                _ => {
                    return Err(InvalidPolicy::new(
                        path,
                        "only cpu and memory can be defaulted",
                    ));
                }
            };
            let q = positive_quantity(value, &path)?;
            if let Some((text, max)) = max
                && q > *max
            {
                return Err(InvalidPolicy::new(
                    path,
                    format!("{} exceeds spec.require.limits.{key} ({text})", value.0),
                ));
            }
        }

        Ok(CompiledPolicy {
            name: Arc::from(name),
            mode: spec.mode,
            profile: spec.profile,
            namespaces: spec.match_.namespaces.clone(),
            namespace_selector,
            service_accounts,
            images,
            users: allow.run_as_user_names.clone(),
            volume_types,
            host_path_prefixes,
            annotations: allow.annotations.clone(),
            require_digest: spec.require.image_digest,
            max_cpu,
            max_memory,
            source: Arc::new(policy),
        })
    }

    /// A built-in policy that applies `profile` everywhere, in `Enforce` mode
    /// (`hostgate check --profile baseline`).
    pub fn builtin_profile(profile: Profile) -> Self {
        let name = match profile {
            Profile::Baseline => "builtin-baseline",
        };
        let policy = HostProcessPolicy::new(
            name,
            super::model::HostProcessPolicySpec {
                profile: Some(profile),
                ..Default::default()
            },
        );
        CompiledPolicy {
            name: Arc::from(name),
            mode: Mode::Enforce,
            profile: Some(profile),
            namespaces: Vec::new(),
            namespace_selector: None,
            service_accounts: Vec::new(),
            images: Vec::new(),
            users: Vec::new(),
            volume_types: Vec::new(),
            host_path_prefixes: Vec::new(),
            annotations: Vec::new(),
            require_digest: false,
            max_cpu: None,
            max_memory: None,
            source: Arc::new(policy),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The policy's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The profile, for restricting policies.
    pub fn profile(&self) -> Option<Profile> {
        self.profile
    }

    /// The policy as written.
    pub fn source(&self) -> &HostProcessPolicy {
        &self.source
    }

    /// The defaults of the policy.
    pub fn defaults(&self) -> &super::model::DefaultsSpec {
        &self.source.spec.defaults
    }

    /// Whether the policy applies to a pod of `service_account` in `namespace`.
    pub fn matches(
        &self,
        namespace: &str,
        namespace_labels: Option<&BTreeMap<String, String>>,
        service_account: &str,
    ) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
            && self
                .namespace_selector
                .as_ref()
                .is_none_or(|s| s.matches(namespace, namespace_labels))
            && (self.service_accounts.is_empty()
                || self.service_accounts.iter().any(|(ns, name)| {
                    ns == namespace && name.as_deref().is_none_or(|n| n == service_account)
                }))
    }

    /// Checks every constraint of an admitting policy; appends what fails to `out`.
    pub fn check(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        let start = out.len();
        self.check_annotations(pod, out);
        self.check_images(pod, out);
        self.check_users(pod, out);
        self.check_volumes(pod, out);
        self.check_limits(pod, out);
        for f in &mut out[start..] {
            f.policy = Some(Arc::clone(&self.name));
        }
    }

    fn check_annotations(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        for (key, _) in pod.privileged_annotations() {
            if !self.annotations.iter().any(|a| a.key() == key) {
                out.push(Finding::new(
                    ids::ANNOTATION,
                    format!("{}.annotations[{key}]", pod.path.metadata()),
                    format!("annotation {key} is not allowed (spec.allow.annotations)"),
                ));
            }
        }
    }

    fn check_images(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        if self.images.is_empty() && !self.require_digest {
            return;
        }
        for c in pod.containers() {
            let image = c.image.unwrap_or("");
            if !self.images.is_empty() && !image::allowed(&self.images, image) {
                let allowed: Vec<&str> = self.images.iter().map(ImagePattern::as_str).collect();
                out.push(
                    Finding::new(
                        ids::IMAGE_NOT_ALLOWED,
                        c.path_to(pod.path, "image"),
                        format!(
                            "image {image:?} matches none of the allowed images: {}",
                            allowed.join(", ")
                        ),
                    )
                    .with_containers(vec![c.name.to_owned()]),
                );
            }
            if self.require_digest && !image::has_digest(image) {
                out.push(
                    Finding::new(
                        ids::IMAGE_DIGEST,
                        c.path_to(pod.path, "image"),
                        format!(
                            "image {image:?} must be pinned by digest (@sha256:<64 hex digits>)"
                        ),
                    )
                    .with_containers(vec![c.name.to_owned()]),
                );
            }
        }
    }

    fn check_users(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        let inherits_runtime_user = pod
            .annotations()
            .and_then(|a| a.get(ANNOTATION_INHERIT_USER))
            .is_some_and(|v| v == "true")
            && self
                .annotations
                .contains(&PrivilegedAnnotation::InheritUser);
        if inherits_runtime_user {
            // The runtime's own token is used whatever runAsUserName says; the annotation
            // itself is what this policy allowed.
            return;
        }
        let pod_user = pod
            .windows_options()
            .and_then(|w| w.run_as_user_name.as_deref());
        let pod_user_path = || {
            pod.path
                .field("securityContext.windowsOptions.runAsUserName")
        };
        let mut any_unset = false;
        let mut any_inheriting = false;
        for c in pod.containers() {
            match c.run_as_user_name() {
                Some(user) => self.check_user(
                    user,
                    || c.path_to(pod.path, "securityContext.windowsOptions.runAsUserName"),
                    || vec![c.name.to_owned()],
                    out,
                ),
                None if pod_user.is_some() => any_inheriting = true,
                None => any_unset = true,
            }
        }
        // Names are only collected once a finding needs them.
        let names_without_own_user = || {
            pod.containers()
                .filter(|c| c.run_as_user_name().is_none())
                .map(|c| c.name.to_owned())
                .collect()
        };
        if let Some(user) = pod_user
            && any_inheriting
        {
            self.check_user(user, pod_user_path, names_without_own_user, out);
        }
        if any_unset && !self.users.is_empty() {
            out.push(
                Finding::new(
                    ids::USER_UNSET,
                    pod_user_path(),
                    format!(
                        "no runAsUserName: the image's default user would run, which HostProcess containers cannot use; set one of {}",
                        quoted_list(&self.users)
                    ),
                )
                .with_containers(names_without_own_user()),
            );
        }
    }

    fn check_user(
        &self,
        user: &str,
        path: impl Fn() -> String,
        containers: impl Fn() -> Vec<String>,
        out: &mut Vec<Finding>,
    ) {
        if let Some((domain, _)) = user.split_once('\\')
            && domain != NT_AUTHORITY
            && domain.eq_ignore_ascii_case(NT_AUTHORITY)
        {
            out.push(
                Finding::new(
                    ids::USER_DOMAIN_SPELLING,
                    path(),
                    format!(
                        "runAsUserName {user:?} must spell the domain exactly {NT_AUTHORITY:?}: the node compares it case-sensitively and would not log on as a service account"
                    ),
                )
                .with_containers(containers()),
            );
        }
        if !self.users.is_empty() && !self.users.iter().any(|u| same_account(u, user)) {
            out.push(
                Finding::new(
                    ids::USER_NOT_ALLOWED,
                    path(),
                    format!(
                        "runAsUserName {user:?} is not one of {}",
                        quoted_list(&self.users)
                    ),
                )
                .with_containers(containers()),
            );
        }
    }

    fn check_volumes(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        for (i, v) in pod.spec.volumes.iter().flatten().enumerate() {
            let kind = volume_type(v);
            if kind == "hostPath" {
                let path = v.host_path.as_ref().map_or("", |h| h.path.as_str());
                let inside = WinPath::parse(path).is_ok_and(|p| {
                    self.host_path_prefixes
                        .iter()
                        .any(|(_, prefix)| p.starts_with(prefix))
                });
                if !inside {
                    let detail = if self.host_path_prefixes.is_empty() {
                        "no hostPath volume is allowed".to_owned()
                    } else {
                        let prefixes: Vec<&str> = self
                            .host_path_prefixes
                            .iter()
                            .map(|(t, _)| t.as_str())
                            .collect();
                        format!(
                            "it is not under any allowed prefix: {}",
                            prefixes.join(", ")
                        )
                    };
                    out.push(
                        Finding::new(
                            ids::VOLUME_HOST_PATH,
                            format!("{}[{i}].hostPath.path", pod.path.field("volumes")),
                            format!("hostPath volume {:?} points to {path:?}: {detail}", v.name),
                        )
                        .with_containers(mounting(pod, &v.name)),
                    );
                }
            } else if !self.volume_types.iter().any(|t| t == kind) {
                out.push(
                    Finding::new(
                        ids::VOLUME_TYPE,
                        format!("{}[{i}]", pod.path.field("volumes")),
                        format!(
                            "volume {:?} of type {kind} is not allowed; allowed types: {}",
                            v.name,
                            self.volume_types.join(", ")
                        ),
                    )
                    .with_containers(mounting(pod, &v.name)),
                );
            }
        }
    }

    fn check_limits(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        for (resource, max) in [("cpu", &self.max_cpu), ("memory", &self.max_memory)] {
            let Some((max_text, max)) = max else {
                continue;
            };
            for c in pod.runnable_containers() {
                let path = || c.path_to(pod.path, &format!("resources.limits.{resource}"));
                let value = c
                    .resources
                    .and_then(|r| r.limits.as_ref())
                    .and_then(|l| l.get(resource));
                let Some(value) = value else {
                    out.push(
                        Finding::new(
                            ids::LIMIT_MISSING,
                            path(),
                            format!("a {resource} limit is required (at most {max_text})"),
                        )
                        .with_containers(vec![c.name.to_owned()]),
                    );
                    continue;
                };
                let message = match Quantity::parse(&value.0) {
                    Ok(q) if q <= *max => continue,
                    Ok(_) => format!(
                        "{resource} limit {} exceeds the maximum {max_text}",
                        value.0
                    ),
                    Err(e) => format!("{resource} limit {:?} is not a quantity: {e}", value.0),
                };
                out.push(
                    Finding::new(ids::LIMIT_EXCEEDED, path(), message)
                        .with_containers(vec![c.name.to_owned()]),
                );
            }
        }
    }
}

/// The names of the containers that mount volume `name`.
fn mounting(pod: &PodView<'_>, name: &str) -> Vec<String> {
    pod.containers()
        .filter(|c| c.volume_mounts.iter().any(|m| m.name == name))
        .map(|c| c.name.to_owned())
        .collect()
}

/// The field name of the volume's source (`hostPath`, `configMap`, …).
pub fn volume_type(v: &Volume) -> &'static str {
    let sources: [(&str, bool); 30] = [
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("cinder", v.cinder.is_some()),
        ("configMap", v.config_map.is_some()),
        ("csi", v.csi.is_some()),
        ("downwardAPI", v.downward_api.is_some()),
        ("emptyDir", v.empty_dir.is_some()),
        ("ephemeral", v.ephemeral.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("flocker", v.flocker.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("hostPath", v.host_path.is_some()),
        ("image", v.image.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("nfs", v.nfs.is_some()),
        ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("projected", v.projected.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("rbd", v.rbd.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("secret", v.secret.is_some()),
        ("storageos", v.storageos.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
    ];
    // A volume without a source is an emptyDir to the apiserver (it defaults one).
    sources
        .iter()
        .find(|(_, set)| *set)
        .map_or("emptyDir", |(name, _)| name)
}

/// Windows account names compare case-insensitively, domain and user alike.
pub fn same_account(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.chars()
            .zip(b.chars())
            .all(|(x, y)| x == y || x.to_lowercase().eq(y.to_lowercase()))
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn limit_max(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    path: &str,
) -> Result<Option<(String, Quantity)>, InvalidPolicy> {
    q.map(|q| positive_quantity(q, path).map(|parsed| (q.0.clone(), parsed)))
        .transpose()
}

fn positive_quantity(
    q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    path: &str,
) -> Result<Quantity, InvalidPolicy> {
    let parsed =
        Quantity::parse(&q.0).map_err(|e| InvalidPolicy::new(path, format!("{:?}: {e}", q.0)))?;
    if parsed.is_negative() || parsed.is_zero() {
        return Err(InvalidPolicy::new(
            path,
            format!("{:?} must be positive", q.0),
        ));
    }
    Ok(parsed)
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// An immutable, validated set of policies, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    admitting: Vec<CompiledPolicy>,
    profiles: Vec<CompiledPolicy>,
}

/// Two policies with the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {0:?} is defined more than once")]
pub struct DuplicatePolicy(pub String);

impl PolicySet {
    /// Builds a set; names must be unique.
    pub fn new(policies: Vec<CompiledPolicy>) -> Result<Self, DuplicatePolicy> {
        let mut all = policies;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = all.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(DuplicatePolicy(w[0].name.to_string()));
        }
        let (profiles, admitting) = all.into_iter().partition(|p| p.profile.is_some());
        Ok(PolicySet {
            admitting,
            profiles,
        })
    }

    /// Adds a built-in profile that applies everywhere.
    #[must_use]
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profiles.push(CompiledPolicy::builtin_profile(profile));
        self
    }

    /// Every policy, by value (built-in profiles included).
    pub fn into_policies(self) -> Vec<CompiledPolicy> {
        let mut all = self.admitting;
        all.extend(self.profiles);
        all
    }

    /// Policies that can admit HostProcess pods, by name.
    pub fn admitting(&self) -> &[CompiledPolicy] {
        &self.admitting
    }

    /// Policies that apply a profile, by name.
    pub fn profiles(&self) -> &[CompiledPolicy] {
        &self.profiles
    }

    /// Every policy.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledPolicy> {
        self.admitting.iter().chain(&self.profiles)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.admitting.len() + self.profiles.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A policy by name.
    pub fn get(&self, name: &str) -> Option<&CompiledPolicy> {
        self.iter().find(|p| &*p.name == name)
    }
}
