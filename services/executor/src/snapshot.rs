//! Root filesystems for build steps: an overlayfs mount over the parent's layers, or a copy.
//!
//! Each layer lives once per executor as a directory in overlay lowerdir form (deletions as
//! 0/0 character devices, opaque directories by xattr). [`Snapshot::prepare`] stacks them:
//! - [`SnapshotterKind::Overlay`]: `mount -t overlay` with `lowerdir` = the layers (top
//!   first), a fresh `upperdir`, and `redirect_dir`/`metacopy`/`index` off so that the upper
//!   dir alone describes the change; the changes are then the upper dir's entries;
//! - [`SnapshotterKind::Copy`]: the layers copied into one directory in order (markers
//!   applied), with an index of every path's identity (inode, ctime, mode, owner, size) so
//!   the changes are found by walking the tree again — for machines without overlayfs.
//!
//! A snapshot unmounts and removes its scratch directory when dropped, so a failed or
//! cancelled step (its future dropped) leaves no mount behind.

use std::{
    collections::HashMap,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

use nix::mount::{MntFlags, MsFlags};
use tracing::{debug, warn};

use crate::error::ExecutorError;
use crate::layer_tar::{Change, is_opaque, upper_changes};

/// The most bytes the kernel accepts in mount(2) options (one page).
const MAX_MOUNT_OPTIONS: usize = 4000;

/// How snapshots are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotterKind {
    /// overlayfs.
    Overlay,
    /// Full copies and a tree diff.
    Copy,
}

impl std::fmt::Display for SnapshotterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Overlay => "overlayfs",
            Self::Copy => "copy",
        })
    }
}

/// Identity of a path in the copy snapshotter's index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    ino: u64,
    ctime: (i64, i64),
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
}

