//! Errors of the executor and their one mapping to gRPC status.

/// What can go wrong in the executor.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A peer service failed.
    #[error("{service} failed: {status}")]
    Peer {
        /// Which service.
        service: &'static str,
        /// What it said.
        status: tonic::Status,
    },
}

impl From<ExecutorError> for tonic::Status {
    fn from(e: ExecutorError) -> Self {
        match e {
            ExecutorError::Peer { service, status } => {
                tonic::Status::new(status.code(), format!("{service}: {}", status.message()))
            }
        }
    }
}
