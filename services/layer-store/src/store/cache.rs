//! Build-cache entries: cache key -> the step's result, with the key's preimage.

use strata_kv::{Durability, WriteBatch};
use strata_types::Digest;

use super::{
    CACHE, CACHE_PARENTS, Store,
    blobs::digest_from_key,
    lock, next_key, now_ns,
    record::{self, CacheRecord},
};
use crate::error::{LayerStoreError, Result};

/// A cache entry as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The cache key.
    pub key: Digest,
    /// The key's canonical preimage.
    pub preimage: String,
    /// The layer the step produced.
    pub layer_digest: Option<Digest>,
    /// The resulting image config (JSON).
    pub config: String,
    /// The parent step's key.
    pub parent_key: Option<Digest>,
    /// When stored, ns since the epoch (set by the store).
    pub created_ns: i64,
}

/// A page of cache entries.
#[derive(Debug, Clone, Default)]
pub struct CachePage {
    /// The entries, in key order.
    pub entries: Vec<CacheEntry>,
    /// The key to continue after, when there may be more.
    pub next_after: Option<Digest>,
    /// What the entries take in a response, about.
    bytes: usize,
    /// The most that may take.
    budget: usize,
}

impl CachePage {
    /// A response's share of an entry, about: its strings and a margin for keys and framing.
    fn size_of(e: &CacheEntry) -> usize {
        e.preimage.len() + e.config.len() + 256
    }

    /// Whether `e` still fits the page (the first entry always does).
    fn fits(&self, e: &CacheEntry) -> bool {
        self.entries.is_empty() || self.bytes + Self::size_of(e) <= self.budget
    }

    fn push(&mut self, e: CacheEntry) {
        self.bytes += Self::size_of(&e);
        self.entries.push(e);
    }
}

fn entry(key: Digest, r: CacheRecord) -> CacheEntry {
    CacheEntry {
        key,
        preimage: r.preimage,
        layer_digest: r.layer_digest,
        config: r.config,
        parent_key: r.parent_key,
        created_ns: r.created_ns,
    }
}

impl Store {
    /// Looks up an entry.
    pub fn get_cache_entry(&self, key: &Digest) -> Result<CacheEntry> {
        let v = self
            .kv
            .get(CACHE, key.as_bytes())?
            .ok_or(LayerStoreError::CacheEntryNotFound(*key))?;
        Ok(entry(
            *key,
            record::decode(|| format!("cache entry {key}"), &v)?,
        ))
    }

    /// Looks up an entry for a build that takes the hit: also returns its layer's size and,
    /// with `lease`, adds the layer to that live lease in the same step, so GC cannot take
    /// the layer between the lookup and the tag. An entry whose layer is no longer in the
    /// store (collected with `--prune-cache`) is not a hit.
    pub fn take_cache_entry(&self, key: &Digest, lease: Option<&str>) -> Result<(CacheEntry, u64)> {
        let e = self.get_cache_entry(key)?;
        let Some(layer) = e.layer_digest else {
            return Ok((e, 0));
        };
        let size = match lease {
            Some(id) => self
                .lease_existing(id, &layer)
                .map_err(|err| lease_gone(err, id))?,
            None => {
                let _stripe = self.stripe(&layer);
                self.load_blob(&layer)?.map(|r| r.size)
            }
        };
        match size {
            Some(size) => Ok((e, size)),
            None => Err(LayerStoreError::CacheEntryNotFound(*key)),
        }
    }

    /// Stores an entry (idempotent: storing it again keeps the first `created`). Its layer
    /// must be in the store, so a hit never leads to a missing layer, and the entry must be
    /// well formed ([`check_entry`]), so a hit is never garbage.
    pub fn put_cache_entry(&self, e: CacheEntry) -> Result<()> {
        check_entry(&e)?;
        if let Some(layer) = e.layer_digest {
            let _stripe = self.stripe(&layer);
            if self.load_blob(&layer)?.is_none() {
                return Err(LayerStoreError::CacheLayerMissing { key: e.key, layer });
            }
            // a GC running now keeps it (see gc.rs)
            self.protect(layer);
        }
        let _guard = lock(&self.records);
        let previous = self
            .kv
            .get(CACHE, e.key.as_bytes())?
            .map(|v| record::decode::<CacheRecord>(|| format!("cache entry {}", e.key), &v))
            .transpose()?;
        let mut batch = WriteBatch::new();
        if let Some(p) = &previous
            && let Some(old_parent) = p.parent_key
            && Some(old_parent) != e.parent_key
        {
            batch.delete(CACHE_PARENTS, parent_index_key(&old_parent, &e.key));
        }
        let r = CacheRecord {
            preimage: e.preimage,
            layer_digest: e.layer_digest,
            config: e.config,
            parent_key: e.parent_key,
            created_ns: previous.map(|p| p.created_ns).unwrap_or_else(now_ns),
        };
        if let Some(parent) = r.parent_key {
            batch.put(CACHE_PARENTS, parent_index_key(&parent, &e.key), Vec::new());
        }
        batch.put(CACHE, e.key.as_bytes().to_vec(), record::encode(&r));
        self.kv.write(batch, Durability::Sync)?;
        Ok(())
    }

