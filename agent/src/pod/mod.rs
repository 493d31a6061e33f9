//! The static pod runner behind `hostgate-agent run -f pod.yaml`, composed from
//! [`crate::verify`] and [`crate::container`]:
//!
//! 1. **prepare** ([`PodRunner::prepare`]): read the pod, verify its approval and re-evaluate
//!    the policies ([`crate::verify::Verifier::verify_pod`]), resolve every container as the
//!    kubelet would (environment, argv, mounts, limits: [`resolve`], [`crate::kubelet`]), check
//!    each resolved container against the approval as a runtime would
//!    ([`crate::verify::check_container`]), then create the pod's volumes ([`volumes`]);
//! 2. **run** ([`PodRunner::run`]): init containers one after the other, each to success, then
//!    the regular containers together, each in its own job via [`crate::container::Container`],
//!    restarted per `restartPolicy` with the kubelet's crash-loop back-off ([`restart`]);
//! 3. **stop**: a [`StopToken`] (the agent's `SIGTERM` / Ctrl-C) stops every running container
//!    with the pod's grace period; the pod directory is removed at the end.
//!
//! The result is a [`PodOutcome`], whose [`PodOutcome::exit_code`] is the agent's exit code;
//! errors carry theirs in [`RunError::exit_code`] (table in [`outcome`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hostgate_core::chain::Chain;
use hostgate_core::pod::{ContainerKind, ContainerRef, PodView, SpecPath};

use crate::container::{
    Container, ContainerError, ContainerSpec, LogOptions, LogSink, RuntimeOptions, Stop,
};
use crate::job::{JobError, JobLimits, JobManager, PlatformJobManager};
use crate::kubelet;
use crate::stop::StopToken;
use crate::verify::{
    LoadError, Refusal, RuntimeCheck, RuntimeContainer, RuntimeResources, Verified, Verifier,
    check_container,
};

pub mod manifest;
pub mod outcome;
pub mod resolve;
pub mod restart;
pub mod volumes;

pub use manifest::{ConfigSource, ManifestError, PodManifest};
pub use outcome::{ContainerResult, PodOutcome, RunSummary};
pub use resolve::{NodeInfo, PodIdentity, ResolveError};
pub use restart::{Backoff, RestartPolicy};
pub use volumes::{PodVolumes, VolumeError};

