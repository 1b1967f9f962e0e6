//! What opening the layer store costs once it holds many blobs: every embedded CLI command
//! opens it, so anything at open that is O(blobs) is paid per command.
//!
//!   cargo build --workspace --example open_sweep_bench
//!   $CARGO_TARGET_DIR/debug/examples/open_sweep_bench [BLOBS] [ROUNDS]   (BENCH_DIR, default /dev/shm)
//!
//! Writes BLOBS small blobs (default 5,000) into a fresh RocksDB store, then opens and drops
//! the store ROUNDS times (default 21) and prints the median wall time of an open: the
//! database's own open, and the store's open (its sweep of what a crash may have left) on top.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use strata_kv::{KvStore, RocksStore};
use strata_layer_store::store::{Feed, SPACES, Settings, Store, WriteStart};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (blobs, rounds) = (arg(1, 5_000), arg(2, 21).max(1));
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let path = dir.path().join("db");
    let settings = || Settings {
        chunk_size: 1 << 20,
        upload_ttl: Duration::from_secs(3600),
        ..Settings::default()
    };
    {
        let kv: Arc<dyn KvStore> = Arc::new(RocksStore::open(&path, SPACES).expect("open"));
        let store = Store::open(kv, settings()).expect("store");
        for i in 0..blobs {
            let data = format!("blob number {i}").repeat(20).into_bytes();
            store
                .ingest(
                    WriteStart {
                        media_type: "application/octet-stream".into(),
                        ..WriteStart::default()
                    },
                    [Feed::Data(data.into()), Feed::End],
                )
                .expect("ingest");
        }
    }
    let (mut db_only, mut with_store) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let kv: Arc<dyn KvStore> = Arc::new(RocksStore::open(&path, SPACES).expect("open"));
        let opened = t.elapsed();
        let store = Store::open(kv, settings()).expect("store");
        with_store.push(t.elapsed());
        db_only.push(opened);
        drop(store);
    }
    println!(
        "{blobs} blobs: database open {:.2} ms, store open (database + sweep) {:.2} ms",
        median(db_only).as_secs_f64() * 1e3,
        median(with_store).as_secs_f64() * 1e3
    );
}
