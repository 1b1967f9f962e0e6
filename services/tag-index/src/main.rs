//! `strata-tag-index`: serves the tag-index API.

use std::path::PathBuf;

use clap::Parser;
use strata_server::ListenAddr;

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
    /// Events the global change log keeps at least; older ones are pruned, and a watcher
    /// asking for them is told to list again. Per-tag history is never pruned.
    #[arg(
        long,
        env = strata_tag_index::EVENT_RETENTION_ENV,
        default_value_t = strata_tag_index::store::DEFAULT_EVENT_RETENTION,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    event_retention: u64,
    /// The layer store (HOST:PORT or unix:///path). Required: a tag moves only to an image
    /// manifest or index the layer store holds, checked there before every move.
    #[arg(long, env = "STRATA_TAG_INDEX_LAYER_STORE_ADDR")]
    layer_store_addr: ListenAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_server::tune_allocator(None);
    let args = Args::parse();
    args.serve.init_tracing()?;
    strata_server::raise_open_files_limit();
    let config = strata_tag_index::Config {
        root: args.root,
        event_retention: args.event_retention,
        layer_store: Some(args.layer_store_addr.into()),
    };
    let listener = strata_server::Listener::bind(&args.serve.listen).await?;
    strata_tag_index::run(
        config,
        listener,
        &args.serve.options(),
        strata_server::shutdown_signal(),
    )
    .await
}
