//! `strata build`: pack the context, store it, run the build, show what happens.
//!
//! The context directory is walked in name order, honouring `.dockerignore` (or
//! `<Dockerfile>.dockerignore`), never following a symlink (links are stored as links), and
//! packed as a deterministic tar (sorted entries, real mode/owner/mtime, ustar + PAX only when
//! needed). Packing runs twice when needed: once only hashing, so that an unchanged context is
//! found with StatBlob and never uploaded again, then streaming into WriteBlob. The hashing
//! pass is skipped when every entry's stat is what it was when the digest was last computed
//! ([`context_memo`]). The Dockerfile travels in the request, so it is always available even
//! when ignored.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use strata_dockerfile::DockerIgnore;
use strata_executor::layer_tar::{Change, LayerOptions, write_layer};
use strata_executor::peers::{ChannelWriter, write_blob};
use strata_proto::{
    executor::{
        BuildRequest, CancelBuildRequest, PullPhase, build_event::Event,
        executor_client::ExecutorClient,
    },
    layer_store::{StatBlobRequest, layer_store_client::LayerStoreClient},
};
use strata_types::{Digest, RunningHash, media_type};
use tokio::sync::mpsc;

use crate::GlobalArgs;

mod context_memo;
mod credentials;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// Plain lines, fit for logs.
    Plain,
    /// Plain lines with colours when stderr is a terminal.
    Tty,
    /// One JSON object per event.
    Json,
}

/// Flags of `strata build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context directory.
    pub context: PathBuf,
    /// Name (and tag) of the image, e.g. app:1 (repeatable).
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// A build argument NAME=VALUE (repeatable).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last).
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, ignoring the build cache (and hash the context again, not trusting the
    /// digest remembered for its unchanged files).
    #[arg(long)]
    pub no_cache: bool,
    /// A label KEY=VALUE to add to the image (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = Progress::Tty)]
    pub progress: Progress,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// Clamp timestamps and fix `created` to these Unix seconds (reproducible builds); also
    /// `--build-arg SOURCE_DATE_EPOCH=N`, as with BuildKit.
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: Option<Epoch>,
    /// Per-RUN timeout in seconds (0: the server's default).
    #[arg(long, default_value_t = 0)]
    pub step_timeout: u32,
    /// Allow an entitlement; only `network.host` (RUN --network=host) exists.
    #[arg(long = "allow")]
    pub allow: Vec<String>,
    /// Do not build: say for each step whether the cache has it, and what changed if not.
    #[arg(long)]
    pub explain: bool,
    /// Pull base images from this registry (HOST[:PORT]) over plain HTTP (repeatable;
    /// loopback registries use plain HTTP anyway, as `strata pull` does).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Write the image ID to this file when the build succeeds (Docker's `--iidfile`).
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
}

fn key_values(items: &[String], what: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for i in items {
        match i.split_once('=') {
            Some(("", _)) => bail!("invalid --{what} {i:?}: the name is empty"),
            Some((k, v)) => {
                out.insert(k.to_owned(), v.to_owned());
            }
            // Docker's `--build-arg NAME`: NAME's value from the environment, and without
            // one the ARG keeps its default
            None if what == "build-arg" && !i.is_empty() => {
                if let Ok(v) = std::env::var(i) {
                    out.insert(i.clone(), v);
                }
            }
            None => bail!("invalid --{what} {i:?}: expected NAME=VALUE"),
        }
    }
    Ok(out)
}

/// `--source-date-epoch` / `SOURCE_DATE_EPOCH`: Unix seconds, or empty for none (an
/// environment variable set to nothing is unset, as reproducible-builds.org's tools read it).
#[derive(Debug, Clone, Copy)]
pub struct Epoch(Option<i64>);

impl std::str::FromStr for Epoch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" => Ok(Self(None)),
            t => t
                .parse()
                .map(|n| Self(Some(n)))
                .map_err(|e| format!("expected Unix seconds: {e}")),
        }
    }
}

