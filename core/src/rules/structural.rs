//! HP-API-01…09: the kube-apiserver's own HostProcess and Windows validation, reproduced with its
//! conditions, field paths and message text, so that `hostgate check` refuses in CI what
//! `kubectl apply` would be refused for (`docs/rules.md`, HP-API).
//!
//! Order follows `ValidatePodSpec`: windowsOptions field validation (pod level, then every
//! container), `validateWindowsHostProcessPod`, `validateOS`, then the OS-specific checks; pod
//! create and template checks on ephemeral containers come last.

use k8s_openapi::api::core::v1::WindowsSecurityContextOptions;

use super::{go_quote, ids};
use crate::decision::Finding;
use crate::pod::{PodView, SpecPath};

/// Cluster facts and request facts the structural rules depend on.
#[derive(Debug, Clone, Copy)]
pub struct StructuralOptions {
    /// kube-apiserver `--allow-privileged` (HP-API-04). Clusters run with `true` by default.
    pub allow_privileged: bool,
    /// Whether the object is being created (ephemeral containers cannot be set on create,
    /// HP-API-05). False for updates and the `ephemeralcontainers` subresource.
    pub create: bool,
}

impl Default for StructuralOptions {
    fn default() -> Self {
        StructuralOptions {
            allow_privileged: true,
            create: true,
        }
    }
}

const WINDOWS_POD: &str = "Forbidden: cannot be set for a windows pod";
const LINUX_POD: &str = "Forbidden: windows options cannot be set for a linux pod";

/// Runs every structural rule and appends what fails to `out`.
pub fn check(pod: &PodView<'_>, opts: StructuralOptions, out: &mut Vec<Finding>) {
    let spec_path = pod.path;

    // HP-API-06: windowsOptions fields, pod level then each container.
    if let Some(w) = pod.windows_options() {
        windows_options(w, || spec_path.field("securityContext.windowsOptions"), out);
    }
    for c in pod.containers() {
        if let Some(w) = c.windows_options() {
            windows_options(
                w,
                || c.path_to(spec_path, "securityContext.windowsOptions"),
                out,
            );
        }
    }

    host_process(pod, opts, out);
    os(pod, out);
    ephemeral(pod, opts, out);
}

/// HP-API-01…04: `validateWindowsHostProcessPod`.
fn host_process(pod: &PodView<'_>, opts: StructuralOptions, out: &mut Vec<Finding>) {
    let spec_path = pod.path;
    let pod_hp = pod.pod_host_process();
    let mut containers = 0usize;
    let mut host_process = 0usize;
    for c in pod.containers() {
        containers += 1;
        let c_hp = c.host_process();
        if let (Some(p), Some(v)) = (pod_hp, c_hp)
            && p != v
        {
            out.push(
                Finding::new(
                    ids::API_IDENTICAL,
                    c.path_to(spec_path, "securityContext.windowsOptions.hostProcess"),
                    format!(
                        "Invalid value: {v}: pod hostProcess value must be identical if both are specified, was {p}"
                    ),
                )
                .with_containers(vec![c.name.to_owned()]),
            );
        }
        if c_hp == Some(true) || (c_hp.is_none() && pod_hp == Some(true)) {
            host_process += 1;
        }
    }
    if host_process == 0 {
        return;
    }
    if host_process != containers {
        let others = pod
            .containers()
            .filter(|c| !pod.is_host_process_container(c))
            .map(|c| c.name.to_owned())
            .collect();
        out.push(
            Finding::new(
                ids::API_ALL_OR_NOTHING,
                spec_path.0.to_owned(),
                "Invalid value: \"\": If pod contains any hostProcess containers then all containers must be HostProcess containers".to_owned(),
            )
            .with_containers(others),
        );
    }
    if !pod.host_network() {
        out.push(Finding::new(
            ids::API_HOST_NETWORK,
            spec_path.field("hostNetwork"),
            "Invalid value: false: hostNetwork must be true if pod contains any hostProcess containers"
                .to_owned(),
        ));
    }
    if !opts.allow_privileged {
        out.push(Finding::new(
            ids::API_PRIVILEGED_DISALLOWED,
            spec_path.0.to_owned(),
            "Forbidden: hostProcess containers are disallowed by cluster policy".to_owned(),
        ));
    }
}

