//! The ttrpc side: containerd-shim 0.11's `Task` trait over [`Service`], and events over its
//! `RemotePublisher`. Only conversions live here, so the crate can be swapped without touching
//! the service.

use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use containerd_shim::api::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, ExecProcessRequest, KillRequest, PidsRequest, PidsResponse,
    ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest,
    StatsResponse, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskOOM, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{EnumOrUnknown, MessageDyn, MessageField};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{self, Code, TtrpcContext, get_status};
use containerd_shim::protos::types::task::{ProcessInfo, Status as TaskStatus};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Context, TtrpcResult};
use hostgate_core::chain::Chain;

use super::instance::StdioPaths;
use super::rootfs::RootfsMount;
use super::service::{CreateRequest, Event, EventSink, Runtime, Service, ServiceError, Status};

/// The version string `Connect` reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Tracks requests in progress, so that the shim exits only once containerd's last calls have
/// been answered: containerd can still be waiting for the reply to a `Kill` sent from another
/// goroutine when a `Shutdown` after the last `Delete` ends the process, and would read
/// "ttrpc: closed" instead of the reply.
#[derive(Debug, Default)]
pub struct Activity {
    state: Mutex<(usize, Option<Instant>)>,
}

/// One request in progress; finished when dropped.
#[derive(Debug)]
pub struct Request<'a>(&'a Activity);

impl Activity {
    /// Marks a request in progress.
    pub fn enter(&self) -> Request<'_> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
        Request(self)
    }

    /// Blocks until no request has been in progress for `quiet` (replies are written right
    /// after a handler returns).
    pub fn wait_quiet(&self, quiet: Duration) {
        loop {
            let wait = {
                let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                match *st {
                    (0, None) => return,
                    (0, Some(done)) if done.elapsed() >= quiet => return,
                    (0, Some(done)) => quiet.saturating_sub(done.elapsed()),
                    _ => quiet,
                }
            };
            std::thread::sleep(wait.min(quiet));
        }
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.0 = st.0.saturating_sub(1);
        st.1 = Some(Instant::now());
    }
}

/// containerd's `Task` service over a [`Service`].
pub struct TaskService<R: Runtime> {
    service: Arc<Service<R>>,
    activity: Arc<Activity>,
}

impl<R: Runtime> std::fmt::Debug for TaskService<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskService")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> TaskService<R> {
    /// Serves `service`, counting requests in `activity`.
    pub fn new(service: Arc<Service<R>>, activity: Arc<Activity>) -> Self {
        Self { service, activity }
    }
}

fn status_error(e: &ServiceError) -> ttrpc::Error {
    let code = match e {
        ServiceError::NotFound(_) => Code::NOT_FOUND,
        ServiceError::AlreadyExists(_) => Code::ALREADY_EXISTS,
        ServiceError::Refused { .. } => Code::PERMISSION_DENIED,
        ServiceError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
        ServiceError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
        ServiceError::Unimplemented(_) => Code::UNIMPLEMENTED,
        ServiceError::Internal { .. } => Code::INTERNAL,
    };
    ttrpc::Error::RpcStatus(get_status(code, Chain(e).to_string()))
}

pub(crate) fn timestamp(t: SystemTime) -> MessageField<Timestamp> {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    MessageField::some(Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        ..Timestamp::default()
    })
}

fn no_exec(exec_id: &str) -> TtrpcResult<()> {
    if exec_id.is_empty() {
        Ok(())
    } else {
        Err(status_error(&ServiceError::Unimplemented(
            "exec is not supported: a process started next to an approved HostProcess container would run outside its approval",
        )))
    }
}

