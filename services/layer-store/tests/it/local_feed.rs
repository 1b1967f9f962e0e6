//! Blob writes from a client in the same process: the bytes handed over in memory
//! (`strata_server::local_feed`), and the same request over a network, where they go as
//! messages.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use strata_proto::layer_store::{
    self as pb, layer_store_client::LayerStoreClient, write_blob_request::Part,
};
use strata_server::{ServeOptions, Services, client::Transport, local_feed::LocalFeed};
use tokio::sync::mpsc;
use tonic::Code;

use crate::client::{announce, data, digest, read, serve, unannounced};

/// Pieces that went into messages (only the test below wraps pieces).
static WRAPPED: AtomicUsize = AtomicUsize::new(0);

fn wrap(data: Bytes) -> pb::WriteBlobRequest {
    WRAPPED.fetch_add(1, Ordering::SeqCst);
    pb::WriteBlobRequest {
        part: Some(Part::Data(data)),
    }
}

/// A layer store inside this process, reached as the CLI's embedded mode reaches it.
fn in_process(
    root: &std::path::Path,
) -> (Arc<tonic::service::Routes>, LayerStoreClient<Transport>) {
    let service = strata_layer_store::open(&strata_layer_store::Config {
        root: root.to_path_buf(),
        tag_index: None,
        compression: Default::default(),
        leases_end_with_process: false,
    })
    .unwrap();
    let mut services = Services::default();
    strata_layer_store::register(&mut services, service, &ServeOptions::default());
    let routes = Arc::new(services.routes.routes());
    let client = LayerStoreClient::new(strata_server::client::in_process(&routes));
    (routes, client)
}

/// Starts a write of `pieces` through a feed; `finish`: a clean end.
fn feed_write(
    start: pb::WriteStart,
    pieces: &[Bytes],
    finish: bool,
) -> tonic::Request<impl futures::Stream<Item = pb::WriteBlobRequest> + Send + 'static> {
    let (tx, rx) = mpsc::channel(pieces.len() + 1);
    for p in pieces {
        tx.try_send(p.clone()).unwrap();
    }
    let feed = LocalFeed::new(rx);
    if finish {
        feed.finish();
    }
    feed.request(
        pb::WriteBlobRequest {
            part: Some(Part::Start(start)),
        },
        wrap,
    )
}

#[tokio::test]
async fn a_write_from_this_process_hands_the_bytes_over_in_memory_and_over_a_network_as_messages() {
    let blob = data(3 * (1 << 20) + 4321, 91);
    let pieces: Vec<Bytes> = blob.chunks(1 << 20).map(Bytes::copy_from_slice).collect();

    // in this process: the server takes the feed, no piece becomes a message
    let dir = tempfile::tempdir().unwrap();
    let (_routes, mut local) = in_process(dir.path());
    let before = WRAPPED.load(Ordering::SeqCst);
    let out = local
        .write_blob(feed_write(announce(&blob), &pieces, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.digest, digest(&blob));
    assert_eq!(out.size, blob.len() as i64);
    assert_eq!(
        WRAPPED.load(Ordering::SeqCst),
        before,
        "no piece was encoded"
    );
    let info = local
        .stat_blob(pb::StatBlobRequest {
            digest: out.digest.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.size, blob.len() as i64);

    // the same request over a connection: extensions stay behind, the pieces go as messages
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut remote) = serve(dir.path(), None).await;
    let out = remote
        .write_blob(feed_write(
            unannounced("application/octet-stream"),
            &pieces,
            true,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.digest, digest(&blob));
    assert_eq!(
        WRAPPED.load(Ordering::SeqCst),
        before + pieces.len(),
        "every piece went as a message"
    );
    assert_eq!(read(&mut remote, &out.digest, 0, 0).await.unwrap(), blob);
}

#[tokio::test]
async fn an_abandoned_or_wrong_write_from_this_process_stores_nothing() {
    let blob = data((1 << 20) + 17, 92);
    let pieces = [Bytes::copy_from_slice(&blob)];
    let dir = tempfile::tempdir().unwrap();
    let (_routes, mut local) = in_process(dir.path());
    let absent = |c: &mut LayerStoreClient<Transport>| {
        let mut c = c.clone();
        let d = digest(&blob);
        async move {
            c.stat_blob(pb::StatBlobRequest {
                digest: d,
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code()
        }
    };

    // the writer went away without finishing: not a clean end, nothing committed
    let err = local
        .write_blob(feed_write(
            unannounced("application/octet-stream"),
            &pieces,
            false,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Cancelled, "{err:?}");
    assert_eq!(absent(&mut local).await, Code::NotFound);

    // bytes that are not the announced digest
    let mut wrong = announce(&blob);
    wrong.expected_digest = digest(b"something else");
    let err = local
        .write_blob(feed_write(wrong, &pieces, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("digest mismatch"), "{err:?}");
    assert_eq!(absent(&mut local).await, Code::NotFound);

    // and a good one after both
    let out = local
        .write_blob(feed_write(announce(&blob), &pieces, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.digest, digest(&blob));
}
