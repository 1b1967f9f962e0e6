//! The registry client against scripted HTTP servers on loopback: the misbehaviours a real
//! registry cannot be made to show (wrong Content-Type, a connection dropped mid-blob, a
//! redirect to another host, refused credentials).

mod mock;
mod uploads;

use mock::{MockServer, Reply};
use strata_distribution::{ClientOptions, Credentials, Registry, RegistryError};
use strata_types::Digest;

fn client(addr: &str, credentials: Option<Credentials>) -> Registry {
    Registry::new(
        addr,
        "team/app",
        false,
        ClientOptions {
            insecure: true,
            credentials,
            mount_from: vec![],
        },
    )
    .unwrap()
}

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

#[tokio::test]
async fn content_type_disagreeing_with_media_type_is_refused() {
    let server = MockServer::start(|req| {
        if req.path.ends_with("/manifests/v1") {
            Reply::ok(MANIFEST.as_bytes().to_vec()).header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
        } else {
            Reply::status(404)
        }
    })
    .await;
    let err = client(&server.addr, None)
        .get_manifest("v1")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("disagrees with the manifest's mediaType"),
        "{err}"
    );
}

#[tokio::test]
async fn manifests_are_checked_against_the_digest_asked_for() {
    let server = MockServer::start(|_| {
        Reply::ok(MANIFEST.as_bytes().to_vec())
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    })
    .await;
    let c = client(&server.addr, None);
    let good = c.get_manifest("v1").await.unwrap();
    assert_eq!(good.digest, Digest::of(MANIFEST.as_bytes()));
    let other = Digest::of(b"something else");
    let err = c
        .get_manifest(&other.to_string())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not the digest asked for"), "{err}");
}

#[tokio::test]
async fn schema1_and_oversized_manifests_are_refused() {
    let server = MockServer::start(|req| {
        if req.path.ends_with("/manifests/old") {
            Reply::ok(br#"{"schemaVersion":1,"name":"x"}"#.to_vec()).header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )
        } else {
            let mut body = MANIFEST.as_bytes().to_vec();
            body.pop();
            body.extend(
                format!(r#","annotations":{{"a":"{}"}}}}"#, "x".repeat(5 << 20)).into_bytes(),
            );
            Reply::ok(body).header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        }
    })
    .await;
    let c = client(&server.addr, None);
    assert!(
        c.get_manifest("old")
            .await
            .unwrap_err()
            .to_string()
            .contains("schema 1")
    );
    assert!(
        c.get_manifest("big")
            .await
            .unwrap_err()
            .to_string()
            .contains("4 MiB")
    );
}

#[tokio::test]
async fn busy_or_rate_limited_answers_are_tried_again_as_the_registry_asks() {
    // unavailable twice, then the manifest
    let count = std::sync::Arc::new(std::sync::Mutex::new(0));
    let seen = count.clone();
    let server = MockServer::start(move |_| {
        let mut n = seen.lock().unwrap();
        *n += 1;
        if *n <= 2 {
            Reply::status(503).header("Retry-After", "0")
        } else {
            Reply::ok(MANIFEST.as_bytes().to_vec())
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        }
    })
    .await;
    client(&server.addr, None).get_manifest("v1").await.unwrap();
    assert_eq!(server.requests().len(), 3);

    // a rate limit that does not lift: three more tries, then the registry's own error
    let limited = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
    let server = MockServer::start(move |_| {
        Reply::status(429)
            .header("Retry-After", "0")
            .body(limited.as_bytes().to_vec())
    })
    .await;
    // the manifest fetch fails with the registry's 429 after `tries` requests
    let rate_limited = |server: MockServer, tries: usize| async move {
        let err = client(&server.addr, None)
            .get_manifest("v1")
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::Status { status: 429, .. }),
            "{err}"
        );
        assert_eq!(server.requests().len(), tries);
        err
    };
    let err = rate_limited(server, 4).await;
    assert!(
        err.to_string().contains("TOOMANYREQUESTS (slow down)"),
        "{err}"
    );

    // asked to wait an hour: the error at once, not a command that seems to hang
    let server = MockServer::start(|_| Reply::status(429).header("Retry-After", "3600")).await;
    rate_limited(server, 1).await;
}

