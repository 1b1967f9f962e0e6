//! The one error type of strata-transfer.

use strata_types::Digest;

/// Why moving an image in or out failed. Messages name the file, blob or reference at fault.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A store or tag-index call failed.
    #[error("{context}: {}", .status.message())]
    Service {
        /// What was being done.
        context: String,
        /// The service's answer.
        status: tonic::Status,
    },
    /// No image matches a name.
    #[error("no such image: {0}")]
    NoSuchImage(String),
    /// A short id matches several images.
    #[error("ambiguous image id {prefix:?}: matches {count} images")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// How many images match.
        count: usize,
    },
    /// Content whose digest is not what it claimed.
    #[error("{what}: content hashes to {actual}, expected {expected}")]
    DigestMismatch {
        /// Which content.
        what: String,
        /// The claimed digest.
        expected: Digest,
        /// The digest of the bytes.
        actual: Digest,
    },
    /// Content whose length is not what its descriptor says.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Which content.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// How many bytes came.
        actual: u64,
    },
    /// A document or archive that breaks the format.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which document or file.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Something strata does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A local file could not be read or written.
    ///
    /// The message already ends with the system error, so it is deliberately not also
    /// reported as the error's `source()`: a chain printer (`{:#}`) would say it twice.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The system error.
        error: std::io::Error,
    },
    /// An image document is invalid.
    #[error(transparent)]
    Image(#[from] strata_image::ImageError),
    /// A reference does not parse.
    #[error(transparent)]
    Reference(#[from] strata_types::ReferenceError),
    /// A digest does not parse.
    #[error(transparent)]
    Digest(#[from] strata_types::DigestError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] strata_distribution::RegistryError),
}

impl TransferError {
    /// An invalid-input error.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// A service error with context.
    pub fn service(context: impl Into<String>, status: tonic::Status) -> Self {
        Self::Service {
            context: context.into(),
            status,
        }
    }

    /// An I/O error with context.
    pub fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            error,
        }
    }

    /// Turns an I/O error that carries a `TransferError` (from a reader adapter) back into it.
    pub fn from_io(context: impl Into<String>, e: std::io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<TransferError>()) {
            if let Ok(inner) = e.into_inner().expect("checked").downcast::<TransferError>() {
                return *inner;
            }
            unreachable!("checked the type above");
        }
        Self::io(context, e)
    }
}

/// Shorthand.
pub type Result<T, E = TransferError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cause in `e`'s chain, as anyhow's `{:#}` prints it.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(cause) = next {
            out.push_str(&format!(": {cause}"));
            next = cause.source();
        }
        out
    }

    #[test]
    fn an_io_error_is_named_once_in_the_chain() {
        let e = TransferError::io(
            "failed to read the archive",
            std::io::Error::new(std::io::ErrorKind::Unsupported, "lz4 is not supported"),
        );
        assert_eq!(
            chain(&e),
            "failed to read the archive: lz4 is not supported"
        );
    }
}
