//! A layer tar -> a directory, without ever writing outside it.
//!
//! Every entry name is cleaned and refused when it is absolute or climbs with `..`; no parent
//! of an entry may be a symbolic link (a layer that plants `lib -> /` and then writes
//! `lib/x` is refused, not followed); a hardlink's target must be inside the root, reached
//! without symlinks, and not a directory. Files are created with `O_EXCL|O_NOFOLLOW` after
//! whatever was there is removed. Whiteouts are either converted to overlayfs's form (so the
//! directory can serve as an overlay lowerdir: 0/0 character devices, `trusted.overlay.opaque`)
//! or applied by deleting from the directory (the copy snapshotter). Directory mtimes are set
//! last, as in containerd's `applyNaive` (oci-image.md §9.4).

use std::{
    collections::{BTreeMap, HashSet},
    fs::OpenOptions,
    io::{self, Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use strata_types::{Digest, Hasher};
use tar::EntryType;

use crate::error::ExecutorError;
use crate::layer_tar::{OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};

/// What to do with whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Turn them into overlayfs markers (for an overlay lowerdir of this layer alone).
    Overlay,
    /// Delete what they name (applying layers one over another into one tree).
    Apply,
}

/// Options of [`extract`].
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// Whiteout handling.
    pub whiteouts: Whiteouts,
    /// Record the sha256 of every regular file's bytes.
    pub hash_files: bool,
}

/// How an archive that ADD extracts differs from a layer (BuildKit's `applyRootArchive`):
/// a leading `/` of a name is dropped (the name is relative to the destination, as Docker
/// and BuildKit extract it; `..` and symlinked parents are still refused), device nodes
/// and FIFOs are skipped (an ADD extracts files, it does not make devices),
/// and `--chown` owns every entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveOptions {
    /// `--chown`: the owner of every extracted entry; `None` keeps the archive's.
    pub owner: Option<(u32, u32)>,
}

/// What an extraction saw.
#[derive(Debug, Default)]
pub struct ExtractReport {
    /// Entries written.
    pub entries: u64,
    /// sha256 of each regular file's content, by path (when asked for).
    pub file_digests: BTreeMap<String, Digest>,
    /// Entries of an ADD archive left out: device nodes and FIFOs, by name.
    pub skipped: Vec<String>,
}

/// `text` fit for a message: the tar reader quotes the header bytes it could not parse,
/// which for a stream that is no tar at all are binary; control characters and what is not
/// UTF-8 become '.', and it is cut at 200 characters.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(200)
        .map(|c| {
            if c.is_control() || c == char::REPLACEMENT_CHARACTER {
                '.'
            } else {
                c
            }
        })
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

fn unsafe_entry(entry: &str, reason: impl Into<String>) -> ExecutorError {
    ExecutorError::UnsafeLayerEntry {
        entry: entry.to_owned(),
        reason: reason.into(),
    }
}

/// Cleans a tar entry name into root-relative components, refusing escapes; an absolute
/// name is refused too, unless `strip_root` (an ADD archive), which drops its leading `/`.
fn entry_components(name: &str, strip_root: bool) -> Result<Vec<String>, ExecutorError> {
    if name.starts_with('/') && !strip_root {
        return Err(unsafe_entry(name, "absolute path"));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(unsafe_entry(name, "path climbs out with \"..\"")),
            p => parts.push(p.to_owned()),
        }
    }
    Ok(parts)
}

