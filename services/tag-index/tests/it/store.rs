//! The store logic, run against MemoryStore and RocksStore alike.

use std::{collections::BTreeSet, sync::Arc};

use strata_tag_index::{
    TagIndexError,
    store::{Expect, ListFilter, TagEvent},
};

use crate::fixture::{Fixture, digest, tag};

crate::on_both_stores!(
    set_creates_then_moves_and_resolve_follows,
    compare_and_swap_checks_absence_and_the_current_digest,
    pointing_a_tag_where_it_points_is_not_a_move,
    resolve_of_an_unknown_tag_is_not_found,
    delete_reports_whether_it_was_the_last_tag_of_its_digest,
    delete_checks_its_expected_digest,
    list_pages_through_prefix_repository_and_digest,
    bad_page_tokens_are_invalid_arguments,
    history_holds_every_move_in_order_with_paging,
    sequences_are_global_gap_free_and_survive_reopen,
    concurrent_cas_writers_exactly_one_wins_each_round,
    a_group_decides_cas_against_its_own_earlier_moves,
    a_listing_is_exactly_the_state_after_its_sequence,
);

async fn set_creates_then_moves_and_resolve_follows(f: Fixture) {
    let s = &f.store;
    let name = tag("app");
    let created = s.set(&name, digest(1), Expect::Any).await.unwrap();
    assert_eq!(created.previous, None);
    assert_eq!(created.tag.name, "docker.io/library/app:latest");
    assert_eq!(created.tag.digest, digest(1));
    let moved = s
        .set(&tag("docker.io/library/app:latest"), digest(2), Expect::Any)
        .await
        .unwrap();
    assert_eq!(moved.previous, Some(digest(1)));
    assert!(moved.tag.sequence > created.tag.sequence);
    assert!(moved.tag.updated_at_ns >= created.tag.updated_at_ns);
    let resolved = s.resolve(&tag("app:latest")).unwrap();
    assert_eq!(resolved, moved.tag);
}

async fn compare_and_swap_checks_absence_and_the_current_digest(f: Fixture) {
    let s = &f.store;
    let name = tag("localhost:5000/app:prod");
    s.set(&name, digest(1), Expect::Absent).await.unwrap();
    let err = s.set(&name, digest(2), Expect::Absent).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            TagIndexError::Conflict {
                expected: None,
                actual: Some(_),
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&digest(1).to_string()) && msg.contains("not to exist"),
        "{msg}"
    );

    let err = s
        .set(&name, digest(3), Expect::Digest(digest(9)))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&digest(1).to_string()) && msg.contains(&digest(9).to_string()),
        "both digests: {msg}"
    );
    assert_eq!(
        s.resolve(&name).unwrap().digest,
        digest(1),
        "a failed CAS changes nothing"
    );

    let ok = s
        .set(&name, digest(3), Expect::Digest(digest(1)))
        .await
        .unwrap();
    assert_eq!(ok.previous, Some(digest(1)));
    let err = s
        .set(&tag("never"), digest(1), Expect::Digest(digest(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TagIndexError::Conflict { actual: None, .. }),
        "{err}"
    );
}

async fn pointing_a_tag_where_it_points_is_not_a_move(f: Fixture) {
    let s = &f.store;
    let name = tag("app:v1");
    let first = s.set(&name, digest(1), Expect::Any).await.unwrap();
    let again = s
        .set(&name, digest(1), Expect::Digest(digest(1)))
        .await
        .unwrap();
    assert_eq!(again.tag, first.tag);
    assert_eq!(again.previous, Some(digest(1)));
    assert_eq!(s.history(&name, 100, "").unwrap().items.len(), 1);
    assert_eq!(s.last_sequence(), first.tag.sequence);
}

async fn resolve_of_an_unknown_tag_is_not_found(f: Fixture) {
    let err = f.store.resolve(&tag("nothing:here")).unwrap_err();
    assert!(
        matches!(&err, TagIndexError::NotFound { name } if name == "docker.io/library/nothing:here"),
        "{err}"
    );
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::NotFound);
    let err = f.store.history(&tag("nothing:here"), 10, "").unwrap_err();
    assert!(matches!(err, TagIndexError::NotFound { .. }), "{err}");
    let err = f
        .store
        .delete(&tag("nothing:here"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TagIndexError::NotFound { .. }), "{err}");
}

