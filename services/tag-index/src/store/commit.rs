//! The single writer: decides compare-and-swap moves in arrival order and commits them in
//! groups, one synced batch per group.
//!
//! Why a writer thread and not a mutex around read-check-write: a synced RocksDB write costs
//! one fsync (~1.5 ms on the reference machine, ~600/s), so serialising moves one fsync each
//! caps the service below its target. The writer takes every move queued while the previous
//! batch was syncing, decides each against the stored state plus the earlier moves of its
//! own group, and writes them all in one atomic `WriteBatch` with `Durability::Sync`. Only
//! after that write returns are the callers answered and the events published, so an
//! acknowledged move is durable and every published event is in the log.
//!
//! The writer also keeps the log to its retention: when a group takes the log a step past
//! it, the same batch range-deletes the oldest events and records how far it pruned. The
//! write and the publication of the new sequence happen under the exclusive side of the view
//! lock, so a listing sees either all of a group with its sequence or none of it.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering, mpsc},
    time::{SystemTime, UNIX_EPOCH},
};

use strata_kv::{Durability, KvStore, WriteBatch};
use strata_types::Digest;
use tokio::sync::{broadcast, oneshot};

use super::{
    DeleteOutcome, Expect, Published, SetOutcome,
    record::{self, BY_DIGEST, EVENTS, HISTORY, META, TAGS, TagEvent, TagRecord},
};
use crate::TagIndexError;

type Result<T, E = TagIndexError> = std::result::Result<T, E>;

/// A change to make.
#[derive(Debug)]
pub(super) enum Op {
    Set {
        name: String,
        digest: Digest,
        expect: Expect,
    },
    Delete {
        name: String,
        expect: Option<Digest>,
    },
}

/// What a change did.
#[derive(Debug)]
pub(super) enum Outcome {
    Set(SetOutcome),
    Delete(DeleteOutcome),
}

/// A change and where to send its answer.
#[derive(Debug)]
pub(super) struct Job {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Outcome>>,
}

/// Where the log stands.
#[derive(Debug, Clone, Copy)]
pub(super) struct Position {
    /// The last committed sequence.
    pub last: u64,
    /// The highest pruned sequence (0: none).
    pub pruned_through: u64,
}

pub(super) struct Writer {
    kv: Arc<dyn KvStore>,
    last: u64,
    pruned_through: u64,
    published: Arc<Published>,
    events: broadcast::Sender<Arc<TagEvent>>,
    max_group: usize,
    retention: u64,
    /// Prune only when this many events beyond the retention have gathered.
    prune_step: u64,
}

/// The state of the tags a group has touched so far: name -> record (`None`: deleted).
type Overlay = HashMap<String, Option<TagRecord>>;

impl Writer {
    pub fn new(
        kv: Arc<dyn KvStore>,
        at: Position,
        published: Arc<Published>,
        events: broadcast::Sender<Arc<TagEvent>>,
        max_group: usize,
        retention: u64,
    ) -> Self {
        let retention = retention.max(1);
        Self {
            kv,
            last: at.last,
            pruned_through: at.pruned_through,
            published,
            events,
            max_group,
            retention,
            prune_step: (retention / 16).max(1),
        }
    }

    /// How far to prune after a group that ends the log at `last`, if it is time to.
    fn prune_target(&self, last: u64) -> Option<u64> {
        let target = last.saturating_sub(self.retention);
        (target >= self.pruned_through.saturating_add(self.prune_step)).then_some(target)
    }

