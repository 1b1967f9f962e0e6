//! The thin gRPC adapter.

use tonic::{Request, Response, Status};

/// The layer-store service.
#[derive(Debug, Default, Clone)]
pub struct LayerStoreService;

#[tonic::async_trait]
impl strata_proto::layer_store::layer_store_server::LayerStore for LayerStoreService {
    async fn write_blob(&self, _request: Request<tonic::Streaming<strata_proto::layer_store::WriteBlobRequest>>) -> Result<Response<strata_proto::layer_store::WriteBlobResponse>, Status> {
        Err(Status::unimplemented("WriteBlob is not implemented yet (the layer-store issue)"))
    }

    async fn get_upload(&self, _request: Request<strata_proto::layer_store::GetUploadRequest>) -> Result<Response<strata_proto::layer_store::UploadStatus>, Status> {
        Err(Status::unimplemented("GetUpload is not implemented yet (the layer-store issue)"))
    }

    async fn abort_upload(&self, _request: Request<strata_proto::layer_store::AbortUploadRequest>) -> Result<Response<strata_proto::layer_store::AbortUploadResponse>, Status> {
        Err(Status::unimplemented("AbortUpload is not implemented yet (the layer-store issue)"))
    }

    type ReadBlobStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<strata_proto::layer_store::ReadBlobResponse, Status>> + Send>>;

    async fn read_blob(&self, _request: Request<strata_proto::layer_store::ReadBlobRequest>) -> Result<Response<Self::ReadBlobStream>, Status> {
        Err(Status::unimplemented("ReadBlob is not implemented yet (the layer-store issue)"))
    }

    async fn stat_blob(&self, _request: Request<strata_proto::layer_store::StatBlobRequest>) -> Result<Response<strata_proto::layer_store::BlobInfo>, Status> {
        Err(Status::unimplemented("StatBlob is not implemented yet (the layer-store issue)"))
    }

    async fn list_blobs(&self, _request: Request<strata_proto::layer_store::ListBlobsRequest>) -> Result<Response<strata_proto::layer_store::ListBlobsResponse>, Status> {
        Err(Status::unimplemented("ListBlobs is not implemented yet (the layer-store issue)"))
    }

    async fn delete_blob(&self, _request: Request<strata_proto::layer_store::DeleteBlobRequest>) -> Result<Response<strata_proto::layer_store::DeleteBlobResponse>, Status> {
        Err(Status::unimplemented("DeleteBlob is not implemented yet (the layer-store issue)"))
    }

    async fn get_cache_entry(&self, _request: Request<strata_proto::layer_store::GetCacheEntryRequest>) -> Result<Response<strata_proto::layer_store::CacheEntry>, Status> {
        Err(Status::unimplemented("GetCacheEntry is not implemented yet (the layer-store issue)"))
    }

    async fn put_cache_entry(&self, _request: Request<strata_proto::layer_store::PutCacheEntryRequest>) -> Result<Response<strata_proto::layer_store::PutCacheEntryResponse>, Status> {
        Err(Status::unimplemented("PutCacheEntry is not implemented yet (the layer-store issue)"))
    }

    async fn list_cache_entries(&self, _request: Request<strata_proto::layer_store::ListCacheEntriesRequest>) -> Result<Response<strata_proto::layer_store::ListCacheEntriesResponse>, Status> {
        Err(Status::unimplemented("ListCacheEntries is not implemented yet (the layer-store issue)"))
    }

    async fn create_lease(&self, _request: Request<strata_proto::layer_store::CreateLeaseRequest>) -> Result<Response<strata_proto::layer_store::Lease>, Status> {
        Err(Status::unimplemented("CreateLease is not implemented yet (the layer-store issue)"))
    }

    async fn add_lease_resources(&self, _request: Request<strata_proto::layer_store::AddLeaseResourcesRequest>) -> Result<Response<strata_proto::layer_store::Lease>, Status> {
        Err(Status::unimplemented("AddLeaseResources is not implemented yet (the layer-store issue)"))
    }

    async fn delete_lease(&self, _request: Request<strata_proto::layer_store::DeleteLeaseRequest>) -> Result<Response<strata_proto::layer_store::DeleteLeaseResponse>, Status> {
        Err(Status::unimplemented("DeleteLease is not implemented yet (the layer-store issue)"))
    }

    async fn list_leases(&self, _request: Request<strata_proto::layer_store::ListLeasesRequest>) -> Result<Response<strata_proto::layer_store::ListLeasesResponse>, Status> {
        Err(Status::unimplemented("ListLeases is not implemented yet (the layer-store issue)"))
    }

    async fn collect_garbage(&self, _request: Request<strata_proto::layer_store::CollectGarbageRequest>) -> Result<Response<strata_proto::layer_store::CollectGarbageResponse>, Status> {
        Err(Status::unimplemented("CollectGarbage is not implemented yet (the layer-store issue)"))
    }

    async fn verify_blobs(&self, _request: Request<strata_proto::layer_store::VerifyBlobsRequest>) -> Result<Response<strata_proto::layer_store::VerifyBlobsResponse>, Status> {
        Err(Status::unimplemented("VerifyBlobs is not implemented yet (the layer-store issue)"))
    }

    async fn get_usage(&self, _request: Request<strata_proto::layer_store::GetUsageRequest>) -> Result<Response<strata_proto::layer_store::Usage>, Status> {
        Err(Status::unimplemented("GetUsage is not implemented yet (the layer-store issue)"))
    }

}
