//! A directory of changes -> an OCI layer tar, byte for byte deterministic.
//!
//! The changes come from an overlay upper dir ([`upper_changes`]: 0/0 character devices are
//! deletions, `trusted.overlay.opaque=y` directories hide their lower contents) or from a
//! tree diff of the copy snapshotter. [`write_layer`] then emits, in byte order of the entry
//! names (so parents come first): ustar headers, a PAX header only when a value does not fit
//! (long names or link targets, big ids or sizes, xattrs, records sorted by key), numeric
//! uid/gid with empty uname/gname, no atime/ctime, mtime clamped to `clamp_mtime`, whiteouts
//! as empty 0600 files with mtime 0, the first name of an inode as a regular file and later
//! names as hardlinks to it. Nothing is buffered whole: file bytes are streamed into the
//! writer, which hashes them as they pass ([`HashingWriter`]).

use crate::error::ExecutorError;
use std::{
    collections::HashMap,
    ffi::OsStr,
    io::{self, Read, Write},
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, MetadataExt, OpenOptionsExt},
    },
    path::Path,
};

use strata_types::{Digest, Hasher};
use tar::{EntryType, Header};

/// The opaque-directory marker file name inside a layer tar.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The whiteout prefix.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// overlayfs's opaque-directory xattr.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// One change of a layer, by path relative to the snapshot root (no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The path was added or modified: emit it as it is in the root.
    Add(String),
    /// The path was deleted: emit `.wh.<name>`.
    Whiteout(String),
    /// The directory hides everything the lower layers had in it: emit `<dir>/.wh..wh..opq`.
    Opaque(String),
}

impl Change {
    /// The tar name this change is written as; the sort key of the layer.
    fn sort_key(&self, is_dir: bool) -> Vec<u8> {
        match self {
            Change::Add(p) if is_dir => format!("{p}/").into_bytes(),
            Change::Add(p) => p.as_bytes().to_vec(),
            Change::Whiteout(p) => whiteout_name(p).into_bytes(),
            // Right after the directory's own entry.
            Change::Opaque(p) => {
                let mut k = format!("{p}/").into_bytes();
                k.push(0);
                k
            }
        }
    }
}

fn whiteout_name(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{WHITEOUT_PREFIX}{name}"),
        None => format!("{WHITEOUT_PREFIX}{path}"),
    }
}

/// Choices that change the bytes of a layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerOptions {
    /// Every mtime later than this (Unix seconds) becomes this (SOURCE_DATE_EPOCH).
    pub clamp_mtime: Option<i64>,
}

/// The digest and size of a written layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigest {
    /// sha256 of the uncompressed tar: the diff_id.
    pub digest: Digest,
    /// Bytes.
    pub size: u64,
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W> std::fmt::Debug for HashingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingWriter")
            .field("bytes", &self.hasher.len())
            .finish()
    }
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// The digest and size so far, and the inner writer.
    pub fn finish(self) -> (LayerDigest, W) {
        let size = self.hasher.len();
        (
            LayerDigest {
                digest: self.hasher.finish(),
                size,
            },
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The changes an overlay upper dir holds, unsorted (see [`write_layer`]).
pub fn upper_changes(upper: &Path) -> Result<Vec<Change>, ExecutorError> {
    let mut out = Vec::new();
    walk_upper(upper, "", &mut out)?;
    Ok(out)
}

fn walk_upper(dir: &Path, rel: &str, out: &mut Vec<Change>) -> Result<(), ExecutorError> {
    let io = |e| ExecutorError::io(dir, e);
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = ExecutorError::utf8_name(&name, rel)?;
        let path = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(|e| ExecutorError::io(&entry.path(), e))?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            out.push(Change::Whiteout(path));
        } else if ft.is_dir() {
            out.push(Change::Add(path.clone()));
            if is_opaque(&entry.path()) {
                out.push(Change::Opaque(path.clone()));
            }
            walk_upper(&entry.path(), &path, out)?;
        } else {
            out.push(Change::Add(path));
        }
    }
    Ok(())
}

