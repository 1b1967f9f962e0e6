//! Errors of the tag-index service and their one mapping to gRPC status.

/// What can go wrong in the tag-index service.
#[derive(Debug, thiserror::Error)]
pub enum TagIndexError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] strata_kv::KvError),
}

impl From<TagIndexError> for tonic::Status {
    fn from(e: TagIndexError) -> Self {
        match &e {
            TagIndexError::Storage(strata_kv::KvError::NoSpace { .. }) => {
                tonic::Status::resource_exhausted(e.to_string())
            }
            TagIndexError::Storage(_) => {
                tracing::error!(error = %e, "storage failure");
                tonic::Status::internal(e.to_string())
            }
        }
    }
}
