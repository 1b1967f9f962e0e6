//! `RUN --mount` (dockerfile.md §8.2): cache, tmpfs and bind mounts of one RUN step.
//!
//! - `type=cache`: a directory per cache id (the target when no id is given) under
//!   `ROOT/executor/cache-mounts`, kept between builds and shared by the steps that name the
//!   id (`sharing=shared`), held by one step at a time (`locked`), or replaced by an empty
//!   throwaway directory while another step holds it (`private`). Its contents are never
//!   part of a layer nor of a cache key (its spec is). `strata gc --prune-cache` removes
//!   every cache directory no running step holds ([`CacheMounts::prune`]).
//! - `type=tmpfs`: a fresh tmpfs (`size` honoured).
//! - `type=bind`: a path of the build context, or of a stage's or image's root filesystem,
//!   read-only unless `rw`, in which case writes go to a throwaway copy.
//! - `type=secret` and `type=ssh` are left out (strata has no client session to carry them),
//!   and refused when `required=true`.
//!
//! Mount points the runtime creates in the root filesystem are removed after the step, as
//! BuildKit does, so the layer does not record them.

use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde_json::json;
use strata_types::Digest;

use crate::error::ExecutorError;
use crate::rootpath::{clean, components};

/// Cache sharing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Every step using the id sees the same directory at the same time.
    Shared,
    /// A step using the id while another holds it gets an empty throwaway directory.
    Private,
    /// Steps using the id take turns.
    Locked,
}

impl std::fmt::Display for Sharing {
    /// As the Dockerfile writes it (`sharing=locked`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Shared => "shared",
            Self::Private => "private",
            Self::Locked => "locked",
        })
    }
}

/// A cache mount as the step asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMount {
    /// The cache id.
    pub id: String,
    /// Sharing mode.
    pub sharing: Sharing,
    /// Mode of the directory when it is created.
    pub mode: u32,
    /// Owner of the directory when it is created.
    pub uid: u32,
    /// Group of the directory when it is created.
    pub gid: u32,
    /// Mounted read-only.
    pub readonly: bool,
}

impl CacheMount {
    /// From the parser's mount (`id` defaults to the target).
    pub fn from_spec(
        id: &str,
        target: &str,
        sharing: &str,
        options: &HashMap<String, String>,
        readonly: bool,
    ) -> Result<Self, ExecutorError> {
        let number = |key: &str, radix: u32, default: u32| -> Result<u32, ExecutorError> {
            match options.get(key) {
                None => Ok(default),
                Some(v) => u32::from_str_radix(v, radix).map_err(|_| {
                    ExecutorError::InvalidArgument(format!(
                        "RUN --mount=type=cache: invalid {key} {v:?}"
                    ))
                }),
            }
        };
        Ok(Self {
            id: if id.is_empty() {
                target.to_owned()
            } else {
                id.to_owned()
            },
            sharing: match sharing {
                "private" => Sharing::Private,
                "locked" => Sharing::Locked,
                _ => Sharing::Shared,
            },
            mode: number("mode", 8, 0o755)?,
            uid: number("uid", 10, 0)?,
            gid: number("gid", 10, 0)?,
            readonly,
        })
    }
}

/// The executor's cache mount directories.
#[derive(Debug)]
pub struct CacheMounts {
    dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Steps holding each cache directory (by its name), whatever their sharing: a prune
    /// leaves those alone. Taken before a hold looks at the directory, so a prune either
    /// sees the hold or moves the directory away before the hold makes a fresh one.
    users: Arc<Mutex<HashMap<String, usize>>>,
}

/// A cache directory held for one step; dropping it releases a `locked`/`private` hold.
#[derive(Debug)]
pub struct HeldCache {
    /// The directory to bind.
    pub dir: PathBuf,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    _throwaway: Option<tempfile::TempDir>,
    _use: InUse,
}

/// One step's use of a cache directory, counted in [`CacheMounts::users`] while it lives.
#[derive(Debug)]
struct InUse {
    users: Arc<Mutex<HashMap<String, usize>>>,
    name: String,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = users.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                users.remove(&self.name);
            }
        }
    }
}

/// What [`CacheMounts::prune`] removed (or, dry, would remove).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheMountPrune {
    /// Directories.
    pub removed: u64,
    /// The disk space they took.
    pub bytes_freed: u64,
}

