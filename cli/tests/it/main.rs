//! Integration tests of the `strata` command: the real binary, embedded services over a
//! data root in a temp dir.

mod build;
mod build_credentials;
mod build_pull;
mod build_rpc;
mod embedded;
mod format;
mod images_io;
mod local_cache;
mod parse;
mod registry;
mod tags;
