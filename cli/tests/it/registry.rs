//! Push and pull against Debian's real `docker-registry` on loopback, with skopeo on the
//! other side.
//!
//! The registry gets its own config (filesystem storage in a temp dir, no auth unless a test
//! asks for htpasswd auth) and binds
//! `127.0.0.1:0` itself: the test reads the port from its "listening on" log line, so no
//! port is ever guessed or raced for. It is stopped by PID when the test ends.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use super::images_io::{fails, ok, root_with_busybox, skopeo, strata};

pub struct LoopbackRegistry {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

/// The one user of [`LoopbackRegistry::start_with_auth`].
pub const AUTH_USER: &str = "strata";
/// Its password.
pub const AUTH_PASSWORD: &str = "farm-s3cret";
/// Its htpasswd line: the registry takes bcrypt only (made once with
/// `crypt.crypt(AUTH_PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))`).
const AUTH_HTPASSWD: &str = "strata:$2b$04$yTuo0fQX7V.uK4pV8uKGjePN64jzPc9QInm06D25ePlYoyHlVGSwK";

impl LoopbackRegistry {
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A registry that answers only [`AUTH_USER`] with [`AUTH_PASSWORD`] (Basic auth).
    pub fn start_with_auth() -> Self {
        Self::start_with(true)
    }

    fn start_with(htpasswd: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n  secret: strata-test\n",
            dir.path().join("data").display()
        );
        if htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, format!("{AUTH_HTPASSWD}\n")).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                path.display()
            ));
        }
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker-registry is installed by scripts/setup.sh");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("registry exited before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split('"').next().unwrap().to_string();
            }
        };
        // keep draining its log so it never blocks on a full pipe
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for LoopbackRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn digest_of_push(out: &str) -> String {
    out.split("digest: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in {out}"))
        .to_string()
}

#[test]
fn push_pull_round_trips_with_skopeo_and_a_second_push_uploads_nothing() {
    let registry = LoopbackRegistry::start();
    let (root, tar, id) = root_with_busybox();
    let target = format!("{}/strata/busybox:1", registry.addr);

    let first = ok(strata(root.path(), &["push", "busybox", &target]));
    assert!(first.contains("2 blobs uploaded"), "{first}");
    let digest = digest_of_push(&first);
    let second = ok(strata(root.path(), &["push", "busybox", &target]));
    assert!(second.contains("0 blobs uploaded"), "{second}");
    assert_eq!(digest_of_push(&second), digest, "deterministic compression");

    // skopeo sees our manifest, config and layers, with the same digest
    let raw = raw_manifest(&target);
    assert_eq!(
        format!("sha256:{}", super::images_io::sha256_hex(raw.as_bytes())),
        digest
    );
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["config"]["digest"], id.as_str());
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let cfg: serde_json::Value = serde_json::from_str(
        &skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--config",
            &format!("docker://{target}"),
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        cfg["rootfs"]["diff_ids"][0],
        format!("sha256:{}", super::images_io::sha256_hex(&tar)).as_str()
    );
    // skopeo copies it elsewhere keeping the digest
    let copy = root.path().join("copy");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:x", copy.display()),
    ]);
    let copied = skopeo(&["inspect", "--raw", &format!("oci:{}:x", copy.display())]).unwrap();
    assert_eq!(
        format!("sha256:{}", super::images_io::sha256_hex(copied.as_bytes())),
        digest
    );

    // the layer is blocked gzip (one member per MiB, each stating its length), and Go's
    // gzip reader, inflating it for skopeo's --dest-decompress, gives the tar back
    let layer_digest = m["layers"][0]["digest"].as_str().unwrap();
    let blob = std::fs::read(
        copy.join("blobs/sha256")
            .join(&layer_digest["sha256:".len()..]),
    )
    .unwrap();
    assert_eq!(&blob[12..14], b"ST", "strata's extra field");
    let first = u32::from_le_bytes(blob[16..20].try_into().unwrap()) as usize;
    assert!(
        tar.len() > 1 << 20 && first < blob.len(),
        "more than one member"
    );
    assert_eq!(&blob[first..first + 3], [0x1f, 0x8b, 8], "a second member");
    let plain = root.path().join("plain");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-decompress",
        &format!("docker://{target}"),
        &format!("dir:{}", plain.display()),
    ]);
    // dir: names the inflated layer by its own digest: the diff_id, if every member was read
    let inflated = std::fs::read(plain.join(super::images_io::sha256_hex(&tar)));
    assert!(
        inflated.is_ok_and(|b| b == tar),
        "Go's gzip reads every member"
    );

    // strata pulls it into a fresh root: same image, RepoDigests set
    let other = tempfile::tempdir().unwrap();
    let pulled = ok(strata(other.path(), &["pull", &target]));
    assert!(pulled.contains(&digest), "{pulled}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(strata(other.path(), &["inspect", &target]))).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(
        v[0]["RepoDigests"][0],
        format!("{}/strata/busybox@{digest}", registry.addr).as_str()
    );
    // and pushing the pulled image back uploads nothing (its compressed form is remembered)
    let back = ok(strata(other.path(), &["push", &target]));
    assert!(back.contains("0 blobs uploaded"), "{back}");
    // to another repository of the same registry: mounted, not uploaded
    let elsewhere = format!("{}/strata/other:1", registry.addr);
    let mounted = ok(strata(other.path(), &["push", &target, &elsewhere]));
    assert!(mounted.contains("1 mounted"), "{mounted}");
}

