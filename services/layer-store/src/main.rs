//! `strata-layer-store`: serves the layer-store API.

use std::path::PathBuf;

use clap::Parser;
use strata_server::ListenAddr;

strata_server::serve_args!(ServeArgs, "STRATA_LAYER_STORE", "127.0.0.1:50052");

/// The strata layer-store service.
#[derive(Debug, Parser)]
#[command(name = "strata-layer-store", version)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
    /// Data directory (the service keeps its data in a subdirectory named after it).
    #[arg(long, env = "STRATA_ROOT")]
    root: PathBuf,
    /// The tag index, whose tags are garbage-collection roots (HOST:PORT or unix:///path).
    /// Unset: GC keeps only leases, cache results and the roots each request names.
    #[arg(long, env = "STRATA_LAYER_STORE_TAG_INDEX_ADDR")]
    tag_index_addr: Option<ListenAddr>,
    /// Compression of blob content at rest: none (fastest ingest; the default), lz4 or zstd.
    /// Applies to new blob files; existing ones stay as written.
    #[arg(long, env = "STRATA_LAYER_STORE_COMPRESSION", default_value = "none")]
    compression: strata_kv::Compression,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_server::tune_allocator(None);
    let args = Args::parse();
    args.serve.init_tracing()?;
    strata_server::raise_open_files_limit();
    let config = strata_layer_store::Config {
        root: args.root,
        tag_index: args.tag_index_addr.map(Into::into),
        compression: args.compression,
        leases_end_with_process: false,
    };
    let listener = strata_server::Listener::bind(&args.serve.listen).await?;
    strata_layer_store::run(
        config,
        listener,
        &args.serve.options(),
        strata_server::shutdown_signal(),
    )
    .await
}
