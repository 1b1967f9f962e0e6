//! `strata gc`: the layer store's mark and sweep. Roots: every tag (the CLI passes them too,
//! so a layer store run without a tag-index address still keeps tagged images), leases and
//! build-cache results; `--prune-cache` drops the build cache first.

use clap::Args;
use strata_proto::layer_store::{
    CollectGarbageRequest, CollectGarbageResponse, layer_store_client::LayerStoreClient,
};

use super::du::{size, tagged_digests};
use crate::GlobalArgs;

/// Flags of `strata gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove every build-cache entry (later builds start cold).
    #[arg(long)]
    pub prune_cache: bool,
}

/// Runs `strata gc`.
pub async fn run(global: &GlobalArgs, args: GcArgs) -> anyhow::Result<std::process::ExitCode> {
    let conn = crate::connect::connect(global).await?;
    let result = async {
        let roots = tagged_digests(conn.channel()).await?;
        LayerStoreClient::new(conn.channel())
            .collect_garbage(CollectGarbageRequest {
                dry_run: args.dry_run,
                roots,
                prune_cache: args.prune_cache,
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| anyhow::anyhow!("garbage collection failed: {}", s.message()))
    }
    .await;
    conn.close().await?;
    print!("{}", report(&result?, args.dry_run));
    Ok(std::process::ExitCode::SUCCESS)
}

fn report(r: &CollectGarbageResponse, dry_run: bool) -> String {
    let verb = if dry_run { "Would remove" } else { "Removed" };
    let mut out = String::new();
    for d in &r.removed {
        out += &format!("{verb}: {d}\n");
    }
    if r.cache_entries_removed > 0 {
        out += &format!("{verb} {} build-cache entries\n", r.cache_entries_removed);
    }
    if r.uploads_swept > 0 {
        out += &format!("{verb} {} abandoned uploads\n", r.uploads_swept);
    }
    out += &format!("Kept {} blobs\n", r.kept);
    let what = if dry_run {
        "Reclaimable space"
    } else {
        "Total reclaimed space"
    };
    out += &format!("{what}: {}\n", size(r.bytes_freed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_say_what_was_or_would_be_removed() {
        let r = CollectGarbageResponse {
            removed: vec!["sha256:aa".into()],
            bytes_freed: 2_000_000,
            kept: 3,
            uploads_swept: 1,
            cache_entries_removed: 0,
        };
        let dry = report(&r, true);
        assert!(
            dry.contains("Would remove: sha256:aa") && dry.contains("Reclaimable space: 2MB"),
            "{dry}"
        );
        let real = report(&r, false);
        assert!(
            real.contains("Removed: sha256:aa") && real.contains("Total reclaimed space: 2MB"),
            "{real}"
        );
        assert!(
            real.contains("1 abandoned uploads") && real.contains("Kept 3 blobs"),
            "{real}"
        );
    }
}
