//! [`KvStore`] on RocksDB: batches through RocksDB's `WriteBatch`, durability through the
//! WAL's fsync.
//!
//! Layout: every small [`Space`] lives in RocksDB's default column family, its keys prefixed
//! by the space's name and a NUL byte; every large space has a column family of its own (its
//! values go to blob files). Opening a database is on the path of every embedded CLI
//! command, and RocksDB's open costs grow with the number of column families (it writes and
//! re-parses an options file describing each, and each flush makes a table per family):
//! seven families took ~6.5 ms to open where two take ~3.5 ms. A database written by the
//! older layout (one family per space) is migrated at its first open.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use rocksdb::{
    BlockBasedOptions, Cache, ChecksumType, ColumnFamilyDescriptor, DB, DBCompressionType,
    Direction, IngestExternalFileOptions, IteratorMode, Options, ReadOptions, SstFileWriter,
    WriteOptions,
};

use crate::{BulkLoad, Durability, Entry, KvError, KvStore, Op, Result, Space, WriteBatch};

/// The directory, inside the database's, where bulk loads write their table files until
/// RocksDB takes them in (emptied at every open: what is left there was never ingested).
const BULK_DIR: &str = "bulk";

/// Memory all memtables together may hold before RocksDB flushes.
const MEMTABLE_BUDGET: usize = 32 << 20;

/// A RocksDB database holding the declared [`Space`]s.
pub struct RocksStore {
    db: Arc<DB>,
    path: String,
    /// Compression of large values (bulk loads write their tables with it).
    large_compression: Compression,
    /// The declared small spaces and their key prefixes (`name` NUL).
    small: Vec<(&'static str, Vec<u8>)>,
    /// The declared large spaces, each its own column family.
    large: Vec<&'static str>,
}

/// The column family of small spaces.
const SMALL_CF: &str = rocksdb::DEFAULT_COLUMN_FAMILY_NAME;

/// Where a space's keys live: its column family and the prefix its keys carry there.
struct Target<'a> {
    cf: &'a rocksdb::ColumnFamily,
    prefix: &'a [u8],
}

impl Target<'_> {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        prefixed(self.prefix, key)
    }
}

/// Table files one database keeps open: a quarter of the process's open-file limit (the
/// layer store and the tag index share one process when embedded, beside sockets and the
/// files a build reads), between 64 and 4,096.
fn max_open_files() -> i32 {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    (soft / 4).clamp(64, 4096) as i32
}

/// `key` under a space's `prefix` in its column family.
fn prefixed(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + key.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(key);
    k
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

/// How the values of large spaces are compressed at rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// Stored as written. The default: on this class of machine LZ4 over compressible layer
    /// tars cost the flush threads about a core-second per GiB ingested (22% of a pull's CPU),
    /// which is what bounds a large write; Docker keeps unpacked layers uncompressed too.
    #[default]
    None,
    /// LZ4: fast, about half the size for typical layer tars.
    Lz4,
    /// Zstandard (level 3 by RocksDB's default): smaller, slower to write.
    Zstd,
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "lz4" => Ok(Self::Lz4),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!(
                "unknown compression {other:?}: expected none, lz4 or zstd"
            )),
        }
    }
}

impl Compression {
    fn rocksdb(self) -> DBCompressionType {
        match self {
            Self::None => DBCompressionType::None,
            Self::Lz4 => DBCompressionType::Lz4,
            Self::Zstd => DBCompressionType::Zstd,
        }
    }
}

/// Settings of a [`RocksStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RocksOptions {
    /// Compression of the values of large spaces (blob files). Small records are always
    /// LZ4-compressed: they are cheap to compress and compaction rewrites them.
    pub large_value_compression: Compression,
}

impl RocksStore {
    /// Opens (creating when missing) the database at `path` with the given spaces and
    /// default options.
    pub fn open(path: &Path, spaces: &[Space]) -> Result<Self> {
        Self::open_with(path, spaces, &RocksOptions::default())
    }

