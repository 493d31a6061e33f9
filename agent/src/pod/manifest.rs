//! The `-f` manifest: one Pod, plus the ConfigMaps and Secrets it uses; and the `--config-dir`
//! fallback (`<dir>/<name>/<key>` files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hostgate_core::manifest::{self, read_documents};
use hostgate_core::object::{Workload, type_of};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};

/// Largest manifest accepted.
pub const MAX_MANIFEST: u64 = 4 * 1024 * 1024;

/// Why the manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is too large.
    #[error("{}: {size} bytes is more than the {MAX_MANIFEST}-byte limit", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A document does not parse or is not a valid object.
    #[error("{source_name}: document {document}: {message}")]
    Invalid {
        /// The file.
        source_name: String,
        /// 1-based document index (0 for the file as a whole).
        document: usize,
        /// What is wrong.
        message: String,
    },
    /// Not exactly one Pod.
    #[error("{source_name}: {message}")]
    PodCount {
        /// The file.
        source_name: String,
        /// What is wrong.
        message: String,
    },
}

/// The parsed manifest.
#[derive(Debug, Clone)]
pub struct PodManifest {
    /// The Pod.
    pub pod: Pod,
    /// ConfigMaps by name: key → bytes.
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Secrets by name: key → bytes.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl PodManifest {
    /// Reads a manifest file.
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        let io = |source| ManifestError::Io {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_MANIFEST {
            return Err(ManifestError::TooLarge {
                path: path.to_owned(),
                size,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Parses manifest bytes; `source_name` names them in errors. Documents: exactly one `v1
    /// Pod`, any number of `v1 ConfigMap` and `v1 Secret`; anything else is refused.
    pub fn parse(bytes: &[u8], source_name: &str) -> Result<Self, ManifestError> {
        let invalid = |document: usize, message: String| ManifestError::Invalid {
            source_name: source_name.to_owned(),
            document,
            message,
        };
        let (docs, read_error) = read_documents(bytes);
        if let Some(e) = read_error {
            return Err(invalid(0, e.to_string()));
        }
        let mut pod = None;
        let mut config_maps = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        for doc in docs {
            let index = doc.index;
            match type_of(&doc.value) {
                Some(("v1", "Pod")) => {
                    let w = Workload::from_value(doc.value)
                        .map_err(|e| invalid(index, e.to_string()))?;
                    let Some(Workload::Pod(p)) = w else {
                        return Err(invalid(index, "not a Pod".to_owned()));
                    };
                    if pod.replace(*p).is_some() {
                        return Err(ManifestError::PodCount {
                            source_name: source_name.to_owned(),
                            message: format!(
                                "document {index}: a second Pod; the agent runs one pod per manifest"
                            ),
                        });
                    }
                }
                Some(("v1", "ConfigMap")) => {
                    let cm: ConfigMap = manifest::from_value(doc.value)
                        .map_err(|e| invalid(index, e.to_string()))?;
                    let name = cm.metadata.name.clone().ok_or_else(|| {
                        invalid(index, "metadata.name: Required value".to_owned())
                    })?;
                    let mut data: BTreeMap<String, Vec<u8>> = cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    for (k, v) in cm.binary_data.unwrap_or_default() {
                        data.insert(k, v.0);
                    }
                    config_maps.insert(name, data);
                }
                Some(("v1", "Secret")) => {
                    let s: Secret = manifest::from_value(doc.value)
                        .map_err(|e| invalid(index, e.to_string()))?;
                    let name = s.metadata.name.clone().ok_or_else(|| {
                        invalid(index, "metadata.name: Required value".to_owned())
                    })?;
                    let mut data: BTreeMap<String, Vec<u8>> = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    // The apiserver merges stringData over data.
                    for (k, v) in s.string_data.unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    secrets.insert(name, data);
                }
                Some((api_version, kind)) => {
                    return Err(invalid(
                        index,
                        format!(
                            "{api_version} {kind} is not supported here: a manifest holds one Pod and its ConfigMaps and Secrets"
                        ),
                    ));
                }
                None => {
                    return Err(invalid(
                        index,
                        "not a Kubernetes object (apiVersion and kind are required)".to_owned(),
                    ));
                }
            }
        }
        let pod = pod.ok_or_else(|| ManifestError::PodCount {
            source_name: source_name.to_owned(),
            message: "no Pod in the manifest".to_owned(),
        })?;
        Ok(Self {
            pod,
            config_maps,
            secrets,
        })
    }
}

/// Why a ConfigMap or Secret cannot be read from the config directory.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}", path.display())]
pub struct ConfigDirError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Where ConfigMap and Secret data come from: the manifest first, then `--config-dir`.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    dir: Option<PathBuf>,
}

/// ConfigMap or Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

impl ConfigKind {
    /// `ConfigMap` / `Secret`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "ConfigMap",
            ConfigKind::Secret => "Secret",
        }
    }
}

impl ConfigSource {
    /// The manifest's objects, falling back to `dir`.
    pub fn new(manifest: &PodManifest, dir: Option<PathBuf>) -> Self {
        Self {
            config_maps: manifest.config_maps.clone(),
            secrets: manifest.secrets.clone(),
            dir,
        }
    }

    /// The data of a ConfigMap or Secret; `None` if neither the manifest nor the directory
    /// has it. From the directory: every regular, non-hidden file of `<dir>/<name>/`.
    pub fn get(
        &self,
        kind: ConfigKind,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigDirError> {
        let from_manifest = match kind {
            ConfigKind::ConfigMap => self.config_maps.get(name),
            ConfigKind::Secret => self.secrets.get(name),
        };
        if let Some(data) = from_manifest {
            return Ok(Some(data.clone()));
        }
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
            return Ok(None);
        }
        let path = dir.join(name);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ConfigDirError { path, source }),
        };
        let mut data = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| ConfigDirError {
                path: path.clone(),
                source,
            })?;
            let key = entry.file_name().to_string_lossy().into_owned();
            if key.starts_with('.') {
                continue;
            }
            let file = entry.path();
            // Follows symlinks, like a kubelet-mounted ConfigMap's visible files.
            if !file.is_file() {
                continue;
            }
            let bytes = std::fs::read(&file).map_err(|source| ConfigDirError {
                path: file.clone(),
                source,
            })?;
            data.insert(key, bytes);
        }
        Ok(Some(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: app}
data: {a.conf: "x=1"}
binaryData: {blob: AAEC}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {token: c2VjcmV0}
stringData: {user: admin, token: override}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c}]}
"#;

    #[test]
    fn multi_document_manifest() {
        let m = PodManifest::parse(MULTI.as_bytes(), "pod.yaml").expect("parses");
        assert_eq!(m.pod.metadata.name.as_deref(), Some("p"));
        assert_eq!(m.config_maps["app"]["a.conf"], b"x=1");
        assert_eq!(m.config_maps["app"]["blob"], [0, 1, 2]);
        assert_eq!(m.secrets["creds"]["token"], b"override");
        assert_eq!(m.secrets["creds"]["user"], b"admin");
    }

    #[test]
    fn refused_manifests() {
        let cases = [
            ("", "no Pod"),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
                "no Pod",
            ),
            (
                "apiVersion: v1\nkind: Pod\nspec: {containers: []}\n---\napiVersion: v1\nkind: Pod\nspec: {containers: []}\n",
                "a second Pod",
            ),
            (
                "apiVersion: apps/v1\nkind: Deployment\n",
                "not supported here",
            ),
            ("apiVersion: v1\nkind: Service\n", "not supported here"),
            ("just text", "not a Kubernetes object"),
            ("a: [", "document"),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
                "pod spec is required",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\ndata: {}\n",
                "metadata.name",
            ),
            (
                "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: 3}]}\n",
                "spec.containers[0].name",
            ),
        ];
        for (text, want) in cases {
            let err = PodManifest::parse(text.as_bytes(), "f.yaml").expect_err(want);
            assert!(err.to_string().contains(want), "{err} / {want}");
        }
    }

    #[test]
    fn config_dir_fallback() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("extra")).expect("mkdir");
        std::fs::write(dir.path().join("extra/key"), "v").expect("write");
        std::fs::write(dir.path().join("extra/.hidden"), "h").expect("write");
        std::fs::create_dir_all(dir.path().join("extra/..data")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("app")).expect("mkdir");
        std::fs::write(dir.path().join("app/a.conf"), "from dir").expect("write");
        let m = PodManifest::parse(MULTI.as_bytes(), "pod.yaml").expect("parses");
        let src = ConfigSource::new(&m, Some(dir.path().to_owned()));
        let extra = src
            .get(ConfigKind::Secret, "extra")
            .expect("reads")
            .expect("found");
        assert_eq!(extra.keys().collect::<Vec<_>>(), ["key"]);
        // The manifest wins.
        let app = src
            .get(ConfigKind::ConfigMap, "app")
            .expect("reads")
            .expect("found");
        assert_eq!(app["a.conf"], b"x=1");
        assert!(
            src.get(ConfigKind::ConfigMap, "none")
                .expect("reads")
                .is_none()
        );
        assert!(
            src.get(ConfigKind::ConfigMap, "../etc")
                .expect("reads")
                .is_none()
        );
        let no_dir = ConfigSource::new(&m, None);
        assert!(
            no_dir
                .get(ConfigKind::Secret, "extra")
                .expect("reads")
                .is_none()
        );
    }
}
