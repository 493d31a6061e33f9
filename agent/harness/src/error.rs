use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in the harness. Messages carry the path, command or CRI call
/// concerned, so that a failing test says what failed without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// An external command (`ctr`, `runc`, `busybox`) exited unsuccessfully.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    /// containerd exited before its socket answered.
    #[error("containerd exited while starting ({status}); its log is {log}:\n{tail}")]
    ContainerdExited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    /// The gRPC channel to the CRI socket could not be set up.
    #[error("connecting to {socket}: {source}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    /// A CRI call returned an error status.
    #[error("CRI {call}: {}: {}", .status.code(), .status.message())]
    Cri {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    /// A CRI answer lacked something the helper needs.
    #[error("CRI {call}: {problem}")]
    Protocol { call: &'static str, problem: String },
    /// An option given to the harness cannot be honoured.
    #[error("invalid harness option: {0}")]
    Config(String),
    /// A CRI log line does not have the `<time> <stream> <tag> <text>` shape.
    #[error("{path}:{line}: not a CRI log line: {text:?}")]
    LogFormat {
        path: String,
        line: usize,
        text: String,
    },
    /// Cleanup ran every step but some of them failed.
    #[error("cleanup incomplete: {}", .0.join("; "))]
    Cleanup(Vec<String>),
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn cri(call: &'static str, status: tonic::Status) -> Self {
        Self::Cri {
            call,
            status: Box::new(status),
        }
    }

    /// The gRPC status code when this is a CRI error.
    pub fn cri_code(&self) -> Option<tonic::Code> {
        match self {
            Self::Cri { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}
