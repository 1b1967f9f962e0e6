//! Errors of the tag-index service and their one mapping to gRPC status.

use strata_types::{Digest, DigestError, ReferenceError};

/// What can go wrong in the tag-index service.
#[derive(Debug, thiserror::Error)]
pub enum TagIndexError {
    /// A request field holds a reference that breaks Docker's grammar; the source names the
    /// part at fault (repository, tag, digest, registry, path component).
    #[error("invalid {field}: {source}")]
    InvalidReference {
        /// The request field, e.g. "name".
        field: &'static str,
        /// What is wrong with it.
        source: ReferenceError,
    },
    /// A request field holds a malformed digest.
    #[error("{field}: {source}")]
    InvalidDigest {
        /// The request field, e.g. "digest" or "expected_digest".
        field: &'static str,
        /// What is wrong with it.
        source: DigestError,
    },
    /// A page token this service did not hand out.
    #[error(
        "invalid page_token {token:?}: pass the next_page_token of the previous response unchanged"
    )]
    InvalidPageToken {
        /// The token as given.
        token: String,
    },
    /// The tag does not exist.
    #[error("tag {name} not found")]
    NotFound {
        /// The normalised tag name.
        name: String,
    },
    /// A compare-and-swap found the tag somewhere other than expected.
    #[error(
        "tag {name} {}, but the request expected it {}: it was not changed (another client moved it; look it up again and retry)",
        actual_state(.actual.as_ref()),
        expected_state(.expected.as_ref())
    )]
    Conflict {
        /// The normalised tag name.
        name: String,
        /// Where the request expected it (`None`: absent).
        expected: Option<Digest>,
        /// Where it points (`None`: absent).
        actual: Option<Digest>,
    },
    /// A watch asked for both ways to start.
    #[error(
        "since_sequence ({since}) and from_start exclude each other: set since_sequence to resume after a change you saw, or from_start to replay the retained log"
    )]
    WatchStartConflict {
        /// The since_sequence given.
        since: u64,
    },
    /// A watch asked for changes the log no longer keeps (pruned by its retention).
    #[error(
        "changes after sequence {after} are no longer kept (the event log was pruned by its retention); the oldest available sequence is {oldest}: list the tags again and watch from the listing's sequence"
    )]
    EventsPruned {
        /// The position asked for: changes after it were wanted.
        after: u64,
        /// The oldest sequence the log still has.
        oldest: u64,
    },
    /// A watch asked for changes after a sequence this tag index never reached.
    #[error(
        "since_sequence {after} is beyond the last change ({last}) of this tag index: it was not handed out here (another tag index, or one whose data was reset); list the tags again and watch from the listing's sequence"
    )]
    SequenceAhead {
        /// The position asked for.
        after: u64,
        /// The last committed sequence.
        last: u64,
    },
    /// The target of a move is not in the layer store.
    #[error(
        "cannot point {name} at {digest}: the layer store does not hold it; store the image (its manifest and everything it names) first"
    )]
    TargetMissing {
        /// The normalised tag name.
        name: String,
        /// The target.
        digest: Digest,
    },
    /// The target of a move is a blob but not an image.
    #[error(
        "cannot point {name} at {digest}: it is a {media_type:?} blob, not an image manifest or index; a tag points at an image's manifest digest"
    )]
    TargetNotImage {
        /// The normalised tag name.
        name: String,
        /// The target.
        digest: Digest,
        /// What the blob is.
        media_type: String,
    },
    /// The layer store could not be asked about a move's target: the tag did not move.
    #[error(
        "cannot check in the layer store ({addr}) that the target of {name} is stored, so the tag did not move: {reason}"
    )]
    LayerStoreUnavailable {
        /// The normalised tag name.
        name: String,
        /// Where the layer store is.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The service was started without a layer store, so it cannot check targets.
    #[error(
        "this tag index has no layer store to check that a tag's target is stored, so it moves no tags: start it with --layer-store-addr (STRATA_TAG_INDEX_LAYER_STORE_ADDR)"
    )]
    NoLayerStore,
    /// The store's writer is gone (the service is shutting down).
    #[error("the tag store is shutting down")]
    Closed,
    /// A stored record that does not decode: the database was damaged or written by
    /// something else.
    #[error("corrupt record in space {space} at key {key:?}: {reason}")]
    Corrupt {
        /// The key space.
        space: &'static str,
        /// The key, lossily as text.
        key: String,
        /// What failed.
        reason: String,
    },
    /// The service's configuration cannot be used.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] strata_kv::KvError),
}

