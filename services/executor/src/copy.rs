//! COPY and ADD on the filesystem: source selection (paths, globs, `--exclude`), content
//! hashes for cache keys, and copying into a root with BuildKit's destination rules
//! (dockerfile.md §8.8-8.9). Sources are resolved inside their own root (context or stage)
//! and destinations inside the target root: no path, `..` or symlink leads outside either.

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    io::{self, Read},
    os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use strata_dockerfile::DockerIgnore;
use strata_types::{Digest, Hasher};

use crate::error::ExecutorError;
use crate::rootpath::{clean, resolve_in_root};

/// One selected source.
#[derive(Debug, Clone)]
pub struct SourceMatch {
    /// Its path relative to the source root, `/`-separated, no leading `/` ("" = the root).
    pub rel: String,
    /// Where it is on disk (top-level symlinks followed, inside the source root).
    pub path: PathBuf,
    /// True for a directory (its contents are copied).
    pub is_dir: bool,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Selects the files `sources` name inside `root`. A missing non-wildcard source is a
/// NOT_FOUND naming it; a wildcard matching nothing selects nothing (BuildKit).
pub fn select_sources(
    root: &Path,
    sources: &[String],
) -> Result<(Vec<SourceMatch>, bool), ExecutorError> {
    let mut out = Vec::new();
    let mut wildcard = false;
    for source in sources {
        let cleaned = clean(source);
        let rel = cleaned.trim_start_matches('/').to_owned();
        if has_glob(&rel) {
            wildcard = true;
            let pattern = DockerIgnore::from_patterns(&[rel.as_str()]).map_err(|e| {
                ExecutorError::InvalidArgument(format!("invalid source pattern {source:?}: {e}"))
            })?;
            let pattern = &pattern.patterns[0];
            // walk from the longest literal directory prefix
            let literal: Vec<&str> = rel.split('/').take_while(|p| !has_glob(p)).collect();
            let start = literal.join("/");
            let depth = rel.split('/').count();
            let deep = rel.contains("**");
            let mut found = Vec::new();
            let start_path = resolve_in_root(root, &start, true)?;
            if start_path.is_dir() {
                walk_rel(&start_path, &start, &mut |r, _| {
                    let d = r.split('/').count();
                    if (deep || d == depth) && pattern.matches(r) {
                        found.push(r.to_owned());
                    }
                    deep || d < depth
                })?;
            }
            found.sort();
            for r in found {
                let path = resolve_in_root(root, &r, true)?;
                let is_dir = path.is_dir();
                out.push(SourceMatch {
                    rel: r,
                    path,
                    is_dir,
                });
            }
        } else {
            let path = resolve_in_root(root, &rel, true)?;
            match path.symlink_metadata() {
                Ok(m) => out.push(SourceMatch {
                    rel,
                    path,
                    is_dir: m.is_dir(),
                }),
                Err(_) => {
                    return Err(ExecutorError::NotFound(format!(
                        "failed to compute cache key: \"/{rel}\": not found"
                    )));
                }
            }
        }
    }
    Ok((out, wildcard))
}

/// Walks `dir` (never following symlinks), calling `f(rel, meta)` for each entry in name
/// order; `f` returns whether to descend into a directory.
pub fn walk_rel(
    dir: &Path,
    rel: &str,
    f: &mut dyn FnMut(&str, &std::fs::Metadata) -> bool,
) -> Result<(), ExecutorError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ExecutorError::io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| ExecutorError::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = ExecutorError::utf8_name(&name, rel)?;
        let r = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(|e| ExecutorError::io(&entry.path(), e))?;
        if f(&r, &meta) && meta.is_dir() {
            walk_rel(&entry.path(), &r, f)?;
        }
    }
    Ok(())
}

fn exclude_matcher(excludes: &[String]) -> Result<Option<DockerIgnore>, ExecutorError> {
    if excludes.is_empty() {
        return Ok(None);
    }
    DockerIgnore::from_patterns(excludes)
        .map(Some)
        .map_err(|e| ExecutorError::InvalidArgument(format!("invalid --exclude pattern: {e}")))
}

