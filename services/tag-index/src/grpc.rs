//! The thin gRPC adapter: parses and validates request fields, calls the store, maps results
//! to messages. Blocking store reads run on the blocking pool.

use std::pin::Pin;

use futures::Stream;
use strata_proto::tag_index::{
    DeleteTagRequest, DeleteTagResponse, GetTagHistoryRequest, GetTagHistoryResponse,
    ListTagsRequest, ListTagsResponse, ResolveTagRequest, SetTagRequest, SetTagResponse, Tag,
    TagEvent, WatchTagsRequest, tag_index_server::TagIndex,
};
use strata_server::client::Transport;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    TagIndexError,
    name::{self, TagName},
    store::{self, Expect, ListFilter, TagRecord, TagStore, WatchFrom, WatchItem},
    targets::Targets,
};

/// Events buffered per watch stream between the watcher and the connection.
const WATCH_STREAM_BUFFER: usize = 64;

/// The tag-index service.
#[derive(Debug, Clone)]
pub struct TagIndexService {
    store: TagStore,
    closing: watch::Sender<bool>,
    /// Where targets are checked; `None`: nowhere, so no tag moves.
    targets: Option<Targets>,
}

impl TagIndexService {
    /// The service over `store`. It moves no tags until it has a layer store
    /// ([`Self::with_layer_store`]) to check their targets in.
    pub fn new(store: TagStore) -> Self {
        Self {
            store,
            closing: watch::channel(false).0,
            targets: None,
        }
    }

    /// The same service, checking every tag's target in the layer store at `transport`
    /// (named `label` in messages) before it moves the tag.
    pub fn with_layer_store(self, label: String, transport: Transport) -> Self {
        Self {
            targets: Some(Targets::new(label, transport)),
            ..self
        }
    }

    /// The store behind the service.
    pub fn store(&self) -> &TagStore {
        &self.store
    }

    /// Ends every open watch stream (so a draining server need not wait for them); call
    /// when shutdown begins.
    pub fn close_watchers(&self) {
        self.closing.send_replace(true);
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TagIndexError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Status::from),
        Err(e) => {
            tracing::error!(error = %e, "blocking store call failed");
            Err(Status::internal(format!("store call failed: {e}")))
        }
    }
}

