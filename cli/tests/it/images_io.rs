//! Images in and out through the real binary: import, history, inspect, save, load, export
//! (with skopeo and umoci reading what we write), and hostile archives.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use sha2::{Digest as _, Sha256};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

pub fn strata(root: &Path, args: &[&str]) -> Output {
    Command::new(STRATA)
        .args(args)
        .env("STRATA_ROOT", root)
        .env("SOURCE_DATE_EPOCH", "1704067200")
        .env_remove("STRATA_ADDR")
        .stdin(Stdio::null())
        .output()
        .expect("run strata")
}

pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "strata failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "strata should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The busybox rootfs tar of scripts/busybox-rootfs.sh.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let out = dir.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-rootfs.sh");
    let st = Command::new("bash")
        .arg(script)
        .arg(&out)
        .output()
        .expect("run busybox-rootfs.sh");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

/// A root with busybox imported as busybox:latest (CMD ["sh"]); returns (root, tar bytes, image id).
pub fn root_with_busybox() -> (tempfile::TempDir, Vec<u8>, String) {
    let root = tempfile::tempdir().unwrap();
    let tar = busybox_tar(root.path());
    let id = ok(strata(
        root.path(),
        &[
            "import",
            "-c",
            r#"CMD ["sh"]"#,
            tar.to_str().unwrap(),
            "busybox:latest",
        ],
    ))
    .trim()
    .to_string();
    (root, std::fs::read(&tar).unwrap(), id)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn import_then_history_and_inspect_show_what_docker_would() {
    let (root, tar, id) = root_with_busybox();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let diff_id = format!("sha256:{}", sha256_hex(&tar));

    let history = ok(strata(root.path(), &["history", "-H=false", "busybox"]));
    let size = tar.len().to_string();
    let short = &id[7..19];
    // one row: the import step, IMAGE/CREATED AT/CREATED BY/SIZE/COMMENT per tabwriter rules
    let expected = format!(
        "IMAGE          CREATED AT             CREATED BY   SIZE{pad}COMMENT\n{short}   2024-01-01T00:00:00Z                {size}{pad2}Imported from -\n",
        pad = " ".repeat((size.len() + 3).max(10) - 4),
        pad2 = " ".repeat((size.len() + 3).max(10) - size.len()),
    );
    assert_eq!(history, expected);
    let human = ok(strata(root.path(), &["history", "busybox:latest"]));
    assert!(human.contains(" ago ") && human.contains("MB "), "{human}");
    let lines = ok(strata(
        root.path(),
        &["history", "--format", "json", "--no-trunc", &id],
    ));
    let row = json(lines.trim());
    assert_eq!(row["ID"], id.as_str());
    assert_eq!(row["Comment"], "Imported from -");

    let inspect = ok(strata(root.path(), &["inspect", "busybox"]));
    let v = json(&inspect);
    let img = &v[0];
    assert_eq!(img["Id"], id.as_str());
    assert_eq!(img["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(img["RepoDigests"], serde_json::json!([]));
    assert_eq!(img["Comment"], "Imported from -");
    assert_eq!(img["Created"], "2024-01-01T00:00:00Z");
    assert_eq!(img["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["Size"], tar.len() as u64);
    assert_eq!(img["RootFS"]["Layers"], serde_json::json!([diff_id]));
    assert_ne!(img["Metadata"]["LastTagTime"], "0001-01-01T00:00:00Z");
    // Docker's key order
    let keys = [
        "\"Id\"",
        "\"RepoTags\"",
        "\"RepoDigests\"",
        "\"Comment\"",
        "\"Created\"",
        "\"Config\"",
        "\"Architecture\"",
        "\"Os\"",
        "\"Size\"",
        "\"RootFS\"",
        "\"Metadata\"",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| inspect.find(k).unwrap_or_else(|| panic!("{k} missing")))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{inspect}");
    assert!(inspect.starts_with("[\n    {\n        \"Id\""), "{inspect}");

    // by short id, by full id, and raw OCI documents
    assert_eq!(
        json(&ok(strata(root.path(), &["inspect", short])))[0]["Id"],
        id.as_str()
    );
    let oci = ok(strata(root.path(), &["inspect", "--format", "oci", &id]));
    let mut docs = oci.lines();
    let manifest = json(docs.next().unwrap());
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["layers"][0]["digest"], diff_id.as_str());
    let config = docs.next().unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(config.as_bytes())), id);
    let err = fails(strata(root.path(), &["inspect", "nosuch:image"]));
    assert!(err.contains("no such image"), "{err}");
}

#[test]
fn compressed_rootfs_imports_to_the_same_uncompressed_layer() {
    let root = tempfile::tempdir().unwrap();
    let tar = busybox_tar(root.path());
    let bytes = std::fs::read(&tar).unwrap();
    let gz = root.path().join("rootfs.tar.gz");
    let st = Command::new("gzip")
        .arg("-k")
        .arg("-c")
        .arg(&tar)
        .stdout(std::fs::File::create(&gz).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    ok(strata(
        root.path(),
        &["import", gz.to_str().unwrap(), "gz:1"],
    ));
    let v = json(&ok(strata(root.path(), &["inspect", "gz:1"])));
    assert_eq!(
        v[0]["RootFS"]["Layers"][0],
        format!("sha256:{}", sha256_hex(&bytes)).as_str()
    );
    // `-`: the same tarball from standard input (a pipe), the same layer
    let mut child = Command::new(STRATA)
        .args(["import", "-", "piped:1"])
        .env("STRATA_ROOT", root.path())
        .env("SOURCE_DATE_EPOCH", "1704067200")
        .env_remove("STRATA_ADDR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let gz_bytes = std::fs::read(&gz).unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&gz_bytes));
    let piped = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    ok(piped);
    let v = json(&ok(strata(root.path(), &["inspect", "piped:1"])));
    assert_eq!(
        v[0]["RootFS"]["Layers"][0],
        format!("sha256:{}", sha256_hex(&bytes)).as_str()
    );
    // not a tar: refused, nothing tagged
    let junk = root.path().join("junk.tar");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let err = fails(strata(
        root.path(),
        &["import", junk.to_str().unwrap(), "junk:1"],
    ));
    assert!(err.contains("junk.tar"), "{err}");
    fails(strata(root.path(), &["inspect", "junk:1"]));
}

/// Appends an entry whose name and link target are written into the header as given (the
/// builder would clean or refuse them), as hostile rootfs tarballs have them.
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn import_normalises_a_rootfs_or_refuses_it_naming_the_entry() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let root = tempfile::tempdir().unwrap();
    // names a layer may not have but whose meaning is clear: stored cleaned, and built on
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, "/etc/", Directory, "", b"");
    raw_entry(&mut b, "/etc/abs.txt", Regular, "", b"old");
    raw_entry(&mut b, "a/../b.txt", Regular, "", b"b");
    raw_entry(&mut b, "/etc/abs.txt", Regular, "", b"abs");
    raw_entry(&mut b, "/etc/hard.txt", Link, "/etc/abs.txt", b"");
    let fixable = root.path().join("fixable.tar");
    std::fs::write(&fixable, b.into_inner().unwrap()).unwrap();
    ok(strata(
        root.path(),
        &["import", fixable.to_str().unwrap(), "fixable:1"],
    ));
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("new.txt"), b"new").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM fixable:1\nCOPY new.txt /etc/\n",
    )
    .unwrap();
    ok(strata(
        root.path(),
        &["build", "-t", "built:1", ctx.path().to_str().unwrap()],
    ));
    let out = root.path().join("built.tar");
    ok(strata(
        root.path(),
        &["save", "-o", out.to_str().unwrap(), "built:1"],
    ));
    let saved = tar_entries(&std::fs::read(&out).unwrap());
    let manifest = json(
        std::str::from_utf8(&saved.iter().find(|(n, _)| n == "manifest.json").unwrap().1).unwrap(),
    );
    let base = &manifest[0]["Layers"][0];
    let layer = &saved.iter().find(|(n, _)| base == n.as_str()).unwrap().1;
    let mut a = tar::Archive::new(&layer[..]);
    let entries: Vec<(String, String, Vec<u8>)> = a
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), link, data)
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("etc/".to_owned(), String::new(), vec![]),
            ("b.txt".to_owned(), String::new(), b"b".to_vec()),
            ("etc/abs.txt".to_owned(), String::new(), b"abs".to_vec()),
            ("etc/hard.txt".to_owned(), "etc/abs.txt".to_owned(), vec![]),
        ]
    );

    // what cannot be applied safely: refused, naming the entry, and nothing is stored
    type Build = fn(&mut tar::Builder<Vec<u8>>);
    let cases: [(&str, Build, &str); 4] = [
        (
            "passwd-link",
            |b| raw_entry(b, "etc/pw", Link, "../../../etc/passwd", b""),
            "hard link \"etc/pw\" points outside the root",
        ),
        (
            "dangling-link",
            |b| raw_entry(b, "etc/pw", Link, "etc/missing", b""),
            "hard link \"etc/pw\" points at \"etc/missing\", which is not an earlier entry",
        ),
        (
            "through-symlink",
            |b| {
                raw_entry(b, "lnk", Symlink, "/tmp", b"");
                raw_entry(b, "lnk/THROUGH.txt", Regular, "", b"x");
            },
            "entry \"lnk/THROUGH.txt\" goes through the symbolic link \"lnk\"",
        ),
        (
            "climbing",
            |b| raw_entry(b, "a/../../etc/x", Regular, "", b"x"),
            "entry \"a/../../etc/x\" climbs out of the root",
        ),
    ];
    let before = ok(strata(
        root.path(),
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
    ));
    for (name, build, needle) in cases {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let path = root.path().join(format!("{name}.tar"));
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let err = fails(strata(
            root.path(),
            &["import", path.to_str().unwrap(), &format!("{name}:1")],
        ));
        assert!(
            err.contains(needle) && err.contains(&format!("{name}.tar")),
            "{name}: {err}"
        );
        fails(strata(root.path(), &["inspect", &format!("{name}:1")]));
    }
    assert_eq!(
        ok(strata(
            root.path(),
            &["images", "--format", "{{.Repository}}:{{.Tag}}"]
        )),
        before
    );
}