/// The content hash of one source as a cache key sees it: for every file it selects (in
/// path order), its path relative to the source, type, mode, uid, gid, link target and the
/// sha256 of its bytes — never its size or mtime. `known` holds digests already computed
/// (the context's, by path relative to the source root).
///
/// Each entry's fields are written unambiguously: the path and the link target (which may
/// hold any byte but NUL, newlines included) with their lengths before them, so no two
/// different trees hash alike (with separators alone, a link `a -> "T\nab"` beside a
/// directory `c` wrote the same bytes as a link `a -> "T"` beside a directory `ab\nc`).
pub fn content_hash(
    m: &SourceMatch,
    excludes: &[String],
    known: Option<&BTreeMap<String, Digest>>,
) -> Result<Digest, ExecutorError> {
    let excl = exclude_matcher(excludes)?;
    let mut hasher = Hasher::new();
    let mut add = |rel: &str,
                   full_rel: &str,
                   path: &Path,
                   meta: &std::fs::Metadata|
     -> Result<(), ExecutorError> {
        use std::os::unix::ffi::OsStrExt;
        let ft = meta.file_type();
        let (kind, extra): (u8, Vec<u8>) = if ft.is_dir() {
            (b'd', Vec::new())
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(|e| ExecutorError::io(path, e))?;
            (b'l', target.as_os_str().as_bytes().to_vec())
        } else if ft.is_file() {
            let d = match known.and_then(|k| k.get(full_rel)) {
                Some(d) => *d,
                None => hash_file(path)?,
            };
            (b'f', d.to_string().into_bytes())
        } else {
            (b'o', meta.rdev().to_string().into_bytes())
        };
        let mut record = Vec::with_capacity(rel.len() + extra.len() + 40);
        record.extend_from_slice(&(rel.len() as u64).to_le_bytes());
        record.extend_from_slice(rel.as_bytes());
        record.push(kind);
        for n in [meta.mode() & 0o7777, meta.uid(), meta.gid()] {
            record.extend_from_slice(&n.to_le_bytes());
        }
        record.extend_from_slice(&(extra.len() as u64).to_le_bytes());
        record.extend_from_slice(&extra);
        hasher.update(&record);
        Ok(())
    };
    let meta = m
        .path
        .metadata()
        .map_err(|e| ExecutorError::io(&m.path, e))?;
    if m.is_dir {
        let mut err = None;
        walk_rel(&m.path, "", &mut |rel, meta| {
            if err.is_some() || excl.as_ref().is_some_and(|x| x.matches(rel)) {
                return false;
            }
            let full = if m.rel.is_empty() {
                rel.to_owned()
            } else {
                format!("{}/{rel}", m.rel)
            };
            if let Err(e) = add(rel, &full, &m.path.join(rel), meta) {
                err = Some(e);
            }
            true
        })?;
        if let Some(e) = err {
            return Err(e);
        }
    } else {
        let base = m.rel.rsplit('/').next().unwrap_or("").to_owned();
        add(&base, &m.rel, &m.path, &meta)?;
    }
    Ok(hasher.finish())
}

/// sha256 of a file's bytes.
pub fn hash_file(path: &Path) -> Result<Digest, ExecutorError> {
    let mut f = std::fs::File::open(path).map_err(|e| ExecutorError::io(path, e))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| ExecutorError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// How copied files are owned and moded.
#[derive(Debug, Clone, Default)]
pub struct CopyAttrs {
    /// `--chown`; default 0:0.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`; default: the source's mode.
    pub mode: Option<Chmod>,
}

/// A parsed `--chmod`: an octal mode, or chmod(1) symbolic clauses as BuildKit accepts them
/// since Dockerfile 1.14 (`u+x,g-w`, `a=rX`, `go=u`), applied to each copied file and
/// directory's own mode with no umask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// `0755`, `644`: the mode, whatever the source's.
    Octal(u32),
    /// Clauses applied in order.
    Symbolic(Vec<ChmodClause>),
}

/// One `who op perms [op perms]...` clause of a symbolic `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChmodClause {
    /// The bits the clause may touch (`u` 04700, `g` 02070, `o` 01007; none given = all).
    who: u32,
    /// The operations, in order.
    ops: Vec<(char, ChmodPerms)>,
}

/// What an operation adds, removes or sets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChmodPerms {
    /// Letters among `rwxXst`.
    Letters(String),
    /// The current permissions of `u`, `g` or `o`.
    CopyOf(char),
}

