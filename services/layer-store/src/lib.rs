//! The layer-store service.

mod error;
mod grpc;

use std::{future::Future, path::PathBuf};

use strata_proto::{layer_store::layer_store_server::LayerStoreServer, service_names};
use strata_server::{Listener, ServeOptions, Services};

pub use error::LayerStoreError;
pub use grpc::LayerStoreService;

/// Configuration of the layer-store service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data root (`STRATA_ROOT`); the service uses `ROOT/layer-store`.
    pub root: PathBuf,
}

/// Opens the service's state.
pub fn open(config: &Config) -> Result<LayerStoreService, LayerStoreError> {
    let _ = &config.root;
    Ok(LayerStoreService::default())
}

/// Adds the service to `services`.
pub fn register(services: &mut Services, service: LayerStoreService, options: &ServeOptions) {
    let svc = LayerStoreServer::new(service)
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    services.routes.add_service(svc);
    services.names.push(service_names::LAYER_STORE);
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
