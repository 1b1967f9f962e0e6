//! A root filesystem tarball made into a layer that follows oci-image.md §9.1: what
//! `strata import` stores.
//!
//! Rootfs tarballs come from anywhere (`tar -C dir -c .`, `docker export`, distribution
//! images) and break the layer rules in ways the executor rightly refuses to apply: absolute
//! names, `a/../b`, duplicates, hard links to names that are not in the archive. The layer is
//! what applying the tarball as §9.4 says (containerd's `applyNaive`, `tar -x`) would leave,
//! or the import is refused, naming the entry, before anything is stored:
//!
//! - names are cleaned lexically: a leading `/`, `.` components, `a/..`, `//`; a name that
//!   climbs above the root is refused;
//! - an entry whose parent is, at that point of the stream, a symbolic link (`lnk -> /tmp`
//!   then `lnk/x`) or not a directory is refused;
//! - a hard link must point inside the root at an earlier entry that is not a directory
//!   and that no later entry replaces or removes (the layer must hold what it linked to);
//! - of duplicates the later entry wins, as extraction would have it, and the layer holds it
//!   once, where it occurred; an entry that a later non-directory entry of one of its parents
//!   removes is dropped too;
//! - GNU sparse files become regular files.
//!
//! The work takes two passes over the decompressed stream, so that nothing is held but the
//! names: the first reads every header and remembers, per cleaned name, where it last
//! occurred and whether it was a directory; the second writes the entries that survive.
//! An entry that needs no change — a clean name (a `./` prefix is tolerated, §9.1), the
//! last of its name — passes through byte for byte, so a conforming tarball is stored
//! unchanged and its diff_id is the sha256 of the decompressed file, as with Docker. Only a
//! changed entry gets a header of strata's writing (its PAX records kept, but `path` and
//! `linkpath`); its data is still copied as it was.

use std::{
    cell::RefCell,
    collections::HashMap,
    io::{Read, Seek, Write},
    rc::Rc,
};

use strata_types::{Digest, Hasher};
use tar::EntryType;

use crate::{Result, TransferError, compression::decompressing_reader, store::BlobWriter};

const BLOCK: u64 = 512;

/// What a path is, as far as its children care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Symlink,
    Other,
}

/// Where a cleaned name occurred (entry indexes in stream order).
#[derive(Debug, Clone, Copy)]
struct Occurrences {
    /// The latest occurrence.
    last: u64,
    /// The latest occurrence as anything but a directory: it removed whatever was below.
    last_nondir: Option<u64>,
    /// What the latest occurrence is.
    kind: Kind,
}

/// A hard link to check once the whole stream is known.
#[derive(Debug)]
struct HardLink {
    index: u64,
    name: String,
    target: String,
    /// The target's occurrence the link was made to.
    target_index: u64,
}

/// The first pass's findings.
#[derive(Debug, Default)]
struct Plan {
    names: HashMap<String, Occurrences>,
    entries: u64,
}

impl Plan {
    /// Whether the occurrence of `name` at `index` is still there after every entry the
    /// plan has seen: no parent of it was replaced by a non-directory since.
    fn survives(&self, name: &str, index: u64) -> bool {
        ancestors(name).all(|a| {
            self.names
                .get(a)
                .and_then(|o| o.last_nondir)
                .is_none_or(|j| j < index)
        })
    }

    /// Whether the entry at `index`, named `name`, goes into the layer.
    fn keeps(&self, name: &str, index: u64) -> bool {
        self.names.get(name).is_some_and(|o| o.last == index) && self.survives(name, index)
    }
}

/// The proper ancestors of a cleaned name, outermost first: `a`, `a/b` for `a/b/c`.
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('/').map(move |(i, _)| &name[..i])
}

/// How an entry's header is treated.
enum Class {
    /// A file system entry.
    Path,
    /// A PAX global header: kept as it is (readers that apply layers ignore it).
    Global,
    /// Anything else (volume labels, stray extension headers of unknown formats): dropped,
    /// as the layer extractor skips them.
    Ignored,
}