impl<R: Runtime> containerd_shim::Task for TaskService<R> {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let _request = self.activity.enter();
        let request = CreateRequest {
            id: req.id,
            bundle: req.bundle.into(),
            rootfs: req
                .rootfs
                .into_iter()
                .map(|m| RootfsMount {
                    kind: m.type_,
                    source: m.source,
                    options: m.options,
                })
                .collect(),
            stdio: StdioPaths {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
            },
            terminal: req.terminal,
        };
        let pid = self.service.create(request).map_err(|e| status_error(&e))?;
        Ok(CreateTaskResponse {
            pid,
            ..CreateTaskResponse::default()
        })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let _request = self.activity.enter();
        no_exec(&req.exec_id)?;
        let pid = self.service.start(&req.id).map_err(|e| status_error(&e))?;
        Ok(StartResponse {
            pid,
            ..StartResponse::default()
        })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let _request = self.activity.enter();
        no_exec(&req.exec_id)?;
        let s = self.service.state(&req.id).map_err(|e| status_error(&e))?;
        let status = match s.status {
            Status::Created => TaskStatus::CREATED,
            Status::Running => TaskStatus::RUNNING,
            Status::Stopped => TaskStatus::STOPPED,
        };
        Ok(StateResponse {
            id: s.id,
            bundle: s.bundle.display().to_string(),
            pid: s.pid,
            status: EnumOrUnknown::new(status),
            stdin: s.stdio.stdin,
            stdout: s.stdio.stdout,
            stderr: s.stdio.stderr,
            terminal: s.terminal,
            exit_status: s.exit.map_or(0, |e| e.status),
            exited_at: s.exit.map_or_else(MessageField::none, |e| timestamp(e.at)),
            ..StateResponse::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let _request = self.activity.enter();
        no_exec(&req.exec_id)?;
        self.service
            .kill(&req.id, req.signal, req.all)
            .map_err(|e| status_error(&e))?;
        Ok(Empty::default())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        // Not counted as activity: containerd holds a Wait open for each task's whole life.
        no_exec(&req.exec_id)?;
        let exit = self.service.wait(&req.id).map_err(|e| status_error(&e))?;
        // The exit may come from a `Kill` still being answered on another thread (a sandbox
        // ends inside its `Kill`). containerd acts on this reply at once: it deletes the task,
        // shuts the shim down and closes the connection, so the `Kill` caller would read
        // "ttrpc: closed". This reply therefore goes out after the calls in progress.
        self.activity.wait_quiet(QUIET_BEFORE_EVENT);
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: timestamp(exit.at),
            ..WaitResponse::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let _request = self.activity.enter();
        let pids = self.service.pids(&req.id).map_err(|e| status_error(&e))?;
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    ..ProcessInfo::default()
                })
                .collect(),
            ..PidsResponse::default()
        })
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let _request = self.activity.enter();
        no_exec(&req.exec_id)?;
        let (pid, exit) = self.service.delete(&req.id).map_err(|e| status_error(&e))?;
        Ok(DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: timestamp(exit.at),
            ..DeleteResponse::default()
        })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let _request = self.activity.enter();
        let task_pid = self
            .service
            .connect(&req.id)
            .map_err(|e| status_error(&e))?;
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: VERSION.to_owned(),
            ..ConnectResponse::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        let _request = self.activity.enter();
        self.service.shutdown();
        Ok(Empty::default())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let _request = self.activity.enter();
        no_exec(&req.exec_id)?;
        no_exec("exec").map(|()| Empty::default())
    }

    fn update(&self, _ctx: &TtrpcContext, _req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let _request = self.activity.enter();
        Err(status_error(&ServiceError::Unimplemented(
            "update is not supported: a HostProcess container keeps the limits its approval allows",
        )))
    }

    fn stats(&self, _ctx: &TtrpcContext, _req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let _request = self.activity.enter();
        Err(status_error(&ServiceError::Unimplemented(
            "stats are not reported by the hostgate shim yet",
        )))
    }
}

/// Publishes task events to containerd, in order, from a thread of its own: an event goes
/// out once no request is in progress, so that containerd has the reply to a call (a `Kill`)
/// before the event that call caused (the exit). containerd's handler for an exit deletes the
/// task and may close the connection the reply was still to be written on.
pub struct RemoteEvents {
    queue: Mutex<mpsc::Sender<Event>>,
}

