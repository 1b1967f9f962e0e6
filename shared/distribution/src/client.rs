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

use std::sync::Arc;

use bytes::Bytes;
use reqwest::{Method, StatusCode, header};
use strata_types::Digest;
use tokio::sync::Mutex;

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
}

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

/// Turns Docker Hub's name into its API host.
pub fn api_host(registry: &str) -> &str {
    if registry == "docker.io" || registry == "index.docker.io" {
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
        let host = api_host(registry).to_string();
        let scheme = if options.insecure || is_loopback(&host) {
            "http"
        } else {
            "https"
        };
        if options.credentials.is_none() {
            options.credentials = crate::auth::lookup(registry);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(10))
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| RegistryError::Http {
                context: "failed to set up the HTTP client".into(),
                source: e,
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
                source: e,
            })?;
            if r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::FORBIDDEN {
                return Err(unauthorized(if creds.is_some() {
                    format!(
                        "the token server {realm} refused the credentials for {}",
                        self.host
                    )
                } else {
                    format!(
                        "the token server {realm} requires credentials: run `strata login {}`",
                        self.host
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
                source: e,
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
                    "{} requires credentials: run `strata login {}`",
                    self.host, self.host
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

    /// Sends a body-less (or small, replayable) request, authenticating once on 401.
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        body: Option<Bytes>,
        context: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut authenticated_once = false;
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
                source: e,
            })?;
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
                        format!(
                            "{} requires credentials: run `strata login {}`",
                            self.host, self.host
                        )
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
            "failed to fetch manifest {}:{reference} from {}",
            self.repository, self.host
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
            source: e,
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
            source: e,
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

    /// Opens an upload session; returns its absolute location.
    async fn start_upload(&self, context: &str) -> Result<String, RegistryError> {
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
        Ok(self.absolute(&loc))
    }

    fn with_digest(location: &str, digest: &Digest) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }

    /// Monolithic upload of a blob held in memory (POST, then PUT `?digest=`).
    pub async fn upload_bytes(&self, digest: &Digest, bytes: Bytes) -> Result<(), RegistryError> {
        let context = format!(
            "failed to upload {digest} to {}/{}",
            self.host, self.repository
        );
        let loc = self.start_upload(&context).await?;
        let r = self
            .send(
                Method::PUT,
                &Self::with_digest(&loc, digest),
                &[(header::CONTENT_TYPE, "application/octet-stream".into())],
                Some(bytes),
                &context,
            )
            .await?;
        expect(r, &[StatusCode::CREATED], &context).await.map(drop)
    }

    /// Streamed upload of a blob whose digest is known only at the end: one PATCH carrying
    /// the whole stream (no `Content-Range`, as docker/distribution's client does), then the
    /// closing PUT with the digest the caller computed while producing the stream.
    pub async fn upload_stream<F>(
        &self,
        body: reqwest::Body,
        digest_when_done: F,
    ) -> Result<Digest, RegistryError>
    where
        F: std::future::Future<Output = Result<Digest, RegistryError>>,
    {
        let context = format!(
            "failed to upload a blob to {}/{}",
            self.host, self.repository
        );
        let loc = self.start_upload(&context).await?;
        let mut req = self
            .http
            .patch(&loc)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(h) = self.auth.lock().await.header.clone() {
            req = req.header(header::AUTHORIZATION, h);
        }
        let r = req.send().await.map_err(|e| RegistryError::Http {
            context: context.clone(),
            source: e,
        })?;
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
        let digest = digest_when_done.await?;
        let loc = location(&r).map_or(loc, |l| self.absolute(&l));
        let r = self
            .send(
                Method::PUT,
                &Self::with_digest(&loc, &digest),
                &[],
                None,
                &context,
            )
            .await?;
        expect(r, &[StatusCode::CREATED], &context).await?;
        Ok(digest)
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
        let mut loc = self.start_upload(&context).await?;
        let mut offset = 0usize;
        while offset < bytes.len() {
            let end = (offset + chunk.max(1)).min(bytes.len());
            let r = self
                .send(
                    Method::PATCH,
                    &loc,
                    &[
                        (header::CONTENT_TYPE, "application/octet-stream".into()),
                        (header::CONTENT_RANGE, format!("{offset}-{}", end - 1)),
                    ],
                    Some(bytes.slice(offset..end)),
                    &context,
                )
                .await?;
            let r = expect(r, &[StatusCode::ACCEPTED], &context).await?;
            if let Some(l) = location(&r) {
                loc = self.absolute(&l);
            }
            offset = end;
        }
        let r = self
            .send(
                Method::PUT,
                &Self::with_digest(&loc, digest),
                &[],
                None,
                &context,
            )
            .await?;
        expect(r, &[StatusCode::CREATED], &context).await.map(drop)
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
            "failed to push manifest {}:{reference} to {}",
            self.repository, self.host
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
