//! `RUN --mount=...` specifications (spec §8.2).

use serde::Serialize;

use crate::error::Error;

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// Bind a directory of the context, a stage or an image (the default).
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An in-memory filesystem.
    Tmpfs,
    /// A secret file or environment variable.
    Secret,
    /// An SSH agent socket.
    Ssh,
}

/// Sharing mode of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// Concurrent builds share the cache (the default).
    #[default]
    Shared,
    /// Each concurrent build gets its own copy.
    Private,
    /// Concurrent builds wait for each other.
    Locked,
}

/// One parsed `--mount`, with per-type defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Mount type.
    pub kind: MountType,
    /// Where it appears in the container (defaults applied for secret and ssh).
    pub target: Option<String>,
    /// Sub-path of `from` (bind, cache) or secret source.
    pub source: Option<String>,
    /// Stage name, stage index, image or named context to mount from (bind, cache).
    pub from: Option<String>,
    /// Read-only (bind, secret and ssh default to true).
    pub readonly: bool,
    /// Cache id (defaults to the target), secret id (defaults to the target's basename),
    /// ssh id (defaults to `default`).
    pub id: Option<String>,
    /// Cache sharing mode.
    pub sharing: CacheSharing,
    /// File mode (cache 0755, secret 0400, ssh 0600 by default).
    pub mode: Option<u32>,
    /// Owner uid.
    pub uid: Option<u64>,
    /// Owner gid.
    pub gid: Option<u64>,
    /// tmpfs size in bytes.
    pub size_bytes: Option<u64>,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
    /// The secret or ssh socket must exist.
    pub required: bool,
}

/// Splits one CSV record (Go `encoding/csv`, default settings).
fn split_csv(s: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    let mut column = 0usize;
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            column += 1;
            loop {
                match chars.next() {
                    None => {
                        return Err(Error::invalid(format!(
                            "parse error on line 1, column {column}: extraneous or missing \" in quoted-field"
                        )));
                    }
                    Some('"') => {
                        column += 1;
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            column += 1;
                            field.push('"');
                        } else {
                            break;
                        }
                    }
                    Some(c) => {
                        column += 1;
                        field.push(c);
                    }
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => {
                    column += 1;
                    out.push(field);
                }
                Some(_) => {
                    return Err(Error::invalid(format!(
                        "parse error on line 1, column {column}: extraneous or missing \" in quoted-field"
                    )));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => {
                        column += 1;
                        out.push(field);
                        break;
                    }
                    Some('"') => {
                        return Err(Error::invalid(format!(
                            "parse error on line 1, column {}: bare \" in non-quoted-field",
                            column + 1
                        )));
                    }
                    Some(c) => {
                        column += 1;
                        field.push(c);
                    }
                }
            }
        }
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, Error> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(Error::invalid(format!("invalid value for {key}: {v}"))),
    }
}