fn timestamp(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

fn tag_message(r: TagRecord) -> Tag {
    let short_name = name::familiar(&r.name);
    tag_message_named(r, short_name)
}

/// [`tag_message`] when the short name is already known (saves parsing the name again).
fn tag_message_named(r: TagRecord, short_name: String) -> Tag {
    Tag {
        short_name,
        name: r.name,
        digest: r.digest.to_string(),
        updated_at: Some(timestamp(r.updated_at_ns)),
        sequence: r.sequence,
    }
}

fn event_message(e: &store::TagEvent) -> TagEvent {
    TagEvent {
        sequence: e.sequence,
        name: e.name.clone(),
        old_digest: e.old.map(|d| d.to_string()).unwrap_or_default(),
        new_digest: e.new.map(|d| d.to_string()).unwrap_or_default(),
        time: Some(timestamp(e.time_ns)),
        lagged: false,
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl TagIndex for TagIndexService {
    async fn set_tag(&self, request: Request<SetTagRequest>) -> Reply<SetTagResponse> {
        let r = request.into_inner();
        let name = TagName::parse("name", &r.name)?;
        let digest = name::parse_digest("digest", &r.digest)?;
        let expect = match r.expected_digest.as_deref() {
            None => Expect::Any,
            Some("") => Expect::Absent,
            Some(d) => Expect::Digest(name::parse_digest("expected_digest", d)?),
        };
        // A tag already at the target (every fully cached rebuild sets one) is a GC root
        // the whole time: it needs no check, provided it is still there when the write
        // commits (a conditional set; if it moved meanwhile, the full check runs).
        let unchanged = match &expect {
            Expect::Any => true,
            Expect::Digest(d) => *d == digest,
            Expect::Absent => false,
        } && self
            .store
            .resolve(&name)
            .is_ok_and(|current| current.digest == digest);
        let already = if unchanged {
            match self.store.set(&name, digest, Expect::Digest(digest)).await {
                Ok(outcome) => Some(outcome),
                Err(TagIndexError::Conflict { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let outcome = match already {
            Some(outcome) => outcome,
            None => {
                let targets = self.targets.as_ref().ok_or(TagIndexError::NoLayerStore)?;
                // leased until the move is committed: GC cannot take it in between
                let hold = targets.hold(&name, &digest).await?;
                let outcome = self.store.set(&name, digest, expect).await;
                hold.release().await;
                outcome?
            }
        };
        tracing::info!(tag = %name, %digest, previous = ?outcome.previous, sequence = outcome.tag.sequence, "tag set");
        Ok(Response::new(SetTagResponse {
            tag: Some(tag_message(outcome.tag)),
            previous_digest: outcome.previous.map(|d| d.to_string()).unwrap_or_default(),
        }))
    }

    async fn resolve_tag(&self, request: Request<ResolveTagRequest>) -> Reply<Tag> {
        let name = TagName::parse("name", &request.get_ref().name)?;
        // A point get is served from the memtable or block cache in about a microsecond
        // (the bench's floor: ~1.3 M gets/s on 2 threads), less than handing it to the
        // blocking pool costs; scans (list, history, watch replay) do go there.
        let record = self.store.resolve(&name)?;
        Ok(Response::new(tag_message_named(record, name.familiar())))
    }

    async fn list_tags(&self, request: Request<ListTagsRequest>) -> Reply<ListTagsResponse> {
        let r = request.into_inner();
        let filter = ListFilter {
            prefix: r.prefix,
            repository: match r.repository.as_str() {
                "" => None,
                repo => Some(name::parse_repository("repository", repo)?),
            },
            digest: match r.digest.as_str() {
                "" => None,
                d => Some(name::parse_digest("digest", d)?),
            },
        };
        let size = store::page_size(r.page_size);
        let store = self.store.clone();
        let page = blocking(move || store.list(&filter, size, &r.page_token)).await?;
        Ok(Response::new(ListTagsResponse {
            tags: page.items.into_iter().map(tag_message).collect(),
            next_page_token: page.next_page_token,
            sequence: page.sequence,
        }))
    }

    async fn delete_tag(&self, request: Request<DeleteTagRequest>) -> Reply<DeleteTagResponse> {
        let r = request.into_inner();
        let name = TagName::parse("name", &r.name)?;
        let expect = match r.expected_digest.as_deref() {
            None => None,
            Some(d) => Some(name::parse_digest("expected_digest", d)?),
        };
        let outcome = self.store.delete(&name, expect).await?;
        tracing::info!(tag = %name, previous = %outcome.previous, last = outcome.last_tag_for_digest, sequence = outcome.sequence, "tag deleted");
        Ok(Response::new(DeleteTagResponse {
            previous_digest: outcome.previous.to_string(),
            last_tag_for_digest: outcome.last_tag_for_digest,
        }))
    }

    async fn get_tag_history(
        &self,
        request: Request<GetTagHistoryRequest>,
    ) -> Reply<GetTagHistoryResponse> {
        let r = request.into_inner();
        let name = TagName::parse("name", &r.name)?;
        let size = store::page_size(r.page_size);
        let store = self.store.clone();
        let page = blocking(move || store.history(&name, size, &r.page_token)).await?;
        Ok(Response::new(GetTagHistoryResponse {
            events: page.items.iter().map(event_message).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type WatchTagsStream = Pin<Box<dyn Stream<Item = Result<TagEvent, Status>> + Send>>;

    async fn watch_tags(&self, request: Request<WatchTagsRequest>) -> Reply<Self::WatchTagsStream> {
        let r = request.into_inner();
        let from = match (r.since_sequence, r.from_start) {
            (0, false) => WatchFrom::Now,
            (0, true) => WatchFrom::Oldest,
            (since, false) => WatchFrom::After(since),
            (since, true) => return Err(TagIndexError::WatchStartConflict { since }.into()),
        };
        let mut watcher = self.store.watch(r.prefix, from)?;
        let mut closing = self.closing.subscribe();
        let (tx, rx) = mpsc::channel(WATCH_STREAM_BUFFER);
        tokio::spawn(async move {
            let mut shutting_down = false;
            loop {
                let item = tokio::select! {
                    item = watcher.next() => item,
                    () = tx.closed() => break,
                    () = async { let _ = closing.wait_for(|closing| *closing).await; } => {
                        shutting_down = true;
                        break;
                    }
                };
                let message = match item {
                    None => break,
                    Some(Ok(WatchItem::Event(e))) => Ok(event_message(&e)),
                    Some(Ok(WatchItem::Lagged { resume_after })) => Ok(TagEvent {
                        sequence: resume_after,
                        lagged: true,
                        ..TagEvent::default()
                    }),
                    Some(Err(e)) => Err(Status::from(e)),
                };
                if tx.send(message).await.is_err() {
                    break;
                }
            }
            if shutting_down {
                let status = Status::unavailable(
                    "the tag index is shutting down; watch again with since_sequence",
                );
                let _ = tx.try_send(Err(status));
            }
            tracing::debug!(position = watcher.position(), "watch stream ended");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