fn tar_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (path, data)
        })
        .collect()
}

#[test]
fn save_writes_the_modern_docker_archive_and_load_reads_it_back() {
    let (root, tar, id) = root_with_busybox();
    let out = root.path().join("saved.tar");
    ok(strata(
        root.path(),
        &["save", "-o", out.to_str().unwrap(), "busybox"],
    ));
    let bytes = std::fs::read(&out).unwrap();
    let entries = tar_entries(&bytes);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "lexical order");
    let layer_hex = sha256_hex(&tar);
    let config_hex = &id[7..];
    let find = |n: &str| {
        entries
            .iter()
            .find(|(p, _)| p == n)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("{n} missing: {names:?}"))
    };
    assert_eq!(find(&format!("blobs/sha256/{layer_hex}")), tar);
    assert_eq!(
        String::from_utf8(find("manifest.json")).unwrap(),
        format!(
            "[{{\"Config\":\"blobs/sha256/{config_hex}\",\"RepoTags\":[\"busybox:latest\"],\"Layers\":[\"blobs/sha256/{layer_hex}\"]}}]\n"
        )
    );
    assert_eq!(
        String::from_utf8(find("repositories")).unwrap(),
        format!("{{\"busybox\":{{\"latest\":\"{layer_hex}\"}}}}\n")
    );
    let index = json(&String::from_utf8(find("index.json")).unwrap());
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    // saving twice gives the same bytes
    let again = root.path().join("again.tar");
    ok(strata(
        root.path(),
        &["save", "-o", again.to_str().unwrap(), "busybox:latest"],
    ));
    assert_eq!(std::fs::read(&again).unwrap(), bytes);

    let other = tempfile::tempdir().unwrap();
    let loaded = ok(strata(other.path(), &["load", "-i", out.to_str().unwrap()]));
    assert_eq!(loaded, "Loaded image: busybox:latest\n");
    let v = json(&ok(strata(other.path(), &["inspect", "busybox"])));
    assert_eq!(v[0]["Id"], id.as_str());
    // the same image again moves no tag
    let again = ok(strata(other.path(), &["load", "-i", out.to_str().unwrap()]));
    assert_eq!(again, "Loaded image: busybox:latest\n");
    // another image under the tag: the old one is named by its ID (docker-archive.md §4)
    let tar = root.path().join("busybox.tar");
    ok(strata(
        root.path(),
        &[
            "import",
            "-c",
            r#"CMD ["true"]"#,
            tar.to_str().unwrap(),
            "busybox:latest",
        ],
    ));
    let newer = root.path().join("newer.tar");
    ok(strata(
        root.path(),
        &["save", "-o", newer.to_str().unwrap(), "busybox:latest"],
    ));
    let replaced = ok(strata(
        other.path(),
        &["load", "-i", newer.to_str().unwrap()],
    ));
    assert_eq!(
        replaced,
        format!(
            "The image busybox:latest already exists, renaming the old one with ID {id} to empty string\nLoaded image: busybox:latest\n"
        )
    );

    // skopeo reads it as a docker-archive
    if let Some(out) = skopeo(&[
        "inspect",
        "--raw",
        &format!("docker-archive:{}", out.display()),
    ]) {
        let m = json(&out);
        assert_eq!(m["config"]["digest"], id.as_str(), "{out}");
    }
}

