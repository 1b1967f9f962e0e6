//! Leases: digests kept by GC until the lease expires or is deleted.

use std::{collections::BTreeMap, time::Duration};

use strata_kv::Durability;
use strata_types::Digest;

use super::{
    BlobInfo, LEASES, Store, lock, next_key, now_ns, random_id,
    record::{self, LeaseRecord},
};
use crate::error::{LayerStoreError, Result};

/// A lease as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: String,
    /// Expiry, ns since the epoch.
    pub expires_ns: i64,
    /// Protected digests.
    pub digests: Vec<Digest>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

fn lease(id: String, r: LeaseRecord) -> Lease {
    Lease {
        id,
        expires_ns: r.expires_ns,
        digests: r.digests.into_iter().collect(),
        labels: r.labels,
    }
}

const MAX_LEASE_ID: usize = 128;

impl Store {
    /// Creates a lease for `ttl`; an empty id lets the store choose. Not synced to disk, as
    /// no lease write is (see `save_lease`): the tag index creates and deletes one for every
    /// tag it moves, and two fsyncs each would bound its moves by the disk.
    pub fn create_lease(
        &self,
        id: &str,
        ttl: Duration,
        labels: BTreeMap<String, String>,
    ) -> Result<Lease> {
        super::metadata::check_labels("labels", &labels)?;
        let id = if id.is_empty() {
            random_id()
        } else {
            if id.len() > MAX_LEASE_ID || id.chars().any(char::is_control) {
                return Err(LayerStoreError::InvalidField {
                    field: "id",
                    reason: format!("a lease id is at most {MAX_LEASE_ID} printable characters"),
                });
            }
            id.to_string()
        };
        let _guard = lock(&self.records);
        if self.live_lease(&id)?.is_some() {
            return Err(LayerStoreError::LeaseExists(id));
        }
        let r = LeaseRecord {
            expires_ns: now_ns().saturating_add(ttl.as_nanos().min(i64::MAX as u128) as i64),
            digests: Default::default(),
            labels,
        };
        self.kv.put(
            LEASES,
            id.as_bytes(),
            &record::encode(&r),
            Durability::Buffered,
        )?;
        Ok(lease(id, r))
    }

    /// Adds digests to a live lease.
    pub fn add_lease_resources(&self, id: &str, digests: &[Digest]) -> Result<Lease> {
        let _guard = lock(&self.records);
        let mut r = self.live_lease_or_err(id)?;
        for d in digests {
            // a GC running now keeps it (see gc.rs)
            let _stripe = self.stripe(d);
            self.protect(*d);
            r.digests.insert(*d);
        }
        self.save_lease(id, &r)?;
        Ok(lease(id.to_string(), r))
    }

