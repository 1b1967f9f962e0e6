//! The store's logic, one suite run against MemoryStore and RocksStore, with small chunks so
//! every multi-chunk path is exercised cheaply.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use strata_kv::{Durability, KvStore, MemoryStore, RocksStore, Space};
use strata_layer_store::{
    LayerStoreError,
    store::{
        self, CHUNKS, CacheEntry, Feed, GROUPS, GcRequest, Holder, ListFilter, Settings, Store,
        UPLOADS, WriteStart,
    },
};
use strata_types::{Digest, media_type};

const CHUNK: usize = 1024;

fn settings() -> Settings {
    Settings {
        chunk_size: CHUNK,
        upload_ttl: Duration::from_secs(3600),
        // past two chunks, a session's chunks go to bulk loads: the multi-chunk cases below
        // (a broken stream resumed, a session kept over a restart, a blob of 600 chunks
        // crossing two checkpoints) cross from one path to the other
        bulk_from: 2 * CHUNK as u64,
        leases_end_with_process: false,
    }
}

fn bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 11) as u8)
        .collect()
}

/// Feeds `data` in pieces of `piece` bytes and ends the stream.
fn feed(data: &[u8], piece: usize) -> Vec<Feed> {
    let mut f: Vec<Feed> = data
        .chunks(piece.max(1))
        .map(|c| Feed::Data(Bytes::copy_from_slice(c)))
        .collect();
    f.push(Feed::End);
    f
}

fn start(expected: Option<&[u8]>, media: &str) -> WriteStart {
    WriteStart {
        expected_digest: expected.map(Digest::of),
        expected_size: expected.map(|d| d.len() as u64),
        media_type: media.into(),
        ..WriteStart::default()
    }
}

fn count(kv: &dyn KvStore, space: Space) -> usize {
    kv.scan(space, b"", b"", usize::MAX).unwrap().len()
}

fn read(
    store: &Arc<Store>,
    d: &Digest,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, LayerStoreError> {
    let mut out = Vec::new();
    for part in store.reader(d, offset, length)? {
        let part = part?;
        assert!(part.len() <= CHUNK, "a read yields at most one chunk");
        out.extend(part);
    }
    Ok(out)
}

/// Runs every check against a fresh store over `kv`; `reopen` gives the same data anew.
fn suite(kv: Arc<dyn KvStore>) {
    let store = Store::open(kv.clone(), settings()).unwrap();
    round_trips_and_ranges(&store);
    wrong_digest_or_size_stores_nothing(&store, kv.as_ref());
    existing_blob_is_idempotent(&store, kv.as_ref());
    concurrent_writers_of_one_blob_keep_one_copy(&store, kv.as_ref());
    broken_stream_resumes_or_is_cleaned(&store, kv.as_ref());
    list_filters_and_pages(&store);
    metadata_is_bounded_and_pages_fit_a_message(&store, kv.as_ref());
    cache_entries(&store);
    cache_pages_fit_a_message(&store);
    leases(&store);
    gc_marks_from_roots_and_sweeps(&store);
    gc_during_a_write_keeps_it(&store);
    a_target_checked_under_a_lease_survives_gc_until_its_tag_lands(&store);
    deletion_refuses_what_tags_and_leases_reach(&store);
    usage_by_kind_and_roots(&store);
    gc_keeps_records_about_what_it_keeps(&store);
    gc_roots_by_label_keep_what_they_name(&store);
    verify_catches_a_flipped_byte(&store, kv.as_ref());
    restart_rehashes_resumable_sessions_and_sweeps_the_rest(kv.clone());
    leases_of_an_ended_process_go_at_open_where_they_end_with_it(kv.clone());
}

/// A live lease survives a restart of a store whose clients live elsewhere (a standalone
/// service), and goes at the open of one whose clients shared the ended process (embedded:
/// a SIGKILLed build's lease kept its layers from GC for its whole TTL).
fn leases_of_an_ended_process_go_at_open_where_they_end_with_it(kv: Arc<dyn KvStore>) {
    {
        let store = Store::open(kv.clone(), settings()).unwrap();
        store
            .create_lease(
                "of-a-killed-build",
                Duration::from_secs(6 * 3600),
                Default::default(),
            )
            .unwrap();
    }
    let ids = |store: &Store| -> Vec<String> {
        store
            .list_leases()
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .filter(|id| id == "of-a-killed-build")
            .collect()
    };
    {
        let standalone = Store::open(kv.clone(), settings()).unwrap();
        assert_eq!(ids(&standalone), ["of-a-killed-build"]);
    }
    let embedded = Store::open(
        kv,
        Settings {
            leases_end_with_process: true,
            ..settings()
        },
    )
    .unwrap();
    assert!(ids(&embedded).is_empty());
}

fn round_trips_and_ranges(store: &Arc<Store>) {
    for (i, n) in [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        3 * CHUNK + CHUNK / 2,
        600 * CHUNK + 3,
    ]
    .into_iter()
    .enumerate()
    {
        let data = bytes(n, i as u32);
        // whole chunks at chunk boundaries are kept as they come (no copy); the rest is
        // gathered into chunks
        for (piece, expected) in [(7, true), (CHUNK, true), (CHUNK * 2, false)] {
            let s = start(expected.then_some(&data[..]), media_type::OCI_LAYER_TAR);
            let out = store.ingest(s, feed(&data, piece)).unwrap();
            assert_eq!(out.digest, Digest::of(&data));
            assert_eq!(out.size, n as u64);
            let info = store.stat(&out.digest).unwrap();
            assert_eq!(info.size, n as u64);
            assert_eq!(info.media_type, media_type::OCI_LAYER_TAR);
            assert_eq!(read(store, &out.digest, 0, 0).unwrap(), data, "size {n}");
        }
        let d = Digest::of(&data);
        for (off, len) in [
            (0, 1),
            (1, 0),
            (CHUNK - 1, 2),
            (CHUNK, CHUNK),
            (n / 2, n / 3),
        ] {
            if off + len > n || (off >= n && n > 0) {
                continue;
            }
            let want = if len == 0 {
                &data[off..]
            } else {
                &data[off..off + len]
            };
            assert_eq!(
                read(store, &d, off as u64, len as u64).unwrap(),
                want,
                "size {n} range {off}+{len}"
            );
        }
        let err = read(store, &d, n as u64 + 1, 0).unwrap_err();
        assert!(
            matches!(err, LayerStoreError::RangeOutOfBounds { .. }),
            "{err}"
        );
        let err = read(store, &d, 0, n as u64 + 1).unwrap_err();
        assert!(
            matches!(err, LayerStoreError::RangeOutOfBounds { .. }),
            "{err}"
        );
        store.delete(&d).unwrap();
        assert!(matches!(
            store.stat(&d),
            Err(LayerStoreError::BlobNotFound(_))
        ));
        assert!(matches!(
            store.delete(&d),
            Err(LayerStoreError::BlobNotFound(_))
        ));
    }
}

fn assert_nothing_stored(kv: &dyn KvStore, what: &str) {
    assert_eq!(count(kv, UPLOADS), 0, "{what}: sessions left");
    assert_eq!(count(kv, GROUPS), 0, "{what}: chunk groups left");
    assert_eq!(count(kv, CHUNKS), 0, "{what}: chunks left");
}

fn wrong_digest_or_size_stores_nothing(store: &Arc<Store>, kv: &dyn KvStore) {
    let data = bytes(3 * CHUNK + 5, 9);
    let other = bytes(10, 1);
    let s = WriteStart {
        expected_digest: Some(Digest::of(&other)),
        ..start(None, "m")
    };
    let err = store.ingest(s, feed(&data, 100)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, LayerStoreError::DigestMismatch { .. }),
        "{err}"
    );
    assert!(
        msg.contains(&Digest::of(&other).to_string())
            && msg.contains(&Digest::of(&data).to_string()),
        "{msg}"
    );
    assert!(store.stat(&Digest::of(&data)).is_err());
    assert_nothing_stored(kv, "wrong digest");

    let s = WriteStart {
        expected_size: Some(data.len() as u64 + 1),
        ..start(None, "m")
    };
    let err = store.ingest(s, feed(&data, 100)).unwrap_err();
    assert!(matches!(err, LayerStoreError::SizeMismatch { .. }), "{err}");
    assert_nothing_stored(kv, "short stream");

    for piece in [100, CHUNK] {
        let s = WriteStart {
            expected_size: Some(2 * CHUNK as u64),
            ..start(None, "m")
        };
        let err = store.ingest(s, feed(&data, piece)).unwrap_err();
        match err {
            LayerStoreError::TooManyBytes { expected, at } => {
                assert_eq!((expected, at), (2 * CHUNK as u64, 2 * CHUNK as u64 + 1));
            }
            e => panic!("expected TooManyBytes, got {e}"),
        }
        assert_nothing_stored(kv, "long stream");
    }
    assert!(store.stat(&Digest::of(&data)).is_err());
}

