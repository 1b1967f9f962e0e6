//! `strata images`: tagged images in Docker's columns, and the image lookup `tag` and `rmi`
//! share with every other image command (strata-transfer's).
//!
//! Tags come from the tag index; IMAGE ID, CREATED and SIZE come from the manifest and config
//! blobs in the layer store. When the layer store cannot answer for an image, its columns say
//! `<unknown>` and the listing goes on. DIGEST is, as in Docker, the repo digest a push or pull
//! recorded for the image in the row's repository (strata-transfer's records, `inspect`'s
//! `RepoDigests`), or `<none>`: never the local manifest's digest, which no registry has.
//! A repository may have several (one manifest pushed with gzip layers, another with zstd);
//! where digests are shown (`--digests`, a template naming `.Digest`) a tag gets a row per
//! digest, as Docker's `--digests` does, since none of them is more the tag's than another.
//! An image pulled by digest (a digest reference) is listed, as Docker lists it, as
//! `REPOSITORY <none>` with that digest, unless a tag of that repository points at it.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use clap::Args;
use strata_image::{
    ImageConfig, Index, Manifest,
    template::{Data, Template, docker_list_format, render_rows},
    time::Timestamp,
    view::{human_duration, human_size, tabwriter},
};
use strata_proto::{
    layer_store::{ReadBlobRequest, layer_store_client::LayerStoreClient},
    tag_index::{ListTagsRequest, Tag, tag_index_client::TagIndexClient},
};
use strata_server::client::Transport;
use strata_transfer::{
    Found, ImageStore,
    records::{self, DigestReference},
};
use strata_types::{Digest, Reference};

use crate::GlobalArgs;

/// Largest manifest or config read for a listing.
const MAX_DOCUMENT_BYTES: usize = 4 << 20;

/// Flags of `strata images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only this repository's tags (e.g. `busybox`, `localhost:5000/app`), or with `:TAG`
    /// only that tag (`busybox:1.36`), as `docker images REPOSITORY[:TAG]`; or a pattern
    /// (`'bb*'`, `'*:latest'`) matched as Docker's reference filter matches (Go's path.Match
    /// on `name:tag` or on the name).
    pub repository: Option<String>,
    /// Only image ids, one per row (with `--no-trunc`, whole).
    #[arg(short, long)]
    pub quiet: bool,
    /// Show the registry digest recorded for each image in its repository (by a push or a
    /// pull), or `<none>`.
    #[arg(long)]
    pub digests: bool,
    /// Output format: `table` (Docker's columns), `json` (one object per line, Docker's
    /// keys), or a Go template such as `{{.Repository}}:{{.Tag}}` (`table {{…}}` adds a
    /// header and aligns the columns; `\t` and `\n` are a tab and a newline).
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Show full image ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Also untagged images (`<none>:<none>`), which `strata gc` frees. Docker lists those
    /// by default, but its `rmi` deletes an image while strata's only untags it (it stays,
    /// found by its id, until `gc`): listed by default, every removed image would show.
    #[arg(short, long)]
    pub all: bool,
    /// Only the rows that match, Docker's filters: `dangling=true|false` (untagged images,
    /// `<none>:<none>`), `reference=PATTERN` (as the REPOSITORY pattern), `label=KEY` or
    /// `label=KEY=VALUE`. Several of one key match any of them; of different keys, all.
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
}

/// `images --filter`s, parsed.
#[derive(Debug, Default)]
struct Filters {
    dangling: Option<bool>,
    references: Vec<String>,
    labels: Vec<(String, Option<String>)>,
}

