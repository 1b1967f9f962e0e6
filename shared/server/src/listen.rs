//! Listen addresses: TCP (`127.0.0.1:50051`, `layer-store.strata.svc:50052`, `tcp://…`) or
//! unix sockets (`unix:///p.sock`). A host name is resolved when it is bound or connected to
//! (a client connects lazily, so a peer's name may resolve only once the peer is up).

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr};

use tokio::net::{TcpListener, UnixListener};

/// Where a server listens or a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A TCP address by host name (a DNS name such as a Kubernetes service's), and port.
    Host(String, u16),
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
        // "NAME:PORT", a DNS name (RFC 1123 labels)
        if let Some((host, port)) = hostport.rsplit_once(':')
            && let Ok(port) = port.parse::<u16>()
            && is_host_name(host)
        {
            return Ok(Self::Host(host.to_ascii_lowercase(), port));
        }
        Err(ListenError::Invalid(s.to_string()))
    }
}

/// Whether `host` is a DNS host name (a final dot allowed): dot-separated labels of letters, digits and '-', not
/// starting or ending with '-', at most 63 characters each and 253 in all, the last not
/// all digits (that would be a mistyped IP address).
fn is_host_name(host: &str) -> bool {
    // an absolute name may end with the root's dot
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    host.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Host(h, port) => write!(f, "{h}:{port}"),
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
    /// Binds `addr`. A stale unix socket (nobody answering) is replaced; a live one is an
    /// error rather than being stolen, and so is anything at the path that is not a socket
    /// (a file is never deleted to make room) or a directory that does not exist.
    pub async fn bind(addr: &ListenAddr) -> Result<Self, ListenError> {
        let bind_error = |error| ListenError::Bind {
            addr: addr.to_string(),
            error,
        };
        match addr {
            ListenAddr::Tcp(a) => TcpListener::bind(a)
                .await
                .map(Self::Tcp)
                .map_err(bind_error),
            ListenAddr::Host(host, port) => TcpListener::bind((host.as_str(), *port))
                .await
                .map(Self::Tcp)
                .map_err(bind_error),
            ListenAddr::Unix(path) => {
                use std::os::unix::fs::FileTypeExt;
                match std::fs::symlink_metadata(path) {
                    Ok(m) if m.file_type().is_socket() => {
                        if tokio::net::UnixStream::connect(path).await.is_ok() {
                            return Err(ListenError::InUse(addr.to_string()));
                        }
                        std::fs::remove_file(path).map_err(bind_error)?;
                    }
                    Ok(m) => {
                        return Err(bind_error(std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            format!(
                                "a {} is there, not a socket (it is left alone)",
                                if m.is_dir() { "directory" } else { "file" }
                            ),
                        )));
                    }
                    Err(_) => {}
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
        // DNS names, as a Kubernetes service's
        assert_eq!(
            "layer-store.strata.svc:50052"
                .parse::<ListenAddr>()
                .unwrap(),
            ListenAddr::Host("layer-store.strata.svc".into(), 50052)
        );
        assert_eq!(
            "tcp://Gateway.Example.com:1".parse::<ListenAddr>().unwrap(),
            ListenAddr::Host("gateway.example.com".into(), 1)
        );
        for bad in [
            "-a.b:1",
            "a..b:1",
            "a_b:1",
            "1.2.3.400:1",
            "a b:1",
            "host:",
            ":5",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_unix_socket_replaces_only_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        // a file at the path is left alone, and refused
        let file = dir.path().join("data.db");
        std::fs::write(&file, b"important").unwrap();
        let err = Listener::bind(&ListenAddr::Unix(file.clone()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"important");
        // so is a directory; a missing parent directory is not made
        let err = Listener::bind(&ListenAddr::Unix(dir.path().to_path_buf()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("directory"), "{err}");
        let nowhere = dir.path().join("no/such/dir/x.sock");
        assert!(Listener::bind(&ListenAddr::Unix(nowhere)).await.is_err());
        assert!(!dir.path().join("no").exists());
        // a socket nobody answers on is replaced; a live one is refused
        let sock = dir.path().join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let live = Listener::bind(&ListenAddr::Unix(sock.clone()))
            .await
            .unwrap();
        let err = Listener::bind(&ListenAddr::Unix(sock)).await.unwrap_err();
        assert!(matches!(err, ListenError::InUse(_)), "{err}");
        drop(live);
    }
}
