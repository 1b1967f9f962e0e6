//! A database with more table files than the process may open at once opens and reads.
//!
//! The layer store bulk-loads each large blob into table files of its own, so its database
//! can hold thousands; RocksDB's default opened all of them at open and kept them open, and
//! a store of ~1,000 large blobs failed to open ("Too many open files") under the common
//! soft limit of 1,024. This file is its own test process: lowering the limit here touches
//! no other test.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use strata_kv::{KvStore, RocksStore, Space};

const SPACES: &[Space] = &[Space::small("records"), Space::large("content")];
const TABLES: usize = 300;
const LIMIT: u64 = 128;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn more_tables_than_the_open_file_limit_open_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = RocksStore::open(&path, SPACES).unwrap();
        for i in 0..TABLES {
            let mut load = db.bulk(SPACES[1]).unwrap();
            load.put(format!("blob-{i:04}").as_bytes(), &[i as u8; 4096])
                .unwrap();
            load.finish().unwrap();
        }
    }
    let tables = std::fs::read_dir(&path)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sst")
        })
        .count();
    assert!(tables >= TABLES, "one table file per load: {tables}");

    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, LIMIT, hard).unwrap();
    let db = RocksStore::open(&path, SPACES).expect("opens under a limit below its table count");
    for i in (0..TABLES).rev() {
        let value = db
            .get(SPACES[1], format!("blob-{i:04}").as_bytes())
            .unwrap();
        assert_eq!(value.as_deref(), Some(&[i as u8; 4096][..]), "blob {i}");
    }
    assert!(
        open_fds() < LIMIT as usize,
        "{} descriptors open",
        open_fds()
    );
}
