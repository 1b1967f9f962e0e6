//! `strata build` end to end: the real binary, embedded services over a temp data root, a
//! busybox base imported from the host's busybox-static, RUN under the real OCI runtime on
//! overlayfs.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

use serde_json::Value;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The busybox rootfs tar, made once per test process.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &TAR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("busybox.tar");
        let out = Command::new(repo().join("scripts/busybox-rootfs.sh"))
            .arg(&tar)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "busybox-rootfs.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, tar)
    })
    .1
}

/// A data root with busybox:latest imported.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Self {
        let root = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        // a fixed import time: the same base image in every data root
        let out = Command::new(STRATA)
            .args(["import", busybox_tar().to_str().unwrap(), "busybox:latest"])
            .env("STRATA_ROOT", root.dir.path())
            .env_remove("STRATA_ADDR")
            .env("SOURCE_DATE_EPOCH", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run strata import");
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        root
    }

    pub fn strata(&self, args: &[&str]) -> Output {
        self.strata_env(args, &[])
    }

    /// `strata` with `env` set on top.
    pub fn strata_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(STRATA)
            .args(args)
            .env("STRATA_ROOT", self.dir.path())
            .env_remove("STRATA_ADDR")
            .env_remove("SOURCE_DATE_EPOCH")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run strata")
    }

    /// `strata build --progress json`; returns the output and the events.
    pub fn build(&self, context: &Path, extra: &[&str]) -> (Output, Vec<Value>) {
        let mut args = vec!["build", "--progress", "json"];
        args.extend_from_slice(extra);
        args.push(context.to_str().unwrap());
        let out = self.strata(&args);
        let events = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        (out, events)
    }

    /// Builds and insists on success; returns the events.
    pub fn build_ok(&self, context: &Path, extra: &[&str]) -> Vec<Value> {
        let (out, events) = self.build(context, extra);
        assert!(
            out.status.success(),
            "build failed:\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        events
    }

    /// Exports `name` as an OCI layout and returns (config JSON, layer tar paths).
    pub fn image(&self, name: &str) -> (Value, Vec<PathBuf>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        let out = self.strata(&["export", name, "-o", layout.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "export: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let blob = |d: &str| {
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let index: Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let config: Value = serde_json::from_slice(
            &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let layers = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| blob(l["digest"].as_str().unwrap()))
            .collect();
        (config, layers, dir)
    }
}

pub fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

/// The pull events of a build that pulled one single-layer base: started, resolved, the
/// layer, done, in that order.
pub fn one_layer_pull(events: &[Value]) -> Vec<&Value> {
    let pulls = of_type(events, "pull");
    let phases: Vec<&str> = pulls.iter().map(|e| e["phase"].as_str().unwrap()).collect();
    assert_eq!(
        phases,
        ["started", "resolved", "layer", "done"],
        "{pulls:?}"
    );
    pulls
}

pub fn image_event(events: &[Value]) -> &Value {
    of_type(events, "image")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no image event in {events:?}"))
}

/// Steps answered by the cache, and steps that ran a layer step (have a cache key).
fn cached_and_run(events: &[Value]) -> (Vec<u64>, Vec<u64>) {
    let cached: Vec<u64> = of_type(events, "step_cached")
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    let keyed: Vec<u64> = of_type(events, "step_started")
        .iter()
        .filter(|e| !e["cache_key"].as_str().unwrap_or("").is_empty())
        .map(|e| e["step"].as_u64().unwrap())
        .filter(|s| !cached.contains(s))
        .collect();
    (cached, keyed)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A private copy of an example context.
pub fn example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples").join(name), dir.path());
    dir
}

/// Applies layer tars in order into a directory (as a container runtime would).
pub fn unpack(layers: &[PathBuf]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for l in layers {
        let f = std::fs::File::open(l).unwrap();
        strata_executor::extract::extract(
            f,
            dir.path(),
            strata_executor::extract::ExtractOptions {
                whiteouts: strata_executor::extract::Whiteouts::Apply,
                hash_files: false,
            },
        )
        .unwrap();
    }
    dir
}

fn tar_names(layer: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(std::fs::File::open(layer).unwrap());
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn hello_builds_with_the_history_and_config_its_dockerfile_describes() {
    let root = Root::new();
    let ctx = example("hello");
    let events = root.build_ok(ctx.path(), &["-t", "hello:latest"]);
    let done = image_event(&events);
    assert_eq!(done["tags"][0], "docker.io/library/hello:latest");
    let (config, layers, _keep) = root.image("hello:latest");
    let c = &config["config"];
    assert_eq!(c["Cmd"], serde_json::json!(["/app/hello.sh"]));
    assert_eq!(c["WorkingDir"], "/app");
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello from strata"),
        "{c}"
    );
    assert!(c["ExposedPorts"]["8080/tcp"].is_object());
    assert_eq!(c["Labels"]["org.opencontainers.image.title"], "hello");
    // the busybox base was imported ("Imported from -"): that comment stays in its history
    // entry and is not the built image's own
    assert!(config.get("comment").is_none(), "{config}");
    assert_eq!(
        config["history"][0]["comment"], "Imported from -",
        "{config}"
    );
    let history: Vec<(String, bool)> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap_or("").to_owned(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let ours = &history[history.len() - 7..];
    assert_eq!(
        ours,
        &[
            ("LABEL org.opencontainers.image.title=hello org.opencontainers.image.description=strata's first example".to_owned(), true),
            ("ENV GREETING=hello from strata".to_owned(), true),
            ("WORKDIR /app".to_owned(), false),
            ("COPY hello.sh ./ # buildkit".to_owned(), false),
            ("RUN /bin/sh -c chmod 0755 hello.sh && ./hello.sh > /app/built-with.txt # buildkit".to_owned(), false),
            ("EXPOSE [8080/tcp]".to_owned(), true),
            ("CMD [\"/app/hello.sh\"]".to_owned(), true),
        ]
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        layers.len()
    );
    let fs = unpack(&layers);
    assert_eq!(
        std::fs::read_to_string(fs.path().join("app/built-with.txt")).unwrap(),
        "hello from strata\n"
    );
    assert!(fs.path().join("bin/busybox").is_file());
}

#[test]
fn a_rebuild_is_fully_cached_and_a_changed_last_step_reruns_only_it() {
    let root = Root::new();
    let ctx = example("hello");
    let first = root.build_ok(ctx.path(), &["-t", "hello"]);
    let second = root.build_ok(ctx.path(), &["-t", "hello"]);
    let (cached, ran) = cached_and_run(&second);
    assert!(ran.is_empty(), "steps ran again: {ran:?}");
    assert_eq!(
        cached.len(),
        3,
        "WORKDIR, COPY and RUN are cache hits: {second:?}"
    );
    assert_eq!(
        image_event(&first)["manifest_digest"],
        image_event(&second)["manifest_digest"],
        "same image"
    );

    // change only the RUN (the last layer step)
    let dockerfile = std::fs::read_to_string(ctx.path().join("Dockerfile")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        dockerfile.replace("> /app/built-with.txt", "> /app/built-again.txt"),
    )
    .unwrap();
    let third = root.build_ok(ctx.path(), &["-t", "hello"]);
    let (cached, ran) = cached_and_run(&third);
    assert_eq!(cached.len(), 2, "WORKDIR and COPY still hit: {third:?}");
    assert_eq!(ran.len(), 1, "only the RUN ran: {third:?}");
}

#[test]
fn a_changed_file_with_the_same_size_and_mtime_is_a_cache_miss() {
    let root = Root::new();
    let ctx = example("hello");
    let script = ctx.path().join("hello.sh");
    let mtime = script.metadata().unwrap().modified().unwrap();
    root.build_ok(ctx.path(), &["-t", "hello"]);
    let text = std::fs::read_to_string(&script).unwrap();
    let changed = text.replace("\"$GREETING\"", "'$GREETING'"); // same size
    assert_eq!(changed.len(), text.len());
    std::fs::write(&script, changed).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&script)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let events = root.build_ok(ctx.path(), &["-t", "hello"]);
    let copy = of_type(&events, "step_started")
        .into_iter()
        .find(|e| e["instruction"].as_str().unwrap().starts_with("COPY"))
        .unwrap()
        .clone();
    let copy_step = copy["step"].as_u64().unwrap();
    let (cached, _) = cached_and_run(&events);
    assert!(!cached.contains(&copy_step), "COPY must miss: {events:?}");
    assert!(
        copy["cache_miss_reason"]
            .as_str()
            .unwrap()
            .contains("hello.sh"),
        "{copy}"
    );
}

#[test]
fn an_unchanged_context_is_found_by_its_stat_and_uploaded_again_once_collected() {
    // The repository's own example, not a fresh copy: its files are older than the margin
    // the memo asks of an entry's ctime and mtime, so the first build leaves a record.
    let root = Root::new();
    let ctx = repo().join("examples").join("hello");
    root.build_ok(&ctx, &["-t", "hello"]);
    let records: Vec<PathBuf> = std::fs::read_dir(root.dir.path().join("cli/contexts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let record: Value = serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    let digest = record["digest"].as_str().unwrap().to_string();
    // the remembered digest is the stored context's: gc removes exactly that blob
    let gc = root.strata(&["gc"]);
    assert!(gc.status.success());
    let removed = String::from_utf8_lossy(&gc.stdout).into_owned();
    assert!(removed.contains(&digest), "{removed}");
    // found by its stat but gone from the store: packed and uploaded again, all cached
    let events = root.build_ok(&ctx, &["-t", "hello"]);
    let (cached, ran) = cached_and_run(&events);
    assert!(ran.is_empty() && !cached.is_empty(), "{events:?}");
    let again = root.strata(&["gc", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(&digest),
        "the context was stored again"
    );
}

/// The COPY step of a build's events: (its step number, cached).
fn copy_step(events: &[Value]) -> (u64, bool) {
    let step = of_type(events, "step_started")
        .into_iter()
        .find(|e| e["instruction"].as_str().unwrap().starts_with("COPY"))
        .unwrap()["step"]
        .as_u64()
        .unwrap();
    (step, cached_and_run(events).0.contains(&step))
}

#[test]
fn an_extracted_context_is_reused_by_the_next_command_and_a_torn_index_rebuilt() {
    let root = Root::new();
    let ctx = example("hello");
    root.build_ok(ctx.path(), &["-t", "hello"]);
    let contexts = root.dir.path().join("executor/contexts");
    let index = std::fs::read_dir(&contexts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".digests.json"))
        .expect("the first build saved its context's file digests");
    let saved: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    assert_eq!(
        saved["hello.sh"],
        strata_types::Digest::of(&std::fs::read(ctx.path().join("hello.sh")).unwrap()).to_string()
    );

    // the next command reads the index instead of hashing again: a doctored digest shows
    let mut doctored = saved.clone();
    doctored.insert("hello.sh".into(), format!("sha256:{}", "0".repeat(64)));
    std::fs::write(&index, serde_json::to_vec(&doctored).unwrap()).unwrap();
    let events = root.build_ok(ctx.path(), &["-t", "hello"]);
    assert!(!copy_step(&events).1, "COPY keyed by the index: {events:?}");

    // a torn index is not trusted: the context is extracted and hashed again
    std::fs::write(&index, b"{\"hello.sh\": \"sha256:").unwrap();
    let events = root.build_ok(ctx.path(), &["-t", "hello"]);
    assert!(copy_step(&events).1, "COPY hits again: {events:?}");
    let rebuilt: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    assert_eq!(rebuilt, saved);
}

#[test]
fn deleted_files_are_whiteouts_and_absent_when_unpacked() {
    let root = Root::new();
    let ctx = example("layers");
    root.build_ok(ctx.path(), &["-t", "layers"]);
    let (config, layers, _keep) = root.image("layers");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        layers.len()
    );
    let all_names: Vec<String> = layers.iter().flat_map(|l| tar_names(l)).collect();
    assert!(
        all_names.iter().any(|n| n == "data/keep/.wh.f1"),
        "{all_names:?}"
    );
    assert!(
        all_names.iter().any(|n| n == "data/.wh.drop"),
        "{all_names:?}"
    );
    assert!(
        all_names.iter().any(|n| n == "etc/app/.wh.obsolete.conf"),
        "{all_names:?}"
    );
    let fs = unpack(&layers);
    let r = fs.path();
    assert!(!r.join("data/drop").exists());
    assert!(!r.join("etc/app/obsolete.conf").exists());
    assert!(!r.join("data/s8").exists());
    assert_eq!(
        std::fs::read_dir(r.join("data/keep")).unwrap().count(),
        1,
        "only the fresh file"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("data/hardlink")).unwrap(),
        "fresh\n"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("etc/app/main.conf")).unwrap(),
        "name=layers\ntuned=1\n"
    );
}

#[test]
fn multi_stage_output_holds_only_what_was_copied() {
    let root = Root::new();
    let ctx = example("multistage");
    let events = root.build_ok(ctx.path(), &["-t", "multi"]);
    assert!(
        !of_type(&events, "step_started")
            .iter()
            .any(|e| e["instruction"].as_str().unwrap().contains("never built")),
        "the unused stage was skipped"
    );
    let (config, layers, _keep) = root.image("multi");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/busybox", "sh", "/app"])
    );
    let fs = unpack(&layers);
    let mut top: Vec<String> = std::fs::read_dir(fs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["README", "app", "bin"]);
    assert_eq!(std::fs::read_dir(fs.path().join("bin")).unwrap().count(), 1);
    assert!(!fs.path().join("out").exists() && !fs.path().join("src").exists());
}

