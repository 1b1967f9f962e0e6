//! The bytes of a client-streaming call, handed over in memory when the server runs in the
//! caller's own process.
//!
//! Over [`crate::client::in_process`] a call is still encoded as gRPC: a blob written to
//! the layer store is copied into protobuf messages by the client, into the server's decode
//! buffer (once more when that buffer grows) and out of it. For the blobs of a pull, a load
//! or a build that is ~6% of the work. A [`LocalFeed`] skips it: the client attaches one to
//! its request as an extension (extensions never cross a network) and writes the pieces
//! into the channel behind it; a server in the same process takes the receiver before it
//! reads the first message and reads the pieces from there. When nothing takes it (over a
//! network, or a handler that does not look), the client's message stream takes it and
//! sends every piece as a message. The receiver goes to whoever asks first, so either way
//! every piece arrives exactly once and in order.
//!
//! How a feed ends mirrors how a stream ends: [`LocalFeed::finish`] before the last sender
//! is dropped is a clean end (the server commits); a channel that closes without it was
//! abandoned, and the message stream stays open so the call ends by cancellation, never as
//! a clean end.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

/// The pieces of a client-streaming call, for a server in this process to take.
pub struct LocalFeed<T> {
    slot: Arc<Mutex<Option<mpsc::Receiver<T>>>>,
    finished: Arc<AtomicBool>,
}

impl<T> Clone for LocalFeed<T> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
            finished: self.finished.clone(),
        }
    }
}

impl<T> std::fmt::Debug for LocalFeed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFeed")
            .field("finished", &self.finished.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> LocalFeed<T> {
    /// A feed of what is sent into `rx`'s channel.
    pub fn new(rx: mpsc::Receiver<T>) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Some(rx))),
            finished: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The receiver, to whoever asks first; `None` ever after.
    pub fn take(&self) -> Option<mpsc::Receiver<T>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Marks the feed complete; call before the last sender is dropped (or at once, when the
    /// channel closing is itself the end and abandoning means dropping the call).
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    /// Whether [`LocalFeed::finish`] was called.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// On the server: the feed of `request` and its receiver, when the client is in this
    /// process and the pieces have not gone into messages. Call before reading the first
    /// message.
    pub fn take_from<M>(request: &tonic::Request<M>) -> Option<(Self, mpsc::Receiver<T>)> {
        let feed = request.extensions().get::<Self>()?.clone();
        let rx = feed.take()?;
        Some((feed, rx))
    }

    /// The call's request: `first`, then, unless a server in this process takes the feed,
    /// one message per piece (`wrap`), ending once the channel closes after
    /// [`LocalFeed::finish`]. The feed rides along as an extension.
    pub fn request<M: Send + 'static>(
        &self,
        first: M,
        wrap: fn(T) -> M,
    ) -> tonic::Request<impl Stream<Item = M> + Send + 'static + use<T, M>> {
        enum State<T> {
            Untaken(LocalFeed<T>),
            Reading(LocalFeed<T>, mpsc::Receiver<T>),
        }
        let rest = futures::stream::unfold(State::Untaken(self.clone()), move |state| async move {
            let (feed, mut rx) = match state {
                State::Reading(feed, rx) => (feed, rx),
                State::Untaken(feed) => match feed.take() {
                    Some(rx) => (feed, rx),
                    // a server in this process reads the pieces itself and answers; this
                    // stream is dropped with the call
                    None => return futures::future::pending().await,
                },
            };
            match rx.recv().await {
                Some(piece) => Some((wrap(piece), State::Reading(feed, rx))),
                None if feed.is_finished() => None,
                // abandoned: no clean end
                None => futures::future::pending().await,
            }
        });
        let mut request =
            tonic::Request::new(futures::stream::once(async move { first }).chain(rest));
        request.extensions_mut().insert(self.clone());
        request
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn feed_of(pieces: &[u32], finish: bool) -> LocalFeed<u32> {
        let (tx, rx) = mpsc::channel(pieces.len().max(1));
        for p in pieces {
            tx.try_send(*p).unwrap();
        }
        let feed = LocalFeed::new(rx);
        if finish {
            feed.finish();
        }
        feed
    }

    #[tokio::test]
    async fn untaken_the_pieces_become_messages_after_the_first() {
        let feed = feed_of(&[1, 2, 3], true);
        let request = feed.request(0u64, u64::from);
        assert!(request.extensions().get::<LocalFeed<u32>>().is_some());
        let messages: Vec<u64> = request.into_inner().collect().await;
        assert_eq!(messages, [0, 1, 2, 3]);
        assert!(feed.take().is_none(), "the stream took the receiver");
    }

    #[tokio::test]
    async fn taken_by_the_server_the_stream_carries_only_the_first_message() {
        let feed = feed_of(&[1, 2], true);
        let request = feed.request(0u64, u64::from);
        let (server_feed, mut rx) = LocalFeed::<u32>::take_from(&request).unwrap();
        assert!(
            LocalFeed::<u32>::take_from(&request).is_none(),
            "taken once"
        );
        let mut stream = Box::pin(request.into_inner());
        assert_eq!(stream.next().await, Some(0));
        let more = stream.next().now_or_never();
        assert!(more.is_none(), "nothing more on the stream: {more:?}");
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, None);
        assert!(server_feed.is_finished());
    }

    #[tokio::test]
    async fn an_abandoned_feed_never_ends_its_stream_cleanly() {
        let feed = feed_of(&[7], false);
        let mut stream = Box::pin(feed.request(0u64, u64::from).into_inner());
        assert_eq!(stream.next().await, Some(0));
        assert_eq!(stream.next().await, Some(7));
        // every sender is gone: the stream stays pending instead of ending
        let end = stream.next().now_or_never();
        assert!(end.is_none(), "no clean end without finish: {end:?}");
    }
}
