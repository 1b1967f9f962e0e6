//! Blob uploads against a scripted registry that keeps upload sessions: the streamed fast
//! path, the chunked fallback when a registry refuses a PATCH without `Content-Range`,
//! recovery from a 416 by the registry's `Range`, and `DELETE <location>` of an upload that
//! is abandoned.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use strata_distribution::{BlobStream, CHUNK, RegistryError};
use strata_types::Digest;

use super::{
    client,
    mock::{MockServer, Reply, Request},
};

/// How the scripted registry misbehaves.
#[derive(Debug, Clone, Copy, Default)]
struct Rules {
    /// Answer a PATCH without `Content-Range` with 400 BLOB_UPLOAD_INVALID.
    refuse_streamed: bool,
    /// At the Nth PATCH (1-based), keep only the first `.1` bytes of it and answer 416.
    short_patch: Option<(usize, usize)>,
    /// Answer the closing PUT with 400 DIGEST_INVALID.
    fail_put: bool,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
    next: u32,
    patches: usize,
}

const UPLOADS: &str = "/v2/team/app/blobs/uploads/";

fn range(len: usize) -> String {
    format!("0-{}", len.saturating_sub(1))
}

fn upload_error(status: u16, code: &str) -> Reply {
    Reply::status(status).body(format!(r#"{{"errors":[{{"code":"{code}"}}]}}"#).into_bytes())
}

fn answer(rules: Rules, state: &Mutex<State>, req: &Request) -> Reply {
    let mut s = state.lock().unwrap();
    if req.method == "POST" && req.path == UPLOADS {
        s.next += 1;
        let id = format!("u{}", s.next);
        s.sessions.insert(id.clone(), Vec::new());
        // a relative Location with a query the client must keep
        return Reply::status(202)
            .header("Location", &format!("{UPLOADS}{id}?state=0"))
            .header("Range", "0-0");
    }
    let Some(rest) = req.path.strip_prefix(UPLOADS) else {
        return Reply::status(404);
    };
    let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !query.contains("state=") {
        return upload_error(400, "BLOB_UPLOAD_INVALID");
    }
    let id = id.to_string();
    let Some(held) = s.sessions.get(&id).map(Vec::len) else {
        return upload_error(404, "BLOB_UPLOAD_UNKNOWN");
    };
    let here = |len: usize| format!("{UPLOADS}{id}?state={len}");
    match req.method.as_str() {
        "PATCH" => {
            s.patches += 1;
            let Some(content_range) = req.header("content-range") else {
                if rules.refuse_streamed {
                    return upload_error(400, "BLOB_UPLOAD_INVALID");
                }
                s.sessions
                    .get_mut(&id)
                    .unwrap()
                    .extend_from_slice(&req.body);
                let len = held + req.body.len();
                return Reply::status(202)
                    .header("Location", &here(len))
                    .header("Range", &range(len));
            };
            let (start, end) = content_range.split_once('-').unwrap();
            let (start, end): (usize, usize) = (start.parse().unwrap(), end.parse().unwrap());
            assert_eq!(end + 1 - start, req.body.len(), "Content-Range vs body");
            assert_eq!(
                req.header("content-length"),
                Some(req.body.len().to_string().as_str())
            );
            if start != held {
                return Reply::status(416)
                    .header("Location", &here(held))
                    .header("Range", &range(held));
            }
            if let Some((n, keep)) = rules.short_patch
                && n == s.patches
            {
                s.sessions
                    .get_mut(&id)
                    .unwrap()
                    .extend_from_slice(&req.body[..keep]);
                let len = held + keep;
                return Reply::status(416)
                    .header("Location", &here(len))
                    .header("Range", &range(len));
            }
            s.sessions
                .get_mut(&id)
                .unwrap()
                .extend_from_slice(&req.body);
            let len = held + req.body.len();
            Reply::status(202)
                .header("Location", &here(len))
                .header("Range", &range(len))
        }
        "GET" => Reply::status(204)
            .header("Location", &here(held))
            .header("Range", &range(held)),
        "PUT" => {
            let digest = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("digest="))
                .unwrap()
                .to_string();
            let mut bytes = s.sessions.remove(&id).unwrap();
            bytes.extend_from_slice(&req.body);
            if rules.fail_put || Digest::of(&bytes).to_string() != digest {
                s.sessions.insert(id, bytes);
                return upload_error(400, "DIGEST_INVALID");
            }
            s.blobs.insert(digest.clone(), bytes);
            Reply::status(201).header("Docker-Content-Digest", &digest)
        }
        "DELETE" => {
            s.sessions.remove(&id);
            Reply::status(204)
        }
        _ => Reply::status(405),
    }
}

async fn registry(rules: Rules) -> (MockServer, Arc<Mutex<State>>) {
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    let server = MockServer::start(move |req| answer(rules, &shared, req)).await;
    (server, state)
}

/// `len` bytes of a pattern that differs per `seed`.
fn blob(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<_>>()
        .into()
}

/// A producer of `data` in 1 MiB pieces, counting how often it was asked to start.
fn producer(data: Bytes, starts: Arc<Mutex<usize>>) -> impl Fn() -> BlobStream {
    move || {
        *starts.lock().unwrap() += 1;
        let pieces: Vec<Result<Bytes, std::io::Error>> = (0..data.len())
            .step_by(1 << 20)
            .map(|i| Ok(data.slice(i..(i + (1 << 20)).min(data.len()))))
            .collect();
        let digest = Digest::of(&data);
        BlobStream {
            chunks: futures::stream::iter(pieces).boxed(),
            digest: async move { Ok(digest) }.boxed(),
        }
    }
}

fn patches(server: &MockServer) -> Vec<Request> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect()
}

