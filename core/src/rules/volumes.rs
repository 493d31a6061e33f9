//! `HG-VOLUME-01` and `HG-VOLUME-02`: what a HostProcess pod may mount.
//!
//! A HostProcess container sees the whole host file system anyway, but volumes are how a pod
//! gets the kubelet to place secrets, tokens and host directories at fixed paths in it, and a
//! hostPath volume is how a manifest says which host files the workload means to touch. A policy
//! lists the volume types it allows (`spec.allow.volumes.types`, by default the kubelet-managed
//! ones that carry no host state: configMap, secret, projected, downwardAPI, emptyDir) and the
//! host directories under which hostPath volumes may point (`hostPathPrefixes`, compared as
//! Windows paths by [`WinPath`]).

use k8s_openapi::api::core::v1::Volume;

use crate::decision::Finding;
use crate::pod::PodView;
use crate::policy::winpath::WinPath;
use crate::policy::{InvalidPolicy, VolumeAllow};
use crate::rules::ids;

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

/// The volume constraints of one policy.
#[derive(Debug, Clone, Default)]
pub struct VolumeRule {
    types: Vec<String>,
    host_path_prefixes: Vec<(String, WinPath)>,
}

impl VolumeRule {
    /// Compiles `spec.allow.volumes`.
    pub fn compile(volumes: &VolumeAllow) -> Result<Self, InvalidPolicy> {
        let types = match &volumes.types {
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
        let mut host_path_prefixes = Vec::with_capacity(volumes.host_path_prefixes.len());
        for (i, prefix) in volumes.host_path_prefixes.iter().enumerate() {
            let parsed = WinPath::parse(prefix).map_err(|e| {
                InvalidPolicy::new(
                    format!("spec.allow.volumes.hostPathPrefixes[{i}]"),
                    format!("{prefix:?} {e}"),
                )
            })?;
            host_path_prefixes.push((prefix.clone(), parsed));
        }
        Ok(VolumeRule {
            types,
            host_path_prefixes,
        })
    }

    /// Whether a hostPath volume pointing at `path` is allowed.
    pub fn allows_host_path(&self, path: &str) -> bool {
        WinPath::parse(path).is_ok_and(|p| {
            self.host_path_prefixes
                .iter()
                .any(|(_, prefix)| p.starts_with(prefix))
        })
    }

    /// Appends a finding for every volume of a type or at a host path that is not allowed.
    pub fn check(&self, pod: &PodView<'_>, out: &mut Vec<Finding>) {
        for (i, v) in pod.spec.volumes.iter().flatten().enumerate() {
            let kind = volume_type(v);
            if kind == "hostPath" {
                let path = v.host_path.as_ref().map_or("", |h| h.path.as_str());
                if !self.allows_host_path(path) {
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
            } else if !self.types.iter().any(|t| t == kind) {
                out.push(
                    Finding::new(
                        ids::VOLUME_TYPE,
                        format!("{}[{i}]", pod.path.field("volumes")),
                        format!(
                            "volume {:?} of type {kind} is not allowed; allowed types: {}",
                            v.name,
                            self.types.join(", ")
                        ),
                    )
                    .with_containers(mounting(pod, &v.name)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, pod};

    fn rule(types: Option<&[&str]>, prefixes: &[&str]) -> VolumeRule {
        VolumeRule::compile(&VolumeAllow {
            types: types.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
            host_path_prefixes: prefixes.iter().map(|s| (*s).to_owned()).collect(),
        })
        .expect("compiles")
    }

    #[test]
    fn table() {
        // (allowed types, prefixes, volume, expected (rule id, path))
        type Case<'a> = (
            Option<&'a [&'a str]>,
            &'a [&'a str],
            &'a str,
            Option<(&'a str, &'a str)>,
        );
        let cases: &[Case<'_>] = &[
            (None, &[], "{name: v, configMap: {name: c}}", None),
            (None, &[], "{name: v}", None),
            (
                None,
                &[],
                "{name: v, csi: {driver: d}}",
                Some(("HG-VOLUME-01", "spec.volumes[0]")),
            ),
            (Some(&["csi"]), &[], "{name: v, csi: {driver: d}}", None),
            (
                Some(&["csi"]),
                &[],
                "{name: v, secret: {secretName: s}}",
                Some(("HG-VOLUME-01", "spec.volumes[0]")),
            ),
            (
                None,
                &[],
                r"{name: v, hostPath: {path: 'C:\var'}}",
                Some(("HG-VOLUME-02", "spec.volumes[0].hostPath.path")),
            ),
            (
                None,
                &[r"C:\var\lib\kubelet"],
                r"{name: v, hostPath: {path: 'c:/var/lib/kubelet/pods'}}",
                None,
            ),
            (
                None,
                &[r"C:\var\lib\kubelet"],
                r"{name: v, hostPath: {path: 'C:\var\lib\kubelet2'}}",
                Some(("HG-VOLUME-02", "spec.volumes[0].hostPath.path")),
            ),
            (
                None,
                &[r"C:\var\lib\kubelet"],
                r"{name: v, hostPath: {path: 'C:\var\lib\kubelet\..\..\Windows'}}",
                Some(("HG-VOLUME-02", "spec.volumes[0].hostPath.path")),
            ),
            (
                None,
                &[r"C:\var"],
                "{name: v, hostPath: {path: ''}}",
                Some(("HG-VOLUME-02", "spec.volumes[0].hostPath.path")),
            ),
        ];
        for (types, prefixes, volume, want) in cases {
            let spec = format!(
                "{{containers: [{{name: a, volumeMounts: [{{name: v, mountPath: 'C:\\m'}}]}}, {{name: b}}], volumes: [{volume}]}}"
            );
            let got = findings(&pod(&spec), |p, out| rule(*types, prefixes).check(p, out));
            let got: Vec<(&str, &str)> = got.iter().map(|f| (f.rule, f.path.as_str())).collect();
            assert_eq!(got, want.iter().copied().collect::<Vec<_>>(), "{volume}");
            if want.is_some() {
                let f = findings(&pod(&spec), |p, out| rule(*types, prefixes).check(p, out));
                assert_eq!(
                    f[0].containers,
                    ["a"],
                    "only the mounting container is named"
                );
            }
        }
    }

    #[test]
    fn policies_cannot_allow_host_path_by_type_or_unknown_types() {
        for (types, path) in [
            (vec!["hostPath".to_owned()], "spec.allow.volumes.types[0]"),
            (
                vec!["secret".to_owned(), "nope".to_owned()],
                "spec.allow.volumes.types[1]",
            ),
        ] {
            let err = VolumeRule::compile(&VolumeAllow {
                types: Some(types),
                ..Default::default()
            })
            .expect_err("refused");
            assert_eq!(err.path, path);
        }
        let err = VolumeRule::compile(&VolumeAllow {
            host_path_prefixes: vec!["relative\\dir".into()],
            ..Default::default()
        })
        .expect_err("refused");
        assert_eq!(err.path, "spec.allow.volumes.hostPathPrefixes[0]");
    }

    #[test]
    fn every_volume_type_is_named_once() {
        let mut names = VOLUME_TYPES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VOLUME_TYPES.len());
        for t in DEFAULT_VOLUME_TYPES {
            assert!(VOLUME_TYPES.contains(&t));
        }
    }
}
