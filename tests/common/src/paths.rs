//! Where the repository and its test data are, whichever crate's test asks.

use std::path::{Path, PathBuf};

/// The repository (workspace) root: this crate lives at `tests/common/`.
pub fn repo_root() -> &'static Path {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .expect("tests/common has two parents")
}

/// A path below `tests/data/` of the repository, e.g. `data_path("chart/values.yaml")`.
pub fn data_path(relative: impl AsRef<Path>) -> PathBuf {
    repo_root().join("tests/data").join(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_holds_the_workspace_manifest_and_the_data() {
        let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("root");
        assert!(manifest.contains("[workspace]"), "{manifest}");
        assert!(data_path("").is_dir());
        assert!(data_path("admissionreview").is_dir());
    }
}
