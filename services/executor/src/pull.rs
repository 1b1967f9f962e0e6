//! Base images the store does not hold are pulled from their registry, as `strata pull`
//! would pull them: the same code (strata-transfer), the same tag afterwards, the same
//! credentials (`strata login`'s file, then Docker's config.json, as the executor's user
//! sees them) and the same choice of plain HTTP (loopback registries, plus the registries
//! the build names in `insecure_registries`).
//!
//! Credentials the build request carries (`registry_credentials`, sent by the client for the
//! registries its Dockerfile names) take precedence for their registry, for that build only:
//! they live in the request, are handed to the one registry client of the pull and dropped
//! with it, never stored, cached or logged. A farm's executor runs as another user, so its
//! own files cannot hold a user's credentials.
//!
//! The executor pulls, not the CLI, because a farm's executor serves builds that no local
//! CLI stands beside. Progress goes to the client as `ImagePull` events. A pull stores
//! every blob, verified, before it moves the tag, so a failed pull never leaves a tag
//! pointing at half an image. A base named by digest gets a digest reference instead of a
//! tag (also when the store held it already under a recorded repo digest), so `strata gc`
//! keeps it for the next build.

use strata_distribution::{ClientOptions, Credentials, RegistryError, api_host};
use strata_proto::executor::{self as pb, PullPhase, build_event::Event};
use strata_transfer::{
    ImageStore, TransferError, records,
    registry::{PullProgress, Pulled, pull_with_progress},
};
use strata_types::Reference;
use tokio::sync::mpsc;
use tracing::info;

use crate::build::{BaseImage, Engine, Events};
use crate::error::ExecutorError;

/// The only platform strata builds for and pulls.
const OS: &str = "linux";
const ARCHITECTURE: &str = "amd64";

/// Refuses a `FROM --platform` other than linux/amd64 (variants of amd64 are accepted).
pub fn check_platform(base: &str, platform: &str) -> Result<(), ExecutorError> {
    if platform.is_empty() {
        return Ok(());
    }
    let mut parts = platform.split('/');
    let os = parts.next().unwrap_or_default();
    let arch = parts.next().unwrap_or_default();
    if os == OS && arch == ARCHITECTURE && parts.count() <= 1 {
        return Ok(());
    }
    Err(ExecutorError::InvalidArgument(format!(
        "FROM --platform={platform} {base}: strata builds only {OS}/{ARCHITECTURE} images"
    )))
}

/// Whether `registry` (as a reference names it) was named insecure by the build.
pub fn is_insecure(registry: &str, insecure_registries: &[String]) -> bool {
    insecure_registries
        .iter()
        .any(|r| names_registry(r, registry))
}

/// Whether `entry` (as users write registries in flags and credential files: with or
/// without a scheme or a path, e.g. "https://index.docker.io/v1/") names `registry` (as a
/// reference names it; Docker Hub's names name each other).
fn names_registry(entry: &str, registry: &str) -> bool {
    let entry = entry
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let host = entry.split('/').next().unwrap_or(entry);
    // host names are case-insensitive
    host.eq_ignore_ascii_case(registry) || api_host(host).eq_ignore_ascii_case(api_host(registry))
}

/// The credentials the build sent for `registry` (as a reference names it; Docker Hub's
/// names match each other), if any. None leaves the executor's own files to answer.
pub fn request_credentials(registry: &str, sent: &[pb::RegistryCredential]) -> Option<Credentials> {
    sent.iter()
        .find(|c| names_registry(&c.host, registry))
        .map(|c| Credentials {
            username: c.username.clone(),
            password: c.password.clone(),
        })
}

/// Refuses credentials that cannot be meant: an empty host or user name.
pub fn check_credentials(sent: &[pb::RegistryCredential]) -> Result<(), ExecutorError> {
    for c in sent {
        if c.host.trim().is_empty() {
            return Err(ExecutorError::InvalidArgument(
                "registry_credentials: an entry has no host".into(),
            ));
        }
        if c.username.is_empty() {
            return Err(ExecutorError::InvalidArgument(format!(
                "registry_credentials: the entry for {} has no username",
                c.host
            )));
        }
    }
    Ok(())
}