impl Identity {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            ino: m.ino(),
            ctime: (m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// A root filesystem being worked on.
#[derive(Debug)]
pub struct Snapshot {
    kind: SnapshotterKind,
    dir: PathBuf,
    merged: PathBuf,
    upper: PathBuf,
    mounted: bool,
    index: HashMap<String, Identity>,
    /// Upper-dir copies of lower directories that are no change (see [`Snapshot::restore_dir`]).
    copied_up: Vec<String>,
}

impl Snapshot {
    /// Makes a writable root over `lowers` (bottom layer first) in the new scratch
    /// directory `dir`. `read_only` mounts no upper dir (to read a stage's files).
    pub fn prepare(
        kind: SnapshotterKind,
        dir: &Path,
        lowers: &[PathBuf],
        read_only: bool,
    ) -> Result<Self, ExecutorError> {
        let merged = dir.join("merged");
        let upper = dir.join("upper");
        let work = dir.join("work");
        let empty = dir.join("empty");
        for d in [&merged, &upper, &work, &empty] {
            std::fs::create_dir_all(d).map_err(|e| ExecutorError::io_op("creating", d, e))?;
        }
        let mut snap = Self {
            kind,
            dir: dir.to_path_buf(),
            merged: merged.clone(),
            upper: upper.clone(),
            mounted: false,
            index: HashMap::new(),
            copied_up: Vec::new(),
        };
        // An image may hold one layer twice (two steps with the same changes); overlayfs
        // refuses a directory that is twice in lowerdir (ELOOP). Only the upper occurrence
        // matters: it holds every path the lower one does, so it decides all of them.
        let mut seen = std::collections::HashSet::new();
        let mut lowerdir: Vec<String> = lowers
            .iter()
            .rev()
            .filter(|p| seen.insert(p.as_path()))
            .map(|p| p.display().to_string())
            .collect();
        lowerdir.push(empty.display().to_string());
        let options = if read_only {
            format!("lowerdir={}", lowerdir.join(":"))
        } else {
            format!(
                "lowerdir={},upperdir={},workdir={},redirect_dir=off,index=off,metacopy=off",
                lowerdir.join(":"),
                upper.display(),
                work.display()
            )
        };
        if kind == SnapshotterKind::Overlay && options.len() <= MAX_MOUNT_OPTIONS {
            let flags = if read_only {
                MsFlags::MS_RDONLY
            } else {
                MsFlags::empty()
            };
            nix::mount::mount(
                Some("overlay"),
                &merged,
                Some("overlay"),
                flags,
                Some(options.as_str()),
            )
            .map_err(|e| {
                ExecutorError::Runtime(format!(
                    "overlayfs mount on {} failed: {e}",
                    merged.display()
                ))
            })?;
            snap.mounted = true;
            debug!(dir = %dir.display(), layers = lowers.len(), "overlay mounted");
            return Ok(snap);
        }
        if kind == SnapshotterKind::Overlay {
            warn!(
                layers = lowers.len(),
                "too many layers for one overlay mount; copying instead"
            );
        }
        snap.kind = SnapshotterKind::Copy;
        for lower in lowers {
            apply_lower_dir(lower, &merged)?;
        }
        if !read_only {
            snap.index = index_tree(&merged)?;
        }
        Ok(snap)
    }

    /// The root filesystem.
    pub fn root(&self) -> &Path {
        &self.merged
    }

    /// Which snapshotter made it (a Copy when overlay could not be used).
    pub fn kind(&self) -> SnapshotterKind {
        self.kind
    }

    /// Unmounts (overlay); the changes stay readable.
    pub fn unmount(&mut self) -> Result<(), ExecutorError> {
        if self.mounted {
            if let Err(e) = nix::mount::umount2(&self.merged, MntFlags::empty()) {
                warn!(path = %self.merged.display(), error = %e, "unmount failed; detaching");
                nix::mount::umount2(&self.merged, MntFlags::MNT_DETACH).map_err(|e| {
                    ExecutorError::Runtime(format!("unmounting {}: {e}", self.merged.display()))
                })?;
            }
            self.mounted = false;
        }
        Ok(())
    }

    /// Puts the directory `rel` back as it was before the step (`before`) when the step
    /// changed only its times: same mode and owner and, on overlayfs, nothing of its own
    /// in the upper dir (overlayfs copied it up only for a mount point the step no longer
    /// holds). Its mtime is set back, and on overlayfs the empty copy leaves the upper dir
    /// at [`Snapshot::changes`], so the directory is no change of the step's.
    pub fn restore_dir(
        &mut self,
        rel: &str,
        before: &std::fs::Metadata,
    ) -> Result<(), ExecutorError> {
        let merged = self.merged.join(rel);
        let Ok(now) = merged.symlink_metadata() else {
            return Ok(());
        };
        if !now.is_dir()
            || (now.mode(), now.uid(), now.gid()) != (before.mode(), before.uid(), before.gid())
        {
            return Ok(());
        }
        if self.kind == SnapshotterKind::Overlay {
            let upper = self.upper.join(rel);
            let Ok(mut entries) = std::fs::read_dir(&upper) else {
                return Ok(()); // not copied up
            };
            if entries.next().is_some() || is_opaque(&upper) {
                return Ok(());
            }
            self.copied_up.push(rel.to_owned());
        }
        let t = nix::sys::time::TimeSpec::new(before.mtime(), before.mtime_nsec());
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &merged,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| ExecutorError::io_op("setting times", &merged, e.into()))
    }

    /// The changes made since `prepare`, and the directory they are read from.
    pub fn changes(&mut self) -> Result<(Vec<Change>, PathBuf), ExecutorError> {
        match self.kind {
            SnapshotterKind::Overlay => {
                self.unmount()?;
                for rel in self.copied_up.drain(..) {
                    // only while still empty: an empty upper copy is no change
                    let _ = std::fs::remove_dir(self.upper.join(rel));
                }
                let changes = upper_changes(&self.upper).map_err(|e| e.in_image(&self.upper))?;
                Ok((changes, self.upper.clone()))
            }
            SnapshotterKind::Copy => {
                let changes = tree_diff(&self.index, &self.merged)?;
                Ok((changes, self.merged.clone()))
            }
        }
    }

    /// After [`Snapshot::changes`]: moves the change directory, when it is in overlay lowerdir
    /// form (overlay upper), to `dest` so that later steps can stack it without extracting
    /// the layer again. Returns false when it cannot (the caller extracts the layer).
    pub fn keep_upper_as(&mut self, dest: &Path) -> bool {
        if self.kind != SnapshotterKind::Overlay || self.mounted || dest.exists() {
            return false;
        }
        std::fs::rename(&self.upper, dest).is_ok()
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            warn!(error = %e, dir = %self.dir.display(), "leaving a snapshot mounted");
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(error = %e, dir = %self.dir.display(), "could not remove a snapshot");
        }
    }
}

