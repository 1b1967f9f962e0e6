//! The command line's shape.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use strata_server::{ListenAddr, LogFormat};

/// strata: build container images from Dockerfiles, store them once, name them with tags.
#[derive(Debug, Parser)]
#[command(name = "strata", version, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Address of a running strata server (all four services), e.g. 127.0.0.1:50050 or
    /// unix:///run/strata.sock. Unset: use the data root's `strata serve`, or run embedded.
    #[arg(long, global = true, env = "STRATA_ADDR")]
    pub addr: Option<ListenAddr>,
    /// Data directory for the embedded services (default: the user's data dir + /strata).
    #[arg(long, global = true, env = "STRATA_ROOT")]
    pub root: Option<PathBuf>,
    /// Log format of the embedded services' logs.
    #[arg(long, global = true, env = "STRATA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter for the embedded services, e.g. "info" or "strata=debug". Unset: RUST_LOG,
    /// else "warn" ("info" for `strata serve`).
    #[arg(long, global = true, env = "STRATA_LOG", value_parser = strata_server::log_filter)]
    pub log: Option<String>,
}

impl GlobalArgs {
    /// The data root: `--root`, `STRATA_ROOT`, or the user's data dir + /strata.
    pub fn data_root(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| {
            dirs::data_dir()
                .unwrap_or_else(|| PathBuf::from("/var/lib"))
                .join("strata")
        })
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and a context directory.
    Build(crate::commands::build::BuildArgs),
    /// Run all four services in one process over the data root (the CLI then uses it).
    Serve(crate::commands::serve::ServeArgs),
    /// Print each service's health.
    Health(crate::commands::health::HealthArgs),
    /// Show the layer store's space: by kind, unique vs shared, reclaimable.
    Du(crate::commands::du::DuArgs),
    /// Remove blobs no tag, lease or build-cache entry refers to.
    Gc(crate::commands::gc::GcArgs),
    /// Re-hash every stored blob and report corrupt ones (exit 1 when any).
    Fsck(crate::commands::fsck::FsckArgs),
    /// Show the history of an image (its build steps, newest first).
    History(crate::commands::history::HistoryArgs),
    /// Show images as Docker-compatible JSON (or, with --format oci, their raw documents).
    Inspect(crate::commands::inspect::InspectArgs),
    /// Create a one-layer base image from a root filesystem tarball.
    Import(crate::commands::import::ImportArgs),
    /// Write images to a docker-archive tarball (docker load / skopeo docker-archive: read it).
    Save(crate::commands::save::SaveArgs),
    /// Load images from a docker-archive tarball or an OCI layout tar.
    Load(crate::commands::load::LoadArgs),
    /// Write an image as an OCI image layout (a directory or a .tar).
    Export(crate::commands::export::ExportArgs),
    /// Download an image from a registry.
    Pull(crate::commands::pull::PullArgs),
    /// Upload an image to a registry.
    Push(crate::commands::push::PushArgs),
    /// Save credentials for a registry (checked against it first).
    Login(crate::commands::login::LoginArgs),
    /// Forget a registry's credentials.
    Logout(crate::commands::login::LogoutArgs),
    /// Parse a Dockerfile and print its typed tree or BuildKit's AST dump.
    Parse(crate::commands::parse::ParseArgs),
    /// Print a Dockerfile's lint warnings (exit 1 when there are any).
    Check(crate::commands::parse::CheckArgs),
    /// List tagged images (REPOSITORY, TAG, IMAGE ID, CREATED, SIZE).
    Images(crate::commands::images::ImagesArgs),
    /// Point a tag at an image, or show a tag's moves with --history.
    Tag(crate::commands::tag::TagArgs),
    /// Remove tags (the image's space is freed by `strata gc` once nothing refers to it).
    Rmi(crate::commands::rmi::RmiArgs),
}
