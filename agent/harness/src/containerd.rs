//! A private containerd for one test, and the cleanup of everything it leaves behind.
//!
//! [`Containerd::start`] makes a temporary directory, writes a config there (version 2, the
//! format of containerd 1.6 and 1.7), starts `containerd --config …` as a child process with its
//! output in `containerd.log`, waits until the CRI socket answers `Version` and reports
//! `RuntimeReady`, and imports the harness's two images (see [`crate::image`]).
//!
//! # The directory
//!
//! | path | what |
//! |---|---|
//! | `config.toml` | the config below |
//! | `containerd.log` | containerd's stdout and stderr, appended across restarts ([`Containerd::log_path`]) |
//! | `containerd.sock` | the gRPC (and so CRI) socket; containerd adds `containerd.sock.ttrpc` |
//! | `root/`, `state/` | containerd's `root` and `state`: content, snapshots, bundles, CRI state |
//! | `tmp/`, `opt/` | containerd's temporary mounts and its `opt` plugin's directory |
//! | `runc/` | runc's state (the runc handler's `Root` option) |
//! | `cni/` | empty CNI directories, so the host's CNI config is not read |
//! | `pods/` | the pods' log directories |
//!
//! # The config, and why
//!
//! - Private `root`, `state`, `grpc.address`, `temp`, and the `opt` plugin's path; the debug
//!   and metrics listeners off: instances never share state, and tests run in parallel.
//! - CRI `sandbox_image` is [`PAUSE_IMAGE`]: nothing is pulled.
//! - CRI `restrict_oom_score_adj = true`: the CRI plugin asks for a low `oom_score_adj` for
//!   sandboxes, and lowering it below containerd's own value needs `CAP_SYS_RESOURCE`, which
//!   a test environment (itself a container) may not grant; with the option containerd never asks
//!   for less than its own value.
//! - CRI `disable_apparmor = true`: on hosts with AppArmor, containerd would otherwise load its
//!   default profile with `apparmor_parser`, which the harness does not need or require.
//! - CNI directories are empty: only host-network pods run, and they need no CNI (the runtime
//!   reports `NetworkReady=false`, which does not stop them).
//! - The default handler `runc` (`io.containerd.runc.v2`) with `Root` set under the instance's
//!   directory, so that runc's state does not land in the host's `/run/containerd/runc`.
//! - Extra [`RuntimeHandler`]s as the caller gives them (`runtime_type`, `pod_annotations`,
//!   `container_annotations`, `options`). containerd finds a handler's shim binary
//!   `containerd-shim-<name>-<version>` on its `PATH` (containerd up to 1.6.20 and 1.7.0 ignores
//!   the per-handler `runtime_path`), so [`ContainerdOptions::path_prepend`] puts the
//!   directories of shims under test first on containerd's `PATH`; shims inherit containerd's
//!   environment, so [`ContainerdOptions::env`] also reaches them.
//!
//! # Restart
//!
//! [`Containerd::restart`] stops containerd with SIGTERM and starts it again with the same
//! directory, config and socket. containerd does not stop shims when it exits, so running pods
//! survive, as they do when a node's containerd is restarted or upgraded.
//!
//! # Cleanup
//!
//! [`Containerd::stop`] (and `Drop`) leave nothing behind, in this order:
//!
//! 1. Every pod the CRI plugin knows is stopped and removed, as the kubelet would do: the
//!    graceful path, which lets every shim (runc's or one under test) tear down its own things.
//! 2. containerd gets SIGTERM (SIGKILL after a grace period) and is reaped.
//! 3. Container processes that survived are killed: `runc delete --force` for every container
//!    in the instance's runc root, then SIGKILL to every process whose cgroup lies under the
//!    instance's cgroup parent (the default parent of every pod; see [`crate::cri`]).
//! 4. Shims are killed: processes with an argument naming the instance's directory (shims get
//!    `-address <dir>/containerd.sock`) or whose working directory is under it (a shim runs in
//!    its bundle directory).
//! 5. Mounts under the directory (rootfs overlays, sandbox `/dev/shm`) are unmounted, deepest
//!    first, lazily (`MNT_DETACH`), since a process may still hold one.
//! 6. Shim sockets are removed: containerd puts them in the host's `/run/containerd/s/` whatever
//!    its `state` is, named `sha256(<address>/<namespace>/<id>)`. The harness takes the names
//!    from the bundles' `address` files and computes them from the bundle ids (so a socket of a
//!    killed shim is found too), never by listing the shared directory, which other containerd
//!    instances use. (CRI keeps container FIFOs under `state`; only `ctr run` uses the host's
//!    `/run/containerd/fifo/`, and the harness never calls it.)
//! 7. The instance's cgroups (in every mounted hierarchy) are removed, deepest first.
//! 8. The directory is removed.
//!
//! Every step runs even if an earlier one failed; [`Containerd::stop`] then reports all the
//! failures, and calling it again retries. When everything succeeded, further calls do nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cri::Cri;
use crate::image::{self, BUSYBOX_IMAGE, OciImage, PAUSE_IMAGE};
use crate::{HarnessError, procfs};

