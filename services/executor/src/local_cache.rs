//! The executor's only local state: extracted layers (overlay lowerdirs, one per diff_id)
//! and extracted build contexts (one per context digest, with the sha256 of every file),
//! both rebuilt from the layer store on demand. Another executor never needs them.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use strata_types::Digest;
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::error::ExecutorError;
use crate::extract::{ExtractOptions, Whiteouts, extract};
use crate::peers::{ChannelReader, Peers};

/// An extracted build context.
#[derive(Debug)]
pub struct Context {
    /// Its root directory.
    pub dir: PathBuf,
    /// sha256 of every regular file's bytes, by path relative to the root.
    pub file_digests: BTreeMap<String, Digest>,
}

/// Extracted layers and contexts under `ROOT/executor`.
#[derive(Debug)]
pub struct LocalCache {
    layers: PathBuf,
    contexts: PathBuf,
    tmp: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    loaded_contexts: Mutex<HashMap<String, Arc<Context>>>,
}

impl LocalCache {
    /// Uses `dir` (ROOT/executor); clears scratch left by a crash.
    pub fn open(dir: &Path) -> Result<Self, ExecutorError> {
        let layers = dir.join("layers");
        let contexts = dir.join("contexts");
        let tmp = dir.join("tmp");
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        for d in [&layers, &contexts, &tmp] {
            std::fs::create_dir_all(d).map_err(|e| ExecutorError::io_op("creating", d, e))?;
        }
        Ok(Self {
            layers,
            contexts,
            tmp,
            locks: Mutex::new(HashMap::new()),
            loaded_contexts: Mutex::new(HashMap::new()),
        })
    }

    /// Where the lowerdir of `diff_id` lives (whether or not it exists yet).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.layers.join(diff_id.hex())
    }

    /// A fresh scratch directory path (not created).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("lock map")
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// The lowerdir of a layer, extracted from the store (blob `blob_digest`) the first time.
    pub async fn ensure_layer(
        &self,
        peers: &Peers,
        diff_id: &Digest,
        blob_digest: &str,
    ) -> Result<PathBuf, ExecutorError> {
        let dest = self.layer_dir(diff_id);
        if dest.exists() {
            return Ok(dest);
        }
        let lock = self.lock(&diff_id.to_string());
        let _held = lock.lock().await;
        if dest.exists() {
            return Ok(dest);
        }
        let staging = self
            .tmp
            .join(format!("layer-{}-{}", diff_id.hex(), std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(|e| ExecutorError::io_op("creating", &staging, e))?;
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let target = staging.clone();
        let extracting = tokio::task::spawn_blocking(move || {
            let reader = crate::compression::decompressed(ChannelReader::new(rx))?;
            extract(
                reader,
                &target,
                ExtractOptions {
                    whiteouts: Whiteouts::Overlay,
                    hash_files: false,
                },
            )
        });
        let streamed = peers.stream_blob(blob_digest, tx).await;
        let extracted = extracting
            .await
            .map_err(|e| ExecutorError::Internal(e.to_string()))?;
        if let Err(e) = streamed.and(extracted.map(|_| ())) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        std::fs::rename(&staging, &dest)
            .map_err(|e| ExecutorError::io_op("renaming", &staging, e))?;
        info!(diff_id = %diff_id, "layer extracted");
        Ok(dest)
    }

    /// Adopts a directory already in lowerdir form as the layer `diff_id` (the upper dir of
    /// the step that made it); false when it could not be moved.
    pub fn adopt_layer(&self, diff_id: &Digest, dir: &Path) -> bool {
        let dest = self.layer_dir(diff_id);
        if dest.exists() {
            return true;
        }
        let ok = std::fs::rename(dir, &dest).is_ok();
        debug!(diff_id = %diff_id, ok, "adopted a step's upper dir as a layer");
        ok
    }

    /// The build context `digest`, extracted once per executor.
    pub async fn ensure_context(
        &self,
        peers: &Peers,
        digest: &str,
    ) -> Result<Arc<Context>, ExecutorError> {
        if let Some(c) = self
            .loaded_contexts
            .lock()
            .expect("context map")
            .get(digest)
        {
            return Ok(c.clone());
        }
        let parsed = Digest::parse(digest).map_err(|e| {
            ExecutorError::InvalidArgument(format!("invalid context digest {digest:?}: {e}"))
        })?;
        let lock = self.lock(digest);
        let _held = lock.lock().await;
        if let Some(c) = self
            .loaded_contexts
            .lock()
            .expect("context map")
            .get(digest)
        {
            return Ok(c.clone());
        }
        let dest = self.contexts.join(parsed.hex());
        let index = self.contexts.join(format!("{}.digests.json", parsed.hex()));
        if let Some(file_digests) = read_index(&dest, &index) {
            debug!(context = %digest, files = file_digests.len(), "context reused from disk");
            let context = Arc::new(Context {
                dir: dest,
                file_digests,
            });
            self.loaded_contexts
                .lock()
                .expect("context map")
                .insert(digest.to_owned(), context.clone());
            return Ok(context);
        }
        if !peers.has_blob(digest).await? {
            return Err(ExecutorError::NotFound(format!(
                "build context {digest} is not in the layer store"
            )));
        }
        let _ = std::fs::remove_file(&index);
        let _ = std::fs::remove_dir_all(&dest);
        let staging = self.tmp.join(format!("context-{}", parsed.hex()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(|e| ExecutorError::io_op("creating", &staging, e))?;
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let target = staging.clone();
        let extracting = tokio::task::spawn_blocking(move || {
            extract(
                ChannelReader::new(rx),
                &target,
                ExtractOptions {
                    whiteouts: Whiteouts::Apply,
                    hash_files: true,
                },
            )
        });
        let streamed = peers.stream_blob(digest, tx).await;
        let report = extracting
            .await
            .map_err(|e| ExecutorError::Internal(e.to_string()))?;
        let report = match streamed.and(report) {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        std::fs::rename(&staging, &dest)
            .map_err(|e| ExecutorError::io_op("renaming", &staging, e))?;
        write_index(&self.tmp, &index, &parsed.hex(), &report.file_digests);
        let context = Arc::new(Context {
            dir: dest,
            file_digests: report.file_digests,
        });
        self.loaded_contexts
            .lock()
            .expect("context map")
            .insert(digest.to_owned(), context.clone());
        Ok(context)
    }
}

/// The file digests saved beside an extracted context, when both are there and the index
/// reads back whole: the next process (each embedded CLI command starts a fresh executor)
/// reuses the tree instead of extracting and hashing the context again. The directory is
/// renamed into place before its index is written, so an index never describes a partial
/// tree; a torn or missing index makes the context be extracted again.
fn read_index(dir: &Path, index: &Path) -> Option<BTreeMap<String, Digest>> {
    if !dir.is_dir() {
        return None;
    }
    let bytes = std::fs::read(index).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes `index` through a scratch file and a rename (never half-written under its name).
/// A failure only costs the next process an extraction, so it is logged, not returned.
fn write_index(tmp: &Path, index: &Path, hex: &str, digests: &BTreeMap<String, Digest>) {
    let scratch = tmp.join(format!("context-{hex}.digests.{}", std::process::id()));
    let written = serde_json::to_vec(digests)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&scratch, bytes))
        .and_then(|()| std::fs::rename(&scratch, index));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&scratch);
        debug!(index = %index.display(), error = %e, "context index not saved");
    }
}
