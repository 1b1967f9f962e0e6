//! The executor's peers (parser, layer store, tag index) and the byte pipes between their
//! gRPC streams and the synchronous tar code running on blocking threads.

use std::io::{self, Read, Write};

use bytes::Bytes;
use strata_proto::{
    layer_store::{
        self, WriteBlobRequest, WriteStart, layer_store_client::LayerStoreClient,
        write_blob_request::Part,
    },
    parser::parser_client::ParserClient,
    tag_index::tag_index_client::TagIndexClient,
};
use strata_server::{
    client::{Peer, Transport},
    local_feed::LocalFeed,
};
use tokio::sync::mpsc;

use crate::error::ExecutorError;

/// Size of the messages of blob writes (the layer store gathers them into its own 1 MiB
/// chunks). A quarter of a chunk: a layer's upload holds a few of these in flight, and at
/// 1 MiB they made ~4 MB of a large COPY's peak memory.
pub const CHUNK: usize = 256 << 10;

/// Clients of the three peer services.
#[derive(Debug, Clone)]
pub struct Peers {
    /// The parser.
    pub parser: ParserClient<Transport>,
    /// The layer store.
    pub store: LayerStoreClient<Transport>,
    /// The tag index.
    pub tags: TagIndexClient<Transport>,
}

impl Peers {
    /// Clients of the three (remote ones connect on first use).
    pub fn connect(parser: &Peer, store: &Peer, tags: &Peer) -> Result<Self, ExecutorError> {
        let ch = |p: &Peer| {
            p.transport()
                .map_err(|e| ExecutorError::InvalidArgument(format!("invalid address {p}: {e}")))
        };
        let limit = 64 << 20;
        Ok(Self {
            parser: ParserClient::new(ch(parser)?)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            store: LayerStoreClient::new(ch(store)?)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            tags: TagIndexClient::new(ch(tags)?),
        })
    }

    /// Writes a small blob held in memory whose digest the caller computed (the store
    /// verifies it).
    pub async fn put_blob(
        &self,
        bytes: Vec<u8>,
        digest: &strata_types::Digest,
        media_type: &str,
    ) -> Result<(), ExecutorError> {
        let (tx, rx) = mpsc::channel(4);
        let store = self.store.clone();
        let media_type = media_type.to_owned();
        let expected = digest.to_string();
        let size = bytes.len() as i64;
        tokio::spawn(async move {
            for chunk in bytes.chunks(CHUNK) {
                if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                    break;
                }
            }
        });
        write_blob(store, rx, &media_type, Some((expected, size))).await?;
        Ok(())
    }

    /// Reads a whole small blob (configs, manifests).
    pub async fn get_blob(&self, digest: &str) -> Result<Vec<u8>, ExecutorError> {
        let mut stream = self
            .store
            .clone()
            .read_blob(layer_store::ReadBlobRequest {
                digest: digest.to_owned(),
                offset: 0,
                length: 0,
            })
            .await
            .map_err(ExecutorError::peer("layer store"))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(ExecutorError::peer("layer store"))?
        {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// Streams a blob into `tx` chunk by chunk.
    pub async fn stream_blob(
        &self,
        digest: &str,
        tx: mpsc::Sender<Bytes>,
    ) -> Result<(), ExecutorError> {
        let mut stream = self
            .store
            .clone()
            .read_blob(layer_store::ReadBlobRequest {
                digest: digest.to_owned(),
                offset: 0,
                length: 0,
            })
            .await
            .map_err(ExecutorError::peer("layer store"))?
            .into_inner();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(ExecutorError::peer("layer store"))?
        {
            if tx.send(chunk.data).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// True when the store holds `digest`.
    pub async fn has_blob(&self, digest: &str) -> Result<bool, ExecutorError> {
        match self
            .store
            .clone()
            .stat_blob(layer_store::StatBlobRequest {
                digest: digest.to_owned(),
                ..Default::default()
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(ExecutorError::peer("layer store")(s)),
        }
    }
}

/// Streams the chunks of `rx` to the store as one blob; returns (digest, size).
pub async fn write_blob(
    mut store: LayerStoreClient<Transport>,
    rx: mpsc::Receiver<Bytes>,
    media_type: &str,
    expected: Option<(String, i64)>,
) -> Result<(String, i64), ExecutorError> {
    let (expected_digest, expected_size) = expected.unwrap_or((String::new(), -1));
    let start = WriteBlobRequest {
        part: Some(Part::Start(WriteStart {
            expected_digest,
            expected_size,
            media_type: media_type.to_owned(),
            ..Default::default()
        })),
    };
    // To a layer store in this process the chunks go in memory, otherwise as messages. The
    // channel closing is the end: a write is abandoned by dropping this future, which
    // cancels the call.
    let feed = LocalFeed::new(rx);
    feed.finish();
    let request = feed.request(start, |b| WriteBlobRequest {
        part: Some(Part::Data(b)),
    });
    let response = store
        .write_blob(request)
        .await
        .map_err(ExecutorError::peer("layer store"))?
        .into_inner();
    Ok((response.digest, response.size))
}

/// A `Write` that forwards 1 MiB chunks into a channel (blocking side of a blob write).
#[derive(Debug)]
pub struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    /// Writes into `tx`.
    pub fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the blob upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// A `Read` over chunks arriving on a channel (blocking side of a blob read).
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    /// Reads from `rx`.
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
