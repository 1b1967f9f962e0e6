//! Empty: strata-kv has a build script only so its `[build-dependencies]` (feature pins for
//! RocksDB's build, see Cargo.toml) take part in cargo's host feature resolution.

fn main() {}
