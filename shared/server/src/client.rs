//! How clients reach strata services: over a connection, or inside this process.
//!
//! Every client in strata is built on a [`Transport`]. Over the network it is a tonic
//! [`Channel`]; when the services run in the caller's own process (the CLI's embedded
//! mode) it is [`in_process`]: a call goes straight to the service's handler in the
//! calling task — the same protobuf encoding, the same handlers and error mapping, but no
//! socket, no HTTP/2 framing and no hand-offs between the connection's tasks. A fully cached
//! build makes ~20 calls; over a Unix socket each cost a few hundred microseconds.

use std::{
    sync::{Arc, Weak},
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{
    body::Body,
    service::Routes,
    transport::{Channel, Endpoint},
};
use tower::{BoxError, Service, ServiceExt, util::BoxCloneSyncService};

use crate::ListenAddr;

/// What every strata client is built on (`XClient<Transport>`).
pub type Transport = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, TransportError>;

/// A call that failed below gRPC (the connection). A concrete type rather than a boxed
/// error: generated clients over a boxed error type trip the compiler's higher-ranked
/// lifetime checks in async handlers.
#[derive(Debug)]
pub struct TransportError(BoxError);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // a status made here (see `NamingMissing`) is found by tonic in the chain and used
        // as the call's status; anything else is transparent
        if self.0.is::<tonic::Status>() {
            Some(&*self.0)
        } else {
            self.0.source()
        }
    }
}

/// A connection failure to `addr` as a person reads it: UNAVAILABLE, naming the address and
/// each cause once ("transport error" alone says nothing: the causes say what happened).
fn unreachable(addr: &str, error: TransportError) -> TransportError {
    let text = strata_types::causes::join_causes(String::new(), Some(&*error.0));
    TransportError(Box::new(tonic::Status::unavailable(format!(
        "cannot reach {addr}: {text}"
    ))))
}

