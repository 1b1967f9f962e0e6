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
    #[error("invalid {field}: {source}")]
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
    #[error("tag {name} {}, but the request expected it {}", describe(.actual.as_ref()), describe(.expected.as_ref()))]
    Conflict {
        /// The normalised tag name.
        name: String,
        /// Where the request expected it (`None`: absent).
        expected: Option<Digest>,
        /// Where it points (`None`: absent).
        actual: Option<Digest>,
    },
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
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] strata_kv::KvError),
}

fn describe(d: Option<&Digest>) -> String {
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
            | TagIndexError::InvalidPageToken { .. } => {
                tonic::Status::invalid_argument(e.to_string())
            }
            TagIndexError::NotFound { .. } => tonic::Status::not_found(e.to_string()),
            TagIndexError::Conflict { .. } => tonic::Status::failed_precondition(e.to_string()),
            TagIndexError::Closed => tonic::Status::unavailable(e.to_string()),
            TagIndexError::Storage(strata_kv::KvError::NoSpace { .. }) => {
                tonic::Status::resource_exhausted(e.to_string())
            }
            TagIndexError::Storage(_) | TagIndexError::Corrupt { .. } => {
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
        assert!(
            msg.contains(&a.to_string()) && msg.contains(&b.to_string()),
            "{msg}"
        );
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        let e = TagIndexError::Conflict {
            name: "x".into(),
            expected: None,
            actual: Some(b),
        };
        assert!(e.to_string().contains("expected it not to exist"), "{e}");
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
        ];
        for e in cases {
            let s = tonic::Status::from(e);
            assert_ne!(s.code(), tonic::Code::Internal, "{s:?}");
        }
    }
}
