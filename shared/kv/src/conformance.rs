//! One behaviour suite run against every [`KvStore`] implementation, so the in-memory twin
//! and RocksDB cannot drift apart.

use crate::{Durability, KvStore, Space, WriteBatch};

/// The spaces the suite needs; open the store under test with these.
pub const SPACES: &[Space] = &[Space::small("records"), Space::large("content")];

const R: Space = SPACES[0];
const C: Space = SPACES[1];

/// Runs every check; panics with the name of the first that fails.
pub fn run(store: &dyn KvStore) {
    get_put_delete(store);
    batches_are_atomic_across_spaces(store);
    unknown_space_is_an_error(store);
    scan_respects_prefix_start_and_limit(store);
    scan_rev_respects_prefix_before_and_limit(store);
    large_values_round_trip(store);
    delete_range_removes_exactly_the_range(store);
    unlogged_writes_are_visible_and_flush(store);
    bulk_loads_appear_at_finish_in_order_only(store);
}

fn bulk_loads_appear_at_finish_in_order_only(store: &dyn KvStore) {
    let value = |i: u8| vec![i; 200_000];
    let mut load = store.bulk(C).unwrap();
    for i in 0..5u8 {
        load.put(&[b'b', i], &value(i)).unwrap();
    }
    // nothing shows before the end
    assert_eq!(
        store.get(C, &[b'b', 0]).unwrap(),
        None,
        "bulk: visible early"
    );
    // a key not above the last is refused, and the load stays usable
    assert!(matches!(
        load.put(&[b'b', 4], b"again"),
        Err(crate::KvError::BulkOrder(_))
    ));
    assert!(load.put(&[b'b', 1], b"back").is_err());
    load.put(&[b'b', 9], b"small").unwrap();
    load.finish().unwrap();
    for i in 0..5u8 {
        assert_eq!(
            store.get(C, &[b'b', i]).unwrap(),
            Some(value(i)),
            "bulk: key {i}"
        );
    }
    assert_eq!(
        store.get(C, b"b\x09").unwrap().as_deref(),
        Some(&b"small"[..])
    );
    assert_eq!(store.scan(C, b"b", b"", 100).unwrap().len(), 6);
    // loaded keys are ordinary keys: range deletes and batches see them
    let mut b = WriteBatch::new();
    b.delete_range(C, b"b".to_vec(), b"c".to_vec());
    store.write(b, Durability::Sync).unwrap();
    assert!(store.scan(C, b"b", b"", 100).unwrap().is_empty());
    // and their files can go at once, leaving every other key
    store.put(C, b"keep", b"k", Durability::Sync).unwrap();
    store.drop_files_in_range(C, b"b", b"c").unwrap();
    store.drop_files_in_range(C, b"c", b"b").unwrap();
    assert!(store.scan(C, b"b", b"", 100).unwrap().is_empty());
    assert_eq!(store.get(C, b"keep").unwrap().as_deref(), Some(&b"k"[..]));
    store.delete(C, b"keep", Durability::Sync).unwrap();
    assert!(
        store
            .drop_files_in_range(Space::large("none"), b"a", b"b")
            .is_err()
    );

    // an abandoned load leaves nothing; an empty one finishes as a no-op
    let mut load = store.bulk(C).unwrap();
    load.put(b"gone", b"x").unwrap();
    drop(load);
    assert_eq!(store.get(C, b"gone").unwrap(), None);
    store.bulk(C).unwrap().finish().unwrap();
    // a small space takes bulk loads too, under its own prefix
    let mut load = store.bulk(R).unwrap();
    load.put(b"bulk-record", b"r").unwrap();
    load.finish().unwrap();
    assert_eq!(
        store.get(R, b"bulk-record").unwrap().as_deref(),
        Some(&b"r"[..])
    );
    assert_eq!(store.get(C, b"bulk-record").unwrap(), None);
    store.delete(R, b"bulk-record", Durability::Sync).unwrap();
    assert!(store.bulk(Space::small("no-such-space")).is_err());
}

fn unlogged_writes_are_visible_and_flush(store: &dyn KvStore) {
    let mut b = WriteBatch::new();
    b.put(C, "unlogged", vec![7u8; 4096]);
    store.write(b, Durability::Unlogged).unwrap();
    assert_eq!(
        store.get(C, b"unlogged").unwrap().map(|v| v.len()),
        Some(4096)
    );
    store.flush(C).unwrap();
    store.flush(R).unwrap();
    assert!(store.flush(Space::small("no-such-space")).is_err());
    assert_eq!(
        store.get(C, b"unlogged").unwrap().map(|v| v.len()),
        Some(4096)
    );
    store.delete(C, b"unlogged", Durability::Sync).unwrap();
}

fn get_put_delete(store: &dyn KvStore) {
    assert_eq!(
        store.get(R, b"missing").unwrap(),
        None,
        "get_put_delete: absent"
    );
    store.put(R, b"k1", b"v1", Durability::Sync).unwrap();
    assert_eq!(store.get(R, b"k1").unwrap().as_deref(), Some(&b"v1"[..]));
    store.put(R, b"k1", b"v2", Durability::Buffered).unwrap();
    assert_eq!(store.get(R, b"k1").unwrap().as_deref(), Some(&b"v2"[..]));
    store.delete(R, b"k1", Durability::Sync).unwrap();
    assert_eq!(
        store.get(R, b"k1").unwrap(),
        None,
        "get_put_delete: deleted"
    );
    // spaces are separate
    store.put(C, b"k1", b"c", Durability::Sync).unwrap();
    assert_eq!(
        store.get(R, b"k1").unwrap(),
        None,
        "spaces must not share keys"
    );
    store.delete(C, b"k1", Durability::Sync).unwrap();
}