fn existing_blob_is_idempotent(store: &Arc<Store>, kv: &dyn KvStore) {
    let data = bytes(2 * CHUNK + 1, 3);
    let first = store
        .ingest(start(Some(&data), "m"), feed(&data, 500))
        .unwrap();
    assert!(!first.already_existed);
    // announced: answered at once, whatever follows
    let again = store
        .ingest(
            start(Some(&data), "m"),
            vec![Feed::Data(Bytes::from_static(b"ignored"))],
        )
        .unwrap();
    assert!(again.already_existed);
    // not announced: found at commit, the second copy dropped
    let third = store.ingest(start(None, "m"), feed(&data, 500)).unwrap();
    assert!(third.already_existed);
    assert_eq!(count(kv, GROUPS), 1, "one copy");
    assert_eq!(count(kv, CHUNKS), 3, "one copy");
    // an announced size that contradicts the stored blob is an error
    let s = WriteStart {
        expected_size: Some(1),
        ..start(Some(&data), "m")
    };
    assert!(matches!(
        store.ingest(s, feed(&data, 500)),
        Err(LayerStoreError::SizeMismatch { .. })
    ));
    store.delete(&first.digest).unwrap();
    assert_nothing_stored(kv, "after delete");
}

fn concurrent_writers_of_one_blob_keep_one_copy(store: &Arc<Store>, kv: &dyn KvStore) {
    let data = Arc::new(bytes(5 * CHUNK + 3, 4));
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let (store, data) = (store.clone(), data.clone());
            std::thread::spawn(move || {
                let announced = i % 2 == 0;
                store
                    .ingest(start(announced.then_some(&data[..]), "m"), feed(&data, 333))
                    .unwrap()
            })
        })
        .collect();
    let outcomes: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(outcomes.iter().all(|o| o.digest == Digest::of(&data)));
    assert!(
        outcomes.iter().filter(|o| !o.already_existed).count() == 1,
        "{outcomes:?}"
    );
    assert_eq!(count(kv, GROUPS), 1);
    assert_eq!(count(kv, CHUNKS), 6);
    assert_eq!(read(store, &Digest::of(&data), 0, 0).unwrap(), *data);
    store.delete(&Digest::of(&data)).unwrap();
    assert_nothing_stored(kv, "after concurrent writers");
}

