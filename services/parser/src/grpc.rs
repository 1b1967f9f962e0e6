//! The thin adapter from `strata.parser.v1.Parser` to the Dockerfile library.

use strata_proto::parser::{
    parser_server::Parser, MatchIgnoreRequest, MatchIgnoreResponse, ParseDockerfileRequest,
    ParseDockerfileResponse,
};
use tonic::{Request, Response, Status};

use crate::ParserError;

/// The parser service.
#[derive(Debug, Default, Clone)]
pub struct ParserService;

#[tonic::async_trait]
impl Parser for ParserService {
    async fn parse_dockerfile(
        &self,
        _request: Request<ParseDockerfileRequest>,
    ) -> Result<Response<ParseDockerfileResponse>, Status> {
        Err(ParserError::Unimplemented("ParseDockerfile (the parser issue)").into())
    }

    async fn match_ignore(
        &self,
        _request: Request<MatchIgnoreRequest>,
    ) -> Result<Response<MatchIgnoreResponse>, Status> {
        Err(ParserError::Unimplemented("MatchIgnore (the parser issue)").into())
    }
}
