//! Errors of the layer-store service and their one mapping to gRPC status.

use strata_types::{Digest, DigestError};

/// What can go wrong in the layer-store service.
#[derive(Debug, thiserror::Error)]
pub enum LayerStoreError {
    /// A digest field of a request is not `sha256:<64 lowercase hex>`.
    #[error("{field}: {source}")]
    InvalidDigest {
        /// The request field, e.g. `start.expected_digest`.
        field: String,
        /// Why it was rejected.
        source: DigestError,
    },
    /// A request field has a value the store cannot use.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The bytes hash to a different digest than announced; nothing was stored.
    #[error(
        "digest mismatch: expected {expected} but the bytes hash to {actual}; nothing was stored"
    )]
    DigestMismatch {
        /// The announced digest.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// The stream ended with a different size than announced; nothing was stored.
    #[error("size mismatch: expected {expected} bytes but received {actual}; nothing was stored")]
    SizeMismatch {
        /// The announced size.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// The stream carried more bytes than announced; it was cut at the first byte past it.
    #[error(
        "the stream is longer than the declared size of {expected} bytes; aborted at byte {at}, nothing was stored{}",
        size_zero_hint(*.expected)
    )]
    TooManyBytes {
        /// The announced size.
        expected: u64,
        /// The size at which the stream was cut (`expected + 1`).
        at: u64,
    },
    /// A resumed stream does not start where the upload stands.
    #[error("upload {upload_id} holds {held} bytes; resume at offset {held}, not {offset}")]
    OffsetMismatch {
        /// The upload.
        upload_id: String,
        /// What the store holds.
        held: u64,
        /// What the client sent.
        offset: u64,
    },
    /// No upload session with this id.
    #[error("no upload session {0:?} (finished, aborted, expired, or never started)")]
    UploadNotFound(String),
    /// Another stream is writing this upload right now.
    #[error("upload {0:?} is being written by another stream")]
    UploadBusy(String),
    /// A new upload asked for an id that is in use.
    #[error("upload id {0:?} is in use: resume it with start.upload_id, or choose another id")]
    UploadExists(String),
    /// The stream broke before it was finished (the client went away).
    #[error("the write stream broke before it finished: {0}")]
    StreamBroken(String),
    /// No blob with this digest.
    #[error("blob {0} not found")]
    BlobNotFound(Digest),
    /// A read range outside the blob.
    #[error("range offset {offset} length {length} is outside blob {digest} of {size} bytes")]
    RangeOutOfBounds {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The requested offset.
        offset: u64,
        /// The requested length.
        length: u64,
    },
    /// Stored bytes no longer match what was written.
    #[error("blob {digest} is corrupt: {reason}; run `strata fsck`")]
    CorruptBlob {
        /// The blob (or, for an upload, the digest announced for it).
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// A stored record does not decode.
    #[error("stored {what} is unreadable: {reason}")]
    CorruptRecord {
        /// Which record.
        what: String,
        /// The decode error.
        reason: String,
    },
    /// A deletion of a blob that a tag, GC root or lease reaches, or that work in progress claimed.
    #[error("blob {digest} is in use by {holder}: {}", in_use_advice(.holder))]
    BlobInUse {
        /// The blob.
        digest: Digest,
        /// What keeps it.
        holder: crate::store::Holder,
    },
    /// No cache entry with this key.
    #[error("no build-cache entry for key {0}")]
    CacheEntryNotFound(Digest),
    /// A cache entry names a layer the store does not hold.
    #[error(
        "cache entry {key} names layer {layer} which is not in the store; write the layer first"
    )]
    CacheLayerMissing {
        /// The cache key.
        key: Digest,
        /// The missing layer.
        layer: Digest,
    },
    /// No live lease with this id.
    #[error("no lease {0:?} (deleted, expired, or never created)")]
    LeaseNotFound(String),
    /// A cache lookup named a lease that is not live: the build can no longer protect the
    /// layers it takes from the cache.
    #[error("lease {0:?} is not live (deleted or expired); the build cannot protect its layers")]
    LeaseGone(String),
    /// A lease with this id exists.
    #[error("lease {0:?} already exists")]
    LeaseExists(String),
    /// The tag index (a GC root source) could not be asked; neither GC nor DeleteBlob runs
    /// without its roots.
    #[error(
        "cannot list the tags of the tag index ({addr}), which keep their images from GC and deletion: {reason}"
    )]
    TagIndexUnavailable {
        /// Its address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] strata_kv::KvError),
}

