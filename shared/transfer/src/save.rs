//! Writing images out: `strata save` (docker-archive, modern shape: an OCI layout plus
//! `manifest.json` and `repositories`, docker-archive.md §1.1) and `strata export --format
//! oci` (an OCI image layout, as a directory or a tar of one, oci-image.md §10).
//!
//! Entries are written in lexical order with fixed metadata (mode 0644/0755, uid/gid 0,
//! mtime = the first image's `created`, or 0), so saving the same images twice gives the same
//! bytes. Layers stream from the store chunk by chunk into the output, hashed on the way (on a
//! thread of their own): a
//! layer whose bytes do not match its diff_id fails the save rather than producing a bad
//! archive.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    path::{Path, PathBuf},
};

use bytes::Bytes;
use serde::Serialize;
use strata_image::{Descriptor, Index, Manifest, Timestamp};
use strata_types::{Digest, Reference, RunningHash, media_type};

use crate::{
    Result, StoredImage, TransferError,
    store::{BlobReader, ImageStore},
};

/// An image to write and the tags to record for it.
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// The image.
    pub image: StoredImage,
    /// Its tags (none: saved untagged).
    pub tags: Vec<Reference>,
}

/// Where a layout goes.
pub enum Target {
    /// A tar stream (a file, or stdout).
    Tar(Box<dyn Write + Send>),
    /// A directory (created if needed).
    Dir(PathBuf),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tar(_) => f.write_str("Target::Tar"),
            Self::Dir(d) => write!(f, "Target::Dir({})", d.display()),
        }
    }
}

/// What to write besides the OCI layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// docker-archive: OCI layout + `manifest.json` + `repositories`.
    DockerArchive,
    /// OCI image layout only.
    OciLayout,
}

/// Resolves the names a user gave to `save`: `name:tag`, a bare `name` (every local tag of
/// the repository), `name@digest`, or an image ID; merges images named twice.
pub async fn select(store: &ImageStore, names: &[String]) -> Result<Vec<SaveImage>> {
    let mut out: Vec<SaveImage> = Vec::new();
    let mut add = |image: StoredImage, tag: Option<Reference>| match out
        .iter_mut()
        .find(|s| s.image.manifest_digest == image.manifest_digest)
    {
        Some(s) => {
            if let Some(t) = tag
                && !s.tags.contains(&t)
            {
                s.tags.push(t);
            }
        }
        None => out.push(SaveImage {
            image,
            tags: tag.into_iter().collect(),
        }),
    };
    for name in names {
        if let Ok(repo) = Reference::parse_repository(name) {
            let tags = store.list_tags(&repo.name(), None).await?;
            if !tags.is_empty() {
                for t in tags {
                    let reference = Reference::parse_tag(&t.name)?;
                    let image = store.image(&Digest::parse(&t.digest)?).await?;
                    add(image, Some(reference));
                }
                continue;
            }
        }
        let image = store.resolve(name).await?;
        let tag = Reference::parse(name)
            .ok()
            .filter(|r| r.digest().is_none() && !name.starts_with("sha256:"));
        // a tag only counts if it is what resolved the name (not an image-id prefix)
        let tag = match tag {
            Some(t) => match store.resolve_tag(&t).await? {
                Some(found) if found.digest == image.manifest_digest.to_string() => Some(t),
                _ => None,
            },
            None => None,
        };
        add(image, tag);
    }
    for s in &mut out {
        s.tags.sort();
        if s.image.manifest.layers.is_empty() {
            return Err(TransferError::Unsupported(
                "empty export - not implemented (the image has no layers)".into(),
            ));
        }
    }
    Ok(out)
}