/// Where a tag is, as the subject of a sentence: "points at …" / "does not exist".
fn actual_state(d: Option<&Digest>) -> String {
    match d {
        Some(d) => format!("points at {d}"),
        None => "does not exist".to_string(),
    }
}

/// Where a request expected a tag: "to point at …" / "not to exist".
fn expected_state(d: Option<&Digest>) -> String {
    match d {
        Some(d) => format!("to point at {d}"),
        None => "not to exist".to_string(),
    }
}

impl From<TagIndexError> for tonic::Status {
    fn from(e: TagIndexError) -> Self {
        match &e {
            TagIndexError::InvalidReference { .. }
            | TagIndexError::InvalidDigest { .. }
            | TagIndexError::InvalidPageToken { .. }
            | TagIndexError::WatchStartConflict { .. } => {
                tonic::Status::invalid_argument(e.to_string())
            }
            TagIndexError::EventsPruned { .. } | TagIndexError::SequenceAhead { .. } => {
                tonic::Status::out_of_range(e.to_string())
            }
            TagIndexError::NotFound { .. } => tonic::Status::not_found(e.to_string()),
            TagIndexError::Conflict { .. }
            | TagIndexError::TargetMissing { .. }
            | TagIndexError::TargetNotImage { .. }
            | TagIndexError::NoLayerStore => tonic::Status::failed_precondition(e.to_string()),
            TagIndexError::LayerStoreUnavailable { .. } => {
                tracing::warn!(error = %e, "tag not moved");
                tonic::Status::unavailable(e.to_string())
            }
            TagIndexError::Closed => tonic::Status::unavailable(e.to_string()),
            TagIndexError::Storage(strata_kv::KvError::NoSpace { .. }) => {
                tonic::Status::resource_exhausted(e.to_string())
            }
            TagIndexError::Storage(_)
            | TagIndexError::Corrupt { .. }
            | TagIndexError::InvalidConfig { .. } => {
                tracing::error!(error = %e, "storage failure");
                tonic::Status::internal(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_both_digests() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let e = TagIndexError::Conflict {
            name: "docker.io/library/app:prod".into(),
            expected: Some(a),
            actual: Some(b),
        };
        let msg = e.to_string();
        assert_eq!(
            msg,
            format!(
                "tag docker.io/library/app:prod points at {b}, but the request expected it to point at {a}: it was not changed (another client moved it; look it up again and retry)"
            )
        );
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        let e = TagIndexError::Conflict {
            name: "x".into(),
            expected: None,
            actual: Some(b),
        };
        assert!(
            e.to_string().starts_with(&format!(
                "tag x points at {b}, but the request expected it not to exist:"
            )),
            "{e}"
        );
        let e = TagIndexError::Conflict {
            name: "x".into(),
            expected: Some(a),
            actual: None,
        };
        assert!(
            e.to_string().starts_with(&format!(
                "tag x does not exist, but the request expected it to point at {a}:"
            )),
            "{e}"
        );
    }

    #[test]
    fn a_pruned_position_is_out_of_range_and_says_what_to_do() {
        let s = tonic::Status::from(TagIndexError::EventsPruned {
            after: 3,
            oldest: 10,
        });
        assert_eq!(s.code(), tonic::Code::OutOfRange);
        assert!(
            s.message().contains("oldest available sequence is 10")
                && s.message().contains("list the tags again"),
            "{}",
            s.message()
        );
    }

    #[test]
    fn user_mistakes_are_never_internal() {
        let cases = [
            TagIndexError::InvalidPageToken { token: "zz".into() },
            TagIndexError::NotFound { name: "x".into() },
            TagIndexError::InvalidDigest {
                field: "digest",
                source: strata_types::Digest::parse("sha256:abc").unwrap_err(),
            },
            TagIndexError::InvalidReference {
                field: "name",
                source: strata_types::Reference::parse("Busybox").unwrap_err(),
            },
            TagIndexError::WatchStartConflict { since: 3 },
            TagIndexError::EventsPruned {
                after: 3,
                oldest: 10,
            },
            TagIndexError::SequenceAhead {
                after: 30,
                last: 10,
            },
            TagIndexError::TargetMissing {
                name: "x".into(),
                digest: Digest::of(b"x"),
            },
            TagIndexError::TargetNotImage {
                name: "x".into(),
                digest: Digest::of(b"x"),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            },
            TagIndexError::NoLayerStore,
        ];
        for e in cases {
            let s = tonic::Status::from(e);
            assert_ne!(s.code(), tonic::Code::Internal, "{s:?}");
        }
    }
}
