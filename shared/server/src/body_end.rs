//! Whether a request's body ended cleanly or on an error.
//!
//! tonic's server decoder reports a request stream the client cancelled (RST_STREAM CANCEL)
//! as a clean end of its messages (`Streaming::message` gives `Ok(None)`), the same as a
//! stream the client half-closed on purpose. A client-streaming call that commits what it
//! received at the end (the layer store's WriteBlob) must not take one for the other: it
//! would commit the part of a blob that arrived before the cancel. This layer watches every
//! request body on its way to tonic and records, in a [`BodyEnd`] in the request's
//! extensions, whether the body failed.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// Found in a request's extensions (`tonic::Request::extensions`) when it came through
/// [`crate::serve`]: whether its body has ended on an error.
#[derive(Debug, Clone, Default)]
pub struct BodyEnd(Arc<AtomicBool>);

impl BodyEnd {
    /// True once the body failed (the client reset the stream, the connection broke): the
    /// messages read so far are not all the client meant to send.
    pub fn broken(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The layer; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct BodyEndLayer;

impl<S> Layer<S> for BodyEndLayer {
    type Service = WatchBodyEnd<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WatchBodyEnd { inner }
    }
}

/// The service the layer makes.
#[derive(Debug, Clone)]
pub struct WatchBodyEnd<S> {
    inner: S,
}

impl<S> Service<Request<tonic::body::Body>> for WatchBodyEnd<S>
where
    S: Service<Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        let end = BodyEnd::default();
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(end.clone());
        let body = tonic::body::Body::new(Watched { inner: body, end });
        self.inner.call(Request::from_parts(parts, body))
    }
}

struct Watched {
    inner: tonic::body::Body,
    end: BodyEnd,
}

impl Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.end.0.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