#[test]
fn images_pushed_by_skopeo_are_pulled_by_strata() {
    let registry = LoopbackRegistry::start();
    let (root, _tar, id) = root_with_busybox();
    let archive = root.path().join("bb.tar");
    ok(strata(
        root.path(),
        &["save", "-o", archive.to_str().unwrap(), "busybox"],
    ));
    // Docker schema 2 with gzip layers (skopeo's default for docker-archive sources)
    let target = format!("{}/skopeo/busybox:gz", registry.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{target}"),
    ]);
    // OCI with zstd layers
    let target_zstd = format!("{}/skopeo/busybox:zstd", registry.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format=oci",
        "--dest-compress-format=zstd",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{target_zstd}"),
    ]);
    let original: serde_json::Value =
        serde_json::from_str(&ok(strata(root.path(), &["inspect", "busybox"]))).unwrap();
    for t in [&target, &target_zstd] {
        let fresh = tempfile::tempdir().unwrap();
        ok(strata(fresh.path(), &["pull", t]));
        let v: serde_json::Value =
            serde_json::from_str(&ok(strata(fresh.path(), &["inspect", t]))).unwrap();
        if t == &target {
            assert_eq!(v[0]["Id"], id.as_str(), "{t}");
        }
        // converting to OCI, skopeo re-encodes the config (new ID); the layers stay the same
        assert_eq!(v[0]["RootFS"], original[0]["RootFS"], "{t}");
        let h = ok(strata(fresh.path(), &["history", t]));
        assert!(h.contains("Imported from -"), "{h}");
    }
    let err = fails(strata(
        root.path(),
        &["pull", &format!("{}/skopeo/nosuch:1", registry.addr)],
    ));
    assert!(
        err.contains("MANIFEST_UNKNOWN") || err.contains("NAME_UNKNOWN") || err.contains("404"),
        "{err}"
    );
    let _ = Path::new("");
}

