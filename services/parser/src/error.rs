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
    /// The parse of the Dockerfile is larger than a response may be.
    #[error(
        "the Dockerfile is too large: its parse takes {bytes} bytes, more than the \
         {limit}-byte message limit (the server's --max-message-bytes)"
    )]
    TooLarge {
        /// The response's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

impl From<ParserError> for tonic::Status {
    fn from(e: ParserError) -> Self {
        match &e {
            ParserError::Syntax(_)
            | ParserError::InvalidArgument { .. }
            | ParserError::TooLarge { .. } => tonic::Status::invalid_argument(e.to_string()),
        }
    }
}