#[test]
fn source_date_epoch_builds_match_byte_for_byte_across_data_dirs() {
    let a = Root::new();
    let b = Root::new();
    let ctx = example("hello");
    let ea = a.build_ok(
        ctx.path(),
        &["-t", "hello", "--source-date-epoch", "1700000000"],
    );
    let eb = b.build_ok(
        ctx.path(),
        &["-t", "hello", "--source-date-epoch", "1700000000"],
    );
    assert_eq!(
        image_event(&ea)["manifest_digest"],
        image_event(&eb)["manifest_digest"]
    );
    let (config, _, _keep) = a.image("hello");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    // the build arg sets it as well (BuildKit's way), for the same image
    let ec = Root::new().build_ok(
        ctx.path(),
        &["-t", "hello", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"],
    );
    assert_eq!(
        image_event(&ec)["manifest_digest"],
        image_event(&ea)["manifest_digest"]
    );
    let (out, events) = a.build(
        ctx.path(),
        &["-t", "hello", "--build-arg", "SOURCE_DATE_EPOCH=yesterday"],
    );
    assert!(!out.status.success());
    let (message, code) = super::build_pull::error_of(&events, &out);
    assert!(
        message.contains("invalid build arg SOURCE_DATE_EPOCH"),
        "{message}"
    );
    assert_ne!(code, "Internal");
}

/// The mtime of each entry of the last layer.
fn last_layer_mtimes(layers: &[PathBuf]) -> std::collections::BTreeMap<String, u64> {
    let last = layers.last().unwrap();
    let mut a = tar::Archive::new(std::fs::File::open(last).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned();
            (name, e.header().mtime().unwrap())
        })
        .collect()
}

#[test]
fn layers_keep_mtimes_and_source_date_epoch_clamps_them_and_keys_the_cache() {
    let root = Root::new();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox:latest\n\
             COPY old new /m/\n",
        ),
        ("old", "old\n"),
        ("new", "new\n"),
    ]);
    // 2001-09-09 and 2023-11-14
    let set = |name: &str, secs: u64| {
        let f = std::fs::File::options()
            .write(true)
            .open(ctx.path().join(name))
            .unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
            .unwrap();
    };
    set("old", 1_000_000_000);
    set("new", 1_700_000_000);

    // no epoch: the files' own mtimes, as BuildKit and Docker keep them
    root.build_ok(ctx.path(), &["-t", "mt"]);
    let (_, layers, _keep) = root.image("mt");
    let plain = last_layer_mtimes(&layers);
    assert_eq!(plain["m/old"], 1_000_000_000, "{plain:?}");
    assert_eq!(plain["m/new"], 1_700_000_000, "{plain:?}");

    // an epoch clamps what is later than it, and is a cache miss against the layer above
    let events = root.build_ok(
        ctx.path(),
        &["-t", "mt", "--source-date-epoch", "1600000000"],
    );
    let (cached, ran) = cached_and_run(&events);
    assert_eq!((cached.len(), ran.len()), (0, 1), "{events:?}");
    let (_, layers, _keep) = root.image("mt");
    let clamped = last_layer_mtimes(&layers);
    assert_eq!(clamped["m/old"], 1_000_000_000, "{clamped:?}");
    assert_eq!(clamped["m/new"], 1_600_000_000, "{clamped:?}");
    // the same epoch again: a hit
    let events = root.build_ok(
        ctx.path(),
        &["-t", "mt", "--source-date-epoch", "1600000000"],
    );
    let (cached, ran) = cached_and_run(&events);
    assert_eq!((cached.len(), ran.len()), (1, 0), "{events:?}");
}

#[test]
fn a_failing_run_reports_the_step_exit_code_and_output_and_tags_nothing() {
    let root = Root::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nRUN echo about to fail && echo oops >&2 && exit 3\n",
    )
    .unwrap();
    let (out, events) = root.build(ctx.path(), &["-t", "broken"]);
    assert!(!out.status.success());
    let err = of_type(&events, "error")[0];
    assert_eq!(err["exit_code"], 3);
    assert_eq!(err["step"], 2);
    let last: Vec<&str> = err["last_output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        last.contains(&"about to fail") && last.contains(&"oops"),
        "{last:?}"
    );
    assert!(
        !root.strata(&["inspect", "broken"]).status.success(),
        "no tag for a failed build"
    );
    // the plain renderer says it too
    let plain = root.strata(&["build", "--progress", "plain", ctx.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success());
    assert!(
        stderr.contains("exit code: 3") && stderr.contains("oops"),
        "{stderr}"
    );
}