/// Runs skopeo (installed by scripts/setup.sh); panics on failure.
pub fn skopeo(args: &[&str]) -> Option<String> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed by scripts/setup.sh");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn oci_export_is_read_by_skopeo_and_unpacked_by_umoci() {
    let (root, tar, id) = root_with_busybox();
    let layout = root.path().join("layout");
    ok(strata(
        root.path(),
        &[
            "export",
            "--format",
            "oci",
            "-o",
            layout.to_str().unwrap(),
            "busybox",
        ],
    ));
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}:latest", layout.display()),
    ])
    .unwrap();
    assert_eq!(json(&raw)["config"]["digest"], id.as_str());
    let config = skopeo(&[
        "inspect",
        "--config",
        &format!("oci:{}:latest", layout.display()),
    ])
    .unwrap();
    assert_eq!(
        json(&config)["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256_hex(&tar)).as_str()
    );

    let bundle = root.path().join("bundle");
    let st = Command::new("umoci")
        .args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:latest", layout.display()),
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let busybox = std::fs::read(bundle.join("rootfs/bin/busybox")).unwrap();
    assert_eq!(busybox, std::fs::read("/usr/bin/busybox").unwrap());
    assert_eq!(
        std::fs::read_link(bundle.join("rootfs/bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(
        std::fs::read_to_string(bundle.join("rootfs/etc/passwd"))
            .unwrap()
            .starts_with("root:x:0:0:")
    );

    // a tar of the layout loads back
    let layout_tar = root.path().join("layout.tar");
    ok(strata(
        root.path(),
        &[
            "export",
            "-o",
            layout_tar.to_str().unwrap(),
            "busybox:latest",
        ],
    ));
    let other = tempfile::tempdir().unwrap();
    let loaded = ok(strata(
        other.path(),
        &["load", "-i", layout_tar.to_str().unwrap()],
    ));
    assert_eq!(loaded, "Loaded image: busybox:latest\n");
}

/// The ref names of a layout, as umoci lists them, sorted.
fn umoci_refs(layout: &Path) -> Vec<String> {
    let st = Command::new("umoci")
        .args(["ls", "--layout", layout.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut refs: Vec<String> = String::from_utf8_lossy(&st.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    refs.sort();
    refs
}

#[test]
fn oci_export_into_an_existing_layout_adds_to_its_index() {
    let (root, _tar, id) = root_with_busybox();
    let r = root.path();
    let layout = r.join("layout");
    let export = |name: &str| {
        ok(strata(
            r,
            &[
                "export",
                "--format",
                "oci",
                "-o",
                layout.to_str().unwrap(),
                name,
            ],
        ))
    };
    export("busybox");
    let tar = r.join("busybox.tar");
    let other = ok(strata(
        r,
        &[
            "import",
            "-c",
            r#"CMD ["true"]"#,
            tar.to_str().unwrap(),
            "other:v2",
        ],
    ))
    .trim()
    .to_string();
    export("other:v2");
    assert_eq!(umoci_refs(&layout), ["latest", "v2"]);
    let config_of = |reference: &str| {
        json(
            &skopeo(&[
                "inspect",
                "--raw",
                &format!("oci:{}:{reference}", layout.display()),
            ])
            .unwrap(),
        )["config"]["digest"]
            .clone()
    };
    assert_eq!(config_of("latest"), id.as_str());
    assert_eq!(config_of("v2"), other.as_str());

    // an entry of the same image name is replaced (busybox:latest, now another image)
    ok(strata(r, &["tag", "other:v2", "busybox:latest"]));
    export("busybox:latest");
    assert_eq!(umoci_refs(&layout), ["latest", "v2"]);
    assert_eq!(config_of("latest"), other.as_str());
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    // another repository's image of the same tag joins it (as one export of both would
    // list both), and nothing of the writing is left beside the index
    ok(strata(r, &["tag", "other:v2", "other:latest"]));
    export("other:latest");
    assert_eq!(umoci_refs(&layout), ["latest", "latest", "v2"]);
    let left: Vec<String> = std::fs::read_dir(&layout)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // an index.json that is not one is left alone, and the export says why
    std::fs::write(layout.join("index.json"), "[]").unwrap();
    let err = fails(strata(
        r,
        &["export", "-o", layout.to_str().unwrap(), "busybox"],
    ));
    assert!(err.contains("not a JSON object"), "{err}");
    assert_eq!(
        std::fs::read_to_string(layout.join("index.json")).unwrap(),
        "[]"
    );
}

// ---------------------------------------------------------------------------------------
// archives built by hand: the other shapes, and hostile ones

struct ArchiveBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl ArchiveBuilder {
    fn new() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
        }
    }
    fn file(mut self, path: &str, data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // raw name: the builder would refuse "..", which hostile archives need
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }
    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    fn finish(self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.b.into_inner().unwrap()).unwrap();
        p
    }
}

/// A gzip-compressed tar holding one file (mode 0644).
pub fn gz_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut t = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, name, content).unwrap();
    t.into_inner().unwrap().finish().unwrap()
}

