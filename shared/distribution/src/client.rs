//! A registry client for one repository (distribution.md §2–§8).
//!
//! Authentication is discovered from challenges: a 401 with `Basic` resends with the user's
//! credentials, with `Bearer` fetches a token from the realm (scopes: the challenge's plus
//! what the operation needs) and retries once; a second 401 is an error that says whether
//! credentials were missing or refused. Requests with a streamed body are made only after a
//! body-less request of the same operation has settled authentication.
//!
//! Redirects are followed by the HTTP client, which drops `Authorization` when the host
//! changes. Manifests are limited to 4 MiB and checked against `Content-Type`, the digest
//! asked for, and `Docker-Content-Digest`.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::{Method, StatusCode, header};
use strata_types::Digest;
use tokio::sync::Mutex;
use tracing::debug;

use crate::{
    RegistryError,
    auth::{Challenge, Credentials, parse_challenges},
};

/// Largest manifest accepted (distribution.md §5.5).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The Accept header containerd and BuildKit send for manifests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Use plain HTTP (also the default for loopback hosts).
    pub insecure: bool,
    /// Credentials (default: looked up in the credentials files).
    pub credentials: Option<Credentials>,
    /// Extra repositories to ask `pull` access for (cross-repository mounts).
    pub mount_from: Vec<String>,
}

/// A fetched manifest or index.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Exact bytes.
    pub bytes: Vec<u8>,
    /// Its media type (from the body's `mediaType`, else `Content-Type`).
    pub media_type: String,
    /// sha256 of the bytes.
    pub digest: Digest,
}

#[derive(Default)]
struct AuthState {
    /// The `Authorization` value to send, once known.
    header: Option<String>,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the header is `Basic base64(user:password)` or a bearer token: never print it
        // (tokio's Mutex shows its content in a derived Debug of `Registry`)
        f.debug_struct("AuthState")
            .field("header", &self.header.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A client for one repository of one registry.
#[derive(Debug, Clone)]
pub struct Registry {
    http: reqwest::Client,
    base: String,
    host: String,
    repository: String,
    actions: String,
    options: ClientOptions,
    auth: Arc<Mutex<AuthState>>,
    /// Set once the registry refused a streamed PATCH: later uploads go in chunks at once.
    chunked_only: Arc<AtomicBool>,
    /// The credential helper Docker's config.json names for this registry, when no
    /// credentials were found (strata runs none; errors say so).
    helper: Option<String>,
}

/// Whether `host` (`name[:port]`) is this machine, where plain HTTP is the default
/// (host names are case-insensitive: `LOCALHOST:5000` is loopback too).
fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    name.eq_ignore_ascii_case("localhost") || name.starts_with("127.") || name == "[::1]"
}

/// Turns Docker Hub's name into its API host.
pub fn api_host(registry: &str) -> &str {
    if registry.eq_ignore_ascii_case("docker.io")
        || registry.eq_ignore_ascii_case("index.docker.io")
    {
        "registry-1.docker.io"
    } else {
        registry
    }
}

impl Registry {
    /// A client for `registry` (`host[:port]`) / `repository`, for `push` (pull and push
    /// scopes) or pull only.
    pub fn new(
        registry: &str,
        repository: &str,
        push: bool,
        mut options: ClientOptions,
    ) -> Result<Self, RegistryError> {
        // host names are case-insensitive; the URL lower-cases them anyway
        let host = api_host(registry).to_ascii_lowercase();
        let scheme = if options.insecure || is_loopback(&host) {
            "http"
        } else {
            "https"
        };
        let mut helper = None;
        if options.credentials.is_none() {
            options.credentials = crate::auth::lookup(registry);
            if options.credentials.is_none() {
                helper = crate::auth::credential_helper(registry);
            }
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(10))
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| RegistryError::Http {
                context: "failed to set up the HTTP client".into(),
                error: e,
            })?;
        Ok(Self {
            http,
            base: format!("{scheme}://{host}"),
            host,
            repository: repository.to_string(),
            actions: if push {
                "pull,push".into()
            } else {
                "pull".into()
            },
            options,
            auth: Arc::default(),
            chunked_only: Arc::default(),
            helper,
        })
    }

