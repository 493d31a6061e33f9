//! A blocking CRI v1 client with helpers shaped like the kubelet's calls.
//!
//! [`Cri`] owns a small current-thread tokio runtime and a tonic channel to containerd's Unix
//! socket, so plain `#[test]` functions can call it (it must not be used from inside another
//! tokio runtime: `block_on` would panic). Every call carries a gRPC deadline.
//!
//! The helpers build requests the way the kubelet builds them for a **host-network** pod, the
//! only kind this harness runs (no CNI is configured):
//!
//! - the sandbox's namespace options say `network: NODE`, `pid: CONTAINER`, `ipc: POD`, and the
//!   containers repeat them, as the kubelet copies the pod's onto every container;
//! - the sandbox sets **no hostname**: the kubelet leaves it empty for host-network pods, and
//!   containerd refuses a hostname in a sandbox that shares the host's UTS namespace;
//! - pods get the kubelet's `io.kubernetes.pod.*` labels and a log directory
//!   `<log root>/<namespace>_<name>_<uid>` that the client creates (the kubelet does the same);
//!   each container logs to `<name>/<attempt>.log` in it unless told otherwise;
//! - pods get a cgroup parent (the kubelet always sends one); a client made by
//!   [`Containerd::cri`](crate::Containerd::cri) defaults it to the instance's own group, which
//!   is how cleanup finds every process of the instance, whatever runtime started it.
//!
//! [`Cri::runtime_client`], [`Cri::image_client`] and [`Cri::block_on`] give the generated
//! clients for anything the helpers do not cover.

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as api;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::HarnessError;
use crate::image::BUSYBOX_IMAGE;
use crate::log::{Stream, read_cri_log};

/// Deadline of a CRI call (StopContainer adds its own grace period).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How often [`Cri::wait_container_exited`] asks.
const POLL: Duration = Duration::from_millis(20);

/// CRI `NamespaceMode` values.
const NS_POD: i32 = api::NamespaceMode::Pod as i32;
const NS_CONTAINER: i32 = api::NamespaceMode::Container as i32;
const NS_NODE: i32 = api::NamespaceMode::Node as i32;

/// A blocking CRI client over a Unix socket.
#[derive(Debug)]
pub struct Cri {
    rt: tokio::runtime::Runtime,
    channel: Mutex<Channel>,
    /// With a client of a [`Containerd`](crate::Containerd): its restart counter, and the value
    /// when `channel` was made.
    restarts: Option<(Arc<AtomicU64>, AtomicU64)>,
    socket: PathBuf,
    log_root: PathBuf,
    cgroup_parent: Option<String>,
}

impl Cri {
    /// Connects to the CRI socket at `socket`; pods' default log directories go under
    /// `log_root`.
    ///
    /// A connection does not survive a restart of containerd (the first call after it fails
    /// with a broken pipe); clients made by [`Containerd::cri`](crate::Containerd::cri)
    /// reconnect by themselves after [`Containerd::restart`](crate::Containerd::restart),
    /// others call [`Cri::reconnect`].
    pub fn connect(socket: &Path, log_root: &Path) -> Result<Self, HarnessError> {
        // One worker thread drives the connection between calls: a current-thread runtime
        // only runs it inside `block_on`, so an idle client never answers containerd's GOAWAY
        // and a SIGTERM'd containerd waits for it (until killed) instead of exiting.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| HarnessError::io("building a tokio runtime", e))?;
        let channel = rt
            .block_on(endpoint().connect_with_connector(unix_connector(socket)))
            .map_err(|source| HarnessError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        Ok(Self {
            rt,
            channel: Mutex::new(channel),
            restarts: None,
            socket: socket.to_path_buf(),
            log_root: log_root.to_path_buf(),
            cgroup_parent: None,
        })
    }

    /// Follows `restarts`: whenever it has changed since the last call, the next call
    /// reconnects first.
    pub(crate) fn with_restart_counter(mut self, restarts: Arc<AtomicU64>) -> Self {
        let seen = AtomicU64::new(restarts.load(Ordering::SeqCst));
        self.restarts = Some((restarts, seen));
        self
    }

    /// Replaces the connection by a new one, made on the next call.
    pub fn reconnect(&self) {
        let _runtime = self.rt.enter();
        let channel = endpoint().connect_with_connector_lazy(unix_connector(&self.socket));
        *self.channel.lock().unwrap_or_else(PoisonError::into_inner) = channel;
    }

    fn channel(&self) -> Channel {
        if let Some((counter, seen)) = &self.restarts {
            let now = counter.load(Ordering::SeqCst);
            if seen.swap(now, Ordering::SeqCst) != now {
                self.reconnect();
            }
        }
        self.channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the cgroup parent of pods whose [`PodSpec::cgroup_parent`] is `None`.
    pub fn with_default_cgroup_parent(mut self, parent: impl Into<String>) -> Self {
        self.cgroup_parent = Some(parent.into());
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn log_root(&self) -> &Path {
        &self.log_root
    }

    /// The generated runtime-service client on this connection (use with [`Cri::block_on`]).
    pub fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel())
    }

    /// The generated image-service client on this connection (use with [`Cri::block_on`]).
    pub fn image_client(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel())
    }

