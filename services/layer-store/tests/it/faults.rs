//! Faults: SIGKILL of the real binary mid-write, a full disk, a flipped byte on disk.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use strata_kv::{Durability, KvStore, RocksStore};
use strata_layer_store::store::{self, CHUNKS};
use strata_proto::layer_store::{self as pb, layer_store_client::LayerStoreClient};
use strata_test_support::ServiceProcess;
use strata_types::media_type;
use tonic::Code;

use crate::client::{
    Client, announce, data, digest, messages, read, serve, stat, unannounced, write,
};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_strata-layer-store"))
}

/// A small deterministic generator (the test must be reproducible).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

async fn client_of(proc: &ServiceProcess) -> Client {
    LayerStoreClient::new(strata_server::client::lazy_channel(&proc.addr).unwrap())
}

/// Every blob the store lists is complete and verified; every acknowledged one is there.
async fn check_consistent(c: &mut Client, acked: &[(String, i64)], round: usize) {
    for (d, size) in acked {
        let info = stat(c, d)
            .await
            .unwrap_or_else(|e| panic!("round {round}: acknowledged blob {d} lost: {e:?}"));
        assert_eq!(info.size, *size, "round {round}: {d}");
    }
    let v = c
        .verify_blobs(pb::VerifyBlobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        v.corrupt.is_empty(),
        "round {round}: corrupt after restart: {:?}",
        v.corrupt
    );
    assert!(v.checked as usize >= acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_during_writes_loses_no_acknowledged_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut rng = Lcg(0x5eed);
    let started = Instant::now();
    const ROUNDS: usize = 15;
    for round in 0..ROUNDS {
        let proc = ServiceProcess::spawn_with_root(bin(), &[], &root).await;
        let mut c = client_of(&proc).await;
        let before: Vec<_> = acked.lock().unwrap().clone();
        check_consistent(&mut c, &before, round).await;

        // four writers, blobs of 0 to 2.5 MiB, some announced, some resumable
        let target = before.len() + rng.next(6) as usize;
        let mut writers = Vec::new();
        for w in 0..4u64 {
            let (mut c, acked) = (c.clone(), acked.clone());
            let seed = (round as u64) << 16 | w << 8;
            writers.push(tokio::spawn(async move {
                let mut rng = Lcg(seed);
                for i in 0u64.. {
                    let bytes = data(rng.next(5 << 19) as usize, seed + i);
                    let mut start = if i % 2 == 0 {
                        announce(&bytes)
                    } else {
                        unannounced(media_type::OCI_LAYER_TAR)
                    };
                    if i % 3 == 0 {
                        start.client_upload_id = format!("r{seed}-{i}");
                    }
                    let piece = 1 + rng.next(1 << 20) as usize;
                    match c
                        .write_blob(tokio_stream::iter(messages(start, &bytes, piece)))
                        .await
                    {
                        Ok(r) => {
                            let r = r.into_inner();
                            assert_eq!(r.digest, digest(&bytes));
                            acked.lock().unwrap().push((r.digest, r.size));
                        }
                        Err(_) => return, // the server died
                    }
                }
            }));
        }
        // kill once the round's target of acknowledged writes is reached: the writers are
        // mid-stream at that moment, at points that differ from round to round
        let deadline = Instant::now() + Duration::from_secs(10);
        while acked.lock().unwrap().len() < target {
            assert!(Instant::now() < deadline, "round {round}: writes stalled");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = proc.kill();
        for w in writers {
            w.await.unwrap();
        }
    }
    let proc = ServiceProcess::spawn_with_root(bin(), &[], &root).await;
    let mut c = client_of(&proc).await;
    let all: Vec<_> = acked.lock().unwrap().clone();
    check_consistent(&mut c, &all, ROUNDS).await;
    assert!(
        all.len() >= ROUNDS,
        "the writers made progress: {}",
        all.len()
    );
    // every blob listed is complete: read them all back and hash them
    let mut token = String::new();
    loop {
        let page = c
            .list_blobs(pb::ListBlobsRequest {
                page_token: token.clone(),
                page_size: 50,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for b in page.blobs {
            let bytes = read(&mut c, &b.digest, 0, 0).await.unwrap();
            assert_eq!(digest(&bytes), b.digest);
            assert_eq!(bytes.len() as i64, b.size);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    eprintln!(
        "{ROUNDS} kills, {} acknowledged writes, {:?}",
        all.len(),
        started.elapsed()
    );
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        use nix::mount::{MsFlags, mount};
        let dir = tempfile::tempdir().unwrap();
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("size={size}").as_str()),
        )
        .unwrap_or_else(|e| {
            panic!("mounting a tmpfs for the disk-full test needs root (CAP_SYS_ADMIN): {e}")
        });
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn a_full_disk_is_a_clean_error_and_leaves_the_store_consistent() {
    let fs = Tmpfs::mount("96m");
    let root = fs.0.path().join("root");
    let (server, mut c) = serve(&root, None).await;
    let small: Vec<Vec<u8>> = (0..5).map(|i| data(100_000, 40 + i)).collect();
    for s in &small {
        write(&mut c, announce(s), s).await.unwrap();
    }
    // far more than the disk holds
    let huge = data(200 << 20, 9);
    let err = write(&mut c, announce(&huge), &huge).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("no space left"), "{}", err.message());
    assert_eq!(
        stat(&mut c, &digest(&huge)).await.unwrap_err().code(),
        Code::NotFound
    );
    for s in &small {
        assert_eq!(
            read(&mut c, &digest(s), 0, 0).await.unwrap(),
            *s,
            "earlier blobs still read"
        );
    }
    // more writes while full: a clean error or success, never a partial blob
    let more = data(3 << 20, 10);
    match write(&mut c, unannounced("m"), &more).await {
        Ok(r) => assert_eq!(r.digest, digest(&more)),
        Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}"),
    }
    server.shutdown().await.unwrap();

    // after a restart: consistent, and the space of the failed write is reclaimable
    let (_server, mut c) = serve(&root, None).await;
    let v = c
        .verify_blobs(pb::VerifyBlobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(v.corrupt.is_empty(), "{:?}", v.corrupt);
    for s in &small {
        assert_eq!(read(&mut c, &digest(s), 0, 0).await.unwrap(), *s);
    }
    assert_eq!(
        stat(&mut c, &digest(&huge)).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn a_flipped_byte_on_disk_is_caught_by_read_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut c) = serve(dir.path(), None).await;
    let bytes = data(3 << 20, 11);
    let d = write(&mut c, announce(&bytes), &bytes)
        .await
        .unwrap()
        .digest;
    let intact = write(&mut c, announce(b"intact"), b"intact")
        .await
        .unwrap()
        .digest;
    server.shutdown().await.unwrap();

    {
        let kv = RocksStore::open(&dir.path().join("layer-store"), store::SPACES).unwrap();
        let chunks = kv.scan(CHUNKS, b"", b"", usize::MAX).unwrap();
        let (key, mut value) = chunks
            .into_iter()
            .find(|(_, v)| v.len() >= 1 << 20 && v[..1024] == bytes[2 << 20..(2 << 20) + 1024])
            .expect("the third chunk");
        value[4242] ^= 0x20;
        kv.put(CHUNKS, &key, &value, Durability::Sync).unwrap();
    }

    let (_server, mut c) = serve(dir.path(), None).await;
    let err = read(&mut c, &d, 0, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(err.message().contains("chunk 2"), "{}", err.message());
    assert_eq!(
        read(&mut c, &d, 0, 2 << 20).await.unwrap(),
        bytes[..2 << 20],
        "intact chunks still read"
    );
    let v = c
        .verify_blobs(pb::VerifyBlobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.checked, 2);
    assert_eq!(v.corrupt.len(), 1);
    assert_eq!(v.corrupt[0].digest, d);
    assert!(v.corrupt[0].reason.contains("chunk 2"), "{:?}", v.corrupt);
    assert_eq!(read(&mut c, &intact, 0, 0).await.unwrap(), b"intact");
}
