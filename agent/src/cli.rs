//! The command line of `hostgate-agent` (clap derive), and the wiring of `run` from it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::container::ConsoleSink;
use crate::pod::restart::{DEFAULT_BACKOFF, DEFAULT_BACKOFF_MAX};

/// Runs approved Windows HostProcess pods on this node, each container in its own job object
/// (a cgroup on Linux).
#[derive(Debug, Parser)]
#[command(name = "hostgate-agent", version, max_term_width = 100)]
pub struct Cli {
    /// Verbosity of the agent's own messages (on stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Info, env = "HOSTGATE_AGENT_LOG")]
    pub log_level: LogLevel,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Container starts and exits, back-offs, the pod's result.
    Info,
    /// Everything the agent does.
    Debug,
}

impl LogLevel {
    /// The `tracing` level.
    pub fn tracing_level(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify an approved pod and run its containers here, in the foreground.
    ///
    /// The pod's `hostgate.io/approval` annotation must verify with one of the trusted keys,
    /// describe exactly this pod, and the policies must still admit it (the approving one
    /// included). Init containers run in order, then the regular containers together, each in
    /// its own job with the pod's CPU and memory limits. Container output goes to stdout
    /// (prefixed with the container name) and to CRI log files. SIGTERM or Ctrl-C stops
    /// everything: the stop signal, the grace period, then the job is killed.
    ///
    /// Exit codes: 0 success (or a clean stop of a restartPolicy Always pod); 1 the pod
    /// failed; 2 usage; 3 agent error; 4 invalid input; 10 unsigned; 11 bad signature or
    /// untrusted key; 12 changed after approval; 13 no policy admits the pod; 14 the
    /// approving policy is gone or no longer admits it; 130/143 stopped by SIGINT/SIGTERM
    /// before the pod completed.
    Run(RunArgs),
    /// Keep this node's copy of the trusted public keys and the policies current.
    ///
    /// Every --interval, reads --trust-keys (`*.pub`) and --policies (YAML/JSON, recursively),
    /// and when their content changed, validates it as `run` would load it and installs it
    /// atomically as DEST/trust and DEST/policies (links through DEST/current to a new version
    /// directory; the previous version is kept). An invalid set is not installed: the last good
    /// one stays and the reason is logged. SIGTERM or Ctrl-C stops it (exit 0).
    ///
    /// Relative source paths are taken from $CONTAINER_SANDBOX_MOUNT_POINT when it is set, so
    /// in a HostProcess container they name the pod's volumes with either containerd volume
    /// layout.
    ///
    /// Exit codes with --once: 0 installed or unchanged; 3 the destination could not be
    /// written; 4 the sources are invalid (or hold no key yet).
    Sync(SyncArgs),
    /// Put containerd-shim-hostgate-v1 on this node and register the `hostgate` runtime handler.
    ///
    /// Copies the shim beside the `containerd` executable (atomically, keeping the previous one
    /// as `.previous`), adds the handler (`runtime_type = "io.containerd.hostgate.v1"`,
    /// `pod_annotations = ["hostgate.io/*", "microsoft.com/hostprocess-*"]`) to containerd's
    /// configuration, to the main file for config version 2 (containerd 1.6/1.7) or as a
    /// drop-in under `imports` for version 3 (2.x), keeping every other line of the file and a
    /// backup of it; has containerd load the result; restarts containerd when asked; labels
    /// the node `hostgate.io/node=ready` when asked, once containerd answers. A second run
    /// changes nothing and says so. A configuration it cannot understand (not TOML, unknown
    /// version, read-only, a `hostgate` handler defined differently) is refused untouched; if
    /// containerd rejects the edit or does not come back, the previous configuration is put
    /// back and the node is not labelled.
    ///
    /// Exit codes: 0 installed or nothing to do; 3 failed (the node is left as it was).
    Install(InstallArgs),
    /// Undo `install`: remove the node label, restore containerd's configuration (byte for
    /// byte from the backup while it is as installed, else remove only the handler), restart
    /// containerd when asked, remove the shim.
    Uninstall(InstallArgs),
}

/// `hostgate-agent install` and `uninstall`.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// containerd's configuration file.
    #[arg(long, default_value_os_t = crate::install::default_config_path())]
    pub containerd_config: PathBuf,
    /// Where the shim goes (default: beside the `containerd` executable found on PATH).
    #[arg(long)]
    pub shim_dir: Option<PathBuf>,
    /// The shim to install (default: containerd-shim-hostgate-v1 beside this executable).
    #[arg(long)]
    pub shim_binary: Option<PathBuf>,
    /// The configuration's version: `auto` reads the file's `version` key.
    #[arg(long, value_enum, default_value_t = ConfigVersion::Auto)]
    pub config_version: ConfigVersion,
    /// Print what would change (as a diff) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How containerd is restarted after its configuration changed.
    #[arg(long, value_enum, default_value_t = Restart::None)]
    pub restart: Restart,
    /// containerd's address, waited for after a restart.
    #[arg(long, default_value_os_t = crate::install::restart::default_address())]
    pub containerd_address: PathBuf,
    /// The containerd executable that loads the edited configuration before a restart
    /// (default: `containerd` on PATH; without one the check is skipped).
    #[arg(long)]
    pub containerd: Option<PathBuf>,
    /// Seconds containerd may take to answer after a restart.
    #[arg(long, default_value_t = 60)]
    pub restart_timeout: u64,
    /// Label this Node `hostgate.io/node=ready` when done (in-cluster credentials); uninstall
    /// removes the label first.
    #[arg(long, value_name = "NODE")]
    pub label_node: Option<String>,
    /// Hand admitted containers to the platform's own shim (containerd-shim-runhcs-v1 on
    /// Windows, containerd-shim-runc-v2 on Linux) instead of running them as jobs.
    #[arg(long)]
    pub delegate: bool,
    /// The node directory whose `shim.yaml` records the mode (default: $HOSTGATE_NODE_DIR, or
    /// the platform's default).
    #[arg(long)]
    pub node_dir: Option<PathBuf>,
}

