//! The image-reference check BuildKit applies to every external base before resolving it.
//!
//! BuildKit's converter calls `reference.ParseNormalizedNamed` (distribution/reference) on the
//! expanded name of every `FROM` whose base is neither `scratch` nor an earlier stage, and on
//! every `COPY --from` / `RUN --mount=from=` value that names no stage — for all stages, not
//! only the ones the target needs — and fails the build with
//! `failed to parse stage name "<name>": <reason>`. So `FROM Alpine`, `FROM node:` (an unset
//! `ARG` in the tag) or `FROM x@sha256:abc` are rejected before anything is pulled. This
//! module reproduces that grammar and its error strings; it does not normalise.

/// Checks `name` like `reference.ParseNormalizedNamed`; the error is the reason text.
pub(crate) fn check_normalized_named(name: &str) -> Result<(), String> {
    if name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "invalid repository name ({name}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    let (domain, remainder) = split_docker_domain(name);
    let remote = remainder.split(':').next().unwrap_or_default();
    if remote.to_lowercase() != remote {
        return Err(format!(
            "invalid reference format: repository name ({remote}) must be lowercase"
        ));
    }
    parse(&format!("{domain}/{remainder}"))
}

/// distribution/reference `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (&str, String) {
    let (domain, remainder) = match name.find('/') {
        Some(i)
            if name[..i].contains(['.', ':'])
                || &name[..i] == "localhost"
                || name[..i].to_lowercase() != name[..i] =>
        {
            (&name[..i], &name[i + 1..])
        }
        _ => ("docker.io", name),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    if domain == "docker.io" && !remainder.contains('/') {
        return (domain, format!("library/{remainder}"));
    }
    (domain, remainder.to_string())
}

/// distribution/reference `Parse` for a name that has a domain.
fn parse(s: &str) -> Result<(), String> {
    let Some((name, digest)) = match_reference(s) else {
        if match_reference(&s.to_lowercase()).is_some() {
            return Err("invalid reference format: repository name must be lowercase".into());
        }
        return Err("invalid reference format".into());
    };
    if name.len() > 255 {
        return Err("repository name must not be more than 255 characters".into());
    }
    if let Some(d) = digest {
        check_digest(d)?;
    }
    Ok(())
}

/// `ReferenceRegexp`, anchored: `name(:tag)?(@digest)?`. Returns the name and the digest.
fn match_reference(s: &str) -> Option<(&str, Option<&str>)> {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, d)) => {
            if !is_digest_syntax(d) {
                return None;
            }
            (rest, Some(d))
        }
        None => (s, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let name = match rest[last_slash..].find(':') {
        Some(i) => {
            let (name, tag) = (&rest[..last_slash + i], &rest[last_slash + i + 1..]);
            if !is_tag(tag) {
                return None;
            }
            name
        }
        None => rest,
    };
    is_name(name).then_some((name, digest))
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut bytes = t.bytes();
    matches!(bytes.next(), Some(b) if word(b))
        && t.len() <= 128
        && bytes.all(|b| word(b) || b == b'.' || b == b'-')
}

/// `(domain/)?component(/component)*`.
fn is_name(name: &str) -> bool {
    let all_components = |s: &str| s.split('/').all(is_path_component);
    if all_components(name) {
        return true;
    }
    match name.split_once('/') {
        Some((domain, rest)) => is_domain_and_port(domain) && all_components(rest),
        None => false,
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn is_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if !bytes.first().is_some_and(|b| alnum(*b)) || !bytes.last().is_some_and(|b| alnum(*b)) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

/// `host(:port)?` where host is a domain name or a bracketed IPv6 address.
fn is_domain_and_port(d: &str) -> bool {
    let (host, port) = if let Some(inner) = d.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return false;
        };
        let addr = &inner[..end];
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        (None, &inner[end + 1..])
    } else {
        match d.find(':') {
            Some(i) => (Some(&d[..i]), &d[i..]),
            None => (Some(d), ""),
        }
    };
    if let Some(host) = host {
        let label = |l: &str| {
            let b = l.as_bytes();
            b.first().is_some_and(u8::is_ascii_alphanumeric)
                && b.last().is_some_and(u8::is_ascii_alphanumeric)
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        };
        if !host.split('.').all(label) {
            return false;
        }
    }
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[[:xdigit:]]{32,}`.
fn is_digest_syntax(d: &str) -> bool {
    let Some((algorithm, encoded)) = d.split_once(':') else {
        return false;
    };
    let parts_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let mut b = part.bytes();
        matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
            && b.all(|c| c.is_ascii_alphanumeric())
    });
    parts_ok && encoded.len() >= 32 && encoded.bytes().all(|b| b.is_ascii_hexdigit())
}

/// go-digest `Digest.Validate` for a syntactically valid digest.
fn check_digest(d: &str) -> Result<(), String> {
    let (algorithm, encoded) = d.split_once(':').unwrap_or((d, ""));
    let size = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm".into()),
    };
    if encoded.len() != size {
        return Err("invalid checksum digest length".into());
    }
    if !encoded
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("invalid checksum digest format".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_normalized_named as check;

    #[test]
    fn accepts_what_docker_pulls() {
        for ok in [
            "alpine",
            "alpine:3.19",
            "library/alpine:latest",
            "docker.io/library/alpine",
            "index.docker.io/library/alpine",
            "quay.io/prometheus/busybox:latest",
            "localhost:5000/app",
            "localhost/app:v1",
            "MyRegistry/app",
            "[::1]:5000/app",
            "mcr.microsoft.com/windows/servercore:ltsc2022",
            "ghcr.io/a-b/c__d/e.f-g:1.0_rc-2",
            "tonistiigi/xx:golang@sha256:6f7d999551dd471b58f70716754290495690efa8421e0a1fcf18eb11d0c0a537",
            "busybox@sha256:6f7d999551dd471b58f70716754290495690efa8421e0a1fcf18eb11d0c0a537",
            "r.j3ss.co/reg",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_with_buildkit_reasons() {
        let cases = [
            (
                "Alpine:latest",
                "invalid reference format: repository name (library/Alpine) must be lowercase",
            ),
            ("node:", "invalid reference format"),
            ("a:b:c", "invalid reference format"),
            ("alpine:-x", "invalid reference format"),
            ("a//b", "invalid reference format"),
            ("-a", "invalid reference format"),
            ("a b", "invalid reference format"),
            (
                "quay.io/Org/app",
                "invalid reference format: repository name (Org/app) must be lowercase",
            ),
            (
                "x@sha256:6f7d999551dd471b58f70716754290495690efa8421e0a1fcf18eb11d0c0a5",
                "invalid checksum digest length",
            ),
            (
                "x@md5:6f7d999551dd471b58f70716754290495690efa8421e0a1fcf18eb11d0c0a537",
                "unsupported digest algorithm",
            ),
            ("x@sha256:abc", "invalid reference format"),
            (
                "6f7d999551dd471b58f70716754290495690efa8421e0a1fcf18eb11d0c0a537",
                "invalid repository name (6f7d999551dd471b58f70716754290495690efa8421e0a1fcf18eb11d0c0a537), cannot specify 64-byte hexadecimal strings",
            ),
        ];
        for (name, reason) in cases {
            assert_eq!(check(name), Err(reason.to_string()), "{name}");
        }
    }
}
