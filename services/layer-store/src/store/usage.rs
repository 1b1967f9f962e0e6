//! Space usage by kind, shared vs unique among roots, and what GC would free.

use std::{collections::HashMap, sync::Arc};

use strata_types::{Digest, media_type};

use super::{Store, references::Dependents};
use crate::error::Result;

/// Usage of one kind of content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindUsage {
    /// "layers", "configs", "manifests", "contexts" or "other".
    pub kind: &'static str,
    /// Blobs.
    pub count: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Space usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    /// By kind, always all five, in the order above.
    pub kinds: Vec<KindUsage>,
    /// Bytes reachable from exactly one root.
    pub unique_bytes: u64,
    /// Bytes reachable from more than one root.
    pub shared_bytes: u64,
    /// Bytes GC would free.
    pub reclaimable_bytes: u64,
    /// Build-cache entries.
    pub cache_entries: u64,
    /// Bytes reachable only from build-cache entries.
    pub cache_bytes: u64,
}

/// The kind of a media type.
pub fn kind(media: &str) -> &'static str {
    if media_type::is_manifest(media) || media_type::is_index(media) {
        "manifests"
    } else if media == media_type::OCI_CONFIG || media == media_type::DOCKER_CONFIG {
        "configs"
    } else if media == media_type::BUILD_CONTEXT {
        "contexts"
    } else if media.contains(".layer.") || media.contains("rootfs.diff") {
        "layers"
    } else {
        "other"
    }
}

const KINDS: [&str; 5] = ["layers", "configs", "manifests", "contexts", "other"];

impl Store {
    /// Usage, attributing space to `roots` (image manifests); `pinned` are further GC roots
    /// that take no part in the unique/shared split (the tag index's digests), as are blobs
    /// labelled `strata.gc.root`.
    pub fn usage(self: &Arc<Self>, roots: &[Digest], pinned: &[Digest]) -> Result<UsageReport> {
        let all = self.all_blobs()?;
        let dependents = Dependents::of(&all);
        let blobs: HashMap<Digest, u64> = all.iter().map(|(d, r)| (*d, r.size)).collect();
        let mut kinds: Vec<KindUsage> = KINDS
            .iter()
            .map(|k| KindUsage {
                kind: k,
                count: 0,
                bytes: 0,
            })
            .collect();
        for (_, r) in &all {
            let k = kinds
                .iter_mut()
                .find(|k| k.kind == kind(&r.media_type))
                .expect("every kind is listed");
            k.count += 1;
            k.bytes += r.size;
        }
        let mut roots: Vec<Digest> = roots.to_vec();
        roots.sort();
        roots.dedup();
        let mut reached: HashMap<Digest, u32> = HashMap::new();
        for root in &roots {
            for d in self.reachable([*root], &dependents)? {
                *reached.entry(d).or_default() += 1;
            }
        }
        let size = |d: &Digest| blobs.get(d).copied().unwrap_or(0);
        let unique_bytes = reached
            .iter()
            .filter(|(_, n)| **n == 1)
            .map(|(d, _)| size(d))
            .sum();
        let shared_bytes = reached
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(d, _)| size(d))
            .sum();

        let mut kept_roots = roots.clone();
        kept_roots.extend_from_slice(pinned);
        kept_roots.extend(super::gc::labelled_roots(&all));
        kept_roots.extend(self.leased_digests()?);
        kept_roots.extend(self.in_flight_digests());
        let kept = self.reachable(kept_roots, &dependents)?;
        let entries = self.all_cache_entries()?;
        let cached = self.reachable(entries.iter().filter_map(|e| e.layer_digest), &dependents)?;
        let reclaimable_bytes = blobs
            .iter()
            .filter(|(d, _)| !kept.contains(d) && !cached.contains(d))
            .map(|(_, s)| s)
            .sum();
        let cache_bytes = cached.iter().filter(|d| !kept.contains(d)).map(size).sum();
        Ok(UsageReport {
            kinds,
            unique_bytes,
            shared_bytes,
            reclaimable_bytes,
            cache_entries: entries.len() as u64,
            cache_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_fall_into_kinds() {
        assert_eq!(kind(media_type::OCI_LAYER_TAR), "layers");
        assert_eq!(kind(media_type::DOCKER_LAYER_GZIP), "layers");
        assert_eq!(kind(media_type::OCI_CONFIG), "configs");
        assert_eq!(kind(media_type::OCI_INDEX), "manifests");
        assert_eq!(kind(media_type::DOCKER_MANIFEST), "manifests");
        assert_eq!(kind(media_type::BUILD_CONTEXT), "contexts");
        assert_eq!(kind("application/octet-stream"), "other");
    }
}
