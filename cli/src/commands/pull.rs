//! `strata pull NAME`: an image from a registry (linux/amd64 of an index).

use anyhow::Context;
use clap::Args;
use strata_distribution::ClientOptions;
use strata_transfer::ImageStore;
use strata_types::Reference;

use crate::GlobalArgs;

/// Flags of `strata pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image, e.g. localhost:5000/app:v1 or busybox@sha256:….
    pub name: String,
    /// Use plain HTTP (loopback registries use it anyway).
    #[arg(long)]
    pub insecure: bool,
    /// Print only the full reference pulled (`docker.io/library/busybox:latest`), as
    /// `docker pull -q` does; `strata inspect -f '{{.Id}}' NAME` gives the image ID.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Pulls and reports as `docker pull` does.
pub async fn run(global: &GlobalArgs, args: PullArgs) -> anyhow::Result<std::process::ExitCode> {
    let reference = Reference::parse(&args.name).context("invalid image name")?;
    let conn = crate::connect::connect(global).await?;
    let store = ImageStore::new(conn.transport());
    let options = ClientOptions {
        insecure: args.insecure,
        ..Default::default()
    };
    let result = strata_transfer::registry::pull(&store, &reference, &options).await;
    conn.close().await?;
    let pulled = result.with_context(|| format!("failed to pull {}", reference.familiar()))?;
    // the last line, as docker/cli prints it: the full reference pulled
    if args.quiet {
        println!("{reference}");
    } else {
        println!("Digest: {}", pulled.remote_digest);
        println!(
            "Status: {} for {} ({} layer{} downloaded)",
            if pulled.downloaded > 0 {
                "Downloaded newer image"
            } else {
                "Image is up to date"
            },
            reference.familiar(),
            pulled.downloaded,
            if pulled.downloaded == 1 { "" } else { "s" }
        );
        println!("{reference}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
