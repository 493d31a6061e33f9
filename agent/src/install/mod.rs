//! `hostgate-agent install` / `uninstall`: put `containerd-shim-hostgate-v1` where containerd
//! finds it, register the `hostgate` runtime handler in containerd's configuration, restart
//! containerd when asked, and label the node once the handler is in place; and undo all of it.
//!
//! Every step is checked before anything is changed (a configuration that is not TOML, of an
//! unknown version, read-only, or with a `hostgate` handler defined differently; a shim binary
//! that is missing or not executable), and each change is atomic ([`files`]). After an edit the
//! new configuration is loaded by containerd itself (`containerd config dump`) before a restart;
//! if containerd does not accept it, or does not come back after the restart, the previous
//! configuration is restored and the node is not labelled. A second `install` changes nothing
//! and says so. `--dry-run` prints what would change, as a diff.

pub mod config;
pub mod files;
pub mod label;
pub mod restart;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::{HANDLER, POD_ANNOTATIONS, RUNTIME_TYPE, Version};
use files::{FileError, Placed, Snapshot};
pub use restart::RestartMode;

use crate::shim::node::{NodeDir, SETTINGS_FILE};

/// The shim binary's file name on this platform.
pub const SHIM_BINARY: &str = if cfg!(windows) {
    "containerd-shim-hostgate-v1.exe"
} else {
    "containerd-shim-hostgate-v1"
};

/// The node label set once the handler is installed and containerd answers.
pub const NODE_LABEL: (&str, &str) = ("hostgate.io/node", "ready");

/// containerd's usual configuration file on this platform.
pub fn default_config_path() -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(r"C:\Program Files\containerd\config.toml")
    } else {
        PathBuf::from("/etc/containerd/config.toml")
    }
}

/// What `install` and `uninstall` act on.
#[derive(Debug, Clone)]
pub struct Options {
    /// containerd's configuration file.
    pub config: PathBuf,
    /// `auto` (`None`) reads the file's `version`.
    pub version: Option<Version>,
    /// Where the shim goes; `None`: beside the `containerd` executable found on `PATH`.
    pub shim_dir: Option<PathBuf>,
    /// The shim to install.
    pub shim_binary: PathBuf,
    /// Print what would change, change nothing.
    pub dry_run: bool,
    /// How containerd is restarted after a change.
    pub restart: RestartMode,
    /// The containerd executable, for `config dump` (`None`: found on `PATH`; if there is none,
    /// the check is skipped and said so).
    pub containerd: Option<PathBuf>,
    /// containerd's socket (named pipe on Windows), waited for after a restart.
    pub address: PathBuf,
    /// How long containerd may take to answer after a restart.
    pub restart_timeout: Duration,
    /// Label this Node when done (`install`) or remove the label (`uninstall`).
    pub label_node: Option<String>,
    /// Hand admitted containers to the platform's shim (`mode: delegate` in the node's
    /// `shim.yaml`).
    pub delegate: bool,
    /// The node directory holding `shim.yaml`.
    pub node_dir: PathBuf,
}

/// Why an install or uninstall stopped. Nothing is left half-changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The configuration cannot be edited.
    #[error("containerd's configuration")]
    Config(#[from] config::ConfigError),
    /// A file could not be read or written.
    #[error("files")]
    File(#[from] FileError),
    /// No directory for the shim could be found.
    #[error("no `containerd` on PATH to put the shim beside; pass --shim-dir")]
    NoShimDir,
    /// containerd did not accept the new configuration; it was restored.
    #[error(
        "containerd does not load the edited configuration; the previous one was restored: {0}"
    )]
    Rejected(String),
    /// containerd did not come back; the previous configuration was restored.
    #[error(
        "containerd did not come back after the restart; the previous configuration was restored and the node was not labelled"
    )]
    NotBack(#[source] restart::RestartError),
    /// The restart failed.
    #[error("restarting containerd")]
    Restart(#[source] restart::RestartError),
    /// The node label could not be changed.
    #[error("labelling the node")]
    Label(#[source] label::LabelError),
    /// Delegate mode with a containerd 2.x configuration.
    #[error(
        "--delegate needs containerd 1.6/1.7 (config version 2): containerd 2.x runs a task-API-v3 shim's start action only for a pod's first container, so the later ones would reach the platform's shim unchecked"
    )]
    DelegateNeedsV2,
}

