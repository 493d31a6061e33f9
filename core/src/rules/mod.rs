//! The rules hostgate checks, with their ids.
//!
//! - [`structural`]: HP-API-01…09, the apiserver's own validation (always on).
//! - [`baseline`]: HP-PSA-01, Pod Security Admission's `windowsHostProcess` check (the `baseline`
//!   profile).
//! - `HG-…`: hostgate's policy constraints, one module per family, each compiled from its part
//!   of a `HostProcessPolicy` and checked on the pods that policy admits:
//!   [`images`] (`HG-IMAGE-*`), [`users`] (`HG-USER-*`), [`volumes`] (`HG-VOLUME-*`),
//!   [`annotations`] (`HG-ANNOT-01`), [`limits`] (`HG-LIMITS-*`), [`runtime`] (`HG-RUNTIME-*`),
//!   [`ephemeral`] (`HG-EPHEMERAL-*`, also the node's gate for one container:
//!   [`ephemeral::EphemeralRequest`]). `HG-MATCH-01` (no policy
//!   matches) is decided by [`crate::engine`]; `HG-APPROVAL-*` by [`crate::approval`] where an
//!   approval is verified.
//!
//! `docs/rules.md` in the repository describes every id, why it exists and the upstream
//! behaviour it mirrors.

pub mod annotations;
pub mod baseline;
pub mod ephemeral;
pub mod images;
pub mod limits;
pub mod runtime;
pub mod structural;
#[cfg(test)]
pub(crate) mod testing;
pub mod users;
pub mod volumes;

