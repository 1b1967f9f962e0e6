//! `strata-executor`: serves the executor API.

use std::path::PathBuf;

use clap::Parser;

strata_server::serve_args!(ServeArgs, "STRATA_EXECUTOR", "127.0.0.1:50054");

/// The strata executor service.
#[derive(Debug, Parser)]
#[command(name = "strata-executor", version)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
    /// Data directory (the service keeps its data in a subdirectory named after it).
    #[arg(long, env = "STRATA_ROOT")]
    root: PathBuf,
    /// Address of the parser service (connected lazily, on first use).
    #[arg(
        long,
        env = "STRATA_EXECUTOR_PARSER_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    parser_addr: strata_server::ListenAddr,
    /// Address of the layer store (connected lazily).
    #[arg(
        long,
        env = "STRATA_EXECUTOR_LAYER_STORE_ADDR",
        default_value = "127.0.0.1:50052"
    )]
    layer_store_addr: strata_server::ListenAddr,
    /// Address of the tag index (connected lazily).
    #[arg(
        long,
        env = "STRATA_EXECUTOR_TAG_INDEX_ADDR",
        default_value = "127.0.0.1:50053"
    )]
    tag_index_addr: strata_server::ListenAddr,
    /// Bytes the local cache of extracted layers and build contexts may take, e.g.
    /// 10737418240, 500MB or 10GiB (binary units); least recently used entries no running
    /// build uses are pruned at start and after each build that added one. 0: unbounded.
    #[arg(
        long,
        env = strata_executor::local_cache::MAX_BYTES_ENV,
        default_value = "10GiB",
        value_parser = strata_executor::local_cache::parse_max_bytes
    )]
    local_cache_max_bytes: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_server::tune_allocator(None);
    let args = Args::parse();
    args.serve.init_tracing()?;
    strata_server::raise_open_files_limit();
    let config = strata_executor::Config {
        root: args.root,
        parser: args.parser_addr.into(),
        layer_store: args.layer_store_addr.into(),
        tag_index: args.tag_index_addr.into(),
        local_cache_budget: strata_executor::local_cache::budget(args.local_cache_max_bytes),
        prune_at_start: true,
    };
    let listener = strata_server::Listener::bind(&args.serve.listen).await?;
    strata_executor::run(
        config,
        listener,
        &args.serve.options(),
        strata_server::shutdown_signal(),
    )
    .await
}
