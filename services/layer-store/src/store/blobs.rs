//! Committed blobs: stat, list, delete, ranged read.

use std::{collections::BTreeMap, sync::Arc};

use strata_kv::{Durability, WriteBatch};
use strata_types::Digest;
use tracing::{info, warn};

use super::{BLOBS, GROUPS, Store, chunk, metadata, next_key, record, write::group_bytes};
use crate::error::{LayerStoreError, Result};

/// A blob's record as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Commit time, ns since the epoch.
    pub created_ns: i64,
}

impl BlobInfo {
    pub(super) fn new(digest: Digest, r: record::BlobRecord) -> Self {
        Self {
            digest,
            size: r.size,
            media_type: r.media_type,
            labels: r.labels,
            created_ns: r.created_ns,
        }
    }

    /// The info within today's metadata bounds: a record written before they existed may
    /// carry a media type or labels of any size, which a listing must not (its pages must
    /// fit a message). Such a record is listed with its media type cut to the bound and
    /// without labels (StatBlob still shows it whole).
    fn bounded(mut self) -> Self {
        if metadata::within_bounds(&self.media_type, &self.labels) {
            return self;
        }
        warn!(digest = %self.digest, media_type_bytes = self.media_type.len(), labels = self.labels.len(), "a blob record exceeds the metadata bounds: listed with its media type cut and without its labels");
        let mut end = self.media_type.len().min(metadata::MAX_MEDIA_TYPE);
        while !self.media_type.is_char_boundary(end) {
            end -= 1;
        }
        self.media_type.truncate(end);
        self.media_type.retain(|c| !c.is_control());
        self.labels.clear();
        self
    }

    /// About what the info takes encoded in a ListBlobs page (an upper bound: field tags,
    /// lengths and the timestamp counted generously).
    fn encoded_estimate(&self) -> usize {
        128 + self.media_type.len()
            + self
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + 16)
                .sum::<usize>()
    }
}

/// Most bytes of blob records one ListBlobs page carries: half the 4 MiB a gRPC client
/// accepts by default, so a page fits any client whatever the page size asked for.
pub const LIST_PAGE_BYTES: usize = 2 << 20;

/// What ListBlobs selects.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this media type.
    pub media_type: Option<String>,
    /// Only blobs with all these labels.
    pub labels: BTreeMap<String, String>,
}

/// A page of blobs.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// The blobs, in digest order.
    pub blobs: Vec<BlobInfo>,
    /// The digest to continue after, when there may be more.
    pub next_after: Option<Digest>,
}

impl Store {
    pub(super) fn load_blob(&self, digest: &Digest) -> Result<Option<record::BlobRecord>> {
        self.kv
            .get(BLOBS, digest.as_bytes())?
            .map(|v| record::decode(|| format!("blob record {digest}"), &v))
            .transpose()
    }

    /// A blob's record.
    pub fn stat(&self, digest: &Digest) -> Result<BlobInfo> {
        let r = self
            .load_blob(digest)?
            .ok_or(LayerStoreError::BlobNotFound(*digest))?;
        Ok(BlobInfo::new(*digest, r))
    }

    /// Up to `limit` blobs after `after` (exclusive) that pass `filter`, and no more than
    /// fit in [`LIST_PAGE_BYTES`] (at least one).
    pub fn list(
        &self,
        filter: &ListFilter,
        after: Option<Digest>,
        limit: usize,
    ) -> Result<ListPage> {
        self.list_within(filter, after, limit, LIST_PAGE_BYTES)
    }

    /// [`Store::list`] of pages of at most `page_bytes` (about; at least one blob): a server
    /// whose messages are smaller than [`LIST_PAGE_BYTES`] cuts its pages to fit them.
    pub fn list_within(
        &self,
        filter: &ListFilter,
        after: Option<Digest>,
        limit: usize,
        page_bytes: usize,
    ) -> Result<ListPage> {
        let limit = limit.max(1);
        let mut start = after.map(|d| next_key(d.as_bytes())).unwrap_or_default();
        let mut page = ListPage::default();
        let mut bytes = 0;
        loop {
            let batch = self.kv.scan(BLOBS, b"", &start, 512)?;
            let exhausted = batch.len() < 512;
            if let Some((last, _)) = batch.last() {
                start = next_key(last);
            }
            for (key, value) in batch {
                let digest = digest_from_key(&key)?;
                let r: record::BlobRecord =
                    record::decode(|| format!("blob record {digest}"), &value)?;
                if filter
                    .media_type
                    .as_ref()
                    .is_some_and(|m| *m != r.media_type)
                    || !filter
                        .labels
                        .iter()
                        .all(|(k, v)| r.labels.get(k) == Some(v))
                {
                    continue;
                }
                let info = BlobInfo::new(digest, r).bounded();
                let size = info.encoded_estimate();
                if let Some(last) = page.blobs.last()
                    && bytes + size > page_bytes
                {
                    page.next_after = Some(last.digest);
                    return Ok(page);
                }
                bytes += size;
                page.blobs.push(info);
                if page.blobs.len() == limit {
                    page.next_after = Some(digest);
                    return Ok(page);
                }
            }
            if exhausted {
                return Ok(page);
            }
        }
    }

