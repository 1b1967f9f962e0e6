//! The thin gRPC adapter.

use tonic::{Request, Response, Status};

/// The tag-index service.
#[derive(Debug, Default, Clone)]
pub struct TagIndexService;

#[tonic::async_trait]
impl strata_proto::tag_index::tag_index_server::TagIndex for TagIndexService {
    async fn set_tag(&self, _request: Request<strata_proto::tag_index::SetTagRequest>) -> Result<Response<strata_proto::tag_index::SetTagResponse>, Status> {
        Err(Status::unimplemented("SetTag is not implemented yet (the tag-index issue)"))
    }

    async fn resolve_tag(&self, _request: Request<strata_proto::tag_index::ResolveTagRequest>) -> Result<Response<strata_proto::tag_index::Tag>, Status> {
        Err(Status::unimplemented("ResolveTag is not implemented yet (the tag-index issue)"))
    }

    async fn list_tags(&self, _request: Request<strata_proto::tag_index::ListTagsRequest>) -> Result<Response<strata_proto::tag_index::ListTagsResponse>, Status> {
        Err(Status::unimplemented("ListTags is not implemented yet (the tag-index issue)"))
    }

    async fn delete_tag(&self, _request: Request<strata_proto::tag_index::DeleteTagRequest>) -> Result<Response<strata_proto::tag_index::DeleteTagResponse>, Status> {
        Err(Status::unimplemented("DeleteTag is not implemented yet (the tag-index issue)"))
    }

    async fn get_tag_history(&self, _request: Request<strata_proto::tag_index::GetTagHistoryRequest>) -> Result<Response<strata_proto::tag_index::GetTagHistoryResponse>, Status> {
        Err(Status::unimplemented("GetTagHistory is not implemented yet (the tag-index issue)"))
    }

    type WatchTagsStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<strata_proto::tag_index::TagEvent, Status>> + Send>>;

    async fn watch_tags(&self, _request: Request<strata_proto::tag_index::WatchTagsRequest>) -> Result<Response<Self::WatchTagsStream>, Status> {
        Err(Status::unimplemented("WatchTags is not implemented yet (the tag-index issue)"))
    }

}
