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
    // a name images cannot list by: each says what is wrong with it
    for (arg, says) in [
        (
            format!("app@sha256:{}", "0".repeat(64)),
            "expected REPOSITORY[:TAG]",
        ),
        ("app@sha256:0000".to_string(), "invalid digest"),
        ("Hello".to_string(), "must be lowercase"),
    ] {
        let bad = strata(r, &["images", &arg]);
        assert!(!bad.status.success());
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains(says),
            "{arg}: {bad:?}"
        );
    }

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
    let busybox_id = ok(strata(r, &["inspect", "-f", "{{.Id}}", "busybox"]));
    let out = ok(strata(r, &["rmi", "busybox"]));
    assert!(
        out.starts_with(&format!(
            "Untagged: busybox:latest\nUnreferenced: {} ",
            busybox_id.trim()
        )),
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

/// Plants tags the way a strata that did not check targets could leave them: straight into
/// the root's tag store, with no layer store asked.
async fn plant_unchecked_tags(root: &Path, tags: &[(&str, &str)]) {
    let service = strata_tag_index::open(&strata_tag_index::Config {
        root: root.to_path_buf(),
        event_retention: strata_tag_index::store::DEFAULT_EVENT_RETENTION,
        layer_store: None,
    })
    .unwrap();
    for (name, digest) in tags {
        service
            .store()
            .set(
                &strata_tag_index::name::TagName::parse("name", name).unwrap(),
                strata_types::Digest::parse(digest).unwrap(),
                strata_tag_index::store::Expect::Any,
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_point_only_at_stored_images_and_rmi_and_fsck_handle_one_that_does_not() {
    let (root, _tar, _id) = root_with_busybox();
    let r = root.path();
    let manifest = local_manifest_digest(r, "busybox");
    let layer = ok(strata(
        r,
        &["inspect", "-f", "{{index .RootFS.Layers 0}}", "busybox"],
    ))
    .trim()
    .to_string();
    let zero = format!("sha256:{}", "0".repeat(64));
    plant_unchecked_tags(r, &[("ghost:v1", &zero), ("layer:v1", &layer)]).await;

    let serve = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--drain-timeout", "5"])
        .env("STRATA_ROOT", r)
        .env_remove("STRATA_ADDR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let socket = strata_server::ListenAddr::Unix(r.join("strata.sock"));
    strata_test_support::wait_until_serving(&socket, std::time::Duration::from_secs(60))
        .await
        .expect("strata serve did not come up");
    let grpcurl = strata_test_support::Grpcurl::find();
    let call = |method: &str, json: String| {
        let out = grpcurl.call(&socket, method, &json);
        assert!(!out.status.success(), "{method} {json} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // SetTag refuses a digest the store does not hold, and a blob that is not an image
    let err = call(
        "strata.tagindex.v1.TagIndex/SetTag",
        format!(r#"{{"name":"new:v1","digest":"{zero}"}}"#),
    );
    assert!(
        err.contains("FailedPrecondition") && err.contains("the layer store does not hold it"),
        "{err}"
    );
    let err = call(
        "strata.tagindex.v1.TagIndex/SetTag",
        format!(r#"{{"name":"new:v1","digest":"{layer}"}}"#),
    );
    assert!(
        err.contains("FailedPrecondition") && err.contains("not an image manifest or index"),
        "{err}"
    );
    // DeleteBlob refuses the tagged image's manifest and layer, naming the tag
    for d in [&manifest, &layer] {
        let err = call(
            "strata.layerstore.v1.LayerStore/DeleteBlob",
            format!(r#"{{"digest":"{d}"}}"#),
        );
        assert!(
            err.contains("FailedPrecondition")
                && err.contains("tag docker.io/library/busybox:latest"),
            "{err}"
        );
    }

    // fsck reports the planted tags; rmi removes them although their targets cannot be read
    let out = strata(r, &["fsck"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains(&format!(
            "BROKEN TAG ghost:v1 -> {zero}: the store does not hold it"
        )) && report.contains(&format!("BROKEN TAG layer:v1 -> {layer}: it is a")),
        "{report}"
    );
    for name in ["ghost:v1", "layer:v1"] {
        let removed = ok(strata(r, &["rmi", name]));
        assert_eq!(removed, format!("Untagged: {name}\n"));
    }
    let report = ok(strata(r, &["fsck"]));
    assert!(report.contains("all intact"), "{report}");
    assert!(!report.contains("BROKEN"), "{report}");
    let images = ok(strata(r, &["images"]));
    assert_eq!(images.lines().count(), 2, "{images}");
    assert!(
        images.lines().nth(1).unwrap().starts_with("busybox "),
        "{images}"
    );
    assert!(crate::embedded::sigterm_and_wait(serve).success());
}

/// `strata images PATTERN` filters as Docker's reference filter does: Go's path.Match on
/// `name:tag` or on the name; a malformed pattern is an error.
#[test]
fn images_takes_docker_reference_patterns() {
    let (root, _, _) = root_with_busybox();
    let root = root.path();
    ok(strata(root, &["tag", "busybox:latest", "bbox:1"]));
    ok(strata(
        root,
        &["tag", "busybox:latest", "localhost:5000/app:v2"],
    ));
    let names = |pattern: &str| -> Vec<String> {
        let out = ok(strata(
            root,
            &["images", "--format", "{{.Repository}}:{{.Tag}}", pattern],
        ));
        let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(names("b*"), ["bbox:1", "busybox:latest"]);
    assert_eq!(names("bb*"), ["bbox:1"]);
    assert_eq!(names("*:latest"), ["busybox:latest"]);
    assert_eq!(names("localhost:5000/*"), ["localhost:5000/app:v2"]);
    assert_eq!(names("*"), ["bbox:1", "busybox:latest"], "* stops at a /");
    let err = fails(strata(root, &["images", "b["]));
    assert!(err.contains("invalid reference pattern"), "{err}");
}

/// `rmi -f` of a name that finds no image reports it and goes on, exit 0 (Docker's
/// `--force`); without `-f` that is a failure.
#[test]
fn rmi_force_reports_a_missing_image_without_failing() {
    let (root, _tar, _id) = root_with_busybox();
    let r = root.path();
    ok(strata(r, &["tag", "busybox", "extra:1"]));
    let out = strata(r, &["rmi", "-f", "nope", "extra:1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such image: nope"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Untagged: extra:1\n");
    let err = fails(strata(r, &["rmi", "nope"]));
    assert!(err.contains("no such image: nope"), "{err}");
}

/// `login` with neither `-p` nor `--password-stdin` asks at a terminal only: from a pipe
/// or /dev/null it says so (it tried an empty password, which a registry then refused as
/// a wrong one).
#[test]
fn login_without_a_password_off_a_terminal_says_so() {
    let root = tempfile::tempdir().unwrap();
    let err = fails(strata(
        root.path(),
        &["login", "-u", "alice", "localhost:1"],
    ));
    assert!(
        err.contains("not a terminal") && err.contains("--password-stdin"),
        "{err}"
    );
}

/// `load` and `import -` with a terminal on standard input refuse at once (`load` waited
/// for input that never came). `script` gives the command a terminal.
#[test]
fn load_and_import_from_a_terminal_refuse_at_once() {
    let root = tempfile::tempdir().unwrap();
    for args in ["load", "import - x:1"] {
        let command = format!(
            "STRATA_ROOT={} timeout 60 {} {args}",
            root.path().display(),
            env!("CARGO_BIN_EXE_strata")
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("script (util-linux) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args}: {text}");
        assert!(
            text.contains("standard input is a terminal"),
            "{args}: {text}"
        );
    }
}

/// Untagged images are listed with `-a` (or `--filter dangling=true`) as Docker lists
/// dangling ones, `<none>   <none>`, until `gc` frees them; `--filter
/// dangling=…|reference=…|label=…` select rows as Docker's do.
#[test]
fn images_lists_dangling_images_and_filters_rows() {
    let (root, tar, busybox) = root_with_busybox();
    let r = root.path();
    let tar_path = r.join("busybox.tar");
    std::fs::write(&tar_path, &tar).unwrap();
    let tar = tar_path;
    let import = |change: &str| {
        ok(strata(
            r,
            &["import", "-c", change, tar.to_str().unwrap(), "app:1"],
        ))
        .trim()
        .to_string()
    };
    let old = import("LABEL v=1");
    let new = import("LABEL v=2");
    assert_ne!(old, new);
    let listed = |args: &[&str]| {
        ok(strata(
            r,
            &[
                &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
                args,
            ]
            .concat(),
        ))
    };
    let short = |id: &str| id[7..19].to_string();
    let rows = listed(&["-a"]);
    assert!(
        rows.contains(&format!("<none>:<none> {}\n", short(&old))),
        "{rows}"
    );
    assert!(rows.contains(&format!("app:1 {}\n", short(&new))), "{rows}");
    // (strata's rmi leaves an image until gc: by default untagged ones are not listed)
    assert!(!listed(&[]).contains("<none>"));
    assert_eq!(
        listed(&["-f", "dangling=true"]),
        format!("<none>:<none> {}\n", short(&old))
    );
    assert!(!listed(&["--filter", "dangling=false"]).contains("<none>"));
    assert!(!listed(&["app"]).contains("<none>"));
    assert_eq!(
        listed(&["-f", "reference=app*"]),
        format!("app:1 {}\n", short(&new))
    );
    assert_eq!(
        listed(&["-a", "-f", "label=v=1"]),
        format!("<none>:<none> {}\n", short(&old))
    );
    assert_eq!(
        listed(&["-f", "dangling=false", "-f", "label=v"]),
        format!("app:1 {}\n", short(&new))
    );
    assert!(ok(strata(r, &["images", "-q"])).contains(&short(&busybox)));
    let err = fails(strata(r, &["images", "-f", "since=busybox"]));
    assert!(err.contains("unsupported filter"), "{err}");
    let err = fails(strata(r, &["images", "-f", "dangling=maybe"]));
    assert!(err.contains("true or false"), "{err}");
    // gc frees it, and the listing forgets it
    ok(strata(r, &["gc"]));
    assert_eq!(listed(&["-f", "dangling=true"]), "");
}