/// True when `dir` carries overlayfs's opaque xattr.
pub fn is_opaque(dir: &Path) -> bool {
    matches!(xattr::get(dir, OVERLAY_OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
}

/// True for xattrs that describe overlayfs or the host rather than the file.
fn is_private_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay.")
        || name == "security.selinux"
}

/// Writes `changes` (paths under `root`) as a layer tar into `out`; returns `out`.
pub fn write_layer<W: Write>(
    root: &Path,
    changes: &[Change],
    options: LayerOptions,
    out: W,
) -> io::Result<W> {
    let mut keyed: Vec<(Vec<u8>, &Change, Option<std::fs::Metadata>)> =
        Vec::with_capacity(changes.len());
    for change in changes {
        match change {
            Change::Add(p) => {
                let meta = root.join(p).symlink_metadata()?;
                if meta.file_type().is_socket() {
                    continue;
                }
                keyed.push((change.sort_key(meta.is_dir()), change, Some(meta)));
            }
            _ => keyed.push((change.sort_key(false), change, None)),
        }
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);

    let mut builder = tar::Builder::new(out);
    let mut first_name_of_inode: HashMap<(u64, u64), String> = HashMap::new();
    for (key, change, meta) in &keyed {
        let name = String::from_utf8_lossy(key)
            .trim_end_matches('\0')
            .to_owned();
        match change {
            Change::Whiteout(_) => append_empty_file(&mut builder, &name, 0o600, 0, 0)?,
            Change::Opaque(dir) => {
                let meta = root.join(dir).symlink_metadata()?;
                let name = format!("{dir}/{OPAQUE_MARKER}");
                append_empty_file(
                    &mut builder,
                    &name,
                    meta.mode() & 0o7777,
                    meta.uid() as u64,
                    meta.gid() as u64,
                )?;
            }
            Change::Add(rel) => {
                let meta = meta.as_ref().expect("add changes carry metadata");
                let path = root.join(rel);
                let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
                let mut header = Header::new_ustar();
                let ft = meta.file_type();
                let mut hardlink_to = None;
                if !ft.is_dir() && meta.nlink() > 1 {
                    let id = (meta.dev(), meta.ino());
                    match first_name_of_inode.get(&id) {
                        Some(first) => hardlink_to = Some(first.clone()),
                        None => {
                            first_name_of_inode.insert(id, name.clone());
                        }
                    }
                }
                let mut size = 0;
                if let Some(target) = &hardlink_to {
                    header.set_entry_type(EntryType::Link);
                    set_link(&mut header, target.as_bytes(), &mut pax);
                } else if ft.is_dir() {
                    header.set_entry_type(EntryType::Directory);
                } else if ft.is_file() {
                    header.set_entry_type(EntryType::Regular);
                    size = meta.len();
                } else if ft.is_symlink() {
                    header.set_entry_type(EntryType::Symlink);
                    let target = std::fs::read_link(&path)?;
                    set_link(&mut header, target.as_os_str().as_bytes(), &mut pax);
                } else if ft.is_char_device() || ft.is_block_device() {
                    header.set_entry_type(if ft.is_char_device() {
                        EntryType::Char
                    } else {
                        EntryType::Block
                    });
                    let rdev = meta.rdev();
                    header.set_device_major(nix::sys::stat::major(rdev) as u32)?;
                    header.set_device_minor(nix::sys::stat::minor(rdev) as u32)?;
                } else if ft.is_fifo() {
                    header.set_entry_type(EntryType::Fifo);
                } else {
                    continue;
                }
                set_name(&mut header, name.as_bytes(), &mut pax);
                header.set_mode(meta.mode() & 0o7777);
                set_id(&mut header, meta.uid() as u64, "uid", &mut pax);
                set_id(&mut header, meta.gid() as u64, "gid", &mut pax);
                let mtime = clamp(meta.mtime(), options.clamp_mtime);
                header.set_mtime(mtime);
                if size > 0o77777777777 {
                    pax.push(("size".into(), size.to_string().into_bytes()));
                }
                header.set_size(size);
                if let Ok(names) = xattr::list(&path) {
                    let mut names: Vec<_> = names.collect();
                    names.sort();
                    for n in names {
                        let n_str = n.to_string_lossy().into_owned();
                        if is_private_xattr(&n_str) {
                            continue;
                        }
                        if let Ok(Some(v)) = xattr::get(&path, OsStr::new(&n)) {
                            pax.push((format!("SCHILY.xattr.{n_str}"), v));
                        }
                    }
                }
                if !pax.is_empty() {
                    append_pax(&mut builder, &name, &mut pax)?;
                }
                header.set_cksum();
                if size > 0 {
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                        .open(&path)?;
                    builder.append(
                        &header,
                        ExactReader {
                            inner: file.take(size),
                            left: size,
                            path: rel,
                        },
                    )?;
                } else {
                    builder.append(&header, io::empty())?;
                }
            }
        }
    }
    builder.into_inner()
}

fn clamp(mtime: i64, limit: Option<i64>) -> u64 {
    let t = match limit {
        Some(l) if mtime > l => l,
        _ => mtime,
    };
    t.max(0) as u64
}

fn append_empty_file<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    mode: u32,
    uid: u64,
    gid: u64,
) -> io::Result<()> {
    let mut pax = Vec::new();
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::Regular);
    set_name(&mut header, name.as_bytes(), &mut pax);
    header.set_mode(mode);
    set_id(&mut header, uid, "uid", &mut pax);
    set_id(&mut header, gid, "gid", &mut pax);
    header.set_mtime(0);
    header.set_size(0);
    if !pax.is_empty() {
        append_pax(builder, name, &mut pax)?;
    }
    header.set_cksum();
    builder.append(&header, io::empty())
}