/// One blob of the layout: its bytes in memory, or a layer streamed from the store.
enum Blob {
    Bytes(Vec<u8>),
    Layer { size: u64 },
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The OCI manifest a layout carries for an image: the stored one when it already lists
/// uncompressed OCI layers and config, else one generated as Docker's save does.
fn layout_manifest(image: &StoredImage) -> Result<Vec<u8>> {
    let m = &image.manifest;
    let oci = m.media_type.as_deref() == Some(media_type::OCI_MANIFEST)
        && m.config.media_type == media_type::OCI_CONFIG
        && m.layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
            .all(|(l, d)| l.media_type == media_type::OCI_LAYER_TAR && &l.digest == d);
    if oci {
        return Ok(image.manifest_bytes.clone());
    }
    let generated = Manifest::oci(
        Descriptor::new(
            media_type::OCI_CONFIG,
            m.config.digest.clone(),
            image.config_bytes.len() as i64,
        ),
        image
            .config
            .rootfs
            .diff_ids
            .iter()
            .zip(&m.layers)
            .map(|(d, l)| Descriptor::new(media_type::OCI_LAYER_TAR, d.clone(), l.size))
            .collect(),
    );
    Ok(generated.to_json())
}

/// Writes `images` to `target` in `shape`. Layers stream from the store.
pub async fn write(
    store: &ImageStore,
    images: &[SaveImage],
    shape: Shape,
    target: Target,
) -> Result<()> {
    let mut blobs: BTreeMap<Digest, Blob> = BTreeMap::new();
    let mut index = Index {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_string()),
        manifests: Vec::new(),
        annotations: None,
    };
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in images {
        let image = &s.image;
        let manifest_bytes = layout_manifest(image)?;
        let manifest_digest = Digest::of(&manifest_bytes);
        let config_digest = Digest::parse(&image.id())?;
        blobs.insert(config_digest, Blob::Bytes(image.config_bytes.clone()));
        let mut layer_paths = Vec::new();
        for (diff_id, layer) in image
            .config
            .rootfs
            .diff_ids
            .iter()
            .zip(&image.manifest.layers)
        {
            let d = Digest::parse(diff_id)?;
            // local layers are uncompressed tars stored under their diff_id
            let size = match store.stat(&d).await? {
                Some(info) => info.size as u64,
                None => {
                    return Err(TransferError::invalid(
                        format!("image {}", image.id()),
                        format!(
                            "layer {diff_id} (descriptor {}) is not in the store",
                            layer.digest
                        ),
                    ));
                }
            };
            blobs.insert(d, Blob::Layer { size });
            layer_paths.push(format!("blobs/sha256/{}", d.hex()));
        }
        let manifest_len = manifest_bytes.len() as i64;
        blobs.insert(manifest_digest, Blob::Bytes(manifest_bytes));
        let entry = Descriptor::new(
            media_type::OCI_MANIFEST,
            manifest_digest.to_string(),
            manifest_len,
        );
        if s.tags.is_empty() {
            index.manifests.push(entry.clone());
        }
        for t in &s.tags {
            let mut e = entry.clone();
            e.annotations = Some(BTreeMap::from([
                (IMAGE_NAME.to_string(), t.to_string()),
                (
                    REF_NAME.to_string(),
                    t.tag().unwrap_or("latest").to_string(),
                ),
            ]));
            index.manifests.push(e);
            if let Some(top) = image.config.rootfs.diff_ids.last() {
                repositories.entry(t.familiar_name()).or_default().insert(
                    t.tag().unwrap_or("latest").to_string(),
                    top.trim_start_matches("sha256:").to_string(),
                );
            }
        }
        docker_manifest.push(DockerManifestEntry {
            config: format!("blobs/sha256/{}", config_digest.hex()),
            repo_tags: (!s.tags.is_empty())
                .then(|| s.tags.iter().map(Reference::familiar).collect()),
            layers: layer_paths,
        });
    }
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    if shape == Shape::DockerArchive {
        let mut m = serde_json::to_vec(&docker_manifest).unwrap_or_default();
        m.push(b'\n');
        files.push(("manifest.json".into(), m));
        if !repositories.is_empty() {
            let mut r = serde_json::to_vec(&repositories).unwrap_or_default();
            r.push(b'\n');
            files.push(("repositories".into(), r));
        }
    }
    let mtime = images
        .first()
        .and_then(|s| s.image.config.created.as_deref())
        .and_then(Timestamp::parse)
        .map_or(0, |t| t.seconds.max(0) as u64);

