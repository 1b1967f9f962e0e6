//! Paths inside a root filesystem that must never lead outside it.
//!
//! [`resolve_in_root`] is a chroot-style join: symlinks met on the way are followed, but an
//! absolute target restarts at the root and `..` never climbs above it, so the result is
//! always under `root` (like Go's `filepath-securejoin`). [`clean`] is Go's `path.Clean` for
//! `/`-separated paths.

use std::path::{Path, PathBuf};

use crate::error::ExecutorError;

/// The most symlinks one resolution follows (Linux's limit, ELOOP beyond).
const MAX_SYMLINKS: usize = 40;

/// Go's `path.Clean` for an absolute, `/`-separated path: the result starts with `/`, has
/// no `.`, `..` or empty components, and `..` at the root stays at the root.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The components of a cleaned absolute path (empty for `/`).
pub fn components(path: &str) -> Vec<String> {
    clean(path)
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Resolves `path` (absolute or relative to `/`) inside `root`, following symlinks inside the
/// root. The last component is followed too when `follow_last` is set. Missing components
/// are fine: the rest of the path is appended as is.
pub fn resolve_in_root(
    root: &Path,
    path: &str,
    follow_last: bool,
) -> Result<PathBuf, ExecutorError> {
    let mut pending: Vec<String> = components(path).into_iter().rev().collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut followed = 0usize;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        if part == "." {
            continue;
        }
        let candidate = root.join(resolved.join("/")).join(&part);
        let is_last = pending.is_empty();
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() && (!is_last || follow_last) => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(ExecutorError::InvalidPath {
                        path: path.to_owned(),
                        reason: "too many levels of symbolic links".into(),
                    });
                }
                let target =
                    std::fs::read_link(&candidate).map_err(|e| ExecutorError::io(&candidate, e))?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                for t in target.split('/').filter(|p| !p.is_empty()).rev() {
                    pending.push(t.to_owned());
                }
            }
            _ => resolved.push(part),
        }
    }
    Ok(root.join(resolved.join("/")))
}

/// Checks that no component of `rel` below `root` (except a missing tail) is a symlink, for
/// writers that must not follow links at all. Returns the full path.
pub fn join_no_symlinks(root: &Path, rel: &str) -> Result<PathBuf, ExecutorError> {
    let parts = components(rel);
    let mut current = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        current.push(part);
        if i + 1 == parts.len() {
            break;
        }
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ExecutorError::InvalidPath {
                    path: rel.to_owned(),
                    reason: format!("parent {} is a symbolic link", parts[..=i].join("/")),
                });
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(ExecutorError::InvalidPath {
                    path: rel.to_owned(),
                    reason: format!("parent {} is not a directory", parts[..=i].join("/")),
                });
            }
            _ => {}
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn clean_matches_go_path_clean() {
        assert_eq!(clean(""), "/");
        assert_eq!(clean("a/b/../c"), "/a/c");
        assert_eq!(clean("/../../x"), "/x");
        assert_eq!(clean("//a//./b/"), "/a/b");
    }

    #[test]
    fn symlinks_never_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/etc/passwd", root.join("passwd")).unwrap();
        symlink("../../../../../etc", root.join("up")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/lib/x", true).unwrap(),
            root.join("usr/lib/x")
        );
        assert_eq!(
            resolve_in_root(root, "/passwd", true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, "/passwd", false).unwrap(),
            root.join("passwd")
        );
        assert_eq!(
            resolve_in_root(root, "/up/shadow", true).unwrap(),
            root.join("etc/shadow")
        );
        assert_eq!(
            resolve_in_root(root, "../../x", true).unwrap(),
            root.join("x")
        );
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        assert!(resolve_in_root(dir.path(), "/a/x", true).is_err());
    }

    #[test]
    fn join_no_symlinks_rejects_symlinked_parents() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/tmp", dir.path().join("t")).unwrap();
        assert!(join_no_symlinks(dir.path(), "t/x").is_err());
        assert!(join_no_symlinks(dir.path(), "t").is_ok());
        assert!(join_no_symlinks(dir.path(), "a/b").is_ok());
    }
}
