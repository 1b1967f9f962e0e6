//! Image references in Docker's grammar: `[registry[:port]/]path[:tag][@digest]`.
//!
//! Parsing normalises the way Docker does: `busybox` is `docker.io/library/busybox:latest`,
//! `index.docker.io` is `docker.io`, a missing tag is `latest` (unless a digest is given).
//! [`Reference::familiar`] gives the short form Docker prints (`busybox:latest`).

use std::{fmt, str::FromStr};

use crate::digest::{Digest, DigestError};

/// The registry Docker assumes when a name has none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag Docker assumes when a name has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_REGISTRY: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a reference was rejected; each names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty input.
    #[error("invalid reference: empty name")]
    Empty,
    /// Uppercase letters in the repository path.
    #[error("invalid reference {0:?}: repository name must be lowercase")]
    Uppercase(String),
    /// A path component that breaks the grammar.
    #[error(
        "invalid reference {value:?}: invalid repository path component {component:?} (allowed: lowercase letters, digits, and single '.', '_', '__' or '-' runs between them)"
    )]
    BadPathComponent {
        /// The whole reference.
        value: String,
        /// The offending component.
        component: String,
    },
    /// A bad registry host or port.
    #[error("invalid reference {value:?}: invalid registry {registry:?}")]
    BadRegistry {
        /// The whole reference.
        value: String,
        /// The registry part.
        registry: String,
    },
    /// A bad tag.
    #[error(
        "invalid reference {value:?}: invalid tag {tag:?} (1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-')"
    )]
    BadTag {
        /// The whole reference.
        value: String,
        /// The tag part.
        tag: String,
    },
    /// A bad digest.
    /// (The message ends with the digest's error, so it is not also the `source()`: a chain
    /// printer would say it twice.)
    #[error("invalid reference {value:?}: {error}")]
    BadDigest {
        /// The whole reference.
        value: String,
        /// What is wrong with the digest.
        error: DigestError,
    },
    /// Name over 255 characters.
    #[error("invalid reference: repository name is {0} characters, more than 255")]
    TooLong(usize),
    /// A name that is 64 hex characters: Docker reserves those for image ids.
    #[error(
        "invalid reference {0:?}: a repository name cannot be 64 hexadecimal characters (that is an image id)"
    )]
    HexName(String),
    /// A digest where a tag is required, or vice versa.
    #[error("invalid reference {value:?}: {reason}")]
    Unexpected {
        /// The whole reference.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
}