    let store = store.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _guard = handle.enter();
        // a directory may hold a layout already: its other entries stay
        let index_json = match &target {
            Target::Dir(dir) => merged_index(dir, &index)?,
            Target::Tar(_) => index.to_json(),
        };
        files.push(("index.json".into(), index_json));
        files.sort();
        let mut sink: Box<dyn LayoutSink> = match target {
            Target::Tar(w) => Box::new(TarSink {
                builder: tar::Builder::new(w),
                mtime,
            }),
            Target::Dir(dir) => Box::new(DirSink { root: dir }),
        };
        sink.dir("blobs/")?;
        sink.dir("blobs/sha256/")?;
        for (digest, blob) in &blobs {
            let path = format!("blobs/sha256/{}", digest.hex());
            match blob {
                Blob::Bytes(b) => sink.file(&path, b.len() as u64, &mut &b[..])?,
                Blob::Layer { size } => {
                    let mut chunks = Verified {
                        inner: store.reader(digest),
                        hash: RunningHash::default(),
                        len: 0,
                        expected: *digest,
                        size: *size,
                    };
                    sink.stream(&path, *size, &mut chunks)?;
                }
            }
        }
        for (name, bytes) in &files {
            sink.file(name, bytes.len() as u64, &mut &bytes[..])?;
        }
        sink.finish()
    })
    .await
    .map_err(|e| TransferError::invalid("save", format!("task failed: {e}")))?
}

/// The annotation naming an index.json entry (its tag in the layout).
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const IMAGE_NAME: &str = "io.containerd.image.name";

