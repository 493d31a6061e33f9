//! Typed errors of the job layer.
//!
//! Every I/O error carries the path it concerns (youki's `WrappedIoError` pattern), every
//! operating-system call that is not file I/O names the call, and a `Display` message describes
//! only its own layer: the cause is in [`std::error::Error::source`].

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::limits::LimitsError;

/// An I/O error on a cgroup (or other) file, with the path and, for writes, the data.
#[derive(Debug, thiserror::Error)]
pub enum WrappedIoError {
    /// Opening a file failed.
    #[error("failed to open {}", path.display())]
    Open {
        /// The underlying error.
        #[source]
        err: io::Error,
        /// The file.
        path: PathBuf,
    },
    /// Reading a file failed.
    #[error("failed to read {}", path.display())]
    Read {
        /// The underlying error.
        #[source]
        err: io::Error,
        /// The file.
        path: PathBuf,
    },
    /// Writing a file failed.
    #[error("failed to write {data:?} to {}", path.display())]
    Write {
        /// The underlying error.
        #[source]
        err: io::Error,
        /// The file.
        path: PathBuf,
        /// What was being written.
        data: String,
    },
    /// Creating a directory failed.
    #[error("failed to create directory {}", path.display())]
    CreateDir {
        /// The underlying error.
        #[source]
        err: io::Error,
        /// The directory.
        path: PathBuf,
    },
    /// Removing a directory failed.
    #[error("failed to remove directory {}", path.display())]
    RemoveDir {
        /// The underlying error.
        #[source]
        err: io::Error,
        /// The directory.
        path: PathBuf,
    },
    /// Listing a directory failed.
    #[error("failed to list directory {}", path.display())]
    ReadDir {
        /// The underlying error.
        #[source]
        err: io::Error,
        /// The directory.
        path: PathBuf,
    },
    /// `statfs(2)` on a path failed.
    #[error("failed to query the file system of {}", path.display())]
    Statfs {
        /// The underlying error.
        #[source]
        err: io::Error,
        /// The path.
        path: PathBuf,
    },
    /// A file's content could not be parsed.
    #[error("unexpected content in {}: {detail}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

impl WrappedIoError {
    /// The underlying I/O error, if there is one (there is none for [`WrappedIoError::Parse`]).
    pub fn inner(&self) -> Option<&io::Error> {
        match self {
            Self::Open { err, .. }
            | Self::Read { err, .. }
            | Self::Write { err, .. }
            | Self::CreateDir { err, .. }
            | Self::RemoveDir { err, .. }
            | Self::ReadDir { err, .. }
            | Self::Statfs { err, .. } => Some(err),
            Self::Parse { .. } => None,
        }
    }

    /// The path the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            Self::Open { path, .. }
            | Self::Read { path, .. }
            | Self::Write { path, .. }
            | Self::CreateDir { path, .. }
            | Self::RemoveDir { path, .. }
            | Self::ReadDir { path, .. }
            | Self::Statfs { path, .. }
            | Self::Parse { path, .. } => path,
        }
    }

    /// The raw OS error number of the underlying error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.inner().and_then(io::Error::raw_os_error)
    }
}

/// Why a job name was refused (see [`super::JobName`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid job name {name:?}: {reason}")]
pub struct InvalidNameError {
    /// The refused name.
    pub name: String,
    /// Why.
    pub reason: &'static str,
}

/// Errors of the job layer (both backends).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job name is not acceptable.
    #[error(transparent)]
    InvalidName(#[from] InvalidNameError),
    /// The limits are not acceptable (out of range, mutually exclusive, …).
    #[error("invalid job limits")]
    InvalidLimits(#[from] LimitsError),
    /// A job of that name exists already (a live job, or one left by a crashed agent: see
    /// [`super::JobManager::remove_stale`]).
    #[error("job {name:?} already exists at {location}")]
    AlreadyExists {
        /// The job name.
        name: String,
        /// Where it was found (cgroup directory or object name).
        location: String,
    },
    /// A cgroup file operation failed.
    #[error(transparent)]
    Io(#[from] WrappedIoError),
    /// The cgroup layout of this host is not one the backend supports.
    #[error("unsupported cgroup setup at {}: {reason}", root.display())]
    UnsupportedSetup {
        /// The cgroup root that was examined.
        root: PathBuf,
        /// Why it is not supported.
        reason: String,
    },
    /// A limit needs a cgroup controller that is not enabled for the job's cgroup.
    #[error("cgroup controller {controller:?} is not available in {}", path.display())]
    ControllerUnavailable {
        /// The controller (`memory`, `cpu`, `pids`).
        controller: &'static str,
        /// The cgroup directory that lacks it.
        path: PathBuf,
    },
    /// The configuration of the backend is invalid.
    #[error("invalid job backend configuration: {reason}")]
    InvalidConfig {
        /// Why.
        reason: String,
    },
    /// Starting a process inside the job failed.
    #[error("failed to start {} in job {job:?}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The job name.
        job: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Sending a signal (or console control event) to a process failed.
    #[error("failed to signal process {pid}")]
    Signal {
        /// The process.
        pid: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Waiting for a process failed.
    #[error("failed to wait for process {pid}")]
    Wait {
        /// The process.
        pid: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The job still had processes when they should all have exited.
    #[error("job {job:?} still has processes after {waited:?}")]
    NotEmpty {
        /// The job name.
        job: String,
        /// How long the backend waited.
        waited: Duration,
    },
    /// An operating-system call failed (Win32 job object calls, Linux syscalls).
    #[error("{call} failed")]
    Os {
        /// The call, e.g. `SetInformationJobObject(JobObjectExtendedLimitInformation)`.
        call: &'static str,
        /// The underlying error (`GetLastError` / `errno`).
        #[source]
        source: io::Error,
    },
}
