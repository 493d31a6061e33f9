//! `HG-EPHEMERAL-01` … `HG-EPHEMERAL-04`: ephemeral containers on HostProcess pods.
//!
//! `kubectl debug` adds an ephemeral container to a running pod through the
//! `pods/ephemeralcontainers` subresource. On a HostProcess pod that container runs on the host
//! with the pod's host account: an allowed image and any command (`net user evil /add`) is a
//! host shell. An approval describes the pod as created and says nothing of containers added
//! later, so a policy must allow them explicitly, in `spec.allow.ephemeralContainers`:
//!
//! * none allowed (`HG-EPHEMERAL-01`): the default, when the field is absent;
//! * the image (`HG-EPHEMERAL-02`): one of the field's own image patterns;
//! * the command (`HG-EPHEMERAL-03`): the full argv (`command` then `args`) equal to one of the
//!   listed commands, element by element, where an element `*` stands for any one argument; an
//!   empty list allows the image's own entrypoint (no `command`, no `args`);
//! * the account (`HG-EPHEMERAL-04`): the container's effective `runAsUserName` (its own, else
//!   the pod's) one of the listed accounts.
//!
//! The webhook checks what the pod spec says (`command` and `args` as written); the node checks
//! the same rules against what the runtime is asked to run ([`EphemeralRequest`], argv after
//! the kubelet expanded `$(VAR)` references), so a listed command should not use references.

use crate::decision::Finding;
use crate::pod::{ContainerKind, PodView};
use crate::policy::image::{self, ImagePattern};
use crate::policy::{EphemeralAllow, InvalidPolicy};
use crate::rules::ids;
use crate::rules::structural::run_as_user_name_errors;
use crate::rules::users::same_account;

/// One ephemeral container as a container runtime sees it: what the node's gate asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EphemeralRequest<'a> {
    /// The image reference, as the pod spells it.
    pub image: &'a str,
    /// The full argv: `command` then `args`, after the kubelet's `$(VAR)` expansion. Empty when
    /// the image's own entrypoint runs.
    pub argv: &'a [String],
    /// The effective `runAsUserName` (the container's, else the pod's), if any.
    pub run_as_user_name: Option<&'a str>,
}

/// The ephemeral-container constraints of one policy.
#[derive(Debug, Clone, Default)]
pub struct EphemeralRule {
    /// `None`: no ephemeral container is allowed.
    allowed: Option<Allowed>,
}

#[derive(Debug, Clone)]
struct Allowed {
    images: Vec<ImagePattern>,
    commands: Vec<Vec<String>>,
    users: Vec<String>,
}

/// The element of an allowed command that stands for any one argument.
const ANY_ARGUMENT: &str = "*";

impl EphemeralRule {
    /// Compiles `spec.allow.ephemeralContainers`. When it is present, its images and commands
    /// must not be empty: an empty list would allow every image or every command.
    pub fn compile(allow: Option<&EphemeralAllow>) -> Result<Self, InvalidPolicy> {
        let Some(allow) = allow else {
            return Ok(EphemeralRule::default());
        };
        const FIELD: &str = "spec.allow.ephemeralContainers";
        if allow.images.is_empty() {
            return Err(InvalidPolicy::new(
                format!("{FIELD}.images"),
                "must list at least one image pattern",
            ));
        }
        if allow.commands.is_empty() {
            return Err(InvalidPolicy::new(
                format!("{FIELD}.commands"),
                "must list at least one command ([] allows the image's own entrypoint)",
            ));
        }
        let mut images = Vec::with_capacity(allow.images.len());
        for (i, pattern) in allow.images.iter().enumerate() {
            let compiled = if pattern.is_empty() {
                Err("must not be empty".to_owned())
            } else {
                ImagePattern::new(pattern).map_err(|e| e.to_string())
            }
            .map_err(|e| InvalidPolicy::new(format!("{FIELD}.images[{i}]"), e))?;
            images.push(compiled);
        }
        for (i, user) in allow.run_as_user_names.iter().enumerate() {
            if let Some((_, msg)) = run_as_user_name_errors(user).into_iter().next() {
                return Err(InvalidPolicy::new(
                    format!("{FIELD}.runAsUserNames[{i}]"),
                    format!("{user:?}: {msg}"),
                ));
            }
        }
        Ok(EphemeralRule {
            allowed: Some(Allowed {
                images,
                commands: allow.commands.clone(),
                users: allow.run_as_user_names.clone(),
            }),
        })
    }

