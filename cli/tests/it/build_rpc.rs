//! The Build RPC against services running in the test process: a layer store, tag index and
//! parser shared by two executors with separate data roots (as in a farm), cancellation,
//! hostile base layers and ADD from an HTTP server.

use std::{path::Path, time::Duration};

use strata_image::{Descriptor, History, ImageConfig, Manifest, RootFs};
use strata_proto::{
    executor::{
        BuildEvent, BuildRequest, CancelBuildRequest, PruneLocalCacheRequest, build_event::Event,
        executor_client::ExecutorClient,
    },
    layer_store::{
        WriteBlobRequest, WriteStart, layer_store_client::LayerStoreClient,
        write_blob_request::Part,
    },
    tag_index::{ResolveTagRequest, SetTagRequest, tag_index_client::TagIndexClient},
};
use strata_server::ServeOptions;
use strata_test_support::InProcess;
use strata_types::{Digest, media_type};
use tonic::transport::Channel;

struct Farm {
    _dir: tempfile::TempDir,
    store: InProcess,
    tags: InProcess,
    _parser: InProcess,
    executors: Vec<InProcess>,
}

impl Farm {
    /// The lease the build `build_id` holds in the shared layer store, if any.
    async fn lease_of_build(&self, build_id: &str) -> Option<strata_proto::layer_store::Lease> {
        self.store()
            .list_leases(strata_proto::layer_store::ListLeasesRequest {})
            .await
            .unwrap()
            .into_inner()
            .leases
            .into_iter()
            .find(|l| l.labels.get("build").map(String::as_str) == Some(build_id))
    }

    async fn start(executors: usize) -> Self {
        Self::start_with(executors, ServeOptions::default()).await
    }

    /// [`Farm::start`] with these server options for every service.
    async fn start_with(executors: usize, opts: ServeOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("shared");
        let r = root.clone();
        let o = opts.clone();
        let store = InProcess::spawn(move |l, s| async move {
            strata_layer_store::run(
                strata_layer_store::Config {
                    root: r,
                    tag_index: None,
                    compression: Default::default(),
                    leases_end_with_process: false,
                },
                l,
                &o,
                s,
            )
            .await
        })
        .await;
        let r = root.clone();
        let o = opts.clone();
        let ls = store.addr.clone().into();
        let tags = InProcess::spawn(move |l, s| async move {
            strata_tag_index::run(strata_tag_index::Config::new(r, ls), l, &o, s).await
        })
        .await;
        let o = opts.clone();
        let parser =
            InProcess::spawn(move |l, s| async move { strata_parser::run(l, &o, s).await }).await;
        let mut list = Vec::new();
        for i in 0..executors {
            let config = strata_executor::Config {
                root: dir.path().join(format!("executor-{i}")),
                parser: parser.addr.clone().into(),
                layer_store: store.addr.clone().into(),
                tag_index: tags.addr.clone().into(),
                local_cache_budget: Some(strata_executor::local_cache::DEFAULT_MAX_BYTES),
                prune_at_start: true,
            };
            let o = opts.clone();
            list.push(
                InProcess::spawn(move |l, s| async move {
                    strata_executor::run(config, l, &o, s).await
                })
                .await,
            );
        }
        strata_test_support::wait_until_serving(&store.addr, Duration::from_secs(30))
            .await
            .unwrap();
        strata_test_support::wait_until_serving(&tags.addr, Duration::from_secs(30))
            .await
            .unwrap();
        Self {
            _dir: dir,
            store,
            tags,
            _parser: parser,
            executors: list,
        }
    }

    fn store(&self) -> LayerStoreClient<Channel> {
        LayerStoreClient::new(self.store.channel())
            .max_encoding_message_size(64 << 20)
            .max_decoding_message_size(64 << 20)
    }

    fn executor(&self, i: usize) -> ExecutorClient<Channel> {
        ExecutorClient::new(self.executors[i].channel())
    }

    async fn put(&self, bytes: Vec<u8>, media: &str) -> String {
        let digest = Digest::of(&bytes).to_string();
        let mut msgs = vec![WriteBlobRequest {
            part: Some(Part::Start(WriteStart {
                expected_digest: digest.clone(),
                expected_size: bytes.len() as i64,
                media_type: media.into(),
                ..Default::default()
            })),
        }];
        for c in bytes.chunks(1 << 20) {
            msgs.push(WriteBlobRequest {
                part: Some(Part::Data(c.to_vec().into())),
            });
        }
        self.store()
            .write_blob(futures::stream::iter(msgs))
            .await
            .unwrap();
        digest
    }

