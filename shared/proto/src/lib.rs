//! strata's gRPC contracts, generated from `proto/` at build time.
//!
//! Each service's package is re-exported under a short module: [`parser`], [`layer_store`],
//! [`tag_index`], [`executor`]; shared messages live in [`common`].

#![allow(unsafe_code, missing_docs, clippy::all, clippy::pedantic)]

mod generated {
    include!(concat!(env!("OUT_DIR"), "/strata_include.rs"));
}

pub use generated::strata::common::v1 as common;
pub use generated::strata::executor::v1 as executor;
pub use generated::strata::layerstore::v1 as layer_store;
pub use generated::strata::parser::v1 as parser;
pub use generated::strata::tagindex::v1 as tag_index;

/// The encoded `FileDescriptorSet` of every strata proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/strata_descriptor.bin"));

/// Fully qualified gRPC service names, as health checks and reflection list them.
pub mod service_names {
    /// The parser service.
    pub const PARSER: &str = "strata.parser.v1.Parser";
    /// The layer store service.
    pub const LAYER_STORE: &str = "strata.layerstore.v1.LayerStore";
    /// The tag index service.
    pub const TAG_INDEX: &str = "strata.tagindex.v1.TagIndex";
    /// The executor service.
    pub const EXECUTOR: &str = "strata.executor.v1.Executor";
}

impl std::fmt::Debug for executor::RegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the password; show whether there is one
        f.debug_struct("RegistryCredential")
            .field("host", &self.host)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn descriptor_set_decodes_and_holds_every_service() {
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let services: Vec<String> = fds
            .file
            .iter()
            .flat_map(|f| {
                let pkg = f.package().to_string();
                f.service.iter().map(move |s| format!("{pkg}.{}", s.name()))
            })
            .collect();
        for name in [
            service_names::PARSER,
            service_names::LAYER_STORE,
            service_names::TAG_INDEX,
            service_names::EXECUTOR,
        ] {
            assert!(
                services.iter().any(|s| s == name),
                "{name} missing from {services:?}"
            );
        }
    }

    #[test]
    fn every_rpc_message_and_field_is_documented() {
        // grpcurl users read the contracts through reflection, so the comments must travel
        // in the descriptor set: check source info holds a leading comment for each.
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let mut undocumented = Vec::new();
        for file in fds
            .file
            .iter()
            .filter(|f| f.package().starts_with("strata."))
        {
            let info = file.source_code_info.as_ref().expect("source info kept");
            let documented = |path: &[i32]| {
                info.location.iter().any(|l| {
                    l.path == path
                        && (l
                            .leading_comments
                            .as_deref()
                            .is_some_and(|c| !c.trim().is_empty())
                            || l.trailing_comments
                                .as_deref()
                                .is_some_and(|c| !c.trim().is_empty()))
                })
            };
            for (m, msg) in file.message_type.iter().enumerate() {
                let m = m as i32;
                if !documented(&[4, m]) {
                    undocumented.push(format!("{}: message {}", file.name(), msg.name()));
                }
                for (f, field) in msg.field.iter().enumerate() {
                    // fields inside a oneof of typed variants are named by the oneof's doc
                    if field.oneof_index.is_some() && !documented(&[4, m, 2, f as i32]) {
                        if !documented(&[4, m, 8, field.oneof_index.unwrap_or(0)])
                            && msg.name() != "Instruction"
                        {
                            undocumented.push(format!(
                                "{}: {}.{}",
                                file.name(),
                                msg.name(),
                                field.name()
                            ));
                        }
                        continue;
                    }
                    if !documented(&[4, m, 2, f as i32]) {
                        undocumented.push(format!(
                            "{}: {}.{}",
                            file.name(),
                            msg.name(),
                            field.name()
                        ));
                    }
                }
            }
            for (s, svc) in file.service.iter().enumerate() {
                for (r, rpc) in svc.method.iter().enumerate() {
                    if !documented(&[6, s as i32, 2, r as i32]) {
                        undocumented.push(format!("{}: rpc {}", file.name(), rpc.name()));
                    }
                }
            }
        }
        assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
    }

    #[test]
    fn registry_passwords_never_print() {
        let credential = executor::RegistryCredential {
            host: "127.0.0.1:5000".into(),
            username: "alice".into(),
            password: "s3cret-pass".into(),
        };
        let request = executor::BuildRequest {
            registry_credentials: vec![credential.clone()],
            ..Default::default()
        };
        for shown in [format!("{credential:?}"), format!("{request:#?}")] {
            assert!(!shown.contains("s3cret-pass"), "{shown}");
            assert!(shown.contains("127.0.0.1:5000"), "{shown}");
            assert!(shown.contains("alice"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}
