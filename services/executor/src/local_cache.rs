//! The executor's only local state: extracted layers (overlay lowerdirs, one per diff_id)
//! and extracted build contexts (one per context digest, with the sha256 of every file),
//! both rebuilt from the layer store on demand. Another executor never needs them.
//!
//! The cache is bounded. Each entry `HEX` (`layers/HEX/`, or `contexts/HEX/` with
//! `contexts/HEX.digests.json`) has a marker `HEX.entry` beside it whose content is the
//! entry's size in bytes (empty until measured) and whose mtime is the entry's last use. A
//! build touches the markers of what it uses (one syscall an entry); sizes are measured when
//! an entry is extracted, or by the next prune for an adopted upper dir, so no build walks a
//! tree for the budget's sake. [`LocalCache::prune`] removes the least recently used entries
//! until the rest fit the budget, skipping every entry a running build has pinned ([`Pins`]).
//! A pruned entry is renamed into `tmp/` (cleared at start) before it is deleted, so a half
//! deleted tree is never seen under its name, and its next use extracts it again.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::File,
    future::Future,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::SystemTime,
};

use bytes::Bytes;
use strata_types::Digest;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::error::ExecutorError;
use crate::extract::{ExtractOptions, Whiteouts, extract};
use crate::peers::{ChannelReader, Peers};

/// The budget when none is configured: 10 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;

/// The environment twin of `--local-cache-max-bytes`, read by every host of an executor.
pub const MAX_BYTES_ENV: &str = "STRATA_EXECUTOR_LOCAL_CACHE_MAX_BYTES";

/// Parses a budget: a byte count or a size with a binary unit (`500MB`, `10GiB`, `1g`; a
/// unit is 1024 times the one below, as BuildKit's gc settings read them). 0 means no
/// budget: nothing is pruned automatically.
pub fn parse_max_bytes(v: &str) -> Result<u64, String> {
    strata_dockerfile::mount::parse_size(v).map_err(|_| {
        format!("invalid size {v:?}: expected bytes, optionally with a unit (500MB, 10GiB)")
    })
}

/// The budget [`MAX_BYTES_ENV`] asks for, or the default when it is unset (`None`: no
/// budget).
pub fn max_bytes_from_env() -> Result<Option<u64>, ExecutorError> {
    match std::env::var(MAX_BYTES_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(Some(DEFAULT_MAX_BYTES)),
        Err(e) => Err(ExecutorError::InvalidArgument(format!(
            "invalid {MAX_BYTES_ENV}: {e}"
        ))),
        Ok(v) => parse_max_bytes(&v)
            .map(budget)
            .map_err(|e| ExecutorError::InvalidArgument(format!("invalid {MAX_BYTES_ENV}: {e}"))),
    }
}

/// A configured size as a budget: 0 is none.
pub fn budget(max_bytes: u64) -> Option<u64> {
    (max_bytes > 0).then_some(max_bytes)
}

/// An extracted build context.
#[derive(Debug)]
pub struct Context {
    /// Its root directory.
    pub dir: PathBuf,
    /// sha256 of every regular file's bytes, by path relative to the root.
    pub file_digests: BTreeMap<String, Digest>,
}

/// Which directory an entry lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Layer,
    Context,
}

/// One cache entry: a layer or a context, by the hex of its digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct EntryId {
    kind: Kind,
    hex: String,
}

/// What pruning must see under one lock: the pins, and the contexts loaded in memory (a
/// pruned context leaves them too).
#[derive(Debug, Default)]
struct State {
    /// How many [`Pins`] hold each entry.
    pins: HashMap<EntryId, usize>,
    /// Contexts already read, by digest hex.
    contexts: HashMap<String, Arc<Context>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The entries one build uses, held until it ends: pruning never removes a pinned entry. An
/// entry is pinned before its directory is looked at, so a prune cannot remove it between
/// that check and the mount.
#[derive(Debug)]
pub struct Pins {
    state: Arc<Mutex<State>>,
    held: Mutex<HashSet<EntryId>>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        let held = std::mem::take(self.held.get_mut().unwrap_or_else(PoisonError::into_inner));
        let mut state = locked(&self.state);
        for id in held {
            if let Some(n) = state.pins.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    state.pins.remove(&id);
                }
            }
        }
    }
}

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Entries removed.
    pub removed: u64,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Entries kept.
    pub kept: u64,
    /// Their bytes.
    pub bytes_kept: u64,
}

/// An entry as a prune sees it.
#[derive(Debug)]
struct Found {
    id: EntryId,
    bytes: u64,
    used: SystemTime,
}

/// The background prune's bookkeeping: one runs at a time, and a request made while it
/// runs makes it go round once more.
#[derive(Debug, Default)]
struct Background {
    running: bool,
    again: bool,
}