impl CacheMounts {
    /// Cache mounts under `dir` (`ROOT/executor/cache-mounts`).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            locks: Mutex::new(HashMap::new()),
            users: Arc::default(),
        }
    }

    fn name(id: &str) -> String {
        Digest::of(id.as_bytes()).hex()
    }

    /// Removes every cache directory no running step holds (BuildKit's prune does the same
    /// with its cache mounts). Each goes aside by a rename first, so a step that starts
    /// using the cache meanwhile gets a fresh directory, never a half-deleted one.
    pub fn prune(&self, dry_run: bool) -> Result<CacheMountPrune, ExecutorError> {
        let listing = match std::fs::read_dir(&self.dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CacheMountPrune::default());
            }
            Err(e) => return Err(ExecutorError::io_op("reading", &self.dir, e)),
        };
        let mut report = CacheMountPrune::default();
        let mut doomed = Vec::new();
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // leftovers of an interrupted prune or creation go too; in-use names stay
            let leftover = name.starts_with(".pruned-") || name.starts_with(".new-");
            // a cache directory's name is the hex sha256 of its id
            if !leftover && !crate::local_cache::is_hex(&name) {
                continue;
            }
            let path = entry.path();
            let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
            if users.contains_key(&name) {
                continue;
            }
            if leftover && name.starts_with(".new-") && !dry_run {
                // a creation in progress holds its name in `users` under the final name,
                // not this one: leave fresh ones to their maker
                let young = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|age| age.as_secs() < 3600);
                if young {
                    continue;
                }
            }
            report.removed += u64::from(!leftover);
            report.bytes_freed += crate::local_cache::disk_usage(&path);
            if dry_run {
                continue;
            }
            let away = if leftover {
                path
            } else {
                // a fresh name each time: an interrupted prune's leftover may hold the old one
                let away = tempfile::Builder::new()
                    .prefix(&format!(".pruned-{name}-"))
                    .tempdir_in(&self.dir)
                    .map_err(|e| ExecutorError::io_op("creating", &self.dir, e))?
                    .keep();
                std::fs::rename(&path, away.join("cache"))
                    .map_err(|e| ExecutorError::io_op("moving aside", &path, e))?;
                away
            };
            drop(users);
            doomed.push(away);
        }
        for d in doomed {
            std::fs::remove_dir_all(&d).map_err(|e| ExecutorError::io_op("removing", &d, e))?;
        }
        Ok(report)
    }

    /// Where the cache `id` lives: named by the id's digest, so any id is a safe name.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(Self::name(id))
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("cache mount locks")
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// Whether holding `m` now would make a new directory (the cache's first use, or a
    /// `private` step's throwaway copy beside a step that holds it): the moment a seed is
    /// copied in. A step that takes the lock between this answer and [`Self::hold`] leaves
    /// a private step's throwaway copy unseeded: a cache is a speed-up, not an input.
    pub fn needs_seed(&self, m: &CacheMount) -> bool {
        !self.path(&m.id).exists()
            || (m.sharing == Sharing::Private && self.lock(&m.id).try_lock().is_err())
    }

    /// Creates the cache directory on first use (with the contents of `seed`, when given)
    /// and holds it as `m.sharing` says. `scratch` is where a `private` step's throwaway
    /// directory goes (seeded too).
    pub async fn hold(
        &self,
        m: &CacheMount,
        scratch: &Path,
        seed: Option<&Path>,
    ) -> Result<HeldCache, ExecutorError> {
        let name = Self::name(&m.id);
        *self
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.clone())
            .or_default() += 1;
        let in_use = InUse {
            users: self.users.clone(),
            name,
        };
        let dir = self.path(&m.id);
        if !dir.exists() {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| ExecutorError::io_op("creating", &self.dir, e))?;
            // build it aside and rename, so a concurrent step never sees it half made
            let fresh = tempfile::Builder::new()
                .prefix(".new-")
                .tempdir_in(&self.dir)
                .map_err(|e| ExecutorError::io_op("creating", &self.dir, e))?;
            new_cache_dir(fresh.path(), m, seed)?;
            let fresh = fresh.keep();
            if std::fs::rename(&fresh, &dir).is_err() {
                let _ = std::fs::remove_dir(&fresh); // another step made it first
            }
        }
        let (guard, throwaway) = match m.sharing {
            Sharing::Shared => (None, None),
            Sharing::Locked => (Some(self.lock(&m.id).lock_owned().await), None),
            Sharing::Private => match self.lock(&m.id).try_lock_owned() {
                Ok(g) => (Some(g), None),
                Err(_) => {
                    std::fs::create_dir_all(scratch)
                        .map_err(|e| ExecutorError::io_op("creating", scratch, e))?;
                    let t = tempfile::tempdir_in(scratch)
                        .map_err(|e| ExecutorError::io_op("creating", scratch, e))?;
                    new_cache_dir(t.path(), m, seed)?;
                    (None, Some(t))
                }
            },
        };
        Ok(HeldCache {
            dir: throwaway
                .as_ref()
                .map_or(dir, |t: &tempfile::TempDir| t.path().to_path_buf()),
            _guard: guard,
            _throwaway: throwaway,
            _use: in_use,
        })
    }
}

