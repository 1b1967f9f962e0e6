//! `strata-tag-index`: serves the tag-index API.

use std::path::PathBuf;

use clap::Parser;

strata_server::serve_args!(ServeArgs, "STRATA_TAG_INDEX", "127.0.0.1:50053");

/// The strata tag-index service.
#[derive(Debug, Parser)]
#[command(name = "strata-tag-index", version)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
    /// Data directory (the service keeps its data in a subdirectory named after it).
    #[arg(long, env = "STRATA_ROOT")]
    root: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    strata_server::init_tracing(args.serve.log_format, &args.serve.log);
    let config = strata_tag_index::Config { root: args.root };
    let listener = strata_server::Listener::bind(&args.serve.listen).await?;
    strata_tag_index::run(
        config,
        listener,
        &args.serve.options(),
        strata_server::shutdown_signal(),
    )
    .await
}