impl Chmod {
    /// Parses an octal or symbolic `--chmod` value; the error names the flag and the value.
    pub fn parse(v: &str) -> Result<Chmod, ExecutorError> {
        let invalid = |why: &str| {
            ExecutorError::InvalidArgument(format!(
                "invalid --chmod value '{v}': {why}; use an octal mode up to 07777 or chmod(1) symbolic clauses such as u+x,g-w or a=rX"
            ))
        };
        if v.is_empty() {
            return Err(invalid("it is empty"));
        }
        if v.bytes().all(|b| b.is_ascii_digit()) {
            return u32::from_str_radix(v, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal)
                .ok_or_else(|| invalid("not an octal number up to 07777"));
        }
        let mut clauses = Vec::new();
        for clause in v.split(',') {
            let mut chars = clause.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => break,
                };
                chars.next();
            }
            let mut ops = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(invalid(&format!(
                        "{op:?} in {clause:?} is not an operator (+, - or =)"
                    )));
                }
                let perms = match chars.peek() {
                    Some(&c @ ('u' | 'g' | 'o')) => {
                        chars.next();
                        ChmodPerms::CopyOf(c)
                    }
                    _ => {
                        let mut letters = String::new();
                        while let Some(&c) = chars.peek() {
                            match c {
                                'r' | 'w' | 'x' | 'X' | 's' | 't' => letters.push(c),
                                '+' | '-' | '=' => break,
                                other => {
                                    return Err(invalid(&format!(
                                        "{other:?} in {clause:?} is not a permission (r, w, x, X, s, t)"
                                    )));
                                }
                            }
                            chars.next();
                        }
                        ChmodPerms::Letters(letters)
                    }
                };
                ops.push((op, perms));
            }
            if ops.is_empty() {
                return Err(invalid(&format!("{clause:?} has no operator")));
            }
            clauses.push(ChmodClause {
                who: if who == 0 { 0o7777 } else { who },
                ops,
            });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode a node with permission bits `mode` gets (`is_dir` for `X`).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(c) => c,
        };
        let mut m = mode & 0o7777;
        for clause in clauses {
            for (op, perms) in &clause.ops {
                let bits = match perms {
                    ChmodPerms::Letters(letters) => {
                        let mut b = 0;
                        for c in letters.chars() {
                            b |= match c {
                                'r' => 0o444,
                                'w' => 0o222,
                                'x' => 0o111,
                                'X' if is_dir || m & 0o111 != 0 => 0o111,
                                's' => 0o6000,
                                't' => 0o1000,
                                _ => 0,
                            };
                        }
                        b
                    }
                    ChmodPerms::CopyOf(c) => {
                        let v = match c {
                            'u' => (m >> 6) & 7,
                            'g' => (m >> 3) & 7,
                            _ => m & 7,
                        };
                        (v << 6) | (v << 3) | v
                    }
                } & clause.who;
                match op {
                    '+' => m |= bits,
                    '-' => m &= !bits,
                    _ => m = (m & !clause.who) | bits,
                }
            }
        }
        m
    }
}

/// Parses `--chmod` (see [`Chmod::parse`]).
pub fn parse_chmod(v: &str) -> Result<Chmod, ExecutorError> {
    Chmod::parse(v)
}

/// `COPY --parents`: the part of `rel` (a match of `source`, relative to the source root)
/// kept under the destination — after a `/./` pivot in `source` as written, else all of it.
pub fn parents_kept(source: &str, rel: &str) -> String {
    let written = source.trim_start_matches('/');
    let written = written.strip_prefix("./").unwrap_or(written);
    let Some(at) = written.find("/./") else {
        return rel.to_owned();
    };
    let pivot = clean(&written[..at]).trim_start_matches('/').to_owned();
    if pivot.is_empty() {
        return rel.to_owned();
    }
    match rel.strip_prefix(&pivot) {
        Some("") => String::new(),
        Some(rest) if rest.starts_with('/') => rest[1..].to_owned(),
        _ => rel.to_owned(),
    }
}

/// Copies `matches` as `COPY --parents` does: each keeps the path [`parents_kept`] gives
/// under `dest` (a directory); a directory's contents go below its kept path.
pub fn copy_with_parents(
    matches: &[(SourceMatch, String)],
    target_root: &Path,
    dest: &str,
    excludes: &[String],
    attrs: &CopyAttrs,
) -> Result<(), ExecutorError> {
    let owner = attrs.owner.unwrap_or((0, 0));
    mkdir_all_in_root(target_root, dest, owner)?;
    for (m, kept) in matches {
        let target = if kept.is_empty() {
            dest.to_owned()
        } else {
            format!("{}/{kept}", dest.trim_end_matches('/'))
        };
        copy_sources(
            std::slice::from_ref(m),
            false,
            target_root,
            &target,
            m.is_dir,
            excludes,
            attrs,
        )?;
    }
    Ok(())
}

