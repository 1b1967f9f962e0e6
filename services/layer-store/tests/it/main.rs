//! Integration tests of the layer store: the store logic against both KvStore twins, the
//! gRPC surface in-process (and writes from the same process, whose bytes are handed over in
//! memory), faults with the real binary (SIGKILL, disk full, flipped bytes), and grpcurl.

mod client;
mod faults;
mod grpc_api;
mod grpcurl;
mod local_feed;
mod store_conformance;