impl Reference {
    /// Parses and normalises a reference as `docker pull` would accept it.
    pub fn parse(value: &str) -> Result<Self, ReferenceError> {
        let (registry, repository, tag, digest) = Self::parse_parts(value)?;
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Parses a bare repository (`busybox`, `localhost:5000/app`), normalised, with neither
    /// tag nor digest; the result carries no tag.
    pub fn parse_repository(value: &str) -> Result<Self, ReferenceError> {
        let (registry, repository, tag, digest) = Self::parse_parts(value)?;
        if tag.is_some() || digest.is_some() {
            return Err(ReferenceError::Unexpected {
                value: crate::clip(value),
                reason: "a repository cannot carry a tag or digest",
            });
        }
        Ok(Self {
            registry,
            repository,
            tag: None,
            digest: None,
        })
    }

    /// Splits and validates: (registry, repository, tag as written, digest), normalised but
    /// without the default tag.
    fn parse_parts(
        value: &str,
    ) -> Result<(String, String, Option<String>, Option<Digest>), ReferenceError> {
        if value.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if value.len() == 64
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReferenceError::HexName(crate::clip(value)));
        }
        let (rest, digest) = match value.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|error| ReferenceError::BadDigest {
                    value: crate::clip(value),
                    error,
                })?;
                (rest, Some(digest))
            }
            None => (value, None),
        };
        // The tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::BadTag {
                value: crate::clip(value),
                tag: crate::clip(tag),
            });
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(name.len()));
        }
        let (registry, path) = split_registry(name);
        if let Some(registry) = registry
            && !valid_registry(registry)
        {
            return Err(ReferenceError::BadRegistry {
                value: crate::clip(value),
                registry: crate::clip(registry),
            });
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(crate::clip(value)));
        }
        for component in path.split('/') {
            if !valid_path_component(component) {
                return Err(ReferenceError::BadPathComponent {
                    value: crate::clip(value),
                    component: crate::clip(component),
                });
            }
        }
        let registry = match registry {
            None | Some(LEGACY_REGISTRY) => DEFAULT_REGISTRY.to_string(),
            Some(r) => r.to_string(),
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_string()
        };
        // as Docker measures it: the full name, `docker.io/library/` included, so that every
        // name accepted here can be stored and parsed again in full
        let full = registry.len() + 1 + repository.len();
        if full > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(full));
        }
        Ok((registry, repository, tag.map(str::to_string), digest))
    }

    /// Parses a reference that must name a tag (no digest), as `strata tag` targets must.
    pub fn parse_tag(value: &str) -> Result<Self, ReferenceError> {
        let r = Self::parse(value)?;
        if r.digest.is_some() {
            return Err(ReferenceError::Unexpected {
                value: crate::clip(value),
                reason: "a tag cannot contain a digest",
            });
        }
        Ok(r)
    }

    /// Builds a tagged reference from parts that are already valid and normalised.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        Self::parse(&format!("{}/{}:{tag}", self.registry, self.repository))
    }

    /// The registry host (and port), e.g. `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (always present unless a digest was given alone).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository` in full, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The repository in Docker's short form, e.g. `busybox`, `localhost:5000/app`.
    ///
    /// Unlike Docker, a Docker Hub path whose first component would itself read as a registry
    /// (`docker.io/foo.bar/app`) keeps `docker.io/`, so the short form parses back to the same
    /// reference.
    pub fn familiar_name(&self) -> String {
        if self.registry != DEFAULT_REGISTRY {
            return self.name();
        }
        let short = self
            .repository
            .strip_prefix(OFFICIAL_PREFIX)
            .filter(|r| !r.contains('/'))
            .unwrap_or(&self.repository);
        match split_registry(short) {
            (Some(_), _) => self.name(),
            (None, _) => short.to_string(),
        }
    }

    /// The whole reference in Docker's short form, e.g. `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl fmt::Display for Reference {
    /// The full normalised form, e.g. `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits off the registry the way Docker decides it: the first component is a registry when