/// `--config-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConfigVersion {
    /// Read the file's `version`.
    Auto,
    /// containerd 1.6/1.7.
    #[value(name = "2")]
    V2,
    /// containerd 2.x.
    #[value(name = "3")]
    V3,
}

/// `--restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Restart {
    /// `systemctl restart containerd`.
    Systemd,
    /// The Windows service `containerd`.
    WindowsService,
    /// Do not restart.
    None,
}

impl InstallArgs {
    /// The install options these flags describe.
    pub fn options(&self) -> crate::install::Options {
        use crate::install::{Options, RestartMode, SHIM_BINARY, Version};
        let shim_binary = self.shim_binary.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|d| d.join(SHIM_BINARY)))
                .unwrap_or_else(|| PathBuf::from(SHIM_BINARY))
        });
        Options {
            config: self.containerd_config.clone(),
            version: match self.config_version {
                ConfigVersion::Auto => None,
                ConfigVersion::V2 => Some(Version::V2),
                ConfigVersion::V3 => Some(Version::V3),
            },
            shim_dir: self.shim_dir.clone(),
            shim_binary,
            dry_run: self.dry_run,
            restart: match self.restart {
                Restart::Systemd => RestartMode::Systemd,
                Restart::WindowsService => RestartMode::WindowsService,
                Restart::None => RestartMode::None,
            },
            containerd: self.containerd.clone(),
            address: self.containerd_address.clone(),
            restart_timeout: Duration::from_secs(self.restart_timeout),
            label_node: self.label_node.clone(),
            delegate: self.delegate,
            node_dir: self
                .node_dir
                .clone()
                .unwrap_or_else(crate::install::default_node_dir),
        }
    }
}

/// `hostgate-agent sync`.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Directory of trusted public keys (`*.pub`), e.g. the mounted public-key ConfigMap.
    #[arg(long, value_name = "DIR")]
    pub trust_keys: PathBuf,
    /// Directory of HostProcessPolicy files, e.g. the mounted policies ConfigMap.
    #[arg(long, value_name = "DIR")]
    pub policies: PathBuf,
    /// Where the node's copy is installed: DEST/trust and DEST/policies.
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,
    /// Time between two passes.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// One pass, then exit with its result.
    #[arg(long)]
    pub once: bool,
}

impl SyncArgs {
    /// The sync configuration, with relative sources resolved against
    /// `$CONTAINER_SANDBOX_MOUNT_POINT` when set.
    pub fn config(&self) -> crate::sync::SyncConfig {
        let sandbox = std::env::var_os(crate::sync::SANDBOX_MOUNT_POINT_ENV);
        crate::sync::SyncConfig {
            trust_keys: crate::sync::resolve_source(&self.trust_keys, sandbox.as_deref()),
            policies: crate::sync::resolve_source(&self.policies, sandbox.as_deref()),
            dest: self.dest.clone(),
        }
    }

