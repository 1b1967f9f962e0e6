//! `strata gc`: the layer store's mark and sweep. Roots: every tag (the CLI passes them too,
//! so a layer store run without a tag-index address still keeps tagged images), every digest
//! reference (a pull by digest: a blob labelled `strata.gc.root`), leases and build-cache
//! results; `--prune-cache` drops the build cache first. Then the executor's
//! local cache (layers and contexts extracted from the store) is pruned to its budget, or
//! with `--prune-cache` emptied of everything no running build uses, cache mounts included.

use clap::Args;
use strata_proto::{
    executor::{PruneLocalCacheRequest, PruneLocalCacheResponse, executor_client::ExecutorClient},
    layer_store::{
        CollectGarbageRequest, CollectGarbageResponse, layer_store_client::LayerStoreClient,
    },
};

use super::du::{digest_referenced, size, tagged_digests};
use crate::GlobalArgs;

/// Flags of `strata gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove every build-cache entry, every layer and context the executor has
    /// extracted, and every RUN --mount=type=cache directory no running step holds (later
    /// builds start cold).
    #[arg(long)]
    pub prune_cache: bool,
}

/// Runs `strata gc`.
pub async fn run(global: &GlobalArgs, args: GcArgs) -> anyhow::Result<std::process::ExitCode> {
    let conn = crate::connect::connect(global).await?;
    let result = async {
        let mut roots = tagged_digests(conn.transport()).await?;
        // the layer store keeps digest references (labelled roots) by itself; named here too
        // so a dry run and the real one say the same of them whatever the server's version
        roots.extend(digest_referenced(conn.transport()).await?);
        let collected = LayerStoreClient::new(conn.transport())
            .collect_garbage(CollectGarbageRequest {
                dry_run: args.dry_run,
                roots,
                prune_cache: args.prune_cache,
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| anyhow::anyhow!("garbage collection failed: {}", s.message()))?;
        let pruned = ExecutorClient::new(conn.transport())
            .prune_local_cache(PruneLocalCacheRequest {
                keep_bytes: args.prune_cache.then_some(0),
                dry_run: args.dry_run,
                cache_mounts: args.prune_cache,
            })
            .await;
        let pruned = match pruned {
            Ok(r) => Some(r.into_inner()),
            // a server from before the RPC: its executor prunes itself after builds
            Err(s) if s.code() == tonic::Code::Unimplemented => None,
            Err(s) => anyhow::bail!("pruning the executor's local cache failed: {}", s.message()),
        };
        anyhow::Ok((collected, pruned))
    }
    .await;
    conn.close().await?;
    let (collected, pruned) = result?;
    print!("{}", report(&collected, pruned.as_ref(), args.dry_run));
    Ok(std::process::ExitCode::SUCCESS)
}

fn report(
    r: &CollectGarbageResponse,
    local: Option<&PruneLocalCacheResponse>,
    dry_run: bool,
) -> String {
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
    let mut freed = r.bytes_freed;
    let executor = local.map_or([(0, 0); 2], |l| {
        [
            (l.entries_removed, l.bytes_freed),
            (l.cache_mounts_removed, l.cache_mount_bytes_freed),
        ]
    });
    let kinds = [
        "extracted layers and contexts from the executor's local cache",
        "RUN --mount=type=cache directories",
    ];
    for ((count, bytes), what) in executor.into_iter().zip(kinds) {
        if count > 0 {
            out += &format!("{verb} {count} {what} ({})\n", size(bytes as i64));
            freed = freed.saturating_add(bytes as i64);
        }
    }
    let what = if dry_run {
        "Reclaimable space"
    } else {
        "Total reclaimed space"
    };
    out += &format!("{what}: {}\n", size(freed));
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
        let dry = report(&r, None, true);
        assert!(
            dry.contains("Would remove: sha256:aa") && dry.contains("Reclaimable space: 2MB"),
            "{dry}"
        );
        let real = report(&r, None, false);
        assert!(
            real.contains("Removed: sha256:aa") && real.contains("Total reclaimed space: 2MB"),
            "{real}"
        );
        assert!(
            real.contains("1 abandoned uploads") && real.contains("Kept 3 blobs"),
            "{real}"
        );
    }

    #[test]
    fn reports_count_the_executors_local_cache_in_the_total() {
        let r = CollectGarbageResponse {
            bytes_freed: 1_000_000,
            kept: 2,
            ..Default::default()
        };
        let local = PruneLocalCacheResponse {
            entries_removed: 3,
            bytes_freed: 2_000_000,
            entries_kept: 1,
            bytes_kept: 5,
            ..Default::default()
        };
        let real = report(&r, Some(&local), false);
        assert!(
            real.contains(
                "Removed 3 extracted layers and contexts from the executor's local cache (2MB)"
            ) && real.contains("Total reclaimed space: 3MB"),
            "{real}"
        );
        let mounts = PruneLocalCacheResponse {
            cache_mounts_removed: 2,
            cache_mount_bytes_freed: 4_000_000,
            ..Default::default()
        };
        let m = report(&r, Some(&mounts), true);
        assert!(
            m.contains("Would remove 2 RUN --mount=type=cache directories (4MB)")
                && m.contains("Reclaimable space: 5MB"),
            "{m}"
        );
        let nothing = PruneLocalCacheResponse {
            entries_kept: 4,
            ..Default::default()
        };
        let quiet = report(&r, Some(&nothing), true);
        assert!(!quiet.contains("local cache"), "{quiet}");
        assert!(quiet.contains("Reclaimable space: 1MB"), "{quiet}");
    }
}