impl Filters {
    fn parse(filters: &[String]) -> anyhow::Result<Self> {
        let mut out = Self::default();
        for f in filters {
            let Some((key, value)) = f.split_once('=') else {
                anyhow::bail!("invalid filter {f:?}: expected KEY=VALUE");
            };
            match key {
                "dangling" => {
                    let v = match value.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => anyhow::bail!("invalid filter {f:?}: dangling is true or false"),
                    };
                    if out.dangling.is_some_and(|d| d != v) {
                        anyhow::bail!("invalid filter: dangling=true and dangling=false");
                    }
                    out.dangling = Some(v);
                }
                "reference" => {
                    path_match(value, "")
                        .map_err(|e| anyhow::anyhow!("invalid reference pattern {value:?}: {e}"))?;
                    out.references.push(value.to_string());
                }
                "label" => out.labels.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (value.to_string(), None),
                }),
                other => anyhow::bail!(
                    "unsupported filter {other:?}: strata's images filters are dangling, reference and label"
                ),
            }
        }
        Ok(out)
    }

    /// Whether a row of the image `details`, named `names` (familiar `name:tag` and name;
    /// none for a dangling image), passes the reference and label filters.
    fn keeps(&self, names: &[String], details: &ImageDetails) -> bool {
        let referenced = self.references.is_empty()
            || self
                .references
                .iter()
                .any(|p| names.iter().any(|n| path_match(p, n).unwrap_or(false)));
        let labelled = self.labels.iter().all(|(k, v)| {
            details
                .labels
                .get(k)
                .is_some_and(|have| v.as_ref().is_none_or(|want| want == have))
        });
        referenced && labelled
    }
}

/// Lists tagged images, and images pulled by digest.
pub async fn run(global: &GlobalArgs, args: ImagesArgs) -> anyhow::Result<std::process::ExitCode> {
    // a bad template fails before anything is started
    let mut args = args;
    if args.quiet {
        args.format = "{{.ID}}".into();
    }
    let _ = ListFormat::parse(&args.format)?;
    let filters = Filters::parse(&args.filters)?;
    let conn = crate::connect::connect(global).await?;
    let result = list(conn.transport(), &args, &filters).await;
    conn.close().await?;
    print!("{}", result?);
    Ok(std::process::ExitCode::SUCCESS)
}

async fn list(channel: Transport, args: &ImagesArgs, filters: &Filters) -> anyhow::Result<String> {
    // `docker images 'bb*'`: a pattern (Go's path.Match) on the familiar `name:tag` or name
    let pattern = args.repository.as_deref().filter(|a| is_pattern(a));
    if let Some(p) = pattern {
        path_match(p, "").map_err(|e| anyhow::anyhow!("invalid reference pattern {p:?}: {e}"))?;
    }
    let (repository, only_tag) = match args.repository.as_deref().filter(|_| pattern.is_none()) {
        Some(f) => filter(f)?,
        None => (String::new(), None),
    };
    let mut tags = all_tags(&mut TagIndexClient::new(channel.clone()), &repository, "").await?;
    if let Some(only) = &only_tag {
        tags.retain(|t| &t.name == only);
    }
    if let Some(p) = pattern {
        tags.retain(|t| {
            Reference::parse_tag(&t.name).is_ok_and(|r| {
                path_match(p, &r.familiar()).unwrap_or(false)
                    || path_match(p, &r.familiar_name()).unwrap_or(false)
            })
        });
    }
    let images = ImageStore::new(channel.clone());
    let mut references = if only_tag.is_some() {
        Vec::new()
    } else {
        untagged_references(&images, &repository, &tags).await?
    };
    if let Some(p) = pattern {
        references.retain(|r| {
            Reference::parse_repository(&r.repository)
                .is_ok_and(|r| path_match(p, &r.familiar_name()).unwrap_or(false))
        });
    }
    let mut details = BTreeMap::new();
    let mut recorded = BTreeMap::new();
    let mut store = LayerStoreClient::new(channel);
    for digest in tags
        .iter()
        .map(|t| t.digest.clone())
        .chain(references.iter().map(|r| r.manifest.to_string()))
        .collect::<BTreeSet<_>>()
    {
        let d = read_details(&mut store, &digest).await;
        details.insert(digest.clone(), d);
        // like the other columns, a digest the store cannot answer for is `<unknown>`
        let records = match Digest::parse(&digest) {
            Ok(manifest) => strata_transfer::records::repo_digest_records(&images, &manifest)
                .await
                .ok(),
            Err(_) => None,
        };
        recorded.insert(digest, records);
    }
    // Untagged images (Docker's dangling `<none>:<none>`), with -a or dangling=true, which a
    // name or a reference filter leaves out: every local image (a manifest in the store)
    // that no tag, digest reference or index names. `strata gc` removes them.
    let mut dangling = Vec::new();
    let untagged_wanted = args.all || filters.dangling == Some(true);
    if untagged_wanted && args.repository.is_none() && filters.references.is_empty() {
        let mut named: BTreeSet<String> = tags.iter().map(|t| t.digest.clone()).collect();
        named.extend(
            records::digest_references(&images, None)
                .await
                .context("failed to list digest references")?
                .into_iter()
                .map(|r| r.manifest.to_string()),
        );
        for index in images
            .list_blobs(strata_types::media_type::OCI_INDEX, BTreeMap::new())
            .await
            .context("failed to list image indexes")?
        {
            if let Ok(bytes) = read_blob(&mut store, &index.digest).await
                && let Ok(index) = Index::parse(&bytes)
            {
                named.extend(index.manifests.into_iter().map(|m| m.digest));
            }
        }
        for manifest in images
            .list_blobs(strata_types::media_type::OCI_MANIFEST, BTreeMap::new())
            .await
            .context("failed to list images")?
        {
            if named.contains(&manifest.digest) {
                continue;
            }
            let d = read_details(&mut store, &manifest.digest).await;
            details.insert(manifest.digest.clone(), d);
            dangling.push(manifest.digest);
        }
    }
    if filters.dangling == Some(true) {
        tags.clear();
        references.clear();
    }
    // a tag shows each repo digest of its repository on a row of its own wherever digests
    // are shown (Docker's --digests; here a template naming .Digest too): registry digests
    // belong to repositories, not tags, so no one of them is the tag's
    let digests_shown = args.digests || args.format.contains(".Digest");
    let mut rows = rows(
        &tags,
        &references,
        &dangling,
        &details,
        &recorded,
        digests_shown,
    );
    rows.retain(|r| {
        let names = if r.repository == NONE {
            Vec::new()
        } else if r.tag == NONE {
            vec![r.repository.clone()]
        } else {
            vec![format!("{}:{}", r.repository, r.tag), r.repository.clone()]
        };
        filters.keeps(&names, &r.details)
    });
    let now = now_seconds();
    Ok(match ListFormat::parse(&args.format)? {
        ListFormat::Table => table(&rows, args.digests, args.no_trunc, now),
        ListFormat::Json => json_lines(&rows, args.no_trunc, now),
        ListFormat::Template { template, table } => {
            let rows = json_lines(&rows, args.no_trunc, now)
                .lines()
                .map(Data::from_json)
                .collect::<Result<Vec<_>, _>>()?;
            render_rows(
                &template,
                table,
                &headers(),
                &rows,
                "*formatter.imageContext",
            )?
        }
    })
}