/// Writes the heredoc sources of a COPY/ADD (`COPY <<EOF /dest`) as files named after
/// their delimiters in the empty directory `dir`, mode 0644, and selects them.
pub fn write_inline_files(
    dir: &Path,
    files: &[(String, String)],
) -> Result<Vec<SourceMatch>, ExecutorError> {
    std::fs::create_dir_all(dir).map_err(|e| ExecutorError::io_op("creating", dir, e))?;
    let mut out = Vec::with_capacity(files.len());
    for (name, content) in files {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(ExecutorError::InvalidArgument(format!(
                "heredoc name {name:?} cannot be a file name"
            )));
        }
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|e| ExecutorError::io_op("writing", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| ExecutorError::io(&path, e))?;
        out.push(SourceMatch {
            rel: name.clone(),
            path,
            is_dir: false,
        });
    }
    Ok(out)
}

/// Creates `path` (absolute inside `root`) and missing parents (0755, owned by `owner`),
/// following symlinks only inside the root; returns the directory on disk. A symlink on
/// the way whose target does not exist yet (`/lnk -> /opt/a/b`, no `/opt`) has its target
/// created, every missing directory of it, as BuildKit's `MkdirAll` does; errors name
/// paths as the image sees them, never the host's.
pub fn mkdir_all_in_root(
    root: &Path,
    path: &str,
    owner: (u32, u32),
) -> Result<PathBuf, ExecutorError> {
    let mut prefix = String::new();
    let mut resolved = root.to_path_buf();
    for part in crate::rootpath::components(path) {
        prefix.push('/');
        prefix.push_str(&part);
        resolved = resolve_in_root(root, &prefix, true)?;
        match resolved.symlink_metadata() {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ExecutorError::InvalidArgument(format!(
                    "cannot create directory {prefix}: a file is in the way"
                )));
            }
            Err(_) => create_resolved(root, &resolved, owner, &prefix)?,
        }
    }
    Ok(resolved)
}

/// Creates every missing directory of `resolved`, a path [`resolve_in_root`] gave: under
/// `root`, its existing part reached without symlinks, so only plain directories are met.
fn create_resolved(
    root: &Path,
    resolved: &Path,
    owner: (u32, u32),
    asked: &str,
) -> Result<(), ExecutorError> {
    let rel = resolved
        .strip_prefix(root)
        .map_err(|_| ExecutorError::Internal(format!("{asked} resolved outside its root")))?;
    let mut current = root.to_path_buf();
    let mut shown = String::new();
    for part in rel.components() {
        current.push(part);
        shown.push('/');
        shown.push_str(&part.as_os_str().to_string_lossy());
        let in_the_way = |what: &str| {
            ExecutorError::InvalidArgument(format!(
                "cannot create directory {asked}: {shown} {what}"
            ))
        };
        match current.symlink_metadata() {
            Ok(m) if m.is_dir() => continue,
            Ok(m) if m.file_type().is_symlink() => {
                return Err(in_the_way("is a symbolic link"));
            }
            Ok(_) => return Err(in_the_way("is not a directory")),
            Err(_) => {}
        }
        let failed = |op: &'static str, source: io::Error| ExecutorError::Io {
            op,
            path: shown.clone(),
            source,
        };
        std::fs::create_dir(&current).map_err(|e| failed("creating", e))?;
        std::fs::set_permissions(&current, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| failed("chmod", e))?;
        std::os::unix::fs::lchown(&current, Some(owner.0), Some(owner.1))
            .map_err(|e| failed("chown", e))?;
    }
    Ok(())
}

/// Copies the selected sources into `target_root` at `dest` (absolute, as cleaned against
/// the WORKDIR, with `dest_is_dir` when it ended in `/`).
pub fn copy_sources(
    matches: &[SourceMatch],
    wildcard: bool,
    target_root: &Path,
    dest: &str,
    dest_is_dir: bool,
    excludes: &[String],
    attrs: &CopyAttrs,
) -> Result<(), ExecutorError> {
    let excl = exclude_matcher(excludes)?;
    let owner = attrs.owner.unwrap_or((0, 0));
    let dest_path = resolve_in_root(target_root, dest, true)?;
    let into_dir = dest_is_dir
        || matches.len() > 1
        || wildcard
        || dest_path.is_dir()
        || matches.iter().all(|m| m.is_dir);
    if (matches.len() > 1 || wildcard) && !dest_is_dir && !dest_path.is_dir() {
        return Err(ExecutorError::InvalidArgument(
            "When using COPY with more than one source file, the destination must be a directory and end with a /".into(),
        ));
    }
    for m in matches {
        if m.is_dir {
            let dir = mkdir_all_in_root(target_root, dest, owner)?;
            let dir_rel = dir
                .strip_prefix(target_root)
                .unwrap_or(Path::new(""))
                .to_string_lossy()
                .into_owned();
            let mut err = None;
            walk_rel(&m.path, "", &mut |rel, meta| {
                if err.is_some() || excl.as_ref().is_some_and(|x| x.matches(rel)) {
                    return false;
                }
                let target = format!("/{dir_rel}/{rel}");
                if let Err(e) = copy_one(
                    &m.path.join(rel),
                    meta,
                    target_root,
                    &target,
                    owner,
                    attrs.mode.as_ref(),
                ) {
                    err = Some(e);
                    return false;
                }
                true
            })?;
            if let Some(e) = err {
                return Err(e);
            }
        } else {
            let meta = m
                .path
                .metadata()
                .map_err(|e| ExecutorError::io(&m.path, e))?;
            let target = if into_dir {
                let dir = mkdir_all_in_root(target_root, dest, owner)?;
                let base = m.rel.rsplit('/').next().unwrap_or("");
                format!(
                    "/{}/{base}",
                    dir.strip_prefix(target_root)
                        .unwrap_or(Path::new(""))
                        .display()
                )
            } else {
                if let Some((parent, _)) = clean(dest).rsplit_once('/') {
                    mkdir_all_in_root(target_root, parent, owner)?;
                }
                dest.to_owned()
            };
            // a top-level symlink source is followed: copy what it points at
            copy_one(
                &m.path,
                &meta,
                target_root,
                &target,
                owner,
                attrs.mode.as_ref(),
            )?;
        }
    }
    Ok(())
}

