//! What every strata service binary must do, checked with real clients: grpcurl lists the
//! service, health and reflection; `describe` shows documented messages; health says SERVING;
//! an unknown method is UNIMPLEMENTED; SIGTERM ends the process with status 0 within the
//! drain limit.

use std::{path::Path, time::Duration};

use crate::{Grpcurl, ServiceProcess};

/// Runs the checks against the binary `bin` serving `service` (e.g.
/// `strata.parser.v1.Parser`); `documented_message` is a message of that service whose
/// `describe` output must carry its comments.
pub async fn check_service_basics(
    bin: &Path,
    service: &str,
    documented_message: &str,
    extra_args: &[&str],
) {
    let grpcurl = Grpcurl::find();
    let mut args = vec!["--drain-timeout", "5"];
    args.extend_from_slice(extra_args);
    let proc = ServiceProcess::spawn(bin, &args).await;

    let out = grpcurl.run(&proc.addr, &["list"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "grpcurl list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        service,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            listed.lines().any(|l| l.trim() == expected),
            "{expected} not in `grpcurl list`:\n{listed}"
        );
    }

    let out = grpcurl.run(&proc.addr, &["describe", service]);
    let described = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "describe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        described.contains("rpc "),
        "no rpcs described:\n{described}"
    );
    assert!(
        described.contains("//"),
        "rpcs carry no comments:\n{described}"
    );

    let out = grpcurl.run(&proc.addr, &["describe", documented_message]);
    let described = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "describe {documented_message} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        described.contains("//"),
        "{documented_message} fields carry no comments:\n{described}"
    );

    for svc in ["", service] {
        let out = grpcurl.call(
            &proc.addr,
            "grpc.health.v1.Health/Check",
            &format!("{{\"service\":\"{svc}\"}}"),
        );
        let body = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            body.contains("SERVING"),
            "health of {svc:?}: {body} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // An unknown method: UNIMPLEMENTED, through a raw gRPC call (grpcurl refuses to send
    // methods reflection does not know).
    let channel = strata_server::client::lazy_channel(&proc.addr).expect("channel");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = format!("/{service}/NoSuchMethod");
    let status = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            path.parse().expect("path"),
            EmptyCodec,
        )
        .await
        .expect_err("unknown method must fail");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");

    let (status, took) = proc.terminate().await;
    assert!(status.success(), "SIGTERM exit status {status:?}");
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?}, over the drain limit"
    );
}

/// A codec for `()` requests and responses: an empty protobuf message.
#[derive(Debug, Clone, Copy, Default)]
struct EmptyCodec;

impl tonic::codec::Codec for EmptyCodec {
    type Encode = ();
    type Decode = ();
    type Encoder = EmptyCodec;
    type Decoder = EmptyCodec;
    fn encoder(&mut self) -> Self::Encoder {
        EmptyCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        EmptyCodec
    }
}

impl tonic::codec::Encoder for EmptyCodec {
    type Item = ();
    type Error = tonic::Status;
    fn encode(
        &mut self,
        _item: (),
        _dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        Ok(())
    }
}

impl tonic::codec::Decoder for EmptyCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        _src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        Ok(Some(()))
    }
}