/// HP-API-05: ephemeral containers on create and in templates.
fn ephemeral(pod: &PodView<'_>, opts: StructuralOptions, out: &mut Vec<Finding>) {
    let Some(list) = pod.spec.ephemeral_containers.as_deref() else {
        return;
    };
    if list.is_empty() {
        return;
    }
    let names = list.iter().map(|c| c.name.clone()).collect();
    if pod.path == SpecPath::POD {
        if opts.create {
            out.push(
                Finding::new(
                    ids::API_EPHEMERAL,
                    pod.path.field("ephemeralContainers"),
                    "Forbidden: cannot be set on create".to_owned(),
                )
                .with_containers(names),
            );
        }
    } else {
        out.push(
            Finding::new(
                ids::API_EPHEMERAL,
                pod.path.field("ephemeralContainers"),
                "Forbidden: ephemeral containers not allowed in pod template".to_owned(),
            )
            .with_containers(names),
        );
    }
}

/// HP-API-07…09: `validateOS`, `validateWindows`, `validateLinux`.
fn os(pod: &PodView<'_>, out: &mut Vec<Finding>) {
    let Some(os) = pod.spec.os.as_ref() else {
        return;
    };
    let spec_path = pod.path;
    match os.name.as_str() {
        "" => out.push(Finding::new(
            ids::API_OS_EMPTY,
            spec_path.field("os.name"),
            "Required value: cannot be empty".to_owned(),
        )),
        "windows" => windows_pod(pod, out),
        "linux" => linux_pod(pod, out),
        other => out.push(Finding::new(
            ids::API_OS_UNSUPPORTED,
            spec_path.field("os"),
            format!(
                "Unsupported value: {}: supported values: \"linux\", \"windows\"",
                go_quote(other)
            ),
        )),
    }
}

fn windows_pod(pod: &PodView<'_>, out: &mut Vec<Finding>) {
    let spec = pod.spec;
    let p = pod.path;
    let mut forbid = |path: String, containers: Vec<String>| {
        out.push(
            Finding::new(ids::API_WINDOWS_FIELDS, path, WINDOWS_POD.to_owned())
                .with_containers(containers),
        );
    };
    if let Some(sc) = spec.security_context.as_ref() {
        if sc.app_armor_profile.is_some() {
            forbid(p.field("securityContext.appArmorProfile"), vec![]);
        }
        if sc.se_linux_options.is_some() {
            forbid(p.field("securityContext.seLinuxOptions"), vec![]);
        }
    }
    if spec.host_users.is_some() {
        forbid(p.field("hostUsers"), vec![]);
    }
    if spec.host_pid == Some(true) {
        forbid(p.field("hostPID"), vec![]);
    }
    if spec.host_ipc == Some(true) {
        forbid(p.field("hostIPC"), vec![]);
    }
    if let Some(sc) = spec.security_context.as_ref() {
        if sc.seccomp_profile.is_some() {
            forbid(p.field("securityContext.seccompProfile"), vec![]);
        }
        if sc.fs_group.is_some() {
            forbid(p.field("securityContext.fsGroup"), vec![]);
        }
        if sc.fs_group_change_policy.is_some() {
            forbid(p.field("securityContext.fsGroupChangePolicy"), vec![]);
        }
        if sc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
            forbid(p.field("securityContext.sysctls"), vec![]);
        }
    }
    if spec.share_process_namespace.is_some() {
        forbid(p.field("shareProcessNamespace"), vec![]);
    }
    if let Some(sc) = spec.security_context.as_ref() {
        if sc.run_as_user.is_some() {
            forbid(p.field("securityContext.runAsUser"), vec![]);
        }
        if sc.run_as_group.is_some() {
            forbid(p.field("securityContext.runAsGroup"), vec![]);
        }
        if sc.supplemental_groups.is_some() {
            forbid(p.field("securityContext.supplementalGroups"), vec![]);
        }
        if sc.supplemental_groups_policy.is_some() {
            forbid(p.field("securityContext.supplementalGroupsPolicy"), vec![]);
        }
        if sc.se_linux_change_policy.is_some() {
            forbid(p.field("securityContext.seLinuxChangePolicy"), vec![]);
        }
    }
    for c in pod.containers() {
        let Some(sc) = c.security_context else {
            continue;
        };
        let fields: [(&str, bool); 10] = [
            ("appArmorProfile", sc.app_armor_profile.is_some()),
            ("seLinuxOptions", sc.se_linux_options.is_some()),
            ("seccompProfile", sc.seccomp_profile.is_some()),
            ("capabilities", sc.capabilities.is_some()),
            (
                "readOnlyRootFilesystem",
                sc.read_only_root_filesystem.is_some(),
            ),
            ("privileged", sc.privileged.is_some()),
            (
                "allowPrivilegeEscalation",
                sc.allow_privilege_escalation.is_some(),
            ),
            ("procMount", sc.proc_mount.is_some()),
            ("runAsUser", sc.run_as_user.is_some()),
            ("runAsGroup", sc.run_as_group.is_some()),
        ];
        for (field, set) in fields {
            if set {
                forbid(
                    c.path_to(p, &format!("securityContext.{field}")),
                    vec![c.name.to_owned()],
                );
            }
        }
    }
}

