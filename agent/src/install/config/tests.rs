use std::fs;

use super::*;

fn data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/containerd")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares with a golden file; `HOSTGATE_UPDATE_GOLDEN=1` rewrites it instead.
fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/containerd")
        .join(name);
    if std::env::var_os("HOSTGATE_UPDATE_GOLDEN").is_some() {
        fs::write(&path, got).expect("write golden");
    }
    let want = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got, want, "differs from {}", path.display());
}

const MAIN: &str = "/etc/containerd/config.toml";

/// Every line of `original` is in `edited`, in order, and the lines between them are only
/// the handler's (its comment, header, keys and a blank line).
fn assert_lines_kept(original: &str, edited: &str) {
    let mut rest = edited.lines();
    for line in original.lines() {
        loop {
            let Some(l) = rest.next() else {
                panic!("line lost or moved: {line:?}");
            };
            if l == line {
                break;
            }
            let ours = l.is_empty()
                || l.starts_with('#')
                || l.contains(HANDLER)
                || l.starts_with("imports")
                || l.trim_start().starts_with("runtime_type")
                || l.trim_start().starts_with("pod_annotations");
            assert!(
                ours,
                "a line that is neither the admin's nor the handler's: {l:?}"
            );
        }
    }
}

#[test]
fn version_2_adds_the_handler_to_the_main_file_and_keeps_every_line() {
    let original = data("v2-default.toml");
    let main = Path::new(MAIN);
    assert_eq!(
        detect_version(&original, main).expect("version"),
        Version::V2
    );
    let edit = plan_install(&original, main, None, None).expect("plan");
    assert!(edit.drop_in.is_none(), "version 2 never uses a drop-in");
    let edited = edit.main.expect("the main file changes");
    golden("v2-default.expected.toml", &edited);
    assert_lines_kept(&original, &edited);
    let doc: DocumentMut = edited.parse().expect("still TOML");
    let handler = &doc["plugins"][V2_CRI]["containerd"]["runtimes"][HANDLER];
    assert_eq!(handler["runtime_type"].as_str(), Some(RUNTIME_TYPE));
    // Idempotent: the edited file needs nothing more.
    assert!(
        plan_install(&edited, main, None, None)
            .expect("plan")
            .is_empty()
    );
    // Uninstall takes out exactly what was added.
    let undone = plan_uninstall(&edited, main, None, false).expect("plan");
    assert_eq!(
        undone.main.as_deref().map(str::trim_end),
        Some(original.trim_end())
    );
    assert!(
        plan_uninstall(&original, main, None, false)
            .expect("plan")
            .is_empty()
    );
}

#[test]
fn version_3_uses_a_drop_in_and_imports_it_once() {
    let original = data("v3-default.toml");
    let main = Path::new(MAIN);
    assert_eq!(
        detect_version(&original, main).expect("version"),
        Version::V3
    );
    let edit = plan_install(&original, main, None, None).expect("plan");
    let (path, text) = edit.drop_in.clone().expect("a drop-in");
    assert_eq!(path, Path::new("/etc/containerd/conf.d/hostgate.toml"));
    let text = text.expect("content");
    golden("v3-drop-in.expected.toml", &text);
    let drop_in: DocumentMut = text.parse().expect("TOML");
    assert_eq!(drop_in["version"].as_integer(), Some(3));
    assert_eq!(
        drop_in["plugins"][V3_CRI]["containerd"]["runtimes"][HANDLER]["runtime_type"].as_str(),
        Some(RUNTIME_TYPE)
    );
    let edited = edit.main.expect("imports gains the drop-in");
    golden("v3-default.expected.toml", &edited);
    let doc: DocumentMut = edited.parse().expect("TOML");
    assert_eq!(
        doc["imports"]
            .as_array()
            .and_then(|a| a.get(0))
            .and_then(Value::as_str),
        Some("/etc/containerd/conf.d/hostgate.toml")
    );
    assert_lines_kept(&original, &edited);
    // Second run: nothing to do.
    assert!(
        plan_install(&edited, main, None, Some(&text))
            .expect("plan")
            .is_empty()
    );
    // Uninstall: the import goes, the drop-in is removed.
    let undone = plan_uninstall(&edited, main, None, true).expect("plan");
    assert_eq!(undone.drop_in, Some((path, None)));
    assert_eq!(
        undone.main.as_deref().map(str::trim_end),
        Some(original.trim_end())
    );
}

