//! Every RPC over real gRPC on loopback, with bad input.

use std::time::{Duration, Instant};

use strata_proto::{
    layer_store::{self as pb, write_blob_request::Part},
    tag_index::{self as ti, tag_index_server::TagIndex},
};
use strata_server::{ServeOptions, Services};
use strata_test_support::InProcess;
use strata_types::media_type;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::client::{
    Client, announce, data, digest, messages, proxy, put, read, serve, stat, unannounced, write,
};

#[tokio::test]
async fn write_read_stat_list_delete_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut c) = serve(dir.path(), None).await;
    let big = data(3 * (1 << 20) + 12345, 1);
    let out = write(&mut c, announce(&big), &big).await.unwrap();
    assert_eq!(out.digest, digest(&big));
    assert_eq!(out.size, big.len() as i64);
    assert!(!out.already_existed);
    // expected digest absent: computed and returned
    let small = data(5000, 2);
    let out2 = write(&mut c, unannounced(media_type::OCI_CONFIG), &small)
        .await
        .unwrap();
    assert_eq!(out2.digest, digest(&small));

    assert_eq!(read(&mut c, &out.digest, 0, 0).await.unwrap(), big);
    let mib = 1 << 20;
    assert_eq!(
        read(&mut c, &out.digest, mib - 3, 10).await.unwrap(),
        big[mib as usize - 3..mib as usize + 7]
    );
    assert_eq!(
        read(&mut c, &out.digest, 2 * mib + 1, 0).await.unwrap(),
        big[2 * mib as usize + 1..]
    );
    let err = read(&mut c, &out.digest, big.len() as i64 + 1, 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let err = read(&mut c, &out.digest, -1, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("offset"), "{err:?}");

    let info = stat(&mut c, &out.digest).await.unwrap();
    assert_eq!(info.size, big.len() as i64);
    assert_eq!(info.media_type, media_type::OCI_LAYER_TAR);
    assert!(info.created_at.is_some());

    let list = c
        .list_blobs(pb::ListBlobsRequest {
            media_type: media_type::OCI_CONFIG.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.blobs.len(), 1);
    assert_eq!(list.blobs[0].digest, out2.digest);
    let page = c
        .list_blobs(pb::ListBlobsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.blobs.len(), 1);
    let rest = c
        .list_blobs(pb::ListBlobsRequest {
            page_size: 1,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.blobs.len(), 1);
    assert_ne!(rest.blobs[0].digest, page.blobs[0].digest);
    let err = c
        .list_blobs(pb::ListBlobsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    c.delete_blob(pb::DeleteBlobRequest {
        digest: out.digest.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        stat(&mut c, &out.digest).await.unwrap_err().code(),
        Code::NotFound
    );
    let err = c
        .delete_blob(pb::DeleteBlobRequest {
            digest: out.digest.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        read(&mut c, &out.digest, 0, 0).await.unwrap_err().code(),
        Code::NotFound
    );
}

const MALFORMED: &[&str] = &[
    "sha256:../x",
    "sha256:abc",
    "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
];

fn assert_invalid(r: Result<impl std::fmt::Debug, Status>, field: &str, input: &str) {
    let err = r.expect_err(input);
    assert_eq!(err.code(), Code::InvalidArgument, "{input}: {err:?}");
    assert!(
        err.message().contains(field),
        "{input}: message must name {field}: {}",
        err.message()
    );
}

#[tokio::test]
async fn malformed_digests_are_invalid_argument_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut c) = serve(dir.path(), None).await;
    for bad in MALFORMED {
        let s = bad.to_string();
        assert_invalid(stat(&mut c, bad).await, "digest", bad);
        assert_invalid(read(&mut c, bad, 0, 0).await, "digest", bad);
        assert_invalid(
            c.delete_blob(pb::DeleteBlobRequest { digest: s.clone() })
                .await,
            "digest",
            bad,
        );
        let start = pb::WriteStart {
            expected_digest: s.clone(),
            ..unannounced("m")
        };
        assert_invalid(
            write(&mut c, start, b"x").await,
            "start.expected_digest",
            bad,
        );
        assert_invalid(
            c.verify_blobs(pb::VerifyBlobsRequest {
                digests: vec![digest(b"ok"), s.clone()],
            })
            .await,
            "digests[1]",
            bad,
        );
        assert_invalid(
            c.collect_garbage(pb::CollectGarbageRequest {
                roots: vec![s.clone()],
                ..Default::default()
            })
            .await,
            "roots[0]",
            bad,
        );
        assert_invalid(
            c.get_usage(pb::GetUsageRequest {
                roots: vec![s.clone()],
            })
            .await,
            "roots[0]",
            bad,
        );
        assert_invalid(
            c.add_lease_resources(pb::AddLeaseResourcesRequest {
                id: "l".into(),
                digests: vec![s.clone()],
            })
            .await,
            "digests[0]",
            bad,
        );
        assert_invalid(
            c.get_cache_entry(pb::GetCacheEntryRequest {
                key: s.clone(),
                ..Default::default()
            })
            .await,
            "key",
            bad,
        );
        let entry = pb::CacheEntry {
            key: digest(b"k"),
            layer_digest: s.clone(),
            ..Default::default()
        };
        assert_invalid(
            c.put_cache_entry(pb::PutCacheEntryRequest { entry: Some(entry) })
                .await,
            "entry.layer_digest",
            bad,
        );
    }
    let list = c
        .list_blobs(pb::ListBlobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.blobs.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn wrong_digest_size_and_overlong_streams_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut c) = serve(dir.path(), None).await;
    let bytes = data(2 * (1 << 20) + 77, 3);
    let claimed = digest(b"something else");

    let start = pb::WriteStart {
        expected_digest: claimed.clone(),
        ..unannounced("m")
    };
    let err = write(&mut c, start, &bytes).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains(&claimed) && err.message().contains(&digest(&bytes)),
        "{}",
        err.message()
    );

    let start = pb::WriteStart {
        expected_size: bytes.len() as i64 + 1,
        ..unannounced("m")
    };
    let err = write(&mut c, start, &bytes).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("size mismatch"), "{}", err.message());

    // more bytes than declared: cut at size + 1
    let declared = (1 << 20) + 10;
    let start = pb::WriteStart {
        expected_size: declared,
        ..unannounced("m")
    };
    let err = write(&mut c, start, &bytes).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains(&format!("aborted at byte {}", declared + 1)),
        "{}",
        err.message()
    );

    // a stream without start, and a second start
    let err = c
        .write_blob(tokio_stream::iter(vec![pb::WriteBlobRequest {
            part: Some(Part::Data(b"x".to_vec().into())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("start"), "{err:?}");
    let mut twice = messages(unannounced("m"), b"abc", 1);
    twice.push(twice[0].clone());
    let err = c.write_blob(tokio_stream::iter(twice)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = write(
        &mut c,
        pb::WriteStart {
            expected_size: -2,
            ..unannounced("m")
        },
        b"x",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    for d in [digest(&bytes), digest(&bytes[..declared as usize])] {
        assert_eq!(stat(&mut c, &d).await.unwrap_err().code(), Code::NotFound);
    }
    let list = c
        .list_blobs(pb::ListBlobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.blobs.is_empty(), "nothing was stored: {list:?}");
}

/// Retries `f` while the upload is still held by the stream the client dropped (the server
/// notices a reset stream asynchronously). Bounded: returns the first other outcome.
async fn until_released<T, F, Fut>(mut f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Err(s)
                if s.code() == Code::FailedPrecondition
                    && s.message().contains("another stream")
                    && Instant::now() < deadline =>
            {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
}

/// Starts a write fed by a channel; returns the sender and the call's join handle.
fn streaming_write(
    c: &Client,
    start: pb::WriteStart,
) -> (
    mpsc::Sender<pb::WriteBlobRequest>,
    tokio::task::JoinHandle<Result<pb::WriteBlobResponse, Status>>,
) {
    let (tx, rx) = mpsc::channel(4);
    let mut c = c.clone();
    let call = tokio::spawn(async move {
        c.write_blob(ReceiverStream::new(rx))
            .await
            .map(|r| r.into_inner())
    });
    tx.try_send(pb::WriteBlobRequest {
        part: Some(Part::Start(start)),
    })
    .unwrap();
    (tx, call)
}

async fn upload_offset(c: &mut Client, id: &str) -> Result<i64, Status> {
    c.get_upload(pb::GetUploadRequest {
        upload_id: id.into(),
    })
    .await
    .map(|r| r.into_inner().offset)
}

/// Waits (bounded) until the server holds at least `at_least` bytes of upload `id`.
async fn wait_for_offset(c: &mut Client, id: &str, at_least: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(o) = upload_offset(c, id).await
            && o >= at_least
        {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "upload {id} never reached {at_least} bytes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client that cancels its write (RST_STREAM CANCEL) while the server waits for the next
/// message: tonic reads that as a clean end of the stream, and the store took the part it
/// had as the whole blob (committed it, or — for a session with a size and digest — found
/// it short and discarded the session, which could then not resume). It is a broken stream:
/// nothing visible, the session kept for a resume.
#[tokio::test]
async fn a_write_the_client_cancels_between_messages_is_broken_not_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut c) = serve(dir.path(), None).await;
    let bytes = data(3 << 20, 9);
    let start = pb::WriteStart {
        client_upload_id: "cancel-me".into(),
        ..announce(&bytes)
    };
    let (tx, call) = streaming_write(&c, start);
    for piece in bytes[..2 << 20].chunks(1 << 20) {
        tx.send(pb::WriteBlobRequest {
            part: Some(Part::Data(piece.to_vec().into())),
        })
        .await
        .unwrap();
    }
    // the server has taken in all of it and waits for more: the client cancels
    assert_eq!(wait_for_offset(&mut c, "cancel-me", 2 << 20).await, 2 << 20);
    call.abort();
    let _ = call.await;
    let resumed = until_released(|| {
        let mut c = c.clone();
        let rest = bytes[2 << 20..].to_vec();
        async move {
            let start = pb::WriteStart {
                upload_id: "cancel-me".into(),
                offset: 2 << 20,
                ..Default::default()
            };
            write(&mut c, start, &rest).await
        }
    })
    .await
    .expect("the cancelled session resumes");
    assert_eq!(resumed.digest, digest(&bytes));
    assert_eq!(read(&mut c, &resumed.digest, 0, 0).await.unwrap(), bytes);
    drop(tx);
}

#[tokio::test]
async fn a_cancelled_write_is_never_visible_and_resumes_by_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c) = serve(dir.path(), None).await;
    let bytes = data(4 * (1 << 20) + 999, 4);
    let start = pb::WriteStart {
        client_upload_id: "resume-me".into(),
        ..announce(&bytes)
    };
    let (flaky, link) = proxy(&server.addr).await;
    let (tx, call) = streaming_write(&flaky, start);
    for piece in bytes[..(5 << 19)].chunks(1 << 19) {
        tx.send(pb::WriteBlobRequest {
            part: Some(Part::Data(piece.to_vec().into())),
        })
        .await
        .unwrap();
    }
    let held = wait_for_offset(&mut c, "resume-me", 2 << 20).await;
    link.abort(); // the connection drops mid-stream
    let _ = link.await;
    assert!(call.await.unwrap().is_err());
    drop(tx);
    assert_eq!(
        stat(&mut c, &digest(&bytes)).await.unwrap_err().code(),
        Code::NotFound,
        "never visible"
    );
    assert!(held % (1 << 20) == 0 && held <= 5 << 19, "held {held}");

    // resuming at the wrong offset is refused with the right one
    let resume = |offset: i64| pb::WriteStart {
        upload_id: "resume-me".into(),
        offset,
        ..Default::default()
    };
    let err = until_released(|| {
        let mut c = c.clone();
        let bytes = bytes.clone();
        async move { write(&mut c, resume(1), &bytes[1..]).await }
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let offset = upload_offset(&mut c, "resume-me").await.unwrap();
    assert!(
        err.message()
            .contains(&format!("resume at offset {offset}")),
        "{err:?}"
    );
    let out = write(&mut c, resume(offset), &bytes[offset as usize..])
        .await
        .unwrap();
    assert_eq!(out.digest, digest(&bytes));
    assert_eq!(out.upload_id, "resume-me");
    assert_eq!(read(&mut c, &out.digest, 0, 0).await.unwrap(), bytes);
    assert_eq!(
        upload_offset(&mut c, "resume-me").await.unwrap_err().code(),
        Code::NotFound
    );

    // abort: the session and its bytes go
    let start = pb::WriteStart {
        client_upload_id: "abort-me".into(),
        ..unannounced("m")
    };
    let (flaky, link) = proxy(&server.addr).await;
    let (tx, call) = streaming_write(&flaky, start);
    tx.send(pb::WriteBlobRequest {
        part: Some(Part::Data(bytes[..(3 << 20)].to_vec().into())),
    })
    .await
    .unwrap();
    wait_for_offset(&mut c, "abort-me", 3 << 20).await;
    link.abort();
    let _ = link.await;
    assert!(call.await.unwrap().is_err());
    drop(tx);
    until_released(|| {
        let mut c = c.clone();
        async move {
            c.abort_upload(pb::AbortUploadRequest {
                upload_id: "abort-me".into(),
            })
            .await
        }
    })
    .await
    .unwrap();
    assert_eq!(
        upload_offset(&mut c, "abort-me").await.unwrap_err().code(),
        Code::NotFound
    );
    let err = c
        .abort_upload(pb::AbortUploadRequest {
            upload_id: "abort-me".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn two_concurrent_writers_of_one_blob_both_succeed_with_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, c) = serve(dir.path(), None).await;
    let bytes = std::sync::Arc::new(data(3 * (1 << 20) + 5, 5));
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let (mut c, bytes) = (c.clone(), bytes.clone());
            tokio::spawn(async move {
                let start = if i == 0 {
                    announce(&bytes)
                } else {
                    unannounced(media_type::OCI_LAYER_TAR)
                };
                c.write_blob(tokio_stream::iter(messages(start, &bytes, 64 << 10)))
                    .await
                    .map(|r| r.into_inner())
            })
        })
        .collect();
    let mut outs = Vec::new();
    for w in writers {
        outs.push(w.await.unwrap().unwrap());
    }
    assert!(outs.iter().all(|o| o.digest == digest(&bytes)));
    assert_eq!(
        outs.iter().filter(|o| !o.already_existed).count(),
        1,
        "{outs:?}"
    );
    let mut c = c.clone();
    let usage = c
        .get_usage(pb::GetUsageRequest::default())
        .await
        .unwrap()
        .into_inner();
    let layers = usage.kinds.iter().find(|k| k.kind == "layers").unwrap();
    assert_eq!(
        (layers.count, layers.bytes),
        (1, bytes.len() as i64),
        "one copy"
    );
    // and announced again later: answered without storing
    let again = write(&mut c, announce(&bytes), &bytes).await.unwrap();
    assert!(again.already_existed);
}

#[tokio::test]
async fn gc_running_during_a_write_leaves_the_write_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut c) = serve(dir.path(), None).await;
    let junk = put(&mut c, "application/octet-stream", b"junk").await;
    for (announced, id) in [(true, "gc-a"), (false, "gc-b")] {
        let bytes = data(3 * (1 << 20) + 17, if announced { 6 } else { 7 });
        let start = pb::WriteStart {
            client_upload_id: id.into(),
            ..if announced {
                announce(&bytes)
            } else {
                unannounced(media_type::OCI_LAYER_TAR)
            }
        };
        let (tx, call) = streaming_write(&c, start);
        tx.send(pb::WriteBlobRequest {
            part: Some(Part::Data(bytes[..(2 << 20) + 1].to_vec().into())),
        })
        .await
        .unwrap();
        wait_for_offset(&mut c, id, 2 << 20).await;
        let report = c
            .collect_garbage(pb::CollectGarbageRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(report.uploads_swept, 0);
        assert_eq!(
            upload_offset(&mut c, id).await.unwrap(),
            2 << 20,
            "the in-flight upload is intact"
        );
        tx.send(pb::WriteBlobRequest {
            part: Some(Part::Data(bytes[(2 << 20) + 1..].to_vec().into())),
        })
        .await
        .unwrap();
        drop(tx);
        let out = call.await.unwrap().unwrap();
        assert_eq!(out.digest, digest(&bytes));
        assert_eq!(read(&mut c, &out.digest, 0, 0).await.unwrap(), bytes);
        let v = c
            .verify_blobs(pb::VerifyBlobsRequest {
                digests: vec![out.digest.clone()],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(v.corrupt.is_empty());
        c.delete_blob(pb::DeleteBlobRequest { digest: out.digest })
            .await
            .unwrap();
    }
    assert_eq!(
        stat(&mut c, &junk).await.unwrap_err().code(),
        Code::NotFound,
        "GC did collect the junk"
    );
}

#[tokio::test]
async fn cache_entries_leases_usage_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut c) = serve(dir.path(), None).await;
    let layer = put(&mut c, media_type::OCI_LAYER_TAR, &data(10_000, 8)).await;
    let key = digest(b"step key");
    let parent = digest(b"parent key");
    let entry = pb::CacheEntry {
        key: key.clone(),
        preimage: r#"{"instruction":"RUN true"}"#.into(),
        layer_digest: layer.clone(),
        config: br#"{"config":{}}"#.to_vec(),
        parent_key: parent.clone(),
        created_at: None,
        layer_size: 0,
    };
    c.put_cache_entry(pb::PutCacheEntryRequest {
        entry: Some(entry.clone()),
    })
    .await
    .unwrap();
    c.put_cache_entry(pb::PutCacheEntryRequest {
        entry: Some(entry.clone()),
    })
    .await
    .unwrap();
    let got = c
        .get_cache_entry(pb::GetCacheEntryRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            got.preimage.as_str(),
            got.layer_digest.as_str(),
            got.config.as_slice()
        ),
        (
            entry.preimage.as_str(),
            layer.as_str(),
            entry.config.as_slice()
        )
    );
    assert!(got.created_at.is_some());
    assert_eq!(got.layer_size, 10_000, "the lookup gives the layer's size");
    let listed = c
        .list_cache_entries(pb::ListCacheEntriesRequest {
            parent_key: parent.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let err = c
        .get_cache_entry(pb::GetCacheEntryRequest {
            key: digest(b"no"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .put_cache_entry(pb::PutCacheEntryRequest {
            entry: Some(pb::CacheEntry {
                layer_digest: digest(b"absent layer"),
                ..entry.clone()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let lease = c
        .create_lease(pb::CreateLeaseRequest {
            ttl_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!lease.id.is_empty());
    let leased = put(&mut c, "application/octet-stream", b"leased").await;
    let l = c
        .add_lease_resources(pb::AddLeaseResourcesRequest {
            id: lease.id.clone(),
            digests: vec![leased.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.digests, vec![leased.clone()]);
    assert_eq!(
        c.list_leases(pb::ListLeasesRequest {})
            .await
            .unwrap()
            .into_inner()
            .leases
            .len(),
        1
    );
    let err = c
        .add_lease_resources(pb::AddLeaseResourcesRequest {
            id: "nope".into(),
            digests: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let junk = put(&mut c, "application/octet-stream", b"junk").await;

    let usage = c
        .get_usage(pb::GetUsageRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(usage.cache_entries, 1);
    assert_eq!(usage.cache_bytes, 10_000);
    assert_eq!(usage.reclaimable_bytes, 4, "only the junk");
    assert_eq!(
        usage
            .kinds
            .iter()
            .map(|k| k.kind.as_str())
            .collect::<Vec<_>>(),
        ["layers", "configs", "manifests", "contexts", "other"]
    );

    let dry = c
        .collect_garbage(pb::CollectGarbageRequest {
            dry_run: true,
            prune_cache: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.removed.len(), 2, "{dry:?}");
    assert_eq!(dry.cache_entries_removed, 1);
    let gc = c
        .collect_garbage(pb::CollectGarbageRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gc.removed, vec![junk.clone()]);
    assert_eq!(gc.bytes_freed, 4);
    assert_eq!(gc.kept, 2);

    c.delete_lease(pb::DeleteLeaseRequest {
        id: lease.id.clone(),
    })
    .await
    .unwrap();
    let gc = c
        .collect_garbage(pb::CollectGarbageRequest {
            prune_cache: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gc.removed.len(), 2);
    assert_eq!(gc.cache_entries_removed, 1);

    let v = c
        .verify_blobs(pb::VerifyBlobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v.checked, v.corrupt.len()), (0, 0));
}

/// A tag index answering with `tags`, served in this process.
async fn serve_tags(tags: FixedTags) -> InProcess {
    InProcess::spawn(move |listener, shutdown| async move {
        let mut services = Services::default();
        services
            .routes
            .add_service(strata_proto::tag_index::tag_index_server::TagIndexServer::new(tags));
        services.names.push(strata_proto::service_names::TAG_INDEX);
        strata_server::serve(services, listener, &ServeOptions::default(), shutdown).await
    })
    .await
}

/// A tag index that knows a fixed list of tags and pages through them one at a time.
#[derive(Clone)]
struct FixedTags(Vec<(String, String)>);

#[tonic::async_trait]
impl TagIndex for FixedTags {
    async fn set_tag(
        &self,
        _: Request<ti::SetTagRequest>,
    ) -> Result<Response<ti::SetTagResponse>, Status> {
        Err(Status::unimplemented("fixed"))
    }
    async fn resolve_tag(
        &self,
        _: Request<ti::ResolveTagRequest>,
    ) -> Result<Response<ti::Tag>, Status> {
        Err(Status::unimplemented("fixed"))
    }
    async fn list_tags(
        &self,
        r: Request<ti::ListTagsRequest>,
    ) -> Result<Response<ti::ListTagsResponse>, Status> {
        let start: usize = r.into_inner().page_token.parse().unwrap_or(0);
        let tags = self
            .0
            .iter()
            .skip(start)
            .take(1)
            .map(|(name, digest)| ti::Tag {
                name: name.clone(),
                digest: digest.clone(),
                ..Default::default()
            })
            .collect();
        let next = if start + 1 < self.0.len() {
            (start + 1).to_string()
        } else {
            String::new()
        };
        Ok(Response::new(ti::ListTagsResponse {
            tags,
            next_page_token: next,
            sequence: 0,
        }))
    }
    async fn delete_tag(
        &self,
        _: Request<ti::DeleteTagRequest>,
    ) -> Result<Response<ti::DeleteTagResponse>, Status> {
        Err(Status::unimplemented("fixed"))
    }
    async fn get_tag_history(
        &self,
        _: Request<ti::GetTagHistoryRequest>,
    ) -> Result<Response<ti::GetTagHistoryResponse>, Status> {
        Err(Status::unimplemented("fixed"))
    }
    type WatchTagsStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<ti::TagEvent, Status>> + Send>>;
    async fn watch_tags(
        &self,
        _: Request<ti::WatchTagsRequest>,
    ) -> Result<Response<Self::WatchTagsStream>, Status> {
        Err(Status::unimplemented("fixed"))
    }
}

async fn image(c: &mut Client, seed: u64) -> (String, String, String) {
    let layer = put(c, media_type::OCI_LAYER_TAR, &data(3000, seed)).await;
    let config = put(
        c,
        media_type::OCI_CONFIG,
        format!("{{\"seed\":{seed}}}").as_bytes(),
    )
    .await;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":1}},"layers":[{{"mediaType":"{}","digest":"{layer}","size":3000}}]}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG,
        media_type::OCI_LAYER_TAR
    );
    (
        put(c, media_type::OCI_MANIFEST, manifest.as_bytes()).await,
        config,
        layer,
    )
}

#[tokio::test]
async fn gc_roots_include_every_tag_of_the_tag_index() {
    let dir = tempfile::tempdir().unwrap();
    // first fill a store without a tag index, then learn the digests to tag
    let (server, mut c) = serve(dir.path(), None).await;
    let (m1, c1, l1) = image(&mut c, 1).await;
    let (m2, c2, l2) = image(&mut c, 2).await;
    let (m3, c3, l3) = image(&mut c, 3).await;
    server.shutdown().await.unwrap();

    let tags = FixedTags(vec![
        ("docker.io/library/a:1".into(), m1.clone()),
        ("docker.io/library/b:1".into(), m2.clone()),
    ]);
    let tag_index = serve_tags(tags).await;
    let (server, mut c) = serve(dir.path(), Some(tag_index.addr.clone())).await;
    let usage = c
        .get_usage(pb::GetUsageRequest {
            roots: vec![m1.clone(), m2.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let image3 = [&m3, &c3, &l3];
    let mut image3_bytes = 0;
    for d in image3 {
        image3_bytes += stat(&mut c, d).await.unwrap().size;
    }
    assert_eq!(usage.reclaimable_bytes, image3_bytes);
    let gc = c
        .collect_garbage(pb::CollectGarbageRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut removed = gc.removed.clone();
    removed.sort();
    let mut expected = vec![m3, c3, l3];
    expected.sort();
    assert_eq!(removed, expected);
    for d in [&m1, &c1, &l1, &m2, &c2, &l2] {
        assert!(stat(&mut c, d).await.is_ok(), "{d} is reachable from a tag");
    }
    server.shutdown().await.unwrap();

    // the tag index gone: GC refuses rather than lose the tagged images
    tag_index.shutdown().await.unwrap();
    let dead = strata_server::ListenAddr::Unix(dir.path().join("no-tag-index.sock"));
    let (_server, mut c) = serve(dir.path(), Some(dead)).await;
    let err = c
        .collect_garbage(pb::CollectGarbageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("tag index"), "{err:?}");
    assert!(stat(&mut c, &m1).await.is_ok());
}

#[tokio::test]
async fn a_cache_hit_taken_under_a_lease_keeps_its_layer_through_a_cache_prune() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut c) = serve(dir.path(), None).await;
    let layer = put(&mut c, media_type::OCI_LAYER_TAR, &data(5_000, 3)).await;
    let key = digest(b"cached step");
    let entry = pb::CacheEntry {
        key: key.clone(),
        preimage: "{}".into(),
        layer_digest: layer.clone(),
        config: b"{}".to_vec(),
        ..Default::default()
    };
    let store_entry = |c: &mut Client| {
        let mut c = c.clone();
        let entry = entry.clone();
        async move {
            c.put_cache_entry(pb::PutCacheEntryRequest { entry: Some(entry) })
                .await
                .unwrap();
        }
    };
    store_entry(&mut c).await;
    let lease = c
        .create_lease(pb::CreateLeaseRequest {
            ttl_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let hit = c
        .get_cache_entry(pb::GetCacheEntryRequest {
            key: key.clone(),
            lease_id: lease.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (hit.layer_digest.as_str(), hit.layer_size),
        (layer.as_str(), 5_000)
    );
    let leases = c
        .list_leases(pb::ListLeasesRequest {})
        .await
        .unwrap()
        .into_inner()
        .leases;
    assert_eq!(
        leases[0].digests,
        vec![layer.clone()],
        "the hit joined the lease"
    );

    // pruning the cache removes the entry, not the leased layer
    let gc = c
        .collect_garbage(pb::CollectGarbageRequest {
            prune_cache: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gc.cache_entries_removed, 1);
    assert!(!gc.removed.contains(&layer), "{gc:?}");
    assert!(stat(&mut c, &layer).await.is_ok());

    // a lease that is gone is not "no entry": the build must not go on unprotected
    store_entry(&mut c).await;
    let err = c
        .get_cache_entry(pb::GetCacheEntryRequest {
            key: key.clone(),
            lease_id: "gone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("\"gone\""), "{err:?}");

    // an entry whose layer was collected is a miss, not a hit that leads nowhere
    c.delete_lease(pb::DeleteLeaseRequest { id: lease.id })
        .await
        .unwrap();
    c.delete_blob(pb::DeleteBlobRequest {
        digest: layer.clone(),
    })
    .await
    .unwrap();
    let err = c
        .get_cache_entry(pb::GetCacheEntryRequest {
            key,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn delete_blob_refuses_what_a_tag_or_lease_reaches_and_stat_can_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c) = serve(dir.path(), None).await;
    let (m1, c1, l1) = image(&mut c, 1).await;
    let (m2, c2, l2) = image(&mut c, 2).await;
    server.shutdown().await.unwrap();
    let tags = FixedTags(vec![("docker.io/library/a:1".into(), m1.clone())]);
    let tag_index = serve_tags(tags).await;
    let (_server, mut c) = serve(dir.path(), Some(tag_index.addr.clone())).await;
    let delete = |d: &str| pb::DeleteBlobRequest { digest: d.into() };

    // the tagged image, whole: its manifest, config and layer
    for d in [&m1, &c1, &l1] {
        let err = c.delete_blob(delete(d)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{d}: {err:?}");
        assert!(
            err.message().contains("tag docker.io/library/a:1") && err.message().contains(d),
            "{}",
            err.message()
        );
        assert!(stat(&mut c, d).await.is_ok());
    }

    // StatBlob under a lease: the blob joins it, and DeleteBlob names the lease
    let lease = c
        .create_lease(pb::CreateLeaseRequest::default())
        .await
        .unwrap()
        .into_inner();
    let info = c
        .stat_blob(pb::StatBlobRequest {
            digest: m2.clone(),
            lease_id: lease.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.media_type, media_type::OCI_MANIFEST);
    for d in [&m2, &c2, &l2] {
        let err = c.delete_blob(delete(d)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{d}: {err:?}");
        assert!(err.message().contains(&lease.id), "{}", err.message());
    }
    // an absent blob joins nothing; a lease that is not live is named
    let absent = digest(b"absent");
    let err = c
        .stat_blob(pb::StatBlobRequest {
            digest: absent.clone(),
            lease_id: lease.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    c.delete_lease(pb::DeleteLeaseRequest {
        id: lease.id.clone(),
    })
    .await
    .unwrap();
    let err = c
        .stat_blob(pb::StatBlobRequest {
            digest: m2.clone(),
            lease_id: lease.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&lease.id), "{}", err.message());

    // nothing holds the second image any more: it can go, manifest first
    for d in [&m2, &c2, &l2] {
        c.delete_blob(delete(d)).await.unwrap();
        assert_eq!(stat(&mut c, d).await.unwrap_err().code(), Code::NotFound);
    }
    let err = c.delete_blob(delete(&m2)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    tag_index.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_metadata_is_invalid_argument_and_listings_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c) = serve(dir.path(), None).await;
    let huge = "a".repeat(1_000_000);
    let start = pb::WriteStart {
        media_type: huge.clone(),
        expected_size: -1,
        ..Default::default()
    };
    let err = write(&mut c, start, b"x").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("start.media_type") && err.message().len() < 200,
        "{}",
        err.message()
    );
    let start = pb::WriteStart {
        media_type: media_type::OCI_LAYER_TAR.into(),
        labels: [("k".to_string(), huge.clone())].into(),
        expected_size: -1,
        ..Default::default()
    };
    let err = write(&mut c, start, b"x").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("start.labels"), "{}", err.message());
    // blobs at the bounds: a default page, read by a client with gRPC's default 4 MiB
    // limit, is readable, and the pages reach every blob
    let labels: std::collections::HashMap<String, String> = (0..4)
        .map(|i| (format!("k{i}"), "v".repeat(4000)))
        .collect();
    for i in 0..300u32 {
        let start = pb::WriteStart {
            media_type: media_type::OCI_LAYER_TAR.into(),
            labels: labels.clone(),
            expected_size: -1,
            ..Default::default()
        };
        write(&mut c, start, &i.to_be_bytes()).await.unwrap();
    }
    let mut default_client =
        strata_proto::layer_store::layer_store_client::LayerStoreClient::new(server.channel());
    let pages = page_sizes(&mut default_client, "").await;
    assert_eq!(pages.iter().sum::<usize>(), 300);
}

/// How many blobs (of `media_type`, every one when empty) each ListBlobs page held, asking
/// for 1000 at a time until the last page.
async fn page_sizes(c: &mut Client, media_type: &str) -> Vec<usize> {
    let (mut sizes, mut token) = (Vec::new(), String::new());
    loop {
        let page = c
            .list_blobs(pb::ListBlobsRequest {
                media_type: media_type.into(),
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        sizes.push(page.blobs.len());
        if page.next_page_token.is_empty() {
            return sizes;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn malformed_cache_entries_are_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut c) = serve(dir.path(), None).await;
    let layer = put(&mut c, media_type::OCI_LAYER_TAR, &data(1_000, 4)).await;
    let other = digest(b"another layer");
    let good = pb::CacheEntry {
        key: digest(b"a step"),
        preimage: r#"{"instruction":"RUN make"}"#.into(),
        layer_digest: layer.clone(),
        config: format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{other}","{layer}"]}}}}"#)
            .into_bytes(),
        ..Default::default()
    };
    let put_entry = |entry: pb::CacheEntry| {
        let mut c = c.clone();
        async move {
            c.put_cache_entry(pb::PutCacheEntryRequest { entry: Some(entry) })
                .await
        }
    };
    put_entry(good.clone()).await.unwrap();
    // a step that changed no file has no layer: valid
    put_entry(pb::CacheEntry {
        layer_digest: String::new(),
        ..good.clone()
    })
    .await
    .unwrap();
    let cases = [
        (
            pb::CacheEntry {
                config: vec![0, 1, 2],
                ..good.clone()
            },
            "entry.config",
        ),
        (
            pb::CacheEntry {
                config: b"[1]".to_vec(),
                ..good.clone()
            },
            "entry.config",
        ),
        (
            pb::CacheEntry {
                preimage: "x".into(),
                ..good.clone()
            },
            "entry.preimage",
        ),
        (
            pb::CacheEntry {
                config: format!(r#"{{"rootfs":{{"diff_ids":["{layer}","{other}"]}}}}"#)
                    .into_bytes(),
                ..good.clone()
            },
            "entry.layer_digest",
        ),
    ];
    for (entry, field) in cases {
        let err = put_entry(entry).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(field), "{}", err.message());
    }
}

/// A tag index that accepts a connection and never answers; the receiver resolves once a
/// client has written to it (a call is waiting on it).
async fn hung_tag_index() -> (
    strata_server::ListenAddr,
    tokio::sync::oneshot::Receiver<()>,
) {
    use tokio::io::AsyncReadExt;
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hang.local_addr().unwrap();
    let (reached, reached_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = hang.accept().await.unwrap();
        let mut b = [0u8; 1];
        let _ = s.read(&mut b).await;
        let _ = reached.send(());
        std::future::pending::<()>().await;
        drop(s);
    });
    (strata_server::ListenAddr::Tcp(addr), reached_rx)
}

#[tokio::test]
async fn a_call_past_the_request_timeout_is_deadline_exceeded() {
    let (tag_index, _reached) = hung_tag_index().await;
    let dir = tempfile::tempdir().unwrap();
    let options = ServeOptions {
        request_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let (_server, mut c) = crate::client::serve_with(dir.path(), Some(tag_index), options).await;
    let err = c
        .delete_blob(pb::DeleteBlobRequest {
            digest: format!("sha256:{}", "0".repeat(64)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(err.message().contains("request timeout"), "{err}");
}

#[tokio::test]
async fn health_and_reflection_are_served_outside_the_concurrency_limit() {
    // a tag index that never answers: a call that asks it holds its slot
    let (tag_index, reached_rx) = hung_tag_index().await;
    let dir = tempfile::tempdir().unwrap();
    let options = ServeOptions {
        concurrency_limit: 1,
        ..ServeOptions::default()
    };
    let (server, mut c) = crate::client::serve_with(dir.path(), Some(tag_index), options).await;
    let stuck = tokio::spawn(async move {
        c.delete_blob(pb::DeleteBlobRequest {
            digest: format!("sha256:{}", "0".repeat(64)),
        })
        .await
    });
    // the deletion is in its handler, waiting on the tag index, and holds the only slot
    tokio::time::timeout(Duration::from_secs(10), reached_rx)
        .await
        .expect("the deletion never asked the tag index")
        .unwrap();
    // a probe still answers at once
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel());
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        health.check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("the health check waited behind the stuck call")
    .unwrap()
    .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    stuck.abort();
}

#[tokio::test]
async fn reads_and_pages_fit_the_servers_message_limit() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServeOptions {
        max_message_bytes: 4096,
        ..ServeOptions::default()
    };
    let (_server, mut c) = crate::client::serve_with(dir.path(), None, options).await;
    // a blob sent in pieces that fit the limit is read back in pieces that fit it too
    let blob = data(10_000, 3);
    let (tx, call) = streaming_write(&c, announce(&blob));
    for piece in blob.chunks(3000) {
        tx.send(pb::WriteBlobRequest {
            part: Some(Part::Data(piece.to_vec().into())),
        })
        .await
        .unwrap();
    }
    drop(tx);
    let out = call.await.unwrap().unwrap();
    let mut stream = c
        .read_blob(pb::ReadBlobRequest {
            digest: out.digest.clone(),
            offset: 0,
            length: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut back = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        assert!(m.data.len() < 4096, "a message of {} bytes", m.data.len());
        back.extend_from_slice(&m.data);
    }
    assert_eq!(back, blob);
    // labelled records fill pages that fit, page after page
    for i in 0..40u32 {
        let (tx, call) = streaming_write(
            &c,
            pb::WriteStart {
                labels: [("note".to_string(), "x".repeat(200) + &i.to_string())].into(),
                ..unannounced("application/vnd.test")
            },
        );
        tx.send(pb::WriteBlobRequest {
            part: Some(Part::Data(i.to_be_bytes().to_vec().into())),
        })
        .await
        .unwrap();
        drop(tx);
        call.await.unwrap().unwrap();
    }
    let pages = page_sizes(&mut c, "application/vnd.test").await;
    assert_eq!(pages.iter().sum::<usize>(), 40);
    assert!(
        pages.len() > 1,
        "one page of 40 labelled records cannot fit 4096 bytes"
    );
}

/// A layer store whose drain may last two minutes, and a health client of it.
async fn long_draining_store(
    dir: &std::path::Path,
) -> (
    InProcess,
    tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
) {
    let options = ServeOptions {
        drain_timeout: Duration::from_secs(120),
        ..ServeOptions::default()
    };
    let (server, _) = crate::client::serve_with(dir, None, options).await;
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel());
    (server, health)
}

/// Shuts `server` down and returns the statuses `watch` was sent until it ended, insisting
/// that it ends and the server stops well within the two-minute drain.
async fn watch_through_shutdown(
    server: InProcess,
    mut watch: tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> Vec<i32> {
    let stopped = tokio::spawn(server.shutdown());
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        let mut seen = Vec::new();
        while let Ok(Some(m)) = watch.message().await {
            seen.push(m.status);
        }
        seen
    })
    .await
    .expect("the watch stayed open through the drain");
    tokio::time::timeout(Duration::from_secs(60), stopped)
        .await
        .expect("the open watch held the drain")
        .unwrap()
        .unwrap();
    seen
}

#[tokio::test]
async fn an_open_health_watch_sees_not_serving_and_does_not_hold_the_drain() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let dir = tempfile::tempdir().unwrap();
    let (server, mut health) = long_draining_store(dir.path()).await;
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    let seen = watch_through_shutdown(server, watch).await;
    assert_eq!(
        seen.last().copied(),
        Some(ServingStatus::NotServing as i32),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_health_watch_of_an_unknown_service_is_told_service_unknown_until_shutdown() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let dir = tempfile::tempdir().unwrap();
    let (server, mut health) = long_draining_store(dir.path()).await;
    let unknown = || tonic_health::pb::HealthCheckRequest {
        service: "no.such.v1.Service".into(),
    };
    // the health-checking protocol: Check fails NOT_FOUND, Watch answers SERVICE_UNKNOWN on a
    // stream that stays open (tonic-health failed the Watch with NOT_FOUND)
    let check = health.check(unknown()).await.unwrap_err();
    assert_eq!(check.code(), tonic::Code::NotFound, "{check:?}");
    let mut watch = health.watch(unknown()).await.unwrap().into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::ServiceUnknown as i32
    );
    // the stream ends when the server begins to stop, and does not hold its drain
    let rest = watch_through_shutdown(server, watch).await;
    assert!(rest.is_empty(), "{rest:?}");
}

/// An error quotes a caller's input clipped: a digest of a megabyte came back whole in the
/// grpc-message header, past what clients with header limits accept.
#[tokio::test]
async fn an_error_quotes_a_huge_input_clipped() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut c) = serve(dir.path(), None).await;
    let huge = format!("sha256:{}", "x".repeat(1 << 20));
    let err = stat(&mut c, &huge).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().len() < 1024 && err.message().contains("more bytes"),
        "{} bytes: {}…",
        err.message().len(),
        &err.message()[..200.min(err.message().len())]
    );
}