/// What was (or, with `--dry-run`, would be) done, one line each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The steps.
    pub lines: Vec<String>,
    /// Whether anything changed (or would change).
    pub changed: bool,
}

impl Report {
    fn say(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }
}

fn shim_dir(opts: &Options) -> Result<PathBuf, InstallError> {
    if let Some(dir) = &opts.shim_dir {
        return Ok(dir.clone());
    }
    let containerd = opts
        .containerd
        .clone()
        .or_else(|| restart::find_on_path("containerd"))
        .ok_or(InstallError::NoShimDir)?;
    containerd
        .parent()
        .map(Path::to_owned)
        .ok_or(InstallError::NoShimDir)
}

/// The settings file with `mode: delegate` set or removed, if that changes it.
fn delegate_settings(text: Option<&str>, delegate: bool) -> Option<String> {
    let text = text.unwrap_or("");
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("mode:")).collect();
    let line = "mode: delegate";
    if delegate {
        lines.push(line);
    }
    let mut new = lines.join("\n");
    if !new.is_empty() {
        new.push('\n');
    }
    (new != text).then_some(new)
}

/// Installs the shim and the handler.
pub fn install(opts: &Options) -> Result<Report, InstallError> {
    let mut report = Report::default();
    let main = Snapshot::read(&opts.config)?;
    let main_text = main.text().unwrap_or_default();
    let drop_in = Snapshot::read(&config::drop_in_path(&opts.config))?;
    let version = match opts.version {
        Some(v) => v,
        None => config::detect_version(&main_text, &opts.config)?,
    };
    if opts.delegate && version == Version::V3 {
        return Err(InstallError::DelegateNeedsV2);
    }
    let edit = config::plan_install(
        &main_text,
        &opts.config,
        Some(version),
        drop_in.text().as_deref(),
    )?;
    if !edit.is_empty() {
        main.check_writable()?;
    }
    let binary = files::check_binary(&opts.shim_binary)?;
    let target = shim_dir(opts)?.join(SHIM_BINARY);
    let current_binary = Snapshot::read(&target)?;
    let binary_changes = current_binary.bytes.as_deref() != Some(binary.as_slice());
    let settings_path = opts.node_dir.join(SETTINGS_FILE);
    let settings = Snapshot::read(&settings_path)?;
    let settings_edit = delegate_settings(settings.text().as_deref(), opts.delegate);

    if let Some(new) = &edit.main {
        report.say(diff(&opts.config, &main_text, new));
    }
    if let Some((path, Some(new))) = &edit.drop_in {
        report.say(diff(path, &drop_in.text().unwrap_or_default(), new));
    }
    if binary_changes {
        report.say(format!(
            "install {} as {}",
            opts.shim_binary.display(),
            target.display()
        ));
    }
    if let Some(new) = &settings_edit {
        report.say(diff(
            &settings_path,
            &settings.text().unwrap_or_default(),
            new,
        ));
    }
    report.changed = !edit.is_empty() || binary_changes || settings_edit.is_some();
    if !report.changed {
        report.say(format!(
            "nothing to do: {} is in place and containerd's configuration has the `{HANDLER}` handler",
            target.display()
        ));
    }
    if opts.dry_run {
        report.say("dry run: nothing was changed");
        return Ok(report);
    }

    // Binary and settings go in only once the configuration is known to load, so a refused
    // install changes nothing.
    let place = |report: &mut Report| -> Result<(), InstallError> {
        if binary_changes
            && let Placed::Installed { previous: Some(p) } = files::place_binary(&binary, &target)?
        {
            report.say(format!("kept the previous shim as {}", p.display()));
        }
        if let Some(new) = &settings_edit {
            settings.replace(Some(new.as_bytes()))?;
        }
        Ok(())
    };
    if edit.is_empty() {
        place(&mut report)?;
        if report.changed && opts.restart != RestartMode::None {
            // Only the binary or the settings changed: running shims keep theirs, new pods get
            // the new ones; containerd needs no restart.
            report.say("containerd's configuration is unchanged: no restart needed");
        }
        label(opts, &mut report, true)?;
        return Ok(report);
    }

    // The configuration. The file as it is before each edit is the backup `uninstall` restores
    // (an edit is planned only when the file lacks the handler, so the backup never has it), and
    // the digest of what was written tells `uninstall` whether the file is still ours.
    let undo = Undo {
        main: main.clone(),
        drop_in: drop_in.clone(),
    };
    let backup = files::backup_path(&opts.config);
    if edit.main.is_some()
        && let Some(bytes) = &main.bytes
    {
        files::write_atomic_like(&backup, bytes, &opts.config)?;
        report.say(format!(
            "backed up {} as {}",
            opts.config.display(),
            backup.display()
        ));
    }
    let written = (|| -> Result<(), InstallError> {
        if let Some((_, Some(text))) = &edit.drop_in {
            drop_in.replace(Some(text.as_bytes()))?;
        }
        if let Some(new) = &edit.main {
            main.replace(Some(new.as_bytes()))?;
            files::write_atomic_like(
                &files::installed_path(&opts.config),
                files::digest(new.as_bytes()).as_bytes(),
                &opts.config,
            )?;
        }
        restart::validate(opts.containerd.as_deref(), &opts.config)
            .map_err(InstallError::Rejected)?;
        place(&mut report)
    })();
    if let Err(e) = written {
        undo.restore();
        return Err(e);
    }
    report.say(format!(
        "registered the `{HANDLER}` handler ({RUNTIME_TYPE})"
    ));
    match opts.restart {
        RestartMode::None => report.say("containerd was not restarted (--restart none): the handler is used after its next restart"),
        mode => {
            if let Err(e) = restart::restart(mode, &opts.address, opts.restart_timeout) {
                undo.restore();
                let _ = restart::restart(mode, &opts.address, opts.restart_timeout);
                return Err(InstallError::NotBack(e));
            }
            report.say("restarted containerd; it answers");
        }
    }
    label(opts, &mut report, true)?;
    Ok(report)
}

