//! The event log's retention: pruning, the oldest position, and watchers that ask for pruned
//! changes (told so, never silently skipped).

use std::time::Duration;

use strata_tag_index::{
    StoreOptions, TagIndexError,
    store::{Expect, WatchFrom, WatchItem, Watcher},
};

use crate::fixture::{Fixture, digest, tag};

/// Fixtures on both stores whose log keeps `retention` events.
fn both(retention: u64) -> [Fixture; 2] {
    let options = StoreOptions {
        event_retention: retention,
        ..StoreOptions::default()
    };
    [
        Fixture::memory_with(options.clone()),
        Fixture::rocks_with(options),
    ]
}

/// Moves `x:<i % 3>` `n` times; returns the last sequence.
async fn moves(f: &Fixture, from: u64, n: u64) -> u64 {
    let mut last = 0;
    for i in from..from + n {
        let o = f
            .store
            .set(&tag(&format!("x:{}", i % 3)), digest(i), Expect::Any)
            .await
            .unwrap();
        last = o.tag.sequence;
    }
    last
}

fn log_sequences(f: &Fixture) -> Vec<u64> {
    f.store
        .events_after(0, 100_000)
        .unwrap()
        .into_iter()
        .map(|e| e.sequence)
        .collect()
}

async fn next_event(w: &mut Watcher) -> u64 {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(WatchItem::Event(e)))) => e.sequence,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_keeps_at_least_the_retention_and_prunes_in_steps() {
    // retention 64: pruned in steps of 64 / 16 = 4 events
    for f in both(64) {
        for n in 1..=200u64 {
            moves(&f, n, 1).await;
            let log = log_sequences(&f);
            let kept = log.len() as u64;
            assert!(
                kept >= n.min(64) && kept < 64 + 4,
                "after {n} moves the log keeps {kept}"
            );
            // always the newest ones, without a gap
            assert_eq!(log.last(), Some(&n));
            assert_eq!(log.first(), Some(&(f.store.pruned_through() + 1)));
        }
        assert!(f.store.pruned_through() >= 200 - 64 - 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_not_pruned_with_the_log() {
    for f in both(4) {
        moves(&f, 0, 30).await;
        assert_eq!(f.store.pruned_through(), 26);
        let history = f.store.history(&tag("x:0"), 1000, "").unwrap().items;
        assert_eq!(
            history.len(),
            10,
            "every move of x:0 is still in its history"
        );
        assert_eq!(history[0].sequence, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_position_is_refused_naming_the_oldest_available() {
    for f in both(10) {
        moves(&f, 0, 30).await;
        assert_eq!(f.store.pruned_through(), 20);
        let err = f
            .store
            .watch(String::new(), WatchFrom::After(5))
            .unwrap_err();
        assert!(
            matches!(
                err,
                TagIndexError::EventsPruned {
                    after: 5,
                    oldest: 21
                }
            ),
            "{err:?}"
        );
        // the last pruned position itself is fine: everything after it is kept
        let mut w = f.store.watch(String::new(), WatchFrom::After(20)).unwrap();
        for seq in 21..=30 {
            assert_eq!(next_event(&mut w).await, seq);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_whose_position_is_pruned_while_it_waits_fails_instead_of_skipping() {
    for f in both(10) {
        moves(&f, 0, 12).await;
        // valid when asked: events 3.. are kept
        let mut w = f.store.watch(String::new(), WatchFrom::After(2)).unwrap();
        // before it reads anything, the log moves on and events 3..=20 are pruned
        moves(&f, 12, 18).await;
        assert_eq!(f.store.pruned_through(), 20);
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Err(TagIndexError::EventsPruned {
                after: 2,
                oldest: 21,
            }))) => {}
            other => panic!("expected EventsPruned, got {other:?}"),
        }
        assert!(w.next().await.is_none(), "the watcher ended");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_oldest_replays_the_whole_log_then_follows_live() {
    for f in both(100) {
        moves(&f, 0, 5).await;
        let mut w = f.store.watch(String::new(), WatchFrom::Oldest).unwrap();
        for seq in 1..=5 {
            assert_eq!(next_event(&mut w).await, seq);
        }
        moves(&f, 5, 1).await;
        assert_eq!(next_event(&mut w).await, 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_oldest_starts_at_the_oldest_kept_event_even_if_pruned_meanwhile() {
    for f in both(10) {
        moves(&f, 0, 25).await;
        let mut w = f.store.watch(String::new(), WatchFrom::Oldest).unwrap();
        // pruning moves the start before the watcher reads
        moves(&f, 25, 10).await;
        let oldest = f.store.pruned_through() + 1;
        assert!(oldest > 16, "{oldest}");
        for seq in oldest..=35 {
            assert_eq!(next_event(&mut w).await, seq);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_beyond_the_last_change_is_refused() {
    for f in both(10) {
        moves(&f, 0, 3).await;
        let err = f
            .store
            .watch(String::new(), WatchFrom::After(1000))
            .unwrap_err();
        assert!(
            matches!(
                err,
                TagIndexError::SequenceAhead {
                    after: 1000,
                    last: 3
                }
            ),
            "{err:?}"
        );
        // the last change itself is a fine position: "from here on"
        assert!(f.store.watch(String::new(), WatchFrom::After(3)).is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_survives_reopen_and_a_lower_retention_prunes_at_open() {
    for f in both(10) {
        moves(&f, 0, 30).await;
        assert_eq!(f.store.pruned_through(), 20);
        let f = f.reopen();
        assert_eq!(f.store.pruned_through(), 20);
        assert_eq!(f.store.last_sequence(), 30);
        assert_eq!(log_sequences(&f), (21..=30).collect::<Vec<_>>());
        let f = f.reopen_with(StoreOptions {
            event_retention: 3,
            ..StoreOptions::default()
        });
        assert_eq!(f.store.pruned_through(), 27);
        assert_eq!(log_sequences(&f), vec![28, 29, 30]);
        // sequences go on from where they were
        assert_eq!(moves(&f, 30, 1).await, 31);
    }
}
