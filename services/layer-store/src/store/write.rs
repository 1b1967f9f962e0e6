//! Writing blobs: upload sessions, chunking, hashing while writing, and the one synced
//! commit batch.
//!
//! A session's running sha256 lives in memory ([`LiveSession`]) at the offset of its last
//! stored chunk, so a resume in the same process continues hashing where it stopped. sha2's
//! state cannot be persisted, so after a restart a resume re-hashes the stored chunks once
//! (reading them back also proves they survived).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use bytes::Bytes;
use strata_kv::{BulkLoad, Durability, WriteBatch};
use strata_types::{Digest, Hasher, RunningHash};
use tracing::{debug, info};

use super::{BLOBS, CHUNKS, GROUPS, Store, UPLOADS, chunk, lock, now_ns, random_id, record};
use crate::error::{LayerStoreError, Result};

/// What a write announces.
#[derive(Debug, Clone, Default)]
pub struct WriteStart {
    /// The digest the bytes must have; `None`: computed and returned.
    pub expected_digest: Option<Digest>,
    /// The size the bytes must have; `None`: unknown.
    pub expected_size: Option<u64>,
    /// Media type to record.
    pub media_type: String,
    /// Labels to record.
    pub labels: BTreeMap<String, String>,
    /// Resume this session.
    pub upload_id: Option<String>,
    /// Where the data of this stream starts (resume only).
    pub offset: u64,
    /// Id for a new, resumable session.
    pub client_upload_id: Option<String>,
}

/// One item fed to [`Store::ingest`]. A feed that stops without [`Feed::End`] means the
/// client went away.
#[derive(Debug)]
pub enum Feed {
    /// The next bytes.
    Data(Bytes),
    /// The stream ended normally.
    End,
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// True when it was already present and nothing new was kept.
    pub already_existed: bool,
    /// The session used.
    pub upload_id: String,
}

/// What GetUpload reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// The session id.
    pub upload_id: String,
    /// Bytes held; a resume starts here.
    pub offset: u64,
    /// Last write, ns since the epoch.
    pub updated_ns: i64,
}

/// A session this process knows about.
pub(super) struct LiveSession {
    /// The session as it stands (persisted once it holds a chunk).
    pub record: record::SessionRecord,
    /// A stream is writing it now.
    pub busy: bool,
    /// The hash of the first `record.offset` bytes, when known.
    pub hasher: Option<Hasher>,
}

const MAX_UPLOAD_ID: usize = 128;

/// Chunks between checkpoints of a session: a crash loses at most this much progress of an
/// upload (a broken stream loses none: it checkpoints when it stops). A checkpoint waits for
/// a flush of the chunk space, so it must stay rare: at every 16 chunks the waits took 0.67 s
/// of a 6.3 s 1 GiB ingest.
const CHECKPOINT_CHUNKS: u64 = 256;

impl Store {
    /// Writes one blob from `feed`: hashes while it stores full chunks, commits only after
    /// size and digest check out. Every failure except a broken stream of a resumable session
    /// removes what the session stored.
    pub fn ingest(
        self: &Arc<Self>,
        start: WriteStart,
        feed: impl IntoIterator<Item = Feed>,
    ) -> Result<WriteOutcome> {
        let mut upload = match self.begin(start)? {
            Begin::Exists(outcome) => return Ok(outcome),
            Begin::Upload(u) => u,
        };
        for item in feed {
            match item {
                Feed::Data(data) => {
                    if let Err(e) = upload.write_bytes(data) {
                        upload.abort();
                        return Err(e);
                    }
                }
                Feed::End => return upload.finish(),
            }
        }
        let id = upload.id.clone();
        drop(upload); // keeps a resumable session, abandons another
        Err(LayerStoreError::StreamBroken(format!(
            "upload {id} ended without finishing"
        )))
    }

