//! `HG-IMAGE-01` and `HG-IMAGE-02`: which images a policy lets run as host processes.
//!
//! A HostProcess container runs its image's binaries directly on the host, so the image is the
//! code that runs with the pod's host account. `spec.allow.images` lists glob patterns
//! ([`ImagePattern`]); `spec.require.imageDigest` additionally demands a `@sha256:` digest, so
//! that a tag moved in the registry cannot change what runs.

use crate::decision::Finding;
use crate::pod::PodView;
use crate::policy::image::{self, ImagePattern};
use crate::policy::{AllowSpec, InvalidPolicy, RequireSpec};
use crate::rules::ids;

/// The image constraints of one policy.
#[derive(Debug, Clone, Default)]
pub struct ImageRule {
    patterns: Vec<ImagePattern>,
    require_digest: bool,
}

impl ImageRule {
    /// Compiles `spec.allow.images` and `spec.require.imageDigest`.
    pub fn compile(allow: &AllowSpec, require: &RequireSpec) -> Result<Self, InvalidPolicy> {
        let mut patterns = Vec::with_capacity(allow.images.len());
        for (i, pattern) in allow.images.iter().enumerate() {
            let compiled = if pattern.is_empty() {
                Err("must not be empty".to_owned())
            } else {
                ImagePattern::new(pattern).map_err(|e| e.to_string())
            }
            .map_err(|e| InvalidPolicy::new(format!("spec.allow.images[{i}]"), e))?;
            patterns.push(compiled);
        }
        Ok(ImageRule {
            patterns,
            require_digest: require.image_digest,
        })
    }

    /// Appends a finding for every container whose image is not allowed or not pinned.
    pub fn check(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        if self.patterns.is_empty() && !self.require_digest {
            return;
        }
        for c in pod.containers() {
            let image = c.image.unwrap_or("");
            if !self.patterns.is_empty() && !image::allowed(&self.patterns, image) {
                let allowed: Vec<&str> = self.patterns.iter().map(ImagePattern::as_str).collect();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, pod};

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn rule(images: &[&str], digest: bool) -> ImageRule {
        let allow = AllowSpec {
            images: images.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        let require = RequireSpec {
            image_digest: digest,
            ..Default::default()
        };
        ImageRule::compile(&allow, &require).expect("compiles")
    }

    #[test]
    fn table() {
        let pinned = format!("reg.example/agent@{DIGEST}");
        // (patterns, require digest, image, expected rule ids)
        let cases: &[(&[&str], bool, &str, &[&str])] = &[
            (&[], false, "anything:latest", &[]),
            (&["reg.example/agent:*"], false, "reg.example/agent:v1", &[]),
            (
                &["reg.example/agent:*"],
                false,
                "reg.example/other:v1",
                &["HG-IMAGE-01"],
            ),
            (&["reg.example/agent@sha256:*"], false, &pinned, &[]),
            (
                &["reg.example/agent@sha256:*"],
                false,
                "reg.example/agent:v1",
                &["HG-IMAGE-01"],
            ),
            (&[], true, "reg.example/agent:v1", &["HG-IMAGE-02"]),
            (&[], true, &pinned, &[]),
            (
                &["reg.example/*"],
                true,
                "evil.example/x:v1",
                &["HG-IMAGE-01", "HG-IMAGE-02"],
            ),
            (&["reg.example/*"], false, "", &["HG-IMAGE-01"]),
        ];
        for (patterns, digest, image, want) in cases {
            let spec = format!("{{containers: [{{name: a, image: {image:?}}}]}}");
            let got = findings(&pod(&spec), |p, out| rule(patterns, *digest).check(p, out));
            let ids: Vec<&str> = got.iter().map(|f| f.rule).collect();
            assert_eq!(
                &ids, want,
                "patterns {patterns:?}, digest {digest}, image {image:?}"
            );
            for f in &got {
                assert_eq!(f.path, "spec.containers[0].image");
                assert_eq!(f.containers, ["a"]);
            }
        }
    }

    #[test]
    fn every_container_list_is_checked() {
        let spec = "{initContainers: [{name: i, image: bad}], containers: [{name: a, image: good}], ephemeralContainers: [{name: e, image: bad}]}";
        let got = findings(&pod(spec), |p, out| rule(&["good"], false).check(p, out));
        let paths: Vec<&str> = got.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.initContainers[0].image",
                "spec.ephemeralContainers[0].image"
            ]
        );
    }

    #[test]
    fn bad_patterns_name_their_index() {
        let allow = AllowSpec {
            images: vec!["ok".into(), String::new()],
            ..Default::default()
        };
        let err = ImageRule::compile(&allow, &RequireSpec::default()).expect_err("refused");
        assert_eq!(err.path, "spec.allow.images[1]");
    }
}
