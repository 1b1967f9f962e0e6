//! `strata tag`, `strata tag --history`, `strata images`, `strata rmi` through the real binary
//! over an imported busybox.

use std::path::Path;

use crate::images_io::{fails, ok, root_with_busybox, strata};

/// The local manifest digest of `name` (no registry has it, so `images` does not show it):
/// the one the OCI layout `export` writes names it.
fn local_manifest_digest(root: &Path, name: &str) -> String {
    let layout = root.join("manifest-digest-layout");
    ok(strata(
        root,
        &[
            "export",
            "--format",
            "oci",
            "-o",
            layout.to_str().unwrap(),
            name,
        ],
    ));
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    std::fs::remove_dir_all(&layout).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn tag_images_history_and_rmi_work_like_docker() {
    let (root, tar, id) = root_with_busybox();
    let short = &id[7..19];
    let r = root.path();

    let table = ok(strata(r, &["images"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{table}"
    );
    assert!(lines[0].ends_with("SIZE"), "{table}");
    assert!(
        lines[1].starts_with("busybox      latest    ") && lines[1].contains(short),
        "{table}"
    );
    assert!(lines[1].contains(" ago "), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(ok(strata(r, &["images", "--format", "json"])).trim()).unwrap();
    assert_eq!(json["ID"], short);
    assert_eq!(json["Repository"], "busybox");
    assert!(json["Size"].as_str().unwrap().ends_with("MB"), "{json}");
    // DIGEST is a repo digest, as in Docker: nothing was pushed or pulled
    assert_eq!(json["Digest"], "<none>");
    let digests = ok(strata(r, &["images", "--digests"]));
    assert!(
        digests
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("busybox      latest    <none>   "),
        "{digests}"
    );
    let digest = local_manifest_digest(r, "busybox");
    assert!(digest.starts_with("sha256:"));
    let _ = tar;

    // by tag, by image-id prefix, by manifest digest
    ok(strata(r, &["tag", "busybox", "app:v1"]));
    ok(strata(r, &["tag", short, "localhost:5000/app:v2"]));
    ok(strata(r, &["tag", &digest, "app:v3"]));
    let only_app = ok(strata(r, &["images", "app"]));
    assert_eq!(only_app.lines().count(), 3, "{only_app}");
    assert!(
        !only_app.contains("busybox") && !only_app.contains("localhost:5000"),
        "{only_app}"
    );
    // REPOSITORY:TAG lists that tag only, and -q only ids, as `docker images`
    let one = ok(strata(r, &["images", "app:v3"]));
    assert_eq!(one.lines().count(), 2, "{one}");
    assert!(
        one.lines()
            .nth(1)
            .unwrap()
            .starts_with("app          v3   "),
        "{one}"
    );
    assert_eq!(ok(strata(r, &["images", "app:nope"])).lines().count(), 1);
    assert_eq!(
        ok(strata(r, &["images", "-q", "app"])),
        format!("{short}\n").repeat(2)
    );
    assert_eq!(
        ok(strata(r, &["images", "-q", "--no-trunc", "app:v1"])),
        format!("{id}\n")
    );
    let bad = strata(r, &["images", "app@sha256:0000"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("expected REPOSITORY[:TAG]"),
        "{bad:?}"
    );

    let history = ok(strata(r, &["tag", "--history", "app:v1"]));
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(
        lines[0].starts_with("TIME") && lines[0].ends_with("NEW"),
        "{history}"
    );
    assert!(
        lines[1].contains("<none>") && lines[1].ends_with(&digest[7..19]),
        "{history}"
    );

    let err = fails(strata(r, &["tag", "busybox", "Bad:tag"]));
    assert!(err.contains("must be lowercase"), "{err}");
    let err = fails(strata(r, &["tag", "nothing-here", "x:y"]));
    assert!(err.contains("no such image: nothing-here"), "{err}");
    let err = fails(strata(r, &["tag", "--history", "never:was"]));
    assert!(err.contains("not found"), "{err}");

    // an id with several tags needs --force
    let err = fails(strata(r, &["rmi", short]));
    assert!(err.contains("referenced by 4 tags"), "{err}");
    let out = ok(strata(
        r,
        &["rmi", "app:v1", "localhost:5000/app:v2", "app:v3"],
    ));
    assert_eq!(
        out,
        "Untagged: app:v1\nUntagged: localhost:5000/app:v2\nUntagged: app:v3\n"
    );
    let out = ok(strata(r, &["rmi", "busybox"]));
    assert!(
        out.starts_with("Untagged: busybox:latest\nUnreferenced: sha256:"),
        "{out}"
    );
    let err = fails(strata(r, &["rmi", "busybox", "ghost"]));
    assert!(
        err.contains("no such image: busybox") && err.contains("no such image: ghost"),
        "{err}"
    );
    assert_eq!(
        ok(strata(r, &["images"])).lines().count(),
        1,
        "only the header is left"
    );
}

fn inspect_id(root: &std::path::Path, name: &str) -> String {
    ok(strata(root, &["inspect", "-f", "{{.Id}}", name]))
        .trim()
        .to_string()
}

#[test]
fn untagged_images_are_tagged_by_id_until_gc_removes_them() {
    let (root, _tar, id) = root_with_busybox();
    let r = root.path();
    let short = &id[7..19];

    // imported without a name: no tag, yet tag finds it by id or unique prefix, as
    // inspect does
    let tar = r.join("busybox.tar");
    let plain = ok(strata(
        r,
        &["import", "-c", r#"CMD ["true"]"#, tar.to_str().unwrap()],
    ))
    .trim()
    .to_string();
    assert_ne!(plain, id);
    assert_eq!(inspect_id(r, &plain[7..19]), plain);
    ok(strata(r, &["tag", &plain[7..19], "fresh:1"]));
    assert_eq!(inspect_id(r, "fresh:1"), plain);
    ok(strata(r, &["tag", &plain, "fresh:2"]));
    assert_eq!(inspect_id(r, "fresh:2"), plain);

    // after rmi of its last tag, an image is tagged back by its id (Docker's way back)
    ok(strata(r, &["rmi", "busybox"]));
    ok(strata(r, &["tag", short, "busybox:back"]));
    assert_eq!(inspect_id(r, "busybox:back"), id);

    // rmi of an untagged image says there is nothing to untag
    ok(strata(r, &["rmi", "--force", &plain]));
    let err = fails(strata(r, &["rmi", &plain]));
    assert!(err.contains("has no tag to remove"), "{err}");

    // gc removes the untagged image: then it is gone for every command
    ok(strata(r, &["gc"]));
    let err = fails(strata(r, &["tag", &plain, "fresh:3"]));
    assert!(err.contains(&format!("no such image: {plain}")), "{err}");
    assert_eq!(inspect_id(r, "busybox:back"), id);
}

#[test]
fn rmi_of_a_digest_reference_untags_the_image_in_that_repository() {
    let (root, _tar, id) = root_with_busybox();
    let r = root.path();
    let digest = local_manifest_digest(r, "busybox");
    for tag in ["app:1", "app:2", "other:1"] {
        ok(strata(r, &["tag", "busybox", tag]));
    }
    let by_digest = format!("app@{digest}");
    assert_eq!(inspect_id(r, &by_digest), id);
    assert_eq!(
        ok(strata(r, &["rmi", &by_digest])),
        "Untagged: app:1\nUntagged: app:2\n"
    );
    let left = ok(strata(
        r,
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
    ));
    assert_eq!(left, "busybox:latest\nother:1\n");
    // nothing left to untag in that repository; the image is still there
    let err = fails(strata(r, &["rmi", &by_digest]));
    assert!(err.contains("has no tag in app"), "{err}");
    assert_eq!(inspect_id(r, &by_digest), id);
    // a digest that is no image of the store is no such image, for rmi as for inspect
    let unknown = format!("app@sha256:{}", "0".repeat(64));
    let err = fails(strata(r, &["rmi", &unknown]));
    assert!(err.contains(&format!("no such image: {unknown}")), "{err}");
}