/// Puts the configuration back as it was before this install.
struct Undo {
    main: Snapshot,
    drop_in: Snapshot,
}

impl Undo {
    fn restore(&self) {
        for snap in [&self.drop_in, &self.main] {
            if let Err(e) = restore_file(snap) {
                log::warn!("cannot restore {}: {e}", snap.path.display());
            }
        }
    }
}

fn restore_file(snap: &Snapshot) -> Result<(), FileError> {
    match &snap.bytes {
        Some(bytes) => files::write_atomic(&snap.path, bytes),
        None => match std::fs::remove_file(&snap.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FileError::Io {
                action: "remove",
                path: snap.path.clone(),
                source: e,
            }),
        },
    }
}

fn label(opts: &Options, report: &mut Report, set: bool) -> Result<(), InstallError> {
    let Some(node) = &opts.label_node else {
        return Ok(());
    };
    if opts.dry_run {
        return Ok(());
    }
    let client = label::InCluster::from_env().map_err(InstallError::Label)?;
    label::set_label(&client, node, NODE_LABEL.0, set.then_some(NODE_LABEL.1))
        .map_err(InstallError::Label)?;
    report.say(if set {
        format!("labelled node {node} {}={}", NODE_LABEL.0, NODE_LABEL.1)
    } else {
        format!("removed the label {} from node {node}", NODE_LABEL.0)
    });
    Ok(())
}

