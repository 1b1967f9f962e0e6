//! `strata rmi NAME...`: removes tags.
//!
//! What a name removes follows how it names the image (the lookup every image command uses):
//! a tag removes that tag; `NAME@sha256:…` (the image's manifest digest, or a repo digest a
//! push or pull recorded for NAME) removes every tag of the image in NAME's repository, as
//! Docker's `rmi` of a digest reference drops that repository's references to the image; an
//! image id, manifest digest or id prefix removes the image's only tag (all of them with
//! `--force`). A digest reference (what a pull by digest leaves, strata-transfer's records)
//! counts as a tag here: `NAME@sha256:…` removes NAME's digest references to the image too
//! (printed as `Untagged: NAME@sha256:…`, as Docker prints it), an image id removes the
//! image's only reference, tag or digest reference, and removing the image's last tag in a
//! repository removes that repository's digest references to it (as Docker's `rmi NAME:TAG`
//! does). Repo digests (what a push or pull recorded, `RepoDigests`) go with the last
//! reference in their repository, as Docker's do: `NAME@sha256:…` then no longer names the
//! image, nor does `inspect` list it.
//!
//! Design decision: `rmi` only untags. When the last tag of an image goes it says so
//! (`Unreferenced: sha256:…`), and the image's blobs are freed by the layer store's garbage
//! collection (`strata gc`), whose mark-and-sweep treats every tag, build-cache result and
//! lease as a root. Deleting the manifest blob here instead would race a concurrent
//! `strata tag` of the same image (leaving a tag that points at nothing, which the tag index
//! must never do) and would ignore the other things that may still refer to the image.
//! Until then the untagged image is still found by its id (`strata tag ID NAME` brings it
//! back).

use clap::Args;
use strata_proto::tag_index::{
    DeleteTagRequest, DeleteTagResponse, ResolveTagRequest, tag_index_client::TagIndexClient,
};
use strata_server::client::Transport;

use anyhow::Context;
use strata_transfer::{
    ImageStore, NamedBy,
    records::{self, DigestReference},
};

use super::images::{all_tags, resolve_image};
use crate::GlobalArgs;

/// Flags of `strata rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Tags to remove; `NAME@sha256:…` removes the image's tags and digest references in
    /// NAME's repository; an image id or digest removes the image's only tag (all of its tags
    /// with --force).
    #[arg(required = true)]
    pub names: Vec<String>,
    /// With an image id: remove every tag of the image. A name that finds no image is
    /// then reported but not a failure (Docker's `rmi -f`).
    #[arg(long, short)]
    pub force: bool,
}

