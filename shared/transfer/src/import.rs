//! `strata import`: a root filesystem tarball becomes a one-layer base image, as
//! `docker import` makes one.
//!
//! The input may be gzip, zstd, bzip2 or xz (detected by magic bytes); the layer is stored
//! uncompressed. `docker import` stores the tar as it is; strata stores what applying it
//! (oci-image.md §9.4) would leave, as a layer that follows §9.1, so that a build can use it.
//! Two streaming passes over the file ([`crate::rootfs`]) do that without holding more than
//! the set of entry names: the first checks every header and refuses what cannot be applied
//! safely, before anything is written; the second writes the layer. A conforming tarball is
//! stored byte for byte, its diff_id the sha256 of the decompressed file, as Docker's.
use std::path::Path;

use strata_image::{ContainerConfig, Descriptor, History, ImageConfig, Manifest, Timestamp};
use strata_proto::layer_store::WriteStart;
use strata_types::{Digest, Reference, media_type};

use crate::{Result, TransferError, store::ImageStore};

/// What `import` needs besides the tarball.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The image's `created` time (default: `SOURCE_DATE_EPOCH`, else now).
    pub created: Option<Timestamp>,
    /// The commit message (`-m`); default `Imported from -`, as Docker writes.
    pub message: Option<String>,
    /// Dockerfile-style config changes (`-c 'CMD ["sh"]'`).
    pub changes: Vec<String>,
    /// GOARCH of the image (default: the host's).
    pub architecture: Option<String>,
}

/// What an import stored.
#[derive(Debug, Clone)]
pub struct Imported {
    /// `sha256:<config digest>` (the image ID).
    pub image_id: String,
    /// The manifest the tag points at.
    pub manifest_digest: Digest,
    /// The layer's diff_id.
    pub diff_id: Digest,
    /// The layer's size.
    pub layer_size: u64,
}