/// Parses a size like `64m`, `1g`, `10GiB`, `1024` (docker `units.RAMInBytes`, binary
/// units). Also reads the executor's `--local-cache-max-bytes`.
pub fn parse_size(v: &str) -> Result<u64, Error> {
    let bad = || Error::invalid(format!("invalid size: '{v}'"));
    let t = v.trim();
    let num_len = t
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(t.len(), |(i, _)| i);
    let (num, unit) = t.split_at(num_len);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        "p" | "pb" | "pib" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parses one `--mount` value. `expand` is applied to every `key=value` value; `ssh_index`
/// numbers ssh mounts for the default target `/run/buildkit/ssh_agent.N`.
pub fn parse_mount(
    spec: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, Error>,
    ssh_index: usize,
) -> Result<Mount, Error> {
    let fields = split_csv(spec)?;
    let mut kind = MountType::Bind;
    for field in &fields {
        if let Some((k, v)) = field.split_once('=')
            && k.trim().eq_ignore_ascii_case("type")
        {
            kind = match v.to_ascii_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                _ => return Err(Error::invalid(format!("unsupported mount type \"{v}\""))),
            };
        }
    }
    let mut m = Mount {
        kind,
        target: None,
        source: None,
        from: None,
        readonly: matches!(kind, MountType::Bind | MountType::Secret | MountType::Ssh),
        id: None,
        sharing: CacheSharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        size_bytes: None,
        env: None,
        required: false,
    };
    let mut saw_sharing = false;
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let Some(raw) = value else {
            match key.as_str() {
                "readonly" | "ro" => m.readonly = true,
                "readwrite" | "rw" => m.readonly = false,
                "required" => m.required = true,
                _ => {
                    return Err(Error::invalid(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )));
                }
            }
            continue;
        };
        if key == "from" {
            if raw.contains('$') {
                return Err(Error::invalid(
                    "variable expansion is not supported for --mount from, define a new stage with FROM using ARG from global scope as a workaround",
                ));
            }
            m.from = Some(raw.to_string());
            continue;
        }
        if key == "type" {
            continue;
        }
        let v = expand(raw)?;
        match key.as_str() {
            "source" | "src" => m.source = Some(v),
            "target" | "dst" | "destination" => m.target = Some(v),
            "readonly" | "ro" => m.readonly = parse_bool(&key, &v)?,
            "readwrite" | "rw" => m.readonly = !parse_bool(&key, &v)?,
            "required" => m.required = parse_bool(&key, &v)?,
            "id" => m.id = Some(v),
            "sharing" => {
                saw_sharing = true;
                m.sharing = match v.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(Error::invalid(format!("unsupported sharing value \"{v}\""))),
                };
            }
            "mode" => {
                let mode = u32::from_str_radix(&v, 8)
                    .map_err(|_| Error::invalid(format!("invalid value {v} for mode")))?;
                m.mode = Some(mode);
            }
            "uid" => {
                m.uid = Some(
                    v.parse()
                        .map_err(|_| Error::invalid(format!("invalid value {v} for uid")))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    v.parse()
                        .map_err(|_| Error::invalid(format!("invalid value {v} for gid")))?,
                )
            }
            "size" => m.size_bytes = Some(parse_size(&v)?),
            "env" => m.env = Some(v),
            _ => {
                return Err(Error::invalid(format!(
                    "unexpected key '{key}' in '{field}'"
                )));
            }
        }
    }
    let type_name = format!("{kind:?}").to_lowercase();
    if (m.mode.is_some() || m.uid.is_some() || m.gid.is_some())
        && !matches!(kind, MountType::Cache | MountType::Secret | MountType::Ssh)
    {
        return Err(Error::invalid(format!(
            "mode, uid and gid are not supported for {type_name} mounts"
        )));
    }
    if m.required && !matches!(kind, MountType::Secret | MountType::Ssh) {
        return Err(Error::invalid(format!(
            "required is not supported for {type_name} mounts"
        )));
    }
    if m.size_bytes.is_some() && kind != MountType::Tmpfs {
        return Err(Error::invalid(format!(
            "size is not supported for {type_name} mounts"
        )));
    }
    if saw_sharing && kind != MountType::Cache {
        return Err(Error::invalid(format!(
            "sharing is not supported for {type_name} mounts"
        )));
    }
    if m.env.is_some() && kind != MountType::Secret {
        return Err(Error::invalid(format!(
            "env is not supported for {type_name} mounts"
        )));
    }
    match kind {
        MountType::Secret => {
            if m.from.is_some() {
                return Err(Error::invalid("secret mount should not have a from"));
            }
            if m.id.is_none() {
                let base = m
                    .target
                    .as_deref()
                    .or(m.source.as_deref())
                    .and_then(|t| t.trim_end_matches('/').rsplit('/').next())
                    .filter(|s| !s.is_empty());
                m.id = base.map(str::to_string);
            }
            if m.id.is_none() {
                return Err(Error::invalid(
                    "invalid secret mount: one of id, target or source is required",
                ));
            }
            if m.target.is_none() && m.env.is_none() {
                m.target = Some(format!(
                    "/run/secrets/{}",
                    m.id.as_deref().unwrap_or_default()
                ));
            }
            m.mode.get_or_insert(0o400);
            m.uid.get_or_insert(0);
            m.gid.get_or_insert(0);
        }
        MountType::Ssh => {
            if m.from.is_some() {
                return Err(Error::invalid("ssh mount should not have a from"));
            }
            m.id.get_or_insert_with(|| "default".to_string());
            m.target
                .get_or_insert_with(|| format!("/run/buildkit/ssh_agent.{ssh_index}"));
            m.mode.get_or_insert(0o600);
            m.uid.get_or_insert(0);
            m.gid.get_or_insert(0);
        }
        MountType::Cache => {
            if m.target.is_none() {
                return Err(Error::invalid("mount type cache requires a target"));
            }
            if m.id.is_none() {
                m.id = m.target.clone();
            }
            m.mode.get_or_insert(0o755);
            m.uid.get_or_insert(0);
            m.gid.get_or_insert(0);
        }
        MountType::Bind | MountType::Tmpfs => {
            if m.target.is_none() {
                return Err(Error::invalid(format!(
                    "mount type {type_name} requires a target"
                )));
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Mount, Error> {
        parse_mount(s, &mut |v| Ok(v.to_string()), 0)
    }

    #[test]
    fn defaults_per_type() {
        let m = parse("type=cache,target=/root/.cache").unwrap();
        assert_eq!(
            (m.id.as_deref(), m.readonly, m.mode),
            (Some("/root/.cache"), false, Some(0o755))
        );
        let m = parse("type=secret,id=npmrc").unwrap();
        assert_eq!(m.target.as_deref(), Some("/run/secrets/npmrc"));
        let m = parse("type=ssh").unwrap();
        assert_eq!(m.target.as_deref(), Some("/run/buildkit/ssh_agent.0"));
        let m = parse("target=/src,from=build,rw").unwrap();
        assert_eq!(
            (m.kind, m.readonly, m.from.as_deref()),
            (MountType::Bind, false, Some("build"))
        );
        let m = parse("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(m.size_bytes, Some(64 << 20));
    }

    #[test]
    fn rejects_bad_specs() {
        let msg = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(
            msg("type=cache,target=/x,bogus"),
            "invalid field 'bogus' must be a key=value pair"
        );
        assert_eq!(
            msg("type=cache,target=/x,foo=bar"),
            "unexpected key 'foo' in 'foo=bar'"
        );
        assert!(msg("type=nfs,target=/x").contains("unsupported mount type"));
        assert!(msg("type=bind,target=/x,mode=0755").contains("not supported"));
        assert!(msg("type=cache,target=/x,sharing=everyone").contains("sharing"));
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(split_csv(r#"a,"b,c",d"#).unwrap(), vec!["a", "b,c", "d"]);
        assert!(split_csv(r#"a"b"#).is_err());
    }
}