fn class(kind: EntryType) -> Class {
    match kind {
        EntryType::Regular
        | EntryType::Continuous
        | EntryType::GNUSparse
        | EntryType::Link
        | EntryType::Symlink
        | EntryType::Char
        | EntryType::Block
        | EntryType::Directory
        | EntryType::Fifo => Class::Path,
        EntryType::XGlobalHeader => Class::Global,
        _ => Class::Ignored,
    }
}

/// Cleans a tar name lexically (as Go's `path.Clean` of a root-relative path): leading `/`,
/// empty and `.` components dropped, `..` taking back the previous one. None when a `..`
/// climbs above the root. The root itself is the empty string.
fn clean(raw: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Whether a raw name is already in the form §9.1 allows, so the entry can be kept as it
/// is: relative, no empty, `.` or `..` components, at most a `./` prefix and a trailing `/`.
fn conforming(raw: &str) -> bool {
    if raw == "." || raw == "./" {
        return true;
    }
    let rest = raw.strip_prefix("./").unwrap_or(raw);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    !rest.is_empty()
        && rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn bad_tar(what: &str) -> impl Fn(std::io::Error) -> TransferError + '_ {
    move |e| TransferError::from_io(format!("{what}: invalid tar entry"), e)
}

fn utf8_name(bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        TransferError::invalid(
            what,
            format!(
                "entry {:?} has a name that is not UTF-8",
                String::from_utf8_lossy(bytes)
            ),
        )
    })
}

/// The entry's cleaned name, or the error that says it climbs out.
fn cleaned(raw: &str, what: &str) -> Result<String> {
    clean(raw).ok_or_else(|| {
        TransferError::invalid(
            what,
            format!("entry {raw:?} climbs out of the root with \"..\""),
        )
    })
}

/// The cleaned target of a hard link, or the error that says it leaves the root.
fn link_target(raw_name: &str, target: &str, what: &str) -> Result<String> {
    match clean(target) {
        Some(t) if !t.is_empty() => Ok(t),
        Some(_) => Err(TransferError::invalid(
            what,
            format!("hard link {raw_name:?} points at the root"),
        )),
        None => Err(TransferError::invalid(
            what,
            format!("hard link {raw_name:?} points outside the root ({target:?})"),
        )),
    }
}

/// Pass one: reads every header of the tarball (and the stream to its end, so a damaged
/// compressed stream is found), refusing what cannot be applied safely; returns the plan.
fn plan<R: Read>(input: R, what: &str) -> Result<Plan> {
    let (_, reader) = decompressing_reader(input)
        .map_err(|e| TransferError::io(format!("failed to read {what}"), e))?;
    let mut archive = tar::Archive::new(reader);
    let mut plan = Plan::default();
    let mut links: Vec<HardLink> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| TransferError::from_io(format!("{what} is not a tar archive"), e))?;
    for (index, entry) in (0u64..).zip(entries) {
        let entry = entry.map_err(bad_tar(what))?;
        plan.entries = index + 1;
        let kind = entry.header().entry_type();
        if !matches!(class(kind), Class::Path) {
            continue;
        }
        let raw = utf8_name(&entry.path_bytes(), what)?;
        let name = cleaned(&raw, what)?;
        if name.is_empty() {
            if kind == EntryType::Directory {
                record(&mut plan, name, index, Kind::Dir);
            }
            continue;
        }
        // every parent must be a directory (or not exist) at this point of the stream
        let mut removed_after: Option<u64> = None;
        for parent in ancestors(&name) {
            let Some(o) = plan.names.get(parent) else {
                continue;
            };
            let present = removed_after.is_none_or(|j| j < o.last);
            if present && o.kind != Kind::Dir {
                let reason = if o.kind == Kind::Symlink {
                    format!("entry {raw:?} goes through the symbolic link {parent:?}")
                } else {
                    format!("entry {raw:?} is below {parent:?}, which is not a directory")
                };
                return Err(TransferError::invalid(what, reason));
            }
            removed_after = removed_after.max(o.last_nondir);
        }
        if kind == EntryType::Link {
            let raw_target = utf8_name(
                &entry.link_name_bytes().unwrap_or_default(),
                &format!("{what}: hard link {raw:?}"),
            )?;
            let target = link_target(&raw, &raw_target, what)?;
            let earlier = plan
                .names
                .get(&target)
                .filter(|o| plan.survives(&target, o.last));
            let Some(earlier) = earlier else {
                return Err(TransferError::invalid(
                    what,
                    format!(
                        "hard link {raw:?} points at {raw_target:?}, which is not an earlier entry of the archive"
                    ),
                ));
            };
            if earlier.kind == Kind::Dir {
                return Err(TransferError::invalid(
                    what,
                    format!("hard link {raw:?} points at the directory {raw_target:?}"),
                ));
            }
            links.push(HardLink {
                index,
                name: name.clone(),
                target,
                target_index: earlier.last,
            });
        }
        let k = match kind {
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        record(&mut plan, name, index, k);
    }
    let mut reader = archive.into_inner();
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| TransferError::from_io(format!("failed to read {what}"), e))?;
    for link in &links {
        if plan.keeps(&link.name, link.index) && !plan.keeps(&link.target, link.target_index) {
            return Err(TransferError::invalid(
                what,
                format!(
                    "hard link {:?} points at {:?}, which a later entry replaces or removes",
                    link.name, link.target
                ),
            ));
        }
    }
    Ok(plan)
}