/// Every rule id, by name, as `docs/rules.md` lists them (sub-rules of one upstream check keep
/// their letters: `HP-API-06a`…`06j`).
pub mod ids {
    /// Pod and container `hostProcess` must be identical if both are set.
    pub const API_IDENTICAL: &str = "HP-API-01";
    /// All containers or none are HostProcess containers.
    pub const API_ALL_OR_NOTHING: &str = "HP-API-02";
    /// HostProcess pods must set `hostNetwork: true`.
    pub const API_HOST_NETWORK: &str = "HP-API-03";
    /// The apiserver runs with `--allow-privileged=false`.
    pub const API_PRIVILEGED_DISALLOWED: &str = "HP-API-04";
    /// Ephemeral containers on create / in pod templates.
    pub const API_EPHEMERAL: &str = "HP-API-05";
    /// `gmsaCredentialSpecName` is not a DNS-1123 subdomain.
    pub const API_GMSA_NAME: &str = "HP-API-06a";
    /// `gmsaCredentialSpec` is empty or larger than 64 KiB.
    pub const API_GMSA_SPEC: &str = "HP-API-06b";
    /// `runAsUserName` is empty.
    pub const API_USER_EMPTY: &str = "HP-API-06c";
    /// `runAsUserName` contains control characters.
    pub const API_USER_CONTROL: &str = "HP-API-06d";
    /// `runAsUserName` has more than one backslash.
    pub const API_USER_BACKSLASH: &str = "HP-API-06e";
    /// `runAsUserName` domain is 256 bytes or longer.
    pub const API_USER_DOMAIN_LEN: &str = "HP-API-06f";
    /// `runAsUserName` domain is neither NetBIOS nor DNS.
    pub const API_USER_DOMAIN_FORMAT: &str = "HP-API-06g";
    /// `runAsUserName` user is empty or longer than 104 bytes.
    pub const API_USER_LEN: &str = "HP-API-06h";
    /// `runAsUserName` user is only periods or spaces.
    pub const API_USER_DOTS: &str = "HP-API-06i";
    /// `runAsUserName` user contains a forbidden character.
    pub const API_USER_CHARS: &str = "HP-API-06j";
    /// `spec.os.name` is empty.
    pub const API_OS_EMPTY: &str = "HP-API-07a";
    /// `spec.os.name` is neither `linux` nor `windows`.
    pub const API_OS_UNSUPPORTED: &str = "HP-API-07b";
    /// A Linux-only field on a `spec.os.name: windows` pod.
    pub const API_WINDOWS_FIELDS: &str = "HP-API-08";
    /// `windowsOptions` on a `spec.os.name: linux` pod.
    pub const API_LINUX_WINDOWS_OPTIONS: &str = "HP-API-09";
    /// Pod Security Admission's `windowsHostProcess` check.
    pub const PSA_HOST_PROCESS: &str = "HP-PSA-01";
    /// No policy matches the HostProcess pod.
    pub const NO_POLICY: &str = "HG-MATCH-01";
    /// Image not allowed by the policy's patterns.
    pub const IMAGE_NOT_ALLOWED: &str = "HG-IMAGE-01";
    /// Image not pinned by digest.
    pub const IMAGE_DIGEST: &str = "HG-IMAGE-02";
    /// No `runAsUserName`: the image's default user would run.
    pub const USER_UNSET: &str = "HG-USER-01";
    /// `runAsUserName` not in the policy's list.
    pub const USER_NOT_ALLOWED: &str = "HG-USER-02";
    /// `NT AUTHORITY` not spelled exactly (hcsshim compares it case-sensitively).
    pub const USER_DOMAIN_SPELLING: &str = "HG-USER-03";
    /// Volume type not allowed.
    pub const VOLUME_TYPE: &str = "HG-VOLUME-01";
    /// hostPath outside the allowed prefixes.
    pub const VOLUME_HOST_PATH: &str = "HG-VOLUME-02";
    /// Privileged `microsoft.com/hostprocess-*` annotation not allowed.
    pub const ANNOTATION: &str = "HG-ANNOT-01";
    /// A required limit is missing.
    pub const LIMIT_MISSING: &str = "HG-LIMITS-01";
    /// A limit exceeds the policy's maximum.
    pub const LIMIT_EXCEEDED: &str = "HG-LIMITS-02";
    /// A policy lists RuntimeClasses and the pod names none.
    pub const RUNTIME_CLASS_MISSING: &str = "HG-RUNTIME-01";
    /// The pod names a RuntimeClass the policy does not list.
    pub const RUNTIME_CLASS_NOT_ALLOWED: &str = "HG-RUNTIME-02";
    /// The approval annotation is missing, malformed or does not verify.
    pub const APPROVAL_INVALID: &str = "HG-APPROVAL-01";
    /// The approval does not match the object.
    pub const APPROVAL_MISMATCH: &str = "HG-APPROVAL-02";
    /// The policy allows no ephemeral container on its HostProcess pods.
    pub const EPHEMERAL_NOT_ALLOWED: &str = "HG-EPHEMERAL-01";
    /// An ephemeral container's image is not among the policy's ephemeral images.
    pub const EPHEMERAL_IMAGE: &str = "HG-EPHEMERAL-02";
    /// An ephemeral container's command is not among the policy's ephemeral commands.
    pub const EPHEMERAL_COMMAND: &str = "HG-EPHEMERAL-03";
    /// An ephemeral container's account is not among the policy's ephemeral accounts.
    pub const EPHEMERAL_USER: &str = "HG-EPHEMERAL-04";
}

/// Documentation of one rule, for reports (SARIF `rules`) and `--explain`-style output.
#[derive(Debug, Clone, Copy)]
pub struct RuleInfo {
    /// The id.
    pub id: &'static str,
    /// A short name.
    pub name: &'static str,
    /// What the rule checks and where it comes from.
    pub description: &'static str,
}

