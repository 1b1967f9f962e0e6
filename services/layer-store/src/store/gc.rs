//! Mark and sweep.
//!
//! Roots: the request's digests (the caller adds the tag index's), live leases, build-cache
//! results (unless pruned), digests announced by uploads in flight, and every blob labelled
//! `strata.gc.root` (strata-transfer's digest references: an image pulled by digest). Marking follows
//! manifest -> config/layers and index -> manifests, a blob's `strata.gc.ref.*` labels, and
//! from any digest reached to the blobs labelled with it as their `strata.subject` (records
//! about an image or layer live exactly as long as it does). While a GC runs, every commit or
//! confirmation of a digest is recorded (under the digest's stripe lock, which the sweep also
//! takes before deleting), so a write that finishes during GC — and whatever a manifest
//! committed during GC names — survives it. So is every digest a lease held when the lease
//! is deleted during GC: a lease's work (a build, the tag index checking a tag's target)
//! ends by moving a tag and then deleting the lease, possibly after the GC read the tags
//! and before it read the leases. A DeleteBlob decides under the same guard
//! ([`GcGuard::delete_unreferenced`]), so it too never takes what a tag being moved needs.

use std::{collections::HashSet, sync::Arc};

use strata_types::{Digest, gc_label};
use tokio::sync::OwnedMutexGuard;
use tracing::info;

use super::{Store, lock, references::Dependents};
use crate::error::{LayerStoreError, Result};

/// What keeps a blob from being deleted on request ([`GcGuard::delete_unreferenced`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A tag reaches it (its full name).
    Tag(String),
    /// A live lease reaches it (its id).
    Lease(String),
    /// A blob labelled a GC root (`strata.gc.root`: a digest reference) reaches it.
    Root(Digest),
    /// Work that committed or confirmed something reaching it while the deletion was
    /// being decided (a write, a lease, the tag index checking a tag's target).
    InProgress,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tag(name) => write!(f, "tag {name}"),
            Self::Lease(id) => write!(f, "lease {id:?}"),
            Self::Root(d) => write!(f, "GC root {d}"),
            Self::InProgress => f.write_str("work in progress"),
        }
    }
}

/// What to collect.
#[derive(Debug, Clone, Default)]
pub struct GcRequest {
    /// Report only.
    pub dry_run: bool,
    /// Extra roots (the request's and the tag index's).
    pub roots: Vec<Digest>,
    /// Remove every build-cache entry, and so stop treating their results as roots.
    pub prune_cache: bool,
}

/// What a collection removed (or would).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub removed: Vec<Digest>,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Blobs kept.
    pub kept: u64,
    /// Upload sessions swept.
    pub uploads_swept: u64,
    /// Cache entries removed.
    pub cache_entries_removed: u64,
    /// Chunk groups without an owner removed.
    pub orphan_groups: u64,
}

/// A GC in progress: from its creation on, commits are recorded as protected. Create it
/// before gathering roots from elsewhere (the tag index), so nothing written meanwhile is lost.
pub struct GcGuard {
    store: Arc<Store>,
    _exclusive: OwnedMutexGuard<()>,
}

impl std::fmt::Debug for GcGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GcGuard")
    }
}

impl Store {
    /// Starts a GC, waiting for one already running to end.
    pub async fn begin_gc(self: &Arc<Self>) -> GcGuard {
        let exclusive = self.gc_running.clone().lock_owned().await;
        *lock(&self.protect) = Some(HashSet::new());
        GcGuard {
            store: self.clone(),
            _exclusive: exclusive,
        }
    }

    /// [`Store::begin_gc`] from blocking code.
    pub fn begin_gc_blocking(self: &Arc<Self>) -> GcGuard {
        let exclusive = self.gc_running.clone().blocking_lock_owned();
        *lock(&self.protect) = Some(HashSet::new());
        GcGuard {
            store: self.clone(),
            _exclusive: exclusive,
        }
    }
}

impl Drop for GcGuard {
    fn drop(&mut self) {
        *lock(&self.store.protect) = None;
    }
}

/// The blobs whose labels make them roots (`strata.gc.root`).
pub(super) fn labelled_roots(
    blobs: &[(Digest, super::record::BlobRecord)],
) -> impl Iterator<Item = Digest> + '_ {
    blobs
        .iter()
        .filter(|(_, r)| gc_label::is_root(&r.labels))
        .map(|(d, _)| *d)
}

