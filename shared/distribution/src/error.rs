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
    ///
    /// The message ends with the HTTP client's error and its causes (reqwest hides "connection
    /// refused" two sources down), each once; so the error is deliberately not also reported
    /// as `source()`, or a chain printer (`{:#}`) would say it all twice.
    #[error("{context}: {}", strata_types::causes(.error))]
    Http {
        /// What was being done.
        context: String,
        /// The HTTP client's error.
        error: reqwest::Error,
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
    ///
    /// The message ends with the system error, so it is not also the error's `source()`.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The system error.
        error: std::io::Error,
    },
}

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

    #[tokio::test]
    async fn a_failed_request_names_each_cause_once() {
        // nothing listens on port 1 of loopback
        let error = reqwest::get("http://127.0.0.1:1/v2/").await.unwrap_err();
        let e = RegistryError::Http {
            context: "failed to reach 127.0.0.1:1".into(),
            error,
        };
        let shown = chain(&e);
        assert_eq!(shown.matches("error sending request").count(), 1, "{shown}");
        assert_eq!(shown.matches("127.0.0.1:1/v2/").count(), 1, "{shown}");
        assert!(shown.to_lowercase().contains("connect"), "{shown}");
        assert!(
            shown.starts_with("failed to reach 127.0.0.1:1: "),
            "{shown}"
        );
        let e = RegistryError::Io {
            context: "failed to write f".into(),
            error: std::io::Error::other("disk full"),
        };
        assert_eq!(chain(&e), "failed to write f: disk full");
    }
}
