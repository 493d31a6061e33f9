//! Windows backend: one job = one Win32 job object (`windows-sys`), as hcsshim's
//! `internal/jobobject` + `internal/jobcontainers` do for HostProcess containers.
//!
//! Thin by design: every number and decision (limit flags, CPU rate/weight, command line,
//! environment block, notification decoding, wait timeouts) comes from the platform-neutral
//! [`crate::job::limits`] and [`crate::job::win32_params`] modules, which are tested on Linux. This
//! file only marshals them into Win32 calls, each documented where it is made.
//!
//! * **Create** (`JobObjectManager::create`): `CreateJobObjectW("hostgate_<name>")` (an
//!   existing object of that name is refused), an I/O completion port associated with it
//!   (`JobObjectAssociateCompletionPortInformation`) and read by one thread per job, then the
//!   limits: `JOBOBJECT_EXTENDED_LIMIT_INFORMATION` with `KILL_ON_JOB_CLOSE` always, plus
//!   `JOB_MEMORY` / `ACTIVE_PROCESS` when limited; `JOBOBJECT_CPU_RATE_CONTROL_INFORMATION`
//!   with `ENABLE | HARD_CAP` (rate) or `ENABLE | WEIGHT_BASED` (weight).
//! * **Spawn**: `CreateProcessW` with `CREATE_SUSPENDED`, `AssignProcessToJobObject`, then
//!   `ResumeThread`: the program's first instruction runs inside the job. (`std`'s
//!   `raw_attribute` for `PROC_THREAD_ATTRIBUTE_JOB_LIST` is nightly-only.) Only the three
//!   standard handles are inherited (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`); each process gets
//!   `CREATE_NEW_PROCESS_GROUP` so that console control events can target it.
//! * **Stop**: `GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, group)` per process group (see
//!   [`StopSignal`]); `TerminateJobObject`; emptiness from `ActiveProcesses`, woken by the
//!   `JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO` notification.
//! * **Drop**: terminate, wait, stop the notification thread, close the handles (closing the
//!   last job handle would kill any survivor anyway: `KILL_ON_JOB_CLOSE`).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fs::File;
use std::io::{self, PipeReader, PipeWriter};
use std::mem::{offset_of, size_of};
use std::num::NonZeroU32;
use std::path::Path;
use std::process::ExitStatus;
use std::ptr::{null, null_mut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    DUPLICATE_SAME_ACCESS, DuplicateHandle, ERROR_ALREADY_EXISTS, ERROR_FILE_NOT_FOUND,
    ERROR_MORE_DATA, GetLastError, HANDLE, INVALID_HANDLE_VALUE, SetLastError, WAIT_OBJECT_0,
    WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Console::{
    CTRL_BREAK_EVENT, GenerateConsoleCtrlEvent, GetStdHandle, STD_ERROR_HANDLE, STD_HANDLE,
    STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::IO::{
    CreateIoCompletionPort, GetQueuedCompletionStatus, OVERLAPPED, PostQueuedCompletionStatus,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOBOBJECT_ASSOCIATE_COMPLETION_PORT,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION,
    JOBOBJECT_BASIC_PROCESS_ID_LIST, JOBOBJECT_CPU_RATE_CONTROL_INFORMATION,
    JOBOBJECT_CPU_RATE_CONTROL_INFORMATION_0, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOBOBJECTINFOCLASS, JobObjectAssociateCompletionPortInformation,
    JobObjectBasicAccountingInformation, JobObjectBasicAndIoAccountingInformation,
    JobObjectBasicProcessIdList, JobObjectCpuRateControlInformation,
    JobObjectExtendedLimitInformation, OpenJobObjectW, QueryInformationJobObject,
    SetInformationJobObject, TerminateJobObject,
};
use windows_sys::Win32::System::SystemServices::{JOB_OBJECT_QUERY, JOB_OBJECT_TERMINATE};
use windows_sys::Win32::System::Threading::{
    ALL_PROCESSOR_GROUPS, CREATE_NEW_PROCESS_GROUP, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT,
    CreateProcessW, DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT,
    GetActiveProcessorCount, GetCurrentProcess, GetExitCodeProcess,
    InitializeProcThreadAttributeList, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION,
    ResumeThread, STARTF_USESTDHANDLES, STARTUPINFOEXW, TerminateProcess,
    UpdateProcThreadAttribute, WaitForSingleObject,
};

// On other hosts this file is only type-checked by the unit tests, against a stand-in.
#[cfg(not(windows))]
use super::windows_std_stub::{
    ffi::OsStrExt,
    io::{AsRawHandle, FromRawHandle, OwnedHandle},
    process::ExitStatusExt,
};
#[cfg(windows)]
use std::os::windows::{
    ffi::OsStrExt,
    io::{AsRawHandle, FromRawHandle, OwnedHandle},
    process::ExitStatusExt,
};

use super::limits::{self, WindowsLimitPlan, duration_from_100ns};
use super::win32_params::{
    self, INFINITE, JobMessage, Notifications, command_line, environment_block, job_object_name,
    wait_millis, wide_nul,
};
use super::{
    Job, JobError, JobLimits, JobManager, JobName, JobProcess, JobStats, ProcessSpec, StdioSpec,
    StopSignal, TERMINATE_TIMEOUT,
};

/// The platform's job manager.
pub type PlatformJobManager = JobObjectManager;
/// The platform's job.
pub type PlatformJob = JobObject;
/// The platform's process handle.
pub type PlatformProcess = JobObjectProcess;

// The pure modules carry the SDK values; make sure they are the ones windows-sys has.
const _: () = {
    use windows_sys::Win32::System::JobObjects as jo;
    use windows_sys::Win32::System::SystemServices as ss;
    assert!(limits::JOB_OBJECT_LIMIT_ACTIVE_PROCESS == jo::JOB_OBJECT_LIMIT_ACTIVE_PROCESS);
    assert!(limits::JOB_OBJECT_LIMIT_JOB_MEMORY == jo::JOB_OBJECT_LIMIT_JOB_MEMORY);
    assert!(limits::JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE == jo::JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE);
    assert!(limits::JOB_OBJECT_CPU_RATE_CONTROL_ENABLE == jo::JOB_OBJECT_CPU_RATE_CONTROL_ENABLE);
    assert!(
        limits::JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED
            == jo::JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED
    );
    assert!(
        limits::JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP == jo::JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP
    );
    assert!(
        win32_params::JOB_OBJECT_MSG_ACTIVE_PROCESS_LIMIT
            == ss::JOB_OBJECT_MSG_ACTIVE_PROCESS_LIMIT
    );
    assert!(
        win32_params::JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO == ss::JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO
    );
    assert!(win32_params::JOB_OBJECT_MSG_NEW_PROCESS == ss::JOB_OBJECT_MSG_NEW_PROCESS);
    assert!(win32_params::JOB_OBJECT_MSG_EXIT_PROCESS == ss::JOB_OBJECT_MSG_EXIT_PROCESS);
    assert!(
        win32_params::JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS
            == ss::JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS
    );
    assert!(win32_params::JOB_OBJECT_MSG_JOB_MEMORY_LIMIT == ss::JOB_OBJECT_MSG_JOB_MEMORY_LIMIT);
    assert!(win32_params::INFINITE == windows_sys::Win32::System::Threading::INFINITE);
};

/// `JobObjectMemoryUsageInformation`: current and peak job commit. Not in windows-sys; the
/// class and layout are the ones hcsshim uses (`internal/winapi/jobobject.go`).
const JOB_OBJECT_MEMORY_USAGE_INFORMATION: JOBOBJECTINFOCLASS = 28;

/// `JOBOBJECT_MEMORY_USAGE_INFORMATION`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct JobObjectMemoryUsageInformation {
    job_memory: u64,
    peak_job_memory_used: u64,
}

/// Completion key of the job's notifications on its port.
const JOB_KEY: usize = 1;
/// Completion key that tells the notification thread to stop.
const SHUTDOWN_KEY: usize = 2;

fn raw(handle: &OwnedHandle) -> HANDLE {
    handle.as_raw_handle()
}

fn os_error(call: &'static str) -> JobError {
    JobError::Os {
        call,
        source: io::Error::last_os_error(),
    }
}

/// Takes ownership of a handle returned by a call that reports failure with NULL.
///
/// # Safety
/// `handle` must be NULL or a handle the caller owns and nobody else closes.
unsafe fn owned_or_null(handle: HANDLE) -> Option<OwnedHandle> {
    if handle.is_null() {
        None
    } else {
        // SAFETY: non-null and owned by the caller (function contract).
        Some(unsafe { OwnedHandle::from_raw_handle(handle) })
    }
}

fn struct_len<T>() -> u32 {
    // Every structure passed here is a few hundred bytes at most.
    u32::try_from(size_of::<T>()).unwrap_or(u32::MAX)
}

/// `SetInformationJobObject(job, class, info)`.
fn set_information<T>(
    job: &OwnedHandle,
    class: JOBOBJECTINFOCLASS,
    info: &T,
    call: &'static str,
) -> Result<(), JobError> {
    // SAFETY: `info` is a valid, initialised `T` of `size_of::<T>()` bytes, the structure that
    // `class` expects (callers pair them); `job` is an open job handle.
    let ok = unsafe {
        SetInformationJobObject(
            raw(job),
            class,
            (info as *const T).cast::<c_void>(),
            struct_len::<T>(),
        )
    };
    if ok == 0 { Err(os_error(call)) } else { Ok(()) }
}

/// `QueryInformationJobObject(job, class)` into a fixed-size `T`.
fn query_information<T: Default>(
    job: &OwnedHandle,
    class: JOBOBJECTINFOCLASS,
    call: &'static str,
) -> Result<T, JobError> {
    let mut info = T::default();
    // SAFETY: `info` is a writable `T` of `size_of::<T>()` bytes, the structure `class` fills;
    // the returned-length pointer may be null; `job` is an open job handle.
    let ok = unsafe {
        QueryInformationJobObject(
            raw(job),
            class,
            (&mut info as *mut T).cast::<c_void>(),
            struct_len::<T>(),
            null_mut(),
        )
    };
    if ok == 0 {
        Err(os_error(call))
    } else {
        Ok(info)
    }
}

/// Writes a [`WindowsLimitPlan`] into the job: the extended limits always (they carry
/// `KILL_ON_JOB_CLOSE`), the CPU rate control when it is on or was on before (flags 0 turns
/// it off).
fn apply_plan(
    job: &OwnedHandle,
    plan: &WindowsLimitPlan,
    previous: Option<&WindowsLimitPlan>,
) -> Result<(), JobError> {
    let mut ext = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
    ext.BasicLimitInformation.LimitFlags = plan.limit_flags;
    ext.BasicLimitInformation.ActiveProcessLimit = plan.active_process_limit;
    ext.JobMemoryLimit = usize::try_from(plan.job_memory_limit).unwrap_or(usize::MAX);
    set_information(
        job,
        JobObjectExtendedLimitInformation,
        &ext,
        "SetInformationJobObject(JobObjectExtendedLimitInformation)",
    )?;
    let was_on = previous.is_some_and(|p| p.cpu_control_flags != 0);
    if plan.cpu_control_flags != 0 || was_on {
        let value =
            if plan.cpu_control_flags & limits::JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED != 0 {
                JOBOBJECT_CPU_RATE_CONTROL_INFORMATION_0 {
                    Weight: plan.cpu_value,
                }
            } else {
                JOBOBJECT_CPU_RATE_CONTROL_INFORMATION_0 {
                    CpuRate: plan.cpu_value,
                }
            };
        let cpu = JOBOBJECT_CPU_RATE_CONTROL_INFORMATION {
            ControlFlags: plan.cpu_control_flags,
            Anonymous: value,
        };
        set_information(
            job,
            JobObjectCpuRateControlInformation,
            &cpu,
            "SetInformationJobObject(JobObjectCpuRateControlInformation)",
        )?;
    }
    Ok(())
}

/// Creates Win32 job objects named `hostgate_<name>`.
#[derive(Debug)]
pub struct JobObjectManager {
    host_processors: NonZeroU32,
}

impl Default for JobObjectManager {
    fn default() -> Self {
        Self::new()
    }
}

impl JobObjectManager {
    /// A manager; the host's logical processors are counted across all processor groups
    /// (`GetActiveProcessorCount(ALL_PROCESSOR_GROUPS)`, as kubelet's `winstats` does).
    pub fn new() -> Self {
        // SAFETY: no pointers; returns 0 on failure.
        let count = unsafe { GetActiveProcessorCount(ALL_PROCESSOR_GROUPS) };
        Self {
            host_processors: NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN),
        }
    }
}