/// The containerd namespace of the CRI plugin.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// Where containerd puts shim sockets, whatever its `state` directory.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// containerd's runc shim.
pub const RUNC_RUNTIME_TYPE: &str = "io.containerd.runc.v2";
/// The cgroup under which every instance puts its pods (`/<this>/<instance>`).
pub const CGROUP_ROOT: &str = "hostgate-harness";

const STOP_GRACE: Duration = Duration::from_secs(30);
const KILL_WAIT: Duration = Duration::from_secs(15);

/// An extra CRI runtime handler: one `[…containerd.runtimes.<name>]` table.
///
/// A handler of runc's type ([`RUNC_RUNTIME_TYPE`]) without a `Root` option gets the
/// instance's runc root, like the default handler, so that cleanup finds its containers.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeHandler {
    /// The handler name pods ask for (a RuntimeClass's `handler`), e.g. `hostgate`.
    pub name: String,
    /// E.g. `io.containerd.hostgate.v1` (shim binary `containerd-shim-hostgate-v1`).
    pub runtime_type: String,
    /// Pod annotations passed to the OCI spec, as `path.Match` patterns (`hostgate.io/*`).
    pub pod_annotations: Vec<String>,
    /// Container annotations passed to the OCI spec.
    pub container_annotations: Vec<String>,
    /// The handler's `options` table (strings, numbers, booleans, arrays, objects).
    pub options: BTreeMap<String, Value>,
}

impl RuntimeHandler {
    pub fn new(name: impl Into<String>, runtime_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            runtime_type: runtime_type.into(),
            pod_annotations: Vec::new(),
            container_annotations: Vec::new(),
            options: BTreeMap::new(),
        }
    }

    pub fn pod_annotation(mut self, pattern: impl Into<String>) -> Self {
        self.pod_annotations.push(pattern.into());
        self
    }

    pub fn container_annotation(mut self, pattern: impl Into<String>) -> Self {
        self.container_annotations.push(pattern.into());
        self
    }

    pub fn option(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }
}

/// How to start a [`Containerd`].
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// Handlers besides the default `runc` (one named `runc` replaces it).
    pub handlers: Vec<RuntimeHandler>,
    /// Directories put before the inherited `PATH` of containerd (and so of its shims).
    pub path_prepend: Vec<PathBuf>,
    /// Extra environment of containerd, inherited by its shims.
    pub env: Vec<(OsString, OsString)>,
    /// containerd's `--log-level` (`info` by default; `debug` shows every shim call).
    pub log_level: String,
    /// Where the instance's temporary directory is made (default: the system's temp dir). Unix
    /// socket paths are limited to 107 bytes, so keep it short.
    pub base_dir: Option<PathBuf>,
    /// Bound on containerd becoming ready, at start and restart.
    pub start_timeout: Duration,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        Self {
            handlers: Vec::new(),
            path_prepend: Vec::new(),
            env: Vec::new(),
            log_level: "info".to_owned(),
            base_dir: None,
            start_timeout: Duration::from_secs(60),
        }
    }
}

