//! The image store as the transfer code sees it: the layer store (blobs) and the tag index
//! (names), both reached over gRPC, plus the blocking adapters that let tar and compression
//! code stream blobs without holding them in memory.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
};

use bytes::Bytes;
use futures::StreamExt;
use strata_image::{ImageConfig, Manifest, Timestamp};
use strata_proto::{
    layer_store::{
        BlobInfo, DeleteBlobRequest, ListBlobsRequest, ReadBlobRequest, StatBlobRequest,
        WriteBlobRequest, WriteBlobResponse, WriteStart, layer_store_client::LayerStoreClient,
        write_blob_request::Part,
    },
    tag_index::{
        ListTagsRequest, ResolveTagRequest, SetTagRequest, Tag, tag_index_client::TagIndexClient,
    },
};
use strata_server::{client::Transport, local_feed::LocalFeed};
use strata_types::{Digest, Reference, media_type};
use tokio::{sync::mpsc, task::JoinHandle};
use tonic::Code;

use crate::{Result, TransferError};

/// Largest manifest, index or config strata reads (distribution.md §5.5: 4 MiB).
pub const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Size of the chunks streamed to and from the layer store.
pub const CHUNK: usize = 1024 * 1024;

/// An image as the store holds it: manifest and config, raw bytes and parsed.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// Digest of the manifest (what tags point at).
    pub manifest_digest: Digest,
    /// The manifest bytes.
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The config bytes.
    pub config_bytes: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfig,
}

impl StoredImage {
    /// The image ID as Docker shows it: `sha256:<config digest hex>`.
    pub fn id(&self) -> String {
        self.manifest.config.digest.clone()
    }

    /// Uncompressed size of each layer, base first (local manifests list uncompressed tars).
    pub fn layer_sizes(&self) -> Vec<i64> {
        self.manifest.layers.iter().map(|l| l.size).collect()
    }
}

/// How the name a user typed named an image (see [`ImageStore::lookup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedBy {
    /// An existing tag, in full (`docker.io/library/app:1`).
    Tag(Reference),
    /// `NAME@sha256:…`: the repository `NAME` (no tag), with the image's local manifest
    /// digest or a repo digest recorded for that repository (what a push or pull printed).
    Digest(Reference),
    /// A manifest digest or an image ID (`sha256:…`), or a unique prefix of an image ID.
    Id,
}

/// An image found by name, and how the name named it.
#[derive(Debug, Clone)]
pub struct Found {
    /// The image.
    pub image: StoredImage,
    /// How the name named it.
    pub named_by: NamedBy,
}

/// Blobs and tags over one gRPC channel.
#[derive(Debug, Clone)]
pub struct ImageStore {
    blobs: LayerStoreClient<Transport>,
    tags: TagIndexClient<Transport>,
}

/// A blob being written from blocking code: bytes go through [`Write`]; [`BlobWriter::finish`]
/// ends the stream and waits for the store's verdict. Dropping it without `finish` aborts the
/// write, so nothing partial is ever committed.
#[derive(Debug)]
pub struct BlobWriter {
    tx: Option<mpsc::Sender<Bytes>>,
    buf: Vec<u8>,
    feed: LocalFeed<Bytes>,
    task: Option<JoinHandle<Result<WriteBlobResponse>>>,
    runtime: tokio::runtime::Handle,
}

