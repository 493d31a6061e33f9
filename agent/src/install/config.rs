//! The `hostgate` runtime handler in containerd's configuration, edited so that every other line,
//! comment and table of the admin's file stays as it was ([`toml_edit`]).
//!
//! Where the handler goes depends on the configuration version, because `imports` behave
//! differently:
//!
//! * **version 2** (containerd 1.6, 1.7): an imported file *replaces* whole top-level tables, so
//!   a drop-in with `plugins."io.containerd.grpc.v1.cri"…` would wipe the CRI section. The
//!   handler is added to the main file, as
//!   `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hostgate]`;
//! * **version 3** (containerd 2.x): imports are merged deeply, so the handler goes into a
//!   drop-in of its own (`<config dir>/conf.d/hostgate.toml`, carrying `version = 3` itself) as
//!   `[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.hostgate]`, and the main
//!   file's `imports` gains the drop-in unless one of its patterns covers it already.
//!
//! A handler `hostgate` that exists already with the same runtime type and annotations is left
//! alone (the edit is idempotent); one defined differently is a conflict, never overwritten.

use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, Item, Table, Value, value};

/// The runtime handler's name (the RuntimeClass's `handler`).
pub const HANDLER: &str = "hostgate";
/// The runtime type that makes containerd start `containerd-shim-hostgate-v1`.
pub const RUNTIME_TYPE: &str = "io.containerd.hostgate.v1";
/// The pod annotations the handler lets through to the shim: the approval and the privileged
/// HostProcess annotations.
pub const POD_ANNOTATIONS: [&str; 2] = ["hostgate.io/*", "microsoft.com/hostprocess-*"];
/// The drop-in file name (version 3).
pub const DROP_IN: &str = "hostgate.toml";
/// The CRI runtime plugin's id in a version 2 configuration.
pub const V2_CRI: &str = "io.containerd.grpc.v1.cri";
/// The CRI runtime plugin's id in a version 3 configuration.
pub const V3_CRI: &str = "io.containerd.cri.v1.runtime";

/// A configuration version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// containerd 1.6, 1.7.
    V2,
    /// containerd 2.x.
    V3,
}

/// Why the configuration cannot be edited.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not TOML.
    #[error("{} is not TOML", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        #[source]
        source: toml_edit::TomlError,
    },
    /// The version is missing or not one this installer knows.
    #[error("{}: {found}; only `version = 2` (containerd 1.6/1.7) and `version = 3` (containerd 2.x) are understood (pass --config-version to say which)", path.display())]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// What was found.
        found: String,
    },
    /// A handler of that name exists with other settings.
    #[error("{}: a `{HANDLER}` runtime handler is already defined differently ({what}); remove it or make it runtime_type = \"{RUNTIME_TYPE}\"", path.display())]
    Conflict {
        /// The file.
        path: PathBuf,
        /// What differs.
        what: String,
    },
    /// A table the edit must go through is not a table.
    #[error("{}: `{key}` is not a table", path.display())]
    NotATable {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: String,
    },
}

/// The version a file declares.
pub fn detect_version(text: &str, path: &Path) -> Result<Version, ConfigError> {
    let doc = parse(text, path)?;
    version_of(&doc, path)
}

fn parse(text: &str, path: &Path) -> Result<DocumentMut, ConfigError> {
    text.parse::<DocumentMut>()
        .map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
}

fn version_of(doc: &DocumentMut, path: &Path) -> Result<Version, ConfigError> {
    match doc.get("version").and_then(Item::as_integer) {
        Some(2) => Ok(Version::V2),
        Some(3) => Ok(Version::V3),
        Some(other) => Err(ConfigError::UnknownVersion {
            path: path.to_owned(),
            found: format!("version = {other}"),
        }),
        None => Err(ConfigError::UnknownVersion {
            path: path.to_owned(),
            found: "no `version` key (version 1)".to_owned(),
        }),
    }
}

/// The keys below `plugins` that lead to the runtimes table of `version`.
fn runtimes_path(version: Version) -> [&'static str; 4] {
    let cri = match version {
        Version::V2 => V2_CRI,
        Version::V3 => V3_CRI,
    };
    ["plugins", cri, "containerd", "runtimes"]
}

