//! The real `strata-tag-index` binary: SIGKILL during a storm of moves, grpcurl, SIGTERM.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use strata_proto::tag_index::{
    GetTagHistoryRequest, ResolveTagRequest, SetTagRequest, tag_index_client::TagIndexClient,
};
use strata_test_support::{FakeLayerStore, Grpcurl, ServiceProcess};
use tokio::sync::watch;

use crate::fixture::digest;

const BIN: &str = env!("CARGO_BIN_EXE_strata-tag-index");

/// A stand-in layer store holding every digest as an image, and the flag that points the
/// binary at it.
async fn layer_store() -> (strata_test_support::InProcess, String) {
    let fake = FakeLayerStore::holding_every_image().spawn().await;
    let flag = format!("--layer-store-addr={}", fake.addr);
    (fake, flag)
}

/// One acknowledged move: (tag, sequence, digest).
type Ack = (String, u64, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_move_survives_sigkill_during_a_storm() {
    const WRITERS: u64 = 8;
    const KILL_AFTER: usize = 400;
    let (_layer_store, flag) = layer_store().await;
    let service = ServiceProcess::spawn(Path::new(BIN), &[&flag]).await;
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let channel = strata_server::client::lazy_channel(&service.addr).unwrap();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (acks, count_tx) = (acks.clone(), count_tx.clone());
        let mut client = TagIndexClient::new(channel.clone());
        writers.push(tokio::spawn(async move {
            let name = format!("storm:w{w}");
            for i in 0u64.. {
                let target = digest(w * 1_000_000 + i).to_string();
                let request = SetTagRequest {
                    name: name.clone(),
                    digest: target.clone(),
                    expected_digest: None,
                };
                match client.set_tag(request).await {
                    Ok(r) => {
                        let tag = r.into_inner().tag.unwrap();
                        acks.lock().unwrap().push((tag.name, tag.sequence, target));
                        count_tx.send_modify(|c| *c += 1);
                    }
                    // the server is gone: stop
                    Err(_) => return,
                }
            }
        }));
    }
    count_rx.wait_for(|c| *c >= KILL_AFTER).await.unwrap();
    let root = service.root.clone();
    let dir = service.kill();
    for w in writers {
        w.await.unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    assert!(acks.len() >= KILL_AFTER);

    let restarted = ServiceProcess::spawn_with_root(Path::new(BIN), &[&flag], &root).await;
    let mut client =
        TagIndexClient::new(strata_server::client::lazy_channel(&restarted.addr).unwrap());
    for w in 0..WRITERS {
        let name = format!("docker.io/library/storm:w{w}");
        let mine: Vec<&Ack> = acks.iter().filter(|a| a.0 == name).collect();
        let history = client
            .get_tag_history(GetTagHistoryRequest {
                name: name.clone(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        for (_, seq, target) in &mine {
            assert!(
                history
                    .iter()
                    .any(|e| e.sequence == *seq && &e.new_digest == target),
                "acknowledged move {name} -> {target} (sequence {seq}) lost after SIGKILL"
            );
        }
        if let Some((_, last_seq, last_target)) = mine.last() {
            let now = client
                .resolve_tag(ResolveTagRequest { name: name.clone() })
                .await
                .unwrap()
                .into_inner();
            // a move committed but not yet acknowledged when the kill came may be newer
            assert!(
                now.sequence >= *last_seq,
                "{name}: {} < {last_seq}",
                now.sequence
            );
            if now.sequence == *last_seq {
                assert_eq!(&now.digest, last_target);
            }
        }
        // and the history is a chain: each move starts where the previous ended
        assert!(
            history
                .windows(2)
                .all(|p| p[0].new_digest == p[1].old_digest),
            "{name}: broken chain"
        );
    }
    let (status, _) = restarted.terminate().await;
    assert!(status.success(), "restarted service exited with {status:?}");
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_checks_health_and_sigterm_exits_within_the_drain_limit() {
    let (_layer_store, flag) = layer_store().await;
    strata_test_support::check_service_basics(
        Path::new(BIN),
        "strata.tagindex.v1.TagIndex",
        "strata.tagindex.v1.SetTagRequest",
        &[&flag],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_round_trips_a_tag_and_sees_invalid_arguments() {
    let (_layer_store, flag) = layer_store().await;
    let service = ServiceProcess::spawn(Path::new(BIN), &["--drain-timeout", "5", &flag]).await;
    let grpcurl = Grpcurl::find();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let out = grpcurl.run(&service.addr, &["describe", "strata.tagindex.v1.TagIndex"]);
    let described = text(&out);
    assert!(out.status.success(), "{described}");
    for rpc in [
        "SetTag",
        "ResolveTag",
        "ListTags",
        "DeleteTag",
        "GetTagHistory",
        "WatchTags",
    ] {
        assert!(described.contains(rpc), "{rpc} missing: {described}");
    }
    assert!(
        described.contains("compare-and-swap"),
        "comments reach reflection: {described}"
    );

    let d = digest(42).to_string();
    let set = format!(r#"{{"name":"localhost:5000/app:v1","digest":"{d}","expected_digest":""}}"#);
    let out = grpcurl.call(&service.addr, "strata.tagindex.v1.TagIndex/SetTag", &set);
    assert!(out.status.success(), "{}", text(&out));
    let out = grpcurl.call(
        &service.addr,
        "strata.tagindex.v1.TagIndex/ResolveTag",
        r#"{"name":"localhost:5000/app:v1"}"#,
    );
    let resolved: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(resolved["digest"], d.as_str());
    assert_eq!(resolved["shortName"], "localhost:5000/app:v1");

    let out = grpcurl.call(
        &service.addr,
        "strata.tagindex.v1.TagIndex/ResolveTag",
        r#"{"name":"Upper/Case:x"}"#,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("InvalidArgument") && text(&out).contains("lowercase"),
        "{}",
        text(&out)
    );
    let out = grpcurl.call(
        &service.addr,
        "strata.tagindex.v1.TagIndex/ResolveTag",
        r#"{"name":"ghost"}"#,
    );
    assert!(text(&out).contains("NotFound"), "{}", text(&out));

    let (status, took) = service.terminate().await;
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(
        took < Duration::from_secs(5),
        "exits within the drain limit: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_retention_flag_prunes_and_grpcurl_sees_out_of_range() {
    let (_layer_store, flag) = layer_store().await;
    let service = ServiceProcess::spawn(Path::new(BIN), &["--event-retention", "5", &flag]).await;
    let mut client =
        TagIndexClient::new(strata_server::client::lazy_channel(&service.addr).unwrap());
    for i in 0..20u64 {
        client
            .set_tag(SetTagRequest {
                name: format!("localhost:5000/app:v{}", i % 3),
                digest: digest(i).to_string(),
                expected_digest: None,
            })
            .await
            .unwrap();
    }
    let grpcurl = Grpcurl::find();
    let out = grpcurl.call(
        &service.addr,
        "strata.tagindex.v1.TagIndex/WatchTags",
        r#"{"since_sequence":"2"}"#,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("OutOfRange") && text.contains("oldest available sequence is 16"),
        "{text}"
    );
    let (status, _) = service.terminate().await;
    assert!(status.success());
}

#[test]
fn event_retention_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--layer-store-addr",
            "127.0.0.1:1",
            "--event-retention",
            "0",
            "--listen",
        ])
        .arg(format!("unix://{}", dir.path().join("s.sock").display()))
        .env("STRATA_ROOT", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("event-retention"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