/// The digest references (pulls by digest) of `repository` (every repository when empty)
/// whose image has no tag in the reference's repository: the rows Docker shows as
/// `REPO <none>`.
async fn untagged_references(
    images: &ImageStore,
    repository: &str,
    tags: &[Tag],
) -> anyhow::Result<Vec<DigestReference>> {
    let tagged: BTreeSet<(String, String)> = tags
        .iter()
        .filter_map(|t| {
            let r = Reference::parse_tag(&t.name).ok()?;
            Some((r.name(), t.digest.clone()))
        })
        .collect();
    let mut out: Vec<DigestReference> = records::digest_references(images, None)
        .await
        .context("failed to list digest references")?
        .into_iter()
        .filter(|r| repository.is_empty() || r.repository == repository)
        .filter(|r| !tagged.contains(&(r.repository.clone(), r.manifest.to_string())))
        .collect();
    out.dedup_by(|a, b| a.repository == b.repository && a.digest == b.digest);
    Ok(out)
}

/// The repository to list (normalised) and, for `REPOSITORY:TAG`, the one tag to keep.
fn filter(arg: &str) -> anyhow::Result<(String, Option<String>)> {
    if let Ok(repository) = Reference::parse_repository(arg) {
        return Ok((repository.name(), None));
    }
    // the reference's own error says what is wrong (`Hello`: must be lowercase)
    let parsed = Reference::parse(arg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let reference = Some(parsed)
        .filter(|r| r.tag().is_some() && !arg.contains('@'))
        .with_context(|| format!("invalid repository {arg:?}: expected REPOSITORY[:TAG]"))?;
    Ok((reference.name(), Some(reference.to_string())))
}

/// Whether an `images` argument is a pattern rather than a reference (no reference holds
/// these characters).
fn is_pattern(arg: &str) -> bool {
    arg.contains(['*', '?', '[', '\\'])
}

/// Go's `path.Match`: `*` any run of characters but `/`, `?` one such character, `[…]` a
/// class (ranges, `^` negates), `\\` escapes. `Err` for a malformed pattern.
fn path_match(pattern: &str, name: &str) -> Result<bool, &'static str> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // the pattern is checked whole first, as Go reports a bad pattern whatever the name
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err("trailing backslash");
                }
                i += 2;
            }
            '[' => i = class_end(&p, i)?,
            _ => i += 1,
        }
    }
    Ok(matches_from(&p, &n))
}

