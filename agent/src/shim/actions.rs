//! The two actions containerd runs the shim binary for besides serving: `start` (once per
//! container, in its bundle directory) and `delete` (after a shim died), as containerd-shim's
//! [`Shim`] trait; and the task service it serves otherwise.

use std::env;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim::publisher::RemotePublisher;
use hostgate_core::chain::Chain;

use containerd_shim::{Config, DeleteResponse, ExitSignal, Flags, Shim, StartOpts};

use super::gate::{Gate, GateRefusal};
use super::node::{NodeDir, RunMode};
use super::request::{RuntimeRequest, TaskKind};
use super::runtime::NodeRuntime;
use super::service::Service;
use super::task::{Activity, RemoteEvents, TaskService};
use super::{RUNTIME_ID, rootfs};
use crate::job::{JobManager, JobName, PlatformJobManager, host_logical_processors};

/// How long no request may be in progress before the shim exits after its last task.
const QUIET_BEFORE_EXIT: std::time::Duration = std::time::Duration::from_millis(200);

/// The shim process: one per pod.
pub struct HostgateShim {
    namespace: String,
    id: String,
    /// The socket this shim serves on (`unix://…`; empty for the `start` and `delete` actions).
    socket: String,
    exit: Arc<ExitSignal>,
}

impl std::fmt::Debug for HostgateShim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostgateShim")
            .field("namespace", &self.namespace)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The node's gate, read from the node directory once.
pub fn node_gate() -> Gate {
    let node = NodeDir::from_env();
    let settings = match node.settings() {
        Ok(s) => s,
        Err(e) => {
            // Settings that do not parse: containers are refused (fail closed).
            let gate = Gate::new(
                Err(e),
                Default::default(),
                host_logical_processors(),
                cfg!(windows),
            );
            return gate;
        }
    };
    Gate::new(
        node.verifier(),
        settings,
        host_logical_processors(),
        cfg!(windows),
    )
}

fn job_manager(
    settings: &super::node::Settings,
) -> Result<PlatformJobManager, crate::job::JobError> {
    #[cfg(target_os = "linux")]
    {
        crate::job::sys::CgroupJobManager::new(crate::job::sys::CgroupConfig {
            parent: settings.cgroup_parent.clone().into(),
            ..crate::job::sys::CgroupConfig::default()
        })
    }
    #[cfg(windows)]
    {
        let _ = settings;
        Ok(PlatformJobManager::default())
    }
}

/// Refuses a container in the `start` action: one line on stderr (containerd puts it in the
/// container's `StartError` message), exit status 1.
fn refuse(what: &str, refusal: &GateRefusal) -> ! {
    eprintln!("hostgate refused {what}: {}", Chain(refusal));
    std::process::exit(1)
}

impl Shim for HostgateShim {
    type T = TaskService<NodeRuntime<PlatformJobManager>>;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Self {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            socket: args.socket.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let bundle = env::current_dir().map_err(|e| containerd_shim::Error::IoError {
            context: "bundle directory".to_owned(),
            err: e,
        })?;
        let request = match RuntimeRequest::read_bundle(&bundle) {
            Ok(r) => r,
            Err(e) => refuse(&format!("task {}", opts.id), &GateRefusal::Spec(e)),
        };
        // Everything but a pod sandbox is judged here (a spec not made by CRI is refused).
        if request.kind != Some(TaskKind::Sandbox)
            && let Err(refusal) = node_gate().admit(&request)
        {
            refuse(&request.describe(), &refusal);
        }
        let grouping = if request.pod.sandbox_id.is_empty() {
            opts.id.clone()
        } else {
            request.pod.sandbox_id.clone()
        };
        let own = grouping == opts.id;
        // A later container of a pod whose shim is up: answer with that shim's address rather
        // than spawning a process only to find the socket taken (what 0.11's spawn does).
        if !own {
            let address =
                containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
            if serves(&address) {
                write_file(&bundle.join("address"), &address)?;
                let sandbox_pid =
                    fs::read_to_string(bundle.with_file_name(&grouping).join("shim.pid"));
                if let Ok(pid) = sandbox_pid {
                    write_file(&bundle.join("shim.pid"), pid.trim())?;
                }
                return Ok(address);
            }
        }
        let (pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        // containerd reads these after a restart to reconnect to running shims; 0.11's
        // synchronous spawn writes neither for a new shim.
        write_file(&bundle.join("address"), &address)?;
        let shim_pid = if own {
            pid.to_string()
        } else {
            // The pod's shim serves this container; its pid is in the sandbox's bundle.
            fs::read_to_string(bundle.with_file_name(&grouping).join("shim.pid"))
                .unwrap_or_else(|_| pid.to_string())
        };
        write_file(&bundle.join("shim.pid"), shim_pid.trim())?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = env::current_dir().map_err(|e| containerd_shim::Error::IoError {
            context: "bundle directory".to_owned(),
            err: e,
        })?;
        cleanup_dead_task(&bundle, &self.id);
        Ok(DeleteResponse {
            pid: 0,
            exit_status: 128 + 9,
            exited_at: super::task_timestamp(SystemTime::now()),
            ..DeleteResponse::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
        // The crate removes the socket named in the bundle's `address` file, but containerd has
        // usually deleted the bundle by now: remove the socket this process was started with.
        #[cfg(unix)]
        if let Some(path) = self.socket.strip_prefix("unix://")
            && let Err(e) = fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("cannot remove the shim socket {path}: {e}");
        }
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let gate = node_gate();
        let settings = gate.settings().clone();
        let runtime = NodeRuntime::new(gate, Box::new(move || job_manager(&settings)));
        let exit = Arc::clone(&self.exit);
        let activity = Arc::new(Activity::default());
        let quiet = Arc::clone(&activity);
        let service = Service::new(
            runtime,
            Arc::new(RemoteEvents::new(
                publisher,
                self.namespace.clone(),
                Arc::clone(&activity),
            )),
            Box::new(move || {
                // Exit once the replies to containerd's last calls are out.
                let exit = Arc::clone(&exit);
                let quiet = Arc::clone(&quiet);
                let spawned = std::thread::Builder::new()
                    .name("shutdown".to_owned())
                    .spawn(move || {
                        quiet.wait_quiet(QUIET_BEFORE_EXIT);
                        exit.signal();
                    });
                if spawned.is_err() {
                    log::warn!("no shutdown thread: exiting now");
                }
            }),
        );
        TaskService::new(Arc::new(service), activity)
    }
}

fn write_file(path: &Path, text: &str) -> containerd_shim::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| containerd_shim::Error::IoError {
            context: format!("writing {}", path.display()),
            err: e,
        })
}

