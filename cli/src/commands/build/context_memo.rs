//! The build context's digest, remembered by the stat of every entry, the way git's index
//! remembers that a file is unchanged.
//!
//! Finding that an unchanged context is already stored means hashing its tar: 0.12 s of
//! sha256 for a 128 MB context, most of a fully cached rebuild. So after packing, the CLI
//! records the digest beside the lstat of each entry it packed (device, inode, mode, owner,
//! size, mtime and ctime in nanoseconds). The next build of the same directory that finds
//! exactly the same entries with exactly the same stat reuses the digest without reading a
//! file.
//!
//! Why this is sound where size+mtime is not: a write, chmod, chown, rename over or xattr
//! change sets the inode's ctime to the current time, and no unprivileged call can set ctime
//! back (`touch -r` restores mtime only). The one gap is the clock's granularity: a file
//! changed again within the same tick as the recorded stat keeps its ctime. A record is
//! therefore only kept when every entry's ctime and mtime lie at least [`MARGIN`] before
//! the moment its stat was taken ("racily clean" entries in git's terms); any change after
//! that moment gets a later ctime and misses. The cache keys of the build are untouched:
//! they still come from content hashes, computed by the executor from the context's bytes.
//! `--no-cache` ignores the record and hashes everything.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use strata_executor::layer_tar::Change;
use strata_types::Digest;

/// How much older than the stat an entry's ctime and mtime must be for the record to be
/// kept: well above any clock tick of Linux file timestamps (jiffies), and above the 2 s
/// granularity of FAT mtimes.
pub const MARGIN: Duration = Duration::from_secs(3);

/// Bumped when what a record means changes.
const FORMAT: u32 = 1;

/// One entry's lstat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EntryStat {
    path: String,
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// The stat of every entry of a context, taken before it is packed.
#[derive(Debug)]
pub struct Snapshot {
    taken: SystemTime,
    entries: Vec<EntryStat>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    format: u32,
    context: String,
    digest: String,
    entries: Vec<EntryStat>,
}

/// The lstat of `entries` (paths relative to `dir`, as packed). `None` when an entry
/// vanished or cannot be read: the build then hashes, and reports the real error.
pub fn snapshot(dir: &Path, entries: &[Change]) -> Option<Snapshot> {
    let taken = SystemTime::now();
    let mut out = Vec::with_capacity(entries.len());
    for change in entries {
        let Change::Add(path) = change else {
            return None;
        };
        let m = std::fs::symlink_metadata(dir.join(path)).ok()?;
        out.push(EntryStat {
            path: path.clone(),
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        });
    }
    Some(Snapshot {
        taken,
        entries: out,
    })
}

/// Where the records of the context directory `context` are kept under `memo_dir`.
fn record_path(memo_dir: &Path, context: &Path) -> PathBuf {
    let key = Digest::of(context.as_os_str().as_encoded_bytes()).hex();
    memo_dir.join(format!("{}.json", &key[..32]))
}

/// The digest recorded for `context` when its entries' stat is exactly `snapshot`.
pub fn lookup(memo_dir: &Path, context: &Path, snapshot: &Snapshot) -> Option<String> {
    let bytes = std::fs::read(record_path(memo_dir, context)).ok()?;
    let record: Record = serde_json::from_slice(&bytes).ok()?;
    (record.format == FORMAT
        && record.context == context.to_string_lossy()
        && record.entries == snapshot.entries)
        .then_some(record.digest)
}

/// Records `digest` for `context` as packed from `snapshot`, unless an entry changed too
/// close to the moment of the snapshot to be told apart from a later change (see the
/// module's documentation). Best effort: a record that cannot be written is only a slower
/// next build.
pub fn remember(memo_dir: &Path, context: &Path, snapshot: &Snapshot, digest: &str) {
    let Ok(taken) = snapshot.taken.duration_since(UNIX_EPOCH) else {
        return;
    };
    let limit = taken.saturating_sub(MARGIN).as_nanos() as i128;
    if snapshot
        .entries
        .iter()
        .any(|e| e.ctime_ns >= limit || e.mtime_ns >= limit)
    {
        return;
    }
    let record = Record {
        format: FORMAT,
        context: context.to_string_lossy().into_owned(),
        digest: digest.to_string(),
        entries: snapshot.entries.clone(),
    };
    let path = record_path(memo_dir, context);
    let written = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(memo_dir)?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(&record)?)?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        tracing::debug!(path = %path.display(), error = %e, "cannot remember the context's digest");
    }
}