#[test]
fn copy_of_a_missing_path_names_it() {
    let root = Root::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nCOPY no/such/file /x\n",
    )
    .unwrap();
    let (out, events) = root.build(ctx.path(), &[]);
    assert!(!out.status.success());
    let msg = of_type(&events, "error")[0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("/no/such/file") && msg.contains("not found"),
        "{msg}"
    );
    // the step failed before it started: the message still names its instruction, and a
    // user's mistake is not logged as the service's trouble
    for progress in [&["--progress", "plain"][..], &["-q"][..]] {
        let mut args = vec!["build", "-t", "x"];
        args.extend_from_slice(progress);
        args.push(ctx.path().to_str().unwrap());
        let out = root.strata(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("ERROR at step 2 (COPY no/such/file /x):"),
            "{progress:?}: {stderr}"
        );
        assert!(!stderr.contains("WARN"), "{progress:?}: {stderr}");
    }
}

#[test]
fn proxy_build_args_reach_run_undeclared_outside_history_and_cache_key() {
    let root = Root::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         ARG A=argval\n\
         ENV A=envval\n\
         RUN echo \"$A\" > /a && (env | grep -i _proxy= | sort > /proxy; true)\n",
    )]);
    let proxy = |value: &str| {
        [
            "--build-arg".to_owned(),
            format!("HTTP_PROXY={value}"),
            "--build-arg".to_owned(),
            "no_proxy=internal".to_owned(),
            "--build-arg".to_owned(),
            "UNUSED=1".to_owned(),
            "-t".to_owned(),
            "proxied".to_owned(),
        ]
    };
    let args = proxy("http://proxy.example:3128");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let events = root.build_ok(ctx.path(), &args);
    // an undeclared build arg is reported (dockerfile.md §9.2), a proxy is not
    let warnings: Vec<&str> = of_type(&events, "warning")
        .iter()
        .filter_map(|w| w["message"].as_str())
        .collect();
    assert_eq!(
        warnings,
        ["One or more build-args [UNUSED] were not consumed"],
        "{events:?}"
    );
    let (config, layers, _keep) = root.image("proxied");
    let files = entries(&layers);
    assert_eq!(files["a"].1, b"envval\n");
    assert_eq!(
        String::from_utf8_lossy(&files["proxy"].1),
        "HTTP_PROXY=http://proxy.example:3128\nno_proxy=internal\n"
    );
    // `|1 A=<the current env value>`, and no proxy in the history
    let history = created_by(&config);
    assert_eq!(
        history.last().unwrap(),
        "RUN |1 A=envval /bin/sh -c echo \"$A\" > /a && (env | grep -i _proxy= | sort > /proxy; true) # buildkit"
    );
    assert!(
        !config["config"]["Env"].to_string().contains("proxy"),
        "{config}"
    );
    // another proxy is the same step
    let args = proxy("http://other:8080");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let events = root.build_ok(ctx.path(), &args);
    let (cached, ran) = cached_and_run(&events);
    assert_eq!((cached.len(), ran.len()), (1, 0), "{events:?}");
}

#[test]
fn copy_cannot_reach_outside_the_context() {
    let root = Root::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("inside"), "inside\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ctx.path().join("passwd-link")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nCOPY ../../../inside /got-inside\nCOPY passwd-link /got-link\n",
    )
    .unwrap();
    let (out, events) = root.build(ctx.path(), &["-t", "contained"]);
    if out.status.success() {
        let (_, layers, _keep) = root.image("contained");
        let fs = unpack(&layers);
        assert_eq!(
            std::fs::read_to_string(fs.path().join("got-inside")).unwrap(),
            "inside\n"
        );
        let host = std::fs::read_to_string("/etc/passwd").unwrap();
        let got = std::fs::read_to_string(fs.path().join("got-link")).unwrap_or_default();
        assert_ne!(got, host, "the host's /etc/passwd leaked into the image");
    } else {
        let msg = of_type(&events, "error")[0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            msg.contains("passwd-link") || msg.contains("/etc/passwd"),
            "{msg}"
        );
    }
}

#[test]
fn workdir_in_proc_self_fd_is_refused() {
    let root = Root::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nWORKDIR /proc/self/fd/7\nRUN cat ../../../../etc/shadow\n",
    )
    .unwrap();
    let (out, events) = root.build(ctx.path(), &[]);
    assert!(!out.status.success());
    let msg = of_type(&events, "error")[0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("/proc"), "{msg}");
}