fn linux_pod(pod: &PodView<'_>, out: &mut Vec<Finding>) {
    if pod.windows_options().is_some() {
        out.push(Finding::new(
            ids::API_LINUX_WINDOWS_OPTIONS,
            pod.path.field("securityContext.windowsOptions"),
            LINUX_POD.to_owned(),
        ));
    }
    for c in pod.containers() {
        if c.windows_options().is_some() {
            out.push(
                Finding::new(
                    ids::API_LINUX_WINDOWS_OPTIONS,
                    c.path_to(pod.path, "securityContext.windowsOptions"),
                    LINUX_POD.to_owned(),
                )
                .with_containers(vec![c.name.to_owned()]),
            );
        }
    }
}

/// HP-API-06: `validateWindowsSecurityContextOptions`.
fn windows_options(
    w: &WindowsSecurityContextOptions,
    base: impl Fn() -> String,
    out: &mut Vec<Finding>,
) {
    if let Some(name) = w.gmsa_credential_spec_name.as_deref() {
        for msg in dns1123_subdomain(name) {
            out.push(Finding::new(
                ids::API_GMSA_NAME,
                format!("{}.gmsaCredentialSpecName", base()),
                format!("Invalid value: {}: {msg}", go_quote(name)),
            ));
        }
    }
    if let Some(spec) = w.gmsa_credential_spec.as_deref() {
        let msg = if spec.is_empty() {
            Some("gmsaCredentialSpec cannot be an empty string")
        } else if spec.len() > 64 * 1024 {
            Some("gmsaCredentialSpec size must be under 64 KiB")
        } else {
            None
        };
        if let Some(msg) = msg {
            // The apiserver prints the whole value; a 64 KiB spec makes no useful message, so the
            // value is elided beyond a short prefix.
            out.push(Finding::new(
                ids::API_GMSA_SPEC,
                format!("{}.gmsaCredentialSpec", base()),
                format!("Invalid value: {}: {msg}", go_quote(&elide(spec, 64))),
            ));
        }
    }
    if let Some(user) = w.run_as_user_name.as_deref() {
        for (rule, msg) in run_as_user_name_errors(user) {
            out.push(Finding::new(
                rule,
                format!("{}.runAsUserName", base()),
                format!("Invalid value: {}: {msg}", go_quote(user)),
            ));
        }
    }
}

