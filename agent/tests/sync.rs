//! `hostgate-agent sync`: first install, change detection, invalid input keeps the last good
//! version, readers never see a half-written set, `--once` exit codes, SIGTERM. Sources are laid
//! out as the kubelet mounts a ConfigMap (visible files are links into a swapped `..data`).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hostgate_agent::sync::{
    SyncConfig, SyncError, SyncOutcome, Syncer, VERSIONS, installed_version,
};
use hostgate_core::approval::{TrustStore, generate_key_pair};
use hostgate_core::policy::load::load_paths;
use hostgate_test_support::{DEADLINE, wait, wait_until};

fn policy(name: &str) -> String {
    format!(
        "apiVersion: hostgate.io/v1alpha1\nkind: HostProcessPolicy\nmetadata: {{name: {name}}}\n\
         spec:\n  match: {{namespaces: [ns-{name}]}}\n"
    )
}

/// A directory laid out like a kubelet-mounted ConfigMap, whose content can be swapped.
struct ConfigMapDir {
    root: PathBuf,
    generation: usize,
}

impl ConfigMapDir {
    fn new(root: PathBuf, files: &BTreeMap<String, Vec<u8>>) -> Self {
        fs::create_dir_all(&root).expect("mkdir");
        let mut dir = ConfigMapDir {
            root,
            generation: 0,
        };
        dir.set(files);
        dir
    }

    /// Replaces the content the way the kubelet's atomic writer does.
    fn set(&mut self, files: &BTreeMap<String, Vec<u8>>) {
        self.generation += 1;
        let ts = format!("..2026_01_01_00_00_00.{}", self.generation);
        let ts_dir = self.root.join(&ts);
        fs::create_dir(&ts_dir).expect("ts dir");
        for (name, bytes) in files {
            fs::write(ts_dir.join(name), bytes).expect("write");
        }
        let tmp = self.root.join("..data_tmp");
        let _ = fs::remove_file(&tmp);
        symlink(&ts, &tmp).expect("link");
        fs::rename(&tmp, self.root.join("..data")).expect("swap");
        // Visible names: links through ..data; stale ones removed.
        for entry in fs::read_dir(&self.root).expect("ls") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !files.contains_key(&name) {
                fs::remove_file(entry.path()).expect("rm stale");
            }
        }
        for name in files.keys() {
            let link = self.root.join(name);
            if fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{name}"), &link).expect("visible link");
            }
        }
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    trust: ConfigMapDir,
    policies: ConfigMapDir,
    dest: PathBuf,
    keys: BTreeMap<String, Vec<u8>>,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_owned();
        let keys = key_files(&root.join("keygen-a"));
        let trust = ConfigMapDir::new(root.join("src/trust"), &keys);
        let policies = ConfigMapDir::new(
            root.join("src/policies"),
            &files(&[("a.yaml", &policy("a")), ("b.yaml", &policy("b"))]),
        );
        Fixture {
            dest: root.join("dest"),
            _tmp: tmp,
            trust,
            policies,
            keys,
            root,
        }
    }

    fn config(&self) -> SyncConfig {
        SyncConfig {
            trust_keys: self.trust.root.clone(),
            policies: self.policies.root.clone(),
            dest: self.dest.clone(),
        }
    }
}

fn key_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let (kid, _private, public) = generate_key_pair(dir).expect("keygen");
    BTreeMap::from([(format!("{kid}.pub"), fs::read(public).expect("pub"))])
}

fn files(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    list.iter()
        .map(|(n, c)| ((*n).to_owned(), c.as_bytes().to_vec()))
        .collect()
}

/// Every file below `dir` (following links), relative path → bytes.
fn read_tree(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for e in entries {
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            fs::read(e.path())?,
        );
    }
    Ok(out)
}

fn versions(dest: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dest.join(VERSIONS))
        .expect("versions")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn first_sync_installs_what_the_verifier_loads() {
    let fx = Fixture::new();
    let mut syncer = Syncer::new(fx.config());
    let outcome = syncer.sync_once().expect("syncs");
    let SyncOutcome::Installed { keys, policies, .. } = outcome else {
        panic!("expected an install, got {outcome:?}")
    };
    assert_eq!(keys.len(), 1);
    assert_eq!(policies, 2);
    // The node's copy is plain files (no links into the source), equal to the source.
    assert_eq!(read_tree(&fx.dest.join("trust")).expect("trust"), fx.keys);
    assert_eq!(
        read_tree(&fx.dest.join("policies")).expect("policies"),
        files(&[("a.yaml", &policy("a")), ("b.yaml", &policy("b"))])
    );
    for entry in fs::read_dir(fx.dest.join("trust")).expect("ls") {
        let meta = fs::symlink_metadata(entry.expect("e").path()).expect("meta");
        assert!(meta.is_file(), "a copy, not a link into the ConfigMap");
    }
    // What `hostgate-agent run --trust-keys DEST/trust --policies DEST/policies` loads.
    let store = TrustStore::load_dir(&fx.dest.join("trust")).expect("trust store");
    assert_eq!(store.key_ids().count(), 1);
    let set = load_paths(&[fx.dest.join("policies")]).expect("policies load");
    assert_eq!(set.len(), 2);
    // The kubelet's hidden entries were not copied.
    assert!(!fx.dest.join("trust/..data").exists());
}