fn broken_stream_resumes_or_is_cleaned(store: &Arc<Store>, kv: &dyn KvStore) {
    let data = bytes(4 * CHUNK + 10, 5);
    // store-chosen id: nobody can resume, so a broken stream leaves nothing
    let err = store
        .ingest(
            start(Some(&data), "m"),
            vec![Feed::Data(Bytes::copy_from_slice(&data[..2 * CHUNK + 7]))],
        )
        .unwrap_err();
    assert!(matches!(err, LayerStoreError::StreamBroken(_)), "{err}");
    assert_nothing_stored(kv, "broken store-chosen session");

    // client-chosen id: resumable from the last whole chunk
    let s = WriteStart {
        client_upload_id: Some("build-1.layer-0".into()),
        ..start(Some(&data), "m")
    };
    let err = store
        .ingest(
            s.clone(),
            vec![Feed::Data(Bytes::copy_from_slice(&data[..2 * CHUNK + 7]))],
        )
        .unwrap_err();
    assert!(matches!(err, LayerStoreError::StreamBroken(_)));
    let status = store.upload_status("build-1.layer-0").unwrap();
    assert_eq!(status.offset, 2 * CHUNK as u64);
    assert!(
        store.stat(&Digest::of(&data)).is_err(),
        "never visible before the commit"
    );
    // a second new session with the same id is refused
    assert!(matches!(
        store.ingest(s, feed(&data, 100)),
        Err(LayerStoreError::UploadExists(_))
    ));
    let resume = |offset: usize| WriteStart {
        upload_id: Some("build-1.layer-0".into()),
        offset: offset as u64,
        ..WriteStart::default()
    };
    let err = store
        .ingest(resume(CHUNK), feed(&data[CHUNK..], 100))
        .unwrap_err();
    assert!(
        matches!(err, LayerStoreError::OffsetMismatch { held, .. } if held == 2 * CHUNK as u64),
        "{err}"
    );
    let out = store
        .ingest(resume(2 * CHUNK), feed(&data[2 * CHUNK..], 100))
        .unwrap();
    assert_eq!(out.digest, Digest::of(&data));
    assert_eq!(out.upload_id, "build-1.layer-0");
    assert_eq!(read(store, &out.digest, 0, 0).unwrap(), data);
    assert!(matches!(
        store.upload_status("build-1.layer-0"),
        Err(LayerStoreError::UploadNotFound(_))
    ));

    // abort frees what the session held
    let s = WriteStart {
        client_upload_id: Some("to-abort".into()),
        ..start(None, "m")
    };
    let _ = store
        .ingest(s, vec![Feed::Data(Bytes::from(data.clone()))])
        .unwrap_err();
    store.abort_upload("to-abort").unwrap();
    assert!(matches!(
        store.abort_upload("to-abort"),
        Err(LayerStoreError::UploadNotFound(_))
    ));
    store.delete(&out.digest).unwrap();
    assert_nothing_stored(kv, "after abort");

    let bad = WriteStart {
        client_upload_id: Some("../etc".into()),
        ..start(None, "m")
    };
    assert!(matches!(
        store.ingest(bad, feed(b"x", 1)),
        Err(LayerStoreError::InvalidField { .. })
    ));
}

fn put(store: &Arc<Store>, data: &[u8], media: &str, labels: &[(&str, &str)]) -> Digest {
    let s = WriteStart {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..start(None, media)
    };
    store.ingest(s, feed(data, 4096)).unwrap().digest
}

fn list_filters_and_pages(store: &Arc<Store>) {
    let mut layers: Vec<Digest> = (0..7)
        .map(|i| {
            put(
                store,
                &bytes(10 + i, 100 + i as u32),
                media_type::OCI_LAYER_TAR,
                &[("build", if i % 2 == 0 { "a" } else { "b" })],
            )
        })
        .collect();
    let cfg = put(store, b"{}", media_type::OCI_CONFIG, &[]);
    layers.sort();
    let filter = ListFilter {
        media_type: Some(media_type::OCI_LAYER_TAR.into()),
        ..ListFilter::default()
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(&filter, after, 3).unwrap();
        assert!(page.blobs.len() <= 3);
        seen.extend(page.blobs.iter().map(|b| b.digest));
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    assert_eq!(seen, layers, "every layer once, in digest order");
    let by_label = store
        .list(
            &ListFilter {
                labels: [("build".to_string(), "a".to_string())].into(),
                ..ListFilter::default()
            },
            None,
            100,
        )
        .unwrap();
    assert_eq!(by_label.blobs.len(), 4);
    assert!(by_label.blobs.iter().all(|b| b.labels["build"] == "a"));
    for d in layers.iter().chain([&cfg]) {
        store.delete(d).unwrap();
    }
}

/// Walks every page of an unfiltered listing asking for `limit` a page; returns the blobs.
fn list_all(store: &Arc<Store>, limit: usize) -> Vec<store::BlobInfo> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(&ListFilter::default(), after, limit).unwrap();
        let bytes: usize = page
            .blobs
            .iter()
            .map(|b| {
                128 + b.media_type.len()
                    + b.labels
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 16)
                        .sum::<usize>()
            })
            .sum();
        assert!(
            bytes <= store::LIST_PAGE_BYTES,
            "a page of {} blobs takes {bytes} bytes",
            page.blobs.len()
        );
        all.extend(page.blobs);
        match page.next_after {
            Some(a) => after = Some(a),
            None => return all,
        }
    }
}

fn metadata_is_bounded_and_pages_fit_a_message(store: &Arc<Store>, kv: &dyn KvStore) {
    // a media type or labels past the bounds are refused, before anything is stored
    let huge = "a".repeat(1 << 20);
    let refused = [
        start(None, &huge),
        WriteStart {
            labels: (0..65).map(|i| (format!("k{i}"), String::new())).collect(),
            ..start(None, "m")
        },
        WriteStart {
            labels: [("k".to_string(), "v".repeat(4097))].into(),
            ..start(None, "m")
        },
        WriteStart {
            labels: (0..5)
                .map(|i| (format!("k{i}"), "v".repeat(4000)))
                .collect(),
            ..start(None, "m")
        },
    ];
    for s in refused {
        let err = store.ingest(s, feed(b"x", 1)).unwrap_err();
        assert!(matches!(err, LayerStoreError::InvalidField { .. }), "{err}");
        assert!(
            err.to_string().len() < 200,
            "the value is not repeated: {err}"
        );
    }
    assert!(matches!(
        store.create_lease(
            "",
            Duration::from_secs(60),
            [("k".to_string(), huge.clone())].into()
        ),
        Err(LayerStoreError::InvalidField { .. })
    ));
    assert!(list_all(store, 1000).is_empty(), "nothing was stored");

    // blobs at the bounds: a page of 1000 asked for holds only what fits a message
    let big_labels: Vec<(String, String)> = (0..4)
        .map(|i| (format!("k{i}"), "v".repeat(4000)))
        .collect();
    let labels: Vec<(&str, &str)> = big_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut written: Vec<Digest> = (0..160u32)
        .map(|i| put(store, &i.to_be_bytes(), media_type::OCI_LAYER_TAR, &labels))
        .collect();
    written.sort();
    let first = store.list(&ListFilter::default(), None, 1000).unwrap();
    assert!(
        first.blobs.len() < written.len() && first.next_after.is_some(),
        "{} blobs in one page",
        first.blobs.len()
    );
    let listed: Vec<Digest> = list_all(store, 1000).iter().map(|b| b.digest).collect();
    assert_eq!(listed, written, "every blob once, in digest order");

    // records stored before the bounds existed are listed within them
    let legacy: Vec<Digest> = (0..20u32)
        .map(|i| Digest::of(format!("legacy {i}").as_bytes()))
        .collect();
    for d in &legacy {
        let r = store::record::BlobRecord {
            size: 0,
            media_type: huge.clone(),
            labels: [("k".to_string(), huge.clone())].into(),
            created_ns: 1,
            group: "00".repeat(16),
            chunk_size: CHUNK as u64,
        };
        kv.put(
            store::BLOBS,
            d.as_bytes(),
            &store::record::encode(&r),
            Durability::Buffered,
        )
        .unwrap();
    }
    let all = list_all(store, 100);
    assert_eq!(all.len(), written.len() + legacy.len());
    for b in all.iter().filter(|b| legacy.contains(&b.digest)) {
        assert_eq!(b.media_type.len(), 255);
        assert!(b.labels.is_empty());
    }
    // a stat still shows such a record whole
    assert_eq!(store.stat(&legacy[0]).unwrap().media_type, huge);
    for d in &legacy {
        kv.delete(store::BLOBS, d.as_bytes(), Durability::Buffered)
            .unwrap();
    }
    for d in &written {
        store.delete(d).unwrap();
    }
}