    /// Opens (creating when missing) the database at `path` with the given spaces.
    pub fn open_with(path: &Path, spaces: &[Space], options: &RocksOptions) -> Result<Self> {
        let path_s = path.display().to_string();
        // created private to its owner: it holds image content
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(path)
            .map_err(|e| {
                classify(
                    &path_s,
                    format!("cannot create the directory {path_s}: {e}"),
                )
            })?;
        // Recovery replays the WAL into memtables without flushing them, so a database whose
        // disk filled up can still open (to serve reads and deletes) with little free space.
        // No preallocation of logs and manifests: on tmpfs (where CI and build farms often
        // keep scratch roots) fallocate zeroes real pages, 4 MiB per manifest and the size of
        // a memtable per WAL, at every open; on ext4/xfs it buys little for append-only files.
        let mut db_opts = Options::default()
            .get_options_from_string("avoid_flush_during_recovery=true;allow_fallocate=false")
            .map_err(|e| classify(&path_s, e.into_string()))?;
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(4);
        #[allow(deprecated)]
        db_opts.set_max_background_flushes(2);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_max_total_wal_size(256 << 20);
        // Opening is on the path of every embedded CLI command: no statistics refresh from
        // table properties, no 16 threads to open a handful of tables, no options dump into
        // RocksDB's own LOG (warnings and errors still go there).
        db_opts.set_skip_stats_update_on_db_open(true);
        db_opts.set_max_file_opening_threads(1);
        // Table files are opened as reads need them and kept in a cache of a bounded size.
        // RocksDB's default (-1) opens every table at open and keeps it open: with a table
        // file per large blob (bulk loads) a store of 1,500 blobs took 71 ms to open, and
        // one of ~1,000 could not open at all under the common soft limit of 1,024 files.
        db_opts.set_max_open_files(max_open_files());
        db_opts.set_log_level(rocksdb::LogLevel::Warn);
        db_opts.set_stats_dump_period_sec(0);
        db_opts.set_stats_persist_period_sec(0);
        // Bound the memory of all memtables together: with BlobDB a value sits in a memtable
        // until its flush moves it to a blob file, so this is what keeps a server that ingests
        // a 1 GiB blob within a small, fixed RSS.
        db_opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
        let cache = Cache::new_lru_cache(64 << 20);
        let small_options = || {
            let mut o = Options::default();
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_bloom_filter(10.0, false);
            o.set_block_based_table_factory(&table);
            o.set_compression_type(DBCompressionType::Lz4);
            // records are small: small memtables
            o.set_write_buffer_size(8 << 20);
            o
        };
        let large_options = || {
            let mut o = small_options();
            // Values live in blob files: the LSM tree holds only small references, so
            // compaction never rewrites content and large writes stream to disk.
            o.set_enable_blob_files(true);
            o.set_min_blob_size(1024);
            o.set_blob_file_size(256 << 20);
            o.set_blob_compression_type(options.large_value_compression.rocksdb());
            o.set_enable_blob_gc(true);
            // Small memtables, four of them: one fills while others flush (two flushes run
            // at once), so a stream of large values rarely stalls on a flush, and the 32 MiB
            // budget for all memtables bounds what an ingest holds in memory.
            o.set_max_write_buffer_number(4);
            o
        };
        let small: Vec<(&'static str, Vec<u8>)> = spaces
            .iter()
            .filter(|s| !s.large_values)
            .map(|s| (s.name, [s.name.as_bytes(), b"\0"].concat()))
            .collect();
        let large: Vec<&'static str> = spaces
            .iter()
            .filter(|s| s.large_values)
            .map(|s| s.name)
            .collect();
        let descriptors = |extra: &[String]| {
            let mut cfs = vec![ColumnFamilyDescriptor::new(SMALL_CF, small_options())];
            cfs.extend(
                large
                    .iter()
                    .map(|name| ColumnFamilyDescriptor::new(*name, large_options())),
            );
            cfs.extend(
                extra
                    .iter()
                    .map(|name| ColumnFamilyDescriptor::new(name, small_options())),
            );
            cfs
        };
        let db = match DB::open_cf_descriptors(&db_opts, path, descriptors(&[])) {
            Ok(db) => db,
            // A database of the older layout, or with families this build does not know:
            // RocksDB opens a database only with all its families named.
            Err(e) if e.as_ref().contains("Column famil") && e.as_ref().contains("not opened") => {
                let existing =
                    DB::list_cf(&db_opts, path).map_err(|e| classify(&path_s, e.into_string()))?;
                let extra: Vec<String> = existing
                    .into_iter()
                    .filter(|n| n != SMALL_CF && !large.contains(&n.as_str()))
                    .collect();
                DB::open_cf_descriptors(&db_opts, path, descriptors(&extra))
                    .map_err(|e| classify(&path_s, e.into_string()))?
            }
            Err(e) => return Err(classify(&path_s, e.into_string())),
        };
        // the database is ours (its lock is held): table files of bulk loads cut short by a
        // crash were never ingested
        let bulk = path.join(BULK_DIR);
        match std::fs::remove_dir_all(&bulk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(classify(&path_s, format!("{}: {e}", bulk.display()))),
        }
        std::fs::create_dir(&bulk)
            .map_err(|e| classify(&path_s, format!("{}: {e}", bulk.display())))?;
        let mut store = Self {
            db: Arc::new(db),
            path: path_s,
            large_compression: options.large_value_compression,
            small,
            large,
        };
        store.migrate_small_families()?;
        store.retire_old_logs(path);
        Ok(store)
    }

    /// Moves the records of small spaces out of families of their own (the older layout)
    /// into the shared family, then drops those families. Copies are idempotent puts, so a
    /// migration cut short by a crash is finished by the next open.
    fn migrate_small_families(&mut self) -> Result<()> {
        for (name, prefix) in self.small.clone() {
            let Some(old) = self.db.cf_handle(name) else {
                continue;
            };
            let small = self.small_cf()?;
            let mut batch = rocksdb::WriteBatch::default();
            for item in self.db.iterator_cf(old, IteratorMode::Start) {
                let (k, v) = item.map_err(|e| self.err(e))?;
                batch.put_cf(small, [prefix.as_slice(), &k].concat(), v);
                if batch.size_in_bytes() >= 4 << 20 {
                    self.write_synced(std::mem::take(&mut batch))?;
                }
            }
            self.write_synced(batch)?;
            // at open no bulk load shares the handle yet
            let Some(db) = Arc::get_mut(&mut self.db) else {
                return Err(KvError::Backend("database shared during migration".into()));
            };
            let dropped = db.drop_cf(name);
            dropped.map_err(|e| self.err(e))?;
            tracing::info!(path = %self.path, space = name, "moved a space into the shared column family");
        }
        Ok(())
    }

    fn write_synced(&self, batch: rocksdb::WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(|e| self.err(e))
    }

    fn small_cf(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(SMALL_CF)
            .ok_or(KvError::UnknownSpace(SMALL_CF))
    }

    /// Recovery leaves its memtables unflushed (so a full disk can still open), which keeps
    /// every write-ahead log since the last flush alive: a database opened by many short
    /// commands (the CLI's embedded services) would replay a growing pile of logs at each
    /// open. Past a few, flush them into tables so RocksDB can delete them; a failure (a full
    /// disk) only leaves them for next time.
    fn retire_old_logs(&self, path: &Path) {
        const MAX_LOGS: usize = 4;
        let logs = std::fs::read_dir(path).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .count()
        });
        if logs <= MAX_LOGS {
            return;
        }
        let mut families = vec![SMALL_CF];
        families.extend(&self.large);
        for name in families {
            let Some(cf) = self.db.cf_handle(name) else {
                continue;
            };
            if let Err(e) = self.db.flush_cf(cf) {
                let e = self.err(e);
                tracing::warn!(path = %self.path, error = %e, "cannot flush at open; old logs stay");
                return;
            }
        }
        tracing::debug!(path = %self.path, logs, "flushed at open to retire old logs");
    }

    /// Where `space` lives; an undeclared space is an error.
    fn target(&self, space: Space) -> Result<Target<'_>> {
        if space.large_values {
            if self.large.contains(&space.name)
                && let Some(cf) = self.db.cf_handle(space.name)
            {
                return Ok(Target { cf, prefix: &[] });
            }
        } else if let Some((_, prefix)) = self.small.iter().find(|(n, _)| *n == space.name) {
            return Ok(Target {
                cf: self.small_cf()?,
                prefix,
            });
        }
        Err(KvError::UnknownSpace(space.name))
    }

    fn err(&self, e: rocksdb::Error) -> KvError {
        classify(&self.path, e.into_string())
    }
}