async fn delete_reports_whether_it_was_the_last_tag_of_its_digest(f: Fixture) {
    let s = &f.store;
    s.set(&tag("a:1"), digest(1), Expect::Any).await.unwrap();
    s.set(&tag("a:2"), digest(1), Expect::Any).await.unwrap();
    s.set(&tag("b:1"), digest(2), Expect::Any).await.unwrap();
    let first = s.delete(&tag("a:1"), None).await.unwrap();
    assert_eq!(first.previous, digest(1));
    assert!(!first.last_tag_for_digest, "a:2 still points there");
    let second = s.delete(&tag("a:2"), Some(digest(1))).await.unwrap();
    assert!(second.last_tag_for_digest);
    assert!(second.sequence > first.sequence);
    assert!(matches!(
        s.resolve(&tag("a:2")),
        Err(TagIndexError::NotFound { .. })
    ));
    // a moved tag no longer counts for its old digest
    s.set(&tag("c:1"), digest(3), Expect::Any).await.unwrap();
    s.set(&tag("c:2"), digest(3), Expect::Any).await.unwrap();
    s.set(&tag("c:2"), digest(4), Expect::Any).await.unwrap();
    assert!(
        s.delete(&tag("c:1"), None)
            .await
            .unwrap()
            .last_tag_for_digest
    );
    // history keeps the removal
    let h = s.history(&tag("a:1"), 10, "").unwrap().items;
    assert_eq!(h.last().unwrap().new, None);
    assert_eq!(h.last().unwrap().old, Some(digest(1)));
}

async fn delete_checks_its_expected_digest(f: Fixture) {
    let s = &f.store;
    s.set(&tag("a"), digest(1), Expect::Any).await.unwrap();
    let err = s.delete(&tag("a"), Some(digest(2))).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&digest(1).to_string()) && msg.contains(&digest(2).to_string()),
        "{msg}"
    );
    assert_eq!(s.resolve(&tag("a")).unwrap().digest, digest(1));
}

async fn list_pages_through_prefix_repository_and_digest(f: Fixture) {
    let s = &f.store;
    let mut expected_all = BTreeSet::new();
    for i in 0..23u64 {
        for repo in ["app", "app-other", "localhost:5000/app"] {
            let name = tag(&format!("{repo}:t{i:02}"));
            s.set(&name, digest(i % 3), Expect::Any).await.unwrap();
            expected_all.insert(name.as_str().to_string());
        }
    }
    let collect = |filter: ListFilter, size: usize| {
        let mut names = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = s.list(&filter, size, &token).unwrap();
            assert!(page.items.len() <= size);
            names.extend(page.items.into_iter().map(|t| t.name));
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        (names, pages)
    };
    let (all, pages) = collect(ListFilter::default(), 7);
    assert_eq!(
        all,
        expected_all.iter().cloned().collect::<Vec<_>>(),
        "name order, nothing lost"
    );
    assert_eq!(pages, 69usize.div_ceil(7));

    let repo = ListFilter {
        repository: Some("docker.io/library/app".into()),
        ..ListFilter::default()
    };
    let (names, _) = collect(repo, 5);
    assert_eq!(names.len(), 23, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("docker.io/library/app:"))
    );

    let prefix = ListFilter {
        prefix: "localhost:5000/".into(),
        ..ListFilter::default()
    };
    assert_eq!(collect(prefix, 100).0.len(), 23);

    let by_digest = ListFilter {
        digest: Some(digest(1)),
        ..ListFilter::default()
    };
    let (names, _) = collect(by_digest, 4);
    // i % 3 == 1 for i in 0..23: 8 values, three repositories each
    assert_eq!(names.len(), 24);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for n in &names {
        assert_eq!(s.resolve(&tag(n)).unwrap().digest, digest(1));
    }

    let combined = ListFilter {
        prefix: "docker.io/library/app:t1".into(),
        repository: Some("docker.io/library/app".into()),
        digest: Some(digest(2)),
    };
    let (names, _) = collect(combined, 2);
    // t10..t19 with i % 3 == 2: 11, 14, 17
    assert_eq!(
        names,
        [
            "docker.io/library/app:t11",
            "docker.io/library/app:t14",
            "docker.io/library/app:t17"
        ]
    );

    let disjoint = ListFilter {
        prefix: "localhost:5000/".into(),
        repository: Some("docker.io/library/app".into()),
        digest: None,
    };
    assert!(collect(disjoint, 10).0.is_empty());
}