#[tokio::test]
async fn a_registry_that_takes_streamed_patches_gets_one() {
    let (server, state) = registry(Rules::default()).await;
    let data = blob(CHUNK + 12_345, 1);
    let starts = Arc::new(Mutex::new(0));
    let digest = client(&server.addr, None)
        .upload_stream(producer(data.clone(), starts.clone()))
        .await
        .unwrap();
    assert_eq!(digest, Digest::of(&data));
    assert_eq!(state.lock().unwrap().blobs[&digest.to_string()], data);
    let p = patches(&server);
    assert_eq!(p.len(), 1, "one streamed PATCH");
    assert_eq!(p[0].header("content-range"), None);
    assert_eq!(*starts.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_refused_streamed_patch_is_sent_again_in_chunks_with_content_range() {
    let (server, state) = registry(Rules {
        refuse_streamed: true,
        ..Rules::default()
    })
    .await;
    let registry = client(&server.addr, None);
    let data = blob(CHUNK + 12_345, 2);
    let starts = Arc::new(Mutex::new(0));
    let digest = registry
        .upload_stream(producer(data.clone(), starts.clone()))
        .await
        .unwrap();
    assert_eq!(state.lock().unwrap().blobs[&digest.to_string()], data);
    assert_eq!(*starts.lock().unwrap(), 2, "produced again for the chunks");
    let requests = server.requests();
    let shown: Vec<String> = requests
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r.method,
                r.path,
                r.header("content-range").unwrap_or("-")
            )
        })
        .collect();
    let last = CHUNK + 12_345 - 1;
    assert_eq!(
        shown,
        [
            format!("POST {UPLOADS} -"),
            format!("PATCH {UPLOADS}u1?state=0 -"),
            format!("DELETE {UPLOADS}u1?state=0 -"),
            format!("POST {UPLOADS} -"),
            format!("PATCH {UPLOADS}u2?state=0 0-{}", CHUNK - 1),
            format!("PATCH {UPLOADS}u2?state={CHUNK} {CHUNK}-{last}"),
            format!("PUT {UPLOADS}u2?state={}&digest={digest} -", last + 1),
        ],
        "the refused session is cancelled, each chunk follows the last Location"
    );
    // the next blob goes in chunks at once
    let other = blob(1000, 3);
    registry
        .upload_stream(producer(other.clone(), starts.clone()))
        .await
        .unwrap();
    let p = patches(&server);
    assert_eq!(p.len(), 4, "{p:?}");
    assert_eq!(p[3].header("content-range"), Some("0-999"));
    assert_eq!(state.lock().unwrap().sessions.len(), 0, "no session left");
}