/// The kubelet's default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// Why a pod could not be run (as opposed to a pod that ran and failed: [`PodOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The manifest cannot be read.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The keys or policies cannot be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The pod is refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A field the agent cannot honour or a reference that does not resolve.
    #[error("invalid pod")]
    Resolve(#[from] ResolveError),
    /// A volume cannot be provided.
    #[error("invalid pod")]
    Volume(#[source] VolumeError),
    /// A volume could not be created or removed on this host.
    #[error("pod volumes")]
    VolumeIo(#[source] VolumeError),
    /// The pod directory could not be removed.
    #[error("cannot remove the pod directory {}", path.display())]
    Cleanup {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A container could not be prepared, run or cleaned up.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The job backend cannot be used.
    #[error("the job backend is not available")]
    Jobs(#[source] JobError),
}

impl RunError {
    /// The agent's exit code (see [`outcome`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Refused(r) => r.exit_code(),
            RunError::Manifest(_)
            | RunError::Load(_)
            | RunError::Resolve(_)
            | RunError::Volume(_) => outcome::EXIT_INVALID_INPUT,
            RunError::Container(e) if e.is_invalid_spec() => outcome::EXIT_INVALID_INPUT,
            RunError::VolumeIo(_)
            | RunError::Cleanup { .. }
            | RunError::Container(_)
            | RunError::Jobs(_) => outcome::EXIT_AGENT_ERROR,
        }
    }
}

impl From<VolumeError> for RunError {
    fn from(e: VolumeError) -> Self {
        if e.is_input() {
            RunError::Volume(e)
        } else {
            RunError::VolumeIo(e)
        }
    }
}

/// Settings of the runner.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Agent state: sandboxes in `<state_dir>/hpc/`, pod directories in `<state_dir>/pods/`.
    pub state_dir: PathBuf,
    /// CRI logs: `<log_dir>/<namespace>_<pod>/<container>/<restart>.log`.
    pub log_dir: PathBuf,
    /// `<dir>/<name>/<key>` files for ConfigMaps and Secrets not in the manifest.
    pub config_dir: Option<PathBuf>,
    /// Initial crash-loop back-off (kubelet: 10 s).
    pub backoff: Duration,
    /// Maximum crash-loop back-off (kubelet: 5 min).
    pub backoff_max: Duration,
    /// Overrides the pod's `terminationGracePeriodSeconds`.
    pub grace_period: Option<Duration>,
    /// A process limit for every container's job (pods have no such field).
    pub max_processes: Option<u32>,
    /// Links at absolute Linux mount destinations (see [`crate::container::layout`]).
    pub host_links: bool,
    /// Read-only bind mounts for read-only volumes.
    pub bind_read_only: bool,
    /// This node.
    pub node: NodeInfo,
    /// Where container output is shown besides the log files.
    pub sink: Option<Arc<dyn LogSink>>,
}

impl RunnerOptions {
    /// Defaults under `state_dir` and `log_dir`, for a node described by `node`.
    pub fn new(state_dir: impl Into<PathBuf>, log_dir: impl Into<PathBuf>, node: NodeInfo) -> Self {
        Self {
            state_dir: state_dir.into(),
            log_dir: log_dir.into(),
            config_dir: None,
            backoff: restart::DEFAULT_BACKOFF,
            backoff_max: restart::DEFAULT_BACKOFF_MAX,
            grace_period: None,
            max_processes: None,
            host_links: true,
            bind_read_only: true,
            node,
            sink: None,
        }
    }
}

/// One container, resolved and checked, ready to start (any number of times).
#[derive(Debug, Clone)]
pub struct PreparedContainer {
    /// The container name.
    pub name: String,
    /// The spec; its `id` is completed per run by [`PodRunner::start`].
    pub spec: ContainerSpec,
}

/// A verified, resolved pod with its volumes created. Dropping it removes the pod directory.
#[derive(Debug)]
pub struct PreparedPod {
    /// Who the pod is.
    pub identity: PodIdentity,
    /// The verified approval and the local decision.
    pub verified: Verified,
    /// `spec.restartPolicy`.
    pub restart_policy: RestartPolicy,
    /// The grace period for stops.
    pub grace_period: Duration,
    /// Init containers, in order.
    pub init_containers: Vec<PreparedContainer>,
    /// Regular containers.
    pub containers: Vec<PreparedContainer>,
    run: String,
    volumes: PodVolumes,
}

impl PreparedPod {
    /// The pod's directory (volumes), removed with the pod.
    pub fn pod_dir(&self) -> &Path {
        self.volumes.pod_dir()
    }

    /// Removes the pod directory now (dropping does it too, reporting nothing).
    pub fn cleanup(mut self) -> Result<(), RunError> {
        let path = self.volumes.pod_dir().to_owned();
        self.volumes
            .remove()
            .map_err(|source| RunError::Cleanup { path, source })
    }
}

/// A unique run id per prepared pod: the agent's pid and a counter.
fn next_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{n:x}", std::process::id())
}

/// Runs static pods (see the module docs), with the platform's job backend unless told
/// otherwise (tests run it on a fake: `job::fake`, feature `fake-jobs`).
#[derive(Debug)]
pub struct PodRunner<M = PlatformJobManager> {
    verifier: Verifier,
    manager: Arc<M>,
    options: RunnerOptions,
    runtime: RuntimeOptions,
}