    /// Where an upload stands.
    pub fn upload_status(&self, upload_id: &str) -> Result<UploadStatus> {
        if let Some(live) = lock(&self.live).get(upload_id) {
            return Ok(UploadStatus {
                upload_id: upload_id.to_string(),
                offset: live.record.offset,
                updated_ns: live.record.updated_ns,
            });
        }
        let s = self
            .load_session(upload_id)?
            .ok_or_else(|| LayerStoreError::UploadNotFound(upload_id.to_string()))?;
        Ok(UploadStatus {
            upload_id: upload_id.to_string(),
            offset: s.offset,
            updated_ns: s.updated_ns,
        })
    }

    /// Abandons an upload and frees what it held.
    pub fn abort_upload(&self, upload_id: &str) -> Result<()> {
        let mut live = lock(&self.live);
        let record = match live.get(upload_id) {
            Some(l) if l.busy => return Err(LayerStoreError::UploadBusy(upload_id.to_string())),
            Some(l) => l.record.clone(),
            None => self
                .load_session(upload_id)?
                .ok_or_else(|| LayerStoreError::UploadNotFound(upload_id.to_string()))?,
        };
        self.discard_session(&mut live, upload_id, &record)
    }

    pub(super) fn load_session(&self, upload_id: &str) -> Result<Option<record::SessionRecord>> {
        self.kv
            .get(UPLOADS, upload_id.as_bytes())?
            .map(|v| record::decode(|| format!("upload session {upload_id}"), &v))
            .transpose()
    }

    /// Deletes a session and its chunks. Takes the live-session map locked, so no resume can
    /// load the session from storage while its chunks go (it would write into a deleted
    /// group).
    fn discard_session(
        &self,
        live: &mut HashMap<String, LiveSession>,
        upload_id: &str,
        record: &record::SessionRecord,
    ) -> Result<()> {
        live.remove(upload_id);
        let group = group_bytes(&record.group)?;
        let mut batch = WriteBatch::new();
        chunk::delete_group(&mut batch, &group, None);
        batch.delete(GROUPS, group.clone());
        batch.delete(UPLOADS, upload_id.as_bytes().to_vec());
        let _shared = self.groups_shared();
        self.kv.write(batch, Durability::Buffered)?;
        chunk::reclaim_group(self.kv.as_ref(), &group);
        debug!(upload_id, bytes = record.offset, "upload discarded");
        Ok(())
    }

