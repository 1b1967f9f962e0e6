//! Prints RocksDB's level layout of a strata database (read-only): which files each column
//! family holds at which level, and their sizes.
//!
//! `cargo build -p strata-kv --example levels && $CARGO_TARGET_DIR/debug/examples/levels DIR`
//! (DIR: e.g. `$STRATA_ROOT/layer-store`, while no strata process holds it).

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: levels DB_DIR");
        std::process::exit(2);
    };
    let opts = rocksdb::Options::default();
    let families = match rocksdb::DB::list_cf(&opts, &dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{dir}: {e}");
            std::process::exit(1);
        }
    };
    let db = match rocksdb::DB::open_cf_for_read_only(&opts, &dir, &families, false) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("{dir}: {e}");
            std::process::exit(1);
        }
    };
    for name in &families {
        let Some(cf) = db.cf_handle(name) else {
            continue;
        };
        println!("== column family {name}");
        for property in [
            "rocksdb.levelstats",
            "rocksdb.num-blob-files",
            "rocksdb.total-blob-file-size",
        ] {
            if let Ok(Some(v)) = db.property_value_cf(cf, property) {
                println!("{property}: {}", v.trim_end());
            }
        }
    }
}