impl JobManager for JobObjectManager {
    type Job = JobObject;

    fn create(&self, name: &JobName, limits: &JobLimits) -> Result<JobObject, JobError> {
        let plan = WindowsLimitPlan::new(limits)?;
        let object_name = job_object_name(name);
        let wide_name = wide_nul(&object_name);
        // SAFETY: resetting the thread's last error has no preconditions; it lets us tell
        // "created" from "opened existing" below.
        unsafe { SetLastError(0) };
        // SAFETY: default security (null), a NUL-terminated UTF-16 name alive for the call.
        let handle = unsafe { CreateJobObjectW(null(), wide_name.as_ptr()) };
        // SAFETY: CreateJobObjectW returns a new handle owned by us, or NULL.
        let Some(job) = (unsafe { owned_or_null(handle) }) else {
            return Err(os_error("CreateJobObjectW"));
        };
        // SAFETY: reads the calling thread's last error; no preconditions.
        if unsafe { GetLastError() } == ERROR_ALREADY_EXISTS {
            return Err(JobError::AlreadyExists {
                name: name.to_string(),
                location: object_name,
            });
        }
        // SAFETY: INVALID_HANDLE_VALUE + no existing port creates a new, unassociated port;
        // returns NULL on failure.
        let port = unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, null_mut(), 0, 1) };
        // SAFETY: a new handle owned by us, or NULL.
        let Some(port) = (unsafe { owned_or_null(port) }) else {
            return Err(os_error("CreateIoCompletionPort"));
        };
        let association = JOBOBJECT_ASSOCIATE_COMPLETION_PORT {
            CompletionKey: std::ptr::without_provenance_mut(JOB_KEY),
            CompletionPort: raw(&port),
        };
        set_information(
            &job,
            JobObjectAssociateCompletionPortInformation,
            &association,
            "SetInformationJobObject(JobObjectAssociateCompletionPortInformation)",
        )?;
        apply_plan(&job, &plan, None)?;
        let shared = Arc::new(Shared {
            job,
            port,
            notifications: Mutex::new(Notifications::default()),
            changed: Condvar::new(),
        });
        let pump = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("job-{name}"))
            .spawn(move || pump.pump())
            .map_err(|source| JobError::Os {
                call: "spawn job notification thread",
                source,
            })?;
        Ok(JobObject {
            name: name.clone(),
            shared,
            thread: Some(thread),
            plan: Mutex::new(plan),
            groups: Mutex::new(Vec::new()),
            torn_down: false,
        })
    }

    /// A job object outlives its creator only while someone else holds a handle to it (the
    /// creator's handles close with it, and kill-on-close ends its processes); such a job is
    /// opened by name and terminated.
    fn remove_stale(&self, name: &JobName) -> Result<bool, JobError> {
        let wide_name = wide_nul(&job_object_name(name));
        // SAFETY: access rights, no inheritance, a NUL-terminated UTF-16 name alive for the
        // call; returns NULL on failure.
        let handle = unsafe {
            OpenJobObjectW(
                JOB_OBJECT_TERMINATE | JOB_OBJECT_QUERY,
                0,
                wide_name.as_ptr(),
            )
        };
        // SAFETY: a new handle owned by us, or NULL.
        let Some(job) = (unsafe { owned_or_null(handle) }) else {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32) {
                return Ok(false);
            }
            return Err(JobError::Os {
                call: "OpenJobObjectW",
                source: err,
            });
        };
        // SAFETY: an open job handle with JOB_OBJECT_TERMINATE access.
        if unsafe { TerminateJobObject(raw(&job), 1) } == 0 {
            return Err(os_error("TerminateJobObject"));
        }
        Ok(true)
    }

    fn host_logical_processors(&self) -> NonZeroU32 {
        self.host_processors
    }
}

