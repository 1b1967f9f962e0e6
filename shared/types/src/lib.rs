//! Common value types shared by every strata crate: [`Digest`] (content addresses),
//! [`Reference`] (image names as Docker writes them), the OCI [`media_type`] constants and the
//! blob labels garbage collection follows ([`gc_label`]).

pub mod causes;
pub mod clip;
pub mod digest;
pub mod gc_label;
pub mod hashing;
pub mod media_type;
pub mod reference;

pub use causes::causes;
pub use clip::clip;
pub use digest::{Digest, DigestError, Hasher};
pub use hashing::RunningHash;
pub use reference::{Reference, ReferenceError};