/// The index just past the class that opens at `p[start]`.
fn class_end(p: &[char], start: usize) -> Result<usize, &'static str> {
    let mut i = start + 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut first = true;
    loop {
        match p.get(i) {
            None => return Err("unterminated character class"),
            Some(']') if !first => return Ok(i + 1),
            Some('\\') => i += 2,
            Some(_) => i += 1,
        }
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
            i += 2;
        }
        first = false;
    }
}

fn class_matches(p: &[char], start: usize, c: char) -> bool {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while let Some(&x) = p.get(i) {
        if x == ']' && !first {
            break;
        }
        let (lo, next) = if x == '\\' {
            (p[i + 1], i + 2)
        } else {
            (x, i + 1)
        };
        let (hi, next) = if p.get(next) == Some(&'-') && p.get(next + 1).is_some_and(|c| *c != ']')
        {
            let h = p[next + 1];
            if h == '\\' {
                (p[next + 2], next + 3)
            } else {
                (h, next + 2)
            }
        } else {
            (lo, next)
        };
        if lo <= c && c <= hi {
            found = true;
        }
        i = next;
        first = false;
    }
    found != negated
}

fn matches_from(p: &[char], n: &[char]) -> bool {
    let Some(&first) = p.first() else {
        return n.is_empty();
    };
    match first {
        '*' => (0..=n.len())
            .take_while(|&k| k == 0 || n[k - 1] != '/')
            .any(|k| matches_from(&p[1..], &n[k..])),
        '?' => n.first().is_some_and(|c| *c != '/') && matches_from(&p[1..], &n[1..]),
        '[' => {
            let end = class_end(p, 0).unwrap_or(p.len());
            n.first()
                .is_some_and(|c| *c != '/' && class_matches(p, 0, *c))
                && matches_from(&p[end..], &n[1..])
        }
        '\\' => n.first() == p.get(1) && matches_from(&p[2..], &n[1..]),
        c => n.first() == Some(&c) && matches_from(&p[1..], &n[1..]),
    }
}

/// Column titles of `docker images` by template field.
fn headers() -> Data {
    Data::Map(
        [
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("Digest", "DIGEST"),
            ("ID", "IMAGE ID"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
            ("Containers", "CONTAINERS"),
            ("SharedSize", "SHARED SIZE"),
            ("UniqueSize", "UNIQUE SIZE"),
            ("VirtualSize", "VIRTUAL SIZE"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Data::string(v)))
        .collect(),
    )
}

/// A `--format` of a listing command: Docker's table, JSON lines, or a Go template.
pub(crate) enum ListFormat {
    /// The default table.
    Table,
    /// One JSON object per line.
    Json,
    /// A template, with a header row and aligned columns when `table`.
    Template {
        /// The parsed template.
        template: Template,
        /// `table …`.
        table: bool,
    },
}

impl ListFormat {
    /// Parses `--format` as Docker's list commands do.
    pub(crate) fn parse(format: &str) -> anyhow::Result<Self> {
        match format.trim() {
            "" | "table" => return Ok(Self::Table),
            "json" | "{{json .}}" => return Ok(Self::Json),
            _ => {}
        }
        let (table, text) = docker_list_format(format);
        let template =
            Template::parse(&text).map_err(|e| anyhow::anyhow!("invalid --format: {e}"))?;
        Ok(Self::Template { template, table })
    }
}

/// Every tag, optionally of one repository (full name) or pointing at one digest.
pub(crate) async fn all_tags(
    client: &mut TagIndexClient<Transport>,
    repository: &str,
    digest: &str,
) -> anyhow::Result<Vec<Tag>> {
    let mut tags = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_tags(ListTagsRequest {
                repository: repository.to_string(),
                digest: digest.to_string(),
                page_size: 1000,
                page_token,
                ..ListTagsRequest::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))
            .context("failed to list tags")?
            .into_inner();
        tags.extend(page.tags);
        if page.next_page_token.is_empty() {
            return Ok(tags);
        }
        page_token = page.next_page_token;
    }
}