/// What the job and its notification thread share.
#[derive(Debug)]
struct Shared {
    job: OwnedHandle,
    port: OwnedHandle,
    notifications: Mutex<Notifications>,
    changed: Condvar,
}

impl Shared {
    fn notifications(&self) -> MutexGuard<'_, Notifications> {
        self.notifications
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The notification thread: reads the job's completion packets until told to stop.
    fn pump(&self) {
        loop {
            let mut message: u32 = 0;
            let mut key: usize = 0;
            let mut overlapped: *mut OVERLAPPED = null_mut();
            // SAFETY: the port stays open while this thread runs (it holds an `Arc` of
            // `self`); the three out-pointers are valid locals. For job notifications the
            // "overlapped" value is a process id, never dereferenced.
            let ok = unsafe {
                GetQueuedCompletionStatus(
                    raw(&self.port),
                    &mut message,
                    &mut key,
                    &mut overlapped,
                    INFINITE,
                )
            };
            if ok == 0 {
                if overlapped.is_null() {
                    // The port itself failed: nothing more will arrive.
                    tracing::warn!(error = %io::Error::last_os_error(), "job completion port failed");
                    return;
                }
                continue;
            }
            match key {
                SHUTDOWN_KEY => return,
                JOB_KEY => {
                    let msg = JobMessage::from_packet(message, overlapped.addr());
                    self.notifications().record(msg);
                    self.changed.notify_all();
                }
                _ => {}
            }
        }
    }