    /// Runs `f` to completion on the client's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn unary<Req, Resp, Fut>(
        &self,
        call: &'static str,
        req: Req,
        timeout: Duration,
        f: impl FnOnce(tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, HarnessError>
    where
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(req);
        request.set_timeout(timeout);
        self.rt
            .block_on(f(request))
            .map(tonic::Response::into_inner)
            .map_err(|s| HarnessError::cri(call, s))
    }

    pub fn version(&self) -> Result<api::VersionResponse, HarnessError> {
        let mut c = self.runtime_client();
        let req = api::VersionRequest {
            version: "v1".to_owned(),
        };
        self.unary("Version", req, CALL_TIMEOUT, |r| async move {
            c.version(r).await
        })
    }

    pub fn status(&self) -> Result<api::StatusResponse, HarnessError> {
        let mut c = self.runtime_client();
        let req = api::StatusRequest { verbose: false };
        self.unary(
            "Status",
            req,
            CALL_TIMEOUT,
            |r| async move { c.status(r).await },
        )
    }

    /// Whether the runtime reports the condition `RuntimeReady` (`NetworkReady` is false here:
    /// no CNI, which host-network pods do not need).
    pub fn runtime_ready(&self) -> Result<bool, HarnessError> {
        let status = self.status()?;
        Ok(status.status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.r#type == "RuntimeReady" && c.status)
        }))
    }

    /// The image as CRI knows it, `None` when it does not.
    pub fn image_status(&self, image: &str) -> Result<Option<api::Image>, HarnessError> {
        let mut c = self.image_client();
        let req = api::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        let resp = self.unary("ImageStatus", req, CALL_TIMEOUT, |r| async move {
            c.image_status(r).await
        })?;
        Ok(resp.image)
    }

    /// The `PodSandboxConfig` the kubelet would send for `spec` (see the module docs).
    pub fn pod_sandbox_config(&self, spec: &PodSpec) -> api::PodSandboxConfig {
        let mut labels: std::collections::HashMap<String, String> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert("io.kubernetes.pod.name".into(), spec.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), spec.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), spec.uid.clone());
        let log_directory = spec.log_directory.clone().unwrap_or_else(|| {
            self.log_root
                .join(format!("{}_{}_{}", spec.namespace, spec.name, spec.uid))
        });
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: spec.name.clone(),
                uid: spec.uid.clone(),
                namespace: spec.namespace.clone(),
                attempt: spec.attempt,
            }),
            hostname: String::new(),
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels,
            annotations: spec
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: spec
                    .cgroup_parent
                    .clone()
                    .or_else(|| self.cgroup_parent.clone())
                    .unwrap_or_default(),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(host_network_namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `RunPodSandbox` for `spec`, with its handler; creates the log directory first.
    pub fn run_pod_sandbox(&self, spec: &PodSpec) -> Result<Pod, HarnessError> {
        self.run_pod_sandbox_with(self.pod_sandbox_config(spec), &spec.runtime_handler)
    }

    /// `RunPodSandbox` with a config built (or altered) by the caller.
    pub fn run_pod_sandbox_with(
        &self,
        config: api::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<Pod, HarnessError> {
        if !config.log_directory.is_empty() {
            fs::create_dir_all(&config.log_directory)
                .map_err(|e| HarnessError::io(format!("creating {}", config.log_directory), e))?;
        }
        let mut c = self.runtime_client();
        let req = api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: runtime_handler.to_owned(),
        };
        let resp = self.unary("RunPodSandbox", req, CALL_TIMEOUT, |r| async move {
            c.run_pod_sandbox(r).await
        })?;
        Ok(Pod {
            id: resp.pod_sandbox_id,
            config,
            runtime_handler: runtime_handler.to_owned(),
        })
    }

    /// The `ContainerConfig` the kubelet would send for `spec` in a pod with `sandbox_config`.
    pub fn container_config(
        &self,
        spec: &ContainerSpec,
        sandbox_config: &api::PodSandboxConfig,
    ) -> api::ContainerConfig {
        let mut labels: std::collections::HashMap<String, String> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert("io.kubernetes.container.name".into(), spec.name.clone());
        if let Some(m) = &sandbox_config.metadata {
            labels.insert("io.kubernetes.pod.name".into(), m.name.clone());
            labels.insert("io.kubernetes.pod.namespace".into(), m.namespace.clone());
            labels.insert("io.kubernetes.pod.uid".into(), m.uid.clone());
        }
        let namespaces = sandbox_config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_else(host_network_namespaces);
        let r = &spec.resources;
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: spec.name.clone(),
                attempt: spec.attempt,
            }),
            image: Some(image_spec(&spec.image)),
            command: spec.command.clone(),
            args: spec.args.clone(),
            working_dir: spec.working_dir.clone().unwrap_or_default(),
            envs: spec
                .env
                .iter()
                .map(|(key, value)| api::KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            mounts: spec
                .mounts
                .iter()
                .map(|m| api::Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.to_string_lossy().into_owned(),
                    readonly: m.readonly,
                    ..Default::default()
                })
                .collect(),
            labels,
            annotations: spec
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            log_path: spec
                .log_path
                .clone()
                .unwrap_or_else(|| format!("{}/{}.log", spec.name, spec.attempt)),
            linux: Some(api::LinuxContainerConfig {
                resources: Some(api::LinuxContainerResources {
                    cpu_period: r.cpu_period.unwrap_or(0),
                    cpu_quota: r.cpu_quota.unwrap_or(0),
                    cpu_shares: r.cpu_shares.unwrap_or(0),
                    memory_limit_in_bytes: r.memory_limit_bytes.unwrap_or(0),
                    memory_swap_limit_in_bytes: r.memory_swap_limit_bytes.unwrap_or(0),
                    ..Default::default()
                }),
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// `CreateContainer` for `spec` in the sandbox `sandbox_id`; returns the container id.
    pub fn create_container(
        &self,
        sandbox_id: &str,
        spec: &ContainerSpec,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<String, HarnessError> {
        self.create_container_with(
            sandbox_id,
            self.container_config(spec, sandbox_config),
            sandbox_config,
        )
    }

    /// `CreateContainer` with a config built (or altered) by the caller.
    pub fn create_container_with(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<String, HarnessError> {
        let mut c = self.runtime_client();
        let req = api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config.clone()),
        };
        let resp = self.unary("CreateContainer", req, CALL_TIMEOUT, |r| async move {
            c.create_container(r).await
        })?;
        Ok(resp.container_id)
    }

    /// `CreateContainer` then `StartContainer`, as the kubelet does for each container.
    pub fn run_container(&self, pod: &Pod, spec: &ContainerSpec) -> Result<String, HarnessError> {
        let id = self.create_container(&pod.id, spec, &pod.config)?;
        self.start_container(&id)?;
        Ok(id)
    }

    pub fn start_container(&self, id: &str) -> Result<(), HarnessError> {
        let mut c = self.runtime_client();
        let req = api::StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.unary("StartContainer", req, CALL_TIMEOUT, |r| async move {
            c.start_container(r).await
        })
        .map(drop)
    }

    /// `ContainerStatus`, summarised (the raw answer is in [`ContainerInfo::raw`]).
    pub fn container_status(&self, id: &str) -> Result<ContainerInfo, HarnessError> {
        let mut c = self.runtime_client();
        let req = api::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        let resp = self.unary("ContainerStatus", req, CALL_TIMEOUT, |r| async move {
            c.container_status(r).await
        })?;
        let raw = resp.status.ok_or(HarnessError::Protocol {
            call: "ContainerStatus",
            problem: format!("no status for {id}"),
        })?;
        Ok(ContainerInfo::from_raw(raw))
    }

    /// `StopContainer` with the kubelet's grace period in seconds (0: kill at once).
    pub fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<(), HarnessError> {
        let mut c = self.runtime_client();
        let req = api::StopContainerRequest {
            container_id: id.to_owned(),
            timeout: timeout_seconds,
        };
        let grace = Duration::from_secs(timeout_seconds.max(0).unsigned_abs());
        self.unary("StopContainer", req, CALL_TIMEOUT + grace, |r| async move {
            c.stop_container(r).await
        })
        .map(drop)
    }

    pub fn remove_container(&self, id: &str) -> Result<(), HarnessError> {
        let mut c = self.runtime_client();
        let req = api::RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.unary("RemoveContainer", req, CALL_TIMEOUT, |r| async move {
            c.remove_container(r).await
        })
        .map(drop)
    }

    pub fn stop_pod_sandbox(&self, id: &str) -> Result<(), HarnessError> {
        let mut c = self.runtime_client();
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.unary("StopPodSandbox", req, CALL_TIMEOUT, |r| async move {
            c.stop_pod_sandbox(r).await
        })
        .map(drop)
    }

    pub fn remove_pod_sandbox(&self, id: &str) -> Result<(), HarnessError> {
        let mut c = self.runtime_client();
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.unary("RemovePodSandbox", req, CALL_TIMEOUT, |r| async move {
            c.remove_pod_sandbox(r).await
        })
        .map(drop)
    }

    pub fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus, HarnessError> {
        let mut c = self.runtime_client();
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        };
        let resp = self.unary("PodSandboxStatus", req, CALL_TIMEOUT, |r| async move {
            c.pod_sandbox_status(r).await
        })?;
        resp.status.ok_or(HarnessError::Protocol {
            call: "PodSandboxStatus",
            problem: format!("no status for {id}"),
        })
    }

    /// `ListContainers`, of one sandbox or (with `None`) all.
    pub fn list_containers(
        &self,
        sandbox_id: Option<&str>,
    ) -> Result<Vec<api::Container>, HarnessError> {
        let mut c = self.runtime_client();
        let req = api::ListContainersRequest {
            filter: sandbox_id.map(|id| api::ContainerFilter {
                pod_sandbox_id: id.to_owned(),
                ..Default::default()
            }),
        };
        let resp = self.unary("ListContainers", req, CALL_TIMEOUT, |r| async move {
            c.list_containers(r).await
        })?;
        Ok(resp.containers)
    }

    /// `ListPodSandbox`, every sandbox.
    pub fn list_pod_sandboxes(&self) -> Result<Vec<api::PodSandbox>, HarnessError> {
        let mut c = self.runtime_client();
        let req = api::ListPodSandboxRequest { filter: None };
        let resp = self.unary("ListPodSandbox", req, CALL_TIMEOUT, |r| async move {
            c.list_pod_sandbox(r).await
        })?;
        Ok(resp.items)
    }

    /// Polls `ContainerStatus` until the container has exited; a [`HarnessError::Timeout`]
    /// after `deadline` names the last state seen.
    pub fn wait_container_exited(
        &self,
        id: &str,
        deadline: Duration,
    ) -> Result<ContainerInfo, HarnessError> {
        let start = Instant::now();
        loop {
            let info = self.container_status(id)?;
            if info.state == ContainerState::Exited {
                return Ok(info);
            }
            if start.elapsed() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("container {id} to exit (still {:?})", info.state),
                    after: deadline,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls the container's CRI log until it holds the whole line `line` on `stream`, and
    /// returns every line read. Useful to know that a container got past its setup (say, a
    /// `trap`) before the test goes on.
    pub fn wait_log_line(
        &self,
        id: &str,
        stream: Stream,
        line: &str,
        deadline: Duration,
    ) -> Result<Vec<(Stream, String)>, HarnessError> {
        let start = Instant::now();
        let path = self.container_status(id)?.log_path;
        loop {
            let lines = match read_cri_log(&path) {
                Ok(lines) => lines,
                Err(HarnessError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Vec::new()
                }
                Err(e) => return Err(e),
            };
            if lines.iter().any(|(s, l)| *s == stream && l == line) {
                return Ok(lines);
            }
            if start.elapsed() >= deadline {
                let state = self.container_status(id)?.state;
                return Err(HarnessError::Timeout {
                    what: format!(
                        "{} line {line:?} in {} (container {state:?}; lines so far: {lines:?})",
                        stream.as_str(),
                        path.display()
                    ),
                    after: deadline,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops and removes every sandbox (and so every container) the runtime knows, as the
    /// kubelet does when pods go away; returns the errors met, having tried everything.
    pub fn remove_all_pods(&self) -> Vec<HarnessError> {
        let mut errors = Vec::new();
        match self.list_pod_sandboxes() {
            Ok(pods) => {
                for pod in pods {
                    if let Err(e) = self.stop_pod_sandbox(&pod.id) {
                        errors.push(e);
                    }
                    if let Err(e) = self.remove_pod_sandbox(&pod.id) {
                        errors.push(e);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        errors
    }
}

/// The URI is required by tonic but ignored: the connector always dials the socket.
fn endpoint() -> Endpoint {
    Endpoint::from_static("http://cri.invalid").connect_timeout(CALL_TIMEOUT)
}

type Connecting = std::pin::Pin<
    Box<dyn Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send>,
>;

fn unix_connector(
    socket: &Path,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = Connecting,
> + Send
+ 'static {
    let path = socket.to_path_buf();
    tower::service_fn(move |_: Uri| -> Connecting {
        let path = path.clone();
        Box::pin(async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) })
    })
}

fn image_spec(image: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

/// Host network, a pid namespace per container, the pod's IPC namespace: the kubelet's choice
/// for a `hostNetwork: true` pod without `hostPID`/`hostIPC`/`shareProcessNamespace`.
fn host_network_namespaces() -> api::NamespaceOption {
    api::NamespaceOption {
        network: NS_NODE,
        pid: NS_CONTAINER,
        ipc: NS_POD,
        ..Default::default()
    }
}

/// A running sandbox: its id, the config it was created with (every `CreateContainer` of the
/// pod sends it again) and its runtime handler.
#[derive(Debug, Clone)]
pub struct Pod {
    pub id: String,
    pub config: api::PodSandboxConfig,
    pub runtime_handler: String,
}

impl Pod {
    pub fn log_directory(&self) -> &Path {
        Path::new(&self.config.log_directory)
    }
}

/// What the kubelet knows about a pod when it creates its sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    /// The pod UID; [`PodSpec::new`] makes a fresh one.
    pub uid: String,
    pub attempt: u32,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `None`: `<log root>/<namespace>_<name>_<uid>` (the kubelet's layout).
    pub log_directory: Option<PathBuf>,
    /// `None`: the client's default (the harness instance's group); `Some("")`: none at all.
    pub cgroup_parent: Option<String>,
    /// `""` is the default handler (runc in the harness), or e.g. `"hostgate"`.
    pub runtime_handler: String,
}

impl PodSpec {
    /// A pod `name` in namespace `default` with a fresh UID, on the default handler.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: "default".to_owned(),
            uid: fresh_uid(),
            attempt: 0,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            log_directory: None,
            cgroup_parent: None,
            runtime_handler: String::new(),
        }
    }

    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = ns.into();
        self
    }

    pub fn uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    pub fn annotation(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.annotations.insert(k.into(), v.into());
        self
    }

    pub fn log_directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_directory = Some(dir.into());
        self
    }

    pub fn cgroup_parent(mut self, parent: impl Into<String>) -> Self {
        self.cgroup_parent = Some(parent.into());
        self
    }

    pub fn runtime_handler(mut self, handler: impl Into<String>) -> Self {
        self.runtime_handler = handler.into();
        self
    }
}

/// A UUID-shaped pod UID, unique per call.
fn fresh_uid() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!(
        "{}-{}-{now}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let h = Sha256::digest(seed.as_bytes());
    let x: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &x[0..8],
        &x[8..12],
        &x[13..16],
        &x[17..20],
        &x[20..32]
    )
}

/// A bind mount into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub host_path: PathBuf,
    pub container_path: String,
    pub readonly: bool,
}

/// Linux resources of a container; `None` leaves a value unset (as 0 on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory_limit_bytes: Option<i64>,
    pub memory_swap_limit_bytes: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_shares: Option<i64>,
}

/// What the kubelet knows about a container when it creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<MountSpec>,
    pub resources: Resources,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the pod's log directory; `None`: `<name>/<attempt>.log` (the kubelet's).
    pub log_path: Option<String>,
}

impl ContainerSpec {
    /// A container `name` of [`BUSYBOX_IMAGE`] running the image's command.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            attempt: 0,
            image: BUSYBOX_IMAGE.to_owned(),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            mounts: Vec::new(),
            resources: Resources::default(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            log_path: None,
        }
    }

    /// `sh -c script` (busybox's shell).
    pub fn shell(name: impl Into<String>, script: &str) -> Self {
        Self::new(name).command(["sh", "-c", script])
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    pub fn command<S: Into<String>>(mut self, command: impl IntoIterator<Item = S>) -> Self {
        self.command = command.into_iter().map(Into::into).collect();
        self
    }

    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    pub fn mount(
        mut self,
        host_path: impl Into<PathBuf>,
        container_path: impl Into<String>,
        readonly: bool,
    ) -> Self {
        self.mounts.push(MountSpec {
            host_path: host_path.into(),
            container_path: container_path.into(),
            readonly,
        });
        self
    }

    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.resources.memory_limit_bytes = Some(bytes);
        self
    }

    /// CFS quota and period in microseconds (the kubelet sends period 100000).
    pub fn cpu(mut self, quota: i64, period: i64) -> Self {
        self.resources.cpu_quota = Some(quota);
        self.resources.cpu_period = Some(period);
        self
    }

    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    pub fn annotation(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.annotations.insert(k.into(), v.into());
        self
    }

    pub fn log_path(mut self, path: impl Into<String>) -> Self {
        self.log_path = Some(path.into());
        self
    }
}

