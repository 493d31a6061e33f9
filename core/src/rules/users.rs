//! `HG-USER-01`, `HG-USER-02` and `HG-USER-03`: the host account a HostProcess container runs as.
//!
//! On the node, `windowsOptions.runAsUserName` is the account whose token the container's
//! processes get (hcsshim's job containers, `HP-JOB-06` in `docs/rules.md`). Three things go
//! wrong in practice, one rule each:
//!
//! * no user at all (`HG-USER-01`): the image's default user would be asked for, which a job
//!   container cannot log on as;
//! * a user the policy does not list (`HG-USER-02`); accounts compare case-insensitively, as
//!   Windows compares them;
//! * `NT AUTHORITY` spelled in another case (`HG-USER-03`): hcsshim picks a service logon only
//!   for the exact spelling, and the interactive logon it tries instead fails.
//!
//! A pod that carries `microsoft.com/hostprocess-inherit-user: "true"`, where the policy allows
//! that annotation, runs with the runtime's own token whatever it names: the user checks do not
//! apply (the annotation is checked by [`super::annotations`]).

use crate::decision::Finding;
use crate::pod::{ANNOTATION_INHERIT_USER, PodView};
use crate::policy::{AllowSpec, InvalidPolicy, PrivilegedAnnotation};
use crate::rules::ids;
use crate::rules::structural::run_as_user_name_errors;

/// The least privileged account a HostProcess container can run as.
pub const LEAST_PRIVILEGE_USER: &str = "NT AUTHORITY\\Local service";

/// The built-in domain of the service accounts, as hcsshim expects it spelled.
pub const NT_AUTHORITY: &str = "NT AUTHORITY";

/// Windows account names compare case-insensitively, domain and user alike.
pub fn same_account(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.chars()
            .zip(b.chars())
            .all(|(x, y)| x == y || x.to_lowercase().eq(y.to_lowercase()))
}

/// The account constraints of one policy.
#[derive(Debug, Clone, Default)]
pub struct UserRule {
    users: Vec<String>,
    inherit_user_allowed: bool,
}

impl UserRule {
    /// Compiles `spec.allow.runAsUserNames`: each must be a name the apiserver accepts.
    pub fn compile(allow: &AllowSpec) -> Result<Self, InvalidPolicy> {
        for (i, user) in allow.run_as_user_names.iter().enumerate() {
            if let Some((_, msg)) = run_as_user_name_errors(user).into_iter().next() {
                return Err(InvalidPolicy::new(
                    format!("spec.allow.runAsUserNames[{i}]"),
                    format!("{user:?}: {msg}"),
                ));
            }
        }
        Ok(UserRule {
            users: allow.run_as_user_names.clone(),
            inherit_user_allowed: allow
                .annotations
                .contains(&PrivilegedAnnotation::InheritUser),
        })
    }

    /// Whether `user` is one of the allowed accounts (any account when none are listed).
    pub fn allows(&self, user: &str) -> bool {
        self.users.is_empty() || self.users.iter().any(|u| same_account(u, user))
    }

