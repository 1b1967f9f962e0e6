//! One module per command.

pub mod build;
pub mod du;
pub mod export;
pub mod fsck;
pub mod gc;
pub mod health;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod load;
pub mod login;
pub mod parse;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod save;
pub mod serve;
pub mod tag;

use std::process::ExitCode;

use crate::{Cli, Command};

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(args) => build::run(&cli.global, args).await,
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Health(args) => health::run(&cli.global, args).await,
        Command::Du(args) => du::run(&cli.global, args).await,
        Command::Gc(args) => gc::run(&cli.global, args).await,
        Command::Fsck(args) => fsck::run(&cli.global, args).await,
        Command::History(args) => history::run(&cli.global, args).await,
        Command::Inspect(args) => inspect::run(&cli.global, args).await,
        Command::Import(args) => import::run(&cli.global, args).await,
        Command::Save(args) => save::run(&cli.global, args).await,
        Command::Load(args) => load::run(&cli.global, args).await,
        Command::Export(args) => export::run(&cli.global, args).await,
        Command::Pull(args) => pull::run(&cli.global, args).await,
        Command::Push(args) => push::run(&cli.global, args).await,
        Command::Login(args) => login::run(&cli.global, args).await,
        Command::Logout(args) => login::logout(&cli.global, args).await,
        Command::Parse(args) => parse::run_parse(&cli.global, args).await,
        Command::Check(args) => parse::run_check(&cli.global, args).await,
        Command::Images(args) => images::run(&cli.global, args).await,
        Command::Tag(args) => tag::run(&cli.global, args).await,
        Command::Rmi(args) => rmi::run(&cli.global, args).await,
    }
}