async fn bad_page_tokens_are_invalid_arguments(f: Fixture) {
    f.store
        .set(&tag("a"), digest(1), Expect::Any)
        .await
        .unwrap();
    for token in ["zz", "abc"] {
        let err = f.store.list(&ListFilter::default(), 10, token).unwrap_err();
        assert!(
            matches!(err, TagIndexError::InvalidPageToken { .. }),
            "{err}"
        );
    }
    let err = f.store.history(&tag("a"), 10, "00").unwrap_err();
    assert!(
        matches!(err, TagIndexError::InvalidPageToken { .. }),
        "{err}"
    );
}

async fn history_holds_every_move_in_order_with_paging(f: Fixture) {
    let s = &f.store;
    let name = tag("app:prod");
    s.set(&tag("app:other"), digest(100), Expect::Any)
        .await
        .unwrap();
    for i in 1..=12 {
        s.set(&name, digest(i), Expect::Any).await.unwrap();
        s.set(&tag("app:prod-longer"), digest(i), Expect::Any)
            .await
            .unwrap();
    }
    s.delete(&name, None).await.unwrap();
    let mut events: Vec<TagEvent> = Vec::new();
    let mut token = String::new();
    loop {
        let page = s.history(&name, 5, &token).unwrap();
        events.extend(page.items);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(events.len(), 13, "12 moves and the removal, no other tag's");
    assert!(
        events
            .iter()
            .all(|e| e.name == "docker.io/library/app:prod")
    );
    assert!(
        events
            .windows(2)
            .all(|w| w[0].sequence < w[1].sequence && w[0].time_ns <= w[1].time_ns)
    );
    assert_eq!(events[0].old, None);
    for (i, e) in events.iter().enumerate().skip(1).take(11) {
        assert_eq!(e.old, Some(digest(i as u64)));
        assert_eq!(e.new, Some(digest(i as u64 + 1)));
    }
    assert_eq!(events[12].new, None);
}

async fn sequences_are_global_gap_free_and_survive_reopen(f: Fixture) {
    for i in 0..10 {
        f.store
            .set(&tag(&format!("t{}:x", i % 3)), digest(i), Expect::Any)
            .await
            .unwrap();
    }
    let last = f.store.last_sequence();
    assert_eq!(last, 10);
    let log = f.store.events_after(0, 100).unwrap();
    assert_eq!(
        log.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let f = f.reopen();
    assert_eq!(f.store.last_sequence(), 10);
    assert_eq!(f.store.resolve(&tag("t0:x")).unwrap().digest, digest(9));
    let next = f
        .store
        .set(&tag("t9"), digest(1), Expect::Any)
        .await
        .unwrap();
    assert_eq!(next.tag.sequence, 11);
    assert_eq!(f.store.events_after(10, 100).unwrap().len(), 1);
}

async fn concurrent_cas_writers_exactly_one_wins_each_round(f: Fixture) {
    const WRITERS: u64 = 8;
    const ROUNDS: u64 = 20;
    let store = f.store.clone();
    let name = tag("race:prod");
    store.set(&name, digest(0), Expect::Any).await.unwrap();
    let mut expected_moves = Vec::new();
    let mut current = digest(0);
    for round in 1..=ROUNDS {
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS as usize));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (store, name, barrier) = (store.clone(), name.clone(), barrier.clone());
            let target = digest(round * 1000 + w);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store
                    .set(&name, target, Expect::Digest(current))
                    .await
                    .map(|o| (o, target))
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok((o, target)) => winners.push((o, target)),
                Err(TagIndexError::Conflict { .. }) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
        let (outcome, target) = winners.pop().unwrap();
        assert_eq!(outcome.previous, Some(current));
        expected_moves.push((current, target));
        current = target;
    }
    let history = store.history(&name, 1000, "").unwrap().items;
    let moves: Vec<_> = history
        .iter()
        .skip(1)
        .map(|e| (e.old.unwrap(), e.new.unwrap()))
        .collect();
    assert_eq!(
        moves, expected_moves,
        "history shows every acknowledged move in order"
    );
}