/// The index.json to write into the layout directory `dir`: `new`, merged into the one `dir`
/// already holds, if any ([`merge_index`]).
fn merged_index(dir: &Path, new: &Index) -> Result<Vec<u8>> {
    let path = dir.join("index.json");
    match std::fs::read(&path) {
        Ok(existing) => merge_index(&existing, new).map_err(|reason| {
            TransferError::invalid(
                path.display().to_string(),
                format!("{reason} (an existing layout's index is merged into, not replaced; it was left as it is)"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(new.to_json()),
        Err(e) => Err(TransferError::io(
            format!("failed to read {}", path.display()),
            e,
        )),
    }
}

/// An existing index.json with `new`'s entries added, as skopeo and umoci add to a layout:
/// every existing entry stays (unknown fields and all) except one a new entry takes the
/// name of, or an unnamed entry of the same manifest as a new unnamed one; the new entries
/// come last. An entry with a full image name (`io.containerd.image.name`, which strata and
/// Docker write) is taken over only by a new entry of that image name: `busybox:latest`
/// does not take the place of `hello:latest`, though both have the ref name `latest`, as
/// one export of both keeps both. One with only a `org.opencontainers.image.ref.name`
/// (skopeo's and umoci's) is taken over by a new entry of that ref name. Err: why
/// `existing` is not an index to add to.
fn merge_index(existing: &[u8], new: &Index) -> std::result::Result<Vec<u8>, String> {
    use serde_json::Value;
    let mut doc: Value = serde_json::from_slice(existing).map_err(|e| e.to_string())?;
    let Some(object) = doc.as_object_mut() else {
        return Err("not a JSON object".into());
    };
    let old = match object.remove("manifests") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err("\"manifests\" is not an array".into()),
    };
    let annotation = |entry: &Value, key: &str| {
        entry
            .get("annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let ref_name = |entry: &Value| annotation(entry, REF_NAME);
    let image_name = |entry: &Value| annotation(entry, IMAGE_NAME);
    let added: Vec<Value> = new
        .manifests
        .iter()
        .map(serde_json::to_value)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let taken_images: Vec<String> = added.iter().filter_map(image_name).collect();
    let taken_refs: Vec<String> = added.iter().filter_map(ref_name).collect();
    let unnamed: Vec<&Value> = added
        .iter()
        .filter(|e| ref_name(e).is_none() && image_name(e).is_none())
        .filter_map(|e| e.get("digest"))
        .collect();
    let mut manifests: Vec<Value> = old
        .into_iter()
        .filter(|e| match (image_name(e), ref_name(e)) {
            (Some(full), _) => !taken_images.contains(&full),
            (None, Some(name)) => !taken_refs.contains(&name),
            (None, None) => !e.get("digest").is_some_and(|d| unnamed.contains(&d)),
        })
        .collect();
    manifests.extend(added);
    object.insert("manifests".into(), Value::Array(manifests));
    object
        .entry("schemaVersion")
        .or_insert_with(|| Value::from(2));
    serde_json::to_vec(&doc).map_err(|e| e.to_string())
}

/// A blob's chunks as the store sends them, checked against its size and digest on the way:
/// the sha256 runs on a thread of its own ([`RunningHash`]), so verifying costs no time beside
/// reading and writing, and the last chunk is only handed out once the whole blob checks out.
struct Verified {
    inner: BlobReader,
    hash: RunningHash,
    len: u64,
    expected: Digest,
    size: u64,
}

impl Verified {
    fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        let chunk = match self.inner.next_chunk() {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Some(Err(std::io::Error::other(e))),
            None if self.len != self.size => {
                return Some(Err(std::io::Error::other(format!(
                    "blob {} ended after {} of {} bytes",
                    self.expected, self.len, self.size
                ))));
            }
            // an empty blob has had no chunk to check it
            None if self.size == 0 => return self.check_digest().err().map(Err),
            None => return None,
        };
        self.len += chunk.len() as u64;
        if self.len > self.size {
            return Some(Err(std::io::Error::other(format!(
                "blob {} is longer than {} bytes",
                self.expected, self.size
            ))));
        }
        self.hash.push(chunk.clone());
        if self.len == self.size
            && let Err(e) = self.check_digest()
        {
            return Some(Err(e));
        }
        Some(Ok(chunk))
    }

    fn check_digest(&mut self) -> std::io::Result<()> {
        let actual = self.hash.take().finish();
        if actual != self.expected {
            return Err(std::io::Error::other(TransferError::DigestMismatch {
                what: "stored layer".into(),
                expected: self.expected,
                actual,
            }));
        }
        Ok(())
    }

    /// Every chunk, then a check that nothing follows the declared size.
    fn for_each(&mut self, mut f: impl FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        while let Some(chunk) = self.next_chunk() {
            f(&chunk?)?;
        }
        Ok(())
    }
}

trait LayoutSink {
    fn dir(&mut self, path: &str) -> Result<()>;
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()>;
    /// Writes a blob from its verified chunks, without copying them through a reader.
    fn stream(&mut self, path: &str, size: u64, chunks: &mut Verified) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<()>;
}

struct TarSink {
    builder: tar::Builder<Box<dyn Write + Send>>,
    mtime: u64,
}

impl TarSink {
    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }
}

impl LayoutSink for TarSink {
    fn dir(&mut self, path: &str) -> Result<()> {
        let mut h = self.header(tar::EntryType::Directory, 0o755, 0);
        self.builder
            .append_data(&mut h, path, std::io::empty())
            .map_err(|e| TransferError::io(format!("failed to write {path}"), e))
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut h = self.header(tar::EntryType::Regular, 0o644, size);
        // Exact: a short read must fail, never leave a header promising more than follows.
        let mut exact = Exact {
            inner: data,
            left: size,
        };
        self.builder
            .append_data(&mut h, path, &mut exact)
            .map_err(|e| TransferError::from_io(format!("failed to write {path}"), e))?;
        if exact.left != 0 {
            return Err(TransferError::invalid(path, "blob ended early"));
        }
        Ok(())
    }

    fn stream(&mut self, path: &str, size: u64, chunks: &mut Verified) -> Result<()> {
        let mut h = self.header(tar::EntryType::Regular, 0o644, size);
        h.set_path(path)
            .map_err(|e| TransferError::io(format!("failed to write {path}"), e))?;
        h.set_cksum();
        let w = self.builder.get_mut();
        // The header promises `size` bytes: `Verified` fails unless exactly that many follow,
        // and a failed save removes its output.
        let result = w.write_all(h.as_bytes()).and_then(|()| {
            chunks.for_each(|c| w.write_all(c))?;
            let pad = (512 - size % 512) % 512;
            w.write_all(&[0u8; 512][..pad as usize])
        });
        result.map_err(|e| TransferError::from_io(format!("failed to write {path}"), e))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let mut w = self
            .builder
            .into_inner()
            .map_err(|e| TransferError::io("failed to finish the archive", e))?;
        w.flush()
            .map_err(|e| TransferError::io("failed to finish the archive", e))
    }
}

struct Exact<'a> {
    inner: &'a mut dyn Read,
    left: u64,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // drain to let a verifying reader see the end
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(
                    "blob is longer than its descriptor says",
                )),
            };
        }
        let max = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob ended early",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Creates a file to write `path` through, renamed into place once whole: a sibling of a