/// Runs `strata build`.
pub async fn run(global: &GlobalArgs, args: BuildArgs) -> anyhow::Result<ExitCode> {
    // as Docker does: a failed build leaves no stale ID behind
    if let Some(path) = &args.iidfile {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("failed to remove {}", path.display()));
            }
        }
    }
    let context_dir = args
        .context
        .canonicalize()
        .with_context(|| format!("build context {} not found", args.context.display()))?;
    if !context_dir.is_dir() {
        bail!("build context {} is not a directory", context_dir.display());
    }
    let dockerfile_path = args
        .file
        .clone()
        .unwrap_or_else(|| context_dir.join("Dockerfile"));
    let dockerfile = std::fs::read(&dockerfile_path)
        .with_context(|| format!("failed to read {}", dockerfile_path.display()))?;
    let ignore = read_dockerignore(&context_dir, &dockerfile_path)?;
    let mut request = BuildRequest {
        context_digest: String::new(),
        dockerfile_path: dockerfile_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dockerfile_content: dockerfile,
        build_args: key_values(&args.build_args, "build-arg")?,
        target: args.target.clone().unwrap_or_default(),
        tags: args.tags.clone(),
        no_cache: args.no_cache,
        source_date_epoch: args.source_date_epoch.and_then(|e| e.0),
        labels: key_values(&args.labels, "label")?,
        step_timeout_seconds: args.step_timeout,
        build_id: String::new(),
        allow_host_network: args.allow.iter().any(|a| a == "network.host"),
        insecure_registries: args.insecure_registries.clone(),
        registry_credentials: Vec::new(),
    };
    // only for the registries this build may pull from; the executor may be elsewhere
    request.registry_credentials = credentials::for_request(&request);
    for a in &args.allow {
        if a != "network.host" {
            bail!("unknown entitlement {a:?} (only network.host exists)");
        }
    }

    // The context is walked and hashed while the services start (embedded: while their
    // databases open).
    let memo_dir = context_memo_dir(global);
    let packing = {
        let (dir, memo_dir, no_cache) = (context_dir.clone(), memo_dir.clone(), args.no_cache);
        tokio::task::spawn_blocking(move || {
            digest_context(&dir, &ignore, memo_dir.as_deref(), no_cache)
        })
    };
    let conn = crate::connect::connect(global).await?;
    let store = LayerStoreClient::new(conn.transport()).max_encoding_message_size(64 << 20);
    let packed = packing.await??;
    request.context_digest =
        upload_context(store, &context_dir, packed, memo_dir.as_deref()).await?;

    let mut client = ExecutorClient::new(conn.transport())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    if args.explain {
        let response = client
            .explain_build(request)
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        for s in response.steps {
            if s.cached {
                println!("step {:>2} {}: CACHED", s.step, s.instruction);
            } else {
                println!(
                    "step {:>2} {}: MISS: {}",
                    s.step,
                    s.instruction,
                    s.changes.join("; ")
                );
            }
        }
        conn.close().await?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut stream = client
        .build(request)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let mut view = View::new(args.progress, args.quiet);
    let mut build_id = String::new();
    let mut outcome = ExitCode::FAILURE;
    let mut image_id = None;
    // SIGINT, SIGTERM and SIGHUP all cancel the build and wait for it to end: the executor
    // kills the container and unmounts its root (the default action of TERM or HUP would
    // end this process and, embedded, leave the container running and its overlay mounted)
    let mut stop = StopSignals::new()?;
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            signal = stop.next() => {
                eprintln!("\n{signal}: cancelling build {build_id} ...");
                let _ = client.cancel_build(CancelBuildRequest { build_id: build_id.clone() }).await;
                continue;
            }
        };
        let Some(event) =
            message.map_err(|s| anyhow::anyhow!("the build stream broke: {}", s.message()))?
        else {
            break;
        };
        let Some(event) = event.event else { continue };
        if let Event::Started(s) = &event {
            build_id = s.build_id.clone();
        }
        match &event {
            Event::Image(done) => {
                outcome = ExitCode::SUCCESS;
                image_id = Some(done.config_digest.clone());
            }
            Event::Error(_) => outcome = ExitCode::FAILURE,
            _ => {}
        }
        view.show(&event);
    }
    conn.close().await?;
    if let (Some(path), Some(id)) = (&args.iidfile, &image_id) {
        std::fs::write(path, id)
            .with_context(|| format!("failed to write the image ID to {}", path.display()))?;
    }
    Ok(outcome)
}

/// The signals that cancel a running build.
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The name of the next signal that arrives.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

