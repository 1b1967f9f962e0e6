//! Blob labels with a meaning for the layer store's garbage collection, so a client can keep
//! small records *about* other blobs (strata-transfer's repo digests, compressed forms of
//! layers, blob locations) alive exactly as long as what they describe.
//!
//! - [`SUBJECT`]: the blob is reached whenever the digest in the label's value is reached:
//!   a record about an image or a layer lives as long as that image or layer does, and is
//!   collected with it.
//! - [`REF_PREFIX`]: while the blob is reached, so is the digest in the label's value, present
//!   or not (as a manifest reaches its layers); a record can so keep a further record whose
//!   subject is that digest.
//! - [`ROOT`]: the blob is a root of marking, as a tag or a lease is: it is kept until it is
//!   deleted, and keeps what its [`REF_PREFIX`] labels name (a digest reference, kept by a
//!   pull by digest, keeps its image this way).
//!
//! Marking follows all three, whatever the blob's media type.

use crate::Digest;

/// Label key: "keep me while this digest is kept" (the value is a digest).
pub const SUBJECT: &str = "strata.subject";

/// Label key prefix: "keep this digest while I am kept" (`strata.gc.ref.<name>`, the value
/// is a digest).
pub const REF_PREFIX: &str = "strata.gc.ref.";

/// Label key: "I am a GC root" (any value; strata writes `true`). Such a blob lives until it
/// is deleted (`DeleteBlob`), whatever reaches it.
pub const ROOT: &str = "strata.gc.root";

/// Whether a label set makes its blob a GC root ([`ROOT`]).
pub fn is_root<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> bool {
    labels.into_iter().any(|(k, _)| k.as_str() == ROOT)
}

/// The digest a label set names as its subject, when it names a valid one.
pub fn subject<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Option<Digest> {
    labels
        .into_iter()
        .find(|(k, _)| k.as_str() == SUBJECT)
        .and_then(|(_, v)| Digest::parse(v).ok())
}

/// The digests a label set tells GC to keep along with its blob (invalid values are skipped).
pub fn refs<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<Digest> {
    labels
        .into_iter()
        .filter(|(k, _)| k.starts_with(REF_PREFIX))
        .filter_map(|(_, v)| Digest::parse(v).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn subjects_and_refs_are_read_from_labels() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let labels = BTreeMap::from([
            (SUBJECT.to_string(), a.to_string()),
            (format!("{REF_PREFIX}compressed"), b.to_string()),
            (format!("{REF_PREFIX}bad"), "sha256:nope".to_string()),
            ("other".to_string(), a.to_string()),
        ]);
        assert_eq!(subject(&labels), Some(a));
        assert_eq!(refs(&labels), vec![b]);
        let none = BTreeMap::from([(SUBJECT.to_string(), "x".to_string())]);
        assert_eq!(subject(&none), None);
        assert!(refs(&none).is_empty());
        assert!(!is_root(&labels));
        assert!(is_root(&BTreeMap::from([(
            ROOT.to_string(),
            "true".to_string()
        )])));
    }
}