fn in_use_advice(holder: &crate::store::Holder) -> &'static str {
    use crate::store::Holder;
    match holder {
        Holder::Tag(_) => {
            "it is part of that tag's image; remove the tag first (`strata rmi`), then `strata gc` frees what nothing else uses"
        }
        Holder::Lease(_) => {
            "work in progress (a build, a pull) needs it; delete the lease or wait for it to end"
        }
        Holder::Root(_) => {
            "a digest reference (`NAME@sha256:…`, from a pull by digest) keeps it; remove that reference first (`strata rmi NAME@sha256:…`)"
        }
        Holder::InProgress => {
            "something written or claimed while the deletion was decided needs it; try again when that work has finished"
        }
    }
}

impl LayerStoreError {
    /// An invalid-digest error naming `field`.
    pub fn digest(field: impl Into<String>, source: DigestError) -> Self {
        Self::InvalidDigest {
            field: field.into(),
            source,
        }
    }
}

impl From<LayerStoreError> for tonic::Status {
    fn from(e: LayerStoreError) -> Self {
        use LayerStoreError as E;
        let msg = e.to_string();
        match &e {
            E::InvalidDigest { .. }
            | E::InvalidField { .. }
            | E::SizeMismatch { .. }
            | E::TooManyBytes { .. } => tonic::Status::invalid_argument(msg),
            E::DigestMismatch { .. }
            | E::OffsetMismatch { .. }
            | E::UploadBusy(_)
            | E::CacheLayerMissing { .. }
            | E::BlobInUse { .. }
            | E::LeaseGone(_) => tonic::Status::failed_precondition(msg),
            E::UploadExists(_) | E::LeaseExists(_) => tonic::Status::already_exists(msg),
            E::UploadNotFound(_)
            | E::BlobNotFound(_)
            | E::CacheEntryNotFound(_)
            | E::LeaseNotFound(_) => tonic::Status::not_found(msg),
            E::RangeOutOfBounds { .. } => tonic::Status::out_of_range(msg),
            E::StreamBroken(_) => tonic::Status::cancelled(msg),
            E::TagIndexUnavailable { .. } => {
                tracing::warn!(error = %e, "garbage collection or deletion refused");
                tonic::Status::unavailable(msg)
            }
            E::CorruptBlob { .. } | E::CorruptRecord { .. } => {
                tracing::error!(error = %e, "stored data is corrupt");
                tonic::Status::data_loss(msg)
            }
            E::Storage(strata_kv::KvError::NoSpace { .. }) => {
                tracing::warn!(error = %e, "disk full");
                tonic::Status::resource_exhausted(msg)
            }
            E::Storage(_) => {
                tracing::error!(error = %e, "storage failure");
                tonic::Status::internal(msg)
            }
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = LayerStoreError> = std::result::Result<T, E>;

/// What a declared size of 0 most likely is: `expected_size` left out of a WriteStart (as a
/// grpcurl user writes it), which proto3 reads as 0, an empty blob.
fn size_zero_hint(expected: u64) -> &'static str {
    if expected == 0 {
        " (expected_size left out is 0, an empty blob: send -1 when the size is not known)"
    } else {
        ""
    }
}

#[cfg(test)]
mod size_hint_tests {
    use super::*;

    #[test]
    fn a_declared_size_of_zero_says_how_to_declare_none() {
        let zero = LayerStoreError::TooManyBytes { expected: 0, at: 1 }.to_string();
        assert!(
            zero.contains("send -1 when the size is not known"),
            "{zero}"
        );
        let some = LayerStoreError::TooManyBytes { expected: 5, at: 6 }.to_string();
        assert!(!some.contains("-1"), "{some}");
    }
}