/// What an install or uninstall changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The main file's new content, when it changes.
    pub main: Option<String>,
    /// The drop-in (version 3): its path and new content (`None` content: remove it).
    pub drop_in: Option<(PathBuf, Option<String>)>,
}

impl Edit {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.main.is_none() && self.drop_in.is_none()
    }
}

/// Where a version 3 drop-in for `main` lives.
pub fn drop_in_path(main: &Path) -> PathBuf {
    main.parent()
        .unwrap_or_else(|| Path::new("."))
        .join("conf.d")
        .join(DROP_IN)
}

/// The handler's table, as it is written.
fn handler_table() -> Table {
    let mut t = Table::new();
    t.insert("runtime_type", value(RUNTIME_TYPE));
    let mut annotations = Array::new();
    for a in POD_ANNOTATIONS {
        annotations.push(a);
    }
    t.insert("pod_annotations", value(annotations));
    t
}

/// Checks an existing `hostgate` handler: the same runtime type and at least our annotations.
fn check_existing(t: &Item, path: &Path) -> Result<(), ConfigError> {
    let conflict = |what: String| ConfigError::Conflict {
        path: path.to_owned(),
        what,
    };
    let rt = t.get("runtime_type").and_then(Item::as_str).unwrap_or("");
    if rt != RUNTIME_TYPE {
        return Err(conflict(format!("runtime_type = {rt:?}")));
    }
    let annotations: Vec<&str> = t
        .get("pod_annotations")
        .and_then(Item::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(missing) = POD_ANNOTATIONS.iter().find(|a| !annotations.contains(a)) {
        return Err(conflict(format!("pod_annotations lacks {missing:?}")));
    }
    Ok(())
}

/// The existing `hostgate` handler of `doc`, if any.
fn existing(doc: &DocumentMut, version: Version) -> Option<&Item> {
    let mut item = doc.as_item();
    for key in runtimes_path(version) {
        item = item.get(key)?;
    }
    item.get(HANDLER)
}

/// Adds the handler below `runtimes_path(version)`, creating the parent tables as implicit
/// (header-less) tables where they are missing.
fn add_handler(doc: &mut DocumentMut, version: Version, path: &Path) -> Result<(), ConfigError> {
    let mut table = doc.as_table_mut();
    let mut dotted = String::new();
    for key in runtimes_path(version) {
        if !dotted.is_empty() {
            dotted.push('.');
        }
        dotted.push_str(key);
        let entry = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        table = entry.as_table_mut().ok_or_else(|| ConfigError::NotATable {
            path: path.to_owned(),
            key: dotted.clone(),
        })?;
    }
    let mut handler = handler_table();
    handler.decor_mut().set_prefix(
        "\n# The hostgate runtime handler: containerd-shim-hostgate-v1 runs HostProcess containers only\n# when their hostgate approval verifies (added by `hostgate-agent install`).\n",
    );
    table.insert(HANDLER, Item::Table(handler));
    Ok(())
}

/// The edit that installs the handler into `main_text` (the file at `main`). `drop_in_text` is
/// the current drop-in, if one exists (version 3).
pub fn plan_install(
    main_text: &str,
    main: &Path,
    version: Option<Version>,
    drop_in_text: Option<&str>,
) -> Result<Edit, ConfigError> {
    let mut doc = parse(main_text, main)?;
    let version = match version {
        Some(v) => v,
        None => version_of(&doc, main)?,
    };
    if let Some(t) = existing(&doc, version) {
        check_existing(t, main)?;
        return Ok(Edit {
            main: None,
            drop_in: None,
        });
    }
    match version {
        Version::V2 => {
            add_handler(&mut doc, version, main)?;
            Ok(Edit {
                main: Some(doc.to_string()),
                drop_in: None,
            })
        }
        Version::V3 => {
            let path = drop_in_path(main);
            let wanted = drop_in_text_v3();
            let drop_in = match drop_in_text {
                Some(current) => {
                    let current_doc = parse(current, &path)?;
                    match existing(&current_doc, Version::V3) {
                        Some(t) => {
                            check_existing(t, &path)?;
                            None
                        }
                        None => Some((path.clone(), Some(wanted))),
                    }
                }
                None => Some((path.clone(), Some(wanted))),
            };
            let main_edit = if imports_cover(&doc, &path) {
                None
            } else {
                add_import(&mut doc, &path, main)?;
                Some(doc.to_string())
            };
            Ok(Edit {
                main: main_edit,
                drop_in,
            })
        }
    }
}

/// The version 3 drop-in.
pub fn drop_in_text_v3() -> String {
    let annotations: Vec<String> = POD_ANNOTATIONS.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "# Written by `hostgate-agent install`, removed by `hostgate-agent uninstall`: the hostgate\n\
         # runtime handler. containerd-shim-hostgate-v1 runs HostProcess containers only when their\n\
         # hostgate approval verifies.\n\
         version = 3\n\
         \n\
         [plugins.\"{V3_CRI}\".containerd.runtimes.{HANDLER}]\n\
         \x20 runtime_type = \"{RUNTIME_TYPE}\"\n\
         \x20 pod_annotations = [{}]\n",
        annotations.join(", ")
    )
}