    /// Stores a one-layer image and tags it.
    async fn image(&self, name: &str, layer: Vec<u8>) {
        let diff_id = self.put(layer.clone(), media_type::OCI_LAYER_TAR).await;
        let config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id.clone()],
            },
            history: vec![History {
                created_by: Some("test".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let cbytes = config.to_json();
        let csize = cbytes.len() as i64;
        let cdigest = self.put(cbytes, media_type::OCI_CONFIG).await;
        let manifest = Manifest::oci(
            Descriptor::new(media_type::OCI_CONFIG, cdigest, csize),
            vec![Descriptor::new(
                media_type::OCI_LAYER_TAR,
                diff_id,
                layer.len() as i64,
            )],
        );
        let mdigest = self.put(manifest.to_json(), media_type::OCI_MANIFEST).await;
        TagIndexClient::new(self.tags.channel())
            .set_tag(SetTagRequest {
                name: name.into(),
                digest: mdigest,
                expected_digest: None,
            })
            .await
            .unwrap();
    }

    async fn busybox(&self) {
        self.image(
            "busybox:latest",
            std::fs::read(crate::build::busybox_tar()).unwrap(),
        )
        .await;
    }

    /// Stores a context holding `files` and returns its digest.
    async fn context(&self, files: &[(&str, &str)]) -> String {
        let mut b = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_mode(0o644);
            h.set_size(content.len() as u64);
            h.set_cksum();
            b.append(&h, content.as_bytes()).unwrap();
        }
        self.put(b.into_inner().unwrap(), media_type::BUILD_CONTEXT)
            .await
    }
}

async fn build(client: &mut ExecutorClient<Channel>, req: BuildRequest) -> Vec<Event> {
    let mut stream = client.build(req).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(BuildEvent { event: Some(e), .. }) = stream.message().await.unwrap() {
        out.push(e);
    }
    out
}

