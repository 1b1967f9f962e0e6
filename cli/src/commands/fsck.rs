//! `strata fsck`: re-hash stored blobs and report every corrupt one (exit status 1 when any).

use clap::Args;
use strata_proto::layer_store::{
    VerifyBlobsRequest, VerifyBlobsResponse, layer_store_client::LayerStoreClient,
};

use super::du::size;
use crate::GlobalArgs;

/// Flags of `strata fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Only these blobs (`sha256:…`); none: every blob.
    pub digests: Vec<String>,
}

/// Runs `strata fsck`.
pub async fn run(global: &GlobalArgs, args: FsckArgs) -> anyhow::Result<std::process::ExitCode> {
    let conn = crate::connect::connect(global).await?;
    let result = LayerStoreClient::new(conn.transport())
        .verify_blobs(VerifyBlobsRequest {
            digests: args.digests,
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| anyhow::anyhow!("verification failed: {}", s.message()));
    conn.close().await?;
    let r = result?;
    print!("{}", report(&r));
    Ok(if r.corrupt.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
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
}