/// The gRPC code of a failed pull: the registry's "no such repository or tag" is NOT_FOUND,
/// an unreachable registry UNAVAILABLE, refused credentials PERMISSION_DENIED, content that
/// breaks the format FAILED_PRECONDITION. Never INTERNAL: none of these is strata's bug.
pub fn failure_code(e: &TransferError) -> tonic::Code {
    use tonic::Code;
    match e {
        TransferError::Registry(r) => match r {
            RegistryError::Status { status: 404, .. } => Code::NotFound,
            RegistryError::Status {
                status: 401 | 403, ..
            }
            | RegistryError::Unauthorized { .. } => Code::PermissionDenied,
            RegistryError::Status { status, .. } if *status >= 500 => Code::Unavailable,
            RegistryError::Status { .. } | RegistryError::Protocol { .. } => {
                Code::FailedPrecondition
            }
            RegistryError::Http { .. } => Code::Unavailable,
            RegistryError::Io { .. } => Code::FailedPrecondition,
        },
        TransferError::NoSuchImage(_) => Code::NotFound,
        TransferError::Reference(_) | TransferError::Digest(_) => Code::InvalidArgument,
        TransferError::Service { status, .. } => match status.code() {
            Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition => {
                Code::FailedPrecondition
            }
            Code::ResourceExhausted => Code::ResourceExhausted,
            _ => Code::Unavailable,
        },
        TransferError::Ambiguous { .. }
        | TransferError::DigestMismatch { .. }
        | TransferError::SizeMismatch { .. }
        | TransferError::Invalid { .. }
        | TransferError::Unsupported(_)
        | TransferError::Io { .. }
        | TransferError::Image(_) => Code::FailedPrecondition,
    }
}

/// An error and its sources, joined as `anyhow`'s `{:#}` would (reqwest hides "connection
/// refused" two sources down).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn pull_event(reference: &str, phase: PullPhase, digest: String, size: i64) -> Event {
    Event::Pull(pb::ImagePull {
        reference: reference.to_owned(),
        phase: phase as i32,
        digest,
        size,
        downloaded: false,
    })
}

impl Engine {
    /// The base image `name` (a FROM or `COPY --from` image): from the store when it holds
    /// it, else pulled from its registry first.
    pub(crate) async fn resolve_base(
        &self,
        name: &str,
        req: &pb::BuildRequest,
        events: &Events,
    ) -> Result<BaseImage, ExecutorError> {
        match self.resolve_image(name).await {
            Err(ExecutorError::NotFound(local)) => {
                info!(image = %name, reason = %local, "base image not in the store: pulling it");
                let pulled = self.pull_base(name, req, events).await?;
                self.load_image(name, &pulled.manifest_digest.to_string())
                    .await
            }
            found => found,
        }
    }

    /// The local manifest `name@digest` (a FROM or `COPY --from` by digest) names: the
    /// digest itself when the store holds it, else the image a pull (or push) recorded for
    /// that repository and registry digest, which gets a digest reference, as a pull by digest
    /// writes one, so `strata gc` keeps it while builds use it that way. The digest as given
    /// when neither (then [`Self::load_image`] reports it missing and it is pulled).
    pub(crate) async fn local_manifest_by_digest(
        &self,
        reference: &Reference,
        digest: &strata_types::Digest,
    ) -> Result<String, ExecutorError> {
        let store = ImageStore::from_clients(self.peers.store.clone(), self.peers.tags.clone());
        let local = async {
            if store.stat(digest).await?.is_some() {
                return Ok(None);
            }
            let repository = Reference::parse_repository(&reference.name())?;
            let Some(manifest) = records::local_manifest(&store, &repository, digest).await? else {
                return Ok(None);
            };
            records::add_digest_reference(&store, &manifest, &repository, digest).await?;
            Ok::<_, TransferError>(Some(manifest))
        };
        match local.await {
            Ok(found) => Ok(found.unwrap_or(*digest).to_string()),
            Err(TransferError::Service { status, .. }) => {
                Err(ExecutorError::peer("layer store")(status))
            }
            Err(e) => Err(ExecutorError::Internal(format!(
                "looking up {reference} in the store: {e}"
            ))),
        }
    }

