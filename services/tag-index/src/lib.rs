//! The tag-index service: human-readable tags (`registry/repo:tag`) pointing at image
//! manifest digests, kept in RocksDB under `ROOT/tag-index`.
//!
//! # Shape
//!
//! - [`name`]: tag names parsed with Docker's grammar and normalised
//!   (`busybox` = `docker.io/library/busybox:latest`); the full form is the key.
//! - [`store`]: the storage logic over [`strata_kv::KvStore`] (so it runs on RocksDB and on
//!   the in-memory twin alike): compare-and-swap moves, resolve, listing with paging, per-tag
//!   history, the global change log and watchers.
//! - [`grpc`]: the thin tonic adapter.
//!
//! # Invariants
//!
//! - Every move (create, move, delete) is one atomic batch that writes the tag record, the
//!   digest index row, the tag's history row and the global log row together, synced to disk
//!   before the caller is answered. A reader can never see a tag without its history.
//! - Sequence numbers are global, strictly increasing and gap-free in the log; a tag record
//!   carries the sequence of its last move.
//! - One writer thread decides every compare-and-swap in arrival order against the committed
//!   state plus the earlier moves of its own group (group commit: many moves share one fsync).
//!   A CAS can therefore never be decided against a state that another move overtakes.
//! - Events are published to watchers only after they are durable, in sequence order. A
//!   watcher replays the log from its position before following live events, so resuming with
//!   the last sequence seen misses nothing; a watcher too slow for the live buffer is told
//!   (`lagged`) and ended, never skipped silently.
//! - Pointing a tag where it already points is not a move: no history entry, no event.
//! - A tag moves only to a digest the layer store holds and that is an image manifest or
//!   index ([`targets`]: checked with the target leased until the move is committed, so GC
//!   cannot take it in between); the layer store's GC treats every tag as a root and its
//!   DeleteBlob refuses what a tag reaches, so a tag never points at a missing image. A tag
//!   index without a layer store moves no tags.

mod error;
pub mod grpc;
pub mod name;
pub mod store;
pub mod targets;

use std::{future::Future, path::PathBuf, sync::Arc};

use strata_proto::{service_names, tag_index::tag_index_server::TagIndexServer};
use strata_server::{Listener, ServeOptions, Services, client::Peer};

pub use error::TagIndexError;
pub use grpc::TagIndexService;
pub use store::{StoreOptions, TagStore};

/// The directory under the data root that holds the service's database.
pub const DATA_DIR: &str = "tag-index";

/// Configuration of the tag-index service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data root (`STRATA_ROOT`); the service uses `ROOT/tag-index`.
    pub root: PathBuf,
    /// Events the global change log keeps at least (older ones are pruned); see
    /// [`StoreOptions::event_retention`].
    pub event_retention: u64,
    /// The layer store every tag's target is checked against. `None`: the host wires it
    /// later ([`TagIndexService::with_layer_store`]); until then no tag moves.
    pub layer_store: Option<Peer>,
}

impl Config {
    /// The configuration over `root`, checking targets in `layer_store`, with default
    /// settings.
    pub fn new(root: PathBuf, layer_store: Peer) -> Self {
        Self {
            root,
            event_retention: store::DEFAULT_EVENT_RETENTION,
            layer_store: Some(layer_store),
        }
    }
}

/// The environment variable that sets the event log's retention wherever the tag index runs
/// (`strata-tag-index --event-retention`, `strata serve`, the CLI's embedded services), so
/// every host of one data root prunes its log alike.
pub const EVENT_RETENTION_ENV: &str = "STRATA_TAG_INDEX_EVENT_RETENTION";

/// The retention [`EVENT_RETENTION_ENV`] asks for, or the default when it is unset.
pub fn event_retention_from_env() -> anyhow::Result<u64> {
    match std::env::var(EVENT_RETENTION_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(store::DEFAULT_EVENT_RETENTION),
        Err(e) => anyhow::bail!("invalid {EVENT_RETENTION_ENV}: {e}"),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => anyhow::bail!(
                "invalid {EVENT_RETENTION_ENV}={v:?}: expected a number of events, at least 1"
            ),
        },
    }
}

/// Opens the service's state: the RocksDB database at `ROOT/tag-index`.
pub fn open(config: &Config) -> Result<TagIndexService, TagIndexError> {
    let kv = strata_kv::RocksStore::open(&config.root.join(DATA_DIR), store::SPACES)?;
    let options = StoreOptions {
        event_retention: config.event_retention,
        ..StoreOptions::default()
    };
    let store = TagStore::open(Arc::new(kv), options)?;
    let service = TagIndexService::new(store);
    Ok(match &config.layer_store {
        Some(peer) => {
            let transport = peer.transport().map_err(|e| TagIndexError::InvalidConfig {
                field: "layer_store_addr",
                reason: e.to_string(),
            })?;
            service.with_layer_store(peer.to_string(), transport)
        }
        None => service,
    })
}

/// Adds the service to `services`. Its watch streams end as soon as the host begins to shut
/// down (a shutdown hook), so an open watcher never holds the drain.
pub fn register(services: &mut Services, service: TagIndexService, options: &ServeOptions) {
    let closer = service.clone();
    services.on_shutdown(move || closer.close_watchers());
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
    serve(service, listener, options, shutdown).await
}

/// Serves an opened service on `listener` until `shutdown` resolves; open watch streams are
/// ended as soon as shutdown begins so draining does not wait for them.
pub async fn serve(
    service: TagIndexService,
    listener: Listener,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut services = Services::default();
    register(&mut services, service, options);
    strata_server::serve(services, listener, options, shutdown).await
}
