//! Makes a message-size violation say RESOURCE_EXHAUSTED, and a call past the request timeout
//! DEADLINE_EXCEEDED, as gRPC's spec and grpc-go do.
//!
//! tonic reports a message over `max_decoding_message_size` as OUT_OF_RANGE. The status of a
//! rejected unary call travels in the response headers (trailers-only response); this layer
//! rewrites that code there.

use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: HeaderValue = HeaderValue::from_static("8");
const TOO_LARGE: &str = "message length too large";

/// The layer; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct TooLargeIsResourceExhaustedLayer;

impl<S> Layer<S> for TooLargeIsResourceExhaustedLayer {
    type Service = TooLargeIsResourceExhausted<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TooLargeIsResourceExhausted { inner }
    }
}

/// The service the layer makes.
#[derive(Debug, Clone)]
pub struct TooLargeIsResourceExhausted<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for TooLargeIsResourceExhausted<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner
            .call(req)
            .map(|result| {
                result.map(|mut response| {
                    let headers = response.headers_mut();
                    let is_too_large = headers
                        .get("grpc-status")
                        .is_some_and(|v| v == OUT_OF_RANGE)
                        && headers
                            .get("grpc-message")
                            .and_then(|m| m.to_str().ok())
                            .is_some_and(|m| {
                                m.contains(TOO_LARGE)
                                    || m.contains("message%20length%20too%20large")
                            });
                    if is_too_large {
                        headers.insert("grpc-status", RESOURCE_EXHAUSTED);
                    }
                    response
                })
            })
            .boxed()
    }
}

/// `--request-timeout` as gRPC's spec and grpc-go have it: a call that runs past it ends with
/// DEADLINE_EXCEEDED (tonic's own server timeout answers CANCELLED, "Timeout expired").
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeoutLayer {
    after: std::time::Duration,
}

impl RequestTimeoutLayer {
    /// Calls end after `after`.
    pub fn new(after: std::time::Duration) -> Self {
        Self { after }
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            after: self.after,
        }
    }
}

/// The service [`RequestTimeoutLayer`] makes.
#[derive(Debug, Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    after: std::time::Duration,
}

impl<S, B, R> Service<Request<B>> for RequestTimeout<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let after = self.after;
        let call = self.inner.call(req);
        async move {
            match tokio::time::timeout(after, call).await {
                Ok(result) => result,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the call ran past the server's request timeout ({} s)",
                    after.as_secs_f64()
                ))
                .into_http()),
            }
        }
        .boxed()
    }
}