    /// Up to `limit` entries after `after`, only children of `parent` when given, and no
    /// more than fit in [`super::LIST_PAGE_BYTES`] (at least one): a page of entries with
    /// large preimages or configs must still fit a response.
    pub fn list_cache_entries(
        &self,
        parent: Option<&Digest>,
        after: Option<Digest>,
        limit: usize,
    ) -> Result<CachePage> {
        self.list_cache_entries_within(parent, after, limit, super::LIST_PAGE_BYTES)
    }

    /// [`Store::list_cache_entries`] of pages of at most `page_bytes` (about; at least one
    /// entry).
    pub fn list_cache_entries_within(
        &self,
        parent: Option<&Digest>,
        after: Option<Digest>,
        limit: usize,
        page_bytes: usize,
    ) -> Result<CachePage> {
        let limit = limit.max(1);
        let mut page = CachePage {
            budget: page_bytes,
            ..CachePage::default()
        };
        match parent {
            Some(parent) => {
                let prefix = parent.as_bytes().to_vec();
                let start = after
                    .map(|a| next_key(&parent_index_key(parent, &a)))
                    .unwrap_or_default();
                let keys = self.kv.scan(CACHE_PARENTS, &prefix, &start, limit + 1)?;
                for (k, _) in keys.iter().take(limit) {
                    let key = digest_from_key(&k[32..])?;
                    // an index entry without its entry is skipped (it cannot arise: both are
                    // written and deleted in one batch)
                    match self.get_cache_entry(&key) {
                        Ok(e) => {
                            if !page.fits(&e) {
                                page.next_after = page.entries.last().map(|e| e.key);
                                return Ok(page);
                            }
                            page.push(e);
                        }
                        Err(LayerStoreError::CacheEntryNotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                if keys.len() > limit {
                    page.next_after = keys
                        .get(limit - 1)
                        .map(|(k, _)| digest_from_key(&k[32..]))
                        .transpose()?;
                }
            }
            None => {
                let start = after.map(|a| next_key(a.as_bytes())).unwrap_or_default();
                let rows = self.kv.scan(CACHE, b"", &start, limit + 1)?;
                for (k, v) in rows.iter().take(limit) {
                    let key = digest_from_key(k)?;
                    let e = entry(key, record::decode(|| format!("cache entry {key}"), v)?);
                    if !page.fits(&e) {
                        page.next_after = page.entries.last().map(|e| e.key);
                        return Ok(page);
                    }
                    page.push(e);
                }
                if rows.len() > limit {
                    page.next_after = page.entries.last().map(|e| e.key);
                }
            }
        }
        Ok(page)
    }

    /// Every entry's key and layer.
    pub(super) fn all_cache_entries(&self) -> Result<Vec<CacheEntry>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_cache_entries(None, after, 1000)?;
            out.extend(page.entries);
            match page.next_after {
                Some(a) => after = Some(a),
                None => return Ok(out),
            }
        }
    }

    /// Removes every cache entry; returns how many there were.
    pub(super) fn prune_cache(&self, dry_run: bool) -> Result<u64> {
        let _guard = lock(&self.records);
        let entries = self.all_cache_entries()?;
        if !dry_run && !entries.is_empty() {
            let mut batch = WriteBatch::new();
            for e in &entries {
                batch.delete(CACHE, e.key.as_bytes().to_vec());
                if let Some(p) = e.parent_key {
                    batch.delete(CACHE_PARENTS, parent_index_key(&p, &e.key));
                }
            }
            self.kv.write(batch, Durability::Sync)?;
        }
        Ok(entries.len() as u64)
    }
}

/// What makes an entry well formed: its preimage is JSON (the canonical encoding its key
/// was computed from) and its config an image config, a JSON object; when the config lists
/// its layers (`rootfs.diff_ids`) and the entry has a layer, that layer is the last of them
/// (the step's result). An entry without a layer is valid (a step that changed no file).
fn check_entry(e: &CacheEntry) -> Result<()> {
    let invalid = |field, reason: String| LayerStoreError::InvalidField { field, reason };
    serde_json::from_str::<serde::de::IgnoredAny>(&e.preimage).map_err(|err| {
        invalid(
            "entry.preimage",
            format!("the key's preimage must be JSON: {err}"),
        )
    })?;
    let config: serde_json::Value = serde_json::from_str(&e.config).map_err(|err| {
        invalid(
            "entry.config",
            format!("the step's image config must be JSON: {err}"),
        )
    })?;
    let Some(config) = config.as_object() else {
        return Err(invalid(
            "entry.config",
            "the step's image config must be a JSON object".into(),
        ));
    };
    if let Some(layer) = e.layer_digest
        && let Some(diff_ids) = config
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(|d| d.as_array())
        && diff_ids.last().and_then(|d| d.as_str()) != Some(layer.to_string().as_str())
    {
        return Err(invalid(
            "entry.layer_digest",
            format!("{layer} is not the last layer the entry's config lists (rootfs.diff_ids)"),
        ));
    }
    Ok(())
}

fn parent_index_key(parent: &Digest, key: &Digest) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(parent.as_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

fn lease_gone(e: LayerStoreError, id: &str) -> LayerStoreError {
    match e {
        LayerStoreError::LeaseNotFound(_) => LayerStoreError::LeaseGone(id.to_string()),
        other => other,
    }
}
