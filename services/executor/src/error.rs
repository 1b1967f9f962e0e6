//! Errors of the executor and their one mapping to gRPC status.

use std::path::Path;

use tracing::error;

/// What can go wrong in the executor.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A peer service failed (or could not be reached, or went away during the call).
    #[error("{service} failed: {}", describe_status(.status))]
    Peer {
        /// Which service.
        service: &'static str,
        /// What it said.
        status: tonic::Status,
    },
    /// The Dockerfile or a build argument asks for something impossible.
    #[error("{0}")]
    InvalidArgument(String),
    /// Something the build names does not exist (an image, a COPY source, a stage).
    #[error("{0}")]
    NotFound(String),
    /// A path that would leave its root or cross a symlink where none may be.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// A layer tar with an entry that must not be extracted.
    #[error("unsafe layer entry {entry:?}: {reason}")]
    UnsafeLayerEntry {
        /// The entry's name.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// A RUN step exited with a non-zero status.
    #[error("process {command:?} did not complete successfully: exit code: {exit_code}")]
    RunFailed {
        /// The command as run.
        command: String,
        /// Its exit code (128+N for a signal).
        exit_code: i32,
        /// The last lines of its output.
        last_output: Vec<String>,
    },
    /// A RUN step ran longer than its timeout.
    #[error("step timed out after {seconds}s")]
    Timeout {
        /// The limit.
        seconds: u64,
    },
    /// No OCI runtime works on this machine, or the runtime failed to start a container.
    #[error("{0}")]
    Runtime(String),
    /// A base image is not in the store, and pulling it from its registry failed.
    #[error("image {reference:?} not found locally, and pulling it failed: {reason}")]
    Pull {
        /// The reference as the Dockerfile names it.
        reference: String,
        /// Why the pull failed (the whole error chain).
        reason: String,
        /// The kind of failure: NOT_FOUND (no such repository or tag), UNAVAILABLE (registry
        /// unreachable), PERMISSION_DENIED (credentials), FAILED_PRECONDITION (the registry
        /// sent something invalid), INVALID_ARGUMENT (a bad reference).
        code: tonic::Code,
    },
    /// The build was cancelled.
    #[error("build cancelled")]
    Cancelled,
    /// The executor is shutting down and ended the build.
    #[error("{0}")]
    ShuttingDown(String),
    /// A local filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A filesystem operation on a path of the image being built failed; the path is the
    /// image's (`/etc/x`), never the host's.
    #[error("{op} {path}: {source}")]
    InImage {
        /// What was being done.
        op: &'static str,
        /// The path inside the image.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file name strata cannot put in a layer: one that is not UTF-8. `path` is the
    /// image's (or the context's), the bytes that are not UTF-8 shown as U+FFFD.
    #[error(
        "{path:?}: the file name is not UTF-8, and strata cannot store such names in an image yet"
    )]
    NonUtf8Name {
        /// The path, lossily.
        path: String,
    },
    /// An invariant broke inside the executor.
    #[error("internal error: {0}")]
    Internal(String),
    /// A failure of one build step.
    #[error("step {step} ({instruction}): {source}")]
    AtStep {
        /// The step number.
        step: u32,
        /// The instruction as written.
        instruction: String,
        /// What went wrong.
        source: Box<ExecutorError>,
    },
}

/// A peer's status as a person reads it: its message, then each cause below it that the
/// message does not already say (a transport error's message alone is "transport error"),
/// or its code when it says nothing.
fn describe_status(status: &tonic::Status) -> String {
    let mut out = strata_types::causes::join_causes(
        status.message().to_string(),
        std::error::Error::source(status),
    );
    if out.is_empty() {
        out = format!("{:?}", status.code());
    }
    out
}