#[test]
fn from_an_unknown_image_names_it() {
    let root = Root::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM nosuch/image:1.2\nRUN true\n",
    )
    .unwrap();
    let (out, events) = root.build(ctx.path(), &[]);
    assert!(!out.status.success());
    let msg = of_type(&events, "error")
        .first()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(
        msg.contains("nosuch/image:1.2") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn explain_names_the_changed_env() {
    let root = Root::new();
    let ctx = tempfile::tempdir().unwrap();
    let df = |v: &str| format!("FROM busybox:latest\nENV FOO={v}\nRUN echo $FOO > /foo\n");
    std::fs::write(ctx.path().join("Dockerfile"), df("a")).unwrap();
    root.build_ok(ctx.path(), &[]);
    std::fs::write(ctx.path().join("Dockerfile"), df("b")).unwrap();
    let out = root.strata(&["build", "--explain", ctx.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#"ENV FOO changed "a" -> "b""#), "{stdout}");
}

/// `--explain` of a build that would be fully cached says so for every step (each cached
/// layer is the next step's parent, as in the build), and with `--no-cache` tells every
/// step as one that would run.
#[test]
fn explain_of_an_unchanged_build_is_cached_throughout_and_no_cache_runs_everything() {
    let root = Root::new();
    let ctx = context(&[
        ("f", "f\n"),
        (
            "Dockerfile",
            "FROM busybox:latest\nCOPY f /d\nRUN echo one > /one\nENV X=1\nRUN echo two > /two\n",
        ),
    ]);
    root.build_ok(ctx.path(), &[]);
    let out = explain(&root, ctx.path(), &[]);
    let steps: Vec<&str> = out.lines().filter(|l| l.starts_with("step")).collect();
    assert_eq!(steps.len(), 5, "{out}");
    assert!(steps.iter().all(|l| l.ends_with(": CACHED")), "{out}");
    let out = explain(&root, ctx.path(), &["--no-cache"]);
    let runs: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" COPY ") || l.contains(" RUN "))
        .collect();
    assert_eq!(runs.len(), 3, "{out}");
    assert!(
        runs.iter().all(|l| l.ends_with("MISS: --no-cache")),
        "{out}"
    );

    // a new step after cached ones has no entry; after one that runs, its parent changed
    let df = |text: &str| std::fs::write(ctx.path().join("Dockerfile"), text).unwrap();
    df(
        "FROM busybox:latest\nCOPY f /d\nRUN echo one > /one\nENV X=1\nRUN echo two > /two\nRUN echo new > /new\n",
    );
    let out = explain(&root, ctx.path(), &[]);
    assert!(
        out.contains("RUN echo new > /new: MISS: no cache entry"),
        "{out}"
    );
    df(
        "FROM busybox:latest\nCOPY f /d\nRUN echo one > /one\nENV X=1\nRUN echo 2 > /two\nRUN echo new > /new\n",
    );
    let out = explain(&root, ctx.path(), &[]);
    assert!(
        out.contains("RUN echo new > /new: MISS: the previous step was rebuilt"),
        "{out}"
    );
}

/// `strata build --explain`'s output (insisting on success).
fn explain(root: &Root, ctx: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", "--explain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = root.strata(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Miss reasons read as the Dockerfile is written: an ARG is an ARG, against the value of
/// the last build; COPY's destination as written; mounts without internal forms; a moved
/// base tag is named as such.
#[test]
fn explain_tells_misses_as_the_dockerfile_reads() {
    let root = Root::new();
    let ctx = context(&[("f", "f\n")]);
    let df = |text: &str| std::fs::write(ctx.path().join("Dockerfile"), text).unwrap();
    df("FROM busybox:latest\nARG V=one\nRUN echo $V > /v\n");
    root.build_ok(ctx.path(), &[]);
    root.build_ok(ctx.path(), &["--build-arg", "V=two"]);
    let out = explain(&root, ctx.path(), &["--build-arg", "V=three"]);
    assert!(out.contains(r#"ARG V changed "two" -> "three""#), "{out}");

    df("FROM busybox:latest\nCOPY f /ctx/\nRUN --mount=type=tmpfs,target=/t,size=1048576 true\n");
    root.build_ok(ctx.path(), &[]);
    df("FROM busybox:latest\nCOPY f /c/\n");
    let out = explain(&root, ctx.path(), &[]);
    assert!(
        out.contains(r#"COPY sources or destination changed "f /ctx/" -> "f /c/""#),
        "{out}"
    );
    df("FROM busybox:latest\nCOPY f /ctx/\nRUN --mount=type=tmpfs,target=/t true\n");
    let out = explain(&root, ctx.path(), &[]);
    assert!(
        out.contains(r#"--mount "type=tmpfs,target=/t,size=1048576" removed"#)
            && out.contains(r#"--mount "type=tmpfs,target=/t" added"#),
        "{out}"
    );
    assert!(!out.contains("Some(") && !out.contains("None"), "{out}");
    df("FROM busybox:latest\nCOPY f /ctx/\nRUN --mount=type=cache,target=/c true\n");
    root.build_ok(ctx.path(), &[]);
    df("FROM busybox:latest\nCOPY f /ctx/\nRUN --mount=type=cache,target=/c,sharing=locked true\n");
    let out = explain(&root, ctx.path(), &[]);
    assert!(
        out.contains("sharing=shared,") && out.contains("sharing=locked,"),
        "{out}"
    );

    // a base tag moved to another image: that is the reason, not some other entry's RUN
    assert!(
        root.strata(&["tag", "busybox:latest", "mybase"])
            .status
            .success()
    );
    df("FROM busybox:latest\nRUN echo other > /o\n");
    root.build_ok(ctx.path(), &[]);
    df("FROM busybox:latest\nRUN echo 2 > /two\n");
    root.build_ok(ctx.path(), &["-t", "base-v2"]);
    df("FROM mybase\nRUN echo hi > /hi\n");
    root.build_ok(ctx.path(), &[]);
    assert!(root.strata(&["tag", "base-v2", "mybase"]).status.success());
    let out = explain(&root, ctx.path(), &[]);
    assert!(
        out.contains("base image mybase changed: it now points to"),
        "{out}"
    );
    // also when the new base has other settings (its ENV joins the step's key)
    df("FROM busybox:latest\nENV FROM_BASE=3\n");
    root.build_ok(ctx.path(), &["-t", "base-v3"]);
    df("FROM mybase\nRUN echo hi > /hi\n");
    root.build_ok(ctx.path(), &[]);
    assert!(root.strata(&["tag", "base-v3", "mybase"]).status.success());
    let out = explain(&root, ctx.path(), &[]);
    assert!(
        out.contains("base image mybase changed: it now points to"),
        "{out}"
    );
}

/// Every entry of the image's layers as an unpacked root would hold it (later layers win,
/// whiteouts ignored): name -> (mode, bytes).
fn entries(layers: &[PathBuf]) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = std::collections::BTreeMap::new();
    for l in layers {
        let mut a = tar::Archive::new(std::fs::File::open(l).unwrap());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned();
            let mode = e.header().mode().unwrap();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            out.insert(name, (mode, bytes));
        }
    }
    out
}

/// The created_by strings of an image's history.
fn created_by(config: &Value) -> Vec<String> {
    config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap_or("").to_owned())
        .collect()
}

pub fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

fn error_message(out: &Output, events: &[Value]) -> String {
    assert!(!out.status.success(), "the build should fail");
    of_type(events, "error")
        .first()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn onbuild_triggers_run_in_the_child_right_after_its_from() {
    let root = Root::new();
    let parent = context(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         ONBUILD COPY greeting.txt /from-trigger.txt\n\
         ONBUILD RUN echo \"trigger saw $(cat /from-trigger.txt)\" > /trigger-ran.txt\n\
         ONBUILD ENV TRIGGERED=yes\n\
         CMD [\"sh\"]\n",
    )]);
    root.build_ok(parent.path(), &["-t", "parent"]);
    let (config, _, _keep) = root.image("parent");
    assert_eq!(
        config["config"]["OnBuild"],
        serde_json::json!([
            "COPY greeting.txt /from-trigger.txt",
            "RUN echo \"trigger saw $(cat /from-trigger.txt)\" > /trigger-ran.txt",
            "ENV TRIGGERED=yes"
        ])
    );
    let history = created_by(&config);
    assert!(
        !history
            .iter()
            .any(|h| h.contains("ONBUILD") || h.contains("greeting")),
        "ONBUILD adds no history: {history:?}"
    );

    let child = context(&[
        ("greeting.txt", "hello child"),
        (
            "Dockerfile",
            "FROM parent\nRUN test \"$TRIGGERED\" = yes && cp /trigger-ran.txt /child-saw.txt\n",
        ),
    ]);
    root.build_ok(child.path(), &["-t", "child"]);
    let (config, layers, _keep) = root.image("child");
    assert!(
        config["config"]["OnBuild"].is_null(),
        "triggers are not inherited: {}",
        config["config"]
    );
    assert!(
        config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "TRIGGERED=yes")
    );
    let history = created_by(&config);
    assert_eq!(
        &history[history.len() - 4..],
        [
            "COPY greeting.txt /from-trigger.txt # buildkit",
            "RUN /bin/sh -c echo \"trigger saw $(cat /from-trigger.txt)\" > /trigger-ran.txt # buildkit",
            "ENV TRIGGERED=yes",
            "RUN /bin/sh -c test \"$TRIGGERED\" = yes && cp /trigger-ran.txt /child-saw.txt # buildkit",
        ]
    );
    let files = entries(&layers);
    assert_eq!(files["child-saw.txt"].1, b"trigger saw hello child\n");

    // a grandchild runs no trigger again
    let grandchild = context(&[("Dockerfile", "FROM child\nENV GRAND=1\n")]);
    root.build_ok(grandchild.path(), &["-t", "grandchild"]);
    let (config, _, _keep) = root.image("grandchild");
    assert_eq!(created_by(&config).len(), history.len() + 1);

    for (trigger, message) in [
        (
            "ONBUILD RUN true",
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        ("FROM busybox", "FROM isn't allowed as an ONBUILD trigger"),
        (
            "MAINTAINER me",
            "MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
    ] {
        let bad = context(&[(
            "Dockerfile",
            &format!("FROM busybox:latest\nONBUILD {trigger}\n"),
        )]);
        let (out, events) = root.build(bad.path(), &[]);
        let msg = error_message(&out, &events);
        assert!(msg.contains(message) && msg.contains(":2:"), "{msg}");
    }
}

/// RUN gets BuildKit's /etc/hosts and /etc/resolv.conf, mounted read-only for the step:
/// localhost and the sandbox's name resolve, the host's DNS reaches a host-network step,
/// and no layer gains the files, the mount points made for them, or an untouched /etc.
#[test]
fn run_gets_hosts_and_resolv_conf_that_no_layer_keeps() {
    let root = Root::new();
    let ctx = context(&[
        ("own-hosts", "10.1.2.3 own\n"),
        (
            "Dockerfile",
            "FROM busybox:latest\n\
             RUN cat /etc/hosts > /hosts.seen && cat /etc/resolv.conf > /resolv.seen && \
                 ping -c1 -W1 localhost > /dev/null && ping -c1 -W1 buildkitsandbox > /dev/null\n\
             RUN true\n\
             COPY own-hosts /etc/hosts\n\
             RUN cat /etc/hosts > /hosts.seen2 && echo x > /etc/new\n\
             RUN ! echo 1.1.1.1 evil >> /etc/hosts\n",
        ),
    ]);
    root.build_ok(ctx.path(), &["-t", "netfiles"]);
    let (config, layers, _keep) = root.image("netfiles");
    assert_eq!(
        layers.len(),
        4,
        "busybox, RUN, COPY, RUN: `RUN true` changed nothing"
    );
    assert_eq!(tar_names(&layers[1]), ["hosts.seen", "resolv.seen"]);
    let mut names = tar_names(&layers[3]);
    names.sort();
    assert_eq!(names, ["etc/", "etc/new", "hosts.seen2"]);
    let files = entries(&layers);
    let sandbox_hosts =
        b"127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    assert_eq!(files["hosts.seen"].1, sandbox_hosts);
    assert_eq!(
        files["hosts.seen2"].1, sandbox_hosts,
        "the image's own is hidden"
    );
    assert_eq!(files["etc/hosts"].1, b"10.1.2.3 own\n", "and kept");
    let resolv = String::from_utf8(files["resolv.seen"].1.clone()).unwrap();
    assert!(
        resolv.lines().any(|l| l.starts_with("nameserver ")),
        "{resolv}"
    );
    assert!(
        !resolv
            .lines()
            .any(|l| l.starts_with("nameserver 127.") || l == "nameserver ::1"),
        "no loopback resolver without host networking: {resolv}"
    );
    let empty: Vec<bool> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(&empty[empty.len() - 5..], [false, true, false, false, true]);

    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nRUN --network=host cat /etc/resolv.conf > /r\n",
    )
    .unwrap();
    root.build_ok(ctx.path(), &["--allow", "network.host", "-t", "hostdns"]);
    let (_, layers, _keep) = root.image("hostdns");
    let host = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(entries(&layers)["r"].1, host, "the host's, as it is");
}

/// A RUN's stdout and stderr reach the client in the order they were written; what it
/// streams is clipped at 2 MiB (BuildKit's log limit) and long lines come in pieces, while
/// a failure still reports its last lines; a cached build's started event names the runtime.
#[test]
fn run_output_keeps_its_order_and_is_clipped_at_two_mib() {
    let root = Root::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         RUN for i in $(seq 1 40); do echo out$i; echo err$i >&2; done\n\
         RUN yes abcdefghijklmnopqrstuvwxyz | head -n 200000; head -c 300000 /dev/zero | tr '\\0' a\n",
    )]);
    let events = root.build_ok(ctx.path(), &["-t", "logs"]);
    let logs = |step: u64| -> Vec<String> {
        of_type(&events, "log")
            .iter()
            .filter(|l| l["step"] == step)
            .map(|l| l["data"].as_str().unwrap().to_owned())
            .collect()
    };
    let want: Vec<String> = (1..=40)
        .flat_map(|i| [format!("out{i}\n"), format!("err{i}\n")])
        .collect();
    assert_eq!(logs(2), want);
    let big = logs(3);
    let bytes: usize = big.iter().map(String::len).sum();
    assert!(bytes <= (2 << 20) + 100, "{bytes} bytes streamed");
    assert_eq!(
        big.last().map(String::as_str),
        Some("[output clipped, log limit 2MiB reached]\n")
    );
    assert!(big.iter().all(|l| l.len() <= 64 * 1024));

    // a rebuild in a new process, fully cached, starts no container (probing the runtime
    // would cost more than the whole build) and names the runtime the last probe found
    let events = root.build_ok(ctx.path(), &["-t", "logs"]);
    let runtime = of_type(&events, "started")[0]["runtime"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(runtime.ends_with(" (as last probed)"), "{runtime:?}");
    assert!(
        runtime.contains("crun") || runtime.contains("runc"),
        "{runtime:?}"
    );

    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nRUN yes abc | head -n 1000000; echo the-end; exit 3\n",
    )
    .unwrap();
    let (out, events) = root.build(ctx.path(), &[]);
    assert!(!out.status.success());
    let error = &of_type(&events, "error")[0];
    assert_eq!(error["exit_code"], 3);
    assert_eq!(
        error["last_output"].as_array().unwrap().last().unwrap(),
        "the-end"
    );
    let bytes: usize = of_type(&events, "log")
        .iter()
        .map(|l| l["data"].as_str().unwrap().len())
        .sum();
    assert!(bytes <= (2 << 20) + 100, "{bytes} bytes streamed");
}

#[test]
fn run_steps_get_buildkits_open_file_limit_not_the_executors() {
    // strata raises its own soft limit to the hard one (for its stores' table files); a
    // step's processes get what BuildKit gives them
    let root = Root::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:latest\nRUN echo \"$(ulimit -Sn) $(ulimit -Hn)\" > /nofile\n",
    )]);
    root.build_ok(ctx.path(), &["-t", "nofile"]);
    let (_, layers, _keep) = root.image("nofile");
    let nofile = String::from_utf8_lossy(&entries(&layers)["nofile"].1).into_owned();
    assert_eq!(nofile, "1024 1024\n", "soft and hard limits of a RUN step");
}

