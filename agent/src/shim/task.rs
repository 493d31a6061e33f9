//! The ttrpc side: containerd-shim 0.11's `Task` trait over [`Service`], and events over its
//! `RemotePublisher`. Only conversions live here, so the crate can be swapped without touching
//! the service.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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

use super::instance::StdioPaths;
use super::rootfs::RootfsMount;
use super::service::{CreateRequest, Event, EventSink, Runtime, Service, ServiceError, Status};

/// The version string `Connect` reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// containerd's `Task` service over a [`Service`].
pub struct TaskService<R: Runtime> {
    service: Arc<Service<R>>,
}

impl<R: Runtime> std::fmt::Debug for TaskService<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskService")
            .field("service", &self.service)
            .finish()
    }
}

impl<R: Runtime> TaskService<R> {
    /// Serves `service`.
    pub fn new(service: Arc<Service<R>>) -> Self {
        Self { service }
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
    ttrpc::Error::RpcStatus(get_status(code, crate::sync::error_chain(e)))
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
        no_exec(&req.exec_id)?;
        let pid = self.service.start(&req.id).map_err(|e| status_error(&e))?;
        Ok(StartResponse {
            pid,
            ..StartResponse::default()
        })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
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
        no_exec(&req.exec_id)?;
        self.service
            .kill(&req.id, req.signal, req.all)
            .map_err(|e| status_error(&e))?;
        Ok(Empty::default())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        no_exec(&req.exec_id)?;
        let exit = self.service.wait(&req.id).map_err(|e| status_error(&e))?;
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: timestamp(exit.at),
            ..WaitResponse::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
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
        self.service.shutdown();
        Ok(Empty::default())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        no_exec(&req.exec_id)?;
        no_exec("exec").map(|()| Empty::default())
    }

    fn update(&self, _ctx: &TtrpcContext, _req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        Err(status_error(&ServiceError::Unimplemented(
            "update is not supported: a HostProcess container keeps the limits its approval allows",
        )))
    }

    fn stats(&self, _ctx: &TtrpcContext, _req: StatsRequest) -> TtrpcResult<StatsResponse> {
        Err(status_error(&ServiceError::Unimplemented(
            "stats are not reported by the hostgate shim yet",
        )))
    }
}

/// Publishes task events to containerd.
pub struct RemoteEvents {
    publisher: RemotePublisher,
    namespace: String,
}

impl std::fmt::Debug for RemoteEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEvents")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RemoteEvents {
    /// Events for containerd `namespace` through `publisher`.
    pub fn new(publisher: RemotePublisher, namespace: String) -> Self {
        Self {
            publisher,
            namespace,
        }
    }
}

impl EventSink for RemoteEvents {
    fn publish(&self, event: Event) {
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
        if let Err(e) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, message)
        {
            log::warn!("cannot publish {topic}: {e}");
        }
    }
}