/// Makes the empty `dir` a new cache directory for `m`: its mode and owner, and the
/// contents of `seed` when there is one.
fn new_cache_dir(dir: &Path, m: &CacheMount, seed: Option<&Path>) -> Result<(), ExecutorError> {
    init_dir(dir, m.mode, m.uid, m.gid)?;
    match seed {
        Some(seed) => crate::snapshot::copy_dir_contents(seed, dir),
        None => Ok(()),
    }
}

fn init_dir(dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), ExecutorError> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ExecutorError::io(dir, e))?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| ExecutorError::io(dir, e))
}

/// The runtime-spec mount of a bind.
pub fn bind_spec(target: &str, source: &Path, readonly: bool) -> serde_json::Value {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    if readonly {
        options.push("ro");
    }
    json!({"destination": target, "type": "bind", "source": source, "options": options})
}

/// The runtime-spec mount of a tmpfs.
pub fn tmpfs_spec(target: &str, size: Option<u64>) -> serde_json::Value {
    let mut options = vec![
        "nosuid".to_owned(),
        "nodev".to_owned(),
        "mode=1777".to_owned(),
    ];
    if let Some(size) = size {
        options.push(format!("size={size}"));
    }
    json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
}

/// A mount target as the container sees it: absolute, relative ones against `workdir`.
pub fn absolute_target(target: &str, workdir: &str) -> Result<String, ExecutorError> {
    if target.is_empty() {
        return Err(ExecutorError::InvalidArgument(
            "RUN --mount needs a target".into(),
        ));
    }
    let t = if target.starts_with('/') {
        clean(target)
    } else {
        clean(&format!("{workdir}/{target}"))
    };
    if t == "/" {
        return Err(ExecutorError::InvalidArgument(
            "RUN --mount cannot mount over the root directory".into(),
        ));
    }
    Ok(t)
}

/// The first component of `target` missing in `root` (the runtime creates it and what is
/// below it), if any: see [`remove_stub`].
pub fn missing_stub(root: &Path, target: &str) -> Option<String> {
    let mut prefix = String::new();
    for part in components(target) {
        prefix.push('/');
        prefix.push_str(&part);
        match root.join(&prefix[1..]).symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => return None, // the runtime resolves it
            Ok(_) => {}
            Err(_) => return Some(prefix),
        }
    }
    None
}