/// What the layer store says about one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImageDetails {
    /// The config digest (Docker's image id).
    pub id: Option<Digest>,
    /// Sum of layer sizes.
    pub size: Option<u64>,
    /// `created` of the config.
    pub created: Option<Timestamp>,
    /// The config's labels.
    pub labels: BTreeMap<String, String>,
}

async fn read_blob(
    store: &mut LayerStoreClient<Transport>,
    digest: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = store
        .read_blob(ReadBlobRequest {
            digest: digest.to_string(),
            offset: 0,
            length: 0,
        })
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(tonic::Status::resource_exhausted(format!(
                "{digest} is larger than a manifest can be"
            )));
        }
    }
    Ok(bytes)
}

/// Reads the manifest (following an index to this machine's platform) and its config; any
/// part the layer store cannot give stays `None`.
pub(crate) async fn read_details(
    store: &mut LayerStoreClient<Transport>,
    manifest_digest: &str,
) -> ImageDetails {
    let mut details = ImageDetails::default();
    let Ok(mut bytes) = read_blob(store, manifest_digest).await else {
        return details;
    };
    if let Ok(index) = Index::parse(&bytes)
        && !index.manifests.is_empty()
        && Manifest::parse(&bytes).is_err()
    {
        let Some(child) = index.select("linux", go_arch()).or(index.manifests.first()) else {
            return details;
        };
        let Ok(child_bytes) = read_blob(store, &child.digest).await else {
            return details;
        };
        bytes = child_bytes;
    }
    let Ok(manifest) = Manifest::parse(&bytes) else {
        return details;
    };
    details.id = Digest::parse(&manifest.config.digest).ok();
    details.size = Some(manifest.layers.iter().map(|l| l.size.max(0) as u64).sum());
    if let Ok(config) = read_blob(store, &manifest.config.digest).await
        && let Ok(config) = ImageConfig::parse(&config)
    {
        details.created = config.created.as_deref().and_then(Timestamp::parse);
        details.labels = config.config.labels.unwrap_or_default();
    }
    details
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// One line of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub repository: String,
    pub tag: String,
    /// The DIGEST column: the repo digest recorded in this repository, `<none>` or
    /// `<unknown>`.
    pub digest: String,
    pub details: ImageDetails,
}

/// Repo digests recorded per local manifest (full repository name, registry digest); `None`
/// when the store could not say.
type Recorded = BTreeMap<String, Option<Vec<(String, Digest)>>>;

const NONE: &str = "<none>";

/// The DIGESTs of a tag of `full_repository` of an image with these records: the repo
/// digests of the tag's own repository, `<none>` without one, `<unknown>` when the store
/// could not say. With `every` false, only the first (the listing shows no digest).
fn repo_digests(
    records: Option<&Option<Vec<(String, Digest)>>>,
    full_repository: &str,
    every: bool,
) -> Vec<String> {
    let mut out: Vec<String> = match records {
        Some(Some(records)) => records
            .iter()
            .filter(|(repository, _)| repository == full_repository)
            .map(|(_, digest)| digest.to_string())
            .collect(),
        Some(None) => vec![UNKNOWN.to_string()],
        None => Vec::new(),
    };
    out.sort();
    out.dedup();
    if out.is_empty() {
        out.push(NONE.to_string());
    }
    if !every {
        out.truncate(1);
    }
    out
}

