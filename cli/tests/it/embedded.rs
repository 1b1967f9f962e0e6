//! The embedded default and `strata serve` sharing a data root.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn strata(root: &Path, args: &[&str]) -> Output {
    Command::new(STRATA)
        .args(args)
        .env("STRATA_ROOT", root)
        .env_remove("STRATA_ADDR")
        .stdin(Stdio::null())
        .output()
        .expect("run strata")
}

#[test]
fn health_runs_the_four_services_embedded() {
    let root = tempfile::tempdir().unwrap();
    let out = strata(root.path(), &["health"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for svc in ["Parser", "LayerStore", "TagIndex", "Executor"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(svc) && l.contains("SERVING")),
            "{svc} not SERVING:\n{stdout}"
        );
    }
    assert!(stdout.contains("embedded"), "{stdout}");
    // the layer store's database was created under the root
    assert!(root.path().join("layer-store").exists());
}

/// A data root holds every image's content, and the executor's part of it extracted layers
/// with their setuid files and device nodes: another user of the host must not reach them.
#[test]
fn a_new_data_root_and_its_stores_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("new-root");
    let out = strata(&root, &["health"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for dir in ["", "layer-store", "tag-index", "executor"] {
        let path = root.join(dir);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", path.display());
    }
}

#[test]
fn concurrent_commands_over_one_root_all_succeed() {
    let root = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(STRATA)
                .arg("health")
                .env("STRATA_ROOT", root.path())
                .env_remove("STRATA_ADDR")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            !stderr.to_lowercase().contains("lock"),
            "raw lock error leaked: {stderr}"
        );
    }
}

#[tokio::test]
async fn commands_use_a_running_serve_over_the_same_root() {
    let root = tempfile::tempdir().unwrap();
    let serve = Command::new(STRATA)
        .args(["serve", "--drain-timeout", "5"])
        .env("STRATA_ROOT", root.path())
        .env_remove("STRATA_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = strata_server::ListenAddr::Unix(root.path().join("strata.sock"));
    strata_test_support::wait_until_serving(&socket, std::time::Duration::from_secs(60))
        .await
        .expect("strata serve did not come up");
    let out = strata(root.path(), &["health"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("(server at unix://"),
        "did not use the serve socket:\n{stdout}"
    );
    // a second serve over the same root is refused with a clear message
    let out = strata(root.path(), &["serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another strata process is using"));
    let status = sigterm_and_wait(serve);
    assert!(status.success(), "serve exit {status:?}");
    assert!(
        !root.path().join("strata.sock").exists(),
        "socket left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ends_open_watch_streams_at_sigterm_and_exits_promptly() {
    use strata_proto::tag_index::{WatchTagsRequest, tag_index_client::TagIndexClient};
    let root = tempfile::tempdir().unwrap();
    // a drain limit far above "promptly": an open watch must not be what ends the drain
    let mut serve = Command::new(STRATA)
        .args(["serve", "--drain-timeout", "60"])
        .env("STRATA_ROOT", root.path())
        .env_remove("STRATA_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = strata_server::ListenAddr::Unix(root.path().join("strata.sock"));
    strata_test_support::wait_until_serving(&socket, std::time::Duration::from_secs(60))
        .await
        .expect("strata serve did not come up");
    let channel = strata_server::client::lazy_channel(&socket).unwrap();
    let mut stream = TagIndexClient::new(channel)
        .watch_tags(WatchTagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let started = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // the watch stream ends (with UNAVAILABLE, or with the connection when the process has
    // already exited by the time the client reads), instead of holding the drain
    let end = tokio::time::timeout(std::time::Duration::from_secs(30), stream.message())
        .await
        .expect("the watch stream ended");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    let status = tokio::task::spawn_blocking(move || serve.wait().unwrap())
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(status.success(), "serve exit {status:?}");
    assert!(
        took < std::time::Duration::from_secs(20),
        "serve waited {took:?} on an open watch"
    );
}

/// Stops `child` as an orchestrator would (SIGTERM) and waits for its exit.
pub fn sigterm_and_wait(mut child: std::process::Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap()
}

/// A log filter that does not parse, or a message limit nothing fits in, is a usage error
/// naming the flag (they were silently replaced by "info", and accepted, before).
#[test]
fn bad_log_filters_and_message_limits_are_usage_errors() {
    let root = tempfile::tempdir().unwrap();
    for (args, flag) in [
        (&["--log", "strata=bogus", "health"][..], "--log"),
        (
            &["serve", "--max-message-bytes", "0"][..],
            "--max-message-bytes",
        ),
    ] {
        let out = strata(root.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    let out = Command::new(STRATA)
        .arg("health")
        .env("STRATA_ROOT", root.path())
        .env("RUST_LOG", "=[[bad")
        .env_remove("STRATA_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid RUST_LOG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_needed_service_is_named_not_an_empty_error() {
    let root = tempfile::tempdir().unwrap();
    // a layer store alone, where a command needs the tag index too
    let config = strata_layer_store::Config {
        root: root.path().join("store"),
        tag_index: None,
        compression: Default::default(),
        leases_end_with_process: false,
    };
    let store = strata_test_support::InProcess::spawn(move |listener, shutdown| async move {
        strata_layer_store::run(
            config,
            listener,
            &strata_server::ServeOptions::default(),
            shutdown,
        )
        .await
    })
    .await;
    strata_test_support::wait_until_serving(&store.addr, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let addr = store.addr.to_string();
    let r = root.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || strata(&r, &["--addr", &addr, "images"]))
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the server at {} does not serve the tag index (strata.tagindex.v1.TagIndex",
            store.addr
        )) && stderr.contains("strata serve"),
        "{stderr}"
    );
    let gone = store.addr.to_string();
    store.shutdown().await.unwrap();
    // nothing there any more: the address and the cause, not a bare "transport error"
    let r = root.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || strata(&r, &["--addr", &gone, "images"]))
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach 127.0.0.1:") && stderr.contains("Connection refused"),
        "{stderr}"
    );
}

/// Logs written anywhere but a terminal (a file, a pipe, a collector) are plain text:
/// no ANSI colour codes.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let root = tempfile::tempdir().unwrap();
    let out = strata(root.path(), &["--log", "debug", "images"]);
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
}
