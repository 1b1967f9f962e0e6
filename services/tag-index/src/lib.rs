//! The tag-index service.

mod error;
mod grpc;

use std::{future::Future, path::PathBuf};

use strata_proto::{tag_index::tag_index_server::TagIndexServer, service_names};
use strata_server::{Listener, ServeOptions, Services};

pub use error::TagIndexError;
pub use grpc::TagIndexService;

/// Configuration of the tag-index service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data root (`STRATA_ROOT`); the service uses `ROOT/tag-index`.
    pub root: PathBuf,
}

/// Opens the service's state.
pub fn open(config: &Config) -> Result<TagIndexService, TagIndexError> {
    let _ = &config.root;
    Ok(TagIndexService::default())
}

/// Adds the service to `services`.
pub fn register(services: &mut Services, service: TagIndexService, options: &ServeOptions) {
    let svc = TagIndexServer::new(service)
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    services.routes.add_service(svc);
    services.names.push(service_names::TAG_INDEX);
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