fn elide(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

const MAX_DOMAIN_LEN: usize = 256;
const MAX_USER_LEN: usize = 104;

/// A set of ASCII bytes, for the character classes of the apiserver's regular expressions.
struct AsciiSet(u128);

impl AsciiSet {
    const fn new(chars: &[u8]) -> Self {
        let mut bits = 0u128;
        let mut i = 0;
        while i < chars.len() {
            bits |= 1 << chars[i];
            i += 1;
        }
        AsciiSet(bits)
    }

    fn contains(&self, b: u8) -> bool {
        b < 128 && self.0 & (1 << b) != 0
    }
}

/// `["/\\:;|=,+*?<>@\[\]]`: characters a user name cannot contain.
const INVALID_USER_CHARS: AsciiSet = AsciiSet::new(b"\"/\\:;|=,+*?<>@[]");
/// `[\\/:\*\?"<>|]`: characters a NetBIOS domain cannot contain.
const INVALID_NETBIOS_CHARS: AsciiSet = AsciiSet::new(b"\\/:*?\"<>|");

/// The errors the apiserver reports for a `runAsUserName` value, with their sub-rule ids
/// (HP-API-06c…j). Empty when the name is valid.
pub fn run_as_user_name_errors(v: &str) -> Vec<(&'static str, String)> {
    let mut errs = Vec::new();
    if v.is_empty() {
        errs.push((
            ids::API_USER_EMPTY,
            "runAsUserName cannot be an empty string".to_owned(),
        ));
        return errs;
    }
    // `[[:cntrl:]]` is ASCII-only; bytes of multi-byte UTF-8 sequences are all >= 0x80.
    if v.bytes().any(|b| b < 0x20 || b == 0x7f) {
        errs.push((
            ids::API_USER_CONTROL,
            "runAsUserName cannot contain control characters".to_owned(),
        ));
        return errs;
    }
    let (domain, user) = match v.split_once('\\') {
        Some((_, rest)) if rest.contains('\\') => {
            errs.push((
                ids::API_USER_BACKSLASH,
                "runAsUserName cannot contain more than one backslash".to_owned(),
            ));
            return errs;
        }
        Some((domain, user)) => (Some(domain), user),
        None => (None, v),
    };
    let domain_len = domain.map_or(0, str::len);
    if domain_len >= MAX_DOMAIN_LEN {
        errs.push((
            ids::API_USER_DOMAIN_LEN,
            format!("runAsUserName's Domain length must be under {MAX_DOMAIN_LEN} characters"),
        ));
    }
    if let Some(d) = domain
        && !(is_netbios_domain(d) || is_dns_domain(d))
    {
        errs.push((
            ids::API_USER_DOMAIN_FORMAT,
            "runAsUserName's Domain doesn't match the NetBios nor the DNS format".to_owned(),
        ));
    }
    if user.is_empty() {
        errs.push((
            ids::API_USER_LEN,
            "runAsUserName's User cannot be empty".to_owned(),
        ));
    } else if user.len() > MAX_USER_LEN {
        errs.push((
            ids::API_USER_LEN,
            format!(
                "runAsUserName's User length must not be longer than {MAX_USER_LEN} characters"
            ),
        ));
    }
    if !user.is_empty() && user.bytes().all(|b| b == b'.' || b == b' ') {
        errs.push((
            ids::API_USER_DOTS,
            "runAsUserName's User cannot contain only periods or spaces".to_owned(),
        ));
    }
    if user.bytes().any(|b| INVALID_USER_CHARS.contains(b)) {
        errs.push((
            ids::API_USER_CHARS,
            "runAsUserName's User cannot contain the following characters: \"/\\:;|=,+*?<>@[]"
                .to_owned(),
        ));
    }
    errs
}

/// NetBIOS: `^[^\\/:\*\?"<>|\.][^\\/:\*\?"<>|]{0,14}$` (runes, as Go's regexp counts them).
fn is_netbios_domain(d: &str) -> bool {
    let Some(&first) = d.as_bytes().first() else {
        return false;
    };
    first != b'.'
        && !d.bytes().any(|b| INVALID_NETBIOS_CHARS.contains(b))
        && d.chars().count() <= 15
}

/// DNS: dot-separated labels of `[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?`.
fn is_dns_domain(d: &str) -> bool {
    d.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    })
}

/// apimachinery `IsDNS1123Subdomain` messages.
fn dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    let ok = v.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && is_lower_alnum(b[0])
            && is_lower_alnum(b[b.len() - 1])
            && b.iter().all(|c| is_lower_alnum(*c) || *c == b'-')
    });
    if !ok {
        errs.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_owned());
    }
    errs
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("test pod parses")
    }

    fn errors(p: &Pod, opts: StructuralOptions) -> Vec<String> {
        let spec = p.spec.as_ref().expect("spec");
        let view = PodView::new(spec, Some(&p.metadata), SpecPath::POD);
        let mut out = Vec::new();
        check(&view, opts, &mut out);
        out.iter()
            .map(|f| format!("{}: {}", f.path, f.message))
            .collect()
    }

    fn errs(yaml: &str) -> Vec<String> {
        errors(&pod(yaml), StructuralOptions::default())
    }

    const HP_POD: &str = r#"
metadata: {name: p}
spec:
  hostNetwork: true
  securityContext: {windowsOptions: {hostProcess: true}}
  containers: [{name: a, image: x}]