/// Copies one node (file, symlink, dir header, device) to `target` (absolute in the root).
fn copy_one(
    src: &Path,
    meta: &std::fs::Metadata,
    root: &Path,
    target: &str,
    owner: (u32, u32),
    mode: Option<&Chmod>,
) -> Result<(), ExecutorError> {
    let target_clean = clean(target);
    let (parent, name) = target_clean.rsplit_once('/').unwrap_or(("", &target_clean));
    let parent_path = resolve_in_root(root, if parent.is_empty() { "/" } else { parent }, true)?;
    let dest = parent_path.join(name);
    let existing = dest.symlink_metadata().ok();
    if meta.is_dir() {
        match existing {
            Some(e) if e.is_dir() => {}
            Some(_) => {
                return Err(ExecutorError::InvalidArgument(format!(
                    "cannot copy directory onto file {target_clean}"
                )));
            }
            None => std::fs::create_dir(&dest)
                .map_err(|e| ExecutorError::io_op("creating", &dest, e))?,
        }
    } else {
        if let Some(e) = existing {
            if e.is_dir() {
                return Err(ExecutorError::InvalidArgument(format!(
                    "cannot copy file onto directory {target_clean}"
                )));
            }
            std::fs::remove_file(&dest).map_err(|e| ExecutorError::io_op("removing", &dest, e))?;
        }
        copy_node(src, &dest, meta)?;
    }
    std::os::unix::fs::lchown(&dest, Some(owner.0), Some(owner.1))
        .map_err(|e| ExecutorError::io_op("chown", &dest, e))?;
    if !meta.file_type().is_symlink() {
        let m = match mode {
            Some(c) => c.apply(meta.mode(), meta.is_dir()),
            None => meta.mode() & 0o7777,
        };
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(m))
            .map_err(|e| ExecutorError::io_op("chmod", &dest, e))?;
    }
    let t = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &dest,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| ExecutorError::io_op("setting times", &dest, e.into()))?;
    Ok(())
}

/// Creates a copy of the non-directory node `src` at `dest` (which must not exist): file
/// bytes (with `O_EXCL|O_NOFOLLOW`), a symlink verbatim, or a device/FIFO node.
pub fn copy_node(src: &Path, dest: &Path, meta: &std::fs::Metadata) -> Result<(), ExecutorError> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| ExecutorError::io(src, e))?;
        std::os::unix::fs::symlink(target, dest)
            .map_err(|e| ExecutorError::io_op("creating", dest, e))
    } else if ft.is_file() {
        let mut from = std::fs::File::open(src).map_err(|e| ExecutorError::io(src, e))?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .mode(0o600)
            .open(dest)
            .map_err(|e| ExecutorError::io_op("creating", dest, e))?;
        io::copy(&mut from, &mut to).map_err(|e| ExecutorError::io_op("writing", dest, e))?;
        Ok(())
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let kind = if ft.is_char_device() {
            nix::sys::stat::SFlag::S_IFCHR
        } else if ft.is_block_device() {
            nix::sys::stat::SFlag::S_IFBLK
        } else {
            nix::sys::stat::SFlag::S_IFIFO
        };
        nix::sys::stat::mknod(
            dest,
            kind,
            nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777),
            meta.rdev(),
        )
        .map_err(|e| ExecutorError::io_op("creating", dest, e.into()))
    } else {
        Ok(()) // sockets are never copied
    }
}