/// name of its own (`.NAME.PID-N.partial`), created anew (never an existing file, which a
/// name made from `path` alone could be: a user's `x.partial` beside `x.tar`, or another
/// save's file of the same stem), so that nothing else is overwritten and two writers of
/// one directory never share it.
pub fn partial_file(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()));
        match std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

struct DirSink {
    root: PathBuf,
}

impl DirSink {
    /// Writes `path` through a `.partial` file renamed into place, removed on failure: a
    /// layout never shows a blob that was not written whole.
    fn write(
        &self,
        path: &str,
        fill: impl FnOnce(&std::fs::File) -> std::io::Result<()>,
    ) -> Result<()> {
        let p = self.root.join(path);
        let (tmp, file) = partial_file(&p)
            .map_err(|e| TransferError::from_io(format!("failed to write {}", p.display()), e))?;
        let result = fill(&file).and_then(|()| std::fs::rename(&tmp, &p));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(TransferError::from_io(
                format!("failed to write {}", p.display()),
                e,
            ));
        }
        Ok(())
    }
}

impl LayoutSink for DirSink {
    fn dir(&mut self, path: &str) -> Result<()> {
        let p = self.root.join(path);
        std::fs::create_dir_all(&p)
            .map_err(|e| TransferError::io(format!("failed to create {}", p.display()), e))
    }

