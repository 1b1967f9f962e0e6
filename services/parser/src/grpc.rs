//! The thin adapter from `strata.parser.v1.Parser` to the Dockerfile library.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use strata_dockerfile as df;
use strata_proto::parser::{
    MatchIgnoreRequest, MatchIgnoreResponse, ParseDockerfileRequest, ParseDockerfileResponse,
    parser_server::Parser,
};
use tonic::{Request, Response, Status};

use crate::{ParserError, convert};

/// The parser service. Stateless: any replica answers any request.
#[derive(Debug, Clone)]
pub struct ParserService {
    /// The largest response that may be sent (`--max-message-bytes`).
    pub max_message_bytes: usize,
}

/// Parses one request; pure CPU work, run off the async executor by the caller.
pub fn parse_request(req: ParseDockerfileRequest) -> Result<ParseDockerfileResponse, ParserError> {
    let filename = if req.filename.is_empty() {
        "Dockerfile".to_string()
    } else {
        req.filename.clone()
    };
    let target_platform = match req.platform {
        Some(p) if !p.os.is_empty() || !p.architecture.is_empty() => Some(df::Platform {
            os: if p.os.is_empty() {
                "linux".into()
            } else {
                p.os
            },
            architecture: if p.architecture.is_empty() {
                "amd64".into()
            } else {
                p.architecture
            },
            variant: (!p.variant.is_empty()).then_some(p.variant),
        }),
        _ => None,
    };
    let options = df::ParseOptions {
        build_args: req.build_args.into_iter().collect::<BTreeMap<_, _>>(),
        target: (!req.target.is_empty()).then_some(req.target),
        target_platform,
        build_platform: None,
        base_images: req
            .base_images
            .into_iter()
            .map(|(name, d)| {
                (
                    name,
                    df::ImageDefaults {
                        env: d.env.into_iter().map(|kv| (kv.key, kv.value)).collect(),
                        working_dir: (!d.working_dir.is_empty()).then_some(d.working_dir),
                        shell: (!d.shell.is_empty()).then_some(d.shell),
                        on_build: d.on_build,
                    },
                )
            })
            .collect(),
        dockerignore: None,
    };
    let ast = df::parse(&req.content).map_err(|e| ParserError::Syntax(e.render(&filename)))?;
    let ast_dump = if req.include_ast_dump {
        df::dump(&ast.root)
    } else {
        String::new()
    };
    let dockerfile = match df::from_ast(&ast, &options) {
        Ok(d) => d,
        // BuildKit dumps files whose instructions are invalid (a CMD before FROM, an unknown
        // flag): when the dump was asked for, give it, without the typed tree and with the
        // reason there is none (a client that also wants the tree must not take an OK
        // without one for success)
        Err(e) if req.include_ast_dump => {
            return Ok(ParseDockerfileResponse {
                dockerfile: None,
                warnings: vec![],
                ast_dump,
                error: e.render(&filename),
            });
        }
        Err(e) => return Err(ParserError::Syntax(e.render(&filename))),
    };
    // the typed layer's warnings already include the parser's own (empty continuations)
    Ok(ParseDockerfileResponse {
        dockerfile: Some(convert::dockerfile(&dockerfile)),
        warnings: convert::warnings(&dockerfile),
        ast_dump,
        error: String::new(),
    })
}

#[tonic::async_trait]
impl Parser for ParserService {
    async fn parse_dockerfile(
        &self,
        request: Request<ParseDockerfileRequest>,
    ) -> Result<Response<ParseDockerfileResponse>, Status> {
        let req = request.into_inner();
        let response = tokio::task::spawn_blocking(move || parse_request(req))
            .await
            .map_err(|e| Status::internal(format!("parser task failed: {e}")))??;
        // tonic would refuse to send it with a bare OUT_OF_RANGE: say what is too large
        let len = prost::Message::encoded_len(&response);
        if len > self.max_message_bytes {
            return Err(ParserError::TooLarge {
                bytes: len,
                limit: self.max_message_bytes,
            }
            .into());
        }
        Ok(Response::new(response))
    }

    async fn match_ignore(
        &self,
        request: Request<MatchIgnoreRequest>,
    ) -> Result<Response<MatchIgnoreResponse>, Status> {
        let req = request.into_inner();
        // Matching many patterns against many paths is CPU work of any length: it runs off
        // the async workers (which answer health probes and every other call), and stops
        // when the call is gone (client cancelled, deadline passed), which drops `_gone`.
        let stop = Arc::new(AtomicBool::new(false));
        let _gone = StopOnDrop(stop.clone());
        let excluded = tokio::task::spawn_blocking(move || -> Result<Vec<bool>, Status> {
            let ignore = df::DockerIgnore::parse(&req.dockerignore).map_err(|e| {
                ParserError::InvalidArgument {
                    field: "dockerignore",
                    reason: e.to_string(),
                }
            })?;
            let mut excluded = Vec::with_capacity(req.paths.len());
            for p in &req.paths {
                if stop.load(Ordering::Relaxed) {
                    return Err(Status::cancelled("the call ended"));
                }
                excluded.push(ignore.matches(p));
            }
            Ok(excluded)
        })
        .await
        .map_err(|e| Status::internal(format!("parser task failed: {e}")))??;
        Ok(Response::new(MatchIgnoreResponse { excluded }))
    }
}

/// Sets its flag when dropped: a call's work on a blocking thread sees the call has ended.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
