//! The check before a tag moves: the layer store holds the target, and the target is an
//! image manifest or index.
//!
//! A tag must never point at a digest the store does not hold, and the layer store's GC
//! must not take the target between the check and the move. So the check leases the target:
//! it creates a lease, asks the layer store for the blob's record with that lease (the blob
//! joins the lease under its GC lock in the same call: a GC either deleted it before, and
//! the check fails, or keeps it), moves the tag, and only then deletes the lease. A GC that
//! read the tags before the move still keeps the target: the lease was live when it read the
//! leases, or its deletion during the GC protects the lease's digests. The layer store's
//! DeleteBlob decides the same way.

use strata_proto::layer_store::{
    CreateLeaseRequest, DeleteLeaseRequest, StatBlobRequest, layer_store_client::LayerStoreClient,
};
use strata_server::client::Transport;
use strata_types::{Digest, media_type};
use tracing::warn;

use crate::{TagIndexError, name::TagName};

/// How long a target's lease lasts if nobody deletes it (the tag index deletes it as soon as
/// the tag has moved, or when the request is abandoned): longer than any request may take.
const HOLD_TTL_SECONDS: u32 = 3600;

/// The label a target's lease carries: the tag being moved.
pub const LEASE_LABEL: &str = "strata.tag-index.tag";

/// The layer store the tag index checks targets against.
#[derive(Clone)]
pub struct Targets {
    label: String,
    transport: Transport,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets")
            .field("layer_store", &self.label)
            .finish()
    }
}

impl Targets {
    /// Checks targets in the layer store at `transport` (named `label` in messages).
    pub fn new(label: String, transport: Transport) -> Self {
        Self { label, transport }
    }

    fn unavailable(&self, name: &TagName, status: &tonic::Status) -> TagIndexError {
        TagIndexError::LayerStoreUnavailable {
            name: name.to_string(),
            addr: self.label.clone(),
            reason: format!("{:?}: {}", status.code(), status.message()),
        }
    }

    /// Checks that the layer store holds `digest` and that it is an image manifest or index,
    /// and keeps it from GC until the returned hold is released (after the tag moved).
    pub async fn hold(&self, name: &TagName, digest: &Digest) -> Result<Hold, TagIndexError> {
        let mut client = LayerStoreClient::new(self.transport.clone());
        let lease = client
            .create_lease(CreateLeaseRequest {
                id: String::new(),
                ttl_seconds: HOLD_TTL_SECONDS,
                labels: [(LEASE_LABEL.to_string(), name.to_string())].into(),
            })
            .await
            .map_err(|s| self.unavailable(name, &s))?
            .into_inner();
        let hold = Hold {
            client: Some(client.clone()),
            lease_id: lease.id.clone(),
        };
        let info = match client
            .stat_blob(StatBlobRequest {
                digest: digest.to_string(),
                lease_id: lease.id,
            })
            .await
        {
            Ok(info) => info.into_inner(),
            Err(s) => {
                hold.release().await;
                return Err(if s.code() == tonic::Code::NotFound {
                    TagIndexError::TargetMissing {
                        name: name.to_string(),
                        digest: *digest,
                    }
                } else {
                    self.unavailable(name, &s)
                });
            }
        };
        if !(media_type::is_manifest(&info.media_type) || media_type::is_index(&info.media_type)) {
            hold.release().await;
            return Err(TagIndexError::TargetNotImage {
                name: name.to_string(),
                digest: *digest,
                media_type: info.media_type,
            });
        }
        Ok(hold)
    }
}

/// A checked target, kept from GC by a lease until released. Dropped unreleased (the
/// request was abandoned), it deletes the lease in the background.
#[derive(Debug)]
pub struct Hold {
    client: Option<LayerStoreClient<Transport>>,
    lease_id: String,
}

impl Hold {
    /// Ends the lease (a failure is logged: the lease then expires on its own).
    pub async fn release(mut self) {
        if let Some(client) = self.client.take() {
            delete_lease(client, std::mem::take(&mut self.lease_id)).await;
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(delete_lease(client, std::mem::take(&mut self.lease_id)));
        }
    }
}

async fn delete_lease(mut client: LayerStoreClient<Transport>, id: String) {
    if let Err(s) = client
        .delete_lease(DeleteLeaseRequest { id: id.clone() })
        .await
    {
        warn!(lease = %id, code = ?s.code(), error = %s.message(), "cannot delete the lease of a checked tag target; it expires on its own");
    }
}