/// Whether a shim answers at `address` (`unix://…` on Unix; a named pipe on Windows).
fn serves(address: &str) -> bool {
    #[cfg(unix)]
    {
        std::os::unix::net::UnixStream::connect(address.trim_start_matches("unix://")).is_ok()
    }
    #[cfg(not(unix))]
    {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(address)
            .is_ok()
    }
}

/// What a shim that died (SIGKILL, OOM) leaves of task `id`, removed: the job and its
/// processes, the root file system mount, and the pod's socket if nothing serves it.
pub fn cleanup_dead_task(bundle: &Path, id: &str) {
    let gate_settings = NodeDir::from_env().settings().unwrap_or_default();
    if let Ok(name) = JobName::new(id) {
        match job_manager(&gate_settings).map(|m| m.remove_stale(&name)) {
            Ok(Ok(true)) => log::info!("removed the job of task {id}"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) | Err(e) => {
                log::warn!("cannot remove the job of task {id}: {}", Chain(&e))
            }
        }
    }
    let request = RuntimeRequest::read_bundle(bundle).ok();
    let target = super::instance::rootfs_dir(
        bundle,
        request.as_ref().and_then(|r| r.root_path.as_deref()),
    );
    if let Err(e) = rootfs::unmount(&target) {
        log::warn!("cannot unmount {}: {e}", target.display());
    }
    #[cfg(unix)]
    if let Ok(address) = fs::read_to_string(bundle.join("address"))
        && !serves(address.trim())
    {
        let _ = fs::remove_file(address.trim().trim_start_matches("unix://"));
    }
}

/// Delegate mode's `start` and `delete`: the gate (for `start`), then the platform's shim with
/// this process's arguments, standard streams and working directory; its exit status is ours.
/// `None`: not delegating (native mode, or another action).
fn delegated() -> Option<i32> {
    let action = std::env::args().next_back()?;
    if action != "start" && action != "delete" {
        return None;
    }
    let node = NodeDir::from_env();
    let settings = node.settings().ok()?;
    if settings.mode != RunMode::Delegate {
        return None;
    }
    if action == "start" {
        let bundle = env::current_dir().unwrap_or_default();
        let request = match RuntimeRequest::read_bundle(&bundle) {
            Ok(r) => r,
            Err(e) => refuse("task", &GateRefusal::Spec(e)),
        };
        if request.kind != Some(TaskKind::Sandbox)
            && let Err(refusal) = node_gate().admit(&request)
        {
            refuse(&request.describe(), &refusal);
        }
    }
    let status = std::process::Command::new(&settings.delegate_shim)
        .args(std::env::args_os().skip(1))
        .status();
    Some(match status {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!(
                "hostgate: cannot start the delegate shim {}: {e}",
                settings.delegate_shim
            );
            1
        }
    })
}

/// Runs the shim (the binary's `main`).
pub fn run() {
    if let Some(code) = delegated() {
        std::process::exit(code);
    }
    let config = Config {
        // The job layer waits for its own children (std's `Child`); containerd-shim's reaper
        // would take their exit statuses first.
        no_reaper: true,
        // Orphans of a container are killed with its job; they need not be reparented here.
        no_sub_reaper: true,
        ..Config::default()
    };
    containerd_shim::run::<HostgateShim>(RUNTIME_ID, Some(config));
}