fn set_name(header: &mut Header, name: &[u8], pax: &mut Vec<(String, Vec<u8>)>) {
    if header.set_path(OsStr::from_bytes(name)).is_err() || header.path_bytes().as_ref() != name {
        pax.push(("path".into(), name.to_vec()));
        let field = &mut header.as_old_mut().name;
        field.fill(0);
        let n = name.len().min(field.len());
        field[..n].copy_from_slice(&name[..n]);
        if let Some(ustar) = header.as_ustar_mut() {
            ustar.prefix.fill(0);
        }
    }
}

fn set_link(header: &mut Header, target: &[u8], pax: &mut Vec<(String, Vec<u8>)>) {
    if target.len() > 100 || header.set_link_name_literal(target).is_err() {
        pax.push(("linkpath".into(), target.to_vec()));
        let field = &mut header.as_old_mut().linkname;
        field.fill(0);
        field.copy_from_slice(&target[..100]);
    }
}

fn set_id(header: &mut Header, id: u64, key: &str, pax: &mut Vec<(String, Vec<u8>)>) {
    if id > 0o7777777 {
        pax.push((key.into(), id.to_string().into_bytes()));
        if key == "uid" {
            header.set_uid(0)
        } else {
            header.set_gid(0)
        }
    } else if key == "uid" {
        header.set_uid(id)
    } else {
        header.set_gid(id)
    }
}

/// Appends a PAX extended header (`x`) with `records` (strata-image's shared writer, which
/// `import` uses too).
fn append_pax<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    records: &mut [(String, Vec<u8>)],
) -> io::Result<()> {
    let (header, data) = strata_image::pax::pax_entry(name, records);
    builder.append(&header, data.as_slice())
}

