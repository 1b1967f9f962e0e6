//! The layer store's logic, written against [`strata_kv::KvStore`] so it runs on RocksDB in
//! production and on the in-memory twin in tests.
//!
//! # Layout
//!
//! | space | key | value |
//! |---|---|---|
//! | `blobs` | digest (32 raw bytes) | [`record::BlobRecord`]: size, media type, labels, created, chunk group |
//! | `uploads` | upload id | [`record::SessionRecord`]: offset, expectations, chunk group |
//! | `groups` | chunk group (16 bytes) | owner: `u:<upload id>` or `b:<digest hex>` |
//! | `chunks` (large values) | group ‖ index (u32 BE) | up to 1 MiB of content ‖ crc32c |
//! | `cache`, `cache-parents` | cache key / parent ‖ key | [`record::CacheRecord`] / empty |
//! | `leases` | lease id | [`record::LeaseRecord`] |
//!
//! # Why chunks are keyed by upload, not by their own hash
//!
//! Every byte of a write is already hashed once, for the blob's sha256 — that hash is the
//! bottleneck the store is measured against. Keying chunks by their own sha256 would hash every
//! byte twice and halve write throughput, to deduplicate 1 MiB-aligned runs that identical
//! blobs (the case that matters) already share through their blob digest. So a write puts its
//! chunks under a fresh random *group*; the commit turns the group's owner from the upload into
//! the blob in the same synced batch that creates the blob record — no copy on commit. A write
//! of a blob that already exists deletes its own group instead, so there is always one copy.
//! Each chunk carries a crc32c over its key and bytes, checked on every read: a flipped byte or
//! a chunk swapped in from elsewhere is reported, at a cost far below sha256 (which VerifyBlobs
//! still recomputes end to end).
//!
//! Every change is one atomic batch (chunk + session progress; tail chunk + group owner + blob
//! record + session removal; record + chunks + group removal), so after any crash each group
//! has a live owner. The orphan sweep in GC checks exactly that invariant (not at open: it
//! reads every group, and every embedded CLI command opens the store).

mod blobs;
mod cache;
mod chunk;
mod gc;
mod lease;
pub mod metadata;
pub mod record;
mod references;
mod usage;
mod verify;
mod write;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use strata_kv::{KvStore, Space};
use strata_types::Digest;
use tracing::{info, warn};

pub use blobs::{BlobInfo, BlobReader, LIST_PAGE_BYTES, ListFilter, ListPage};
pub use cache::{CacheEntry, CachePage};
pub use gc::{GcGuard, GcReport, GcRequest, Holder};
pub use lease::Lease;
pub use usage::{KindUsage, UsageReport};
pub use verify::{CorruptBlob, VerifyReport};
pub use write::{Feed, UploadStatus, WriteOutcome, WriteStart};

use crate::error::{LayerStoreError, Result};

/// Blob records.
pub const BLOBS: Space = Space::small("blobs");
/// Upload sessions.
pub const UPLOADS: Space = Space::small("uploads");
/// Chunk groups and their owners.
pub const GROUPS: Space = Space::small("groups");
/// Content chunks.
pub const CHUNKS: Space = Space::large("chunks");
/// Build-cache entries.
pub const CACHE: Space = Space::small("cache");
/// Build-cache entries by parent key.
pub const CACHE_PARENTS: Space = Space::small("cache-parents");
/// Leases.
pub const LEASES: Space = Space::small("leases");

/// Every space the store uses; open the [`KvStore`] with these.
pub const SPACES: &[Space] = &[BLOBS, UPLOADS, GROUPS, CHUNKS, CACHE, CACHE_PARENTS, LEASES];

/// The size of a stored chunk and of a ReadBlob message.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Tunables of the store.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bytes per chunk (tests use small chunks to exercise multi-chunk paths cheaply).
    pub chunk_size: usize,
    /// An upload session untouched this long is swept.
    pub upload_ttl: Duration,
    /// Bytes of a session written through the memtables before the rest goes to bulk loads
    /// (see [`BULK_FROM`]).
    pub bulk_from: u64,
    /// Every lease belongs to a process that has ended when the store opens (its only
    /// clients share its process): all of them go at open, not only the expired ones.
    pub leases_end_with_process: bool,
}

/// The default [`Settings::bulk_from`]: every full chunk goes to a bulk load, a table file
/// of the session's own ingested at the next checkpoint or the commit, so a blob's content
/// never sits in a memtable waiting for a flush (which a commit had to wait for anyway, and
/// which took a large build's memtables to ~29 MB). A blob smaller than a chunk has no full
/// chunk: its bytes go in the commit's logged batch, as before. Tests set a higher value to
/// cross from the memtable path to bulk loads within one session.
pub const BULK_FROM: u64 = 0;

impl Default for Settings {
    fn default() -> Self {
        Self {
            chunk_size: CHUNK_SIZE,
            upload_ttl: Duration::from_secs(24 * 3600),
            bulk_from: BULK_FROM,
            leases_end_with_process: false,
        }
    }
}

const STRIPES: usize = 64;