/// A small layer tar holding one file.
fn layer(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .map(|_| serde_json::json!({"created_by": "COPY x / # buildkit"}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ids},
        "history": history,
    }))
    .unwrap()
}

#[test]
fn legacy_and_containerd_shapes_load() {
    let dir = tempfile::tempdir().unwrap();
    let l1 = layer("a", b"one");
    let l2 = layer("b", b"two");
    // legacy: <hex>.json configs, <v1id>/layer.tar, a symlinked duplicate, a layer reached
    // through a symlinked directory
    let c1 = config_for(&[&l1]);
    let c2 = config_for(&[&l1, &l2]);
    let (h1, h2) = (sha256_hex(&c1), sha256_hex(&c2));
    let manifest = format!(
        r#"[{{"Config":"{h1}.json","RepoTags":["old:one"],"Layers":["aaaa/layer.tar"]}},{{"Config":"{h2}.json","RepoTags":["old:two"],"Layers":["bbbb/layer.tar","eeee/layer.tar"]}}]"#
    );
    let legacy = ArchiveBuilder::new()
        .file(&format!("{h1}.json"), &c1)
        .file(&format!("{h2}.json"), &c2)
        .file("aaaa/VERSION", b"1.0")
        .file("aaaa/layer.tar", &l1)
        .symlink("bbbb/layer.tar", "../aaaa/layer.tar")
        .file("cccc/layer.tar", &l2)
        .symlink("eeee", "cccc")
        .file("manifest.json", manifest.as_bytes())
        .file("repositories", b"{}")
        .finish(dir.path(), "legacy.tar");
    let root = tempfile::tempdir().unwrap();
    let out = ok(strata(
        root.path(),
        &["load", "-i", legacy.to_str().unwrap()],
    ));
    assert_eq!(out, "Loaded image: old:one\nLoaded image: old:two\n");
    assert_eq!(
        json(&ok(strata(root.path(), &["inspect", "old:two"])))[0]["Id"],
        format!("sha256:{h2}").as_str()
    );

    // containerd: gzip layer blobs named by their compressed digest, gzip-compressed archive
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&l2).unwrap();
    let l2gz = gz.finish().unwrap();
    let gzhex = sha256_hex(&l2gz);
    let c = config_for(&[&l2]);
    let ch = sha256_hex(&c);
    let manifest = format!(
        r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["ctr:latest"],"Layers":["blobs/sha256/{gzhex}"]}}]"#
    );
    let archive = ArchiveBuilder::new()
        .file(&format!("blobs/sha256/{ch}"), &c)
        .file(&format!("blobs/sha256/{gzhex}"), &l2gz)
        .file("manifest.json", manifest.as_bytes())
        .finish(dir.path(), "containerd.tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(&archive).unwrap()).unwrap();
    let zipped = dir.path().join("containerd.tar.gz");
    std::fs::write(&zipped, gz.finish().unwrap()).unwrap();
    ok(strata(
        root.path(),
        &["load", "-i", zipped.to_str().unwrap()],
    ));
    let v = json(&ok(strata(root.path(), &["inspect", "ctr"])));
    assert_eq!(
        v[0]["RootFS"]["Layers"][0],
        format!("sha256:{}", sha256_hex(&l2)).as_str()
    );
}

