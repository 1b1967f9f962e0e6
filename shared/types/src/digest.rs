//! Content digests: `sha256:` followed by 64 lowercase hex characters.
//!
//! strata stores content under sha256 only. Anything else — another algorithm, uppercase
//! hex, a wrong length, path characters — is rejected when parsed, so a digest string can be
//! used as a key or a file name without further checks.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a digest string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("invalid digest {0:?}: expected \"sha256:<64 lowercase hex characters>\"")]
    Malformed(String),
    /// An algorithm other than sha256.
    #[error(
        "invalid digest {value:?}: unsupported algorithm {algorithm:?} (only sha256 is supported)"
    )]
    UnsupportedAlgorithm {
        /// The digest as given.
        value: String,
        /// The algorithm named.
        algorithm: String,
    },
    /// The hex part has the wrong length.
    #[error("invalid digest {value:?}: sha256 hex must be 64 characters, got {len}")]
    WrongLength {
        /// The digest as given.
        value: String,
        /// The length found.
        len: usize,
    },
    /// The hex part has a character outside `0-9a-f`.
    #[error("invalid digest {0:?}: hex must be lowercase 0-9a-f")]
    BadHex(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Builds a digest from raw sha256 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex characters, without the algorithm.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex characters, as Docker shows image IDs.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// Parses `sha256:<hex>`; `what` names the field in the error a caller shows.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let Some((algorithm, hex_part)) = value.split_once(':') else {
            return Err(DigestError::Malformed(crate::clip(value)));
        };
        if algorithm != "sha256" {
            if algorithm.is_empty()
                || !algorithm
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-_".contains(c))
            {
                return Err(DigestError::Malformed(crate::clip(value)));
            }
            return Err(DigestError::UnsupportedAlgorithm {
                value: crate::clip(value),
                algorithm: algorithm.to_string(),
            });
        }
        if hex_part.len() != 64 {
            return Err(DigestError::WrongLength {
                value: crate::clip(value),
                len: hex_part.len(),
            });
        }
        if !hex_part
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::BadHex(crate::clip(value)));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out)
            .map_err(|_| DigestError::BadHex(crate::clip(value)))?;
        Ok(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An incremental sha256 that also counts bytes.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest(self.inner.finalize().into())
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_matches_the_known_value() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(Digest::parse(EMPTY).unwrap(), Digest::of(b""));
    }

    #[test]
    fn hasher_matches_one_shot() {
        let mut h = Hasher::new();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.len(), 11);
        assert_eq!(h.finish(), Digest::of(b"hello world"));
    }

    #[test]
    fn malformed_digests_are_rejected_with_the_reason() {
        let cases = [
            ("sha256:../x", "64 characters"),
            ("sha256:abc", "64 characters"),
            (
                &EMPTY.to_uppercase().replace("SHA256", "sha256"),
                "lowercase",
            ),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                "unsupported algorithm",
            ),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "expected",
            ),
            ("", "expected"),
            ("../../etc:passwd", "expected"),
        ];
        for (input, needle) in cases {
            let err = Digest::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
        let with_slash = format!("sha256:{}", "a/".repeat(32));
        assert!(Digest::parse(&with_slash).is_err());
    }

    #[test]
    fn short_is_twelve_hex() {
        assert_eq!(Digest::of(b"").short(), "e3b0c44298fc");
    }
}