impl ContainerdOptions {
    pub fn handler(mut self, handler: RuntimeHandler) -> Self {
        self.handlers.push(handler);
        self
    }

    pub fn path_prepend(mut self, dir: impl Into<PathBuf>) -> Self {
        self.path_prepend.push(dir.into());
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }
}

/// How long the steps of [`Containerd::start`] and [`Containerd::restart`] took.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Spawn until the CRI socket reported `RuntimeReady` (first start).
    pub start: Duration,
    /// Building the image archive.
    pub image_build: Duration,
    /// `ctr images import` until CRI listed both images.
    pub image_import: Duration,
    /// Each restart: SIGTERM until ready again.
    pub restarts: Vec<Duration>,
}

/// A private containerd instance. See the module documentation.
#[derive(Debug)]
pub struct Containerd {
    dir: PathBuf,
    options: ContainerdOptions,
    child: Option<Child>,
    timings: Timings,
    /// Shim sockets this instance's shims used or would use (found during cleanup).
    shim_sockets: BTreeSet<PathBuf>,
    /// Set once a cleanup has fully succeeded.
    cleaned: bool,
    /// Counts restarts, so that CRI clients know to reconnect.
    restarts: Arc<AtomicU64>,
}

impl Containerd {
    /// Starts a private containerd and imports the images. On error everything already set up
    /// is cleaned up again.
    pub fn start(options: ContainerdOptions) -> Result<Self, HarnessError> {
        let base = options.base_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("hg-ctrd-")
            .tempdir_in(&base)
            .map_err(|e| {
                HarnessError::io(format!("creating a directory in {}", base.display()), e)
            })?
            .keep();
        let mut this = Self {
            dir,
            options,
            child: None,
            timings: Timings::default(),
            shim_sockets: BTreeSet::new(),
            cleaned: false,
            restarts: Arc::default(),
        };
        // On error `this` is dropped here, which cleans up.
        this.setup()?;
        Ok(this)
    }

    fn setup(&mut self) -> Result<(), HarnessError> {
        let socket = self.socket();
        if socket.as_os_str().len() + ".ttrpc".len() > 107 {
            return Err(HarnessError::Config(format!(
                "socket path {} is too long for a Unix socket; set base_dir",
                socket.display()
            )));
        }
        for sub in [
            "root",
            "state",
            "tmp",
            "opt",
            "runc",
            "cni/bin",
            "cni/net.d",
            "pods",
        ] {
            let p = self.dir.join(sub);
            fs::create_dir_all(&p)
                .map_err(|e| HarnessError::io(format!("creating {}", p.display()), e))?;
        }
        let config = self.render_config()?;
        fs::write(self.config_path(), config).map_err(|e| {
            HarnessError::io(format!("writing {}", self.config_path().display()), e)
        })?;

        let started = Instant::now();
        self.spawn()?;
        let cri = self.wait_ready()?;
        self.timings.start = started.elapsed();

        let built = Instant::now();
        let archive = self.dir.join("images.tar");
        image::write_archive(
            &[OciImage::busybox(), OciImage::pause()],
            Path::new(crate::prereq::BUSYBOX),
            &archive,
        )?;
        self.timings.image_build = built.elapsed();

        let imported = Instant::now();
        self.ctr(&["images", "import", &archive.to_string_lossy()])?;
        self.wait_images(&cri)?;
        self.timings.image_import = imported.elapsed();
        Ok(())
    }

