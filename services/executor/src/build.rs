//! A build, from the request to the tagged image.
//!
//! The Dockerfile is parsed by the parser service twice: once to learn the stages and their
//! bases, then with the bases' ENV/WORKDIR/SHELL so that expansion sees them. The stages the
//! target needs run in the parser's build order. Config-only instructions change the image
//! config and add `empty_layer` history. Layer instructions (RUN, COPY, ADD, WORKDIR) have a
//! cache key (see [`crate::cache_key`]); a hit reuses the entry's layer without touching the
//! filesystem, a miss runs on a snapshot of the parent's layers, turns the changes into a
//! layer tar streamed to the store while hashed, and stores a cache entry with the key's
//! preimage. An empty change adds no layer (history marked `empty_layer`, as BuildKit's
//! exporter does). History times come from the cache entries, so a fully cached rebuild
//! gives the same config and manifest digests; with SOURCE_DATE_EPOCH every time is that.
//! The config and manifest are written last and only then are tags moved.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use strata_image::{Descriptor, Healthcheck, History, ImageConfig, Manifest, RootFs};
use strata_proto::{
    executor::{self as pb, build_event::Event},
    layer_store as ls,
    parser::{self as pp, instruction::Detail},
    tag_index as ti,
};
use strata_types::{Digest, Reference, media_type};
use tokio::{io::AsyncWriteExt, sync::mpsc};
use tonic::Status;
use tracing::{info, warn};

use crate::cache_key::{self, PREIMAGE_VERSION, Preimage};
use crate::copy::{self as cp, CopyAttrs};
use crate::error::ExecutorError;
use crate::history::{self, COMMENT};
use crate::layer_tar::{Change, HashingWriter, LayerOptions, write_layer};
use crate::local_cache::{Context, LocalCache, Pins};
use crate::mounts::{CacheMount, CacheMounts};
use crate::peers::{ChannelWriter, Peers, write_blob};
use crate::rootpath::{clean, resolve_in_root};
use crate::run_command::{self, RunCommand};
use crate::runtime::{MOUNT_POINTS, RunSpec, Runtime};
use crate::snapshot::{Snapshot, SnapshotterKind};

/// The default per-RUN timeout.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(3600);
/// Lines of output kept for a failed RUN's report.
const LAST_LINES: usize = 20;
/// The most output of one RUN step streamed to the client (BuildKit's log limit).
const MAX_LOG_BYTES: usize = 2 << 20;
/// The line that replaces output beyond [`MAX_LOG_BYTES`] (BuildKit's words).
const LOG_CLIPPED: &str = "[output clipped, log limit 2MiB reached]\n";
/// The file under the executor's directory that remembers the last runtime probe's result.
const LAST_RUNTIME: &str = "runtime-probed";
/// The OCI runtimes' state, one directory per runtime binary, under the executor's root.
pub(crate) const RUNTIME_STATE: &str = "runtime-state";
/// The platform builds target.
const PLATFORM: &str = "linux/amd64";

/// One layer of an image being built.
#[derive(Debug, Clone)]
pub struct Layer {
    /// diff_id.
    pub diff_id: Digest,
    /// Digest of the stored blob (equal to diff_id: layers are stored uncompressed).
    pub blob: String,
    /// Size of the blob.
    pub size: i64,
}

/// What a finished stage hands to its dependants.
#[derive(Debug, Clone)]
pub struct StageResult {
    config: ImageConfig,
    layers: Vec<Layer>,
    key: String,
}

/// A base image resolved from the store.
#[derive(Debug, Clone)]
pub(crate) struct BaseImage {
    manifest_digest: String,
    config: ImageConfig,
    layers: Vec<Layer>,
}

/// Shared executor state.
#[derive(Debug)]
pub struct Engine {
    /// ROOT/executor.
    pub dir: PathBuf,
    /// Peer clients.
    pub peers: Peers,
    /// Extracted layers and contexts.
    pub local: Arc<LocalCache>,
    /// `RUN --mount=type=cache` directories.
    pub cache_mounts: CacheMounts,
    runtime: tokio::sync::OnceCell<Result<(Runtime, SnapshotterKind), String>>,
}

/// Whether a stage walk runs the steps or only explains their cache behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Build,
    Explain,
}

/// Sends build events; fails with `Cancelled` once the client went away.
#[derive(Debug, Clone)]
pub struct Events {
    tx: Option<mpsc::Sender<Result<pb::BuildEvent, Status>>>,
}

impl Events {
    /// Events into `tx`.
    pub fn new(tx: mpsc::Sender<Result<pb::BuildEvent, Status>>) -> Self {
        Self { tx: Some(tx) }
    }

    fn none() -> Self {
        Self { tx: None }
    }

    /// Sends one event.
    pub async fn send(&self, event: Event) -> Result<(), ExecutorError> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let ev = pb::BuildEvent {
            time: Some(prost_types::Timestamp {
                seconds: now.as_secs() as i64,
                nanos: now.subsec_nanos() as i32,
            }),
            event: Some(event),
        };
        tx.send(Ok(ev)).await.map_err(|_| ExecutorError::Cancelled)
    }

    /// `StepStarted` for `instruction` of `stage`; a layer step also gives its cache key and
    /// why it missed.
    async fn step_started(
        &self,
        step: u32,
        stage: &pp::Stage,
        instruction: &str,
        cache_key: String,
        cache_miss_reason: String,
    ) -> Result<(), ExecutorError> {
        self.send(Event::StepStarted(pb::StepStarted {
            step,
            stage: stage.index,
            stage_name: stage.name.clone(),
            instruction: instruction.to_owned(),
            cache_key,
            cache_miss_reason,
        }))
        .await
    }

    /// `StepFinished` for a step that started at `started`.
    async fn step_finished(
        &self,
        step: u32,
        started: Instant,
        cached: bool,
    ) -> Result<(), ExecutorError> {
        self.send(Event::StepFinished(pb::StepFinished {
            step,
            duration_ms: started.elapsed().as_millis() as u64,
            cached,
        }))
        .await
    }
}

/// Per-build values every step reads.
struct BuildCtx<'a> {
    req: &'a pb::BuildRequest,
    build_id: String,
    context: Option<Arc<Context>>,
    parsed: pp::Dockerfile,
    bases: HashMap<String, BaseImage>,
    events: Events,
    mode: Mode,
    /// SOURCE_DATE_EPOCH: later mtimes in new layers become it; `None` keeps every mtime.
    clamp: Option<i64>,
    /// The RUN sandbox's hostname (`BUILDKIT_SANDBOX_HOSTNAME`, else BuildKit's default).
    hostname: String,
    explanations: tokio::sync::Mutex<Vec<pb::StepExplanation>>,
    lease: Option<String>,
    /// The local cache entries this build uses, kept from pruning until it ends.
    pins: Pins,
}

/// The mutable state of a stage walk.
struct StageState {
    config: ImageConfig,
    layers: Vec<Layer>,
    key: String,
    /// The key the stage started from (its base).
    base_key: String,
    /// Whether the step that gave `key` ran in this build (would run, explained): not the
    /// base, not a cache hit. A step after it can have no entry.
    parent_ran: bool,
    workdir: String,
    shell: Vec<String>,
    cmd_set: bool,
    /// History entries added by this stage, with their time when known.
    new_history: Vec<(History, Option<i64>)>,
}

impl Engine {
    /// Opens the executor's directory; its local cache keeps to `cache_budget` bytes (None:
    /// unbounded).
    pub fn open(
        dir: &Path,
        peers: Peers,
        cache_budget: Option<u64>,
    ) -> Result<Self, ExecutorError> {
        let local = Arc::new(LocalCache::open(dir, cache_budget)?);
        Ok(Self {
            dir: dir.to_path_buf(),
            peers,
            local,
            cache_mounts: CacheMounts::new(dir.join("cache-mounts")),
            runtime: tokio::sync::OnceCell::new(),
        })
    }

    /// The runtime and snapshotter, probed on first use.
    pub async fn runtime(&self) -> Result<(Runtime, SnapshotterKind), ExecutorError> {
        let probed = self
            .runtime
            .get_or_init(|| async {
                let kind = probe_overlay(&self.local.scratch("overlay-probe"));
                info!(snapshotter = %kind, "snapshotter selected");
                let probed = Runtime::probe(&self.dir.join(RUNTIME_STATE), &self.dir.join("tmp"))
                    .await
                    .map(|r| (r, kind))
                    .map_err(|e| e.to_string());
                if let Ok((r, k)) = &probed {
                    // for the started event of later processes that run no container
                    let _ = std::fs::write(self.dir.join(LAST_RUNTIME), probed_as(r, *k));
                }
                probed
            })
            .await;
        probed.clone().map_err(ExecutorError::Runtime)
    }

    /// What the started event says of the runtime: this process's probe, or else what the
    /// last probe over this directory found (a fully cached build starts no container).
    fn runtime_for_event(&self) -> String {
        match self.runtime.get() {
            Some(Ok((r, k))) => probed_as(r, *k),
            Some(Err(e)) => format!("unavailable: {e}"),
            None => std::fs::read_to_string(self.dir.join(LAST_RUNTIME))
                .map(|last| format!("{} (as last probed)", last.trim()))
                .unwrap_or_default(),
        }
    }

    /// Runs a build; the result is also sent as the last event.
    pub async fn build(
        &self,
        req: pb::BuildRequest,
        build_id: String,
        events: Events,
    ) -> Result<pb::ImageDone, ExecutorError> {
        let req = epoch_from_build_arg(req)?;
        // The lease is taken while the build is prepared (context, parse, base images): one
        // round trip (and one synced write) less on the path of every build.
        let (prepared, lease) = tokio::join!(
            self.prepare(&req, build_id.clone(), events, Mode::Build),
            self.create_lease(&build_id)
        );
        // released however the build ends, its future dropped included (a cancel, a client
        // gone, a shutdown): else its lease would pin the build's blobs for hours
        let mut lease_guard = LeaseGuard::renewed(self.peers.store.clone(), lease.clone());
        let mut ctx = match prepared {
            Ok(ctx) => ctx,
            Err(e) => {
                lease_guard.disarm();
                self.delete_lease(lease).await;
                return Err(e);
            }
        };
        ctx.lease = lease;
        let total: u32 = ctx
            .parsed
            .build_order
            .iter()
            .map(|i| 1 + ctx.parsed.stages[*i as usize].instructions.len() as u32)
            .sum();
        // The runtime is probed when a step first needs it (a trivial container: ~50 ms of
        // a fully cached build's ~20), so a build that runs nothing never starts one.
        let runtime = self.runtime_for_event();
        ctx.events
            .send(Event::Started(pb::BuildStarted {
                build_id: ctx.build_id.clone(),
                total_steps: total,
                runtime,
            }))
            .await?;
        let result = self.run_stages(&ctx).await;
        let done = match result {
            Ok(target) => self.finish(&ctx, target).await,
            Err(e) => Err(e),
        };
        lease_guard.disarm();
        self.delete_lease(ctx.lease.take()).await;
        // unpinned first, so what this build used is prunable too; the prune runs after the
        // result is returned, never on the build's path
        drop(ctx);
        self.local.prune_if_grown_in_background();
        done
    }

    /// Computes every step's key and explains the misses.
    pub async fn explain(
        &self,
        req: pb::BuildRequest,
    ) -> Result<pb::ExplainBuildResponse, ExecutorError> {
        let req = epoch_from_build_arg(req)?;
        let ctx = self
            .prepare(&req, "explain".into(), Events::none(), Mode::Explain)
            .await?;
        let walked = self.run_stages(&ctx).await;
        let BuildCtx {
            explanations, pins, ..
        } = ctx;
        drop(pins);
        self.local.prune_if_grown_in_background();
        walked?;
        // stages run concurrently: put their steps back in build order
        let mut steps = explanations.into_inner();
        steps.sort_by_key(|s| s.step);
        Ok(pb::ExplainBuildResponse { steps })
    }

