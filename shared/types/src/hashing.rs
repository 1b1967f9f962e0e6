//! A running sha256 computed beside the work that moves the bytes.
//!
//! sha256 is the one cost of moving a blob that cannot be cut: it runs at the floor strata is
//! measured against (`openssl dgst -sha256`). Done inline it adds to everything else a writer
//! or reader does (copying, checksumming, storing, sending), so [`RunningHash`] moves it to a
//! thread of its own on the first chunk pushed, taking shared chunks ([`Bytes`], no copy)
//! through a short bounded queue: handling chunk n overlaps with hashing chunk n-1, and a slow
//! hasher slows the producer instead of queueing memory. Callers push only whole chunks of
//! large blobs (the layer store: 1 MiB) and hash small tails inline, so small blobs never
//! start a thread.

use std::{
    sync::mpsc::{SyncSender, sync_channel},
    thread::JoinHandle,
};

use crate::Hasher;
use bytes::Bytes;

/// Chunks queued for the hashing thread: bounds the memory held beyond the writer's. One
/// (with the one being hashed) keeps the thread busy while the writer stores the next: a
/// deeper queue cost a large build ~1.5 MB of peak memory and a pull no less time.
const QUEUE: usize = 1;

/// A running sha256 whose chunks may be hashed on a thread of its own.
pub struct RunningHash {
    state: State,
}

enum State {
    /// Hashing on the caller's thread (nothing handed off yet).
    Inline(Hasher),
    /// Hashing on a thread of its own.
    Threaded {
        tx: SyncSender<Vec<Bytes>>,
        handle: JoinHandle<Hasher>,
    },
    /// Moved out by [`RunningHash::take`].
    Taken,
}

impl Default for RunningHash {
    fn default() -> Self {
        Self::new(Hasher::new())
    }
}

impl RunningHash {
    /// Continues from `hasher`.
    pub fn new(hasher: Hasher) -> Self {
        Self {
            state: State::Inline(hasher),
        }
    }

    /// Adds `chunk` to the hash, on the hashing thread (started on the first call).
    pub fn push(&mut self, chunk: Bytes) {
        self.push_parts(vec![chunk]);
    }

    /// [`RunningHash::push`] of several chunks in one hand-off (a network stream's small
    /// pieces, gathered without copying them).
    pub fn push_parts(&mut self, parts: Vec<Bytes>) {
        let state = std::mem::replace(&mut self.state, State::Taken);
        self.state = match state {
            State::Inline(hasher) => Self::spawn(hasher, parts),
            State::Taken => Self::spawn(Hasher::new(), parts),
            State::Threaded { tx, handle } => match tx.send(parts) {
                Ok(()) => State::Threaded { tx, handle },
                // the thread only stops when its queue closes, or by panicking
                Err(_) => std::panic::resume_unwind(
                    handle
                        .join()
                        .err()
                        .unwrap_or_else(|| Box::new("hashing thread stopped")),
                ),
            },
        };
    }

    fn spawn(mut hasher: Hasher, first: Vec<Bytes>) -> State {
        let (tx, rx) = sync_channel::<Vec<Bytes>>(QUEUE);
        // the hasher goes to the thread once it runs: were none to be had, it stays here
        let (start, started) = sync_channel::<Hasher>(1);
        let spawned = std::thread::Builder::new()
            .name("blob-sha256".into())
            .spawn(move || {
                let Ok(mut hasher) = started.recv() else {
                    return Hasher::new();
                };
                for parts in rx {
                    for chunk in parts {
                        hasher.update(&chunk);
                    }
                }
                hasher
            });
        match spawned {
            Ok(handle) => {
                let _ = start.send(hasher);
                let _ = tx.send(first);
                State::Threaded { tx, handle }
            }
            // no thread to be had: hash inline; the result is the same
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a hashing thread; hashing inline");
                for chunk in first {
                    hasher.update(&chunk);
                }
                State::Inline(hasher)
            }
        }
    }

    /// Waits until every pushed chunk is hashed and returns the hasher, leaving a fresh one.
    pub fn take(&mut self) -> Hasher {
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Inline(hasher) => hasher,
            State::Taken => Hasher::new(),
            State::Threaded { tx, handle } => {
                drop(tx);
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(parts: &[&[u8]]) -> String {
        let mut h = Hasher::new();
        for p in parts {
            h.update(p);
        }
        h.finish().to_string()
    }

    #[test]
    fn threaded_hash_equals_inline_hash() {
        let chunks: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000 + i as usize]).collect();
        let mut running = RunningHash::default();
        let (one, parts) = chunks.split_at(7);
        for c in one {
            running.push(Bytes::from(c.clone()));
        }
        // several at once: the same as one after another
        running.push_parts(parts.iter().map(|c| Bytes::from(c.clone())).collect());
        let mut hasher = running.take();
        hasher.update(b"tail");
        let mut parts: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        parts.push(b"tail");
        assert_eq!(hasher.finish().to_string(), digest_of(&parts));
    }

    #[test]
    fn continues_from_a_given_hasher_and_can_be_taken_twice() {
        let mut start = Hasher::new();
        start.update(b"abc");
        let mut running = RunningHash::new(start);
        running.push(Bytes::from_static(b"def"));
        assert_eq!(running.take().finish().to_string(), digest_of(&[b"abcdef"]));
        // taken: a fresh hash follows
        assert_eq!(running.take().finish().to_string(), digest_of(&[b""]));
        running.push(Bytes::from_static(b"x"));
        assert_eq!(running.take().finish().to_string(), digest_of(&[b"x"]));
    }
}