/// Whether one of `doc`'s `imports` patterns names `path` (containerd expands them with Go's
/// `filepath.Glob`: `*` within one path component).
fn imports_cover(doc: &DocumentMut, path: &Path) -> bool {
    let path = path.to_string_lossy().replace('\\', "/");
    doc.get("imports")
        .and_then(Item::as_array)
        .is_some_and(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .any(|p| glob_match(&p.replace('\\', "/"), &path))
        })
}

fn add_import(doc: &mut DocumentMut, path: &Path, main: &Path) -> Result<(), ConfigError> {
    let entry = path.to_string_lossy().into_owned();
    match doc.get_mut("imports") {
        Some(item) => {
            let array = item.as_array_mut().ok_or_else(|| ConfigError::NotATable {
                path: main.to_owned(),
                key: "imports (not an array)".to_owned(),
            })?;
            array.push(entry);
        }
        None => {
            let mut array = Array::new();
            array.push(entry);
            doc.insert("imports", value(array));
        }
    }
    Ok(())
}

/// Go's `filepath.Match` for the patterns containerd configs use: `*` and `?` within one
/// component, everything else literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn matches(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                matches(&p[1..], n)
                    || (n.first().is_some_and(|c| *c != b'/') && matches(p, &n[1..]))
            }
            (Some(b'?'), Some(c)) if *c != b'/' => matches(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &n[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), name.as_bytes())
}

/// The edit that removes what [`plan_install`] added: the handler from the main file
/// (version 2), or the drop-in and its `imports` entry (version 3). Other tables stay.
pub fn plan_uninstall(
    main_text: &str,
    main: &Path,
    version: Option<Version>,
    drop_in_exists: bool,
) -> Result<Edit, ConfigError> {
    let mut doc = parse(main_text, main)?;
    let version = match version {
        Some(v) => v,
        None => version_of(&doc, main)?,
    };
    let mut changed = false;
    let mut table = Some(doc.as_table_mut());
    for key in runtimes_path(version) {
        table = table
            .and_then(|t| t.get_mut(key))
            .and_then(Item::as_table_mut);
    }
    if let Some(runtimes) = table
        && runtimes.remove(HANDLER).is_some()
    {
        changed = true;
    }
    let mut drop_in = None;
    if version == Version::V3 {
        let path = drop_in_path(main);
        let entry = path.to_string_lossy().into_owned();
        let mut emptied = false;
        if let Some(array) = doc.get_mut("imports").and_then(Item::as_array_mut) {
            let before = array.len();
            array.retain(|v| v.as_str() != Some(entry.as_str()));
            changed |= array.len() != before;
            emptied = array.len() != before && array.is_empty();
        }
        if emptied {
            // Ours was its only entry: the key goes too (an install that found `imports = []`
            // is undone byte for byte from its backup instead, see `super::files`).
            doc.remove("imports");
        }
        if drop_in_exists {
            drop_in = Some((path, None));
        }
    }
    Ok(Edit {
        main: changed.then(|| doc.to_string()),
        drop_in,
    })
}

#[cfg(test)]
mod tests;