#[test]
fn copy_heredocs_become_files_with_mode_0644_unless_chmod() {
    let root = Root::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         ARG NAME=world\n\
         COPY <<EOF /etc/greeting\n\
         hello $NAME\n\
         EOF\n\
         COPY <<one <<two /multi/\n\
         first\n\
         one\n\
         second\n\
         two\n\
         COPY --chmod=755 <<'SCRIPT' /usr/local/bin/hi\n\
         #!/bin/sh\n\
         echo \"hi $NAME\"\n\
         SCRIPT\n\
         RUN hi > /hi.out\n",
    )]);
    root.build_ok(ctx.path(), &["-t", "heredocs"]);
    let (config, layers, _keep) = root.image("heredocs");
    let files = entries(&layers);
    assert_eq!(files["etc/greeting"], (0o644, b"hello world\n".to_vec()));
    assert_eq!(files["multi/one"], (0o644, b"first\n".to_vec()));
    assert_eq!(files["multi/two"], (0o644, b"second\n".to_vec()));
    assert_eq!(
        files["usr/local/bin/hi"],
        (0o755, b"#!/bin/sh\necho \"hi $NAME\"\n".to_vec()),
        "a quoted delimiter keeps the body as written"
    );
    assert_eq!(files["hi.out"].1, b"hi world\n");
    let history = created_by(&config);
    assert_eq!(
        &history[history.len() - 4..history.len() - 1],
        [
            "COPY <<EOF /etc/greeting # buildkit",
            "COPY <<one <<two /multi/ # buildkit",
            "COPY --chmod=755 <<SCRIPT /usr/local/bin/hi # buildkit",
        ]
    );
    // a changed body is a changed source
    let df = std::fs::read_to_string(ctx.path().join("Dockerfile")).unwrap();
    let counts = rebuilt_with(
        &root,
        ctx.path(),
        "heredocs",
        &df.replace("second\n", "other\n"),
    );
    assert_eq!(counts, (1, 3));
}

/// Writes `dockerfile` into the context, builds it as `tag` and returns how many layer
/// steps were cached and how many ran.
fn rebuilt_with(root: &Root, ctx: &Path, tag: &str, dockerfile: &str) -> (usize, usize) {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let events = root.build_ok(ctx, &["-t", tag]);
    let (cached, ran) = cached_and_run(&events);
    (cached.len(), ran.len())
}

#[test]
fn run_heredocs_run_their_bodies_in_every_form() {
    let root = Root::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         RUN <<EOF\n\
         echo plain > /plain\n\
         EOF\n\
         RUN <<\"EOF\"\n\
         echo quoted $HOME > /quoted\n\
         EOF\n\
         RUN <<-EOF\n\
         \techo chomped > /chomped\n\
         EOF\n\
         RUN <<EOF sh\n\
         echo via-stdin > /stdin\n\
         EOF\n\
         RUN cat <<A > /a && cat <<B > /b\n\
         in-a\n\
         A\n\
         in-b\n\
         B\n\
         RUN <<EOF\n\
         #!/bin/sh -e\n\
         echo \"script $0\" > /script\n\
         EOF\n",
    )]);
    root.build_ok(ctx.path(), &["-t", "run-heredocs"]);
    let (config, layers, _keep) = root.image("run-heredocs");
    let files = entries(&layers);
    for (path, content) in [
        ("plain", "plain\n"),
        ("quoted", "quoted /root\n"),
        ("chomped", "chomped\n"),
        ("stdin", "via-stdin\n"),
        ("a", "in-a\n"),
        ("b", "in-b\n"),
        // run as a file mounted at /dev/pipes/EOF, through its own interpreter line
        ("script", "script /dev/pipes/EOF\n"),
    ] {
        assert_eq!(
            files
                .get(path)
                .map(|f| String::from_utf8_lossy(&f.1).into_owned()),
            Some(content.to_owned()),
            "/{path}"
        );
    }
    assert!(
        !files.keys().any(|p| p.starts_with("dev/pipes")),
        "the script's mount point is not in a layer: {:?}",
        files.keys().collect::<Vec<_>>()
    );
    let history = created_by(&config);
    assert_eq!(
        &history[history.len() - 6..],
        [
            "RUN /bin/sh -c echo plain > /plain\n # buildkit",
            "RUN /bin/sh -c echo quoted $HOME > /quoted\n # buildkit",
            "RUN /bin/sh -c echo chomped > /chomped\n # buildkit",
            "RUN /bin/sh -c <<EOF sh\necho via-stdin > /stdin\nEOF # buildkit",
            "RUN /bin/sh -c cat <<A > /a && cat <<B > /b\nin-a\nA\nin-b\nB # buildkit",
            "RUN /dev/pipes/EOF # buildkit",
        ]
    );
    // a changed body is a changed step, the script's too
    let df = std::fs::read_to_string(ctx.path().join("Dockerfile")).unwrap();
    let tag = "run-heredocs";
    let stdin = df.replace("via-stdin", "via-STDIN");
    assert_eq!(rebuilt_with(&root, ctx.path(), tag, &stdin), (3, 3));
    let script = df.replace("script $0", "SCRIPT $0");
    assert_eq!(rebuilt_with(&root, ctx.path(), tag, &script), (5, 1));
}