/// Creates missing parents of `parts` (all but the last), refusing symlinks and non-dirs.
fn ensure_parent(root: &Path, parts: &[String], name: &str) -> Result<PathBuf, ExecutorError> {
    let mut current = root.to_path_buf();
    for part in &parts[..parts.len().saturating_sub(1)] {
        current.push(part);
        match current.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(unsafe_entry(
                    name,
                    format!(
                        "parent {} is a symbolic link",
                        current.strip_prefix(root).unwrap_or(&current).display()
                    ),
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(unsafe_entry(
                    name,
                    format!(
                        "parent {} is not a directory",
                        current.strip_prefix(root).unwrap_or(&current).display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&current)
                    .map_err(|e| ExecutorError::io_op("creating", &current, e))?;
                std::fs::set_permissions(&current, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| ExecutorError::io(&current, e))?;
            }
            Err(e) => return Err(ExecutorError::io(&current, e)),
        }
    }
    Ok(current)
}

fn remove_any(path: &Path) -> Result<(), ExecutorError> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(path).map_err(|e| ExecutorError::io_op("removing", path, e))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| ExecutorError::io_op("removing", path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ExecutorError::io(path, e)),
    }
}

/// Extracts the layer tar read from `reader` into `root` (which must exist).
pub fn extract<R: Read>(
    reader: R,
    root: &Path,
    options: ExtractOptions,
) -> Result<ExtractReport, ExecutorError> {
    extract_with(reader, root, options, None)
}

/// Extracts an archive that ADD unpacks into `root` (which must exist): as a layer, its
/// whiteouts applied, with the differences [`ArchiveOptions`] describes.
pub fn extract_archive<R: Read>(
    reader: R,
    root: &Path,
    archive: ArchiveOptions,
) -> Result<ExtractReport, ExecutorError> {
    let options = ExtractOptions {
        whiteouts: Whiteouts::Apply,
        hash_files: false,
    };
    extract_with(reader, root, options, Some(archive))
}