fn rows(
    tags: &[Tag],
    references: &[DigestReference],
    dangling: &[String],
    details: &BTreeMap<String, ImageDetails>,
    recorded: &Recorded,
    digests_shown: bool,
) -> Vec<Row> {
    let mut rows: Vec<Row> = tags
        .iter()
        .flat_map(|t| {
            let (repository, tag, full_repository) = match Reference::parse_tag(&t.name) {
                Ok(r) => (
                    r.familiar_name(),
                    r.tag().unwrap_or_default().to_string(),
                    r.name(),
                ),
                Err(_) => (t.name.clone(), String::new(), t.name.clone()),
            };
            let details = details.get(&t.digest).cloned().unwrap_or_default();
            repo_digests(recorded.get(&t.digest), &full_repository, digests_shown)
                .into_iter()
                .map(move |digest| Row {
                    repository: repository.clone(),
                    tag: tag.clone(),
                    digest,
                    details: details.clone(),
                })
                .collect::<Vec<_>>()
        })
        .chain(references.iter().map(|r| {
            Row {
                repository: Reference::parse_repository(&r.repository)
                    .map_or_else(|_| r.repository.clone(), |n| n.familiar_name()),
                tag: NONE.to_string(),
                digest: r.digest.to_string(),
                details: details
                    .get(&r.manifest.to_string())
                    .cloned()
                    .unwrap_or_default(),
            }
        }))
        .chain(dangling.iter().map(|m| Row {
            repository: NONE.to_string(),
            tag: NONE.to_string(),
            digest: NONE.to_string(),
            details: details.get(m).cloned().unwrap_or_default(),
        }))
        .collect();
    // newest first, as Docker lists them; then by name
    rows.sort_by(|a, b| {
        b.details
            .created
            .cmp(&a.details.created)
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.tag.cmp(&b.tag))
            .then_with(|| a.digest.cmp(&b.digest))
    });
    rows
}

const UNKNOWN: &str = "<unknown>";

fn image_id(d: &ImageDetails, no_trunc: bool) -> String {
    match &d.id {
        Some(id) if no_trunc => id.to_string(),
        Some(id) => id.short(),
        None => UNKNOWN.to_string(),
    }
}

fn created_since(d: &ImageDetails, now: i64) -> String {
    match d.created {
        Some(t) => format!("{} ago", human_duration(now - t.seconds)),
        None => UNKNOWN.to_string(),
    }
}

fn size(d: &ImageDetails) -> String {
    d.size.map_or_else(
        || UNKNOWN.to_string(),
        |s| human_size(i64::try_from(s).unwrap_or(i64::MAX)),
    )
}

/// Docker's table: `REPOSITORY TAG [DIGEST] IMAGE ID CREATED SIZE`.
pub(crate) fn table(rows: &[Row], digests: bool, no_trunc: bool, now: i64) -> String {
    let mut header = vec!["REPOSITORY", "TAG"];
    if digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let mut cells: Vec<Vec<String>> = vec![header.into_iter().map(String::from).collect()];
    for r in rows {
        let mut line = vec![r.repository.clone(), r.tag.clone()];
        if digests {
            line.push(r.digest.clone());
        }
        line.extend([
            image_id(&r.details, no_trunc),
            created_since(&r.details, now),
            size(&r.details),
        ]);
        cells.push(line);
    }
    tabwriter(&cells)
}

