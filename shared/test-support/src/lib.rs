//! Test support shared by every crate's integration tests.
//!
//! - [`InProcess`]: a service's `run` on a listener already bound to `127.0.0.1:0`, stopped by
//!   a oneshot (never "find a free port, then bind").
//! - [`ServiceProcess`]: a service binary as a real process on a unix socket in a temp dir,
//!   ready once its health check says SERVING, stopped with SIGTERM.
//! - [`Grpcurl`]: the real grpcurl binary (installed by the project's set-up).
//! - [`FakeLayerStore`]: a layer store that answers StatBlob from a table, for services that
//!   check blobs there (the tag index) tested without the real one.

mod fake_layer_store;
mod grpcurl;
mod process;
mod service_basics;

use std::{future::Future, pin::Pin};

use strata_server::{ListenAddr, Listener};
use tokio::{sync::oneshot, task::JoinHandle};

pub use fake_layer_store::FakeLayerStore;
pub use grpcurl::Grpcurl;
pub use process::{ServiceProcess, wait_until_serving};
pub use service_basics::check_service_basics;

/// A shutdown future handed to a service's `run`.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service running inside the test process.
#[derive(Debug)]
pub struct InProcess {
    /// Where it listens.
    pub addr: ListenAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    /// Binds `127.0.0.1:0` and spawns `run(listener, shutdown)`.
    pub async fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(Listener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = Listener::bind(&"127.0.0.1:0".parse().expect("loopback address"))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = rx.await;
        });
        let handle = tokio::spawn(run(listener, shutdown));
        Self {
            addr,
            stop: Some(tx),
            handle,
        }
    }

    /// A lazily connected channel to the service.
    pub fn channel(&self) -> tonic::transport::Channel {
        strata_server::client::lazy_channel(&self.addr).expect("valid address")
    }

    /// `http://127.0.0.1:PORT` style target for grpcurl (host:port).
    pub fn grpcurl_target(&self) -> String {
        match &self.addr {
            ListenAddr::Tcp(a) => a.to_string(),
            ListenAddr::Host(h, port) => format!("{h}:{port}"),
            ListenAddr::Unix(p) => p.display().to_string(),
        }
    }

    /// Triggers shutdown and returns what `run` returned.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.handle.await?
    }
}
