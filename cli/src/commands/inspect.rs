//! `strata inspect NAME...`: Docker-compatible JSON, or with `--format oci` the raw manifest
//! and config.

use clap::Args;
use strata_image::{
    template::{Template, inspect_data},
    view::{InspectView, go_json_pretty},
};
use strata_transfer::ImageStore;

use crate::GlobalArgs;

/// Flags of `strata inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images: tags, digests, or image IDs (or unique prefixes).
    #[arg(required = true)]
    pub names: Vec<String>,
    /// `docker` (default) or `json`: Docker's inspect JSON; `oci`: each image's manifest
    /// then config, exact bytes, one per line; anything else is a Go template run on each
    /// image's inspect object, e.g. `{{.Config.Cmd}}` or `{{json .RootFS}}`.
    #[arg(long, short, default_value = "docker")]
    pub format: String,
}

/// Prints the images; exits non-zero (after printing what was found) if one is missing.
pub async fn run(global: &GlobalArgs, args: InspectArgs) -> anyhow::Result<std::process::ExitCode> {
    let template = match args.format.as_str() {
        "docker" | "json" | "oci" => None,
        other => {
            Some(Template::parse(other).map_err(|e| anyhow::anyhow!("invalid --format: {e}"))?)
        }
    };
    let conn = crate::connect::connect(global).await?;
    let store = ImageStore::new(conn.transport());
    let mut views = Vec::new();
    let mut raw = Vec::new();
    let mut missing = Vec::new();
    for name in &args.names {
        match store.resolve(name).await {
            Ok(image) => {
                if args.format == "oci" {
                    raw.push(image.manifest_bytes.clone());
                    raw.push(image.config_bytes.clone());
                    continue;
                }
                let (tags, last_tag_time) = store.tags_of(&image.manifest_digest).await?;
                let repo_digests =
                    strata_transfer::records::repo_digests(&store, &image.manifest_digest).await?;
                let size = image.layer_sizes().iter().sum();
                views.push(InspectView::new(
                    &image.config,
                    &image.id(),
                    tags,
                    repo_digests,
                    size,
                    last_tag_time,
                ));
            }
            Err(strata_transfer::TransferError::NoSuchImage(_)) => missing.push(name.clone()),
            Err(e) => {
                conn.close().await?;
                return Err(e.into());
            }
        }
    }
    conn.close().await?;
    if args.format == "oci" {
        for doc in raw {
            println!("{}", String::from_utf8_lossy(&doc));
        }
    } else if let Some(template) = &template {
        let mut out = String::new();
        for view in &views {
            out.push_str(&template.execute(&inspect_data(view)?)?);
            out.push('\n');
        }
        print!("{out}");
    } else {
        print!("{}", go_json_pretty(&views));
    }
    for name in &missing {
        eprintln!("error: no such image: {name}");
    }
    Ok(if missing.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