    fn basic_accounting(&self) -> Result<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JobError> {
        query_information(
            &self.job,
            JobObjectBasicAccountingInformation,
            "QueryInformationJobObject(JobObjectBasicAccountingInformation)",
        )
    }
}

/// A Win32 job object (see the module docs). Dropping it kills and closes it.
#[derive(Debug)]
pub struct JobObject {
    name: JobName,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    plan: Mutex<WindowsLimitPlan>,
    /// Process group ids (= pids) of the processes this job started.
    groups: Mutex<Vec<u32>>,
    torn_down: bool,
}

impl JobObject {
    /// Terminates, waits, stops the notification thread.
    fn shutdown(&mut self) -> Result<(), JobError> {
        let result = self.terminate().and_then(|()| {
            if self.wait_empty(TERMINATE_TIMEOUT)? {
                Ok(())
            } else {
                Err(JobError::NotEmpty {
                    job: self.name.to_string(),
                    waited: TERMINATE_TIMEOUT,
                })
            }
        });
        if let Some(thread) = self.thread.take() {
            // SAFETY: an open port handle; a packet with no OVERLAPPED.
            let posted = unsafe {
                PostQueuedCompletionStatus(raw(&self.shared.port), 0, SHUTDOWN_KEY, null())
            };
            if posted == 0 {
                tracing::warn!(job = %self.name, error = %io::Error::last_os_error(),
                    "cannot stop the job notification thread; leaving it");
            } else if thread.join().is_err() {
                tracing::warn!(job = %self.name, "job notification thread panicked");
            }
        }
        result
    }
}

