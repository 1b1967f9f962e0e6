//! The foundation's checks, plus the message-size limit.

use std::path::Path;

use strata_test_support::{Grpcurl, ServiceProcess, check_service_basics};

const BIN: &str = env!("CARGO_BIN_EXE_strata-parser");

#[tokio::test]
async fn serves_health_reflection_and_stops_on_sigterm() {
    check_service_basics(
        Path::new(BIN),
        "strata.parser.v1.Parser",
        "strata.parser.v1.ParseDockerfileRequest",
        &[],
    )
    .await;
}

#[tokio::test]
async fn a_message_over_the_limit_is_resource_exhausted() {
    let proc = ServiceProcess::spawn(Path::new(BIN), &["--max-message-bytes", "4096"]).await;
    let big = "A".repeat(16384);
    let out = Grpcurl::find().call(
        &proc.addr,
        "strata.parser.v1.Parser/MatchIgnore",
        &format!("{{\"dockerignore\":\"{big}\"}}"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("ResourceExhausted"), "{err}");
    let (status, _) = proc.terminate().await;
    assert!(status.success());
}
