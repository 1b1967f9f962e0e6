//! The records the store keeps beside content, encoded as JSON (small, readable with
//! `ldb`, and tolerant of added fields).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use strata_types::Digest;

use crate::error::{LayerStoreError, Result};

/// A committed blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// Size in bytes.
    pub size: u64,
    /// Media type as written.
    pub media_type: String,
    /// Labels as written.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Commit time, ns since the epoch.
    pub created_ns: i64,
    /// The chunk group holding the content (32 hex).
    pub group: String,
    /// Bytes per chunk (the last may be shorter).
    pub chunk_size: u64,
}

impl BlobRecord {
    /// Number of chunks.
    pub fn chunk_count(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }
}

/// An upload session in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The chunk group its chunks go to (32 hex).
    pub group: String,
    /// Digest announced at start.
    #[serde(default)]
    pub expected_digest: Option<Digest>,
    /// Size announced at start.
    #[serde(default)]
    pub expected_size: Option<u64>,
    /// Media type to record.
    pub media_type: String,
    /// Labels to record.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Bytes held in stored chunks (a multiple of `chunk_size`).
    pub offset: u64,
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// True when the client chose the id and so can resume; a store-chosen session is
    /// abandoned when its stream breaks.
    pub resumable: bool,
    /// Start time.
    pub created_ns: i64,
    /// Last write.
    pub updated_ns: i64,
}

/// A build-cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The key's canonical preimage.
    pub preimage: String,
    /// The layer the step produced.
    #[serde(default)]
    pub layer_digest: Option<Digest>,
    /// The resulting image config (JSON text).
    #[serde(default)]
    pub config: String,
    /// The parent step's key.
    #[serde(default)]
    pub parent_key: Option<Digest>,
    /// When stored.
    pub created_ns: i64,
}

/// A lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Expiry, ns since the epoch.
    pub expires_ns: i64,
    /// Protected digests.
    #[serde(default)]
    pub digests: BTreeSet<Digest>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Encodes a record.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // these types hold only strings, numbers and maps with string keys: encoding cannot fail
    serde_json::to_vec(record).expect("records encode as JSON")
}

/// Decodes a record; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(what: impl FnOnce() -> String, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| LayerStoreError::CorruptRecord {
        what: what(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_record_round_trips_and_counts_chunks() {
        let r = BlobRecord {
            size: 5,
            media_type: "m".into(),
            labels: [("a".to_string(), "b".to_string())].into(),
            created_ns: 7,
            group: "00".repeat(16),
            chunk_size: 2,
        };
        let back: BlobRecord = decode(|| "x".into(), &encode(&r)).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.chunk_count(), 3);
        assert_eq!(
            BlobRecord {
                size: 0,
                ..r.clone()
            }
            .chunk_count(),
            0
        );
        assert_eq!(BlobRecord { size: 4, ..r }.chunk_count(), 2);
    }

    #[test]
    fn garbage_is_a_corrupt_record_error_naming_it() {
        let err = decode::<BlobRecord>(|| "blob record sha256:x".into(), b"{not json").unwrap_err();
        assert!(err.to_string().contains("blob record sha256:x"), "{err}");
    }
}