fn read_dockerignore(context: &Path, dockerfile: &Path) -> anyhow::Result<DockerIgnore> {
    let specific = PathBuf::from(format!("{}.dockerignore", dockerfile.display()));
    let path = if specific.is_file() {
        specific
    } else {
        context.join(".dockerignore")
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            DockerIgnore::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        Err(_) => Ok(DockerIgnore::default()),
    }
}

/// The context's entries (paths relative to it) that .dockerignore keeps, never following
/// symlinks.
fn context_entries(dir: &Path, ignore: &DockerIgnore) -> anyhow::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(dir, "", ignore, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, rel: &str, ignore: &DockerIgnore, out: &mut Vec<Change>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("failed to read {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let utf8 = entry.file_name().to_str().is_some();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type()?;
        let excluded = ignore.matches(&path);
        if !utf8 {
            // (.dockerignore sees the name with U+FFFD for the bytes that are not UTF-8)
            if excluded {
                continue;
            }
            bail!(
                "the build context holds a file name that is not UTF-8, {path:?}: strata cannot send such names yet; rename it or add it to .dockerignore"
            );
        }
        if ft.is_dir() {
            if excluded && ignore.can_skip_dir(&path) {
                continue;
            }
            if !excluded {
                out.push(Change::Add(path.clone()));
            }
            walk(&entry.path(), &path, ignore, out)?;
        } else if !excluded {
            out.push(Change::Add(path));
        }
    }
    Ok(())
}

/// Where the CLI remembers contexts' digests ([`context_memo`]): beside the data root it
/// uses, or in the user's cache directory when the services are elsewhere (`--addr`).
fn context_memo_dir(global: &GlobalArgs) -> Option<PathBuf> {
    let base = match global.addr {
        None => global.data_root().join("cli"),
        Some(_) => dirs::cache_dir()?.join("strata"),
    };
    Some(base.join("contexts"))
}

/// A context walked and hashed, ready to upload.
struct PackedContext {
    entries: Vec<Change>,
    digest: String,
    /// Taken from the memo instead of hashed.
    remembered: bool,
}

/// Walks the context and finds its tar's digest: from the memo when every entry's stat is
/// as recorded (and `no_cache` is not asked), else by packing it through sha256 (and
/// recording the result).
fn digest_context(
    dir: &Path,
    ignore: &DockerIgnore,
    memo_dir: Option<&Path>,
    no_cache: bool,
) -> anyhow::Result<PackedContext> {
    let entries = context_entries(dir, ignore)?;
    let snapshot = memo_dir.and_then(|_| context_memo::snapshot(dir, &entries));
    if let (Some(memo_dir), Some(snapshot), false) = (memo_dir, &snapshot, no_cache)
        && let Some(digest) = context_memo::lookup(memo_dir, dir, snapshot)
    {
        return Ok(PackedContext {
            entries,
            digest,
            remembered: true,
        });
    }
    let options = LayerOptions { clamp_mtime: None };
    let digest = write_layer(dir, &entries, options, ThreadHashed::default())?
        .finish()
        .to_string();
    if let (Some(memo_dir), Some(snapshot)) = (memo_dir, &snapshot) {
        context_memo::remember(memo_dir, dir, snapshot, &digest);
    }
    Ok(PackedContext {
        entries,
        digest,
        remembered: false,
    })
}

/// Stores the context tar unless the store already holds it; returns its digest.
async fn upload_context(
    store: LayerStoreClient<strata_server::client::Transport>,
    dir: &Path,
    packed: PackedContext,
    memo_dir: Option<&Path>,
) -> anyhow::Result<String> {
    let PackedContext {
        entries,
        digest,
        remembered,
    } = packed;
    let exists = store
        .clone()
        .stat_blob(StatBlobRequest {
            digest: digest.clone(),
            ..Default::default()
        })
        .await
        .is_ok();
    if exists {
        return Ok(digest);
    }
    let options = LayerOptions { clamp_mtime: None };
    // two chunks in flight (as for layers): the packer and the upload overlap, and a
    // context of any size holds ~2 MiB here
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let dir = dir.to_path_buf();
    let writing = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut sink = write_layer(&dir, &entries, options, ChannelWriter::new(tx))?;
            sink.flush()?;
            Ok(())
        })
    };
    let uploading = write_blob(store, rx, media_type::BUILD_CONTEXT, None);
    let (written, uploaded) = tokio::join!(writing, uploading);
    written??;
    let (stored, _) =
        uploaded.map_err(|e| anyhow::anyhow!("failed to upload the build context: {e}"))?;
    if stored != digest {
        if remembered && let Some(memo_dir) = memo_dir {
            context_memo::forget(memo_dir, &dir);
        }
        bail!("the build context changed while it was being uploaded; try again");
    }
    Ok(digest)
}