impl<M> PodRunner<M>
where
    M: JobManager,
    M::Job: 'static,
{
    /// A runner with these keys and policies, job backend and options.
    pub fn new(verifier: Verifier, manager: Arc<M>, options: RunnerOptions) -> Self {
        let mut runtime = RuntimeOptions::new(options.state_dir.join("hpc"));
        runtime.host_links = options.host_links;
        runtime.bind_read_only = options.bind_read_only;
        Self {
            verifier,
            manager,
            options,
            runtime,
        }
    }

    /// The job backend.
    pub fn manager(&self) -> &M {
        &self.manager
    }

    /// Removes what agents that died left in the state directory: sandboxes (with their jobs,
    /// mounts and host links) and pod directories whose run id names a process that no longer
    /// exists. Returns the entries removed; failures are logged and skipped.
    pub fn remove_leftovers(&self) -> Vec<String> {
        let mut removed = Vec::new();
        let hpc = self.options.state_dir.join("hpc");
        for (name, path) in dead_entries(&hpc, |n| n.rsplit('.').nth(1)) {
            let job = crate::job::JobName::new(name.as_str());
            let job_result = match job {
                Ok(job) => self.manager.remove_stale(&job).map(|_| ()),
                Err(e) => Err(e.into()),
            };
            match job_result.map_err(|e| e.to_string()).and_then(|()| {
                crate::container::sandbox::Sandbox::remove_leftover(&path)
                    .map_err(|e| e.to_string())
            }) {
                Ok(()) => removed.push(format!("hpc/{name}")),
                Err(e) => {
                    tracing::warn!(sandbox = %path.display(), error = %e, "cannot remove a leftover sandbox")
                }
            }
        }
        let pods = self.options.state_dir.join("pods");
        for (name, path) in dead_entries(&pods, |n| n.rsplit_once('_').map(|(_, run)| run)) {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => removed.push(format!("pods/{name}")),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove a leftover pod directory")
                }
            }
        }
        for entry in &removed {
            tracing::info!("removed {entry}, left by an agent that is gone");
        }
        removed
    }

    /// Reads, prepares and runs the pod of a manifest file (after [`PodRunner::remove_leftovers`]).
    pub fn run_file(&self, path: &Path, stop: &StopToken) -> Result<PodOutcome, RunError> {
        self.remove_leftovers();
        let manifest = PodManifest::read(path)?;
        let pod = self.prepare(&manifest)?;
        self.run(pod, stop)
    }

    /// Verifies and resolves the pod, then creates its volumes (see the module docs).
    pub fn prepare(&self, manifest: &PodManifest) -> Result<PreparedPod, RunError> {
        let pod = &manifest.pod;
        let identity = PodIdentity::of(pod)?;
        let spec = pod.spec.as_ref().ok_or_else(|| ResolveError::Invalid {
            path: "spec".to_owned(),
            message: "Required value".to_owned(),
        })?;
        let view = PodView::new(spec, Some(&pod.metadata), SpecPath::POD);
        let verified = self.verifier.verify_pod(&view, &identity.namespace)?;
        for finding in verified
            .decision
            .warnings
            .iter()
            .chain(&verified.decision.audits)
        {
            tracing::warn!(pod = %identity.name, "{finding}");
        }

        let restart_policy = RestartPolicy::parse(spec.restart_policy.as_deref()).map_err(|m| {
            ResolveError::Invalid {
                path: "spec.restartPolicy".to_owned(),
                message: m,
            }
        })?;
        let grace_period = self.options.grace_period.unwrap_or_else(|| {
            spec.termination_grace_period_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(DEFAULT_GRACE_PERIOD, Duration::from_secs)
        });
        let run = next_run_id();
        let pod_dir = self
            .options
            .state_dir
            .join("pods")
            .join(format!("{}_{}_{run}", identity.namespace, identity.name));
        let mut volumes = PodVolumes::plan(&pod_dir, spec)?;
        let config = ConfigSource::new(manifest, self.options.config_dir.clone());
        let check = RuntimeCheck::new(self.manager.host_logical_processors());

        let mut init_containers = Vec::new();
        let mut containers = Vec::new();
        for c in view.runnable_containers() {
            let prepared = self.prepare_container(
                &c, &view, manifest, &identity, &verified, &volumes, &config, &check,
            )?;
            match c.kind {
                ContainerKind::Init => init_containers.push(prepared),
                _ => containers.push(prepared),
            }
        }
        if let Some(sidecar) = spec
            .init_containers
            .iter()
            .flatten()
            .position(|c| c.restart_policy.is_some())
        {
            return Err(ResolveError::Invalid {
                path: format!("spec.initContainers[{sidecar}].restartPolicy"),
                message: "sidecar init containers are not supported by the node agent".to_owned(),
            }
            .into());
        }
        volumes.create(&config)?;
        Ok(PreparedPod {
            identity,
            verified,
            restart_policy,
            grace_period,
            init_containers,
            containers,
            run,
            volumes,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare_container(
        &self,
        c: &ContainerRef<'_>,
        view: &PodView<'_>,
        manifest: &PodManifest,
        identity: &PodIdentity,
        verified: &Verified,
        volumes: &PodVolumes,
        config: &ConfigSource,
        check: &RuntimeCheck,
    ) -> Result<PreparedContainer, RunError> {
        let path = c.path(view.path);
        resolve::check_container_name(c, &path)?;
        let env = resolve::environment(
            c,
            &path,
            &manifest.pod,
            identity,
            &self.options.node,
            config,
        )?;
        let vars = env.iter().cloned().collect();
        let args = kubelet::process_args(c.command, c.args, &vars);
        if c.command.is_empty() {
            return Err(ResolveError::Invalid {
                path: format!("{path}.command"),
                message: "Required value: the node agent ignores images, so the program must be given in command".to_owned(),
            }
            .into());
        }
        let (mounts, runtime_mounts) = resolve::mounts(c, &path, volumes)?;
        let limits_map = c
            .resources
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let resources = kubelet::oci_resources(&limits_map, self.manager.host_logical_processors())
            .map_err(|e| ResolveError::Invalid {
                path: format!("{path}.resources"),
                message: e.to_string(),
            })?;
        let mut limits =
            JobLimits::from_oci_windows(&resources, self.manager.host_logical_processors())
                .map_err(|e| ResolveError::Invalid {
                    path: format!("{path}.resources.limits"),
                    message: e.to_string(),
                })?;
        limits.max_processes = self.options.max_processes;
        let user = view.effective_run_as_user_name(c);
        // The same comparison a runtime shim makes with what it is asked to run.
        check_container(
            &verified.approval,
            &RuntimeContainer {
                name: c.name,
                args: &args,
                env: &env,
                user,
                mounts: &runtime_mounts,
                resources: RuntimeResources::Windows(resources),
            },
            check,
        )?;
        let spec = ContainerSpec {
            id: String::new(),
            name: c.name.to_owned(),
            args,
            env,
            working_dir: c.working_dir.map(str::to_owned),
            mounts,
            limits,
            user: user.map(str::to_owned),
            rootfs: None,
        };
        let probe = ContainerSpec {
            id: "probe".to_owned(),
            ..spec.clone()
        };
        probe.validate()?;
        Ok(PreparedContainer {
            name: c.name.to_owned(),
            spec,
        })
    }

    /// The CRI log file of a container run.
    pub fn log_path(&self, pod: &PreparedPod, container: &str, restart: u32) -> PathBuf {
        self.options
            .log_dir
            .join(format!("{}_{}", pod.identity.namespace, pod.identity.name))
            .join(container)
            .join(format!("{restart}.log"))
    }

    /// Starts one run of a prepared container.
    pub fn start(
        &self,
        pod: &PreparedPod,
        c: &PreparedContainer,
        restart: u32,
    ) -> Result<Container<M::Job>, ContainerError> {
        let mut spec = c.spec.clone();
        spec.id = resolve::container_id(&pod.identity, &c.name, &pod.run, restart);
        let mut runtime = self.runtime.clone();
        runtime.grace_period = pod.grace_period;
        Container::start(
            self.manager.as_ref(),
            spec,
            &runtime,
            LogOptions {
                file: Some(self.log_path(pod, &c.name, restart)),
                sink: self.options.sink.clone(),
                stdio: None,
            },
        )
    }

    /// Runs a prepared pod to its end (or until `stop` fires), then removes its directory.
    pub fn run(&self, pod: PreparedPod, stop: &StopToken) -> Result<PodOutcome, RunError> {
        let pod_stop = StopToken::new();
        let forward = {
            let p = pod_stop.clone();
            stop.on_stop(move |r| p.stop(r))
        };
        let fatal: Mutex<Option<RunError>> = Mutex::new(None);
        let fail = |e: RunError| {
            tracing::error!(pod = %pod.identity.name, error = %Chain(&e), "stopping the pod");
            fatal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(e);
            pod_stop.stop(crate::stop::StopReason::Requested);
        };

        let mut results = Vec::new();
        let mut init_ok = true;
        for c in &pod.init_containers {
            if !init_ok || pod_stop.is_stopped() {
                results.push(not_run(c, true));
                continue;
            }
            match self.run_container(&pod, c, true, &pod_stop) {
                Ok(r) => {
                    init_ok = r.succeeded();
                    results.push(r);
                }
                Err(e) => {
                    fail(e);
                    init_ok = false;
                    results.push(not_run(c, true));
                }
            }
        }
        if init_ok && !pod_stop.is_stopped() {
            let regular: Vec<ContainerResult> = std::thread::scope(|scope| {
                let handles: Vec<_> = pod
                    .containers
                    .iter()
                    .map(|c| {
                        let pod = &pod;
                        let pod_stop = &pod_stop;
                        scope.spawn(move || self.run_container(pod, c, false, pod_stop))
                    })
                    .collect();
                handles
                    .into_iter()
                    .zip(&pod.containers)
                    .map(|(h, c)| match h.join() {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => {
                            fail(e);
                            not_run(c, false)
                        }
                        Err(_) => {
                            pod_stop.stop(crate::stop::StopReason::Requested);
                            not_run(c, false)
                        }
                    })
                    .collect()
            });
            results.extend(regular);
        } else {
            results.extend(pod.containers.iter().map(|c| not_run(c, false)));
        }
        drop(forward);
        let restart_policy = pod.restart_policy;
        let cleaned = pod.cleanup();
        if let Some(e) = fatal.into_inner().unwrap_or_else(PoisonError::into_inner) {
            return Err(e);
        }
        cleaned?;
        Ok(PodOutcome {
            restart_policy,
            containers: results,
            stopped_by: stop.reason(),
        })
    }

    /// One container over all its runs: start, wait, restart per policy with back-off.
    fn run_container(
        &self,
        pod: &PreparedPod,
        c: &PreparedContainer,
        init: bool,
        stop: &StopToken,
    ) -> Result<ContainerResult, RunError> {
        let mut backoff = Backoff::new(self.options.backoff, self.options.backoff_max);
        let mut restarts = 0u32;
        let mut last = None;
        let kind = if init { "init container" } else { "container" };
        loop {
            if stop.is_stopped() {
                break;
            }
            let started = Instant::now();
            let summary = match self.start(pod, c, restarts) {
                Ok(container) => {
                    tracing::info!(pod = %pod.identity.name, "{kind} {:?} started (pid {}, restart {restarts})", c.name, container.pid());
                    let stopper = container.stopper();
                    let grace = pod.grace_period;
                    let subscription = stop.on_stop(move |_| stopper.stop(grace));
                    let exit = container.wait();
                    drop(subscription);
                    let exit = exit?;
                    RunSummary {
                        exit_code: exit.exit_code,
                        reason: exit.reason(),
                    }
                }
                Err(e) if e.is_start_failure() => {
                    tracing::warn!(pod = %pod.identity.name, error = %Chain(&e), "{kind} {:?} could not start", c.name);
                    RunSummary {
                        exit_code: 128,
                        reason: "StartError",
                    }
                }
                Err(e) => return Err(e.into()),
            };
            tracing::info!(
                pod = %pod.identity.name,
                "{kind} {:?} exited: {} (exit code {})",
                c.name,
                summary.reason,
                summary.exit_code
            );
            let code = summary.exit_code;
            last = Some(summary);
            if stop.is_stopped() {
                break;
            }
            let again = if init {
                pod.restart_policy.restarts_init(code)
            } else {
                pod.restart_policy.restarts(code)
            };
            if !again {
                break;
            }
            let delay = backoff.next_delay(started.elapsed());
            tracing::info!(
                pod = %pod.identity.name,
                "back-off {delay:?} before restarting {kind} {:?} (restartPolicy {})",
                c.name,
                pod.restart_policy.as_str()
            );
            if stop.sleep(delay) {
                break;
            }
            restarts += 1;
        }
        Ok(ContainerResult {
            name: c.name.clone(),
            init,
            restarts,
            last,
        })
    }
}

/// The pid of the agent that made a run id (`<pid hex>-<counter>`).
fn run_pid(run: &str) -> Option<u32> {
    let (pid, counter) = run.split_once('-')?;
    counter.parse::<u64>().ok()?;
    u32::from_str_radix(pid, 16).ok()
}

/// Whether the process that made a run id is gone (Linux: no `/proc/<pid>`). A recycled pid
/// keeps an entry alive: never removes what a live agent may own.
fn run_is_dead(run: &str) -> bool {
    match run_pid(run) {
        Some(pid) if cfg!(target_os = "linux") && pid != 0 => {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

/// The entries of `dir` whose run id (found by `run_of`) belongs to a dead agent.
fn dead_entries(dir: &Path, run_of: impl Fn(&str) -> Option<&str>) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            run_of(&name)
                .is_some_and(run_is_dead)
                .then(|| (name, e.path()))
        })
        .collect()
}

fn not_run(c: &PreparedContainer, init: bool) -> ContainerResult {
    ContainerResult {
        name: c.name.clone(),
        init,
        restarts: 0,
        last: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids() {
        let run = next_run_id();
        assert_eq!(run_pid(&run), Some(std::process::id()));
        assert!(!run_is_dead(&run), "our own runs are alive");
        assert_eq!(run_pid("ff-3"), Some(255));
        for bad in ["", "ff", "zz-1", "ff-x", "-1"] {
            assert_eq!(run_pid(bad), None, "{bad}");
            assert!(!run_is_dead(bad));
        }
        // pid_max is at most 2^22 on Linux: this one cannot exist.
        assert!(run_is_dead("7fffffff-0") || !cfg!(target_os = "linux"));
        let tmp = tempfile::tempdir().expect("tempdir");
        for name in [
            "ns_pod_c.7fffffff-0.0",
            "ns_pod_c.0-1.0",
            "bad",
            "ns_p.o.d_c.7fffffff-2.3",
        ] {
            std::fs::create_dir(tmp.path().join(name)).expect("mkdir");
        }
        let mut dead: Vec<String> = dead_entries(tmp.path(), |n| n.rsplit('.').nth(1))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        dead.sort();
        assert_eq!(dead, ["ns_p.o.d_c.7fffffff-2.3", "ns_pod_c.7fffffff-0.0"]);
    }
}
