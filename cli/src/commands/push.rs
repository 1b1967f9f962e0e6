//! `strata push NAME [TARGET]`: an image to a registry.

use anyhow::Context;
use clap::{Args, ValueEnum};
use strata_distribution::ClientOptions;
use strata_transfer::{ImageStore, registry::PushCompression};
use strata_types::Reference;

use crate::GlobalArgs;

/// Layer compression for pushes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Compression {
    /// gzip (readable everywhere), in 1 MiB members strata inflates on every core.
    Gzip,
    /// zstd.
    Zstd,
}

/// Flags of `strata push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The local image, e.g. localhost:5000/app:v1 (pushed to the registry it names).
    pub name: String,
    /// Push under this name instead (registry/repository:tag).
    pub target: Option<String>,
    /// Use plain HTTP (loopback registries use it anyway).
    #[arg(long)]
    pub insecure: bool,
    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: Compression,
    /// Print only the pushed manifest's digest.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Pushes and reports as `docker push` does.
pub async fn run(global: &GlobalArgs, args: PushArgs) -> anyhow::Result<std::process::ExitCode> {
    let target = Reference::parse(args.target.as_deref().unwrap_or(&args.name))
        .context("invalid image name")?;
    let conn = crate::connect::connect(global).await?;
    let store = ImageStore::new(conn.transport());
    let compression = match args.compression {
        Compression::Gzip => PushCompression::Gzip,
        Compression::Zstd => PushCompression::Zstd,
    };
    let options = ClientOptions {
        insecure: args.insecure,
        ..Default::default()
    };
    let result = async {
        let image = store.resolve(&args.name).await?;
        strata_transfer::registry::push(&store, &image, &target, compression, &options).await
    }
    .await;
    conn.close().await?;
    let pushed = result.with_context(|| format!("failed to push {}", target.familiar()))?;
    if args.quiet {
        println!("{}", pushed.digest);
    } else {
        println!(
            "{}: digest: {} size: {} ({} blob{} uploaded, {} mounted)",
            target.tag().unwrap_or("latest"),
            pushed.digest,
            pushed.size,
            pushed.uploaded,
            if pushed.uploaded == 1 { "" } else { "s" },
            pushed.mounted
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