    /// Sweeps sessions: those nobody can resume (store-chosen ids left by a crash, when
    /// `at_start`) and those untouched for longer than the TTL. Sessions a stream is writing
    /// are never touched. Returns how many.
    pub(super) fn sweep_uploads(&self, at_start: bool, dry_run: bool) -> Result<u64> {
        let now = now_ns();
        let ttl = self.settings.upload_ttl.as_nanos() as i64;
        let mut swept = 0;
        // persisted sessions
        let mut start = Vec::new();
        loop {
            let page = self.kv.scan(UPLOADS, b"", &start, 512)?;
            let Some((last, _)) = page.last() else { break };
            start = super::next_key(last);
            for (key, value) in page {
                let id = String::from_utf8_lossy(&key).into_owned();
                let s: record::SessionRecord =
                    record::decode(|| format!("upload session {id}"), &value)?;
                let mut live = lock(&self.live);
                let known = live.get(&id);
                if known.is_some_and(|l| l.busy) {
                    continue;
                }
                // a store-chosen session no stream is writing can never be resumed
                let orphaned = !s.resumable && (at_start || known.is_none());
                let stale = now.saturating_sub(s.updated_ns) > ttl;
                if !(stale || orphaned) {
                    continue;
                }
                // the page may be old: a commit may have removed the session since
                let Some(current) = self.load_session(&id)? else {
                    continue;
                };
                swept += 1;
                if !dry_run {
                    self.discard_session(&mut live, &id, &current)?;
                }
            }
        }
        // sessions only in memory (no chunk stored yet)
        let mut live = lock(&self.live);
        let stale: Vec<String> = live
            .iter()
            .filter(|(_, l)| {
                !l.busy && l.record.offset == 0 && now.saturating_sub(l.record.updated_ns) > ttl
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            swept += 1;
            if !dry_run {
                live.remove(&id);
            }
        }
        Ok(swept)
    }

    /// Digests announced by sessions in flight (GC keeps them).
    pub(super) fn in_flight_digests(&self) -> Vec<Digest> {
        lock(&self.live)
            .values()
            .filter_map(|l| l.record.expected_digest)
            .collect()
    }

    fn begin(self: &Arc<Self>, start: WriteStart) -> Result<Begin> {
        super::metadata::check_media_type("start.media_type", &start.media_type)?;
        super::metadata::check_labels("start.labels", &start.labels)?;
        match start.upload_id.clone() {
            Some(id) => self.resume(id, start),
            None => self.create(start),
        }
    }

    fn create(self: &Arc<Self>, start: WriteStart) -> Result<Begin> {
        if let Some(digest) = start.expected_digest {
            let _stripe = self.stripe(&digest);
            if let Some(existing) = self.load_blob(&digest)? {
                if let Some(size) = start.expected_size
                    && size != existing.size
                {
                    return Err(LayerStoreError::SizeMismatch {
                        expected: size,
                        actual: existing.size,
                    });
                }
                self.protect(digest);
                return Ok(Begin::Exists(WriteOutcome {
                    digest,
                    size: existing.size,
                    already_existed: true,
                    upload_id: String::new(),
                }));
            }
        }
        let (id, resumable) = match &start.client_upload_id {
            Some(id) => {
                validate_upload_id("start.client_upload_id", id)?;
                (id.clone(), true)
            }
            None => (random_id(), false),
        };
        let now = now_ns();
        let record = record::SessionRecord {
            group: random_id(),
            expected_digest: start.expected_digest,
            expected_size: start.expected_size,
            media_type: start.media_type,
            labels: start.labels,
            offset: 0,
            chunk_size: self.settings.chunk_size as u64,
            resumable,
            created_ns: now,
            updated_ns: now,
        };
        {
            let mut live = lock(&self.live);
            if live.contains_key(&id) || (resumable && self.load_session(&id)?.is_some()) {
                return Err(LayerStoreError::UploadExists(id));
            }
            live.insert(
                id.clone(),
                LiveSession {
                    record: record.clone(),
                    busy: true,
                    hasher: None,
                },
            );
        }
        Ok(Begin::Upload(Upload::new(
            self.clone(),
            id,
            record,
            Some(Hasher::new()),
        )?))
    }

    fn resume(self: &Arc<Self>, id: String, start: WriteStart) -> Result<Begin> {
        validate_upload_id("start.upload_id", &id)?;
        let (record, hasher) = {
            let mut live = lock(&self.live);
            match live.get_mut(&id) {
                Some(l) if l.busy => return Err(LayerStoreError::UploadBusy(id)),
                Some(l) => {
                    l.busy = true;
                    (l.record.clone(), l.hasher.take())
                }
                None => match self.load_session(&id)? {
                    Some(record) => {
                        live.insert(
                            id.clone(),
                            LiveSession {
                                record: record.clone(),
                                busy: true,
                                hasher: None,
                            },
                        );
                        (record, None)
                    }
                    // nothing was stored under this id: a resume from 0 is a fresh start
                    None if start.offset == 0 => {
                        drop(live);
                        return self.create(WriteStart {
                            upload_id: None,
                            client_upload_id: Some(id),
                            ..start
                        });
                    }
                    None => return Err(LayerStoreError::UploadNotFound(id)),
                },
            }
        };
        // from here on the session is ours: dropping `upload` releases it
        let mut upload = Upload::new(self.clone(), id.clone(), record, hasher)?;
        if start.offset != upload.record.offset {
            return Err(LayerStoreError::OffsetMismatch {
                upload_id: id,
                held: upload.record.offset,
                offset: start.offset,
            });
        }
        if let Some(d) = start.expected_digest
            && upload.record.expected_digest.is_some_and(|e| e != d)
        {
            return Err(LayerStoreError::InvalidField {
                field: "start.expected_digest",
                reason: format!("upload {id} was started for another digest"),
            });
        }
        // a resume need not repeat the announcement; proto3's default size 0 means "not
        // repeated" here (a 0-byte blob has nothing to resume)
        if let Some(s) = start.expected_size
            && s != 0
            && upload.record.expected_size.is_some_and(|e| e != s)
        {
            return Err(LayerStoreError::InvalidField {
                field: "start.expected_size",
                reason: format!("upload {id} was started with another size"),
            });
        }
        if !upload.hasher_in_step {
            upload.hash = RunningHash::new(self.rehash_session(&id, &upload.record)?);
            upload.hasher_in_step = true;
        }
        info!(upload_id = %id, offset = upload.record.offset, "upload resumed");
        Ok(Begin::Upload(upload))
    }

    /// Re-hashes a session's stored chunks (after a restart the running hash is gone).
    fn rehash_session(&self, id: &str, record: &record::SessionRecord) -> Result<Hasher> {
        let group = group_bytes(&record.group)?;
        let mut hasher = Hasher::new();
        for index in 0..record.offset / record.chunk_size {
            match chunk::read(self.kv.as_ref(), &group, index)? {
                Ok(data) => hasher.update(&data),
                Err(fault) => {
                    return Err(LayerStoreError::CorruptBlob {
                        digest: format!("upload {id}"),
                        reason: format!(
                            "stored chunk {index} {fault}; abort the upload and start over"
                        ),
                    });
                }
            }
        }
        Ok(hasher)
    }
}

#[allow(clippy::large_enum_variant)] // built once per write; boxing buys nothing
enum Begin {
    Exists(WriteOutcome),
    Upload(Upload),
}

/// A session being written by one stream.
struct Upload {
    store: Arc<Store>,
    id: String,
    record: record::SessionRecord,
    group: Vec<u8>,
    hash: RunningHash,
    /// Bytes received beyond `record.offset`, less than one chunk.
    buf: Vec<u8>,
    /// The hasher covers exactly `record.offset` bytes.
    hasher_in_step: bool,
    /// The session and its group are in storage.
    registered: bool,
    /// Chunks stored since the last checkpoint, past [`super::Settings::bulk_from`].
    bulk: Option<Box<dyn BulkLoad>>,
    /// Chunks went through the memtables since the last checkpoint (they need a flush).
    memtable_chunks: bool,
    done: bool,
}

impl Upload {
    /// Takes over a session marked busy in the live map; `hasher`: its running hash, when
    /// known.
    fn new(
        store: Arc<Store>,
        id: String,
        record: record::SessionRecord,
        hasher: Option<Hasher>,
    ) -> Result<Self> {
        let mut upload = Self {
            store,
            id,
            group: Vec::new(),
            hasher_in_step: hasher.is_some(),
            hash: RunningHash::new(hasher.unwrap_or_default()),
            record,
            buf: Vec::new(),
            bulk: None,
            memtable_chunks: false,
            done: false,
            registered: false,
        };
        upload.registered = upload.record.offset > 0;
        // on error, dropping `upload` releases the session
        upload.group = group_bytes(&upload.record.group)?;
        if upload.record.chunk_size == 0 {
            return Err(LayerStoreError::CorruptRecord {
                what: format!("upload session {}", upload.id),
                reason: "chunk size 0".into(),
            });
        }
        Ok(upload)
    }