fn extract_with<R: Read>(
    reader: R,
    root: &Path,
    options: ExtractOptions,
    add: Option<ArchiveOptions>,
) -> Result<ExtractReport, ExecutorError> {
    let mut archive = tar::Archive::new(reader);
    let mut report = ExtractReport::default();
    let mut unpacked: HashSet<String> = HashSet::new();
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let bad_tar = |e: io::Error| {
        unsafe_entry(
            "<tar stream>",
            format!("malformed tar: {}", printable(&e.to_string())),
        )
    };
    for entry in archive.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| unsafe_entry("<non-UTF-8 name>", "entry names must be UTF-8"))?;
        let parts = entry_components(&name, add.is_some())?;
        let Some(base) = parts.last().cloned() else {
            continue; // the root itself
        };
        if add.is_some() && matches!(kind, EntryType::Char | EntryType::Block | EntryType::Fifo) {
            // skipped before anything is touched: what is there stays
            report.skipped.push(parts.join("/"));
            continue;
        }
        let rel = parts.join("/");
        let parent = ensure_parent(root, &parts, &name)?;
        let path = parent.join(&base);

        if let Some(target) = base.strip_prefix(WHITEOUT_PREFIX) {
            if base == OPAQUE_MARKER {
                let dir_rel = parts[..parts.len() - 1].join("/");
                match options.whiteouts {
                    Whiteouts::Overlay => xattr::set(&parent, OVERLAY_OPAQUE_XATTR, b"y")
                        .map_err(|e| ExecutorError::io_op("marking opaque", &parent, e))?,
                    Whiteouts::Apply => {
                        for child in
                            std::fs::read_dir(&parent).map_err(|e| ExecutorError::io(&parent, e))?
                        {
                            let child = child.map_err(|e| ExecutorError::io(&parent, e))?;
                            let child_rel = if dir_rel.is_empty() {
                                child.file_name().to_string_lossy().into_owned()
                            } else {
                                format!("{dir_rel}/{}", child.file_name().to_string_lossy())
                            };
                            if !unpacked
                                .iter()
                                .any(|u| u == &child_rel || u.starts_with(&format!("{child_rel}/")))
                            {
                                remove_any(&child.path())?;
                            }
                        }
                    }
                }
                continue;
            }
            if target.starts_with(".wh.") {
                continue; // other AUFS meta markers
            }
            if target.is_empty() || target == "." || target == ".." {
                return Err(unsafe_entry(&name, "invalid whiteout"));
            }
            let victim = parent.join(target);
            let victim_rel = if parts.len() > 1 {
                format!("{}/{target}", parts[..parts.len() - 1].join("/"))
            } else {
                target.to_owned()
            };
            if unpacked.contains(&victim_rel) {
                continue; // a whiteout hides only lower layers
            }
            match options.whiteouts {
                Whiteouts::Overlay => {
                    remove_any(&victim)?;
                    nix::sys::stat::mknod(&victim, SFlag::S_IFCHR, Mode::empty(), 0).map_err(
                        |e| ExecutorError::io_op("creating whiteout", &victim, e.into()),
                    )?;
                    let (uid, gid) = (
                        entry.header().uid().unwrap_or(0),
                        entry.header().gid().unwrap_or(0),
                    );
                    if (uid, gid) != (0, 0) {
                        std::os::unix::fs::lchown(&victim, Some(uid as u32), Some(gid as u32))
                            .map_err(|e| ExecutorError::io(&victim, e))?;
                    }
                }
                Whiteouts::Apply => remove_any(&victim)?,
            }
            continue;
        }

        // Something already there: directories merge, anything else is replaced.
        if let Ok(existing) = path.symlink_metadata()
            && !(existing.is_dir() && kind == EntryType::Directory)
        {
            remove_any(&path)?;
        }

        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| ExecutorError::io_op("creating", &path, e))?;
                if options.hash_files {
                    let mut hasher = Hasher::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = entry.read(&mut buf).map_err(bad_tar)?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                        file.write_all(&buf[..n])
                            .map_err(|e| ExecutorError::io_op("writing", &path, e))?;
                    }
                    report.file_digests.insert(rel.clone(), hasher.finish());
                } else {
                    io::copy(&mut entry, &mut file)
                        .map_err(|e| ExecutorError::io_op("writing", &path, e))?;
                }
            }
            EntryType::Directory => {
                if !path.exists() {
                    std::fs::create_dir(&path)
                        .map_err(|e| ExecutorError::io_op("creating", &path, e))?;
                }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&name, "symlink without a target"))?;
                let target = std::ffi::OsStr::new(
                    std::str::from_utf8(&target)
                        .map_err(|_| unsafe_entry(&name, "non-UTF-8 link target"))?,
                );
                std::os::unix::fs::symlink(target, &path)
                    .map_err(|e| ExecutorError::io_op("creating", &path, e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&name, "hardlink without a target"))?;
                let target = String::from_utf8(target.into_owned())
                    .map_err(|_| unsafe_entry(&name, "non-UTF-8 link target"))?;
                let target_parts = entry_components(&target, add.is_some()).map_err(|_| {
                    unsafe_entry(
                        &name,
                        format!("hardlink target {target:?} is outside the root"),
                    )
                })?;
                if target_parts.is_empty() {
                    return Err(unsafe_entry(&name, "hardlink to the root"));
                }
                let target_path = crate::rootpath::join_no_symlinks(root, &target_parts.join("/"))
                    .map_err(|_| {
                        unsafe_entry(
                            &name,
                            format!("hardlink target {target:?} crosses a symbolic link"),
                        )
                    })?;
                match target_path.symlink_metadata() {
                    Ok(m) if m.is_dir() => {
                        return Err(unsafe_entry(&name, "hardlink to a directory"));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(unsafe_entry(
                            &name,
                            format!("hardlink target {target:?} does not exist in the layer"),
                        ));
                    }
                }
                std::fs::hard_link(&target_path, &path)
                    .map_err(|e| ExecutorError::io_op("linking", &path, e))?;
                unpacked.insert(rel);
                report.entries += 1;
                continue; // a hardlink shares its target's metadata
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let kind_flag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let dev = nix::sys::stat::makedev(
                    header.device_major().ok().flatten().unwrap_or(0) as u64,
                    header.device_minor().ok().flatten().unwrap_or(0) as u64,
                );
                nix::sys::stat::mknod(&path, kind_flag, Mode::from_bits_truncate(mode), dev)
                    .map_err(|e| ExecutorError::io_op("creating device", &path, e.into()))?;
            }
            _ => continue,
        }

        let (uid, gid) = match add.and_then(|a| a.owner) {
            Some(owner) => owner,
            None => (
                header.uid().unwrap_or(0) as u32,
                header.gid().unwrap_or(0) as u32,
            ),
        };
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .map_err(|e| ExecutorError::io_op("chown", &path, e))?;
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(key) = ext.key() else { continue };
                let Some(xname) = key.strip_prefix("SCHILY.xattr.") else {
                    continue;
                };
                if xname.starts_with("trusted.overlay.") || xname.starts_with("user.overlay.") {
                    continue; // never let a layer steer overlayfs
                }
                let _ = xattr::set(&path, xname, ext.value_bytes());
            }
        }
        if kind != EntryType::Symlink {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| ExecutorError::io_op("chmod", &path, e))?;
        }
        let mtime = header.mtime().unwrap_or(0) as i64;
        if kind == EntryType::Directory {
            dir_times.push((path, mtime));
        } else {
            set_mtime(&path, mtime)?;
        }
        unpacked.insert(rel);
        report.entries += 1;
    }
    for (dir, mtime) in dir_times.into_iter().rev() {
        set_mtime(&dir, mtime)?;
    }
    Ok(report)
}