#[test]
fn add_extracts_tar_archives_by_content_and_copies_anything_else() {
    use crate::images_io::compress_with;
    let root = Root::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         ADD own.tar.xz /xz/\n\
         ADD own.tar.bz2 /bz/\n\
         ADD own.tar.gz /gz/\n\
         ADD own.tar /plain/\n\
         ADD file.txt.gz /t3/\n\
         ADD empty.tar.gz /e/\n",
    )]);
    let tar = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(6);
        h.set_mode(0o644);
        b.append_data(&mut h, "inside/hello.txt", &b"hello\n"[..])
            .unwrap();
        b.into_inner().unwrap()
    };
    let text_gz = compress_with("gzip", &b"not a tar\n".repeat(100));
    let files: [(&str, Vec<u8>); 6] = [
        ("own.tar.xz", compress_with("xz", &tar)),
        ("own.tar.bz2", compress_with("bzip2", &tar)),
        ("own.tar.gz", compress_with("gzip", &tar)),
        ("own.tar", tar.clone()),
        ("file.txt.gz", text_gz.clone()),
        ("empty.tar.gz", compress_with("gzip", &[0u8; 10240])),
    ];
    for (name, bytes) in &files {
        std::fs::write(ctx.path().join(name), bytes).unwrap();
    }
    root.build_ok(ctx.path(), &["-t", "added"]);
    let (_, layers, _keep) = root.image("added");
    let got = entries(&layers);
    for dir in ["xz", "bz", "gz", "plain"] {
        assert_eq!(
            got[&format!("{dir}/inside/hello.txt")].1,
            b"hello\n",
            "{dir}: the archive is extracted"
        );
    }
    assert_eq!(got["t3/file.txt.gz"].1, text_gz, "a gzip of text is a file");
    assert_eq!(
        got["e/empty.tar.gz"].1, files[5].1,
        "so is an empty archive"
    );
    assert!(!got.contains_key("xz/own.tar.xz") && !got.contains_key("t3/file.txt"));
}

/// A tar of one regular file `a.txt` ("hello\n").
fn one_file_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(6);
    h.set_mode(0o644);
    b.append_data(&mut h, "a.txt", &b"hello\n"[..]).unwrap();
    b.into_inner().unwrap()
}

/// A flag that changes what COPY/ADD writes changes the step's key: a build with it never
/// takes the layer the step made without it (dockerfile.md §13).
#[test]
fn every_copy_and_add_flag_is_part_of_the_cache_key() {
    let root = Root::new();
    let ctx = context(&[("d/a.txt", "a\n"), ("d/b.md", "b\n")]);
    std::fs::write(ctx.path().join("t.tar"), one_file_tar()).unwrap();
    let tag = "flags";
    let df = |line: &str| format!("FROM busybox:latest\n{line}\n");
    assert_eq!(
        rebuilt_with(&root, ctx.path(), tag, &df("ADD t.tar /o/")),
        (0, 1)
    );
    // the default spelled out is the same step
    let unpacked = df("ADD --unpack=true t.tar /o/");
    assert_eq!(rebuilt_with(&root, ctx.path(), tag, &unpacked), (1, 0));
    let kept = df("ADD --unpack=false t.tar /o/");
    assert_eq!(rebuilt_with(&root, ctx.path(), tag, &kept), (0, 1));
    let (_, layers, _keep) = root.image(tag);
    let files = entries(&layers[layers.len() - 1..]);
    assert_eq!(files["o/t.tar"].1, one_file_tar());
    assert!(!files.contains_key("o/a.txt"), "{:?}", files.keys());
    assert_eq!(rebuilt_with(&root, ctx.path(), tag, &kept), (1, 0));

    // each COPY variant is new: none may be answered by an entry of another
    assert_eq!(
        rebuilt_with(&root, ctx.path(), tag, &df("COPY d /c/")),
        (0, 1)
    );
    for line in [
        "COPY --chmod=600 d /c/",
        "COPY --chown=1:1 d /c/",
        "COPY --link d /c/",
        "COPY --exclude=*.md d /c/",
        "COPY --parents d /c/",
        "ADD d /c/",
    ] {
        assert_eq!(
            rebuilt_with(&root, ctx.path(), tag, &df(line)),
            (0, 1),
            "{line}"
        );
    }
    let from = |stage: &str| {
        format!(
            "FROM busybox:latest AS a\nRUN echo a > /f\n\
             FROM busybox:latest AS b\nRUN echo b > /f\n\
             FROM busybox:latest\nCOPY --from=a /f /a\nCOPY --from={stage} /f /f\n"
        )
    };
    assert_eq!(rebuilt_with(&root, ctx.path(), tag, &from("a")), (0, 3));
    // stage b runs for the first time; the last COPY, the same but for --from, runs again
    assert_eq!(rebuilt_with(&root, ctx.path(), tag, &from("b")), (2, 2));
}

/// name -> (uid, gid, mode) of every entry of a layer tar.
fn owners(layer: &Path) -> std::collections::BTreeMap<String, (u64, u64, u32)> {
    let mut a = tar::Archive::new(std::fs::File::open(layer).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            let name = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned();
            (
                name,
                (
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mode().unwrap() & 0o7777,
                ),
            )
        })
        .collect()
}

/// An archive of `sub/` (0750) and `sub/a.txt` (0640), both owned by 1234:1234.
fn owned_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, mode, data) in [
        ("sub/", tar::EntryType::Directory, 0o750, &b""[..]),
        ("sub/a.txt", tar::EntryType::Regular, 0o640, &b"a\n"[..]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1234);
        h.set_gid(1234);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn add_chown_owns_every_extracted_entry_and_chmod_leaves_their_modes() {
    let root = Root::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         ADD --chown=1:2 t.tar /o/\n\
         ADD --chown=1:2 --chmod=600 t.tar /p/\n\
         ADD t.tar /q/\n",
    )]);
    std::fs::write(ctx.path().join("t.tar"), owned_tar()).unwrap();
    root.build_ok(ctx.path(), &["-t", "addchown"]);
    let (_, layers, _keep) = root.image("addchown");
    let n = layers.len();
    let (o, p, q) = (
        owners(&layers[n - 3]),
        owners(&layers[n - 2]),
        owners(&layers[n - 1]),
    );
    assert_eq!(o["o"], (1, 2, 0o755), "the destination it made");
    assert_eq!(o["o/sub"], (1, 2, 0o750));
    assert_eq!(o["o/sub/a.txt"], (1, 2, 0o640));
    assert_eq!(p["p/sub"], (1, 2, 0o750));
    assert_eq!(p["p/sub/a.txt"], (1, 2, 0o640));
    assert_eq!(q["q"], (0, 0, 0o755));
    assert_eq!(
        q["q/sub/a.txt"],
        (1234, 1234, 0o640),
        "without --chown: the archive's"
    );
}

/// Docker and BuildKit extract `/x` of an ADD archive as `x` under the destination.
#[test]
fn add_extracts_absolute_archive_names_under_the_destination() {
    let root = Root::new();
    let ctx = context(&[("Dockerfile", "FROM busybox:latest\nADD abs.tar /o/\n")]);
    let mut b = tar::Builder::new(Vec::new());
    for name in ["/tmp/abs/f", "/g"] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(2);
        // the name field written as is: the tar crate refuses to append absolute names
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, &b"x\n"[..]).unwrap();
    }
    std::fs::write(ctx.path().join("abs.tar"), b.into_inner().unwrap()).unwrap();
    root.build_ok(ctx.path(), &["-t", "absnames"]);
    let (_, layers, _keep) = root.image("absnames");
    let files = entries(&layers);
    assert_eq!(files["o/tmp/abs/f"].1, b"x\n");
    assert_eq!(files["o/g"].1, b"x\n");
}

#[test]
fn add_makes_no_device_nodes_or_fifos_from_an_archive_and_says_so() {
    let root = Root::new();
    let ctx = context(&[("Dockerfile", "FROM busybox:latest\nADD dev.tar /o/\n")]);
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, major, minor) in [
        ("null", tar::EntryType::Char, 1, 3),
        ("sda", tar::EntryType::Block, 8, 0),
        ("pipe", tar::EntryType::Fifo, 0, 0),
        ("f", tar::EntryType::Regular, 0, 0),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o666);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_size(0);
        b.append_data(&mut h, name, &b""[..]).unwrap();
    }
    std::fs::write(ctx.path().join("dev.tar"), b.into_inner().unwrap()).unwrap();
    let events = root.build_ok(ctx.path(), &["-t", "devnodes"]);
    let (_, layers, _keep) = root.image("devnodes");
    let names = tar_names(&layers[layers.len() - 1]);
    assert_eq!(names, ["o/", "o/f"]);
    let warnings: Vec<String> = of_type(&events, "warning")
        .iter()
        .map(|w| w["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("did not extract 3") && w.contains("null, sda, pipe")),
        "{warnings:?}"
    );
}

/// A symlink in the image whose target's parents are missing: COPY and WORKDIR through it
/// make them inside the image (BuildKit's MkdirAll), and what cannot be made is named as
/// the image's path.
#[test]
fn copy_and_workdir_through_a_symlink_make_its_missing_target() {
    let root = Root::new();
    let ctx = context(&[
        ("f", "f\n"),
        (
            "Dockerfile",
            "FROM busybox:latest\n\
             RUN ln -s /opt/a/b /lnk && ln -s ../srv/x /lnk2\n\
             COPY f /lnk/f\n\
             WORKDIR /lnk2/w\n\
             RUN echo here > in-w\n",
        ),
    ]);
    root.build_ok(ctx.path(), &["-t", "dangling"]);
    let (_, layers, _keep) = root.image("dangling");
    let files = entries(&layers);
    assert_eq!(files["opt/a/b/f"].1, b"f\n");
    assert_eq!(files["srv/x/w/in-w"].1, b"here\n");
    assert!(files.contains_key("lnk") && !files.contains_key("lnk/f"));

    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nRUN touch /file && ln -s /file/sub /bad\nCOPY f /bad/f\n",
    )
    .unwrap();
    let (out, events) = root.build(ctx.path(), &[]);
    let msg = error_message(&out, &events);
    assert!(msg.contains("/file is not a directory"), "{msg}");
    let shown = format!("{msg}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !shown.contains(root.dir.path().to_str().unwrap()) && !shown.contains("merged"),
        "{shown}"
    );
    assert_eq!(of_type(&events, "error")[0]["code"], "InvalidArgument");
}