impl Job for JobObject {
    type Process = JobObjectProcess;

    fn name(&self) -> &JobName {
        &self.name
    }

    fn set_limits(&self, limits: &JobLimits) -> Result<(), JobError> {
        let plan = WindowsLimitPlan::new(limits)?;
        let mut current = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        apply_plan(&self.shared.job, &plan, Some(&current))?;
        *current = plan;
        Ok(())
    }

    fn spawn(&self, spec: ProcessSpec) -> Result<JobObjectProcess, JobError> {
        let spawn_error = |source: io::Error| JobError::Spawn {
            program: spec.program.clone(),
            job: self.name.to_string(),
            source,
        };
        let invalid = |msg: &'static str| io::Error::new(io::ErrorKind::InvalidInput, msg);

        let program: Vec<u16> = spec.program.as_os_str().encode_wide().collect();
        let args: Vec<Vec<u16>> = spec
            .args
            .iter()
            .map(|a| a.encode_wide().collect())
            .collect();
        let mut cmdline = command_line(&program, &args).map_err(|m| spawn_error(invalid(m)))?;
        let vars: Vec<(Vec<u16>, Vec<u16>)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.encode_wide().collect(), v.encode_wide().collect()))
            .collect();
        let env = environment_block(&vars).map_err(|m| spawn_error(invalid(m)))?;
        let cwd = match &spec.working_dir {
            Some(dir) => Some(wide_path(dir).map_err(|m| spawn_error(invalid(m)))?),
            None => None,
        };

        let (stdin, stdin_parent) = child_input(spec.stdin).map_err(&spawn_error)?;
        let (stdout, stdout_parent) =
            child_output(spec.stdout, STD_OUTPUT_HANDLE).map_err(&spawn_error)?;
        let (stderr, stderr_parent) =
            child_output(spec.stderr, STD_ERROR_HANDLE).map_err(&spawn_error)?;
        let mut attributes = AttributeList::with_handles([raw(&stdin), raw(&stdout), raw(&stderr)])
            .map_err(&spawn_error)?;

        let mut startup = STARTUPINFOEXW::default();
        startup.StartupInfo.cb = struct_len::<STARTUPINFOEXW>();
        startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
        startup.StartupInfo.hStdInput = raw(&stdin);
        startup.StartupInfo.hStdOutput = raw(&stdout);
        startup.StartupInfo.hStdError = raw(&stderr);
        startup.lpAttributeList = attributes.as_mut_ptr();
        let mut info = PROCESS_INFORMATION::default();
        let flags = CREATE_SUSPENDED
            | CREATE_UNICODE_ENVIRONMENT
            | CREATE_NEW_PROCESS_GROUP
            | EXTENDED_STARTUPINFO_PRESENT;
        // SAFETY: no application name (the program is the quoted first token of the
        // mutable, NUL-terminated command line); default process/thread security; handle
        // inheritance on but limited by the attribute list to the three inheritable standard
        // handles, all open until after the call; a UTF-16 environment block ending in two
        // NULs (CREATE_UNICODE_ENVIRONMENT); a NUL-terminated directory or null; a
        // STARTUPINFOEXW whose `cb` says so (EXTENDED_STARTUPINFO_PRESENT) with an initialised
        // attribute list; `info` is a writable PROCESS_INFORMATION.
        let ok = unsafe {
            CreateProcessW(
                null(),
                cmdline.as_mut_ptr(),
                null(),
                null(),
                1,
                flags,
                env.as_ptr().cast::<c_void>(),
                cwd.as_ref().map_or(null(), |c| c.as_ptr()),
                &startup.StartupInfo,
                &mut info,
            )
        };
        if ok == 0 {
            return Err(spawn_error(io::Error::last_os_error()));
        }
        drop(attributes);
        // The child has its own copies; close ours so pipes see EOF when the child exits.
        drop((stdin, stdout, stderr));
        // SAFETY: CreateProcessW succeeded, so both handles are new and owned by us.
        let process = unsafe { OwnedHandle::from_raw_handle(info.hProcess) };
        // SAFETY: as above.
        let thread = unsafe { OwnedHandle::from_raw_handle(info.hThread) };
        let pid = info.dwProcessId;

        let abort = |call: &'static str| {
            let source = io::Error::last_os_error();
            // SAFETY: an open process handle; the suspended process never ran.
            unsafe { TerminateProcess(raw(&process), 1) };
            JobError::Os { call, source }
        };
        // SAFETY: open job and process handles (the process is suspended: it cannot have
        // created children outside the job).
        if unsafe { AssignProcessToJobObject(raw(&self.shared.job), raw(&process)) } == 0 {
            return Err(abort("AssignProcessToJobObject"));
        }
        // SAFETY: the primary thread's handle; returns (DWORD)-1 on failure.
        if unsafe { ResumeThread(raw(&thread)) } == u32::MAX {
            return Err(abort("ResumeThread"));
        }
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pid);
        Ok(JobObjectProcess {
            pid,
            process,
            status: None,
            stdin: stdin_parent,
            stdout: stdout_parent,
            stderr: stderr_parent,
        })
    }

    fn pids(&self) -> Result<Vec<u32>, JobError> {
        let header_words =
            offset_of!(JOBOBJECT_BASIC_PROCESS_ID_LIST, ProcessIdList) / size_of::<usize>();
        let mut capacity = 64usize;
        for _ in 0..16 {
            let mut buf = vec![0usize; header_words + capacity];
            let len = u32::try_from(buf.len() * size_of::<usize>()).unwrap_or(u32::MAX);
            // SAFETY: `buf` is writable, aligned for JOBOBJECT_BASIC_PROCESS_ID_LIST (usize
            // alignment) and `len` bytes long: the header plus `capacity` ids; `job` is open.
            let ok = unsafe {
                QueryInformationJobObject(
                    raw(&self.shared.job),
                    JobObjectBasicProcessIdList,
                    buf.as_mut_ptr().cast::<c_void>(),
                    len,
                    null_mut(),
                )
            };
            let err = (ok == 0).then(io::Error::last_os_error);
            // SAFETY: `buf` starts with the header (aligned, initialised: zeroed, then
            // possibly filled by the call); only the two u32 counts are read.
            let (assigned, listed) = unsafe {
                let header = buf.as_ptr().cast::<JOBOBJECT_BASIC_PROCESS_ID_LIST>();
                (
                    (*header).NumberOfAssignedProcesses as usize,
                    (*header).NumberOfProcessIdsInList as usize,
                )
            };
            match err {
                None => {
                    let listed = listed.min(capacity);
                    let mut pids: Vec<u32> = buf[header_words..header_words + listed]
                        .iter()
                        .map(|&p| u32::try_from(p).unwrap_or(u32::MAX))
                        .collect();
                    pids.sort_unstable();
                    pids.dedup();
                    return Ok(pids);
                }
                Some(e) if e.raw_os_error() == Some(ERROR_MORE_DATA as i32) => {
                    capacity = (assigned + 16).max(capacity * 2);
                }
                Some(source) => {
                    return Err(JobError::Os {
                        call: "QueryInformationJobObject(JobObjectBasicProcessIdList)",
                        source,
                    });
                }
            }
        }
        Err(JobError::Os {
            call: "QueryInformationJobObject(JobObjectBasicProcessIdList)",
            source: io::Error::from_raw_os_error(ERROR_MORE_DATA as i32),
        })
    }

    fn stats(&self) -> Result<JobStats, JobError> {
        let accounting: JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION = query_information(
            &self.shared.job,
            JobObjectBasicAndIoAccountingInformation,
            "QueryInformationJobObject(JobObjectBasicAndIoAccountingInformation)",
        )?;
        let extended: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = query_information(
            &self.shared.job,
            JobObjectExtendedLimitInformation,
            "QueryInformationJobObject(JobObjectExtendedLimitInformation)",
        )?;
        // Undocumented class (hcsshim uses it); without it the current commit reads 0.
        let usage: Option<JobObjectMemoryUsageInformation> = query_information(
            &self.shared.job,
            JOB_OBJECT_MEMORY_USAGE_INFORMATION,
            "QueryInformationJobObject(JobObjectMemoryUsageInformation)",
        )
        .ok();
        let basic = accounting.BasicInfo;
        let peak = u64::try_from(extended.PeakJobMemoryUsed).unwrap_or(u64::MAX);
        Ok(JobStats {
            active_processes: basic.ActiveProcesses,
            cpu_user: duration_from_100ns(basic.TotalUserTime),
            cpu_system: duration_from_100ns(basic.TotalKernelTime),
            memory_current_bytes: usage.map_or(0, |u| u.job_memory),
            memory_peak_bytes: Some(usage.map_or(peak, |u| u.peak_job_memory_used.max(peak))),
            memory_limit_events: self.shared.notifications().memory_limit_events,
            oom_events: None,
            oom_kills: 0,
        })
    }

    /// Polite signals become `CTRL_BREAK_EVENT` for the process group of each process this
    /// job started that is still in it (see [`StopSignal`]); returns how many groups
    /// accepted it.
    fn signal_all(&self, signal: StopSignal) -> Result<usize, JobError> {
        if signal == StopSignal::Kill {
            let active = self.shared.basic_accounting()?.ActiveProcesses;
            self.terminate()?;
            return Ok(usize::try_from(active).unwrap_or(usize::MAX));
        }
        let members = self.pids()?;
        let groups: Vec<u32> = {
            let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            groups.retain(|g| members.binary_search(g).is_ok());
            groups.clone()
        };
        let mut delivered = 0;
        for group in groups {
            // SAFETY: plain values; fails harmlessly if the group shares no console with us.
            if unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, group) } != 0 {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    fn terminate(&self) -> Result<(), JobError> {
        // SAFETY: an open job handle (created with all access); exit code 1 as hcsshim.
        if unsafe { TerminateJobObject(raw(&self.shared.job), 1) } == 0 {
            return Err(os_error("TerminateJobObject"));
        }
        Ok(())
    }

    fn wait_empty(&self, timeout: Duration) -> Result<bool, JobError> {
        let deadline = Instant::now() + timeout;
        loop {
            let generation = self.shared.notifications().generation;
            if self.shared.basic_accounting()?.ActiveProcesses == 0 {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let guard = self.shared.notifications();
            if guard.generation == generation {
                // Woken by any notification (ACTIVE_PROCESS_ZERO among them); re-checked at
                // least every 100 ms in case a packet was lost.
                let wait = (deadline - now).min(Duration::from_millis(100));
                drop(self.shared.changed.wait_timeout(guard, wait));
            }
        }
    }

    fn destroy(mut self) -> Result<(), JobError> {
        self.torn_down = true;
        self.shutdown()
    }
}

impl Drop for JobObject {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if let Err(err) = self.shutdown() {
            tracing::warn!(job = %self.name, error = %err, "cannot terminate dropped job");
        }
    }
}

