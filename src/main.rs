//! `hostgate`: wiring only. The commands are in [`cli`], their logic in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

// A review allocates and frees a few hundred small objects (the decoded pod); mimalloc's
// thread-local free lists serve them faster than glibc malloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
