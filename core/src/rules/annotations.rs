//! `HG-ANNOT-01`: the privileged `microsoft.com/hostprocess-*` pod annotations.
//!
//! Two pod annotations change what a HostProcess container gets on the node without appearing
//! in its spec: `microsoft.com/hostprocess-inherit-user` runs it with the runtime's own token
//! (usually `SYSTEM`) whatever `runAsUserName` says, and
//! `microsoft.com/hostprocess-rootfs-location` moves its root file system (hcsshim's `HP-JOB-06`
//! and `HP-JOB-11` in `docs/rules.md`). A policy must list each one it allows in
//! `spec.allow.annotations`.

use crate::decision::Finding;
use crate::pod::PodView;
use crate::policy::{AllowSpec, PrivilegedAnnotation};
use crate::rules::ids;

/// The annotation constraints of one policy.
#[derive(Debug, Clone, Default)]
pub struct AnnotationRule {
    allowed: Vec<PrivilegedAnnotation>,
}

impl AnnotationRule {
    /// Takes `spec.allow.annotations` (the schema admits only the known keys).
    pub fn compile(allow: &AllowSpec) -> Self {
        AnnotationRule {
            allowed: allow.annotations.clone(),
        }
    }

    /// Appends a finding for every privileged annotation the policy does not allow.
    pub fn check(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        for (key, _) in pod.privileged_annotations() {
            if !self.allowed.iter().any(|a| a.key() == key) {
                out.push(Finding::new(
                    ids::ANNOTATION,
                    format!("{}.annotations[{key}]", pod.path.metadata()),
                    format!("annotation {key} is not allowed (spec.allow.annotations)"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{ANNOTATION_INHERIT_USER, ANNOTATION_ROOTFS_LOCATION};
    use crate::rules::testing::{findings, pod_with_annotations};

    #[test]
    fn table() {
        use PrivilegedAnnotation::{InheritUser, RootfsLocation};
        // (allowed, annotations on the pod, expected finding paths)
        type Case<'a> = (
            &'a [PrivilegedAnnotation],
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
        );
        let cases: &[Case<'_>] = &[
            (&[], &[], &[]),
            (&[], &[("example.com/other", "x")], &[]),
            (
                &[],
                &[(ANNOTATION_INHERIT_USER, "true")],
                &["metadata.annotations[microsoft.com/hostprocess-inherit-user]"],
            ),
            // Any value counts: the key alone is the request.
            (
                &[],
                &[(ANNOTATION_INHERIT_USER, "false")],
                &["metadata.annotations[microsoft.com/hostprocess-inherit-user]"],
            ),
            (&[InheritUser], &[(ANNOTATION_INHERIT_USER, "true")], &[]),
            (
                &[InheritUser],
                &[
                    (ANNOTATION_INHERIT_USER, "true"),
                    (ANNOTATION_ROOTFS_LOCATION, "C:\\r"),
                ],
                &["metadata.annotations[microsoft.com/hostprocess-rootfs-location]"],
            ),
            (
                &[InheritUser, RootfsLocation],
                &[
                    (ANNOTATION_INHERIT_USER, "true"),
                    (ANNOTATION_ROOTFS_LOCATION, "C:\\r"),
                ],
                &[],
            ),
        ];
        for (allowed, annotations, want) in cases {
            let rule = AnnotationRule::compile(&AllowSpec {
                annotations: allowed.to_vec(),
                ..Default::default()
            });
            let p = pod_with_annotations("{containers: [{name: a}]}", annotations);
            let got = findings(&p, |v, out| rule.check(v, out));
            let paths: Vec<&str> = got.iter().map(|f| f.path.as_str()).collect();
            assert_eq!(
                &paths, want,
                "allowed {allowed:?}, annotations {annotations:?}"
            );
            assert!(got.iter().all(|f| f.rule == "HG-ANNOT-01"));
        }
    }
}