/// A directory as a NUL-terminated UTF-16 string.
fn wide_path(path: &Path) -> Result<Vec<u16>, &'static str> {
    let mut wide: Vec<u16> = path.as_os_str().encode_wide().collect();
    if wide.contains(&0) {
        return Err("the working directory must not contain NUL characters");
    }
    wide.push(0);
    Ok(wide)
}

/// An inheritable duplicate of `handle` (for the child's standard handles).
fn inheritable(handle: HANDLE) -> io::Result<OwnedHandle> {
    let mut duplicate: HANDLE = null_mut();
    // SAFETY: duplicates a handle of this process (borrowed for the call) into this process,
    // with the same access and inheritable; `duplicate` is a valid out-pointer.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            handle,
            GetCurrentProcess(),
            &mut duplicate,
            0,
            1,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: DuplicateHandle succeeded: a new handle owned by us.
    Ok(unsafe { OwnedHandle::from_raw_handle(duplicate) })
}

fn null_device() -> io::Result<File> {
    File::options().read(true).write(true).open("NUL")
}

/// The agent's own standard handle, or the null device if it has none (a service).
fn agent_std_handle(which: STD_HANDLE) -> io::Result<OwnedHandle> {
    // SAFETY: no preconditions; the result is borrowed, never closed by us.
    let handle = unsafe { GetStdHandle(which) };
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return inheritable(null_device()?.as_raw_handle());
    }
    inheritable(handle)
}