fn cache_entries(store: &Arc<Store>) {
    let layer = put(store, b"layer", media_type::OCI_LAYER_TAR, &[]);
    let parent = Digest::of(b"parent");
    let keys: Vec<Digest> = (0..5)
        .map(|i| Digest::of(format!("k{i}").as_bytes()))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        store
            .put_cache_entry(CacheEntry {
                key: *k,
                preimage: format!("{{\"step\":{i}}}"),
                layer_digest: (i == 0).then_some(layer),
                config: "{}".into(),
                parent_key: (i < 3).then_some(parent),
                created_ns: 0,
            })
            .unwrap();
    }
    let e = store.get_cache_entry(&keys[0]).unwrap();
    assert_eq!(e.layer_digest, Some(layer));
    assert_eq!(e.preimage, "{\"step\":0}");
    assert!(e.created_ns > 0);
    // idempotent: the first creation time stays
    store
        .put_cache_entry(CacheEntry {
            created_ns: 0,
            ..e.clone()
        })
        .unwrap();
    assert_eq!(
        store.get_cache_entry(&keys[0]).unwrap().created_ns,
        e.created_ns
    );
    let children = store.list_cache_entries(Some(&parent), None, 2).unwrap();
    assert_eq!(children.entries.len(), 2);
    let rest = store
        .list_cache_entries(Some(&parent), children.next_after, 2)
        .unwrap();
    assert_eq!(rest.entries.len(), 1);
    assert!(rest.next_after.is_none());
    assert_eq!(
        store
            .list_cache_entries(None, None, 100)
            .unwrap()
            .entries
            .len(),
        5
    );
    assert!(matches!(
        store.get_cache_entry(&Digest::of(b"nope")),
        Err(LayerStoreError::CacheEntryNotFound(_))
    ));
    let missing = Digest::of(b"missing layer");
    let err = store
        .put_cache_entry(CacheEntry {
            layer_digest: Some(missing),
            ..e.clone()
        })
        .unwrap_err();
    assert!(
        matches!(err, LayerStoreError::CacheLayerMissing { .. }),
        "{err}"
    );
    // the cache result is a GC root until the cache is pruned
    let guard = store.begin_gc_blocking();
    let report = guard.collect(&GcRequest::default()).unwrap();
    assert!(!report.removed.contains(&layer));
    let report = guard
        .collect(&GcRequest {
            prune_cache: true,
            ..GcRequest::default()
        })
        .unwrap();
    drop(guard);
    assert_eq!(report.cache_entries_removed, 5);
    assert!(report.removed.contains(&layer));
    assert!(
        store
            .list_cache_entries(None, None, 100)
            .unwrap()
            .entries
            .is_empty()
    );
    assert!(
        store
            .list_cache_entries(Some(&parent), None, 100)
            .unwrap()
            .entries
            .is_empty()
    );
}

/// Entries with large preimages or configs are paged by size, not only by count: a page
/// stays within LIST_PAGE_BYTES (a single larger entry comes alone), and paging still
/// reaches every entry, listing all or a parent's children.
fn cache_pages_fit_a_message(store: &Arc<Store>) {
    let parent = Digest::of(b"big parent");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(700 << 10));
    let keys: Vec<Digest> = (0..5)
        .map(|i| Digest::of(format!("big{i}").as_bytes()))
        .collect();
    for k in &keys {
        store
            .put_cache_entry(CacheEntry {
                key: *k,
                preimage: "{}".into(),
                layer_digest: None,
                config: big.clone(),
                parent_key: Some(parent),
                created_ns: 0,
            })
            .unwrap();
    }
    for by_parent in [None, Some(&parent)] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.list_cache_entries(by_parent, after, 100).unwrap();
            let bytes: usize = page.entries.iter().map(|e| e.config.len()).sum();
            assert!(
                page.entries.len() == 1 || bytes <= store::LIST_PAGE_BYTES,
                "{} entries, {bytes} bytes",
                page.entries.len()
            );
            assert!(page.entries.len() <= 2, "700 KiB entries, 2 MiB pages");
            seen.extend(page.entries.iter().map(|e| e.key));
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        let big: Vec<Digest> = seen.into_iter().filter(|k| keys.contains(k)).collect();
        assert_eq!(big.len(), 5, "every entry is reached ({by_parent:?})");
    }
    // leave the cache empty for the tests after this one
    let guard = store.begin_gc_blocking();
    let report = guard
        .collect(&GcRequest {
            prune_cache: true,
            ..GcRequest::default()
        })
        .unwrap();
    assert_eq!(report.cache_entries_removed, 5);
}

fn leases(store: &Arc<Store>) {
    let kept = put(store, b"leased", "m", &[]);
    let l = store
        .create_lease("build-7", Duration::from_secs(60), BTreeMap::new())
        .unwrap();
    assert_eq!(l.id, "build-7");
    assert!(matches!(
        store.create_lease("build-7", Duration::from_secs(60), BTreeMap::new()),
        Err(LayerStoreError::LeaseExists(_))
    ));
    let future = Digest::of(b"not written yet");
    let l = store
        .add_lease_resources("build-7", &[kept, future])
        .unwrap();
    assert_eq!(l.digests.len(), 2);
    assert_eq!(store.list_leases().unwrap().len(), 1);
    // renewed: a later expiry, the same digests
    let renewed = store
        .extend_lease("build-7", Duration::from_secs(3600))
        .unwrap();
    assert!(renewed.expires_ns > l.expires_ns + 3_000_000_000_000);
    assert_eq!(renewed.digests.len(), 2);
    assert!(matches!(
        store.extend_lease("no-such-lease", Duration::from_secs(60)),
        Err(LayerStoreError::LeaseNotFound(_))
    ));
    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    assert!(!report.removed.contains(&kept), "a leased blob survives GC");
    store.delete_lease("build-7").unwrap();
    assert!(matches!(
        store.delete_lease("build-7"),
        Err(LayerStoreError::LeaseNotFound(_))
    ));
    // an expired lease protects nothing and is gone from the list
    store
        .create_lease("short", Duration::ZERO, BTreeMap::new())
        .unwrap();
    assert!(store.list_leases().unwrap().is_empty());
    assert!(matches!(
        store.add_lease_resources("short", &[kept]),
        Err(LayerStoreError::LeaseNotFound(_))
    ));
    assert!(
        matches!(
            store.extend_lease("short", Duration::from_secs(60)),
            Err(LayerStoreError::LeaseNotFound(_))
        ),
        "an expired lease is not brought back"
    );
    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    assert!(report.removed.contains(&kept));
}

