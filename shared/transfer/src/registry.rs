//! `strata pull` and `strata push` over the OCI distribution API.
//!
//! **Pull**: manifest (an index picks linux/amd64, then the manifest by digest), config
//! (refused when it names another platform: a single-platform manifest is not picked),
//! then every layer the store lacks, streamed: the compressed bytes are hashed against the
//! descriptor's digest and size while they are decompressed into the layer store, whose
//! write is verified against the config's diff_id. A layer whose compressed digest does not
//! match is aborted before its write commits. The local image gets an OCI manifest over the
//! uncompressed layers (as every local image has); the digest the reference resolved to in the
//! registry (the index's, for a multi-arch image) is kept as a repo-digest record, and each layer's compressed descriptor as a compressed-layer record.
//! A pull by tag moves the tag; a pull by digest writes a digest reference instead
//! ([`records::add_digest_reference`]), which keeps the image as a tag would.
//!
//! **Push**: for each layer, a remembered compressed form the registry already holds is used
//! as is (HEAD); else one another repository of the same registry holds is mounted; else the
//! layer is compressed once with the pinned encoder (gzip level [`GZIP_LEVEL`] in
//! independent 1 MiB members, [`crate::blocked_gzip`], on every core; or zstd level
//! [`ZSTD_LEVEL`]) and streamed to the registry in one PATCH while it is hashed (or, for a
//! registry that refuses that, compressed again and sent in chunks with `Content-Range`),
//! and the result remembered. The same layer therefore always compresses to the same digest, and a
//! second push of an image uploads nothing. A pull inflates such a layer on every core too.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
};

use bytes::Bytes;
use futures::FutureExt;
use futures::StreamExt;
use strata_distribution::{BlobStream, ClientOptions, Registry, RegistryError};
use strata_image::{Descriptor, ImageConfig, Index, Manifest};
use strata_proto::layer_store::WriteStart;
use strata_types::{Digest, Hasher, Reference, RunningHash, media_type};
use tokio::sync::mpsc;

use crate::{
    Result, StoredImage, TransferError, records,
    store::{BlobReader, BlobWriter, ImageStore, MAX_DOCUMENT_BYTES},
};

/// gzip level of pushed layers (pinned: changing it changes every pushed digest).
pub const GZIP_LEVEL: u32 = 1;
/// zstd level of pushed layers (pinned likewise).
pub const ZSTD_LEVEL: i32 = 3;
/// Layers downloaded or uploaded at the same time.
pub const PARALLEL_LAYERS: usize = 3;

/// Layer compression for pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushCompression {
    /// gzip (every registry and client reads it).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

impl PushCompression {
    fn media_type(self) -> &'static str {
        match self {
            Self::Gzip => media_type::OCI_LAYER_GZIP,
            Self::Zstd => media_type::OCI_LAYER_ZSTD,
        }
    }
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The digest the reference resolves to in the registry (what `name@digest` names): for a
    /// multi-arch image the index's, not the platform manifest's.
    pub remote_digest: Digest,
    /// The local manifest.
    pub manifest_digest: Digest,
    /// `sha256:<config>`.
    pub image_id: String,
    /// Layers downloaded (the others were in the store already).
    pub downloaded: usize,
}

/// What a push sent.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The pushed manifest's digest.
    pub digest: Digest,
    /// Its size.
    pub size: usize,
    /// Blobs uploaded (0 when the registry had everything).
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
}

fn registry_for(reference: &Reference, push: bool, options: &ClientOptions) -> Result<Registry> {
    Ok(Registry::new(
        reference.registry(),
        reference.repository(),
        push,
        options.clone(),
    )?)
}

fn is_gzip(mt: &str) -> bool {
    mt.ends_with("+gzip") || mt.ends_with(".gzip")
}

fn is_zstd(mt: &str) -> bool {
    mt.ends_with("+zstd") || mt.ends_with(".zstd")
}

/// What a pull reports while it runs (see [`pull_with_progress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullProgress {
    /// The manifest was fetched: the image has `layers` layers.
    Resolved {
        /// The digest the reference resolves to in the registry (an index's, for a
        /// multi-arch image).
        remote_digest: Digest,
        /// How many layers the image has.
        layers: usize,
    },
    /// One layer is in the store.
    Layer {
        /// The layer's digest in the registry (its compressed form).
        digest: Digest,
        /// Its size in the registry, in bytes.
        size: u64,
        /// True when it was downloaded, false when the store held it already.
        downloaded: bool,
    },
}