/// Copies a lowerdir-form layer onto `dest`, applying its markers (the copy snapshotter's
/// "mount").
pub fn apply_lower_dir(lower: &Path, dest: &Path) -> Result<(), ExecutorError> {
    copy_tree(lower, dest, true)
}

/// Copies what is inside `src` into the directory `dest` (ownership, modes, times,
/// xattrs, symlinks and special files as they are): how a cache mount gets its seed.
pub fn copy_dir_contents(src: &Path, dest: &Path) -> Result<(), ExecutorError> {
    copy_tree(src, dest, false)
}

fn copy_tree(src: &Path, dest: &Path, apply_markers: bool) -> Result<(), ExecutorError> {
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| ExecutorError::io(src, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| ExecutorError::io(src, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let meta = from
            .symlink_metadata()
            .map_err(|e| ExecutorError::io(&from, e))?;
        let ft = meta.file_type();
        if apply_markers && ft.is_char_device() && meta.rdev() == 0 {
            remove_path(&to)?;
            continue;
        }
        if ft.is_dir() {
            match to.symlink_metadata() {
                Ok(m) if m.is_dir() => {
                    if apply_markers && is_opaque(&from) {
                        remove_path(&to)?;
                        std::fs::create_dir(&to)
                            .map_err(|e| ExecutorError::io_op("creating", &to, e))?;
                    }
                }
                Ok(_) => {
                    remove_path(&to)?;
                    std::fs::create_dir(&to)
                        .map_err(|e| ExecutorError::io_op("creating", &to, e))?;
                }
                Err(_) => std::fs::create_dir(&to)
                    .map_err(|e| ExecutorError::io_op("creating", &to, e))?,
            }
            copy_tree(&from, &to, apply_markers)?;
            copy_metadata(&from, &to, &meta)?;
        } else {
            remove_path(&to)?;
            crate::copy::copy_node(&from, &to, &meta)?;
            copy_metadata(&from, &to, &meta)?;
        }
    }
    Ok(())
}

fn copy_metadata(from: &Path, to: &Path, meta: &std::fs::Metadata) -> Result<(), ExecutorError> {
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| ExecutorError::io_op("chown", to, e))?;
    if !meta.file_type().is_symlink() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| ExecutorError::io_op("chmod", to, e))?;
    }
    if let Ok(names) = xattr::list(from) {
        for n in names {
            if n.to_string_lossy().starts_with("trusted.overlay.") {
                continue;
            }
            if let Ok(Some(v)) = xattr::get(from, &n) {
                let _ = xattr::set(to, &n, &v);
            }
        }
    }
    let t = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| ExecutorError::io_op("setting times", to, e.into()))
}

fn remove_path(p: &Path) -> Result<(), ExecutorError> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).map_err(|e| ExecutorError::io_op("removing", p, e))
        }
        Ok(_) => std::fs::remove_file(p).map_err(|e| ExecutorError::io_op("removing", p, e)),
        Err(_) => Ok(()),
    }
}

fn index_tree(root: &Path) -> Result<HashMap<String, Identity>, ExecutorError> {
    let mut index = HashMap::new();
    walk(root, "", &mut |rel, m| {
        index.insert(rel.to_owned(), Identity::of(m));
    })?;
    Ok(index)
}

fn walk(
    dir: &Path,
    rel: &str,
    f: &mut dyn FnMut(&str, &std::fs::Metadata),
) -> Result<(), ExecutorError> {
    for entry in std::fs::read_dir(dir).map_err(|e| ExecutorError::io(dir, e))? {
        let entry = entry.map_err(|e| ExecutorError::io(dir, e))?;
        let name = entry.file_name();
        let name = ExecutorError::utf8_name(&name, rel)?;
        let path_rel = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(|e| ExecutorError::io(&entry.path(), e))?;
        f(&path_rel, &meta);
        if meta.is_dir() {
            walk(&entry.path(), &path_rel, f)?;
        }
    }
    Ok(())
}

/// The changes between the indexed tree and what `root` holds now (oci-image.md §9.2):
/// added or modified paths with their parents, and one whiteout per deleted subtree.
pub fn tree_diff_for_tests(before: &Path, after: &Path) -> Result<Vec<Change>, ExecutorError> {
    let index = index_tree(before)?;
    tree_diff(&index, after)
}