#[tokio::test]
async fn a_connection_dropped_mid_blob_is_an_error() {
    let blob = vec![42u8; 1 << 20];
    let digest = Digest::of(&blob);
    let half = blob[..blob.len() / 2].to_vec();
    let len = blob.len();
    let server = MockServer::start(move |_| {
        Reply::ok(half.clone())
            .header("Content-Length", &len.to_string())
            .truncated()
    })
    .await;
    let c = client(&server.addr, None);
    let err = c.get_small_blob(&digest, 4 << 20).await.unwrap_err();
    assert!(matches!(err, RegistryError::Http { .. }), "{err}");
}

#[tokio::test]
async fn redirects_to_another_host_do_not_carry_authorization() {
    let blob = b"layer bytes".to_vec();
    let digest = Digest::of(&blob);
    let served = blob.clone();
    // the CDN: records whether it saw an Authorization header
    let cdn = MockServer::start(move |req| {
        if req
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            Reply::status(400).body(b"leaked credentials".to_vec())
        } else {
            Reply::ok(served.clone())
        }
    })
    .await;
    // the registry on "localhost": Basic auth, then a redirect to the CDN on 127.0.0.1
    let cdn_port = cdn.addr.rsplit(':').next().unwrap().to_string();
    let server = MockServer::start(move |req| {
        let authed = req
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && v.starts_with("Basic "));
        if !authed {
            return Reply::status(401).header("WWW-Authenticate", r#"Basic realm="test""#);
        }
        Reply::status(307).header("Location", &format!("http://127.0.0.1:{cdn_port}/cdn/blob"))
    })
    .await;
    let port = server.addr.rsplit(':').next().unwrap();
    let c = client(
        &format!("localhost:{port}"),
        Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        }),
    );
    let got = c.get_small_blob(&digest, 1 << 20).await.unwrap();
    assert_eq!(got, blob);
    assert!(cdn.requests().iter().all(|r| {
        !r.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    }));
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_clear_errors() {
    let server = MockServer::start(|req| {
        let good = req
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && v == "Basic dTpnb29k");
        if good {
            Reply::ok(b"{}".to_vec())
        } else {
            Reply::status(401).header("WWW-Authenticate", r#"Basic realm="test""#)
        }
    })
    .await;
    let wrong = client(
        &server.addr,
        Some(Credentials {
            username: "u".into(),
            password: "bad".into(),
        }),
    );
    let err = wrong.ping().await.unwrap_err().to_string();
    assert!(err.contains("refused the credentials"), "{err}");
    let none = Registry::new(
        &server.addr,
        "team/app",
        false,
        ClientOptions {
            insecure: true,
            ..Default::default()
        },
    );
    // nobody has credentials for a fresh random loopback port
    assert!(strata_distribution::auth::lookup(&server.addr).is_none());
    let err = none.unwrap().ping().await.unwrap_err().to_string();
    assert!(err.contains("strata login"), "{err}");
    let right = client(
        &server.addr,
        Some(Credentials {
            username: "u".into(),
            password: "good".into(),
        }),
    );
    right.ping().await.unwrap();
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_the_scopes_needed() {
    let token_server = MockServer::start(|req| {
        if req.path.contains("scope=repository%3Ateam%2Fapp%3Apull")
            || req.path.contains("scope=repository:team/app:pull")
        {
            Reply::ok(br#"{"token":"t0k3n","expires_in":300}"#.to_vec())
        } else {
            Reply::status(403)
        }
    })
    .await;
    let realm = format!("http://{}/token", token_server.addr);
    let server = MockServer::start(move |req| {
        if req
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && v == "Bearer t0k3n")
        {
            Reply::ok(MANIFEST.as_bytes().to_vec())
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        } else {
            Reply::status(401).header(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="{realm}",service="mock",scope="repository:team/app:pull""#
                ),
            )
        }
    })
    .await;
    let got = client(&server.addr, None).get_manifest("v1").await.unwrap();
    assert_eq!(got.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert!(token_server.requests()[0].path.contains("service=mock"));
    assert_eq!(token_server.requests()[0].method, "GET");
}