    /// Runs `sync` until `stop` fires (or one pass with --once); returns the exit code.
    pub fn execute(&self, stop: &crate::stop::StopToken) -> u8 {
        let mut syncer = crate::sync::Syncer::new(self.config());
        if self.once {
            return match syncer.sync_once() {
                Ok(outcome) => {
                    println!("{}", crate::sync::Counts(&outcome));
                    0
                }
                Err(err) => {
                    eprintln!("hostgate-agent: {}", hostgate_core::chain::Chain(&err));
                    if err.is_invalid_input() { 4 } else { 3 }
                }
            };
        }
        if self.interval.is_zero() {
            eprintln!("hostgate-agent: --interval must be more than 0");
            return 2;
        }
        tracing::info!(
            trust_keys = %syncer.config().trust_keys.display(),
            policies = %syncer.config().policies.display(),
            dest = %syncer.config().dest.display(),
            interval = ?self.interval,
            "syncing"
        );
        syncer.run(self.interval, stop);
        0
    }
}

/// `hostgate-agent run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The manifest: one Pod, plus any ConfigMaps and Secrets it uses (multi-document YAML or
    /// JSON).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub manifest: PathBuf,
    /// Directory of trusted public keys (`*.pub`, Ed25519 SPKI PEM).
    #[arg(long, value_name = "DIR")]
    pub trust_keys: PathBuf,
    /// HostProcessPolicy files or directories (repeatable).
    #[arg(long = "policies", value_name = "PATH", required = true)]
    pub policies: Vec<PathBuf>,
    /// ConfigMaps and Secrets not in the manifest, as `<DIR>/<name>/<key>` files.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Root of the CRI log files: `<DIR>/<namespace>_<pod>/<container>/<restart>.log`.
    #[arg(long, value_name = "DIR", default_value = "/var/log/hostgate-agent")]
    pub log_dir: PathBuf,
    /// Agent state: container sandboxes (`<DIR>/hpc/<id>/`) and pod volumes (`<DIR>/pods/`),
    /// all removed when the pod ends.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/hostgate-agent")]
    pub state_dir: PathBuf,
    /// First crash-loop back-off before a restart; doubles up to --restart-backoff-max.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub restart_backoff: Duration,
    /// Longest crash-loop back-off.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub restart_backoff_max: Duration,
    /// Grace period between the stop signal and the kill, instead of the pod's
    /// terminationGracePeriodSeconds (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace_period: Option<Duration>,
    /// Limit on the live processes (Linux: tasks) of each container's job. Pods have no such
    /// field, so it is an agent setting; unlimited by default.
    #[arg(long, value_name = "N")]
    pub max_processes: Option<NonZeroU32>,
    /// Parent of the job cgroups, below each cgroup hierarchy (Linux).
    #[arg(long, value_name = "PATH", default_value = "hostgate")]
    pub cgroup_parent: PathBuf,
    /// spec.nodeName for fieldRef (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// status.hostIP / podIP for fieldRef (default: the address of the default route).
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<IpAddr>,
    /// Also link an absolute Linux mountPath (e.g. /etc/app) to the mount, when nothing exists
    /// there and its parent directory does (never replaces anything; removed at the end).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub absolute_mount_links: bool,
    /// Enforce readOnly mounts with read-only bind mounts (Linux, root); otherwise they are
    /// symlinks like the others.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub read_only_binds: bool,
    /// Show container output on stdout, prefixed with `[<container>] `.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub console_logs: bool,
}

/// Parses `500ms`, `10s`, `5m`, `1h`, or a bare number of seconds (`30`, `0.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 500ms, 10s, 5m, 1h)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

impl Default for RunArgs {
    fn default() -> Self {
        Self {
            manifest: PathBuf::new(),
            trust_keys: PathBuf::new(),
            policies: Vec::new(),
            config_dir: None,
            log_dir: PathBuf::from("/var/log/hostgate-agent"),
            state_dir: PathBuf::from("/var/lib/hostgate-agent"),
            restart_backoff: DEFAULT_BACKOFF,
            restart_backoff_max: DEFAULT_BACKOFF_MAX,
            grace_period: None,
            max_processes: None,
            cgroup_parent: PathBuf::from("hostgate"),
            node_name: None,
            node_ip: None,
            absolute_mount_links: true,
            read_only_binds: true,
            console_logs: true,
        }
    }
}