/// The host's architecture in Go's spelling.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Imports `tarball` as a one-layer image tagged `name` (untagged when `None`).
pub async fn import(
    store: &ImageStore,
    tarball: &Path,
    name: Option<&Reference>,
    options: &ImportOptions,
) -> Result<Imported> {
    let mut config = ContainerConfig::default();
    for change in &options.changes {
        apply_change(&mut config, change)?;
    }
    // `-` is standard input, as for `docker import -` (a pipe is spooled to a temporary file)
    let from_stdin = tarball == Path::new("-");
    if from_stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(TransferError::invalid(
            "import -",
            "standard input is a terminal: pipe a tarball in (strata import - NAME < rootfs.tar)",
        ));
    }
    let path = if from_stdin {
        Path::new("/dev/stdin")
    } else {
        tarball
    };
    let file = std::fs::File::open(path)
        .map_err(|e| TransferError::io(format!("failed to open {}", tarball.display()), e))?;
    let writer = store.start_write(WriteStart {
        expected_digest: String::new(),
        expected_size: -1,
        media_type: media_type::OCI_LAYER_TAR.to_string(),
        ..Default::default()
    });
    let what = if from_stdin {
        "standard input".to_string()
    } else {
        tarball.display().to_string()
    };
    let (diff_id, size) =
        tokio::task::spawn_blocking(move || crate::rootfs::normalise(file, writer, &what))
            .await
            .map_err(|e| TransferError::invalid("import", format!("task failed: {e}")))??;

    let created = options
        .created
        .unwrap_or_else(Timestamp::source_date_epoch_or_now)
        .to_string();
    let message = options
        .message
        .clone()
        .unwrap_or_else(|| "Imported from -".to_string());
    let image_config = ImageConfig {
        architecture: options
            .architecture
            .clone()
            .unwrap_or_else(|| host_architecture().to_string()),
        os: "linux".into(),
        created: Some(created.clone()),
        comment: Some(message.clone()),
        config,
        rootfs: strata_image::RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id.to_string()],
        },
        history: vec![History {
            created: Some(created),
            comment: Some(message),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (image_id, manifest_digest) =
        store_image(store, &image_config, &[(diff_id, size)], name).await?;
    Ok(Imported {
        image_id,
        manifest_digest,
        diff_id,
        layer_size: size,
    })
}

/// Stores config and OCI manifest for layers already in the store, and tags it.
pub async fn store_image(
    store: &ImageStore,
    config: &ImageConfig,
    layers: &[(Digest, u64)],
    name: Option<&Reference>,
) -> Result<(String, Digest)> {
    let config_bytes = config.to_json();
    let config_digest = Digest::of(&config_bytes);
    let manifest_digest = store_documents(store, config_bytes, &config_digest, layers).await?;
    if let Some(name) = name {
        store.set_tag(name, &manifest_digest).await?;
    }
    Ok((config_digest.to_string(), manifest_digest))
}

/// Stores a config (its exact bytes, which hash to `config_digest`) and the OCI manifest
/// naming it and `layers` (diff_id, size; already in the store); returns the manifest's
/// digest. Import, load and pull all end here, before they move any tag.
pub async fn store_documents(
    store: &ImageStore,
    config_bytes: Vec<u8>,
    config_digest: &Digest,
    layers: &[(Digest, u64)],
) -> Result<Digest> {
    let config_len = config_bytes.len() as i64;
    store
        .put_bytes(config_bytes, media_type::OCI_CONFIG, Some(config_digest))
        .await?;
    let manifest = Manifest::oci(
        Descriptor::new(
            media_type::OCI_CONFIG,
            config_digest.to_string(),
            config_len,
        ),
        layers
            .iter()
            .map(|(d, size)| {
                Descriptor::new(media_type::OCI_LAYER_TAR, d.to_string(), *size as i64)
            })
            .collect(),
    );
    let manifest_bytes = manifest.to_json();
    let manifest_digest = Digest::of(&manifest_bytes);
    store
        .put_bytes(
            manifest_bytes,
            media_type::OCI_MANIFEST,
            Some(&manifest_digest),
        )
        .await?;
    Ok(manifest_digest)
}

/// Applies one `--change` line: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME,
/// STOPSIGNAL (JSON or shell form, as Docker accepts them).
pub fn apply_change(config: &mut ContainerConfig, change: &str) -> Result<()> {
    let change = change.trim();
    let (keyword, rest) = change
        .split_once(char::is_whitespace)
        .unwrap_or((change, ""));
    let rest = rest.trim();
    let bad =
        |reason: &str| TransferError::invalid(format!("change {change:?}"), reason.to_string());
    let command = |rest: &str| -> Vec<String> {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) if rest.starts_with('[') => v,
            _ => vec!["/bin/sh".into(), "-c".into(), rest.to_string()],
        }
    };
    let words = |rest: &str| -> Vec<String> {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) if rest.starts_with('[') => v,
            _ => rest.split_whitespace().map(str::to_string).collect(),
        }
    };
    let pairs = |rest: &str| -> Vec<(String, String)> {
        if !rest.contains('=') {
            let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return vec![(k.to_string(), v.trim().to_string())];
        }
        rest.split_whitespace()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect()
    };
    match keyword.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(command(rest)),
        "ENTRYPOINT" => config.entrypoint = Some(command(rest)),
        "WORKDIR" if !rest.is_empty() => config.working_dir = Some(rest.to_string()),
        "USER" if !rest.is_empty() => config.user = Some(rest.to_string()),
        "STOPSIGNAL" if !rest.is_empty() => config.stop_signal = Some(rest.to_string()),
        "ENV" if !rest.is_empty() => {
            for (k, v) in pairs(rest) {
                config.set_env_var(&k, &v);
            }
        }
        "LABEL" if !rest.is_empty() => {
            let labels = config.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs(rest) {
                labels.insert(k, v);
            }
        }
        "EXPOSE" if !rest.is_empty() => {
            let ports = config.exposed_ports.get_or_insert_with(Default::default);
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                ports.insert(p, Default::default());
            }
        }
        "VOLUME" if !rest.is_empty() => {
            let volumes = config.volumes.get_or_insert_with(Default::default);
            for v in words(rest) {
                volumes.insert(v, Default::default());
            }
        }
        "WORKDIR" | "USER" | "STOPSIGNAL" | "ENV" | "LABEL" | "EXPOSE" | "VOLUME" => {
            return Err(bad("needs an argument"));
        }
        _ => {
            return Err(bad(
                "only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME and WORKDIR can be changed",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_like_docker() {
        let mut c = ContainerConfig::default();
        apply_change(&mut c, r#"CMD ["sh"]"#).unwrap();
        apply_change(&mut c, "ENTRYPOINT echo hi").unwrap();
        apply_change(&mut c, "ENV PATH=/bin:/usr/bin A=b").unwrap();
        apply_change(&mut c, "ENV C d e").unwrap();
        apply_change(&mut c, "WORKDIR /app").unwrap();
        apply_change(&mut c, "EXPOSE 80 53/udp").unwrap();
        assert_eq!(c.cmd.as_deref().unwrap(), ["sh"]);
        assert_eq!(
            c.entrypoint.as_deref().unwrap(),
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(
            c.env.as_deref().unwrap(),
            ["PATH=/bin:/usr/bin", "A=b", "C=d e"]
        );
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert_eq!(
            c.exposed_ports.unwrap().keys().cloned().collect::<Vec<_>>(),
            ["53/udp", "80/tcp"]
        );
        assert!(
            apply_change(&mut ContainerConfig::default(), "RUN rm -rf /")
                .unwrap_err()
                .to_string()
                .contains("only CMD")
        );
    }
}
