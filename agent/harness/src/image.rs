//! Container images without a registry: OCI-layout archives built from the static busybox.
//!
//! Tests must not depend on the network, so the harness builds its images itself and imports
//! them with `ctr images import`. Each image has one layer: a root file system holding
//! `/bin/busybox`, a symbolic link `/bin/<applet> → busybox` for every applet the binary lists
//! (`busybox --list`), the usual empty directories and minimal `/etc/passwd` and `/etc/group`
//! (so that `id` prints names). The archive is an OCI image layout (`oci-layout`, `index.json`,
//! digest-addressed `blobs/sha256/…`); the index entry of each image carries the annotation
//! `io.containerd.image.name`, which `ctr` uses as the image's full name.
//!
//! Every byte is deterministic (fixed owners, modes and times, sorted entries): the same
//! busybox gives the same digests, which keeps containerd's content store and snapshots
//! shareable across restarts and makes digests usable in assertions.
//!
//! Two images are defined: [`BUSYBOX_IMAGE`] (command `sh`) for test containers and
//! [`PAUSE_IMAGE`] (sleeps until terminated), which the private containerd uses as the CRI
//! `sandbox_image` instead of `registry.k8s.io/pause`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::HarnessError;

/// Test containers' image: busybox with command `sh`.
pub const BUSYBOX_IMAGE: &str = "docker.io/hostgate/busybox:test";
/// The CRI sandbox ("pause") image: the same layer, a command that sleeps until terminated.
pub const PAUSE_IMAGE: &str = "docker.io/hostgate/pause:test";

/// The `PATH` of both images' configs.
pub const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The modification time of every entry (2000-01-01T00:00:00Z): fixed for determinism.
const MTIME: u64 = 946_684_800;

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// One image of an archive: its name and the parts of its config the tests care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// Full reference, e.g. `docker.io/hostgate/busybox:test`.
    pub name: String,
    /// The config's `Cmd`.
    pub cmd: Vec<String>,
    /// The config's `Env` (`KEY=value`).
    pub env: Vec<String>,
}

impl OciImage {
    /// [`BUSYBOX_IMAGE`]: `Cmd ["sh"]`.
    pub fn busybox() -> Self {
        Self {
            name: BUSYBOX_IMAGE.to_owned(),
            cmd: vec!["sh".to_owned()],
            env: vec![format!("PATH={IMAGE_PATH}")],
        }
    }

    /// [`PAUSE_IMAGE`]: a shell that waits on a long `sleep` and exits 0 on TERM or INT (as pid
    /// 1 of its pid namespace it would otherwise ignore them); CRI stops sandboxes with KILL.
    pub fn pause() -> Self {
        Self {
            name: PAUSE_IMAGE.to_owned(),
            cmd: [
                "sh",
                "-c",
                "trap 'exit 0' TERM INT; while :; do sleep 86400 & wait $!; done",
            ]
            .map(str::to_owned)
            .to_vec(),
            env: vec![format!("PATH={IMAGE_PATH}")],
        }
    }
}

/// A blob and its digest (`sha256:<hex>`).
#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        Self { bytes, digest }
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The applets `busybox --list` names, sorted, without `busybox` itself.
pub fn applets(busybox: &Path) -> Result<BTreeSet<String>, HarnessError> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| HarnessError::io(format!("running {} --list", busybox.display()), e))?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            command: format!("{} --list", busybox.display()),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_owned)
        .collect())
}

/// The root file system layer (an uncompressed tar) for `busybox`.
pub fn busybox_layer(busybox: &Path) -> Result<Blob, HarnessError> {
    let binary = fs::read(busybox)
        .map_err(|e| HarnessError::io(format!("reading {}", busybox.display()), e))?;
    let applets = applets(busybox)?;
    let mut tar = TarWriter::new();
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("var", 0o755),
    ] {
        tar.dir(dir, mode)?;
    }
    tar.file("bin/busybox", 0o755, &binary)?;
    for applet in &applets {
        tar.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    tar.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    tar.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    Ok(Blob::new(tar.finish()?))
}

/// The OCI platform `architecture` of this build.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// An OCI image layout archive holding `images`, all on the one `layer`.
pub fn archive(images: &[OciImage], layer: &Blob) -> Result<Vec<u8>, HarnessError> {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    blobs.insert(layer.digest.clone(), layer.bytes.clone());
    let mut manifests = Vec::new();
    for image in images {
        let config = Blob::new(to_json(&json!({
            "architecture": oci_arch(),
            "os": "linux",
            "config": {"Env": image.env, "Cmd": image.cmd, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            "history": [{"created_by": "hostgate-node-harness"}],
        }))?);
        let manifest = Blob::new(to_json(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config.descriptor(MEDIA_CONFIG),
            "layers": [layer.descriptor(MEDIA_LAYER)],
        }))?);
        let tag = image.name.rsplit_once(':').map_or("latest", |(_, t)| t);
        let mut descriptor = manifest.descriptor(MEDIA_MANIFEST);
        descriptor["platform"] = json!({"architecture": oci_arch(), "os": "linux"});
        descriptor["annotations"] = json!({
            "io.containerd.image.name": image.name,
            "org.opencontainers.image.ref.name": tag,
        });
        manifests.push(descriptor);
        blobs.insert(config.digest, config.bytes);
        blobs.insert(manifest.digest, manifest.bytes);
    }
    let index = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": manifests,
    }))?;

    let mut tar = TarWriter::new();
    tar.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar.file("index.json", 0o644, &index)?;
    tar.dir("blobs", 0o755)?;
    tar.dir("blobs/sha256", 0o755)?;
    for (digest, bytes) in &blobs {
        let hex = digest.trim_start_matches("sha256:");
        tar.file(&format!("blobs/sha256/{hex}"), 0o644, bytes)?;
    }
    tar.finish()
}