fn record(plan: &mut Plan, name: String, index: u64, kind: Kind) {
    let nondir = (kind != Kind::Dir).then_some(index);
    plan.names
        .entry(name)
        .and_modify(|o| {
            o.last = index;
            o.kind = kind;
            o.last_nondir = nondir.or(o.last_nondir);
        })
        .or_insert(Occurrences {
            last: index,
            last_nondir: nondir,
            kind,
        });
}

/// The layer's bytes: hashed and sent to the store.
struct LayerOut {
    hasher: Hasher,
    writer: BlobWriter,
}

impl Write for LayerOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.writer.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where the bytes the tar reader reads go. The reader reads headers before the entry they
/// describe is known, so bytes at or past `until` wait in `pending` until the entry is
/// decided; those before it go to the layer (`emit`) or nowhere as they are read.
struct Route<W> {
    out: W,
    /// Bytes read so far.
    pos: u64,
    until: u64,
    emit: bool,
    pending: Vec<u8>,
    /// The position of `pending[0]`.
    pending_start: u64,
}

impl<W: Write> Route<W> {
    fn take(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let start = self.pos;
        self.pos += bytes.len() as u64;
        let routed = self.until.saturating_sub(start).min(bytes.len() as u64) as usize;
        if self.emit && routed > 0 {
            self.out.write_all(&bytes[..routed])?;
        }
        if routed < bytes.len() {
            if self.pending.is_empty() {
                self.pending_start = start + routed as u64;
            }
            self.pending.extend_from_slice(&bytes[routed..]);
        }
        Ok(())
    }

    /// From now on, bytes before `until` (those waiting included) go to the layer when
    /// `emit`, else nowhere.
    fn route(&mut self, until: u64, emit: bool) -> std::io::Result<()> {
        let n = until
            .saturating_sub(self.pending_start)
            .min(self.pending.len() as u64) as usize;
        if n > 0 {
            if emit {
                self.out.write_all(&self.pending[..n])?;
            }
            self.pending.drain(..n);
            self.pending_start += n as u64;
        }
        self.until = until;
        self.emit = emit;
        Ok(())
    }

    /// Routes everything read so far, and the rest of the current 512-byte block (an entry's
    /// padding), as `emit` says.
    fn route_to_block_end(&mut self, emit: bool) -> std::io::Result<()> {
        self.route(self.pos.div_ceil(BLOCK) * BLOCK, emit)
    }
}

