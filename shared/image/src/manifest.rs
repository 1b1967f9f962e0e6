//! Manifests, indexes and descriptors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_types::media_type;

use crate::ImageError;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Alternate download locations (never followed by strata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform (in an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with no optional fields.
    pub fn new(media_type: &str, digest: impl Into<String>, size: i64) -> Self {
        Self {
            media_type: media_type.to_string(),
            digest: digest.into(),
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        }
    }
}

/// A platform in an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// GOARCH.
    pub architecture: String,
    /// GOOS.
    pub os: String,
    /// OS version.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// Subject (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// An OCI manifest over a config and layers.
    pub fn oci(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Self {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: None,
        }
    }

    /// Parses a manifest; a document that also has `manifests` is rejected as ambiguous.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|error| ImageError::Json {
                what: "manifest",
                error,
            })?;
        if value.get("manifests").is_some() {
            return Err(ImageError::Invalid {
                what: "manifest",
                reason: "document has both `manifests` and `layers`/`config`: ambiguous".into(),
            });
        }
        let m: Self = serde_json::from_value(value).map_err(|error| ImageError::Json {
            what: "manifest",
            error,
        })?;
        if m.schema_version != 2 {
            return Err(ImageError::Invalid {
                what: "manifest",
                reason: format!(
                    "schemaVersion {} is not supported (expected 2)",
                    m.schema_version
                ),
            });
        }
        Ok(m)
    }

    /// Checks the manifest against its config: one layer per diff_id.
    pub fn validate_against(&self, config: &crate::ImageConfig) -> Result<(), ImageError> {
        if self.layers.len() != config.rootfs.diff_ids.len() {
            return Err(ImageError::Invalid {
                what: "manifest",
                reason: format!(
                    "{} layers but the config lists {} diff_ids",
                    self.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        Ok(())
    }

    /// Canonical bytes.
    pub fn to_json(&self) -> Vec<u8> {
        crate::to_canonical_json(self)
    }
}

/// An image index / manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The entries.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Index {
    /// Parses an index; a document that also has `layers` is rejected as ambiguous.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|error| ImageError::Json {
                what: "index",
                error,
            })?;
        if value.get("layers").is_some() || value.get("config").is_some() {
            return Err(ImageError::Invalid {
                what: "index",
                reason: "document has both `manifests` and `layers`/`config`: ambiguous".into(),
            });
        }
        serde_json::from_value(value).map_err(|error| ImageError::Json {
            what: "index",
            error,
        })
    }

    /// The first runnable entry for `os/architecture` (attestations skipped).
    pub fn select(&self, os: &str, architecture: &str) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            let attestation = d
                .annotations
                .as_ref()
                .and_then(|a| a.get("vnd.docker.reference.type"))
                .is_some_and(|t| t == "attestation-manifest");
            !attestation
                && d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == os && p.architecture == architecture)
        })
    }

    /// Canonical bytes.
    pub fn to_json(&self) -> Vec<u8> {
        crate::to_canonical_json(self)
    }
}