/// Removes what the runtime created for `target` from `stub` (the first missing component)
/// down, while it holds nothing: an empty file or directory, then its empty parents up to
/// `stub`. Whatever a step wrote there stays.
pub fn remove_stub(root: &Path, stub: &str, target: &str) {
    let mut path = clean(target);
    loop {
        let on_disk = root.join(path.trim_start_matches('/'));
        match on_disk.symlink_metadata() {
            Ok(m) if m.is_dir() => {
                if std::fs::remove_dir(&on_disk).is_err() {
                    return;
                }
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                if std::fs::remove_file(&on_disk).is_err() {
                    return;
                }
            }
            Ok(_) => return,
            Err(_) => {}
        }
        if path == stub || !path.starts_with(stub) {
            return;
        }
        match path.rsplit_once('/') {
            Some((parent, _)) if !parent.is_empty() => path = parent.to_owned(),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_made_for_mount_points_are_removed_when_empty() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr")).unwrap();
        assert_eq!(missing_stub(r, "/usr"), None);
        assert_eq!(
            missing_stub(r, "/usr/cache/x").as_deref(),
            Some("/usr/cache")
        );
        // what the runtime would create
        std::fs::create_dir_all(r.join("usr/cache/x")).unwrap();
        remove_stub(r, "/usr/cache", "/usr/cache/x");
        assert!(!r.join("usr/cache").exists() && r.join("usr").is_dir());
        // a step wrote beside the mount point: that stays
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/kept"), "k").unwrap();
        remove_stub(r, "/a", "/a/b");
        assert!(!r.join("a/b").exists() && r.join("a/kept").is_file());
        // a file bind's empty stub
        std::fs::write(r.join("f"), "").unwrap();
        remove_stub(r, "/f", "/f");
        assert!(!r.join("f").exists());
    }

    #[test]
    fn targets_are_absolute_against_the_workdir() {
        assert_eq!(absolute_target("cache", "/app").unwrap(), "/app/cache");
        assert_eq!(absolute_target("/x/../y/", "/app").unwrap(), "/y");
        assert!(absolute_target("", "/").is_err());
        assert!(absolute_target("/..", "/").is_err());
    }

    #[tokio::test]
    async fn a_prune_removes_the_cache_dirs_no_step_holds() {
        let d = tempfile::tempdir().unwrap();
        let caches = CacheMounts::new(d.path().join("cache-mounts"));
        assert_eq!(caches.prune(false).unwrap(), CacheMountPrune::default());
        let spec = |id: &str, sharing: &str| {
            CacheMount::from_spec(id, "/c", sharing, &HashMap::new(), false).unwrap()
        };
        let (held, idle) = (spec("held", "shared"), spec("idle", "locked"));
        let scratch = d.path().join("tmp");
        let h = caches.hold(&held, &scratch, None).await.unwrap();
        std::fs::write(h.dir.join("f"), vec![7u8; 64 << 10]).unwrap();
        {
            let i = caches.hold(&idle, &scratch, None).await.unwrap();
            std::fs::write(i.dir.join("f"), vec![7u8; 64 << 10]).unwrap();
        }
        // a stray file that is no cache directory is left alone
        std::fs::write(d.path().join("cache-mounts/README"), "x").unwrap();

        let dry = caches.prune(true).unwrap();
        assert_eq!(dry.removed, 1);
        assert!(dry.bytes_freed >= 64 << 10, "{dry:?}");
        assert!(
            caches.path("idle").join("f").exists(),
            "a dry run removes nothing"
        );

        assert_eq!(caches.prune(false).unwrap(), dry);
        assert!(!caches.path("idle").exists());
        assert!(h.dir.join("f").exists(), "the held (shared) cache stays");
        assert!(d.path().join("cache-mounts/README").exists());
        let names: Vec<_> = std::fs::read_dir(d.path().join("cache-mounts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "nothing left aside: {names:?}");
        // what an interrupted prune left aside goes at the next one
        std::fs::create_dir_all(d.path().join("cache-mounts/.pruned-x-1/cache/deep")).unwrap();
        let next = caches.prune(false).unwrap();
        assert_eq!(next.removed, 0, "{next:?}");
        assert!(!d.path().join("cache-mounts/.pruned-x-1").exists());

        drop(h);
        assert_eq!(
            caches.prune(false).unwrap().removed,
            1,
            "released, it goes too"
        );
        // a later step starts from an empty cache
        let again = caches.hold(&held, &scratch, None).await.unwrap();
        assert!(!again.dir.join("f").exists());
    }

    #[tokio::test]
    async fn cache_dirs_persist_and_private_holds_are_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let caches = CacheMounts::new(d.path().join("cache-mounts"));
        let m =
            CacheMount::from_spec("", "/root/.cache", "private", &HashMap::new(), false).unwrap();
        assert_eq!(m.id, "/root/.cache");
        let first = caches.hold(&m, &d.path().join("tmp"), None).await.unwrap();
        std::fs::write(first.dir.join("kept"), "1").unwrap();
        let second = caches.hold(&m, &d.path().join("tmp"), None).await.unwrap();
        assert_ne!(
            first.dir, second.dir,
            "a private cache in use gives a fresh dir"
        );
        assert!(!second.dir.join("kept").exists());
        drop((first, second));
        let again = caches.hold(&m, &d.path().join("tmp"), None).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(again.dir.join("kept")).unwrap(),
            "1"
        );
        assert_eq!(
            again.dir.metadata().unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }

    #[tokio::test]
    async fn a_seed_fills_a_new_cache_and_a_private_copy_but_never_an_existing_cache() {
        let d = tempfile::tempdir().unwrap();
        let seed = d.path().join("seed");
        std::fs::create_dir_all(seed.join("sub")).unwrap();
        std::fs::write(seed.join("sub/file"), "seeded").unwrap();
        std::os::unix::fs::symlink("sub/file", seed.join("link")).unwrap();
        let caches = CacheMounts::new(d.path().join("cache-mounts"));
        let m = CacheMount::from_spec("deps", "/deps", "private", &HashMap::new(), false).unwrap();
        assert!(caches.needs_seed(&m), "a cache never used needs its seed");
        let first = caches
            .hold(&m, &d.path().join("tmp"), Some(&seed))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(first.dir.join("sub/file")).unwrap(),
            "seeded"
        );
        assert_eq!(
            std::fs::read_link(first.dir.join("link")).unwrap(),
            Path::new("sub/file")
        );
        std::fs::write(first.dir.join("sub/file"), "changed by a step").unwrap();

        // held: a private step gets a throwaway copy, seeded as well
        assert!(caches.needs_seed(&m));
        let second = caches
            .hold(&m, &d.path().join("tmp"), Some(&seed))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(second.dir.join("sub/file")).unwrap(),
            "seeded"
        );
        drop((first, second));

        // the cache exists and is free: its contents stay what steps made them
        assert!(!caches.needs_seed(&m));
        let again = caches
            .hold(&m, &d.path().join("tmp"), Some(&seed))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(again.dir.join("sub/file")).unwrap(),
            "changed by a step"
        );
    }
}
