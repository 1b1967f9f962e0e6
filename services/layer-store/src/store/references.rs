//! What a manifest or index refers to, for GC marking and usage.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
};

use serde::Deserialize;
use strata_types::{Digest, media_type};
use tracing::warn;

use super::Store;
use crate::error::Result;

/// Manifests larger than this are not parsed (the distribution spec caps them at 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Deserialize)]
struct ManifestOrIndex {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    subject: Option<Descriptor>,
}

/// The digests a manifest or index names (config, layers, manifests, subject).
pub fn parse(content: &[u8]) -> Result<Vec<Digest>, String> {
    let m: ManifestOrIndex = serde_json::from_slice(content).map_err(|e| e.to_string())?;
    m.config
        .into_iter()
        .chain(m.layers)
        .chain(m.manifests)
        .chain(m.subject)
        .map(|d| Digest::parse(&d.digest).map_err(|e| e.to_string()))
        .collect()
}

impl Store {
    /// The digests `digest` refers to when it is a stored manifest or index; empty for any
    /// other blob, an absent one, or one that does not parse (logged).
    pub(super) fn children(self: &Arc<Self>, digest: &Digest) -> Result<Vec<Digest>> {
        let Some(r) = self.load_blob(digest)? else {
            return Ok(Vec::new());
        };
        if !(media_type::is_manifest(&r.media_type) || media_type::is_index(&r.media_type)) {
            return Ok(Vec::new());
        }
        if r.size > MAX_MANIFEST {
            warn!(digest = %digest, size = r.size, "manifest too large to follow its references");
            return Ok(Vec::new());
        }
        let content = self.read_all(digest)?;
        match parse(&content) {
            Ok(children) => Ok(children),
            Err(reason) => {
                warn!(digest = %digest, %reason, "manifest does not parse; its references are not followed");
                Ok(Vec::new())
            }
        }
    }

    /// Everything reachable from `roots` (the roots included, present or not).
    pub(super) fn reachable(
        self: &Arc<Self>,
        roots: impl IntoIterator<Item = Digest>,
    ) -> Result<HashSet<Digest>> {
        let mut seen = HashSet::new();
        let mut queue: VecDeque<Digest> = roots.into_iter().collect();
        while let Some(d) = queue.pop_front() {
            if !seen.insert(d) {
                continue;
            }
            queue.extend(self.children(&d)?);
        }
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_indexes_name_their_children() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{a}","size":1}},"layers":[{{"digest":"{b}","size":1}}]}}"#
        );
        assert_eq!(parse(m.as_bytes()).unwrap(), vec![a, b]);
        let i =
            format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{a}"}},{{"digest":"{b}"}}]}}"#);
        assert_eq!(parse(i.as_bytes()).unwrap(), vec![a, b]);
        assert!(parse(b"{").is_err());
        assert!(parse(br#"{"layers":[{"digest":"sha256:../x"}]}"#).is_err());
    }
}