"#;

    #[test]
    fn valid_host_process_pod_has_no_errors() {
        assert!(errs(HP_POD).is_empty());
    }

    /// The exact texts a real kube-apiserver printed when it refused these pods (recorded with
    /// the `rejected-*` captures in `tests/data/admissionreview`).
    #[test]
    fn reproduces_recorded_apiserver_rejections() {
        let cases = [
            (
                "r1",
                "spec: {securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a}]}",
                vec![
                    "spec.hostNetwork: Invalid value: false: hostNetwork must be true if pod contains any hostProcess containers",
                ],
            ),
            (
                "r2",
                "spec: {hostNetwork: true, securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a, securityContext: {windowsOptions: {hostProcess: false}}}]}",
                vec![
                    "spec.containers[0].securityContext.windowsOptions.hostProcess: Invalid value: false: pod hostProcess value must be identical if both are specified, was true",
                ],
            ),
            (
                "r3",
                "spec: {hostNetwork: true, containers: [{name: a, securityContext: {windowsOptions: {hostProcess: true}}}, {name: b}]}",
                vec![
                    "spec: Invalid value: \"\": If pod contains any hostProcess containers then all containers must be HostProcess containers",
                ],
            ),
            (
                "r4",
                "spec: {hostNetwork: true, os: {name: linux}, securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a}]}",
                vec![
                    "spec.securityContext.windowsOptions: Forbidden: windows options cannot be set for a linux pod",
                ],
            ),
            (
                "r5",
                "spec: {hostNetwork: true, initContainers: [{name: i, securityContext: {windowsOptions: {hostProcess: true}}}], containers: [{name: a}]}",
                vec![
                    "spec: Invalid value: \"\": If pod contains any hostProcess containers then all containers must be HostProcess containers",
                ],
            ),
            (
                "r7",
                "spec: {hostNetwork: true, os: {name: windows}, securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a, securityContext: {privileged: true}}]}",
                vec![
                    "spec.containers[0].securityContext.privileged: Forbidden: cannot be set for a windows pod",
                ],
            ),
        ];
        for (name, yaml, want) in cases {
            assert_eq!(errs(yaml), want, "{name}");
        }
    }

    #[test]
    fn pod_false_container_true_and_no_host_network() {
        let got = errs(
            "spec: {securityContext: {windowsOptions: {hostProcess: false}}, containers: [{name: a, securityContext: {windowsOptions: {hostProcess: true}}}, {name: b}]}",
        );
        assert_eq!(
            got,
            [
                "spec.containers[0].securityContext.windowsOptions.hostProcess: Invalid value: true: pod hostProcess value must be identical if both are specified, was false",
                "spec: Invalid value: \"\": If pod contains any hostProcess containers then all containers must be HostProcess containers",
                "spec.hostNetwork: Invalid value: false: hostNetwork must be true if pod contains any hostProcess containers",
            ]
        );
    }

    #[test]
    fn privileged_disallowed_by_cluster_policy() {
        let got = errors(
            &pod(HP_POD),
            StructuralOptions {
                allow_privileged: false,
                create: true,
            },
        );
        assert_eq!(
            got,
            ["spec: Forbidden: hostProcess containers are disallowed by cluster policy"]
        );
    }

    #[test]
    fn explicit_false_everywhere_is_not_host_process() {
        assert!(
            errs("spec: {securityContext: {windowsOptions: {hostProcess: false}}, containers: [{name: a}]}")
                .is_empty()
        );
    }

    #[test]
    fn ephemeral_containers_count_and_cannot_be_created() {
        let yaml = "spec: {hostNetwork: true, securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a}], ephemeralContainers: [{name: dbg, securityContext: {windowsOptions: {hostProcess: false}}}]}";
        let got = errs(yaml);
        assert_eq!(
            got,
            [
                "spec.ephemeralContainers[0].securityContext.windowsOptions.hostProcess: Invalid value: false: pod hostProcess value must be identical if both are specified, was true",
                "spec: Invalid value: \"\": If pod contains any hostProcess containers then all containers must be HostProcess containers",
                "spec.ephemeralContainers: Forbidden: cannot be set on create",
            ]
        );
        let update = errors(
            &pod(yaml),
            StructuralOptions {
                allow_privileged: true,
                create: false,
            },
        );
        assert_eq!(update.len(), 2);
    }

    #[test]
    fn os_name_rules() {
        assert_eq!(
            errs("spec: {os: {name: ''}, containers: [{name: a}]}"),
            ["spec.os.name: Required value: cannot be empty"]
        );
        assert_eq!(
            errs("spec: {os: {name: Windows}, containers: [{name: a}]}"),
            ["spec.os: Unsupported value: \"Windows\": supported values: \"linux\", \"windows\""]
        );
    }

    #[test]
    fn windows_pod_forbids_linux_fields_even_when_false() {
        let got = errs(
            "spec: {os: {name: windows}, hostPID: true, shareProcessNamespace: false, securityContext: {runAsUser: 0, sysctls: []}, containers: [{name: a, securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: false, capabilities: {}}}]}",
        );
        assert_eq!(
            got,
            [
                "spec.hostPID: Forbidden: cannot be set for a windows pod",
                "spec.shareProcessNamespace: Forbidden: cannot be set for a windows pod",
                "spec.securityContext.runAsUser: Forbidden: cannot be set for a windows pod",
                "spec.containers[0].securityContext.capabilities: Forbidden: cannot be set for a windows pod",
                "spec.containers[0].securityContext.readOnlyRootFilesystem: Forbidden: cannot be set for a windows pod",
                "spec.containers[0].securityContext.allowPrivilegeEscalation: Forbidden: cannot be set for a windows pod",
            ]
        );
    }

    #[test]
    fn linux_pod_forbids_windows_options_on_containers() {
        let got = errs(
            "spec: {os: {name: linux}, containers: [{name: a, securityContext: {windowsOptions: {}}}]}",
        );
        assert_eq!(
            got,
            [
                "spec.containers[0].securityContext.windowsOptions: Forbidden: windows options cannot be set for a linux pod"
            ]
        );
    }

    #[test]
    fn run_as_user_name_table() {
        let long_user = "u".repeat(105);
        let long_domain = format!("{}\\u", "d".repeat(256));
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("NT AUTHORITY\\Local service", vec![]),
            ("NT AUTHORITY\\SYSTEM", vec![]),
            ("ContainerUser", vec![]),
            ("hpc-localgroup", vec![]),
            ("corp.example.com\\svc", vec![]),
            ("", vec!["HP-API-06c"]),
            ("a\u{7}b", vec!["HP-API-06d"]),
            ("a\\b\\c", vec!["HP-API-06e"]),
            (long_domain.as_str(), vec!["HP-API-06f", "HP-API-06g"]),
            ("bad|domain\\u", vec!["HP-API-06g"]),
            ("-bad-.domain.with.a.long.name\\u", vec!["HP-API-06g"]),
            ("NT AUTHORITY\\", vec!["HP-API-06h"]),
            (long_user.as_str(), vec!["HP-API-06h"]),
            ("NT AUTHORITY\\. .", vec!["HP-API-06i"]),
            ("NT AUTHORITY\\a@b", vec!["HP-API-06j"]),
            ("..", vec!["HP-API-06i"]),
        ];
        for (name, want) in cases {
            let got: Vec<_> = run_as_user_name_errors(name)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            assert_eq!(got, want, "{name:?}");
        }
    }

    #[test]
    fn run_as_user_name_message_quotes_value_like_go() {
        let got = errs(
            "spec: {securityContext: {windowsOptions: {runAsUserName: 'a\\b\\c'}}, containers: [{name: a}]}",
        );
        assert_eq!(
            got,
            [
                "spec.securityContext.windowsOptions.runAsUserName: Invalid value: \"a\\\\b\\\\c\": runAsUserName cannot contain more than one backslash"
            ]
        );
    }

    #[test]
    fn gmsa_fields() {
        let got = errs(
            "spec: {containers: [{name: a, securityContext: {windowsOptions: {gmsaCredentialSpecName: Bad_Name, gmsaCredentialSpec: ''}}}]}",
        );
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with(
            "spec.containers[0].securityContext.windowsOptions.gmsaCredentialSpecName: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
        ));
        assert_eq!(
            got[1],
            "spec.containers[0].securityContext.windowsOptions.gmsaCredentialSpec: Invalid value: \"\": gmsaCredentialSpec cannot be an empty string"
        );
    }

    #[test]
    fn template_paths_and_template_ephemeral_rule() {
        let p = pod(
            "spec: {securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a}], ephemeralContainers: [{name: e}]}",
        );
        let spec = p.spec.as_ref().expect("spec");
        let view = PodView::new(spec, None, SpecPath::TEMPLATE);
        let mut out = Vec::new();
        check(&view, StructuralOptions::default(), &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|f| format!("{}: {}", f.path, f.message))
            .collect();
        assert_eq!(
            got,
            [
                "spec.template.spec.hostNetwork: Invalid value: false: hostNetwork must be true if pod contains any hostProcess containers",
                "spec.template.spec.ephemeralContainers: Forbidden: ephemeral containers not allowed in pod template",
            ]
        );
    }
}
