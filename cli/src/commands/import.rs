//! `strata import ROOTFS.tar [NAME]`: a rootfs tarball becomes a one-layer base image.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strata_transfer::{ImageStore, import::ImportOptions};
use strata_types::Reference;

use crate::GlobalArgs;

/// Flags of `strata import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The root filesystem tarball (plain, or gzip, zstd, bzip2 or xz compressed); `-` reads
    /// it from standard input.
    pub tarball: PathBuf,
    /// The tag to give the image, e.g. busybox:latest (none: untagged).
    pub name: Option<String>,
    /// Dockerfile instruction to apply to the config, e.g. -c 'CMD ["sh"]' (repeatable).
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Commit message recorded as the image's comment (default "Imported from -").
    #[arg(short, long)]
    pub message: Option<String>,
}

/// Imports and prints the image ID.
pub async fn run(global: &GlobalArgs, args: ImportArgs) -> anyhow::Result<std::process::ExitCode> {
    let name = args
        .name
        .as_deref()
        .map(Reference::parse_tag)
        .transpose()
        .context("invalid image name")?;
    let conn = crate::connect::connect(global).await?;
    let store = ImageStore::new(conn.transport());
    let options = ImportOptions {
        message: args.message,
        changes: args.changes,
        ..Default::default()
    };
    let result = strata_transfer::import::import(&store, &args.tarball, name.as_ref(), &options)
        .await
        .with_context(|| format!("failed to import {}", args.tarball.display()));
    conn.close().await?;
    println!("{}", result?.image_id);
    Ok(std::process::ExitCode::SUCCESS)
}
