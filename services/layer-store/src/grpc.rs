//! The thin gRPC adapter: parses requests (every digest through `Digest::parse`, errors
//! naming the field), runs the store's blocking work on `spawn_blocking` threads, and maps
//! results back to messages.

use std::{collections::BTreeMap, pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use strata_proto::{
    layer_store::{self as pb, layer_store_server::LayerStore, write_blob_request::Part},
    tag_index::{ListTagsRequest, tag_index_client::TagIndexClient},
};

use strata_server::{client::Transport, local_feed::LocalFeed};
use strata_types::Digest;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    error::LayerStoreError,
    store::{self, Feed, Store, parse_digest},
};

/// Messages buffered between the network and the blocking writer or reader (each up to a
/// chunk): this bounds a stream's memory. Two keep both sides busy (one fills while the
/// other drains); four cost a large build ~2 MiB more peak memory per stream and were no
/// faster.
const STREAM_BUFFER: usize = 2;
/// Largest ReadBlob message (a quarter of the default 1 MiB chunk): a reader must buffer a
/// whole message before decoding it.
const READ_MESSAGE: usize = 256 << 10;
/// What a message holds besides its payload, at most (field tags, lengths, a page token).
const MESSAGE_MARGIN: usize = 512;

/// The layer-store service.
#[derive(Clone)]
pub struct LayerStoreService {
    store: Arc<Store>,
    tag_index: Option<(String, Transport)>,
    /// The largest message the server sends (`--max-message-bytes`): reads and list pages
    /// are cut to fit it.
    message_limit: usize,
}

impl std::fmt::Debug for LayerStoreService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerStoreService")
            .field("store", &self.store)
            .field("tag_index", &self.tag_index.as_ref().map(|(a, _)| a))
            .finish()
    }
}

impl LayerStoreService {
    /// A service over `store`; `tag_index`: where to learn tag roots for GC and usage.
    pub fn new(store: Arc<Store>, tag_index: Option<(String, Transport)>) -> Self {
        Self {
            store,
            tag_index,
            message_limit: usize::MAX,
        }
    }

    /// The same service, sending no message over `limit` bytes.
    pub fn with_message_limit(self, limit: usize) -> Self {
        Self {
            message_limit: limit,
            ..self
        }
    }

    /// Bytes of content or records a message may carry: the limit less room for framing
    /// and the fields around them.
    fn payload_limit(&self, most: usize) -> usize {
        most.min(self.message_limit.saturating_sub(MESSAGE_MARGIN))
            .max(1)
    }

    /// The same service, learning tag roots from `tag_index` (named `label` in messages).
    pub fn with_tag_index(self, label: String, tag_index: Transport) -> Self {
        Self {
            tag_index: Some((label, tag_index)),
            ..self
        }
    }

    /// The store behind the service.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Every tag's digest, when a tag index is configured. Any failure is an error: GC must
    /// not run with roots missing.
    async fn tag_roots(&self) -> Result<Vec<Digest>, LayerStoreError> {
        Ok(self.tags().await?.into_iter().map(|(_, d)| d).collect())
    }

    /// Every tag's name and digest, when a tag index is configured (none otherwise).
    async fn tags(&self) -> Result<Vec<(String, Digest)>, LayerStoreError> {
        let Some((addr, channel)) = &self.tag_index else {
            return Ok(Vec::new());
        };
        let unavailable = |reason: String| LayerStoreError::TagIndexUnavailable {
            addr: addr.to_string(),
            reason,
        };
        let mut client = TagIndexClient::new(channel.clone());
        let mut digests = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_tags(ListTagsRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|s| unavailable(format!("{:?}: {}", s.code(), s.message())))?
                .into_inner();
            for tag in page.tags {
                let d = Digest::parse(&tag.digest).map_err(|e| {
                    unavailable(format!("tag {} holds an invalid digest: {e}", tag.name))
                })?;
                digests.push((tag.name, d));
            }
            if page.next_page_token.is_empty() || page.next_page_token == token {
                return Ok(digests);
            }
            token = page.next_page_token;
        }
    }
}

/// Runs blocking store work off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LayerStoreError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Status::from),
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            Err(Status::internal(format!("internal task failed: {e}")))
        }
    }
}

fn timestamp(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

fn digests(field: &str, values: &[String]) -> Result<Vec<Digest>, Status> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| parse_digest(&format!("{field}[{i}]"), v).map_err(Status::from))
        .collect()
}

