//! The task service, in our own types: what each task RPC does, independent of the ttrpc crate
//! that carries it ([`super::task`] only converts). One service per shim process, holding the
//! tasks of one pod: the sandbox placeholder and the pod's containers.
//!
//! RPC order containerd uses (1.6 and later): `Create` → `Connect` → `Start` → `Wait` (held
//! open until the task ends) → `State`/`Pids` → `Kill` (`signal`, `all`) → `Delete` →
//! `Shutdown`. The process exits after `Shutdown` once no task is left.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::gate::GateRefusal;
use super::instance::{Exit, ExitHook, Instance, InstanceError, StdioPaths};
use super::rootfs::RootfsMount;

/// A task event for containerd (`/tasks/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `/tasks/create`.
    Create {
        /// Task id.
        id: String,
        /// Bundle path.
        bundle: String,
        /// Pid (0: no process yet).
        pid: u32,
    },
    /// `/tasks/start`.
    Start {
        /// Task id.
        id: String,
        /// Pid of the init process.
        pid: u32,
    },
    /// `/tasks/oom`: the job's memory limit killed a process (sent before the exit).
    Oom {
        /// Task id.
        id: String,
    },
    /// `/tasks/exit`.
    Exit {
        /// Task id.
        id: String,
        /// Pid of the init process.
        pid: u32,
        /// Exit status.
        status: u32,
        /// When.
        at: SystemTime,
    },
    /// `/tasks/delete`.
    Delete {
        /// Task id.
        id: String,
        /// Pid of the init process.
        pid: u32,
        /// Exit status.
        status: u32,
        /// When it exited.
        at: SystemTime,
    },
}

/// Where events go (containerd's event service in the shim; a list in tests).
pub trait EventSink: Send + Sync {
    /// Publishes one event; failures are the sink's to log.
    fn publish(&self, event: Event);
}

/// A `Create` request.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// Task id (the container id).
    pub id: String,
    /// Bundle directory (holds `config.json`).
    pub bundle: PathBuf,
    /// Root file system mounts.
    pub rootfs: Vec<RootfsMount>,
    /// Standard streams.
    pub stdio: StdioPaths,
    /// Whether a terminal was asked for.
    pub terminal: bool,
}

/// Makes the instance for a `Create`: runs the gate and prepares the task.
pub trait Runtime: Send + Sync {
    /// The instance for `req`, or why it must not run.
    fn create(
        &self,
        req: &CreateRequest,
        on_exit: ExitHook,
    ) -> Result<(Arc<dyn Instance>, TaskLabel), ServiceError>;
}

/// Who a task is, for logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLabel {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Container name, or `sandbox`.
    pub container: String,
}