fn tree_diff(index: &HashMap<String, Identity>, root: &Path) -> Result<Vec<Change>, ExecutorError> {
    let mut present = std::collections::HashSet::new();
    let mut changed = std::collections::BTreeSet::new();
    walk(root, "", &mut |rel, m| {
        present.insert(rel.to_owned());
        let same = index.get(rel).is_some_and(|old| {
            let now = Identity::of(m);
            if m.is_dir() {
                // a directory's own metadata, not its ctime/size (which children change)
                old.mode == now.mode
                    && old.uid == now.uid
                    && old.gid == now.gid
                    && old.mtime == now.mtime
            } else {
                *old == now
            }
        });
        if !same {
            changed.insert(rel.to_owned());
        }
    })?;
    let mut out: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for rel in &changed {
        let mut prefix = String::new();
        for part in rel.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            out.insert(prefix.clone());
        }
    }
    let mut changes: Vec<Change> = out.into_iter().map(Change::Add).collect();
    for old in index.keys() {
        if present.contains(old) {
            continue;
        }
        // only the topmost deleted path gets a whiteout
        let parent_gone = old
            .rsplit_once('/')
            .is_some_and(|(p, _)| !present.contains(p));
        if !parent_gone {
            changes.push(Change::Whiteout(old.clone()));
            if let Some((p, _)) = old.rsplit_once('/') {
                let mut prefix = String::new();
                for part in p.split('/') {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(part);
                    if !changes.contains(&Change::Add(prefix.clone())) {
                        changes.push(Change::Add(prefix.clone()));
                    }
                }
            }
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn copy_snapshot_diffs_adds_changes_and_deletions() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("etc/d")).unwrap();
        std::fs::write(base.path().join("etc/keep"), b"k").unwrap();
        std::fs::write(base.path().join("etc/edit"), b"1234").unwrap();
        std::fs::write(base.path().join("etc/d/x"), b"x").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let mut snap = Snapshot::prepare(
            SnapshotterKind::Copy,
            &scratch.path().join("s"),
            &[base.path().to_path_buf()],
            false,
        )
        .unwrap();
        let r = snap.root().to_path_buf();
        std::fs::write(r.join("etc/edit"), b"abcd").unwrap(); // same size
        std::fs::remove_dir_all(r.join("etc/d")).unwrap();
        std::fs::write(r.join("new"), b"n").unwrap();
        let (mut changes, _) = snap.changes().unwrap();
        changes.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            changes,
            vec![
                Change::Add("etc".into()),
                Change::Add("etc/edit".into()),
                Change::Add("new".into()),
                Change::Whiteout("etc/d".into()),
            ]
        );
    }

    #[test]
    fn overlay_snapshot_mounts_and_unmounts() {
        if !is_root() {
            return;
        }
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join("gone"), b"g").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("s");
        let mut snap = Snapshot::prepare(
            SnapshotterKind::Overlay,
            &dir,
            &[base.path().to_path_buf()],
            false,
        )
        .unwrap();
        assert_eq!(snap.kind(), SnapshotterKind::Overlay);
        std::fs::remove_file(snap.root().join("gone")).unwrap();
        std::fs::write(snap.root().join("new"), b"n").unwrap();
        let (mut changes, from) = snap.changes().unwrap();
        changes.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            changes,
            vec![Change::Add("new".into()), Change::Whiteout("gone".into())]
        );
        assert!(from.ends_with("upper"));
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(dir.to_str().unwrap()));
        drop(snap);
        assert!(!dir.exists());
    }

    #[test]
    fn a_layer_twice_in_the_stack_mounts() {
        if !is_root() {
            return;
        }
        let layer = tempfile::tempdir().unwrap();
        std::fs::write(layer.path().join("f"), b"f").unwrap();
        let middle = tempfile::tempdir().unwrap();
        std::fs::write(middle.path().join("f"), b"middle").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let lowers = [
            layer.path().to_path_buf(),
            middle.path().to_path_buf(),
            layer.path().to_path_buf(),
        ];
        let snap = Snapshot::prepare(
            SnapshotterKind::Overlay,
            &scratch.path().join("s"),
            &lowers,
            false,
        )
        .unwrap();
        assert_eq!(snap.kind(), SnapshotterKind::Overlay);
        assert_eq!(std::fs::read(snap.root().join("f")).unwrap(), b"f");
    }
}