fn optional_digest(field: &str, value: &str) -> Result<Option<Digest>, Status> {
    if value.is_empty() {
        Ok(None)
    } else {
        Ok(Some(parse_digest(field, value)?))
    }
}

fn page_size(requested: u32) -> usize {
    match requested {
        0 => 100,
        n => n.min(1000) as usize,
    }
}

fn page_token(token: &str) -> Result<Option<Digest>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    Digest::parse(&format!("sha256:{token}"))
        .map(Some)
        .map_err(|_| {
            Status::invalid_argument(format!(
                "invalid page_token {token:?}: pass next_page_token unchanged"
            ))
        })
}

fn non_negative(field: &'static str, v: i64) -> Result<u64, Status> {
    u64::try_from(v).map_err(|_| {
        LayerStoreError::InvalidField {
            field,
            reason: format!("{v} is negative"),
        }
        .into()
    })
}

fn write_start(s: pb::WriteStart) -> Result<store::WriteStart, Status> {
    let expected_size = match s.expected_size {
        -1 => None,
        n => Some(non_negative("start.expected_size", n).map_err(|_| {
            Status::from(LayerStoreError::InvalidField {
                field: "start.expected_size",
                reason: format!("{n}: give the size in bytes, or -1 when unknown"),
            })
        })?),
    };
    Ok(store::WriteStart {
        expected_digest: optional_digest("start.expected_digest", &s.expected_digest)?,
        expected_size,
        media_type: s.media_type,
        labels: s.labels.into_iter().collect(),
        upload_id: (!s.upload_id.is_empty()).then_some(s.upload_id),
        offset: non_negative("start.offset", s.offset)?,
        client_upload_id: (!s.client_upload_id.is_empty()).then_some(s.client_upload_id),
    })
}

fn blob_info(b: store::BlobInfo) -> pb::BlobInfo {
    pb::BlobInfo {
        digest: b.digest.to_string(),
        size: b.size as i64,
        media_type: b.media_type,
        labels: b.labels.into_iter().collect(),
        created_at: Some(timestamp(b.created_ns)),
    }
}

fn cache_entry(e: store::CacheEntry) -> pb::CacheEntry {
    pb::CacheEntry {
        key: e.key.to_string(),
        preimage: e.preimage,
        layer_digest: e.layer_digest.map(|d| d.to_string()).unwrap_or_default(),
        config: e.config.into_bytes(),
        created_at: Some(timestamp(e.created_ns)),
        parent_key: e.parent_key.map(|d| d.to_string()).unwrap_or_default(),
        layer_size: 0,
    }
}