    /// Whether the policy allows any ephemeral container at all.
    pub fn allows_any(&self) -> bool {
        self.allowed.is_some()
    }

    /// Whether the policy lists the accounts ephemeral containers may run as
    /// (`HG-EPHEMERAL-04`). When it does not, an ephemeral container keeps the pod's account.
    pub fn lists_accounts(&self) -> bool {
        self.allowed.as_ref().is_some_and(|a| !a.users.is_empty())
    }

    /// Appends a finding for every ephemeral container of `pod` the policy does not allow.
    pub fn check(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        for c in pod
            .containers()
            .filter(|c| c.kind == ContainerKind::Ephemeral)
        {
            let argv: Vec<String> = c.command.iter().chain(c.args).cloned().collect();
            let request = EphemeralRequest {
                image: c.image.unwrap_or(""),
                argv: &argv,
                run_as_user_name: pod.effective_run_as_user_name(&c),
            };
            let start = out.len();
            let path = |field: &str| {
                if field.is_empty() {
                    c.path(pod.path)
                } else {
                    c.path_to(pod.path, field)
                }
            };
            self.check_request(&request, &path, out);
            for f in &mut out[start..] {
                f.containers = vec![c.name.to_owned()];
            }
        }
    }

    /// The findings for one ephemeral container as a runtime describes it; `path` turns a field
    /// of the container (`image`, `command`, …; empty for the container itself) into the path
    /// the findings name.
    pub fn check_request(
        &self,
        request: &EphemeralRequest<'_>,
        path: &dyn Fn(&str) -> String,
        out: &mut Vec<Finding>,
    ) {
        let Some(allowed) = &self.allowed else {
            out.push(Finding::new(
                ids::EPHEMERAL_NOT_ALLOWED,
                path(""),
                "ephemeral container refused: on a HostProcess pod it would run on the host with the pod's account, and the policy allows none (spec.allow.ephemeralContainers)".to_owned(),
            ));
            return;
        };
        if !image::allowed(&allowed.images, request.image) {
            let listed: Vec<&str> = allowed.images.iter().map(ImagePattern::as_str).collect();
            out.push(Finding::new(
                ids::EPHEMERAL_IMAGE,
                path("image"),
                format!(
                    "ephemeral container refused: image {:?} matches none of spec.allow.ephemeralContainers.images: {}",
                    request.image,
                    listed.join(", ")
                ),
            ));
        }
        if !allowed
            .commands
            .iter()
            .any(|pattern| command_matches(pattern, request.argv))
        {
            out.push(Finding::new(
                ids::EPHEMERAL_COMMAND,
                path("command"),
                format!(
                    "ephemeral container refused: command {:?} is none of spec.allow.ephemeralContainers.commands",
                    request.argv
                ),
            ));
        }
        if !allowed.users.is_empty() {
            let allowed_user = request
                .run_as_user_name
                .is_some_and(|u| allowed.users.iter().any(|a| same_account(a, u)));
            if !allowed_user {
                out.push(Finding::new(
                    ids::EPHEMERAL_USER,
                    path("securityContext.windowsOptions.runAsUserName"),
                    format!(
                        "ephemeral container refused: account {:?} is none of spec.allow.ephemeralContainers.runAsUserNames: {}",
                        request.run_as_user_name.unwrap_or(""),
                        allowed.users.join(", ")
                    ),
                ));
            }
        }
    }
}