/// Builds the archive of `images` from `busybox` and writes it to `out`.
pub fn write_archive(images: &[OciImage], busybox: &Path, out: &Path) -> Result<(), HarnessError> {
    let bytes = archive(images, &busybox_layer(busybox)?)?;
    fs::write(out, bytes).map_err(|e| HarnessError::io(format!("writing {}", out.display()), e))
}

fn to_json(v: &Value) -> Result<Vec<u8>, HarnessError> {
    serde_json::to_vec(v).map_err(|e| HarnessError::Config(format!("image JSON: {e}")))
}

/// A tar writer whose entries all belong to root and carry [`MTIME`].
struct TarWriter(tar::Builder<Vec<u8>>);

impl TarWriter {
    fn new() -> Self {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Deterministic);
        Self(b)
    }

    fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    }

    fn err(path: &str) -> impl FnOnce(std::io::Error) -> HarnessError + '_ {
        move |e| HarnessError::io(format!("adding {path} to a tar"), e)
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<(), HarnessError> {
        let mut h = Self::header(EntryType::Directory, mode, 0);
        self.0
            .append_data(&mut h, format!("{path}/"), std::io::empty())
            .map_err(Self::err(path))
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), HarnessError> {
        let mut h = Self::header(EntryType::Regular, mode, data.len() as u64);
        self.0
            .append_data(&mut h, path, data)
            .map_err(Self::err(path))
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<(), HarnessError> {
        let mut h = Self::header(EntryType::Symlink, 0o777, 0);
        self.0
            .append_link(&mut h, path, target)
            .map_err(Self::err(path))
    }

    fn finish(self) -> Result<Vec<u8>, HarnessError> {
        self.0
            .into_inner()
            .map_err(|e| HarnessError::io("finishing a tar", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(bytes: &[u8]) -> Vec<(String, EntryType, Vec<u8>)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let path = e.path().expect("path").to_string_lossy().into_owned();
                let kind = e.header().entry_type();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).expect("data");
                (path, kind, data)
            })
            .collect()
    }

    fn fake_layer() -> Blob {
        let mut tar = TarWriter::new();
        tar.file("bin/busybox", 0o755, b"not really").expect("file");
        Blob::new(tar.finish().expect("tar"))
    }

    #[test]
    fn archive_is_a_deterministic_oci_layout() {
        let layer = fake_layer();
        let images = [OciImage::busybox(), OciImage::pause()];
        let a = archive(&images, &layer).expect("archive");
        assert_eq!(
            a,
            archive(&images, &layer).expect("archive"),
            "deterministic"
        );

        let entries = entries(&a);
        let find = |p: &str| {
            entries
                .iter()
                .find(|(path, ..)| path == p)
                .unwrap_or_else(|| panic!("{p} missing"))
                .2
                .clone()
        };
        let index: Value = serde_json::from_slice(&find("index.json")).expect("index");
        let manifests = index["manifests"].as_array().expect("manifests");
        assert_eq!(manifests.len(), 2);
        assert_eq!(
            manifests[0]["annotations"]["io.containerd.image.name"],
            BUSYBOX_IMAGE
        );
        assert_eq!(
            manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
            "test"
        );
        for m in manifests {
            // Every descriptor points at a blob with that digest and size.
            let blob = |d: &Value| {
                let digest = d["digest"].as_str().expect("digest");
                let bytes = find(&format!("blobs/sha256/{}", &digest[7..]));
                assert_eq!(Blob::new(bytes.clone()).digest, digest);
                assert_eq!(d["size"].as_u64(), Some(bytes.len() as u64));
                bytes
            };
            let manifest: Value = serde_json::from_slice(&blob(m)).expect("manifest");
            let config: Value = serde_json::from_slice(&blob(&manifest["config"])).expect("config");
            assert_eq!(config["rootfs"]["diff_ids"][0], layer.digest);
            assert_eq!(blob(&manifest["layers"][0]), layer.bytes);
        }
        // The layer is shared: one blob for it, a config and a manifest per image.
        let blobs = entries
            .iter()
            .filter(|(p, k, _)| p.starts_with("blobs/sha256/") && *k == EntryType::Regular)
            .count();
        assert_eq!(blobs, 5);
    }

    #[test]
    fn layer_links_every_applet() {
        crate::skip_unless!(&[crate::Prereq::Busybox]);
        let busybox = Path::new(crate::prereq::BUSYBOX);
        let layer = busybox_layer(busybox).expect("layer");
        assert_eq!(layer.bytes, busybox_layer(busybox).expect("layer").bytes);
        let entries = entries(&layer.bytes);
        for applet in [
            "sh", "echo", "sleep", "cat", "env", "dd", "head", "setsid", "id",
        ] {
            assert!(
                entries
                    .iter()
                    .any(|(p, k, _)| *p == format!("bin/{applet}") && *k == EntryType::Symlink),
                "no bin/{applet}"
            );
        }
    }
}