fn set_mtime(path: &Path, mtime: i64) -> Result<(), ExecutorError> {
    let t = TimeSpec::new(mtime, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| ExecutorError::io_op("setting times", path, e.into()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    #[test]
    fn a_stream_that_is_no_tar_is_refused_in_printable_words() {
        let dir = tempfile::tempdir().unwrap();
        let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 1) as u8).collect();
        let err = extract_with(&junk[..], dir.path(), opts(Whiteouts::Apply), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("malformed tar"), "{err}");
        assert!(!err.chars().any(|c| c.is_control()), "{err:?}");
        assert!(err.chars().count() < 300, "{err}");
    }
    use crate::layer_tar::{Change, LayerOptions, write_layer};

    fn raw_entry(
        builder: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        // write the name bytes directly so that hostile names are kept verbatim
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name_literal(l).unwrap();
        }
        h.set_cksum();
        builder.append(&h, data).unwrap();
    }

    fn opts(whiteouts: Whiteouts) -> ExtractOptions {
        ExtractOptions {
            whiteouts,
            hash_files: false,
        }
    }

    /// Runs a hostile tar against a root inside a sandbox dir as a layer, checking nothing
    /// appears outside the root.
    fn assert_refused(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> String {
        assert_refused_by(
            |bytes, root| {
                extract(bytes, root, opts(Whiteouts::Apply))
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
            build,
        )
    }

    /// [`assert_refused`] with another extraction (an ADD archive's).
    fn assert_refused_by(
        extract_with: impl FnOnce(&[u8], &Path) -> Result<(), String>,
        build: impl FnOnce(&mut tar::Builder<Vec<u8>>),
    ) -> String {
        let sandbox = tempfile::tempdir().unwrap();
        let root = sandbox.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let bytes = b.into_inner().unwrap();
        let err = extract_with(bytes.as_slice(), &root).unwrap_err();
        let outside: Vec<_> = std::fs::read_dir(sandbox.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            outside,
            vec![std::ffi::OsString::from("root")],
            "nothing written beside the root"
        );
        err.to_string()
    }

    #[test]
    fn dotdot_is_refused() {
        let e = assert_refused(|b| raw_entry(b, "../evil", EntryType::Regular, None, b"x"));
        assert!(e.contains(".."), "{e}");
        assert_refused(|b| raw_entry(b, "a/../../evil", EntryType::Regular, None, b"x"));
    }

    #[test]
    fn absolute_names_are_refused() {
        let e = assert_refused(|b| raw_entry(b, "/evil", EntryType::Regular, None, b"x"));
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn add_archives_lose_a_leading_slash_but_never_escape() {
        let sandbox = tempfile::tempdir().unwrap();
        let root = sandbox.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, "/abs/f", EntryType::Regular, None, b"x");
        raw_entry(&mut b, "/abs/h", EntryType::Link, Some("/abs/f"), b"");
        let bytes = b.into_inner().unwrap();
        extract_archive(bytes.as_slice(), &root, ArchiveOptions::default()).unwrap();
        assert_eq!(std::fs::read(root.join("abs/f")).unwrap(), b"x");
        assert_eq!(std::fs::read(root.join("abs/h")).unwrap(), b"x");
        // a layer keeps refusing them
        assert!(extract(bytes.as_slice(), &root, opts(Whiteouts::Apply)).is_err());

        for build in [
            (|b: &mut tar::Builder<Vec<u8>>| {
                raw_entry(b, "/../evil", EntryType::Regular, None, b"x")
            }) as fn(&mut tar::Builder<Vec<u8>>),
            |b| raw_entry(b, "a/../../evil", EntryType::Regular, None, b"x"),
            |b| {
                raw_entry(b, "link", EntryType::Symlink, Some("/"), b"");
                raw_entry(b, "/link/evil", EntryType::Regular, None, b"x");
            },
            |b| raw_entry(b, "pw", EntryType::Link, Some("/../etc/passwd"), b""),
        ] {
            assert_refused_by(
                |bytes, root| {
                    extract_archive(bytes, root, ArchiveOptions::default())
                        .map(drop)
                        .map_err(|e| e.to_string())
                },
                build,
            );
        }
    }

    #[test]
    fn add_archives_make_no_devices_and_take_the_chown_owner() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("null"), b"kept").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(EntryType::Directory);
        dir.set_mode(0o750);
        dir.set_uid(1234);
        dir.set_gid(1234);
        dir.set_size(0);
        b.append_data(&mut dir, "d/", &b""[..]).unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_mode(0o640);
        file.set_uid(1234);
        file.set_gid(4321);
        file.set_size(1);
        b.append_data(&mut file, "d/f", &b"f"[..]).unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(EntryType::Symlink);
        link.set_size(0);
        b.append_link(&mut link, "d/s", "f").unwrap();
        for (name, kind, major) in [
            ("null", EntryType::Char, 1),
            ("d/sda", EntryType::Block, 8),
            ("d/fifo", EntryType::Fifo, 0),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o666);
            h.set_device_major(major).unwrap();
            h.set_device_minor(3).unwrap();
            h.set_size(0);
            b.append_data(&mut h, name, &b""[..]).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let report = extract_archive(
            bytes.as_slice(),
            root.path(),
            ArchiveOptions {
                owner: Some((1, 2)),
            },
        )
        .unwrap();
        assert_eq!(report.skipped, ["null", "d/sda", "d/fifo"]);
        assert_eq!(std::fs::read(root.path().join("null")).unwrap(), b"kept");
        assert!(root.path().join("d/sda").symlink_metadata().is_err());
        assert!(root.path().join("d/fifo").symlink_metadata().is_err());
        for p in ["d", "d/f", "d/s"] {
            let m = root.path().join(p).symlink_metadata().unwrap();
            assert_eq!((m.uid(), m.gid()), (1, 2), "{p}");
        }
        // modes stay the archive's (BuildKit applies no --chmod to extracted entries)
        let mode = |p: &str| root.path().join(p).metadata().unwrap().mode() & 0o7777;
        assert_eq!((mode("d"), mode("d/f")), (0o750, 0o640));

        // without --chown the archive's owners stay
        let other = tempfile::tempdir().unwrap();
        extract_archive(bytes.as_slice(), other.path(), ArchiveOptions::default()).unwrap();
        let m = other.path().join("d/f").metadata().unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 4321));
    }

    #[test]
    fn symlinked_parents_are_refused() {
        let e = assert_refused(|b| {
            raw_entry(b, "link", EntryType::Symlink, Some(".."), b"");
            raw_entry(b, "link/evil", EntryType::Regular, None, b"x");
        });
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn hardlinks_outside_the_root_are_refused() {
        let e = assert_refused(|b| raw_entry(b, "pw", EntryType::Link, Some("../etc/passwd"), b""));
        assert!(e.contains("outside"), "{e}");
        assert_refused(|b| raw_entry(b, "pw", EntryType::Link, Some("/etc/passwd"), b""));
        assert_refused(|b| {
            raw_entry(b, "l", EntryType::Symlink, Some("/etc"), b"");
            raw_entry(b, "pw", EntryType::Link, Some("l/passwd"), b"");
        });
    }

    #[test]
    fn a_symlink_is_replaced_not_followed() {
        let sandbox = tempfile::tempdir().unwrap();
        let root = sandbox.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let victim = sandbox.path().join("victim");
        std::fs::write(&victim, b"safe").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(
            &mut b,
            "f",
            EntryType::Symlink,
            Some(victim.to_str().unwrap()),
            b"",
        );
        raw_entry(&mut b, "f", EntryType::Regular, None, b"overwritten?");
        extract(
            b.into_inner().unwrap().as_slice(),
            &root,
            opts(Whiteouts::Apply),
        )
        .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"safe");
        assert_eq!(std::fs::read(root.join("f")).unwrap(), b"overwritten?");
    }

    #[test]
    fn whiteouts_apply_or_become_overlay_markers() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("d/sub")).unwrap();
        std::fs::write(root.path().join("gone"), b"x").unwrap();
        std::fs::write(root.path().join("d/old"), b"x").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, ".wh.gone", EntryType::Regular, None, b"");
        raw_entry(&mut b, "d/", EntryType::Directory, None, b"");
        raw_entry(&mut b, "d/new", EntryType::Regular, None, b"n");
        raw_entry(&mut b, "d/.wh..wh..opq", EntryType::Regular, None, b"");
        let bytes = b.into_inner().unwrap();
        extract(bytes.as_slice(), root.path(), opts(Whiteouts::Apply)).unwrap();
        assert!(!root.path().join("gone").exists());
        assert!(!root.path().join("d/old").exists() && !root.path().join("d/sub").exists());
        assert_eq!(std::fs::read(root.path().join("d/new")).unwrap(), b"n");

        let lower = tempfile::tempdir().unwrap();
        extract(bytes.as_slice(), lower.path(), opts(Whiteouts::Overlay)).unwrap();
        let m = lower.path().join("gone").symlink_metadata().unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0);
        assert!(crate::layer_tar::is_opaque(&lower.path().join("d")));
        assert!(!lower.path().join("d/.wh..wh..opq").exists());
    }

    #[test]
    fn invalid_whiteouts_are_refused() {
        assert_refused(|b| raw_entry(b, ".wh..", EntryType::Regular, None, b""));
        assert_refused(|b| raw_entry(b, "a/.wh.", EntryType::Regular, None, b""));
    }

    #[test]
    fn layer_tar_round_trips() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(src.path().join("a/b/f"), b"hello").unwrap();
        std::fs::hard_link(src.path().join("a/b/f"), src.path().join("a/h")).unwrap();
        std::os::unix::fs::symlink("b/f", src.path().join("a/s")).unwrap();
        let changes: Vec<Change> = ["a", "a/b", "a/b/f", "a/h", "a/s"]
            .iter()
            .map(|p| Change::Add(p.to_string()))
            .collect();
        let bytes = write_layer(src.path(), &changes, LayerOptions::default(), Vec::new()).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let report = extract(
            bytes.as_slice(),
            dst.path(),
            ExtractOptions {
                whiteouts: Whiteouts::Apply,
                hash_files: true,
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(dst.path().join("a/h")).unwrap(), b"hello");
        assert_eq!(
            dst.path().join("a/h").metadata().unwrap().ino(),
            dst.path().join("a/b/f").metadata().unwrap().ino()
        );
        assert_eq!(
            std::fs::read_link(dst.path().join("a/s")).unwrap(),
            Path::new("b/f")
        );
        assert_eq!(report.file_digests["a/b/f"], Digest::of(b"hello"));
    }
}