/// Whether `argv` is `pattern`, element by element (`*` is any one argument).
fn command_matches(pattern: &[String], argv: &[String]) -> bool {
    pattern.len() == argv.len()
        && pattern
            .iter()
            .zip(argv)
            .all(|(p, a)| p == ANY_ARGUMENT || p == a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, pod};

    fn rule(yaml: &str) -> EphemeralRule {
        let allow: EphemeralAllow = serde_yaml::from_str(yaml).expect("allow");
        EphemeralRule::compile(Some(&allow)).expect("compiles")
    }

    const DEBUG: &str = "{images: ['mcr.microsoft.com/windows/nanoserver:*'], commands: [[cmd.exe, /c, ipconfig], [powershell.exe, -Command, Get-Process, '*'], []], runAsUserNames: ['NT AUTHORITY\\Local service']}";

    #[test]
    fn refused_unless_allowed() {
        let spec = "{securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a, image: x}], ephemeralContainers: [{name: debugger, image: x, command: [net, user, evil, /add]}]}";
        let got = findings(&pod(spec), |p, out| EphemeralRule::default().check(p, out));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rule, "HG-EPHEMERAL-01");
        assert_eq!(got[0].path, "spec.ephemeralContainers[0]");
        assert_eq!(got[0].containers, ["debugger"]);
        assert!(
            got[0].message.starts_with("ephemeral container refused"),
            "{}",
            got[0].message
        );
        // Regular and init containers are not this rule's business.
        let plain = "{containers: [{name: a, image: x}], initContainers: [{name: i, image: y}]}";
        assert!(findings(&pod(plain), |p, out| EphemeralRule::default().check(p, out)).is_empty());
    }

    #[test]
    fn table() {
        let r = rule(DEBUG);
        let user = "NT AUTHORITY\\Local service";
        let image = "mcr.microsoft.com/windows/nanoserver:ltsc2022";
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // (image, argv, user, expected rule ids)
        type Case<'a> = (&'a str, Vec<String>, Option<&'a str>, &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            (image, argv(&["cmd.exe", "/c", "ipconfig"]), Some(user), &[]),
            (image, argv(&[]), Some("nt authority\\local service"), &[]),
            (
                image,
                argv(&["powershell.exe", "-Command", "Get-Process", "svchost"]),
                Some(user),
                &[],
            ),
            (
                image,
                argv(&["cmd.exe", "/c", "net", "user", "evil", "/add"]),
                Some(user),
                &["HG-EPHEMERAL-03"],
            ),
            (
                image,
                argv(&["powershell.exe", "-Command", "Get-Process"]),
                Some(user),
                &["HG-EPHEMERAL-03"],
            ),
            (
                "evil.example/shell:v1",
                argv(&["cmd.exe", "/c", "ipconfig"]),
                Some(user),
                &["HG-EPHEMERAL-02"],
            ),
            (
                image,
                argv(&["cmd.exe", "/c", "ipconfig"]),
                Some("NT AUTHORITY\\SYSTEM"),
                &["HG-EPHEMERAL-04"],
            ),
            (
                image,
                argv(&["cmd.exe", "/c", "ipconfig"]),
                None,
                &["HG-EPHEMERAL-04"],
            ),
        ];
        for (image, argv, user, want) in cases {
            let mut out = Vec::new();
            let request = EphemeralRequest {
                image,
                argv,
                run_as_user_name: *user,
            };
            r.check_request(&request, &|f| format!("ephemeralContainer.{f}"), &mut out);
            let ids: Vec<&str> = out.iter().map(|f| f.rule).collect();
            assert_eq!(&ids, want, "{image} {argv:?} {user:?}");
        }
    }

    #[test]
    fn pods_are_checked_with_their_effective_user_and_full_argv() {
        let r = rule(DEBUG);
        let spec = "{securityContext: {windowsOptions: {hostProcess: true, runAsUserName: 'NT AUTHORITY\\Local service'}}, containers: [{name: a, image: x}], ephemeralContainers: [{name: ok, image: 'mcr.microsoft.com/windows/nanoserver:ltsc2022', command: [cmd.exe], args: [/c, ipconfig]}, {name: shell, image: 'mcr.microsoft.com/windows/nanoserver:ltsc2022', command: [cmd.exe]}]}";
        let got = findings(&pod(spec), |p, out| r.check(p, out));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].rule, got[0].path.as_str()),
            ("HG-EPHEMERAL-03", "spec.ephemeralContainers[1].command")
        );
        assert_eq!(got[0].containers, ["shell"]);
    }

    #[test]
    fn empty_lists_and_bad_entries_are_refused_with_their_field() {
        for (yaml, path) in [
            (
                "{images: [], commands: [[a]]}",
                "spec.allow.ephemeralContainers.images",
            ),
            (
                "{images: [x], commands: []}",
                "spec.allow.ephemeralContainers.commands",
            ),
            (
                "{images: [''], commands: [[a]]}",
                "spec.allow.ephemeralContainers.images[0]",
            ),
            (
                "{images: [x], commands: [[a]], runAsUserNames: ['a\\b\\c']}",
                "spec.allow.ephemeralContainers.runAsUserNames[0]",
            ),
        ] {
            let allow: EphemeralAllow = serde_yaml::from_str(yaml).expect("allow");
            let err = EphemeralRule::compile(Some(&allow)).expect_err(yaml);
            assert_eq!(err.path, path, "{yaml}");
        }
    }
}
