//! Compiles `proto/` with protox (no system protoc), writes the descriptor set for
//! reflection, and generates the tonic code from it.

use std::{env, fs, path::PathBuf};

use prost::Message;

const FILES: &[&str] = &[
    "strata/common/v1/common.proto",
    "strata/parser/v1/parser.proto",
    "strata/layerstore/v1/layer_store.proto",
    "strata/tagindex/v1/tag_index.proto",
    "strata/executor/v1/executor.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(FILES, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("strata_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .include_file("strata_include.rs")
        // Blob bytes as `bytes::Bytes`: decoding slices tonic's receive buffer instead of
        // copying every chunk out of it, and senders hand out slices of what they hold.
        .bytes(".strata.layerstore.v1.WriteBlobRequest.data")
        .bytes(".strata.layerstore.v1.ReadBlobResponse.data")
        // `strata parse --format json` prints the parser's answer as it came over the wire.
        .type_attribute(".strata.parser.v1", "#[derive(serde::Serialize)]")
        .type_attribute(".strata.common.v1", "#[derive(serde::Serialize)]")
        // Registry passwords travel in build requests: their Debug (lib.rs) redacts them, so
        // a `{:?}` of a request can never print one.
        .skip_debug([".strata.executor.v1.RegistryCredential"])
        .compile_fds(fds)?;
    Ok(())
}
