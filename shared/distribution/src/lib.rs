//! An OCI distribution (registry HTTP API) client: authentication (anonymous, Basic, Bearer
//! tokens; credentials from `strata login` or Docker's config.json), manifests with digest
//! and Content-Type checks, blob existence checks, downloads, monolithic, streamed and
//! chunked uploads, and cross-repository mounts. It knows nothing of the strata store;
//! strata-transfer drives it.

pub mod auth;
mod client;
mod error;

pub use auth::Credentials;
pub use client::{
    BlobStream, CHUNK, ClientOptions, FetchedManifest, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES,
    Registry, api_host,
};
pub use error::RegistryError;