/// Pulls `reference` (tag or digest) for linux/amd64 and tags it locally (by its name).
pub async fn pull(
    store: &ImageStore,
    reference: &Reference,
    options: &ClientOptions,
) -> Result<Pulled> {
    pull_with_progress(store, reference, options, &|_| {}).await
}

/// [`pull`], telling `progress` when the manifest is known and as each layer is stored.
pub async fn pull_with_progress(
    store: &ImageStore,
    reference: &Reference,
    options: &ClientOptions,
    progress: &(dyn Fn(PullProgress) + Send + Sync),
) -> Result<Pulled> {
    let registry = registry_for(reference, false, options)?;
    let wanted = reference
        .digest()
        .map(Digest::to_string)
        .or_else(|| reference.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".into());
    let mut fetched = registry.get_manifest(&wanted).await?;
    // What the tag (or digest) resolves to — the index of a multi-arch image, not the
    // platform manifest picked from it — is the repo digest (docker-archive.md §5), as
    // `docker pull` and `skopeo inspect` report it.
    let remote_digest = fetched.digest;
    let mut depth = 0;
    while media_type::is_index(&fetched.media_type) {
        depth += 1;
        if depth > 4 {
            return Err(TransferError::invalid(
                format!("index of {reference}"),
                "nested too deep",
            ));
        }
        let index = Index::parse(&fetched.bytes)?;
        let Some(pick) = index.select("linux", host_arch()) else {
            return Err(TransferError::invalid(
                format!("index of {reference}"),
                format!("no linux/{} image in it", host_arch()),
            ));
        };
        fetched = registry.get_manifest(&pick.digest.clone()).await?;
    }
    if !media_type::is_manifest(&fetched.media_type) {
        return Err(TransferError::Unsupported(format!(
            "{reference} is a {:?}, not an image manifest",
            fetched.media_type
        )));
    }
    let manifest = Manifest::parse(&fetched.bytes)?;
    let config_digest = Digest::parse(&manifest.config.digest)?;
    if manifest.config.size as u64 > MAX_DOCUMENT_BYTES {
        return Err(TransferError::invalid(
            "config",
            format!("{} bytes is more than 4 MiB", manifest.config.size),
        ));
    }
    let config_bytes = registry
        .get_small_blob(&config_digest, MAX_DOCUMENT_BYTES as usize)
        .await?;
    // the digest holds; the descriptor must state its length too
    if config_bytes.len() as i64 != manifest.config.size {
        return Err(TransferError::SizeMismatch {
            what: format!("config {config_digest}"),
            expected: manifest.config.size.max(0) as u64,
            actual: config_bytes.len() as u64,
        });
    }
    let config = ImageConfig::parse(&config_bytes)?;
    manifest.validate_against(&config)?;
    check_platform(reference, &config)?;
    progress(PullProgress::Resolved {
        remote_digest,
        layers: manifest.layers.len(),
    });

    let jobs: Vec<(Descriptor, Digest)> = manifest
        .layers
        .iter()
        .cloned()
        .zip(config.rootfs.diff_ids.iter())
        .map(|(d, id)| Digest::parse(id).map(|id| (d, id)))
        .collect::<std::result::Result<_, _>>()?;
    let results: Vec<Result<(Digest, u64, bool)>> =
        futures::stream::iter(jobs.into_iter().map(|(desc, diff_id)| {
            let registry = registry.clone();
            let store = store.clone();
            async move {
                let pulled = pull_layer(&store, &registry, &desc, &diff_id).await?;
                progress(PullProgress::Layer {
                    digest: Digest::parse(&desc.digest)?,
                    size: desc.size.max(0) as u64,
                    downloaded: pulled.2,
                });
                Ok(pulled)
            }
        }))
        .buffered(PARALLEL_LAYERS)
        .collect()
        .await;
    let mut layers = Vec::new();
    let mut downloaded = 0;
    for r in results {
        let (d, size, fetched) = r?;
        downloaded += usize::from(fetched);
        layers.push((d, size));
    }
    let manifest_digest =
        crate::import::store_documents(store, config_bytes.to_vec(), &config_digest, &layers)
            .await?;
    let repo = Reference::parse_repository(&reference.name())?;
    records::add_repo_digest(store, &manifest_digest, &repo, &remote_digest).await?;
    if reference.digest().is_some() {
        // Docker's digest reference: the image stays (a GC root) and is listed as
        // `REPO <none>` until `rmi REPO@DIGEST`, also when nothing needed downloading
        records::add_digest_reference(store, &manifest_digest, &repo, &remote_digest).await?;
    } else {
        store.set_tag(reference, &manifest_digest).await?;
    }
    Ok(Pulled {
        remote_digest,
        manifest_digest,
        image_id: config_digest.to_string(),
        downloaded,
    })
}

fn host_arch() -> &'static str {
    crate::import::host_architecture()
}

