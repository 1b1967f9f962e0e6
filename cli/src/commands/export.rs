//! `strata export --format oci -o DIR|FILE.tar NAME`: an OCI image layout.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strata_transfer::{
    ImageStore,
    save::{Shape, Target},
};

use crate::GlobalArgs;

/// Flags of `strata export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The image: a tag, a digest, or an image ID.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Layout format; only `oci` (an OCI image layout) is supported.
    #[arg(long, default_value = "oci")]
    pub format: String,
    /// A directory (created; an existing layout is added to: its other index entries stay,
    /// an entry of the same image name is replaced — or, for an entry with only a ref
    /// name, as skopeo writes them, of the same ref name) or a FILE.tar.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Writes the layout.
pub async fn run(global: &GlobalArgs, args: ExportArgs) -> anyhow::Result<std::process::ExitCode> {
    if args.format != "oci" {
        anyhow::bail!("unsupported --format {:?} (only oci)", args.format);
    }
    let conn = crate::connect::connect(global).await?;
    let store = ImageStore::new(conn.transport());
    let result = export(&store, &args).await;
    conn.close().await?;
    result?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn export(store: &ImageStore, args: &ExportArgs) -> anyhow::Result<()> {
    let images = strata_transfer::save::select(store, &args.names).await?;
    let path = &args.output;
    if strata_transfer::save::is_tar_path(path) {
        let (tmp, file) = strata_transfer::save::partial_file(path)
            .with_context(|| format!("failed to write {}", path.display()))?;
        let target = Target::Tar(Box::new(std::io::BufWriter::with_capacity(1 << 20, file)));
        if let Err(e) = strata_transfer::save::write(store, &images, Shape::OciLayout, target).await
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("failed to export to {}", path.display()));
        }
        std::fs::rename(&tmp, path)
            .with_context(|| format!("failed to write {}", path.display()))?;
    } else {
        strata_transfer::save::write(store, &images, Shape::OciLayout, Target::Dir(path.clone()))
            .await
            .with_context(|| format!("failed to export to {}", path.display()))?;
    }
    Ok(())
}
