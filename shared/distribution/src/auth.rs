//! Credentials and challenges: `WWW-Authenticate` parsing (RFC 7235), the credentials file
//! (`~/.docker/config.json` shape), and strata's own file written by `strata login`.

use std::{collections::BTreeMap, path::PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::RegistryError;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or personal access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print secrets
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `Basic base64(user:password)`.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercase (`basic`, `bearer`).
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`, `error`), keys lowercase.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value: one or more challenges, parameters possibly quoted
/// with `\` escapes.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let s = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t' || s[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= s.len() {
            break;
        }
        // a token: either a scheme (followed by space or end) or a parameter name (followed by '=')
        let start = i;
        while i < s.len() && !matches!(s[i], b' ' | b'\t' | b',' | b'=') {
            i += 1;
        }
        let token = header[start..i].to_string();
        let mut j = i;
        while j < s.len() && s[j] == b' ' {
            j += 1;
        }
        if j < s.len() && s[j] == b'=' && !out.is_empty() {
            i = j + 1;
            while i < s.len() && s[i] == b' ' {
                i += 1;
            }
            let value = if i < s.len() && s[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    let ch_len = header[i..].chars().next().map_or(1, char::len_utf8);
                    v.push_str(&header[i..i + ch_len]);
                    i += ch_len;
                }
                i += 1;
                v
            } else {
                let vs = i;
                while i < s.len() && s[i] != b',' {
                    i += 1;
                }
                header[vs..i].trim().to_string()
            };
            if let Some(last) = out.last_mut() {
                last.params.insert(token.to_ascii_lowercase(), value);
            }
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

/// The file `strata login` writes: `$STRATA_AUTH_FILE`, else `~/.config/strata/auth.json`.
pub fn strata_auth_file() -> PathBuf {
    std::env::var_os("STRATA_AUTH_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::config_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join("strata")
                .join("auth.json")
        })
}

/// Docker's credentials file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_file() -> PathBuf {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::home_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".docker")
        })
        .join("config.json")
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// The key a registry has in credentials files (Docker Hub's is historical); host names
/// are case-insensitive, so the key is lower-case.
pub fn auth_key(registry: &str) -> String {
    let registry = registry.to_ascii_lowercase();
    if registry == "docker.io"
        || registry == "index.docker.io"
        || registry == "registry-1.docker.io"
    {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry
    }
}

fn read_file(path: &std::path::Path) -> Option<AuthFile> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn entry_credentials(entry: &AuthEntry) -> Option<Credentials> {
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.as_deref()?.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (u, p) = raw.split_once(':')?;
    Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    })
}

/// The host a credentials-file key names, as docker/cli's `ConvertToHostname` reads it: the
/// scheme stripped, then everything from the first `/` on (`https://host:5000/v1/` and
/// `host:5000/v2/` both name `host:5000`).
pub fn key_hostname(key: &str) -> &str {
    let key = key.trim();
    let key = key
        .strip_prefix("http://")
        .or_else(|| key.strip_prefix("https://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// Whether a credentials-file key names `registry` (host names compare case-insensitively).
fn key_names(key: &str, registry: &str) -> bool {
    key_hostname(key).eq_ignore_ascii_case(key_hostname(&auth_key(registry)))
}

/// Credentials for a registry: strata's own file first, then Docker's config.json (keys with
/// or without a scheme or a path match, as Docker matches them).
pub fn lookup(registry: &str) -> Option<Credentials> {
    lookup_in(&[strata_auth_file(), docker_config_file()], registry)
}

/// Credentials for a registry from the first of `files` that has them.
pub fn lookup_in(files: &[PathBuf], registry: &str) -> Option<Credentials> {
    let key = auth_key(registry);
    for path in files {
        let Some(file) = read_file(path) else {
            continue;
        };
        // the exact key first, then any key naming the same host
        let exact = file.auths.get(&key).and_then(entry_credentials);
        let found = exact.or_else(|| {
            file.auths
                .iter()
                .filter(|(k, _)| key_names(k, registry))
                .find_map(|(_, entry)| entry_credentials(entry))
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The credential helper Docker's config.json hands `registry` to (`credHelpers`, else
/// `credsStore`), which strata does not run (distribution.md §7.5): errors name it, so a
/// user knows why the credentials Docker uses are not found.
pub fn credential_helper(registry: &str) -> Option<String> {
    credential_helper_in(&docker_config_file(), registry)
}

/// [`credential_helper`] from the file at `path`.
pub fn credential_helper_in(path: &std::path::Path, registry: &str) -> Option<String> {
    let file = read_file(path)?;
    let helpers = file.rest.get("credHelpers").and_then(|v| v.as_object());
    let named = helpers.into_iter().flatten().find_map(|(k, v)| {
        key_names(k, registry)
            .then(|| v.as_str().map(str::to_string))
            .flatten()
    });
    named
        .or_else(|| {
            file.rest
                .get("credsStore")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .filter(|h| !h.trim().is_empty())
}

/// Saves credentials to strata's file (mode 0600), keeping other entries.
pub fn store(registry: &str, credentials: &Credentials) -> Result<PathBuf, RegistryError> {
    store_in(strata_auth_file(), registry, credentials)
}

/// Saves credentials to `path` (mode 0600), keeping other entries.
pub fn store_in(
    path: PathBuf,
    registry: &str,
    credentials: &Credentials,
) -> Result<PathBuf, RegistryError> {
    let mut file = read_file(&path).unwrap_or_default();
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.username, credentials.password));
    file.auths.insert(
        auth_key(registry),
        AuthEntry {
            auth: Some(auth),
            ..Default::default()
        },
    );
    let io = |e| RegistryError::Io {
        context: format!("failed to write {}", path.display()),
        error: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
    let tmp = path.with_extension("tmp");
    {
        use std::{io::Write, os::unix::fs::OpenOptionsExt};
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// Removes a registry's credentials from strata's file; true when there were any.
pub fn remove(registry: &str) -> Result<bool, RegistryError> {
    remove_in(&strata_auth_file(), registry)
}

/// Removes a registry's credentials from `path`; true when there were any.
pub fn remove_in(path: &std::path::Path, registry: &str) -> Result<bool, RegistryError> {
    let Some(mut file) = read_file(path) else {
        return Ok(false);
    };
    let removed = file.auths.remove(&auth_key(registry)).is_some();
    if removed {
        let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        std::fs::write(path, bytes).map_err(|e| RegistryError::Io {
            context: format!("failed to write {}", path.display()),
            error: e,
        })?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_like_rfc7235() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["scope"], "repository:samalba/my-app:pull,push");
        let c = parse_challenges(
            r#"Basic realm="Registry \"Realm\"", Bearer realm=x,error=insufficient_scope"#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].params["realm"], "Registry \"Realm\"");
        assert_eq!(c[1].params["realm"], "x");
        assert_eq!(c[1].params["error"], "insufficient_scope");
    }

    #[test]
    fn credentials_round_trip_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("auth.json");
        let docker = dir.path().join("config.json");
        let files = [ours.clone(), docker.clone()];
        let c = Credentials {
            username: "u".into(),
            password: "s3cret".into(),
        };
        store_in(ours.clone(), "localhost:5000", &c).unwrap();
        assert_eq!(lookup_in(&files, "localhost:5000"), Some(c.clone()));
        assert!(!format!("{c:?}").contains("s3cret"));
        std::fs::write(&docker, br#"{"auths":{"https://index.docker.io/v1/":{"auth":"YTpi"},"http://127.0.0.1:5000/":{"username":"x","password":"y"}}}"#).unwrap();
        assert_eq!(
            lookup_in(&files, "docker.io"),
            Some(Credentials {
                username: "a".into(),
                password: "b".into()
            })
        );
        assert_eq!(lookup_in(&files, "127.0.0.1:5000").unwrap().username, "x");
        assert!(remove_in(&ours, "localhost:5000").unwrap());
        assert_eq!(lookup_in(&files, "localhost:5000"), None);
    }

    #[test]
    fn keys_with_a_path_or_capitals_name_their_host_as_in_docker() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            br#"{"auths":{"https://reg.example:5078/v1/":{"auth":"YTpi"},"other.example:5000/v2/":{"username":"o","password":"p"},"Caps.Example":{"username":"c","password":"p"}}}"#,
        )
        .unwrap();
        let files = [docker];
        assert_eq!(lookup_in(&files, "reg.example:5078").unwrap().username, "a");
        assert_eq!(
            lookup_in(&files, "other.example:5000").unwrap().username,
            "o"
        );
        assert_eq!(lookup_in(&files, "caps.example").unwrap().username, "c");
        assert_eq!(lookup_in(&files, "REG.example:5078").unwrap().username, "a");
        assert_eq!(lookup_in(&files, "reg.example"), None);
        assert_eq!(lookup_in(&files, "reg.example:5079"), None);
        assert_eq!(
            key_hostname("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(key_hostname("localhost:5078/v2/"), "localhost:5078");
        assert_eq!(key_hostname("localhost:5078"), "localhost:5078");
    }

    #[test]
    fn credential_helpers_are_named_for_their_registry() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            br#"{"auths":{},"credHelpers":{"https://reg.example:5000/v2/":"gcloud"}}"#,
        )
        .unwrap();
        assert_eq!(
            credential_helper_in(&docker, "reg.example:5000").as_deref(),
            Some("gcloud")
        );
        assert_eq!(credential_helper_in(&docker, "other.example"), None);
        std::fs::write(
            &docker,
            br#"{"credsStore":"desktop","credHelpers":{"reg.example:5000":"gcloud"}}"#,
        )
        .unwrap();
        assert_eq!(
            credential_helper_in(&docker, "other.example").as_deref(),
            Some("desktop")
        );
        assert_eq!(
            credential_helper_in(&docker, "reg.example:5000").as_deref(),
            Some("gcloud")
        );
        assert_eq!(credential_helper_in(&dir.path().join("none"), "x"), None);
    }
}