/// Detaches every mount at or below `dir` (deepest first), as /proc/self/mountinfo lists
/// them. The executor's root is locked to one process, so any mount there is a leftover.
fn unmount_under(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else { return };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        match nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => info!(mount = %point.display(), "unmounted a leftover scratch mount"),
            Err(e) => {
                warn!(mount = %point.display(), error = %e, "cannot unmount a leftover scratch mount")
            }
        }
    }
}

/// mountinfo writes space, tab, newline and backslash in a path as `\ooo` octal escapes.
fn unescape_mount_path(p: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u16, |v, c| v * 8 + u16::from(c - b'0')));
        match octal.and_then(|v| u8::try_from(v).ok()) {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Extracted layers and contexts under `ROOT/executor`.
#[derive(Debug)]
pub struct LocalCache {
    /// The directory's lock, held while the cache is open.
    _lock: nix::fcntl::Flock<File>,
    layers: PathBuf,
    contexts: PathBuf,
    tmp: PathBuf,
    budget: Option<u64>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    state: Arc<Mutex<State>>,
    /// Held for a whole prune: one at a time.
    pruning: Mutex<()>,
    background: Mutex<Background>,
    /// True while a background prune runs.
    busy: watch::Sender<bool>,
    /// Numbers scratch names.
    seq: AtomicU64,
    /// An entry was added since the last prune began: only then can a build have taken the
    /// cache over its budget.
    grown: AtomicBool,
}

impl LocalCache {
    /// Uses `dir` (ROOT/executor); clears scratch left by a crash. `budget`: the bytes the
    /// entries may take (`None`: unbounded).
    ///
    /// `dir` is made private to its owner (0700) whatever it was: extracted layers keep
    /// their setuid bits and device nodes, which nobody else on the host may reach through
    /// it (Docker keeps /var/lib/docker 0710 for the same reason).
    pub fn open(dir: &Path, budget: Option<u64>) -> Result<Self, ExecutorError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| ExecutorError::io_op("creating", dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ExecutorError::io_op("making private", dir, e))?;
        // One executor per directory: what it finds in tmp/ (and the runtime's state) at
        // start is then a crashed predecessor's, safe to clear.
        let lock_path = dir.join("lock");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ExecutorError::io_op("opening", &lock_path, e))?;
        let lock = match nix::fcntl::Flock::lock(
            lock_file,
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        ) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(ExecutorError::io_op(
                    "locking",
                    &lock_path,
                    std::io::Error::new(
                        std::io::ErrorKind::WouldBlock,
                        "another executor is using this directory: give each executor a root of its own",
                    ),
                ));
            }
            Err((_, e)) => {
                return Err(ExecutorError::io_op("locking", &lock_path, e.into()));
            }
        };
        let layers = dir.join("layers");
        let contexts = dir.join("contexts");
        let tmp = dir.join("tmp");
        // a process killed mid-RUN leaves its container running and its overlay mounted:
        // the container goes first, then the mounts (before removing, or the removal would
        // walk into a mount and leave it behind)
        crate::runtime::remove_leftover_containers(&dir.join(crate::build::RUNTIME_STATE));
        if tmp.exists() {
            unmount_under(&tmp);
            let _ = std::fs::remove_dir_all(&tmp);
        }
        for d in [&layers, &contexts, &tmp] {
            std::fs::create_dir_all(d).map_err(|e| ExecutorError::io_op("creating", d, e))?;
        }
        Ok(Self {
            _lock: lock,
            layers,
            contexts,
            tmp,
            budget,
            locks: Mutex::new(HashMap::new()),
            state: Arc::default(),
            pruning: Mutex::new(()),
            background: Mutex::default(),
            busy: watch::Sender::new(false),
            seq: AtomicU64::new(0),
            grown: AtomicBool::new(false),
        })
    }

    /// The bytes the entries may take (`None`: unbounded).
    pub fn budget(&self) -> Option<u64> {
        self.budget
    }

    /// Where the lowerdir of `diff_id` lives (whether or not it exists yet).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.layers.join(diff_id.hex())
    }

    /// A fresh scratch directory path (not created).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// A new, empty set of pins for one build.
    pub fn pins(&self) -> Pins {
        Pins {
            state: self.state.clone(),
            held: Mutex::default(),
        }
    }

    fn base(&self, kind: Kind) -> &Path {
        match kind {
            Kind::Layer => &self.layers,
            Kind::Context => &self.contexts,
        }
    }

    fn entry_dir(&self, id: &EntryId) -> PathBuf {
        self.base(id.kind).join(&id.hex)
    }

    fn marker(&self, id: &EntryId) -> PathBuf {
        self.base(id.kind).join(format!("{}.entry", id.hex))
    }

    fn context_index(&self, hex: &str) -> PathBuf {
        self.contexts.join(format!("{hex}.digests.json"))
    }

    fn unique(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Pins `id` for `pins`' build and marks it used now.
    fn pin(&self, pins: &Pins, id: &EntryId) {
        debug_assert!(
            Arc::ptr_eq(&pins.state, &self.state),
            "pins of another cache"
        );
        let mut state = locked(&self.state);
        if locked(&pins.held).insert(id.clone()) {
            *state.pins.entry(id.clone()).or_default() += 1;
        }
        // under the lock: a prune rewriting this marker keeps the mtime it read under it
        if let Ok(f) = File::open(self.marker(id)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        locked(&self.locks)
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// The lowerdir of a layer, extracted from the store (blob `blob_digest`) the first time,
    /// pinned for `pins`' build.
    pub async fn ensure_layer(
        &self,
        peers: &Peers,
        diff_id: &Digest,
        blob_digest: &str,
        pins: &Pins,
    ) -> Result<PathBuf, ExecutorError> {
        self.ensure_layer_from(diff_id, pins, |tx| peers.stream_blob(blob_digest, tx))
            .await
    }

    /// [`Self::ensure_layer`] with the blob's bytes from `fetch` (which sends them into the
    /// channel it is given).
    async fn ensure_layer_from<F, Fut>(
        &self,
        diff_id: &Digest,
        pins: &Pins,
        fetch: F,
    ) -> Result<PathBuf, ExecutorError>
    where
        F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
        Fut: Future<Output = Result<(), ExecutorError>>,
    {
        let id = EntryId {
            kind: Kind::Layer,
            hex: diff_id.hex(),
        };
        self.pin(pins, &id);
        let dest = self.entry_dir(&id);
        if dest.exists() {
            return Ok(dest);
        }
        let lock = self.lock(&diff_id.to_string());
        let _held = lock.lock().await;
        if dest.exists() {
            return Ok(dest);
        }
        let staging = self
            .tmp
            .join(format!("layer-{}-{}", diff_id.hex(), std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(|e| ExecutorError::io_op("creating", &staging, e))?;
        // two 256 KiB messages in flight: the read and the extraction overlap (eight held
        // ~1.5 MB more of a large build's peak memory, no faster)
        let (tx, rx) = mpsc::channel::<Bytes>(2);
        let target = staging.clone();
        let extracting = tokio::task::spawn_blocking(move || {
            let reader = crate::compression::decompressed(ChannelReader::new(rx))?;
            extract(
                reader,
                &target,
                ExtractOptions {
                    whiteouts: Whiteouts::Overlay,
                    hash_files: false,
                },
            )?;
            // the tree was just written: measuring it now is cheap, and off any hit's path
            Ok::<_, ExecutorError>(disk_usage(&target))
        });
        let streamed = fetch(tx).await;
        let extracted = extracting
            .await
            .map_err(|e| ExecutorError::Internal(e.to_string()))?;
        let bytes = match streamed.and(extracted) {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        std::fs::rename(&staging, &dest)
            .map_err(|e| ExecutorError::io_op("renaming", &staging, e))?;
        self.write_marker(&id, Some(bytes), None);
        self.grown.store(true, Ordering::Relaxed);
        info!(diff_id = %diff_id, bytes, "layer extracted");
        Ok(dest)
    }

    /// Adopts a directory already in lowerdir form as the layer `diff_id` (the upper dir of
    /// the step that made it), pinned for `pins`' build; false when it could not be moved.
    /// Its size is measured by the next prune, off the build's path.
    pub fn adopt_layer(&self, diff_id: &Digest, dir: &Path, pins: &Pins) -> bool {
        let id = EntryId {
            kind: Kind::Layer,
            hex: diff_id.hex(),
        };
        self.pin(pins, &id);
        let dest = self.entry_dir(&id);
        if dest.exists() {
            return true;
        }
        let ok = std::fs::rename(dir, &dest).is_ok();
        if ok {
            self.write_marker(&id, None, None);
            self.grown.store(true, Ordering::Relaxed);
        }
        debug!(diff_id = %diff_id, ok, "adopted a step's upper dir as a layer");
        ok
    }

    /// The build context `digest`, extracted once per executor, pinned for `pins`' build.
    pub async fn ensure_context(
        &self,
        peers: &Peers,
        digest: &str,
        pins: &Pins,
    ) -> Result<Arc<Context>, ExecutorError> {
        let parsed = Digest::parse(digest).map_err(|e| {
            ExecutorError::InvalidArgument(format!("invalid context digest {digest:?}: {e}"))
        })?;
        let hex = parsed.hex();
        let id = EntryId {
            kind: Kind::Context,
            hex: hex.clone(),
        };
        self.pin(pins, &id);
        if let Some(c) = locked(&self.state).contexts.get(&hex) {
            return Ok(c.clone());
        }
        let lock = self.lock(digest);
        let _held = lock.lock().await;
        if let Some(c) = locked(&self.state).contexts.get(&hex) {
            return Ok(c.clone());
        }
        let dest = self.entry_dir(&id);
        let index = self.context_index(&hex);
        if let Some(file_digests) = read_index(&dest, &index) {
            debug!(context = %digest, files = file_digests.len(), "context reused from disk");
            let context = Arc::new(Context {
                dir: dest,
                file_digests,
            });
            locked(&self.state).contexts.insert(hex, context.clone());
            return Ok(context);
        }
        if !peers.has_blob(digest).await? {
            return Err(ExecutorError::NotFound(format!(
                "build context {digest} is not in the layer store"
            )));
        }
        let _ = std::fs::remove_file(&index);
        // a tree without its index: away under another name first, never half-deleted here
        let stale = self.unique(&format!("stale-{hex}"));
        if std::fs::rename(&dest, &stale).is_ok() {
            let _ = std::fs::remove_dir_all(&stale);
        }
        let staging = self.tmp.join(format!("context-{hex}"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(|e| ExecutorError::io_op("creating", &staging, e))?;
        // as for layers: two messages in flight
        let (tx, rx) = mpsc::channel::<Bytes>(2);
        let target = staging.clone();
        let extracting = tokio::task::spawn_blocking(move || {
            let report = extract(
                ChannelReader::new(rx),
                &target,
                ExtractOptions {
                    whiteouts: Whiteouts::Apply,
                    hash_files: true,
                },
            )?;
            Ok::<_, ExecutorError>((report, disk_usage(&target)))
        });
        let streamed = peers.stream_blob(digest, tx).await;
        let extracted = extracting
            .await
            .map_err(|e| ExecutorError::Internal(e.to_string()))?;
        let (report, bytes) = match streamed.and(extracted) {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        std::fs::rename(&staging, &dest)
            .map_err(|e| ExecutorError::io_op("renaming", &staging, e))?;
        let index_bytes = self.write_index(&index, &report.file_digests);
        self.write_marker(&id, Some(bytes + index_bytes), None);
        self.grown.store(true, Ordering::Relaxed);
        let context = Arc::new(Context {
            dir: dest,
            file_digests: report.file_digests,
        });
        locked(&self.state).contexts.insert(hex, context.clone());
        Ok(context)
    }

    /// Writes `id`'s marker through a scratch file and a rename: `bytes` (None: not measured
    /// yet), last used at `used` (None: now). A failure only costs a measurement.
    fn write_marker(&self, id: &EntryId, bytes: Option<u64>, used: Option<SystemTime>) {
        let marker = self.marker(id);
        let content = bytes.map(|b| b.to_string()).unwrap_or_default();
        if let Err(e) = write_through(&self.unique("marker"), &marker, content.as_bytes(), used) {
            debug!(marker = %marker.display(), error = %e, "cache marker not saved");
        }
    }

    /// Writes a context's file digests to `index` (never half-written under its name);
    /// its size, 0 when it was not written. A failure only costs the next process an
    /// extraction, so it is logged, not returned.
    fn write_index(&self, index: &Path, digests: &BTreeMap<String, Digest>) -> u64 {
        let written = serde_json::to_vec(digests)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                write_through(&self.unique("index"), index, &bytes, None)?;
                Ok(bytes.len() as u64)
            });
        written.unwrap_or_else(|e| {
            debug!(index = %index.display(), error = %e, "context index not saved");
            0
        })
    }

    /// Removes the least recently used entries no build has pinned until the rest take at
    /// most `max_bytes` (0: every unpinned entry); `dry_run` only reports. Entries not yet
    /// measured are measured first. Blocking: run it off the async threads.
    pub fn prune(&self, max_bytes: u64, dry_run: bool) -> Result<PruneReport, ExecutorError> {
        let _one = locked(&self.pruning);
        let mut found = Vec::new();
        for kind in [Kind::Layer, Kind::Context] {
            self.scan(kind, &mut found)?;
        }
        let mut total: u64 = found.iter().map(|f| f.bytes).sum();
        // oldest first; among equals the larger goes first
        found.sort_by(|a, b| a.used.cmp(&b.used).then(b.bytes.cmp(&a.bytes)));
        let mut report = PruneReport::default();
        let mut doomed = Vec::new();
        for f in found {
            let removed = total > max_bytes && {
                let mut state = locked(&self.state);
                if state.pins.contains_key(&f.id) {
                    false
                } else if dry_run {
                    true
                } else {
                    let dir = self.entry_dir(&f.id);
                    let away = self.unique(&format!("pruned-{}", f.id.hex));
                    match std::fs::rename(&dir, &away) {
                        Ok(()) => {
                            doomed.push(away);
                            let _ = std::fs::remove_file(self.marker(&f.id));
                            if f.id.kind == Kind::Context {
                                let _ = std::fs::remove_file(self.context_index(&f.id.hex));
                                state.contexts.remove(&f.id.hex);
                            }
                            true
                        }
                        Err(e) => {
                            debug!(dir = %dir.display(), error = %e, "cache entry not pruned");
                            false
                        }
                    }
                }
            };
            if removed {
                total -= f.bytes;
                report.removed += 1;
                report.bytes_freed += f.bytes;
            } else {
                report.kept += 1;
                report.bytes_kept += f.bytes;
            }
        }
        for away in doomed {
            if let Err(e) = std::fs::remove_dir_all(&away) {
                warn!(dir = %away.display(), error = %e, "a pruned cache entry was not deleted");
            }
        }
        if report.removed > 0 || total > max_bytes {
            info!(
                dry_run,
                removed = report.removed,
                bytes_freed = report.bytes_freed,
                kept = report.kept,
                bytes_kept = report.bytes_kept,
                max_bytes,
                "local cache pruned"
            );
        }
        if total > max_bytes && !dry_run {
            info!(
                bytes = total,
                max_bytes, "local cache over its budget: the rest is in use by running builds"
            );
        }
        Ok(report)
    }

    /// Adds the entries of `kind` to `found`, measuring those without a size and removing
    /// markers and indexes whose entry is gone.
    fn scan(&self, kind: Kind, found: &mut Vec<Found>) -> Result<(), ExecutorError> {
        let base = self.base(kind);
        let listing =
            std::fs::read_dir(base).map_err(|e| ExecutorError::io_op("listing", base, e))?;
        let mut dirs = Vec::new();
        let mut sidecars = Vec::new();
        for entry in listing.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Some(hex) = name
                .strip_suffix(".entry")
                .or_else(|| name.strip_suffix(".digests.json"))
            {
                if is_hex(hex) {
                    sidecars.push((hex.to_owned(), entry.path()));
                }
            } else if is_hex(&name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(name);
            }
        }
        let present: HashSet<&str> = dirs.iter().map(String::as_str).collect();
        for (hex, path) in &sidecars {
            if present.contains(hex.as_str()) {
                continue;
            }
            let id = EntryId {
                kind,
                hex: hex.clone(),
            };
            let state = locked(&self.state);
            if !state.pins.contains_key(&id) && !self.entry_dir(&id).exists() {
                let _ = std::fs::remove_file(path);
            }
        }
        for hex in dirs {
            let id = EntryId { kind, hex };
            let dir = self.entry_dir(&id);
            let (bytes, used) = match std::fs::metadata(self.marker(&id)) {
                Ok(m) => {
                    let bytes = std::fs::read_to_string(self.marker(&id))
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok());
                    (bytes, m.modified().unwrap_or(SystemTime::UNIX_EPOCH))
                }
                // made before markers existed, or a crash between the rename and the marker
                Err(_) => (
                    None,
                    std::fs::metadata(&dir)
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                ),
            };
            let bytes = match bytes {
                Some(b) => b,
                None => {
                    let mut b = disk_usage(&dir);
                    if kind == Kind::Context {
                        b += std::fs::metadata(self.context_index(&id.hex)).map_or(0, |m| m.len());
                    }
                    let state = locked(&self.state);
                    // a pinned entry may be getting its marker from its build right now
                    if !state.pins.contains_key(&id) && dir.exists() {
                        let used = std::fs::metadata(self.marker(&id))
                            .and_then(|m| m.modified())
                            .unwrap_or(used);
                        self.write_marker(&id, Some(b), Some(used));
                    }
                    b
                }
            };
            found.push(Found { id, bytes, used });
        }
        Ok(())
    }

    /// Prunes to the budget on a blocking thread of the current runtime, without waiting;
    /// nothing without a budget or outside a runtime. Requests made while one runs are
    /// served by one more round.
    pub fn prune_in_background(self: &Arc<Self>) {
        let Some(max_bytes) = self.budget else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut bg = locked(&self.background);
            if bg.running {
                bg.again = true;
                return;
            }
            bg.running = true;
            self.busy.send_replace(true);
        }
        let cache = self.clone();
        runtime.spawn_blocking(move || {
            loop {
                cache.grown.store(false, Ordering::Relaxed);
                if let Err(e) = cache.prune(max_bytes, false) {
                    warn!(error = %e, "local cache prune failed");
                }
                let mut bg = locked(&cache.background);
                if bg.again {
                    bg.again = false;
                    continue;
                }
                bg.running = false;
                cache.busy.send_replace(false);
                break;
            }
        });
    }

    /// [`Self::prune_in_background`] if an entry was added since the last prune began
    /// (what a build calls when it ends: a fully cached build adds nothing, and a prune
    /// reads every entry's marker).
    pub fn prune_if_grown_in_background(self: &Arc<Self>) {
        if self.grown.swap(false, Ordering::Relaxed) {
            self.prune_in_background();
        }
    }

    /// Resolves once no background prune is running.
    pub async fn settled(&self) {
        let mut busy = self.busy.subscribe();
        let _ = busy.wait_for(|b| !*b).await;
    }
}

pub(crate) fn is_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The bytes `dir`'s tree takes on disk (allocated blocks; a file with several links in the
/// tree counted once). Unreadable parts count as nothing.
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(m) = std::fs::symlink_metadata(&d) {
            total += m.blocks() * 512;
        }
        let Ok(listing) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in listing.flatten() {
            let Ok(m) = entry.metadata() else { continue };
            if m.is_dir() {
                stack.push(entry.path());
            } else if m.nlink() < 2 || seen.insert((m.dev(), m.ino())) {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// The file digests saved beside an extracted context, when both are there and the index
/// reads back whole: the next process (each embedded CLI command starts a fresh executor)
/// reuses the tree instead of extracting and hashing the context again. The directory is
/// renamed into place before its index is written, so an index never describes a partial
/// tree; a torn or missing index makes the context be extracted again.
fn read_index(dir: &Path, index: &Path) -> Option<BTreeMap<String, Digest>> {
    if !dir.is_dir() {
        return None;
    }
    let bytes = std::fs::read(index).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes `bytes` to `dest` through `scratch` and a rename, so `dest` is never seen
/// half-written; `modified`: the mtime to give it (None: now).
fn write_through(
    scratch: &Path,
    dest: &Path,
    bytes: &[u8],
    modified: Option<SystemTime>,
) -> std::io::Result<()> {
    let written = std::fs::write(scratch, bytes)
        .and_then(|()| match modified {
            Some(t) => File::open(scratch)?.set_modified(t),
            None => Ok(()),
        })
        .and_then(|()| std::fs::rename(scratch, dest));
    if written.is_err() {
        let _ = std::fs::remove_file(scratch);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strata_server::ListenAddr;

    use super::*;

    fn cache(dir: &Path) -> Arc<LocalCache> {
        Arc::new(LocalCache::open(&dir.join("executor"), None).unwrap())
    }

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    /// Adopts a directory holding `kib` KiB as layer `n`.
    fn adopted(cache: &LocalCache, n: u8, kib: usize) -> Digest {
        let src = cache.scratch(&format!("upper-{n}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("data"), vec![n; kib * 1024]).unwrap();
        let d = digest(n);
        assert!(cache.adopt_layer(&d, &src, &cache.pins()));
        d
    }

    /// Says layer `d` was last used `secs` seconds ago.
    fn last_used(cache: &LocalCache, d: &Digest, secs: u64) {
        let marker = cache.layers.join(format!("{}.entry", d.hex()));
        File::open(marker)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(secs))
            .unwrap();
    }

    fn measured(cache: &LocalCache, d: &Digest) -> u64 {
        let marker = cache.layers.join(format!("{}.entry", d.hex()));
        std::fs::read_to_string(marker).unwrap().parse().unwrap()
    }

    /// A layer tar holding `/hello` = `content`.
    fn layer_tar(content: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "hello", content).unwrap();
        b.into_inner().unwrap()
    }

    /// Peers that are never reached (lazy channels to sockets nobody serves).
    fn unreachable_peers(dir: &Path) -> Peers {
        let peer = ListenAddr::Unix(dir.join("nobody.sock")).into();
        Peers::connect(&peer, &peer, &peer).unwrap()
    }

    #[test]
    fn budgets_read_bytes_and_binary_units() {
        assert_eq!(parse_max_bytes("10GiB"), Ok(DEFAULT_MAX_BYTES));
        assert_eq!(parse_max_bytes("500MB"), Ok(500 << 20));
        assert_eq!(parse_max_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_max_bytes("4096"), Ok(4096));
        for bad in ["", "ten", "-1", "5 parsecs", "1e400"] {
            let e = parse_max_bytes(bad).unwrap_err();
            assert!(e.contains("invalid size"), "{bad}: {e}");
        }
        assert_eq!(budget(0), None);
        assert_eq!(budget(1), Some(1));
    }

    #[test]
    fn prune_removes_least_recently_used_entries_until_the_rest_fit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let (a, b, c) = (
            adopted(&cache, 1, 64),
            adopted(&cache, 2, 64),
            adopted(&cache, 3, 64),
        );
        last_used(&cache, &a, 300);
        last_used(&cache, &b, 200);
        last_used(&cache, &c, 100);
        // nothing over an unlimited budget; the adopted dirs get measured, their use kept
        let all = cache.prune(u64::MAX, false).unwrap();
        assert_eq!((all.removed, all.kept), (0, 3));
        let sizes = [
            measured(&cache, &a),
            measured(&cache, &b),
            measured(&cache, &c),
        ];
        assert!(sizes.iter().all(|s| *s >= 64 * 1024), "{sizes:?}");
        assert_eq!(all.bytes_kept, sizes.iter().sum::<u64>());

        let dry = cache.prune(sizes[1] + sizes[2], true).unwrap();
        assert_eq!((dry.removed, dry.bytes_freed), (1, sizes[0]));
        assert!(cache.layer_dir(&a).is_dir(), "a dry run removes nothing");

        let pruned = cache.prune(sizes[1] + sizes[2], false).unwrap();
        assert_eq!(
            (pruned.removed, pruned.bytes_freed, pruned.kept),
            (1, sizes[0], 2)
        );
        assert!(!cache.layer_dir(&a).exists());
        assert!(!cache.layers.join(format!("{}.entry", a.hex())).exists());
        assert!(cache.layer_dir(&b).is_dir() && cache.layer_dir(&c).is_dir());
        // the renamed tree is deleted, not left in scratch
        let left: Vec<_> = std::fs::read_dir(&cache.tmp).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");

        // one byte under the two: the older of them goes
        let pruned = cache.prune(sizes[1] + sizes[2] - 1, false).unwrap();
        assert_eq!(pruned.removed, 1);
        assert!(!cache.layer_dir(&b).exists() && cache.layer_dir(&c).is_dir());
    }

    #[tokio::test]
    async fn using_an_entry_makes_it_the_most_recent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let (a, b) = (adopted(&cache, 1, 16), adopted(&cache, 2, 16));
        last_used(&cache, &a, 300);
        last_used(&cache, &b, 200);
        cache.prune(u64::MAX, false).unwrap();
        let pins = cache.pins();
        let found = cache
            .ensure_layer_from(&a, &pins, |_| async {
                panic!("a cached layer is not fetched")
            })
            .await
            .unwrap();
        assert_eq!(found, cache.layer_dir(&a));
        drop(pins);
        cache.prune(measured(&cache, &a), false).unwrap();
        assert!(cache.layer_dir(&a).is_dir(), "the layer just used stays");
        assert!(!cache.layer_dir(&b).exists(), "the one unused longest goes");
    }

    #[tokio::test]
    async fn pinned_entries_survive_any_budget_until_their_build_ends() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let (a, b) = (adopted(&cache, 1, 16), adopted(&cache, 2, 16));
        let build = cache.pins();
        let other = cache.pins();
        for pins in [&build, &other] {
            cache
                .ensure_layer_from(&a, pins, |_| async { unreachable!() })
                .await
                .unwrap();
        }
        let r = cache.prune(0, false).unwrap();
        assert_eq!((r.removed, r.kept), (1, 1));
        assert!(cache.layer_dir(&a).is_dir() && !cache.layer_dir(&b).exists());
        drop(build);
        assert_eq!(
            cache.prune(0, false).unwrap().removed,
            0,
            "still pinned once"
        );
        drop(other);
        assert_eq!(cache.prune(0, false).unwrap().removed, 1);
        assert!(!cache.layer_dir(&a).exists());
        assert!(locked(&cache.state).pins.is_empty());
    }

    #[tokio::test]
    async fn a_pruned_layer_is_extracted_again_on_its_next_use() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let d = digest(7);
        let fetches = AtomicU64::new(0);
        let fetch = |tx: mpsc::Sender<Bytes>| {
            fetches.fetch_add(1, Ordering::SeqCst);
            async move {
                tx.send(Bytes::from(layer_tar(b"hi\n"))).await.unwrap();
                Ok(())
            }
        };
        let pins = cache.pins();
        let lower = cache.ensure_layer_from(&d, &pins, fetch).await.unwrap();
        assert_eq!(std::fs::read(lower.join("hello")).unwrap(), b"hi\n");
        assert!(measured(&cache, &d) > 0, "measured as it was extracted");
        drop(pins);
        assert_eq!(cache.prune(0, false).unwrap().removed, 1);
        assert!(!lower.exists());

        let pins = cache.pins();
        let again = cache.ensure_layer_from(&d, &pins, fetch).await.unwrap();
        assert_eq!(again, lower);
        assert_eq!(std::fs::read(again.join("hello")).unwrap(), b"hi\n");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pruned_context_leaves_disk_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let peers = unreachable_peers(dir.path());
        let d = digest(9);
        // as an earlier process left it, before markers existed
        let tree = cache.contexts.join(d.hex());
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(cache.context_index(&d.hex()), "{}").unwrap();
        // and a marker whose entry is gone
        let orphan = cache.contexts.join(format!("{}.entry", digest(10).hex()));
        std::fs::write(&orphan, "123").unwrap();

        let pins = cache.pins();
        let context = cache
            .ensure_context(&peers, &d.to_string(), &pins)
            .await
            .unwrap();
        assert_eq!(context.dir, tree);
        assert_eq!(
            cache.prune(0, false).unwrap().kept,
            1,
            "a held context stays"
        );
        assert!(!orphan.exists());
        drop(pins);
        assert_eq!(cache.prune(0, false).unwrap().removed, 1);
        assert!(!tree.exists() && !cache.context_index(&d.hex()).exists());
        assert!(locked(&cache.state).contexts.is_empty());
        // the next use goes back to the store, not to a stale tree
        let e = cache
            .ensure_context(&peers, &d.to_string(), &cache.pins())
            .await
            .unwrap_err();
        assert!(matches!(e, ExecutorError::Peer { .. }), "{e:?}");
    }

    /// A cache holding two measured 64 KiB layers (`old` used before `new`), reopened with
    /// a budget that fits one: (its temp dir, the cache, old, new).
    fn over_a_budget_of_one_entry() -> (tempfile::TempDir, Arc<LocalCache>, Digest, Digest) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("executor");
        let unbounded = LocalCache::open(&root, None).unwrap();
        let old = adopted(&unbounded, 1, 64);
        last_used(&unbounded, &old, 100);
        let new = adopted(&unbounded, 2, 64);
        unbounded.prune(u64::MAX, false).unwrap();
        let budget = measured(&unbounded, &new);
        drop(unbounded);
        let bounded = Arc::new(LocalCache::open(&root, Some(budget)).unwrap());
        (dir, bounded, old, new)
    }

    #[tokio::test]
    async fn the_background_prune_keeps_to_the_budget() {
        let (_dir, bounded, old, new) = over_a_budget_of_one_entry();
        bounded.prune_in_background();
        bounded.prune_in_background();
        bounded.settled().await;
        assert!(!bounded.layer_dir(&old).exists());
        assert!(bounded.layer_dir(&new).is_dir());
        assert!(!*bounded.busy.borrow());
    }

    #[tokio::test]
    async fn a_build_prunes_only_when_an_entry_was_added_since_the_last_prune() {
        // over budget, but nothing was added by this process: a fully cached build's end
        // does not read every marker
        let (_dir, bounded, old, new) = over_a_budget_of_one_entry();
        bounded.prune_if_grown_in_background();
        bounded.settled().await;
        assert!(bounded.layer_dir(&old).is_dir(), "no prune ran");

        // an entry added: the next build's end prunes, down to the one entry that fits
        let third = adopted(&bounded, 3, 64);
        bounded.prune_if_grown_in_background();
        bounded.settled().await;
        assert!(!bounded.layer_dir(&old).exists());
        assert!(!bounded.layer_dir(&new).exists());
        assert!(bounded.layer_dir(&third).is_dir());
        // and that prune took the news: the next cached build's end starts none
        assert!(!bounded.grown.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod open_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_directory_is_made_private_and_held_by_one_executor() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("executor");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let first = LocalCache::open(&root, None).unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            mode, 0o700,
            "extracted setuid files and device nodes live below it"
        );
        let second = LocalCache::open(&root, None).unwrap_err().to_string();
        assert!(second.contains("another executor is using"), "{second}");
        drop(first);
        LocalCache::open(&root, None).expect("free again once the first is closed");
    }

    #[test]
    fn a_mount_left_in_scratch_by_a_killed_process_is_unmounted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("executor");
        let merged = root.join("tmp/build-1/merged");
        std::fs::create_dir_all(&merged).unwrap();
        // what a process killed mid-RUN leaves: a mount under tmp/ (a tmpfs stands in for
        // its overlay; both are what /proc/self/mountinfo lists)
        nix::mount::mount(
            Some("tmpfs"),
            &merged,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("tests run as root");
        std::fs::write(merged.join("inside"), "x").unwrap();
        let canon = merged.canonicalize().unwrap();
        let mounted = || {
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .filter_map(|l| l.split(' ').nth(4).map(unescape_mount_path))
                .any(|m| m == canon)
        };
        assert!(mounted());
        let _cache = LocalCache::open(&root, None).unwrap();
        assert!(!mounted(), "the leftover mount is gone");
        assert!(!root.join("tmp/build-1").exists(), "and so is its scratch");
    }

    #[test]
    fn mountinfo_escapes_are_read_back() {
        assert_eq!(
            unescape_mount_path(r"/a\040b\011c\012d\134e"),
            PathBuf::from("/a b\tc\nd\\e")
        );
        assert_eq!(unescape_mount_path(r"/x\9"), PathBuf::from(r"/x\9"));
    }
}