/// The child's stdin (inheritable) and, for a pipe, the parent's write end.
fn child_input(spec: StdioSpec) -> io::Result<(OwnedHandle, Option<PipeWriter>)> {
    Ok(match spec {
        StdioSpec::Null => (inheritable(null_device()?.as_raw_handle())?, None),
        StdioSpec::Inherit => (agent_std_handle(STD_INPUT_HANDLE)?, None),
        StdioSpec::File(file) => (inheritable(file.as_raw_handle())?, None),
        StdioSpec::Pipe => {
            let (reader, writer) = io::pipe()?;
            let reader = OwnedHandle::from(reader);
            (inheritable(raw(&reader))?, Some(writer))
        }
    })
}

/// The child's stdout/stderr (inheritable) and, for a pipe, the parent's read end.
fn child_output(
    spec: StdioSpec,
    which: STD_HANDLE,
) -> io::Result<(OwnedHandle, Option<PipeReader>)> {
    Ok(match spec {
        StdioSpec::Null => (inheritable(null_device()?.as_raw_handle())?, None),
        StdioSpec::Inherit => (agent_std_handle(which)?, None),
        StdioSpec::File(file) => (inheritable(file.as_raw_handle())?, None),
        StdioSpec::Pipe => {
            let (reader, writer) = io::pipe()?;
            let writer = OwnedHandle::from(writer);
            (inheritable(raw(&writer))?, Some(reader))
        }
    })
}

/// A `PROC_THREAD_ATTRIBUTE_LIST` holding one `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`. The list
/// and the handle array it points to live on the heap, so moving this value keeps them valid.
struct AttributeList {
    buffer: Vec<usize>,
    handles: Box<[HANDLE; 3]>,
}