#[test]
fn version_3_with_a_covering_import_leaves_the_main_file_alone() {
    let original = data("v3-admin-imports.toml");
    let edit = plan_install(&original, Path::new(MAIN), None, None).expect("plan");
    assert!(
        edit.main.is_none(),
        "conf.d/*.toml already imports the drop-in"
    );
    assert!(edit.drop_in.is_some());
    // The same file elsewhere: the pattern does not cover that directory's conf.d.
    let elsewhere =
        plan_install(&original, Path::new("/opt/ctd/config.toml"), None, None).expect("plan");
    let main = elsewhere.main.expect("import added");
    assert!(
        main.contains("\"/etc/containerd/conf.d/*.toml\", \"/opt/ctd/conf.d/hostgate.toml\""),
        "{main}"
    );
}

#[test]
fn conflicts_unknown_versions_and_garbage_are_refused() {
    let main = Path::new(MAIN);
    let defined = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hostgate]\nruntime_type = \"io.containerd.runc.v2\"\n";
    assert!(matches!(
        plan_install(defined, main, None, None),
        Err(ConfigError::Conflict { .. })
    ));
    let narrow = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hostgate]\nruntime_type = \"io.containerd.hostgate.v1\"\npod_annotations = [\"hostgate.io/*\"]\n";
    let err = plan_install(narrow, main, None, None).expect_err("conflict");
    assert!(
        err.to_string().contains("microsoft.com/hostprocess-*"),
        "{err}"
    );
    let same = format!(
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hostgate]\nruntime_type = \"{RUNTIME_TYPE}\"\npod_annotations = [\"hostgate.io/*\", \"microsoft.com/hostprocess-*\", \"x/*\"]\n"
    );
    assert!(
        plan_install(&same, main, None, None)
            .expect("plan")
            .is_empty()
    );
    for (text, want) in [
        ("root = \"/var/lib/containerd\"\n", "no `version` key"),
        ("version = 4\n", "version = 4"),
    ] {
        let err = plan_install(text, main, None, None).expect_err("unknown version");
        assert!(err.to_string().contains(want), "{err}");
    }
    // --config-version overrides the detection.
    assert!(plan_install("root = \"/x\"\n", main, Some(Version::V2), None).is_ok());
    assert!(matches!(
        plan_install("version = [", main, None, None),
        Err(ConfigError::Parse { .. })
    ));
    assert!(matches!(
        plan_install("version = 2\nplugins = 3\n", main, None, None),
        Err(ConfigError::NotATable { .. })
    ));
}

#[test]
fn globs_match_like_filepath_match() {
    for (p, n, want) in [
        (
            "/etc/containerd/conf.d/*.toml",
            "/etc/containerd/conf.d/hostgate.toml",
            true,
        ),
        (
            "/etc/containerd/conf.d/*.toml",
            "/etc/containerd/conf.d/sub/hostgate.toml",
            false,
        ),
        (
            "/etc/containerd/*",
            "/etc/containerd/conf.d/hostgate.toml",
            false,
        ),
        (
            "/etc/containerd/conf.d/hostgate.toml",
            "/etc/containerd/conf.d/hostgate.toml",
            true,
        ),
        (
            "/etc/containerd/conf.d/h?stgate.toml",
            "/etc/containerd/conf.d/hostgate.toml",
            true,
        ),
        (
            "C:/ProgramData/containerd/conf.d/*.toml",
            "C:/ProgramData/containerd/conf.d/hostgate.toml",
            true,
        ),
    ] {
        assert_eq!(glob_match(p, n), want, "{p} vs {n}");
    }
}