/// The decompressed tarball as the tar reader of pass two reads it: every byte goes through
/// the [`Route`].
struct Tap<R, W> {
    inner: R,
    route: Rc<RefCell<Route<W>>>,
}

impl<R: Read, W: Write> Read for Tap<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.route.borrow_mut().take(&buf[..n])?;
        Ok(n)
    }
}

/// Reads a whole entry's data (through the tap).
fn drain<R: Read>(entry: &mut R) -> std::io::Result<()> {
    std::io::copy(entry, &mut std::io::sink()).map(|_| ())
}

/// Pass two: writes the layer the plan describes into `out`.
fn write_layer<R: Read, W: Write>(input: R, plan: &Plan, out: W, what: &str) -> Result<W> {
    let changed = || {
        TransferError::invalid(
            what,
            "the file changed while it was being imported".to_string(),
        )
    };
    let (_, reader) = decompressing_reader(input)
        .map_err(|e| TransferError::io(format!("failed to read {what}"), e))?;
    let route = Rc::new(RefCell::new(Route {
        out,
        pos: 0,
        until: 0,
        emit: false,
        pending: Vec::new(),
        pending_start: 0,
    }));
    let io = |e: std::io::Error| TransferError::from_io(format!("failed to import {what}"), e);
    let mut archive = tar::Archive::new(Tap {
        inner: reader,
        route: Rc::clone(&route),
    });
    let mut count = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| TransferError::from_io(format!("{what} is not a tar archive"), e))?;
    for (index, entry) in (0u64..).zip(entries) {
        let mut entry = entry.map_err(bad_tar(what))?;
        count = index + 1;
        let kind = entry.header().entry_type();
        let keep = match class(kind) {
            Class::Global => Keep::AsIs,
            Class::Ignored => Keep::No,
            Class::Path => {
                let raw = utf8_name(&entry.path_bytes(), what)?;
                let name = clean(&raw).ok_or_else(changed)?;
                if name.is_empty() {
                    if kind == EntryType::Directory && plan.keeps("", index) && conforming(&raw) {
                        Keep::AsIs
                    } else {
                        Keep::No
                    }
                } else if !plan.names.contains_key(&name) {
                    return Err(changed());
                } else if !plan.keeps(&name, index) {
                    Keep::No
                } else {
                    let link = entry.link_name_bytes().map(|l| l.into_owned());
                    let link = match (kind, link) {
                        (EntryType::Link, Some(l)) => {
                            let raw_target = utf8_name(&l, what)?;
                            if conforming(&raw_target) {
                                Some((l, true))
                            } else {
                                let t = link_target(&raw, &raw_target, what)?;
                                Some((t.into_bytes(), false))
                            }
                        }
                        (_, l) => l.map(|l| (l, true)),
                    };
                    let link_as_is = link.as_ref().is_none_or(|(_, as_is)| *as_is);
                    if kind == EntryType::GNUSparse {
                        Keep::Expanded(name)
                    } else if conforming(&raw) && link_as_is {
                        Keep::AsIs
                    } else {
                        let header = rewritten_header(
                            &mut entry,
                            &name,
                            link.as_ref().map(|(l, _)| l.as_slice()),
                            None,
                        )
                        .map_err(io)?;
                        Keep::Rewritten(header)
                    }
                }
            }
        };
        match keep {
            Keep::AsIs => {
                route.borrow_mut().route(u64::MAX, true).map_err(io)?;
                drain(&mut entry).map_err(io)?;
                route.borrow_mut().route_to_block_end(true).map_err(io)?;
            }
            Keep::No => {
                route.borrow_mut().route(u64::MAX, false).map_err(io)?;
                drain(&mut entry).map_err(io)?;
                route.borrow_mut().route_to_block_end(false).map_err(io)?;
            }
            Keep::Rewritten(header) => {
                {
                    let mut r = route.borrow_mut();
                    let pos = r.pos;
                    r.route(pos, false).map_err(io)?;
                    r.out.write_all(&header).map_err(io)?;
                    r.route(u64::MAX, true).map_err(io)?;
                }
                drain(&mut entry).map_err(io)?;
                route.borrow_mut().route_to_block_end(true).map_err(io)?;
            }
            Keep::Expanded(name) => {
                let size = entry.size();
                let header = rewritten_header(&mut entry, &name, None, Some(size)).map_err(io)?;
                {
                    let mut r = route.borrow_mut();
                    let pos = r.pos;
                    r.route(pos, false).map_err(io)?;
                    r.out.write_all(&header).map_err(io)?;
                    r.route(u64::MAX, false).map_err(io)?;
                }
                let mut buf = vec![0u8; 64 * 1024];
                let mut written = 0u64;
                loop {
                    let n = entry.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    written += n as u64;
                    route.borrow_mut().out.write_all(&buf[..n]).map_err(io)?;
                }
                let padding = (written.div_ceil(BLOCK) * BLOCK - written) as usize;
                let mut r = route.borrow_mut();
                r.out
                    .write_all(&[0u8; BLOCK as usize][..padding])
                    .map_err(io)?;
                r.route_to_block_end(false).map_err(io)?;
            }
        }
    }
    if count != plan.entries {
        return Err(changed());
    }
    // The end: two zero blocks, and whatever the file has after them, as they were; a file
    // that ends without them (or with something else) gets them.
    let mut tap = archive.into_inner();
    const END: usize = 2 * BLOCK as usize;
    let mut buf = [0u8; END];
    loop {
        let waiting = route.borrow().pending.len();
        if waiting >= END {
            break;
        }
        let n = tap.read(&mut buf[..END - waiting]).map_err(io)?;
        if n == 0 {
            break;
        }
    }
    let ends_well = {
        let r = route.borrow();
        r.pending.len() >= END && r.pending[..END].iter().all(|b| *b == 0)
    };
    if ends_well {
        route.borrow_mut().route(u64::MAX, true).map_err(io)?;
        std::io::copy(&mut tap, &mut std::io::sink()).map_err(io)?;
    } else {
        let mut r = route.borrow_mut();
        r.route(u64::MAX, false).map_err(io)?;
        r.out.write_all(&[0u8; END]).map_err(io)?;
        drop(r);
        std::io::copy(&mut tap, &mut std::io::sink()).map_err(io)?;
    }
    drop(tap);
    let route = Rc::try_unwrap(route)
        .map_err(|_| TransferError::invalid("import", "the layer writer is still shared"))?;
    Ok(route.into_inner().out)
}