    fn chunk_size(&self) -> usize {
        self.record.chunk_size as usize
    }

    fn received(&self) -> u64 {
        self.record.offset + self.buf.len() as u64
    }

    /// [`Upload::write`] of bytes it may keep: a whole chunk arriving at a chunk boundary is
    /// stored as it is, without a copy, when nothing else holds it (an in-process writer
    /// hands over what it allocated, with room for the trailer: `BlobWriter::write_vec`).
    fn write_bytes(&mut self, data: Bytes) -> Result<()> {
        if !self.buf.is_empty() || data.len() != self.chunk_size() {
            return self.write(&data);
        }
        self.check_room(data.len())?;
        self.buf = Vec::from(data);
        self.store_full_chunk()
    }

    /// Refuses `more` bytes past the size the write declared.
    fn check_room(&self, more: usize) -> Result<()> {
        if let Some(expected) = self.record.expected_size
            && self.received() + more as u64 > expected
        {
            return Err(LayerStoreError::TooManyBytes {
                expected,
                at: expected + 1,
            });
        }
        Ok(())
    }

    fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.check_room(data.len())?;
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.chunk_size() + chunk::TRAILER);
        }
        while !data.is_empty() {
            let room = self.chunk_size() - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.chunk_size() {
                self.store_full_chunk()?;
            }
        }
        Ok(())
    }

    /// Hashes and stores the full buffer as the next chunk.
    ///
    /// Chunks bypass the write-ahead log: logging them would write every byte twice (and
    /// checksum it twice more, with RocksDB's portable crc32c). Past `bulk_from` (by default
    /// from the first chunk) they go to the session's bulk load, a table file written once
    /// and ingested whole; before it, through the memtables without the log. The session and
    /// its group are registered with a synced write before the first chunk, so no chunk can
    /// outlive a crash without an owner; the session's offset is persisted only at
    /// checkpoints, after the bulk load's ingest (and a flush of memtable chunks) made the
    /// chunks before it durable, and the commit does the same before it writes the blob
    /// record. A crash thus loses at most the chunks since the last checkpoint.
    fn store_full_chunk(&mut self) -> Result<()> {
        // the next chunk's buffer is reserved when its first bytes are copied in: one handed
        // over whole needs none
        let data = std::mem::take(&mut self.buf);
        self.hasher_in_step = false;
        let index = self.record.offset / self.record.chunk_size;
        let key = chunk::key(&self.group, index);
        let len = data.len();
        let sealed = Bytes::from(chunk::seal(&key, data));
        self.hash.push(sealed.slice(..len));
        if !self.registered {
            let mut batch = WriteBatch::new();
            batch.put(
                GROUPS,
                self.group.clone(),
                format!("u:{}", self.id).into_bytes(),
            );
            batch.put(
                UPLOADS,
                self.id.as_bytes().to_vec(),
                record::encode(&self.record),
            );
            let _shared = self.store.groups_shared();
            self.store.kv.write(batch, Durability::Sync)?;
            self.registered = true;
        }
        if self.record.offset >= self.store.settings.bulk_from {
            let bulk = match &mut self.bulk {
                Some(b) => b,
                None => self.bulk.insert(self.store.kv.bulk(CHUNKS)?),
            };
            bulk.put(&key, &sealed)?;
        } else {
            let mut batch = WriteBatch::new();
            batch.put_shared(CHUNKS, key, sealed);
            self.store.kv.write(batch, Durability::Unlogged)?;
            self.memtable_chunks = true;
        }
        self.record.offset += self.record.chunk_size;
        self.record.updated_ns = now_ns();
        self.hasher_in_step = true;
        if let Some(l) = lock(&self.store.live).get_mut(&self.id) {
            l.record = self.record.clone();
        }
        if (index + 1).is_multiple_of(CHECKPOINT_CHUNKS) {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Makes the stored chunks durable and records the session's offset.
    fn checkpoint(&mut self) -> Result<()> {
        if !self.registered {
            return Ok(());
        }
        self.make_chunks_durable()?;
        self.store.kv.put(
            UPLOADS,
            self.id.as_bytes(),
            &record::encode(&self.record),
            Durability::Buffered,
        )?;
        Ok(())
    }

    /// Ingests the bulk load (durable once it returns) and flushes the chunks written
    /// through the memtables.
    fn make_chunks_durable(&mut self) -> Result<()> {
        if let Some(bulk) = self.bulk.take() {
            bulk.finish()?;
        }
        if std::mem::take(&mut self.memtable_chunks) {
            self.store.kv.flush(CHUNKS)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<WriteOutcome> {
        match self.try_finish() {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    fn try_finish(&mut self) -> Result<WriteOutcome> {
        let tail = std::mem::take(&mut self.buf);
        let size = self.record.offset + tail.len() as u64;
        let mut hasher = self.hash.take();
        self.hasher_in_step = false;
        hasher.update(&tail);
        let digest = hasher.finish();
        if let Some(expected) = self.record.expected_size
            && expected != size
        {
            return Err(LayerStoreError::SizeMismatch {
                expected,
                actual: size,
            });
        }
        if let Some(expected) = self.record.expected_digest
            && expected != digest
        {
            return Err(LayerStoreError::DigestMismatch {
                expected,
                actual: digest,
            });
        }
        let store = self.store.clone();
        let tail_key = chunk::key(&self.group, self.record.offset / self.record.chunk_size);
        let mut tail = (!tail.is_empty()).then(|| chunk::seal(&tail_key, tail));
        if let Some(bulk) = &mut self.bulk
            && let Some(sealed) = tail.take()
        {
            // with the chunks before it, not in the logged commit batch: a logged tail stays
            // in the write-ahead log, and is replayed into the memtables at every open, until
            // a flush (which bulk loads no longer cause)
            bulk.put(&tail_key, &sealed)?;
        }
        if self.record.offset > 0 {
            // the chunks written without the log must be durable before the record that
            // names them
            self.make_chunks_durable()?;
        }
        let _stripe = store.stripe(&digest);
        if let Some(existing) = store.load_blob(&digest)? {
            // another writer got there first: keep its copy, drop ours
            store.protect(digest);
            self.abort();
            return Ok(WriteOutcome {
                digest,
                size: existing.size,
                already_existed: true,
                upload_id: self.id.clone(),
            });
        }
        let mut batch = WriteBatch::new();
        if let Some(sealed) = tail {
            batch.put(CHUNKS, tail_key, sealed);
        }
        batch.put(
            GROUPS,
            self.group.clone(),
            format!("b:{}", digest.hex()).into_bytes(),
        );
        let blob = record::BlobRecord {
            size,
            media_type: self.record.media_type.clone(),
            labels: self.record.labels.clone(),
            created_ns: now_ns(),
            group: self.record.group.clone(),
            chunk_size: self.record.chunk_size,
        };
        batch.put(BLOBS, digest.as_bytes().to_vec(), record::encode(&blob));
        batch.delete(UPLOADS, self.id.as_bytes().to_vec());
        {
            let _shared = store.groups_shared();
            store.kv.write(batch, Durability::Sync)?;
        }
        store.protect(digest);
        self.done = true;
        lock(&store.live).remove(&self.id);
        info!(digest = %digest, size, media_type = %blob.media_type, upload_id = %self.id, "blob committed");
        Ok(WriteOutcome {
            digest,
            size,
            already_existed: false,
            upload_id: self.id.clone(),
        })
    }

    /// Removes the session and everything it stored.
    fn abort(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        // an unfinished bulk load leaves nothing behind
        self.bulk = None;
        let mut live = lock(&self.store.live);
        if let Err(e) = self
            .store
            .discard_session(&mut live, &self.id, &self.record)
        {
            // the sweep at start or in GC removes it later
            tracing::warn!(upload_id = %self.id, error = %e, "failed to discard an upload");
        }
    }
}

impl Drop for Upload {
    /// A stream that stopped without finishing: keep a resumable session (with its running
    /// hash when that is in step with what was stored), abandon any other.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if !self.record.resumable {
            self.abort();
            return;
        }
        if let Err(e) = self.checkpoint() {
            tracing::warn!(upload_id = %self.id, error = %e, "cannot checkpoint a paused upload");
            self.abort();
            return;
        }
        let mut live = lock(&self.store.live);
        if let Some(l) = live.get_mut(&self.id) {
            l.busy = false;
            l.record = self.record.clone();
            l.hasher = self.hasher_in_step.then(|| self.hash.take());
        }
        debug!(upload_id = %self.id, offset = self.record.offset, "upload paused");
    }
}

fn validate_upload_id(field: &'static str, id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_UPLOAD_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(LayerStoreError::InvalidField {
            field,
            reason: format!(
                "{id:?} must be 1 to {MAX_UPLOAD_ID} characters of A-Z a-z 0-9 . _ : -"
            ),
        });
    }
    Ok(())
}

/// A group id from its hex form in a record.
pub(super) fn group_bytes(group: &str) -> Result<Vec<u8>> {
    match hex::decode(group) {
        Ok(b) if b.len() == 16 => Ok(b),
        _ => Err(LayerStoreError::CorruptRecord {
            what: "chunk group id".into(),
            reason: format!("{group:?} is not 32 hex characters"),
        }),
    }
}
