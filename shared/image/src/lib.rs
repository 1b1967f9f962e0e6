//! Image documents as the OCI image spec and Docker write them: [`Manifest`], [`Index`],
//! [`ImageConfig`] (with the Docker extensions `Healthcheck`, `OnBuild`, `Shell`) and
//! [`Descriptor`].
//!
//! Serialisation is deterministic (struct field order, sorted maps, no whitespace), so the
//! same image gives the same bytes and digests on every machine. Parsing is lenient the way
//! the spec asks: unknown fields are ignored, `null` means absent.
//!
//! Invariants checked by [`ImageConfig::validate`] and [`Manifest::validate_against`]:
//! `rootfs.type == "layers"`; history entries without `empty_layer` pair one-to-one with
//! `rootfs.diff_ids`; a manifest has as many layers as its config has diff_ids.

mod config;
mod manifest;
pub mod pax;
pub mod template;
pub mod time;
pub mod view;

pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use manifest::{Descriptor, Index, Manifest, Platform};
pub use time::Timestamp;

/// Errors about image documents.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The JSON does not parse as the document.
    /// (The message ends with the parser's complaint, so it is not also the `source()`: a
    /// chain printer would say it twice.)
    #[error("invalid {what}: {error}")]
    Json {
        /// Which document.
        what: &'static str,
        /// The parser's complaint.
        error: serde_json::Error,
    },
    /// The document parses but breaks an invariant.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which document.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Serialises a document deterministically (compact JSON, fields in declaration order, maps
/// sorted).
pub fn to_canonical_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // serde_json never fails on these types (string keys, no non-finite floats)
    serde_json::to_vec(value).unwrap_or_default()
}
