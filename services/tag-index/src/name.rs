//! Tag names as the store keys them: Docker references with a tag and no digest, in full
//! normalised form (`docker.io/library/busybox:latest`).

use std::fmt;

use strata_types::{Digest, Reference};

use crate::TagIndexError;

/// A validated, normalised tag name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagName {
    full: String,
    reference: Reference,
}

impl TagName {
    /// Parses `value` in any form Docker accepts (`busybox`, `localhost:5000/app:v1`);
    /// `field` names the request field in the error.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, TagIndexError> {
        let reference = Reference::parse_tag(value)
            .map_err(|source| TagIndexError::InvalidReference { field, source })?;
        Ok(Self {
            full: reference.to_string(),
            reference,
        })
    }

    /// The full normalised name, the store's key.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// Docker's short form, e.g. `busybox:latest`.
    pub fn familiar(&self) -> String {
        self.reference.familiar()
    }

    /// The parsed reference.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

impl fmt::Display for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagName({})", self.full)
    }
}

/// The familiar short form of a stored full name; the name itself if it does not parse
/// (which a stored name always does).
pub fn familiar(full: &str) -> String {
    Reference::parse_tag(full).map_or_else(|_| full.to_string(), |r| r.familiar())
}

/// Parses a digest field; `field` names it in the error.
pub fn parse_digest(field: &'static str, value: &str) -> Result<Digest, TagIndexError> {
    Digest::parse(value).map_err(|source| TagIndexError::InvalidDigest { field, source })
}

/// Parses a repository filter (`busybox`, `localhost:5000/app`) to its full name
/// (`docker.io/library/busybox`).
pub fn parse_repository(field: &'static str, value: &str) -> Result<String, TagIndexError> {
    Reference::parse_repository(value)
        .map(|r| r.name())
        .map_err(|source| TagIndexError::InvalidReference { field, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_to_one_key() {
        for form in [
            "busybox",
            "busybox:latest",
            "docker.io/library/busybox",
            "index.docker.io/busybox:latest",
        ] {
            assert_eq!(
                TagName::parse("name", form).unwrap().as_str(),
                "docker.io/library/busybox:latest"
            );
        }
        assert_eq!(
            TagName::parse("name", "busybox").unwrap().familiar(),
            "busybox:latest"
        );
        assert_eq!(familiar("localhost:5000/app:v1"), "localhost:5000/app:v1");
    }

    #[test]
    fn errors_name_the_field_and_the_part() {
        let e = TagName::parse("name", "Busybox").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid name:") && e.contains("repository name must be lowercase"),
            "{e}"
        );
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        let e = TagName::parse("target", &d).unwrap_err().to_string();
        assert!(e.contains("invalid target") && e.contains("digest"), "{e}");
        let e = parse_digest("expected_digest", "sha256:abc")
            .unwrap_err()
            .to_string();
        // the field, then the digest's own error (which says "invalid digest" once)
        assert!(
            e.starts_with("expected_digest: invalid digest \"sha256:abc\"")
                && e.contains("64 characters"),
            "{e}"
        );
        assert_eq!(e.matches("invalid").count(), 1, "{e}");
    }
}