#[cfg(any(target_os = "linux", windows))]
impl RunArgs {
    /// Builds the runner these arguments describe and runs the pod until it ends or `stop`
    /// fires.
    pub fn execute(
        &self,
        stop: &crate::stop::StopToken,
    ) -> Result<crate::pod::PodOutcome, crate::pod::RunError> {
        use crate::job::JobManager;
        use crate::pod::{NodeInfo, PodRunner, RunError, RunnerOptions};

        let verifier = crate::verify::Verifier::load(&self.trust_keys, &self.policies)?;
        let manager = Arc::new(self.job_manager().map_err(RunError::Jobs)?);
        let mut node = NodeInfo::detect(manager.host_logical_processors());
        if let Some(name) = &self.node_name {
            node.name.clone_from(name);
        }
        if let Some(ip) = self.node_ip {
            node.ip = ip;
        }
        let mut options = RunnerOptions::new(&self.state_dir, &self.log_dir, node);
        options.config_dir.clone_from(&self.config_dir);
        options.backoff = self.restart_backoff;
        options.backoff_max = self.restart_backoff_max;
        options.grace_period = self.grace_period;
        options.max_processes = self.max_processes.map(NonZeroU32::get);
        options.host_links = self.absolute_mount_links;
        options.bind_read_only = self.read_only_binds;
        if self.console_logs {
            options.sink = Some(Arc::new(ConsoleSink));
        }
        PodRunner::new(verifier, manager, options).run_file(&self.manifest, stop)
    }

    #[cfg(target_os = "linux")]
    fn job_manager(&self) -> Result<crate::job::PlatformJobManager, crate::job::JobError> {
        crate::job::sys::CgroupJobManager::new(crate::job::sys::CgroupConfig {
            parent: self.cgroup_parent.clone(),
            ..crate::job::sys::CgroupConfig::default()
        })
    }

    #[cfg(windows)]
    fn job_manager(&self) -> Result<crate::job::PlatformJobManager, crate::job::JobError> {
        Ok(crate::job::PlatformJobManager::default())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("250ms", Duration::from_millis(250)),
            ("30", Duration::from_secs(30)),
            ("0.5", Duration::from_millis(500)),
            ("0", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "s", "10x", "-1s", "1e400", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sync_arguments() {
        let cli = Cli::try_parse_from([
            "hostgate-agent",
            "sync",
            "--trust-keys",
            "etc/hostgate/trust",
            "--policies",
            "/p",
            "--dest",
            "/d",
            "--interval",
            "5s",
        ])
        .expect("parses");
        let Command::Sync(args) = cli.command else {
            panic!("sync")
        };
        assert_eq!(args.interval, Duration::from_secs(5));
        assert!(!args.once);
        assert_eq!(args.dest, PathBuf::from("/d"));
        let once = Cli::try_parse_from([
            "hostgate-agent",
            "sync",
            "--trust-keys",
            "k",
            "--policies",
            "p",
            "--dest",
            "d",
            "--once",
        ])
        .expect("parses");
        let Command::Sync(args) = once.command else {
            panic!("sync")
        };
        assert!(args.once);
        assert_eq!(args.interval, Duration::from_secs(30));
        assert!(Cli::try_parse_from(["hostgate-agent", "sync", "--trust-keys", "k"]).is_err());
    }

    #[test]
    fn run_arguments() {
        let cli = Cli::try_parse_from([
            "hostgate-agent",
            "run",
            "-f",
            "pod.yaml",
            "--trust-keys",
            "keys",
            "--policies",
            "a",
            "--policies",
            "b",
            "--restart-backoff",
            "20ms",
            "--grace-period",
            "2",
            "--max-processes",
            "64",
            "--absolute-mount-links",
            "false",
        ])
        .expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("run")
        };
        assert_eq!(args.manifest, PathBuf::from("pod.yaml"));
        assert_eq!(args.policies, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(args.restart_backoff, Duration::from_millis(20));
        assert_eq!(args.restart_backoff_max, Duration::from_secs(300));
        assert_eq!(args.grace_period, Some(Duration::from_secs(2)));
        assert_eq!(args.max_processes.map(NonZeroU32::get), Some(64));
        assert!(!args.absolute_mount_links);
        assert!(args.read_only_binds);
        assert_eq!(args.log_dir, PathBuf::from("/var/log/hostgate-agent"));
        // Policies are required; 0 processes is refused.
        assert!(
            Cli::try_parse_from(["hostgate-agent", "run", "-f", "p", "--trust-keys", "k"]).is_err()
        );
        assert!(
            Cli::try_parse_from([
                "hostgate-agent",
                "run",
                "-f",
                "p",
                "--trust-keys",
                "k",
                "--policies",
                "x",
                "--max-processes",
                "0"
            ])
            .is_err()
        );
    }
}