#[test]
fn copy_chmod_takes_symbolic_modes_and_names_bad_ones() {
    use std::os::unix::fs::PermissionsExt;
    let root = Root::new();
    let ctx = context(&[
        ("a.sh", "echo a\n"),
        ("d/x", "x\n"),
        ("d/sub/e", "e\n"),
        (
            "Dockerfile",
            "FROM busybox:latest\n\
             COPY --chmod=u+x,g-w a.sh /a.sh\n\
             COPY --chmod=a=rX d /d/\n\
             COPY --chmod=0640 a.sh /octal.sh\n",
        ),
    ]);
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(ctx.path().join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("a.sh", 0o664);
    mode("d/x", 0o600);
    mode("d/sub", 0o700);
    mode("d/sub/e", 0o700);
    root.build_ok(ctx.path(), &["-t", "modes"]);
    let (config, layers, _keep) = root.image("modes");
    let files = entries(&layers);
    let m = |p: &str| files[p].0 & 0o7777;
    assert_eq!(m("a.sh"), 0o744);
    assert_eq!(m("d/x"), 0o444);
    assert_eq!(m("d/sub"), 0o555);
    assert_eq!(m("d/sub/e"), 0o555);
    assert_eq!(m("octal.sh"), 0o640);
    assert!(
        created_by(&config)
            .iter()
            .any(|h| h == "COPY --chmod=u+x,g-w a.sh /a.sh # buildkit")
    );

    for bad in ["u+q", "9", "g+z", "17777"] {
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!("FROM busybox:latest\nCOPY --chmod={bad} a.sh /b\n"),
        )
        .unwrap();
        let (out, events) = root.build(ctx.path(), &[]);
        let msg = error_message(&out, &events);
        assert!(
            msg.contains("chmod") && msg.contains(&format!("'{bad}'")) && msg.contains(":2:"),
            "{msg}"
        );
    }
}

#[test]
fn copy_parents_keeps_the_source_directories() {
    let root = Root::new();
    let ctx = context(&[
        ("x/a.txt", "a"),
        ("x/y/b.txt", "b"),
        ("x/y/c.md", "c"),
        ("z/d.txt", "d"),
        (
            "Dockerfile",
            "FROM busybox:latest\n\
             COPY --parents x/a.txt z/d.txt /p/\n\
             COPY --parents ./x/./y/*.txt /q/\n\
             COPY --parents x/**/*.md /r\n\
             COPY --parents x/y /s/\n",
        ),
    ]);
    root.build_ok(ctx.path(), &["-t", "parents"]);
    let (config, layers, _keep) = root.image("parents");
    let files = entries(&layers);
    for (path, content) in [
        ("p/x/a.txt", "a"),
        ("p/z/d.txt", "d"),
        ("q/y/b.txt", "b"),
        ("r/x/y/c.md", "c"),
        ("s/x/y/b.txt", "b"),
        ("s/x/y/c.md", "c"),
    ] {
        assert_eq!(files[path].1, content.as_bytes(), "{path}");
    }
    assert!(!files.contains_key("q/y/c.md") && !files.contains_key("p/a.txt"));
    assert!(
        created_by(&config)
            .iter()
            .any(|h| h == "COPY --parents x/a.txt z/d.txt /p/ # buildkit")
    );
}

/// Two independent stages whose RUNs each wait until the other has started: a build that
/// ran them one after the other would never finish (the step timeout fails it instead).
/// They meet through a shared cache mount, the only place two sandboxes without network
/// can both see.
#[test]
fn independent_stages_build_at_the_same_time() {
    let root = Root::new();
    let run = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/r touch /r/{me} && \
             until [ -e /r/{other} ]; do sleep 0.1; done && echo {me} > /{me}\n"
        )
    };
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM busybox:latest AS left\n{}FROM busybox:latest AS right\n{}\
             FROM busybox:latest\nCOPY --from=left /left /left\nCOPY --from=right /right /right\n",
            run("left", "right"),
            run("right", "left")
        ),
    )]);
    let events = root.build_ok(ctx.path(), &["-t", "both", "--step-timeout", "300"]);
    // the progress stream shows it too: both RUNs started before either finished, and
    // each event names its stage
    let runs: Vec<&Value> = of_type(&events, "step_started")
        .into_iter()
        .filter(|e| e["instruction"].as_str().unwrap().starts_with("RUN"))
        .collect();
    assert_eq!(runs.len(), 2);
    let mut stages: Vec<&str> = runs
        .iter()
        .map(|e| e["stage_name"].as_str().unwrap())
        .collect();
    stages.sort();
    assert_eq!(stages, ["left", "right"]);
    let position = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred).unwrap();
    let last_start = runs.iter().map(|r| position(&|e| e == *r)).max().unwrap();
    let first_finish =
        position(&|e| e["type"] == "step_finished" && runs.iter().any(|r| r["step"] == e["step"]));
    assert!(last_start < first_finish, "{events:?}");
    let (_, layers, _keep) = root.image("both");
    let files = entries(&layers);
    assert_eq!(files["left"].1, b"left\n");
    assert_eq!(files["right"].1, b"right\n");
}

#[test]
fn a_cache_mount_from_a_stage_starts_with_its_source_and_keeps_what_steps_add() {
    let root = Root::new();
    let dockerfile = |n: u32| {
        format!(
            "FROM busybox:latest AS seed\n\
             RUN mkdir -p /deps/pkg && echo seeded > /deps/pkg/index\n\
             FROM busybox:latest\n\
             RUN --mount=type=cache,target=/cache,id=deps,from=seed,source=/deps cat /cache/pkg/index > /seen && echo run{n} >> /cache/pkg/index\n"
        )
    };
    let ctx = context(&[("Dockerfile", &dockerfile(1))]);
    root.build_ok(ctx.path(), &["-t", "seeded"]);
    let (_, layers, _keep) = root.image("seeded");
    let files = entries(&layers);
    assert_eq!(
        files["seen"].1, b"seeded\n",
        "the new cache held the stage's /deps"
    );
    assert!(
        !files.keys().any(|k| k.starts_with("cache")),
        "the cache is not in a layer"
    );

    // the cache exists now: it keeps what the first build added and is not seeded again
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile(2)).unwrap();
    root.build_ok(ctx.path(), &["-t", "seeded"]);
    let (_, layers, _keep) = root.image("seeded");
    assert_eq!(entries(&layers)["seen"].1, b"seeded\nrun1\n");

    // a source that is not there is named
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest AS seed\nFROM busybox:latest\nRUN --mount=type=cache,target=/c,id=other,from=seed,source=/nope true\n",
    )
    .unwrap();
    let (out, events) = root.build(ctx.path(), &[]);
    let msg = error_message(&out, &events);
    assert!(msg.contains("/nope"), "{msg}");
}

