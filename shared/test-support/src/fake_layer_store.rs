//! A stand-in layer store for tests of services that only ask it about blobs (the tag
//! index checks a tag's target with CreateLease, StatBlob and DeleteLease). It holds no
//! content: it answers StatBlob from a table of media types, and every other call the tag
//! index does not make is UNIMPLEMENTED.

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use strata_proto::layer_store::{self as pb, layer_store_server::LayerStore};
use strata_server::{ServeOptions, Services};
use tonic::{Request, Response, Status};

use crate::InProcess;

/// The media type the fake reports for a digest it has no entry for, when it holds every
/// digest ([`FakeLayerStore::holding_every_image`]).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Debug, Default)]
struct State {
    /// digest -> media type; `None`: absent.
    blobs: HashMap<String, Option<String>>,
    /// What a digest without an entry is.
    default: Option<String>,
    leases: HashSet<String>,
    /// Every digest StatBlob found with a lease, in order.
    leased: Vec<(String, String)>,
}

/// A layer store that answers what a test tells it to. Clones share their state.
#[derive(Debug, Clone, Default)]
pub struct FakeLayerStore {
    state: Arc<Mutex<State>>,
    next: Arc<AtomicU64>,
}

impl FakeLayerStore {
    /// A store holding every digest as an image manifest (except those [`Self::remove`]d
    /// or [`Self::insert`]ed otherwise): for tests about tags, not about their targets.
    pub fn holding_every_image() -> Self {
        let fake = Self::default();
        fake.lock().default = Some(OCI_MANIFEST.to_string());
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `digest` as a blob of `media_type`.
    pub fn insert(&self, digest: &str, media_type: &str) {
        self.lock()
            .blobs
            .insert(digest.to_string(), Some(media_type.to_string()));
    }

    /// Does not hold `digest`.
    pub fn remove(&self, digest: &str) {
        self.lock().blobs.insert(digest.to_string(), None);
    }

    /// How many leases are live.
    pub fn live_leases(&self) -> usize {
        self.lock().leases.len()
    }

    /// Every (lease id, digest) StatBlob found with a lease, in order.
    pub fn leased(&self) -> Vec<(String, String)> {
        self.lock().leased.clone()
    }

    /// Serves it on a pre-bound loopback listener.
    pub async fn spawn(&self) -> InProcess {
        let fake = self.clone();
        InProcess::spawn(move |listener, shutdown| async move {
            let mut services = Services::default();
            services
                .routes
                .add_service(pb::layer_store_server::LayerStoreServer::new(fake));
            services
                .names
                .push(strata_proto::service_names::LAYER_STORE);
            strata_server::serve(services, listener, &ServeOptions::default(), shutdown).await
        })
        .await
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn unimplemented<T>(what: &str) -> Reply<T> {
    Err(Status::unimplemented(format!(
        "the fake layer store does not implement {what}"
    )))
}

#[tonic::async_trait]
impl LayerStore for FakeLayerStore {
    async fn write_blob(
        &self,
        _: Request<tonic::Streaming<pb::WriteBlobRequest>>,
    ) -> Reply<pb::WriteBlobResponse> {
        unimplemented("WriteBlob")
    }
    async fn get_upload(&self, _: Request<pb::GetUploadRequest>) -> Reply<pb::UploadStatus> {
        unimplemented("GetUpload")
    }
    async fn abort_upload(
        &self,
        _: Request<pb::AbortUploadRequest>,
    ) -> Reply<pb::AbortUploadResponse> {
        unimplemented("AbortUpload")
    }
    type ReadBlobStream =
        Pin<Box<dyn futures::Stream<Item = Result<pb::ReadBlobResponse, Status>> + Send>>;
    async fn read_blob(&self, _: Request<pb::ReadBlobRequest>) -> Reply<Self::ReadBlobStream> {
        unimplemented("ReadBlob")
    }
    async fn stat_blob(&self, request: Request<pb::StatBlobRequest>) -> Reply<pb::BlobInfo> {
        let r = request.into_inner();
        let mut state = self.lock();
        let media_type = match state.blobs.get(&r.digest) {
            Some(entry) => entry.clone(),
            None => state.default.clone(),
        };
        let Some(media_type) = media_type else {
            return Err(Status::not_found(format!("blob {} not found", r.digest)));
        };
        if !r.lease_id.is_empty() {
            if !state.leases.contains(&r.lease_id) {
                return Err(Status::failed_precondition(format!(
                    "lease {:?} is not live",
                    r.lease_id
                )));
            }
            state.leased.push((r.lease_id.clone(), r.digest.clone()));
        }
        Ok(Response::new(pb::BlobInfo {
            digest: r.digest,
            size: 1,
            media_type,
            ..Default::default()
        }))
    }
    async fn list_blobs(&self, _: Request<pb::ListBlobsRequest>) -> Reply<pb::ListBlobsResponse> {
        unimplemented("ListBlobs")
    }
    async fn delete_blob(
        &self,
        _: Request<pb::DeleteBlobRequest>,
    ) -> Reply<pb::DeleteBlobResponse> {
        unimplemented("DeleteBlob")
    }
    async fn get_cache_entry(&self, _: Request<pb::GetCacheEntryRequest>) -> Reply<pb::CacheEntry> {
        unimplemented("GetCacheEntry")
    }
    async fn put_cache_entry(
        &self,
        _: Request<pb::PutCacheEntryRequest>,
    ) -> Reply<pb::PutCacheEntryResponse> {
        unimplemented("PutCacheEntry")
    }
    async fn list_cache_entries(
        &self,
        _: Request<pb::ListCacheEntriesRequest>,
    ) -> Reply<pb::ListCacheEntriesResponse> {
        unimplemented("ListCacheEntries")
    }
    async fn create_lease(&self, request: Request<pb::CreateLeaseRequest>) -> Reply<pb::Lease> {
        let r = request.into_inner();
        let id = if r.id.is_empty() {
            format!("fake-{}", self.next.fetch_add(1, Ordering::Relaxed))
        } else {
            r.id
        };
        self.lock().leases.insert(id.clone());
        Ok(Response::new(pb::Lease {
            id,
            labels: r.labels,
            ..Default::default()
        }))
    }
    async fn add_lease_resources(
        &self,
        _: Request<pb::AddLeaseResourcesRequest>,
    ) -> Reply<pb::Lease> {
        unimplemented("AddLeaseResources")
    }
    async fn extend_lease(&self, request: Request<pb::ExtendLeaseRequest>) -> Reply<pb::Lease> {
        let id = request.into_inner().id;
        if self.lock().leases.contains(&id) {
            Ok(Response::new(pb::Lease {
                id,
                ..Default::default()
            }))
        } else {
            Err(Status::not_found(format!("no lease {id:?}")))
        }
    }
    async fn delete_lease(
        &self,
        request: Request<pb::DeleteLeaseRequest>,
    ) -> Reply<pb::DeleteLeaseResponse> {
        let id = request.into_inner().id;
        if self.lock().leases.remove(&id) {
            Ok(Response::new(pb::DeleteLeaseResponse {}))
        } else {
            Err(Status::not_found(format!("no lease {id:?}")))
        }
    }
    async fn list_leases(
        &self,
        _: Request<pb::ListLeasesRequest>,
    ) -> Reply<pb::ListLeasesResponse> {
        unimplemented("ListLeases")
    }
    async fn collect_garbage(
        &self,
        _: Request<pb::CollectGarbageRequest>,
    ) -> Reply<pb::CollectGarbageResponse> {
        unimplemented("CollectGarbage")
    }
    async fn verify_blobs(
        &self,
        _: Request<pb::VerifyBlobsRequest>,
    ) -> Reply<pb::VerifyBlobsResponse> {
        unimplemented("VerifyBlobs")
    }
    async fn get_usage(&self, _: Request<pb::GetUsageRequest>) -> Reply<pb::Usage> {
        unimplemented("GetUsage")
    }
}
