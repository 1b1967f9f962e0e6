//! The image config: platform, runtime defaults, rootfs diff_ids and history.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ImageError;

/// `null` in JSON means absent: read it as the default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An image config, in the field order BuildKit writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// GOARCH.
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: String,
    /// GOOS.
    #[serde(default, deserialize_with = "null_default")]
    pub os: String,
    /// OS version.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author (MAINTAINER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Image-level comment (`docker import` / `docker commit -m`), shown by `inspect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Runtime defaults.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "ContainerConfig::is_empty"
    )]
    pub config: ContainerConfig,
    /// The layers' diff_ids.
    pub rootfs: RootFs,
    /// One entry per build step.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
}

/// `rootfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layer tars, base first.
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        Self {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// The runtime defaults (`config`), PascalCase keys as Docker's Go structs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// USER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// EXPOSE, as a set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, EmptyObject>>,
    /// ENV, `NAME=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// VOLUME, as a set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, EmptyObject>>,
    /// WORKDIR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// LABEL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// STOPSIGNAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Deprecated Windows flag BuildKit still sets when CMD is processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// HEALTHCHECK (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// ONBUILD triggers (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// SHELL (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

impl ContainerConfig {
    /// True when nothing is set (the whole `config` key is then omitted).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The value of an environment variable.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.as_ref()?.iter().rev().find_map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            (k == name).then_some(v)
        })
    }

    /// Sets an environment variable, replacing an earlier value in place.
    pub fn set_env_var(&mut self, name: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let entry = format!("{name}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == name)
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }
}

/// `{}` — the value type of JSON sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EmptyObject {}

