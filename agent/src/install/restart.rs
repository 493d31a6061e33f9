//! Asking containerd to load the configuration: checking it first (`containerd config dump`
//! loads it as containerd will, imports included), restarting through the service manager, and
//! waiting until containerd answers again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How containerd is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    /// `systemctl restart containerd`.
    Systemd,
    /// The Windows service `containerd` (`sc.exe`).
    WindowsService,
    /// Not restarted: the handler is used after the next restart.
    None,
}

/// Why containerd could not be restarted or did not come back.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// The service manager's command failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed (or why it could not run).
        output: String,
    },
    /// This platform has no such service manager.
    #[error("--restart {0} is not available on this platform")]
    Unsupported(&'static str),
    /// containerd did not answer on its address in time.
    #[error("containerd did not answer on {} within {waited:?}", address.display())]
    Timeout {
        /// The socket or pipe.
        address: PathBuf,
        /// How long it was waited for.
        waited: Duration,
    },
}

/// `name` found on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let exe = if cfg!(windows) {
        format!("{name}.exe")
    } else {
        name.to_owned()
    };
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(&exe))
            .find(|p| p.is_file())
    })
}

fn run(program: &str, args: &[&str]) -> Result<String, RestartError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| RestartError::Command {
            command: command.clone(),
            output: e.to_string(),
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(RestartError::Command {
            command,
            output: text.trim().to_owned(),
        })
    }
}

/// Has containerd load `config` (`containerd --config FILE config dump`) and checks that the
/// `hostgate` handler is in what it loaded. With no containerd executable to ask, the check
/// is skipped (and passes).
pub fn validate(containerd: Option<&Path>, config: &Path) -> Result<(), String> {
    let Some(containerd) = containerd
        .map(Path::to_owned)
        .or_else(|| find_on_path("containerd"))
    else {
        log::info!(
            "no containerd executable: the edited configuration was not loaded before the restart"
        );
        return Ok(());
    };
    let program = containerd.to_string_lossy().into_owned();
    let config = config.to_string_lossy().into_owned();
    let dump =
        run(&program, &["--config", &config, "config", "dump"]).map_err(|e| e.to_string())?;
    if dump.contains(super::RUNTIME_TYPE) {
        Ok(())
    } else {
        Err(format!(
            "containerd loaded {config} without the `{}` handler",
            super::HANDLER
        ))
    }
}

/// Restarts containerd with `mode` and waits until `address` accepts connections.
pub fn restart(mode: RestartMode, address: &Path, timeout: Duration) -> Result<(), RestartError> {
    match mode {
        RestartMode::None => return Ok(()),
        RestartMode::Systemd => {
            if cfg!(windows) {
                return Err(RestartError::Unsupported("systemd"));
            }
            run("systemctl", &["restart", "containerd"])?;
        }
        RestartMode::WindowsService => {
            if !cfg!(windows) {
                return Err(RestartError::Unsupported("windows-service"));
            }
            // `sc.exe stop` returns before the service has stopped; `start` fails while it is
            // stopping, so it is retried until the deadline.
            let _ = run("sc.exe", &["stop", "containerd"]);
            let deadline = Instant::now() + timeout;
            loop {
                match run("sc.exe", &["start", "containerd"]) {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(500)),
                }
            }
        }
    }
    wait_answering(address, timeout)
}

/// Waits until containerd accepts a connection on `address`.
pub fn wait_answering(address: &Path, timeout: Duration) -> Result<(), RestartError> {
    let deadline = Instant::now() + timeout;
    loop {
        if answers(address) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(RestartError::Timeout {
                address: address.to_owned(),
                waited: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(unix)]
fn answers(address: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(address).is_ok()
}

#[cfg(not(unix))]
fn answers(address: &Path) -> bool {
    // A named pipe answers when it can be opened.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(address)
        .is_ok()
}

/// containerd's default address on this platform.
pub fn default_address() -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(r"\\.\pipe\containerd-containerd")
    } else {
        PathBuf::from("/run/containerd/containerd.sock")
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_socket_and_reports_a_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("c.sock");
        let err = wait_answering(&sock, Duration::from_millis(200)).expect_err("nobody listens");
        assert!(err.to_string().contains("did not answer"), "{err}");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        wait_answering(&sock, Duration::from_secs(5)).expect("answers");
    }

    #[test]
    fn other_platforms_managers_are_refused() {
        assert!(matches!(
            restart(RestartMode::WindowsService, Path::new("/x"), Duration::ZERO),
            Err(RestartError::Unsupported("windows-service"))
        ));
        assert!(restart(RestartMode::None, Path::new("/x"), Duration::ZERO).is_ok());
    }

    #[test]
    fn validation_loads_the_file_with_containerd_when_there_is_one() {
        let Some(containerd) = find_on_path("containerd") else {
            hostgate_test_support::unmet(
                hostgate_test_support::test_name!(),
                "no containerd on PATH",
            );
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "version = 2\n").expect("write");
        let err = validate(Some(&containerd), &config).expect_err("no handler");
        assert!(err.contains("without the `hostgate` handler"), "{err}");
        std::fs::write(
            &config,
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hostgate]\nruntime_type = \"io.containerd.hostgate.v1\"\n",
        )
        .expect("write");
        validate(Some(&containerd), &config).expect("loads");
        std::fs::write(&config, "version = 2\n[plugins\n").expect("write");
        assert!(validate(Some(&containerd), &config).is_err());
    }
}
