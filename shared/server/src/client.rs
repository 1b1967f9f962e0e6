//! Client channels to strata services.

use tonic::transport::{Channel, Endpoint};

use crate::ListenAddr;

/// A channel to `addr` that connects on first use (and reconnects after failures), so a
/// service can start and answer health before its peers are up.
pub fn lazy_channel(addr: &ListenAddr) -> Result<Channel, tonic::transport::Error> {
    let uri = match addr {
        ListenAddr::Tcp(a) => format!("http://{a}"),
        ListenAddr::Unix(p) => format!("unix://{}", p.display()),
    };
    Ok(Endpoint::from_shared(uri)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy())
}
