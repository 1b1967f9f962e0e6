//! One module per command.

pub mod build;
pub mod health;
pub mod parse;
pub mod serve;

use std::process::ExitCode;

use crate::{Cli, Command};

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(args) => build::run(&cli.global, args).await,
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Health(args) => health::run(&cli.global, args).await,
        Command::Parse(args) => parse::run_parse(&cli.global, args).await,
        Command::Check(args) => parse::run_check(&cli.global, args).await,
    }
}
