//! The tag store: tags as pointers over a [`KvStore`], with compare-and-swap moves, history,
//! a global change log, and watchers.
//!
//! Reads go straight to the key-value store (blocking calls; async callers run them on the
//! blocking pool). Writes go through one writer thread ([`commit`]) that decides every
//! compare-and-swap in arrival order and commits a whole group of moves with one synced
//! batch (group commit), so CAS is atomic and the fsync cost is shared by every concurrent
//! writer.
//!
//! # The change log and its retention
//!
//! Every move is an event in the global log (`events`), numbered without gaps. The writer
//! keeps the newest [`StoreOptions::event_retention`] events at least and prunes older ones
//! with one range delete in the batch of the group that pushed the log past the limit (in
//! steps of a sixteenth of the retention, so there is one range tombstone per step, not per
//! group), recording the highest pruned sequence in `meta` in the same batch. A watcher whose
//! position is below that gets [`TagIndexError::EventsPruned`], never a silent gap; a replay
//! that finds the log starting above where it asked (pruned while it read) fails the same
//! way. Per-tag history is a separate space and is not pruned: it is each tag's audit trail
//! (`strata tag --history`), and pruning it would need a per-tag policy, not a global count.
//!
//! # Consistent listings
//!
//! A listing is read under the shared side of a lock the writer holds exclusively while a
//! group becomes visible (its write and the publication of its sequence), so a page and its
//! `sequence` are one state: the page shows exactly the changes up to `sequence`.

mod commit;
pub mod record;
mod watch;

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
};

use strata_kv::{Durability, KvStore, WriteBatch};
use strata_types::Digest;
use tokio::sync::{broadcast, oneshot};

pub use record::{SPACES, TagEvent, TagRecord};
pub use watch::{WatchItem, Watcher};

use crate::{TagIndexError, name::TagName};
use record::{BY_DIGEST, EVENTS, HISTORY, META, TAGS};

type Result<T, E = TagIndexError> = std::result::Result<T, E>;

/// What a move expects to find (compare-and-swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Unconditional.
    Any,
    /// The tag must not exist.
    Absent,
    /// The tag must point at this digest.
    Digest(Digest),
}

/// The result of a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// The tag after the move.
    pub tag: TagRecord,
    /// Where it pointed before (`None`: it was created).
    pub previous: Option<Digest>,
}

/// The result of a removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// Where the tag pointed.
    pub previous: Digest,
    /// True when no other tag points at `previous` any more.
    pub last_tag_for_digest: bool,
    /// The sequence of the removal.
    pub sequence: u64,
}

/// Which tags a listing returns; the filters combine.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Names starting with this (full normalised form).
    pub prefix: String,
    /// Tags of this repository (full name, e.g. `docker.io/library/busybox`).
    pub repository: Option<String>,
    /// Tags pointing at this digest.
    pub digest: Option<Digest>,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Token for the next page; empty when this was the last.
    pub next_page_token: String,
    /// The sequence of the last change the page reflects: it was read in one view with the
    /// items, so they are exactly the state after this change (0: none yet).
    pub sequence: u64,
}

/// Where a watcher starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// With the next change committed.
    Now,
    /// With the change after this sequence (replaying the log from there).
    After(u64),
    /// With the oldest change the log still keeps.
    Oldest,
}

/// Tuning of a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Live events buffered per watcher before it counts as lagging.
    pub watch_buffer: usize,
    /// Most moves committed in one synced batch.
    pub max_group: usize,
    /// Events the global log keeps at least (at least 1; 0 counts as 1). Older ones are
    /// pruned in steps of `event_retention / 16`, so the log holds up to that many more.
    pub event_retention: u64,
}

/// The default [`StoreOptions::event_retention`]: at ~100 bytes an event, ~10 MB of log, and
/// at a busy farm's hundred moves a second, a quarter of an hour for a watcher to come back.
pub const DEFAULT_EVENT_RETENTION: u64 = 100_000;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            watch_buffer: 4096,
            max_group: 512,
            event_retention: DEFAULT_EVENT_RETENTION,
        }
    }
}