impl Write for BlobWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BlobWriter {
    /// `write_all` of bytes it may keep: a piece that starts a chunk is sent without a copy.
    pub fn write_vec(&mut self, data: Vec<u8>) -> std::io::Result<()> {
        if self.buf.is_empty() {
            self.buf = data;
        } else {
            self.buf.extend_from_slice(&data);
        }
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| std::io::Error::other("blob writer closed"))?;
        if tx.blocking_send(chunk.into()).is_err() {
            // The call ended early: its error says why.
            self.tx = None;
            let err = self
                .task
                .take()
                .map(|t| self.runtime.block_on(t))
                .and_then(|r| r.ok())
                .and_then(|r| r.err())
                .map_or_else(
                    || "the layer store ended the write early".to_string(),
                    |e| e.to_string(),
                );
            return Err(std::io::Error::other(err));
        }
        Ok(())
    }

    fn finish_inner(&mut self) -> Result<WriteBlobResponse> {
        self.feed.finish();
        self.tx = None;
        let task = self
            .task
            .take()
            .ok_or_else(|| TransferError::invalid("blob write", "already finished"))?;
        self.runtime
            .block_on(task)
            .map_err(|e| TransferError::invalid("blob write", format!("task failed: {e}")))?
    }

    /// Sends what is buffered, ends the stream and returns the store's answer (blocking).
    pub fn finish(mut self) -> Result<WriteBlobResponse> {
        self.send()
            .map_err(|e| TransferError::from_io("failed to write a blob", e))?;
        self.finish_inner()
    }

    /// Aborts the write: the call is cancelled before the stream ends, so the store commits
    /// nothing.
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.tx = None;
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A blob being read from blocking code, chunk by chunk.
#[derive(Debug)]
pub struct BlobReader {
    rx: mpsc::Receiver<Result<Bytes>>,
    current: Bytes,
}

impl BlobReader {
    /// A reader over chunks sent on a channel (by an async producer).
    pub fn from_channel(rx: mpsc::Receiver<Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }

    /// The next chunk as the store sent it (blocking; call from blocking code): no copy.
    pub fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        if !self.current.is_empty() {
            return Some(Ok(std::mem::take(&mut self.current)));
        }
        self.rx.blocking_recv()
    }
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

impl ImageStore {
    /// Clients over `channel` (the CLI's connection, or any server with both services).
    pub fn new(channel: Transport) -> Self {
        Self {
            blobs: LayerStoreClient::new(channel.clone())
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            tags: TagIndexClient::new(channel),
        }
    }

    /// Over clients a caller already holds (the executor's peers), which may reach the two
    /// services at different addresses.
    pub fn from_clients(
        blobs: LayerStoreClient<Transport>,
        tags: TagIndexClient<Transport>,
    ) -> Self {
        Self {
            blobs: blobs
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            tags,
        }
    }

    /// Starts a streaming write; call from async code, write from a blocking thread.
    pub fn start_write(&self, start: WriteStart) -> BlobWriter {
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let mut client = self.blobs.clone();
        let what = if start.expected_digest.is_empty() {
            "new blob".to_string()
        } else {
            start.expected_digest.clone()
        };
        // The pieces go to a layer store in this process in memory, or as messages after the
        // start message. The call ends cleanly (and the store commits) only after `finish`;
        // a writer dropped or aborted without it leaves the call hanging until it is
        // cancelled, which the store treats as a broken upload.
        let feed = LocalFeed::new(rx);
        let request = feed.request(
            WriteBlobRequest {
                part: Some(Part::Start(start)),
            },
            |data| WriteBlobRequest {
                part: Some(Part::Data(data)),
            },
        );
        let task = tokio::spawn(async move {
            client
                .write_blob(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| TransferError::service(format!("failed to store {what}"), s))
        });
        BlobWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
            feed,
            task: Some(task),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Stores a small blob held in memory, verified against `digest` when given.
    pub async fn put_bytes(
        &self,
        bytes: Vec<u8>,
        media_type: &str,
        digest: Option<&Digest>,
    ) -> Result<WriteBlobResponse> {
        let expected = digest.map(Digest::to_string).unwrap_or_default();
        let size = bytes.len() as i64;
        let mut messages = vec![WriteBlobRequest {
            part: Some(Part::Start(WriteStart {
                expected_digest: expected.clone(),
                expected_size: size,
                media_type: media_type.to_string(),
                ..Default::default()
            })),
        }];
        // slices of one buffer: the messages share it instead of copying it
        let bytes = Bytes::from(bytes);
        for offset in (0..bytes.len()).step_by(CHUNK) {
            messages.push(WriteBlobRequest {
                part: Some(Part::Data(
                    bytes.slice(offset..(offset + CHUNK).min(bytes.len())),
                )),
            });
        }
        let what = if expected.is_empty() {
            media_type.to_string()
        } else {
            expected
        };
        self.blobs
            .clone()
            .write_blob(futures::stream::iter(messages))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| TransferError::service(format!("failed to store {what}"), s))
    }