fn lease(l: store::Lease) -> pb::Lease {
    pb::Lease {
        id: l.id,
        expires_at: Some(timestamp(l.expires_ns)),
        digests: l.digests.iter().map(ToString::to_string).collect(),
        labels: l.labels.into_iter().collect(),
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadBlobResponse, Status>> + Send>>;

#[tonic::async_trait]
impl LayerStore for LayerStoreService {
    async fn write_blob(
        &self,
        request: Request<tonic::Streaming<pb::WriteBlobRequest>>,
    ) -> Result<Response<pb::WriteBlobResponse>, Status> {
        // a client in this process hands the bytes over in memory (taken before the first
        // message is read, or its stream takes them)
        let local = LocalFeed::<bytes::Bytes>::take_from(&request);
        // tonic tells a stream the client cancelled as a clean end: whether the body failed
        // says which it was (a cancel after the last message read would commit a partial
        // blob)
        let body_end = request
            .extensions()
            .get::<strata_server::BodyEnd>()
            .cloned();
        let mut stream = request.into_inner();
        let start = match stream.message().await?.and_then(|m| m.part) {
            Some(Part::Start(s)) => write_start(s)?,
            _ => {
                return Err(Status::invalid_argument(
                    "the first WriteBlob message must carry start (what is being written)",
                ));
            }
        };
        // The network side only forwards messages; hashing, chunking and RocksDB writes run on
        // one blocking thread, fed through a bounded channel so a slow disk slows the client
        // instead of filling memory.
        let (tx, mut rx) = mpsc::channel::<Feed>(STREAM_BUFFER);
        let store = self.store.clone();
        let writer = tokio::task::spawn_blocking(move || {
            store.ingest(start, std::iter::from_fn(move || rx.blocking_recv()))
        });
        let broken: Option<Status> = if let Some((feed, mut pieces)) = local {
            loop {
                match pieces.recv().await {
                    Some(data) => {
                        if tx.send(Feed::Data(data)).await.is_err() {
                            break None;
                        }
                    }
                    None if feed.is_finished() => {
                        let _ = tx.send(Feed::End).await;
                        break None;
                    }
                    None => break Some(Status::cancelled("the client abandoned the write")),
                }
            }
        } else {
            loop {
                match stream.message().await {
                    Ok(Some(pb::WriteBlobRequest {
                        part: Some(Part::Data(data)),
                    })) => {
                        if tx.send(Feed::Data(data)).await.is_err() {
                            break None; // the writer stopped: it has the answer
                        }
                    }
                    Ok(Some(pb::WriteBlobRequest {
                        part: Some(Part::Start(_)),
                    })) => {
                        break Some(Status::invalid_argument(
                            "start may only be the first message of a WriteBlob stream",
                        ));
                    }
                    Ok(Some(pb::WriteBlobRequest { part: None })) => {}
                    Ok(None)
                        if body_end
                            .as_ref()
                            .is_some_and(strata_server::BodyEnd::broken) =>
                    {
                        break Some(Status::cancelled("the client cancelled the write"));
                    }
                    Ok(None) => {
                        let _ = tx.send(Feed::End).await;
                        break None;
                    }
                    Err(status) => break Some(status),
                }
            }
        };
        drop(tx); // without End: the writer sees a broken stream
        let outcome = match writer.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "blob writer failed");
                return Err(Status::internal(format!("blob writer failed: {e}")));
            }
        };
        match (outcome, broken) {
            (Ok(o), _) => Ok(Response::new(pb::WriteBlobResponse {
                digest: o.digest.to_string(),
                size: o.size as i64,
                already_existed: o.already_existed,
                upload_id: o.upload_id,
            })),
            (Err(LayerStoreError::StreamBroken(_)), Some(status)) => Err(status),
            (Err(e), _) => Err(e.into()),
        }
    }

    async fn get_upload(
        &self,
        request: Request<pb::GetUploadRequest>,
    ) -> Result<Response<pb::UploadStatus>, Status> {
        let id = request.into_inner().upload_id;
        let store = self.store.clone();
        let s = blocking(move || store.upload_status(&id)).await?;
        Ok(Response::new(pb::UploadStatus {
            upload_id: s.upload_id,
            offset: s.offset as i64,
            updated_at: Some(timestamp(s.updated_ns)),
        }))
    }

    async fn abort_upload(
        &self,
        request: Request<pb::AbortUploadRequest>,
    ) -> Result<Response<pb::AbortUploadResponse>, Status> {
        let id = request.into_inner().upload_id;
        let store = self.store.clone();
        blocking(move || store.abort_upload(&id)).await?;
        Ok(Response::new(pb::AbortUploadResponse {}))
    }

    type ReadBlobStream = ReadStream;

    async fn read_blob(
        &self,
        request: Request<pb::ReadBlobRequest>,
    ) -> Result<Response<Self::ReadBlobStream>, Status> {
        let r = request.into_inner();
        let digest = parse_digest("digest", &r.digest)?;
        let offset = non_negative("offset", r.offset)?;
        let length = non_negative("length", r.length)?;
        let store = self.store.clone();
        let reader = blocking(move || store.reader(&digest, offset, length)).await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let piece_bytes = self.payload_limit(READ_MESSAGE);
        tokio::task::spawn_blocking(move || {
            for part in reader {
                let data = match part {
                    Ok(data) => bytes::Bytes::from(data),
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::from(e)));
                        break;
                    }
                };
                // a chunk goes out in slices of READ_MESSAGE (no copy), or less when the
                // server's messages are smaller: the reader's decode buffer, which must hold a
                // whole message, stays small
                for at in (0..data.len()).step_by(piece_bytes) {
                    let piece = data.slice(at..data.len().min(at + piece_bytes));
                    if tx
                        .blocking_send(Ok(pb::ReadBlobResponse { data: piece }))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn stat_blob(
        &self,
        request: Request<pb::StatBlobRequest>,
    ) -> Result<Response<pb::BlobInfo>, Status> {
        let request = request.into_inner();
        let digest = parse_digest("digest", &request.digest)?;
        if !request.lease_id.is_empty() {
            // a read-modify-write of the lease record: to the pool
            let store = self.store.clone();
            let info = blocking(move || store.stat_leased(&digest, &request.lease_id)).await?;
            return Ok(Response::new(blob_info(info)));
        }
        // A stat is one point get of a small record (memtable or block cache, about a
        // microsecond), less than a hand-off to the blocking pool costs; the tag index serves
        // ResolveTag the same way. Scans and content go to the pool.
        let info = self.store.stat(&digest)?;
        Ok(Response::new(blob_info(info)))
    }

    async fn list_blobs(
        &self,
        request: Request<pb::ListBlobsRequest>,
    ) -> Result<Response<pb::ListBlobsResponse>, Status> {
        let r = request.into_inner();
        let filter = store::ListFilter {
            media_type: (!r.media_type.is_empty()).then_some(r.media_type),
            labels: r.labels.into_iter().collect::<BTreeMap<_, _>>(),
        };
        let after = page_token(&r.page_token)?;
        let limit = page_size(r.page_size);
        let store = self.store.clone();
        let page_bytes = self.payload_limit(store::LIST_PAGE_BYTES);
        let page = blocking(move || store.list_within(&filter, after, limit, page_bytes)).await?;
        Ok(Response::new(pb::ListBlobsResponse {
            blobs: page.blobs.into_iter().map(blob_info).collect(),
            next_page_token: page.next_after.map(|d| d.hex()).unwrap_or_default(),
        }))
    }

    async fn delete_blob(
        &self,
        request: Request<pb::DeleteBlobRequest>,
    ) -> Result<Response<pb::DeleteBlobResponse>, Status> {
        let digest = parse_digest("digest", &request.into_inner().digest)?;
        // as a GC does: begin before asking the tag index, so a tag moved meanwhile has its
        // target confirmed under the guard (or its lease still live when the leases are read)
        let guard = self.store.begin_gc().await;
        let tags = self.tags().await?;
        blocking(move || guard.delete_unreferenced(&digest, &tags)).await?;
        Ok(Response::new(pb::DeleteBlobResponse {}))
    }

    async fn get_cache_entry(
        &self,
        request: Request<pb::GetCacheEntryRequest>,
    ) -> Result<Response<pb::CacheEntry>, Status> {
        let request = request.into_inner();
        let key = parse_digest("key", &request.key)?;
        let store = self.store.clone();
        let lease = (!request.lease_id.is_empty()).then_some(request.lease_id);
        let (e, size) = blocking(move || store.take_cache_entry(&key, lease.as_deref())).await?;
        let mut entry = cache_entry(e);
        entry.layer_size = size as i64;
        Ok(Response::new(entry))
    }

    async fn put_cache_entry(
        &self,
        request: Request<pb::PutCacheEntryRequest>,
    ) -> Result<Response<pb::PutCacheEntryResponse>, Status> {
        let Some(e) = request.into_inner().entry else {
            return Err(Status::invalid_argument("entry is required"));
        };
        let entry = store::CacheEntry {
            key: parse_digest("entry.key", &e.key)?,
            preimage: e.preimage,
            layer_digest: optional_digest("entry.layer_digest", &e.layer_digest)?,
            config: String::from_utf8(e.config).map_err(|_| {
                Status::invalid_argument(
                    "invalid entry.config: the image config must be UTF-8 JSON",
                )
            })?,
            parent_key: optional_digest("entry.parent_key", &e.parent_key)?,
            created_ns: 0,
        };
        let store = self.store.clone();
        blocking(move || store.put_cache_entry(entry)).await?;
        Ok(Response::new(pb::PutCacheEntryResponse {}))
    }

    async fn list_cache_entries(
        &self,
        request: Request<pb::ListCacheEntriesRequest>,
    ) -> Result<Response<pb::ListCacheEntriesResponse>, Status> {
        let r = request.into_inner();
        let parent = optional_digest("parent_key", &r.parent_key)?;
        let after = page_token(&r.page_token)?;
        let limit = page_size(r.page_size);
        let store = self.store.clone();
        let page_bytes = self.payload_limit(store::LIST_PAGE_BYTES);
        let page = blocking(move || {
            store.list_cache_entries_within(parent.as_ref(), after, limit, page_bytes)
        })
        .await?;
        Ok(Response::new(pb::ListCacheEntriesResponse {
            entries: page.entries.into_iter().map(cache_entry).collect(),
            next_page_token: page.next_after.map(|d| d.hex()).unwrap_or_default(),
        }))
    }

    async fn create_lease(
        &self,
        request: Request<pb::CreateLeaseRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let r = request.into_inner();
        let ttl = lease_ttl(r.ttl_seconds);
        let store = self.store.clone();
        let l = blocking(move || store.create_lease(&r.id, ttl, r.labels.into_iter().collect()))
            .await?;
        Ok(Response::new(lease(l)))
    }

    async fn add_lease_resources(
        &self,
        request: Request<pb::AddLeaseResourcesRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let r = request.into_inner();
        let ds = digests("digests", &r.digests)?;
        let store = self.store.clone();
        let l = blocking(move || store.add_lease_resources(&r.id, &ds)).await?;
        Ok(Response::new(lease(l)))
    }

    async fn extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let r = request.into_inner();
        let ttl = lease_ttl(r.ttl_seconds);
        let store = self.store.clone();
        let l = blocking(move || store.extend_lease(&r.id, ttl)).await?;
        Ok(Response::new(lease(l)))
    }

    async fn delete_lease(
        &self,
        request: Request<pb::DeleteLeaseRequest>,
    ) -> Result<Response<pb::DeleteLeaseResponse>, Status> {
        let id = request.into_inner().id;
        let store = self.store.clone();
        blocking(move || store.delete_lease(&id)).await?;
        Ok(Response::new(pb::DeleteLeaseResponse {}))
    }

    async fn list_leases(
        &self,
        _request: Request<pb::ListLeasesRequest>,
    ) -> Result<Response<pb::ListLeasesResponse>, Status> {
        let store = self.store.clone();
        let leases = blocking(move || store.list_leases()).await?;
        Ok(Response::new(pb::ListLeasesResponse {
            leases: leases.into_iter().map(lease).collect(),
        }))
    }

    async fn collect_garbage(
        &self,
        request: Request<pb::CollectGarbageRequest>,
    ) -> Result<Response<pb::CollectGarbageResponse>, Status> {
        let r = request.into_inner();
        let mut roots = digests("roots", &r.roots)?;
        // begin before asking the tag index, so whatever is written meanwhile is kept
        let guard = self.store.begin_gc().await;
        roots.extend(self.tag_roots().await?);
        let req = store::GcRequest {
            dry_run: r.dry_run,
            roots,
            prune_cache: r.prune_cache,
        };
        let report = blocking(move || guard.collect(&req)).await?;
        Ok(Response::new(pb::CollectGarbageResponse {
            removed: report.removed.iter().map(ToString::to_string).collect(),
            bytes_freed: report.bytes_freed as i64,
            kept: report.kept as i64,
            uploads_swept: report.uploads_swept as i64,
            cache_entries_removed: report.cache_entries_removed as i64,
        }))
    }

    async fn verify_blobs(
        &self,
        request: Request<pb::VerifyBlobsRequest>,
    ) -> Result<Response<pb::VerifyBlobsResponse>, Status> {
        let ds = digests("digests", &request.into_inner().digests)?;
        let store = self.store.clone();
        let report = blocking(move || store.verify(&ds)).await?;
        Ok(Response::new(pb::VerifyBlobsResponse {
            checked: report.checked as i64,
            bytes: report.bytes as i64,
            corrupt: report
                .corrupt
                .into_iter()
                .map(|c| pb::CorruptBlob {
                    digest: c.digest.to_string(),
                    reason: c.reason,
                })
                .collect(),
        }))
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::Usage>, Status> {
        let roots = digests("roots", &request.into_inner().roots)?;
        let pinned = self.tag_roots().await?;
        let store = self.store.clone();
        let u = blocking(move || store.usage(&roots, &pinned)).await?;
        Ok(Response::new(pb::Usage {
            kinds: u
                .kinds
                .into_iter()
                .map(|k| pb::UsageByKind {
                    kind: k.kind.to_string(),
                    count: k.count as i64,
                    bytes: k.bytes as i64,
                })
                .collect(),
            unique_bytes: u.unique_bytes as i64,
            shared_bytes: u.shared_bytes as i64,
            reclaimable_bytes: u.reclaimable_bytes as i64,
            cache_entries: u.cache_entries as i64,
            cache_bytes: u.cache_bytes as i64,
        }))
    }
}

/// A lease's lifetime as CreateLease and ExtendLease give it: seconds, 0 meaning an hour.
fn lease_ttl(seconds: u32) -> Duration {
    Duration::from_secs(match seconds {
        0 => 3600,
        n => u64::from(n),
    })
}