    fn file(&mut self, path: &str, _size: u64, data: &mut dyn Read) -> Result<()> {
        self.write(path, |f| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            std::io::copy(data, &mut w)?;
            w.flush()
        })
    }

    fn stream(&mut self, path: &str, _size: u64, chunks: &mut Verified) -> Result<()> {
        self.write(path, |mut f| chunks.for_each(|c| f.write_all(c)))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// True when `path` names a tar file rather than a layout directory.
pub fn is_tar_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "tar") || (path.exists() && path.is_file())
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    fn named(digest: &Digest, name: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(media_type::OCI_MANIFEST, digest.to_string(), 1);
        d.annotations = name.map(|n| BTreeMap::from([(REF_NAME.to_string(), n.to_string())]));
        d
    }

    #[test]
    fn an_existing_index_keeps_its_other_entries() {
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let existing = format!(
            r#"{{"schemaVersion":2,"annotations":{{"x":"y"}},"manifests":[
              {{"mediaType":"{m}","digest":"{a}","size":1,"annotations":{{"{REF_NAME}":"keep"}},"data":"e30="}},
              {{"mediaType":"{m}","digest":"{a}","size":1,"annotations":{{"{REF_NAME}":"1"}}}},
              {{"mediaType":"{m}","digest":"{b}","size":1}},
              {{"mediaType":"{m}","digest":"{c}","size":1}}]}}"#,
            m = media_type::OCI_MANIFEST
        );
        let new = Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_string()),
            manifests: vec![named(&b, Some("1")), named(&c, None)],
            annotations: None,
        };
        let merged: serde_json::Value =
            serde_json::from_slice(&merge_index(existing.as_bytes(), &new).unwrap()).unwrap();
        let entries: Vec<(String, Option<String>)> = merged["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["digest"].as_str().unwrap().to_string(),
                    e["annotations"][REF_NAME].as_str().map(str::to_string),
                )
            })
            .collect();
        let s = |d: &Digest, n: Option<&str>| (d.to_string(), n.map(str::to_string));
        assert_eq!(
            entries,
            [
                s(&a, Some("keep")),
                s(&b, None),
                s(&b, Some("1")),
                s(&c, None)
            ],
            "ref name 1 moves to the new image, c is listed once"
        );
        assert_eq!(
            merged["manifests"][0]["data"], "e30=",
            "unknown fields stay"
        );
        assert_eq!(merged["annotations"]["x"], "y");
        assert_eq!(merged["schemaVersion"], 2);

        // strata's entries name their image: another image of the same tag stays
        let full = |d: &Digest, image: &str| {
            let mut x = named(d, Some("latest"));
            x.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(IMAGE_NAME.to_string(), image.to_string());
            x
        };
        let first = Index {
            manifests: vec![full(&a, "docker.io/library/hello:latest")],
            ..new.clone()
        };
        let second = Index {
            manifests: vec![full(&b, "docker.io/library/busybox:latest")],
            ..new.clone()
        };
        let third = Index {
            manifests: vec![full(&c, "docker.io/library/hello:latest")],
            ..new.clone()
        };
        let images = |index: &[u8]| -> Vec<(String, String)> {
            let v: serde_json::Value = serde_json::from_slice(index).unwrap();
            v["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["annotations"][IMAGE_NAME].as_str().unwrap().to_string(),
                        e["digest"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let entry = |image: &str, d: &Digest| (format!("docker.io/library/{image}"), d.to_string());
        let once = merge_index(br#"{"schemaVersion":2,"manifests":[]}"#, &first).unwrap();
        let twice = merge_index(&once, &second).unwrap();
        assert_eq!(
            images(&twice),
            [entry("hello:latest", &a), entry("busybox:latest", &b)],
            "busybox:latest joins hello:latest"
        );
        let thrice = merge_index(&twice, &third).unwrap();
        assert_eq!(
            images(&thrice),
            [entry("busybox:latest", &b), entry("hello:latest", &c)],
            "hello:latest moves to the new image"
        );

        assert!(merge_index(b"[1]", &new).is_err());
        assert!(merge_index(b"{\"manifests\":3}", &new).is_err());
        assert!(merge_index(b"not json", &new).is_err());
    }

    /// Streams `chunks` through [`Verified`] for a blob announced as (`digest`, `size`) and
    /// returns what came out, or the error.
    fn verify(chunks: &[&[u8]], digest: Digest, size: u64) -> std::io::Result<Vec<u8>> {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for c in chunks {
            tx.try_send(Ok(Bytes::copy_from_slice(c))).expect("room");
        }
        drop(tx);
        let mut v = Verified {
            inner: BlobReader::from_channel(rx),
            hash: RunningHash::default(),
            len: 0,
            expected: digest,
            size,
        };
        let mut out = Vec::new();
        v.for_each(|c| {
            out.extend_from_slice(c);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn verified_chunks_pass_only_the_announced_bytes() {
        let data = b"hello layer bytes";
        let digest = Digest::of(data);
        let size = data.len() as u64;
        let split: [&[u8]; 3] = [&data[..5], &data[5..9], &data[9..]];
        assert_eq!(verify(&split, digest, size).unwrap(), data);
        // one flipped byte
        let mut bad = data.to_vec();
        bad[3] ^= 1;
        let e = verify(&[&bad], digest, size).unwrap_err().to_string();
        assert!(e.contains("hashes to"), "{e}");
        // short, long
        let e = verify(&[&data[..4]], digest, size).unwrap_err().to_string();
        assert!(e.contains("ended after 4 of 17 bytes"), "{e}");
        let e = verify(&[data, b"x"], digest, size).unwrap_err().to_string();
        assert!(e.contains("longer than 17 bytes"), "{e}");
        // an empty blob is checked too
        assert_eq!(verify(&[], Digest::of(b""), 0).unwrap(), b"");
        assert!(verify(&[], digest, 0).is_err());
    }
}
