//! `strata tag SOURCE TARGET` moves a tag to an image; `strata tag --history NAME` shows every
//! move of a tag.

use anyhow::Context;
use clap::Args;
use strata_proto::tag_index::{
    GetTagHistoryRequest, SetTagRequest, TagEvent, tag_index_client::TagIndexClient,
};
use strata_server::client::Transport;
use strata_types::Reference;

use strata_image::view::{human_duration, tabwriter};

use super::images::{now_seconds, resolve_image};
use crate::GlobalArgs;

/// Flags of `strata tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Show every move of the tag NAME (time, old and new image) instead of moving a tag.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["source", "target"])]
    pub history: Option<String>,
    /// Show full digests in the history.
    #[arg(long, requires = "history")]
    pub no_trunc: bool,
    /// The image: a tag, `NAME@sha256:…` (manifest or repo digest), an image id or manifest
    /// digest (`sha256:…`), or a unique id prefix; untagged images too.
    #[arg(required_unless_present = "history")]
    pub source: Option<String>,
    /// The tag to point at SOURCE's image (created, or moved from wherever it pointed).
    #[arg(required_unless_present = "history")]
    pub target: Option<String>,
}

/// Runs `strata tag`.
pub async fn run(global: &GlobalArgs, args: TagArgs) -> anyhow::Result<std::process::ExitCode> {
    let conn = crate::connect::connect(global).await?;
    let result = match (&args.history, &args.source, &args.target) {
        (Some(name), _, _) => history(conn.transport(), name, args.no_trunc)
            .await
            .map(|t| print!("{t}")),
        (None, Some(source), Some(target)) => tag(conn.transport(), source, target).await,
        _ => Err(anyhow::anyhow!(
            "usage: strata tag SOURCE TARGET, or strata tag --history NAME"
        )),
    };
    conn.close().await?;
    result?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn tag(channel: Transport, source: &str, target: &str) -> anyhow::Result<()> {
    // validate the target before looking anything up, so a typo fails fast and clearly
    Reference::parse_tag(target).with_context(|| format!("invalid target {target:?}"))?;
    let image = resolve_image(&channel, source).await?;
    TagIndexClient::new(channel)
        .set_tag(SetTagRequest {
            name: target.to_string(),
            digest: image.image.manifest_digest.to_string(),
            expected_digest: None,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("failed to tag {source} as {target}"))?;
    Ok(())
}

async fn history(channel: Transport, name: &str, no_trunc: bool) -> anyhow::Result<String> {
    let mut client = TagIndexClient::new(channel);
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .get_tag_history(GetTagHistoryRequest {
                name: name.to_string(),
                page_size: 1000,
                page_token,
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))
            .with_context(|| format!("failed to read the history of {name}"))?
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(history_table(&events, no_trunc, now_seconds()))
}

/// `TIME OLD NEW`, newest move first (as `docker history` lists steps).
pub(crate) fn history_table(events: &[TagEvent], no_trunc: bool, now: i64) -> String {
    let show = |digest: &str, absent: &str| {
        if digest.is_empty() {
            absent.to_string()
        } else if no_trunc {
            digest.to_string()
        } else {
            let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
            hex.chars().take(12).collect()
        }
    };
    let mut cells = vec![vec![
        "TIME".to_string(),
        "OLD".to_string(),
        "NEW".to_string(),
    ]];
    for e in events.iter().rev() {
        let seconds = e.time.as_ref().map_or(now, |t| t.seconds);
        cells.push(vec![
            format!("{} ago", human_duration(now - seconds)),
            show(&e.old_digest, "<none>"),
            show(&e.new_digest, "<deleted>"),
        ]);
    }
    tabwriter(&cells)
}

#[cfg(test)]
mod tests {
    use strata_types::Digest;

    use super::*;

    fn event(seq: u64, old: Option<u8>, new: Option<u8>, at: i64) -> TagEvent {
        TagEvent {
            sequence: seq,
            name: "docker.io/library/app:prod".into(),
            old_digest: old
                .map(|n| Digest::of(&[n]).to_string())
                .unwrap_or_default(),
            new_digest: new
                .map(|n| Digest::of(&[n]).to_string())
                .unwrap_or_default(),
            time: Some(prost_types::Timestamp {
                seconds: at,
                nanos: 0,
            }),
            lagged: false,
        }
    }

    #[test]
    fn history_lists_moves_newest_first() {
        let now = 10_000;
        let events = [
            event(1, None, Some(1), now - 7200),
            event(2, Some(1), Some(2), now - 120),
            event(3, Some(2), None, now - 5),
        ];
        let out = history_table(&events, false, now);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[0].starts_with("TIME") && lines[0].contains("OLD") && lines[0].ends_with("NEW"),
            "{}",
            lines[0]
        );
        let short = |n: u8| Digest::of(&[n]).short();
        assert!(
            lines[1].starts_with("5 seconds ago")
                && lines[1].contains(&short(2))
                && lines[1].ends_with("<deleted>"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("2 minutes ago") && lines[2].ends_with(&short(2)),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("2 hours ago") && lines[3].contains("<none>"),
            "{}",
            lines[3]
        );
        let full = history_table(&events[..1], true, now);
        assert!(full.contains(&Digest::of(&[1]).to_string()));
    }
}