/// Runs `strata rmi`: each name in turn; failures are reported and the rest still run.
pub async fn run(global: &GlobalArgs, args: RmiArgs) -> anyhow::Result<std::process::ExitCode> {
    let conn = crate::connect::connect(global).await?;
    let mut failed = false;
    for name in &args.names {
        match remove(conn.transport(), name, args.force).await {
            Ok(lines) => print!("{lines}"),
            Err(e) => {
                eprintln!("error: {e:#}");
                let missing = matches!(
                    e.downcast_ref::<strata_transfer::TransferError>(),
                    Some(strata_transfer::TransferError::NoSuchImage(_))
                );
                failed |= !(missing && args.force);
            }
        }
    }
    conn.close().await?;
    Ok(if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// The names of the tags in `repository` (every repository when empty) that point at
/// `digest`.
async fn tags_of(
    client: &mut TagIndexClient<Transport>,
    repository: &str,
    digest: &str,
) -> anyhow::Result<Vec<String>> {
    Ok(all_tags(client, repository, digest)
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect())
}

/// The tag `name` names, and where it points, when `name` is a tag that exists.
async fn existing_tag(channel: &Transport, name: &str) -> Option<(String, String)> {
    let reference = strata_types::Reference::parse(name).ok()?;
    if reference.digest().is_some() {
        return None;
    }
    let tag = TagIndexClient::new(channel.clone())
        .resolve_tag(ResolveTagRequest {
            name: name.to_string(),
        })
        .await
        .ok()?
        .into_inner();
    Some((tag.name, tag.digest))
}

async fn remove(channel: Transport, name: &str, force: bool) -> anyhow::Result<String> {
    let found = match resolve_image(&channel, name).await {
        Ok(found) => found,
        Err(e) => {
            // A tag is removed even when the image it points at is missing or unreadable, as
            // Docker removes any tag it is given: that is how such a tag is got rid of.
            let Some((tag, digest)) = existing_tag(&channel, name).await else {
                return Err(e);
            };
            eprintln!(
                "warning: {} points at {digest}, which cannot be read ({e:#}); removing the tag",
                familiar(&tag)
            );
            let mut client = TagIndexClient::new(channel);
            // the image cannot be read, so whether it is now unreferenced is not said
            untag(&mut client, &tag, &digest).await?;
            return Ok(untagged_line(&familiar(&tag)));
        }
    };
    let manifest = found.image.manifest_digest;
    // the image id (config digest), as images, inspect and history show the image
    let image_id = found.image.id();
    let digest = manifest.to_string();
    let images = ImageStore::new(channel.clone());
    let mut client = TagIndexClient::new(channel);
    // (tags to remove, digest references to remove, how many other references the image
    // keeps when the listing already says, the repository — or every one, `Some(None)` —
    // whose repo digests go because none of its references to the image is left)
    let (tags, references, others, forget) = match &found.named_by {
        NamedBy::Tag(tag) => {
            // as Docker does: the image's last tag in a repository takes that repository's
            // digest references to the image with it
            let name = tag.name();
            let full = tag.to_string();
            let last_in_repository = tags_of(&mut client, &name, &digest)
                .await?
                .iter()
                .all(|t| *t == full);
            let references = if last_in_repository {
                records::digest_references(&images, Some(&manifest))
                    .await?
                    .into_iter()
                    .filter(|r| r.repository == name)
                    .collect()
            } else {
                Vec::new()
            };
            (
                vec![full],
                references,
                None,
                last_in_repository.then_some(Some(name)),
            )
        }
        NamedBy::Digest(repository) => {
            let tags = tags_of(&mut client, &repository.name(), &digest).await?;
            let name = repository.name();
            let (references, others): (Vec<DigestReference>, Vec<DigestReference>) =
                records::digest_references(&images, Some(&manifest))
                    .await?
                    .into_iter()
                    .partition(|r| r.repository == name);
            if tags.is_empty() && references.is_empty() {
                anyhow::bail!(
                    "image {name} has no tag in {} (nor a digest reference): nothing to untag",
                    repository.familiar_name()
                );
            }
            (tags, references, Some(others.len()), Some(Some(name)))
        }
        NamedBy::Id => {
            let tags = tags_of(&mut client, "", &digest).await?;
            let references = records::digest_references(&images, Some(&manifest)).await?;
            if tags.is_empty() && references.is_empty() {
                anyhow::bail!(
                    "image {name} has no tag to remove (`strata gc` frees an untagged image's space)"
                );
            }
            let count = tags.len() + references.len();
            if count > 1 && !force {
                let short: Vec<String> = tags
                    .iter()
                    .map(|t| familiar(t))
                    .chain(references.iter().map(DigestReference::familiar))
                    .collect();
                anyhow::bail!(
                    "image {name} is referenced by {count} tags ({}): name the tag to remove, or use --force to remove them all",
                    short.join(", ")
                );
            }
            (tags, references, Some(0), Some(None))
        }
    };
    let mut out = String::new();
    let removes_tags = !tags.is_empty();
    let mut last = false;
    for tag in tags {
        let removed = untag(&mut client, &tag, &digest).await?;
        out.push_str(&untagged_line(&familiar(&tag)));
        last = removed.last_tag_for_digest;
    }
    for reference in &references {
        images
            .delete(&reference.record)
            .await
            .with_context(|| format!("failed to remove {}", reference.familiar()))?;
        out.push_str(&untagged_line(&reference.familiar()));
    }
    if let Some(repository) = forget {
        let printed: Vec<String> = references.iter().map(DigestReference::familiar).collect();
        for gone in records::remove_repo_digests(&images, &manifest, repository.as_deref())
            .await
            .context("failed to remove the image's repo digests")?
        {
            if !printed.contains(&gone) {
                out.push_str(&untagged_line(&gone));
            }
        }
    }
    // the image is unreferenced once neither a tag nor a digest reference is left
    let untagged = if removes_tags {
        last
    } else {
        tags_of(&mut client, "", &digest).await?.is_empty()
    };
    let referenced = match others {
        Some(n) => n > 0,
        None => {
            !untagged
                || !records::digest_references(&images, Some(&manifest))
                    .await?
                    .is_empty()
        }
    };
    if untagged && !referenced {
        out.push_str(&unreferenced_line(&image_id));
    }
    Ok(out)
}

/// Deletes `tag` if it still points at `digest` (the image that was looked up).
async fn untag(
    client: &mut TagIndexClient<Transport>,
    tag: &str,
    digest: &str,
) -> anyhow::Result<DeleteTagResponse> {
    Ok(client
        .delete_tag(DeleteTagRequest {
            name: tag.to_string(),
            expected_digest: Some(digest.to_string()),
        })
        .await
        .map_err(|s| anyhow::anyhow!("failed to untag {}: {}", familiar(tag), s.message()))?
        .into_inner())
}

fn familiar(full: &str) -> String {
    strata_types::Reference::parse_tag(full).map_or_else(|_| full.to_string(), |r| r.familiar())
}

/// What `rmi` prints for one removed tag.
pub(crate) fn untagged_line(tag: &str) -> String {
    format!("Untagged: {tag}\n")
}

/// What `rmi` prints when the last tag or digest reference of an image went: its id, as
/// Docker's `Deleted: sha256:<id>` names it.
fn unreferenced_line(image_id: &str) -> String {
    format!("Unreferenced: {image_id} (no tag points at it; `strata gc` frees its space)\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_rmi_prints() {
        assert_eq!(untagged_line("app:v1"), "Untagged: app:v1\n");
        assert!(
            unreferenced_line("sha256:ab").starts_with("Unreferenced: sha256:ab"),
            "{}",
            unreferenced_line("sha256:ab")
        );
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
    }
}
