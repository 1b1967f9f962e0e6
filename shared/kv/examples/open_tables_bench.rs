//! What opening a database costs when it holds many table files: the layer store bulk-loads
//! each large blob into table files of its own, and every embedded CLI command opens it.
//! Builds a database of N one-key bulk loads (one table file each), then opens and closes it
//! ROUNDS times; prints the median open, the median close and the descriptors held open.
//!
//!   cargo build --workspace --example open_tables_bench
//!   $CARGO_TARGET_DIR/debug/examples/open_tables_bench [TABLES] [ROUNDS]   (BENCH_DIR, default /dev/shm)
use std::time::{Duration, Instant};

use strata_kv::{KvStore, RocksStore, Space};

const SPACES: &[Space] = &[Space::small("records"), Space::large("content")];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
        .max(1)
}

fn main() {
    let tables = arg(1, 1500);
    let rounds = arg(2, 11);
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let path = dir.path().join("db");
    {
        let db = RocksStore::open(&path, SPACES).expect("open");
        for i in 0..tables {
            let mut load = db.bulk(SPACES[1]).expect("bulk");
            load.put(format!("blob-{i:08}").as_bytes(), &[7u8; 64 << 10])
                .expect("put");
            load.finish().expect("finish");
        }
    }
    let (mut open, mut close) = (Vec::new(), Vec::new());
    let mut fds = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let db = RocksStore::open(&path, SPACES).expect("open");
        open.push(t.elapsed());
        fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        let t = Instant::now();
        drop(db);
        close.push(t.elapsed());
    }
    println!(
        "{tables} tables: open {:.2} ms, close {:.2} ms (medians of {rounds}), {fds} descriptors open",
        median(open).as_secs_f64() * 1e3,
        median(close).as_secs_f64() * 1e3,
    );
}