/// An image: layers, config, manifest; returns (manifest, config, layers).
fn image(
    store: &Arc<Store>,
    seed: u32,
    shared_layer: Option<Digest>,
) -> (Digest, Digest, Vec<Digest>) {
    let mut layers = vec![put(
        store,
        &bytes(CHUNK * 2 + 1, seed),
        media_type::OCI_LAYER_TAR,
        &[],
    )];
    layers.extend(shared_layer);
    let config = put(
        store,
        format!("{{\"seed\":{seed}}}").as_bytes(),
        media_type::OCI_CONFIG,
        &[],
    );
    let layer_json: Vec<String> = layers
        .iter()
        .map(|d| {
            format!(
                r#"{{"mediaType":"{}","digest":"{d}","size":1}}"#,
                media_type::OCI_LAYER_TAR
            )
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":1}},"layers":[{}]}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG,
        layer_json.join(",")
    );
    let m = put(store, manifest.as_bytes(), media_type::OCI_MANIFEST, &[]);
    (m, config, layers)
}

fn gc_marks_from_roots_and_sweeps(store: &Arc<Store>) {
    let base = put(store, &bytes(3000, 77), media_type::OCI_LAYER_TAR, &[]);
    let (m1, c1, l1) = image(store, 1, Some(base));
    let (m2, c2, l2) = image(store, 2, Some(base));
    let index = put(
        store,
        format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{m2}","size":1}}]}}"#).as_bytes(),
        media_type::OCI_INDEX,
        &[],
    );
    let junk = put(store, b"junk", "application/octet-stream", &[]);

    let dry = store
        .begin_gc_blocking()
        .collect(&GcRequest {
            dry_run: true,
            roots: vec![m1, index],
            ..GcRequest::default()
        })
        .unwrap();
    assert_eq!(dry.removed, vec![junk]);
    assert!(store.stat(&junk).is_ok(), "a dry run removes nothing");

    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest {
            roots: vec![index],
            ..GcRequest::default()
        })
        .unwrap();
    let mut expect = vec![junk, m1, c1, l1[0]];
    expect.sort();
    let mut removed = report.removed.clone();
    removed.sort();
    assert_eq!(removed, expect);
    for d in [index, m2, c2, l2[0], base] {
        assert!(store.stat(&d).is_ok(), "{d} is reachable from the index");
    }
    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    assert_eq!(report.removed.len(), 5);
    assert!(
        store
            .list(&ListFilter::default(), None, 1000)
            .unwrap()
            .blobs
            .is_empty()
    );
}

/// The tag index's check of a tag's target: a lease, the target stat'ed under it, the tag
/// moved, the lease deleted. A GC that read the tags before the move must keep the target
/// even when the lease is gone by the time it reads the leases.
fn a_target_checked_under_a_lease_survives_gc_until_its_tag_lands(store: &Arc<Store>) {
    let hour = Duration::from_secs(3600);
    let (m, c, l) = image(store, 40, None);
    let image = [m, c, l[0]];
    let lease = store.create_lease("", hour, BTreeMap::new()).unwrap();
    let info = store.stat_leased(&m, &lease.id).unwrap();
    assert_eq!(info.media_type, media_type::OCI_MANIFEST);
    // a GC begins and reads the tags: the tag has not moved, so no tag names m
    let guard = store.begin_gc_blocking();
    let tags_read_by_the_gc = Vec::new();
    // the tag moves and the check's lease ends, before the GC reads the leases
    store.delete_lease(&lease.id).unwrap();
    let report = guard
        .collect(&GcRequest {
            roots: tags_read_by_the_gc,
            ..GcRequest::default()
        })
        .unwrap();
    drop(guard);
    for d in image {
        assert!(!report.removed.contains(&d), "{d} was swept: {report:?}");
        assert!(store.stat(&d).is_ok());
    }

    // a target checked while a GC runs is kept by that GC
    let guard = store.begin_gc_blocking();
    let lease = store.create_lease("", hour, BTreeMap::new()).unwrap();
    store.stat_leased(&m, &lease.id).unwrap();
    let report = guard.collect(&GcRequest::default()).unwrap();
    drop(guard);
    assert!(!report.removed.contains(&m), "{report:?}");
    store.delete_lease(&lease.id).unwrap();

    // an absent blob joins no lease; a lease that ended is refused by name
    let lease = store.create_lease("", hour, BTreeMap::new()).unwrap();
    let absent = Digest::of(b"absent");
    assert!(matches!(
        store.stat_leased(&absent, &lease.id),
        Err(LayerStoreError::BlobNotFound(d)) if d == absent
    ));
    store.delete_lease(&lease.id).unwrap();
    assert!(matches!(
        store.stat_leased(&m, &lease.id),
        Err(LayerStoreError::LeaseGone(id)) if id == lease.id
    ));

    // nothing keeps it any more: the next GC takes the image
    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    for d in image {
        assert!(report.removed.contains(&d), "{d} kept: {report:?}");
    }
}