async fn a_group_decides_cas_against_its_own_earlier_moves(f: Fixture) {
    // Many "must not exist" creations queued at once land in few groups; exactly one may win,
    // and the digest index must agree with the record afterwards.
    let store = f.store.clone();
    let name = tag("fresh:once");
    let attempts: Vec<_> = (0..64)
        .map(|i| {
            let (store, name) = (store.clone(), name.clone());
            tokio::spawn(async move { store.set(&name, digest(i), Expect::Absent).await })
        })
        .collect();
    let mut wins = Vec::new();
    for a in attempts {
        if let Ok(o) = a.await.unwrap() {
            wins.push(o);
        }
    }
    assert_eq!(wins.len(), 1);
    let winner = wins[0].tag.digest;
    // a move and a delete of the same tag queued together
    let (a, b) = tokio::join!(
        store.set(&name, digest(500), Expect::Digest(winner)),
        store.delete(&name, Some(winner)),
    );
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one of a racing move and delete wins"
    );
    let by_digest = |d| {
        store
            .list(
                &ListFilter {
                    digest: Some(d),
                    ..ListFilter::default()
                },
                100,
                "",
            )
            .unwrap()
            .items
    };
    assert!(by_digest(winner).is_empty());
    assert_eq!(by_digest(digest(500)).len(), usize::from(a.is_ok()));
}

async fn a_listing_is_exactly_the_state_after_its_sequence(f: Fixture) {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    // writers move and delete tags until the lister has listed often enough while they ran;
    // every listing must equal the state the log gives after exactly the listing's sequence
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (s, done) = (f.store.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                let name = tag(&format!("c:{}", (w * 7 + i) % 10));
                if i % 5 == 4 {
                    let _ = s.delete(&name, None).await;
                } else {
                    s.set(&name, digest(w * 1_000_000 + i), Expect::Any)
                        .await
                        .unwrap();
                }
                i += 1;
                // the in-memory store never suspends; let the other writers interleave
                tokio::task::yield_now().await;
            }
        }));
    }
    let lister = {
        let (s, done) = (f.store.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            // keep listing until the listings themselves span several points of the storm:
            // a condition on the writers' progress alone can be met between two listings
            let mut listings = Vec::new();
            let mut sequences = BTreeSet::new();
            while listings.len() < 50 || sequences.len() < 3 || s.last_sequence() < 300 {
                let page = s.list(&ListFilter::default(), 1000, "").unwrap();
                assert!(page.next_page_token.is_empty());
                sequences.insert(page.sequence);
                listings.push(page);
            }
            done.store(true, Ordering::Relaxed);
            listings
        })
    };
    let listings = lister.await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let log = f.store.events_after(0, 1_000_000).unwrap();
    let mut seen = BTreeSet::new();
    for page in &listings {
        let mut state = BTreeMap::new();
        for e in log.iter().take_while(|e| e.sequence <= page.sequence) {
            match e.new {
                Some(d) => state.insert(e.name.clone(), d),
                None => state.remove(&e.name),
            };
        }
        let listed: BTreeMap<_, _> = page
            .items
            .iter()
            .map(|t| (t.name.clone(), t.digest))
            .collect();
        assert_eq!(listed, state, "listing at sequence {}", page.sequence);
        seen.insert(page.sequence);
    }
    // the listings saw the store at different points of the storm
    assert!(seen.len() > 1, "{seen:?}");
}
