//! The thin gRPC adapter.

use tonic::{Request, Response, Status};

/// The executor service.
#[derive(Debug, Default, Clone)]
pub struct ExecutorService;

#[tonic::async_trait]
impl strata_proto::executor::executor_server::Executor for ExecutorService {
    type BuildStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<strata_proto::executor::BuildEvent, Status>> + Send>>;

    async fn build(&self, _request: Request<strata_proto::executor::BuildRequest>) -> Result<Response<Self::BuildStream>, Status> {
        Err(Status::unimplemented("Build is not implemented yet (the executor issue)"))
    }

    async fn explain_build(&self, _request: Request<strata_proto::executor::BuildRequest>) -> Result<Response<strata_proto::executor::ExplainBuildResponse>, Status> {
        Err(Status::unimplemented("ExplainBuild is not implemented yet (the executor issue)"))
    }

    async fn cancel_build(&self, _request: Request<strata_proto::executor::CancelBuildRequest>) -> Result<Response<strata_proto::executor::CancelBuildResponse>, Status> {
        Err(Status::unimplemented("CancelBuild is not implemented yet (the executor issue)"))
    }

}
