//! Finding and reading input files: paths, directories (recursively) and standard input, each
//! read whole but never past a size limit.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::report::InputError;

/// Default `--max-file-size`: 16 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// The name standard input gets in reports.
pub const STDIN_NAME: &str = "<stdin>";

/// Deepest directory nesting followed below an input directory.
const MAX_DIR_DEPTH: usize = 64;

/// One command-line input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `-`: standard input.
    Stdin,
    /// A file or a directory.
    Path(PathBuf),
}

impl Input {
    /// `-` is standard input; anything else a path.
    pub fn from_arg(arg: impl Into<PathBuf>) -> Self {
        let path = arg.into();
        if path.as_os_str() == "-" {
            Input::Stdin
        } else {
            Input::Path(path)
        }
    }
}

/// A file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The name used in reports: the path as given or found, or `<stdin>`.
    pub name: Arc<str>,
    /// Where to read it from; `None` for standard input.
    pub path: Option<PathBuf>,
}

/// Whether a file found in a directory is read: `*.yaml`, `*.yml`, `*.json`.
pub fn is_manifest_path(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Expands inputs into files, in order: files as given, directories recursively in name order
/// (manifest files only, hidden entries skipped). Paths that cannot be read are reported in
/// `errors`.
pub fn expand(inputs: &[Input], errors: &mut Vec<InputError>) -> Vec<SourceFile> {
    let mut files = Vec::new();
    for input in inputs {
        match input {
            Input::Stdin => files.push(SourceFile {
                name: Arc::from(STDIN_NAME),
                path: None,
            }),
            Input::Path(path) => match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => {
                    let mut seen = HashSet::new();
                    walk(path, 0, &mut seen, &mut files, errors);
                }
                Ok(_) => files.push(source(path)),
                Err(e) => errors.push(InputError::file(name_of(path), e.to_string())),
            },
        }
    }
    files
}

fn name_of(path: &Path) -> Arc<str> {
    Arc::from(path.display().to_string())
}

fn source(path: &Path) -> SourceFile {
    SourceFile {
        name: name_of(path),
        path: Some(path.to_owned()),
    }
}

fn walk(
    dir: &Path,
    depth: usize,
    seen: &mut HashSet<PathBuf>,
    files: &mut Vec<SourceFile>,
    errors: &mut Vec<InputError>,
) {
    // Symbolic links may loop: visit each real directory once, and not too deep.
    match std::fs::canonicalize(dir) {
        Ok(real) => {
            if !seen.insert(real) {
                return;
            }
        }
        Err(e) => {
            errors.push(InputError::file(name_of(dir), e.to_string()));
            return;
        }
    }
    if depth > MAX_DIR_DEPTH {
        errors.push(InputError::file(
            name_of(dir),
            format!("directories nested more than {MAX_DIR_DEPTH} deep"),
        ));
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            errors.push(InputError::file(name_of(dir), e.to_string()));
            return;
        }
    };
    // Sorted by name bytes: cheaper than comparing paths component by component.
    let mut children: Vec<(std::ffi::OsString, bool)> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .map(|e| {
            // No extra stat for plain files; symbolic links are followed.
            let is_dir = match e.file_type() {
                Ok(t) if t.is_symlink() => e.path().is_dir(),
                Ok(t) => t.is_dir(),
                Err(_) => e.path().is_dir(),
            };
            (e.file_name(), is_dir)
        })
        .collect();
    children.sort_unstable_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    for (name, is_dir) in children {
        let child = dir.join(name);
        if is_dir {
            walk(&child, depth + 1, seen, files, errors);
        } else if is_manifest_path(&child) {
            files.push(source(&child));
        }
    }
}

/// Reads a whole file, refusing files larger than `max` bytes before reading them.
pub fn read(file: &SourceFile, max: u64) -> Result<Vec<u8>, InputError> {
    let err = |message: String| InputError::file(Arc::clone(&file.name), message);
    let too_large = |size: String| {
        err(format!(
            "{size} is larger than the {max}-byte limit (--max-file-size); not read"
        ))
    };
    let mut bytes = Vec::new();
    match &file.path {
        None => {
            std::io::stdin()
                .lock()
                .take(max.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| err(e.to_string()))?;
        }
        Some(path) => {
            let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
            let meta = f.metadata().map_err(|e| err(e.to_string()))?;
            if meta.is_dir() {
                return Err(err("is a directory".to_owned()));
            }
            if meta.len() > max {
                return Err(too_large(format!("{} bytes", meta.len())));
            }
            // The size can change, and special files have none: never read past the limit.
            let capacity = usize::try_from(meta.len()).unwrap_or(0);
            bytes.reserve(capacity.saturating_add(1));
            f.take(max.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| err(e.to_string()))?;
        }
    }
    if bytes.len() as u64 > max {
        return Err(too_large(format!("more than {max} bytes")));
    }
    Ok(bytes)
}

/// Parses a size: bytes, or a number with a unit (`K`, `M`, `G`: powers of 1000; `Ki`, `Mi`,
/// `Gi`: powers of 1024; an optional trailing `B`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 1048576, 512Ki, 16Mi, 1G)"))?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix('B')
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let factor: u64 = match unit {
        "" => 1,
        "K" | "k" => 1000,
        "M" => 1000 * 1000,
        "G" => 1000 * 1000 * 1000,
        "Ki" | "KI" => 1 << 10,
        "Mi" | "MI" => 1 << 20,
        "Gi" | "GI" => 1 << 30,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use K, M, G, Ki, Mi or Gi)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("16Mi"), Ok(16 << 20));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("2k"), Ok(2000));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1Ti").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn expands_directories_in_order_skipping_hidden_and_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).expect("mkdir");
        std::fs::create_dir_all(root.join(".git")).expect("mkdir");
        for f in [
            "a.yaml",
            "b/c/d.yml",
            "b/x.json",
            "b/readme.md",
            ".hidden.yaml",
            ".git/config.yaml",
        ] {
            std::fs::write(root.join(f), "a: 1").expect("write");
        }
        let mut errors = Vec::new();
        let files = expand(
            &[
                Input::Path(root.to_owned()),
                Input::from_arg("-"),
                Input::Path(root.join("missing.yaml")),
                Input::Path(root.join("b/readme.md")),
            ],
            &mut errors,
        );
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                f.path.as_ref().map_or_else(
                    || f.name.to_string(),
                    |p| {
                        p.strip_prefix(root)
                            .expect("below root")
                            .display()
                            .to_string()
                    },
                )
            })
            .collect();
        assert_eq!(
            names,
            ["a.yaml", "b/c/d.yml", "b/x.json", "<stdin>", "b/readme.md"]
        );
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().contains("missing.yaml: "),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn refuses_large_files_without_reading_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.yaml");
        std::fs::write(&path, vec![b'a'; 2000]).expect("write");
        let file = source(&path);
        let err = read(&file, 1000).expect_err("too large");
        assert!(
            err.to_string()
                .ends_with("big.yaml: 2000 bytes is larger than the 1000-byte limit (--max-file-size); not read"),
            "{err}"
        );
        assert_eq!(read(&file, 2000).map(|b| b.len()), Ok(2000));
    }
}
