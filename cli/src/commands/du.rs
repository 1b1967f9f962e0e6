//! `strata du`: the layer store's space, like `docker system df`: by kind, what is unique to
//! one image, shared between images, held only by the build cache, and what `strata gc`
//! would free. Space is attributed to the images tags point at and to those digest
//! references (pulls by digest) keep.

use anyhow::Context;
use clap::Args;
use strata_proto::{
    layer_store::{GetUsageRequest, Usage, layer_store_client::LayerStoreClient},
    tag_index::{ListTagsRequest, tag_index_client::TagIndexClient},
};
use strata_server::client::Transport;
use strata_transfer::ImageStore;

use crate::GlobalArgs;

/// Flags of `strata du`.
#[derive(Debug, Args)]
pub struct DuArgs {
    /// Print the usage as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `strata du`.
pub async fn run(global: &GlobalArgs, args: DuArgs) -> anyhow::Result<std::process::ExitCode> {
    let conn = crate::connect::connect(global).await?;
    let result = usage(conn.transport()).await;
    conn.close().await?;
    let (usage, images) = result?;
    if args.json {
        println!("{}", json(&usage, images));
    } else {
        print!("{}", table(&usage, images));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn usage(channel: Transport) -> anyhow::Result<(Usage, Images)> {
    let mut roots = tagged_digests(channel.clone()).await?;
    let tagged = roots.len();
    roots.extend(digest_referenced(channel.clone()).await?);
    roots.sort();
    roots.dedup();
    let images = Images {
        tagged,
        by_digest_only: roots.len() - tagged,
    };
    let usage = LayerStoreClient::new(channel)
        .get_usage(GetUsageRequest { roots })
        .await
        .map_err(|s| anyhow::anyhow!("layer store: {}", s.message()))?
        .into_inner();
    Ok((usage, images))
}

/// How many images space is attributed to.
#[derive(Debug, Clone, Copy)]
struct Images {
    /// Images a tag points at.
    tagged: usize,
    /// Images only a digest reference (a pull by digest) keeps.
    by_digest_only: usize,
}

/// The distinct images digest references (pulls by digest) keep: GC roots like tags.
pub(crate) async fn digest_referenced(channel: Transport) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> =
        strata_transfer::records::digest_references(&ImageStore::new(channel), None)
            .await
            .context("failed to list digest references")?
            .into_iter()
            .map(|r| r.manifest.to_string())
            .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The distinct digests every tag points at (the images space is attributed to).
pub(crate) async fn tagged_digests(channel: Transport) -> anyhow::Result<Vec<String>> {
    let mut client = TagIndexClient::new(channel);
    let mut digests = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_tags(ListTagsRequest {
                page_size: 1000,
                page_token: page_token.clone(),
                ..ListTagsRequest::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("failed to list tags: {}", s.message()))?
            .into_inner();
        digests.extend(page.tags.into_iter().map(|t| t.digest));
        if page.next_page_token.is_empty() || page.next_page_token == page_token {
            break;
        }
        page_token = page.next_page_token;
    }
    digests.sort();
    digests.dedup();
    Ok(digests)
}

fn table(u: &Usage, images: Images) -> String {
    let mut out = format!("{:<12}{:>8}{:>12}\n", "TYPE", "COUNT", "SIZE");
    let (mut count, mut bytes) = (0, 0);
    for k in &u.kinds {
        out += &format!(
            "{:<12}{:>8}{:>12}\n",
            title(&k.kind),
            k.count,
            size(k.bytes)
        );
        count += k.count;
        bytes += k.bytes;
    }
    out += &format!("{:<12}{:>8}{:>12}\n\n", "Total", count, size(bytes));
    let pct = |part: i64| if bytes > 0 { part * 100 / bytes } else { 0 };
    out += &format!("Tagged images:            {}\n", images.tagged);
    if images.by_digest_only > 0 {
        out += &format!("Pulled by digest only:    {}\n", images.by_digest_only);
    }
    out += &format!("Unique to one image:      {}\n", size(u.unique_bytes));
    out += &format!("Shared between images:    {}\n", size(u.shared_bytes));
    out += &format!(
        "Build cache:              {} entries, {} held only by the cache\n",
        u.cache_entries,
        size(u.cache_bytes)
    );
    out += &format!(
        "Reclaimable (strata gc):  {} ({}%)\n",
        size(u.reclaimable_bytes),
        pct(u.reclaimable_bytes)
    );
    out
}

fn json(u: &Usage, images: Images) -> serde_json::Value {
    serde_json::json!({
        "kinds": u.kinds.iter().map(|k| serde_json::json!({"kind": k.kind, "count": k.count, "bytes": k.bytes})).collect::<Vec<_>>(),
        "tagged_images": images.tagged,
        "digest_referenced_images": images.by_digest_only,
        "unique_bytes": u.unique_bytes,
        "shared_bytes": u.shared_bytes,
        "reclaimable_bytes": u.reclaimable_bytes,
        "cache_entries": u.cache_entries,
        "cache_bytes": u.cache_bytes,
    })
}

fn title(kind: &str) -> String {
    let mut c = kind.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A size as Docker prints it (go-units, base 1000, three significant digits), the same
/// function `strata images` and `strata history` use.
pub(crate) fn size(bytes: i64) -> String {
    strata_image::view::human_size(bytes.max(0))
}

#[cfg(test)]
mod tests {
    use strata_proto::layer_store::UsageByKind;

    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(size(1000), "1kB");
        assert_eq!(size(4_260_000), "4.26MB");
        assert_eq!(size(12_345_678_901), "12.3GB");
    }

    #[test]
    fn the_table_has_every_kind_a_total_and_the_split() {
        let u = Usage {
            kinds: ["layers", "configs", "manifests", "contexts", "other"]
                .iter()
                .map(|k| UsageByKind {
                    kind: k.to_string(),
                    count: 1,
                    bytes: 1000,
                })
                .collect(),
            unique_bytes: 2000,
            shared_bytes: 1000,
            reclaimable_bytes: 2500,
            cache_entries: 3,
            cache_bytes: 500,
        };
        let images = Images {
            tagged: 2,
            by_digest_only: 1,
        };
        let t = table(&u, images);
        assert!(t.contains("Pulled by digest only:    1"), "{t}");
        assert!(t.contains("Layers"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("Total") && l.contains("5kB")),
            "{t}"
        );
        assert!(t.contains("Reclaimable (strata gc):  2.5kB (50%)"), "{t}");
        assert!(t.contains("3 entries, 500B held only by the cache"), "{t}");
        assert_eq!(json(&u, images)["shared_bytes"], 1000);
        assert_eq!(json(&u, images)["digest_referenced_images"], 1);
    }
}