/// Default page size.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page size; larger requests are clamped.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The page size a request asks for: 0 means the default, above the maximum is clamped.
pub fn page_size(requested: u32) -> usize {
    match requested as usize {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// The tag store. Cheap to clone; the writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct TagStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TagStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagStore")
            .field("last_sequence", &self.last_sequence())
            .finish()
    }
}

struct Inner {
    kv: Arc<dyn KvStore>,
    jobs: Option<mpsc::Sender<commit::Job>>,
    writer: Option<JoinHandle<()>>,
    events: broadcast::Sender<Arc<TagEvent>>,
    published: Arc<Published>,
}

/// What the writer publishes to readers.
pub(super) struct Published {
    /// The sequence of the last committed (durable and visible) change.
    committed: AtomicU64,
    /// The highest sequence pruned from the log (0: none); the log keeps every event above.
    pruned_through: AtomicU64,
    /// Readers that must see the stored rows and `committed` as one state (listings) hold
    /// it shared; the writer holds it exclusively from its write until it has published the
    /// new sequence.
    view: RwLock<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // closing the queue ends the writer after it committed what was queued
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl TagStore {
    /// Opens the store over `kv` (opened with [`SPACES`]) and starts its writer thread. A log
    /// longer than the retention (after the retention was lowered) is pruned first.
    pub fn open(kv: Arc<dyn KvStore>, options: StoreOptions) -> Result<Self> {
        let from_meta = match kv.get(META, record::LAST_SEQUENCE)? {
            Some(v) => record::decode_sequence(&v)?,
            None => 0,
        };
        // the meta row is written in the same batch as every event; the log is the truth
        let from_log = match kv.scan_rev(EVENTS, b"", b"", 1)?.first() {
            Some((k, _)) => record::sequence_suffix(EVENTS, k)?,
            None => 0,
        };
        let last = from_meta.max(from_log);
        let retention = options.event_retention.max(1);
        let mut pruned_through = match kv.get(META, record::PRUNED_THROUGH)? {
            Some(v) => record::decode_meta(record::PRUNED_THROUGH, &v)?,
            None => 0,
        };
        let target = last.saturating_sub(retention);
        if target > pruned_through {
            let mut batch = WriteBatch::new();
            record::prune(&mut batch, target);
            kv.write(batch, Durability::Sync)?;
            tracing::info!(pruned_through = target, retention, "tag event log pruned");
            pruned_through = target;
        }
        let published = Arc::new(Published {
            committed: AtomicU64::new(last),
            pruned_through: AtomicU64::new(pruned_through),
            view: RwLock::new(()),
        });
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let (jobs, queue) = mpsc::channel();
        let writer = commit::Writer::new(
            kv.clone(),
            commit::Position {
                last,
                pruned_through,
            },
            published.clone(),
            events.clone(),
            options.max_group.max(1),
            retention,
        );
        let writer = std::thread::Builder::new()
            .name("tag-index-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| {
                strata_kv::KvError::Backend(format!("cannot start the writer thread: {e}"))
            })?;
        tracing::info!(
            last_sequence = last,
            pruned_through,
            retention,
            "tag store opened"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                kv,
                jobs: Some(jobs),
                writer: Some(writer),
                events,
                published,
            }),
        })
    }

    async fn submit(&self, op: commit::Op) -> Result<commit::Outcome> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .jobs
            .as_ref()
            .ok_or(TagIndexError::Closed)?
            .send(commit::Job { op, reply })
            .map_err(|_| TagIndexError::Closed)?;
        answer.await.map_err(|_| TagIndexError::Closed)?
    }

    /// Points `name` at `digest` if `expect` holds; returns once the move is synced to disk.
    /// Pointing a tag where it already points is not a move: no event, the record unchanged.
    pub async fn set(&self, name: &TagName, digest: Digest, expect: Expect) -> Result<SetOutcome> {
        match self
            .submit(commit::Op::Set {
                name: name.as_str().to_string(),
                digest,
                expect,
            })
            .await?
        {
            commit::Outcome::Set(o) => Ok(o),
            commit::Outcome::Delete(_) => unreachable!("the writer answers a set with a set"),
        }
    }

    /// Removes `name`, if it points at `expect` when given; returns once synced to disk.
    pub async fn delete(&self, name: &TagName, expect: Option<Digest>) -> Result<DeleteOutcome> {
        match self
            .submit(commit::Op::Delete {
                name: name.as_str().to_string(),
                expect,
            })
            .await?
        {
            commit::Outcome::Delete(o) => Ok(o),
            commit::Outcome::Set(_) => unreachable!("the writer answers a delete with a delete"),
        }
    }

    /// Where `name` points. Blocking.
    pub fn resolve(&self, name: &TagName) -> Result<TagRecord> {
        let key = name.as_str().as_bytes();
        match self.inner.kv.get(TAGS, key)? {
            Some(v) => record::decode(TAGS, key, &v),
            None => Err(TagIndexError::NotFound {
                name: name.as_str().to_string(),
            }),
        }
    }

    /// Tags matching `filter`, in name order, one page at a time, with the sequence of the
    /// state the page shows (see the module docs). Blocking.
    pub fn list(
        &self,
        filter: &ListFilter,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<TagRecord>> {
        let after = decode_token(page_token)?;
        // no group becomes visible while this page is read
        let _view = self.view();
        let sequence = self.last_sequence();
        // the name prefix every result must have: the repository's plus the caller's
        let repo_prefix = filter.repository.as_ref().map(|r| format!("{r}:"));
        let prefix = match repo_prefix {
            None => filter.prefix.clone(),
            Some(r) if r.starts_with(&filter.prefix) => r,
            Some(r) if filter.prefix.starts_with(&r) => filter.prefix.clone(),
            Some(_) => {
                return Ok(Page {
                    items: Vec::new(),
                    next_page_token: String::new(),
                    sequence,
                });
            }
        };
        let kv = &self.inner.kv;
        let mut items = Vec::with_capacity(page_size.min(64));
        let more = match &filter.digest {
            None => {
                let start = after.map(successor).unwrap_or_default();
                let rows = kv.scan(TAGS, prefix.as_bytes(), &start, page_size + 1)?;
                let more = rows.len() > page_size;
                for (k, v) in rows.into_iter().take(page_size) {
                    items.push(record::decode::<TagRecord>(TAGS, &k, &v)?);
                }
                more
            }
            Some(digest) => {
                let mut scan_prefix = record::by_digest_prefix(digest);
                let names_at = scan_prefix.len();
                scan_prefix.extend_from_slice(prefix.as_bytes());
                let start = after
                    .map(|name| {
                        let mut key = record::by_digest_prefix(digest);
                        key.extend_from_slice(&name);
                        successor(key)
                    })
                    .unwrap_or_default();
                let rows = kv.scan(BY_DIGEST, &scan_prefix, &start, page_size + 1)?;
                let more = rows.len() > page_size;
                for (k, _) in rows.into_iter().take(page_size) {
                    let name = &k[names_at..];
                    // the batch that wrote this row wrote the record too
                    match kv.get(TAGS, name)? {
                        Some(v) => items.push(record::decode::<TagRecord>(TAGS, name, &v)?),
                        None => {
                            return Err(TagIndexError::Corrupt {
                                space: BY_DIGEST.name,
                                key: String::from_utf8_lossy(&k).into_owned(),
                                reason: "no tag record for this index row".into(),
                            });
                        }
                    }
                }
                more
            }
        };
        let next_page_token = match (more, items.last()) {
            (true, Some(last)) => encode_token(last.name.as_bytes()),
            _ => String::new(),
        };
        Ok(Page {
            items,
            next_page_token,
            sequence,
        })
    }

    /// Every move of `name`, oldest first, one page at a time. NOT_FOUND when the tag never
    /// existed. Blocking.
    pub fn history(
        &self,
        name: &TagName,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<TagEvent>> {
        let after = match decode_token(page_token)? {
            None => None,
            Some(raw) => Some(
                <[u8; 8]>::try_from(raw.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| TagIndexError::InvalidPageToken {
                        token: page_token.to_string(),
                    })?,
            ),
        };
        let prefix = record::history_prefix(name.as_str());
        let start = match after {
            Some(seq) => record::history_key(name.as_str(), seq.saturating_add(1)),
            None => Vec::new(),
        };
        let _view = self.view();
        let sequence = self.last_sequence();
        let rows = self
            .inner
            .kv
            .scan(HISTORY, &prefix, &start, page_size + 1)?;
        if rows.is_empty() && after.is_none() {
            return Err(TagIndexError::NotFound {
                name: name.as_str().to_string(),
            });
        }
        let more = rows.len() > page_size;
        let items = rows
            .into_iter()
            .take(page_size)
            .map(|(k, v)| record::decode::<TagEvent>(HISTORY, &k, &v))
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = match (more, items.last()) {
            (true, Some(last)) => encode_token(&last.sequence.to_be_bytes()),
            _ => String::new(),
        };
        Ok(Page {
            items,
            next_page_token,
            sequence,
        })
    }

    /// Up to `limit` events of the log with a sequence above `after`, in order. The first is
    /// `after + 1` unless that one was pruned (see [`TagStore::pruned_through`]). Blocking.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<TagEvent>> {
        let start = record::event_key(after.saturating_add(1));
        if after == u64::MAX {
            return Ok(Vec::new());
        }
        self.inner
            .kv
            .scan(EVENTS, b"", &start, limit)?
            .into_iter()
            .map(|(k, v)| record::decode(EVENTS, &k, &v))
            .collect()
    }

    /// The sequence of the last committed change (0 when there was none).
    pub fn last_sequence(&self) -> u64 {
        self.inner.published.committed.load(Ordering::Acquire)
    }

    /// The highest sequence pruned from the log (0: none): the log keeps every event above.
    pub fn pruned_through(&self) -> u64 {
        self.inner.published.pruned_through.load(Ordering::Acquire)
    }

    /// A watcher of changes under `prefix`, starting `from` there.
    /// [`TagIndexError::EventsPruned`] when `from` is a position the log no longer covers;
    /// [`TagIndexError::SequenceAhead`] when it is beyond the last change (it would silently
    /// pass over every change up to it).
    pub fn watch(&self, prefix: String, from: WatchFrom) -> Result<Watcher> {
        match from {
            WatchFrom::Now => Ok(Watcher::new(
                self.clone(),
                prefix,
                self.last_sequence(),
                false,
            )),
            WatchFrom::After(after) => {
                let pruned = self.pruned_through();
                if after < pruned {
                    return Err(TagIndexError::EventsPruned {
                        after,
                        oldest: pruned + 1,
                    });
                }
                // every sequence handed out was published before it was answered
                let last = self.last_sequence();
                if after > last {
                    return Err(TagIndexError::SequenceAhead { after, last });
                }
                Ok(Watcher::new(self.clone(), prefix, after, false))
            }
            WatchFrom::Oldest => Ok(Watcher::new(
                self.clone(),
                prefix,
                self.pruned_through(),
                true,
            )),
        }
    }

    /// The shared side of the view lock (see [`Published::view`]).
    fn view(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        // the lock guards no data: a panic while it was held leaves nothing half-done
        self.inner
            .published
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<TagEvent>> {
        self.inner.events.subscribe()
    }
}

/// The smallest key greater than `key` (names never contain `\0`).
fn successor(mut key: Vec<u8>) -> Vec<u8> {
    key.push(0);
    key
}

fn encode_token(raw: &[u8]) -> String {
    hex::encode(raw)
}

fn decode_token(token: &str) -> Result<Option<Vec<u8>>> {
    if token.is_empty() {
        return Ok(None);
    }
    hex::decode(token)
        .ok()
        .filter(|raw| !raw.is_empty())
        .map(Some)
        .ok_or_else(|| TagIndexError::InvalidPageToken {
            token: token.to_string(),
        })
}
