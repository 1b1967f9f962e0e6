//! Listen addresses: TCP (`127.0.0.1:50051`, `tcp://…`) or unix sockets (`unix:///p.sock`).

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr};

use tokio::net::{TcpListener, UnixListener};

/// Where a server listens or a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

/// Why an address could not be parsed or bound.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Not an address.
    #[error("invalid listen address {0:?}: expected HOST:PORT or unix:///path/to.sock")]
    Invalid(String),
    /// Bind failed.
    /// (The message ends with the OS error, so it is not also the `source()`: a chain printer
    /// would say it twice.)
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// A live server already listens on the socket path.
    #[error("cannot listen on {0}: another server is already listening there")]
    InUse(String),
}

impl FromStr for ListenAddr {
    type Err = ListenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(ListenError::Invalid(s.to_string()));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let hostport = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        if let Ok(addr) = hostport.parse::<SocketAddr>() {
            return Ok(Self::Tcp(addr));
        }
        // "localhost:PORT"
        if let Some(port) = hostport.strip_prefix("localhost:")
            && let Ok(port) = port.parse::<u16>()
        {
            return Ok(Self::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        Err(ListenError::Invalid(s.to_string()))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket; the path is removed when the server stops.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`. A stale unix socket file (nobody answering) is replaced; a live one is
    /// an error rather than being stolen.
    pub async fn bind(addr: &ListenAddr) -> Result<Self, ListenError> {
        match addr {
            ListenAddr::Tcp(a) => {
                TcpListener::bind(a)
                    .await
                    .map(Self::Tcp)
                    .map_err(|error| ListenError::Bind {
                        addr: addr.to_string(),
                        error,
                    })
            }
            ListenAddr::Unix(path) => {
                if path.exists() {
                    if tokio::net::UnixStream::connect(path).await.is_ok() {
                        return Err(ListenError::InUse(addr.to_string()));
                    }
                    let _ = std::fs::remove_file(path);
                }
                if let Some(parent) = path.parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|error| ListenError::Bind {
                        addr: addr.to_string(),
                        error,
                    })?;
                }
                UnixListener::bind(path)
                    .map(|l| Self::Unix(l, path.clone()))
                    .map_err(|error| ListenError::Bind {
                        addr: addr.to_string(),
                        error,
                    })
            }
        }
    }

    /// The address actually bound (with the real port for `:0`).
    pub fn local_addr(&self) -> ListenAddr {
        match self {
            Self::Tcp(l) => ListenAddr::Tcp(
                l.local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            ),
            Self::Unix(_, p) => ListenAddr::Unix(p.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "127.0.0.1:5".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:5".parse().unwrap())
        );
        assert_eq!(
            "unix:///tmp/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            "localhost:7".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:7".parse().unwrap())
        );
        assert!("unix://".parse::<ListenAddr>().is_err());
        assert!("nonsense".parse::<ListenAddr>().is_err());
        assert!("1.2.3.4:99999".parse::<ListenAddr>().is_err());
    }
}