/// Undoes [`install`]: the label first (no new pod is scheduled here meanwhile), then the
/// configuration (the backup byte for byte while the file is exactly as installed, else only
/// the handler's table and the drop-in), containerd's restart, then the shim binary.
pub fn uninstall(opts: &Options) -> Result<Report, InstallError> {
    let mut report = Report::default();
    label(opts, &mut report, false)?;
    let main = Snapshot::read(&opts.config)?;
    let main_text = main.text().unwrap_or_default();
    let drop_in = Snapshot::read(&config::drop_in_path(&opts.config))?;
    let backup = files::backup_path(&opts.config);
    let installed = files::installed_path(&opts.config);
    let recorded = std::fs::read_to_string(&installed).ok();
    let untouched = main
        .bytes
        .as_ref()
        .is_some_and(|b| recorded.as_deref() == Some(files::digest(b).as_str()));
    let backup_bytes = std::fs::read(&backup).ok();
    let new_main: Option<Vec<u8>> = match (&backup_bytes, untouched) {
        (Some(original), true) => {
            (main.bytes.as_deref() != Some(original.as_slice())).then(|| original.clone())
        }
        _ => {
            let edit = config::plan_uninstall(
                &main_text,
                &opts.config,
                opts.version,
                drop_in.bytes.is_some(),
            )?;
            edit.main.map(String::into_bytes)
        }
    };
    let drop_in_goes = drop_in.bytes.is_some();
    let target = shim_dir(opts).ok().map(|d| d.join(SHIM_BINARY));
    let binary_goes = target.as_ref().is_some_and(|t| t.exists());

    if let Some(new) = &new_main {
        report.say(diff(
            &opts.config,
            &main_text,
            &String::from_utf8_lossy(new),
        ));
    }
    if drop_in_goes {
        report.say(format!("remove {}", drop_in.path.display()));
    }
    if let (true, Some(t)) = (binary_goes, &target) {
        report.say(format!("remove {}", t.display()));
    }
    report.changed = new_main.is_some() || drop_in_goes || binary_goes;
    if !report.changed {
        report.say("nothing to do: the hostgate handler is not installed");
    }
    if opts.dry_run {
        report.say("dry run: nothing was changed");
        return Ok(report);
    }
    if new_main.is_some() {
        main.check_writable()?;
    }
    if drop_in_goes {
        drop_in.replace(None)?;
    }
    if let Some(new) = &new_main {
        main.replace(Some(new))?;
        if untouched {
            report.say(format!(
                "restored {} from {}",
                opts.config.display(),
                backup.display()
            ));
        }
    }
    for leftover in [&backup, &installed] {
        let _ = std::fs::remove_file(leftover);
    }
    if (new_main.is_some() || drop_in_goes) && opts.restart != RestartMode::None {
        restart::restart(opts.restart, &opts.address, opts.restart_timeout)
            .map_err(InstallError::Restart)?;
        report.say("restarted containerd");
    }
    if let (true, Some(t)) = (binary_goes, &target) {
        let _ = std::fs::remove_file(files::previous_path(t));
        std::fs::remove_file(t).map_err(|source| FileError::Io {
            action: "remove",
            path: t.clone(),
            source,
        })?;
    }
    Ok(report)
}

/// A unified diff of `old` → `new` for `path`.
pub fn diff(path: &Path, old: &str, new: &str) -> String {
    let name = path.display().to_string();
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&name, &name)
        .to_string()
}

/// The node directory for `shim.yaml` when none is given.
pub fn default_node_dir() -> PathBuf {
    NodeDir::from_env().root().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegate_mode_is_set_and_removed_in_the_settings() {
        assert_eq!(delegate_settings(None, false), None);
        assert_eq!(
            delegate_settings(None, true).as_deref(),
            Some("mode: delegate\n")
        );
        let with = "gracePeriodSeconds: 2\nmode: delegate\n";
        assert_eq!(delegate_settings(Some(with), true), None);
        assert_eq!(
            delegate_settings(Some(with), false).as_deref(),
            Some("gracePeriodSeconds: 2\n")
        );
    }
}
