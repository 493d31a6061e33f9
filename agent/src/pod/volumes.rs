//! Pod volumes on this host: hostPath as is, emptyDir as a per-pod directory, ConfigMap and
//! Secret written out as files (from the manifest or `--config-dir`). The per-pod directory is
//! removed when the pod ends; hostPaths are never touched beyond what their `type` asks.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, PodSpec, Volume};

use super::manifest::{ConfigDirError, ConfigKind, ConfigSource};

/// Default file mode of ConfigMap and Secret volumes (`defaultMode`).
pub const DEFAULT_MODE: u32 = 0o644;

/// Why a volume cannot be provided.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The pod asks for something the agent does not provide.
    #[error("volume {volume:?}: {message}")]
    Invalid {
        /// The volume.
        volume: String,
        /// What is wrong.
        message: String,
    },
    /// The config directory could not be read.
    #[error("volume {volume:?}")]
    ConfigDir {
        /// The volume.
        volume: String,
        /// Why.
        #[source]
        source: ConfigDirError,
    },
    /// Writing the volume failed.
    #[error("volume {volume:?}: cannot write {}", path.display())]
    Io {
        /// The volume.
        volume: String,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl VolumeError {
    /// Whether the pod (or its inputs) is at fault rather than the host.
    pub fn is_input(&self) -> bool {
        !matches!(self, VolumeError::Io { .. })
    }
}

/// The kind of a planned volume.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeKind {
    /// A host path, with its `type`.
    HostPath {
        /// `hostPath.type` (empty = no check).
        type_: String,
    },
    /// A per-pod directory.
    EmptyDir,
    /// A ConfigMap or Secret written out.
    Config {
        /// Which.
        kind: ConfigKind,
        /// Its name.
        name: String,
        /// `items`, if any.
        items: Option<Vec<KeyToPath>>,
        /// `defaultMode`.
        default_mode: u32,
        /// `optional`.
        optional: bool,
    },
}

/// One volume: where it is on this host.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedVolume {
    /// The volume's name.
    pub name: String,
    /// The host path containers see.
    pub path: PathBuf,
    /// What it is.
    pub kind: VolumeKind,
}

impl PlannedVolume {
    /// ConfigMap and Secret volumes are always mounted read-only (the kubelet's rule).
    pub fn always_read_only(&self) -> bool {
        matches!(self.kind, VolumeKind::Config { .. })
    }