/// CRI `ContainerState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl ContainerState {
    fn from_wire(v: i32) -> Self {
        match api::ContainerState::try_from(v) {
            Ok(api::ContainerState::ContainerCreated) => Self::Created,
            Ok(api::ContainerState::ContainerRunning) => Self::Running,
            Ok(api::ContainerState::ContainerExited) => Self::Exited,
            _ => Self::Unknown,
        }
    }
}

/// `ContainerStatus`, the fields tests look at.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub state: ContainerState,
    pub exit_code: i32,
    /// E.g. `Completed`, `Error`, `OOMKilled`, `StartError`.
    pub reason: String,
    pub message: String,
    pub created_at: Option<SystemTime>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// Absolute (containerd joins the pod's log directory and the container's log path).
    pub log_path: PathBuf,
    pub annotations: BTreeMap<String, String>,
    pub raw: api::ContainerStatus,
}

impl ContainerInfo {
    fn from_raw(raw: api::ContainerStatus) -> Self {
        let time = |ns: i64| (ns > 0).then(|| UNIX_EPOCH + Duration::from_nanos(ns.unsigned_abs()));
        Self {
            id: raw.id.clone(),
            name: raw
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            state: ContainerState::from_wire(raw.state),
            exit_code: raw.exit_code,
            reason: raw.reason.clone(),
            message: raw.message.clone(),
            created_at: time(raw.created_at),
            started_at: time(raw.started_at),
            finished_at: time(raw.finished_at),
            log_path: PathBuf::from(&raw.log_path),
            annotations: raw
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_fresh_and_uuid_shaped() {
        let (a, b) = (fresh_uid(), fresh_uid());
        assert_ne!(a, b);
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{a}");
    }
}
