//! What opening a database costs an embedded CLI command (each opens the layer store's and
//! the tag index's): a fresh database with the layer store's spaces, twelve short "commands"
//! that each write a record to every space and flush (the tables such commands leave), then
//! N opens and closes; median wall time of an open, a point get in every space, and a close.
//!
//!   cargo build --workspace --example open_bench
//!   $CARGO_TARGET_DIR/debug/examples/open_bench [ROUNDS]     (BENCH_DIR, default /dev/shm)
//!
//! (`cargo run -p strata-kv` would resolve features for this crate alone and recompile
//! RocksDB; building with `--workspace` reuses the workspace's build.)
use std::time::{Duration, Instant};

use strata_kv::{Durability, KvStore, RocksStore, Space};

const SPACES: &[Space] = &[
    Space::small("blobs"),
    Space::small("uploads"),
    Space::small("groups"),
    Space::large("chunks"),
    Space::small("cache"),
    Space::small("cache-parents"),
    Space::small("leases"),
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50)
        .max(1);
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let path = dir.path().join("db");
    for command in 0..12u32 {
        let db = RocksStore::open(&path, SPACES).expect("open");
        for s in SPACES {
            db.put(
                *s,
                format!("key-{command}").as_bytes(),
                &[7u8; 200],
                Durability::Buffered,
            )
            .expect("put");
        }
        for s in SPACES {
            db.flush(*s).expect("flush");
        }
    }
    let (mut open, mut get, mut close) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let db = RocksStore::open(&path, SPACES).expect("open");
        open.push(t.elapsed());
        let t = Instant::now();
        for s in SPACES {
            assert!(db.get(*s, b"key-3").expect("get").is_some());
        }
        get.push(t.elapsed());
        let t = Instant::now();
        drop(db);
        close.push(t.elapsed());
    }
    let tables = std::fs::read_dir(&path)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".sst"))
                .count()
        })
        .unwrap_or(0);
    println!(
        "open {:?}  get in every space {:?}  close {:?}  (median of {rounds}; {tables} table files)",
        median(open),
        median(get),
        median(close)
    );
}