/// What pass two does with an entry.
enum Keep {
    /// Its bytes, as they are.
    AsIs,
    /// Nothing.
    No,
    /// These header bytes, then its data as it is.
    Rewritten(Vec<u8>),
    /// A sparse file, written as a regular file with its holes filled.
    Expanded(String),
}

/// The header blocks of a changed entry: a copy of its header with `name` (and a hard link's
/// cleaned target, or a symlink's target as it was), preceded by a PAX header when it had
/// one or the names need it. `regular_size` turns a sparse file into a regular one.
fn rewritten_header<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &str,
    link: Option<&[u8]>,
    regular_size: Option<u64>,
) -> std::io::Result<Vec<u8>> {
    let kind = entry.header().entry_type();
    let mut header = entry.header().clone();
    let mut records: Vec<(String, Vec<u8>)> = match entry.pax_extensions()? {
        Some(exts) => exts
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.key().ok()?.to_owned(), e.value_bytes().to_vec())))
            .filter(|(k, _)| k != "path" && k != "linkpath")
            .collect(),
        None => Vec::new(),
    };
    let link = match link {
        Some(l) => Some(l.to_vec()),
        None => entry.link_name_bytes().map(|l| l.into_owned()),
    };
    let mut name = name.to_owned();
    if kind == EntryType::Directory {
        name.push('/');
    }
    if let Some(ustar) = header.as_ustar_mut() {
        ustar.prefix.fill(0);
    }
    set_field(
        &mut header.as_old_mut().name,
        name.as_bytes(),
        "path",
        &mut records,
    );
    if let Some(link) = &link {
        set_field(
            &mut header.as_old_mut().linkname,
            link,
            "linkpath",
            &mut records,
        );
    }
    if let Some(size) = regular_size {
        header.set_entry_type(EntryType::Regular);
        if let Some(gnu) = header.as_gnu_mut() {
            for s in gnu.sparse.iter_mut() {
                s.offset.fill(0);
                s.numbytes.fill(0);
            }
            gnu.isextended.fill(0);
            gnu.realsize.fill(0);
        }
        records.retain(|(k, _)| k != "size" && !k.starts_with("GNU.sparse."));
        if size > 0o77777777777 {
            records.push(("size".into(), size.to_string().into_bytes()));
            header.set_size(0);
        } else {
            header.set_size(size);
        }
    }
    header.set_cksum();
    let mut out = Vec::with_capacity(3 * BLOCK as usize);
    if !records.is_empty() {
        pax_header(&name, &mut records, &mut out);
    }
    out.extend_from_slice(header.as_bytes());
    Ok(out)
}