/// The layer store.
pub struct Store {
    kv: Arc<dyn KvStore>,
    settings: Settings,
    /// Upload sessions this process knows, with their running hash state.
    live: Mutex<HashMap<String, write::LiveSession>>,
    /// Commits, deletes and GC decisions of one digest are serialised by its stripe.
    stripes: Vec<Mutex<()>>,
    /// Held shared by every batch that changes a group's owner, exclusively by the orphan
    /// sweep while it checks and removes one group.
    groups: RwLock<()>,
    /// While a GC runs: digests committed or confirmed since it started (kept whatever the
    /// mark phase found).
    protect: Mutex<Option<HashSet<Digest>>>,
    /// One GC at a time.
    gc_running: Arc<tokio::sync::Mutex<()>>,
    /// Read-modify-write of leases and cache entries.
    records: Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Store {
    /// Opens the store over `kv` (opened with [`SPACES`]) and sweeps what a crash left:
    /// upload sessions nobody can resume or that are stale, chunk groups without a live
    /// owner, expired leases.
    pub fn open(kv: Arc<dyn KvStore>, settings: Settings) -> Result<Arc<Self>> {
        assert!(settings.chunk_size > 0, "chunk size must be positive");
        let store = Arc::new(Self {
            kv,
            settings,
            live: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            groups: RwLock::new(()),
            protect: Mutex::new(None),
            gc_running: Arc::new(tokio::sync::Mutex::new(())),
            records: Mutex::new(()),
        });
        match store.sweep_at_start() {
            Ok(()) => {}
            // a full disk must not keep the store from starting to serve reads: GC sweeps later
            Err(LayerStoreError::Storage(e @ strata_kv::KvError::NoSpace { .. })) => {
                warn!(error = %e, "disk full: the sweep of what a crash left is postponed to the next GC");
            }
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    /// Sessions nobody can resume and expired leases: O(uploads + leases). The orphan-group
    /// sweep is not run here but by GC: it reads every group (O(blobs): ~10 µs a blob, 50 ms
    /// at 5,000, measured by `examples/open_sweep_bench.rs`), which every embedded CLI
    /// command would pay, and what it looks for is a state no crash leaves (module docs).
    fn sweep_at_start(&self) -> Result<()> {
        let swept = self.sweep_uploads(true, false)?;
        let leases = self.sweep_leases(self.settings.leases_end_with_process)?;
        if swept + leases > 0 {
            info!(uploads = swept, leases, "swept at start");
        }
        Ok(())
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn stripe(&self, digest: &Digest) -> MutexGuard<'_, ()> {
        lock(&self.stripes[digest.as_bytes()[0] as usize % STRIPES])
    }

    fn groups_shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.groups.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `digest` as committed or confirmed while a GC runs, so the GC keeps it.
    /// Call with the digest's stripe held.
    fn protect(&self, digest: Digest) {
        if let Some(set) = lock(&self.protect).as_mut() {
            set.insert(digest);
        }
    }

    /// Removes chunk groups whose owner does not exist (or no longer names them). Returns
    /// how many (in a dry run: how many would go).
    fn sweep_orphan_groups(&self, dry_run: bool) -> Result<u64> {
        let mut swept = 0;
        let mut start = Vec::new();
        loop {
            let page = self.kv.scan(GROUPS, b"", &start, 512)?;
            let Some((last, _)) = page.last() else { break };
            start = next_key(last);
            for (group, _) in page {
                // lock order everywhere: live sessions, then groups
                let live = lock(&self.live);
                let _exclusive = self.groups.write().unwrap_or_else(|p| p.into_inner());
                // re-read under the lock: a commit may have moved the group meanwhile
                let Some(owner) = self.kv.get(GROUPS, &group)? else {
                    continue;
                };
                if self.group_owner_is_live(&live, &group, &owner)? {
                    continue;
                }
                swept += 1;
                warn!(group = %hex::encode(&group), owner = %String::from_utf8_lossy(&owner), dry_run, "orphaned chunk group");
                if !dry_run {
                    let mut batch = strata_kv::WriteBatch::new();
                    chunk::delete_group(&mut batch, &group, None);
                    batch.delete(GROUPS, group.clone());
                    self.kv.write(batch, strata_kv::Durability::Buffered)?;
                    chunk::reclaim_group(self.kv.as_ref(), &group);
                }
            }
        }
        Ok(swept)
    }

    fn group_owner_is_live(
        &self,
        live: &HashMap<String, write::LiveSession>,
        group: &[u8],
        owner: &[u8],
    ) -> Result<bool> {
        let owner = String::from_utf8_lossy(owner);
        if let Some(id) = owner.strip_prefix("u:") {
            if let Some(live) = live.get(id)
                && live.record.group == hex::encode(group)
            {
                return Ok(true);
            }
            return Ok(self
                .load_session(id)?
                .is_some_and(|s| s.group == hex::encode(group)));
        }
        if let Some(hex_digest) = owner.strip_prefix("b:")
            && let Ok(digest) = Digest::parse(&format!("sha256:{hex_digest}"))
        {
            return Ok(self
                .load_blob(&digest)?
                .is_some_and(|r| r.group == hex::encode(group)));
        }
        Ok(false)
    }
}

/// Locks a mutex, recovering from poisoning (the data behind these locks stays consistent:
/// every critical section writes RocksDB atomically or not at all).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The smallest key after `key`.
fn next_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// 16 random bytes as 32 hex characters.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // getrandom only fails without an entropy source, which Linux always has
    getrandom::fill(&mut bytes).expect("the OS random number generator");
    hex::encode(bytes)
}

/// Parses a digest field of a request.
pub fn parse_digest(field: &str, value: &str) -> Result<Digest> {
    Digest::parse(value).map_err(|e| LayerStoreError::digest(field, e))
}
