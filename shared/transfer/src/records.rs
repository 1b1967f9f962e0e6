//! Small record blobs that remember what the store alone does not say, found again by their
//! labels through `ListBlobs`:
//!
//! - **repo digest** (`strata.record=repo-digest`, `strata.subject=<local manifest>`): the
//!   registry repository and manifest digest an image was pulled from or pushed to, shown
//!   as `RepoDigests` by `inspect`.
//! - **compressed layer** (`strata.record=compressed-layer`, `strata.subject=<diff_id>`,
//!   `strata.gc.ref.compressed=<compressed digest>`): the descriptor of a layer's compressed
//!   form, so a push can ask the registry for it by digest without compressing again, and a
//!   second push uploads nothing.
//! - **blob location** (`strata.record=blob-location`, `strata.subject=<compressed digest>`):
//!   a registry repository known to hold a compressed layer, for cross-repository mounts.
//! - **digest reference** (`strata.record=digest-reference`, `strata.subject=<local manifest>`,
//!   `strata.gc.root`, `strata.gc.ref.image=<local manifest>`): Docker's `repo@digest`
//!   reference, written by every pull by digest (`strata pull repo@sha256:…`, a build's
//!   `FROM`/`COPY --from` by digest). Unlike the records above it is a GC root: it keeps its
//!   image as a tag does, `images` lists the image as `REPO <none>`, and `rmi repo@digest`
//!   deletes it.
//!
//! Records are content-addressed like any blob (writing the same record twice stores one).
//! Their labels tell the layer store's GC what they belong to ([`strata_types::gc_label`]):
//! `strata.subject` keeps a record exactly as long as the image or layer it describes, and a
//! compressed-layer record keeps, through its `strata.gc.ref.compressed`, the locations of its
//! compressed form (and that form's blob, were it stored). So `strata gc` keeps the records of
//! every image a tag, digest reference, lease or cache entry reaches, and removes them with
//! the image.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_image::Descriptor;
use strata_types::{Digest, Reference, gc_label};

use crate::{Result, store::ImageStore};

/// Media type of record blobs.
pub const RECORD_MEDIA_TYPE: &str = "application/vnd.strata.record.v1+json";
const KIND: &str = "strata.record";
const SUBJECT: &str = gc_label::SUBJECT;