    /// The instance's directory (see the module docs for its layout).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The gRPC/CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// containerd's output (all starts appended): print it when a test fails.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    pub fn root_dir(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// runc's state directory for the `k8s.io` namespace.
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc").join(K8S_NAMESPACE)
    }

    /// Where pods' log directories go by default.
    pub fn pod_log_root(&self) -> PathBuf {
        self.dir.join("pods")
    }

    /// The default cgroup parent of this instance's pods (absolute, cgroupfs style).
    pub fn cgroup_parent(&self) -> String {
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("/{CGROUP_ROOT}/{name}")
    }

    /// containerd's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// The socket a shim started by this instance for bundle/grouping `id` listens on, as
    /// containerd's shim library names it: `/run/containerd/s/<sha256 of address/ns/id>`.
    pub fn shim_socket_for(&self, namespace: &str, id: &str) -> PathBuf {
        let key = self.socket().join(namespace).join(id);
        let digest = Sha256::digest(key.as_os_str().as_encoded_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Path::new(SHIM_SOCKET_DIR).join(hex)
    }

    /// A CRI client on this instance; pods default to the instance's log root and cgroup.
    /// It reconnects by itself after [`Containerd::restart`].
    pub fn cri(&self) -> Result<Cri, HarnessError> {
        Ok(Cri::connect(&self.socket(), &self.pod_log_root())?
            .with_default_cgroup_parent(self.cgroup_parent())
            .with_restart_counter(self.restarts.clone()))
    }

    /// Runs `ctr --address <socket> --namespace k8s.io <args>`; returns its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String, HarnessError> {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.socket())
            .args(["--namespace", K8S_NAMESPACE])
            .args(args);
        run(&mut cmd)
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(f) = fs::File::open(self.log_path()) else {
            return String::new();
        };
        let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops containerd (SIGTERM) and starts it again on the same directory, config and
    /// socket, leaving shims and their containers running.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        if self.cleaned {
            return Err(HarnessError::Config("restart after stop".to_owned()));
        }
        let started = Instant::now();
        self.terminate()?;
        self.spawn()?;
        self.restarts.fetch_add(1, Ordering::SeqCst);
        self.wait_ready()?;
        self.timings.restarts.push(started.elapsed());
        Ok(())
    }

    /// Stops containerd and removes everything the instance made (see the module docs).
    /// Idempotent; a failed cleanup can be retried.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        if self.cleaned {
            return Ok(());
        }
        let mut errors: Vec<String> = Vec::new();

        // 1. The kubelet's way out, while containerd still runs. Its failures are only
        //    reported: the forced steps below are what guarantees the outcome.
        let running = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if running {
            let graceful = Cri::connect(&self.socket(), &self.pod_log_root())
                .map(|cri| cri.remove_all_pods())
                .unwrap_or_else(|e| vec![e]);
            for e in graceful {
                eprintln!(
                    "hostgate-node-harness: cleanup of {}: {e}",
                    self.dir.display()
                );
            }
        }
        self.note_shim_sockets();

        // 2. containerd itself.
        if let Err(e) = self.terminate() {
            errors.push(e.to_string());
        }

        // 3. Containers: runc's, then anything left in the instance's cgroups.
        errors.extend(self.delete_runc_containers());
        errors.extend(
            self.kill_matching("processes in the instance's cgroups", |pid| {
                self.in_cgroup(pid)
            }),
        );

        // 4. Shims (and anything else running from the directory).
        self.note_shim_sockets();
        errors.extend(self.kill_matching("shims", |pid| self.is_shim(pid)));
        errors.extend(
            self.kill_matching("processes in the instance's cgroups", |pid| {
                self.in_cgroup(pid)
            }),
        );

        // 5. Mounts.
        errors.extend(self.unmount_all());

        // 6. Shim sockets in the shared directory.
        for socket in &self.shim_sockets {
            match fs::symlink_metadata(socket) {
                Ok(m) if m.file_type().is_socket() => {
                    if let Err(e) = fs::remove_file(socket) {
                        errors.push(format!("removing {}: {e}", socket.display()));
                    }
                }
                _ => {}
            }
        }

        // 7. cgroups.
        errors.extend(self.remove_cgroups());

        // 8. The directory.
        if self.dir.exists()
            && let Err(e) = fs::remove_dir_all(&self.dir)
        {
            errors.push(format!("removing {}: {e}", self.dir.display()));
        }

        if errors.is_empty() {
            self.cleaned = true;
            Ok(())
        } else {
            Err(HarnessError::Cleanup(errors))
        }
    }

    /// What of this instance still exists: live processes (containerd, shims, containers),
    /// mounts under its directory, shim sockets, cgroups and the directory itself. Empty after
    /// a successful [`Containerd::stop`].
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for pid in procfs::pids() {
            if pid == std::process::id().cast_signed() {
                continue;
            }
            if (self.is_shim(pid) || self.in_cgroup(pid))
                && let Some((state, start)) = procfs::stat(pid)
                && procfs::is_live(pid, start)
            {
                left.push(format!(
                    "process {pid} ({state}): {}",
                    procfs::cmdline(pid).join(" ")
                ));
            }
        }
        if let Ok(mounts) = procfs::mounts() {
            for m in mounts {
                if procfs::is_under(&m.mount_point, &self.dir) {
                    left.push(format!("mount {}", m.mount_point.display()));
                }
            }
        }
        for s in &self.shim_sockets {
            if s.exists() {
                left.push(format!("shim socket {}", s.display()));
            }
        }
        for dir in self.cgroup_dirs() {
            if dir.exists() {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
        if self.dir.exists() {
            left.push(format!("directory {}", self.dir.display()));
        }
        left
    }

    /// Every shim socket seen so far (bundles' `address` files and computed names).
    pub fn shim_sockets(&self) -> &BTreeSet<PathBuf> {
        &self.shim_sockets
    }

    fn render_config(&self) -> Result<String, HarnessError> {
        let d = |sub: &str| toml_str(&self.dir.join(sub).to_string_lossy());
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let mut c = String::new();
        let w = &mut c;
        // `writeln!` into a String cannot fail.
        let _ = writeln!(w, "# Written by hostgate-node-harness.\nversion = 2");
        let _ = writeln!(
            w,
            "root = {}\nstate = {}\ntemp = {}",
            d("root"),
            d("state"),
            d("tmp")
        );
        let _ = writeln!(w, "\n[grpc]\n  address = {}", d("containerd.sock"));
        let _ = writeln!(
            w,
            "\n[debug]\n  address = \"\"\n  level = {}",
            toml_str(&self.options.log_level)
        );
        let _ = writeln!(w, "\n[metrics]\n  address = \"\"");
        let _ = writeln!(
            w,
            "\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}",
            d("opt")
        );
        let _ = writeln!(w, "\n[{cri}]");
        let _ = writeln!(w, "  sandbox_image = {}", toml_str(PAUSE_IMAGE));
        let _ = writeln!(
            w,
            "  restrict_oom_score_adj = true\n  disable_apparmor = true"
        );
        let _ = writeln!(
            w,
            "\n[{cri}.cni]\n  bin_dir = {}\n  conf_dir = {}",
            d("cni/bin"),
            d("cni/net.d")
        );
        let _ = writeln!(
            w,
            "\n[{cri}.containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = \"runc\""
        );

        let runc_root = self.dir.join("runc").to_string_lossy().into_owned();
        let mut handlers =
            vec![RuntimeHandler::new("runc", RUNC_RUNTIME_TYPE).option("SystemdCgroup", false)];
        for h in &self.options.handlers {
            handlers.retain(|x| x.name != h.name);
            handlers.push(h.clone());
        }
        for h in &mut handlers {
            if h.runtime_type == RUNC_RUNTIME_TYPE {
                h.options
                    .entry("Root".to_owned())
                    .or_insert_with(|| runc_root.clone().into());
            }
        }
        for h in &handlers {
            let table = format!("{cri}.containerd.runtimes.{}", toml_str(&h.name));
            let _ = writeln!(w, "\n[{table}]");
            let _ = writeln!(w, "  runtime_type = {}", toml_str(&h.runtime_type));
            let _ = writeln!(w, "  pod_annotations = {}", toml_array(&h.pod_annotations));
            let _ = writeln!(
                w,
                "  container_annotations = {}",
                toml_array(&h.container_annotations)
            );
            // No table without options: containerd then passes no runtime options to the shim
            // at all, as with a handler an admin writes without one (an empty table still
            // sends an empty `runtimeoptions.v1.Options`, which other runtimes' shims refuse).
            if !h.options.is_empty() {
                let _ = writeln!(w, "\n[{table}.options]");
                for (k, v) in &h.options {
                    let _ = writeln!(w, "  {} = {}", toml_str(k), toml_value(v)?);
                }
            }
        }
        Ok(c)
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| HarnessError::io(format!("opening {}", self.log_path().display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| HarnessError::io("duplicating the log descriptor", e))?;
        let mut path: Vec<PathBuf> = self.options.path_prepend.clone();
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let path = std::env::join_paths(path)
            .map_err(|e| HarnessError::Config(format!("PATH entry: {e}")))?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(self.config_path())
            .arg("--log-level")
            .arg(&self.options.log_level)
            .env("PATH", path)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd
            .spawn()
            .map_err(|e| HarnessError::io("starting containerd", e))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls until the socket answers `Version` and reports `RuntimeReady`.
    fn wait_ready(&mut self) -> Result<Cri, HarnessError> {
        let deadline = self.options.start_timeout;
        let start = Instant::now();
        let mut last = String::from("no socket yet");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(HarnessError::ContainerdExited {
                    status: status.to_string(),
                    log: self.log_path(),
                    tail: self.log_tail(30),
                });
            }
            if self.socket().exists() {
                match self.cri().and_then(|cri| {
                    cri.version()?;
                    Ok((cri.runtime_ready()?, cri))
                }) {
                    Ok((true, cri)) => return Ok(cri),
                    Ok((false, _)) => last = "RuntimeReady is false".to_owned(),
                    Err(e) => last = e.to_string(),
                }
            }
            if start.elapsed() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!(
                        "containerd to answer on {} (last: {last}); log {}:\n{}",
                        self.socket().display(),
                        self.log_path().display(),
                        self.log_tail(30)
                    ),
                    after: deadline,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// CRI learns about imported images from containerd's events: wait until it lists both.
    fn wait_images(&self, cri: &Cri) -> Result<(), HarnessError> {
        let deadline = Duration::from_secs(30);
        let start = Instant::now();
        for image in [BUSYBOX_IMAGE, PAUSE_IMAGE] {
            while cri.image_status(image)?.is_none() {
                if start.elapsed() >= deadline {
                    return Err(HarnessError::Timeout {
                        what: format!("CRI to list the imported image {image}"),
                        after: deadline,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL; reaps the child.
    fn terminate(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(child.id().cast_signed());
        let _ = kill(pid, Signal::SIGTERM);
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if start.elapsed() < STOP_GRACE => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HarnessError::Timeout {
                        what: "containerd to exit on SIGTERM (killed)".to_owned(),
                        after: STOP_GRACE,
                    });
                }
                Err(e) => return Err(HarnessError::io("waiting for containerd", e)),
            }
        }
    }

    /// The bundle directories of the runtime v2 tasks: `state/io.containerd.runtime.v2.task/<ns>/<id>`.
    fn task_bundles(&self) -> Vec<(String, String, PathBuf)> {
        let base = self.state_dir().join("io.containerd.runtime.v2.task");
        let mut out = Vec::new();
        for ns in read_dir_names(&base) {
            for id in read_dir_names(&base.join(&ns)) {
                let path = base.join(&ns).join(&id);
                out.push((ns.clone(), id, path));
            }
        }
        out
    }

    /// Records the shim sockets of the current bundles (from `address` files and computed).
    fn note_shim_sockets(&mut self) {
        for (ns, id, bundle) in self.task_bundles() {
            if let Ok(address) = fs::read_to_string(bundle.join("address")) {
                let address = address.trim();
                let path = address.strip_prefix("unix://").unwrap_or(address);
                if !path.is_empty() {
                    self.shim_sockets.insert(PathBuf::from(path));
                }
            }
            self.shim_sockets.insert(self.shim_socket_for(&ns, &id));
            // A runc shim serves a whole pod under the id of its sandbox.
            if let Some(sandbox) = sandbox_id_of(&bundle) {
                self.shim_sockets
                    .insert(self.shim_socket_for(&ns, &sandbox));
            }
        }
    }

    fn delete_runc_containers(&self) -> Vec<String> {
        let root = self.runc_root();
        let mut errors = Vec::new();
        for id in read_dir_names(&root) {
            let mut cmd = Command::new("runc");
            cmd.arg("--root")
                .arg(&root)
                .args(["delete", "--force", &id]);
            if let Err(e) = run(&mut cmd)
                && root.join(&id).exists()
            {
                errors.push(e.to_string());
            }
        }
        errors
    }

    /// An argument names the instance's directory, or the working directory is under it.
    fn is_shim(&self, pid: i32) -> bool {
        let dir = self.dir.to_string_lossy();
        procfs::cmdline(pid)
            .iter()
            .any(|a| a.contains(dir.as_ref()))
            || procfs::cwd(pid).is_some_and(|cwd| procfs::is_under(&cwd, &self.dir))
    }

    /// The process is in a cgroup under the instance's cgroup parent (any hierarchy).
    fn in_cgroup(&self, pid: i32) -> bool {
        let parent = self.cgroup_parent();
        procfs::cgroup_paths(pid)
            .iter()
            .any(|p| p == &parent || p.starts_with(&format!("{parent}/")))
    }

    /// SIGKILLs every process `matches` selects (never this process), until none is alive or
    /// [`KILL_WAIT`] has passed.
    fn kill_matching(&self, what: &str, matches: impl Fn(i32) -> bool) -> Vec<String> {
        let me = std::process::id().cast_signed();
        let start = Instant::now();
        loop {
            let live: Vec<i32> = procfs::pids()
                .into_iter()
                .filter(|&pid| pid != me && matches(pid))
                .filter(|&pid| procfs::stat(pid).is_some_and(|(_, s)| procfs::is_live(pid, s)))
                .collect();
            if live.is_empty() {
                return Vec::new();
            }
            if start.elapsed() >= KILL_WAIT {
                return vec![format!("{what} still alive after SIGKILL: {live:?}")];
            }
            for pid in live {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lazily unmounts everything under the directory, deepest first, until nothing is left.
    fn unmount_all(&self) -> Vec<String> {
        let mut last_errors = Vec::new();
        for _ in 0..10 {
            let mut points: Vec<PathBuf> = match procfs::mounts() {
                Ok(m) => m
                    .into_iter()
                    .map(|m| m.mount_point)
                    .filter(|p| procfs::is_under(p, &self.dir))
                    .collect(),
                Err(e) => return vec![format!("reading mountinfo: {e}")],
            };
            if points.is_empty() {
                return Vec::new();
            }
            points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            points.dedup();
            last_errors.clear();
            for p in points {
                if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
                    last_errors.push(format!("unmounting {}: {e}", p.display()));
                }
            }
        }
        if last_errors.is_empty() {
            last_errors.push(format!("mounts remain under {}", self.dir.display()));
        }
        last_errors
    }

    /// `<hierarchy>/<cgroup parent>` in every mounted cgroup hierarchy.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let parent = self.cgroup_parent();
        procfs::cgroup_mounts()
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.mount_point.join(parent.trim_start_matches('/')))
            .collect()
    }

    fn remove_cgroups(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for dir in self.cgroup_dirs() {
            if !dir.exists() {
                continue;
            }
            let mut dirs = Vec::new();
            collect_dirs(&dir, &mut dirs);
            dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for d in dirs {
                // Freshly emptied groups can be busy for a moment while the kernel finishes.
                let start = Instant::now();
                loop {
                    match fs::remove_dir(&d) {
                        Ok(()) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                        Err(e) if start.elapsed() < KILL_WAIT => {
                            let _ = e;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            errors.push(format!("removing cgroup {}: {e}", d.display()));
                            break;
                        }
                    }
                }
            }
            // The shared parent goes when it is empty; another instance may still use it.
            if let Some(shared) = dir.parent() {
                let _ = fs::remove_dir(shared);
            }
        }
        errors
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "containerd log {} (last lines):\n{}",
                self.log_path().display(),
                self.log_tail(40)
            );
        }
        if let Err(e) = self.stop() {
            eprintln!("hostgate-node-harness: {e}");
        }
    }
}

/// The pod sandbox id a bundle's OCI spec names (`io.kubernetes.cri.sandbox-id`).
fn sandbox_id_of(bundle: &Path) -> Option<String> {
    let spec: Value = serde_json::from_slice(&fs::read(bundle.join("config.json")).ok()?).ok()?;
    spec["annotations"]["io.kubernetes.cri.sandbox-id"]
        .as_str()
        .map(str::to_owned)
}

fn read_dir_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Runs a command to completion; `Err` with its output when it fails.
fn run(cmd: &mut Command) -> Result<String, HarnessError> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io(format!("running {shown}"), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HarnessError::Command {
            command: shown,
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_array(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A JSON value as a TOML value (objects become inline tables); `null` has no TOML form.
fn toml_value(v: &Value) -> Result<String, HarnessError> {
    Ok(match v {
        Value::Null => {
            return Err(HarnessError::Config(
                "null in a runtime handler option".to_owned(),
            ));
        }
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => toml_str(s),
        Value::Array(items) => {
            let items: Result<Vec<String>, _> = items.iter().map(toml_value).collect();
            format!("[{}]", items?.join(", "))
        }
        Value::Object(map) => {
            let items: Result<Vec<String>, _> = map
                .iter()
                .map(|(k, v)| Ok(format!("{} = {}", toml_str(k), toml_value(v)?)))
                .collect();
            format!("{{{}}}", items?.join(", "))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance(options: ContainerdOptions) -> Containerd {
        Containerd {
            dir: PathBuf::from("/tmp/hg-ctrd-test"),
            options,
            child: None,
            timings: Timings::default(),
            shim_sockets: BTreeSet::new(),
            // Nothing to clean: the instance was never started.
            cleaned: true,
            restarts: Arc::default(),
        }
    }

    #[test]
    fn config_lists_handlers_and_private_paths() {
        let c = instance(
            ContainerdOptions::default().handler(
                RuntimeHandler::new("hostgate", "io.containerd.hostgate.v1")
                    .pod_annotation("hostgate.io/*")
                    .option("Debug", true)
                    .option("Args", json!(["a", "b\"c"])),
            ),
        );
        let text = c.render_config().expect("config");
        for line in [
            "root = \"/tmp/hg-ctrd-test/root\"",
            "  address = \"/tmp/hg-ctrd-test/containerd.sock\"",
            "  restrict_oom_score_adj = true",
            "  sandbox_image = \"docker.io/hostgate/pause:test\"",
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.\"runc\".options]",
            "  \"Root\" = \"/tmp/hg-ctrd-test/runc\"",
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.\"hostgate\"]",
            "  runtime_type = \"io.containerd.hostgate.v1\"",
            "  pod_annotations = [\"hostgate.io/*\"]",
            "  \"Args\" = [\"a\", \"b\\\"c\"]",
            "  \"Debug\" = true",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
    }

    #[test]
    fn null_options_are_refused() {
        let c = instance(
            ContainerdOptions::default()
                .handler(RuntimeHandler::new("x", "io.containerd.x.v1").option("K", Value::Null)),
        );
        assert!(matches!(c.render_config(), Err(HarnessError::Config(_))));
    }
}
