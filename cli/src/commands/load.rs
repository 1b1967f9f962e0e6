//! `strata load -i FILE`: docker-archive tarballs (all three shapes) and OCI layouts.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strata_transfer::ImageStore;

use crate::GlobalArgs;

/// Flags of `strata load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this file (tar, optionally gzip, zstd, bzip2 or xz compressed) instead of standard input.
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Accepted for Docker's scripts: `docker load -q` hides the progress bars and still
    /// prints each `Loaded image:` line, and strata's load shows no progress bars.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Loads and prints what it loaded, as `docker load` does.
pub async fn run(global: &GlobalArgs, args: LoadArgs) -> anyhow::Result<std::process::ExitCode> {
    let input: Box<dyn std::io::Read + Send> = match &args.input {
        Some(p) => Box::new(
            std::fs::File::open(p).with_context(|| format!("failed to open {}", p.display()))?,
        ),
        None => {
            // Docker: "requested load from stdin, but stdin is empty"; waiting on a terminal
            // would look like a hang
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                anyhow::bail!(
                    "standard input is a terminal: name an archive with -i FILE, or pipe one in (strata load < image.tar)"
                );
            }
            Box::new(std::io::stdin())
        }
    };
    let conn = crate::connect::connect(global).await?;
    let store = ImageStore::new(conn.transport());
    let result = strata_transfer::load::load(&store, input).await;
    conn.close().await?;
    let what = args
        .input
        .as_ref()
        .map_or("standard input".to_string(), |p| p.display().to_string());
    let images = result.with_context(|| format!("failed to load {what}"))?;
    for image in &images {
        for (tag, old) in &image.moved {
            println!(
                "The image {} already exists, renaming the old one with ID {} to empty string",
                tag.familiar(),
                old
            );
        }
        if image.tags.is_empty() {
            println!("Loaded image ID: {}", image.image_id);
        } else {
            for t in &image.tags {
                println!("Loaded image: {}", t.familiar());
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