fn deletion_refuses_what_tags_and_leases_reach(store: &Arc<Store>) {
    let hour = Duration::from_secs(3600);
    let (m1, c1, l1) = image(store, 41, None);
    let (m2, c2, l2) = image(store, 42, None);
    let tag = "docker.io/library/a:1".to_string();
    let tags = vec![(tag.clone(), m1)];
    for d in [m1, c1, l1[0]] {
        let err = store
            .begin_gc_blocking()
            .delete_unreferenced(&d, &tags)
            .unwrap_err();
        assert!(
            matches!(&err, LayerStoreError::BlobInUse { holder: Holder::Tag(n), .. } if *n == tag),
            "{err}"
        );
        assert!(err.to_string().contains(&tag), "{err}");
        assert!(store.stat(&d).is_ok());
    }
    let lease = store.create_lease("", hour, BTreeMap::new()).unwrap();
    store.add_lease_resources(&lease.id, &[l2[0]]).unwrap();
    let err = store
        .begin_gc_blocking()
        .delete_unreferenced(&l2[0], &tags)
        .unwrap_err();
    assert!(
        matches!(&err, LayerStoreError::BlobInUse { holder: Holder::Lease(id), .. } if *id == lease.id),
        "{err}"
    );
    // nothing holds the second image's manifest or config: they go
    for d in [m2, c2] {
        store
            .begin_gc_blocking()
            .delete_unreferenced(&d, &tags)
            .unwrap();
        assert!(store.stat(&d).is_err());
    }
    // a lease that ends while the deletion is decided still keeps what it held
    let guard = store.begin_gc_blocking();
    store.delete_lease(&lease.id).unwrap();
    let err = guard.delete_unreferenced(&l2[0], &tags).unwrap_err();
    assert!(
        matches!(
            &err,
            LayerStoreError::BlobInUse {
                holder: Holder::InProgress,
                ..
            }
        ),
        "{err}"
    );
    drop(guard);
    store
        .begin_gc_blocking()
        .delete_unreferenced(&l2[0], &tags)
        .unwrap();
    assert!(matches!(
        store.begin_gc_blocking().delete_unreferenced(&l2[0], &tags),
        Err(LayerStoreError::BlobNotFound(_))
    ));
    store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
}

fn gc_during_a_write_keeps_it(store: &Arc<Store>) {
    let data = Arc::new(bytes(6 * CHUNK + 1, 8));
    let (tx, rx) = std::sync::mpsc::sync_channel::<Feed>(0);
    let writer = {
        let (store, data) = (store.clone(), data.clone());
        std::thread::spawn(move || {
            let s = WriteStart {
                client_upload_id: Some("during-gc".into()),
                ..start(Some(&data), media_type::OCI_LAYER_TAR)
            };
            store.ingest(s, rx)
        })
    };
    tx.send(Feed::Data(Bytes::copy_from_slice(&data[..3 * CHUNK + 1])))
        .unwrap();
    tx.send(Feed::Data(Bytes::new())).unwrap(); // the first piece is consumed once this one is taken
    let guard = store.begin_gc_blocking();
    let report = guard.collect(&GcRequest::default()).unwrap();
    assert_eq!(report.uploads_swept, 0, "an upload in flight is not swept");
    // the write finishes while the GC is still "running"
    tx.send(Feed::Data(Bytes::copy_from_slice(&data[3 * CHUNK + 1..])))
        .unwrap();
    tx.send(Feed::End).unwrap();
    let out = writer.join().unwrap().unwrap();
    let report = guard.collect(&GcRequest::default()).unwrap();
    assert!(
        !report.removed.contains(&out.digest),
        "a blob committed during GC survives it"
    );
    drop(guard);
    assert_eq!(read(store, &out.digest, 0, 0).unwrap(), *data);
    assert!(store.verify(&[out.digest]).unwrap().corrupt.is_empty());
    store.delete(&out.digest).unwrap();
}

fn usage_by_kind_and_roots(store: &Arc<Store>) {
    let base = put(store, &bytes(5000, 55), media_type::OCI_LAYER_TAR, &[]);
    let (m1, c1, l1) = image(store, 11, Some(base));
    let (m2, ..) = image(store, 12, Some(base));
    let ctx = put(store, &bytes(100, 1), media_type::BUILD_CONTEXT, &[]);
    let size = |d: &Digest| store.stat(d).unwrap().size;
    let u = store.usage(&[m1, m2], &[]).unwrap();
    let kinds: BTreeMap<&str, (u64, u64)> = u
        .kinds
        .iter()
        .map(|k| (k.kind, (k.count, k.bytes)))
        .collect();
    assert_eq!(kinds["layers"].0, 3);
    assert_eq!(kinds["configs"].0, 2);
    assert_eq!(kinds["manifests"].0, 2);
    assert_eq!(kinds["contexts"], (1, 100));
    assert_eq!(kinds["other"], (0, 0));
    assert_eq!(u.shared_bytes, 5000);
    assert_eq!(u.reclaimable_bytes, 100, "only the context is unreachable");
    let u1 = store.usage(&[m1], &[]).unwrap();
    assert_eq!(u1.unique_bytes, size(&m1) + size(&c1) + size(&l1[0]) + 5000);
    assert_eq!(u1.shared_bytes, 0);
    // a pinned root (a tag) keeps without counting as shared
    let u2 = store.usage(&[m1], &[m2]).unwrap();
    assert_eq!(u2.reclaimable_bytes, 100);
    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    assert_eq!(report.removed.len(), 8);
    let _ = ctx;
}