/// A sink that only hashes, on a thread of its own ([`RunningHash`]), so reading the
/// context's files and framing the tar overlap with the sha256 instead of preceding it
/// (a 128 MB context: ~25 ms of a ~200 ms cached build).
#[derive(Default)]
struct ThreadHashed {
    buf: Vec<u8>,
    hash: RunningHash,
}

impl ThreadHashed {
    /// The sha256 of everything written.
    fn finish(&mut self) -> Digest {
        let mut hasher = self.hash.take();
        hasher.update(&self.buf);
        self.buf.clear();
        hasher.finish()
    }
}

impl Write for ThreadHashed {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // small chunks: what is queued for the hashing thread adds to the peak RSS
        const CHUNK: usize = 256 << 10;
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(CHUNK);
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.hash.push(Bytes::from(full));
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders build events.
struct View {
    progress: Progress,
    quiet: bool,
    total: u32,
    color: bool,
    instructions: HashMap<u32, String>,
}

impl View {
    fn new(progress: Progress, quiet: bool) -> Self {
        use std::io::IsTerminal;
        let color = progress == Progress::Tty && std::io::stderr().is_terminal();
        Self {
            progress,
            quiet,
            total: 0,
            color,
            instructions: HashMap::new(),
        }
    }

    fn dim(&self, s: &str) -> String {
        if self.color {
            format!("\x1b[2m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    fn show(&mut self, event: &Event) {
        if self.progress == Progress::Json {
            let line = json_event(event);
            if !self.quiet || matches!(event, Event::Image(_) | Event::Error(_)) {
                println!("{line}");
            }
            return;
        }
        if self.quiet {
            match event {
                Event::Image(done) => println!("{}", done.config_digest),
                Event::Error(e) => self.show_error(e),
                _ => {}
            }
            return;
        }
        match event {
            Event::Started(s) => {
                self.total = s.total_steps;
                let runtime = if s.runtime.is_empty() {
                    String::new()
                } else {
                    format!(", {}", s.runtime)
                };
                eprintln!(
                    "{}",
                    self.dim(&format!(
                        "build {} ({} steps{runtime})",
                        s.build_id, s.total_steps
                    ))
                );
            }
            Event::StepStarted(s) => {
                self.instructions.insert(s.step, s.instruction.clone());
                eprintln!("[{}/{}] {}", s.step, self.total, s.instruction);
                if !s.cache_miss_reason.is_empty() && s.cache_miss_reason != "no cache entry" {
                    eprintln!(
                        "{}",
                        self.dim(&format!("      cache miss: {}", s.cache_miss_reason))
                    );
                }
            }
            // independent stages run at the same time: what follows a step's start names it
            Event::StepCached(c) => eprintln!("      #{} CACHED", c.step),
            Event::Log(l) => {
                let text = String::from_utf8_lossy(&l.data);
                eprintln!(
                    "{}",
                    self.dim(&format!(
                        "      #{} | {}",
                        l.step,
                        text.trim_end_matches('\n')
                    ))
                );
            }
            Event::Layer(l) => eprintln!(
                "{}",
                self.dim(&format!(
                    "      layer {} ({} bytes)",
                    short(&l.digest),
                    l.size
                ))
            ),
            Event::StepFinished(f) => {
                if !f.cached && f.duration_ms >= 1 {
                    eprintln!(
                        "      #{} done in {:.1}s",
                        f.step,
                        f.duration_ms as f64 / 1000.0
                    );
                }
            }
            Event::Warning(w) => {
                let at = if w.line > 0 {
                    format!(" (line {})", w.line)
                } else {
                    String::new()
                };
                eprintln!(
                    "WARNING{at}: {}{}",
                    if w.rule.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", w.rule)
                    },
                    w.message
                );
            }
            Event::Image(done) => {
                eprintln!("image {}", done.config_digest);
                eprintln!("manifest {}", done.manifest_digest);
                for t in &done.tags {
                    eprintln!("tagged {t}");
                }
            }
            Event::Error(e) => self.show_error(e),
            Event::Pull(p) => self.show_pull(p),
        }
    }

    fn show_pull(&self, p: &strata_proto::executor::ImagePull) {
        match p.phase() {
            PullPhase::Started => eprintln!("pulling {}", p.reference),
            PullPhase::Resolved => eprintln!(
                "{}",
                self.dim(&format!(
                    "      digest {} ({} layer{})",
                    p.digest,
                    p.size,
                    if p.size == 1 { "" } else { "s" }
                ))
            ),
            PullPhase::Layer => eprintln!(
                "{}",
                self.dim(&format!(
                    "      layer {} ({} bytes) {}",
                    short(&p.digest),
                    p.size,
                    if p.downloaded {
                        "downloaded"
                    } else {
                        "already present"
                    }
                ))
            ),
            PullPhase::Done => eprintln!("pulled {} as image {}", p.reference, p.digest),
            PullPhase::Unspecified => {}
        }
    }

    fn show_error(&self, e: &strata_proto::executor::BuildError) {
        let step = if e.step > 0 {
            // the error names its instruction; a step that failed before it started (a
            // missing COPY source, a refused RUN flag) was never announced
            let instruction = if e.instruction.is_empty() {
                self.instructions.get(&e.step).cloned().unwrap_or_default()
            } else {
                e.instruction.clone()
            };
            format!(" at step {} ({instruction})", e.step)
        } else {
            String::new()
        };
        eprintln!("ERROR{step}: {}", e.message);
        if let Some(code) = e.exit_code {
            eprintln!("exit code: {code}");
        }
        if !e.last_output.is_empty() {
            eprintln!("last output:");
            for l in &e.last_output {
                eprintln!("  {l}");
            }
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn json_event(event: &Event) -> serde_json::Value {
    use serde_json::json;
    match event {
        Event::Started(s) => {
            json!({"type": "started", "build_id": s.build_id, "total_steps": s.total_steps, "runtime": s.runtime})
        }
        Event::StepStarted(s) => {
            json!({"type": "step_started", "step": s.step, "stage": s.stage, "stage_name": s.stage_name,
            "instruction": s.instruction, "cache_key": s.cache_key, "cache_miss_reason": s.cache_miss_reason})
        }
        Event::StepCached(s) => {
            json!({"type": "step_cached", "step": s.step, "cache_key": s.cache_key})
        }
        Event::Log(l) => {
            json!({"type": "log", "step": l.step, "fd": l.fd, "data": String::from_utf8_lossy(&l.data)})
        }
        Event::Layer(l) => {
            json!({"type": "layer", "step": l.step, "digest": l.digest, "size": l.size})
        }
        Event::StepFinished(f) => {
            json!({"type": "step_finished", "step": f.step, "duration_ms": f.duration_ms, "cached": f.cached})
        }
        Event::Image(d) => {
            json!({"type": "image", "manifest_digest": d.manifest_digest, "config_digest": d.config_digest, "tags": d.tags, "size": d.size})
        }
        Event::Error(e) => {
            json!({"type": "error", "step": e.step, "message": e.message, "exit_code": e.exit_code, "last_output": e.last_output, "code": e.code})
        }
        Event::Warning(w) => {
            json!({"type": "warning", "rule": w.rule, "message": w.message, "line": w.line})
        }
        Event::Pull(p) => {
            let phase = match p.phase() {
                PullPhase::Started => "started",
                PullPhase::Resolved => "resolved",
                PullPhase::Layer => "layer",
                PullPhase::Done => "done",
                PullPhase::Unspecified => "unspecified",
            };
            json!({"type": "pull", "reference": p.reference, "phase": phase, "digest": p.digest,
            "size": p.size, "downloaded": p.downloaded})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threaded_context_hash_is_the_sha256_of_the_bytes() {
        // uneven writes across several 1 MiB chunks, and a context smaller than one chunk
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [0, 10, 1 << 20, (1 << 20) + 1, data.len()] {
            let mut sink = ThreadHashed::default();
            for piece in data[..len].chunks(65_537) {
                sink.write_all(piece).unwrap();
            }
            assert_eq!(sink.finish(), Digest::of(&data[..len]), "{len} bytes");
        }
    }
}
