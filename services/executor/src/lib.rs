//! The executor service.

mod error;
mod grpc;

use std::{future::Future, path::PathBuf};

use strata_proto::{executor::executor_server::ExecutorServer, service_names};
use strata_server::{ListenAddr, Listener, ServeOptions, Services};

pub use error::ExecutorError;
pub use grpc::ExecutorService;

/// Configuration of the executor service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data root (`STRATA_ROOT`); the service uses `ROOT/executor`.
    pub root: PathBuf,
    /// Where the parser service listens.
    pub parser_addr: ListenAddr,
    /// Where the layer store listens.
    pub layer_store_addr: ListenAddr,
    /// Where the tag index listens.
    pub tag_index_addr: ListenAddr,
}

/// Opens the service's state.
pub fn open(config: &Config) -> Result<ExecutorService, ExecutorError> {
    let _ = &config.root;
    Ok(ExecutorService::default())
}

/// Adds the service to `services`.
pub fn register(services: &mut Services, service: ExecutorService, options: &ServeOptions) {
    let svc = ExecutorServer::new(service)
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    services.routes.add_service(svc);
    services.names.push(service_names::EXECUTOR);
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
    register(&mut services, service, options);
    strata_server::serve(services, listener, options, shutdown).await
}