    async fn prepare<'a>(
        &self,
        req: &'a pb::BuildRequest,
        build_id: String,
        events: Events,
        mode: Mode,
    ) -> Result<BuildCtx<'a>, ExecutorError> {
        crate::pull::check_credentials(&req.registry_credentials)?;
        check_source_date_epoch(req.source_date_epoch)?;
        for tag in &req.tags {
            Reference::parse_tag(tag)
                .map_err(|e| ExecutorError::InvalidArgument(format!("invalid tag {tag:?}: {e}")))?;
        }
        let pins = self.local.pins();
        let context = if req.context_digest.is_empty() {
            None
        } else {
            Some(
                self.local
                    .ensure_context(&self.peers, &req.context_digest, &pins)
                    .await?,
            )
        };
        let dockerfile = if !req.dockerfile_content.is_empty() {
            req.dockerfile_content.clone()
        } else {
            let name = if req.dockerfile_path.is_empty() {
                "Dockerfile"
            } else {
                &req.dockerfile_path
            };
            let ctx = context.as_ref().ok_or_else(|| {
                ExecutorError::InvalidArgument(
                    "no Dockerfile: send dockerfile_content or a context holding it".into(),
                )
            })?;
            let path = resolve_in_root(&ctx.dir, name, true)?;
            std::fs::read(&path)
                .map_err(|_| ExecutorError::NotFound(format!("the build context has no {name}")))?
        };
        let mut parsed = self.parse(&dockerfile, req, HashMap::new()).await?;
        let mut bases = HashMap::new();
        for &i in &parsed
            .dockerfile
            .as_ref()
            .map(|d| d.build_order.clone())
            .unwrap_or_default()
        {
            let stage = &parsed.dockerfile.as_ref().expect("parsed").stages[i as usize];
            crate::pull::check_platform(&stage.base, &stage.platform)?;
            if stage.scratch || stage.base_stage.is_some() || bases.contains_key(&stage.base) {
                continue;
            }
            let base = self.resolve_base(&stage.base, req, &events).await?;
            bases.insert(stage.base.clone(), base);
        }
        let defaults: HashMap<String, pp::BaseImageDefaults> = bases
            .iter()
            .filter(|(_, b)| {
                let c = &b.config.config;
                c.env.is_some()
                    || c.working_dir.is_some()
                    || c.shell.is_some()
                    || c.on_build.as_ref().is_some_and(|o| !o.is_empty())
            })
            .map(|(name, b)| {
                let c = &b.config.config;
                let env = c
                    .env
                    .iter()
                    .flatten()
                    .map(|e| {
                        let (k, v) = e.split_once('=').unwrap_or((e, ""));
                        pp::KeyValue {
                            key: k.to_owned(),
                            value: v.to_owned(),
                        }
                    })
                    .collect();
                (
                    name.clone(),
                    pp::BaseImageDefaults {
                        env,
                        working_dir: c.working_dir.clone().unwrap_or_default(),
                        shell: c.shell.clone().unwrap_or_default(),
                        on_build: c.on_build.clone().unwrap_or_default(),
                    },
                )
            })
            .collect();
        if !defaults.is_empty() {
            parsed = self.parse(&dockerfile, req, defaults).await?;
        }
        for w in &parsed.warnings {
            events
                .send(Event::Warning(pb::BuildWarning {
                    rule: w.rule.clone(),
                    message: w.message.clone(),
                    line: w.span.map_or(0, |s| s.start_line),
                }))
                .await?;
        }
        let parsed = parsed
            .dockerfile
            .ok_or_else(|| ExecutorError::Internal("the parser returned no Dockerfile".into()))?;
        // the parser knows which build args no ARG of a built stage consumed (§9.2)
        let unused = &parsed.unused_build_args;
        if !unused.is_empty() {
            events
                .send(Event::Warning(pb::BuildWarning {
                    rule: String::new(),
                    message: format!(
                        "One or more build-args [{}] were not consumed",
                        unused.join(" ")
                    ),
                    line: 0,
                }))
                .await?;
        }
        Ok(BuildCtx {
            req,
            build_id,
            context,
            parsed,
            bases,
            events,
            mode,
            clamp: req.source_date_epoch,
            hostname: crate::network_files::sandbox_hostname(&req.build_args)?,
            explanations: tokio::sync::Mutex::new(Vec::new()),
            lease: None,
            pins,
        })
    }

    async fn parse(
        &self,
        content: &[u8],
        req: &pb::BuildRequest,
        base_images: HashMap<String, pp::BaseImageDefaults>,
    ) -> Result<pp::ParseDockerfileResponse, ExecutorError> {
        let request = pp::ParseDockerfileRequest {
            content: content.to_vec(),
            filename: if req.dockerfile_path.is_empty() {
                "Dockerfile".into()
            } else {
                req.dockerfile_path.clone()
            },
            build_args: req.build_args.clone(),
            target: req.target.clone(),
            platform: None,
            include_ast_dump: false,
            base_images,
        };
        let response = self
            .peers
            .parser
            .clone()
            .parse_dockerfile(request)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::InvalidArgument | tonic::Code::NotFound => {
                    ExecutorError::InvalidArgument(s.message().to_owned())
                }
                _ => ExecutorError::peer("parser")(s),
            })?;
        Ok(response.into_inner())
    }

    /// The image `name` (a tag or `name@digest`) from the store; NOT_FOUND when the store
    /// does not hold it (see [`Self::resolve_base`], which pulls it then).
    pub(crate) async fn resolve_image(&self, name: &str) -> Result<BaseImage, ExecutorError> {
        let reference = Reference::parse(name).map_err(|e| {
            ExecutorError::InvalidArgument(format!("invalid image reference {name:?}: {e}"))
        })?;
        let manifest_digest = match reference.digest() {
            Some(d) => self.local_manifest_by_digest(&reference, d).await?,
            None => match self
                .peers
                .tags
                .clone()
                .resolve_tag(ti::ResolveTagRequest {
                    name: name.to_owned(),
                })
                .await
            {
                Ok(t) => t.into_inner().digest,
                Err(s) if s.code() == tonic::Code::NotFound => {
                    return Err(ExecutorError::NotFound(format!(
                        "image {name:?} not found: no such tag in the tag index (import it with `strata import`, load or build it first)"
                    )));
                }
                Err(s) => return Err(ExecutorError::peer("tag index")(s)),
            },
        };
        self.load_image(name, &manifest_digest).await
    }

    /// The image whose manifest (or index) is `manifest_digest`, called `name` in messages.
    pub(crate) async fn load_image(
        &self,
        name: &str,
        manifest_digest: &str,
    ) -> Result<BaseImage, ExecutorError> {
        let manifest_digest = manifest_digest.to_owned();
        let missing = |what: &str| {
            ExecutorError::NotFound(format!("image {name:?}: {what} is not in the layer store"))
        };
        let bytes = self
            .peers
            .get_blob(&manifest_digest)
            .await
            .map_err(|e| match e {
                ExecutorError::Peer { status, .. } if status.code() == tonic::Code::NotFound => {
                    missing(&format!("manifest {manifest_digest}"))
                }
                e => e,
            })?;
        let bytes = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) if v.get("manifests").is_some() => {
                let index: strata_image::Index = serde_json::from_value(v).map_err(|e| {
                    ExecutorError::InvalidArgument(format!("image {name:?}: invalid index: {e}"))
                })?;
                let pick = index
                    .manifests
                    .iter()
                    .find(|d| {
                        d.platform
                            .as_ref()
                            .is_none_or(|p| p.os == "linux" && p.architecture == "amd64")
                    })
                    .ok_or_else(|| {
                        ExecutorError::NotFound(format!(
                            "image {name:?} has no linux/amd64 manifest"
                        ))
                    })?;
                self.peers.get_blob(&pick.digest).await?
            }
            _ => bytes,
        };
        let manifest = Manifest::parse(&bytes)
            .map_err(|e| ExecutorError::InvalidArgument(format!("image {name:?}: {e}")))?;
        let config_bytes = self
            .peers
            .get_blob(&manifest.config.digest)
            .await
            .map_err(|_| missing(&format!("config {}", manifest.config.digest)))?;
        let config = ImageConfig::parse(&config_bytes)
            .map_err(|e| ExecutorError::InvalidArgument(format!("image {name:?}: {e}")))?;
        manifest
            .validate_against(&config)
            .map_err(|e| ExecutorError::InvalidArgument(format!("image {name:?}: {e}")))?;
        let layers = config
            .rootfs
            .diff_ids
            .iter()
            .zip(&manifest.layers)
            .map(|(diff_id, d)| {
                Ok(Layer {
                    diff_id: Digest::parse(diff_id).map_err(|e| {
                        ExecutorError::InvalidArgument(format!("image {name:?}: bad diff_id: {e}"))
                    })?,
                    blob: d.digest.clone(),
                    size: d.size,
                })
            })
            .collect::<Result<Vec<_>, ExecutorError>>()?;
        Ok(BaseImage {
            manifest_digest,
            config,
            layers,
        })
    }

    async fn create_lease(&self, build_id: &str) -> Option<String> {
        let request = ls::CreateLeaseRequest {
            id: String::new(),
            ttl_seconds: LEASE_TTL.as_secs() as u32,
            labels: [("build".to_owned(), build_id.to_owned())].into(),
        };
        match self.peers.store.clone().create_lease(request).await {
            Ok(l) => Some(l.into_inner().id),
            Err(e) => {
                warn!(error = %e.message(), "no lease for this build; its blobs are unprotected from GC until tagged");
                None
            }
        }
    }

    async fn delete_lease(&self, lease: Option<String>) {
        if let Some(id) = lease {
            let _ = self
                .peers
                .store
                .clone()
                .delete_lease(ls::DeleteLeaseRequest { id })
                .await;
        }
    }

    async fn lease_add(&self, ctx: &BuildCtx<'_>, digests: Vec<String>) {
        if let Some(id) = &ctx.lease {
            let _ = self
                .peers
                .store
                .clone()
                .add_lease_resources(ls::AddLeaseResourcesRequest {
                    id: id.clone(),
                    digests,
                })
                .await;
        }
    }

    /// Runs the stages the target needs, each as soon as the stages it depends on are built
    /// (see [`crate::schedule`]). Step numbers follow the parser's build order, whatever
    /// order the steps run in; every event names its stage.
    async fn run_stages(&self, ctx: &BuildCtx<'_>) -> Result<StageResult, ExecutorError> {
        let mut first_step: HashMap<u32, u32> = HashMap::new();
        let mut step = 0u32;
        for &index in &ctx.parsed.build_order {
            first_step.insert(index, step);
            step += 1 + ctx.parsed.stages[index as usize].instructions.len() as u32;
        }
        let graph: Vec<(u32, Vec<u32>)> = ctx
            .parsed
            .build_order
            .iter()
            .map(|&i| (i, ctx.parsed.stages[i as usize].depends_on.clone()))
            .collect();
        let mut results = crate::schedule::run(
            &graph,
            |index, inputs| {
                let stage = &ctx.parsed.stages[index as usize];
                let first = first_step[&index];
                async move { self.run_stage(ctx, stage, first, &inputs).await }
            },
            |stuck| ExecutorError::Internal(format!("stages {stuck:?} wait for each other")),
        )
        .await?;
        results
            .remove(&ctx.parsed.target_stage)
            .ok_or_else(|| ExecutorError::Internal("the target stage was not built".into()))
    }

    async fn run_stage(
        &self,
        ctx: &BuildCtx<'_>,
        stage: &pp::Stage,
        first_step: u32,
        results: &HashMap<u32, StageResult>,
    ) -> Result<StageResult, ExecutorError> {
        let from_step = first_step + 1;
        let started = Instant::now();
        ctx.events
            .step_started(
                from_step,
                stage,
                &stage.original,
                String::new(),
                String::new(),
            )
            .await?;
        let (mut config, layers, key) = if stage.scratch {
            // BuildKit's empty image (dockerfile.md §8.1): WorkingDir "/" (PATH is added below)
            let mut config = ImageConfig {
                architecture: "amd64".into(),
                os: "linux".into(),
                rootfs: RootFs {
                    kind: "layers".into(),
                    diff_ids: vec![],
                },
                ..Default::default()
            };
            config.config.working_dir = Some("/".into());
            (config, vec![], Digest::of(b"strata:scratch").to_string())
        } else if let Some(b) = stage.base_stage {
            let r = results.get(&b).ok_or_else(|| {
                ExecutorError::Internal(format!(
                    "stage {b} was not built before stage {}",
                    stage.index
                ))
            })?;
            (r.config.clone(), r.layers.clone(), r.key.clone())
        } else {
            let base = match ctx.bases.get(&stage.base) {
                Some(b) => b.clone(),
                // a stage that only an ONBUILD trigger's `COPY --from` needs
                None => self.resolve_image(&stage.base).await?,
            };
            (
                base.config.clone(),
                base.layers.clone(),
                base.manifest_digest.clone(),
            )
        };
        if config.config.env_var("PATH").is_none() {
            config
                .config
                .set_env_var("PATH", strata_dockerfile::DEFAULT_PATH);
        }
        config.config.on_build = None;
        // The base's top-level comment (`docker import -m`, `docker commit -m`) describes how
        // that image was made, not this one: BuildKit reads the base config into the OCI
        // image type, which has no such field, and Docker's builder does not copy it either.
        // The base's history entries keep their comments.
        config.comment = None;
        config.architecture = "amd64".into();
        config.os = "linux".into();
        ctx.events.step_finished(from_step, started, false).await?;
        self.explain_meta(ctx, from_step, &stage.original).await;
        let workdir = config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        let shell = config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        let mut state = StageState {
            config,
            layers,
            base_key: key.clone(),
            key,
            parent_ran: false,
            workdir,
            shell,
            cmd_set: false,
            new_history: Vec::new(),
        };
        for (i, inst) in stage.instructions.iter().enumerate() {
            let step = from_step + 1 + i as u32;
            self.run_instruction(ctx, stage, step, inst, &mut state, results)
                .await
                .map_err(|e| e.at_step(step, &inst.original))?;
        }
        // History times: each entry takes the time of the latest layer step at or before it,
        // entries before any take the first layer step's, and with none at all: now.
        let fixed = ctx.req.source_date_epoch;
        let known: Vec<Option<i64>> = state.new_history.iter().map(|(_, t)| *t).collect();
        let first = known
            .iter()
            .flatten()
            .next()
            .copied()
            .unwrap_or_else(history::now_unix);
        let mut last = first;
        let mut latest = None;
        for (h, t) in &mut state.new_history {
            if let Some(t) = t {
                last = *t;
            }
            let when = fixed.unwrap_or(last);
            h.created = Some(history::rfc3339(when));
            latest = Some(latest.map_or(when, |l: i64| l.max(when)));
        }
        let mut config = state.config;
        config
            .history
            .extend(state.new_history.into_iter().map(|(h, _)| h));
        if let Some(t) = fixed.or(latest) {
            config.created = Some(history::rfc3339(t));
        }
        config.rootfs.diff_ids = state.layers.iter().map(|l| l.diff_id.to_string()).collect();
        Ok(StageResult {
            config,
            layers: state.layers,
            key: state.key,
        })
    }

    async fn explain_meta(&self, ctx: &BuildCtx<'_>, step: u32, instruction: &str) {
        if ctx.mode == Mode::Explain {
            ctx.explanations.lock().await.push(pb::StepExplanation {
                step,
                instruction: instruction.to_owned(),
                cache_key: String::new(),
                cached: true,
                changes: vec![],
            });
        }
    }

    async fn meta_step(
        &self,
        ctx: &BuildCtx<'_>,
        stage: &pp::Stage,
        step: u32,
        inst: &pp::Instruction,
        state: &mut StageState,
        created_by: Option<String>,
    ) -> Result<(), ExecutorError> {
        let started = Instant::now();
        ctx.events
            .step_started(step, stage, &inst.original, String::new(), String::new())
            .await?;
        if let Some(created_by) = created_by {
            state.new_history.push((
                History {
                    created: None,
                    created_by: Some(created_by),
                    author: None,
                    comment: Some(COMMENT.into()),
                    empty_layer: true,
                },
                None,
            ));
        }
        ctx.events.step_finished(step, started, false).await?;
        self.explain_meta(ctx, step, &inst.original).await;
        Ok(())
    }

    async fn run_instruction(
        &self,
        ctx: &BuildCtx<'_>,
        stage: &pp::Stage,
        step: u32,
        inst: &pp::Instruction,
        state: &mut StageState,
        results: &HashMap<u32, StageResult>,
    ) -> Result<(), ExecutorError> {
        let Some(detail) = &inst.detail else {
            return Err(ExecutorError::InvalidArgument(format!(
                "unsupported instruction {}",
                inst.keyword
            )));
        };
        let c = &mut state.config.config;
        let shell_wrap = |shell: &[String], cmd: &pp::Command| -> Vec<String> {
            if cmd.shell_form {
                let mut v = shell.to_vec();
                v.push(cmd.args.first().cloned().unwrap_or_default());
                v
            } else {
                cmd.args.clone()
            }
        };
        let created_by = match detail {
            Detail::Env(kv) => {
                for p in &kv.pairs {
                    c.set_env_var(&p.key, &p.value);
                }
                Some(format!(
                    "ENV {}",
                    kv.pairs
                        .iter()
                        .map(|p| format!("{}={}", p.key, p.value))
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
            }
            Detail::Label(kv) => {
                let labels = c.labels.get_or_insert_with(BTreeMap::new);
                for p in &kv.pairs {
                    labels.insert(p.key.clone(), p.value.clone());
                }
                Some(format!(
                    "LABEL {}",
                    kv.pairs
                        .iter()
                        .map(|p| format!("{}={}", p.key, p.value))
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
            }
            Detail::Arg(a) => Some(format!(
                "ARG {}",
                a.args
                    .iter()
                    .map(|d| match &d.value {
                        Some(v) => format!("{}={v}", d.name),
                        None => d.name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            Detail::Maintainer(m) => {
                state.config.author = Some(m.value.clone());
                Some(format!("MAINTAINER {}", m.value))
            }
            Detail::Cmd(cmd) => {
                let cmd = cmd.command.clone().unwrap_or_default();
                let v = shell_wrap(&state.shell, &cmd);
                c.cmd = Some(v.clone());
                c.args_escaped = Some(true);
                state.cmd_set = true;
                Some(format!("CMD {}", history::go_quoted_list(&v)))
            }
            Detail::Entrypoint(ep) => {
                let ep = ep.command.clone().unwrap_or_default();
                let v = shell_wrap(&state.shell, &ep);
                c.entrypoint = if v.is_empty() { None } else { Some(v.clone()) };
                if !state.cmd_set {
                    c.cmd = None;
                }
                Some(format!("ENTRYPOINT {}", history::go_quoted_list(&v)))
            }
            Detail::Shell(sh) => {
                let v = sh.command.clone().unwrap_or_default().args;
                c.shell = Some(v.clone());
                state.shell = v.clone();
                Some(format!("SHELL {}", history::go_list(&v)))
            }
            Detail::Expose(e) => {
                let mut ports = Vec::new();
                for p in &e.ports {
                    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    match num.split_once('-') {
                        Some((a, b)) => {
                            let (a, b): (u32, u32) = (
                                a.parse().map_err(|_| {
                                    ExecutorError::InvalidArgument(format!(
                                        "invalid containerPort: {num}"
                                    ))
                                })?,
                                b.parse().map_err(|_| {
                                    ExecutorError::InvalidArgument(format!(
                                        "invalid containerPort: {num}"
                                    ))
                                })?,
                            );
                            for n in a..=b {
                                ports.push(format!("{n}/{proto}"));
                            }
                        }
                        None => ports.push(format!("{num}/{proto}")),
                    }
                }
                let set = c.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in &ports {
                    set.insert(p.clone(), Default::default());
                }
                Some(format!("EXPOSE {}", history::go_list(&ports)))
            }
            Detail::User(u) => {
                c.user = Some(u.value.clone());
                Some(format!("USER {}", u.value))
            }
            Detail::Volume(v) => {
                let set = c.volumes.get_or_insert_with(BTreeMap::new);
                for p in &v.paths {
                    if p.trim().is_empty() {
                        return Err(ExecutorError::InvalidArgument(
                            "VOLUME specified can not be an empty string".into(),
                        ));
                    }
                    set.insert(p.clone(), Default::default());
                }
                Some(format!("VOLUME {}", history::go_list(&v.paths)))
            }
            Detail::Stopsignal(s) => {
                c.stop_signal = Some(s.value.clone());
                Some(format!("STOPSIGNAL {}", s.value))
            }
            Detail::Healthcheck(h) => {
                let hc = if h.none {
                    Healthcheck {
                        test: Some(vec!["NONE".into()]),
                        ..Default::default()
                    }
                } else {
                    let cmd = h.command.clone().unwrap_or_default();
                    let nz = |v: i64| (v != 0).then_some(v);
                    Healthcheck {
                        test: Some(cmd.args.clone()),
                        interval: nz(h.interval_ns),
                        timeout: nz(h.timeout_ns),
                        start_period: nz(h.start_period_ns),
                        start_interval: nz(h.start_interval_ns),
                        retries: (h.retries != 0).then_some(h.retries as i64),
                    }
                };
                let text = history::healthcheck(&hc);
                c.healthcheck = Some(hc);
                Some(text)
            }
            Detail::Onbuild(o) => {
                c.on_build
                    .get_or_insert_with(Vec::new)
                    .push(o.trigger.clone());
                None
            }
            Detail::Workdir(w) => {
                let path = if w.value.starts_with('/') {
                    clean(&w.value)
                } else {
                    clean(&format!("{}/{}", state.workdir, w.value))
                };
                if path == "/proc"
                    || path.starts_with("/proc/")
                    || path == "/sys"
                    || path.starts_with("/sys/")
                {
                    return Err(ExecutorError::InvalidArgument(format!(
                        "WORKDIR {path}: /proc and /sys are the container's kernel filesystems, not part of the image"
                    )));
                }
                c.working_dir = Some(path.clone());
                state.workdir = path.clone();
                if path == "/" {
                    Some(format!("WORKDIR {path}"))
                } else {
                    let pre = self.preimage(state, "WORKDIR", vec![path.clone()]);
                    let user = state.config.config.user.clone().unwrap_or_default();
                    return self
                        .layer_step(
                            ctx,
                            stage,
                            step,
                            inst,
                            state,
                            pre,
                            format!("WORKDIR {path}"),
                            Action::Mkdir { path, user },
                        )
                        .await;
                }
            }
            Detail::Run(run) => {
                return self
                    .run_step(ctx, stage, step, inst, run, state, results)
                    .await;
            }
            Detail::Copy(copy) => {
                return self
                    .copy_step(ctx, stage, step, inst, copy, false, state, results)
                    .await;
            }
            Detail::Add(copy) => {
                return self
                    .copy_step(ctx, stage, step, inst, copy, true, state, results)
                    .await;
            }
        };
        self.meta_step(ctx, stage, step, inst, state, created_by)
            .await
    }

    fn preimage(&self, state: &StageState, kind: &str, args: Vec<String>) -> Preimage {
        Preimage {
            version: PREIMAGE_VERSION,
            parent: state.key.clone(),
            kind: kind.to_owned(),
            args,
            workdir: state.workdir.clone(),
            user: state.config.config.user.clone().unwrap_or_default(),
            shell: state.shell.clone(),
            platform: PLATFORM.into(),
            ..Default::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        ctx: &BuildCtx<'_>,
        stage: &pp::Stage,
        step: u32,
        inst: &pp::Instruction,
        run: &pp::RunInstruction,
        state: &mut StageState,
        results: &HashMap<u32, StageResult>,
    ) -> Result<(), ExecutorError> {
        let host_network = match run.network.as_str() {
            "" | "default" | "none" => false,
            "host" if ctx.req.allow_host_network => true,
            "host" => return Err(ExecutorError::InvalidArgument("RUN --network=host needs the build to allow host networking (--allow network.host)".into())),
            other => return Err(ExecutorError::InvalidArgument(format!("invalid network mode {other:?}"))),
        };
        if run.security == "insecure" {
            return Err(ExecutorError::InvalidArgument(
                "RUN --security=insecure is not allowed".into(),
            ));
        }
        let cmd = run.command.clone().unwrap_or_default();
        let RunCommand { argv, script } = run_command::resolve(&cmd, &state.shell);
        let mut env: Vec<(String, String)> = inst
            .build_env
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.insert(0, ("PATH".into(), strata_dockerfile::DEFAULT_PATH.into()));
        }
        // `RUN |N A=v`: each ARG's current value in the step's env (an ENV after the ARG
        // wins), else its declared value (dockerfile.md §12.1)
        let args_in_scope: Vec<(String, String)> = inst
            .args_in_scope
            .iter()
            .map(|a| {
                let current = env.iter().rev().find(|(k, _)| *k == a.name).map(|(_, v)| v);
                let value = current.or(a.value.as_ref()).cloned().unwrap_or_default();
                (a.name.clone(), value)
            })
            .collect();
        let mut pre = self.preimage(state, "RUN", argv.clone());
        pre.env = env.iter().cloned().collect();
        // proxy build args reach RUN undeclared, outside the key and the history
        // (dockerfile.md §9.3); declared with ARG they are already in the env
        for name in strata_dockerfile::PROXY_ARGS {
            if let Some(value) = ctx.req.build_args.get(*name)
                && !env.iter().any(|(k, _)| k == name)
            {
                env.push(((*name).to_owned(), value.clone()));
            }
        }
        let mut mounts = self
            .plan_mounts(ctx, stage, &run.mounts, state, results, &mut pre)
            .await?;
        if let Some((name, body)) = script {
            // the argv names the script's path; its content is part of the key too
            pre.flags.insert(
                format!("heredoc-script:{name}"),
                Digest::of(body.as_bytes()).to_string(),
            );
            mounts.push(MountPlan::Script {
                target: format!("{}/{name}", run_command::PIPES_DIR),
                name,
                body,
            });
        }
        pre.flags.insert(
            "network".into(),
            if host_network {
                "host".into()
            } else {
                "none".into()
            },
        );
        // a hostname other than the default is part of what the step runs in (BuildKit keys
        // the exec with it); the default adds nothing, so existing keys hold
        if ctx.hostname != crate::network_files::HOSTNAME {
            pre.flags.insert("hostname".into(), ctx.hostname.clone());
        }
        let created_by = history::run(&args_in_scope, &argv);
        let user = state.config.config.user.clone().unwrap_or_default();
        let action = Action::Run {
            argv,
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: state.workdir.clone(),
            user,
            host_network,
            mounts,
        };
        self.layer_step(ctx, stage, step, inst, state, pre, created_by, action)
            .await
    }

    /// Where a `RUN --mount` of `kind` takes `source` from: the build context (no `from`,
    /// the source keyed by its content hash), a previous stage (by its key) or an image (by
    /// its digest); with the part of the step's cache key that names it.
    async fn mount_source(
        &self,
        ctx: &BuildCtx<'_>,
        stage: &pp::Stage,
        m: &pp::Mount,
        kind: &str,
        source: &str,
        results: &HashMap<u32, StageResult>,
    ) -> Result<(SourceRoot, String), ExecutorError> {
        let source = source.to_owned();
        Ok(if m.from.is_empty() {
            let context = ctx.context.clone().ok_or_else(|| {
                ExecutorError::InvalidArgument(format!(
                    "RUN --mount=type={kind} needs a build context, and this build has none"
                ))
            })?;
            let root = context.dir.clone();
            let rel = source.clone();
            let digests = context.clone();
            let hash = tokio::task::spawn_blocking(move || {
                let (matches, _) = cp::select_sources(&root, &[rel])?;
                let m = matches
                    .first()
                    .ok_or_else(|| ExecutorError::Internal("a selected source vanished".into()))?;
                cp::content_hash(m, &[], Some(&digests.file_digests))
            })
            .await
            .map_err(|e| ExecutorError::Internal(e.to_string()))?
            .map_err(|e| match e {
                ExecutorError::NotFound(_) => ExecutorError::NotFound(format!(
                    "RUN --mount=type={kind}: {source} is not in the build context"
                )),
                e => e,
            })?;
            (SourceRoot::Context(context), format!("context:{hash}"))
        } else if let Some(s) = ctx.parsed.stages.iter().find(|s| {
            s.name.eq_ignore_ascii_case(&m.from) || m.from.parse::<u32>().ok() == Some(s.index)
        }) {
            let r = results.get(&s.index).ok_or_else(|| {
                ExecutorError::InvalidArgument(format!(
                    "cannot mount from stage {:?}, it needs to be defined before current stage {:?}",
                    m.from, stage.name
                ))
            })?;
            (
                SourceRoot::Layers(r.layers.clone()),
                format!("stage:{}", r.key),
            )
        } else {
            let image = self.resolve_image(&m.from).await?;
            (
                SourceRoot::Layers(image.layers.clone()),
                format!("image:{}", image.manifest_digest),
            )
        })
    }

    /// What `RUN --mount`s mount (see [`crate::mounts`]), with their part of the step's
    /// cache key: every mount's spec, a bind's source by its content hash (context) or its
    /// stage's key or image's digest; never a cache mount's contents.
    async fn plan_mounts(
        &self,
        ctx: &BuildCtx<'_>,
        stage: &pp::Stage,
        mounts: &[pp::Mount],
        state: &StageState,
        results: &HashMap<u32, StageResult>,
        pre: &mut Preimage,
    ) -> Result<Vec<MountPlan>, ExecutorError> {
        let mut plans = Vec::with_capacity(mounts.len());
        let mut specs = Vec::with_capacity(mounts.len());
        for m in mounts {
            let kind = m.r#type.as_str();
            if matches!(kind, "secret" | "ssh") {
                // not required (the default): the mount is left out, as BuildKit leaves out
                // a secret or agent the client did not provide, and the step runs without it
                if m.options.get("required").map(String::as_str) != Some("true") {
                    continue;
                }
                return Err(ExecutorError::InvalidArgument(format!(
                    "RUN --mount=type={kind},required=true cannot be met: strata builds have no client session to take {} from",
                    if kind == "ssh" {
                        "an SSH agent"
                    } else {
                        "secrets"
                    }
                )));
            }
            let target = crate::mounts::absolute_target(&m.target, &state.workdir)?;
            match kind {
                "cache" => {
                    let cache =
                        CacheMount::from_spec(&m.id, &target, &m.sharing, &m.options, m.readonly)?;
                    // `from` (with `source` in it) seeds a cache the first time it is made
                    // (BuildKit's "base of the cache mount"; without `from` a new cache is
                    // empty, as there); the seed names the step, its later contents never do
                    let (seed, seed_key) = if m.from.is_empty() {
                        (None, String::new())
                    } else {
                        let source = clean(if m.source.is_empty() { "/" } else { &m.source });
                        let (from, key) = self
                            .mount_source(ctx, stage, m, "cache", &source, results)
                            .await?;
                        let spec = format!(",from={key},source={source}");
                        (Some((from, source)), spec)
                    };
                    specs.push(format!(
                        "type=cache,target={target},id={},sharing={},mode={:o},uid={},gid={},ro={}{seed_key}",
                        cache.id, cache.sharing, cache.mode, cache.uid, cache.gid, cache.readonly
                    ));
                    plans.push(MountPlan::Cache {
                        target,
                        cache,
                        seed,
                    });
                }
                "tmpfs" => {
                    let size = match m.options.get("size") {
                        Some(v) => Some(v.parse::<u64>().map_err(|_| {
                            ExecutorError::InvalidArgument(format!(
                                "RUN --mount=type=tmpfs: invalid size {v:?}"
                            ))
                        })?),
                        None => None,
                    };
                    specs.push(match size {
                        Some(size) => format!("type=tmpfs,target={target},size={size}"),
                        None => format!("type=tmpfs,target={target}"),
                    });
                    plans.push(MountPlan::Tmpfs { target, size });
                }
                "bind" => {
                    let source = clean(if m.source.is_empty() { "/" } else { &m.source });
                    let (from, from_key) = self
                        .mount_source(ctx, stage, m, "bind", &source, results)
                        .await?;
                    specs.push(format!(
                        "type=bind,target={target},from={from_key},source={source},ro={}",
                        m.readonly
                    ));
                    plans.push(MountPlan::Bind {
                        target,
                        from,
                        source,
                        readonly: m.readonly,
                    });
                }
                other => {
                    return Err(ExecutorError::InvalidArgument(format!(
                        "unsupported mount type {other:?}"
                    )));
                }
            }
        }
        if !specs.is_empty() {
            pre.flags.insert("mounts".into(), specs.join("\n"));
        }
        Ok(plans)
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_step(
        &self,
        ctx: &BuildCtx<'_>,
        stage: &pp::Stage,
        step: u32,
        inst: &pp::Instruction,
        copy: &pp::CopyInstruction,
        is_add: bool,
        state: &mut StageState,
        results: &HashMap<u32, StageResult>,
    ) -> Result<(), ExecutorError> {
        let keyword = if is_add { "ADD" } else { "COPY" };
        // heredoc sources: files named after their delimiters (dockerfile.md §5.3)
        let inline: Vec<(String, String)> = copy
            .heredocs
            .iter()
            .map(|h| (h.name.clone(), h.content.clone()))
            .collect();
        let heredoc_names: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
        let dest_is_dir = copy.parents
            || copy.destination.ends_with('/')
            || copy.destination.ends_with("/.")
            || copy.destination == ".";
        let dest = if copy.destination.starts_with('/') {
            clean(&copy.destination)
        } else {
            clean(&format!("{}/{}", state.workdir, copy.destination))
        };
        let mode = if copy.chmod.is_empty() {
            None
        } else {
            Some(cp::Chmod::parse(&copy.chmod)?)
        };
        let mut pre = self.preimage(
            state,
            keyword,
            copy.sources
                .iter()
                .cloned()
                .chain(heredoc_names.iter().map(|n| format!("<<{n}")))
                .chain([dest.clone(), dest_is_dir.to_string()])
                .collect(),
        );
        for (name, content) in &inline {
            pre.sources.insert(
                format!("<<{name}"),
                Digest::of(content.as_bytes()).to_string(),
            );
        }
        if copy.parents {
            pre.flags.insert("parents".into(), "true".into());
        }
        pre.flags.insert("chown".into(), copy.chown.clone());
        pre.flags.insert("chmod".into(), copy.chmod.clone());
        pre.flags.insert("link".into(), copy.link.to_string());
        pre.flags.insert("exclude".into(), copy.excludes.join("\n"));
        // Every flag that can change what the step writes is in the key (dockerfile.md
        // §13), ADD's own ones too: `--unpack` by the value in force (the default for a
        // local source is to extract), `--checksum` and `--keep-git-dir` as written.
        let unpack = is_add && copy.unpack.unwrap_or(true);
        // a URL's download is extracted only when asked (`--unpack=true`), never by default
        let unpack_downloads = is_add && copy.unpack == Some(true);
        if is_add {
            pre.flags.insert("unpack".into(), unpack.to_string());
            pre.flags
                .insert("keep-git-dir".into(), copy.keep_git_dir.to_string());
        }
        if !copy.checksum.is_empty() {
            pre.flags.insert("checksum".into(), copy.checksum.clone());
        }
        // Sources: a stage, an image, a URL (ADD), or the context.
        if let Some(git) = copy.sources.iter().find(|s| is_add && is_git_source(s)) {
            return Err(ExecutorError::InvalidArgument(format!(
                "ADD of a git repository ({git}) is not supported yet: clone it into the build context, or RUN git clone"
            )));
        }
        let (urls, locals): (Vec<&String>, Vec<&String>) = copy
            .sources
            .iter()
            .partition(|s| s.starts_with("http://") || s.starts_with("https://"));
        let mut source = SourceRoot::None;
        let mut downloads: Vec<Download> = Vec::new();
        if !urls.is_empty() {
            if !is_add {
                return Err(ExecutorError::InvalidArgument(
                    "source can't be a URL for COPY".into(),
                ));
            }
            if !copy.checksum.is_empty() && copy.sources.len() != 1 {
                return Err(ExecutorError::InvalidArgument(
                    "checksum can't be specified for multiple sources".into(),
                ));
            }
            pre.flags
                .insert("unpack-urls".into(), unpack_downloads.to_string());
            for url in &urls {
                let d = self.download(ctx, url, &copy.checksum, step).await?;
                pre.sources.insert((*url).clone(), d.digest.to_string());
                downloads.push(d);
            }
        } else if !copy.checksum.is_empty() {
            return Err(ExecutorError::InvalidArgument(if is_add {
                "checksum requires HTTP(S) or Git sources".into()
            } else {
                "checksum can't be specified for COPY".into()
            }));
        }
        if !copy.from.is_empty() {
            let from_stage = ctx.parsed.stages.iter().find(|s| {
                s.name.eq_ignore_ascii_case(&copy.from)
                    || (copy.from.parse::<u32>().ok() == Some(s.index))
            });
            match from_stage {
                Some(s) => {
                    let r = results.get(&s.index).ok_or_else(|| {
                        ExecutorError::InvalidArgument(format!(
                            "cannot copy from stage {:?}, it needs to be defined before current stage {:?}",
                            copy.from, stage.name
                        ))
                    })?;
                    pre.flags.insert("from".into(), r.key.clone());
                    source = SourceRoot::Layers(r.layers.clone());
                }
                None => {
                    let image = self.resolve_base(&copy.from, ctx.req, &ctx.events).await?;
                    pre.flags
                        .insert("from".into(), format!("image:{}", image.manifest_digest));
                    source = SourceRoot::Layers(image.layers.clone());
                }
            }
            for s in &locals {
                pre.sources.insert((*s).clone(), String::new());
            }
        } else if !locals.is_empty() {
            let context = ctx.context.clone().ok_or_else(|| {
                ExecutorError::InvalidArgument(format!(
                    "{keyword} needs a build context, and this build has none"
                ))
            })?;
            let sources: Vec<String> = locals.iter().map(|s| s.to_string()).collect();
            let dir = context.dir.clone();
            let excludes = copy.excludes.clone();
            let hashes = tokio::task::spawn_blocking(
                move || -> Result<Vec<(String, String)>, ExecutorError> {
                    let mut out = Vec::new();
                    for s in &sources {
                        let (matches, _) = cp::select_sources(&dir, std::slice::from_ref(s))?;
                        let mut h = strata_types::Hasher::new();
                        for m in &matches {
                            h.update(m.rel.as_bytes());
                            h.update(
                                cp::content_hash(m, &excludes, Some(&context.file_digests))?
                                    .to_string()
                                    .as_bytes(),
                            );
                        }
                        out.push((s.clone(), h.finish().to_string()));
                    }
                    Ok(out)
                },
            )
            .await
            .map_err(|e| ExecutorError::Internal(e.to_string()))??;
            pre.sources.extend(hashes);
            source = SourceRoot::Context(ctx.context.clone().expect("checked"));
        }
        let owner = copy.chown.clone();
        let created_by = history::copy(
            keyword,
            copy.parents,
            &copy.chown,
            &copy.chmod,
            &copy.sources,
            &heredoc_names,
            &copy.destination,
        );
        let action = Action::Copy {
            source,
            sources: locals.into_iter().cloned().collect(),
            downloads,
            dest,
            dest_is_dir,
            excludes: copy.excludes.clone(),
            inline,
            parents: copy.parents,
            chown: owner,
            mode,
            unpack,
            unpack_downloads,
            link: copy.link && copy.chmod.is_empty(),
        };
        self.layer_step(ctx, stage, step, inst, state, pre, created_by, action)
            .await
    }

    async fn download(
        &self,
        ctx: &BuildCtx<'_>,
        url: &str,
        checksum: &str,
        step: u32,
    ) -> Result<Download, ExecutorError> {
        let dir = self
            .local
            .scratch(&format!("{}-{step}-download", ctx.build_id));
        std::fs::create_dir_all(&dir).map_err(|e| ExecutorError::io_op("creating", &dir, e))?;
        let failed =
            |e: String| ExecutorError::InvalidArgument(format!("failed to download {url}: {e}"));
        let mut response = reqwest::get(url).await.map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let name = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
            .filter(|n| !n.is_empty() && !n.contains(':'))
            .unwrap_or("__unnamed__")
            .to_owned();
        let path = dir.join("content");
        // streamed to its file as it comes, hashed on the way: never held whole in memory
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| ExecutorError::io_op("creating", &path, e))?;
        let mut hasher = strata_types::Hasher::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| ExecutorError::io_op("writing", &path, e))?;
        }
        file.flush()
            .await
            .map_err(|e| ExecutorError::io_op("writing", &path, e))?;
        drop(file);
        let digest = hasher.finish();
        if !checksum.is_empty() {
            let want = Digest::parse(checksum).map_err(|e| {
                ExecutorError::InvalidArgument(format!("invalid checksum {checksum:?}: {e}"))
            })?;
            if want != digest {
                return Err(ExecutorError::InvalidArgument(format!(
                    "digest mismatch for {url}: expected {want}, got {digest}"
                )));
            }
        }
        Ok(Download {
            path,
            dir,
            name,
            digest,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn layer_step(
        &self,
        ctx: &BuildCtx<'_>,
        stage: &pp::Stage,
        step: u32,
        inst: &pp::Instruction,
        state: &mut StageState,
        pre: Preimage,
        created_by: String,
        action: Action,
    ) -> Result<(), ExecutorError> {
        let mut pre = pre;
        // SOURCE_DATE_EPOCH clamps the layer's mtimes: a layer made under another epoch (or
        // none) is another layer, never a cache hit
        if let Some(epoch) = ctx.clamp {
            pre.flags
                .insert("source-date-epoch".into(), epoch.to_string());
        }
        let key = pre.key().to_string();
        let started = Instant::now();
        // (an explained --no-cache build is told what it would do: run every step)
        let hit = if ctx.req.no_cache {
            None
        } else {
            match self
                .peers
                .store
                .clone()
                .get_cache_entry(ls::GetCacheEntryRequest {
                    key: key.clone(),
                    // a hit's layer joins the build's lease in the same round trip
                    lease_id: match ctx.mode {
                        Mode::Build => ctx.lease.clone().unwrap_or_default(),
                        Mode::Explain => String::new(),
                    },
                })
                .await
            {
                Ok(e) => Some(e.into_inner()),
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => return Err(ExecutorError::peer("layer store")(s)),
            }
        };
        // an entry that cannot be this step's result (a damaged or forged one) is a miss:
        // the step runs, rather than build an image that lacks what the step makes
        let mut unfit = None;
        let hit = hit.and_then(|entry| match fitting_entry(&entry, &state.layers) {
            Ok(fit) => Some((entry, fit)),
            Err(why) => {
                warn!(key = %key, step, reason = %why, "ignoring a build-cache entry that does not fit its step");
                unfit = Some(format!("the cache entry for this step is unusable ({why})"));
                None
            }
        });
        let miss_reason = match (&hit, ctx.req.no_cache) {
            (None, _) if unfit.is_some() => unfit.unwrap_or_default(),
            (Some(_), _) => String::new(),
            (None, true) => "--no-cache".into(),
            (None, _) => {
                // the step's ARGs (those no ENV overrides) are told as ARGs, not ENV
                let build_args: std::collections::BTreeSet<String> = inst
                    .args_in_scope
                    .iter()
                    .map(|a| a.name.clone())
                    .filter(|n| state.config.config.env_var(n).is_none())
                    .collect();
                let base =
                    (pre.parent == state.base_key && !stage.scratch && stage.base_stage.is_none())
                        .then_some(stage.base.as_str());
                self.explain_miss(&pre, state.parent_ran, base, &build_args)
                    .await
                    .join("; ")
            }
        };
        if ctx.mode == Mode::Explain {
            ctx.explanations.lock().await.push(pb::StepExplanation {
                step,
                instruction: inst.original.clone(),
                cache_key: key.clone(),
                cached: hit.is_some(),
                changes: if hit.is_some() {
                    vec![]
                } else {
                    vec![miss_reason]
                },
            });
            state.parent_ran = hit.is_none();
            // a hit's layer is the next step's parent layer, as in a build: the next step's
            // entry is checked against the layers so far
            if let Some((
                entry,
                Fit {
                    diff_id: Some(diff_id),
                    ..
                },
            )) = hit
            {
                state.layers.push(Layer {
                    diff_id,
                    blob: entry.layer_digest,
                    size: entry.layer_size,
                });
            }
            state.key = key;
            return Ok(());
        }
        ctx.events
            .step_started(step, stage, &inst.original, key.clone(), miss_reason)
            .await?;
        let mut history_entry = History {
            created: None,
            created_by: Some(created_by),
            author: None,
            comment: Some(COMMENT.into()),
            empty_layer: true,
        };
        if let Some((entry, fit)) = hit {
            let time = fit.created;
            if let Some(diff_id) = fit.diff_id {
                state.layers.push(Layer {
                    diff_id,
                    blob: entry.layer_digest.clone(),
                    size: entry.layer_size,
                });
                history_entry.empty_layer = false;
            }
            state
                .new_history
                .push((history_entry, time.or(Some(history::now_unix()))));
            state.key = key.clone();
            state.parent_ran = false;
            ctx.events
                .send(Event::StepCached(pb::StepCached {
                    step,
                    cache_key: key,
                }))
                .await?;
            ctx.events.step_finished(step, started, true).await?;
            return Ok(());
        }

        let layer = self.execute(ctx, step, state, action).await?;
        let now = history::now_unix();
        if let Some(layer) = &layer {
            ctx.events
                .send(Event::Layer(pb::LayerWritten {
                    step,
                    digest: layer.diff_id.to_string(),
                    size: layer.size,
                }))
                .await?;
            state.layers.push(layer.clone());
            history_entry.empty_layer = false;
        }
        state.new_history.push((history_entry, Some(now)));
        let mut entry_config = state.config.clone();
        entry_config.created = Some(history::rfc3339(now));
        entry_config.rootfs.diff_ids = state.layers.iter().map(|l| l.diff_id.to_string()).collect();
        entry_config.history.clear();
        let entry = ls::CacheEntry {
            key: key.clone(),
            preimage: pre.canonical_json(),
            layer_digest: layer
                .as_ref()
                .map(|l| l.diff_id.to_string())
                .unwrap_or_default(),
            config: entry_config.to_json(),
            created_at: None,
            parent_key: pre.parent.clone(),
            layer_size: 0, // the store knows it
        };
        if let Err(e) = self
            .peers
            .store
            .clone()
            .put_cache_entry(ls::PutCacheEntryRequest { entry: Some(entry) })
            .await
        {
            warn!(error = %e.message(), key = %key, "could not store a cache entry");
        }
        state.key = key;
        state.parent_ran = true;
        ctx.events.step_finished(step, started, false).await?;
        Ok(())
    }

    /// Why `pre` has no entry: its base image's tag moved (`base`: the FROM reference, when
    /// `pre` is the stage's first layer step on an image), or the differences to the
    /// closest entry with the same parent.
    async fn explain_miss(
        &self,
        pre: &Preimage,
        parent_ran: bool,
        base: Option<&str>,
        build_args: &std::collections::BTreeSet<String>,
    ) -> Vec<String> {
        if let Some(name) = base
            && let Some(moved) = self.base_moved(pre, name).await
        {
            return vec![moved];
        }
        let Some(listed) = self.entries_under(&pre.parent).await else {
            return vec!["no cache entry".into()];
        };
        let candidates: Vec<(Preimage, i64)> = listed
            .iter()
            .filter_map(|e| {
                let made = e.created_at.as_ref().map_or(0, |t| {
                    t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos)
                });
                serde_json::from_str(&e.preimage).ok().map(|p| (p, made))
            })
            .collect();
        if candidates.is_empty() {
            return vec![if parent_ran {
                "the previous step was rebuilt".into()
            } else {
                "no cache entry".into()
            }];
        }
        match cache_key::closest(pre, candidates.iter().map(|(p, t)| (p, *t)), build_args) {
            Some(changes) if !changes.is_empty() => changes,
            _ => vec!["no cache entry".into()],
        }
    }

    /// The cache entries whose parent is `parent` (a first page of them: what a miss's
    /// explanation compares with), or None when the store cannot say.
    async fn entries_under(&self, parent: &str) -> Option<Vec<ls::CacheEntry>> {
        self.peers
            .store
            .clone()
            .list_cache_entries(ls::ListCacheEntriesRequest {
                parent_key: parent.to_owned(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .ok()
            .map(|r| r.into_inner().entries)
    }

    /// When the tag `name` was last moved to the image `pre` builds on, and the same step
    /// has an entry on the image it pointed to before: the base image change, in words.
    async fn base_moved(&self, pre: &Preimage, name: &str) -> Option<String> {
        if name.contains('@') {
            return None; // pinned by digest: no tag moves it
        }
        let history = self
            .peers
            .tags
            .clone()
            .get_tag_history(ti::GetTagHistoryRequest {
                name: name.to_owned(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .ok()?
            .into_inner();
        let moved = history
            .events
            .iter()
            .rev()
            .find(|e| e.new_digest == pre.parent && !e.old_digest.is_empty())?;
        let mut before = pre.clone();
        before.parent = moved.old_digest.clone();
        let same_step_before = self
            .peers
            .store
            .clone()
            .get_cache_entry(ls::GetCacheEntryRequest {
                key: before.key().to_string(),
                lease_id: String::new(),
            })
            .await
            .is_ok();
        // The old base's own settings (ENV, USER, WORKDIR …) are in the old entry's key too,
        // so the same step on it may have another key: the same instruction (kind and
        // arguments) among the old base's entries says as much.
        let same_instruction_before = same_step_before
            || self
                .entries_under(&moved.old_digest)
                .await?
                .iter()
                .any(|e| {
                    serde_json::from_str::<Preimage>(&e.preimage)
                        .is_ok_and(|p| p.kind == pre.kind && p.args == pre.args)
                });
        if !same_instruction_before {
            return None;
        }
        Some(format!(
            "base image {name} changed: it now points to {}, was {}",
            cache_key::short(&moved.new_digest),
            cache_key::short(&moved.old_digest)
        ))
    }

    /// Runs a layer step's action on a snapshot and stores the layer (None: no change).
    async fn execute(
        &self,
        ctx: &BuildCtx<'_>,
        step: u32,
        state: &StageState,
        action: Action,
    ) -> Result<Option<Layer>, ExecutorError> {
        let (runtime, kind) = match &action {
            Action::Run { .. } => {
                let (r, k) = self.runtime().await?;
                (Some(r), k)
            }
            _ => (
                None,
                self.runtime()
                    .await
                    .map(|(_, k)| k)
                    .unwrap_or(SnapshotterKind::Copy),
            ),
        };
        let lowers = if matches!(&action, Action::Copy { link: true, .. }) {
            vec![]
        } else {
            self.lowers(ctx, &state.layers).await?
        };
        let scratch = self.local.scratch(&format!("{}-{step}", ctx.build_id));
        let mut snap = Snapshot::prepare(kind, &scratch, &lowers, false)?;
        let root = snap.root().to_path_buf();
        match action {
            Action::Run {
                argv,
                env,
                cwd,
                user,
                host_network,
                mounts,
            } => {
                let runtime = runtime.expect("probed above");
                let cwd_clean = clean(&cwd);
                if cwd_clean == "/proc" || cwd_clean.starts_with("/proc/") {
                    return Err(ExecutorError::InvalidArgument(format!(
                        "working directory {cwd_clean} is inside /proc"
                    )));
                }
                let resolved = crate::users::resolve_user(&root, &user)?;
                let missing_mount_points: Vec<PathBuf> = MOUNT_POINTS
                    .iter()
                    .map(|m| root.join(&m[1..]))
                    .filter(|p| p.symlink_metadata().is_err())
                    .collect();
                let mut stubs = Vec::new();
                for plan in &mounts {
                    let target = match plan {
                        MountPlan::Cache { target, .. }
                        | MountPlan::Tmpfs { target, .. }
                        | MountPlan::Bind { target, .. }
                        | MountPlan::Script { target, .. } => target,
                    };
                    if let Some(stub) = crate::mounts::missing_stub(&root, target) {
                        stubs.push((stub, target.clone()));
                    }
                }
                // /etc/hosts and /etc/resolv.conf: mounted first, so a RUN --mount there wins
                let net_points = crate::network_files::mount_points(&root);
                let net_dir = self.local.scratch(&format!("{}-{step}-net", ctx.build_id));
                let _net_dir = ScratchDir(net_dir.clone());
                let mut run_mounts =
                    crate::network_files::prepare(&net_dir, host_network, &ctx.hostname)?;
                // held until the step is over: cache holds, snapshots of bind sources
                let (user_mounts, _held) = self.mount(ctx, step, kind, mounts).await?;
                run_mounts.extend(user_mounts);
                let spec = RunSpec {
                    args: argv.clone(),
                    env,
                    cwd: cwd_clean,
                    user: resolved,
                    rootfs: root.clone(),
                    host_network,
                    hostname: ctx.hostname.clone(),
                    mounts: run_mounts,
                };
                let (tx, mut rx) = mpsc::channel::<(u32, Vec<u8>)>(256);
                let events = ctx.events.clone();
                let forward = async move {
                    let mut last: std::collections::VecDeque<String> =
                        std::collections::VecDeque::new();
                    // what the client is sent is clipped at MAX_LOG_BYTES, as BuildKit clips
                    // a step's log; the last lines of a failure are still kept
                    let mut sent = 0usize;
                    let mut streaming = true;
                    while let Some((fd, line)) = rx.recv().await {
                        last.push_back(String::from_utf8_lossy(&line).trim_end().to_owned());
                        if last.len() > LAST_LINES {
                            last.pop_front();
                        }
                        if !streaming {
                            continue;
                        }
                        sent += line.len();
                        let event = if sent > MAX_LOG_BYTES {
                            streaming = false;
                            pb::LogLine {
                                step,
                                fd,
                                data: LOG_CLIPPED.as_bytes().to_vec(),
                            }
                        } else {
                            pb::LogLine {
                                step,
                                fd,
                                data: line,
                            }
                        };
                        if events.send(Event::Log(event)).await.is_err() {
                            streaming = false;
                        }
                    }
                    last
                };
                let timeout = match ctx.req.step_timeout_seconds {
                    0 => DEFAULT_STEP_TIMEOUT,
                    s => Duration::from_secs(s.into()),
                };
                let id = format!("strata-{}-{step}", ctx.build_id);
                let bundle = self
                    .local
                    .scratch(&format!("{}-{step}-bundle", ctx.build_id));
                // removed however the step ends: a cancelled build drops this future mid-run
                let bundle_dir = ScratchDir(bundle.clone());
                let (code, last) =
                    tokio::join!(runtime.run(&id, &bundle, &spec, tx, timeout), forward);
                drop(bundle_dir);
                let code = code?;
                if code != 0 {
                    return Err(ExecutorError::RunFailed {
                        command: argv.join(" "),
                        exit_code: code,
                        last_output: last.into(),
                    });
                }
                for p in missing_mount_points {
                    let _ = std::fs::remove_dir(p); // only when empty
                }
                for (stub, target) in stubs.iter().rev() {
                    crate::mounts::remove_stub(&root, stub, target);
                }
                crate::network_files::settle(&mut snap, &net_points)?;
            }
            Action::Mkdir { path, user } => {
                let owner = if user.is_empty() {
                    (0, 0)
                } else {
                    let u = crate::users::resolve_user(&root, &user)?;
                    (u.uid, u.gid)
                };
                let r = root.clone();
                tokio::task::spawn_blocking(move || cp::mkdir_all_in_root(&r, &path, owner))
                    .await
                    .map_err(|e| ExecutorError::Internal(e.to_string()))?
                    .map_err(|e| e.in_image(&root))?;
            }
            Action::Copy {
                source,
                sources,
                downloads,
                dest,
                dest_is_dir,
                excludes,
                inline,
                parents,
                chown,
                mode,
                unpack,
                unpack_downloads,
                link: _,
            } => {
                let owner = if chown.is_empty() {
                    None
                } else {
                    Some(crate::users::resolve_chown(&root, &chown)?)
                };
                let attrs = CopyAttrs { owner, mode };
                let (src_root, _src_snap) = match source {
                    SourceRoot::Context(c) => (Some(c.dir.clone()), None),
                    SourceRoot::Layers(layers) => {
                        let scratch = self.local.scratch(&format!("{}-{step}-from", ctx.build_id));
                        let s = self
                            .layers_snapshot(ctx, kind, &scratch, &layers, true)
                            .await?;
                        (Some(s.root().to_path_buf()), Some(s))
                    }
                    SourceRoot::None => (None, None),
                };
                let r = root.clone();
                let heredoc_dir = self
                    .local
                    .scratch(&format!("{}-{step}-heredocs", ctx.build_id));
                let total = sources.len() + inline.len() + downloads.len();
                // (archive, entries left out of it) for each ADD archive that had some
                let skipped = tokio::task::spawn_blocking(
                    move || -> Result<Vec<(String, Vec<String>)>, ExecutorError> {
                        let mut skipped = Vec::new();
                        // an archive extracted into dest, like `tar -x` (a directory made
                        // when missing); what it left out is told in `skipped`
                        let unpack_archive = |archive: &Path,
                                              name: &str,
                                              skipped: &mut Vec<(String, Vec<String>)>|
                         -> Result<(), ExecutorError> {
                            let dir =
                                cp::mkdir_all_in_root(&r, &dest, attrs.owner.unwrap_or((0, 0)))?;
                            let file = std::fs::File::open(archive)
                                .map_err(|e| ExecutorError::io(archive, e))?;
                            let reader = crate::compression::decompressed(file)?;
                            // --chown owns every entry (BuildKit maps each header's owner to
                            // it); --chmod leaves the archive's modes alone, as BuildKit's
                            // unpack, which is given no mode, does
                            let report = crate::extract::extract_archive(
                                reader,
                                &dir,
                                crate::extract::ArchiveOptions { owner: attrs.owner },
                            )?;
                            if !report.skipped.is_empty() {
                                skipped.push((name.to_string(), report.skipped));
                            }
                            Ok(())
                        };
                        if let Some(src_root) = &src_root
                            && parents
                        {
                            let mut picked = Vec::new();
                            for s in &sources {
                                let (matches, _) =
                                    cp::select_sources(src_root, std::slice::from_ref(s))?;
                                for m in matches {
                                    let kept = cp::parents_kept(s, &m.rel);
                                    picked.push((m, kept));
                                }
                            }
                            cp::copy_with_parents(&picked, &r, &dest, &excludes, &attrs)?;
                        } else if let Some(src_root) = &src_root {
                            let (matches, wildcard) = cp::select_sources(src_root, &sources)?;
                            let mut plain = Vec::new();
                            for m in matches {
                                if unpack && !m.is_dir && cp::tar_archive(&m.path).is_some() {
                                    unpack_archive(&m.path, &m.rel, &mut skipped)?;
                                } else {
                                    plain.push(m);
                                }
                            }
                            if !plain.is_empty() || (wildcard && sources.len() > 1) {
                                cp::copy_sources(
                                    &plain,
                                    wildcard || total > 1,
                                    &r,
                                    &dest,
                                    dest_is_dir,
                                    &excludes,
                                    &attrs,
                                )?;
                            }
                        }
                        if !inline.is_empty() {
                            let files = cp::write_inline_files(&heredoc_dir, &inline)?;
                            let copied = cp::copy_sources(
                                &files,
                                total > 1,
                                &r,
                                &dest,
                                dest_is_dir,
                                &[],
                                &attrs,
                            );
                            let _ = std::fs::remove_dir_all(&heredoc_dir);
                            copied?;
                        }
                        for d in &downloads {
                            if unpack_downloads && cp::tar_archive(&d.path).is_some() {
                                unpack_archive(&d.path, &d.name, &mut skipped)?;
                                let _ = std::fs::remove_dir_all(&d.dir);
                                continue;
                            }
                            let target = if dest_is_dir {
                                format!("{}/{}", dest.trim_end_matches('/'), d.name)
                            } else {
                                dest.clone()
                            };
                            let named = d.dir.join(&d.name);
                            std::fs::rename(&d.path, &named)
                                .map_err(|e| ExecutorError::io(&d.path, e))?;
                            use std::os::unix::fs::PermissionsExt;
                            std::fs::set_permissions(
                                &named,
                                std::fs::Permissions::from_mode(0o600),
                            )
                            .map_err(|e| ExecutorError::io(&named, e))?;
                            let m = cp::SourceMatch {
                                rel: d.name.clone(),
                                path: named,
                                is_dir: false,
                            };
                            cp::copy_sources(&[m], false, &r, &target, false, &[], &attrs)?;
                            let _ = std::fs::remove_dir_all(&d.dir);
                        }
                        Ok(skipped)
                    },
                )
                .await
                .map_err(|e| ExecutorError::Internal(e.to_string()))?
                .map_err(|e| e.in_image(&root))?;
                // BuildKit leaves device nodes and FIFOs out of ADD archives silently; the
                // user is told here which, and why
                for (archive, names) in skipped {
                    warn!(build = %ctx.build_id, step, archive = %archive, entries = ?names, "ADD left device nodes and FIFOs out of an archive");
                    const SHOWN: usize = 10;
                    let mut list = names
                        .iter()
                        .take(SHOWN)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ");
                    if names.len() > SHOWN {
                        list.push_str(&format!(" and {} more", names.len() - SHOWN));
                    }
                    ctx.events
                        .send(Event::Warning(pb::BuildWarning {
                            rule: String::new(),
                            message: format!(
                                "step {step}: ADD did not extract {} device node(s) or FIFO(s) of {archive} ({list}): an ADD archive cannot make devices",
                                names.len()
                            ),
                            line: 0,
                        }))
                        .await?;
                }
            }
        }
        let (changes, from) = {
            let c = snap.changes()?;
            (c.0, c.1)
        };
        if changes.is_empty() {
            return Ok(None);
        }
        let layer = self.store_layer(ctx, from.clone(), changes).await?;
        if !self.local.layer_dir(&layer.diff_id).exists() && snap.kind() == SnapshotterKind::Overlay
        {
            self.local.adopt_layer(&layer.diff_id, &from, &ctx.pins);
        }
        drop(snap);
        Ok(Some(layer))
    }

    /// The runtime-spec mounts of a step's `RUN --mount`s, and what must be held until the
    /// step is over (cache holds, snapshots of bind sources).
    async fn mount(
        &self,
        ctx: &BuildCtx<'_>,
        step: u32,
        kind: SnapshotterKind,
        mounts: Vec<MountPlan>,
    ) -> Result<(Vec<serde_json::Value>, MountHolds), ExecutorError> {
        let mut specs = Vec::with_capacity(mounts.len());
        let mut held = MountHolds::default();
        for (n, plan) in mounts.into_iter().enumerate() {
            let scratch = self
                .local
                .scratch(&format!("{}-{step}-mount{n}", ctx.build_id));
            match plan {
                MountPlan::Cache {
                    target,
                    cache,
                    seed,
                } => {
                    // the seed is looked at only when the cache (or a private step's
                    // throwaway copy) is new
                    let seed_dir = match seed {
                        Some((from, source)) if self.cache_mounts.needs_seed(&cache) => {
                            let root = match from {
                                SourceRoot::Context(c) => c.dir.clone(),
                                SourceRoot::Layers(layers) => {
                                    let seed_scratch =
                                        PathBuf::from(format!("{}-seed", scratch.display()));
                                    let s = self
                                        .layers_snapshot(ctx, kind, &seed_scratch, &layers, true)
                                        .await?;
                                    let root = s.root().to_path_buf();
                                    held.snapshots.push(s);
                                    root
                                }
                                SourceRoot::None => {
                                    return Err(ExecutorError::Internal(
                                        "a cache seed without a source".into(),
                                    ));
                                }
                            };
                            let dir = resolve_in_root(&root, &source, true)?;
                            if !dir.is_dir() {
                                return Err(ExecutorError::NotFound(format!(
                                    "RUN --mount=type=cache,target={target}: source {source} is not a directory in its `from`"
                                )));
                            }
                            Some(dir)
                        }
                        _ => None,
                    };
                    let hold = self
                        .cache_mounts
                        .hold(&cache, &scratch, seed_dir.as_deref())
                        .await?;
                    specs.push(crate::mounts::bind_spec(&target, &hold.dir, cache.readonly));
                    held.caches.push(hold);
                }
                MountPlan::Tmpfs { target, size } => {
                    specs.push(crate::mounts::tmpfs_spec(&target, size));
                }
                MountPlan::Script { target, name, body } => {
                    let file = write_script(&scratch, &name, &body)?;
                    held.dirs.push(ScratchDir(scratch));
                    specs.push(crate::mounts::bind_spec(&target, &file, true));
                }
                MountPlan::Bind {
                    target,
                    from,
                    source,
                    readonly,
                } => {
                    let (root, what) = match from {
                        SourceRoot::Context(c) if readonly => (c.dir.clone(), "the build context"),
                        // a writable bind: writes land in a snapshot's upper, then vanish
                        SourceRoot::Context(c) => {
                            let s = Snapshot::prepare(
                                kind,
                                &scratch,
                                std::slice::from_ref(&c.dir),
                                false,
                            )?;
                            let root = s.root().to_path_buf();
                            held.snapshots.push(s);
                            (root, "the build context")
                        }
                        SourceRoot::Layers(layers) => {
                            let s = self
                                .layers_snapshot(ctx, kind, &scratch, &layers, readonly)
                                .await?;
                            let root = s.root().to_path_buf();
                            held.snapshots.push(s);
                            (root, "the mounted stage or image")
                        }
                        SourceRoot::None => {
                            return Err(ExecutorError::Internal(
                                "a bind mount without a source".into(),
                            ));
                        }
                    };
                    let path = resolve_in_root(&root, &source, true)?;
                    if path.symlink_metadata().is_err() {
                        return Err(ExecutorError::NotFound(format!(
                            "RUN --mount=type=bind,source={source}: not found in {what}"
                        )));
                    }
                    specs.push(crate::mounts::bind_spec(&target, &path, readonly));
                }
            }
        }
        Ok((specs, held))
    }

    /// `layers` (a stage's or an image's) as a snapshot at `scratch`, their lowerdirs pinned
    /// for the build.
    async fn layers_snapshot(
        &self,
        ctx: &BuildCtx<'_>,
        kind: SnapshotterKind,
        scratch: &Path,
        layers: &[Layer],
        readonly: bool,
    ) -> Result<Snapshot, ExecutorError> {
        let lowers = self.lowers(ctx, layers).await?;
        Snapshot::prepare(kind, scratch, &lowers, readonly)
    }

    /// The lowerdirs of `layers`, pinned for the build.
    async fn lowers(
        &self,
        ctx: &BuildCtx<'_>,
        layers: &[Layer],
    ) -> Result<Vec<PathBuf>, ExecutorError> {
        let mut out = Vec::with_capacity(layers.len());
        for l in layers {
            out.push(
                self.local
                    .ensure_layer(&self.peers, &l.diff_id, &l.blob, &ctx.pins)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn store_layer(
        &self,
        ctx: &BuildCtx<'_>,
        root: PathBuf,
        changes: Vec<Change>,
    ) -> Result<Layer, ExecutorError> {
        // two chunks in flight: the tar writer and the upload each keep working while the
        // other does, and a layer of any size holds ~2 MiB here
        let (tx, rx) = mpsc::channel(2);
        let options = LayerOptions {
            clamp_mtime: ctx.clamp,
        };
        let writing = tokio::task::spawn_blocking(
            move || -> Result<crate::layer_tar::LayerDigest, ExecutorError> {
                let out = write_layer(
                    &root,
                    &changes,
                    options,
                    HashingWriter::new(ChannelWriter::new(tx)),
                )
                .map_err(|e| ExecutorError::io_op("archiving", &root, e))?;
                let (digest, mut sink) = out.finish();
                std::io::Write::flush(&mut sink)
                    .map_err(|e| ExecutorError::io_op("uploading", &root, e))?;
                Ok(digest)
            },
        );
        let uploading = write_blob(
            self.peers.store.clone(),
            rx,
            media_type::OCI_LAYER_TAR,
            None,
        );
        let (written, uploaded) = tokio::join!(writing, uploading);
        let written = written.map_err(|e| ExecutorError::Internal(e.to_string()))?;
        let (w, u) = upload_outcome(written, uploaded)?;
        if u.0 != w.digest.to_string() {
            return Err(ExecutorError::Internal(format!(
                "the layer store computed {} for a layer hashed as {}",
                u.0, w.digest
            )));
        }
        let (digest, size) = (w.digest, w.size as i64);
        self.lease_add(ctx, vec![digest.to_string()]).await;
        Ok(Layer {
            blob: digest.to_string(),
            diff_id: digest,
            size,
        })
    }

    async fn finish(
        &self,
        ctx: &BuildCtx<'_>,
        target: StageResult,
    ) -> Result<pb::ImageDone, ExecutorError> {
        let mut config = target.config;
        if !ctx.req.labels.is_empty() {
            let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in &ctx.req.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        config
            .validate()
            .map_err(|e| ExecutorError::Internal(format!("built an invalid config: {e}")))?;
        let config_bytes = config.to_json();
        let config_digest = Digest::of(&config_bytes);
        let layers: Vec<Descriptor> = target
            .layers
            .iter()
            .map(|l| Descriptor::new(media_type::OCI_LAYER_TAR, l.blob.clone(), l.size))
            .collect();
        let manifest = Manifest::oci(
            Descriptor::new(
                media_type::OCI_CONFIG,
                config_digest.to_string(),
                config_bytes.len() as i64,
            ),
            layers,
        );
        let manifest_bytes = manifest.to_json();
        let manifest_digest = Digest::of(&manifest_bytes);
        // Leased before they are written (a lease may name blobs not yet stored), so a GC
        // between the writes and the tag move cannot take them; then both written at once.
        self.lease_add(
            ctx,
            vec![config_digest.to_string(), manifest_digest.to_string()],
        )
        .await;
        let (config_put, manifest_put) = tokio::join!(
            self.peers
                .put_blob(config_bytes, &config_digest, media_type::OCI_CONFIG),
            self.peers
                .put_blob(manifest_bytes, &manifest_digest, media_type::OCI_MANIFEST)
        );
        config_put?;
        manifest_put?;
        let mut tags = Vec::new();
        for tag in &ctx.req.tags {
            let response = self
                .peers
                .tags
                .clone()
                .set_tag(ti::SetTagRequest {
                    name: tag.clone(),
                    digest: manifest_digest.to_string(),
                    expected_digest: None,
                })
                .await
                .map_err(ExecutorError::peer("tag index"))?
                .into_inner();
            tags.push(response.tag.map(|t| t.name).unwrap_or_else(|| tag.clone()));
        }
        let done = pb::ImageDone {
            manifest_digest: manifest_digest.to_string(),
            config_digest: config_digest.to_string(),
            tags,
            size: target.layers.iter().map(|l| l.size).sum(),
        };
        info!(build = %ctx.build_id, manifest = %done.manifest_digest, config = %done.config_digest, "build done");
        Ok(done)
    }
}

/// Where COPY reads from.
enum SourceRoot {
    None,
    Context(Arc<Context>),
    Layers(Vec<Layer>),
}

/// A downloaded ADD source.
struct Download {
    path: PathBuf,
    dir: PathBuf,
    name: String,
    digest: Digest,
}

/// Whether an ADD source names a git repository (dockerfile.md §8.8): `git@host:path`,
/// `git://`, `ssh://`, or an HTTP(S) URL whose path ends in `.git` (a `#ref:subdir` after it).
fn is_git_source(source: &str) -> bool {
    if ["git@", "git://", "ssh://"]
        .iter()
        .any(|p| source.starts_with(p))
    {
        return true;
    }
    (source.starts_with("http://") || source.starts_with("https://"))
        && source
            .split(['#', '?'])
            .next()
            .is_some_and(|path| path.trim_end_matches('/').ends_with(".git"))
}

/// A build's lease lives [`LEASE_TTL`] and is renewed every [`LEASE_RENEWAL`] while the
/// build runs: an executor that dies (SIGKILL, a crashed machine) leaves its builds' blobs
/// pinned for minutes, not hours. A build may run for hours all the same.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(15 * 60);
/// How often a running build's lease is renewed: three chances within one [`LEASE_TTL`].
const LEASE_RENEWAL: Duration = Duration::from_secs(5 * 60);

type StoreClient = strata_proto::layer_store::layer_store_client::LayerStoreClient<
    strata_server::client::Transport,
>;

/// Renews a build's lease while it lives, and deletes the lease when dropped unless the
/// build is done with it ([`LeaseGuard::disarm`]): a build whose future is dropped
/// (cancelled, its client gone, the server shutting down) never reaches its own deletion.
/// The deletion runs as a task of its own, as a drop cannot wait.
struct LeaseGuard {
    store: StoreClient,
    id: Option<String>,
    renewing: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseGuard {
    /// Guards `id` (none: the build has no lease) and renews it every [`LEASE_RENEWAL`].
    fn renewed(store: StoreClient, id: Option<String>) -> Self {
        let renewing = id.clone().map(|id| {
            let mut store = store.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(LEASE_RENEWAL);
                every.tick().await; // the first tick is now: the lease was just made
                loop {
                    every.tick().await;
                    let renewed = store
                        .extend_lease(ls::ExtendLeaseRequest {
                            id: id.clone(),
                            ttl_seconds: LEASE_TTL.as_secs() as u32,
                        })
                        .await;
                    if let Err(e) = renewed {
                        warn!(lease = %id, error = %e.message(), "could not renew a running build's lease; its blobs are unprotected from GC once it expires");
                    }
                }
            })
        });
        Self {
            store,
            id,
            renewing,
        }
    }

    /// The build deletes (or never had) its lease itself: stop renewing, delete nothing.
    fn disarm(&mut self) {
        if let Some(task) = self.renewing.take() {
            task.abort();
        }
        self.id = None;
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let id = self.id.take();
        self.disarm();
        let Some(id) = id else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut store = self.store.clone();
        runtime.spawn(async move {
            if let Err(e) = store
                .delete_lease(ls::DeleteLeaseRequest { id: id.clone() })
                .await
            {
                warn!(lease = %id, error = %e.message(), "could not delete the lease of an interrupted build; it expires on its own");
            }
        });
    }
}

/// What a layer step does on its snapshot.
enum Action {
    Run {
        argv: Vec<String>,
        env: Vec<String>,
        cwd: String,
        user: String,
        host_network: bool,
        mounts: Vec<MountPlan>,
    },
    Mkdir {
        path: String,
        user: String,
    },
    Copy {
        source: SourceRoot,
        sources: Vec<String>,
        downloads: Vec<Download>,
        dest: String,
        dest_is_dir: bool,
        excludes: Vec<String>,
        /// Heredoc sources: (name, content).
        inline: Vec<(String, String)>,
        /// `--parents`.
        parents: bool,
        chown: String,
        mode: Option<cp::Chmod>,
        unpack: bool,
        /// `ADD --unpack=true URL`: downloaded archives are extracted too.
        unpack_downloads: bool,
        link: bool,
    },
}

/// What a step's mounts hold while it runs; dropping it releases them (cache holds) and
/// unmounts and removes them (snapshots of bind sources).
#[derive(Default)]
#[allow(dead_code)] // held only to be dropped after the step
struct MountHolds {
    caches: Vec<crate::mounts::HeldCache>,
    snapshots: Vec<Snapshot>,
    dirs: Vec<ScratchDir>,
}

/// A directory of files written for one step (heredoc scripts, a RUN's bundle), removed
/// when dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a RUN heredoc script as `dir/name`, executable by everyone (BuildKit: 0755).
/// The latest time an RFC 3339 timestamp can name (9999-12-31T23:59:59Z): `created` must
/// be one, and Go's time parsing (docker, containerd, skopeo) refuses a five-digit year.
pub const MAX_SOURCE_DATE_EPOCH: i64 = 253_402_300_799;

/// `--build-arg SOURCE_DATE_EPOCH=N` sets the epoch as `--source-date-epoch` does
/// (dockerfile.md §9.3: it sets `created` and clamps mtimes), unless the request names one
/// itself; an empty value is no epoch.
fn epoch_from_build_arg(mut req: pb::BuildRequest) -> Result<pb::BuildRequest, ExecutorError> {
    if req.source_date_epoch.is_none()
        && let Some(value) = req.build_args.get("SOURCE_DATE_EPOCH")
        && !value.trim().is_empty()
    {
        let epoch = value.trim().parse::<i64>().map_err(|_| {
            ExecutorError::InvalidArgument(format!(
                "invalid build arg SOURCE_DATE_EPOCH={value:?}: not a number of seconds since 1970"
            ))
        })?;
        req.source_date_epoch = Some(epoch);
    }
    Ok(req)
}

/// SOURCE_DATE_EPOCH is a non-negative count of seconds (reproducible-builds.org) that the
/// image config can carry as `created`.
fn check_source_date_epoch(epoch: Option<i64>) -> Result<(), ExecutorError> {
    match epoch {
        Some(e) if !(0..=MAX_SOURCE_DATE_EPOCH).contains(&e) => {
            Err(ExecutorError::InvalidArgument(format!(
                "SOURCE_DATE_EPOCH {e} is out of range: it must be 0 to {MAX_SOURCE_DATE_EPOCH} \
                 (9999-12-31T23:59:59Z)"
            )))
        }
        _ => Ok(()),
    }
}

fn write_script(dir: &Path, name: &str, body: &str) -> Result<PathBuf, ExecutorError> {
    use std::os::unix::fs::PermissionsExt;
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(ExecutorError::InvalidArgument(format!(
            "heredoc name {name:?} cannot be a file name"
        )));
    }
    let io = |e: std::io::Error| ExecutorError::Internal(format!("heredoc script: {e}"));
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = dir.join(name);
    std::fs::write(&file, body).map_err(io)?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    Ok(file)
}

/// One `RUN --mount` of a step, resolved as far as the cache key needs.
enum MountPlan {
    Cache {
        target: String,
        cache: CacheMount,
        /// What a new cache directory starts with: `source` in `from`.
        seed: Option<(SourceRoot, String)>,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    Bind {
        target: String,
        from: SourceRoot,
        source: String,
        readonly: bool,
    },
    /// A RUN heredoc whose body starts with `#!`, mounted read-only as an executable file.
    Script {
        target: String,
        name: String,
        body: String,
    },
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` -> Unix seconds.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let time = time.split(['.', '+']).next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // days_from_civil
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// overlayfs when a trial mount works, else the copy snapshotter.
fn probe_overlay(dir: &Path) -> SnapshotterKind {
    if std::env::var("STRATA_EXECUTOR_SNAPSHOTTER").as_deref() == Ok("copy") {
        return SnapshotterKind::Copy;
    }
    let lower = dir.join("lower");
    if std::fs::create_dir_all(&lower).is_err() {
        return SnapshotterKind::Copy;
    }
    let kind = match Snapshot::prepare(SnapshotterKind::Overlay, &dir.join("snap"), &[lower], false)
    {
        Ok(s) if s.kind() == SnapshotterKind::Overlay => SnapshotterKind::Overlay,
        Ok(_) => SnapshotterKind::Copy,
        Err(e) => {
            warn!(error = %e, "overlayfs is unavailable; using the copy snapshotter");
            SnapshotterKind::Copy
        }
    };
    let _ = std::fs::remove_dir_all(dir);
    kind
}

/// How the started event names a runtime and snapshotter ("runc 1.1.5, overlayfs").
fn probed_as(runtime: &Runtime, snapshotter: SnapshotterKind) -> String {
    format!("{}, {snapshotter}", runtime.describe())
}

/// What a hit contributes, read from its entry once: the layer it adds (if any) and when
/// its step ran.
struct Fit {
    diff_id: Option<Digest>,
    created: Option<i64>,
}

/// Whether a cache entry can be the result of the step it was found for, on top of
/// `layers` (the layers before the step): its config must be an image config whose layers
/// (`rootfs.diff_ids`) are exactly `layers` and then the entry's layer, if it has one — as
/// the executor writes them. An entry without a layer is a step that changed no file.
fn fitting_entry(entry: &ls::CacheEntry, layers: &[Layer]) -> Result<Fit, String> {
    let config = ImageConfig::parse(&entry.config)
        .map_err(|e| format!("its config is not an image config: {e}"))?;
    let mut expected: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let diff_id = if entry.layer_digest.is_empty() {
        None
    } else {
        let d = Digest::parse(&entry.layer_digest).map_err(|e| format!("its layer digest: {e}"))?;
        expected.push(entry.layer_digest.clone());
        Some(d)
    };
    if config.rootfs.diff_ids != expected {
        return Err(format!(
            "its config lists {} layers, the step's result has {}",
            config.rootfs.diff_ids.len(),
            expected.len()
        ));
    }
    Ok(Fit {
        diff_id,
        created: config.created.as_deref().and_then(parse_rfc3339),
    })
}

#[cfg(test)]
fn cache_entry_fits(entry: &ls::CacheEntry, layers: &[Layer]) -> Result<(), String> {
    fitting_entry(entry, layers).map(drop)
}

/// The result of writing a layer's tar (`written`) while uploading it (`uploaded`). When the
/// upload fails, its error is the cause and is what the build reports: the tar writer then
/// fails only because its channel closed (a broken pipe while "archiving"), which would turn
/// a layer store that went away into an INTERNAL error of the executor.
fn upload_outcome<W, U>(
    written: Result<W, ExecutorError>,
    uploaded: Result<U, ExecutorError>,
) -> Result<(W, U), ExecutorError> {
    match (written, uploaded) {
        (Ok(w), Ok(u)) => Ok((w, u)),
        (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_sources_are_told_from_urls_and_paths() {
        for git in [
            "git@github.com:moby/buildkit.git",
            "git://example.com/repo",
            "ssh://git@example.com/repo",
            "https://github.com/moby/buildkit.git",
            "https://github.com/moby/buildkit.git#v0.10.1:docs",
            "http://127.0.0.1:8080/repo.git/",
        ] {
            assert!(is_git_source(git), "{git}");
        }
        for other in [
            "https://example.com/file.tar.gz",
            "https://example.com/a.git.tar",
            "https://example.com/dl?f=x.git",
            "src.git",
            "dir/",
        ] {
            assert!(!is_git_source(other), "{other}");
        }
    }

    #[test]
    fn rfc3339_round_trips() {
        for t in [0, 1_704_067_200, 951_825_600, 1_800_000_123] {
            assert_eq!(parse_rfc3339(&history::rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2024-01-01T00:00:00.123456789Z"),
            Some(1_704_067_200)
        );
    }

    #[test]
    fn source_date_epoch_must_name_a_time_rfc3339_can_write() {
        for ok in [
            None,
            Some(0),
            Some(1_704_067_200),
            Some(MAX_SOURCE_DATE_EPOCH),
        ] {
            check_source_date_epoch(ok).unwrap();
        }
        assert_eq!(
            history::rfc3339(MAX_SOURCE_DATE_EPOCH),
            "9999-12-31T23:59:59Z"
        );
        for bad in [-5, MAX_SOURCE_DATE_EPOCH + 1, i64::MAX, i64::MIN] {
            let e = check_source_date_epoch(Some(bad)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.to_string().contains("out of range"), "{e}");
        }
    }

    #[test]
    fn a_cache_entry_must_fit_its_step() {
        let base = Layer {
            diff_id: Digest::of(b"base"),
            blob: Digest::of(b"base").to_string(),
            size: 1,
        };
        let new = Digest::of(b"new").to_string();
        let config = |ids: &[&str]| {
            let mut c = ImageConfig::default();
            c.rootfs.diff_ids = ids.iter().map(|s| s.to_string()).collect();
            c.to_json()
        };
        let base_id = base.diff_id.to_string();
        let entry = |config: Vec<u8>, layer: &str| ls::CacheEntry {
            config,
            layer_digest: layer.into(),
            ..Default::default()
        };
        let layers = [base];
        // what the executor stores: a step with a layer, and one that changed nothing
        assert_eq!(
            cache_entry_fits(&entry(config(&[&base_id, &new]), &new), &layers),
            Ok(())
        );
        assert_eq!(
            cache_entry_fits(&entry(config(&[&base_id]), ""), &layers),
            Ok(())
        );
        // the QA's poison: a config that is not JSON and no layer
        assert!(cache_entry_fits(&entry(vec![0, 1, 2], ""), &layers).is_err());
        // a layer the config does not end with, or a config that drops the step's layer
        assert!(cache_entry_fits(&entry(config(&[&base_id]), &new), &layers).is_err());
        assert!(cache_entry_fits(&entry(config(&[&base_id, &new]), ""), &layers).is_err());
        assert!(cache_entry_fits(&entry(config(&[&base_id, "x"]), "x"), &layers).is_err());
    }

    #[test]
    fn a_layer_store_lost_during_an_upload_is_unavailable_naming_it() {
        let written: Result<(), ExecutorError> = Err(ExecutorError::io_op(
            "archiving",
            std::path::Path::new("/scratch/upper"),
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the blob upload stopped"),
        ));
        let uploaded: Result<(), ExecutorError> = Err(ExecutorError::peer("layer store")(
            tonic::Status::unavailable("error reading a body from connection"),
        ));
        let e = upload_outcome(written, uploaded).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
        let status = tonic::Status::from(e.at_step(2, "RUN make"));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("layer store")
                && status
                    .message()
                    .contains("error reading a body from connection")
                && !status.message().contains("archiving"),
            "{}",
            status.message()
        );
        // a tar writer failing on its own is still its error
        let written: Result<(), ExecutorError> = Err(ExecutorError::io_op(
            "archiving",
            std::path::Path::new("/scratch/upper"),
            std::io::Error::other("disk read error"),
        ));
        let e = upload_outcome(written, Ok(())).unwrap_err();
        assert!(matches!(e, ExecutorError::Io { .. }), "{e}");
    }
}