/// `bytes` compressed by the real command-line tool (`gzip`, `bzip2`, `xz`, `zstd`).
pub fn compress_with(tool: &str, bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

#[test]
fn bzip2_and_xz_archives_and_layers_load() {
    let dir = tempfile::tempdir().unwrap();
    let (l1, l2) = (layer("a", b"one"), layer("b", b"two"));
    let (l1bz, l2xz) = (compress_with("bzip2", &l1), compress_with("xz", &l2));
    let c = config_for(&[&l1, &l2]);
    let ch = sha256_hex(&c);
    let (bzhex, xzhex) = (sha256_hex(&l1bz), sha256_hex(&l2xz));
    let manifest = format!(
        r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["squeezed:latest"],"Layers":["blobs/sha256/{bzhex}","blobs/sha256/{xzhex}"]}}]"#
    );
    let archive = std::fs::read(
        ArchiveBuilder::new()
            .file(&format!("blobs/sha256/{ch}"), &c)
            .file(&format!("blobs/sha256/{bzhex}"), &l1bz)
            .file(&format!("blobs/sha256/{xzhex}"), &l2xz)
            .file("manifest.json", manifest.as_bytes())
            .finish(dir.path(), "squeezed.tar"),
    )
    .unwrap();
    for tool in ["xz", "bzip2"] {
        let path = dir.path().join(format!("squeezed.tar.{tool}"));
        std::fs::write(&path, compress_with(tool, &archive)).unwrap();
        let root = tempfile::tempdir().unwrap();
        let out = ok(strata(root.path(), &["load", "-i", path.to_str().unwrap()]));
        assert_eq!(out, "Loaded image: squeezed:latest\n", "{tool}");
        let v = json(&ok(strata(root.path(), &["inspect", "squeezed"])));
        assert_eq!(v[0]["Id"], format!("sha256:{ch}").as_str(), "{tool}");
        assert_eq!(
            v[0]["RootFS"]["Layers"],
            serde_json::json!([
                format!("sha256:{}", sha256_hex(&l1)),
                format!("sha256:{}", sha256_hex(&l2))
            ]),
            "{tool}"
        );
    }
    // a damaged xz stream is refused, its cause named once
    let mut damaged = compress_with("xz", &archive);
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    let path = dir.path().join("damaged.tar.xz");
    std::fs::write(&path, damaged).unwrap();
    let root = tempfile::tempdir().unwrap();
    let err = fails(strata(root.path(), &["load", "-i", path.to_str().unwrap()]));
    let last = err.trim().rsplit(": ").next().unwrap();
    assert_eq!(err.matches(last).count(), 1, "{err}");
    fails(strata(root.path(), &["inspect", "squeezed"]));
}

