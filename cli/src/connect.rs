//! How a command reaches the services: `--addr`, the data root's `strata serve`, or embedded.

use std::time::{Duration, Instant};

use anyhow::Context;
use strata_server::{ListenAddr, client::Transport};

use crate::{GlobalArgs, embedded::Embedded};

/// A way to the services for one command.
#[derive(Debug)]
pub struct Connection {
    /// Where the services are, for messages.
    pub addr: String,
    transport: Transport,
    embedded: Option<Embedded>,
    stateless: Option<crate::embedded::StatelessParser>,
}

impl Connection {
    /// A transport to the services.
    pub fn transport(&self) -> Transport {
        self.transport.clone()
    }

    /// True when the services run inside this process.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Ends the connection, stopping embedded services cleanly.
    pub async fn close(self) -> anyhow::Result<()> {
        let Self {
            transport,
            embedded,
            stateless,
            ..
        } = self;
        // ours goes first: a server's drain would wait for a socket connection to close
        drop(transport);
        drop(stateless);
        match embedded {
            Some(e) => e.stop().await,
            None => Ok(()),
        }
    }
}

/// One health check with a short deadline.
pub async fn serving(addr: &ListenAddr) -> bool {
    let Ok(channel) = strata_server::client::lazy_channel(addr) else {
        return false;
    };
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = client.check(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Ok(r)) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    )
}

/// Connects as the global options say. Two commands over one root never both open its
/// databases: the second uses the root's `strata serve` if one runs, or waits for the first.
pub async fn connect(global: &GlobalArgs) -> anyhow::Result<Connection> {
    if let Some(addr) = &global.addr {
        let transport = strata_server::client::lazy_transport(addr)
            .with_context(|| format!("invalid server address {addr}"))?;
        // a server that lacks a service the command needs says which (not an empty error)
        let transport = strata_server::client::naming_missing_services(transport, addr.to_string());
        return Ok(Connection {
            addr: addr.to_string(),
            transport,
            embedded: None,
            stateless: None,
        });
    }
    let root = global.data_root();
    let socket = ListenAddr::Unix(crate::embedded::root_socket(&root));
    let started = Instant::now();
    let mut told = false;
    loop {
        if crate::embedded::root_socket(&root).exists() && serving(&socket).await {
            let transport = strata_server::client::lazy_transport(&socket)?;
            return Ok(Connection {
                addr: socket.to_string(),
                transport,
                embedded: None,
                stateless: None,
            });
        }
        if let Some(lock) = crate::embedded::try_lock_root(&root)? {
            let embedded = Embedded::start(&root, lock).await?;
            let transport = embedded.transport();
            return Ok(Connection {
                addr: root.display().to_string(),
                transport,
                embedded: Some(embedded),
                stateless: None,
            });
        }
        if !told && started.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "waiting for another strata command that is using {} ...",
                root.display()
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// For commands that need only stateless services (the parser): `--addr`, the root's
/// `strata serve`, or a parser inside this process — without taking the data root's lock.
pub async fn connect_stateless(global: &GlobalArgs) -> anyhow::Result<Connection> {
    if let Some(addr) = &global.addr {
        let transport = strata_server::client::naming_missing_services(
            strata_server::client::lazy_transport(addr)?,
            addr.to_string(),
        );
        return Ok(Connection {
            addr: addr.to_string(),
            transport,
            embedded: None,
            stateless: None,
        });
    }
    let root = global.data_root();
    let socket_path = crate::embedded::root_socket(&root);
    let socket = ListenAddr::Unix(socket_path.clone());
    if socket_path.exists() && serving(&socket).await {
        let transport = strata_server::client::lazy_transport(&socket)?;
        return Ok(Connection {
            addr: socket.to_string(),
            transport,
            embedded: None,
            stateless: None,
        });
    }
    let parser = crate::embedded::StatelessParser::start();
    let transport = parser.transport();
    Ok(Connection {
        addr: "this process".into(),
        transport,
        embedded: None,
        stateless: Some(parser),
    })
}