    /// Appends findings for the pod-level user and every container's own user.
    pub fn check(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        let inherits_runtime_user = self.inherit_user_allowed
            && pod
                .annotations()
                .and_then(|a| a.get(ANNOTATION_INHERIT_USER))
                .is_some_and(|v| v == "true");
        if inherits_runtime_user {
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
        if !self.allows(user) {
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
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, pod, pod_with_annotations};

    fn rule(users: &[&str], inherit_allowed: bool) -> UserRule {
        let allow = AllowSpec {
            run_as_user_names: users.iter().map(|s| (*s).to_owned()).collect(),
            annotations: if inherit_allowed {
                vec![PrivilegedAnnotation::InheritUser]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        UserRule::compile(&allow).expect("compiles")
    }

    const SERVICE: &str = "NT AUTHORITY\\Local service";

    #[test]
    fn table() {
        // (allowed users, pod spec, expected (rule id, path, containers))
        type Expected<'a> = (&'a str, &'a str, &'a [&'a str]);
        let cases: &[(&[&str], &str, &[Expected<'_>])] = &[
            (
                &[SERVICE],
                r"{securityContext: {windowsOptions: {runAsUserName: 'NT AUTHORITY\Local service'}}, containers: [{name: a}]}",
                &[],
            ),
            // Accounts compare case-insensitively, but the domain's spelling is its own rule.
            (
                &[SERVICE],
                r"{containers: [{name: a, securityContext: {windowsOptions: {runAsUserName: 'NT AUTHORITY\LOCAL SERVICE'}}}]}",
                &[],
            ),
            (
                &[SERVICE],
                r"{containers: [{name: a, securityContext: {windowsOptions: {runAsUserName: 'nt authority\Local service'}}}]}",
                &[(
                    "HG-USER-03",
                    "spec.containers[0].securityContext.windowsOptions.runAsUserName",
                    &["a"],
                )],
            ),
            (
                &[SERVICE],
                r"{containers: [{name: a, securityContext: {windowsOptions: {runAsUserName: 'NT AUTHORITY\SYSTEM'}}}]}",
                &[(
                    "HG-USER-02",
                    "spec.containers[0].securityContext.windowsOptions.runAsUserName",
                    &["a"],
                )],
            ),
            (
                &[SERVICE],
                r"{securityContext: {windowsOptions: {runAsUserName: 'NT AUTHORITY\SYSTEM'}}, containers: [{name: a}, {name: b, securityContext: {windowsOptions: {runAsUserName: 'NT AUTHORITY\Local service'}}}]}",
                &[(
                    "HG-USER-02",
                    "spec.securityContext.windowsOptions.runAsUserName",
                    &["a"],
                )],
            ),
            (
                &[SERVICE],
                "{containers: [{name: a}, {name: b}]}",
                &[(
                    "HG-USER-01",
                    "spec.securityContext.windowsOptions.runAsUserName",
                    &["a", "b"],
                )],
            ),
            // No list: any account, but a missing one is not reported either.
            (&[], "{containers: [{name: a}]}", &[]),
            (
                &[],
                r"{containers: [{name: a, securityContext: {windowsOptions: {runAsUserName: 'Nt Authority\SYSTEM'}}}]}",
                &[(
                    "HG-USER-03",
                    "spec.containers[0].securityContext.windowsOptions.runAsUserName",
                    &["a"],
                )],
            ),
        ];
        for (users, spec, want) in cases {
            let got = findings(&pod(spec), |p, out| rule(users, false).check(p, out));
            let got: Vec<(&str, &str, Vec<&str>)> = got
                .iter()
                .map(|f| {
                    let cs = f.containers.iter().map(String::as_str).collect();
                    (f.rule, f.path.as_str(), cs)
                })
                .collect();
            let want: Vec<(&str, &str, Vec<&str>)> =
                want.iter().map(|(r, p, c)| (*r, *p, c.to_vec())).collect();
            assert_eq!(got, want, "users {users:?}, spec {spec}");
        }
    }

    #[test]
    fn inherited_runtime_user_skips_the_checks_only_where_allowed() {
        let spec = "{containers: [{name: a}]}";
        let annotations = [(ANNOTATION_INHERIT_USER, "true")];
        let p = pod_with_annotations(spec, &annotations);
        assert!(findings(&p, |v, out| rule(&[SERVICE], true).check(v, out)).is_empty());
        let got = findings(&p, |v, out| rule(&[SERVICE], false).check(v, out));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rule, "HG-USER-01");
    }

    #[test]
    fn names_the_apiserver_refuses_are_not_allowed_in_policies() {
        let allow = AllowSpec {
            run_as_user_names: vec![SERVICE.into(), "a\\b\\c".into()],
            ..Default::default()
        };
        let err = UserRule::compile(&allow).expect_err("refused");
        assert_eq!(err.path, "spec.allow.runAsUserNames[1]");
    }

    #[test]
    fn same_account_ignores_case_only() {
        assert!(same_account("NT AUTHORITY\\SYSTEM", "nt authority\\system"));
        assert!(!same_account(
            "NT AUTHORITY\\SYSTEM",
            "NT AUTHORITY\\SYSTEM "
        ));
        assert!(same_account("Ünï", "ünÏ"));
    }
}
