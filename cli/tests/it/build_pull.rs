//! `FROM` of a registry reference the store does not hold: the executor pulls it (as
//! `strata pull` would, tag included) from Debian's real `docker-registry` on loopback,
//! then builds on it. Failures name the reference and tag nothing.

use std::{io::Read, path::Path};

use serde_json::Value;

use super::build::{Root, image_event, of_type, one_layer_pull};
use super::images_io::{ok, root_with_busybox, strata};
use super::registry::LoopbackRegistry;

/// A data root with nothing in it.
fn empty_root() -> Root {
    Root {
        dir: tempfile::tempdir().unwrap(),
    }
}

fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.path().join("note.txt"), "from the context\n").unwrap();
    dir
}

/// Pushes the busybox image of a throwaway root to `target`; returns (image ID, the
/// registry's manifest digest).
fn push_busybox(target: &str) -> (String, String) {
    let (root, _tar, id) = root_with_busybox();
    let out = ok(strata(root.path(), &["push", "busybox", target]));
    let digest = out
        .split("digest: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in {out}"))
        .to_string();
    (id, digest)
}

/// The text of `path` in the last layer of `layers` that has it.
fn file_in_layers(layers: &[std::path::PathBuf], path: &str) -> Option<String> {
    file_bytes_in_layers(layers, path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The bytes of `path` in the last layer of `layers` that has it.
fn file_bytes_in_layers(layers: &[std::path::PathBuf], path: &str) -> Option<Vec<u8>> {
    let mut found = None;
    for l in layers {
        let mut archive = tar::Archive::new(std::fs::File::open(l).unwrap());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap() == Path::new(path) {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                found = Some(bytes);
            }
        }
    }
    found
}

pub fn error_of(events: &[Value], out: &std::process::Output) -> (String, String) {
    of_type(events, "error")
        .first()
        .map(|e| {
            (
                e["message"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .unwrap_or_else(|| {
            (
                String::from_utf8_lossy(&out.stderr).into_owned(),
                String::new(),
            )
        })
}

fn tags(root: &Root) -> String {
    let out = root.strata(&["images", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn from_a_registry_reference_pulls_the_base_and_builds_on_it() {
    let registry = LoopbackRegistry::start();
    let base = format!("{}/strata/busybox:1", registry.addr);
    let (base_id, remote_digest) = push_busybox(&base);

    let root = empty_root();
    let ctx = context(&format!(
        "FROM {base}\nRUN echo built > /built.txt\nCOPY note.txt /note.txt\n"
    ));
    let events = root.build_ok(ctx.path(), &["-t", "app:1"]);

    // the pull was reported: started, resolved, each layer downloaded, done
    let pulls = one_layer_pull(&events);
    assert!(
        pulls.iter().all(|e| e["reference"] == base.as_str()),
        "{pulls:?}"
    );
    assert_eq!(pulls[1]["digest"], remote_digest.as_str());
    assert_eq!(pulls[2]["downloaded"], true);
    assert_eq!(pulls[3]["digest"], base_id.as_str());

    // the base is tagged as `strata pull` tags it, with its repo digest
    let inspected: Value =
        serde_json::from_str(&ok(strata(root.dir.path(), &["inspect", &base]))).unwrap();
    assert_eq!(inspected[0]["Id"], base_id.as_str());
    assert_eq!(
        inspected[0]["RepoDigests"][0],
        format!("{}/strata/busybox@{remote_digest}", registry.addr).as_str()
    );

    // the image is the base's layer plus the RUN and COPY layers
    let done = image_event(&events);
    assert_eq!(done["tags"][0], "docker.io/library/app:1");
    let (config, layers, _dir) = root.image("app:1");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 3, "{config}");
    assert_eq!(diff_ids[0], inspected[0]["RootFS"]["Layers"][0]);
    assert_eq!(
        file_in_layers(&layers, "built.txt").as_deref(),
        Some("built\n")
    );
    assert_eq!(
        file_in_layers(&layers, "note.txt").as_deref(),
        Some("from the context\n")
    );
    assert!(file_bytes_in_layers(&layers, "bin/busybox").is_some_and(|b| !b.is_empty()));

    // a rebuild uses the local tag: no pull, every step cached
    let again = root.build_ok(ctx.path(), &["-t", "app:1"]);
    assert!(of_type(&again, "pull").is_empty(), "{again:?}");
    assert_eq!(of_type(&again, "step_cached").len(), 2, "{again:?}");
    assert_eq!(
        image_event(&again)["manifest_digest"],
        done["manifest_digest"]
    );

    let repository = format!("{}/strata/busybox", registry.addr);
    let pinned = format!("{repository}@{remote_digest}");
    let listed = |root: &Root| {
        let mut rows: Vec<String> =
            ok(root.strata(&["images", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}"]))
                .lines()
                .map(str::to_owned)
                .collect();
        rows.sort();
        rows
    };
    let base_row = format!("{repository} <none> {remote_digest}");

    // the base pulled by tag, named by digest: found in the store (no pull), and given a
    // digest reference, so it outlives its tag moving to another image (`rmi` of the tag
    // would take the reference with it, as in Docker: the last tag of a repository takes
    // that repository's digest references)
    let ctx = context(&format!("FROM {pinned}\nRUN echo pinned > /built.txt\n"));
    let pinned_events = root.build_ok(ctx.path(), &[]);
    assert!(
        of_type(&pinned_events, "pull").is_empty(),
        "{pinned_events:?}"
    );
    ok(root.strata(&["tag", "app:1", &base]));
    assert!(listed(&root).contains(&base_row), "{:?}", listed(&root));
    ok(root.strata(&["gc"]));
    ok(root.strata(&["inspect", &pinned]));

    // by digest, into another fresh root: pulled, built, and no tag made for the base, but
    // a digest reference, as `strata pull` by digest makes
    let other = empty_root();
    let events = other.build_ok(ctx.path(), &["-t", "dig:1"]);
    assert_eq!(of_type(&events, "pull").len(), 4, "{events:?}");
    assert_eq!(
        listed(&other),
        [base_row.clone(), "dig 1 <none>".to_string()]
    );
    // gc keeps the base: with the registry gone, a rebuild finds it in the store
    ok(other.strata(&["gc"]));
    drop(registry);
    let again = other.build_ok(ctx.path(), &["-t", "dig:2", "--no-cache"]);
    assert!(of_type(&again, "pull").is_empty(), "{again:?}");
}

#[test]
fn from_a_missing_tag_or_an_unreachable_registry_fails_naming_it() {
    let registry = LoopbackRegistry::start();
    push_busybox(&format!("{}/strata/busybox:1", registry.addr));
    let root = empty_root();

    let missing = format!("{}/strata/busybox:nosuch", registry.addr);
    let ctx = context(&format!("FROM {missing}\nRUN true\n"));
    let (out, events) = root.build(ctx.path(), &["-t", "app:1"]);
    assert!(!out.status.success());
    let (message, code) = error_of(&events, &out);
    assert!(message.contains(&missing), "{message}");
    assert!(message.contains("MANIFEST_UNKNOWN"), "{message}");
    assert_eq!(code, "NotFound", "{message}");

    let unknown_repo = format!("{}/strata/nosuch:1", registry.addr);
    let ctx = context(&format!("FROM {unknown_repo}\nRUN true\n"));
    let (out, events) = root.build(ctx.path(), &["-t", "app:1"]);
    assert!(!out.status.success());
    let (message, code) = error_of(&events, &out);
    assert!(message.contains(&unknown_repo), "{message}");
    assert_eq!(code, "NotFound", "{message}");

    // nothing listens on port 1 of loopback
    let unreachable = "127.0.0.1:1/strata/busybox:1";
    let ctx = context(&format!("FROM {unreachable}\nRUN true\n"));
    let (out, events) = root.build(ctx.path(), &["-t", "app:1"]);
    assert!(!out.status.success());
    let (message, code) = error_of(&events, &out);
    assert!(message.contains(unreachable), "{message}");
    assert!(message.to_lowercase().contains("connect"), "{message}");
    assert_eq!(code, "Unavailable", "{message}");

    // nothing was tagged by any of them
    let listed = tags(&root);
    assert!(listed.trim().is_empty(), "{listed}");
}

#[test]
fn from_another_platform_is_refused() {
    let root = Root::new();
    let ctx = context("FROM --platform=linux/arm64 busybox\nRUN true\n");
    let (out, events) = root.build(ctx.path(), &[]);
    assert!(!out.status.success());
    let (message, code) = error_of(&events, &out);
    assert!(message.contains("linux/arm64"), "{message}");
    assert_eq!(code, "InvalidArgument", "{message}");
    // and the platform strata builds is accepted as written
    let ctx = context("FROM --platform=linux/amd64 busybox\nRUN true\n");
    root.build_ok(ctx.path(), &[]);
}