/// Puts `value` in a fixed header field, or, when it does not fit, its first bytes there and
/// the whole of it in a PAX record `key`.
fn set_field(field: &mut [u8], value: &[u8], key: &str, records: &mut Vec<(String, Vec<u8>)>) {
    field.fill(0);
    if value.len() <= field.len() {
        field[..value.len()].copy_from_slice(value);
    } else {
        let n = field.len();
        field.copy_from_slice(&value[..n]);
        records.push((key.to_owned(), value.to_vec()));
    }
}

/// Appends a PAX extended header (`x`) with `records` (strata-image's shared writer).
fn pax_header(name: &str, records: &mut [(String, Vec<u8>)], out: &mut Vec<u8>) {
    let (header, mut data) = strata_image::pax::pax_entry(name, records);
    out.extend_from_slice(header.as_bytes());
    let padded = (data.len() as u64).div_ceil(BLOCK) * BLOCK;
    data.resize(padded as usize, 0);
    out.extend_from_slice(&data);
}

/// Makes the (possibly compressed) rootfs tarball `file` into a layer written to `writer`
/// (see the module's doc); returns the layer's digest and size. On any error nothing is
/// committed: the write is aborted.
pub(crate) fn normalise(
    mut file: std::fs::File,
    writer: BlobWriter,
    what: &str,
) -> Result<(Digest, u64)> {
    let io = |e: std::io::Error| TransferError::io(format!("failed to read {what}"), e);
    // Two passes need a file to read twice: a pipe is spooled to an unnamed temporary file.
    let before = file.metadata().map_err(io)?;
    if !before.is_file() {
        let mut spool = tempfile::tempfile().map_err(io)?;
        std::io::copy(&mut file, &mut spool).map_err(io)?;
        file = spool;
    }
    let before = file.metadata().map_err(io)?;
    file.rewind().map_err(io)?;
    let plan = match plan(&mut file, what) {
        Ok(plan) => plan,
        Err(e) => {
            writer.abort();
            return Err(e);
        }
    };
    file.rewind().map_err(io)?;
    let out = LayerOut {
        hasher: Hasher::new(),
        writer,
    };
    let LayerOut { hasher, writer } = write_layer(&mut file, &plan, out, what)?;
    let after = file.metadata().map_err(io)?;
    if (after.len(), after.modified().ok()) != (before.len(), before.modified().ok()) {
        writer.abort();
        return Err(TransferError::invalid(
            what,
            "the file changed while it was being imported",
        ));
    }
    let size = hasher.len();
    let digest = hasher.finish();
    let response = writer.finish()?;
    if response.digest != digest.to_string() {
        return Err(TransferError::DigestMismatch {
            what: format!("layer of {what} as stored"),
            expected: digest,
            actual: Digest::parse(&response.digest)?,
        });
    }
    Ok((digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends an entry with its name (and link target) written verbatim into the header,
    /// as hostile tarballs have them (the builder would clean or refuse them).
    fn raw(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, link: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        raw(b, name, EntryType::Regular, "", data);
    }

    fn normalised(tar: &[u8]) -> Result<Vec<u8>> {
        let plan = plan(tar, "t.tar")?;
        write_layer(tar, &plan, Vec::new(), "t.tar")
    }

    /// (name, type, link target, data) of every entry.
    fn listing(tar: &[u8]) -> Vec<(String, EntryType, String, Vec<u8>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap())
                    .unwrap_or_default();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, e.header().entry_type(), link, data)
            })
            .collect()
    }

    fn names(tar: &[u8]) -> Vec<String> {
        listing(tar).into_iter().map(|e| e.0).collect()
    }

    #[test]
    fn a_conforming_tarball_passes_through_byte_for_byte() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "./", std::io::empty()).unwrap();
        b.append_data(&mut h, "etc/", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(700);
        b.append_data(&mut h, "etc/passwd", &[b'x'; 700][..])
            .unwrap();
        let long = format!("etc/{}", "n".repeat(150));
        b.append_data(&mut h, &long, &[b'y'; 700][..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(EntryType::Link);
        l.set_size(0);
        b.append_link(&mut l, "etc/passwd.bak", "etc/passwd")
            .unwrap();
        l.set_entry_type(EntryType::Symlink);
        b.append_link(&mut l, "tmp", "/var/tmp").unwrap();
        b.append_pax_extensions([("SCHILY.xattr.user.k", &b"v"[..])])
            .unwrap();
        file(&mut b, "./etc/with-xattr", b"z");
        let mut tar = b.into_inner().unwrap();
        tar.extend_from_slice(&[0u8; 4096]); // record padding after the end blocks
        assert_eq!(normalised(&tar).unwrap(), tar);
    }

    #[test]
    fn names_are_cleaned_and_the_last_of_duplicates_is_written_once() {
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "/", EntryType::Directory, "", b"");
        raw(&mut b, "/etc/", EntryType::Directory, "", b"");
        file(&mut b, "/etc/abs.txt", b"abs");
        file(&mut b, "a/../b.txt", b"b");
        file(&mut b, "./c.txt", b"c");
        file(&mut b, "d.txt", b"first");
        raw(&mut b, "/etc/hard", EntryType::Link, "/etc/abs.txt", b"");
        file(&mut b, ".//d.txt", b"second");
        b.append_pax_extensions([
            ("path", format!("/deep/{}/f", "p".repeat(120)).as_bytes()),
            ("SCHILY.xattr.user.k", &b"v"[..]),
        ])
        .unwrap();
        file(&mut b, "ignored-by-pax", b"long");
        let tar = b.into_inner().unwrap();
        let out = normalised(&tar).unwrap();
        let long = format!("deep/{}/f", "p".repeat(120));
        assert_eq!(
            names(&out),
            [
                "etc/",
                "etc/abs.txt",
                "b.txt",
                "./c.txt",
                "etc/hard",
                "d.txt",
                long.as_str()
            ]
        );
        let entries = listing(&out);
        assert_eq!(entries[4].1, EntryType::Link);
        assert_eq!(entries[4].2, "etc/abs.txt");
        assert_eq!(entries[5].3, b"second");
        assert_eq!(entries[6].3, b"long");
        let mut a = tar::Archive::new(&out[..]);
        let mut last = a.entries().unwrap().last().unwrap().unwrap();
        let xattr: Vec<_> = last
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|e| e.unwrap().key().unwrap().to_owned())
            .collect();
        assert!(
            xattr.contains(&"SCHILY.xattr.user.k".to_owned()),
            "{xattr:?}"
        );
        // the layer is itself conforming: normalising it again changes nothing
        assert_eq!(normalised(&out).unwrap(), out);
    }

    #[test]
    fn what_a_later_entry_replaces_is_dropped() {
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "a/", EntryType::Directory, "", b"");
        file(&mut b, "a/x", b"gone with a");
        file(&mut b, "a", b"now a file");
        raw(&mut b, "k/", EntryType::Directory, "", b"");
        file(&mut b, "k/kept", b"k is still a directory");
        raw(&mut b, "k/", EntryType::Directory, "", b"");
        let out = normalised(&b.into_inner().unwrap()).unwrap();
        assert_eq!(names(&out), ["a", "k/kept", "k/"]);
    }

    #[test]
    fn unsafe_entries_are_refused_naming_them() {
        type Build = fn(&mut tar::Builder<Vec<u8>>);
        let cases: [(&str, Build, &str); 8] = [
            (
                "climbs",
                |b| file(b, "a/../../x", b""),
                "entry \"a/../../x\" climbs out of the root",
            ),
            (
                "absolute climb",
                |b| file(b, "/../x", b""),
                "climbs out of the root",
            ),
            (
                "link outside",
                |b| raw(b, "pw", EntryType::Link, "../../../etc/passwd", b""),
                "hard link \"pw\" points outside the root (\"../../../etc/passwd\")",
            ),
            (
                "link to nothing",
                |b| raw(b, "pw", EntryType::Link, "etc/missing", b""),
                "hard link \"pw\" points at \"etc/missing\", which is not an earlier entry",
            ),
            (
                "link to a later entry",
                |b| {
                    raw(b, "pw", EntryType::Link, "later", b"");
                    file(b, "later", b"x");
                },
                "not an earlier entry",
            ),
            (
                "through a symlink",
                |b| {
                    raw(b, "lnk", EntryType::Symlink, "/tmp", b"");
                    file(b, "lnk/THROUGH.txt", b"x");
                },
                "entry \"lnk/THROUGH.txt\" goes through the symbolic link \"lnk\"",
            ),
            (
                "below a file",
                |b| {
                    file(b, "f", b"x");
                    file(b, "f/g", b"x");
                },
                "entry \"f/g\" is below \"f\", which is not a directory",
            ),
            (
                "link to what is replaced",
                |b| {
                    file(b, "t", b"old");
                    raw(b, "l", EntryType::Link, "t", b"");
                    file(b, "t", b"new");
                },
                "hard link \"l\" points at \"t\", which a later entry replaces or removes",
            ),
        ];
        for (what, build, needle) in cases {
            let mut b = tar::Builder::new(Vec::new());
            build(&mut b);
            let err = normalised(&b.into_inner().unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{what}: {err}");
            assert!(err.contains("t.tar"), "{what}: {err}");
        }
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "d/", EntryType::Directory, "", b"");
        raw(&mut b, "l", EntryType::Link, "d", b"");
        let err = normalised(&b.into_inner().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("points at the directory \"d\""), "{err}");
    }

    #[test]
    fn a_symlink_replaced_by_a_directory_can_hold_entries() {
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "lnk", EntryType::Symlink, "/tmp", b"");
        raw(&mut b, "lnk/", EntryType::Directory, "", b"");
        file(&mut b, "lnk/inside", b"x");
        let out = normalised(&b.into_inner().unwrap()).unwrap();
        assert_eq!(names(&out), ["lnk/", "lnk/inside"]);
    }

    #[test]
    fn garbage_and_a_missing_end_are_handled() {
        let junk = vec![7u8; 2048];
        let err = normalised(&junk).unwrap_err().to_string();
        assert!(err.contains("t.tar"), "{err}");
        // no end-of-archive blocks: the layer gets them
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "x", b"x");
        let full = b.into_inner().unwrap();
        let cut = &full[..1024];
        let out = normalised(cut).unwrap();
        assert_eq!(out.len(), 2048);
        assert_eq!(&out[..1024], cut);
        assert!(out[1024..].iter().all(|b| *b == 0));
    }
}