    /// The mount source as the approval names it: the hostPath as written for hostPath
    /// volumes, the directory otherwise.
    pub fn runtime_source(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

/// Every volume of a pod, planned under the pod directory (`<pod_dir>/volumes/<name>`).
#[derive(Debug)]
pub struct PodVolumes {
    pod_dir: PathBuf,
    volumes: BTreeMap<String, PlannedVolume>,
    created: bool,
}

fn invalid(volume: &str, message: impl Into<String>) -> VolumeError {
    VolumeError::Invalid {
        volume: volume.to_owned(),
        message: message.into(),
    }
}

/// A relative path of plain components (ConfigMap item paths, subPaths).
pub fn plain_relative(path: &str) -> Option<PathBuf> {
    if path.is_empty() {
        return None;
    }
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn mode_of(mode: Option<i32>, volume: &str) -> Result<u32, VolumeError> {
    match mode {
        None => Ok(DEFAULT_MODE),
        Some(m) if (0..=0o777).contains(&m) => Ok(m.unsigned_abs()),
        Some(m) => Err(invalid(
            volume,
            format!("mode {m:#o} is not within 0..0777"),
        )),
    }
}

impl PodVolumes {
    /// Plans the volumes of `spec` (no I/O). Supported: hostPath (absolute paths of this host),
    /// emptyDir, configMap, secret; anything else is refused.
    pub fn plan(pod_dir: &Path, spec: &PodSpec) -> Result<Self, VolumeError> {
        let mut volumes = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            let planned = plan_volume(pod_dir, v)?;
            if volumes.insert(v.name.clone(), planned).is_some() {
                return Err(invalid(&v.name, "defined twice"));
            }
        }
        Ok(Self {
            pod_dir: pod_dir.to_owned(),
            volumes,
            created: false,
        })
    }

    /// A volume by name.
    pub fn get(&self, name: &str) -> Option<&PlannedVolume> {
        self.volumes.get(name)
    }

    /// The per-pod directory.
    pub fn pod_dir(&self) -> &Path {
        &self.pod_dir
    }

    /// Creates the pod directory and every volume in it; applies hostPath `type`s.
    pub fn create(&mut self, config: &ConfigSource) -> Result<(), VolumeError> {
        let io = |volume: &str, path: &Path| {
            let volume = volume.to_owned();
            let path = path.to_owned();
            move |source| VolumeError::Io {
                volume,
                path,
                source,
            }
        };
        std::fs::create_dir_all(&self.pod_dir).map_err(io("", &self.pod_dir))?;
        self.created = true;
        for v in self.volumes.values() {
            match &v.kind {
                VolumeKind::HostPath { type_ } => check_host_path(&v.name, &v.path, type_)?,
                VolumeKind::EmptyDir => {
                    std::fs::create_dir_all(&v.path).map_err(io(&v.name, &v.path))?;
                }
                VolumeKind::Config {
                    kind,
                    name,
                    items,
                    default_mode,
                    optional,
                } => {
                    std::fs::create_dir_all(&v.path).map_err(io(&v.name, &v.path))?;
                    let data =
                        config
                            .get(*kind, name)
                            .map_err(|source| VolumeError::ConfigDir {
                                volume: v.name.clone(),
                                source,
                            })?;
                    let Some(data) = data else {
                        if *optional {
                            continue;
                        }
                        return Err(invalid(
                            &v.name,
                            format!(
                                "{} {name:?} is neither in the manifest nor in the config directory",
                                kind.as_str()
                            ),
                        ));
                    };
                    let files: Vec<(PathBuf, &[u8], u32)> = match items {
                        None => data
                            .iter()
                            .map(|(k, bytes)| {
                                plain_relative(k)
                                    .filter(|p| p.components().count() == 1)
                                    .map(|p| (p, bytes.as_slice(), *default_mode))
                                    .ok_or_else(|| {
                                        invalid(&v.name, format!("key {k:?} is not a file name"))
                                    })
                            })
                            .collect::<Result<_, _>>()?,
                        Some(items) => {
                            let mut files = Vec::new();
                            for item in items {
                                let Some(bytes) = data.get(&item.key) else {
                                    if *optional {
                                        continue;
                                    }
                                    return Err(invalid(
                                        &v.name,
                                        format!(
                                            "{} {name:?} has no key {:?}",
                                            kind.as_str(),
                                            item.key
                                        ),
                                    ));
                                };
                                let path = plain_relative(&item.path).ok_or_else(|| {
                                    invalid(
                                        &v.name,
                                        format!(
                                            "item path {:?} must be relative, without '..'",
                                            item.path
                                        ),
                                    )
                                })?;
                                let mode = match item.mode {
                                    Some(_) => mode_of(item.mode, &v.name)?,
                                    None => *default_mode,
                                };
                                files.push((path, bytes.as_slice(), mode));
                            }
                            files
                        }
                    };
                    for (rel, bytes, mode) in files {
                        let file = v.path.join(rel);
                        if let Some(parent) = file.parent() {
                            std::fs::create_dir_all(parent).map_err(io(&v.name, parent))?;
                        }
                        std::fs::write(&file, bytes).map_err(io(&v.name, &file))?;
                        set_mode(&file, mode).map_err(io(&v.name, &file))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the pod directory (emptyDir data, written ConfigMaps and Secrets).
    pub fn remove(&mut self) -> io::Result<()> {
        if !self.created {
            return Ok(());
        }
        match std::fs::remove_dir_all(&self.pod_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.created = false;
        Ok(())
    }
}

impl Drop for PodVolumes {
    fn drop(&mut self) {
        if let Err(err) = self.remove() {
            tracing::warn!(dir = %self.pod_dir.display(), error = %err, "cannot remove the pod directory");
        }
    }
}

fn plan_volume(pod_dir: &Path, v: &Volume) -> Result<PlannedVolume, VolumeError> {
    let name = &v.name;
    if plain_relative(name).is_none_or(|p| p.components().count() != 1) || name.starts_with('.') {
        return Err(invalid(name, "the name must be a plain file name"));
    }
    let dir = pod_dir.join("volumes").join(name);
    let kind = if let Some(h) = &v.host_path {
        let path = Path::new(&h.path);
        if !path.is_absolute() {
            return Err(invalid(
                name,
                format!("hostPath {:?} is not an absolute path of this host", h.path),
            ));
        }
        return Ok(PlannedVolume {
            name: name.clone(),
            path: path.to_owned(),
            kind: VolumeKind::HostPath {
                type_: h.type_.clone().unwrap_or_default(),
            },
        });
    } else if let Some(e) = &v.empty_dir {
        if e.medium.as_deref().is_some_and(|m| !m.is_empty()) {
            tracing::info!(volume = %name, "emptyDir medium is ignored: a plain directory is used");
        }
        VolumeKind::EmptyDir
    } else if let Some(cm) = &v.config_map {
        VolumeKind::Config {
            kind: ConfigKind::ConfigMap,
            name: cm.name.clone(),
            items: cm.items.clone(),
            default_mode: mode_of(cm.default_mode, name)?,
            optional: cm.optional.unwrap_or(false),
        }
    } else if let Some(s) = &v.secret {
        VolumeKind::Config {
            kind: ConfigKind::Secret,
            name: s
                .secret_name
                .clone()
                .ok_or_else(|| invalid(name, "secret.secretName: Required value"))?,
            items: s.items.clone(),
            default_mode: mode_of(s.default_mode, name)?,
            optional: s.optional.unwrap_or(false),
        }
    } else {
        return Err(invalid(
            name,
            format!(
                "{} volumes are not supported by the node agent (hostPath, emptyDir, configMap and secret are)",
                hostgate_core::policy::volume_type(v)
            ),
        ));
    };
    Ok(PlannedVolume {
        name: name.clone(),
        path: dir,
        kind,
    })
}

/// The kubelet's hostPath `type` checks (`DirectoryOrCreate` and `FileOrCreate` create).
fn check_host_path(volume: &str, path: &Path, type_: &str) -> Result<(), VolumeError> {
    let io = |source| VolumeError::Io {
        volume: volume.to_owned(),
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path);
    let is = |pred: &dyn Fn(&std::fs::Metadata) -> bool| meta.as_ref().is_ok_and(pred);
    let fail = |what: &str| {
        Err(invalid(
            volume,
            format!(
                "hostPath type check failed: {} is not {what}",
                path.display()
            ),
        ))
    };
    match type_ {
        "" => {
            if meta.is_err() {
                tracing::warn!(volume, path = %path.display(), "hostPath does not exist");
            }
            Ok(())
        }
        "DirectoryOrCreate" => {
            if !is(&|m| m.is_dir()) {
                create_dir_all_mode(path, 0o755).map_err(io)?;
            }
            Ok(())
        }
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io)?;
                set_mode(path, 0o644).map_err(io)?;
            }
            Ok(())
        }
        "Directory" if is(&|m| m.is_dir()) => Ok(()),
        "Directory" => fail("a directory"),
        "File" if is(&|m| m.is_file()) => Ok(()),
        "File" => fail("a file"),
        "Socket" | "CharDevice" | "BlockDevice" => {
            if special_file_matches(meta.ok().as_ref(), type_) {
                Ok(())
            } else {
                fail(type_)
            }
        }
        other => Err(invalid(
            volume,
            format!("hostPath type {other:?} is not supported"),
        )),
    }
}

#[cfg(unix)]
fn special_file_matches(meta: Option<&std::fs::Metadata>, type_: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.is_some_and(|m| {
        let t = m.file_type();
        match type_ {
            "Socket" => t.is_socket(),
            "CharDevice" => t.is_char_device(),
            _ => t.is_block_device(),
        }
    })
}

#[cfg(not(unix))]
fn special_file_matches(_meta: Option<&std::fs::Metadata>, _type: &str) -> bool {
    false
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn create_dir_all_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
}

#[cfg(not(unix))]
fn create_dir_all_mode(path: &Path, _mode: u32) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::pod::manifest::PodManifest;

    fn spec(volumes: &str) -> PodSpec {
        let yaml = format!("containers: []\nvolumes:\n{volumes}");
        serde_yaml::from_str(&yaml).expect("spec")
    }

    #[test]
    fn plain_relative_paths() {
        assert_eq!(plain_relative("a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(plain_relative("./a"), Some(PathBuf::from("a")));
        for bad in ["", "/a", "../a", "a/../b", "."] {
            assert_eq!(plain_relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn planning_refuses_what_is_not_supported() {
        let pod = Path::new("/state/pods/p");
        let cases = [
            (
                "- {name: n, nfs: {server: s, path: /}}",
                "nfs volumes are not supported",
            ),
            (
                "- {name: h, hostPath: {path: 'C:\\var'}}",
                "not an absolute path of this host",
            ),
            ("- {name: s, secret: {}}", "secretName"),
            (
                "- {name: c, configMap: {name: c, defaultMode: 4096}}",
                "mode",
            ),
            (
                "- {name: a, emptyDir: {}}\n- {name: a, emptyDir: {}}",
                "defined twice",
            ),
            ("- {name: ../x, emptyDir: {}}", "plain file name"),
        ];
        for (volumes, want) in cases {
            let err = PodVolumes::plan(pod, &spec(volumes)).expect_err(want);
            assert!(err.to_string().contains(want), "{err} / {want}");
            assert!(err.is_input());
        }
        let ok = PodVolumes::plan(
            pod,
            &spec("- {name: h, hostPath: {path: /var/lib/x}}\n- {name: e, emptyDir: {medium: Memory}}\n- {name: c, configMap: {name: app}}"),
        )
        .expect("plans");
        assert_eq!(ok.get("h").expect("h").path, PathBuf::from("/var/lib/x"));
        assert_eq!(ok.get("e").expect("e").path, pod.join("volumes/e"));
        assert!(ok.get("c").expect("c").always_read_only());
        assert!(!ok.get("e").expect("e").always_read_only());
    }

    #[test]
    fn creating_config_volumes_and_host_paths() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let manifest = PodManifest::parse(
            br#"
apiVersion: v1
kind: ConfigMap
metadata: {name: app}
data: {a.conf: "x=1", b.conf: "y=2"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: t0k3n}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c}]}
"#,
            "m",
        )
        .expect("manifest");
        let config = ConfigSource::new(&manifest, None);
        let created = tmp.path().join("made/here");
        let volumes = format!(
            "- {{name: all, configMap: {{name: app}}}}\n\
             - {{name: some, configMap: {{name: app, items: [{{key: b.conf, path: sub/b, mode: 384}}]}}}}\n\
             - {{name: sec, secret: {{secretName: creds, defaultMode: 256}}}}\n\
             - {{name: opt, secret: {{secretName: none, optional: true}}}}\n\
             - {{name: scratch, emptyDir: {{}}}}\n\
             - {{name: host, hostPath: {{path: {}, type: DirectoryOrCreate}}}}",
            created.display()
        );
        let pod_dir = tmp.path().join("pod");
        let mut v = PodVolumes::plan(&pod_dir, &spec(&volumes)).expect("plan");
        v.create(&config).expect("create");
        let read = |p: &str| std::fs::read_to_string(pod_dir.join("volumes").join(p)).expect(p);
        assert_eq!(read("all/a.conf"), "x=1");
        assert_eq!(read("all/b.conf"), "y=2");
        assert_eq!(read("some/sub/b"), "y=2");
        assert!(!pod_dir.join("volumes/some/a.conf").exists());
        assert_eq!(read("sec/token"), "t0k3n");
        let mode = |p: &str| {
            std::fs::metadata(pod_dir.join("volumes").join(p))
                .expect(p)
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("all/a.conf"), 0o644);
        assert_eq!(mode("some/sub/b"), 0o600);
        assert_eq!(mode("sec/token"), 0o400);
        assert!(pod_dir.join("volumes/opt").is_dir());
        assert!(pod_dir.join("volumes/scratch").is_dir());
        assert!(created.is_dir());
        v.remove().expect("remove");
        assert!(!pod_dir.exists());
        assert!(created.is_dir(), "hostPaths are left alone");

        // Missing ConfigMap, missing key.
        for (volumes, want) in [
            (
                "- {name: x, configMap: {name: nope}}",
                "neither in the manifest",
            ),
            (
                "- {name: x, configMap: {name: app, items: [{key: zz, path: z}]}}",
                "no key \"zz\"",
            ),
            (
                "- {name: x, hostPath: {path: /nonexistent-hostgate, type: Directory}}",
                "not a directory",
            ),
            ("- {name: x, hostPath: {path: /, type: File}}", "not a file"),
            (
                "- {name: x, hostPath: {path: /, type: Weird}}",
                "not supported",
            ),
        ] {
            let mut v = PodVolumes::plan(&tmp.path().join("p2"), &spec(volumes)).expect("plan");
            let err = v.create(&config).expect_err(want);
            assert!(err.to_string().contains(want), "{err} / {want}");
            assert!(err.is_input());
        }
    }
}