impl GcGuard {
    /// Deletes one blob unless something keeps it: a tag (`tags`: every tag's name and
    /// digest, read after this guard began), a GC-root blob or a live lease that reaches it
    /// the way marking does, or anything committed or confirmed since the guard began that
    /// reaches it. A record (a blob with a `strata.subject`) is not held by its subject:
    /// marking keeps it while its subject lives, but asked for by name it goes. The
    /// guard closes the same races as for a GC: a tag moved after `tags` was read had its
    /// target confirmed (the tag index leases it) after the guard began, or its lease was
    /// still live when the leases are read here, or deleted during the guard (which
    /// protects its digests). Blocking: run it off the async executor.
    pub fn delete_unreferenced(&self, digest: &Digest, tags: &[(String, Digest)]) -> Result<()> {
        let store = &self.store;
        if store.load_blob(digest)?.is_none() {
            return Err(LayerStoreError::BlobNotFound(*digest));
        }
        let blobs = store.all_blobs()?;
        let dependents = Dependents::of(&blobs);
        let mut roots: Vec<(Holder, Digest)> = tags
            .iter()
            .map(|(name, d)| (Holder::Tag(name.clone()), *d))
            .collect();
        // a root record holds its image; deleting the record itself is how it is removed
        roots.extend(
            labelled_roots(&blobs)
                .filter(|d| d != digest)
                .map(|d| (Holder::Root(d), d)),
        );
        for lease in store.list_leases()? {
            roots.extend(
                lease
                    .digests
                    .iter()
                    .map(|d| (Holder::Lease(lease.id.clone()), *d)),
            );
        }
        // one walk for all roots: a digest another root already reached without finding the
        // blob cannot lead to it
        let mut seen = HashSet::new();
        for (holder, root) in roots {
            if store.reaches(root, digest, &dependents, &mut seen)? {
                return Err(LayerStoreError::BlobInUse {
                    digest: *digest,
                    holder,
                });
            }
        }
        let _stripe = store.stripe(digest);
        let now: Vec<Digest> = lock(&store.protect).iter().flatten().copied().collect();
        if store.reachable(now, &dependents)?.contains(digest) {
            return Err(LayerStoreError::BlobInUse {
                digest: *digest,
                holder: Holder::InProgress,
            });
        }
        let Some(current) = store.load_blob(digest)? else {
            return Err(LayerStoreError::BlobNotFound(*digest));
        };
        store.delete_locked(digest, &current)?;
        info!(digest = %digest, size = current.size, "blob deleted");
        Ok(())
    }

    /// Marks and sweeps (blocking: run it off the async executor).
    pub fn collect(&self, req: &GcRequest) -> Result<GcReport> {
        let store = &self.store;
        let mut report = GcReport {
            cache_entries_removed: if req.prune_cache {
                store.prune_cache(req.dry_run)?
            } else {
                0
            },
            ..GcReport::default()
        };
        let mut roots: Vec<Digest> = req.roots.clone();
        roots.extend(store.leased_digests()?);
        if !req.prune_cache {
            roots.extend(
                store
                    .all_cache_entries()?
                    .into_iter()
                    .filter_map(|e| e.layer_digest),
            );
        }
        roots.extend(store.in_flight_digests());
        // Read before marking: a blob committed after this read is not swept at all, and
        // one committed before it is either marked or protected.
        let blobs = store.all_blobs()?;
        roots.extend(labelled_roots(&blobs));
        let dependents = Dependents::of(&blobs);
        let marked = store.reachable(roots, &dependents)?;

        // what was committed since the GC began, and what it names
        let mut protected = HashSet::new();
        let mut protected_from = 0;
        for (digest, _) in blobs {
            if marked.contains(&digest) {
                report.kept += 1;
                continue;
            }
            let _stripe = store.stripe(&digest);
            let now: Vec<Digest> = lock(&store.protect).iter().flatten().copied().collect();
            if now.len() != protected_from {
                protected_from = now.len();
                protected = store.reachable(now, &dependents)?;
            }
            if protected.contains(&digest) {
                report.kept += 1;
                continue;
            }
            // re-read under the lock: it may be gone already
            let Some(current) = store.load_blob(&digest)? else {
                continue;
            };
            if !req.dry_run {
                store.delete_locked(&digest, &current)?;
            }
            report.removed.push(digest);
            report.bytes_freed += current.size;
        }
        report.uploads_swept = store.sweep_uploads(false, req.dry_run)?;
        report.orphan_groups = store.sweep_orphan_groups(req.dry_run)?;
        if !req.dry_run {
            store.sweep_expired_leases()?;
        }
        info!(
            dry_run = req.dry_run,
            removed = report.removed.len(),
            bytes_freed = report.bytes_freed,
            kept = report.kept,
            uploads_swept = report.uploads_swept,
            cache_entries_removed = report.cache_entries_removed,
            orphan_groups = report.orphan_groups,
            "garbage collection finished"
        );
        Ok(report)
    }
}