#[test]
fn hostile_archives_are_refused_and_nothing_is_tagged() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let l1 = layer("a", b"one");
    let c1 = config_for(&[&l1]);
    let (lh, ch) = (sha256_hex(&l1), sha256_hex(&c1));
    let good_manifest = format!(
        r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{lh}"]}}]"#
    );
    let big_json = {
        let mut v = b"[".to_vec();
        v.extend(std::iter::repeat_n(b' ', 5 * 1024 * 1024));
        v.extend(b"]");
        v
    };
    let manifest_doc = |extra: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{ch}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{lh}","size":{}}}]{extra}}}"#,
            c1.len(),
            l1.len()
        )
    };
    let index_for = |m: &[u8]| {
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":{},"annotations":{{"io.containerd.image.name":"docker.io/library/bad:1"}}}}]}}"#,
            sha256_hex(m),
            m.len()
        )
    };
    let ambiguous = manifest_doc(r#","manifests":[]"#).into_bytes();
    let windows = String::from_utf8(c1.clone())
        .unwrap()
        .replace(r#""os":"linux""#, r#""os":"windows""#)
        .into_bytes();
    assert_ne!(windows, c1);
    let mut huge_manifest = manifest_doc("").into_bytes();
    huge_manifest.pop();
    huge_manifest.extend(
        format!(
            r#","annotations":{{"x":"{}"}}}}"#,
            "y".repeat(5 * 1024 * 1024)
        )
        .into_bytes(),
    );
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "dotdot",
            ArchiveBuilder::new().file("../evil", b"x").file("manifest.json", good_manifest.as_bytes()).finish(dir.path(), "dotdot.tar"),
            "climbs out",
        ),
        (
            "a link climbing out",
            ArchiveBuilder::new().symlink("x", "y/../../..").file("manifest.json", good_manifest.as_bytes()).finish(dir.path(), "linkout.tar"),
            "link \"x\" -> \"y/../../..\" points outside the archive",
        ),
        (
            "huge manifest.json",
            ArchiveBuilder::new().file("manifest.json", &big_json).finish(dir.path(), "huge.tar"),
            "manifest.json",
        ),
        (
            "malformed manifest.json",
            ArchiveBuilder::new().file("manifest.json", b"[{\"Config\":").finish(dir.path(), "malformed.tar"),
            "manifest.json",
        ),
        ("null manifest.json", ArchiveBuilder::new().file("manifest.json", b"null").finish(dir.path(), "null.tar"), "cannot be null"),
        (
            "layer bytes do not match",
            ArchiveBuilder::new()
                .file(&format!("blobs/sha256/{ch}"), &c1)
                .file(&format!("blobs/sha256/{lh}"), &layer("a", b"evil"))
                .file("manifest.json", good_manifest.as_bytes())
                .finish(dir.path(), "mismatch.tar"),
            "hashes to",
        ),
        (
            "diff_id mismatch",
            ArchiveBuilder::new()
                .file(&format!("blobs/sha256/{ch}"), &c1)
                .file("x/layer.tar", &layer("a", b"evil"))
                .file("manifest.json", format!(r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["x/layer.tar"]}}]"#).as_bytes())
                .finish(dir.path(), "diffid.tar"),
            "invalid diffID",
        ),
        (
            "manifest over 4 MiB",
            ArchiveBuilder::new()
                .file(&format!("blobs/sha256/{ch}"), &c1)
                .file(&format!("blobs/sha256/{lh}"), &l1)
                .file(&format!("blobs/sha256/{}", sha256_hex(&huge_manifest)), &huge_manifest)
                .file("index.json", index_for(&huge_manifest).as_bytes())
                .finish(dir.path(), "bigmanifest.tar"),
            "4 MiB",
        ),
        (
            "manifests and layers",
            ArchiveBuilder::new()
                .file(&format!("blobs/sha256/{ch}"), &c1)
                .file(&format!("blobs/sha256/{lh}"), &l1)
                .file(&format!("blobs/sha256/{}", sha256_hex(&ambiguous)), &ambiguous)
                .file("index.json", index_for(&ambiguous).as_bytes())
                .finish(dir.path(), "ambiguous.tar"),
            "ambiguous",
        ),
        ("no manifest", ArchiveBuilder::new().file("hello", b"x").finish(dir.path(), "empty.tar"), "does not contain a manifest.json"),
        (
            "a windows image",
            ArchiveBuilder::new()
                .file(&format!("blobs/sha256/{}", sha256_hex(&windows)), &windows)
                .file(&format!("blobs/sha256/{lh}"), &l1)
                .file("manifest.json", format!(r#"[{{"Config":"blobs/sha256/{}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{lh}"]}}]"#, sha256_hex(&windows)).as_bytes())
                .finish(dir.path(), "windows.tar"),
            "bad:1 is a windows/amd64 image: strata stores and builds only linux/amd64 images",
        ),
    ];
    for (what, path, needle) in cases {
        let err = fails(strata(root.path(), &["load", "-i", path.to_str().unwrap()]));
        assert!(
            err.contains(needle),
            "{what}: expected {needle:?} in: {err}"
        );
        let err = fails(strata(root.path(), &["inspect", "bad:1"]));
        assert!(err.contains("no such image"), "{what}: {err}");
    }
    // and a good archive of the same pieces loads
    let good = ArchiveBuilder::new()
        .file(&format!("blobs/sha256/{ch}"), &c1)
        .file(&format!("blobs/sha256/{lh}"), &l1)
        .file("manifest.json", good_manifest.as_bytes())
        .finish(dir.path(), "good.tar");
    ok(strata(root.path(), &["load", "-i", good.to_str().unwrap()]));
    ok(strata(root.path(), &["inspect", "bad:1"]));
}

