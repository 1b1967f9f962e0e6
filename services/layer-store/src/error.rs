//! Errors of the layer-store service and their one mapping to gRPC status.

/// What can go wrong in the layer-store service.
#[derive(Debug, thiserror::Error)]
pub enum LayerStoreError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] strata_kv::KvError),
}

impl From<LayerStoreError> for tonic::Status {
    fn from(e: LayerStoreError) -> Self {
        match &e {
            LayerStoreError::Storage(strata_kv::KvError::NoSpace { .. }) => {
                tonic::Status::resource_exhausted(e.to_string())
            }
            LayerStoreError::Storage(_) => {
                tracing::error!(error = %e, "storage failure");
                tonic::Status::internal(e.to_string())
            }
        }
    }
}