/// Errors, classified as containerd reads them.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such task.
    #[error("task {0} not found")]
    NotFound(String),
    /// A task with that id exists.
    #[error("task {0} already exists")]
    AlreadyExists(String),
    /// The gate refused the container.
    #[error("hostgate refused {what}")]
    Refused {
        /// Pod and container.
        what: String,
        /// The refusal, with its causes (printed by [`Chain`](hostgate_core::chain::Chain)).
        #[source]
        source: GateRefusal,
    },
    /// The request cannot be served in this state or form.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The RPC is not implemented, and why.
    #[error("{0}")]
    Unimplemented(&'static str),
    /// Preparing or running the task failed.
    #[error("{context}")]
    Internal {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ServiceError {
    /// An internal failure while `context`.
    pub fn internal(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Internal {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

fn from_instance(id: &str, e: InstanceError) -> ServiceError {
    match e {
        InstanceError::Exited => ServiceError::NotFound(format!("{id}: process already finished")),
        InstanceError::NotStarted | InstanceError::AlreadyStarted | InstanceError::Running => {
            ServiceError::FailedPrecondition(format!("task {id}: {e}"))
        }
        other => ServiceError::internal(format!("task {id}"), other),
    }
}

/// A task's status as `State` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Ended.
    Stopped,
}

/// `State`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// Task id.
    pub id: String,
    /// Bundle.
    pub bundle: PathBuf,
    /// Init pid.
    pub pid: u32,
    /// Status.
    pub status: Status,
    /// Standard streams.
    pub stdio: StdioPaths,
    /// Terminal asked for.
    pub terminal: bool,
    /// Exit, once ended.
    pub exit: Option<Exit>,
}

struct Task {
    instance: Arc<dyn Instance>,
    bundle: PathBuf,
    stdio: StdioPaths,
    terminal: bool,
    started: bool,
    label: TaskLabel,
}

/// The tasks of one shim.
pub struct Service<R: Runtime> {
    runtime: R,
    tasks: Mutex<HashMap<String, Task>>,
    events: Arc<dyn EventSink>,
    shutdown: Box<dyn Fn() + Send + Sync>,
}

impl<R: Runtime> std::fmt::Debug for Service<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("tasks", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Service<R> {
    /// A service creating tasks with `runtime`, publishing to `events`; `shutdown` ends the
    /// shim process.
    pub fn new(
        runtime: R,
        events: Arc<dyn EventSink>,
        shutdown: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            runtime,
            tasks: Mutex::new(HashMap::new()),
            events,
            shutdown,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Task>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn instance(&self, id: &str) -> Result<(Arc<dyn Instance>, TaskLabel), ServiceError> {
        self.lock()
            .get(id)
            .map(|t| (Arc::clone(&t.instance), t.label.clone()))
            .ok_or_else(|| ServiceError::NotFound(id.to_owned()))
    }

    /// `Create`: the gate, then the task, not started.
    pub fn create(&self, req: CreateRequest) -> Result<u32, ServiceError> {
        if self.lock().contains_key(&req.id) {
            return Err(ServiceError::AlreadyExists(req.id));
        }
        if req.terminal {
            return Err(ServiceError::InvalidArgument(
                "terminals are not supported: HostProcess containers run without a console"
                    .to_owned(),
            ));
        }
        let events = Arc::clone(&self.events);
        let id = req.id.clone();
        let hook: ExitHook = Arc::new(move |pid, exit: &Exit| {
            if exit.oom_killed {
                events.publish(Event::Oom { id: id.clone() });
            }
            events.publish(Event::Exit {
                id: id.clone(),
                pid,
                status: exit.status,
                at: exit.at,
            });
        });
        let (instance, label) = self.runtime.create(&req, hook)?;
        log::info!(
            "created pod={} container={} task={}",
            label.pod,
            label.container,
            req.id
        );
        let pid = instance.pid();
        self.events.publish(Event::Create {
            id: req.id.clone(),
            bundle: req.bundle.display().to_string(),
            pid,
        });
        self.lock().insert(
            req.id,
            Task {
                instance,
                bundle: req.bundle,
                stdio: req.stdio,
                terminal: req.terminal,
                started: false,
                label,
            },
        );
        Ok(pid)
    }

    /// `Start`.
    pub fn start(&self, id: &str) -> Result<u32, ServiceError> {
        let (instance, label) = self.instance(id)?;
        let pid = instance.start().map_err(|e| from_instance(id, e))?;
        if let Some(t) = self.lock().get_mut(id) {
            t.started = true;
        }
        log::info!(
            "started pod={} container={} pid={pid}",
            label.pod,
            label.container
        );
        self.events.publish(Event::Start {
            id: id.to_owned(),
            pid,
        });
        Ok(pid)
    }

    /// `Kill`.
    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), ServiceError> {
        let (instance, label) = self.instance(id)?;
        log::info!(
            "signal pod={} container={} signal={signal} all={all}",
            label.pod,
            label.container
        );
        instance.kill(signal, all).map_err(|e| from_instance(id, e))
    }

    /// `Wait`: blocks until the task has ended.
    pub fn wait(&self, id: &str) -> Result<Exit, ServiceError> {
        let (instance, _) = self.instance(id)?;
        Ok(instance.wait())
    }

    /// `State`.
    pub fn state(&self, id: &str) -> Result<TaskState, ServiceError> {
        let tasks = self.lock();
        let t = tasks
            .get(id)
            .ok_or_else(|| ServiceError::NotFound(id.to_owned()))?;
        let exit = t.instance.exited();
        let status = match (exit, t.started) {
            (Some(_), _) => Status::Stopped,
            (None, true) => Status::Running,
            (None, false) => Status::Created,
        };
        Ok(TaskState {
            id: id.to_owned(),
            bundle: t.bundle.clone(),
            pid: t.instance.pid(),
            status,
            stdio: t.stdio.clone(),
            terminal: t.terminal,
            exit,
        })
    }

    /// `Pids`.
    pub fn pids(&self, id: &str) -> Result<Vec<u32>, ServiceError> {
        let (instance, _) = self.instance(id)?;
        instance.pids().map_err(|e| from_instance(id, e))
    }

    /// `Delete`: releases the task (its job is gone once it has ended; its root file system is
    /// unmounted here) and forgets it.
    pub fn delete(&self, id: &str) -> Result<(u32, Exit), ServiceError> {
        let (instance, label) = self.instance(id)?;
        let pid = instance.pid();
        let exit = instance.delete().map_err(|e| from_instance(id, e))?;
        self.lock().remove(id);
        let exit = exit.unwrap_or(Exit {
            status: 0,
            at: SystemTime::now(),
            oom_killed: false,
        });
        log::info!(
            "deleted pod={} container={} status={}",
            label.pod,
            label.container,
            exit.status
        );
        self.events.publish(Event::Delete {
            id: id.to_owned(),
            pid,
            status: exit.status,
            at: exit.at,
        });
        Ok((pid, exit))
    }

    /// `Connect`: the init pid of `id`.
    pub fn connect(&self, id: &str) -> Result<u32, ServiceError> {
        Ok(self.instance(id)?.0.pid())
    }

    /// `Shutdown`: ends the shim once no task is left (containerd asks after each `Delete`).
    pub fn shutdown(&self) {
        if self.lock().is_empty() {
            log::info!("no task left; shutting down");
            (self.shutdown)();
        }
    }

    /// The number of tasks.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no task is left.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::instance::{Placeholder, SIGKILL};
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Event>>);

    impl EventSink for Recorder {
        fn publish(&self, event: Event) {
            self.0.lock().expect("lock").push(event);
        }
    }

    struct Placeholders;

    impl Runtime for Placeholders {
        fn create(
            &self,
            req: &CreateRequest,
            on_exit: ExitHook,
        ) -> Result<(Arc<dyn Instance>, TaskLabel), ServiceError> {
            if req.id == "refused" {
                return Err(ServiceError::Refused {
                    what: "pod ns/p container \"c\"".into(),
                    source: GateRefusal::NotFromCri,
                });
            }
            Ok((Arc::new(Placeholder::new(on_exit)), TaskLabel::default()))
        }
    }

    fn request(id: &str) -> CreateRequest {
        CreateRequest {
            id: id.to_owned(),
            bundle: PathBuf::from("/b"),
            rootfs: Vec::new(),
            stdio: StdioPaths::default(),
            terminal: false,
        }
    }

    #[test]
    fn lifecycle_events_and_shutdown_after_the_last_task() {
        let events = Arc::new(Recorder::default());
        let down = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&down);
        let svc = Service::new(
            Placeholders,
            events.clone(),
            Box::new(move || flag.store(true, Ordering::SeqCst)),
        );
        assert_eq!(svc.create(request("s")).expect("create"), 0);
        assert!(matches!(
            svc.create(request("s")),
            Err(ServiceError::AlreadyExists(_))
        ));
        let refused = svc.create(request("refused")).expect_err("refused");
        assert!(matches!(refused, ServiceError::Refused { .. }));
        // What containerd shows (the status message is the chain): each cause once.
        let text = hostgate_core::chain::Chain(&refused).to_string();
        assert!(
            text.starts_with("hostgate refused pod ns/p container \"c\": not created through CRI"),
            "{text}"
        );
        assert_eq!(text.matches("not created through CRI").count(), 1, "{text}");
        assert_eq!(svc.state("s").expect("state").status, Status::Created);
        svc.start("s").expect("start");
        assert_eq!(svc.state("s").expect("state").status, Status::Running);
        assert!(matches!(
            svc.delete("s"),
            Err(ServiceError::FailedPrecondition(_))
        ));
        svc.shutdown();
        assert!(!down.load(Ordering::SeqCst), "a task is left");
        svc.kill("s", SIGKILL, true).expect("kill");
        assert_eq!(svc.wait("s").expect("wait").status, 137);
        assert!(matches!(
            svc.kill("s", SIGKILL, true),
            Err(ServiceError::NotFound(_))
        ));
        assert_eq!(svc.state("s").expect("state").status, Status::Stopped);
        let (_, exit) = svc.delete("s").expect("delete");
        assert_eq!(exit.status, 137);
        assert!(matches!(svc.state("s"), Err(ServiceError::NotFound(_))));
        svc.shutdown();
        assert!(down.load(Ordering::SeqCst));
        let kinds: Vec<&str> = events
            .0
            .lock()
            .expect("lock")
            .iter()
            .map(|e| match e {
                Event::Create { .. } => "create",
                Event::Start { .. } => "start",
                Event::Oom { .. } => "oom",
                Event::Exit { .. } => "exit",
                Event::Delete { .. } => "delete",
            })
            .collect();
        assert_eq!(kinds, ["create", "start", "exit", "delete"]);
        assert!(matches!(
            svc.create(CreateRequest {
                terminal: true,
                ..request("t")
            }),
            Err(ServiceError::InvalidArgument(_))
        ));
    }
}