/// `strata du --json`'s count of record blobs (`other`) and its reclaimable bytes.
fn records_and_reclaimable(root: &Path) -> (u64, u64) {
    let du: serde_json::Value = serde_json::from_str(&ok(strata(root, &["du", "--json"]))).unwrap();
    let other = du["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "other")
        .unwrap()["count"]
        .as_u64()
        .unwrap();
    (other, du["reclaimable_bytes"].as_u64().unwrap())
}

#[test]
fn gc_keeps_the_push_and_pull_records_of_tagged_images() {
    let registry = LoopbackRegistry::start();
    let (root, _tar, _id) = root_with_busybox();
    let target = format!("{}/strata/busybox:gc", registry.addr);
    let digest = digest_of_push(&ok(strata(root.path(), &["push", "busybox", &target])));
    let repo_digests = |root: &Path, name: &str| {
        ok(strata(
            root,
            &["inspect", "-f", "{{json .RepoDigests}}", name],
        ))
        .trim()
        .to_string()
    };
    let expected = format!(r#"["{}/strata/busybox@{digest}"]"#, registry.addr);
    assert_eq!(repo_digests(root.path(), "busybox"), expected);
    // repo digest, compressed form, blob location: none of them is reclaimable
    let (records, reclaimable) = records_and_reclaimable(root.path());
    assert_eq!((records, reclaimable), (3, 0));

    let gc = ok(strata(root.path(), &["gc"]));
    assert!(!gc.contains("Removed: "), "{gc}");
    assert_eq!(repo_digests(root.path(), "busybox"), expected);
    let again = ok(strata(root.path(), &["push", "busybox", &target]));
    assert!(again.contains("0 blobs uploaded"), "{again}");

    // a pulled image keeps its records through gc too: pushing it back uploads nothing
    let other = tempfile::tempdir().unwrap();
    ok(strata(other.path(), &["pull", &target]));
    ok(strata(other.path(), &["gc"]));
    assert_eq!(repo_digests(other.path(), &target), expected);
    let back = ok(strata(other.path(), &["push", &target]));
    assert!(back.contains("0 blobs uploaded"), "{back}");

    // once no tag reaches the image, its records go with it
    ok(strata(other.path(), &["rmi", &target]));
    let (records, reclaimable) = records_and_reclaimable(other.path());
    assert!(records > 0 && reclaimable > 0, "{records} {reclaimable}");
    ok(strata(other.path(), &["gc"]));
    assert_eq!(records_and_reclaimable(other.path()), (0, 0));
}

#[test]
fn a_pull_by_digest_is_a_reference_that_images_lists_gc_keeps_and_rmi_removes() {
    let registry = LoopbackRegistry::start();
    let (root, _tar, id) = root_with_busybox();
    let target = format!("{}/strata/busybox:1", registry.addr);
    let digest = digest_of_push(&ok(strata(root.path(), &["push", "busybox", &target])));
    let repository = format!("{}/strata/busybox", registry.addr);
    let pinned = format!("{repository}@{digest}");
    // a digest is what a push makes, never where it goes
    let err = fails(strata(root.path(), &["push", "busybox", &pinned]));
    assert!(err.contains("cannot push to a digest reference"), "{err}");

    let fresh = tempfile::tempdir().unwrap();
    let r = fresh.path();
    let pulled = ok(strata(r, &["pull", &pinned]));
    assert!(pulled.contains("Downloaded newer image"), "{pulled}");
    // listed as Docker lists a digest reference: the repository, no tag, the digest
    let listed = |args: &[&str]| ok(strata(r, &[&["images"], args].concat()));
    let row = format!("{repository} <none> {digest} {}\n", &id[7..19]);
    let format = ["--format", "{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}"];
    assert_eq!(listed(&format), row);
    assert_eq!(listed(&[&[repository.as_str()][..], &format].concat()), row);
    assert_eq!(listed(&[&["busybox"][..], &format].concat()), "");
    let table = listed(&["--digests"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().eq([
                repository.as_str(),
                "<none>",
                digest.as_str(),
                &id[7..19]
            ]
            .into_iter()
            .chain(l.split_whitespace().skip(4)))),
        "{table}"
    );
    // pulling again downloads nothing and keeps one reference
    let again = ok(strata(r, &["pull", &pinned]));
    assert!(again.contains("Image is up to date"), "{again}");
    assert_eq!(listed(&format), row);

    // a GC root: gc keeps it and du counts nothing of it reclaimable
    let gc = ok(strata(r, &["gc"]));
    assert!(!gc.contains("Removed: "), "{gc}");
    assert_eq!(
        ok(strata(r, &["inspect", "-f", "{{.Id}}", &pinned])).trim(),
        id
    );
    let (_, reclaimable) = records_and_reclaimable(r);
    assert_eq!(reclaimable, 0);
    let du = ok(strata(r, &["du"]));
    assert!(du.contains("Pulled by digest only:    1"), "{du}");

    // a tag in the same repository takes the row's place; elsewhere it adds one
    ok(strata(r, &["tag", &pinned, &format!("{repository}:t")]));
    assert_eq!(
        listed(&["--format", "{{.Repository}}:{{.Tag}}"]),
        format!("{repository}:t\n")
    );
    // the repository's last tag takes the repository's digest reference with it, as in Docker
    let out = ok(strata(r, &["rmi", &format!("{repository}:t")]));
    assert_eq!(
        out.lines().take(2).collect::<Vec<_>>(),
        [
            format!("Untagged: {repository}:t"),
            format!("Untagged: {pinned}")
        ],
        "{out}"
    );
    assert!(out.contains("Unreferenced: "), "{out}");
    assert_eq!(listed(&format), "");
    ok(strata(r, &["pull", &pinned]));
    assert_eq!(listed(&format), row);

    // rmi of the reference removes it, also while a tag elsewhere keeps the image
    ok(strata(r, &["tag", &pinned, "elsewhere:1"]));
    let out = ok(strata(r, &["rmi", &pinned]));
    assert_eq!(out, format!("Untagged: {pinned}\n"));
    assert_eq!(
        listed(&["--format", "{{.Repository}}:{{.Tag}}"]),
        "elsewhere:1\n"
    );
    // and with it the repo digest: the name no longer finds the image, nor does inspect
    // list it (as Docker drops the canonical reference)
    let err = fails(strata(r, &["inspect", &pinned]));
    assert!(err.contains("no such image"), "{err}");
    assert_eq!(
        ok(strata(
            r,
            &["inspect", "-f", "{{json .RepoDigests}}", "elsewhere:1"]
        ))
        .trim(),
        "[]"
    );
    ok(strata(
        r,
        &["tag", "elsewhere:1", &format!("{repository}:t")],
    ));
    ok(strata(
        r,
        &["rmi", "elsewhere:1", &format!("{repository}:t")],
    ));
    ok(strata(r, &["pull", &pinned]));

    // rmi of the last reference: the image is then unreferenced and gc frees it
    let out = ok(strata(r, &["rmi", &pinned]));
    assert_eq!(
        out.lines().next(),
        Some(format!("Untagged: {pinned}").as_str()),
        "{out}"
    );
    assert!(out.contains("Unreferenced: "), "{out}");
    assert_eq!(listed(&format), "");
    let err = fails(strata(r, &["inspect", &pinned]));
    assert!(err.contains("no such image"), "{err}");
    let gc = ok(strata(r, &["gc"]));
    assert!(gc.contains("Removed: "), "{gc}");
    let err = fails(strata(r, &["inspect", &pinned]));
    assert!(err.contains("no such image"), "{err}");
    assert_eq!(records_and_reclaimable(r), (0, 0));
}

#[test]
fn a_recorded_repo_digest_names_the_local_image() {
    let registry = LoopbackRegistry::start();
    let (root, _tar, id) = root_with_busybox();
    let r = root.path();
    let target = format!("{}/strata/busybox:1", registry.addr);
    ok(strata(r, &["tag", "busybox", &target]));
    let digest = digest_of_push(&ok(strata(r, &["push", &target])));
    // images shows the pushed digest for the pushed repository only, as Docker does, never
    // the local manifest's
    let local = ok(strata(r, &["inspect", "-f", "{{.Id}}", "busybox"]));
    assert_ne!(digest, local.trim());
    let listed = |args: &[&str]| ok(strata(r, &[&["images"], args].concat()));
    assert_eq!(
        listed(&["--format", "{{.Repository}} {{.Digest}}"]),
        format!(
            "{}/strata/busybox {digest}\nbusybox <none>\n",
            registry.addr
        )
    );
    let table = listed(&["--digests"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0][..3], ["REPOSITORY", "TAG", "DIGEST"], "{table}");
    let pushed_row = format!("{}/strata/busybox", registry.addr);
    assert_eq!(
        lines[1..]
            .iter()
            .map(|l| (l[0], l[1], l[2]))
            .collect::<Vec<_>>(),
        [
            (pushed_row.as_str(), "1", digest.as_str()),
            ("busybox", "latest", "<none>")
        ],
        "{table}"
    );
    let by_repo_digest = format!("{}/strata/busybox@{digest}", registry.addr);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(strata(r, &["inspect", &by_repo_digest]))).unwrap();
    assert_eq!(inspect[0]["Id"], id.as_str());
    assert_eq!(inspect[0]["RepoDigests"][0], by_repo_digest.as_str());
    assert!(ok(strata(r, &["history", &by_repo_digest])).contains("Imported from -"));
    let archive = r.join("by-digest.tar");
    ok(strata(
        r,
        &["save", "-o", archive.to_str().unwrap(), &by_repo_digest],
    ));
    ok(strata(r, &["tag", &by_repo_digest, "copy:1"]));
    assert_eq!(
        ok(strata(r, &["inspect", "-f", "{{.Id}}", "copy:1"])).trim(),
        id
    );
    // the digest names the image only in the repository it was recorded for
    let err = fails(strata(r, &["inspect", &format!("busybox@{digest}")]));
    assert!(err.contains("no such image"), "{err}");
    // rmi of it untags the image's tags in that repository, and the repo digest goes with
    // them (Docker's canonical reference): it names the image no more
    let out = ok(strata(r, &["rmi", &by_repo_digest]));
    assert_eq!(
        out,
        format!("Untagged: {target}\nUntagged: {by_repo_digest}\n")
    );
    let err = fails(strata(r, &["inspect", &by_repo_digest]));
    assert!(err.contains("no such image"), "{err}");
    assert_eq!(
        ok(strata(
            r,
            &["images", "--format", "{{.Repository}}:{{.Tag}}"]
        )),
        "busybox:latest\ncopy:1\n"
    );
}

/// `curl -X PUT` of a manifest or index; the registry's answer must be a success.
fn put_manifest(registry: &LoopbackRegistry, repo_ref: &str, media_type: &str, body: &[u8]) {
    let (repo, reference) = repo_ref.rsplit_once(':').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.json");
    std::fs::write(&file, body).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "PUT", "-H"])
        .arg(format!("Content-Type: {media_type}"))
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!(
            "http://{}/v2/{repo}/manifests/{reference}",
            registry.addr
        ))
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "PUT {repo_ref}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The manifest (or index) the loopback registry serves for `reference`, as skopeo reads it.
fn raw_manifest(reference: &str) -> String {
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ])
    .unwrap()
}

