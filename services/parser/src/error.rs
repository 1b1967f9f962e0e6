//! The parser service's errors and their one mapping to gRPC status.

/// What can go wrong answering a parser request.
#[derive(Debug, thiserror::Error)]
pub enum ParserError {
    /// The Dockerfile does not parse; the message carries FILE:LINE:COL.
    #[error("{0}")]
    Syntax(String),
    /// A request field is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl From<ParserError> for tonic::Status {
    fn from(e: ParserError) -> Self {
        match &e {
            ParserError::Syntax(_) | ParserError::InvalidArgument { .. } => {
                tonic::Status::invalid_argument(e.to_string())
            }
        }
    }
}