    /// Commits groups until every sender is gone.
    pub fn run(mut self, queue: mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut group = vec![first];
            while group.len() < self.max_group {
                match queue.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
        tracing::debug!(last_sequence = self.last, "tag store writer stopped");
    }

    fn commit(&mut self, group: Vec<Job>) {
        let time_ns = now_ns();
        let mut overlay = Overlay::new();
        let mut batch = WriteBatch::new();
        let mut seq = self.last;
        let mut events = Vec::new();
        let mut answers = Vec::with_capacity(group.len());
        for job in group {
            let result = match job.op {
                Op::Set {
                    name,
                    digest,
                    expect,
                } => self
                    .set(
                        name,
                        digest,
                        expect,
                        time_ns,
                        &mut overlay,
                        &mut batch,
                        &mut seq,
                        &mut events,
                    )
                    .map(Outcome::Set),
                Op::Delete { name, expect } => self
                    .delete(
                        name,
                        expect,
                        time_ns,
                        &mut overlay,
                        &mut batch,
                        &mut seq,
                        &mut events,
                    )
                    .map(Outcome::Delete),
            };
            answers.push((job.reply, result));
        }
        if !events.is_empty() {
            batch.put(META, record::LAST_SEQUENCE, seq.to_be_bytes());
            let prune = self.prune_target(seq);
            if let Some(through) = prune {
                record::prune(&mut batch, through);
            }
            // readers that need rows and sequence as one state wait while this group lands
            let view = self
                .published
                .view
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = self.kv.write(batch, Durability::Sync) {
                drop(view);
                tracing::error!(error = %e, moves = events.len(), "committing tag moves failed");
                // Every answer of this group was decided against state that is not stored.
                for (reply, _) in answers {
                    let _ = reply.send(Err(TagIndexError::Storage(e.clone())));
                }
                // If the write reached the log after all, never reuse its sequences.
                if let Ok(Some(v)) = self.kv.get(META, record::LAST_SEQUENCE)
                    && let Ok(stored) = record::decode_sequence(&v)
                {
                    self.last = self.last.max(stored);
                }
                return;
            }
            self.last = seq;
            self.published.committed.store(seq, Ordering::Release);
            if let Some(through) = prune {
                self.pruned_through = through;
                self.published
                    .pruned_through
                    .store(through, Ordering::Release);
            }
            drop(view);
            if let Some(through) = prune {
                tracing::debug!(pruned_through = through, "tag event log pruned");
            }
            tracing::debug!(
                moves = events.len(),
                last_sequence = seq,
                "tag moves committed"
            );
            for event in events {
                // no receivers is fine: nobody watches
                let _ = self.events.send(Arc::new(event));
            }
        }
        for (reply, result) in answers {
            // a caller that went away after asking still had its move committed
            let _ = reply.send(result);
        }
    }

    /// The tag's state as this group sees it.
    fn current(&self, name: &str, overlay: &Overlay) -> Result<Option<TagRecord>> {
        if let Some(state) = overlay.get(name) {
            return Ok(state.clone());
        }
        match self.kv.get(TAGS, name.as_bytes())? {
            Some(v) => Ok(Some(record::decode(TAGS, name.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn set(
        &self,
        name: String,
        digest: Digest,
        expect: Expect,
        time_ns: i64,
        overlay: &mut Overlay,
        batch: &mut WriteBatch,
        seq: &mut u64,
        events: &mut Vec<TagEvent>,
    ) -> Result<SetOutcome> {
        let current = self.current(&name, overlay)?;
        let actual = current.as_ref().map(|r| r.digest);
        let holds = match expect {
            Expect::Any => true,
            Expect::Absent => actual.is_none(),
            Expect::Digest(d) => actual == Some(d),
        };
        if !holds {
            return Err(TagIndexError::Conflict {
                name,
                expected: match expect {
                    Expect::Digest(d) => Some(d),
                    Expect::Any | Expect::Absent => None,
                },
                actual,
            });
        }
        if let Some(current) = current
            && current.digest == digest
        {
            // already there: not a move
            return Ok(SetOutcome {
                tag: current,
                previous: Some(digest),
            });
        }
        *seq += 1;
        let tag = TagRecord {
            name: name.clone(),
            digest,
            updated_at_ns: time_ns,
            sequence: *seq,
        };
        let event = TagEvent {
            sequence: *seq,
            name: name.clone(),
            old: actual,
            new: Some(digest),
            time_ns,
        };
        batch.put(TAGS, name.as_bytes(), record::encode(&tag));
        if let Some(old) = actual {
            batch.delete(BY_DIGEST, record::by_digest_key(&old, &name));
        }
        batch.put(BY_DIGEST, record::by_digest_key(&digest, &name), Vec::new());
        let encoded = record::encode(&event);
        batch.put(HISTORY, record::history_key(&name, *seq), encoded.clone());
        batch.put(EVENTS, record::event_key(*seq), encoded);
        overlay.insert(name, Some(tag.clone()));
        events.push(event);
        Ok(SetOutcome {
            tag,
            previous: actual,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn delete(
        &self,
        name: String,
        expect: Option<Digest>,
        time_ns: i64,
        overlay: &mut Overlay,
        batch: &mut WriteBatch,
        seq: &mut u64,
        events: &mut Vec<TagEvent>,
    ) -> Result<DeleteOutcome> {
        let Some(current) = self.current(&name, overlay)? else {
            return Err(TagIndexError::NotFound { name });
        };
        if let Some(expected) = expect
            && expected != current.digest
        {
            return Err(TagIndexError::Conflict {
                name,
                expected: Some(expected),
                actual: Some(current.digest),
            });
        }
        *seq += 1;
        let event = TagEvent {
            sequence: *seq,
            name: name.clone(),
            old: Some(current.digest),
            new: None,
            time_ns,
        };
        batch.delete(TAGS, name.as_bytes());
        batch.delete(BY_DIGEST, record::by_digest_key(&current.digest, &name));
        let encoded = record::encode(&event);
        batch.put(HISTORY, record::history_key(&name, *seq), encoded.clone());
        batch.put(EVENTS, record::event_key(*seq), encoded);
        overlay.insert(name.clone(), None);
        let last_tag_for_digest = !self.other_tags_point_at(&current.digest, &name, overlay)?;
        events.push(event);
        Ok(DeleteOutcome {
            previous: current.digest,
            last_tag_for_digest,
            sequence: *seq,
        })
    }

    /// True when a tag other than `name` points at `digest`, as this group sees it.
    fn other_tags_point_at(&self, digest: &Digest, name: &str, overlay: &Overlay) -> Result<bool> {
        let moved_here = overlay
            .iter()
            .any(|(n, r)| n != name && r.as_ref().is_some_and(|r| r.digest == *digest));
        if moved_here {
            return Ok(true);
        }
        const PAGE: usize = 64;
        let prefix = record::by_digest_prefix(digest);
        let mut start = prefix.clone();
        loop {
            let rows = self.kv.scan(BY_DIGEST, &prefix, &start, PAGE)?;
            for (k, _) in &rows {
                let other = std::str::from_utf8(&k[prefix.len()..]).unwrap_or_default();
                // tags this group touched were judged from the overlay above
                if other != name && !overlay.contains_key(other) {
                    return Ok(true);
                }
            }
            match rows.last() {
                Some((k, _)) if rows.len() == PAGE => {
                    start = k.clone();
                    start.push(0);
                }
                _ => return Ok(false),
            }
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