impl ExecutorError {
    /// `name` (of an entry under `rel`, relative to a root) as UTF-8, or the error saying
    /// strata cannot carry it.
    pub fn utf8_name<'a>(name: &'a std::ffi::OsStr, rel: &str) -> Result<&'a str, Self> {
        name.to_str().ok_or_else(|| Self::NonUtf8Name {
            path: match rel {
                "" => format!("/{}", name.to_string_lossy()),
                rel => format!("/{rel}/{}", name.to_string_lossy()),
            },
        })
    }

    /// An I/O failure on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            op: "accessing",
            path: path.display().to_string(),
            source,
        }
    }

    /// An I/O failure while doing `op` on `path`.
    pub fn io_op(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }

    /// The error with a host path under `root` (a step's root filesystem) told as the path
    /// inside the image: a user reads `/opt/a`, not where the executor keeps its snapshot.
    pub fn in_image(self, root: &Path) -> Self {
        match self {
            Self::Io { op, path, source } => match Path::new(&path).strip_prefix(root) {
                Ok(rel) => Self::InImage {
                    op,
                    path: format!("/{}", rel.display()),
                    source,
                },
                Err(_) => Self::Io { op, path, source },
            },
            e => e,
        }
    }

    /// A peer failure.
    pub fn peer(service: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::Peer { service, status }
    }

    /// Attaches the step it happened in (once).
    pub fn at_step(self, step: u32, instruction: &str) -> Self {
        match self {
            e @ (Self::AtStep { .. } | Self::Cancelled) => e,
            e => Self::AtStep {
                step,
                instruction: instruction.to_owned(),
                source: Box::new(e),
            },
        }
    }

    /// The gRPC code name this error maps to, as `BuildError.code` reports it.
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::Peer { status, .. } => match status.code() {
                tonic::Code::NotFound => tonic::Code::NotFound,
                tonic::Code::InvalidArgument => tonic::Code::InvalidArgument,
                tonic::Code::FailedPrecondition => tonic::Code::FailedPrecondition,
                tonic::Code::ResourceExhausted => tonic::Code::ResourceExhausted,
                _ => tonic::Code::Unavailable,
            },
            Self::InvalidArgument(_) | Self::InvalidPath { .. } => tonic::Code::InvalidArgument,
            Self::UnsafeLayerEntry { .. } => tonic::Code::InvalidArgument,
            Self::NotFound(_) => tonic::Code::NotFound,
            Self::RunFailed { .. } | Self::Runtime(_) | Self::NonUtf8Name { .. } => {
                tonic::Code::FailedPrecondition
            }
            Self::Timeout { .. } => tonic::Code::DeadlineExceeded,
            Self::Cancelled => tonic::Code::Cancelled,
            Self::ShuttingDown(_) => tonic::Code::Unavailable,
            Self::Io { .. } | Self::Internal(_) => tonic::Code::Internal,
            // what the image's own tree refuses is the build's trouble, not the executor's
            Self::InImage { source, .. } => {
                use std::io::ErrorKind as K;
                match source.kind() {
                    K::NotFound
                    | K::AlreadyExists
                    | K::NotADirectory
                    | K::IsADirectory
                    | K::DirectoryNotEmpty
                    | K::InvalidFilename
                    | K::PermissionDenied
                    | K::ReadOnlyFilesystem => tonic::Code::FailedPrecondition,
                    _ => tonic::Code::Internal,
                }
            }
            Self::AtStep { source, .. } => source.code(),
            Self::Pull { code, .. } => *code,
        }
    }
}

impl From<ExecutorError> for tonic::Status {
    fn from(e: ExecutorError) -> Self {
        let code = e.code();
        match e {
            ExecutorError::Peer { service, status } => {
                tonic::Status::new(code, format!("{service}: {}", describe_status(&status)))
            }
            ExecutorError::AtStep {
                step,
                instruction,
                source,
            } => {
                let inner = tonic::Status::from(*source);
                tonic::Status::new(
                    inner.code(),
                    format!("step {step} ({instruction}): {}", inner.message()),
                )
            }
            e @ (ExecutorError::Io { .. } | ExecutorError::Internal(_)) => {
                error!(error = %e, "executor failure");
                tonic::Status::internal(e.to_string())
            }
            e @ ExecutorError::InImage { .. } => {
                if code == tonic::Code::Internal {
                    error!(error = %e, "executor failure");
                }
                tonic::Status::new(code, e.to_string())
            }
            e @ (ExecutorError::InvalidArgument(_)
            | ExecutorError::NotFound(_)
            | ExecutorError::InvalidPath { .. }
            | ExecutorError::UnsafeLayerEntry { .. }
            | ExecutorError::RunFailed { .. }
            | ExecutorError::Timeout { .. }
            | ExecutorError::Runtime(_)
            | ExecutorError::NonUtf8Name { .. }
            | ExecutorError::Pull { .. }
            | ExecutorError::Cancelled
            | ExecutorError::ShuttingDown(_)) => tonic::Status::new(code, e.to_string()),
        }
    }
}
