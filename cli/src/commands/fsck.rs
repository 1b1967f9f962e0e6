//! `strata fsck`: re-hash stored blobs and report every corrupt one, and check that every tag
//! points at an image the store holds (exit status 1 when anything is wrong).

use std::collections::BTreeMap;

use clap::Args;
use strata_proto::{
    layer_store::{
        StatBlobRequest, VerifyBlobsRequest, VerifyBlobsResponse,
        layer_store_client::LayerStoreClient,
    },
    tag_index::tag_index_client::TagIndexClient,
};
use strata_server::client::Transport;
use strata_types::media_type;

use super::{du::size, images::all_tags};
use crate::GlobalArgs;

/// A tag whose target the store cannot give as an image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BrokenTag {
    /// The tag, short form.
    name: String,
    /// Where it points.
    digest: String,
    /// What is wrong.
    reason: String,
}

/// Flags of `strata fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Only these blobs (`sha256:…`); none: every blob.
    pub digests: Vec<String>,
}

/// Runs `strata fsck`.
pub async fn run(global: &GlobalArgs, args: FsckArgs) -> anyhow::Result<std::process::ExitCode> {
    let conn = crate::connect::connect(global).await?;
    // the tags are checked only when the whole store is
    let check_tags = args.digests.is_empty();
    let result = LayerStoreClient::new(conn.transport())
        .verify_blobs(VerifyBlobsRequest {
            digests: args.digests,
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| anyhow::anyhow!("verification failed: {}", s.message()));
    let broken = match (&result, check_tags) {
        (Ok(_), true) => broken_tags(conn.transport()).await,
        _ => Ok(Vec::new()),
    };
    conn.close().await?;
    let r = result?;
    let broken = broken?;
    print!("{}", report(&r));
    print!("{}", tags_report(&broken));
    Ok(if r.corrupt.is_empty() && broken.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Every tag whose target is not in the store, or is not an image manifest or index.
async fn broken_tags(channel: Transport) -> anyhow::Result<Vec<BrokenTag>> {
    let tags = all_tags(&mut TagIndexClient::new(channel.clone()), "", "").await?;
    let mut store = LayerStoreClient::new(channel);
    // digest -> what is wrong with it (None: an image), each asked once
    let mut verdicts: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut broken = Vec::new();
    for tag in tags {
        if !verdicts.contains_key(&tag.digest) {
            let verdict = match store
                .stat_blob(StatBlobRequest {
                    digest: tag.digest.clone(),
                    ..Default::default()
                })
                .await
            {
                Ok(info) => {
                    let mt = info.into_inner().media_type;
                    (!(media_type::is_manifest(&mt) || media_type::is_index(&mt)))
                        .then(|| format!("it is a {mt:?} blob, not an image manifest or index"))
                }
                Err(s) if s.code() == tonic::Code::NotFound => {
                    Some("the store does not hold it".to_string())
                }
                Err(s) => anyhow::bail!("failed to look up {}: {}", tag.digest, s.message()),
            };
            verdicts.insert(tag.digest.clone(), verdict);
        }
        if let Some(Some(reason)) = verdicts.get(&tag.digest) {
            broken.push(BrokenTag {
                name: tag.short_name,
                digest: tag.digest,
                reason: reason.clone(),
            });
        }
    }
    Ok(broken)
}

fn tags_report(broken: &[BrokenTag]) -> String {
    let mut out = String::new();
    for b in broken {
        out += &format!("BROKEN TAG {} -> {}: {}\n", b.name, b.digest, b.reason);
    }
    if !broken.is_empty() {
        out += &format!(
            "{} tag(s) point at no image: remove them (`strata rmi NAME`), or pull or rebuild the image and tag it again\n",
            broken.len()
        );
    }
    out
}

fn report(r: &VerifyBlobsResponse) -> String {
    let mut out = String::new();
    for c in &r.corrupt {
        out += &format!("CORRUPT {}: {}\n", c.digest, c.reason);
    }
    out += &format!("checked {} blobs ({}): ", r.checked, size(r.bytes));
    out += &if r.corrupt.is_empty() {
        "all intact\n".to_string()
    } else {
        format!(
            "{} corrupt; restore them (pull or rebuild), then run `strata gc`\n",
            r.corrupt.len()
        )
    };
    out
}

#[cfg(test)]
mod tests {
    use strata_proto::layer_store::CorruptBlob;

    use super::*;

    #[test]
    fn corrupt_blobs_are_listed_with_their_reason() {
        let ok = VerifyBlobsResponse {
            checked: 2,
            bytes: 1500,
            corrupt: vec![],
        };
        assert_eq!(report(&ok), "checked 2 blobs (1.5kB): all intact\n");
        let bad = VerifyBlobsResponse {
            corrupt: vec![CorruptBlob {
                digest: "sha256:ab".into(),
                reason: "chunk 2 fails its checksum".into(),
            }],
            ..ok
        };
        let r = report(&bad);
        assert!(
            r.starts_with("CORRUPT sha256:ab: chunk 2 fails its checksum\n"),
            "{r}"
        );
        assert!(r.contains("1 corrupt"), "{r}");
    }

    #[test]
    fn broken_tags_are_listed_with_what_to_do() {
        assert_eq!(tags_report(&[]), "");
        let r = tags_report(&[BrokenTag {
            name: "ghost:v1".into(),
            digest: "sha256:00".into(),
            reason: "the store does not hold it".into(),
        }]);
        assert!(
            r.starts_with("BROKEN TAG ghost:v1 -> sha256:00: the store does not hold it\n"),
            "{r}"
        );
        assert!(r.contains("strata rmi"), "{r}");
    }
}
