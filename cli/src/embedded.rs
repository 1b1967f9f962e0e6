//! The four services inside the CLI's own process, over one data root.
//!
//! One process at a time owns a data root: it holds an exclusive lock on `ROOT/strata.lock`
//! for as long as it has the root's RocksDB databases open. `strata serve` also listens on
//! `ROOT/strata.sock`, which other CLI invocations use instead of opening the databases. A
//! one-command host calls the services in its own tasks through an in-process transport.

use std::{
    fs::File,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};
use strata_server::{ServeOptions, Services, client::Transport};
use tonic::service::Routes;

/// The socket a `strata serve` listens on inside its data root.
pub fn root_socket(root: &Path) -> PathBuf {
    root.join("strata.sock")
}

/// Tries to take the data root's lock without waiting. `Ok(None)`: another process holds it.
pub fn try_lock_root(root: &Path) -> anyhow::Result<Option<Flock<File>>> {
    // created private: it holds every image's content (an existing directory keeps its mode;
    // the executor's part of it is made private whatever the mode)
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("failed to create the data directory {}", root.display()))?;
    let path = root.join("strata.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("failed to lock {}", path.display())),
    }
}

/// The four services over one data root, as a host runs them.
pub struct Hosted {
    /// All four, to serve over a socket (`strata serve`) or in this process.
    pub services: Services,
    /// The executor, whose [`strata_executor::ExecutorService::settled`] its host awaits
    /// once serving ends, so a prune of its local cache is not cut short.
    pub executor: strata_executor::ExecutorService,
    /// The parser, layer store and tag index as the executor (and the layer store, for GC
    /// roots) reach them: in this process. Holding this keeps them open.
    pub peers: Arc<Routes>,
}

/// Opens every service over `root` and registers them. The executor reaches its peers, the
/// layer store the tag index and the tag index the layer store, inside this process (no socket, no HTTP/2: a cached build
/// makes ~20 such calls). `long_lived` (`strata serve`): the executor prunes its local cache
/// at start, as the standalone binary does.
pub fn services(root: &Path, options: &ServeOptions, long_lived: bool) -> anyhow::Result<Hosted> {
    let mut services = Services::default();
    strata_parser::register(&mut services, options);
    // The two databases open at once (each open is a few ms of RocksDB reading its manifest
    // and tables and writing an options file): on the path of every embedded command.
    let event_retention = strata_tag_index::event_retention_from_env()?;
    let (layer_store, tag_index) = std::thread::scope(|scope| {
        let tags = std::thread::Builder::new()
            .name("open-tag-index".into())
            .spawn_scoped(scope, || {
                strata_tag_index::open(&strata_tag_index::Config {
                    root: root.to_path_buf(),
                    // the same setting as the standalone service's, so every host of a root
                    // prunes alike
                    event_retention,
                    // wired below, in this process
                    layer_store: None,
                })
            });
        let layers = strata_layer_store::open(&strata_layer_store::Config {
            root: root.to_path_buf(),
            tag_index: None,
            compression: strata_layer_store::compression_from_env()?,
            // the builds and commands that hold leases run in this process
            leases_end_with_process: true,
        });
        let tags = tags
            .context("failed to start a thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("opening the tag index panicked"))?;
        anyhow::Ok((layers, tags))
    })?;
    let layer_store = layer_store.context("failed to open the layer store")?;
    let tag_index = tag_index.context("failed to open the tag index")?;
    // The layer store learns GC roots from the tag index beside it in the same routes, and
    // the tag index checks every tag's target in that layer store; both hold the routes
    // weakly: no cycle keeps the databases open.
    let peers = Arc::new_cyclic(|me| {
        let tag_index = tag_index.with_layer_store(
            "this process".into(),
            strata_server::client::in_process_weak(me.clone()),
        );
        strata_tag_index::register(&mut services, tag_index, options);
        let layer_store = layer_store.with_tag_index(
            "this process".into(),
            strata_server::client::in_process_weak(me.clone()),
        );
        strata_layer_store::register(&mut services, layer_store, options);
        services.routes.clone().routes()
    });
    let local = strata_server::client::Peer::Local(strata_server::client::in_process(&peers));
    let executor = strata_executor::open(&strata_executor::Config {
        root: root.to_path_buf(),
        parser: local.clone(),
        layer_store: local.clone(),
        tag_index: local,
        // the same setting as the standalone executor's
        local_cache_budget: strata_executor::local_cache::max_bytes_from_env()?,
        prune_at_start: long_lived,
    })
    .context("failed to start the executor")?;
    strata_executor::register(&mut services, executor.clone(), options);
    Ok(Hosted {
        services,
        executor,
        peers,
    })
}

/// The services running inside this process for the duration of one command, called in
/// the command's own tasks (no socket).
pub struct Embedded {
    routes: Arc<Routes>,
    peers: Arc<Routes>,
    executor: strata_executor::ExecutorService,
    shutdown_hooks: Vec<Box<dyn FnOnce() + Send>>,
    _lock: Flock<File>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded").finish_non_exhaustive()
    }
}

