//! `strata tag`, `strata tag --history`, `strata images`, `strata rmi` through the real binary
//! over an imported busybox.

use crate::images_io::{fails, ok, root_with_busybox, strata};

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
    let digest = json["Digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"));
    assert!(ok(strata(r, &["images", "--digests"])).contains(&digest));
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
