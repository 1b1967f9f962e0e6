//! The one error type of strata-distribution.

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status.
    #[error("{context}: registry answered {status}{}", .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// What was being done.
        context: String,
        /// The HTTP status.
        status: u16,
        /// The error codes and messages from the body, when there were any.
        detail: Option<String>,
    },
    /// Credentials were missing or wrong.
    #[error("{context}: authentication failed ({reason})")]
    Unauthorized {
        /// What was being done.
        context: String,
        /// Why.
        reason: String,
    },
    /// The connection failed or broke.
    #[error("{context}: {source}")]
    Http {
        /// What was being done.
        context: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The registry sent something that breaks the protocol or the content's digest.
    #[error("{context}: {reason}")]
    Protocol {
        /// What was being done.
        context: String,
        /// What is wrong.
        reason: String,
    },
    /// A local file (credentials) could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The system error.
        source: std::io::Error,
    },
}