#[test]
fn run_mounts_cache_tmpfs_and_bind() {
    let root = Root::new();
    let ctx = context(&[
        ("data/input.txt", "from the context\n"),
        (
            "Dockerfile",
            "FROM busybox:latest AS builder\n\
             RUN mkdir /out && echo built > /out/artifact\n\
             FROM busybox:latest\n\
             WORKDIR /work\n\
             RUN --mount=type=cache,target=/var/cache/app echo run >> /var/cache/app/log && cp /var/cache/app/log /seen-log\n\
             RUN --mount=type=tmpfs,target=scratch echo t > scratch/t && test -f /work/scratch/t\n\
             RUN --mount=type=bind,source=data,target=/ctx cat /ctx/input.txt > /from-ctx.txt && if touch /ctx/new 2>/dev/null; then exit 1; fi\n\
             RUN --mount=type=bind,from=builder,source=/out,target=/b,rw cp /b/artifact /artifact && touch /b/scribble\n",
        ),
    ]);
    root.build_ok(ctx.path(), &["-t", "mounts"]);
    let (_, layers, _keep) = root.image("mounts");
    let files = entries(&layers);
    assert_eq!(files["seen-log"].1, b"run\n");
    assert_eq!(files["from-ctx.txt"].1, b"from the context\n");
    assert_eq!(files["artifact"].1, b"built\n");
    for mounted in ["var/cache", "work/scratch", "ctx", "b"] {
        assert!(
            !files
                .keys()
                .any(|k| k == mounted || k.starts_with(&format!("{mounted}/"))),
            "{mounted} is in a layer: {:?}",
            files.keys().collect::<Vec<_>>()
        );
    }

    // the cache survives between builds; the RUN is a cache hit unless asked to run again
    root.build_ok(ctx.path(), &["-t", "mounts", "--no-cache"]);
    let (_, layers, _keep) = root.image("mounts");
    assert_eq!(entries(&layers)["seen-log"].1, b"run\nrun\n");
    drop(_keep);

    // cache mounts are kept until `strata gc --prune-cache`, which empties them
    let dry = root.strata(&["gc", "--dry-run", "--prune-cache"]);
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        dry.contains("Would remove 1 RUN --mount=type=cache directories"),
        "{dry}"
    );
    let gc = root.strata(&["gc", "--prune-cache"]);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let gc = String::from_utf8_lossy(&gc.stdout).into_owned();
    assert!(
        gc.contains("Removed 1 RUN --mount=type=cache directories"),
        "{gc}"
    );
    root.build_ok(ctx.path(), &["-t", "mounts", "--no-cache"]);
    let (_, layers, _keep) = root.image("mounts");
    assert_eq!(
        entries(&layers)["seen-log"].1,
        b"run\n",
        "the cache starts empty"
    );

    // a secret or an SSH agent no client session brings: left out unless required
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nRUN --mount=type=secret,id=token --mount=type=ssh test ! -e /run/secrets/token && test -z \"$SSH_AUTH_SOCK\"\n",
    )
    .unwrap();
    root.build_ok(ctx.path(), &[]);
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nRUN --mount=type=secret,id=token,required cat /run/secrets/token\n",
    )
    .unwrap();
    let (out, events) = root.build(ctx.path(), &[]);
    let msg = error_message(&out, &events);
    assert!(
        msg.contains("type=secret,required=true cannot be met"),
        "{msg}"
    );
}

/// An embedded `strata build -t TAG` whose RUN sleeps `seconds`, returned once the RUN has
/// started, with the rest of its plain progress (stderr) still to read.
fn build_until_run_starts(
    root: &Root,
    seconds: u32,
    tag: &str,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    tempfile::TempDir,
) {
    use std::io::BufRead;
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM busybox:latest\nRUN echo started && sleep {seconds}\n"),
    )
    .unwrap();
    let mut child = Command::new(STRATA)
        .args(["build", "--progress", "plain", "-t", tag])
        .arg(ctx.path())
        .env("STRATA_ROOT", root.dir.path())
        .env_remove("STRATA_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // plain progress goes to stderr; the RUN's own output line says it runs
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("| started") {
            break;
        }
    }
    (child, lines, ctx)
}

/// Whether a process whose command line holds `sleep SECONDS` runs, and whether anything is
/// mounted under `root`.
fn running_and_mounted(seconds: u32, root: &Path) -> (bool, bool) {
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let running = String::from_utf8_lossy(&ps.stdout).contains(&format!("sleep {seconds}"));
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(root.to_str().unwrap());
    (running, mounted)
}

/// SIGTERM or SIGHUP to an embedded `strata build` mid-RUN does what Ctrl-C does: the
/// build is cancelled, the container killed, its overlay unmounted, no tag moved. (Their
/// default action ended the process at once, leaving the container running and mounted.)
#[test]
fn sigterm_and_sighup_cancel_an_embedded_build_and_leave_nothing_running() {
    for (signal, seconds) in [
        (nix::sys::signal::Signal::SIGTERM, 304),
        (nix::sys::signal::Signal::SIGHUP, 305),
    ] {
        let root = Root::new();
        let (mut child, lines, _ctx) = build_until_run_starts(&root, seconds, "signalled:latest");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        // the rest of the output, until the process ends
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{signal}: {rest:?}");
        assert!(
            rest.iter().any(|l| l.contains("cancelled")),
            "{signal}: the build says it was cancelled: {rest:?}"
        );
        assert_eq!(
            running_and_mounted(seconds, root.dir.path()),
            (false, false),
            "{signal}: the container runs on, or its overlay stays mounted"
        );
        let out = root.strata(&["images", "-q", "signalled"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().is_empty(),
            "{signal}: nothing tagged"
        );
    }
}

/// A build killed outright (SIGKILL: nothing can clean up) leaves its container running
/// and its overlay mounted; the next command over the root, whatever it is, removes both
/// (the container first: it ran on, unmounted, until a later build ran a container).
#[test]
fn what_a_killed_build_leaves_is_removed_by_the_next_command() {
    let root = Root::new();
    let (mut child, _lines, _ctx) = build_until_run_starts(&root, 306, "killed:latest");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        running_and_mounted(306, root.dir.path()),
        (true, true),
        "SIGKILL leaves the container and its mount"
    );

    let listed = root.strata(&["images", "-q"]);
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(
        running_and_mounted(306, root.dir.path()),
        (false, false),
        "the leftover container and mount were removed"
    );
    // and the root builds on
    let next = tempfile::tempdir().unwrap();
    std::fs::write(
        next.path().join("Dockerfile"),
        "FROM busybox:latest\nRUN echo next > /next\n",
    )
    .unwrap();
    root.build_ok(next.path(), &["-t", "next:latest"]);
}

#[test]
fn a_scratch_stage_starts_from_buildkits_empty_image() {
    // dockerfile.md §8.1: WorkingDir "/" and the default PATH
    let root = Root::new();
    let ctx = context(&[("Dockerfile", "FROM scratch\nLABEL x=y\n")]);
    root.build_ok(ctx.path(), &["-t", "empty:1"]);
    let out = root.strata(&["inspect", "-f", "{{json .Config}}", "empty:1"]);
    assert!(out.status.success(), "{out:?}");
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["WorkingDir"], "/", "{config}");
    assert_eq!(
        config["Env"][0],
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
}

/// A file name that is not UTF-8 — in the context, or made by a RUN — is refused with an
/// error that names it (strata cannot carry such names yet), not a bare "No such file or
/// directory" (the lossy name was looked up) nor an internal error; a context file that
/// .dockerignore leaves out is no trouble.
#[test]
fn a_file_name_that_is_not_utf8_is_refused_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let root = Root::new();
    let ctx = context(&[("Dockerfile", "FROM busybox:latest\nRUN true\n")]);
    let odd = ctx.path().join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    std::fs::write(&odd, "x").unwrap();
    let (out, _) = root.build(ctx.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad\u{fffd}name")
            && err.contains("not UTF-8")
            && err.contains(".dockerignore"),
        "{err}"
    );
    std::fs::write(ctx.path().join(".dockerignore"), "bad*name\n").unwrap();
    root.build_ok(ctx.path(), &[]);

    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nRUN mkdir /d && touch \"/d/$(printf 'odd\\377')\"\n",
    )
    .unwrap();
    let (out, events) = root.build(ctx.path(), &[]);
    let msg = error_message(&out, &events);
    assert!(
        msg.contains("/d/odd\u{fffd}") && msg.contains("not UTF-8") && !msg.contains("internal"),
        "{msg}"
    );
    assert_eq!(
        of_type(&events, "error")[0]["code"].as_str(),
        Some("FailedPrecondition"),
        "{events:?}"
    );
}

/// Build-arg and epoch input as Docker and reproducible-builds tools read it: an empty
/// name is refused; `--build-arg NAME` of a variable the environment lacks leaves the ARG
/// its default; `SOURCE_DATE_EPOCH=` (set to nothing) is unset.
#[test]
fn build_args_and_an_empty_epoch_are_read_as_docker_reads_them() {
    let root = Root::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox:latest\nARG STRATA_QA_UNSET=dflt\nRUN test \"$STRATA_QA_UNSET\" = dflt\n",
    )]);
    let dir = ctx.path().to_str().unwrap();
    let out = root.strata(&["build", "-q", "--build-arg", "=v", dir]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the name is empty"),
        "{out:?}"
    );
    let out = root.strata_env(
        &["build", "-q", "--build-arg", "STRATA_QA_UNSET", dir],
        &[("SOURCE_DATE_EPOCH", "")],
    );
    assert!(out.status.success(), "{out:?}");
}

/// `--iidfile FILE` holds the built image's ID (what `-q` prints), and a failed build
/// leaves no stale one.
#[test]
fn iidfile_holds_the_image_id_and_a_failed_build_leaves_none() {
    let root = Root::new();
    let ctx = context(&[("Dockerfile", "FROM busybox:latest\nRUN echo hi > /hi\n")]);
    let dir = ctx.path().to_str().unwrap();
    let iid = ctx.path().join("iid");
    let iid_s = iid.to_str().unwrap();
    let out = root.strata(&["build", "-q", "--iidfile", iid_s, dir]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&iid).unwrap(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nRUN false\n",
    )
    .unwrap();
    let out = root.strata(&["build", "-q", "--iidfile", iid_s, dir]);
    assert!(!out.status.success());
    assert!(!iid.exists(), "a stale ID stays");
}