/// Refuses an image whose config names another platform than the one strata builds and
/// pulls (a single-platform manifest is not chosen by platform, so its config decides): an
/// arm64 image would otherwise be stored, and built on, as if it were this machine's.
/// A config that leaves os or architecture out is taken as it is.
fn check_platform(reference: &Reference, config: &ImageConfig) -> Result<()> {
    check_config_platform(&reference.familiar(), config)
}

/// [`check_platform`] for an image named `what` (a reference, an archive's entry).
pub(crate) fn check_config_platform(what: &str, config: &ImageConfig) -> Result<()> {
    let (os, arch) = (config.os.as_str(), config.architecture.as_str());
    if (os.is_empty() || os == "linux") && (arch.is_empty() || arch == host_arch()) {
        return Ok(());
    }
    let found = match config.variant.as_deref() {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    };
    Err(TransferError::Unsupported(format!(
        "{what} is a {found} image: strata stores and builds only linux/{} images",
        host_arch()
    )))
}

/// Downloads one layer into the store unless it is there; returns (diff_id, size, fetched).
async fn pull_layer(
    store: &ImageStore,
    registry: &Registry,
    desc: &Descriptor,
    diff_id: &Digest,
) -> Result<(Digest, u64, bool)> {
    // A layer the store holds is not downloaded again when this descriptor is known to be
    // it: its bytes are the layer's own, or a compressed form recorded for it (what a pull
    // or push verified). Another descriptor claiming the layer is downloaded and checked
    // against the diff_id all the same, without storing it again.
    let held = store.stat(diff_id).await?;
    if let Some(info) = &held {
        let known = desc.digest == diff_id.to_string()
            || records::compressed_forms(store, diff_id)
                .await?
                .iter()
                .any(|f| f.digest == desc.digest && f.size == desc.size);
        if known {
            return Ok((*diff_id, info.size as u64, false));
        }
    }
    if desc.media_type.contains("nondistributable") || desc.media_type.contains("foreign") {
        return Err(TransferError::Unsupported(format!(
            "layer {} is non-distributable ({})",
            desc.digest, desc.media_type
        )));
    }
    let digest = Digest::parse(&desc.digest)?;
    let mut response = registry.get_blob(&digest).await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes>>(16);
    let writer = if held.is_some() {
        LayerSink::Verify {
            hash: RunningHash::default(),
            expected: *diff_id,
            layer: desc.digest.clone(),
        }
    } else {
        LayerSink::Store(store.start_write(WriteStart {
            expected_digest: diff_id.to_string(),
            expected_size: -1,
            media_type: media_type::OCI_LAYER_TAR.to_string(),
            ..Default::default()
        }))
    };
    let expected_size = desc.size as u64;
    let mt = desc.media_type.clone();
    let decode = tokio::task::spawn_blocking(move || -> Result<(Digest, u64, u64)> {
        let mut raw = Counted::new(BlobReader::from_channel(rx));
        let copied = (|| -> std::io::Result<(Digest, u64, u64)> {
            let mut writer = writer;
            let n = if is_gzip(&mt) {
                // strata's blocked gzip inflates on every core; other gzip as a stream
                crate::blocked_gzip::decompress(&mut raw, &mut |piece| writer.write_vec(piece))?
            } else {
                let mut decoded: Box<dyn Read + '_> = if is_zstd(&mt) {
                    Box::new(zstd::stream::read::Decoder::new(&mut raw)?)
                } else {
                    // uncompressed, or an unknown type: trust the bytes, not the label
                    let (_, r) = crate::compression::decompressing_reader(&mut raw)?;
                    r
                };
                copy_large(&mut decoded, &mut writer)?
            };
            std::io::copy(&mut raw, &mut std::io::sink())?;
            let (raw_digest, raw_len) = raw.finish();
            // other bytes than the digest names, or the right bytes under a descriptor
            // that misstates their size: either way the layer is not what the manifest says
            let mismatch = if raw_digest != digest {
                Some(TransferError::DigestMismatch {
                    what: format!("layer {digest}"),
                    expected: digest,
                    actual: raw_digest,
                })
            } else if raw_len != expected_size {
                Some(TransferError::SizeMismatch {
                    what: format!("layer {digest}"),
                    expected: expected_size,
                    actual: raw_len,
                })
            } else {
                None
            };
            if let Some(mismatch) = mismatch {
                writer.abort();
                return Err(std::io::Error::other(mismatch));
            }
            writer.finish().map_err(std::io::Error::other)?;
            Ok((raw_digest, raw_len, n))
        })();
        copied.map_err(|e| TransferError::from_io(format!("failed to pull layer {digest}"), e))
    });
    // pump the HTTP body into the decoder
    let pump = async {
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    let err = RegistryError::Http {
                        context: format!("download of layer {digest} broke off"),
                        error: e,
                    };
                    let msg = err.to_string();
                    let _ = tx.send(Err(TransferError::Registry(err))).await;
                    return Err(TransferError::invalid(format!("layer {digest}"), msg));
                }
            }
        }
    };
    let pumped: Result<()> = pump.await;
    drop(tx);
    let decoded = decode
        .await
        .map_err(|e| TransferError::invalid("pull", format!("task failed: {e}")))?;
    pumped?;
    let (_, _, size) = decoded?;
    if is_gzip(&desc.media_type) || is_zstd(&desc.media_type) {
        records::add_compressed(store, diff_id, desc).await?;
        records::add_blob_location(store, &digest, registry.host(), registry.repository()).await?;
    }
    Ok((*diff_id, size, true))
}

