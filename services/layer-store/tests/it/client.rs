//! What the gRPC-level tests share: an in-process server and a few client calls.

use std::path::Path;

use strata_proto::layer_store::{
    self as pb, layer_store_client::LayerStoreClient, write_blob_request::Part,
};
use strata_server::{ListenAddr, ServeOptions};
use strata_test_support::InProcess;
use tonic::{Status, transport::Channel};

pub type Client = LayerStoreClient<Channel>;

/// Serves a layer store over `root` on loopback.
pub async fn serve(root: &Path, tag_index_addr: Option<ListenAddr>) -> (InProcess, Client) {
    serve_with(root, tag_index_addr, ServeOptions::default()).await
}

/// [`serve`] with these server options (limits, drain).
pub async fn serve_with(
    root: &Path,
    tag_index_addr: Option<ListenAddr>,
    options: ServeOptions,
) -> (InProcess, Client) {
    let config = strata_layer_store::Config {
        root: root.to_path_buf(),
        tag_index: tag_index_addr.map(Into::into),
        compression: Default::default(),
        leases_end_with_process: false,
    };
    let server = InProcess::spawn(move |listener, shutdown| async move {
        strata_layer_store::run(config, listener, &options, shutdown).await
    })
    .await;
    if let Err(e) =
        strata_test_support::wait_until_serving(&server.addr, std::time::Duration::from_secs(30))
            .await
    {
        panic!(
            "layer store not serving ({e}); it ended with {:?}",
            server.shutdown().await
        );
    }
    let client = LayerStoreClient::new(server.channel())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    (server, client)
}

/// Deterministic pseudo-random bytes.
pub fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// `sha256:` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    strata_types::Digest::of(bytes).to_string()
}

/// A start that announces `bytes` (digest and size) as a layer.
pub fn announce(bytes: &[u8]) -> pb::WriteStart {
    pb::WriteStart {
        expected_digest: digest(bytes),
        expected_size: bytes.len() as i64,
        media_type: strata_types::media_type::OCI_LAYER_TAR.into(),
        ..Default::default()
    }
}

/// A start that announces nothing.
pub fn unannounced(media_type: &str) -> pb::WriteStart {
    pb::WriteStart {
        expected_size: -1,
        media_type: media_type.into(),
        ..Default::default()
    }
}

/// The messages of a write: start, then `bytes` in pieces of `piece`.
pub fn messages(start: pb::WriteStart, bytes: &[u8], piece: usize) -> Vec<pb::WriteBlobRequest> {
    let mut m = vec![pb::WriteBlobRequest {
        part: Some(Part::Start(start)),
    }];
    m.extend(bytes.chunks(piece).map(|c| pb::WriteBlobRequest {
        part: Some(Part::Data(c.to_vec().into())),
    }));
    m
}

/// Writes a blob in 1 MiB messages.
pub async fn write(
    client: &mut Client,
    start: pb::WriteStart,
    bytes: &[u8],
) -> Result<pb::WriteBlobResponse, Status> {
    client
        .write_blob(tokio_stream::iter(messages(start, bytes, 1 << 20)))
        .await
        .map(|r| r.into_inner())
}

/// Writes `bytes` with `media_type`, returns the digest.
pub async fn put(client: &mut Client, media_type: &str, bytes: &[u8]) -> String {
    write(client, unannounced(media_type), bytes)
        .await
        .expect("write")
        .digest
}

/// Reads a range; checks every message is at most 1 MiB.
pub async fn read(
    client: &mut Client,
    digest: &str,
    offset: i64,
    length: i64,
) -> Result<Vec<u8>, Status> {
    let mut stream = client
        .read_blob(pb::ReadBlobRequest {
            digest: digest.into(),
            offset,
            length,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        assert!(
            m.data.len() <= 1 << 20,
            "a ReadBlob message carries at most 1 MiB"
        );
        out.extend(m.data);
    }
    Ok(out)
}

/// Stats a blob.
pub async fn stat(client: &mut Client, digest: &str) -> Result<pb::BlobInfo, Status> {
    client
        .stat_blob(pb::StatBlobRequest {
            digest: digest.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// A TCP proxy to `target`: aborting the returned task drops every proxied connection at
/// once, as a network failure or a killed client would (a tonic client that merely drops a
/// call keeps streaming its request body).
pub async fn proxy(target: &ListenAddr) -> (Client, tokio::task::JoinHandle<()>) {
    let ListenAddr::Tcp(target) = target.clone() else {
        panic!("proxy needs a TCP target")
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let channel = strata_server::client::lazy_channel(&ListenAddr::Tcp(addr)).unwrap();
    (LayerStoreClient::new(channel), task)
}

#[tokio::test]
async fn a_peer_named_by_host_name_is_resolved_when_connected_to() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = serve(dir.path(), None).await;
    let ListenAddr::Tcp(bound) = server.addr.clone() else {
        panic!("a TCP server")
    };
    // a DNS name, as a Kubernetes service's, resolved when connected to (`localhost` itself
    // parses to 127.0.0.1, so the name is made directly: it resolves everywhere)
    let parsed: ListenAddr = format!("tcp://Peer.Example:{}", bound.port())
        .parse()
        .unwrap();
    assert_eq!(
        parsed,
        ListenAddr::Host("peer.example".into(), bound.port())
    );
    let named = ListenAddr::Host("localhost".into(), bound.port());
    let channel = strata_server::client::lazy_channel(&named).unwrap();
    let err = LayerStoreClient::new(channel)
        .stat_blob(strata_proto::layer_store::StatBlobRequest {
            digest: format!("sha256:{}", "0".repeat(64)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
}