    /// Stores a small labelled blob held in memory, verified against `digest`.
    pub async fn put_labelled(
        &self,
        bytes: Vec<u8>,
        media_type: &str,
        digest: &Digest,
        labels: BTreeMap<String, String>,
    ) -> Result<WriteBlobResponse> {
        let start = WriteStart {
            expected_digest: digest.to_string(),
            expected_size: bytes.len() as i64,
            media_type: media_type.to_string(),
            labels: labels.into_iter().collect(),
            ..Default::default()
        };
        let mut messages = vec![WriteBlobRequest {
            part: Some(Part::Start(start)),
        }];
        messages.push(WriteBlobRequest {
            part: Some(Part::Data(bytes.into())),
        });
        self.blobs
            .clone()
            .write_blob(futures::stream::iter(messages))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| TransferError::service(format!("failed to store {digest}"), s))
    }

    /// Reads a whole blob of at most `limit` bytes into memory, verifying its digest.
    pub async fn read_bytes(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let info = self.stat(digest).await?.ok_or_else(|| {
            TransferError::NoSuchImage(format!("blob {digest} is not in the store"))
        })?;
        if info.size as u64 > limit {
            return Err(TransferError::invalid(
                format!("blob {digest}"),
                format!(
                    "{} bytes is more than the {limit} bytes allowed for a document",
                    info.size
                ),
            ));
        }
        let mut stream = self
            .blobs
            .clone()
            .read_blob(ReadBlobRequest {
                digest: digest.to_string(),
                offset: 0,
                length: 0,
            })
            .await
            .map_err(|s| TransferError::service(format!("failed to read {digest}"), s))?
            .into_inner();
        let mut out = Vec::with_capacity(info.size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|s| TransferError::service(format!("failed to read {digest}"), s))?;
            out.extend_from_slice(&chunk.data);
            if out.len() as u64 > limit {
                return Err(TransferError::invalid(
                    format!("blob {digest}"),
                    "larger than announced",
                ));
            }
        }
        let actual = Digest::of(&out);
        if actual != *digest {
            return Err(TransferError::DigestMismatch {
                what: format!("stored blob {digest}"),
                expected: *digest,
                actual,
            });
        }
        Ok(out)
    }

    /// Opens a blob for reading from blocking code (call from async code).
    pub fn reader(&self, digest: &Digest) -> BlobReader {
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(8);
        let mut client = self.blobs.clone();
        let digest = *digest;
        tokio::spawn(async move {
            let response = client
                .read_blob(ReadBlobRequest {
                    digest: digest.to_string(),
                    offset: 0,
                    length: 0,
                })
                .await;
            let mut stream = match response {
                Ok(r) => r.into_inner(),
                Err(s) => {
                    let _ = tx
                        .send(Err(TransferError::service(
                            format!("failed to read {digest}"),
                            s,
                        )))
                        .await;
                    return;
                }
            };
            while let Some(chunk) = stream.next().await {
                let item = chunk
                    .map(|c| c.data)
                    .map_err(|s| TransferError::service(format!("failed to read {digest}"), s));
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        BlobReader {
            rx,
            current: Bytes::new(),
        }
    }

    /// A blob's record, `None` when absent.
    pub async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        match self
            .blobs
            .clone()
            .stat_blob(StatBlobRequest {
                digest: digest.to_string(),
                ..Default::default()
            })
            .await
        {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(TransferError::service(
                format!("failed to look up {digest}"),
                s,
            )),
        }
    }

    /// Deletes a blob (used to take back what a failed load stored); absent is fine.
    pub async fn delete(&self, digest: &Digest) -> Result<()> {
        match self
            .blobs
            .clone()
            .delete_blob(DeleteBlobRequest {
                digest: digest.to_string(),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(TransferError::service(
                format!("failed to delete {digest}"),
                s,
            )),
        }
    }

    /// Every blob of a media type carrying these labels.
    pub async fn list_blobs(
        &self,
        media_type: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<BlobInfo>> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .blobs
                .clone()
                .list_blobs(ListBlobsRequest {
                    media_type: media_type.to_string(),
                    labels: labels.clone().into_iter().collect(),
                    page_size: 1000,
                    page_token: page_token.clone(),
                })
                .await
                .map_err(|s| TransferError::service("failed to list blobs", s))?
                .into_inner();
            out.extend(page.blobs);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = page.next_page_token;
        }
    }

    /// Points a tag at a manifest; returns the previous target, if any.
    pub async fn set_tag(&self, name: &Reference, digest: &Digest) -> Result<Option<Digest>> {
        let r = self
            .tags
            .clone()
            .set_tag(SetTagRequest {
                name: name.to_string(),
                digest: digest.to_string(),
                expected_digest: None,
            })
            .await
            .map_err(|s| TransferError::service(format!("failed to tag {}", name.familiar()), s))?
            .into_inner();
        Ok(if r.previous_digest.is_empty() {
            None
        } else {
            Digest::parse(&r.previous_digest).ok()
        })
    }

    /// Where a tag points, `None` when it does not exist.
    pub async fn resolve_tag(&self, name: &Reference) -> Result<Option<Tag>> {
        match self
            .tags
            .clone()
            .resolve_tag(ResolveTagRequest {
                name: name.to_string(),
            })
            .await
        {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(TransferError::service(
                format!("failed to resolve {}", name.familiar()),
                s,
            )),
        }
    }

    /// Tags, filtered by repository and/or digest (empty = no filter).
    pub async fn list_tags(&self, repository: &str, digest: Option<&Digest>) -> Result<Vec<Tag>> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .tags
                .clone()
                .list_tags(ListTagsRequest {
                    prefix: String::new(),
                    repository: repository.to_string(),
                    digest: digest.map(Digest::to_string).unwrap_or_default(),
                    page_size: 1000,
                    page_token: page_token.clone(),
                })
                .await
                .map_err(|s| TransferError::service("failed to list tags", s))?
                .into_inner();
            out.extend(page.tags);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = page.next_page_token;
        }
    }

    /// Loads an image by its manifest digest.
    pub async fn image(&self, manifest_digest: &Digest) -> Result<StoredImage> {
        let manifest_bytes = self.read_bytes(manifest_digest, MAX_DOCUMENT_BYTES).await?;
        let manifest = Manifest::parse(&manifest_bytes)?;
        let config_digest = Digest::parse(&manifest.config.digest)?;
        let config_bytes = self.read_bytes(&config_digest, MAX_DOCUMENT_BYTES).await?;
        let config = ImageConfig::parse(&config_bytes)?;
        manifest.validate_against(&config)?;
        Ok(StoredImage {
            manifest_digest: *manifest_digest,
            manifest_bytes,
            manifest,
            config_bytes,
            config,
        })
    }

    /// Manifest digests of every image the store knows: tag targets and stored manifests.
    pub async fn all_manifests(&self) -> Result<BTreeSet<Digest>> {
        let mut out = BTreeSet::new();
        for t in self.list_tags("", None).await? {
            if let Ok(d) = Digest::parse(&t.digest) {
                out.insert(d);
            }
        }
        for mt in [media_type::OCI_MANIFEST, media_type::DOCKER_MANIFEST] {
            for b in self.list_blobs(mt, BTreeMap::new()).await? {
                if let Ok(d) = Digest::parse(&b.digest) {
                    out.insert(d);
                }
            }
        }
        Ok(out)
    }

    /// Resolves what a user typed: a tag (`busybox`, `app:v1`), `name@sha256:…` (the local
    /// manifest digest, or a repo digest recorded for that repository by a push or pull), a
    /// manifest digest, an image ID (`sha256:<config>`), or a unique prefix of an image ID.
    /// Tags win over ID prefixes, as in Docker. Every image the store holds is found, tagged
    /// or not, until garbage collection removes it.
    pub async fn resolve(&self, name: &str) -> Result<StoredImage> {
        Ok(self.lookup(name).await?.image)
    }

    /// [`ImageStore::resolve`], telling how the name named the image (`rmi` untags
    /// according to it).
    pub async fn lookup(&self, name: &str) -> Result<Found> {
        let by_id = |image| Found {
            image,
            named_by: NamedBy::Id,
        };
        if let Some(hex) = name.strip_prefix("sha256:") {
            if let Ok(d) = Digest::parse(name)
                && self.is_manifest(&d).await?
            {
                return self.image(&d).await.map(by_id);
            }
            return self.resolve_id_prefix(name, hex).await.map(by_id);
        }
        if let Ok(reference) = Reference::parse(name) {
            if let Some(d) = reference.digest() {
                let repository = Reference::parse_repository(&reference.name())?;
                let manifest = if self.is_manifest(d).await? {
                    Some(*d)
                } else {
                    crate::records::local_manifest(self, &repository, d).await?
                };
                let Some(manifest) = manifest else {
                    return Err(TransferError::NoSuchImage(name.to_string()));
                };
                return Ok(Found {
                    image: self.image(&manifest).await?,
                    named_by: NamedBy::Digest(repository),
                });
            }
            if let Some(tag) = self.resolve_tag(&reference).await? {
                return Ok(Found {
                    image: self.image(&Digest::parse(&tag.digest)?).await?,
                    named_by: NamedBy::Tag(reference),
                });
            }
        }
        if !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return self.resolve_id_prefix(name, name).await.map(by_id);
        }
        Err(TransferError::NoSuchImage(name.to_string()))
    }

    /// True when `digest` is a stored image manifest.
    pub async fn is_manifest(&self, digest: &Digest) -> Result<bool> {
        Ok(self
            .stat(digest)
            .await?
            .is_some_and(|i| media_type::is_manifest(&i.media_type)))
    }

    async fn resolve_id_prefix(&self, name: &str, hex: &str) -> Result<StoredImage> {
        let mut found: Vec<StoredImage> = Vec::new();
        for m in self.all_manifests().await? {
            let Ok(image) = self.image(&m).await else {
                continue;
            };
            let id_hex = image.id().trim_start_matches("sha256:").to_string();
            if id_hex.starts_with(hex) && !found.iter().any(|f| f.id() == image.id()) {
                found.push(image);
            }
        }
        match found.len() {
            0 => Err(TransferError::NoSuchImage(name.to_string())),
            1 => Ok(found.remove(0)),
            count => Err(TransferError::Ambiguous {
                prefix: name.to_string(),
                count,
            }),
        }
    }

    /// Familiar names of the tags pointing at a manifest, and the latest move among them.
    pub async fn tags_of(
        &self,
        manifest_digest: &Digest,
    ) -> Result<(Vec<String>, Option<Timestamp>)> {
        let tags = self.list_tags("", Some(manifest_digest)).await?;
        let last = tags
            .iter()
            .filter_map(|t| t.updated_at.as_ref())
            .map(|t| Timestamp {
                seconds: t.seconds,
                nanos: t.nanos.max(0) as u32,
            })
            .max();
        let mut names: Vec<String> = tags
            .iter()
            .map(|t| {
                if t.short_name.is_empty() {
                    t.name.clone()
                } else {
                    t.short_name.clone()
                }
            })
            .collect();
        names.sort();
        Ok((names, last))
    }
}