/// A channel to `addr` that connects on first use (and reconnects after failures), so a
/// service can start and answer health before its peers are up.
pub fn lazy_channel(addr: &ListenAddr) -> Result<Channel, tonic::transport::Error> {
    let uri = match addr {
        ListenAddr::Tcp(a) => format!("http://{a}"),
        ListenAddr::Host(h, port) => format!("http://{h}:{port}"),
        ListenAddr::Unix(p) => format!("unix://{}", p.display()),
    };
    Ok(Endpoint::from_shared(uri)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// [`lazy_channel`] as a [`Transport`].
pub fn lazy_transport(addr: &ListenAddr) -> Result<Transport, tonic::transport::Error> {
    Ok(over_channel(lazy_channel(addr)?))
}

/// A [`Transport`] over a connection.
pub fn over_channel(channel: Channel) -> Transport {
    Transport::new(channel.map_err(|e| TransportError(e.into())))
}

/// A [`Transport`] to services in this process. It holds them weakly: whoever owns `routes`
/// decides when the services (and their databases) close; a call after that fails with
/// UNAVAILABLE, as a call to a stopped server would.
pub fn in_process(routes: &Arc<Routes>) -> Transport {
    in_process_weak(Arc::downgrade(routes))
}

/// [`in_process`] from a weak reference (for services that reach their own host's routes,
/// built with `Arc::new_cyclic`).
pub fn in_process_weak(routes: Weak<Routes>) -> Transport {
    Transport::new(InProcess(routes))
}

#[derive(Clone)]
struct InProcess(Weak<Routes>);

#[cfg(test)]
mod naming_tests {
    use super::*;

    #[test]
    fn a_missing_service_is_named_with_what_to_do() {
        assert_eq!(service_words("strata.tagindex.v1.TagIndex"), "tag index");
        assert_eq!(
            service_words("strata.layerstore.v1.LayerStore"),
            "layer store"
        );
        let m = missing_service_message("127.0.0.1:5082", "/strata.tagindex.v1.TagIndex/SetTag");
        assert_eq!(
            m,
            "the server at 127.0.0.1:5082 does not serve the tag index (strata.tagindex.v1.TagIndex, method SetTag): point --addr at `strata serve` or a gateway serving all four services"
        );
        assert!(http::HeaderValue::from_str(&m).is_ok());
    }
}

impl Service<http::Request<Body>> for InProcess {
    type Response = http::Response<Body>;
    type Error = TransportError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let routes = self.0.upgrade();
        Box::pin(async move {
            let Some(routes) = routes else {
                return Ok(
                    tonic::Status::unavailable("the services in this process have stopped")
                        .into_http(),
                );
            };
            let response = Routes::clone(&routes)
                .oneshot(request)
                .await
                .map_err(|e| TransportError(e.into()))?;
            Ok(response)
        })
    }
}

/// `transport` to the server at `addr`, where an UNIMPLEMENTED answer without a message (a
/// server that does not serve the service called: a standalone service where all four were
/// expected) gets one saying which service is missing there and what to do, instead of an
/// empty message a person cannot act on.
pub fn naming_missing_services(transport: Transport, addr: String) -> Transport {
    Transport::new(NamingMissing {
        inner: transport,
        addr: addr.into(),
    })
}

#[derive(Clone)]
struct NamingMissing {
    inner: Transport,
    addr: Arc<str>,
}

/// "strata.tagindex.v1.TagIndex" -> "tag index".
fn service_words(service: &str) -> String {
    let name = service.rsplit('.').next().unwrap_or(service);
    let mut out = String::new();
    for c in name.chars() {
        if c.is_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The message for an UNIMPLEMENTED call of `path` (`/package.Service/Method`) at `addr`.
fn missing_service_message(addr: &str, path: &str) -> String {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or_default();
    format!(
        "the server at {addr} does not serve the {} ({service}, method {method}): point --addr at `strata serve` or a gateway serving all four services",
        service_words(service)
    )
}

impl Service<http::Request<Body>> for NamingMissing {
    type Response = http::Response<Body>;
    type Error = TransportError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_string();
        // the clone that was made ready is the one called (tower's rule)
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let addr = self.addr.clone();
        Box::pin(async move {
            let mut response = match inner.call(request).await {
                Ok(r) => r,
                Err(e) => return Err(unreachable(&addr, e)),
            };
            let headers = response.headers_mut();
            let unimplemented = headers
                .get("grpc-status")
                .is_some_and(|v| v.as_bytes() == b"12");
            let silent = headers
                .get("grpc-message")
                .is_none_or(|v| v.as_bytes().is_empty());
            if unimplemented
                && silent
                && let Ok(value) =
                    http::HeaderValue::from_str(&missing_service_message(&addr, &path))
            {
                headers.insert("grpc-message", value);
            }
            Ok(response)
        })
    }
}

/// Where a client finds a peer service: at an address, or in this process.
#[derive(Clone)]
pub enum Peer {
    /// Over a connection to this address (made on first use).
    Remote(ListenAddr),
    /// In this process ([`in_process`]).
    Local(Transport),
}

impl Peer {
    /// The transport to the peer.
    pub fn transport(&self) -> Result<Transport, tonic::transport::Error> {
        match self {
            Self::Remote(addr) => lazy_transport(addr),
            Self::Local(t) => Ok(t.clone()),
        }
    }
}

impl From<ListenAddr> for Peer {
    fn from(addr: ListenAddr) -> Self {
        Self::Remote(addr)
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Remote(addr) => addr.fmt(f),
            Self::Local(_) => f.write_str("this process"),
        }
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Peer({self})")
    }
}

#[cfg(test)]
mod tests {
    use tonic_health::{
        ServingStatus,
        pb::{HealthCheckRequest, health_client::HealthClient},
    };

    use super::*;

    fn check(service: &str) -> HealthCheckRequest {
        HealthCheckRequest {
            service: service.into(),
        }
    }

    #[tokio::test]
    async fn in_process_calls_reach_the_handlers_and_are_unavailable_once_the_host_lets_go() {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("svc", ServingStatus::Serving)
            .await;
        let mut builder = tonic::service::RoutesBuilder::default();
        builder.add_service(health);
        let routes = Arc::new(builder.routes());
        let mut client = HealthClient::new(in_process(&routes));
        let served = client.check(check("svc")).await.unwrap().into_inner();
        assert_eq!(served.status, ServingStatus::Serving as i32);
        // the handler's own status comes back as it would over a connection
        let unknown = client.check(check("nobody")).await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
        // the transport held the routes weakly: once their owner drops them, they are gone
        drop(routes);
        let gone = client.check(check("svc")).await.unwrap_err();
        assert_eq!(gone.code(), tonic::Code::Unavailable, "{gone:?}");
    }

    #[test]
    fn a_peer_names_where_it_is() {
        let remote = Peer::from(ListenAddr::Unix("/run/x.sock".into()));
        assert_eq!(remote.to_string(), "unix:///run/x.sock");
        let routes = Arc::new(tonic::service::RoutesBuilder::default().routes());
        assert_eq!(Peer::Local(in_process(&routes)).to_string(), "this process");
    }
}
