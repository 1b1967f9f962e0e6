//! `strata load`: docker-archive tarballs in all three shapes of docker-archive.md (modern
//! OCI layout + `manifest.json`, containerd's with compressed layers, legacy `<v1id>/layer.tar`
//! directories with symlinked duplicates) and OCI image layouts (`index.json` with
//! `org.opencontainers.image.ref.name`), plain or gzip, zstd, bzip2 or xz compressed.
//!
//! One pass over the archive, never holding a layer in memory: small files (documents, at
//! most 4 MiB each) are kept, every larger file is decompressed into the layer store as it
//! streams by. A file named `blobs/sha256/<hex>` must hash to `<hex>` (checked before its
//! write is committed); every layer must decompress to the diff_id its config lists. Tags
//! move only after every image of the archive checked out; on failure, blobs this load
//! added are deleted again, and nothing is tagged.

use std::{
    collections::{BTreeMap, HashMap},
    io::Read,
};

use serde::Deserialize;
use strata_image::{ImageConfig, Index, Manifest};
use strata_proto::layer_store::WriteStart;
use strata_types::{Digest, Hasher, Reference, media_type};

use crate::{
    Result, TransferError,
    compression::{Compression, decompressing_reader},
    store::{ImageStore, MAX_DOCUMENT_BYTES},
};

/// Total bytes of small files an archive may hold (documents are small; this bounds memory).
pub const MAX_SMALL_TOTAL: u64 = 256 * 1024 * 1024;

/// One image a load stored.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// `sha256:<config digest>`.
    pub image_id: String,
    /// The local manifest.
    pub manifest_digest: Digest,
    /// Tags pointed at it.
    pub tags: Vec<Reference>,
    /// Tags that pointed at another image before: (tag, the old image's ID), what
    /// `docker load` reports as renaming the old image (docker-archive.md §4).
    pub moved: Vec<(Reference, String)>,
}

/// A file of the archive after the streaming pass.
#[derive(Debug, Clone)]
enum Entry {
    /// Kept in memory.
    Small(Vec<u8>),
    /// Decompressed into the store.
    Stored {
        /// sha256 of the decompressed bytes (what the store holds).
        diff_id: Digest,
        /// Decompressed size.
        size: u64,
    },
    /// A symlink or hardlink to another path of the archive (already resolved and clean).
    Link(String),
}