impl AttributeList {
    fn with_handles(handles: [HANDLE; 3]) -> io::Result<Self> {
        let mut size = 0usize;
        // SAFETY: a null list with a size out-pointer only asks for the required size (the
        // call "fails" with ERROR_INSUFFICIENT_BUFFER by design).
        unsafe { InitializeProcThreadAttributeList(null_mut(), 1, 0, &mut size) };
        if size == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buffer = vec![0usize; size.div_ceil(size_of::<usize>())];
        // SAFETY: `buffer` is writable, pointer-aligned and at least `size` bytes.
        if unsafe { InitializeProcThreadAttributeList(buffer.as_mut_ptr().cast(), 1, 0, &mut size) }
            == 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut list = Self {
            buffer,
            handles: Box::new(handles),
        };
        // SAFETY: an initialised list with room for one attribute; the value is the boxed
        // array of three handles, which lives as long as the list (both owned by `list`).
        let ok = unsafe {
            UpdateProcThreadAttribute(
                list.as_mut_ptr(),
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                list.handles.as_ptr().cast::<c_void>(),
                size_of::<[HANDLE; 3]>(),
                null_mut(),
                null(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(list)
    }

    fn as_mut_ptr(&mut self) -> *mut c_void {
        self.buffer.as_mut_ptr().cast()
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        // SAFETY: the list was initialised in `with_handles` (a value exists only then).
        unsafe { DeleteProcThreadAttributeList(self.as_mut_ptr()) };
    }
}

/// A process started in a [`JobObject`]. Dropping it closes the process handle only.
#[derive(Debug)]
pub struct JobObjectProcess {
    pid: u32,
    process: OwnedHandle,
    status: Option<ExitStatus>,
    stdin: Option<PipeWriter>,
    stdout: Option<PipeReader>,
    stderr: Option<PipeReader>,
}

impl JobObjectProcess {
    /// Waits for the process handle to be signalled (`None` = forever), then reads the exit
    /// code.
    fn wait_for(&mut self, timeout: Option<Duration>) -> Result<Option<ExitStatus>, JobError> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let pid = self.pid;
        let wait_error = |source: io::Error| JobError::Wait { pid, source };
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let millis = match deadline {
                None => INFINITE,
                Some(d) => wait_millis(d.saturating_duration_since(Instant::now())),
            };
            // SAFETY: an open process handle.
            match unsafe { WaitForSingleObject(raw(&self.process), millis) } {
                WAIT_OBJECT_0 => break,
                WAIT_TIMEOUT => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                }
                _ => return Err(wait_error(io::Error::last_os_error())),
            }
        }
        let mut code: u32 = 0;
        // SAFETY: an open process handle and a valid out-pointer.
        if unsafe { GetExitCodeProcess(raw(&self.process), &mut code) } == 0 {
            return Err(wait_error(io::Error::last_os_error()));
        }
        let status = ExitStatus::from_raw(code);
        self.status = Some(status);
        Ok(Some(status))
    }
}

impl JobProcess for JobObjectProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn take_stdin(&mut self) -> Option<PipeWriter> {
        self.stdin.take()
    }

    fn take_stdout(&mut self) -> Option<PipeReader> {
        self.stdout.take()
    }

    fn take_stderr(&mut self) -> Option<PipeReader> {
        self.stderr.take()
    }

    fn wait(&mut self) -> Result<ExitStatus, JobError> {
        self.stdin = None;
        match self.wait_for(None)? {
            Some(status) => Ok(status),
            None => Err(JobError::Wait {
                pid: self.pid,
                source: io::Error::from(io::ErrorKind::TimedOut),
            }),
        }
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, JobError> {
        self.wait_for(Some(Duration::ZERO))
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, JobError> {
        self.wait_for(Some(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Layouts the calls depend on (64-bit Windows; the `windows-sys` definitions are
    /// `repr(C)`, so a 64-bit Linux build computes the same).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn structure_layouts() {
        assert_eq!(size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>(), 144);
        assert_eq!(size_of::<JOBOBJECT_CPU_RATE_CONTROL_INFORMATION>(), 8);
        assert_eq!(size_of::<JOBOBJECT_ASSOCIATE_COMPLETION_PORT>(), 16);
        assert_eq!(
            size_of::<JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION>(),
            48 + 48
        );
        assert_eq!(size_of::<JobObjectMemoryUsageInformation>(), 16);
        assert_eq!(
            offset_of!(JOBOBJECT_BASIC_PROCESS_ID_LIST, ProcessIdList),
            8
        );
        assert_eq!(size_of::<STARTUPINFOEXW>(), 112);
    }

    #[test]
    fn completion_keys_differ() {
        assert_ne!(JOB_KEY, SHUTDOWN_KEY);
    }
}
