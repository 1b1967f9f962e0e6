//! The parser service: Dockerfile text in, typed instruction tree out.
//!
//! The language itself lives in `strata-dockerfile` (no I/O, no gRPC); this crate adapts it
//! to `strata.parser.v1.Parser`.

mod convert;
mod error;
mod grpc;

use std::future::Future;

use strata_proto::{parser::parser_server::ParserServer, service_names};
use strata_server::{Listener, ServeOptions, Services};

pub use error::ParserError;
pub use grpc::{ParserService, parse_request};

/// Adds the parser service to `services`.
pub fn register(services: &mut Services, options: &ServeOptions) {
    let svc = ParserServer::new(ParserService {
        max_message_bytes: options.max_message_bytes,
    })
    .max_decoding_message_size(options.max_message_bytes)
    .max_encoding_message_size(options.max_message_bytes);
    services.routes.add_service(svc);
    services.names.push(service_names::PARSER);
}

/// Serves the parser on `listener` until `shutdown` resolves.
pub async fn run(
    listener: Listener,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut services = Services::default();
    register(&mut services, options);
    strata_server::serve(services, listener, options, shutdown).await
}