/// Uploads a blob with curl (POST, then PUT `?digest=`); returns its digest.
fn put_blob(registry: &LoopbackRegistry, repo: &str, body: &[u8]) -> String {
    let digest = format!("sha256:{}", super::images_io::sha256_hex(body));
    let post = Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "-X",
            "POST",
            "-D",
            "-",
            "-o",
            "/dev/null",
        ])
        .arg(format!("http://{}/v2/{repo}/blobs/uploads/", registry.addr))
        .output()
        .expect("curl is installed");
    assert!(post.status.success(), "POST {repo}: {post:?}");
    let head = String::from_utf8_lossy(&post.stdout).into_owned();
    let location = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location in {head}"));
    let location = if location.starts_with('/') {
        format!("http://{}{location}", registry.addr)
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    std::fs::write(&file, body).unwrap();
    let put = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "PUT", "-H"])
        // not curl's default form type, whose body Go would parse as the query
        .arg("Content-Type: application/octet-stream")
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("{location}{sep}digest={digest}"))
        .output()
        .expect("curl is installed");
    assert!(put.status.success(), "PUT {repo}: {put:?}");
    digest
}

#[test]
fn a_single_platform_image_of_another_platform_is_refused() {
    let registry = LoopbackRegistry::start();
    let (root, _tar, _id) = root_with_busybox();
    let good = format!("{}/strata/busybox:1", registry.addr);
    ok(strata(root.path(), &["push", "busybox", &good]));
    let raw = raw_manifest(&good);
    let config = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        "--config",
        &format!("docker://{good}"),
    ])
    .unwrap();
    for (tag, os, arch) in [("arm", "linux", "arm64"), ("win", "windows", "amd64")] {
        // the same image, its config claiming another platform, under a plain manifest
        let mut c: serde_json::Value = serde_json::from_str(&config).unwrap();
        c["os"] = os.into();
        c["architecture"] = arch.into();
        let c = serde_json::to_vec(&c).unwrap();
        let mut m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        m["config"]["digest"] = put_blob(&registry, "strata/busybox", &c).into();
        m["config"]["size"] = c.len().into();
        let media_type = m["mediaType"].as_str().unwrap().to_string();
        put_manifest(
            &registry,
            &format!("strata/busybox:{tag}"),
            &media_type,
            &serde_json::to_vec(&m).unwrap(),
        );
        let name = format!("{}/strata/busybox:{tag}", registry.addr);
        let fresh = tempfile::tempdir().unwrap();
        let err = fails(strata(fresh.path(), &["pull", &name]));
        assert!(
            err.contains(&name) && err.contains(&format!("{os}/{arch}")),
            "{err}"
        );
        assert!(err.contains("only linux/amd64"), "{err}");
        // nothing stored, nothing tagged
        let du: serde_json::Value =
            serde_json::from_str(&ok(strata(fresh.path(), &["du", "--json"]))).unwrap();
        assert!(
            du["kinds"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["count"] == 0),
            "{du}"
        );
        assert_eq!(ok(strata(fresh.path(), &["images", "-q"])), "");
    }
}