/// Normalises an archive path (`.`, `//` and `..` resolved lexically); refuses absolute
/// paths and any path that climbs above the archive's root.
fn clean_path(raw: &str) -> Result<String> {
    let mut parts: Vec<&str> = Vec::new();
    if raw.starts_with('/') {
        return Err(TransferError::invalid(
            "archive",
            format!("entry {raw:?} has an absolute path"),
        ));
    }
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(TransferError::invalid(
                        "archive",
                        format!("entry {raw:?} climbs out of the archive with \"..\""),
                    ));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// The digest a path claims, for `blobs/sha256/<hex>`.
fn claimed_digest(path: &str) -> Option<Digest> {
    path.strip_prefix("blobs/sha256/")
        .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
}

fn is_document_name(path: &str) -> bool {
    matches!(
        path,
        "manifest.json" | "index.json" | "oci-layout" | "repositories"
    ) || path.ends_with(".json")
        || path.ends_with("/json")
}

/// The streaming pass (blocking): the archive's files, and the blobs newly written (also
/// when it fails, so the caller can take them back).
fn scan(
    store: &ImageStore,
    input: Box<dyn Read + Send>,
) -> (Result<HashMap<String, Entry>>, Vec<Digest>) {
    let mut files = HashMap::new();
    let mut written = Vec::new();
    let result = scan_into(store, input, &mut files, &mut written);
    (result.map(|()| files), written)
}

fn scan_into(
    store: &ImageStore,
    input: Box<dyn Read + Send>,
    files: &mut HashMap<String, Entry>,
    written: &mut Vec<Digest>,
) -> Result<()> {
    let (_, reader) = decompressing_reader(input)
        .map_err(|e| TransferError::io("failed to read the archive", e))?;
    let mut archive = tar::Archive::new(reader);
    let mut small_total = 0u64;
    for entry in archive
        .entries()
        .map_err(|e| TransferError::io("failed to read the archive", e))?
    {
        let mut entry = entry.map_err(|e| TransferError::io("invalid archive entry", e))?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = clean_path(&raw_path)?;
        let kind = entry.header().entry_type();
        if path.is_empty() {
            continue;
        }
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let joined = if kind == tar::EntryType::Symlink {
                    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                    if target.starts_with('/') {
                        return Err(TransferError::invalid(
                            "archive",
                            format!("link {raw_path:?} points outside the archive"),
                        ));
                    }
                    if dir.is_empty() {
                        target.clone()
                    } else {
                        format!("{dir}/{target}")
                    }
                } else {
                    target.clone()
                };
                let resolved = clean_path(&joined).map_err(|_| {
                    TransferError::invalid(
                        "archive",
                        format!("link {raw_path:?} -> {target:?} points outside the archive"),
                    )
                })?;
                files.insert(path, Entry::Link(resolved));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                if size <= MAX_DOCUMENT_BYTES {
                    small_total += size;
                    if small_total > MAX_SMALL_TOTAL {
                        return Err(TransferError::invalid(
                            "archive",
                            format!("more than {} MiB of small files", MAX_SMALL_TOTAL >> 20),
                        ));
                    }
                    let mut buf = Vec::with_capacity(size as usize);
                    entry
                        .read_to_end(&mut buf)
                        .map_err(|e| TransferError::io(format!("failed to read {path}"), e))?;
                    files.insert(path, Entry::Small(buf));
                    continue;
                }
                if is_document_name(&path) {
                    return Err(TransferError::invalid(
                        path,
                        format!(
                            "{size} bytes is more than the {} MiB allowed for a document",
                            MAX_DOCUMENT_BYTES >> 20
                        ),
                    ));
                }
                let claimed = claimed_digest(&path);
                let stored = stream_layer(store, &mut entry, &path, claimed, written)?;
                files.insert(path, stored);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Hashes the raw bytes of a file while decompressing it into the store.
struct RawHash<'a, R> {
    inner: &'a mut R,
    hasher: Hasher,
}

impl<R: Read> Read for RawHash<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn stream_layer<R: Read>(
    store: &ImageStore,
    entry: &mut R,
    path: &str,
    claimed: Option<Digest>,
    written: &mut Vec<Digest>,
) -> Result<Entry> {
    let mut raw = RawHash {
        inner: entry,
        hasher: Hasher::new(),
    };
    let mut peek = [0u8; 8];
    let mut got = 0;
    while got < peek.len() {
        let n = raw
            .read(&mut peek[got..])
            .map_err(|e| TransferError::io(format!("failed to read {path}"), e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let compression = Compression::detect(&peek[..got]);
    let expected = match (compression, claimed) {
        (Compression::None, Some(d)) => d.to_string(),
        _ => String::new(),
    };
    let mut writer = store.start_write(WriteStart {
        expected_digest: expected,
        expected_size: -1,
        media_type: media_type::OCI_LAYER_TAR.to_string(),
        ..Default::default()
    });
    let chained = std::io::Cursor::new(peek[..got].to_vec()).chain(&mut raw);
    let copied = (|| -> std::io::Result<(Digest, u64)> {
        let (_, mut decoded) = decompressing_reader(chained)?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = decoded.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut writer, &buf[..n])?;
        }
        // a compressed stream may end before the file does (padding); read the file to its end
        drop(decoded);
        Ok((hasher.clone().finish(), hasher.len()))
    })();
    let (diff_id, size) = match copied {
        Ok(v) => v,
        Err(e) => {
            writer.abort();
            return Err(TransferError::from_io(format!("failed to store {path}"), e));
        }
    };
    std::io::copy(&mut raw, &mut std::io::sink())
        .map_err(|e| TransferError::io(format!("failed to read {path}"), e))?;
    let raw_digest = raw.hasher.finish();
    if let Some(claimed) = claimed
        && claimed != raw_digest
    {
        writer.abort();
        return Err(TransferError::DigestMismatch {
            what: format!("archive file {path}"),
            expected: claimed,
            actual: raw_digest,
        });
    }
    let response = writer.finish()?;
    if !response.already_existed {
        written.push(diff_id);
    }
    Ok(Entry::Stored { diff_id, size })
}

/// `manifest.json` entries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

struct Interpreter<'a> {
    store: &'a ImageStore,
    files: &'a HashMap<String, Entry>,
    written: Vec<Digest>,
}

/// An image checked and ready to store.
struct Checked {
    config_bytes: Vec<u8>,
    layers: Vec<(Digest, u64)>,
    tags: Vec<Reference>,
}

impl Interpreter<'_> {
    fn resolve(&self, path: &str) -> Result<&Entry> {
        let mut p = clean_path(path)?;
        for _ in 0..16 {
            match self.files.get(&p) {
                Some(Entry::Link(target)) => p = target.clone(),
                Some(e) => return Ok(e),
                // a link to a directory on the way (`d/layer.tar`, `d -> 0002`): followed, as
                // `tar -x` would, and still inside the archive (targets are resolved and clean)
                None if let Some(next) = self.through_directory_link(&p) => p = next,
                None => {
                    return Err(TransferError::invalid(
                        "archive",
                        format!("{path:?} is not in the archive"),
                    ));
                }
            }
        }
        Err(TransferError::invalid(
            "archive",
            format!("{path:?}: too many levels of links"),
        ))
    }

    /// `path` with its longest leading directory that is a link replaced by the link's
    /// target, if it has one.
    fn through_directory_link(&self, path: &str) -> Option<String> {
        let mut at = path.len();
        while let Some(i) = path[..at].rfind('/') {
            if let Some(Entry::Link(target)) = self.files.get(&path[..i]) {
                return Some(format!("{target}/{}", &path[i + 1..]));
            }
            at = i;
        }
        None
    }

    fn document(&self, path: &str, what: &str) -> Result<Vec<u8>> {
        match self.resolve(path)? {
            Entry::Small(b) => Ok(b.clone()),
            _ => Err(TransferError::invalid(
                format!("{what} {path}"),
                format!(
                    "more than the {} MiB allowed for a document",
                    MAX_DOCUMENT_BYTES >> 20
                ),
            )),
        }
    }

    /// A layer file of the archive as (diff_id, size), storing it first if it was small.
    async fn layer(&mut self, path: &str) -> Result<(Digest, u64)> {
        let entry = self.resolve(path)?.clone();
        match entry {
            Entry::Stored { diff_id, size, .. } => Ok((diff_id, size)),
            Entry::Small(bytes) => {
                if let Some(claimed) = claimed_digest(&clean_path(path)?) {
                    let actual = Digest::of(&bytes);
                    if actual != claimed {
                        return Err(TransferError::DigestMismatch {
                            what: format!("archive file {path}"),
                            expected: claimed,
                            actual,
                        });
                    }
                }
                let mut plain = Vec::new();
                decompressing_reader(&bytes[..])
                    .and_then(|(_, mut r)| r.read_to_end(&mut plain))
                    .map_err(|e| TransferError::io(format!("failed to decompress {path}"), e))?;
                let diff_id = Digest::of(&plain);
                let size = plain.len() as u64;
                let r = self
                    .store
                    .put_bytes(plain, media_type::OCI_LAYER_TAR, Some(&diff_id))
                    .await?;
                if !r.already_existed {
                    self.written.push(diff_id);
                }
                Ok((diff_id, size))
            }
            Entry::Link(_) => unreachable!("resolve follows links"),
        }
    }

    async fn check_layers(
        &mut self,
        config: &ImageConfig,
        paths: &[String],
    ) -> Result<Vec<(Digest, u64)>> {
        if paths.len() != config.rootfs.diff_ids.len() {
            return Err(TransferError::invalid(
                "manifest",
                format!(
                    "layers length mismatch: expected {}, got {}",
                    config.rootfs.diff_ids.len(),
                    paths.len()
                ),
            ));
        }
        let mut out = Vec::new();
        for (i, (path, want)) in paths.iter().zip(&config.rootfs.diff_ids).enumerate() {
            let (got, size) = self.layer(path).await?;
            if got.to_string() != *want {
                return Err(TransferError::invalid(
                    format!("layer {i} ({path})"),
                    format!("invalid diffID: expected {want}, got {got}"),
                ));
            }
            out.push((got, size));
        }
        Ok(out)
    }

    async fn docker_manifest(&mut self, bytes: &[u8]) -> Result<Vec<Checked>> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| TransferError::invalid("manifest.json", e.to_string()))?;
        if value.is_null() {
            return Err(TransferError::invalid(
                "manifest.json",
                "manifest cannot be null (but can be [])",
            ));
        }
        let entries: Vec<DockerManifestEntry> = serde_json::from_value(value)
            .map_err(|e| TransferError::invalid("manifest.json", e.to_string()))?;
        let mut out = Vec::new();
        for e in entries {
            let config_bytes = self.document(&e.config, "config")?;
            let config = ImageConfig::parse(&config_bytes)?;
            // docker-archive.md §4: the OS must be supported
            let named = e
                .repo_tags
                .as_ref()
                .and_then(|t| t.first())
                .map_or_else(|| format!("the image of {}", e.config), |t| t.clone());
            crate::registry::check_config_platform(&named, &config)?;
            let layers = self.check_layers(&config, &e.layers).await?;
            let mut tags = Vec::new();
            for t in e.repo_tags.unwrap_or_default() {
                let last = t.rsplit('/').next().unwrap_or(&t);
                if !last.contains(':') || t.contains('@') {
                    return Err(TransferError::invalid(
                        "manifest.json",
                        format!("invalid tag {t:?}"),
                    ));
                }
                tags.push(Reference::parse_tag(&t)?);
            }
            out.push(Checked {
                config_bytes,
                layers,
                tags,
            });
        }
        Ok(out)
    }

    fn blob_document(&self, digest: &str, size: i64, what: &str) -> Result<Vec<u8>> {
        let d = Digest::parse(digest)?;
        if size as u64 > MAX_DOCUMENT_BYTES {
            return Err(TransferError::invalid(
                format!("{what} {digest}"),
                format!(
                    "{size} bytes is more than the {} MiB allowed",
                    MAX_DOCUMENT_BYTES >> 20
                ),
            ));
        }
        let bytes = self.document(&format!("blobs/sha256/{}", d.hex()), what)?;
        let actual = Digest::of(&bytes);
        if actual != d {
            return Err(TransferError::DigestMismatch {
                what: format!("{what} blob"),
                expected: d,
                actual,
            });
        }
        if bytes.len() as i64 != size {
            return Err(TransferError::invalid(
                format!("{what} {digest}"),
                format!("is {} bytes, descriptor says {size}", bytes.len()),
            ));
        }
        Ok(bytes)
    }

    async fn oci_layout(&mut self) -> Result<Vec<Checked>> {
        if let Ok(Entry::Small(layout)) = self.resolve("oci-layout") {
            let v: serde_json::Value = serde_json::from_slice(layout)
                .map_err(|e| TransferError::invalid("oci-layout", e.to_string()))?;
            if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
                return Err(TransferError::invalid(
                    "oci-layout",
                    "imageLayoutVersion must be \"1.0.0\"",
                ));
            }
        }
        let index = Index::parse(&self.document("index.json", "index")?)?;
        let mut out = Vec::new();
        // (entry, the annotations of the index.json entry it came from, nesting depth)
        type Pending = (
            strata_image::Descriptor,
            Option<BTreeMap<String, String>>,
            u32,
        );
        let mut queue: Vec<Pending> = index
            .manifests
            .into_iter()
            .map(|d| {
                let a = d.annotations.clone();
                (d, a, 0)
            })
            .collect();
        while let Some((desc, annotations, depth)) = queue.pop() {
            if media_type::is_index(&desc.media_type) {
                if depth > 4 {
                    return Err(TransferError::invalid(
                        "index.json",
                        "indexes nested too deep",
                    ));
                }
                let child = Index::parse(&self.blob_document(&desc.digest, desc.size, "index")?)?;
                let Some(pick) = child
                    .select("linux", "amd64")
                    .cloned()
                    .or_else(|| (child.manifests.len() == 1).then(|| child.manifests[0].clone()))
                else {
                    return Err(TransferError::invalid(
                        format!("index {}", desc.digest),
                        "no linux/amd64 image in it",
                    ));
                };
                queue.push((pick, annotations, depth + 1));
                continue;
            }
            if !media_type::is_manifest(&desc.media_type) {
                tracing::debug!(media_type = %desc.media_type, "skipping index entry of unknown type");
                continue;
            }
            let manifest =
                Manifest::parse(&self.blob_document(&desc.digest, desc.size, "manifest")?)?;
            let config_bytes =
                self.blob_document(&manifest.config.digest, manifest.config.size, "config")?;
            let config = ImageConfig::parse(&config_bytes)?;
            crate::registry::check_config_platform(&format!("manifest {}", desc.digest), &config)?;
            manifest.validate_against(&config)?;
            let paths: Vec<String> = manifest
                .layers
                .iter()
                .map(|l| Digest::parse(&l.digest).map(|d| format!("blobs/sha256/{}", d.hex())))
                .collect::<std::result::Result<_, _>>()?;
            let layers = self.check_layers(&config, &paths).await?;
            let mut tags = Vec::new();
            if let Some(a) = &annotations {
                let name = a.get("io.containerd.image.name").cloned().or_else(|| {
                    a.get("org.opencontainers.image.ref.name")
                        .filter(|r| r.contains(':') || r.contains('/'))
                        .cloned()
                });
                if let Some(name) = name {
                    tags.push(Reference::parse_tag(&name)?);
                }
            }
            out.push(Checked {
                config_bytes,
                layers,
                tags,
            });
        }
        out.reverse();
        Ok(out)
    }
}

