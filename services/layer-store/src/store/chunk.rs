//! Content chunks: key = group ‖ index (u32 big-endian), value = bytes ‖ crc32c(key ‖ bytes)
//! (little-endian). The checksum covers the key so a chunk moved to another key is caught as
//! surely as a flipped bit.

use strata_kv::{KvStore, WriteBatch};

use super::CHUNKS;

/// Bytes of the checksum trailer.
pub const TRAILER: usize = 4;

/// Chunks per group up to which a group is removed with a delete per chunk; larger groups,
/// and groups whose chunk count is unknown (a session may have stored chunks past its last
/// checkpoint), get one range tombstone.
const RANGE_DELETE_FROM: u64 = 1;

/// The key of chunk `index` of `group`.
pub fn key(group: &[u8], index: u64) -> Vec<u8> {
    let index = u32::try_from(index).expect("blobs stay below 4 Gi chunks");
    let mut k = Vec::with_capacity(group.len() + 4);
    k.extend_from_slice(group);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Appends the checksum trailer to `data` (reserve [`TRAILER`] extra bytes to avoid a
/// reallocation).
pub fn seal(key: &[u8], mut data: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(key), &data);
    data.extend_from_slice(&crc.to_le_bytes());
    data
}

/// Why a stored chunk is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkFault {
    /// The key is absent.
    Missing,
    /// Shorter than its trailer.
    Truncated,
    /// The checksum does not match.
    Checksum,
}

impl std::fmt::Display for ChunkFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Missing => "is missing",
            Self::Truncated => "is truncated",
            Self::Checksum => "fails its checksum",
        })
    }
}

/// Checks a stored value and strips its trailer.
pub fn open(key: &[u8], mut value: Vec<u8>) -> Result<Vec<u8>, ChunkFault> {
    if value.len() < TRAILER {
        return Err(ChunkFault::Truncated);
    }
    let split = value.len() - TRAILER;
    let stored = u32::from_le_bytes(value[split..].try_into().expect("four bytes"));
    if crc32c::crc32c_append(crc32c::crc32c(key), &value[..split]) != stored {
        return Err(ChunkFault::Checksum);
    }
    value.truncate(split);
    Ok(value)
}

/// Reads and checks chunk `index` of `group`. The outer error is storage failing.
pub fn read(
    kv: &dyn KvStore,
    group: &[u8],
    index: u64,
) -> strata_kv::Result<Result<Vec<u8>, ChunkFault>> {
    let k = key(group, index);
    Ok(match kv.get(CHUNKS, &k)? {
        None => Err(ChunkFault::Missing),
        Some(v) => open(&k, v),
    })
}

/// The first key past every chunk key of `group`.
fn group_end(group: &[u8]) -> Vec<u8> {
    strata_kv::prefix_end(group).unwrap_or_else(|| vec![0xff; group.len() + 5])
}

/// Frees the disk of a deleted group's table files now (a bulk load's file holds one group's
/// chunks only) instead of at some later compaction. Best effort: the chunks are already
/// deleted, and a failure leaves their space to compaction.
pub fn reclaim_group(kv: &dyn KvStore, group: &[u8]) {
    if let Err(e) = kv.drop_files_in_range(CHUNKS, group, &group_end(group)) {
        tracing::warn!(group = %hex::encode(group), error = %e, "cannot free a deleted group's files now; compaction will");
    }
}

/// Adds the deletion of a group's chunks to `batch`: `count` point deletes when known and
/// small, otherwise one range tombstone over the whole group.
pub fn delete_group(batch: &mut WriteBatch, group: &[u8], count: Option<u64>) {
    match count {
        Some(n) if n <= RANGE_DELETE_FROM => {
            for i in 0..n {
                batch.delete(CHUNKS, key(group, i));
            }
        }
        _ => {
            batch.delete_range(CHUNKS, group.to_vec(), group_end(group));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_chunks_open_and_any_flipped_bit_is_caught() {
        let k = key(&[7; 16], 3);
        let sealed = seal(&k, b"hello chunk".to_vec());
        assert_eq!(open(&k, sealed.clone()).unwrap(), b"hello chunk");
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[i] ^= 1 << bit;
                assert_eq!(
                    open(&k, bad),
                    Err(ChunkFault::Checksum),
                    "byte {i} bit {bit}"
                );
            }
        }
        assert_eq!(
            open(&key(&[7; 16], 4), sealed),
            Err(ChunkFault::Checksum),
            "moved chunk"
        );
        assert_eq!(open(&k, vec![1, 2]), Err(ChunkFault::Truncated));
    }

    #[test]
    fn keys_sort_by_group_then_index() {
        assert!(key(&[1; 16], 255) < key(&[1; 16], 256));
        assert!(key(&[1; 16], u32::MAX as u64) < key(&[2; 16], 0));
    }
}
