//! Serving a set of gRPC services with health, reflection, limits and graceful shutdown.

use std::{future::Future, time::Duration};

use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::{service::Routes, transport::Server};
use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::{Listener, limits};

/// Limits and timings of a server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest message decoded or encoded; apply it to each generated server with
    /// `max_decoding_message_size` / `max_encoding_message_size`.
    pub max_message_bytes: usize,
    /// Most requests in flight at once, across connections.
    pub concurrency_limit: usize,
    /// Time limit for a request until its response starts.
    pub request_timeout: Duration,
    /// How long in-flight calls may take to finish after shutdown begins.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024 * 1024,
            concurrency_limit: 256,
            request_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// How long calls ended by drain-deadline hooks get to send their last message before the
/// server cuts every connection.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// The services one server hosts: their routes, their fully qualified names (for health
/// and reflection), and what each needs done when shutdown begins.
#[derive(Default)]
pub struct Services {
    /// The routes.
    pub routes: tonic::service::RoutesBuilder,
    /// The names, e.g. `strata.tagindex.v1.TagIndex`.
    pub names: Vec<&'static str>,
    shutdown_hooks: Vec<Box<dyn FnOnce() + Send>>,
    deadline_hooks: Vec<Box<dyn FnOnce() + Send>>,
}

impl Services {
    /// Runs `hook` as soon as shutdown begins, before the drain: a service ends its
    /// long-lived calls (watch streams) here, so they never hold the drain limit. Whoever
    /// hosts the service — its own binary, `strata serve`, the CLI's embedded mode — gets
    /// this by registering it.
    pub fn on_shutdown(&mut self, hook: impl FnOnce() + Send + 'static) {
        self.shutdown_hooks.push(Box::new(hook));
    }

    /// Runs `hook` when the drain limit is reached with calls still in flight, just before
    /// they are cut off: a service ends them itself here (with an error its clients can
    /// read), and [`serve`] gives them [`DEADLINE_GRACE`] to go out.
    pub fn on_drain_deadline(&mut self, hook: impl FnOnce() + Send + 'static) {
        self.deadline_hooks.push(Box::new(hook));
    }

    /// The shutdown hooks, for a host that serves these services without [`serve`] (in its
    /// own process): it runs them when it stops.
    pub fn take_shutdown_hooks(&mut self) -> Vec<Box<dyn FnOnce() + Send>> {
        std::mem::take(&mut self.shutdown_hooks)
    }

    /// A health service reporting every one of these services (and the server) SERVING, for
    /// a host that serves them without [`serve`]: its watch streams end with the shutdown
    /// hooks.
    pub async fn health_service(
        &mut self,
    ) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>
    {
        let (_, service, closer) = health_serving(&self.names).await;
        self.on_shutdown(move || closer.close());
        service
    }
}

/// A health reporter and its service, with each of `names` and the server SERVING.
async fn health_serving(
    names: &[&'static str],
) -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<crate::health::Health>,
    crate::health::Closer,
) {
    let health = tonic_health::server::HealthReporter::new();
    for name in names {
        health
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    health.set_service_status("", ServingStatus::Serving).await;
    let (service, closer) = crate::health::service(health.clone());
    (health, service, closer)
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("names", &self.names)
            .field("shutdown_hooks", &self.shutdown_hooks.len())
            .field("deadline_hooks", &self.deadline_hooks.len())
            .finish()
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed now, not when the future is first polled: a SIGTERM that arrives while the
    // service is still opening its store or starting to serve is remembered and drains it,
    // instead of killing the process with the default action.
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => info!(signal = "SIGTERM", "shutting down"),
                _ = int.recv() => info!(signal = "SIGINT", "shutting down"),
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Serves `services` on `listener` until `shutdown` resolves; then reports NOT_SERVING, runs
/// the services' shutdown hooks, stops accepting, and waits up to `drain_timeout` for
/// in-flight calls.
pub async fn serve(
    services: Services,
    listener: Listener,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (mut health, health_service, health_closer) = health_serving(&services.names).await;

    let reflection = |names: &[&'static str]| {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(strata_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        for name in names {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    // grpcurl 1.8 speaks v1alpha reflection; newer clients speak v1: serve both.
    let reflection_v1 = reflection(&services.names).build_v1()?;
    let reflection_v1alpha = reflection(&services.names).build_v1alpha()?;

    let mut routes = services.routes;
    let shutdown_hooks = services.shutdown_hooks;
    let deadline_hooks = services.deadline_hooks;
    routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let routes: Routes = routes.routes();

    let addr = listener.local_addr();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let stop = async {
        let _ = stop_rx.await;
    };
    let mut builder = Server::builder()
        .layer(limits::RequestTimeoutLayer::new(options.request_timeout))
        .layer(crate::concurrency::LimitExceptProbesLayer::new(
            options.concurrency_limit,
        ))
        .layer(limits::TooLargeIsResourceExhaustedLayer)
        .layer(crate::body_end::BodyEndLayer);
    let router = builder.add_routes(routes);
    let socket_path = match &listener {
        Listener::Unix(_, p) => Some(p.clone()),
        Listener::Tcp(_) => None,
    };
    let mut server = match listener {
        Listener::Tcp(l) => {
            // Our own incoming stream bypasses tonic's TCP options: without NODELAY, small
            // responses wait on Nagle + delayed ACK (~40 ms a round trip).
            let incoming = TcpListenerStream::new(l).map(|conn| {
                conn.inspect(|stream| {
                    let _ = stream.set_nodelay(true);
                })
            });
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
        }
        Listener::Unix(l, _) => {
            tokio::spawn(router.serve_with_incoming_shutdown(UnixListenerStream::new(l), stop))
        }
    };
    info!(%addr, services = %services.names.join(","), "serving");

    tokio::select! {
        result = &mut server => {
            // the server ended on its own: report it
            result??;
            return Ok(());
        }
        () = shutdown => {}
    }
    for name in &services.names {
        health
            .set_service_status(*name, ServingStatus::NotServing)
            .await;
    }
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    // an open Health/Watch would hold the drain to its limit: each stream, having been sent
    // NOT_SERVING, ends (a Check on a connection still open then finds no service)
    for name in &services.names {
        health.clear_service_status(name).await;
    }
    health.clear_service_status("").await;
    health_closer.close();
    for hook in shutdown_hooks {
        hook();
    }
    info!(%addr, drain_timeout_ms = options.drain_timeout.as_millis() as u64, "draining");
    let _ = stop_tx.send(());
    match tokio::time::timeout(options.drain_timeout, &mut server).await {
        Ok(result) => result??,
        Err(_) => {
            warn!(%addr, "drain time limit reached; closing the remaining calls");
            for hook in deadline_hooks {
                hook();
            }
            // the calls the hooks ended send their last words; then whatever is left is cut
            if tokio::time::timeout(DEADLINE_GRACE, &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
    if let Some(p) = socket_path {
        let _ = std::fs::remove_file(p);
    }
    info!(%addr, "stopped");
    Ok(())
}