/// Where a pulled layer's tar goes: into the store (which checks it against the diff_id), or,
/// when the store already holds that layer, only through a hash that checks it.
enum LayerSink {
    Store(BlobWriter),
    Verify {
        hash: RunningHash,
        expected: Digest,
        /// The compressed blob's digest, for the error.
        layer: String,
    },
}

impl LayerSink {
    fn write_vec(&mut self, piece: Vec<u8>) -> std::io::Result<()> {
        match self {
            Self::Store(w) => w.write_vec(piece),
            Self::Verify { hash, .. } => {
                hash.push(Bytes::from(piece));
                Ok(())
            }
        }
    }

    fn abort(self) {
        if let Self::Store(w) = self {
            w.abort();
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Self::Store(w) => w.finish().map(|_| ()),
            Self::Verify {
                mut hash,
                expected,
                layer,
            } => {
                let actual = hash.take().finish();
                if actual == expected {
                    Ok(())
                } else {
                    Err(TransferError::DigestMismatch {
                        what: format!("layer {layer} uncompressed (its diff_id)"),
                        expected,
                        actual,
                    })
                }
            }
        }
    }
}

impl Write for LayerSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Store(w) => w.write(data),
            Self::Verify { hash, .. } => {
                hash.push(Bytes::copy_from_slice(data));
                Ok(data.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `std::io::copy` with a large buffer: a decompressor asked for 8 KiB at a time (std's
/// buffer) spends more on calls than on inflating.
fn copy_large(r: &mut dyn Read, w: &mut dyn Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Hashes what passes through, on a thread of its own ([`RunningHash`]): the download's
/// chunks are gathered (shared, not copied) into runs of [`HASH_RUN`] bytes and handed over
/// together, so checking the compressed digest overlaps with decompressing.
struct Counted {
    inner: BlobReader,
    current: Bytes,
    run: Vec<Bytes>,
    run_len: usize,
    hash: RunningHash,
    len: u64,
}

const HASH_RUN: usize = 256 << 10;

impl Counted {
    fn new(inner: BlobReader) -> Self {
        Self {
            inner,
            current: Bytes::new(),
            run: Vec::new(),
            run_len: 0,
            hash: RunningHash::default(),
            len: 0,
        }
    }

    /// The digest and length of everything read.
    fn finish(&mut self) -> (Digest, u64) {
        let mut hasher = self.hash.take();
        for part in self.run.drain(..) {
            hasher.update(&part);
        }
        self.run_len = 0;
        (hasher.finish(), self.len)
    }
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.inner.next_chunk() {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    self.len += chunk.len() as u64;
                    self.run_len += chunk.len();
                    self.run.push(chunk.clone());
                    if self.run_len >= HASH_RUN {
                        self.hash.push_parts(std::mem::take(&mut self.run));
                        self.run_len = 0;
                    }
                    self.current = chunk;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Pushes a local image to `target` (which names registry, repository and tag).
pub async fn push(
    store: &ImageStore,
    image: &StoredImage,
    target: &Reference,
    compression: PushCompression,
    options: &ClientOptions,
) -> Result<Pushed> {
    // a manifest is pushed under a tag; its digest is what the push makes, not a name for it
    if target.digest().is_some() {
        return Err(TransferError::invalid(
            format!("push target {}", target.familiar()),
            "cannot push to a digest reference: name a tag (REPOSITORY[:TAG])",
        ));
    }
    // Repositories of the same registry that hold some of our layers: mount candidates.
    let mut mount_from: BTreeMap<Digest, String> = BTreeMap::new();
    let mut forms: Vec<Vec<Descriptor>> = Vec::new();
    for diff_id in &image.config.rootfs.diff_ids {
        let d = Digest::parse(diff_id)?;
        let known: Vec<Descriptor> = records::compressed_forms(store, &d)
            .await?
            .into_iter()
            .filter(|f| {
                f.media_type == compression.media_type()
                    || (compression == PushCompression::Gzip && is_gzip(&f.media_type))
            })
            .collect();
        for f in &known {
            if let Ok(fd) = Digest::parse(&f.digest) {
                for loc in records::blob_locations(store, &fd).await? {
                    if loc.0 == strata_distribution::api_host(target.registry())
                        && loc.1 != target.repository()
                    {
                        mount_from.insert(fd, loc.1.clone());
                    }
                }
            }
        }
        forms.push(known);
    }
    let mut options = options.clone();
    options.mount_from = mount_from
        .values()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let registry = registry_for(target, true, &options)?;
    registry.ping().await?;

    let mut uploaded = 0;
    let mut mounted = 0;
    let mut layer_descs = Vec::new();
    let jobs: Vec<_> = image
        .config
        .rootfs
        .diff_ids
        .iter()
        .zip(forms)
        .map(|(id, known)| (id.clone(), known))
        .collect();
    let results: Vec<Result<(Descriptor, u8)>> =
        futures::stream::iter(jobs.into_iter().map(|(diff_id, known)| {
            let registry = registry.clone();
            let store = store.clone();
            let mount_from = mount_from.clone();
            async move {
                push_layer(
                    &store,
                    &registry,
                    &Digest::parse(&diff_id)?,
                    known,
                    &mount_from,
                    compression,
                )
                .await
            }
        }))
        .buffered(PARALLEL_LAYERS)
        .collect()
        .await;
    for r in results {
        let (desc, how) = r?;
        match how {
            1 => uploaded += 1,
            2 => mounted += 1,
            _ => {}
        }
        layer_descs.push(desc);
    }
    let config_digest = Digest::parse(&image.id())?;
    if registry.blob_exists(&config_digest).await?.is_none() {
        registry
            .upload_bytes(&config_digest, Bytes::from(image.config_bytes.clone()))
            .await?;
        uploaded += 1;
    }
    let manifest = Manifest::oci(
        Descriptor::new(
            media_type::OCI_CONFIG,
            config_digest.to_string(),
            image.config_bytes.len() as i64,
        ),
        layer_descs,
    );
    let bytes = manifest.to_json();
    let size = bytes.len();
    let tag = target
        .digest()
        .map(Digest::to_string)
        .or_else(|| target.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".into());
    let digest = registry
        .put_manifest(&tag, bytes, media_type::OCI_MANIFEST)
        .await?;
    let repo = Reference::parse_repository(&target.name())?;
    records::add_repo_digest(store, &image.manifest_digest, &repo, &digest).await?;
    Ok(Pushed {
        digest,
        size,
        uploaded,
        mounted,
    })
}

/// Makes sure the registry has a compressed form of one layer; returns its descriptor and
/// 0 (already there), 1 (uploaded) or 2 (mounted).
async fn push_layer(
    store: &ImageStore,
    registry: &Registry,
    diff_id: &Digest,
    known: Vec<Descriptor>,
    mount_from: &BTreeMap<Digest, String>,
    compression: PushCompression,
) -> Result<(Descriptor, u8)> {
    // A form the repository holds first, whichever it is, then one to mount: mounting a
    // form pulled from elsewhere while the repository holds the one pushed before would
    // change the manifest, and so its digest, of an image pushed again unchanged.
    for form in &known {
        let d = Digest::parse(&form.digest)?;
        if registry.blob_exists(&d).await?.is_some() {
            return Ok((layer_descriptor(form), 0));
        }
    }
    for form in &known {
        let d = Digest::parse(&form.digest)?;
        if let Some(from) = mount_from.get(&d)
            && registry.mount_blob(&d, from).await?
        {
            records::add_blob_location(store, &d, registry.host(), registry.repository()).await?;
            return Ok((layer_descriptor(form), 2));
        }
    }
    // Compress (deterministically) while uploading; a registry that makes the upload start
    // over (chunked after refusing a streamed one) gets the same bytes from a second run.
    let size_cell = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let produce = || compressed_stream(store, diff_id, compression, size_cell.clone());
    let digest = registry.upload_stream(produce).await?;
    let size = *size_cell.lock().unwrap_or_else(|p| p.into_inner());
    let desc = Descriptor::new(compression.media_type(), digest.to_string(), size as i64);
    records::add_compressed(store, diff_id, &desc).await?;
    records::add_blob_location(store, &digest, registry.host(), registry.repository()).await?;
    Ok((desc, 1))
}

/// One run of a layer's compression, streamed as it is produced: the bytes, and their
/// digest once they are all out (their length then goes to `size`).
fn compressed_stream(
    store: &ImageStore,
    diff_id: &Digest,
    compression: PushCompression,
    size: std::sync::Arc<std::sync::Mutex<u64>>,
) -> BlobStream {
    let (tx, rx) = mpsc::channel::<std::result::Result<Bytes, std::io::Error>>(8);
    let reader = store.reader(diff_id);
    let diff_id = *diff_id;
    let compress = tokio::task::spawn_blocking(move || -> Result<(Digest, u64)> {
        let mut sink = ChannelWriter {
            tx,
            hasher: Hasher::new(),
            buf: Vec::with_capacity(1 << 20),
        };
        let mut reader = reader;
        let result = (|| -> std::io::Result<()> {
            match compression {
                PushCompression::Gzip => {
                    crate::blocked_gzip::compress(&mut reader, &mut sink, GZIP_LEVEL)?;
                }
                PushCompression::Zstd => {
                    let mut enc = zstd::stream::write::Encoder::new(&mut sink, ZSTD_LEVEL)?;
                    enc.include_checksum(false)?;
                    std::io::copy(&mut reader, &mut enc)?;
                    enc.finish()?;
                }
            }
            sink.flush_buf()
        })();
        if let Err(e) = result {
            let _ = sink
                .tx
                .blocking_send(Err(std::io::Error::other(e.to_string())));
            return Err(TransferError::from_io(
                format!("failed to compress layer {diff_id}"),
                e,
            ));
        }
        let len = sink.hasher.len();
        Ok((sink.hasher.finish(), len))
    });
    let digest = async move {
        let failed = |reason: String| RegistryError::Protocol {
            context: "compressing the layer".into(),
            reason,
        };
        match compress.await {
            Ok(Ok((d, n))) => {
                *size.lock().unwrap_or_else(|p| p.into_inner()) = n;
                Ok(d)
            }
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(e) => Err(failed(format!("compressor stopped: {e}"))),
        }
    };
    BlobStream {
        chunks: tokio_stream::wrappers::ReceiverStream::new(rx).boxed(),
        digest: digest.boxed(),
    }
}

/// The descriptor to push for a remembered compressed form, in the OCI family whatever
/// family it was pulled with (the bytes are the same).
fn layer_descriptor(form: &Descriptor) -> Descriptor {
    let mt = if is_zstd(&form.media_type) {
        media_type::OCI_LAYER_ZSTD
    } else {
        media_type::OCI_LAYER_GZIP
    };
    Descriptor::new(mt, form.digest.clone(), form.size)
}

/// Sends compressed bytes (in 1 MiB pieces) to the upload body, hashing them.
struct ChannelWriter {
    tx: mpsc::Sender<std::result::Result<Bytes, std::io::Error>>,
    hasher: Hasher,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn flush_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(1 << 20),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the registry upload ended early"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(data);
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 20 {
            self.flush_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
