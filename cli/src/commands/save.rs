//! `strata save -o FILE NAME...`: a docker-archive tarball (OCI layout + manifest.json +
//! repositories) that `docker load` and `skopeo docker-archive:` read.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use clap::Args;
use strata_transfer::{
    ImageStore,
    save::{Shape, Target},
};

use crate::GlobalArgs;

/// Flags of `strata save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images: name:tag, a bare name (all its tags), name@digest, or an image ID.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Writes the archive.
pub async fn run(global: &GlobalArgs, args: SaveArgs) -> anyhow::Result<std::process::ExitCode> {
    if args.output.is_none() && nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
        anyhow::bail!(
            "refusing to write an archive to a terminal: use -o FILE or redirect standard output"
        );
    }
    let conn = crate::connect::connect(global).await?;
    let store = ImageStore::new(conn.transport());
    let result = save(&store, &args).await;
    conn.close().await?;
    result?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn save(store: &ImageStore, args: &SaveArgs) -> anyhow::Result<()> {
    let images = strata_transfer::save::select(store, &args.names).await?;
    match &args.output {
        Some(path) => {
            let (tmp, file) = strata_transfer::save::partial_file(path)
                .with_context(|| format!("failed to write {}", path.display()))?;
            let target = Target::Tar(Box::new(std::io::BufWriter::with_capacity(1 << 20, file)));
            let written =
                strata_transfer::save::write(store, &images, Shape::DockerArchive, target).await;
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).with_context(|| format!("failed to save to {}", path.display()));
            }
            std::fs::rename(&tmp, path)
                .with_context(|| format!("failed to write {}", path.display()))?;
        }
        None => {
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
            strata_transfer::save::write(
                store,
                &images,
                Shape::DockerArchive,
                Target::Tar(Box::new(out)),
            )
            .await?;
            std::io::stdout().flush()?;
        }
    }
    Ok(())
}
