//! Watchers on the store: replay, live, prefix, resume, lag.

use std::time::Duration;

use strata_tag_index::{
    StoreOptions,
    store::{Expect, WatchFrom, WatchItem, Watcher},
};

use crate::fixture::{Fixture, digest, tag};

crate::on_both_stores!(
    replay_then_live_in_sequence_order,
    since_zero_means_from_now_on,
    prefix_filters_but_position_advances,
    resuming_from_the_last_position_misses_nothing,
);

/// The next event's (sequence, name), failing the test after a generous bound instead of
/// hanging forever.
async fn next_event(w: &mut Watcher) -> (u64, String) {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(WatchItem::Event(e)))) => (e.sequence, e.name.clone()),
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn replay_then_live_in_sequence_order(f: Fixture) {
    let s = &f.store;
    for i in 1..=5 {
        s.set(&tag(&format!("a:{i}")), digest(i), Expect::Any)
            .await
            .unwrap();
    }
    let mut w = s.watch(String::new(), WatchFrom::After(2)).unwrap();
    for seq in 3..=5 {
        assert_eq!(next_event(&mut w).await.0, seq);
    }
    s.set(&tag("a:live"), digest(9), Expect::Any).await.unwrap();
    assert_eq!(
        next_event(&mut w).await,
        (6, "docker.io/library/a:live".into())
    );
    s.delete(&tag("a:1"), None).await.unwrap();
    assert_eq!(
        next_event(&mut w).await,
        (7, "docker.io/library/a:1".into())
    );
}

async fn since_zero_means_from_now_on(f: Fixture) {
    let s = &f.store;
    s.set(&tag("old"), digest(1), Expect::Any).await.unwrap();
    let mut w = s.watch(String::new(), WatchFrom::Now).unwrap();
    s.set(&tag("new"), digest(2), Expect::Any).await.unwrap();
    assert_eq!(
        next_event(&mut w).await,
        (2, "docker.io/library/new:latest".into())
    );
}

async fn prefix_filters_but_position_advances(f: Fixture) {
    let s = &f.store;
    let mut w = s.watch("localhost:5000/".into(), WatchFrom::Now).unwrap();
    s.set(&tag("hub"), digest(1), Expect::Any).await.unwrap();
    s.set(&tag("localhost:5000/app"), digest(2), Expect::Any)
        .await
        .unwrap();
    s.set(&tag("hub"), digest(3), Expect::Any).await.unwrap();
    s.set(&tag("localhost:5000/app"), digest(4), Expect::Any)
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut w).await,
        (2, "localhost:5000/app:latest".into())
    );
    assert_eq!(next_event(&mut w).await.0, 4);
    assert_eq!(w.position(), 4);
}

async fn resuming_from_the_last_position_misses_nothing(f: Fixture) {
    // the first connection starts before any change ("from now on")
    let mut w = f.store.watch(String::new(), WatchFrom::Now).unwrap();
    let s = f.store.clone();
    let writer = tokio::spawn(async move {
        for i in 0..300u64 {
            s.set(&tag(&format!("storm:{}", i % 7)), digest(i), Expect::Any)
                .await
                .unwrap();
        }
    });
    let mut seen = Vec::new();
    // disconnect every 25 events while the writer runs; reconnect with the last sequence seen
    while seen.len() < 300 {
        for _ in 0..25 {
            seen.push(next_event(&mut w).await.0);
        }
        let last = *seen.last().unwrap();
        drop(w);
        w = f
            .store
            .watch(String::new(), WatchFrom::After(last))
            .unwrap();
    }
    writer.await.unwrap();
    assert_eq!(
        seen,
        (1..=300).collect::<Vec<_>>(),
        "every change exactly once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_told_it_lagged_with_the_position_to_resume_from() {
    for f in [
        Fixture::memory_with(StoreOptions {
            watch_buffer: 8,
            ..StoreOptions::default()
        }),
        Fixture::rocks_with(StoreOptions {
            watch_buffer: 8,
            ..StoreOptions::default()
        }),
    ] {
        let s = &f.store;
        s.set(&tag("x"), digest(0), Expect::Any).await.unwrap();
        let mut w = s.watch(String::new(), WatchFrom::Now).unwrap();
        w.catch_up().await.unwrap();
        for i in 1..40 {
            s.set(&tag("x"), digest(i), Expect::Any).await.unwrap();
        }
        let item = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap();
        assert_eq!(
            item.unwrap().unwrap(),
            WatchItem::Lagged { resume_after: 1 }
        );
        assert!(w.next().await.is_none(), "a lagged watcher ends");
        // resuming from the reported position delivers everything after it
        let mut again = s.watch(String::new(), WatchFrom::After(1)).unwrap();
        for seq in 2..=40 {
            assert_eq!(next_event(&mut again).await.0, seq);
        }
    }
}