    /// The registry host as contacted.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository path.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// Resolves an upload `Location` (absolute or relative) against the registry.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    fn scopes(&self) -> Vec<String> {
        let mut s = vec![format!("repository:{}:{}", self.repository, self.actions)];
        for from in &self.options.mount_from {
            s.push(format!("repository:{from}:pull"));
        }
        s
    }

    /// What a user without credentials for this registry should do.
    fn login_hint(&self) -> String {
        match &self.helper {
            Some(helper) => format!(
                "Docker's config.json leaves {host}'s credentials to the credential helper docker-credential-{helper}, and credential helpers are not supported: run `strata login {host}`",
                host = self.host
            ),
            None => format!("run `strata login {}`", self.host),
        }
    }

    /// Answers a 401: works out a new `Authorization` value from the challenge.
    async fn authenticate(
        &self,
        response: &reqwest::Response,
        context: &str,
    ) -> Result<(), RegistryError> {
        let challenges: Vec<Challenge> = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let unauthorized = |reason: String| RegistryError::Unauthorized {
            context: context.to_string(),
            reason,
        };
        let creds = self.options.credentials.as_ref();
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer
                .params
                .get("realm")
                .ok_or_else(|| unauthorized("bearer challenge without a realm".into()))?;
            let mut query: Vec<(String, String)> = Vec::new();
            if let Some(service) = bearer.params.get("service") {
                query.push(("service".into(), service.clone()));
            }
            let mut scopes = self.scopes();
            if let Some(s) = bearer.params.get("scope") {
                for one in s.split(' ') {
                    if !one.is_empty() && !scopes.iter().any(|x| x == one) {
                        scopes.push(one.to_string());
                    }
                }
            }
            for s in scopes {
                query.push(("scope".into(), s));
            }
            if let Some(c) = creds {
                query.push(("account".into(), c.username.clone()));
            }
            let mut req = self.http.get(realm).query(&query);
            if let Some(c) = creds {
                req = req.header(header::AUTHORIZATION, c.basic_header());
            }
            let r = req.send().await.map_err(|e| RegistryError::Http {
                context: format!("{context}: token request to {realm}"),
                error: e,
            })?;
            if r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::FORBIDDEN {
                return Err(unauthorized(if creds.is_some() {
                    format!(
                        "the token server {realm} refused the credentials for {}",
                        self.host
                    )
                } else {
                    format!(
                        "the token server {realm} requires credentials: {}",
                        self.login_hint()
                    )
                }));
            }
            if !r.status().is_success() {
                return Err(unauthorized(format!(
                    "the token server {realm} answered {}",
                    r.status()
                )));
            }
            #[derive(serde::Deserialize)]
            struct Token {
                token: Option<String>,
                access_token: Option<String>,
            }
            let body = r.bytes().await.map_err(|e| RegistryError::Http {
                context: format!("{context}: token"),
                error: e,
            })?;
            let t: Token = serde_json::from_slice(&body)
                .map_err(|e| unauthorized(format!("invalid token response: {e}")))?;
            let token = t
                .token
                .or(t.access_token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| unauthorized("token response without a token".into()))?;
            self.auth.lock().await.header = Some(format!("Bearer {token}"));
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(c) = creds else {
                return Err(unauthorized(format!(
                    "{} requires credentials: {}",
                    self.host,
                    self.login_hint()
                )));
            };
            let mut state = self.auth.lock().await;
            let header = c.basic_header();
            if state.header.as_deref() == Some(header.as_str()) {
                return Err(unauthorized(format!(
                    "{} refused the credentials of user {:?}",
                    self.host, c.username
                )));
            }
            state.header = Some(header);
            return Ok(());
        }
        Err(unauthorized(format!(
            "{} answered 401 without a usable challenge",
            self.host
        )))
    }

    /// Sends a body-less (or small, replayable) request, authenticating once on 401, and
    /// sending it again on an answer that asks for that ([`RETRIED`]).
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        body: Option<Bytes>,
        context: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut authenticated_once = false;
        let mut retries = 0;
        loop {
            let mut req = self.http.request(method.clone(), url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            if let Some(h) = self.auth.lock().await.header.clone() {
                req = req.header(header::AUTHORIZATION, h);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            } else if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                req = req.header(header::CONTENT_LENGTH, "0");
            }
            let r = req.send().await.map_err(|e| RegistryError::Http {
                context: context.to_string(),
                error: e,
            })?;
            let asked = retry_after(&r);
            if RETRIED.contains(&r.status())
                && retries < RETRIES
                && asked.is_none_or(|w| w <= MAX_RETRY_AFTER)
            {
                let wait = asked.unwrap_or(BACKOFF * 2u32.pow(retries));
                tracing::warn!(
                    status = r.status().as_u16(),
                    wait_ms = wait.as_millis() as u64,
                    attempt = retries + 2,
                    "{context}: the registry asked to try again later"
                );
                tokio::time::sleep(wait).await;
                retries += 1;
                continue;
            }
            if r.status() != StatusCode::UNAUTHORIZED {
                return Ok(r);
            }
            if authenticated_once {
                let creds = self.options.credentials.is_some();
                return Err(RegistryError::Unauthorized {
                    context: context.to_string(),
                    reason: if creds {
                        format!(
                            "{} refused the credentials (wrong password, or no {} access to {})",
                            self.host, self.actions, self.repository
                        )
                    } else {
                        format!("{} requires credentials: {}", self.host, self.login_hint())
                    },
                });
            }
            self.authenticate(&r, context).await?;
            authenticated_once = true;
        }
    }

    /// `GET /v2/`: checks the API is there and settles authentication.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base);
        let r = self
            .send(
                Method::GET,
                &url,
                &[],
                None,
                &format!("failed to reach {}", self.host),
            )
            .await?;
        expect(
            r,
            &[StatusCode::OK],
            &format!("{} does not speak the registry API", self.host),
        )
        .await
        .map(drop)
    }

    /// Fetches a manifest or index by tag or digest, verified.
    pub async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, RegistryError> {
        let context = format!(
            "failed to fetch manifest {}{}{reference} from {}",
            self.repository,
            reference_separator(reference),
            self.host
        );
        let r = self
            .send(
                Method::GET,
                &self.url(&format!("manifests/{reference}")),
                &[(header::ACCEPT, MANIFEST_ACCEPT.to_string())],
                None,
                &context,
            )
            .await?;
        let r = expect(r, &[StatusCode::OK], &context).await?;
        let content_type = r
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let header_digest = r
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if r.content_length()
            .is_some_and(|n| n as usize > MAX_MANIFEST_BYTES)
        {
            return Err(protocol(
                &context,
                format!(
                    "manifest is {} bytes, more than 4 MiB",
                    r.content_length().unwrap_or(0)
                ),
            ));
        }
        let mut bytes = Vec::new();
        let mut r = r;
        while let Some(chunk) = r.chunk().await.map_err(|e| RegistryError::Http {
            context: context.clone(),
            error: e,
        })? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_MANIFEST_BYTES {
                return Err(protocol(&context, "manifest is more than 4 MiB"));
            }
        }
        let digest = Digest::of(&bytes);
        if reference.starts_with("sha256:") && reference != digest.to_string() {
            return Err(protocol(
                &context,
                format!("content hashes to {digest}, not the digest asked for"),
            ));
        }
        if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:"))
            && h != digest.to_string()
        {
            return Err(protocol(
                &context,
                format!("Docker-Content-Digest {h} does not match the content ({digest})"),
            ));
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<String>,
            schema_version: Option<u32>,
        }
        let probe: Probe = serde_json::from_slice(&bytes)
            .map_err(|e| protocol(&context, format!("manifest is not JSON: {e}")))?;
        if probe.schema_version == Some(1)
            || content_type.contains("prettyjws")
            || content_type == "application/vnd.docker.distribution.manifest.v1+json"
        {
            return Err(protocol(
                &context,
                "Docker schema 1 manifests are not supported (push the image again with a current client)",
            ));
        }
        let media_type = match probe.media_type {
            Some(body_type) => {
                if !content_type.is_empty()
                    && content_type != body_type
                    && content_type != "application/json"
                {
                    return Err(protocol(
                        &context,
                        format!(
                            "Content-Type {content_type:?} disagrees with the manifest's mediaType {body_type:?}"
                        ),
                    ));
                }
                body_type
            }
            None => content_type,
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `HEAD` a blob: its size when the registry has it.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let context = format!(
            "failed to check blob {digest} in {}/{}",
            self.host, self.repository
        );
        let r = self
            .send(
                Method::HEAD,
                &self.url(&format!("blobs/{digest}")),
                &[],
                None,
                &context,
            )
            .await?;
        match r.status() {
            StatusCode::OK => Ok(Some(r.content_length().unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => expect(r, &[], &context).await.map(|_| None),
        }
    }

    /// `GET` a blob: the response, to be streamed (and verified) by the caller.
    pub async fn get_blob(&self, digest: &Digest) -> Result<reqwest::Response, RegistryError> {
        let context = format!(
            "failed to fetch blob {digest} from {}/{}",
            self.host, self.repository
        );
        let r = self
            .send(
                Method::GET,
                &self.url(&format!("blobs/{digest}")),
                &[],
                None,
                &context,
            )
            .await?;
        expect(r, &[StatusCode::OK], &context).await
    }

    /// Fetches a small blob (a config) into memory, verified.
    pub async fn get_small_blob(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let context = format!(
            "failed to fetch blob {digest} from {}/{}",
            self.host, self.repository
        );
        let mut r = self.get_blob(digest).await?;
        let mut out = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| RegistryError::Http {
            context: context.clone(),
            error: e,
        })? {
            out.extend_from_slice(&chunk);
            if out.len() > limit {
                return Err(protocol(
                    &context,
                    format!("blob is more than {limit} bytes"),
                ));
            }
        }
        let actual = Digest::of(&out);
        if actual != *digest {
            return Err(protocol(&context, format!("content hashes to {actual}")));
        }
        Ok(out)
    }

    /// Tries a cross-repository mount; true when the registry mounted it (201).
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool, RegistryError> {
        let context = format!(
            "failed to mount {digest} from {from} into {}",
            self.repository
        );
        let url = format!(
            "{}/v2/{}/blobs/uploads/?mount={digest}&from={from}",
            self.base, self.repository
        );
        let r = self.send(Method::POST, &url, &[], None, &context).await?;
        match r.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // an upload session was opened instead: cancel it
                if let Some(loc) = location(&r) {
                    let _ = self
                        .send(Method::DELETE, &self.absolute(&loc), &[], None, &context)
                        .await;
                }
                Ok(false)
            }
            _ => expect(r, &[], &context).await.map(|_| false),
        }
    }

    /// Opens an upload session: its absolute location and the registry's
    /// `OCI-Chunk-Min-Length`, if it sent one.
    async fn start_upload(&self, context: &str) -> Result<Upload, RegistryError> {
        let r = self
            .send(
                Method::POST,
                &self.url("blobs/uploads/"),
                &[],
                None,
                context,
            )
            .await?;
        let r = expect(r, &[StatusCode::ACCEPTED], context).await?;
        let loc =
            location(&r).ok_or_else(|| protocol(context, "upload started without a Location"))?;
        let min_chunk = r
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        Ok(Upload {
            location: self.absolute(&loc),
            min_chunk,
        })
    }

    /// `DELETE <location>`: cancels an abandoned upload (distribution.md §5.3), best effort —
    /// its own failure is ignored, the error that made us abandon it is what matters.
    async fn cancel_upload(&self, location: &str, context: &str) {
        if let Err(e) = self
            .send(Method::DELETE, location, &[], None, context)
            .await
        {
            debug!(location, error = %e, "cancelling an abandoned upload failed");
        }
    }

    /// Runs an upload's steps from an open session; on failure cancels the session at the
    /// location it had reached and returns the failure.
    async fn or_cancel<T>(
        &self,
        location: &mut String,
        context: &str,
        steps: impl AsyncFnOnce(&mut String) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        match steps(location).await {
            Ok(v) => Ok(v),
            Err(e) => {
                self.cancel_upload(location, context).await;
                Err(e)
            }
        }
    }

    fn with_digest(location: &str, digest: &Digest) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }

    /// The closing `PUT <location>?digest=` of an upload whose bytes are all sent.
    async fn finish_upload(
        &self,
        location: &str,
        digest: &Digest,
        context: &str,
    ) -> Result<(), RegistryError> {
        let r = self
            .send(
                Method::PUT,
                &Self::with_digest(location, digest),
                &[],
                None,
                context,
            )
            .await?;
        expect(r, &[StatusCode::CREATED], context).await.map(drop)
    }

    /// Monolithic upload of a blob held in memory (POST, then PUT `?digest=`).
    pub async fn upload_bytes(&self, digest: &Digest, bytes: Bytes) -> Result<(), RegistryError> {
        let context = format!(
            "failed to upload {digest} to {}/{}",
            self.host, self.repository
        );
        let mut upload = self.start_upload(&context).await?;
        self.or_cancel(&mut upload.location, &context, async |loc: &mut String| {
            let r = self
                .send(
                    Method::PUT,
                    &Self::with_digest(loc, digest),
                    &[(header::CONTENT_TYPE, "application/octet-stream".into())],
                    Some(bytes),
                    &context,
                )
                .await?;
            expect(r, &[StatusCode::CREATED], &context).await.map(drop)
        })
        .await
    }

    /// Upload of a blob whose digest is known only at the end, produced by `produce` while
    /// it is sent (a layer compressed on the fly).
    ///
    /// The fast path is one PATCH carrying the whole stream without `Content-Range` (a
    /// "streamed" upload, as docker/distribution's client sends), then the closing PUT with
    /// the digest the producer computed. A registry that refuses that PATCH (400, 411, 413,
    /// 416, 405 or 501: some require `Content-Range`) gets the blob again in chunks: the
    /// session is cancelled, `produce` is called a second time (it must give the same bytes)
    /// and the bytes go in PATCHes of [`CHUNK`] bytes (at least the registry's
    /// `OCI-Chunk-Min-Length`) with `Content-Range` and `Content-Length`, following each
    /// `Location`, resuming from the registry's `Range` after a 416; this client then
    /// uploads that registry's later blobs in chunks straight away. An upload abandoned for
    /// any reason is cancelled with `DELETE <location>`.
    pub async fn upload_stream<P>(&self, produce: P) -> Result<Digest, RegistryError>
    where
        P: Fn() -> BlobStream,
    {
        let context = format!(
            "failed to upload a blob to {}/{}",
            self.host, self.repository
        );
        if !self.chunked_only.load(Ordering::Relaxed) {
            let mut upload = self.start_upload(&context).await?;
            let source = produce();
            let patched = self
                .or_cancel(&mut upload.location, &context, async |loc: &mut String| {
                    let mut req = self
                        .http
                        .patch(loc.as_str())
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .body(reqwest::Body::wrap_stream(source.chunks));
                    if let Some(h) = self.auth.lock().await.header.clone() {
                        req = req.header(header::AUTHORIZATION, h);
                    }
                    let r = req.send().await.map_err(|e| RegistryError::Http {
                        context: context.clone(),
                        error: e,
                    })?;
                    if STREAM_REFUSED.contains(&r.status()) {
                        let status = r.status();
                        let refused = expect(r, &[], &context).await.err().unwrap_or_else(|| {
                            protocol(&context, format!("streamed PATCH refused: {status}"))
                        });
                        return Ok(Err(refused));
                    }
                    let r = expect(
                        r,
                        &[
                            StatusCode::ACCEPTED,
                            StatusCode::NO_CONTENT,
                            StatusCode::CREATED,
                        ],
                        &context,
                    )
                    .await?;
                    if let Some(l) = location(&r) {
                        *loc = self.absolute(&l);
                    }
                    let digest = source.digest.await?;
                    self.finish_upload(loc, &digest, &context).await?;
                    Ok(Ok(digest))
                })
                .await?;
            match patched {
                Ok(digest) => return Ok(digest),
                Err(refused) => {
                    debug!(error = %refused, "the registry refused a streamed PATCH: uploading in chunks");
                    self.cancel_upload(&upload.location, &context).await;
                    self.chunked_only.store(true, Ordering::Relaxed);
                }
            }
        }
        let mut upload = self.start_upload(&context).await?;
        let chunk = upload.min_chunk.unwrap_or(0).max(CHUNK);
        let source = produce();
        self.or_cancel(&mut upload.location, &context, async |loc: &mut String| {
            let mut chunks = source.chunks;
            let mut pending = BytesMut::new();
            let mut offset = 0u64;
            loop {
                let next = chunks
                    .next()
                    .await
                    .transpose()
                    .map_err(|e| RegistryError::Io {
                        context: context.clone(),
                        error: e,
                    })?;
                if let Some(bytes) = &next {
                    pending.extend_from_slice(bytes);
                }
                while pending.len() >= chunk || (next.is_none() && !pending.is_empty()) {
                    let n = pending.len().min(chunk);
                    let piece = pending.split_to(n).freeze();
                    self.patch_chunk(loc, offset, piece, &context).await?;
                    offset += n as u64;
                }
                if next.is_none() {
                    break;
                }
            }
            let digest = source.digest.await?;
            self.finish_upload(loc, &digest, &context).await?;
            Ok(digest)
        })
        .await
    }

    /// Sends `piece`, the blob's bytes from `offset`, as PATCHes with `Content-Range`,
    /// following each `Location`. After a 416 the registry's `GET <location>` `Range` says
    /// how much it holds, and the rest of the piece is sent from there (a few times at most).
    async fn patch_chunk(
        &self,
        loc: &mut String,
        offset: u64,
        piece: Bytes,
        context: &str,
    ) -> Result<(), RegistryError> {
        let end = offset + piece.len() as u64;
        let mut from = offset;
        let mut recoveries = 0;
        while from < end {
            let part = piece.slice((from - offset) as usize..);
            let r = self
                .send(
                    Method::PATCH,
                    loc,
                    &[
                        (header::CONTENT_TYPE, "application/octet-stream".into()),
                        (header::CONTENT_RANGE, format!("{from}-{}", end - 1)),
                        (header::CONTENT_LENGTH, part.len().to_string()),
                    ],
                    Some(part),
                    context,
                )
                .await?;
            if r.status() == StatusCode::RANGE_NOT_SATISFIABLE && recoveries < 3 {
                recoveries += 1;
                if let Some(l) = location(&r) {
                    *loc = self.absolute(&l);
                }
                let held = self.upload_status(loc, context).await?;
                if held < offset || held > end {
                    return Err(protocol(
                        context,
                        format!(
                            "the registry holds {held} bytes of the upload after a 416; bytes {offset}-{} were being sent",
                            end - 1
                        ),
                    ));
                }
                from = held;
                continue;
            }
            let r = expect(r, &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT], context).await?;
            if let Some(l) = location(&r) {
                *loc = self.absolute(&l);
            }
            from = end;
        }
        Ok(())
    }

    /// `GET <location>` of an upload: how many bytes the registry holds (from `Range:
    /// 0-<last>`; distribution answers `0-0` for none as for one, read as none), following
    /// its `Location`.
    async fn upload_status(&self, loc: &mut String, context: &str) -> Result<u64, RegistryError> {
        let r = self.send(Method::GET, loc, &[], None, context).await?;
        let r = expect(r, &[StatusCode::NO_CONTENT, StatusCode::OK], context).await?;
        if let Some(l) = location(&r) {
            *loc = self.absolute(&l);
        }
        let range = r
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0-0");
        parse_upload_range(range)
            .ok_or_else(|| protocol(context, format!("upload status with a bad Range {range:?}")))
    }

    /// Chunked upload of a blob held in memory: PATCHes of `chunk` bytes with
    /// `Content-Range`, then the closing PUT.
    pub async fn upload_chunked(
        &self,
        digest: &Digest,
        bytes: Bytes,
        chunk: usize,
    ) -> Result<(), RegistryError> {
        let context = format!(
            "failed to upload {digest} to {}/{}",
            self.host, self.repository
        );
        let mut upload = self.start_upload(&context).await?;
        self.or_cancel(&mut upload.location, &context, async |loc: &mut String| {
            let mut offset = 0usize;
            while offset < bytes.len() {
                let end = (offset + chunk.max(1)).min(bytes.len());
                self.patch_chunk(loc, offset as u64, bytes.slice(offset..end), &context)
                    .await?;
                offset = end;
            }
            self.finish_upload(loc, digest, &context).await
        })
        .await
    }

    /// PUTs a manifest with `Content-Type` = its media type; checks the digest the registry
    /// reports.
    pub async fn put_manifest(
        &self,
        reference: &str,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let context = format!(
            "failed to push manifest {}{}{reference} to {}",
            self.repository,
            reference_separator(reference),
            self.host
        );
        let digest = Digest::of(&bytes);
        let r = self
            .send(
                Method::PUT,
                &self.url(&format!("manifests/{reference}")),
                &[(header::CONTENT_TYPE, media_type.to_string())],
                Some(Bytes::from(bytes)),
                &context,
            )
            .await?;
        let r = expect(r, &[StatusCode::CREATED, StatusCode::OK], &context).await?;
        if let Some(h) = r
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && h.starts_with("sha256:")
            && h != digest.to_string()
        {
            return Err(protocol(
                &context,
                format!("registry stored {h}, we sent {digest}"),
            ));
        }
        Ok(digest)
    }
}

