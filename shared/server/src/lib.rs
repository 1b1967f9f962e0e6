//! What every strata gRPC server shares, so each service's `main` stays thin.
//!
//! - [`ListenAddr`] / [`Listener`]: `127.0.0.1:PORT` or `unix:///path.sock`.
//! - [`serve`]: registers health and reflection, applies message-size, concurrency and
//!   timeout limits, serves until the shutdown future resolves, then flips health to
//!   NOT_SERVING and drains in-flight calls within a time limit.
//! - [`ServeOptions`] with [`serve_args!`] to declare the common flags (each with an
//!   `STRATA_<SVC>_<KEY>` environment twin) in a service's clap config.
//! - [`init_tracing`]: text or JSON logs.
//! - [`client`]: channels to a [`ListenAddr`], lazily connected.
//! - [`tune_allocator`] (first) and [`raise_open_files_limit`] (once logging is set up):
//!   called at the start of every binary (see their reasons).

mod alloc;
mod body_end;
pub mod client;
mod concurrency;
mod health;
mod limits;
mod listen;
pub mod local_feed;
mod logging;
mod open_files;
mod serve;

pub use alloc::tune_allocator;
pub use body_end::BodyEnd;
pub use listen::{ListenAddr, ListenError, Listener};
pub use logging::{LogFormat, init_tracing, log_filter};
pub use open_files::raise_open_files_limit;
pub use serve::{ServeOptions, Services, serve, shutdown_signal};

/// The smallest `--max-message-bytes`: below it not even a health check's answer fits.
pub const MIN_MESSAGE_BYTES: usize = 4096;

/// A clap value parser for `--max-message-bytes`.
pub fn message_bytes(v: &str) -> Result<usize, String> {
    let n: usize = v
        .parse()
        .map_err(|_| format!("{v:?} is not a number of bytes"))?;
    if n < MIN_MESSAGE_BYTES {
        return Err(format!(
            "{n} is too small: every call but a health check would fail (at least {MIN_MESSAGE_BYTES})"
        ));
    }
    Ok(n)
}

/// Declares a clap `Args` struct holding the flags every service takes, with environment
/// variables named after the service (`STRATA_TAG_INDEX_LISTEN`, ...).
///
/// ```text
/// strata_server::serve_args!(TagIndexServeArgs, "STRATA_TAG_INDEX", "127.0.0.1:50052");
/// ```
#[macro_export]
macro_rules! serve_args {
    ($name:ident, $prefix:literal, $default_listen:literal) => {
        /// Flags every strata service takes.
        #[derive(Debug, Clone, ::clap::Args)]
        pub struct $name {
            /// Where to listen: HOST:PORT, or unix:///path/to.sock.
            #[arg(long, env = concat!($prefix, "_LISTEN"), default_value = $default_listen)]
            pub listen: $crate::ListenAddr,
            /// Log format.
            #[arg(long, env = concat!($prefix, "_LOG_FORMAT"), value_enum, default_value_t = $crate::LogFormat::Text)]
            pub log_format: $crate::LogFormat,
            /// Log filter (tracing-subscriber EnvFilter syntax), e.g. "info" or "strata=debug".
            /// Unset: RUST_LOG, else "info".
            #[arg(long, env = concat!($prefix, "_LOG"), value_parser = $crate::log_filter)]
            pub log: Option<String>,
            /// Largest message accepted or sent, in bytes (at least 4096); larger ones get
            /// RESOURCE_EXHAUSTED.
            #[arg(long, env = concat!($prefix, "_MAX_MESSAGE_BYTES"), default_value_t = 16 * 1024 * 1024, value_parser = $crate::message_bytes)]
            pub max_message_bytes: usize,
            /// Most requests served at once (over all connections); more wait.
            #[arg(long, env = concat!($prefix, "_CONCURRENCY_LIMIT"), default_value_t = 256)]
            pub concurrency_limit: usize,
            /// Time limit for a request until its response starts, in seconds.
            #[arg(long = "request-timeout", env = concat!($prefix, "_REQUEST_TIMEOUT"), default_value_t = 600)]
            pub request_timeout_secs: u64,
            /// On SIGTERM/SIGINT: how long in-flight calls may take to finish, in seconds.
            #[arg(long = "drain-timeout", env = concat!($prefix, "_DRAIN_TIMEOUT"), default_value_t = 10)]
            pub drain_timeout_secs: u64,
        }

        impl $name {
            /// Installs logging as these flags say (see [`$crate::init_tracing`]).
            pub fn init_tracing(&self) -> ::anyhow::Result<()> {
                $crate::init_tracing(self.log_format, self.log.as_deref(), "info")
                    .map_err(::anyhow::Error::msg)
            }

            /// The serving options these flags describe.
            pub fn options(&self) -> $crate::ServeOptions {
                $crate::ServeOptions {
                    max_message_bytes: self.max_message_bytes,
                    concurrency_limit: self.concurrency_limit,
                    request_timeout: ::std::time::Duration::from_secs(self.request_timeout_secs),
                    drain_timeout: ::std::time::Duration::from_secs(self.drain_timeout_secs),
                }
            }
        }
    };
}
