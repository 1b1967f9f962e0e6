//! Registry credentials travel with the build: an executor whose own user has none (a
//! `strata serve` process with an empty home, no Docker config and no `strata login` file,
//! as a farm executor is for a user's private registry) pulls a private base from Debian's
//! real `docker-registry` on loopback with htpasswd auth only with the credentials the CLI
//! sends, for that build only.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;

use super::build::{image_event, one_layer_pull};
use super::build_pull::error_of;
use super::embedded::sigterm_and_wait;
use super::images_io::{ok, root_with_busybox};
use super::registry::{AUTH_PASSWORD, AUTH_USER, LoopbackRegistry};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Where a process looks for registry credentials (see strata_distribution::auth): every
/// variable points into `home`, so nothing of the machine's user is read.
fn credential_env(home: &Path, strata_auth_file: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOME", home.display().to_string()),
        (
            "XDG_CONFIG_HOME",
            home.join(".config").display().to_string(),
        ),
        ("DOCKER_CONFIG", home.join(".docker").display().to_string()),
        ("STRATA_AUTH_FILE", strata_auth_file.display().to_string()),
    ]
}

/// `strata ARGS` over `root` with `env`.
fn strata(root: &Path, args: &[&str], env: &[(&'static str, String)]) -> Output {
    Command::new(STRATA)
        .args(args)
        .env("STRATA_ROOT", root)
        .env_remove("STRATA_ADDR")
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run strata")
}

/// `strata build --progress json`: the output and the events.
fn build(
    root: &Path,
    context: &Path,
    extra: &[&str],
    env: &[(&'static str, String)],
) -> (Output, Vec<Value>) {
    let mut args = vec!["build", "--progress", "json"];
    args.extend_from_slice(extra);
    args.push(context.to_str().unwrap());
    let out = strata(root, &args, env);
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    (out, events)
}

/// A build that must fail because of credentials: PERMISSION_DENIED naming the registry.
fn assert_denied(out: &Output, events: &[Value], registry: &str, says: &str) -> String {
    assert!(!out.status.success(), "{events:?}");
    let (message, code) = error_of(events, out);
    assert_eq!(code, "PermissionDenied", "{message}");
    assert!(message.contains(registry), "{message}");
    assert!(message.contains(says), "{message}");
    assert!(!message.contains(AUTH_PASSWORD), "{message}");
    message
}

#[tokio::test]
async fn a_farm_executor_without_credentials_pulls_a_private_base_with_the_clients() {
    let registry = LoopbackRegistry::start_with_auth();
    let addr = registry.addr.clone();

    // the user: logs in with the real command, which writes strata's own file
    let user = tempfile::tempdir().unwrap();
    let logged_in = credential_env(user.path(), &user.path().join("auth.json"));
    let (pusher, _tar, base_id) = root_with_busybox();
    ok(strata(
        pusher.path(),
        &["login", &addr, "-u", AUTH_USER, "-p", AUTH_PASSWORD],
        &logged_in,
    ));
    for tag in ["1", "2"] {
        ok(strata(
            pusher.path(),
            &["push", "busybox", &format!("{addr}/private/base:{tag}")],
            &logged_in,
        ));
    }
    // the same user, with no credentials anywhere
    let anonymous = tempfile::tempdir().unwrap();
    let logged_out = credential_env(anonymous.path(), &anonymous.path().join("auth.json"));
    // the same user, with the wrong password in Docker's config.json
    let mistaken = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(mistaken.path().join(".docker")).unwrap();
    std::fs::write(
        mistaken.path().join(".docker/config.json"),
        format!(r#"{{"auths":{{"{addr}":{{"username":"{AUTH_USER}","password":"wrong"}}}}}}"#),
    )
    .unwrap();
    let wrong = credential_env(mistaken.path(), &mistaken.path().join("auth.json"));

    // the executor: a separate process whose user has no credentials, logging at debug
    let executor_home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("serve.log");
    let serve = Command::new(STRATA)
        .args(["serve", "--drain-timeout", "5"])
        .env("STRATA_ROOT", root.path())
        .env_remove("STRATA_ADDR")
        .env("RUST_LOG", "debug")
        .envs(credential_env(
            executor_home.path(),
            &executor_home.path().join("auth.json"),
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let socket = strata_server::ListenAddr::Unix(root.path().join("strata.sock"));
    strata_test_support::wait_until_serving(&socket, Duration::from_secs(60))
        .await
        .expect("strata serve did not come up");

    // the Dockerfile names the registry through a build-arg
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "ARG REG\nARG TAG=1\nFROM ${REG}/private/base:${TAG}\nRUN echo built > /built.txt\n",
    )
    .unwrap();
    let reg_arg = format!("REG={addr}");
    let args = ["--build-arg", reg_arg.as_str(), "-t", "app:1"];

    // without credentials: denied, naming the registry, and nothing tagged
    let (out, events) = build(root.path(), context.path(), &args, &logged_out);
    assert_denied(&out, &events, &addr, "requires credentials");
    // with a wrong password: denied, saying the credentials were refused
    let (out, events) = build(root.path(), context.path(), &args, &wrong);
    assert_denied(&out, &events, &addr, "refused");
    let listed = ok(strata(
        root.path(),
        &["images", "--format", "json"],
        &logged_out,
    ));
    assert!(listed.trim().is_empty(), "{listed}");

    // with the user's credentials: pulled and built on
    let (out, events) = build(root.path(), context.path(), &args, &logged_in);
    assert!(
        out.status.success(),
        "build failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pulls = one_layer_pull(&events);
    assert_eq!(pulls[3]["digest"], base_id.as_str());
    assert_eq!(image_event(&events)["tags"][0], "docker.io/library/app:1");

    // the executor kept nothing of them: another tag of the same private repository, which
    // the store does not hold, is denied again without credentials
    let (out, events) = build(
        root.path(),
        context.path(),
        &["--build-arg", reg_arg.as_str(), "--build-arg", "TAG=2"],
        &logged_out,
    );
    assert_denied(&out, &events, &addr, "requires credentials");

    let status = sigterm_and_wait(serve);
    assert!(status.success(), "serve exit {status:?}");

    // and never logged them, not even at debug
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("pulled base image"), "{logged}");
    assert!(
        !logged.contains(AUTH_PASSWORD),
        "the password is in the log"
    );
    let basic = strata_distribution::Credentials {
        username: AUTH_USER.into(),
        password: AUTH_PASSWORD.into(),
    }
    .basic_header();
    assert!(
        !logged.contains(basic.trim_start_matches("Basic ")),
        "the Authorization header is in the log"
    );
}
