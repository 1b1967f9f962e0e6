//! What a blob refers to, for GC marking and usage: the config, layers, manifests and
//! subject a manifest or index names, the digests a blob's `strata.gc.ref.*` labels name, and
//! the blobs whose `strata.subject` label names it (records about it, see
//! [`strata_types::gc_label`]).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use serde::Deserialize;
use strata_types::{Digest, gc_label, media_type};
use tracing::warn;

use super::{Store, record::BlobRecord};
use crate::error::Result;

/// Blobs by the subject their `strata.subject` label names: the reverse edges of marking,
/// from an image or layer to the records about it.
#[derive(Debug, Default)]
pub(super) struct Dependents(HashMap<Digest, Vec<Digest>>);

impl Dependents {
    /// The index of `blobs` (every blob record, as [`Store::all_blobs`] reads them).
    pub(super) fn of(blobs: &[(Digest, BlobRecord)]) -> Self {
        let mut map: HashMap<Digest, Vec<Digest>> = HashMap::new();
        for (digest, r) in blobs {
            if let Some(subject) = gc_label::subject(&r.labels) {
                map.entry(subject).or_default().push(*digest);
            }
        }
        Self(map)
    }

    fn of_subject(&self, subject: &Digest) -> &[Digest] {
        self.0.get(subject).map_or(&[], Vec::as_slice)
    }
}

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
    /// The digests a stored blob refers to: those its `strata.gc.ref.*` labels name and,
    /// when it is a manifest or index, those it names; empty for an absent blob. A manifest
    /// that does not parse (logged) names nothing.
    pub(super) fn children(self: &Arc<Self>, digest: &Digest) -> Result<Vec<Digest>> {
        let Some(r) = self.load_blob(digest)? else {
            return Ok(Vec::new());
        };
        let mut out = gc_label::refs(&r.labels);
        if !(media_type::is_manifest(&r.media_type) || media_type::is_index(&r.media_type)) {
            return Ok(out);
        }
        if r.size > MAX_MANIFEST {
            warn!(digest = %digest, size = r.size, "manifest too large to follow its references");
            return Ok(out);
        }
        let content = self.read_all(digest)?;
        match parse(&content) {
            Ok(children) => out.extend(children),
            Err(reason) => {
                warn!(digest = %digest, %reason, "manifest does not parse; its references are not followed");
            }
        }
        Ok(out)
    }

    /// Whether `target` is reachable from `root` (following what [`Store::reachable`]
    /// follows, except that `target` is not reached as a record of its subject), not walking
    /// again what `seen` holds (digests an earlier walk reached
    /// without finding `target`); adds what this walk reaches to `seen`.
    pub(super) fn reaches(
        self: &Arc<Self>,
        root: Digest,
        target: &Digest,
        dependents: &Dependents,
        seen: &mut HashSet<Digest>,
    ) -> Result<bool> {
        let mut queue = VecDeque::from([root]);
        while let Some(d) = queue.pop_front() {
            if d == *target {
                return Ok(true);
            }
            if !seen.insert(d) {
                continue;
            }
            queue.extend(self.children(&d)?);
            // a record is kept with its subject by marking, not held by it against deletion
            queue.extend(
                dependents
                    .of_subject(&d)
                    .iter()
                    .filter(|r| *r != target)
                    .copied(),
            );
        }
        Ok(false)
    }

    /// Everything reachable from `roots` (the roots included, present or not), following
    /// [`Store::children`] and, from each digest reached, the blobs `dependents` lists as
    /// its records.
    pub(super) fn reachable(
        self: &Arc<Self>,
        roots: impl IntoIterator<Item = Digest>,
        dependents: &Dependents,
    ) -> Result<HashSet<Digest>> {
        let mut seen = HashSet::new();
        let mut queue: VecDeque<Digest> = roots.into_iter().collect();
        while let Some(d) = queue.pop_front() {
            if !seen.insert(d) {
                continue;
            }
            queue.extend(self.children(&d)?);
            queue.extend(dependents.of_subject(&d).iter().copied());
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