/// `save -o x.tar` and `export -o y.tar` write through a file of their own: a user's
/// `x.partial` beside the target (what the temporary file used to be called) is left alone,
/// and nothing of the writing stays behind.
#[test]
fn save_and_export_never_touch_a_file_beside_their_target() {
    let (root, _tar, _id) = root_with_busybox();
    let r = root.path();
    let out = r.join("out");
    std::fs::create_dir(&out).unwrap();
    for (command, name) in [("save", "x"), ("export", "y")] {
        let precious = out.join(format!("{name}.partial"));
        std::fs::write(&precious, "precious").unwrap();
        let target = out.join(format!("{name}.tar"));
        ok(strata(
            r,
            &[command, "-o", target.to_str().unwrap(), "busybox"],
        ));
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious");
        assert!(target.is_file());
    }
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["x.partial", "x.tar", "y.partial", "y.tar"]);
}

/// `load -q` prints what `docker load -q` prints: each `Loaded image:` line (Docker's quiet
/// hides progress bars, which strata's load has none of); `pull -q`'s counterpart is the
/// full reference (registry tests).
#[test]
fn load_quiet_prints_the_loaded_images_as_docker_does() {
    let (root, _tar, _id) = root_with_busybox();
    let r = root.path();
    let archive = r.join("bb.tar");
    ok(strata(
        r,
        &["save", "-o", archive.to_str().unwrap(), "busybox"],
    ));
    let fresh = tempfile::tempdir().unwrap();
    let out = ok(strata(
        fresh.path(),
        &["load", "-q", "-i", archive.to_str().unwrap()],
    ));
    assert_eq!(out, "Loaded image: busybox:latest\n");
}
