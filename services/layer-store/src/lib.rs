//! The layer-store service: content-addressed blobs on RocksDB that never show a partial or
//! wrong blob, the shared build cache, leases, garbage collection.
//!
//! - [`store`]: the logic, against [`strata_kv::KvStore`] (RocksDB here, the in-memory twin
//!   in tests). Read its module docs for the layout and the crash-safety argument.
//! - [`grpc`]: the thin tonic adapter; blocking work runs on `spawn_blocking` threads.

mod error;
mod grpc;
pub mod store;

use std::{future::Future, path::PathBuf, sync::Arc};

use strata_proto::{layer_store::layer_store_server::LayerStoreServer, service_names};
use strata_server::{Listener, ServeOptions, Services, client::Peer};

pub use error::LayerStoreError;
pub use grpc::LayerStoreService;

/// Configuration of the layer-store service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data root (`STRATA_ROOT`); the service uses `ROOT/layer-store`.
    pub root: PathBuf,
    /// The tag index, whose tags are GC roots. `None`: GC uses only its other roots.
    pub tag_index: Option<Peer>,
    /// Compression of blob content at rest (new blob files; existing ones stay as written).
    pub compression: strata_kv::Compression,
    /// Every client of the store lives in this process (the CLI's embedded services,
    /// `strata serve`): the leases an earlier process left are stale, and go at open (a
    /// SIGKILLed build's lease would otherwise keep its layers from GC for its whole TTL).
    /// A standalone service's leases belong to executors elsewhere and keep their TTL.
    pub leases_end_with_process: bool,
}

/// The compression setting from `STRATA_LAYER_STORE_COMPRESSION` (`none`, `lz4`, `zstd`;
/// unset: `none`), for hosts without the service's flags (the CLI's embedded services).
pub fn compression_from_env() -> Result<strata_kv::Compression, LayerStoreError> {
    match std::env::var("STRATA_LAYER_STORE_COMPRESSION") {
        Ok(v) => v.parse().map_err(|reason| LayerStoreError::InvalidField {
            field: "STRATA_LAYER_STORE_COMPRESSION",
            reason,
        }),
        Err(_) => Ok(strata_kv::Compression::default()),
    }
}

impl Config {
    /// The RocksDB directory.
    pub fn db_path(&self) -> PathBuf {
        self.root.join("layer-store")
    }
}

/// Space kept in reserve beside the database: when the disk fills up, RocksDB cannot even
/// reopen (it writes a new manifest, options file and log); releasing this file lets the
/// store start, serve reads and accept deletes, so space can be freed (CockroachDB's
/// "emergency ballast").
const BALLAST_BYTES: usize = 8 << 20;

/// Opens the service's state: the RocksDB database (sweeping what a crash left) and, when
/// configured, a lazily connected channel to the tag index.
pub fn open(config: &Config) -> Result<LayerStoreService, LayerStoreError> {
    let ballast = config.root.join("layer-store.ballast");
    let rocks = strata_kv::RocksOptions {
        large_value_compression: config.compression,
    };
    let kv = match strata_kv::RocksStore::open_with(&config.db_path(), store::SPACES, &rocks) {
        Err(strata_kv::KvError::NoSpace { .. }) if ballast.exists() => {
            tracing::warn!(path = %ballast.display(), bytes = BALLAST_BYTES, "disk full: releasing the emergency reserve to start; free space (strata gc) soon");
            let _ = std::fs::remove_file(&ballast);
            strata_kv::RocksStore::open_with(&config.db_path(), store::SPACES, &rocks)?
        }
        other => other?,
    };
    if !ballast.exists() {
        // best effort: without room for it the store still runs
        if let Err(e) = std::fs::write(&ballast, vec![0u8; BALLAST_BYTES]) {
            let _ = std::fs::remove_file(&ballast);
            tracing::warn!(path = %ballast.display(), error = %e, "cannot reserve emergency disk space");
        }
    }
    let settings = store::Settings {
        leases_end_with_process: config.leases_end_with_process,
        ..store::Settings::default()
    };
    let store = store::Store::open(Arc::new(kv), settings)?;
    let tag_index = match &config.tag_index {
        Some(peer) => Some((
            peer.to_string(),
            peer.transport()
                .map_err(|e| LayerStoreError::InvalidField {
                    field: "tag_index_addr",
                    reason: e.to_string(),
                })?,
        )),
        None => None,
    };
    Ok(LayerStoreService::new(store, tag_index))
}

/// Adds the service to `services`.
pub fn register(services: &mut Services, service: LayerStoreService, options: &ServeOptions) {
    let service = service.with_message_limit(options.max_message_bytes);
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
    let service = tokio::task::spawn_blocking(move || open(&config)).await??;
    let mut services = Services::default();
    register(&mut services, service, options);
    strata_server::serve(services, listener, options, shutdown).await
}