/// Reads exactly `left` bytes or fails: a file that shrank while being archived would
/// otherwise desynchronise the tar.
struct ExactReader<'a, R> {
    inner: R,
    left: u64,
    path: &'a str,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being archived", self.path),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, EntryType, u64, String)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                    e.header().mtime().unwrap(),
                    link,
                )
            })
            .collect()
    }

    fn sample() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("etc/app.d")).unwrap();
        std::fs::write(r.join("etc/app.d/default.cfg"), b"x=1\n").unwrap();
        std::fs::write(r.join("bin"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(r.join("bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::hard_link(r.join("bin"), r.join("bin2")).unwrap();
        symlink("etc/app.d", r.join("link")).unwrap();
        dir
    }

    #[test]
    fn entries_are_sorted_parents_first_with_hardlinks_and_whiteouts() {
        let dir = sample();
        let changes = vec![
            Change::Add("link".into()),
            Change::Add("bin2".into()),
            Change::Add("etc/app.d/default.cfg".into()),
            Change::Whiteout("etc/old".into()),
            Change::Add("bin".into()),
            Change::Add("etc".into()),
            Change::Add("etc/app.d".into()),
            Change::Opaque("etc/app.d".into()),
        ];
        let bytes = write_layer(
            dir.path(),
            &changes,
            LayerOptions {
                clamp_mtime: Some(10),
            },
            Vec::new(),
        )
        .unwrap();
        let got = entries(&bytes);
        let names: Vec<_> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin2",
                "etc/",
                "etc/.wh.old",
                "etc/app.d/",
                "etc/app.d/.wh..wh..opq",
                "etc/app.d/default.cfg",
                "link"
            ]
        );
        assert_eq!(got[1].1, EntryType::Link);
        assert_eq!(got[1].3, "bin");
        assert_eq!(got[7].1, EntryType::Symlink);
        assert!(got.iter().all(|e| e.2 <= 10), "mtimes clamped: {got:?}");
        assert_eq!(got[3].2, 0, "whiteouts have mtime 0");
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes() {
        let a = sample();
        let b = sample();
        let changes = |d: &Path| {
            let mut c = Vec::new();
            walk_upper(d, "", &mut c).unwrap();
            c
        };
        let opts = LayerOptions {
            clamp_mtime: Some(0),
        };
        let ta = write_layer(
            a.path(),
            &changes(a.path()),
            opts,
            HashingWriter::new(Vec::new()),
        )
        .unwrap();
        let tb = write_layer(
            b.path(),
            &changes(b.path()),
            opts,
            HashingWriter::new(Vec::new()),
        )
        .unwrap();
        let (da, ba) = ta.finish();
        let (db, bb) = tb.finish();
        assert_eq!(ba, bb);
        assert_eq!(da, db);
        assert_eq!(da.digest, Digest::of(&ba));
        assert_eq!(da.size, ba.len() as u64);
    }

    #[test]
    fn overlay_markers_become_oci_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir(r.join("d")).unwrap();
        nix::sys::stat::mknod(
            &r.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        xattr::set(r.join("d"), OVERLAY_OPAQUE_XATTR, b"y").unwrap();
        std::fs::write(r.join("d/new"), b"n").unwrap();
        let changes = upper_changes(r).unwrap();
        let bytes = write_layer(r, &changes, LayerOptions::default(), Vec::new()).unwrap();
        let got = entries(&bytes);
        let names: Vec<_> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, [".wh.gone", "d/", "d/.wh..wh..opq", "d/new"]);
        // the overlay xattr itself is not carried into the layer
        let mut archive = tar::Archive::new(bytes.as_slice());
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if let Some(exts) = e.pax_extensions().unwrap() {
                for x in exts {
                    assert!(!x.unwrap().key().unwrap().contains("overlay"));
                }
            }
        }
    }

    #[test]
    fn long_names_and_xattrs_use_pax() {
        let dir = tempfile::tempdir().unwrap();
        let long = "a".repeat(120);
        std::fs::write(dir.path().join(&long), b"z").unwrap();
        xattr::set(dir.path().join(&long), "user.note", b"hello").unwrap_or(());
        let bytes = write_layer(
            dir.path(),
            &[Change::Add(long.clone())],
            LayerOptions::default(),
            Vec::new(),
        )
        .unwrap();
        let got = entries(&bytes);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, long);
    }
}
