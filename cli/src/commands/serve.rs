//! `strata serve`: all four services in one process over the data root.

use anyhow::Context;
use clap::Args;
use strata_server::{ListenAddr, Listener, ServeOptions};
use tracing::info;

use crate::{GlobalArgs, embedded};

/// Flags of `strata serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen here instead of ROOT/strata.sock (e.g. 127.0.0.1:50050 for a farm). CLI
    /// commands then reach it with --addr.
    #[arg(long, env = "STRATA_SERVE_LISTEN")]
    pub listen: Option<ListenAddr>,
    /// On SIGTERM/SIGINT: how long in-flight calls may take to finish, in seconds.
    #[arg(
        long = "drain-timeout",
        env = "STRATA_SERVE_DRAIN_TIMEOUT",
        default_value_t = 10
    )]
    pub drain_timeout_secs: u64,
    /// Largest gRPC message, in bytes (at least 4096).
    #[arg(long, env = "STRATA_SERVE_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = strata_server::message_bytes)]
    pub max_message_bytes: usize,
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    // A server's logs are its output: info unless asked otherwise.
    strata_server::init_tracing(global.log_format, global.log.as_deref(), "info")
        .map_err(anyhow::Error::msg)?;
    let root = global.data_root();
    let Some(lock) = embedded::try_lock_root(&root)? else {
        anyhow::bail!(
            "another strata process is using {} (a `strata serve` or a running command); stop it first",
            root.display()
        );
    };
    let addr = args
        .listen
        .clone()
        .unwrap_or_else(|| ListenAddr::Unix(embedded::root_socket(&root)));
    let listener = Listener::bind(&addr).await?;
    let options = ServeOptions {
        max_message_bytes: args.max_message_bytes,
        drain_timeout: std::time::Duration::from_secs(args.drain_timeout_secs),
        ..ServeOptions::default()
    };
    let embedded::Hosted {
        services,
        executor,
        peers,
    } = embedded::services(&root, &options, true)
        .with_context(|| format!("failed to open the data root {}", root.display()))?;
    info!(root = %root.display(), %addr, "strata serve");
    let served = strata_server::serve(
        services,
        listener,
        &options,
        strata_server::shutdown_signal(),
    )
    .await;
    executor.settled().await;
    // the services close (and their databases with them) before the root is released
    drop(executor);
    drop(peers);
    served?;
    drop(lock);
    Ok(std::process::ExitCode::SUCCESS)
}
