//! Images in and out of the strata store.
//!
//! - [`import`]: a root filesystem tarball becomes a one-layer base image (`strata import`).
//! - [`store`]: the layer store and tag index as transfer code needs them (streaming blob
//!   readers/writers for blocking tar code, name resolution: tag, digest, short image id).
//! - [`blocked_gzip`]: pushed layers' gzip, in independent 1 MiB members that strata
//!   compresses and inflates on every core and any gzip reader reads as one stream.
//! - [`compression`]: magic-byte detection and transparent gzip/zstd/bzip2/xz decoding.
//!
//! Architecture invariant: nothing here writes a tag before every blob the tag reaches was
//! verified against its digest by the layer store.

pub mod blocked_gzip;
pub mod compression;
mod error;
pub mod import;
pub mod load;
pub mod records;
pub mod registry;
mod rootfs;
pub mod save;
pub mod store;

pub use error::{Result, TransferError};
pub use store::{Found, ImageStore, NamedBy, StoredImage};