#[derive(Debug, Serialize, Deserialize)]
struct RepoDigest {
    manifest: String,
    repository: String,
    digest: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct CompressedLayer {
    diff_id: String,
    descriptor: Descriptor,
}

/// Stores a record unless it is there; `refs` are further digests GC keeps while the record
/// is kept (`strata.gc.ref.<name>` labels).
async fn put(
    store: &ImageStore,
    kind: &str,
    subject: &str,
    refs: &[(&str, &Digest)],
    body: Vec<u8>,
) -> Result<()> {
    put_labelled(store, kind, subject, refs, BTreeMap::new(), body).await
}

/// [`put`] with further labels.
async fn put_labelled(
    store: &ImageStore,
    kind: &str,
    subject: &str,
    refs: &[(&str, &Digest)],
    extra: BTreeMap<String, String>,
    body: Vec<u8>,
) -> Result<()> {
    let digest = Digest::of(&body);
    if store.stat(&digest).await?.is_some() {
        return Ok(());
    }
    let mut labels = extra;
    labels.extend([
        (KIND.to_string(), kind.to_string()),
        (SUBJECT.to_string(), subject.to_string()),
    ]);
    for (name, d) in refs {
        labels.insert(format!("{}{name}", gc_label::REF_PREFIX), d.to_string());
    }
    store
        .put_labelled(body, RECORD_MEDIA_TYPE, &digest, labels)
        .await?;
    Ok(())
}

async fn find(store: &ImageStore, kind: &str, subject: &str) -> Result<Vec<Vec<u8>>> {
    Ok(records(store, kind, Some(subject))
        .await?
        .into_iter()
        .map(|(_, body)| body)
        .collect())
}

/// The records of `kind` (about `subject`, when given): each record's digest and body.
async fn records(
    store: &ImageStore,
    kind: &str,
    subject: Option<&str>,
) -> Result<Vec<(Digest, Vec<u8>)>> {
    let mut labels = BTreeMap::from([(KIND.to_string(), kind.to_string())]);
    if let Some(subject) = subject {
        labels.insert(SUBJECT.to_string(), subject.to_string());
    }
    let mut out = Vec::new();
    for info in store.list_blobs(RECORD_MEDIA_TYPE, labels).await? {
        let Ok(d) = Digest::parse(&info.digest) else {
            continue;
        };
        if let Ok(body) = store.read_bytes(&d, 64 * 1024).await {
            out.push((d, body));
        }
    }
    Ok(out)
}

/// Remembers that the local image `manifest` is `repository@digest` in a registry.
pub async fn add_repo_digest(
    store: &ImageStore,
    manifest: &Digest,
    repository: &Reference,
    digest: &Digest,
) -> Result<()> {
    let body = serde_json::to_vec(&RepoDigest {
        manifest: manifest.to_string(),
        repository: repository.name(),
        digest: digest.to_string(),
    })
    .unwrap_or_default();
    put(store, "repo-digest", &manifest.to_string(), &[], body).await
}

/// `repository@digest` in familiar form (`busybox@sha256:…`); None when that is no
/// reference.
fn familiar_pinned(repository: &str, digest: &str) -> Option<String> {
    Reference::parse(&format!("{repository}@{digest}"))
        .ok()
        .map(|r| r.familiar())
}

/// `RepoDigests` of a local image: familiar `name@sha256:…`, sorted.
pub async fn repo_digests(store: &ImageStore, manifest: &Digest) -> Result<Vec<String>> {
    let mut out: Vec<String> = repo_digest_records(store, manifest)
        .await?
        .into_iter()
        .filter_map(|(repository, digest)| familiar_pinned(&repository, &digest.to_string()))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The repo digests recorded for a local image, as (full repository name, registry digest)
/// pairs, sorted: what `images --digests` shows beside a tag of that repository.
pub async fn repo_digest_records(
    store: &ImageStore,
    manifest: &Digest,
) -> Result<Vec<(String, Digest)>> {
    let mut out: Vec<(String, Digest)> = find(store, "repo-digest", &manifest.to_string())
        .await?
        .iter()
        .filter_map(|b| serde_json::from_slice::<RepoDigest>(b).ok())
        .filter_map(|r| Some((r.repository, Digest::parse(&r.digest).ok()?)))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Forgets the repo digests recorded for the local image `manifest` in `repository` (a full
/// repository name; every repository when `None`), as Docker drops an image's `RepoDigests`
/// entries in a repository with its last tag or digest reference there. Returns each one
/// forgotten, familiar `name@sha256:…`, sorted.
pub async fn remove_repo_digests(
    store: &ImageStore,
    manifest: &Digest,
    repository: Option<&str>,
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for (record, body) in records(store, "repo-digest", Some(&manifest.to_string())).await? {
        let Ok(r) = serde_json::from_slice::<RepoDigest>(&body) else {
            continue;
        };
        if r.manifest != manifest.to_string() || repository.is_some_and(|want| want != r.repository)
        {
            continue;
        }
        store.delete(&record).await?;
        removed.push(
            familiar_pinned(&r.repository, &r.digest)
                .unwrap_or_else(|| format!("{}@{}", r.repository, r.digest)),
        );
    }
    removed.sort();
    removed.dedup();
    Ok(removed)
}

/// The local image a repo digest recorded for `repository` (a bare repository) stands for,
/// when a push or pull recorded one and the image is still stored.
pub async fn local_manifest(
    store: &ImageStore,
    repository: &Reference,
    digest: &Digest,
) -> Result<Option<Digest>> {
    let labels = BTreeMap::from([(KIND.to_string(), "repo-digest".to_string())]);
    let (name, digest) = (repository.name(), digest.to_string());
    for info in store.list_blobs(RECORD_MEDIA_TYPE, labels).await? {
        let Ok(d) = Digest::parse(&info.digest) else {
            continue;
        };
        let Ok(body) = store.read_bytes(&d, 64 * 1024).await else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<RepoDigest>(&body) else {
            continue;
        };
        if record.repository != name || record.digest != digest {
            continue;
        }
        if let Ok(manifest) = Digest::parse(&record.manifest)
            && store.is_manifest(&manifest).await?
        {
            return Ok(Some(manifest));
        }
    }
    Ok(None)
}

#[derive(Debug, Serialize, Deserialize)]
struct BlobLocation {
    digest: String,
    registry: String,
    repository: String,
}

/// Remembers that `registry/repository` holds the blob `digest` (for cross-repository mounts).
pub async fn add_blob_location(
    store: &ImageStore,
    digest: &Digest,
    registry: &str,
    repository: &str,
) -> Result<()> {
    let body = serde_json::to_vec(&BlobLocation {
        digest: digest.to_string(),
        registry: registry.to_string(),
        repository: repository.to_string(),
    })
    .unwrap_or_default();
    put(store, "blob-location", &digest.to_string(), &[], body).await
}

/// The (registry, repository) pairs known to hold a blob.
pub async fn blob_locations(store: &ImageStore, digest: &Digest) -> Result<Vec<(String, String)>> {
    Ok(find(store, "blob-location", &digest.to_string())
        .await?
        .iter()
        .filter_map(|b| serde_json::from_slice::<BlobLocation>(b).ok())
        .filter(|l| l.digest == digest.to_string())
        .map(|l| (l.registry, l.repository))
        .collect())
}

/// Remembers a compressed form of the layer `diff_id`.
pub async fn add_compressed(
    store: &ImageStore,
    diff_id: &Digest,
    descriptor: &Descriptor,
) -> Result<()> {
    let body = serde_json::to_vec(&CompressedLayer {
        diff_id: diff_id.to_string(),
        descriptor: descriptor.clone(),
    })
    .unwrap_or_default();
    let compressed = Digest::parse(&descriptor.digest).ok();
    let refs: Vec<(&str, &Digest)> = compressed.iter().map(|d| ("compressed", d)).collect();
    put(store, "compressed-layer", &diff_id.to_string(), &refs, body).await
}

/// The compressed forms known for a layer.
pub async fn compressed_forms(store: &ImageStore, diff_id: &Digest) -> Result<Vec<Descriptor>> {
    Ok(find(store, "compressed-layer", &diff_id.to_string())
        .await?
        .iter()
        .filter_map(|b| serde_json::from_slice::<CompressedLayer>(b).ok())
        .filter(|r| r.diff_id == diff_id.to_string())
        .map(|r| r.descriptor)
        .collect())
}

#[derive(Debug, Serialize, Deserialize)]
struct DigestReferenceBody {
    repository: String,
    digest: String,
    manifest: String,
}

/// A digest reference: `repository@digest` names the local image `manifest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DigestReference {
    /// The full repository name (`localhost:5000/app`, `docker.io/library/busybox`).
    pub repository: String,
    /// The registry digest the image was pulled by.
    pub digest: Digest,
    /// The local image's manifest.
    pub manifest: Digest,
    /// The record blob itself (what deleting the reference deletes).
    pub record: Digest,
}

impl DigestReference {
    /// `repository@digest` in familiar form (`busybox@sha256:…`).
    pub fn familiar(&self) -> String {
        let digest = self.digest.to_string();
        familiar_pinned(&self.repository, &digest)
            .unwrap_or_else(|| format!("{}@{digest}", self.repository))
    }
}

/// Remembers that `repository@digest` (a pull by digest) names the local image `manifest`,
/// as a GC root that keeps the image (see the module's description).
pub async fn add_digest_reference(
    store: &ImageStore,
    manifest: &Digest,
    repository: &Reference,
    digest: &Digest,
) -> Result<()> {
    let body = serde_json::to_vec(&DigestReferenceBody {
        repository: repository.name(),
        digest: digest.to_string(),
        manifest: manifest.to_string(),
    })
    .unwrap_or_default();
    put_labelled(
        store,
        DIGEST_REFERENCE,
        &manifest.to_string(),
        &[("image", manifest)],
        BTreeMap::from([(gc_label::ROOT.to_string(), "true".to_string())]),
        body,
    )
    .await
}

const DIGEST_REFERENCE: &str = "digest-reference";

/// Every digest reference in the store, sorted; `manifest` limits them to one image.
pub async fn digest_references(
    store: &ImageStore,
    manifest: Option<&Digest>,
) -> Result<Vec<DigestReference>> {
    let subject = manifest.map(Digest::to_string);
    let mut out = Vec::new();
    for (record, body) in records(store, DIGEST_REFERENCE, subject.as_deref()).await? {
        let Ok(r) = serde_json::from_slice::<DigestReferenceBody>(&body) else {
            continue;
        };
        let (Ok(digest), Ok(m)) = (Digest::parse(&r.digest), Digest::parse(&r.manifest)) else {
            continue;
        };
        if manifest.is_some_and(|want| *want != m) {
            continue;
        }
        out.push(DigestReference {
            repository: r.repository,
            digest,
            manifest: m,
            record,
        });
    }
    out.sort();
    Ok(out)
}