fn classify(path: &str, message: String) -> KvError {
    if message.contains("lock")
        && (message.contains("LOCK") || message.contains("Resource temporarily unavailable"))
    {
        KvError::Locked {
            path: path.to_string(),
        }
    } else if message.contains("No space left") || message.contains("ENOSPC") {
        KvError::NoSpace {
            path: path.to_string(),
        }
    } else {
        KvError::Backend(message)
    }
}

impl KvStore for RocksStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.target(space)?;
        if space.large_values {
            let mut ro = ReadOptions::default();
            ro.set_verify_checksums(false);
            // a bulk-loaded value sits in a table block of its own size: caching it would
            // evict the small blocks the cache is for
            ro.fill_cache(false);
            return self
                .db
                .get_pinned_cf_opt(t.cf, key, &ro)
                .map(|v| v.map(|v| v.to_vec()))
                .map_err(|e| self.err(e));
        }
        self.db.get_cf(t.cf, t.key(key)).map_err(|e| self.err(e))
    }

    fn flush(&self, space: Space) -> Result<()> {
        let t = self.target(space)?;
        self.db.flush_cf(t.cf).map_err(|e| self.err(e))
    }

    fn drop_files_in_range(&self, space: Space, from: &[u8], to: &[u8]) -> Result<()> {
        let t = self.target(space)?;
        if from >= to {
            return Ok(());
        }
        self.db
            .delete_file_in_range_cf(t.cf, t.key(from), t.key(to))
            .map_err(|e| self.err(e))
    }

    fn bulk(&self, space: Space) -> Result<Box<dyn BulkLoad>> {
        let t = self.target(space)?;
        let prefix = t.prefix.to_vec();
        let family = if space.large_values {
            space.name
        } else {
            SMALL_CF
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let file = Path::new(&self.path).join(BULK_DIR).join(format!(
            "{}-{}.sst",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let writer = SstFileWriter::create(bulk_options(self.large_compression));
        writer.open(&file).map_err(|e| self.err(e))?;
        Ok(Box::new(RocksBulk {
            db: self.db.clone(),
            path: self.path.clone(),
            family,
            prefix,
            file,
            writer,
            last: None,
        }))
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        let mut b = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                Op::Put(s, k, v) => {
                    let t = self.target(*s)?;
                    b.put_cf(t.cf, t.key(k), v)
                }
                Op::Delete(s, k) => {
                    let t = self.target(*s)?;
                    b.delete_cf(t.cf, t.key(k))
                }
                // RocksDB rejects an empty or inverted range; such a range covers nothing.
                Op::DeleteRange(s, from, to) if from < to => {
                    let t = self.target(*s)?;
                    b.delete_range_cf(t.cf, t.key(from), t.key(to))
                }
                Op::DeleteRange(s, ..) => {
                    self.target(*s)?;
                }
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Sync);
        wo.disable_wal(durability == Durability::Unlogged);
        self.db.write_opt(b, &wo).map_err(|e| self.err(e))
    }

    fn scan(&self, space: Space, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<Entry>> {
        let t = self.target(space)?;
        let prefix = t.key(prefix);
        let start = t.key(start);
        let from = if start > prefix {
            start
        } else {
            prefix.clone()
        };
        let mut ro = ReadOptions::default();
        if let Some(end) = crate::prefix_end(&prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let iter = self
            .db
            .iterator_cf_opt(t.cf, ro, IteratorMode::From(&from, Direction::Forward));
        self.collect(iter, &prefix, t.prefix.len(), limit)
    }

    fn scan_rev(
        &self,
        space: Space,
        prefix: &[u8],
        before: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let t = self.target(space)?;
        let prefix = t.key(prefix);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(prefix.clone());
        let upper = if before.is_empty() {
            crate::prefix_end(&prefix)
        } else {
            Some(t.key(before))
        };
        if let Some(u) = upper {
            ro.set_iterate_upper_bound(u);
        }
        let iter = self.db.iterator_cf_opt(t.cf, ro, IteratorMode::End);
        self.collect(iter, &prefix, t.prefix.len(), limit)
    }
}

/// The options of bulk loads' table files, one set per compression (an `SstFileWriter`
/// borrows its options for its whole life, and a load outlives the call that starts it).
fn bulk_options(compression: Compression) -> &'static Options {
    static SETS: [OnceLock<Options>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let cell = match compression {
        Compression::None => &SETS[0],
        Compression::Lz4 => &SETS[1],
        Compression::Zstd => &SETS[2],
    };
    cell.get_or_init(|| {
        let mut o = Options::default();
        let mut table = BlockBasedOptions::default();
        // XXH3 where RocksDB's own crc32c is the portable one (see `Space::large_values`);
        // the filter keeps a lookup of another key that falls in the file's range from
        // reading a value-sized block
        table.set_checksum_type(ChecksumType::XXH3);
        table.set_bloom_filter(10.0, false);
        o.set_block_based_table_factory(&table);
        o.set_compression_type(compression.rocksdb());
        o
    })
}

/// A bulk load writing one table file, ingested (moved into the database) at the end.
struct RocksBulk {
    db: Arc<DB>,
    path: String,
    family: &'static str,
    /// The space's key prefix in its family.
    prefix: Vec<u8>,
    /// Removed when the load is dropped: by then RocksDB has moved it in (our link is gone)
    /// or it was never ingested.
    file: PathBuf,
    writer: SstFileWriter<'static>,
    /// The last key put; `None`: nothing put yet.
    last: Option<Vec<u8>>,
}

impl RocksBulk {
    fn err(&self, e: rocksdb::Error) -> KvError {
        classify(&self.path, e.into_string())
    }
}

impl BulkLoad for RocksBulk {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        crate::check_bulk_order(self.last.as_deref(), key)?;
        self.writer
            .put(prefixed(&self.prefix, key), value)
            .map_err(|e| self.err(e))?;
        let last = self.last.get_or_insert_with(Vec::new);
        last.clear();
        last.extend_from_slice(key);
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        if self.last.is_none() {
            // RocksDB refuses a table without entries; there is nothing to load
            return Ok(());
        }
        // syncs the file before it returns
        self.writer.finish().map_err(|e| self.err(e))?;
        let cf = self
            .db
            .cf_handle(self.family)
            .ok_or(KvError::UnknownSpace(self.family))?;
        let mut io = IngestExternalFileOptions::default();
        // a link, not a copy: the file is already in the database's directory
        io.set_move_files(true);
        self.db
            .ingest_external_file_cf_opts(cf, &io, vec![&self.file])
            .map_err(|e| self.err(e))
    }
}

impl Drop for RocksBulk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

impl RocksStore {
    /// Up to `limit` entries of `iter` while their keys start with `prefix`, each key without
    /// the first `strip` bytes (its space's prefix).
    fn collect(
        &self,
        iter: rocksdb::DBIteratorWithThreadMode<'_, DB>,
        prefix: &[u8],
        strip: usize,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k[strip..].to_vec(), v.into_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many files in `dir` have names ending in `suffix`.
    fn files_ending(dir: &Path, suffix: &str) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(suffix)
            })
            .count()
    }

    #[test]
    fn rocks_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), crate::conformance::SPACES).unwrap();
        crate::conformance::run(&store);
    }

    #[test]
    fn every_compression_passes_the_conformance_suite_and_reopens_under_another() {
        let dir = tempfile::tempdir().unwrap();
        let s = Space::large("c");
        let value: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for (i, c) in ["none", "lz4", "zstd"].iter().enumerate() {
            let options = RocksOptions {
                large_value_compression: c.parse().unwrap(),
            };
            let sub = tempfile::tempdir().unwrap();
            crate::conformance::run(
                &RocksStore::open_with(sub.path(), crate::conformance::SPACES, &options).unwrap(),
            );
            // blob files written under one setting stay readable under the next
            let store = RocksStore::open_with(dir.path(), &[s], &options).unwrap();
            let key = format!("k{i}");
            store
                .put(s, key.as_bytes(), &value, Durability::Unlogged)
                .unwrap();
            store.flush(s).unwrap();
            for j in 0..=i {
                let got = store.get(s, format!("k{j}").as_bytes()).unwrap();
                assert_eq!(got.as_deref(), Some(&value[..]), "{c}: k{j}");
            }
        }
        assert!(
            "gzip"
                .parse::<Compression>()
                .unwrap_err()
                .contains("none, lz4 or zstd")
        );
    }

    #[test]
    fn reopening_many_times_does_not_pile_up_logs() {
        let dir = tempfile::tempdir().unwrap();
        let s = Space::small("a");
        for i in 0..20u32 {
            let store = RocksStore::open(dir.path(), &[s]).unwrap();
            store
                .put(s, &i.to_be_bytes(), b"v", Durability::Sync)
                .unwrap();
        }
        let logs = files_ending(dir.path(), ".log");
        assert!(logs <= 6, "{logs} write-ahead logs left");
        let store = RocksStore::open(dir.path(), &[s]).unwrap();
        for i in 0..20u32 {
            assert!(store.get(s, &i.to_be_bytes()).unwrap().is_some(), "key {i}");
        }
    }

    #[test]
    fn flushed_unlogged_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Space::large("c");
        {
            let store = RocksStore::open(dir.path(), &[s]).unwrap();
            let mut b = WriteBatch::new();
            b.put(s, "k", vec![1u8; 100_000]);
            store.write(b, Durability::Unlogged).unwrap();
            store.flush(s).unwrap();
        }
        let store = RocksStore::open(dir.path(), &[s]).unwrap();
        assert_eq!(store.get(s, b"k").unwrap().map(|v| v.len()), Some(100_000));
    }

    #[test]
    fn bulk_loads_survive_reopen_and_leftover_files_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let s = Space::large("c");
        {
            let store = RocksStore::open(dir.path(), &[s]).unwrap();
            let mut load = store.bulk(s).unwrap();
            for i in 0..3u32 {
                load.put(&i.to_be_bytes(), &vec![i as u8; 300_000]).unwrap();
            }
            load.finish().unwrap();
        }
        // what a load cut short by a crash leaves: a table file never ingested
        let bulk = dir.path().join(BULK_DIR);
        std::fs::write(bulk.join("1-0.sst"), b"half a table").unwrap();
        let store = RocksStore::open(dir.path(), &[s]).unwrap();
        assert_eq!(std::fs::read_dir(&bulk).unwrap().count(), 0);
        for i in 0..3u32 {
            assert_eq!(
                store.get(s, &i.to_be_bytes()).unwrap(),
                Some(vec![i as u8; 300_000])
            );
        }
        // finished loads leave no file behind either
        let mut load = store.bulk(s).unwrap();
        load.put(b"z", b"v").unwrap();
        load.finish().unwrap();
        assert_eq!(std::fs::read_dir(&bulk).unwrap().count(), 0);

        // once deleted, a loaded range's table file goes at once, the rest stays
        let tables = || files_ending(dir.path(), ".sst");
        let before = tables();
        let mut b = WriteBatch::new();
        b.delete_range(s, 0u32.to_be_bytes().to_vec(), 3u32.to_be_bytes().to_vec());
        store.write(b, Durability::Sync).unwrap();
        store
            .drop_files_in_range(s, &0u32.to_be_bytes(), &3u32.to_be_bytes())
            .unwrap();
        assert_eq!(tables(), before - 1, "the first load's table file");
        assert_eq!(store.get(s, &1u32.to_be_bytes()).unwrap(), None);
        assert_eq!(store.get(s, b"z").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Space::small("a");
        {
            let store = RocksStore::open(dir.path(), &[s]).unwrap();
            store.put(s, b"k", b"v", Durability::Sync).unwrap();
        }
        let store = RocksStore::open(dir.path(), &[s]).unwrap();
        assert_eq!(store.get(s, b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_database_of_the_older_layout_is_migrated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (Space::small("a"), Space::small("b"), Space::large("c"));
        {
            // one column family per space, and one this build does not know
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let db = DB::open_cf(&opts, dir.path(), ["a", "b", "c", "unknown"]).unwrap();
            for i in 0..3000u32 {
                db.put_cf(db.cf_handle("a").unwrap(), i.to_be_bytes(), b"va")
                    .unwrap();
            }
            db.put_cf(db.cf_handle("b").unwrap(), b"k", b"vb").unwrap();
            db.put_cf(db.cf_handle("c").unwrap(), b"k", vec![3u8; 5000])
                .unwrap();
            db.put_cf(db.cf_handle("unknown").unwrap(), b"k", b"x")
                .unwrap();
        }
        for _ in 0..2 {
            let store = RocksStore::open(dir.path(), &[a, b, c]).unwrap();
            let all = store.scan(a, b"", b"", usize::MAX).unwrap();
            assert_eq!(all.len(), 3000);
            assert_eq!(all[7], (7u32.to_be_bytes().to_vec(), b"va".to_vec()));
            assert_eq!(store.get(b, b"k").unwrap().as_deref(), Some(&b"vb"[..]));
            assert_eq!(store.get(c, b"k").unwrap().map(|v| v.len()), Some(5000));
            // a space's keys never show in another's
            assert_eq!(store.scan(b, b"", b"", 10).unwrap().len(), 1);
        }
        let mut families = DB::list_cf(&Options::default(), dir.path()).unwrap();
        families.sort();
        assert_eq!(families, ["c", "default", "unknown"]);
    }

    #[test]
    fn a_second_open_of_the_same_path_is_a_clear_lock_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = Space::small("a");
        let _first = RocksStore::open(dir.path(), &[s]).unwrap();
        let err = RocksStore::open(dir.path(), &[s]).unwrap_err();
        assert!(matches!(err, KvError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use by another strata process"));
    }
}
