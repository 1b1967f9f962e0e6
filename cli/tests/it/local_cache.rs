//! The executor's local cache of extracted layers and contexts (ROOT/executor) under a
//! budget: pruned after each build, on `strata gc`, and built from again correctly.

use std::path::Path;

use crate::build::{Root, context, image_event, unpack};

const BUDGET: &str = "STRATA_EXECUTOR_LOCAL_CACHE_MAX_BYTES";

/// Every entry of the local cache, with the size its marker records (all are measured once
/// a command has ended: the host waits for the prune that measures them).
fn entries(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for kind in ["layers", "contexts"] {
        let dir = root.join("executor").join(kind);
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if !e.file_type().unwrap().is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let marker = dir.join(format!("{name}.entry"));
            let bytes = std::fs::read_to_string(&marker)
                .unwrap_or_else(|e| panic!("{}: {e}", marker.display()));
            let bytes = bytes
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {bytes:?}"));
            out.push((format!("{kind}/{name}"), bytes));
        }
    }
    out.sort();
    out
}

fn total(entries: &[(String, u64)]) -> u64 {
    entries.iter().map(|(_, b)| b).sum()
}

fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The content of `path` in image `tag`.
fn file_in(root: &Root, tag: &str, path: &str) -> String {
    let (_, layers, _dir) = root.image(tag);
    let fs = unpack(&layers);
    std::fs::read_to_string(fs.path().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_local_cache_keeps_to_its_budget_and_rebuilds_from_the_store() {
    let root = Root::new();
    let data = root.dir.path();
    let dockerfile =
        "FROM busybox\nRUN head -c 300000 /dev/zero > /big\nCOPY f /f\nRUN cat /f > /g\n";
    let ctx = context(&[("Dockerfile", dockerfile), ("f", "one\n")]);
    let build = |budget: &str| {
        let args = [
            "build",
            "--progress",
            "json",
            "-t",
            "app",
            ctx.path().to_str().unwrap(),
        ];
        succeeded(&root.strata_env(&args, &[(BUDGET, budget)]))
    };

    // the default budget keeps everything: the base, the RUN and COPY layers, the context
    build("10GiB");
    let all = entries(data);
    assert!(all.len() >= 4, "{all:?}");
    assert!(all.iter().all(|(_, b)| *b > 0), "{all:?}");

    // a budget of about half: after the next build the least recently used are gone
    let half = total(&all) / 2;
    std::fs::write(ctx.path().join("f"), "two\n").unwrap();
    let out = build(&half.to_string());
    let events: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    image_event(&events);
    let kept = entries(data);
    assert!(total(&kept) <= half, "{kept:?} over {half}");
    assert!(
        all.iter()
            .any(|(name, _)| kept.iter().all(|(k, _)| k != name)),
        "nothing of the first build was pruned: {kept:?}"
    );
    assert_eq!(file_in(&root, "app", "g"), "two\n");

    // nothing is left half-deleted in scratch
    let tmp: Vec<_> = std::fs::read_dir(data.join("executor/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("pruned-"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");

    // gc --prune-cache empties it; the next build extracts what it needs again
    let report = succeeded(&root.strata(&["gc", "--prune-cache"]));
    assert!(
        report.contains("from the executor's local cache"),
        "{report}"
    );
    assert!(entries(data).is_empty(), "{:?}", entries(data));
    std::fs::write(ctx.path().join("f"), "three\n").unwrap();
    build("10GiB");
    assert_eq!(file_in(&root, "app", "g"), "three\n");
    assert_eq!(file_in(&root, "app", "big").len(), 300_000);
    assert!(!entries(data).is_empty());
}

#[test]
fn a_bad_budget_is_refused_naming_the_variable() {
    let root = Root::new();
    let out = root.strata_env(&["images"], &[(BUDGET, "lots")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(BUDGET) && err.contains("lots"), "{err}");
}