impl std::fmt::Debug for RemoteEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEvents").finish_non_exhaustive()
    }
}

/// How long no request must be in progress before an event is sent.
const QUIET_BEFORE_EVENT: Duration = Duration::from_millis(5);

impl RemoteEvents {
    /// Events for containerd `namespace` through `publisher`, sent after the replies to the
    /// requests `activity` counts.
    pub fn new(publisher: RemotePublisher, namespace: String, activity: Arc<Activity>) -> Self {
        let (tx, rx) = mpsc::channel::<Event>();
        let spawned = std::thread::Builder::new()
            .name("events".to_owned())
            .spawn(move || {
                for event in rx {
                    activity.wait_quiet(QUIET_BEFORE_EVENT);
                    send(&publisher, &namespace, event);
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start the event thread; task events are lost: {e}");
        }
        Self {
            queue: Mutex::new(tx),
        }
    }
}

impl EventSink for RemoteEvents {
    fn publish(&self, event: Event) {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.send(event).is_err() {
            log::warn!("the event thread is gone; an event is lost");
        }
    }
}

/// Sends one event to containerd; a failure is logged.
fn send(publisher: &RemotePublisher, namespace: &str, event: Event) {
    let (topic, message): (&str, Box<dyn MessageDyn>) = match event {
        Event::Create { id, bundle, pid } => (
            topics::TASK_CREATE_EVENT_TOPIC,
            Box::new(TaskCreate {
                container_id: id,
                bundle,
                pid,
                ..TaskCreate::default()
            }),
        ),
        Event::Start { id, pid } => (
            topics::TASK_START_EVENT_TOPIC,
            Box::new(TaskStart {
                container_id: id,
                pid,
                ..TaskStart::default()
            }),
        ),
        Event::Oom { id } => (
            topics::TASK_OOM_EVENT_TOPIC,
            Box::new(TaskOOM {
                container_id: id,
                ..TaskOOM::default()
            }),
        ),
        Event::Exit {
            id,
            pid,
            status,
            at,
        } => (
            topics::TASK_EXIT_EVENT_TOPIC,
            Box::new(TaskExit {
                container_id: id.clone(),
                id,
                pid,
                exit_status: status,
                exited_at: timestamp(at),
                ..TaskExit::default()
            }),
        ),
        Event::Delete {
            id,
            pid,
            status,
            at,
        } => (
            topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(TaskDelete {
                container_id: id.clone(),
                id,
                pid,
                exit_status: status,
                exited_at: timestamp(at),
                ..TaskDelete::default()
            }),
        ),
    };
    if let Err(e) = publisher.publish(Context::default(), topic, namespace, message) {
        log::warn!("cannot publish {topic}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn quiet_returns_at_once_when_nothing_ever_ran() {
        Activity::default().wait_quiet(Duration::from_secs(3600));
    }

    #[test]
    fn quiet_waits_for_the_request_in_progress_to_end() {
        let activity = Arc::new(Activity::default());
        let released = Arc::new(AtomicBool::new(false));
        let request = activity.enter();
        let waiter = {
            let (activity, released) = (Arc::clone(&activity), Arc::clone(&released));
            std::thread::spawn(move || {
                activity.wait_quiet(Duration::from_millis(1));
                released.load(Ordering::SeqCst)
            })
        };
        std::thread::sleep(Duration::from_millis(30));
        released.store(true, Ordering::SeqCst);
        drop(request);
        assert!(
            waiter.join().expect("waiter"),
            "wait_quiet returned while a request was in progress"
        );
    }

    #[test]
    fn nested_requests_all_count() {
        let activity = Activity::default();
        let outer = activity.enter();
        let inner = activity.enter();
        drop(inner);
        assert_eq!(activity.state.lock().expect("state").0, 1);
        drop(outer);
        assert_eq!(activity.state.lock().expect("state").0, 0);
    }
}