fn json_lines(rows: &[Row], no_trunc: bool, now: i64) -> String {
    let mut out = String::new();
    for r in rows {
        // docker's imageContext has every one of these: a template may name any of them
        // (Containers and the shared/unique sizes are N/A unless docker is asked to compute
        // them; VirtualSize is Size since Docker 25)
        let value = serde_json::json!({
            "Containers": "N/A",
            // docker/cli's imageContext: time.Unix(created, 0).String()
            "CreatedAt": r.details.created.map_or_else(|| UNKNOWN.to_string(), |t| t.to_go_string_utc()),
            "CreatedSince": created_since(&r.details, now),
            "Digest": r.digest,
            "ID": image_id(&r.details, no_trunc),
            "Repository": r.repository,
            "SharedSize": "N/A",
            "Size": size(&r.details),
            "Tag": r.tag,
            "UniqueSize": "N/A",
            "VirtualSize": size(&r.details),
        });
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

/// Seconds since the epoch, now.
pub(crate) fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Finds the image `name` refers to, the way every image command does
/// ([`ImageStore::lookup`]): a tag, `NAME@digest`, an image id or manifest digest, or a unique
/// id prefix; tags win over id prefixes, as in Docker, and untagged images are found too.
pub(crate) async fn resolve_image(channel: &Transport, name: &str) -> anyhow::Result<Found> {
    Ok(ImageStore::new(channel.clone()).lookup(name).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_patterns_match_as_go_path_match_does() {
        let yes = [
            ("bb*", "bb"),
            ("bb*", "bbox:1.36"),
            ("*:latest", "app:latest"),
            ("localhost:5000/*", "localhost:5000/app"),
            ("app:v?", "app:v1"),
            ("app:v[0-9]", "app:v7"),
            ("app:v[^a-z]", "app:v7"),
            ("a\\*b", "a*b"),
        ];
        for (p, n) in yes {
            assert_eq!(path_match(p, n), Ok(true), "{p} ~ {n}");
        }
        let no = [
            ("bb*", "busybox"),
            ("*", "localhost:5000/app"),
            ("app:v?", "app:v10"),
            ("app:v[0-9]", "app:vx"),
            ("app:v[^a-z]", "app:vx"),
        ];
        for (p, n) in no {
            assert_eq!(path_match(p, n), Ok(false), "{p} !~ {n}");
        }
        for bad in ["app[", "app\\", "[]"] {
            assert!(path_match(bad, "x").is_err(), "{bad}");
        }
        assert!(is_pattern("bb*") && !is_pattern("busybox:1.36"));
    }

    fn row(repo: &str, tag: &str, n: u8, created: Option<i64>, size: Option<u64>) -> Row {
        Row {
            repository: repo.into(),
            tag: tag.into(),
            digest: Digest::of(&[n]).to_string(),
            details: ImageDetails {
                id: Some(Digest::of(&[n, n])),
                size,
                created: created.map(Timestamp::from_unix),
                labels: BTreeMap::new(),
            },
        }
    }

    #[test]
    fn table_has_dockers_columns_and_spacing() {
        let now = 1_000_000;
        let rows = vec![
            row("busybox", "latest", 1, Some(now - 120), Some(4_261_000)),
            row("localhost:5000/app", "v1", 2, None, None),
        ];
        let out = table(&rows, false, false, now);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "REPOSITORY           TAG       IMAGE ID       CREATED         SIZE"
        );
        let id = Digest::of(&[1, 1]).short();
        assert_eq!(
            lines[1],
            format!("busybox              latest    {id}   2 minutes ago   4.26MB")
        );
        assert!(
            lines[2].starts_with("localhost:5000/app   v1        "),
            "{}",
            lines[2]
        );
        assert!(
            lines[2].ends_with("<unknown>       <unknown>"),
            "{:?}",
            lines[2]
        );

        let with_digests = table(&rows[..1], true, false, now);
        let header = with_digests.lines().next().unwrap();
        assert!(
            header.starts_with("REPOSITORY   TAG       DIGEST"),
            "{header}"
        );
        assert!(with_digests.contains(&rows[0].digest));
    }

    #[test]
    fn json_lines_carry_dockers_keys() {
        let now = 1_000_000;
        let out = json_lines(
            &[row("busybox", "1.36", 3, Some(0), Some(1234))],
            false,
            now,
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["Repository"], "busybox");
        assert_eq!(v["Tag"], "1.36");
        assert_eq!(v["Size"], "1.23kB");
        assert_eq!(v["ID"], Digest::of(&[3, 3]).short());
        assert_eq!(v["CreatedAt"], "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(v["VirtualSize"], "1.23kB");
        assert_eq!(v["Containers"], "N/A");
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn a_template_field_the_row_lacks_fails_as_in_go() {
        let now = 1_000_000;
        let rows: Vec<Data> =
            json_lines(&[row("busybox", "1.36", 3, Some(0), Some(1))], false, now)
                .lines()
                .map(|l| Data::from_json(l).unwrap())
                .collect();
        let ok = Template::parse("{{.Repository}} {{.VirtualSize}}").unwrap();
        let out = render_rows(&ok, false, &headers(), &rows, "*formatter.imageContext").unwrap();
        assert_eq!(out, "busybox 1B\n");
        let bad = Template::parse("{{.Nope}}").unwrap();
        let err = render_rows(&bad, false, &headers(), &rows, "*formatter.imageContext")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("can't evaluate field Nope in type *formatter.imageContext"),
            "{err}"
        );
    }

    #[test]
    fn rows_sort_newest_first_then_by_name() {
        let tags = |name: &str, n: u8| Tag {
            name: name.into(),
            digest: Digest::of(&[n]).to_string(),
            ..Tag::default()
        };
        let t = vec![
            tags("docker.io/library/b:1", 1),
            tags("docker.io/library/a:1", 2),
            tags("docker.io/library/a:0", 1),
        ];
        let mut details = BTreeMap::new();
        details.insert(
            Digest::of(&[1]).to_string(),
            ImageDetails {
                created: Some(Timestamp::from_unix(5)),
                ..Default::default()
            },
        );
        details.insert(
            Digest::of(&[2]).to_string(),
            ImageDetails {
                created: Some(Timestamp::from_unix(9)),
                ..Default::default()
            },
        );
        let names: Vec<_> = rows(&t, &[], &[], &details, &Recorded::new(), true)
            .into_iter()
            .map(|r| format!("{}:{}", r.repository, r.tag))
            .collect();
        assert_eq!(names, ["a:1", "a:0", "b:1"]);
    }

    #[test]
    fn a_digest_reference_is_a_row_without_a_tag() {
        let manifest = Digest::of(&[4]);
        let remote = Digest::of(&[5]);
        let references = [DigestReference {
            repository: "docker.io/library/busybox".into(),
            digest: remote,
            manifest,
            record: Digest::of(&[6]),
        }];
        let details = BTreeMap::from([(
            manifest.to_string(),
            ImageDetails {
                id: Some(Digest::of(&[4, 4])),
                ..Default::default()
            },
        )]);
        let rows = rows(&[], &references, &[], &details, &Recorded::new(), true);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].repository.as_str(), rows[0].tag.as_str()),
            ("busybox", NONE)
        );
        assert_eq!(rows[0].digest, remote.to_string());
        assert_eq!(rows[0].details.id, Some(Digest::of(&[4, 4])));
    }

    #[test]
    fn digest_is_the_repo_digest_of_the_rows_repository() {
        let local = Digest::of(&[1]).to_string();
        let pushed = Digest::of(&[7]);
        let tag = |name: &str, digest: &str| Tag {
            name: name.into(),
            digest: digest.into(),
            ..Tag::default()
        };
        let t = vec![
            tag("localhost:5000/app:1", &local),
            tag("docker.io/library/app:1", &local),
            tag("docker.io/library/other:1", &Digest::of(&[2]).to_string()),
            tag("docker.io/library/lost:1", &Digest::of(&[3]).to_string()),
        ];
        let recorded = Recorded::from([
            (
                local.clone(),
                Some(vec![("localhost:5000/app".to_string(), pushed)]),
            ),
            (Digest::of(&[2]).to_string(), Some(vec![])),
            (Digest::of(&[3]).to_string(), None),
        ]);
        let digests: Vec<_> = rows(&t, &[], &[], &BTreeMap::new(), &recorded, true)
            .into_iter()
            .map(|r| (r.repository, r.digest))
            .collect();
        assert_eq!(
            digests,
            [
                ("app".to_string(), NONE.to_string()),
                ("localhost:5000/app".to_string(), pushed.to_string()),
                ("lost".to_string(), UNKNOWN.to_string()),
                ("other".to_string(), NONE.to_string()),
            ]
        );
        // two manifests of the repository (a tag pushed gzip, another zstd): every tag shows
        // each, as Docker's --digests does, and once when no digest is shown
        let zstd = Digest::of(&[8]);
        let two = Recorded::from([(
            local.clone(),
            Some(vec![
                ("localhost:5000/app".to_string(), zstd),
                ("localhost:5000/app".to_string(), pushed),
            ]),
        )]);
        let shown = |every: bool| -> Vec<String> {
            rows(&t[..1], &[], &[], &BTreeMap::new(), &two, every)
                .into_iter()
                .map(|r| format!("{} {}", r.tag, r.digest))
                .collect()
        };
        let mut both = vec![format!("1 {pushed}"), format!("1 {zstd}")];
        both.sort();
        assert_eq!(shown(true), both);
        assert_eq!(shown(false).len(), 1);
    }
}
