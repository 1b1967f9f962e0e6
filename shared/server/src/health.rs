//! `grpc.health.v1.Health` as the health-checking protocol describes it: tonic-health's
//! service, except for a Watch of a service this server does not know. tonic-health fails
//! that call with NOT_FOUND; the protocol answers it with SERVICE_UNKNOWN on a stream that
//! stays open (the service may appear later), and watchers such as grpc-health-probe's
//! `-watch` or a load balancer's health client expect that. A Check of an unknown service
//! stays NOT_FOUND, as the protocol says.
//!
//! Such a stream ends when the server begins to shut down, like every other watch (an open
//! stream would otherwise hold the drain to its limit).

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};
use tonic_health::{
    pb::{
        HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
        health_server::HealthServer,
    },
    server::{HealthReporter, HealthService},
};

/// The health service, and what tells its SERVICE_UNKNOWN streams to end.
pub(crate) struct Health {
    inner: HealthService,
    closing: watch::Receiver<bool>,
}

/// Ends the SERVICE_UNKNOWN watch streams of a [`Health`], and answers later ones by
/// ending them at once.
#[derive(Debug, Clone)]
pub(crate) struct Closer(watch::Sender<bool>);

impl Closer {
    pub(crate) fn close(&self) {
        self.0.send_replace(true);
    }
}

/// A health service over `reporter`'s statuses.
pub(crate) fn service(reporter: HealthReporter) -> (HealthServer<Health>, Closer) {
    let (tx, closing) = watch::channel(false);
    let health = Health {
        inner: HealthService::from_health_reporter(reporter),
        closing,
    };
    (HealthServer::new(health), Closer(tx))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Health {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        match self.inner.watch(request).await {
            Ok(known) => Ok(Response::new(Box::pin(known.into_inner()) as WatchStream)),
            Err(s) if s.code() == Code::NotFound => {
                let unknown = HealthCheckResponse {
                    status: ServingStatus::ServiceUnknown as i32,
                };
                let mut closing = self.closing.clone();
                // this server's services are all known from its start: the status never
                // changes, and the stream waits only for shutdown
                let until_closed = futures::stream::once(async move {
                    let _ = closing.wait_for(|closed| *closed).await;
                })
                .filter_map(|()| std::future::ready(None));
                let stream =
                    futures::stream::once(std::future::ready(Ok(unknown))).chain(until_closed);
                Ok(Response::new(Box::pin(stream) as WatchStream))
            }
            Err(other) => Err(other),
        }
    }
}
