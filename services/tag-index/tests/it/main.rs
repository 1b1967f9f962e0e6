//! Integration tests of the tag-index service: the store logic on both key-value stores,
//! the gRPC API in-process, and the real binary (crash, grpcurl, shutdown).

mod fixture;
mod grpc;
mod process;
mod retention;
mod store;
mod watch;
