//! The executor service.

pub mod build;
pub mod cache_key;
pub mod compression;
pub mod copy;
mod error;
pub mod extract;
mod grpc;
pub mod history;
pub mod layer_tar;
pub mod local_cache;
pub mod mounts;
pub mod network_files;
pub mod peers;
pub mod pull;
pub mod rootpath;
pub mod run_command;
pub mod runtime;
pub mod schedule;
pub mod snapshot;
pub mod users;

use std::{future::Future, path::PathBuf};

use strata_proto::{executor::executor_server::ExecutorServer, service_names};
use strata_server::{Listener, ServeOptions, Services, client::Peer};

pub use error::ExecutorError;
pub use grpc::ExecutorService;

/// Configuration of the executor service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data root (`STRATA_ROOT`); the service uses `ROOT/executor`.
    pub root: PathBuf,
    /// The parser service.
    pub parser: Peer,
    /// The layer store.
    pub layer_store: Peer,
    /// The tag index.
    pub tag_index: Peer,
    /// The bytes the local cache of extracted layers and contexts may take (`None`:
    /// unbounded); see [`local_cache`].
    pub local_cache_budget: Option<u64>,
    /// Prune the local cache to its budget when the service opens (long-lived hosts: the
    /// binary, `strata serve`). A one-command host leaves it to the builds that add entries
    /// and to `strata gc`: a prune reads every entry's marker, which a fully cached build
    /// would otherwise pay at every command.
    pub prune_at_start: bool,
}

/// Opens the service's state. Inside a tokio runtime and with `prune_at_start`, the local
/// cache is pruned to its budget in the background from the start.
pub fn open(config: &Config) -> Result<ExecutorService, ExecutorError> {
    let peers = peers::Peers::connect(&config.parser, &config.layer_store, &config.tag_index)?;
    let engine = build::Engine::open(
        &config.root.join("executor"),
        peers,
        config.local_cache_budget,
    )?;
    if config.prune_at_start {
        engine.local.prune_in_background();
    }
    Ok(ExecutorService::new(engine))
}

/// Adds the service to `services`.
pub fn register(services: &mut Services, service: ExecutorService, options: &ServeOptions) {
    let running = service.clone();
    let svc = ExecutorServer::new(service)
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    services.routes.add_service(svc);
    services.names.push(service_names::EXECUTOR);
    // a build the drain limit would cut off is ended with an error its client reads
    services.on_drain_deadline(move || running.end_running_builds());
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: Listener,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let service = open(&config)?;
    let mut services = Services::default();
    register(&mut services, service.clone(), options);
    let served = strata_server::serve(services, listener, options, shutdown).await;
    service.settled().await;
    served
}