fn request(dockerfile: &str, context: &str, tags: &[&str]) -> BuildRequest {
    BuildRequest {
        context_digest: context.into(),
        dockerfile_content: dockerfile.as_bytes().to_vec(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

/// Starts a build (id `build_id`) whose RUN step prints `started` and sleeps `seconds`
/// (distinct per test: tests run at once, and one looks for its own sleep among the host's
/// processes), and returns its event stream once that line came: its container is running.
async fn running_build(
    client: &mut ExecutorClient<Channel>,
    build_id: &str,
    tags: &[&str],
    seconds: u32,
) -> tonic::Streaming<BuildEvent> {
    let mut req = request(
        &format!("FROM busybox:latest\nRUN echo started && sleep {seconds}\n"),
        "",
        tags,
    );
    req.build_id = build_id.into();
    let mut stream = client.build(req).await.unwrap().into_inner();
    loop {
        let e = stream.message().await.unwrap().expect("stream ended early");
        if let Some(Event::Log(l)) = e.event
            && String::from_utf8_lossy(&l.data).contains("started")
        {
            return stream;
        }
    }
}

fn done(events: &[Event]) -> &strata_proto::executor::ImageDone {
    events
        .iter()
        .find_map(|e| {
            if let Event::Image(d) = e {
                Some(d)
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("no image: {events:?}"))
}

fn error(events: &[Event]) -> &strata_proto::executor::BuildError {
    events
        .iter()
        .find_map(|e| {
            if let Event::Error(d) = e {
                Some(d)
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("no error: {events:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_built_by_one_executor_is_a_cache_hit_for_another() {
    let farm = Farm::start(2).await;
    farm.busybox().await;
    let ctx = farm.context(&[("a.txt", "shared cache\n")]).await;
    let df = "FROM busybox:latest\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n";
    let first = build(&mut farm.executor(0), request(df, &ctx, &["one"])).await;
    // the runtime is probed when a step first runs, so the next build's start names it
    let again = build(&mut farm.executor(0), request(df, &ctx, &["one"])).await;
    let started = again
        .iter()
        .find_map(|e| {
            if let Event::Started(s) = e {
                Some(s.runtime.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert!(
        started.contains("runc") || started.contains("crun"),
        "{started}"
    );
    let second = build(&mut farm.executor(1), request(df, &ctx, &["two"])).await;
    let cached = second
        .iter()
        .filter(|e| matches!(e, Event::StepCached(_)))
        .count();
    assert_eq!(
        cached, 2,
        "COPY and RUN hit on the other executor: {second:?}"
    );
    assert_eq!(done(&first).manifest_digest, done(&second).manifest_digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_cancelled_mid_run_kills_the_container_unmounts_and_tags_nothing() {
    let farm = Farm::start(1).await;
    farm.busybox().await;
    let mut client = farm.executor(0);
    let mut stream = running_build(&mut client, "cancel-me", &["cancelled:latest"], 301).await;
    // the running build's lease is short (renewed while it runs): a dead executor's builds
    // pin their blobs for minutes, not hours
    let lease = farm
        .lease_of_build("cancel-me")
        .await
        .expect("the running build holds a lease");
    let left = lease.expires_at.as_ref().unwrap().seconds
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
    assert!(
        (0..=16 * 60).contains(&left),
        "the lease expires in {left} s"
    );
    let cancelled = client
        .cancel_build(CancelBuildRequest {
            build_id: "cancel-me".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cancelled.cancelled);
    let mut rest = Vec::new();
    while let Some(BuildEvent { event: Some(e), .. }) =
        tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap()
            .unwrap()
    {
        rest.push(e);
    }
    assert_eq!(error(&rest).code, "Cancelled");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(farm._dir.path().to_str().unwrap()),
        "a mount was left behind:\n{mounts}"
    );
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains("sleep 301"),
        "the container still runs"
    );
    // nor does the RUN's bundle stay in the executor's scratch (it did until a restart)
    let scratch = farm._dir.path().join("executor-0/executor/tmp");
    let bundles = || -> Vec<String> {
        std::fs::read_dir(&scratch)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("cancel-me") && n.ends_with("-bundle"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !bundles().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled RUN's bundle stays: {:?}",
            bundles()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tag = TagIndexClient::new(farm.tags.channel())
        .resolve_tag(ResolveTagRequest {
            name: "cancelled:latest".into(),
        })
        .await;
    assert_eq!(tag.unwrap_err().code(), tonic::Code::NotFound);
    // the build's lease goes too (it would pin the build's blobs for hours): its deletion
    // is a task of its own, so it is waited for, within a bound
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let Some(held) = farm.lease_of_build("cancel-me").await else {
            break;
        };
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled build's lease is still there: {held:?}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_the_drain_limit_cuts_off_is_told_why() {
    let farm = Farm::start_with(
        1,
        ServeOptions {
            drain_timeout: Duration::from_millis(500),
            ..ServeOptions::default()
        },
    )
    .await;
    farm.busybox().await;
    let mut client = farm.executor(0);
    let mut stream = running_build(&mut client, "drain-me", &["drained:latest"], 303).await;
    let Farm {
        mut executors,
        tags,
        _dir: dir,
        ..
    } = farm;
    let executor = executors.pop().unwrap();
    let stopped = tokio::spawn(executor.shutdown());
    let mut rest = Vec::new();
    while let Ok(Some(BuildEvent { event: Some(e), .. })) =
        tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("the build stream stayed open")
    {
        rest.push(e);
    }
    let e = error(&rest);
    assert_eq!(e.code, "Unavailable", "{e:?}");
    assert!(e.message.contains("shut down"), "{e:?}");
    stopped.await.unwrap().unwrap();
    let tag = TagIndexClient::new(tags.channel())
        .resolve_tag(ResolveTagRequest {
            name: "drained:latest".into(),
        })
        .await;
    assert_eq!(tag.unwrap_err().code(), tonic::Code::NotFound);
    drop(dir);
}

/// A client killed or disconnected mid-RUN (its response stream dropped) cancels its build,
/// as BuildKit does when a session ends: nothing would read the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_goes_away_mid_run_cancels_its_build() {
    let farm = Farm::start(1).await;
    farm.busybox().await;
    let mut client = farm.executor(0);
    let stream = running_build(&mut client, "abandoned", &["abandoned:latest"], 303).await;
    drop(stream);
    // the cancellation is asynchronous: poll for its effects, with a deadline
    let gone = || {
        let ps = std::process::Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        !String::from_utf8_lossy(&ps.stdout).contains("sleep 303")
            && !mounts.contains(farm._dir.path().to_str().unwrap())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !gone() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container still runs, or its mounts stay, 30 s after its client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tag = TagIndexClient::new(farm.tags.channel())
        .resolve_tag(ResolveTagRequest {
            name: "abandoned:latest".into(),
        })
        .await;
    assert_eq!(tag.unwrap_err().code(), tonic::Code::NotFound);
}

/// The entries (directories) of an executor's local cache, as `layers/HEX` / `contexts/HEX`.
fn local_entries(farm: &Farm, executor: usize) -> Vec<String> {
    let root = farm
        ._dir
        .path()
        .join(format!("executor-{executor}/executor"));
    let mut out = Vec::new();
    for kind in ["layers", "contexts"] {
        for e in std::fs::read_dir(root.join(kind)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{kind}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_local_cache_spares_the_layers_a_running_build_has_mounted() {
    let farm = Farm::start(1).await;
    farm.busybox().await;
    let base = format!(
        "layers/{}",
        Digest::of(&std::fs::read(crate::build::busybox_tar()).unwrap()).hex()
    );
    let mut client = farm.executor(0);
    let ctx = farm.context(&[("a.txt", "kept apart\n")]).await;
    let df = "FROM busybox:latest\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n";
    let first = build(&mut client, request(df, &ctx, &["app"])).await;
    let before = local_entries(&farm, 0);
    assert!(before.contains(&base), "{before:?}");
    assert!(
        before.len() >= 3,
        "base, a layer and the context: {before:?}"
    );

    // another build runs a container over the base layer
    let mut stream = running_build(&mut client, "holds-the-base", &[], 302).await;
    let prune = |keep_bytes: Option<u64>, dry_run: bool| {
        let mut client = farm.executor(0);
        async move {
            client
                .prune_local_cache(PruneLocalCacheRequest {
                    keep_bytes,
                    dry_run,
                    cache_mounts: false,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let dry = prune(Some(0), true).await;
    assert_eq!(
        (dry.entries_removed, dry.entries_kept),
        (before.len() as u64 - 1, 1),
        "{dry:?}"
    );
    assert_eq!(local_entries(&farm, 0), before, "a dry run removes nothing");
    let pruned = prune(Some(0), false).await;
    assert_eq!(
        pruned.entries_removed,
        before.len() as u64 - 1,
        "{pruned:?}"
    );
    assert!(
        pruned.bytes_freed > 0 && pruned.bytes_kept > 0,
        "{pruned:?}"
    );
    assert_eq!(
        local_entries(&farm, 0),
        vec![base.clone()],
        "only the mounted base stays"
    );

    // once that build is over, nothing holds the base
    client
        .cancel_build(CancelBuildRequest {
            build_id: "holds-the-base".into(),
        })
        .await
        .unwrap();
    while let Some(BuildEvent { event: Some(_), .. }) =
        tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap()
            .unwrap()
    {}
    let to_budget = prune(None, false).await;
    assert_eq!(
        to_budget.entries_removed, 0,
        "within the default budget: {to_budget:?}"
    );
    assert_eq!(prune(Some(0), false).await.entries_removed, 1);
    assert!(local_entries(&farm, 0).is_empty());

    // a rebuild hits the shared build cache without extracting a layer (only the context,
    // for COPY's key)...
    let again = build(&mut client, request(df, &ctx, &["app"])).await;
    assert_eq!(done(&first).manifest_digest, done(&again).manifest_digest);
    let cached = local_entries(&farm, 0);
    assert!(
        cached.iter().all(|e| e.starts_with("contexts/")),
        "{cached:?}"
    );
    // ...and a step that runs extracts its lowers again (cat fails without /a.txt)
    let changed = df.replace("/b.txt", "/c.txt");
    done(&build(&mut client, request(&changed, &ctx, &["app"])).await);
    let after = local_entries(&farm, 0);
    assert!(after.contains(&base), "{after:?}");
}

fn hostile_layer(entries: &[(&str, tar::EntryType, Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link) in entries {
        let mut h = tar::Header::new_gnu();
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(if *kind == tar::EntryType::Regular {
            4
        } else {
            0
        });
        if let Some(l) = link {
            h.set_link_name_literal(l).unwrap();
        }
        h.set_cksum();
        let data: &[u8] = if *kind == tar::EntryType::Regular {
            b"evil"
        } else {
            b""
        };
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_base_layers_are_refused_and_write_nothing_outside() {
    use tar::EntryType::*;
    let farm = Farm::start(1).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            hostile_layer(&[("../../../../tmp/strata-evil-dotdot", Regular, None)]),
        ),
        (
            "absolute",
            hostile_layer(&[("/tmp/strata-evil-abs", Regular, None)]),
        ),
        (
            "symlink-parent",
            hostile_layer(&[
                ("up", Symlink, Some("/tmp")),
                ("up/strata-evil-link", Regular, None),
            ]),
        ),
        (
            "hardlink-outside",
            hostile_layer(&[("pw", Link, Some("../../../../etc/passwd"))]),
        ),
    ];
    for (name, layer) in cases {
        farm.image(&format!("hostile-{name}:latest"), layer).await;
        let df = format!("FROM hostile-{name}:latest\nRUN true\n");
        let events = build(&mut farm.executor(0), request(&df, "", &[])).await;
        let e = error(&events);
        assert_eq!(e.code, "InvalidArgument", "{name}: {e:?}");
        assert!(
            e.message.contains("unsafe layer entry"),
            "{name}: {}",
            e.message
        );
    }
    for leaked in [
        "/tmp/strata-evil-dotdot",
        "/tmp/strata-evil-abs",
        "/tmp/strata-evil-link",
    ] {
        assert!(!Path::new(leaked).exists(), "{leaked} was written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_downloads_a_url_and_checks_its_checksum() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let farm = Farm::start(1).await;
    farm.busybox().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = "downloaded content\n";
    // a .tar.gz path gets an archive holding inner/file
    let archive = super::images_io::gz_tar("inner/file", b"inside");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                break;
            };
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let content: &[u8] = if request.starts_with("GET /a.tar.gz ") {
                &archive
            } else {
                body.as_bytes()
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                content.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(content).await;
        }
    });
    let sum = Digest::of(body.as_bytes());
    let df = format!(
        "FROM busybox:latest\nADD --checksum={sum} http://127.0.0.1:{port}/files/data.txt /srv/\nRUN test \"$(cat /srv/data.txt)\" = \"downloaded content\"\n"
    );
    let events = build(&mut farm.executor(0), request(&df, "", &["added"])).await;
    done(&events);
    let bad = format!(
        "FROM busybox:latest\nADD --checksum=sha256:{} http://127.0.0.1:{port}/x /x\n",
        "0".repeat(64)
    );
    let events = build(&mut farm.executor(0), request(&bad, "", &[])).await;
    assert!(
        error(&events).message.contains("digest mismatch"),
        "{:?}",
        error(&events)
    );
    // a downloaded archive stays a file unless --unpack=true asks for it to be extracted
    let df = format!(
        "FROM busybox:latest\nADD http://127.0.0.1:{port}/a.tar.gz /kept/\nADD --unpack=true http://127.0.0.1:{port}/a.tar.gz /opt/\nRUN test -f /kept/a.tar.gz && test ! -e /kept/inner && test \"$(cat /opt/inner/file)\" = inside && test ! -e /opt/a.tar.gz\n"
    );
    let events = build(&mut farm.executor(0), request(&df, "", &["unpacked"])).await;
    done(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn onbuild_triggers_of_an_earlier_stage_run_in_the_stage_built_on_it() {
    // BuildKit's testOnBuildInheritedStageRun and testOnBuildInheritedStageWithFrom
    let farm = Farm::start(1).await;
    farm.busybox().await;
    let run = r#"FROM busybox:latest AS base
ONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo
FROM base AS mid
RUN cp /out/foo /out/bar && test "$(cat /out/bar)" = 11
FROM scratch
COPY --from=mid /out/bar /
"#;
    let events = build(&mut farm.executor(0), request(run, "", &["onbuild-run"])).await;
    done(&events);
    let from = r#"FROM busybox:latest AS src
RUN mkdir -p /out && echo -n 11 > /out/foo
FROM busybox:latest AS base
ONBUILD COPY --from=src /out/foo /out/
FROM base AS mid
RUN test "$(cat /out/foo)" = 11
"#;
    let events = build(&mut farm.executor(0), request(from, "", &["onbuild-from"])).await;
    done(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sandbox_hostname_follows_its_build_arg() {
    let farm = Farm::start(1).await;
    farm.busybox().await;
    let df = "FROM busybox:latest\nRUN [ \"$(hostname)\" = myhost ] && grep -q 'localhost myhost' /etc/hosts\n";
    let mut req = request(df, "", &["named"]);
    req.build_args
        .insert("BUILDKIT_SANDBOX_HOSTNAME".into(), "myhost".into());
    done(&build(&mut farm.executor(0), req).await);
    // not a host name: refused, naming the arg
    let mut req = request(df, "", &[]);
    req.build_args
        .insert("BUILDKIT_SANDBOX_HOSTNAME".into(), "my host/../x".into());
    let events = build(&mut farm.executor(0), req).await;
    let e = error(&events);
    assert_eq!(e.code, "InvalidArgument", "{e:?}");
    assert!(e.message.contains("BUILDKIT_SANDBOX_HOSTNAME"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_keeps_the_primary_group_among_the_supplementary_ones() {
    // BuildKit's testUserAdditionalGids (the CVE-2023-25173 fix)
    let farm = Farm::start(1).await;
    farm.busybox().await;
    let df = r#"FROM busybox:latest
RUN echo 'wheel:x:10:root' >> /etc/group
RUN id | grep -q 'gid=0(root) groups=0(root),10(wheel)$'
USER 1234
RUN id | grep -q '^uid=1234 gid=0(root) groups=0(root)$'
USER 1234:1234
RUN id | grep -q '^uid=1234 gid=1234 groups=1234$'
"#;
    let events = build(&mut farm.executor(0), request(df, "", &["gids"])).await;
    done(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_instructions_follow_the_spec() {
    let farm = Farm::start(1).await;
    farm.busybox().await;
    let df = r#"FROM busybox:latest
ARG VERSION=1.2
ENV APP=demo PATH=/app/bin:$PATH
USER nobody
ENTRYPOINT ["/bin/sh", "-c"]
CMD echo hi
HEALTHCHECK --interval=5m --timeout=3s CMD wget -q localhost
STOPSIGNAL SIGTERM
VOLUME /data
SHELL ["/bin/sh", "-ec"]
RUN echo "$VERSION $APP $(id -u)" > /tmp/out
ONBUILD RUN echo child
"#;
    let events = build(&mut farm.executor(0), request(df, "", &["cfg"])).await;
    let d = done(&events);
    let mut store = farm.store();
    let mut stream = store
        .read_blob(strata_proto::layer_store::ReadBlobRequest {
            digest: d.config_digest.clone(),
            offset: 0,
            length: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        bytes.extend(c.data);
    }
    let config = ImageConfig::parse(&bytes).unwrap();
    let c = &config.config;
    assert_eq!(c.user.as_deref(), Some("nobody"));
    assert_eq!(c.entrypoint, Some(vec!["/bin/sh".into(), "-c".into()]));
    assert_eq!(
        c.cmd,
        Some(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
    );
    assert_eq!(
        c.env_var("PATH"),
        Some("/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    );
    assert_eq!(
        c.healthcheck.as_ref().unwrap().interval,
        Some(300_000_000_000)
    );
    assert_eq!(c.on_build, Some(vec!["RUN echo child".into()]));
    assert_eq!(c.shell, Some(vec!["/bin/sh".into(), "-ec".into()]));
    let by: Vec<&str> = config
        .history
        .iter()
        .filter_map(|h| h.created_by.as_deref())
        .collect();
    assert!(
        by.contains(
            &"RUN |1 VERSION=1.2 /bin/sh -ec echo \"$VERSION $APP $(id -u)\" > /tmp/out # buildkit"
        ),
        "{by:?}"
    );
    assert!(by.contains(&"HEALTHCHECK {Test:[CMD-SHELL wget -q localhost] Interval:5m0s Timeout:3s StartPeriod:0s StartInterval:0s Retries:0}"), "{by:?}");
    assert!(by.contains(&"VOLUME [/data]"), "{by:?}");
}
