//! Re-hashing stored blobs.

use std::sync::Arc;

use strata_types::{Digest, Hasher};
use tracing::{error, info};

use super::Store;
use crate::error::{LayerStoreError, Result};

/// A blob that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptBlob {
    /// Its digest.
    pub digest: Digest,
    /// What is wrong.
    pub reason: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs checked.
    pub checked: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// The corrupt ones.
    pub corrupt: Vec<CorruptBlob>,
}

impl Store {
    /// Re-hashes `digests` (empty: every blob); an absent requested digest is NOT_FOUND.
    pub fn verify(self: &Arc<Self>, digests: &[Digest]) -> Result<VerifyReport> {
        let targets: Vec<(Digest, u64)> = if digests.is_empty() {
            self.all_blobs()?
                .into_iter()
                .map(|(d, r)| (d, r.size))
                .collect()
        } else {
            digests
                .iter()
                .map(|d| Ok((*d, self.stat(d)?.size)))
                .collect::<Result<_>>()?
        };
        let mut report = VerifyReport::default();
        for (digest, size) in targets {
            report.checked += 1;
            match self.verify_one(&digest, size) {
                Ok((bytes, None)) => report.bytes += bytes,
                Ok((bytes, Some(reason))) => {
                    report.bytes += bytes;
                    error!(digest = %digest, %reason, "blob is corrupt");
                    report.corrupt.push(CorruptBlob { digest, reason });
                }
                // deleted while verifying: not corrupt
                Err(LayerStoreError::BlobNotFound(_)) => report.checked -= 1,
                Err(e) => return Err(e),
            }
        }
        info!(
            checked = report.checked,
            bytes = report.bytes,
            corrupt = report.corrupt.len(),
            "verification finished"
        );
        Ok(report)
    }

    fn verify_one(self: &Arc<Self>, digest: &Digest, size: u64) -> Result<(u64, Option<String>)> {
        let mut hasher = Hasher::new();
        for part in self.reader(digest, 0, 0)? {
            match part {
                Ok(bytes) => hasher.update(&bytes),
                Err(LayerStoreError::CorruptBlob { reason, .. }) => {
                    return Ok((hasher.len(), Some(reason)));
                }
                Err(e) => return Err(e),
            }
        }
        let bytes = hasher.len();
        if bytes != size {
            return Ok((
                bytes,
                Some(format!("content is {bytes} bytes, the record says {size}")),
            ));
        }
        let actual = hasher.finish();
        Ok((
            bytes,
            (actual != *digest).then(|| format!("content hashes to {actual}")),
        ))
    }
}
