//! The thin gRPC adapter: requests in, [`Engine`] calls, events and statuses out.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use strata_proto::executor::{
    self as pb, BuildRequest, CancelBuildRequest, CancelBuildResponse, ExplainBuildResponse,
    build_event::Event, executor_server::Executor,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::build::{Engine, Events};
use crate::error::ExecutorError;

/// The executor service.
#[derive(Debug, Clone)]
pub struct ExecutorService {
    engine: Arc<Engine>,
    running: Arc<Mutex<HashMap<String, tokio::task::AbortHandle>>>,
    /// Set when the server's drain limit ends the builds still running.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl ExecutorService {
    /// Serves `engine`.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine: Arc::new(engine),
            running: Arc::default(),
            stopping: Arc::default(),
        }
    }

    /// Ends every running build, each with an UNAVAILABLE error event saying the executor
    /// shut down (a host calls this when its drain limit is reached: the builds would
    /// otherwise be cut off without a word). Their containers are killed and their mounts
    /// undone as for a cancel; nothing is tagged.
    pub fn end_running_builds(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for abort in self.running.lock().expect("running map").values() {
            abort.abort();
        }
    }

    /// Resolves once no background prune of the local cache is running (a host stopping
    /// waits for it, so a prune is not cut short).
    pub async fn settled(&self) {
        self.engine.local.settled().await;
    }
}

fn new_build_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!(
        "{}-{}-{:?}",
        now.as_nanos(),
        std::process::id(),
        std::thread::current().id()
    );
    strata_types::Digest::of(seed.as_bytes()).hex()[..16].to_owned()
}

fn error_event(e: &ExecutorError) -> Event {
    let (step, instruction, e) = match e {
        ExecutorError::AtStep {
            step,
            instruction,
            source,
        } => (*step, instruction.clone(), source.as_ref()),
        e => (0, String::new(), e),
    };
    let (exit_code, last_output) = match e {
        ExecutorError::RunFailed {
            exit_code,
            last_output,
            ..
        } => (Some(*exit_code), last_output.clone()),
        _ => (None, vec![]),
    };
    if e.code() == tonic::Code::Internal {
        tracing::error!(error = %e, "build failed inside the executor");
    }
    Event::Error(pb::BuildError {
        step,
        instruction,
        message: e.to_string(),
        exit_code,
        last_output,
        code: format!("{:?}", e.code()),
    })
}

#[tonic::async_trait]
impl Executor for ExecutorService {
    type BuildStream = ReceiverStream<Result<pb::BuildEvent, Status>>;

    async fn build(
        &self,
        request: Request<BuildRequest>,
    ) -> Result<Response<Self::BuildStream>, Status> {
        let req = request.into_inner();
        let build_id = if req.build_id.is_empty() {
            new_build_id()
        } else {
            req.build_id.clone()
        };
        if !build_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || build_id.len() > 64
        {
            return Err(Status::invalid_argument(
                "build_id may hold only letters, digits, '-' and '_' (at most 64)",
            ));
        }
        let (tx, rx) = mpsc::channel(256);
        let events = Events::new(tx.clone());
        let engine = self.engine.clone();
        let id = build_id.clone();
        let inner = tokio::spawn(async move { engine.build(req, id, events).await });
        {
            let mut running = self.running.lock().expect("running map");
            if running.contains_key(&build_id) {
                inner.abort();
                return Err(Status::already_exists(format!(
                    "a build with id {build_id} is running"
                )));
            }
            running.insert(build_id.clone(), inner.abort_handle());
        }
        let running = self.running.clone();
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            let abort = inner.abort_handle();
            let mut inner = inner;
            // a client that goes away (killed, disconnected) cancels its build, as BuildKit
            // does when a session ends: nobody would see its result, and its RUN would hold
            // a container and mounts until it ended
            let outcome = tokio::select! {
                outcome = &mut inner => outcome,
                () = tx.closed() => {
                    info!(build = %build_id, "the client went away: cancelling the build");
                    abort.abort();
                    inner.await
                }
            };
            running.lock().expect("running map").remove(&build_id);
            let event = match outcome {
                Ok(Ok(done)) => Event::Image(done),
                Ok(Err(e)) => {
                    // the client is told; a failure of the build's own input (a RUN that
                    // exits non-zero, a missing source) is no trouble of the service's
                    if matches!(
                        e.code(),
                        tonic::Code::InvalidArgument
                            | tonic::Code::NotFound
                            | tonic::Code::FailedPrecondition
                            | tonic::Code::Cancelled
                    ) {
                        info!(build = %build_id, error = %e, "build failed");
                    } else {
                        warn!(build = %build_id, error = %e, "build failed");
                    }
                    error_event(&e)
                }
                Err(join)
                    if join.is_cancelled()
                        && stopping.load(std::sync::atomic::Ordering::SeqCst) =>
                {
                    warn!(build = %build_id, "build ended by the executor's shutdown");
                    error_event(&ExecutorError::ShuttingDown(
                        "the executor shut down (its drain limit was reached) before the build finished; nothing was tagged: build again".into(),
                    ))
                }
                Err(join) if join.is_cancelled() => {
                    info!(build = %build_id, "build cancelled");
                    error_event(&ExecutorError::Cancelled)
                }
                Err(join) => error_event(&ExecutorError::Internal(format!(
                    "the build task failed: {join}"
                ))),
            };
            let _ = Events::new(tx).send(event).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn explain_build(
        &self,
        request: Request<BuildRequest>,
    ) -> Result<Response<ExplainBuildResponse>, Status> {
        Ok(Response::new(
            self.engine.explain(request.into_inner()).await?,
        ))
    }

    async fn cancel_build(
        &self,
        request: Request<CancelBuildRequest>,
    ) -> Result<Response<CancelBuildResponse>, Status> {
        let id = request.into_inner().build_id;
        let handle = self.running.lock().expect("running map").remove(&id);
        let cancelled = match handle {
            Some(h) => {
                h.abort();
                true
            }
            None => false,
        };
        Ok(Response::new(CancelBuildResponse { cancelled }))
    }

    async fn prune_local_cache(
        &self,
        request: Request<pb::PruneLocalCacheRequest>,
    ) -> Result<Response<pb::PruneLocalCacheResponse>, Status> {
        let req = request.into_inner();
        let local = self.engine.local.clone();
        let (keep, dry_run) = match req.keep_bytes.or(local.budget()) {
            Some(keep) => (keep, req.dry_run),
            // no budget and none asked for: report what is kept, remove nothing
            None => (u64::MAX, true),
        };
        let r = tokio::task::spawn_blocking(move || local.prune(keep, dry_run))
            .await
            .map_err(|e| ExecutorError::Internal(e.to_string()))??;
        let mounts = if req.cache_mounts {
            let engine = self.engine.clone();
            tokio::task::spawn_blocking(move || engine.cache_mounts.prune(req.dry_run))
                .await
                .map_err(|e| ExecutorError::Internal(e.to_string()))??
        } else {
            Default::default()
        };
        Ok(Response::new(response(r, mounts)))
    }
}

fn response(
    r: crate::local_cache::PruneReport,
    mounts: crate::mounts::CacheMountPrune,
) -> pb::PruneLocalCacheResponse {
    pb::PruneLocalCacheResponse {
        entries_removed: r.removed,
        bytes_freed: r.bytes_freed,
        entries_kept: r.kept,
        bytes_kept: r.bytes_kept,
        cache_mounts_removed: mounts.removed,
        cache_mount_bytes_freed: mounts.bytes_freed,
    }
}
