//! The gRPC API in-process over RocksDB: validation, status codes, concurrent CAS, watch.

use std::{sync::Arc, time::Duration};

use strata_proto::tag_index::{
    DeleteTagRequest, GetTagHistoryRequest, ListTagsRequest, ResolveTagRequest, SetTagRequest,
    WatchTagsRequest, tag_index_client::TagIndexClient,
};
use strata_server::ServeOptions;
use strata_tag_index::Config;
use strata_test_support::{FakeLayerStore, InProcess};
use tonic::{Code, transport::Channel};

use crate::fixture::digest;

struct Server {
    service: InProcess,
    /// The stand-in layer store targets are checked in: every digest is an image unless a
    /// test says otherwise.
    layer_store: FakeLayerStore,
    _layer_store: InProcess,
    _root: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        Self::start_with(strata_tag_index::store::DEFAULT_EVENT_RETENTION).await
    }

    async fn start_with(event_retention: u64) -> Self {
        let root = tempfile::tempdir().unwrap();
        let layer_store = FakeLayerStore::holding_every_image();
        let layer_store_server = layer_store.spawn().await;
        let config = Config {
            root: root.path().to_path_buf(),
            event_retention,
            layer_store: Some(layer_store_server.addr.clone().into()),
        };
        let service = InProcess::spawn(move |listener, shutdown| async move {
            strata_tag_index::run(config, listener, &ServeOptions::default(), shutdown).await
        })
        .await;
        Self {
            service,
            layer_store,
            _layer_store: layer_store_server,
            _root: root,
        }
    }

    fn client(&self) -> TagIndexClient<Channel> {
        TagIndexClient::new(self.service.channel())
    }
}