#[test]
fn only_changes_install_a_new_version_and_two_versions_are_kept() {
    let mut fx = Fixture::new();
    let mut syncer = Syncer::new(fx.config());
    assert!(matches!(
        syncer.sync_once().expect("first"),
        SyncOutcome::Installed { .. }
    ));
    let first = installed_version(&fx.dest).expect("installed");
    assert_eq!(syncer.sync_once().expect("again"), SyncOutcome::Unchanged);
    // A fresh syncer (an agent restart) sees the same content as installed.
    assert_eq!(
        Syncer::new(fx.config()).sync_once().expect("restart"),
        SyncOutcome::Unchanged
    );
    assert_eq!(installed_version(&fx.dest).as_deref(), Some(first.as_str()));

    fx.policies.set(&files(&[("a.yaml", &policy("a"))]));
    let SyncOutcome::Installed { policies, .. } = syncer.sync_once().expect("changed") else {
        panic!("expected an install")
    };
    assert_eq!(policies, 1);
    let second = installed_version(&fx.dest).expect("installed");
    assert_ne!(first, second);
    assert!(
        !fx.dest.join("policies/b.yaml").exists(),
        "removed file gone"
    );
    assert_eq!(versions(&fx.dest), [first.clone(), second.clone()]);

    // A new key (rotation: old and new both published).
    let mut keys = fx.keys.clone();
    keys.extend(key_files(&fx.root.join("keygen-b")));
    fx.trust.set(&keys);
    let SyncOutcome::Installed { keys: ids, .. } = syncer.sync_once().expect("new key") else {
        panic!("expected an install")
    };
    assert_eq!(ids.len(), 2);
    let third = installed_version(&fx.dest).expect("installed");
    assert_eq!(
        versions(&fx.dest),
        [second, third],
        "the previous version is kept, older ones removed"
    );
}

#[test]
fn invalid_input_keeps_the_last_good_version() {
    let mut fx = Fixture::new();
    let mut syncer = Syncer::new(fx.config());
    syncer.sync_once().expect("first");
    let good = installed_version(&fx.dest).expect("installed");
    let good_policies = read_tree(&fx.dest.join("policies")).expect("policies");

    // A policy with an unknown field.
    fx.policies.set(&files(&[
        ("a.yaml", &policy("a")),
        ("bad.yaml", &policy("bad").replace("match:", "matsch:")),
    ]));
    let err = syncer.sync_once().expect_err("invalid policy");
    assert!(matches!(err, SyncError::InvalidPolicies(_)), "{err:?}");
    assert!(err.is_invalid_input());
    let text = syncer.pass_logged().expect_err("still invalid");
    assert!(text.contains("bad.yaml"), "names the file: {text}");
    assert_eq!(installed_version(&fx.dest).as_deref(), Some(good.as_str()));
    assert_eq!(
        read_tree(&fx.dest.join("policies")).expect("policies"),
        good_policies
    );

    // Two policies with one name.
    fx.policies.set(&files(&[
        ("a.yaml", &policy("a")),
        ("a2.yaml", &policy("a")),
    ]));
    assert!(matches!(
        syncer.sync_once(),
        Err(SyncError::InvalidPolicies(_))
    ));

    // No key (the webhook has not published yet), or a file that is not a key.
    fx.policies.set(&files(&[("a.yaml", &policy("a"))]));
    fx.trust.set(&BTreeMap::new());
    assert!(matches!(syncer.sync_once(), Err(SyncError::InvalidKeys(_))));
    fx.trust.set(&files(&[("k.pub", "not a key")]));
    assert!(matches!(syncer.sync_once(), Err(SyncError::InvalidKeys(_))));
    assert_eq!(installed_version(&fx.dest).as_deref(), Some(good.as_str()));
    assert_eq!(
        versions(&fx.dest),
        std::slice::from_ref(&good),
        "rejected sets leave no directory behind"
    );

    // Valid again: installed.
    fx.trust.set(&fx.keys);
    assert!(matches!(
        syncer.sync_once().expect("valid"),
        SyncOutcome::Installed { .. }
    ));
    assert_ne!(installed_version(&fx.dest).as_deref(), Some(good.as_str()));
}