/// Loads every image of an archive (any of the shapes above) and tags them.
pub async fn load(store: &ImageStore, input: Box<dyn Read + Send>) -> Result<Vec<LoadedImage>> {
    let handle = tokio::runtime::Handle::current();
    let scan_store = store.clone();
    let (scanned, written) = tokio::task::spawn_blocking(move || {
        let _guard = handle.enter();
        scan(&scan_store, input)
    })
    .await
    .map_err(|e| TransferError::invalid("load", format!("task failed: {e}")))?;
    let files = match scanned {
        Ok(files) => files,
        Err(e) => {
            for d in written {
                let _ = store.delete(&d).await;
            }
            return Err(e);
        }
    };
    let mut it = Interpreter {
        store,
        files: &files,
        written,
    };
    let result = interpret(&mut it).await;
    match result {
        Ok(images) => Ok(images),
        Err(e) => {
            for d in &it.written {
                let _ = store.delete(d).await;
            }
            Err(e)
        }
    }
}

async fn interpret(it: &mut Interpreter<'_>) -> Result<Vec<LoadedImage>> {
    let checked = if it.files.contains_key("manifest.json") {
        let bytes = it.document("manifest.json", "manifest.json")?;
        it.docker_manifest(&bytes).await?
    } else if it.files.contains_key("index.json") {
        it.oci_layout().await?
    } else {
        return Err(TransferError::invalid(
            "archive",
            "does not contain a manifest.json or an index.json",
        ));
    };
    // Everything verified: store documents, then move tags.
    let mut stored = Vec::new();
    for c in &checked {
        let config_digest = Digest::of(&c.config_bytes);
        let manifest_digest = crate::import::store_documents(
            it.store,
            c.config_bytes.clone(),
            &config_digest,
            &c.layers,
        )
        .await?;
        stored.push((config_digest.to_string(), manifest_digest));
    }
    let mut out = Vec::new();
    for (c, (image_id, manifest_digest)) in checked.into_iter().zip(stored) {
        let mut moved = Vec::new();
        for t in &c.tags {
            if let Some(old) = it.store.set_tag(t, &manifest_digest).await?
                && old != manifest_digest
            {
                // the tag has moved: a failure to read the old image only costs its ID
                let old_id = match it.store.image(&old).await {
                    Ok(image) => image.id(),
                    Err(e) => {
                        tracing::warn!(manifest = %old, error = %e, "cannot read the image a loaded tag pointed at; naming it by its manifest");
                        old.to_string()
                    }
                };
                if old_id != image_id {
                    moved.push((t.clone(), old_id));
                }
            }
        }
        out.push(LoadedImage {
            image_id,
            manifest_digest,
            tags: c.tags,
            moved,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_and_escapes_refused() {
        assert_eq!(clean_path("./blobs//sha256/ab").unwrap(), "blobs/sha256/ab");
        assert!(
            clean_path("../x")
                .unwrap_err()
                .to_string()
                .contains("climbs out")
        );
        assert!(clean_path("a/../../x").is_err());
        assert_eq!(
            clean_path("bbbb/../aaaa/layer.tar").unwrap(),
            "aaaa/layer.tar"
        );
        assert!(
            clean_path("/etc/passwd")
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );
        let hex = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
        assert!(claimed_digest(&format!("blobs/sha256/{hex}")).is_some());
        assert!(claimed_digest("blobs/sha256/zz").is_none());
    }
}
