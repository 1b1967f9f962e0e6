//! The one crate that links RocksDB.
//!
//! Storage logic in strata is written against [`KvStore`], an ordered key-value store with
//! named key spaces (RocksDB column families) and atomic batches. [`RocksStore`] is the real
//! implementation; [`MemoryStore`] is its in-memory twin for fast tests. The [`conformance`]
//! suite runs against both so they cannot drift apart.

use bytes::Bytes;

mod memory;
mod rocks;

pub mod conformance;

pub use memory::MemoryStore;
pub use rocks::{Compression, RocksOptions, RocksStore};

/// A sorted run of new keys loaded into a space at once, past the memtables and the log
/// (RocksDB: an `SstFileWriter` table file, then `IngestExternalFile`). For bulk content:
/// nothing is held in memory beyond the table block being built, and every byte is written
/// once. Keys must be put in strictly ascending order and must not exist in the space yet.
/// Nothing is visible until [`BulkLoad::finish`] returns; dropping an unfinished load throws
/// its keys away.
pub trait BulkLoad: Send {
    /// Adds the next key (greater than every key put before).
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Makes every key put so far durable and visible, atomically (nothing put: nothing to
    /// do).
    fn finish(self: Box<Self>) -> Result<()>;
}

/// A key space: a RocksDB column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Space {
    /// Its name.
    pub name: &'static str,
    /// True for spaces that hold large values (blob content): RocksDB keeps those in blob
    /// files (BlobDB) with compression, out of the LSM tree, and reads them without
    /// re-checking its own checksums (RocksDB's crc32c is the portable one unless the build
    /// targets SSE4.2; callers keep their own checksum — the layer store does).
    pub large_values: bool,
}

impl Space {
    /// A space for small records.
    pub const fn small(name: &'static str) -> Self {
        Self {
            name,
            large_values: false,
        }
    }

    /// A space for large values.
    pub const fn large(name: &'static str) -> Self {
        Self {
            name,
            large_values: true,
        }
    }
}

/// Whether a write must reach the disk before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the write-ahead log before returning: survives power loss.
    Sync,
    /// Return once the write is in the log (survives a process crash, not power loss).
    Buffered,
    /// Not written to the log at all: for bulk data written once. Lost in a crash unless a
    /// later [`KvStore::flush`] of its space completed; a crash keeps the atomicity of each
    /// batch but not the order against logged writes.
    Unlogged,
}

/// An atomic group of writes: all become visible together, or none.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Put(Space, Vec<u8>, Bytes),
    Delete(Space, Vec<u8>),
    DeleteRange(Space, Vec<u8>, Vec<u8>),
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, space: Space, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops
            .push(Op::Put(space, key.into(), Bytes::from(value.into())));
    }

    /// Adds a put of a value that is shared with other readers (no copy until the store
    /// takes it).
    pub fn put_shared(&mut self, space: Space, key: impl Into<Vec<u8>>, value: Bytes) {
        self.ops.push(Op::Put(space, key.into(), value));
    }

    /// Adds a delete.
    pub fn delete(&mut self, space: Space, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(space, key.into()));
    }

    /// Adds a delete of every key `k` with `from <= k < to` (RocksDB `DeleteRange`: one
    /// tombstone, however many keys it covers).
    pub fn delete_range(&mut self, space: Space, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.ops
            .push(Op::DeleteRange(space, from.into(), to.into()));
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Errors of the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// Another process holds the database.
    #[error("the data directory {path} is in use by another strata process (RocksDB lock held)")]
    Locked {
        /// The database path.
        path: String,
    },
    /// The disk is full.
    #[error("no space left on device while writing to {path}")]
    NoSpace {
        /// The database path.
        path: String,
    },
    /// A space that was not declared at open.
    #[error("unknown key space {0:?}")]
    UnknownSpace(&'static str),
    /// A bulk load's keys out of order.
    #[error("bulk load keys out of order: {0}")]
    BulkOrder(String),
    /// Anything else RocksDB reports.
    #[error("storage error: {0}")]
    Backend(String),
}

/// The result type of this crate.
pub type Result<T, E = KvError> = std::result::Result<T, E>;

/// An ordered key-value store with named spaces and atomic batches.
pub trait KvStore: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Applies a batch atomically.
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()>;

    /// Returns up to `limit` entries whose keys start with `prefix` and are `>= start`
    /// (`start` empty: from the first key with the prefix), in key order.
    fn scan(&self, space: Space, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<Entry>>;

    /// Returns up to `limit` entries whose keys start with `prefix` and are `< before`
    /// (`before` empty: from the last key with the prefix), newest (highest key) first.
    fn scan_rev(
        &self,
        space: Space,
        prefix: &[u8],
        before: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>>;

    /// Makes every earlier write to `space` durable, [`Durability::Unlogged`] ones included
    /// (RocksDB: flushes the space's memtables and waits).
    fn flush(&self, space: Space) -> Result<()>;

    /// Starts a [`BulkLoad`] into `space`.
    fn bulk(&self, space: Space) -> Result<Box<dyn BulkLoad>>;

    /// Frees at once the disk of stored files that hold only keys `k` with `from <= k < to`,
    /// keys the caller has already deleted (RocksDB `DeleteFilesInRange`: table files wholly
    /// inside the range, below level 0 — a bulk load's file, typically). Without it their
    /// space comes back only when a compaction happens to reach them.
    fn drop_files_in_range(&self, space: Space, from: &[u8], to: &[u8]) -> Result<()>;

    /// Puts one key.
    fn put(&self, space: Space, key: &[u8], value: &[u8], durability: Durability) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(space, key, value);
        self.write(b, durability)
    }

    /// Deletes one key.
    fn delete(&self, space: Space, key: &[u8], durability: Durability) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(space, key);
        self.write(b, durability)
    }
}

/// Checks that a bulk load's next key follows its previous one.
fn check_bulk_order(previous: Option<&[u8]>, key: &[u8]) -> Result<()> {
    match previous {
        Some(p) if p >= key => Err(KvError::BulkOrder(format!("{key:02x?} put after {p:02x?}"))),
        _ => Ok(()),
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