#[test]
fn a_multi_arch_pull_records_the_index_digest() {
    let registry = LoopbackRegistry::start();
    let (root, _tar, id) = root_with_busybox();
    let name = format!("{}/multi/busybox", registry.addr);
    // two platform manifests of the same image: strata's OCI one and skopeo's Docker
    // schema 2 conversion of it
    let oci = format!("{name}:oci");
    ok(strata(root.path(), &["push", "busybox", &oci]));
    let v2s2 = format!("{name}:v2s2");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--format=v2s2",
        &format!("docker://{oci}"),
        &format!("docker://{v2s2}"),
    ]);
    let entry = |reference: &str, arch: &str| {
        let raw = raw_manifest(reference);
        let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        serde_json::json!({
            "mediaType": m["mediaType"],
            "digest": format!("sha256:{}", super::images_io::sha256_hex(raw.as_bytes())),
            "size": raw.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&oci, "amd64"), entry(&v2s2, "arm64")],
    }))
    .unwrap();
    let index_digest = format!("sha256:{}", super::images_io::sha256_hex(&index));
    let tag = format!("{name}:multi");
    put_manifest(
        &registry,
        tag.split_once('/').unwrap().1,
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    // the registry and skopeo name the tag by the index's digest
    let skopeo_digest = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{tag}"),
    ])
    .unwrap();
    assert_eq!(skopeo_digest.trim(), index_digest);

    let fresh = tempfile::tempdir().unwrap();
    let pulled = ok(strata(fresh.path(), &["pull", &tag]));
    assert!(
        pulled.contains(&format!("Digest: {index_digest}\n")),
        "{pulled}"
    );
    let by_digest = format!("{name}@{index_digest}");
    assert_eq!(
        ok(strata(
            fresh.path(),
            &["inspect", "-f", "{{json .RepoDigests}}", &tag]
        ))
        .trim(),
        format!(r#"["{by_digest}"]"#)
    );
    assert_eq!(
        ok(strata(
            fresh.path(),
            &["inspect", "-f", "{{.Id}}", &by_digest]
        ))
        .trim(),
        id
    );

    // pulling by the index digest works too, and records the same digest
    let other = tempfile::tempdir().unwrap();
    let pulled = ok(strata(other.path(), &["pull", &by_digest]));
    assert!(
        pulled.contains(&format!("Digest: {index_digest}\n")),
        "{pulled}"
    );
    assert_eq!(
        ok(strata(
            other.path(),
            &["inspect", "-f", "{{json .RepoDigests}}", &by_digest]
        ))
        .trim(),
        format!(r#"["{by_digest}"]"#)
    );
}

#[test]
fn a_layer_or_config_of_another_size_than_its_descriptor_says_so() {
    let registry = LoopbackRegistry::start();
    let (root, _tar, _id) = root_with_busybox();
    let good = format!("{}/strata/busybox:1", registry.addr);
    ok(strata(root.path(), &["push", "busybox", &good]));
    let raw = raw_manifest(&good);
    // the same layer blob, under a descriptor one byte longer
    let mut manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    manifest["layers"][0]["size"] = (size + 1).into();
    let media_type = manifest["mediaType"].as_str().unwrap().to_string();
    put_manifest(
        &registry,
        "strata/busybox:badsize",
        &media_type,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let bad = format!("{}/strata/busybox:badsize", registry.addr);
    let fresh = tempfile::tempdir().unwrap();
    let err = fails(strata(fresh.path(), &["pull", &bad]));
    assert!(
        err.contains(&format!("expected {} bytes, got {size}", size + 1)),
        "{err}"
    );
    assert!(!err.contains("hashes to"), "{err}");
    let err = fails(strata(fresh.path(), &["inspect", &bad]));
    assert!(err.contains("no such image"), "{err}");
    // a store that holds the layer checks the descriptor all the same
    let err = fails(strata(root.path(), &["pull", &bad]));
    assert!(
        err.contains(&format!("expected {} bytes, got {size}", size + 1)),
        "{err}"
    );

    // another blob under the layer's descriptor, the config still naming busybox's layer:
    // a store that holds that layer does not take the claim on trust
    let other = super::images_io::gz_tar("other", b"other");
    let other_digest = put_blob(&registry, "strata/busybox", &other);
    let mut manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    manifest["layers"][0]["digest"] = other_digest.clone().into();
    manifest["layers"][0]["size"] = other.len().into();
    put_manifest(
        &registry,
        "strata/busybox:swapped",
        &media_type,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let swapped = format!("{}/strata/busybox:swapped", registry.addr);
    let err = fails(strata(root.path(), &["pull", &swapped]));
    assert!(
        err.contains(&format!("layer {other_digest} uncompressed (its diff_id)")),
        "{err}"
    );
    let err = fails(strata(root.path(), &["inspect", &swapped]));
    assert!(err.contains("no such image"), "{err}");
    // the layer's own descriptor (the push recorded it) is not downloaded again
    let again = ok(strata(root.path(), &["pull", &good]));
    assert!(again.contains("0 layers downloaded"), "{again}");

    // the same for the config: its digest holds, its stated size does not
    let mut manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let size = manifest["config"]["size"].as_u64().unwrap();
    manifest["config"]["size"] = (size - 1).into();
    put_manifest(
        &registry,
        "strata/busybox:badconfig",
        &media_type,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let bad = format!("{}/strata/busybox:badconfig", registry.addr);
    let err = fails(strata(fresh.path(), &["pull", &bad]));
    assert!(
        err.contains("config sha256:")
            && err.contains(&format!("expected {} bytes, got {size}", size - 1)),
        "{err}"
    );
}

/// `strata ARGS` over `root` whose every credentials file is under `home`: Docker's
/// config.json is `home/.docker/config.json`, strata's own file is absent.
fn strata_with_home(root: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env("STRATA_ROOT", root)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("STRATA_AUTH_FILE", home.join("strata-auth.json"))
        .env_remove("STRATA_ADDR")
        .stdin(Stdio::null())
        .output()
        .expect("run strata")
}

fn docker_config(home: &Path, json: &str) {
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::write(home.join(".docker/config.json"), json).unwrap();
}

/// base64 of `AUTH_USER:AUTH_PASSWORD`, as config.json's `auth` holds it.
const AUTH_BASE64: &str = "c3RyYXRhOmZhcm0tczNjcmV0";

#[test]
fn docker_config_keys_are_read_as_docker_reads_them_and_helpers_are_named() {
    let registry = LoopbackRegistry::start_with_auth();
    let (root, _tar, id) = root_with_busybox();
    let port = registry.addr.rsplit(':').next().unwrap();
    let home = tempfile::tempdir().unwrap();
    // keys written as URLs with a path (docker/cli's ConvertToHostname strips them)
    docker_config(
        home.path(),
        &format!(
            r#"{{"auths":{{"https://{}/v1/":{{"auth":"{AUTH_BASE64}"}},"localhost:{port}/v2/":{{"auth":"{AUTH_BASE64}"}}}}}}"#,
            registry.addr
        ),
    );
    let target = format!("{}/strata/busybox:1", registry.addr);
    ok(strata_with_home(
        root.path(),
        home.path(),
        &["push", "busybox", &target],
    ));
    // a host in capitals is loopback too (plain HTTP), and its credentials are found
    let fresh = tempfile::tempdir().unwrap();
    let upper = format!("LOCALHOST:{port}/strata/busybox:1");
    let pulled = ok(strata_with_home(
        fresh.path(),
        home.path(),
        &["pull", "-q", &upper],
    ));
    // as docker pull -q: the full reference
    assert_eq!(pulled.trim(), upper);
    let inspected = ok(strata_with_home(
        fresh.path(),
        home.path(),
        &["inspect", "-f", "{{.Id}}", &upper],
    ));
    assert_eq!(inspected.trim(), id);

    // a credential helper for the registry (or a credsStore) is named, not ignored
    for config in [
        format!(r#"{{"credHelpers":{{"{}":"qa"}}}}"#, registry.addr),
        r#"{"auths":{},"credsStore":"qa"}"#.to_string(),
    ] {
        docker_config(home.path(), &config);
        let fresh = tempfile::tempdir().unwrap();
        let err = fails(strata_with_home(
            fresh.path(),
            home.path(),
            &["pull", &target],
        ));
        assert!(
            err.contains("docker-credential-qa")
                && err.contains("credential helpers are not supported")
                && err.contains(&format!("strata login {}", registry.addr)),
            "{err}"
        );
    }
    // without one, the plain advice
    docker_config(home.path(), "{}");
    let err = fails(strata_with_home(
        fresh.path(),
        home.path(),
        &["pull", &target],
    ));
    assert!(!err.contains("helper"), "{err}");
    assert!(
        err.contains(&format!("run `strata login {}`", registry.addr)),
        "{err}"
    );
}

#[test]
fn errors_name_each_cause_once() {
    let root = tempfile::tempdir().unwrap();
    // nothing listens on port 1 of loopback
    let err = fails(strata(root.path(), &["pull", "127.0.0.1:1/strata/x:1"]));
    assert_eq!(err.matches("error sending request").count(), 1, "{err}");
    assert_eq!(err.matches("127.0.0.1:1/v2/").count(), 1, "{err}");
    assert!(err.to_lowercase().contains("connect"), "{err}");
    let err = fails(strata(root.path(), &["pull", "localhost:1/x@sha256:abc"]));
    assert_eq!(err.matches("invalid digest").count(), 1, "{err}");
    assert!(err.contains("got 3"), "{err}");
}

/// Pushing an unchanged image again gives the same manifest digest, also once a pull has
/// taught the store another compressed form of its layer (skopeo's gzip) that another
/// repository of the registry holds: the form the target repository holds wins over one
/// that could be mounted.
#[test]
fn a_second_push_keeps_the_digest_when_another_compressed_form_is_known() {
    let registry = LoopbackRegistry::start();
    let (root, _tar, _id) = root_with_busybox();
    let r = root.path();
    let target = format!("{}/strata/again:1", registry.addr);
    let first = digest_of_push(&ok(strata(r, &["push", "busybox", &target])));
    // the same layer compressed by skopeo, in another repository, pulled into the store
    let archive = r.join("bb.tar");
    ok(strata(
        r,
        &["save", "-o", archive.to_str().unwrap(), "busybox"],
    ));
    let other = format!("{}/skopeo/again:1", registry.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{other}"),
    ]);
    let theirs = raw_manifest(&other);
    let ours = raw_manifest(&target);
    let layer = |m: &str| {
        let v: serde_json::Value = serde_json::from_str(m).unwrap();
        v["layers"][0]["digest"].as_str().unwrap().to_owned()
    };
    assert_ne!(layer(&theirs), layer(&ours), "skopeo compresses otherwise");
    ok(strata(r, &["pull", &other]));
    let again = ok(strata(r, &["push", "busybox", &target]));
    assert_eq!(digest_of_push(&again), first, "{again}");
    assert!(again.contains("0 blobs uploaded"), "{again}");
}
