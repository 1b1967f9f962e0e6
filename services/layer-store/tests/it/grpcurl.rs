//! The real binary through the real grpcurl: list, describe, health, errors.

use std::path::Path;

use strata_test_support::{Grpcurl, ServiceProcess, check_service_basics};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_strata-layer-store"))
}

#[tokio::test]
async fn the_binary_serves_list_describe_health_and_drains_on_sigterm() {
    check_service_basics(
        bin(),
        "strata.layerstore.v1.LayerStore",
        "strata.layerstore.v1.WriteStart",
        &[],
    )
    .await;
}

#[tokio::test]
async fn grpcurl_sees_not_found_and_invalid_argument_naming_the_field() {
    let grpcurl = Grpcurl::find();
    let proc = ServiceProcess::spawn(bin(), &[]).await;
    let missing = strata_types::Digest::of(b"never written").to_string();
    let out = grpcurl.call(
        &proc.addr,
        "strata.layerstore.v1.LayerStore/StatBlob",
        &format!(r#"{{"digest":"{missing}"}}"#),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Code: NotFound") && stderr.contains(&missing),
        "{stderr}"
    );

    for bad in ["sha256:../x", "sha256:ABC", "md5:00"] {
        let out = grpcurl.call(
            &proc.addr,
            "strata.layerstore.v1.LayerStore/StatBlob",
            &format!(r#"{{"digest":"{bad}"}}"#),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("Code: InvalidArgument") && stderr.contains("invalid digest"),
            "{bad}: {stderr}"
        );
    }

    let out = grpcurl.call(&proc.addr, "strata.layerstore.v1.LayerStore/GetUsage", "{}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"layers\""), "{stdout}");
}