fn batches_are_atomic_across_spaces(store: &dyn KvStore) {
    let mut b = WriteBatch::new();
    b.put(R, "batch/a", "1");
    b.put(C, "batch/b", "2");
    b.delete(R, "batch/none");
    store.write(b, Durability::Sync).unwrap();
    assert_eq!(
        store.get(R, b"batch/a").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        store.get(C, b"batch/b").unwrap().as_deref(),
        Some(&b"2"[..])
    );
    let mut b = WriteBatch::new();
    b.delete(R, "batch/a");
    b.delete(C, "batch/b");
    store.write(b, Durability::Sync).unwrap();
    assert_eq!(store.get(R, b"batch/a").unwrap(), None);
    assert_eq!(store.get(C, b"batch/b").unwrap(), None);
}

fn unknown_space_is_an_error(store: &dyn KvStore) {
    let bogus = Space::small("no-such-space");
    assert!(store.get(bogus, b"x").is_err(), "get in unknown space");
    let mut b = WriteBatch::new();
    b.put(R, "atomic/ok", "1");
    b.put(bogus, "x", "1");
    assert!(
        store.write(b, Durability::Sync).is_err(),
        "write to unknown space"
    );
    assert_eq!(
        store.get(R, b"atomic/ok").unwrap(),
        None,
        "a failed batch must write nothing"
    );
}

fn scan_respects_prefix_start_and_limit(store: &dyn KvStore) {
    for k in ["p/a", "p/b", "p/c", "p/d", "q/a", "o/z"] {
        store
            .put(R, k.as_bytes(), k.as_bytes(), Durability::Buffered)
            .unwrap();
    }
    let keys = |v: Vec<crate::Entry>| {
        v.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(store.scan(R, b"p/", b"", 10).unwrap()),
        ["p/a", "p/b", "p/c", "p/d"]
    );
    assert_eq!(
        keys(store.scan(R, b"p/", b"p/b", 2).unwrap()),
        ["p/b", "p/c"]
    );
    assert_eq!(
        keys(store.scan(R, b"p/", b"p/bb", 10).unwrap()),
        ["p/c", "p/d"]
    );
    assert_eq!(
        keys(store.scan(R, b"p/", b"a", 10).unwrap()),
        ["p/a", "p/b", "p/c", "p/d"]
    );
    assert!(store.scan(R, b"zz", b"", 10).unwrap().is_empty());
    assert_eq!(store.scan(R, b"", b"", 100).unwrap().len(), 6);
    for k in ["p/a", "p/b", "p/c", "p/d", "q/a", "o/z"] {
        store.delete(R, k.as_bytes(), Durability::Buffered).unwrap();
    }
}

fn scan_rev_respects_prefix_before_and_limit(store: &dyn KvStore) {
    for k in ["h/1", "h/2", "h/3", "i/0", "g/9"] {
        store
            .put(R, k.as_bytes(), b"", Durability::Buffered)
            .unwrap();
    }
    let keys = |v: Vec<crate::Entry>| {
        v.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(store.scan_rev(R, b"h/", b"", 10).unwrap()),
        ["h/3", "h/2", "h/1"]
    );
    assert_eq!(
        keys(store.scan_rev(R, b"h/", b"h/3", 10).unwrap()),
        ["h/2", "h/1"]
    );
    assert_eq!(keys(store.scan_rev(R, b"h/", b"", 1).unwrap()), ["h/3"]);
    assert!(store.scan_rev(R, b"x/", b"", 10).unwrap().is_empty());
    for k in ["h/1", "h/2", "h/3", "i/0", "g/9"] {
        store.delete(R, k.as_bytes(), Durability::Buffered).unwrap();
    }
}

fn large_values_round_trip(store: &dyn KvStore) {
    let value: Vec<u8> = (0..(4 << 20))
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    store.put(C, b"big", &value, Durability::Sync).unwrap();
    assert_eq!(store.get(C, b"big").unwrap().as_deref(), Some(&value[..]));
    store.delete(C, b"big", Durability::Sync).unwrap();
}

fn delete_range_removes_exactly_the_range(store: &dyn KvStore) {
    let keys = ["r/a", "r/b", "r/b\x00", "r/c", "r/d", "s/a"];
    let mut b = WriteBatch::new();
    for k in keys {
        b.put(C, k, k);
    }
    store.write(b, Durability::Sync).unwrap();
    let mut b = WriteBatch::new();
    b.delete_range(C, "r/b", "r/d");
    b.delete_range(C, "r/z", "r/a"); // inverted: covers nothing
    b.put(R, "range/marker", "1");
    store.write(b, Durability::Sync).unwrap();
    let left: Vec<String> = store
        .scan(C, b"", b"", 100)
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect();
    assert_eq!(
        left,
        ["r/a", "r/d", "s/a"],
        "delete_range must remove [from, to) only"
    );
    assert_eq!(
        store.get(R, b"range/marker").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    let mut b = WriteBatch::new();
    b.delete_range(C, "", "t");
    b.delete(R, "range/marker");
    store.write(b, Durability::Sync).unwrap();
    assert!(store.scan(C, b"", b"", 100).unwrap().is_empty());
}
