//! The node's [`Runtime`]: for each `Create`, read the bundle's spec, ask the [`Gate`], and
//! make the task: a [`Placeholder`] for the sandbox, a [`JobInstance`] in the mounted root
//! file system for an admitted container.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hostgate_core::chain::Chain;

use super::gate::{Admission, Gate, GateRefusal};
use super::instance::{ExitHook, Instance, JobInstance, Placeholder, rootfs_dir};
use super::request::RuntimeRequest;
use super::rootfs;
use super::service::{CreateRequest, Runtime, ServiceError, TaskLabel};
use crate::container::{ContainerSpec, RuntimeOptions, default_base_env};
use crate::job::{JobError, JobManager};

/// Makes the job manager when the first container is created (the sandbox needs none).
pub type ManagerFactory<M> = Box<dyn Fn() -> Result<M, JobError> + Send + Sync>;

/// The gate and the job layer of this node.
pub struct NodeRuntime<M: JobManager> {
    gate: Gate,
    factory: ManagerFactory<M>,
    manager: Mutex<Option<Arc<M>>>,
}

impl<M: JobManager> std::fmt::Debug for NodeRuntime<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRuntime")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl<M: JobManager + 'static> NodeRuntime<M> {
    /// A runtime deciding with `gate` and running containers in jobs of `factory`'s manager.
    pub fn new(gate: Gate, factory: ManagerFactory<M>) -> Self {
        Self {
            gate,
            factory,
            manager: Mutex::new(None),
        }
    }

    fn manager(&self) -> Result<Arc<M>, ServiceError> {
        let mut slot = self.manager.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = slot.as_ref() {
            return Ok(Arc::clone(m));
        }
        let m = Arc::new((self.factory)().map_err(|e| ServiceError::internal("job layer", e))?);
        *slot = Some(Arc::clone(&m));
        Ok(m)
    }

    fn options(&self, bundle: &std::path::Path) -> RuntimeOptions {
        let settings = self.gate.settings();
        RuntimeOptions {
            // Unused: every container runs in its own mounted root file system.
            sandbox_root: bundle.to_owned(),
            base_env: default_base_env(),
            // Never create links at host paths: the mounts are reached in the sandbox.
            host_links: false,
            bind_read_only: true,
            grace_period: Duration::from_secs(settings.grace_period_seconds),
        }
    }
}

fn refused(what: String, source: GateRefusal) -> ServiceError {
    log::warn!("refused {what}: {}", Chain(&source));
    ServiceError::Refused { what, source }
}

impl<M: JobManager + 'static> Runtime for NodeRuntime<M> {
    fn create(
        &self,
        req: &CreateRequest,
        on_exit: ExitHook,
    ) -> Result<(Arc<dyn Instance>, TaskLabel), ServiceError> {
        let request = RuntimeRequest::read_bundle(&req.bundle)
            .map_err(|e| refused(format!("task {}", req.id), GateRefusal::Spec(e)))?;
        let what = request.describe();
        let admission = self
            .gate
            .admit(&request)
            .map_err(|e| refused(what.clone(), e))?;
        let mut label = TaskLabel {
            pod: request.pod.to_string(),
            container: "sandbox".to_owned(),
        };
        let admitted = match admission {
            Admission::Sandbox => {
                log::info!("admitted {what}: placeholder, no process");
                return Ok((Arc::new(Placeholder::new(on_exit)), label));
            }
            Admission::Container(a) => a,
        };
        label.container.clone_from(&admitted.name);
        let target = rootfs_dir(&req.bundle, request.root_path.as_deref());
        let mounted = rootfs::mount(&req.rootfs, &target)
            .map_err(|e| ServiceError::internal(format!("{what}: root file system"), e))?;
        let spec = ContainerSpec {
            id: req.id.clone(),
            name: admitted.name.clone(),
            args: admitted.args.clone(),
            env: admitted.env.clone(),
            working_dir: admitted.working_dir.clone(),
            mounts: admitted.mounts.clone(),
            limits: admitted.limits,
            user: admitted.user.clone(),
            rootfs: Some(target),
        };
        spec.validate()
            .map_err(|e| ServiceError::internal(what.clone(), e))?;
        let manager = self.manager()?;
        let how = if admitted.ephemeral {
            "allows it as an ephemeral container"
        } else {
            "approved it"
        };
        log::info!(
            "admitted {what}: policy {} {how}; limits {:?}",
            admitted.policy,
            admitted.limits
        );
        let resources = mounted.map(|m| Box::new(m) as Box<dyn Send>);
        let instance = JobInstance::new(
            manager,
            spec,
            self.options(&req.bundle),
            req.stdio.clone(),
            resources,
            on_exit,
        );
        Ok((Arc::new(instance), label))
    }
}