impl Embedded {
    /// Opens the services over `root`, which the caller has locked.
    pub async fn start(root: &Path, lock: Flock<File>) -> anyhow::Result<Self> {
        let options = ServeOptions {
            max_message_bytes: 64 * 1024 * 1024,
            ..ServeOptions::default()
        };
        let Hosted {
            mut services,
            executor,
            peers,
        } = services(root, &options, false)?;
        let health = services.health_service().await;
        let shutdown_hooks = services.take_shutdown_hooks();
        services.routes.add_service(health);
        Ok(Self {
            routes: Arc::new(services.routes.routes()),
            peers,
            executor,
            shutdown_hooks,
            _lock: lock,
        })
    }

    /// A transport to the services.
    pub fn transport(&self) -> Transport {
        strata_server::client::in_process(&self.routes)
    }

    /// Stops the services: ends long-lived calls (watch streams), waits for the executor's
    /// background work, closes the databases and releases the root.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Self {
            routes,
            peers,
            executor,
            shutdown_hooks,
            _lock,
        } = self;
        for hook in shutdown_hooks {
            hook();
        }
        executor.settled().await;
        // the last strong references: the services (and their databases) close here, before
        // the lock is released
        drop(executor);
        drop(routes);
        drop(peers);
        drop(_lock);
        Ok(())
    }
}

/// The parser alone inside this process: it keeps no data, so it needs no data root and no
/// lock.
pub struct StatelessParser {
    routes: Arc<Routes>,
}

impl std::fmt::Debug for StatelessParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatelessParser").finish_non_exhaustive()
    }
}

impl StatelessParser {
    /// Starts it.
    pub fn start() -> Self {
        let options = ServeOptions {
            max_message_bytes: 256 * 1024 * 1024,
            ..ServeOptions::default()
        };
        let mut services = Services::default();
        strata_parser::register(&mut services, &options);
        Self {
            routes: Arc::new(services.routes.routes()),
        }
    }

    /// A transport to it.
    pub fn transport(&self) -> Transport {
        strata_server::client::in_process(&self.routes)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use strata_proto::tag_index::{WatchTagsRequest, tag_index_client::TagIndexClient};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_embedded_services_ends_open_watch_streams_at_once() {
        let root = tempfile::tempdir().unwrap();
        let lock = try_lock_root(root.path()).unwrap().expect("root is free");
        let embedded = Embedded::start(root.path(), lock).await.unwrap();
        let mut stream = TagIndexClient::new(embedded.transport())
            .watch_tags(WatchTagsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let started = Instant::now();
        // the drain limit is 10 s; an open watch must not hold it
        tokio::time::timeout(Duration::from_secs(30), embedded.stop())
            .await
            .expect("stop returned")
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stop waited {:?} on an open watch",
            started.elapsed()
        );
        let end = stream.message().await;
        assert!(
            matches!(&end, Err(s) if s.code() == tonic::Code::Unavailable)
                || matches!(end, Ok(None)),
            "{end:?}"
        );
    }
}