fn set(name: &str, digest: &str, expected: Option<&str>) -> SetTagRequest {
    SetTagRequest {
        name: name.into(),
        digest: digest.into(),
        expected_digest: expected.map(str::to_string),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_references_are_invalid_arguments_naming_the_part() {
    let server = Server::start().await;
    let mut c = server.client();
    let d = digest(1).to_string();
    let long_tag = format!("app:{}", "a".repeat(129));
    let short_digest = "app@sha256:abcd".to_string();
    let cases: &[(&str, &str)] = &[
        ("Busybox", "repository name must be lowercase"),
        ("docker.io/Library/app", "repository name must be lowercase"),
        (&long_tag, "invalid tag"),
        ("app:bad!tag", "invalid tag"),
        ("app:", "invalid tag \"\""),
        ("", "empty name"),
        (":v1", "empty name"),
        ("a//b", "path component \"\""),
        (&short_digest, "must be 64 characters"),
    ];
    for (name, needle) in cases {
        let status = c.set_tag(set(name, &d, None)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}: {status:?}");
        assert!(
            status.message().starts_with("invalid name:"),
            "{name:?}: {}",
            status.message()
        );
        assert!(
            status.message().contains(needle),
            "{name:?}: {}",
            status.message()
        );
        let status = c
            .resolve_tag(ResolveTagRequest {
                name: name.to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "resolve {name:?}: {status:?}"
        );
    }
    // a tag with a digest is not a tag
    let with_digest = format!("app@{d}");
    let status = c.set_tag(set(&with_digest, &d, None)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("a tag cannot contain a digest"),
        "{}",
        status.message()
    );
    // digests name their field
    for (digest, expected, field) in [
        ("sha256:abc", None, "digest: invalid digest"),
        ("md5:abc", None, "digest: invalid digest"),
        (
            d.as_str(),
            Some("sha256:123"),
            "expected_digest: invalid digest",
        ),
    ] {
        let status = c.set_tag(set("app", digest, expected)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    let status = c
        .list_tags(ListTagsRequest {
            repository: "App".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("invalid repository:"),
        "{}",
        status.message()
    );
    let status = c
        .list_tags(ListTagsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tags_are_not_found_and_conflicts_are_failed_precondition() {
    let server = Server::start().await;
    let mut c = server.client();
    let status = c
        .resolve_tag(ResolveTagRequest {
            name: "ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("docker.io/library/ghost:latest"),
        "{}",
        status.message()
    );
    let status = c
        .delete_tag(DeleteTagRequest {
            name: "ghost".into(),
            expected_digest: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let (d1, d2, d3) = (
        digest(1).to_string(),
        digest(2).to_string(),
        digest(3).to_string(),
    );
    let created = c
        .set_tag(set("busybox", &d1, Some("")))
        .await
        .unwrap()
        .into_inner();
    let tag = created.tag.unwrap();
    assert_eq!(tag.name, "docker.io/library/busybox:latest");
    assert_eq!(tag.short_name, "busybox:latest");
    assert_eq!(created.previous_digest, "");
    assert!(tag.updated_at.is_some() && tag.sequence == 1);

    let status = c
        .set_tag(set("busybox:latest", &d3, Some(&d2)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains(&d1) && status.message().contains(&d2),
        "{}",
        status.message()
    );

    let resolved = c
        .resolve_tag(ResolveTagRequest {
            name: "docker.io/library/busybox".into(),
        })
        .await
        .unwrap();
    assert_eq!(resolved.get_ref().digest, d1);

    let deleted = c
        .delete_tag(DeleteTagRequest {
            name: "busybox".into(),
            expected_digest: Some(d1.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.previous_digest, d1);
    assert!(deleted.last_tag_for_digest);
    server.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_writers_over_grpc_one_wins_each_round_and_history_agrees() {
    let server = Server::start().await;
    let c = server.client();
    for writers in [2u64, 5, 16] {
        let name = format!("race:w{writers}");
        let mut current = digest(0).to_string();
        c.clone()
            .set_tag(set(&name, &current, Some("")))
            .await
            .unwrap();
        let mut acknowledged = Vec::new();
        for round in 1..=15u64 {
            let barrier = Arc::new(tokio::sync::Barrier::new(writers as usize));
            let tasks: Vec<_> = (0..writers)
                .map(|w| {
                    let (mut c, barrier, name, expected) =
                        (c.clone(), barrier.clone(), name.clone(), current.clone());
                    let target = digest(writers * 100_000 + round * 100 + w).to_string();
                    tokio::spawn(async move {
                        barrier.wait().await;
                        c.set_tag(set(&name, &target, Some(&expected)))
                            .await
                            .map(|_| target)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for t in tasks {
                match t.await.unwrap() {
                    Ok(target) => winners.push(target),
                    Err(s) => assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}"),
                }
            }
            assert_eq!(
                winners.len(),
                1,
                "{writers} writers, round {round}: {winners:?}"
            );
            let winner = winners.pop().unwrap();
            acknowledged.push((current.clone(), winner.clone()));
            current = winner;
        }
        let history = c
            .clone()
            .get_tag_history(GetTagHistoryRequest {
                name: name.clone(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        let moves: Vec<_> = history
            .iter()
            .skip(1)
            .map(|e| (e.old_digest.clone(), e.new_digest.clone()))
            .collect();
        assert_eq!(
            moves, acknowledged,
            "{writers} writers: history shows every acknowledged move in order"
        );
        assert!(history.windows(2).all(|w| w[0].sequence < w[1].sequence));
    }
    server.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_over_grpc_pages_by_repository_and_digest() {
    let server = Server::start().await;
    let mut c = server.client();
    for i in 0..12u64 {
        c.set_tag(set(
            &format!("localhost:5000/app:v{i:02}"),
            &digest(i % 2).to_string(),
            None,
        ))
        .await
        .unwrap();
    }
    c.set_tag(set("other", &digest(0).to_string(), None))
        .await
        .unwrap();
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_tags(ListTagsRequest {
                repository: "localhost:5000/app".into(),
                digest: digest(0).to_string(),
                page_size: 4,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        names.extend(page.tags.into_iter().map(|t| t.short_name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<_> = (0..12)
        .step_by(2)
        .map(|i| format!("localhost:5000/app:v{i:02}"))
        .collect();
    assert_eq!(names, expected);
    server.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_reconnects_with_its_last_sequence_misses_nothing() {
    let server = Server::start().await;
    let c = server.client();
    // one change so the first watch has a position to start from
    c.clone()
        .set_tag(set("seed", &digest(0).to_string(), None))
        .await
        .unwrap();
    let mut stream = c
        .clone()
        .watch_tags(WatchTagsRequest {
            prefix: "docker.io/library/storm".into(),
            since_sequence: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut writer = c.clone();
    let storm = tokio::spawn(async move {
        let mut expected = Vec::new();
        for i in 0..200u64 {
            let name = if i % 4 == 0 {
                format!("elsewhere:{i}")
            } else {
                format!("storm:{}", i % 5)
            };
            let r = writer
                .set_tag(set(&name, &digest(i + 1).to_string(), None))
                .await
                .unwrap()
                .into_inner();
            let tag = r.tag.unwrap();
            if name.starts_with("storm") {
                expected.push(tag.sequence);
            }
        }
        expected
    });
    let mut seen = Vec::new();
    let mut last = 1;
    let mut reconnects = 0;
    while seen.len() < 150 {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("an event within the bound")
            .unwrap()
            .expect("stream open");
        assert!(!event.lagged);
        assert!(
            event.name.starts_with("docker.io/library/storm:"),
            "{}",
            event.name
        );
        seen.push(event.sequence);
        last = event.sequence;
        if seen.len() % 20 == 0 {
            // disconnect and come back with the last sequence seen
            drop(stream);
            reconnects += 1;
            stream = c
                .clone()
                .watch_tags(WatchTagsRequest {
                    prefix: "docker.io/library/storm".into(),
                    since_sequence: last,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
        }
    }
    let expected = storm.await.unwrap();
    assert_eq!(
        seen, expected,
        "every matching change exactly once, in order"
    );
    assert!(reconnects >= 7);
    let _ = last;
    server.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_watch_streams_at_once() {
    let server = Server::start().await;
    let mut stream = server
        .client()
        .watch_tags(WatchTagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let started = std::time::Instant::now();
    server.service.shutdown().await.unwrap();
    // default drain limit is 10 s: an open watch must not hold the drain that long
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let end = stream.message().await;
    assert!(
        matches!(&end, Err(s) if s.code() == Code::Unavailable) || matches!(end, Ok(None)),
        "{end:?}"
    );
}

/// The next event of a watch stream, failing after a generous bound instead of hanging.
async fn next_message(
    stream: &mut tonic::Streaming<strata_proto::tag_index::TagEvent>,
) -> strata_proto::tag_index::TagEvent {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("an event within the bound")
        .unwrap()
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_then_watch_from_the_listing_sequence_misses_nothing() {
    let server = Server::start().await;
    let c = server.client();
    for i in 0..5u64 {
        c.clone()
            .set_tag(set(&format!("app:v{i}"), &digest(i).to_string(), None))
            .await
            .unwrap();
    }
    // changes keep coming while the client lists and then starts to watch
    let mut writer = c.clone();
    let storm = tokio::spawn(async move {
        let mut sequences = Vec::new();
        for i in 0..100u64 {
            let r = writer
                .set_tag(set(
                    &format!("app:v{}", i % 7),
                    &digest(100 + i).to_string(),
                    None,
                ))
                .await
                .unwrap()
                .into_inner();
            sequences.push(r.tag.unwrap().sequence);
        }
        sequences
    });
    let listing = c
        .clone()
        .list_tags(ListTagsRequest {
            prefix: "docker.io/library/app:".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listing.sequence >= 5, "{}", listing.sequence);
    // no listed tag is newer than the listing's sequence
    assert!(listing.tags.iter().all(|t| t.sequence <= listing.sequence));
    let mut state: std::collections::BTreeMap<String, String> = listing
        .tags
        .into_iter()
        .map(|t| (t.name, t.digest))
        .collect();
    let mut stream = c
        .clone()
        .watch_tags(WatchTagsRequest {
            prefix: "docker.io/library/app:".into(),
            since_sequence: listing.sequence,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sequences = storm.await.unwrap();
    let last = *sequences.last().unwrap();
    let mut expected = listing.sequence + 1;
    while expected <= last {
        let e = next_message(&mut stream).await;
        assert_eq!(
            e.sequence, expected,
            "every change after the listing, in order"
        );
        state.insert(e.name, e.new_digest);
        expected += 1;
    }
    // the listing plus the watched changes is the final state
    let now: std::collections::BTreeMap<String, String> = c
        .clone()
        .list_tags(ListTagsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tags
        .into_iter()
        .map(|t| (t.name, t.digest))
        .collect();
    assert_eq!(state, now);
    server.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_start_replays_the_log_and_excludes_since() {
    let server = Server::start().await;
    let c = server.client();
    for i in 0..3u64 {
        c.clone()
            .set_tag(set(&format!("app:v{i}"), &digest(i).to_string(), None))
            .await
            .unwrap();
    }
    let mut stream = c
        .clone()
        .watch_tags(WatchTagsRequest {
            from_start: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for seq in 1..=3 {
        assert_eq!(next_message(&mut stream).await.sequence, seq);
    }
    c.clone()
        .set_tag(set("app:live", &digest(9).to_string(), None))
        .await
        .unwrap();
    let live = next_message(&mut stream).await;
    assert_eq!(
        (live.sequence, live.name.as_str()),
        (4, "docker.io/library/app:live")
    );

    let status = c
        .clone()
        .watch_tags(WatchTagsRequest {
            from_start: true,
            since_sequence: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("from_start"),
        "{}",
        status.message()
    );
    // since_sequence = 0 alone still means "from now on"
    let mut now = c
        .clone()
        .watch_tags(WatchTagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    c.clone()
        .set_tag(set("app:later", &digest(10).to_string(), None))
        .await
        .unwrap();
    assert_eq!(next_message(&mut now).await.sequence, 5);
    server.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_or_unknown_since_is_out_of_range_and_says_to_list_again() {
    let server = Server::start_with(10).await;
    let c = server.client();
    for i in 0..30u64 {
        c.clone()
            .set_tag(set(
                &format!("app:v{}", i % 4),
                &digest(i).to_string(),
                None,
            ))
            .await
            .unwrap();
    }
    let status = c
        .clone()
        .watch_tags(WatchTagsRequest {
            since_sequence: 3,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("oldest available sequence is 21")
            && status.message().contains("list the tags again"),
        "{}",
        status.message()
    );
    let status = c
        .clone()
        .watch_tags(WatchTagsRequest {
            since_sequence: 31,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    // from the start now means from the oldest kept change
    let mut stream = c
        .clone()
        .watch_tags(WatchTagsRequest {
            from_start: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_message(&mut stream).await.sequence, 21);
    server.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moves_only_to_an_image_the_layer_store_holds_and_leases_it_until_then() {
    let server = Server::start().await;
    let mut c = server.client();
    let (image, missing, layer) = (
        digest(1).to_string(),
        digest(2).to_string(),
        digest(3).to_string(),
    );
    server.layer_store.remove(&missing);
    server
        .layer_store
        .insert(&layer, "application/vnd.oci.image.layer.v1.tar");

    let status = c
        .set_tag(set("ghost:v1", &missing, None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains(&missing)
            && status.message().contains("layer store does not hold it"),
        "{}",
        status.message()
    );
    let status = c.set_tag(set("ghost:v1", &layer, None)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("not an image manifest or index")
            && status.message().contains("layer.v1.tar"),
        "{}",
        status.message()
    );
    // neither moved anything
    let status = c
        .resolve_tag(ResolveTagRequest {
            name: "ghost:v1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // an image moves the tag, and its target was leased for the move
    c.set_tag(set("app:v1", &image, None)).await.unwrap();
    let leased = server.layer_store.leased();
    assert_eq!(
        leased.last().map(|(_, d)| d.as_str()),
        Some(image.as_str()),
        "{leased:?}"
    );
    // and every lease taken for a check is gone once the call answered
    assert_eq!(server.layer_store.live_leases(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_layer_store_moves_no_tag_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    // a layer store that stopped: nothing listens there any more
    let gone = FakeLayerStore::holding_every_image().spawn().await;
    let addr = gone.addr.clone();
    gone.shutdown().await.unwrap();
    let config = Config {
        root: root.path().to_path_buf(),
        event_retention: strata_tag_index::store::DEFAULT_EVENT_RETENTION,
        layer_store: Some(addr.clone().into()),
    };
    let service = InProcess::spawn(move |listener, shutdown| async move {
        strata_tag_index::run(config, listener, &ServeOptions::default(), shutdown).await
    })
    .await;
    let mut c = TagIndexClient::new(service.channel());
    let status = c
        .set_tag(set("app:v1", &digest(1).to_string(), None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&addr.to_string()) && status.message().contains("did not move"),
        "{}",
        status.message()
    );

    // without any layer store, no tag moves either
    let root = tempfile::tempdir().unwrap();
    let config = Config {
        root: root.path().to_path_buf(),
        event_retention: strata_tag_index::store::DEFAULT_EVENT_RETENTION,
        layer_store: None,
    };
    let service = InProcess::spawn(move |listener, shutdown| async move {
        strata_tag_index::run(config, listener, &ServeOptions::default(), shutdown).await
    })
    .await;
    let status = TagIndexClient::new(service.channel())
        .set_tag(set("app:v1", &digest(1).to_string(), None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("--layer-store-addr"),
        "{}",
        status.message()
    );
}

/// Setting a tag to where it already points (every fully cached rebuild does) is no move:
/// it needs no check in the layer store. A tag that moved meanwhile is checked as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_set_where_it_points_is_not_checked_again() {
    let server = Server::start().await;
    let mut c = server.client();
    let d = digest(1).to_string();
    c.set_tag(set("app:v1", &d, None)).await.unwrap();
    let checks = server.layer_store.leased().len();
    assert_eq!(checks, 1, "the first set checks its target");
    let again = c
        .set_tag(set("app:v1", &d, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.previous_digest, d);
    c.set_tag(set("app:v1", &d, Some(&d))).await.unwrap();
    assert_eq!(
        server.layer_store.leased().len(),
        checks,
        "no check for a no-op"
    );
    // a real move is still checked, and refused when the target is not held
    let e = digest(2).to_string();
    server.layer_store.remove(&e);
    let err = c.set_tag(set("app:v1", &e, None)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(server.layer_store.live_leases(), 0);
}