/// Records about an image or layer (`strata.subject`), and what they name in turn
/// (`strata.gc.ref.*`), live exactly as long as that image or layer.
fn gc_keeps_records_about_what_it_keeps(store: &Arc<Store>) {
    const RECORD: &str = "application/vnd.strata.record.v1+json";
    let (m1, _, l1) = image(store, 21, None);
    let (m2, c2, l2) = image(store, 22, None);
    let m1s = m1.to_string();
    let m2s = m2.to_string();
    let layer = l1[0].to_string();
    let compressed = Digest::of(b"the layer, compressed (not stored)");
    let compressed_s = compressed.to_string();
    let repo_digest = put(store, b"m1 is r/app@x", RECORD, &[("strata.subject", &m1s)]);
    let compressed_form = put(
        store,
        b"layer 1 compresses to y",
        RECORD,
        &[
            ("strata.subject", &layer),
            ("strata.gc.ref.compressed", &compressed_s),
        ],
    );
    let location = put(
        store,
        b"y is in r/app",
        RECORD,
        &[("strata.subject", &compressed_s)],
    );
    let of_m2 = put(store, b"m2 is r/old@z", RECORD, &[("strata.subject", &m2s)]);
    let about_nothing = put(
        store,
        b"a record of a layer long gone",
        RECORD,
        &[("strata.subject", &Digest::of(b"gone").to_string())],
    );
    let records = [repo_digest, compressed_form, location];
    let records_bytes: u64 = records.iter().map(|d| store.stat(d).unwrap().size).sum();

    // du: what m1 keeps is not reclaimable, m1's records included; m2 and its record are
    let size = |d: &Digest| store.stat(d).unwrap().size;
    let u = store.usage(&[m1], &[]).unwrap();
    assert_eq!(
        u.reclaimable_bytes,
        [m2, c2, l2[0], of_m2, about_nothing]
            .iter()
            .map(size)
            .sum::<u64>()
    );
    assert!(u.unique_bytes >= records_bytes, "m1's records are m1's");

    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest {
            roots: vec![m1],
            ..GcRequest::default()
        })
        .unwrap();
    for d in records.iter().chain([&m1, &l1[0]]) {
        assert!(store.stat(d).is_ok(), "{d} belongs to a kept image");
    }
    assert!(report.removed.contains(&m2) && report.removed.contains(&of_m2));
    assert!(report.removed.contains(&about_nothing));
    assert!(store.stat(&of_m2).is_err(), "a record goes with its image");

    // a lease keeps an image's records just as a root does
    let lease = store
        .create_lease("records", Duration::from_secs(60), BTreeMap::new())
        .unwrap();
    store.add_lease_resources(&lease.id, &[m1]).unwrap();
    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    assert!(report.removed.is_empty(), "{:?}", report.removed);
    store.delete_lease(&lease.id).unwrap();
    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    assert_eq!(report.removed.len(), 6, "m1, its config, layer and records");
}

/// A blob labelled `strata.gc.root` (a digest reference) is a root: it and what its
/// `strata.gc.ref.*` labels name are kept, and counted as kept by usage, until it is deleted.
fn gc_roots_by_label_keep_what_they_name(store: &Arc<Store>) {
    const RECORD: &str = "application/vnd.strata.record.v1+json";
    let (m, c, l) = image(store, 31, None);
    let ms = m.to_string();
    let reference = put(
        store,
        b"r/app@x is m",
        RECORD,
        &[
            ("strata.gc.root", "true"),
            ("strata.subject", &ms),
            ("strata.gc.ref.image", &ms),
        ],
    );
    let kept = [reference, m, c, l[0]];
    // asked for by name, what the reference reaches is refused, naming it
    for d in &kept[1..] {
        let err = store
            .begin_gc_blocking()
            .delete_unreferenced(d, &[])
            .unwrap_err();
        assert!(
            matches!(&err, LayerStoreError::BlobInUse { holder: Holder::Root(r), .. } if *r == reference),
            "{err}"
        );
        assert!(err.to_string().contains("strata rmi"), "{err}");
    }
    let u = store.usage(&[], &[]).unwrap();
    let total: u64 = u.kinds.iter().map(|k| k.bytes).sum();
    let kept_bytes: u64 = kept.iter().map(|d| store.stat(d).unwrap().size).sum();
    assert!(
        u.reclaimable_bytes <= total - kept_bytes,
        "a root is not reclaimable"
    );
    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    for d in &kept {
        assert!(!report.removed.contains(d), "{d} is reached from a root");
        assert!(store.stat(d).is_ok(), "{d} is kept");
    }
    // a tag on the image does not hold the reference (a record of what the tag reaches)
    let tags = vec![("docker.io/library/app:1".to_string(), m)];
    store
        .begin_gc_blocking()
        .delete_unreferenced(&reference, &tags)
        .unwrap();
    assert!(store.stat(&reference).is_err());
    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    for d in &kept[1..] {
        assert!(report.removed.contains(d), "{d} went with its reference");
    }
}

fn verify_catches_a_flipped_byte(store: &Arc<Store>, kv: &dyn KvStore) {
    let data = bytes(3 * CHUNK, 21);
    let good = put(store, b"fine", "m", &[]);
    let d = put(store, &data, "m", &[]);
    assert!(store.verify(&[]).unwrap().corrupt.is_empty());
    // flip one byte of the second chunk, as bit rot would
    let chunks = kv.scan(CHUNKS, b"", b"", usize::MAX).unwrap();
    let (key, mut value) = chunks
        .into_iter()
        .find(|(_, v)| v.len() == CHUNK + 4 && v[..CHUNK] == data[CHUNK..2 * CHUNK])
        .expect("the second chunk");
    value[100] ^= 0x01;
    kv.put(CHUNKS, &key, &value, Durability::Sync).unwrap();
    let report = store.verify(&[]).unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].digest, d);
    assert!(
        report.corrupt[0].reason.contains("chunk 1"),
        "{}",
        report.corrupt[0].reason
    );
    let err = read(store, &d, 0, 0).unwrap_err();
    assert!(matches!(err, LayerStoreError::CorruptBlob { .. }), "{err}");
    assert!(
        read(store, &d, 0, CHUNK as u64).is_ok(),
        "the intact first chunk still reads"
    );
    assert!(matches!(
        store.verify(&[Digest::of(b"absent")]),
        Err(LayerStoreError::BlobNotFound(_))
    ));
    store.delete(&d).unwrap();
    store.delete(&good).unwrap();
}