/// Whether a local ADD source is a tar archive to extract (dockerfile.md §8.8), and its
/// compression: gzip, bzip2, xz (by magic bytes, oci-image.md §9.6) or none. As in BuildKit,
/// which extracts a source only when the first header of the decompressed stream reads, the
/// answer is by content: the first 512 bytes it decompresses to must be a tar header (a valid
/// checksum; not the zero block an empty archive starts with). Anything else — a gzip of a
/// text file, a file too short or damaged to decompress — is None: copied as a plain file.
pub fn tar_archive(path: &Path) -> Option<crate::compression::Compression> {
    let file = std::fs::File::open(path).ok()?;
    let (compression, mut reader) = crate::compression::decompressing(file).ok()?;
    let mut block = [0u8; 512];
    reader.read_exact(&mut block).ok()?;
    is_tar_header(&block).then_some(compression)
}

/// A tar header block as Go's `archive/tar` accepts one: not all zeros, and its checksum
/// field (octal, padded with spaces or NULs) equal to the sum of the block's bytes with that
/// field counted as spaces, unsigned or (as some old tars wrote it) signed. The ustar, GNU
/// and v7 formats all pass.
fn is_tar_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let digits = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ' || *b == 0)
        .take_while(|b| *b != b' ' && *b != 0)
        .collect::<Vec<u8>>();
    if digits.is_empty() || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return false;
    }
    let Some(stored) = digits.iter().try_fold(0i64, |n, d| {
        n.checked_mul(8)?.checked_add(i64::from(d - b'0'))
    }) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || stored == signed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/sub")).unwrap();
        std::fs::write(d.path().join("src/a.txt"), b"a").unwrap();
        std::fs::write(d.path().join("src/b.md"), b"b").unwrap();
        std::fs::write(d.path().join("src/sub/c.txt"), b"c").unwrap();
        std::fs::write(d.path().join("top.txt"), b"t").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("passwd")).unwrap();
        d
    }

    #[test]
    fn globs_select_and_missing_sources_are_named() {
        let c = ctx();
        let (m, wild) = select_sources(c.path(), &["src/*.txt".into()]).unwrap();
        assert!(wild);
        assert_eq!(
            m.iter().map(|m| m.rel.as_str()).collect::<Vec<_>>(),
            ["src/a.txt"]
        );
        let (m, _) = select_sources(c.path(), &["src/**/*.txt".into()]).unwrap();
        assert_eq!(
            m.iter().map(|m| m.rel.as_str()).collect::<Vec<_>>(),
            ["src/a.txt", "src/sub/c.txt"]
        );
        let e = select_sources(c.path(), &["nope/x".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nope/x") && e.contains("not found"), "{e}");
    }

    #[test]
    fn sources_cannot_escape_the_context() {
        let c = ctx();
        let (m, _) = select_sources(c.path(), &["../../top.txt".into()]).unwrap();
        assert_eq!(m[0].path, c.path().join("top.txt"));
        // a symlink to /etc/passwd resolves inside the context, where nothing is
        let e = select_sources(c.path(), &["passwd".into()]);
        match e {
            Ok((m, _)) => assert!(m[0].path.starts_with(c.path())),
            Err(e) => assert!(e.to_string().contains("not found")),
        }
    }

    /// Two different trees whose entries, written with separators alone, gave the same
    /// bytes (a newline in a link target standing for an entry boundary).
    #[test]
    fn content_hash_tells_apart_trees_that_separators_alone_would_not() {
        let one = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(one.path().join("d/c")).unwrap();
        std::os::unix::fs::symlink("T\nab", one.path().join("d/a")).unwrap();
        let two = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(two.path().join("d/ab\nc")).unwrap();
        std::os::unix::fs::symlink("T", two.path().join("d/a")).unwrap();
        let hash = |root: &Path| {
            let (m, _) = select_sources(root, &["d".into()]).unwrap();
            content_hash(&m[0], &[], None).unwrap()
        };
        assert_ne!(hash(one.path()), hash(two.path()));
    }

    #[test]
    fn content_hash_sees_bytes_not_mtime() {
        let c = ctx();
        let (m, _) = select_sources(c.path(), &["src".into()]).unwrap();
        let h1 = content_hash(&m[0], &[], None).unwrap();
        let path = c.path().join("src/a.txt");
        let mtime = path.metadata().unwrap().modified().unwrap();
        std::fs::write(&path, b"z").unwrap(); // same size
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let h2 = content_hash(&m[0], &[], None).unwrap();
        assert_ne!(h1, h2);
        let h3 = content_hash(&m[0], &["*.txt".into()], None).unwrap();
        assert_ne!(h2, h3);
    }

    #[test]
    fn copy_follows_destination_rules() {
        let c = ctx();
        let target = tempfile::tempdir().unwrap();
        let (m, w) = select_sources(c.path(), &["src".into()]).unwrap();
        copy_sources(
            &m,
            w,
            target.path(),
            "/app",
            false,
            &["*.md".into()],
            &CopyAttrs {
                owner: Some((5, 6)),
                mode: None,
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read(target.path().join("app/sub/c.txt")).unwrap(),
            b"c"
        );
        assert!(!target.path().join("app/b.md").exists());
        assert_eq!(target.path().join("app/a.txt").metadata().unwrap().uid(), 5);
        let (m, w) = select_sources(c.path(), &["top.txt".into()]).unwrap();
        copy_sources(
            &m,
            w,
            target.path(),
            "/file",
            false,
            &[],
            &CopyAttrs::default(),
        )
        .unwrap();
        assert!(target.path().join("file").is_file());
        copy_sources(
            &m,
            w,
            target.path(),
            "/dir/",
            true,
            &[],
            &CopyAttrs {
                owner: None,
                mode: Some(Chmod::Octal(0o600)),
            },
        )
        .unwrap();
        assert_eq!(
            target.path().join("dir/top.txt").metadata().unwrap().mode() & 0o777,
            0o600
        );
        // a destination symlink pointing outside stays inside the target root
        std::os::unix::fs::symlink("/tmp", target.path().join("out")).unwrap();
        copy_sources(
            &m,
            w,
            target.path(),
            "/out/",
            true,
            &[],
            &CopyAttrs::default(),
        )
        .unwrap();
        assert!(target.path().join("tmp/top.txt").is_file());
    }

    #[test]
    fn directories_are_made_through_symlinks_to_missing_targets_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::os::unix::fs::symlink("/opt/a/b", r.join("lnk")).unwrap();
        let made = mkdir_all_in_root(r, "/lnk/w", (5, 6)).unwrap();
        assert_eq!(made, r.join("opt/a/b/w"));
        for d in ["opt", "opt/a", "opt/a/b", "opt/a/b/w"] {
            let m = r.join(d).symlink_metadata().unwrap();
            assert!(m.is_dir(), "{d}");
            assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (5, 6, 0o755), "{d}");
        }
        assert!(r.join("lnk").symlink_metadata().unwrap().is_symlink());
        std::os::unix::fs::symlink("x/y", r.join("rel")).unwrap();
        assert_eq!(mkdir_all_in_root(r, "/rel", (0, 0)).unwrap(), r.join("x/y"));
        std::os::unix::fs::symlink("../../../../outside", r.join("up")).unwrap();
        assert_eq!(
            mkdir_all_in_root(r, "/up/z", (0, 0)).unwrap(),
            r.join("outside/z")
        );
        // in the way: told as the image's paths
        std::fs::write(r.join("file"), b"").unwrap();
        std::os::unix::fs::symlink("/file/sub", r.join("bad")).unwrap();
        let e = mkdir_all_in_root(r, "/bad/x", (0, 0))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "cannot create directory /bad: /file is not a directory");
    }

    #[test]
    fn chmod_accepts_octal_and_symbolic_modes_as_chmod_does() {
        let m = |v: &str, mode: u32, dir: bool| Chmod::parse(v).unwrap().apply(mode, dir);
        assert_eq!(m("755", 0o600, false), 0o755);
        assert_eq!(m("0644", 0o777, true), 0o644);
        assert_eq!(m("u+x,g-w", 0o664, false), 0o744);
        assert_eq!(m("a=rX", 0o640, false), 0o444);
        assert_eq!(m("a=rX", 0o740, false), 0o555);
        assert_eq!(m("a=rX", 0o700, true), 0o555);
        assert_eq!(m("+x", 0o644, false), 0o755);
        assert_eq!(m("go=u", 0o750, false), 0o777);
        assert_eq!(m("u=rwx,go=", 0o666, false), 0o700);
        assert_eq!(m("o-rwx+t", 0o777, true), 0o1770);
        assert_eq!(m("u+s,g+s", 0o755, false), 0o6755);
        assert_eq!(m("g+w-r", 0o644, false), 0o624);
        for bad in ["", "8", "17777", "u", "u+q", "z+x", "u+x,", "a=r w"] {
            let e = Chmod::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("--chmod") && e.contains(&format!("'{bad}'")),
                "{e}"
            );
        }
    }

    #[test]
    fn parents_keep_the_path_after_the_pivot() {
        assert_eq!(parents_kept("./x/a.txt", "x/a.txt"), "x/a.txt");
        assert_eq!(parents_kept("x/a.txt", "x/a.txt"), "x/a.txt");
        assert_eq!(parents_kept("./x/./y/*.txt", "x/y/b.txt"), "y/b.txt");
        assert_eq!(parents_kept("/x/./y", "x/y"), "y");
        assert_eq!(parents_kept("x/./", "x"), "");
        assert_eq!(parents_kept("a/b/./c/**/*.go", "a/b/c/d/e.go"), "c/d/e.go");

        let c = ctx();
        let target = tempfile::tempdir().unwrap();
        let mut picked = Vec::new();
        for source in ["src/**/*.txt", "./src/./sub"] {
            let (m, _) = select_sources(c.path(), &[source.to_owned()]).unwrap();
            picked.extend(m.into_iter().map(|m| {
                let kept = parents_kept(source, &m.rel);
                (m, kept)
            }));
        }
        copy_with_parents(&picked, target.path(), "/p/", &[], &CopyAttrs::default()).unwrap();
        let t = target.path();
        assert_eq!(std::fs::read(t.join("p/src/a.txt")).unwrap(), b"a");
        assert_eq!(std::fs::read(t.join("p/src/sub/c.txt")).unwrap(), b"c");
        assert_eq!(std::fs::read(t.join("p/sub/c.txt")).unwrap(), b"c");
        assert!(!t.join("p/src/b.md").exists() && !t.join("p/a.txt").exists());
    }

    #[test]
    fn inline_files_are_0644_and_named_by_their_delimiter() {
        let d = tempfile::tempdir().unwrap();
        let m = write_inline_files(
            &d.path().join("h"),
            &[("EOF".into(), "hi\n".into()), ("two".into(), String::new())],
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].path.metadata().unwrap().mode() & 0o7777, 0o644);
        assert_eq!(std::fs::read(&m[0].path).unwrap(), b"hi\n");
        for bad in ["", "..", "a/b"] {
            assert!(write_inline_files(&d.path().join("x"), &[(bad.into(), "x".into())]).is_err());
        }
    }

    /// A tar of one file `hello.txt`.
    fn one_file_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut w, bytes).unwrap();
        w.finish().unwrap()
    }

    fn bzip2(bytes: &[u8]) -> Vec<u8> {
        let mut w = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        io::Write::write_all(&mut w, bytes).unwrap();
        w.finish().unwrap()
    }

    fn xz(bytes: &[u8]) -> Vec<u8> {
        let mut w =
            lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
        io::Write::write_all(&mut w, bytes).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn only_tar_archives_are_extracted_whatever_their_compression() {
        use crate::compression::Compression;
        let d = tempfile::tempdir().unwrap();
        let tar = one_file_tar();
        let text = b"just some text, not a tar at all\n".repeat(40);
        // a v7 header: no ustar magic, a valid checksum
        let mut v7 = tar.clone();
        v7[257..265].fill(0);
        let mut h = tar::Header::from_byte_slice(&v7[..512]).clone();
        h.set_cksum();
        v7[..512].copy_from_slice(h.as_bytes());
        let mut bad_sum = tar.clone();
        bad_sum[0] ^= 1;
        let mut truncated_gz = gzip(&tar);
        truncated_gz.truncate(20);
        let cases: Vec<(&str, Vec<u8>, Option<Compression>)> = vec![
            ("t.tar", tar.clone(), Some(Compression::None)),
            ("v7.tar", v7, Some(Compression::None)),
            ("t.tar.gz", gzip(&tar), Some(Compression::Gzip)),
            ("t.tar.bz2", bzip2(&tar), Some(Compression::Bzip2)),
            ("t.tar.xz", xz(&tar), Some(Compression::Xz)),
            ("file.txt", text.clone(), None),
            ("file.txt.gz", gzip(&text), None),
            ("short.txt.gz", gzip(b"hi\n"), None),
            ("file.txt.bz2", bzip2(&text), None),
            ("file.txt.xz", xz(&text), None),
            ("empty.tar.gz", gzip(&[0u8; 10240]), None),
            ("bad-sum.tar", bad_sum, None),
            ("truncated.tar.gz", truncated_gz, None),
            ("t.tar.zst", vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0], None),
        ];
        for (name, bytes, want) in cases {
            let path = d.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(tar_archive(&path), want, "{name}");
        }
        assert_eq!(tar_archive(&d.path().join("missing")), None);
    }
}