#[tokio::test]
async fn a_416_resumes_from_the_range_the_registry_holds() {
    // the second PATCH (bytes 1000-1999) is kept only up to 1300, then 416
    let (server, state) = registry(Rules {
        short_patch: Some((2, 300)),
        ..Rules::default()
    })
    .await;
    let data = blob(3500, 4);
    let digest = Digest::of(&data);
    client(&server.addr, None)
        .upload_chunked(&digest, data.clone(), 1000)
        .await
        .unwrap();
    assert_eq!(state.lock().unwrap().blobs[&digest.to_string()], data);
    let requests = server.requests();
    let shown: Vec<String> = requests
        .iter()
        .filter(|r| r.method != "POST" && r.method != "PUT")
        .map(|r| format!("{} {}", r.method, r.header("content-range").unwrap_or("-")))
        .collect();
    assert_eq!(
        shown,
        [
            "PATCH 0-999",
            "PATCH 1000-1999",
            "GET -",
            "PATCH 1300-1999",
            "PATCH 2000-2999",
            "PATCH 3000-3499"
        ]
    );

    // a 416 on the very first PATCH of a stream (the registry holds nothing: "0-0")
    let (server, state) = registry(Rules {
        refuse_streamed: true,
        short_patch: Some((2, 0)),
        ..Rules::default()
    })
    .await;
    let data = blob(5000, 5);
    let digest = client(&server.addr, None)
        .upload_stream(producer(data.clone(), Arc::default()))
        .await
        .unwrap();
    assert_eq!(state.lock().unwrap().blobs[&digest.to_string()], data);
}

#[tokio::test]
async fn an_abandoned_upload_is_cancelled_and_its_error_reported() {
    // the closing PUT fails: DELETE at the last Location, the PUT's error is the answer
    let (server, state) = registry(Rules {
        fail_put: true,
        ..Rules::default()
    })
    .await;
    let data = blob(2000, 6);
    let err = client(&server.addr, None)
        .upload_stream(producer(data.clone(), Arc::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 400, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("DIGEST_INVALID"), "{err}");
    let last = server.requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("DELETE", format!("{UPLOADS}u1?state=2000").as_str())
    );
    assert!(state.lock().unwrap().sessions.is_empty());

    // the producer fails mid-stream: the session is cancelled too
    let (server, state) = registry(Rules::default()).await;
    let failing = || BlobStream {
        chunks: futures::stream::iter(vec![
            Ok(Bytes::from_static(b"some bytes")),
            Err(std::io::Error::other("the layer could not be read")),
        ])
        .boxed(),
        digest: async {
            Err(RegistryError::Protocol {
                context: "compressing".into(),
                reason: "failed".into(),
            })
        }
        .boxed(),
    };
    client(&server.addr, None)
        .upload_stream(failing)
        .await
        .unwrap_err();
    let methods: Vec<String> = server.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(
        methods.last().map(String::as_str),
        Some("DELETE"),
        "{methods:?}"
    );
    assert!(state.lock().unwrap().sessions.is_empty());

    // the in-memory uploads cancel too
    let (server, state) = registry(Rules {
        fail_put: true,
        ..Rules::default()
    })
    .await;
    let c = client(&server.addr, None);
    let digest = Digest::of(&data);
    c.upload_bytes(&digest, data.clone()).await.unwrap_err();
    c.upload_chunked(&digest, data.clone(), 700)
        .await
        .unwrap_err();
    let deletes = server
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 2);
    assert!(state.lock().unwrap().sessions.is_empty());
}