fn restart_rehashes_resumable_sessions_and_sweeps_the_rest(kv: Arc<dyn KvStore>) {
    let data = bytes(5 * CHUNK + 9, 31);
    {
        let store = Store::open(kv.clone(), settings()).unwrap();
        let s = WriteStart {
            client_upload_id: Some("survivor".into()),
            ..start(Some(&data), "m")
        };
        let _ = store
            .ingest(
                s,
                vec![Feed::Data(Bytes::copy_from_slice(&data[..3 * CHUNK + 5]))],
            )
            .unwrap_err();
        // a crash mid-write of a store-chosen session leaves its chunks: forge that state
        let mut b = strata_kv::WriteBatch::new();
        let rec = store::record::SessionRecord {
            group: "ab".repeat(16),
            expected_digest: None,
            expected_size: None,
            media_type: "m".into(),
            labels: BTreeMap::new(),
            offset: CHUNK as u64,
            chunk_size: CHUNK as u64,
            resumable: false,
            created_ns: 1,
            updated_ns: 1,
        };
        b.put(UPLOADS, "crashed", store::record::encode(&rec));
        b.put(GROUPS, vec![0xab; 16], "u:crashed");
        let mut key = vec![0xab; 16];
        key.extend_from_slice(&0u32.to_be_bytes());
        b.put(CHUNKS, key, vec![0; CHUNK + 4]);
        // and an orphaned group whose owner is gone
        b.put(GROUPS, vec![0xcd; 16], "b:".to_string() + &"0".repeat(64));
        let mut key = vec![0xcd; 16];
        key.extend_from_slice(&0u32.to_be_bytes());
        b.put(CHUNKS, key, vec![0; 8]);
        kv.write(b, Durability::Sync).unwrap();
    }
    let store = Store::open(kv.clone(), settings()).unwrap();
    assert_eq!(
        count(kv.as_ref(), UPLOADS),
        1,
        "only the resumable session is left"
    );
    // the crashed session went with its group; the forged orphan (a state no crash can
    // leave: every owner change is one batch) is not looked for at open, which would read
    // every group, but by the next GC
    assert_eq!(
        count(kv.as_ref(), GROUPS),
        2,
        "the crashed session's group is gone"
    );
    assert_eq!(count(kv.as_ref(), CHUNKS), 4);
    let report = store
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    assert_eq!(report.orphan_groups, 1);
    assert_eq!(count(kv.as_ref(), GROUPS), 1, "the orphan group is gone");
    assert_eq!(count(kv.as_ref(), CHUNKS), 3);
    assert_eq!(
        store.upload_status("survivor").unwrap().offset,
        3 * CHUNK as u64
    );
    let s = WriteStart {
        upload_id: Some("survivor".into()),
        offset: 3 * CHUNK as u64,
        ..WriteStart::default()
    };
    let out = store.ingest(s, feed(&data[3 * CHUNK..], 1000)).unwrap();
    assert_eq!(
        out.digest,
        Digest::of(&data),
        "the re-hashed session continues correctly"
    );
    store.delete(&out.digest).unwrap();
    // a stale session is swept by GC
    let stale = Store::open(
        kv.clone(),
        Settings {
            upload_ttl: Duration::ZERO,
            ..settings()
        },
    )
    .unwrap();
    let s = WriteStart {
        client_upload_id: Some("stale".into()),
        ..start(None, "m")
    };
    let _ = stale
        .ingest(s, vec![Feed::Data(Bytes::from(data.clone()))])
        .unwrap_err();
    let report = stale
        .begin_gc_blocking()
        .collect(&GcRequest::default())
        .unwrap();
    assert_eq!(report.uploads_swept, 1);
    assert_nothing_stored(kv.as_ref(), "after the stale sweep");
}

#[test]
fn store_logic_on_the_memory_store() {
    suite(Arc::new(MemoryStore::new(store::SPACES)));
}

#[test]
fn store_logic_on_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(
        RocksStore::open(dir.path(), store::SPACES).unwrap(),
    ));
}

/// Bytes of RocksDB table files under `dir`.
fn table_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sst"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn on_rocksdb_a_deleted_or_discarded_blob_frees_its_disk_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let kv: Arc<dyn KvStore> = Arc::new(RocksStore::open(dir.path(), store::SPACES).unwrap());
    let store = Store::open(kv, settings()).unwrap();
    let data = bytes(600 * CHUNK, 77);
    let empty = table_bytes(dir.path());
    let d = store
        .ingest(start(Some(&data), "m"), feed(&data, 64 << 10))
        .unwrap()
        .digest;
    let full = table_bytes(dir.path());
    assert!(full >= empty + data.len() as u64 / 2, "{empty} -> {full}");
    store.delete(&d).unwrap();
    let after = table_bytes(dir.path());
    assert!(
        after < empty + (data.len() as u64) / 10,
        "{full} -> {after}"
    );
    // a second writer of a blob already there discards its copy, and its files with it
    store
        .ingest(start(Some(&data), "m"), feed(&data, 64 << 10))
        .unwrap();
    let once = table_bytes(dir.path());
    let s = WriteStart {
        media_type: "m".into(),
        ..WriteStart::default()
    };
    let out = store.ingest(s, feed(&data, 64 << 10)).unwrap();
    assert!(out.already_existed);
    let twice = table_bytes(dir.path());
    assert!(twice < once + (data.len() as u64) / 10, "{once} -> {twice}");
}

/// A store that counts the writes it was asked to sync.
struct CountingSyncs {
    inner: MemoryStore,
    synced: std::sync::atomic::AtomicUsize,
}

impl KvStore for CountingSyncs {
    fn get(&self, space: Space, key: &[u8]) -> strata_kv::Result<Option<Vec<u8>>> {
        self.inner.get(space, key)
    }
    fn write(&self, batch: strata_kv::WriteBatch, durability: Durability) -> strata_kv::Result<()> {
        if matches!(durability, Durability::Sync) {
            self.synced
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.inner.write(batch, durability)
    }
    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> strata_kv::Result<Vec<strata_kv::Entry>> {
        self.inner.scan(space, prefix, start, limit)
    }
    fn scan_rev(
        &self,
        space: Space,
        prefix: &[u8],
        before: &[u8],
        limit: usize,
    ) -> strata_kv::Result<Vec<strata_kv::Entry>> {
        self.inner.scan_rev(space, prefix, before, limit)
    }
    fn flush(&self, space: Space) -> strata_kv::Result<()> {
        self.inner.flush(space)
    }
    fn bulk(&self, space: Space) -> strata_kv::Result<Box<dyn strata_kv::BulkLoad>> {
        self.inner.bulk(space)
    }
    fn drop_files_in_range(&self, space: Space, from: &[u8], to: &[u8]) -> strata_kv::Result<()> {
        self.inner.drop_files_in_range(space, from, to)
    }
}

#[test]
fn the_tag_index_check_of_a_target_syncs_nothing() {
    let kv = Arc::new(CountingSyncs {
        inner: MemoryStore::new(store::SPACES),
        synced: Default::default(),
    });
    let store = Store::open(kv.clone(), settings()).unwrap();
    let m = put(&store, b"{}", media_type::OCI_MANIFEST, &[]);
    let before = kv.synced.load(std::sync::atomic::Ordering::Relaxed);
    // what the tag index does for every move: lease, stat under it, delete
    for _ in 0..10 {
        let lease = store
            .create_lease("", Duration::from_secs(60), BTreeMap::new())
            .unwrap();
        store.stat_leased(&m, &lease.id).unwrap();
        store.delete_lease(&lease.id).unwrap();
    }
    assert_eq!(
        kv.synced.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "a lease's life costs no fsync"
    );
}