/// The bytes of a blob produced while it is uploaded ([`Registry::upload_stream`]), and its
/// digest once they have all been produced.
pub struct BlobStream {
    /// The bytes, in pieces of any size.
    pub chunks: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
    /// The digest of all of them, ready when the stream has ended.
    pub digest: futures::future::BoxFuture<'static, Result<Digest, RegistryError>>,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobStream")
    }
}

/// An open upload session.
struct Upload {
    /// Where the next request of the upload goes (absolute).
    location: String,
    /// `OCI-Chunk-Min-Length`, when the registry sent it.
    min_chunk: Option<usize>,
}

/// Bytes per PATCH of a chunked upload (unless the registry asks for more).
pub const CHUNK: usize = 8 << 20;

/// Answers to a streamed PATCH (no `Content-Range`) that mean "not like that": the upload is
/// made again in chunks.
const STREAM_REFUSED: [StatusCode; 6] = [
    StatusCode::BAD_REQUEST,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::LENGTH_REQUIRED,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::RANGE_NOT_SATISFIABLE,
    StatusCode::NOT_IMPLEMENTED,
];

/// How many bytes an upload's `Range` (`0-<last>`, or `bytes=0-<last>`) says the registry
/// holds; `0-0` is read as none (distribution sends it before any byte).
fn parse_upload_range(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, last) = range.split_once('-')?;
    let (start, last): (u64, u64) = (start.trim().parse().ok()?, last.trim().parse().ok()?);
    if start != 0 {
        return None;
    }
    Some(if last == 0 { 0 } else { last + 1 })
}

