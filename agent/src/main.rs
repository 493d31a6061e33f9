//! `hostgate-agent`: wiring only (arguments, logging, signals, exit code); the logic is in the
//! library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use hostgate_agent::cli::{Cli, Command};
use hostgate_agent::pod::outcome::{EXIT_AGENT_ERROR, EXIT_USAGE};
use hostgate_agent::stop::{StopReason, StopToken};
use hostgate_core::chain::Chain;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(cli.log_level.tracing_level())
        .with_target(false)
        .init();
    let stop = StopToken::new();
    if let Err(err) = forward_signals(&stop) {
        eprintln!("hostgate-agent: {err:#}");
        return ExitCode::from(EXIT_AGENT_ERROR);
    }
    match cli.command {
        Command::Run(args) => match args.execute(&stop) {
            Ok(outcome) => {
                tracing::info!("pod {outcome}");
                ExitCode::from(outcome.exit_code())
            }
            Err(err) => {
                eprintln!("hostgate-agent: {}", Chain(&err));
                ExitCode::from(err.exit_code())
            }
        },
        Command::Sync(args) => ExitCode::from(args.execute(&stop)),
        Command::Install(args) => report(hostgate_agent::install::install(&args.options())),
        Command::Uninstall(args) => report(hostgate_agent::install::uninstall(&args.options())),
    }
}

/// Prints what `install`/`uninstall` did (or why not) and gives the exit code.
fn report(
    result: Result<hostgate_agent::install::Report, hostgate_agent::install::InstallError>,
) -> ExitCode {
    match result {
        Ok(report) => {
            for line in report.lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("hostgate-agent: {}", Chain(&err));
            ExitCode::from(EXIT_AGENT_ERROR)
        }
    }
}

/// Blocks SIGINT and SIGTERM in every thread (threads inherit the mask; spawned programs do
/// not: the standard library resets it) and turns them into a stop request from one thread.
#[cfg(target_os = "linux")]
fn forward_signals(stop: &StopToken) -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()
        .context("cannot block SIGINT and SIGTERM")?;
    let stop = stop.clone();
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            loop {
                match set.wait() {
                    Ok(Signal::SIGINT) => {
                        tracing::info!("SIGINT: stopping");
                        stop.stop(StopReason::Interrupt);
                    }
                    Ok(_) => {
                        tracing::info!("SIGTERM: stopping");
                        stop.stop(StopReason::Terminate);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "sigwait failed; signals are no longer handled");
                        return;
                    }
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Elsewhere the default handlers stay (on Windows, Ctrl-C ends the agent and closing the job
/// handles kills the containers).
#[cfg(not(target_os = "linux"))]
fn forward_signals(_stop: &StopToken) -> anyhow::Result<()> {
    Ok(())
}