    /// Adds `digest` to a live lease if the store holds it; returns its size, or `None`
    /// (lease unchanged) when it is not there. Checked under the digest's stripe, so a GC
    /// cannot delete it between the check and the lease.
    pub(super) fn lease_existing(&self, id: &str, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.lease_existing_record(id, digest)?.map(|r| r.size))
    }

    /// [`Store::lease_existing`], returning the blob's record.
    fn lease_existing_record(
        &self,
        id: &str,
        digest: &Digest,
    ) -> Result<Option<record::BlobRecord>> {
        let _guard = lock(&self.records);
        let mut r = self.live_lease_or_err(id)?;
        let _stripe = self.stripe(digest);
        let Some(blob) = self.load_blob(digest)? else {
            return Ok(None);
        };
        self.protect(*digest);
        if r.digests.insert(*digest) {
            self.save_lease(id, &r)?;
        }
        Ok(Some(blob))
    }

    /// A blob's record, the blob joining the live lease `id` in the same step (under its
    /// stripe, so a GC either keeps it or deleted it before: never between this answer and
    /// the end of the lease). NOT_FOUND for an absent blob (the lease unchanged); an unknown
    /// or expired lease is [`LayerStoreError::LeaseGone`].
    pub fn stat_leased(&self, digest: &Digest, id: &str) -> Result<BlobInfo> {
        match self.lease_existing_record(id, digest) {
            Ok(Some(r)) => Ok(BlobInfo::new(*digest, r)),
            Ok(None) => Err(LayerStoreError::BlobNotFound(*digest)),
            Err(LayerStoreError::LeaseNotFound(_)) => Err(LayerStoreError::LeaseGone(id.into())),
            Err(e) => Err(e),
        }
    }

    fn live_lease_or_err(&self, id: &str) -> Result<LeaseRecord> {
        self.live_lease(id)?
            .ok_or_else(|| LayerStoreError::LeaseNotFound(id.to_string()))
    }

    /// Writes a lease's record. A lease lives as long as its build's process: a crash of the
    /// machine ends both, so the record need not wait for the disk (a crash of this process
    /// alone keeps it).
    fn save_lease(&self, id: &str, r: &LeaseRecord) -> Result<()> {
        self.kv.put(
            LEASES,
            id.as_bytes(),
            &record::encode(r),
            Durability::Buffered,
        )?;
        Ok(())
    }

    /// Moves a live lease's expiry to now plus `ttl`.
    pub fn extend_lease(&self, id: &str, ttl: Duration) -> Result<Lease> {
        let _guard = lock(&self.records);
        let mut r = self.live_lease_or_err(id)?;
        r.expires_ns = now_ns().saturating_add(ttl.as_nanos().min(i64::MAX as u128) as i64);
        self.save_lease(id, &r)?;
        Ok(lease(id.to_string(), r))
    }

    /// Deletes a live lease.
    ///
    /// A GC running now keeps the lease's digests all the same (they count as confirmed, see
    /// gc.rs): the work the lease protected — a build or the tag index moving a tag — ends
    /// by moving a tag and then deleting its lease, and that tag may have moved after the GC
    /// read the tags but before it read the leases.
    pub fn delete_lease(&self, id: &str) -> Result<()> {
        let _guard = lock(&self.records);
        let Some(r) = self.live_lease(id)? else {
            return Err(LayerStoreError::LeaseNotFound(id.to_string()));
        };
        for d in &r.digests {
            let _stripe = self.stripe(d);
            self.protect(*d);
        }
        // unsynced, as every lease write (see save_lease): a deletion lost with the machine
        // only keeps the lease's blobs until it expires
        self.kv
            .delete(LEASES, id.as_bytes(), Durability::Buffered)?;
        Ok(())
    }

    /// Every live lease.
    pub fn list_leases(&self) -> Result<Vec<Lease>> {
        let now = now_ns();
        Ok(self
            .all_leases()?
            .into_iter()
            .filter(|(_, r)| r.expires_ns > now)
            .map(|(id, r)| lease(id, r))
            .collect())
    }

    /// Removes expired leases; returns how many.
    pub(super) fn sweep_expired_leases(&self) -> Result<u64> {
        self.sweep_leases(false)
    }

    /// Removes expired leases, or with `every` all of them (see
    /// [`super::Settings::leases_end_with_process`]); returns how many.
    pub(super) fn sweep_leases(&self, every: bool) -> Result<u64> {
        let _guard = lock(&self.records);
        let now = now_ns();
        let mut n = 0;
        for (id, r) in self.all_leases()? {
            if every || r.expires_ns <= now {
                self.kv
                    .delete(LEASES, id.as_bytes(), Durability::Buffered)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn live_lease(&self, id: &str) -> Result<Option<LeaseRecord>> {
        let Some(v) = self.kv.get(LEASES, id.as_bytes())? else {
            return Ok(None);
        };
        let r: LeaseRecord = record::decode(|| format!("lease {id}"), &v)?;
        Ok((r.expires_ns > now_ns()).then_some(r))
    }

    fn all_leases(&self) -> Result<Vec<(String, LeaseRecord)>> {
        let mut out = Vec::new();
        let mut start = Vec::new();
        loop {
            let page = self.kv.scan(LEASES, b"", &start, 512)?;
            let Some((last, _)) = page.last() else { break };
            start = next_key(last);
            for (k, v) in page {
                let id = String::from_utf8_lossy(&k).into_owned();
                let r = record::decode(|| format!("lease {id}"), &v)?;
                out.push((id, r));
            }
        }
        Ok(out)
    }

    /// Digests of every live lease.
    pub(super) fn leased_digests(&self) -> Result<Vec<Digest>> {
        Ok(self
            .list_leases()?
            .into_iter()
            .flat_map(|l| l.digests)
            .collect())
    }
}