fn location(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn protocol(context: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::Protocol {
        context: context.to_string(),
        reason: reason.into(),
    }
}

/// Answers after which a request is sent again, as Docker and containerd do: too many
/// requests (a rate limit), and a gateway or service that is unavailable for now. Nothing was
/// done with the request, so sending it again is safe for every method.
const RETRIED: [StatusCode; 4] = [
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];
/// How many times a request is sent again before its answer stands.
const RETRIES: u32 = 3;
/// The first wait when the registry names none; it doubles each time (0.5, 1, 2 s).
const BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);
/// The longest `Retry-After` honoured: a registry asking for more (a rate limit for the
/// hour) is answered with its error at once rather than a command that seems to hang.
const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// The wait a `Retry-After` header asks for in seconds (RFC 9110 §10.2.3); none for the
/// HTTP-date form, which gets the default backoff.
fn retry_after(r: &reqwest::Response) -> Option<std::time::Duration> {
    let secs: u64 = r
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(std::time::Duration::from_secs(secs))
}

/// How a manifest reference follows its repository in messages: `@` before a digest, `:`
/// before a tag (`app@sha256:…`, `app:1`).
fn reference_separator(reference: &str) -> char {
    if reference.contains(':') { '@' } else { ':' }
}

/// Passes a response with one of `ok` statuses; turns others into an error carrying the
/// registry's error codes (tolerating non-JSON bodies).
async fn expect(
    r: reqwest::Response,
    ok: &[StatusCode],
    context: &str,
) -> Result<reqwest::Response, RegistryError> {
    if ok.contains(&r.status()) {
        return Ok(r);
    }
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        code: String,
        #[serde(default)]
        message: Option<String>,
    }
    let detail = serde_json::from_slice::<Errors>(&body).ok().map(|e| {
        e.errors
            .iter()
            .map(|i| match &i.message {
                Some(m) => format!("{} ({m})", i.code),
                None => i.code.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    Err(RegistryError::Status {
        context: context.to_string(),
        status,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_known_whatever_their_case() {
        for host in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:5073",
            "LocalHost",
            "127.0.0.1:1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["localhost.example:5000", "reg.example", "10.0.0.1:5000"] {
            assert!(!is_loopback(host), "{host}");
        }
        let upper = Registry::new("LOCALHOST:5073", "x", false, ClientOptions::default()).unwrap();
        assert_eq!(upper.base, "http://localhost:5073");
        assert_eq!(upper.host(), "localhost:5073");
    }

    #[test]
    fn debug_never_prints_credentials_or_the_authorization_header() {
        let credentials = Credentials {
            username: "alice".into(),
            password: "s3cret-pass".into(),
        };
        let header = credentials.basic_header();
        let registry = Registry::new(
            "127.0.0.1:5000",
            "private/base",
            false,
            ClientOptions {
                credentials: Some(credentials),
                ..Default::default()
            },
        )
        .unwrap();
        registry.auth.try_lock().unwrap().header = Some(header.clone());
        let shown = format!("{registry:?}");
        assert!(!shown.contains("s3cret-pass"), "{shown}");
        let encoded = header.trim_start_matches("Basic ");
        assert!(!shown.contains(encoded), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