    /// Every blob record, in digest order (for GC, usage and verify).
    pub(super) fn all_blobs(&self) -> Result<Vec<(Digest, record::BlobRecord)>> {
        let mut out = Vec::new();
        let mut start = Vec::new();
        loop {
            let batch = self.kv.scan(BLOBS, b"", &start, 1024)?;
            let Some((last, _)) = batch.last() else { break };
            start = next_key(last);
            for (key, value) in batch {
                let digest = digest_from_key(&key)?;
                out.push((
                    digest,
                    record::decode(|| format!("blob record {digest}"), &value)?,
                ));
            }
        }
        Ok(out)
    }

    /// Deletes a blob and its content.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let _stripe = self.stripe(digest);
        let r = self
            .load_blob(digest)?
            .ok_or(LayerStoreError::BlobNotFound(*digest))?;
        self.delete_locked(digest, &r)?;
        info!(digest = %digest, size = r.size, "blob deleted");
        Ok(())
    }

    /// Deletes a blob whose stripe the caller holds.
    pub(super) fn delete_locked(&self, digest: &Digest, r: &record::BlobRecord) -> Result<()> {
        let group = group_bytes(&r.group)?;
        let mut batch = WriteBatch::new();
        batch.delete(BLOBS, digest.as_bytes().to_vec());
        chunk::delete_group(&mut batch, &group, Some(r.chunk_count()));
        batch.delete(GROUPS, group.clone());
        let _shared = self.groups_shared();
        self.kv.write(batch, Durability::Sync)?;
        chunk::reclaim_group(self.kv.as_ref(), &group);
        Ok(())
    }

    /// A reader of `length` bytes (0: to the end) from `offset` of a blob, one chunk at a
    /// time, each checked against its checksum.
    pub fn reader(
        self: &Arc<Self>,
        digest: &Digest,
        offset: u64,
        length: u64,
    ) -> Result<BlobReader> {
        let r = self
            .load_blob(digest)?
            .ok_or(LayerStoreError::BlobNotFound(*digest))?;
        let end = if length == 0 {
            r.size
        } else {
            offset.saturating_add(length)
        };
        if offset > r.size || end > r.size {
            return Err(LayerStoreError::RangeOutOfBounds {
                digest: *digest,
                size: r.size,
                offset,
                length,
            });
        }
        Ok(BlobReader {
            store: self.clone(),
            digest: *digest,
            group: group_bytes(&r.group)?,
            chunk_size: r.chunk_size,
            pos: offset,
            end,
        })
    }

    /// The whole content of a small blob (for GC's reading of manifests).
    pub(super) fn read_all(self: &Arc<Self>, digest: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for part in self.reader(digest, 0, 0)? {
            out.extend_from_slice(&part?);
        }
        Ok(out)
    }
}

/// Reads a range of a blob chunk by chunk; yields at most one chunk's bytes per item.
#[derive(Debug)]
pub struct BlobReader {
    store: Arc<Store>,
    digest: Digest,
    group: Vec<u8>,
    chunk_size: u64,
    pos: u64,
    end: u64,
}

impl BlobReader {
    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }
}

impl Iterator for BlobReader {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let index = self.pos / self.chunk_size;
        let data = match chunk::read(self.store.kv.as_ref(), &self.group, index) {
            Err(e) => {
                self.pos = self.end;
                return Some(Err(e.into()));
            }
            Ok(Err(fault)) => {
                self.pos = self.end;
                return Some(Err(LayerStoreError::CorruptBlob {
                    digest: self.digest.to_string(),
                    reason: format!("chunk {index} {fault}"),
                }));
            }
            Ok(Ok(data)) => data,
        };
        let chunk_start = index * self.chunk_size;
        let from = (self.pos - chunk_start) as usize;
        let to = ((self.end - chunk_start) as usize).min(data.len());
        if from >= to {
            self.pos = self.end;
            return Some(Err(LayerStoreError::CorruptBlob {
                digest: self.digest.to_string(),
                reason: format!("chunk {index} is shorter than the record says"),
            }));
        }
        self.pos = chunk_start + to as u64;
        Some(Ok(if from == 0 && to == data.len() {
            data
        } else {
            data[from..to].to_vec()
        }))
    }
}

/// A digest from a `blobs` key.
pub(super) fn digest_from_key(key: &[u8]) -> Result<Digest> {
    let bytes: [u8; 32] = key.try_into().map_err(|_| LayerStoreError::CorruptRecord {
        what: "blob key".into(),
        reason: format!("{} bytes, expected 32", key.len()),
    })?;
    Ok(Digest::from_bytes(bytes))
}
