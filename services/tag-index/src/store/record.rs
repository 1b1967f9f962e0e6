//! What the tag store keeps, and how keys and values are laid out in the key spaces.
//!
//! | space       | key                                  | value        |
//! |-------------|--------------------------------------|--------------|
//! | `tags`      | normalised name                      | [`TagRecord`] (JSON) |
//! | `by_digest` | `sha256:<hex>` `\0` name             | empty        |
//! | `history`   | name `\0` sequence (u64 big-endian)  | [`TagEvent`] (JSON) |
//! | `events`    | sequence (u64 big-endian)            | [`TagEvent`] (JSON) |
//! | `meta`      | `last_sequence`                      | u64 big-endian |
//! | `meta`      | `pruned_through`                     | u64 big-endian |
//!
//! Names never contain `\0`, and big-endian sequences sort numerically, so every scan is a
//! plain prefix scan. Every move writes all of its rows in one batch; pruning the log is one
//! range delete of `events` plus the `pruned_through` row, in one batch.

use serde::{Deserialize, Serialize};
use strata_kv::{Space, WriteBatch};
use strata_types::Digest;

use crate::TagIndexError;

/// Tag name -> record.
pub const TAGS: Space = Space::small("tags");
/// Digest + name -> nothing: which tags point at a digest.
pub const BY_DIGEST: Space = Space::small("by_digest");
/// Name + sequence -> event: each tag's moves.
pub const HISTORY: Space = Space::small("history");
/// Sequence -> event: the global change log that watchers replay.
pub const EVENTS: Space = Space::small("events");
/// Bookkeeping.
pub const META: Space = Space::small("meta");

/// Every space the tag store uses; open the [`strata_kv::KvStore`] with these.
pub const SPACES: &[Space] = &[TAGS, BY_DIGEST, HISTORY, EVENTS, META];

/// The `meta` key holding the last committed sequence.
pub const LAST_SEQUENCE: &[u8] = b"last_sequence";
/// The `meta` key holding the highest sequence pruned from `events` (absent: none).
pub const PRUNED_THROUGH: &[u8] = b"pruned_through";

/// A tag and where it points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// Normalised full name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// The manifest digest it points at.
    pub digest: Digest,
    /// When it last moved, nanoseconds since the Unix epoch.
    pub updated_at_ns: i64,
    /// The sequence of its last move.
    pub sequence: u64,
}

/// One committed change of one tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEvent {
    /// Global, strictly increasing, without gaps.
    pub sequence: u64,
    /// Normalised full name.
    pub name: String,
    /// Where it pointed before (`None`: it was created).
    pub old: Option<Digest>,
    /// Where it points now (`None`: it was deleted).
    pub new: Option<Digest>,
    /// When the change was committed, nanoseconds since the Unix epoch.
    pub time_ns: i64,
}

/// Key of `seq` in `events`.
pub fn event_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Prefix of one tag's rows in `history`.
pub fn history_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 9);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

/// Key of one move in `history`.
pub fn history_key(name: &str, seq: u64) -> Vec<u8> {
    let mut k = history_prefix(name);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of the tags of one digest in `by_digest`.
pub fn by_digest_prefix(digest: &Digest) -> Vec<u8> {
    let mut k = digest.to_string().into_bytes();
    k.push(0);
    k
}

/// Key of one tag in `by_digest`.
pub fn by_digest_key(digest: &Digest, name: &str) -> Vec<u8> {
    let mut k = by_digest_prefix(digest);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The big-endian sequence at the end of a `history` or `events` key.
pub fn sequence_suffix(space: Space, key: &[u8]) -> Result<u64, TagIndexError> {
    key.len()
        .checked_sub(8)
        .and_then(|at| key[at..].try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt(space, key, "key shorter than a sequence number"))
}

/// Encodes a record or event.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain structs of strings and integers cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Decodes a record or event, reporting a damaged value with its place.
pub fn decode<T: for<'de> Deserialize<'de>>(
    space: Space,
    key: &[u8],
    value: &[u8],
) -> Result<T, TagIndexError> {
    serde_json::from_slice(value).map_err(|e| corrupt(space, key, &e.to_string()))
}

/// Decodes the `meta` sequence value.
pub fn decode_sequence(value: &[u8]) -> Result<u64, TagIndexError> {
    decode_meta(LAST_SEQUENCE, value)
}

/// Decodes the sequence held in the `meta` row `key`.
pub fn decode_meta(key: &[u8], value: &[u8]) -> Result<u64, TagIndexError> {
    value
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(META, key, "not an 8-byte sequence"))
}

/// Adds to `batch` the removal of every event up to and including `through`, and records it.
pub fn prune(batch: &mut WriteBatch, through: u64) {
    batch.delete_range(
        EVENTS,
        event_key(0).to_vec(),
        event_key(through.saturating_add(1)).to_vec(),
    );
    batch.put(META, PRUNED_THROUGH, through.to_be_bytes());
}

fn corrupt(space: Space, key: &[u8], reason: &str) -> TagIndexError {
    TagIndexError::Corrupt {
        space: space.name,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_sort_by_sequence_within_a_name() {
        let a = history_key("docker.io/library/a:1", 2);
        let b = history_key("docker.io/library/a:1", 10);
        let c = history_key("docker.io/library/a:1", 256);
        assert!(a < b && b < c);
        // a name that extends another never interleaves with it
        let longer = history_key("docker.io/library/a:10", 1);
        assert!(!longer.starts_with(&history_prefix("docker.io/library/a:1")));
        assert_eq!(sequence_suffix(HISTORY, &c).unwrap(), 256);
    }

    #[test]
    fn records_round_trip_and_damage_is_reported() {
        let r = TagRecord {
            name: "docker.io/library/a:1".into(),
            digest: Digest::of(b"x"),
            updated_at_ns: 1_700_000_000_000_000_000,
            sequence: 7,
        };
        let v = encode(&r);
        assert_eq!(decode::<TagRecord>(TAGS, b"k", &v).unwrap(), r);
        let err = decode::<TagRecord>(TAGS, b"k", b"{").unwrap_err();
        assert!(
            matches!(err, TagIndexError::Corrupt { space: "tags", .. }),
            "{err}"
        );
        assert!(sequence_suffix(EVENTS, b"abc").is_err());
    }
}
