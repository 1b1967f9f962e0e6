//! The server's concurrency limit, which health checks and reflection never wait behind.
//!
//! `--concurrency-limit` bounds the calls a server works on at once. A probe must not queue
//! behind them: with the limit reached by slow uploads or by calls waiting on a stuck peer,
//! an orchestrator's liveness probe would time out and restart a server that is merely busy.
//! So `grpc.health.v1.Health` and server reflection are served outside the limit.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::{BoxFuture, FutureExt};
use http::Request;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

/// Paths served outside the limit.
const EXEMPT: [&str; 2] = ["/grpc.health.v1.Health/", "/grpc.reflection."];

/// The layer: at most `limit` calls at once, probes aside.
#[derive(Debug, Clone)]
pub struct LimitExceptProbesLayer {
    permits: Arc<Semaphore>,
}

impl LimitExceptProbesLayer {
    /// A limit of `limit` calls (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
        }
    }
}

impl<S> Layer<S> for LimitExceptProbesLayer {
    type Service = LimitExceptProbes<S>;
    fn layer(&self, inner: S) -> Self::Service {
        LimitExceptProbes {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// The service the layer makes.
#[derive(Debug, Clone)]
pub struct LimitExceptProbes<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, B> Service<Request<B>> for LimitExceptProbes<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let exempt = EXEMPT.iter().any(|p| path.starts_with(p));
        // the call's work starts when its future is polled: after the permit is had
        let call = self.inner.call(req);
        if exempt {
            return call.boxed();
        }
        let permits = self.permits.clone();
        async move {
            // the semaphore is never closed, so a permit always comes
            let _permit = permits.acquire_owned().await.ok();
            call.await
        }
        .boxed()
    }
}