/// it contains '.' or ':', is `localhost`, or has uppercase letters.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // [ipv6]:port
        match rest.split_once(']') {
            Some((ip, after)) => {
                if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return false;
                }
                let port = match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None if after.is_empty() => None,
                    None => return false,
                };
                (None, port)
            }
            None => return false,
        }
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                })
        }
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bad_digest_is_named_once_in_the_chain() {
        let e = Reference::parse("x@sha256:abc").unwrap_err();
        let mut shown = e.to_string();
        let mut next = std::error::Error::source(&e);
        while let Some(cause) = next {
            shown.push_str(&format!(": {cause}"));
            next = cause.source();
        }
        assert_eq!(
            shown,
            r#"invalid reference "x@sha256:abc": invalid digest "sha256:abc": sha256 hex must be 64 characters, got 3"#
        );
    }

    use proptest::prelude::*;

    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_names_normalise() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            full("docker.io/busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            full("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full("user/app:v1"), "docker.io/user/app:v1");
    }

    #[test]
    fn registries_and_ports_are_recognised() {
        let r = Reference::parse("localhost:5000/app:v1").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "app");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.familiar(), "localhost:5000/app:v1");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(
            full("registry.example.com/a/b/c"),
            "registry.example.com/a/b/c:latest"
        );
        assert_eq!(full("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
        assert_eq!(full("[::1]:5000/x"), "[::1]:5000/x:latest");
    }

    #[test]
    fn familiar_form_drops_docker_hub_and_library() {
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar(),
            "busybox:latest"
        );
        assert_eq!(
            Reference::parse("user/app").unwrap().familiar(),
            "user/app:latest"
        );
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar_name(),
            "busybox"
        );
        // a first component that would read as a registry keeps docker.io
        let r = Reference::parse("docker.io/foo.bar/app").unwrap();
        assert_eq!(r.familiar(), "docker.io/foo.bar/app:latest");
        assert_eq!(Reference::parse(&r.familiar()).unwrap(), r);
    }

    #[test]
    fn digests_are_kept_and_tag_not_defaulted() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), d);
        let r = Reference::parse(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert!(Reference::parse_tag(&format!("busybox@{d}")).is_err());
    }

    #[test]
    fn bad_references_name_the_part() {
        let cases: &[(&str, &str)] = &[
            ("Busybox", "lowercase"),
            ("docker.io/Library/busybox", "lowercase"),
            (&format!("busybox:{}", "a".repeat(129)), "invalid tag"),
            // "busybox:bad" before a '/' is a registry with a bad port, as Docker splits it
            ("busybox:bad/tag", "invalid registry"),
            ("busybox:.x", "invalid tag"),
            ("busybox:", "invalid tag"),
            ("", "empty"),
            (":tag", "empty"),
            ("a//b", "path component \"\""),
            ("-abc", "path component"),
            ("abc-", "path component"),
            ("a..b", "path component"),
            ("busybox@sha256:abc", "64 characters"),
            ("busybox@md5:abc", "unsupported algorithm"),
            ("exa_mple.com:5000/x", "invalid registry"),
            ("host:99999999/x", "invalid registry"),
        ];
        for (input, needle) in cases {
            let err = Reference::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
        let long = "a".repeat(256);
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong(256))
        ));
        // the full name counts: `docker.io/library/` makes 250 characters 268
        let short = "a".repeat(250);
        assert!(matches!(
            Reference::parse(&format!("{short}:x")),
            Err(ReferenceError::TooLong(268))
        ));
        let longest = format!("example.com/{}", "b".repeat(255 - 12));
        let r = Reference::parse(&longest).unwrap();
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        assert!(Reference::parse(&format!("{longest}b")).is_err());
    }

    #[test]
    fn sixty_four_hex_characters_are_an_image_id_not_a_name() {
        let id = "a".repeat(64);
        assert!(matches!(
            Reference::parse(&id),
            Err(ReferenceError::HexName(_))
        ));
        // with a tag, or shorter, it is an ordinary name (Docker checks the whole string)
        assert!(Reference::parse(&format!("{id}:v1")).is_ok());
        assert!(Reference::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn repositories_parse_without_tag_or_digest() {
        let r = Reference::parse_repository("busybox").unwrap();
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        assert_eq!(
            Reference::parse_repository("localhost:5000/app")
                .unwrap()
                .name(),
            "localhost:5000/app"
        );
        for bad in [
            "busybox:1",
            "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let err = Reference::parse_repository(bad).unwrap_err().to_string();
            assert!(err.contains("cannot carry a tag or digest"), "{bad}: {err}");
        }
    }

    #[test]
    fn separators_follow_the_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a0"] {
            assert!(valid_path_component(ok), "{ok}");
        }
        for bad in ["a___b", "a._b", "_a", "a.", "", "A"] {
            assert!(!valid_path_component(bad), "{bad}");
        }
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,5}([._-][a-z0-9]{1,5}){0,2}"
    }

    proptest! {
        #[test]
        fn parse_of_format_is_identity(
            registry in prop::option::of(prop_oneof![
                Just("localhost:5000".to_string()),
                Just("registry.example.com".to_string()),
                Just("docker.io".to_string()),
                Just("10.0.0.1:443".to_string()),
            ]),
            path in prop::collection::vec(component(), 1..4),
            tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            digest in prop::option::of(prop::array::uniform32(any::<u8>())),
        ) {
            // Without a registry, a first component with '.' would itself be read as one
            // (Docker's rule), so the generator keeps dots out of it.
            let mut path = path;
            if registry.is_none() {
                path[0] = path[0].replace('.', "-");
            }
            let mut s = match &registry { Some(r) => format!("{r}/{}", path.join("/")), None => path.join("/") };
            if let Some(t) = &tag { s.push(':'); s.push_str(t); }
            if let Some(d) = digest { s.push('@'); s.push_str(&Digest::from_bytes(d).to_string()); }
            let r = Reference::parse(&s).unwrap();
            prop_assert_eq!(Reference::parse(&r.to_string()).unwrap(), r.clone());
            prop_assert_eq!(Reference::parse(&r.familiar()).unwrap(), r);
        }

        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = Reference::parse(&s);
        }
    }
}
