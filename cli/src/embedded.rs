//! The four services inside the CLI's own process, over one data root.
//!
//! One process at a time owns a data root: it holds an exclusive lock on `ROOT/strata.lock`
//! for as long as it has the root's RocksDB databases open. `strata serve` also listens on
//! `ROOT/strata.sock`, which other CLI invocations use instead of opening the databases.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};
use strata_server::{ListenAddr, Listener, ServeOptions, Services};
use tokio::{sync::oneshot, task::JoinHandle};

/// The socket a `strata serve` listens on inside its data root.
pub fn root_socket(root: &Path) -> PathBuf {
    root.join("strata.sock")
}

/// Tries to take the data root's lock without waiting. `Ok(None)`: another process holds it.
pub fn try_lock_root(root: &Path) -> anyhow::Result<Option<Flock<File>>> {
    std::fs::create_dir_all(root)
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

/// Opens every service over `root` and registers them, the executor reaching its peers at
/// `self_addr` (the address these services will be served on). The executor is also
/// returned: once serving ends, its host awaits [`strata_executor::ExecutorService::settled`]
/// so a prune of its local cache is not cut short. `long_lived` (`strata serve`): the
/// executor prunes its local cache at start, as the standalone binary does.
pub fn services(
    root: &Path,
    self_addr: &ListenAddr,
    options: &ServeOptions,
    long_lived: bool,
) -> anyhow::Result<(Services, strata_executor::ExecutorService)> {
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
                })
            });
        let layers = strata_layer_store::open(&strata_layer_store::Config {
            root: root.to_path_buf(),
            tag_index_addr: Some(self_addr.clone()),
            compression: strata_layer_store::compression_from_env()?,
        });
        let tags = tags
            .context("failed to start a thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("opening the tag index panicked"))?;
        anyhow::Ok((layers, tags))
    })?;
    let layer_store = layer_store.context("failed to open the layer store")?;
    strata_layer_store::register(&mut services, layer_store, options);
    let tag_index = tag_index.context("failed to open the tag index")?;
    strata_tag_index::register(&mut services, tag_index, options);
    let executor = strata_executor::open(&strata_executor::Config {
        root: root.to_path_buf(),
        parser_addr: self_addr.clone(),
        layer_store_addr: self_addr.clone(),
        tag_index_addr: self_addr.clone(),
        // the same setting as the standalone executor's
        local_cache_budget: strata_executor::local_cache::max_bytes_from_env()?,
        prune_at_start: long_lived,
    })
    .context("failed to start the executor")?;
    strata_executor::register(&mut services, executor.clone(), options);
    Ok((services, executor))
}

/// Services running inside this process for the duration of one command.
pub struct Embedded {
    /// Where they listen (a private socket in the data root).
    pub addr: ListenAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
    _lock: Flock<File>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Embedded {
    /// Starts the services over `root`, which the caller has locked.
    pub async fn start(root: &Path, lock: Flock<File>) -> anyhow::Result<Self> {
        let run_dir = root.join("run");
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("failed to create {}", run_dir.display()))?;
        let addr = ListenAddr::Unix(run_dir.join(format!("cli-{}.sock", std::process::id())));
        let listener = Listener::bind(&addr).await?;
        let options = ServeOptions {
            max_message_bytes: 64 * 1024 * 1024,
            ..ServeOptions::default()
        };
        let (services, executor) = services(root, &addr, &options, false)?;
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let served = strata_server::serve(services, listener, &options, async {
                let _ = rx.await;
            })
            .await;
            executor.settled().await;
            served
        });
        Ok(Self {
            addr,
            stop: Some(tx),
            handle,
            _lock: lock,
        })
    }

    /// Stops the services, waiting for in-flight calls, and releases the root.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.handle)
            .await
            .context("embedded services panicked")?
    }
}

/// The parser alone inside this process, on a private socket: it keeps no data, so it needs
/// no data root and no lock.
pub struct StatelessParser {
    /// Where it listens.
    pub addr: ListenAddr,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl std::fmt::Debug for StatelessParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatelessParser")
            .field("addr", &self.addr)
            .finish()
    }
}

impl StatelessParser {
    /// Starts it.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("failed to create a temporary directory")?;
        let addr = ListenAddr::Unix(dir.path().join("parser.sock"));
        let listener = Listener::bind(&addr).await?;
        let options = ServeOptions {
            max_message_bytes: 256 * 1024 * 1024,
            ..ServeOptions::default()
        };
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            strata_parser::run(listener, &options, async {
                let _ = rx.await;
            })
            .await
        });
        Ok(Self {
            addr,
            _dir: dir,
            stop: Some(tx),
            handle,
        })
    }

    /// Stops it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.handle)
            .await
            .context("embedded parser panicked")?
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
        let channel = strata_server::client::lazy_channel(&embedded.addr).unwrap();
        let mut stream = TagIndexClient::new(channel)
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