    /// Pulls `name` into the store (and tags it, unless it names a digest).
    async fn pull_base(
        &self,
        name: &str,
        req: &pb::BuildRequest,
        events: &Events,
    ) -> Result<Pulled, ExecutorError> {
        let reference = Reference::parse(name).map_err(|e| {
            ExecutorError::InvalidArgument(format!("invalid image reference {name:?}: {e}"))
        })?;
        let shown = reference.to_string();
        events
            .send(pull_event(&shown, PullPhase::Started, String::new(), 0))
            .await?;
        let store = ImageStore::from_clients(self.peers.store.clone(), self.peers.tags.clone());
        let options = ClientOptions {
            insecure: is_insecure(reference.registry(), &req.insecure_registries),
            // None: the executor's own files (`Registry::new` looks them up)
            credentials: request_credentials(reference.registry(), &req.registry_credentials),
            ..Default::default()
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<PullProgress>();
        let pulling = async move {
            // The sender lives in this future: when the pull ends, the forwarder's loop ends.
            let progress = move |p: PullProgress| {
                let _ = tx.send(p);
            };
            pull_with_progress(&store, &reference, &options, &progress).await
        };
        let forwarding = async {
            let mut gone = None;
            while let Some(p) = rx.recv().await {
                let event = match p {
                    PullProgress::Resolved {
                        remote_digest,
                        layers,
                    } => pull_event(
                        &shown,
                        PullPhase::Resolved,
                        remote_digest.to_string(),
                        layers as i64,
                    ),
                    PullProgress::Layer {
                        digest,
                        size,
                        downloaded,
                    } => Event::Pull(pb::ImagePull {
                        reference: shown.clone(),
                        phase: PullPhase::Layer as i32,
                        digest: digest.to_string(),
                        size: size as i64,
                        downloaded,
                    }),
                };
                if gone.is_none()
                    && let Err(e) = events.send(event).await
                {
                    gone = Some(e);
                }
            }
            gone.map_or(Ok(()), Err)
        };
        let (pulled, forwarded) = tokio::join!(pulling, forwarding);
        forwarded?;
        let pulled = pulled.map_err(|e| ExecutorError::Pull {
            reference: name.to_owned(),
            reason: chain(&e),
            code: failure_code(&e),
        })?;
        info!(
            image = %shown,
            remote_digest = %pulled.remote_digest,
            manifest = %pulled.manifest_digest,
            downloaded = pulled.downloaded,
            "pulled base image"
        );
        events
            .send(pull_event(
                &shown,
                PullPhase::Done,
                pulled.image_id.clone(),
                0,
            ))
            .await?;
        Ok(pulled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_linux_amd64_is_accepted() {
        check_platform("x", "").unwrap();
        check_platform("x", "linux/amd64").unwrap();
        check_platform("x", "linux/amd64/v2").unwrap();
        for bad in [
            "linux/arm64",
            "windows/amd64",
            "linux",
            "linux/amd64/v2/x",
            "LINUX/AMD64",
        ] {
            let e = check_platform("busybox", bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
            assert!(e.to_string().contains("linux/amd64"), "{e}");
        }
    }

    #[test]
    fn insecure_registries_match_by_host_and_port() {
        let list = vec!["http://reg.example:5000/".to_string(), "docker.io".into()];
        assert!(is_insecure("reg.example:5000", &list));
        assert!(!is_insecure("reg.example", &list));
        assert!(!is_insecure("other:5000", &list));
        assert!(is_insecure("docker.io", &list));
        assert!(is_insecure("index.docker.io", &list));
        assert!(!is_insecure("reg.example:5000", &[]));
        assert!(is_insecure("REG.example:5000", &list));
        assert!(is_insecure("Docker.IO", &list));
    }

    #[test]
    fn sent_credentials_match_their_registry_only() {
        let sent = |host: &str, user: &str| pb::RegistryCredential {
            host: host.into(),
            username: user.into(),
            password: "pw".into(),
        };
        let list = vec![
            sent("reg.example:5000", "a"),
            sent("https://index.docker.io/v1/", "hub"),
        ];
        assert_eq!(
            request_credentials("reg.example:5000", &list).map(|c| c.username),
            Some("a".into())
        );
        assert_eq!(
            request_credentials("docker.io", &list).map(|c| c.username),
            Some("hub".into())
        );
        assert_eq!(request_credentials("reg.example", &list), None);
        assert_eq!(request_credentials("other:5000", &list), None);
        assert_eq!(request_credentials("other:5000", &[]), None);
        for hub in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(
                request_credentials(hub, &[sent("docker.io", "hub")]).map(|c| c.username),
                Some("hub".into()),
                "{hub}"
            );
        }
        let c = request_credentials("reg.example:5000", &list).unwrap();
        assert!(!format!("{c:?}").contains("pw"));

        check_credentials(&list).unwrap();
        check_credentials(&[]).unwrap();
        let e = check_credentials(&[sent(" ", "a")]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = check_credentials(&[sent("reg.example:5000", "")]).unwrap_err();
        assert!(e.to_string().contains("reg.example:5000"), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
    }

    #[test]
    fn failures_map_to_codes_a_user_can_act_on() {
        let status = |status| {
            TransferError::Registry(RegistryError::Status {
                context: "c".into(),
                status,
                detail: None,
            })
        };
        assert_eq!(failure_code(&status(404)), tonic::Code::NotFound);
        assert_eq!(failure_code(&status(401)), tonic::Code::PermissionDenied);
        assert_eq!(failure_code(&status(503)), tonic::Code::Unavailable);
        assert_eq!(failure_code(&status(400)), tonic::Code::FailedPrecondition);
        assert_eq!(
            failure_code(&TransferError::Service {
                context: "c".into(),
                status: tonic::Status::internal("boom"),
            }),
            tonic::Code::Unavailable
        );
        let e = ExecutorError::Pull {
            reference: "127.0.0.1:1/x:1".into(),
            reason: "r".into(),
            code: tonic::Code::NotFound,
        };
        let s = tonic::Status::from(e);
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert!(
            s.message().contains("\"127.0.0.1:1/x:1\""),
            "{}",
            s.message()
        );
    }

    #[test]
    fn chains_join_sources_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = TransferError::io("failed to connect", inner);
        assert_eq!(chain(&outer), "failed to connect: refused");
    }
}
