//! Watchers: the change log replayed from a position, then live changes, with no gap and no
//! silent skip.
//!
//! A watcher reads the stored log from its position until the log is exhausted, subscribes
//! to the live broadcast, reads the log once more (to cover changes committed between the
//! two), and then follows the broadcast. Events arrive in sequence order; anything at or
//! below the position is a duplicate and dropped, and a jump in the sequence sends it back to
//! the log. When the broadcast overflows because the consumer is slow, the watcher yields
//! [`WatchItem::Lagged`] with the position to resume from and ends.
//!
//! The log is gap-free, so a page that does not start right after the position means the
//! events in between were pruned: the watcher fails with [`TagIndexError::EventsPruned`]
//! rather than skip them. Only a watcher started at the oldest retained event takes the
//! log's first event as its start, wherever pruning has moved it meanwhile.

use std::{collections::VecDeque, sync::Arc};

use tokio::sync::broadcast::{self, error::RecvError};

use super::{TagEvent, TagStore};
use crate::TagIndexError;

/// Events read from the log per round trip.
const REPLAY_PAGE: usize = 256;

/// What a watcher yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// A committed change under the watched prefix.
    Event(Arc<TagEvent>),
    /// The watcher fell behind and changes after `resume_after` were dropped from its live
    /// stream; watch again with `since = resume_after` to catch up. The watcher has ended.
    Lagged {
        /// The last sequence this watcher delivered or passed over.
        resume_after: u64,
    },
}

/// A stream of changes; see the module docs.
#[derive(Debug)]
pub struct Watcher {
    store: TagStore,
    prefix: String,
    /// The last sequence delivered or passed over (filtered out).
    position: u64,
    backlog: VecDeque<Arc<TagEvent>>,
    live: Option<broadcast::Receiver<Arc<TagEvent>>>,
    replaying: bool,
    ended: bool,
    /// Until the first event is read from the log: start at the log's first event, wherever
    /// it is (a watch from the oldest retained event).
    from_oldest: bool,
}

impl Watcher {
    pub(super) fn new(store: TagStore, prefix: String, position: u64, from_oldest: bool) -> Self {
        Self {
            store,
            prefix,
            position,
            backlog: VecDeque::new(),
            live: None,
            replaying: true,
            ended: false,
            from_oldest,
        }
    }

    /// The last sequence delivered or passed over.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads the stored log up to its end and subscribes to live changes, keeping what it
    /// read for [`Watcher::next`]. `next` does this by itself; call it to make sure changes
    /// from now on reach this watcher through the live stream.
    pub async fn catch_up(&mut self) -> Result<(), TagIndexError> {
        while self.replaying {
            self.replay_page().await?;
        }
        Ok(())
    }

    /// One step of the replay: a page of the log into the backlog, or, at the log's end, the
    /// live subscription (then one more read covers what was committed in between).
    async fn replay_page(&mut self) -> Result<(), TagIndexError> {
        let store = self.store.clone();
        let after = self.backlog.back().map_or(self.position, |e| e.sequence);
        let page = tokio::task::spawn_blocking(move || store.events_after(after, REPLAY_PAGE))
            .await
            .unwrap_or_else(|e| {
                Err(strata_kv::KvError::Backend(format!("log reader failed: {e}")).into())
            })?;
        if let Some(first) = page.first() {
            if first.sequence != after + 1 {
                if !self.from_oldest {
                    return Err(TagIndexError::EventsPruned {
                        after,
                        oldest: first.sequence,
                    });
                }
                // nothing was read yet: begin where the log begins now
                self.position = first.sequence - 1;
            }
            self.from_oldest = false;
            self.backlog.extend(page.into_iter().map(Arc::new));
        } else if self.live.is_none() {
            // subscribe, then read once more: nothing committed in between is lost
            self.live = Some(self.store.subscribe());
        } else {
            self.replaying = false;
        }
        Ok(())
    }

    /// The next change; `None` once the watcher ended (after [`WatchItem::Lagged`], or when the
    /// store shut down).
    pub async fn next(&mut self) -> Option<Result<WatchItem, TagIndexError>> {
        loop {
            if self.ended {
                return None;
            }
            while let Some(event) = self.backlog.pop_front() {
                if event.sequence <= self.position {
                    continue;
                }
                self.position = event.sequence;
                if event.name.starts_with(&self.prefix) {
                    return Some(Ok(WatchItem::Event(event)));
                }
            }
            if self.replaying {
                if let Err(e) = self.replay_page().await {
                    self.ended = true;
                    return Some(Err(e));
                }
                continue;
            }
            let Some(live) = self.live.as_mut() else {
                self.replaying = true;
                continue;
            };
            debug_assert!(self.backlog.is_empty());
            match live.recv().await {
                Ok(event) if event.sequence <= self.position => {}
                Ok(event) if event.sequence == self.position + 1 => self.backlog.push_back(event),
                Ok(_) => {
                    // a gap (cannot happen while subscribed, but the log has everything)
                    self.live = None;
                    self.replaying = true;
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(position = self.position, missed, prefix = %self.prefix, "tag watcher lagged");
                    self.ended = true;
                    return Some(Ok(WatchItem::Lagged {
                        resume_after: self.position,
                    }));
                }
                Err(RecvError::Closed) => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }
}