/// Drops the record of `context`.
pub fn forget(memo_dir: &Path, context: &Path) {
    let _ = std::fs::remove_file(record_path(memo_dir, context));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), b"aaaa").unwrap();
        std::os::unix::fs::symlink("sub/a", dir.path().join("link")).unwrap();
        dir
    }

    fn entries() -> Vec<Change> {
        ["link", "sub", "sub/a"]
            .iter()
            .map(|p| Change::Add(p.to_string()))
            .collect()
    }

    /// A snapshot as if taken `later` after now: the files look old enough to trust.
    fn aged(dir: &Path, later: Duration) -> Snapshot {
        let mut s = snapshot(dir, &entries()).unwrap();
        s.taken += later;
        s
    }

    #[test]
    fn an_unchanged_context_is_found_by_its_stat() {
        let (ctx, memo) = (context(), tempfile::tempdir().unwrap());
        let s = aged(ctx.path(), MARGIN * 2);
        assert_eq!(lookup(memo.path(), ctx.path(), &s), None);
        remember(memo.path(), ctx.path(), &s, "sha256:d");
        let again = snapshot(ctx.path(), &entries()).unwrap();
        assert_eq!(
            lookup(memo.path(), ctx.path(), &again).as_deref(),
            Some("sha256:d")
        );
        // another directory with the same names is another record
        let other = context();
        let theirs = snapshot(other.path(), &entries()).unwrap();
        assert_eq!(lookup(memo.path(), other.path(), &theirs), None);
    }

    #[test]
    fn a_change_with_the_same_size_and_mtime_misses() {
        let (ctx, memo) = (context(), tempfile::tempdir().unwrap());
        let file = ctx.path().join("sub/a");
        let old = std::fs::symlink_metadata(&file).unwrap();
        remember(
            memo.path(),
            ctx.path(),
            &aged(ctx.path(), MARGIN * 2),
            "sha256:d",
        );
        std::fs::write(&file, b"bbbb").unwrap();
        // put the mtime back, as `touch -r` would: only the ctime tells
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old.modified().unwrap())
            .unwrap();
        let now = std::fs::symlink_metadata(&file).unwrap();
        assert_eq!(
            (now.size(), now.mtime_nsec()),
            (old.size(), old.mtime_nsec())
        );
        let s = snapshot(ctx.path(), &entries()).unwrap();
        assert_eq!(lookup(memo.path(), ctx.path(), &s), None);
    }

    #[test]
    fn added_removed_or_renamed_entries_miss() {
        let (ctx, memo) = (context(), tempfile::tempdir().unwrap());
        remember(
            memo.path(),
            ctx.path(),
            &aged(ctx.path(), MARGIN * 2),
            "sha256:d",
        );
        let mut fewer = entries();
        fewer.pop();
        let s = snapshot(ctx.path(), &fewer).unwrap();
        assert_eq!(lookup(memo.path(), ctx.path(), &s), None);
        std::fs::rename(ctx.path().join("sub/a"), ctx.path().join("sub/b")).unwrap();
        std::fs::write(ctx.path().join("sub/a"), b"aaaa").unwrap();
        let s = snapshot(ctx.path(), &entries()).unwrap();
        assert_eq!(lookup(memo.path(), ctx.path(), &s), None);
        // an entry that vanished: no snapshot at all
        std::fs::remove_file(ctx.path().join("link")).unwrap();
        assert!(snapshot(ctx.path(), &entries()).is_none());
    }

    #[test]
    fn entries_changed_within_the_margin_are_not_trusted() {
        let (ctx, memo) = (context(), tempfile::tempdir().unwrap());
        // the files were written just now: a change in the same clock tick could follow
        let fresh = snapshot(ctx.path(), &entries()).unwrap();
        remember(memo.path(), ctx.path(), &fresh, "sha256:d");
        assert_eq!(lookup(memo.path(), ctx.path(), &fresh), None);
        assert!(!record_path(memo.path(), ctx.path()).exists());
    }

    #[test]
    fn a_damaged_record_is_a_miss() {
        let (ctx, memo) = (context(), tempfile::tempdir().unwrap());
        let s = aged(ctx.path(), MARGIN * 2);
        remember(memo.path(), ctx.path(), &s, "sha256:d");
        std::fs::write(record_path(memo.path(), ctx.path()), b"{not json").unwrap();
        assert_eq!(lookup(memo.path(), ctx.path(), &s), None);
    }
}
