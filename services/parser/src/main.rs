//! `strata-parser`: serves the parser API.

use clap::Parser;

strata_server::serve_args!(ServeArgs, "STRATA_PARSER", "127.0.0.1:50051");

/// Parses Dockerfiles over gRPC (strata.parser.v1.Parser).
#[derive(Debug, Parser)]
#[command(name = "strata-parser", version)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_server::tune_allocator(None);
    let args = Args::parse();
    args.serve.init_tracing()?;
    strata_server::raise_open_files_limit();
    let listener = strata_server::Listener::bind(&args.serve.listen).await?;
    strata_parser::run(
        listener,
        &args.serve.options(),
        strata_server::shutdown_signal(),
    )
    .await
}