#[test]
fn nothing_is_installed_from_invalid_sources() {
    let mut fx = Fixture::new();
    fx.trust.set(&BTreeMap::new());
    let mut syncer = Syncer::new(fx.config());
    assert!(matches!(syncer.sync_once(), Err(SyncError::InvalidKeys(_))));
    assert_eq!(installed_version(&fx.dest), None);
    assert!(!fx.dest.join("trust").exists());
    // A missing source directory is a read error, not a crash.
    let mut missing = fx.config();
    missing.policies = fx.root.join("nope");
    assert!(matches!(
        Syncer::new(missing).sync_once(),
        Err(SyncError::ReadSource { .. })
    ));
}

/// A reader that resolves `DEST/current` and reads both sets must always find one complete
/// source set, never a mix or a partial copy, while the writer alternates between two sets.
#[test]
fn readers_never_see_a_half_written_set() {
    let mut fx = Fixture::new();
    let keys_b = key_files(&fx.root.join("keygen-b"));
    let set_a = (
        fx.keys.clone(),
        files(&[("a.yaml", &policy("a")), ("b.yaml", &policy("b"))]),
    );
    let many: Vec<(String, String)> = (0..40)
        .map(|i| (format!("p{i:02}.yaml"), policy(&format!("p{i:02}"))))
        .collect();
    let many_ref: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let set_b = (keys_b.clone(), files(&many_ref));

    let mut syncer = Syncer::new(fx.config());
    syncer.sync_once().expect("first");
    let dest = fx.dest.clone();
    let done = Arc::new(AtomicBool::new(false));
    let complete_reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let done = Arc::clone(&done);
        let complete_reads = Arc::clone(&complete_reads);
        let (a, b) = (set_a.clone(), set_b.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let Ok(version) = fs::canonicalize(dest.join("current")) else {
                    continue;
                };
                let (Ok(trust), Ok(policies)) = (
                    read_tree(&version.join("trust")),
                    read_tree(&version.join("policies")),
                ) else {
                    // The version was pruned while being read (two swaps happened meanwhile):
                    // a reader retries; it never got a partial set.
                    continue;
                };
                let seen = (trust, policies);
                assert!(
                    seen == a || seen == b,
                    "a reader saw a set that is neither source set: {} keys, {} policies",
                    seen.0.len(),
                    seen.1.len()
                );
                complete_reads.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    for i in 0..60 {
        let (keys, policies) = if i % 2 == 0 { &set_b } else { &set_a };
        fx.trust.set(keys);
        fx.policies.set(policies);
        // Both sources change before the pass, so every installed set is A or B; the reader
        // checks that it never sees anything else while versions are swapped and pruned.
        let outcome = syncer.sync_once().expect("syncs");
        assert!(matches!(outcome, SyncOutcome::Installed { .. }));
        std::thread::sleep(Duration::from_millis(2));
    }
    done.store(true, Ordering::SeqCst);
    reader.join().expect("reader saw only complete sets");
    assert!(complete_reads.load(Ordering::SeqCst) > 0);
}

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hostgate-agent"))
}

#[test]
fn once_exits_with_the_result() {
    let mut fx = Fixture::new();
    let run = |fx: &Fixture| {
        agent()
            .args(["sync", "--once", "--trust-keys"])
            .arg(&fx.trust.root)
            .arg("--policies")
            .arg(&fx.policies.root)
            .arg("--dest")
            .arg(&fx.dest)
            .output()
            .expect("runs")
    };
    let out = run(&fx);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("installed "));
    let out = run(&fx);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "unchanged");

    fx.policies.set(&files(&[("bad.yaml", "kind: Nope\n")]));
    let out = run(&fx);
    assert_eq!(out.status.code(), Some(4), "invalid input: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("policies do not load"), "{stderr}");
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(fx.dest.join("policies/a.yaml").exists(), "last good kept");

    // Relative sources are taken from $CONTAINER_SANDBOX_MOUNT_POINT (HostProcess containers).
    fx.policies.set(&files(&[("a.yaml", &policy("a"))]));
    let out = agent()
        .env("CONTAINER_SANDBOX_MOUNT_POINT", &fx.root)
        .current_dir("/")
        .args([
            "sync",
            "--once",
            "--trust-keys",
            "src/trust",
            "--policies",
            "src/policies",
            "--dest",
        ])
        .arg(fx.root.join("dest2"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(fx.root.join("dest2/policies/a.yaml").exists());
}

#[test]
fn sigterm_stops_the_loop() {
    let fx = Fixture::new();
    let mut child = agent()
        .args(["sync", "--interval", "100ms", "--trust-keys"])
        .arg(&fx.trust.root)
        .arg("--policies")
        .arg(&fx.policies.root)
        .arg("--dest")
        .arg(&fx.dest)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    wait_until("the first install", || {
        installed_version(&fx.dest).is_some()
    });
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let Some(status) = wait::poll(DEADLINE, || child.try_wait().expect("wait")) else {
        let _ = child.kill();
        panic!("did not stop within {DEADLINE:?} of SIGTERM");
    };
    assert_eq!(status.code(), Some(0), "clean stop");
}