/// HEALTHCHECK settings; durations in nanoseconds, 0 = inherit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", cmd]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Start interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct History {
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Comment (BuildKit: `buildkit.dockerfile.v0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "null_default"
    )]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Parses a config and checks its invariants.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let c: Self = serde_json::from_slice(bytes).map_err(|error| ImageError::Json {
            what: "image config",
            error,
        })?;
        c.validate()?;
        Ok(c)
    }

    /// `rootfs.type == "layers"`, and non-empty history entries pair with diff_ids (when
    /// there is any history at all).
    pub fn validate(&self) -> Result<(), ImageError> {
        if self.rootfs.kind != "layers" {
            return Err(ImageError::Invalid {
                what: "image config",
                reason: format!("rootfs.type is {:?}, expected \"layers\"", self.rootfs.kind),
            });
        }
        // times are RFC 3339, as Docker's and containerd's Go time parsing insists (an
        // image with another `created` is refused there too)
        let times = std::iter::once(("created", self.created.as_deref())).chain(
            self.history
                .iter()
                .map(|h| ("history[].created", h.created.as_deref())),
        );
        for (field, time) in times {
            if let Some(t) = time.filter(|t| !t.is_empty())
                && crate::Timestamp::parse(t).is_none()
            {
                return Err(ImageError::Invalid {
                    what: "image config",
                    reason: format!("{field} {t:?} is not an RFC 3339 time"),
                });
            }
        }
        if !self.history.is_empty() {
            let non_empty = self.history.iter().filter(|h| !h.empty_layer).count();
            if non_empty != self.rootfs.diff_ids.len() {
                return Err(ImageError::Invalid {
                    what: "image config",
                    reason: format!(
                        "{non_empty} history entries made layers but rootfs lists {} diff_ids",
                        self.rootfs.diff_ids.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Canonical bytes.
    pub fn to_json(&self) -> Vec<u8> {
        crate::to_canonical_json(self)
    }
}

#[cfg(test)]
mod tests {
    use strata_types::{Digest, media_type};

    use super::*;
    use crate::{Descriptor, Manifest};

    /// The worked example of the spec (oci-image.md §11), byte for byte.
    #[test]
    fn worked_example_reproduces_byte_for_byte() {
        let layer = vec![0u8; 1024];
        let diff_id = Digest::of(&layer).to_string();
        let t = "2024-01-01T00:00:00Z".to_string();
        let mut cfg = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            created: Some(t.clone()),
            ..Default::default()
        };
        cfg.config.env = Some(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ]);
        cfg.config.cmd = Some(vec!["/bin/sh".into()]);
        cfg.config.working_dir = Some("/".into());
        cfg.rootfs.diff_ids.push(diff_id.clone());
        cfg.history.push(History {
            created: Some(t.clone()),
            created_by: Some("COPY . / # buildkit".into()),
            comment: Some("buildkit.dockerfile.v0".into()),
            ..Default::default()
        });
        cfg.history.push(History {
            created: Some(t),
            created_by: Some("CMD [\"/bin/sh\"]".into()),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: true,
            ..Default::default()
        });
        let cfg_bytes = cfg.to_json();
        assert_eq!(cfg_bytes.len(), 545);
        assert_eq!(
            Digest::of(&cfg_bytes).to_string(),
            "sha256:71fad6ed8429c9b422d6e0a23da1f62929dda8286c71a6ef50de483378597203"
        );
        let manifest = Manifest::oci(
            Descriptor::new(
                media_type::OCI_CONFIG,
                Digest::of(&cfg_bytes).to_string(),
                cfg_bytes.len() as i64,
            ),
            vec![Descriptor::new(media_type::OCI_LAYER_TAR, diff_id, 1024)],
        );
        let m = manifest.to_json();
        assert_eq!(m.len(), 397);
        assert_eq!(
            Digest::of(&m).to_string(),
            "sha256:f1b4ca4f324bcaa44a81bb8a9fcb6435689dd0037f6e96a9416cd47bad4b08fd"
        );
        // and it parses back to the same value
        assert_eq!(ImageConfig::parse(&cfg_bytes).unwrap(), cfg);
        assert_eq!(Manifest::parse(&m).unwrap(), manifest);
    }

    #[test]
    fn history_must_pair_with_diff_ids() {
        let bad = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x"}]}"#;
        assert!(
            ImageConfig::parse(bad)
                .unwrap_err()
                .to_string()
                .contains("history")
        );
        let bad =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"nope","diff_ids":[]}}"#;
        assert!(
            ImageConfig::parse(bad)
                .unwrap_err()
                .to_string()
                .contains("rootfs.type")
        );
    }

    #[test]
    fn times_must_be_rfc3339() {
        let doc = |created: &str, history: &str| {
            format!(
                r#"{{"architecture":"amd64","os":"linux","created":{created},"rootfs":{{"type":"layers","diff_ids":[]}},"history":[{{"created":{history},"empty_layer":true}}]}}"#
            )
        };
        let ok = doc(
            r#""2024-01-01T00:00:00Z""#,
            r#""2024-01-01T00:00:00.5+02:00""#,
        );
        ImageConfig::parse(ok.as_bytes()).unwrap();
        // absent or empty: nothing to check
        ImageConfig::parse(doc("null", "\"\"").as_bytes()).unwrap();
        for (created, history, field) in [
            (r#""not a date""#, "null", "created"),
            ("null", r#""yesterday""#, "history[].created"),
        ] {
            let err = ImageConfig::parse(doc(created, history).as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{field} ")), "{err}");
            assert!(err.contains("RFC 3339"), "{err}");
        }
    }

    #[test]
    fn nulls_and_unknown_fields_are_accepted() {
        let doc = br#"{"architecture":"amd64","os":"linux","config":null,"container":"abc","docker_version":"1","rootfs":{"type":"layers","diff_ids":null},"history":null}"#;
        let c = ImageConfig::parse(doc).unwrap();
        assert!(c.config.is_empty());
    }

    #[test]
    fn ambiguous_documents_are_rejected() {
        let both = br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"b","size":1},"layers":[],"manifests":[]}"#;
        assert!(
            Manifest::parse(both)
                .unwrap_err()
                .to_string()
                .contains("ambiguous")
        );
        assert!(
            crate::Index::parse(both)
                .unwrap_err()
                .to_string()
                .contains("ambiguous")
        );
    }

    #[test]
    fn env_vars_replace_in_place() {
        let mut c = ContainerConfig::default();
        c.set_env_var("A", "1");
        c.set_env_var("B", "2");
        c.set_env_var("A", "3");
        assert_eq!(c.env.as_deref().unwrap(), ["A=3", "B=2"]);
        assert_eq!(c.env_var("A"), Some("3"));
    }
}
