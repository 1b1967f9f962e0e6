//! The `strata` command.
//!
//! Every command talks to the services over gRPC. With `--addr` / `STRATA_ADDR` it uses a
//! running server; otherwise it uses the `strata serve` of its data root (through the root's
//! socket) when one runs, and else starts all four services inside its own process over the
//! data root ([`connect`]).

mod args;
mod commands;
mod connect;
mod embedded;

use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command, GlobalArgs};

/// Parses the command line, runs the command, prints errors as `error: …` and maps them to
/// the exit code.
pub fn main() -> ExitCode {
    strata_server::tune_allocator(Some(1));
    let cli = Cli::parse();
    // `strata serve` installs its own (a server's logs are its output: info by default)
    if !matches!(cli.command, Command::Serve(_))
        && let Err(e) =
            strata_server::init_tracing(cli.global.log_format, cli.global.log.as_deref(), "warn")
    {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    strata_server::raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