/// Every rule hostgate can report.
pub const CATALOGUE: &[RuleInfo] = &[
    RuleInfo {
        id: ids::API_IDENTICAL,
        name: "HostProcessIdentical",
        description: "Pod-level and container-level windowsOptions.hostProcess must be identical when both are set (kube-apiserver validateWindowsHostProcessPod).",
    },
    RuleInfo {
        id: ids::API_ALL_OR_NOTHING,
        name: "HostProcessAllContainers",
        description: "If any container (init, regular or ephemeral) is a HostProcess container, all must be (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_HOST_NETWORK,
        name: "HostProcessHostNetwork",
        description: "HostProcess pods must set spec.hostNetwork: true explicitly; it is never defaulted (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_PRIVILEGED_DISALLOWED,
        name: "HostProcessAllowPrivileged",
        description: "HostProcess containers are refused when kube-apiserver runs with --allow-privileged=false.",
    },
    RuleInfo {
        id: ids::API_EPHEMERAL,
        name: "EphemeralContainers",
        description: "Ephemeral containers cannot be set when a pod is created, nor in pod templates (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_GMSA_NAME,
        name: "GmsaCredentialSpecName",
        description: "windowsOptions.gmsaCredentialSpecName must be a DNS-1123 subdomain (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_GMSA_SPEC,
        name: "GmsaCredentialSpec",
        description: "windowsOptions.gmsaCredentialSpec must be non-empty and under 64 KiB (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_USER_EMPTY,
        name: "RunAsUserNameEmpty",
        description: "windowsOptions.runAsUserName cannot be an empty string (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_USER_CONTROL,
        name: "RunAsUserNameControl",
        description: "windowsOptions.runAsUserName cannot contain control characters (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_USER_BACKSLASH,
        name: "RunAsUserNameBackslash",
        description: "windowsOptions.runAsUserName cannot contain more than one backslash (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_USER_DOMAIN_LEN,
        name: "RunAsUserNameDomainLength",
        description: "The domain of windowsOptions.runAsUserName must be under 256 characters (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_USER_DOMAIN_FORMAT,
        name: "RunAsUserNameDomainFormat",
        description: "The domain of windowsOptions.runAsUserName must be a NetBIOS or DNS name (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_USER_LEN,
        name: "RunAsUserNameUserLength",
        description: "The user of windowsOptions.runAsUserName must be 1 to 104 characters (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_USER_DOTS,
        name: "RunAsUserNameDots",
        description: "The user of windowsOptions.runAsUserName cannot be only periods or spaces (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_USER_CHARS,
        name: "RunAsUserNameCharacters",
        description: "The user of windowsOptions.runAsUserName cannot contain \"/\\:;|=,+*?<>@[] (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_OS_EMPTY,
        name: "OsNameEmpty",
        description: "spec.os.name cannot be empty (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_OS_UNSUPPORTED,
        name: "OsNameUnsupported",
        description: "spec.os.name must be linux or windows (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_WINDOWS_FIELDS,
        name: "WindowsPodLinuxFields",
        description: "Linux-only fields (even privileged: false) cannot be set on a spec.os.name: windows pod (kube-apiserver).",
    },
    RuleInfo {
        id: ids::API_LINUX_WINDOWS_OPTIONS,
        name: "LinuxPodWindowsOptions",
        description: "windowsOptions cannot be set on a spec.os.name: linux pod (kube-apiserver).",
    },
    RuleInfo {
        id: ids::PSA_HOST_PROCESS,
        name: "PodSecurityWindowsHostProcess",
        description: "Pod Security Admission baseline check windowsHostProcess: neither the pod nor any container may set hostProcess: true.",
    },
    RuleInfo {
        id: ids::NO_POLICY,
        name: "NoMatchingPolicy",
        description: "A HostProcess pod is denied unless a HostProcessPolicy matches its namespace and service account.",
    },
    RuleInfo {
        id: ids::IMAGE_NOT_ALLOWED,
        name: "ImageNotAllowed",
        description: "Every container image must match one of the policy's allow.images patterns.",
    },
    RuleInfo {
        id: ids::IMAGE_DIGEST,
        name: "ImageDigest",
        description: "Images must be pinned by digest (@sha256:...) when the policy sets require.imageDigest.",
    },
    RuleInfo {
        id: ids::USER_UNSET,
        name: "RunAsUserNameUnset",
        description: "HostProcess containers must name their host account (windowsOptions.runAsUserName); the node does not run image default users.",
    },
    RuleInfo {
        id: ids::USER_NOT_ALLOWED,
        name: "RunAsUserNameNotAllowed",
        description: "The effective runAsUserName must be one of the policy's allow.runAsUserNames.",
    },
    RuleInfo {
        id: ids::USER_DOMAIN_SPELLING,
        name: "NtAuthoritySpelling",
        description: "The NT AUTHORITY domain must be spelled exactly so: the node compares it case-sensitively and otherwise logs on interactively, which fails.",
    },
    RuleInfo {
        id: ids::VOLUME_TYPE,
        name: "VolumeTypeNotAllowed",
        description: "Every volume must be of a type in the policy's allow.volumes.types.",
    },
    RuleInfo {
        id: ids::VOLUME_HOST_PATH,
        name: "HostPathNotAllowed",
        description: "hostPath volumes must lie under one of the policy's allow.volumes.hostPathPrefixes.",
    },
    RuleInfo {
        id: ids::ANNOTATION,
        name: "PrivilegedAnnotation",
        description: "The microsoft.com/hostprocess-* pod annotations must be listed in the policy's allow.annotations.",
    },
    RuleInfo {
        id: ids::LIMIT_MISSING,
        name: "LimitMissing",
        description: "Every container must set the resource limits the policy requires; they become the job object's limits.",
    },
    RuleInfo {
        id: ids::LIMIT_EXCEEDED,
        name: "LimitExceeded",
        description: "Container limits must not exceed the policy's maxima.",
    },
    RuleInfo {
        id: ids::RUNTIME_CLASS_MISSING,
        name: "RuntimeClassMissing",
        description: "When the policy lists allow.runtimeClassNames, the pod must name one of them: a pod that names no RuntimeClass runs under the node's default handler, outside hostgate's node check.",
    },
    RuleInfo {
        id: ids::RUNTIME_CLASS_NOT_ALLOWED,
        name: "RuntimeClassNotAllowed",
        description: "The pod's runtimeClassName must be one of the policy's allow.runtimeClassNames.",
    },
    RuleInfo {
        id: ids::APPROVAL_INVALID,
        name: "ApprovalInvalid",
        description: "An admitted HostProcess pod carries a hostgate approval signed by a trusted key.",
    },
    RuleInfo {
        id: ids::APPROVAL_MISMATCH,
        name: "ApprovalMismatch",
        description: "The signed approval must describe exactly the pod that is about to run.",
    },
    RuleInfo {
        id: ids::EPHEMERAL_NOT_ALLOWED,
        name: "EphemeralContainerRefused",
        description: "An ephemeral container (kubectl debug) on a HostProcess pod runs on the host with the pod's account; it is refused unless the admitting policy's spec.allow.ephemeralContainers allows it.",
    },
    RuleInfo {
        id: ids::EPHEMERAL_IMAGE,
        name: "EphemeralContainerImage",
        description: "An ephemeral container's image must match spec.allow.ephemeralContainers.images.",
    },
    RuleInfo {
        id: ids::EPHEMERAL_COMMAND,
        name: "EphemeralContainerCommand",
        description: "An ephemeral container's full argv (command, then args) must be one of spec.allow.ephemeralContainers.commands.",
    },
    RuleInfo {
        id: ids::EPHEMERAL_USER,
        name: "EphemeralContainerUser",
        description: "An ephemeral container's effective runAsUserName must be one of spec.allow.ephemeralContainers.runAsUserNames, when they are listed.",
    },
];

/// Looks a rule up by id.
pub fn info(id: &str) -> Option<&'static RuleInfo> {
    CATALOGUE.iter().find(|r| r.id == id)
}

/// Quotes like Go's `strconv.Quote` (`%q`), which apimachinery uses for string values in field
/// errors.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let v = c as u32;
                if v <= 0xffff {
                    out.push_str(&format!("\\u{v:04x}"));
                } else {
                    out.push_str(&format!("\\U{v:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\\b"), r#""a\\b""#);
        assert_eq!(go_quote("say \"hi\"\n"), r#""say \"hi\"\n""#);
        assert_eq!(go_quote("\u{1}x"), r#""\x01x""#);
        assert_eq!(go_quote("ünï"), "\"ünï\"");
    }

    #[test]
    fn catalogue_ids_are_unique_and_documented() {
        let mut seen = std::collections::HashSet::new();
        for r in CATALOGUE {
            assert!(seen.insert(r.id), "duplicate {}", r.id);
            assert!(!r.description.is_empty());
        }
        assert!(info("HP-API-06e").is_some());
        assert!(info("HG-NOPE").is_none());
    }
}
