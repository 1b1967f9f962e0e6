//! gRPC ParseDockerfile round trip for a typical 50-line Dockerfile, p50/p99, beside the
//! library parse of the same bytes in the same run (the floor).
//!
//! Run: `cargo run -p strata-parser --example parse_rpc_bench`

use std::time::{Duration, Instant};

use strata_proto::parser::{ParseDockerfileRequest, parser_client::ParserClient};
use strata_server::ServeOptions;
use strata_test_support::InProcess;

const ROUNDS: usize = 3000;

fn typical_dockerfile() -> String {
    let mut s = String::from(
        "# syntax=docker/dockerfile:1\nARG GO_VERSION=1.22\nFROM golang:${GO_VERSION} AS build\nWORKDIR /src\n",
    );
    s.push_str("ENV CGO_ENABLED=0 \\\n    GOFLAGS=-trimpath\n");
    s.push_str("COPY go.mod go.sum ./\nRUN --mount=type=cache,target=/root/.cache/go-build \\\n    go mod download\n");
    s.push_str("COPY . .\nRUN go build -o /out/app ./cmd/app\n");
    s.push_str("FROM debian:bookworm-slim\nRUN apt-get update \\\n && apt-get install -y --no-install-recommends \\\n      ca-certificates curl tzdata \\\n && rm -rf /var/lib/apt/lists/*\n");
    for i in 0..19 {
        s.push_str(&format!("LABEL org.example.label{i}=\"value {i}\"\n"));
    }
    s.push_str("RUN <<EOF\nset -e\nuseradd -r app\nmkdir -p /data\nchown app /data\nEOF\n");
    s.push_str("COPY --from=build --chown=app:app /out/app /usr/local/bin/app\nUSER app\nWORKDIR /data\nEXPOSE 8080/tcp 9090\nVOLUME [\"/data\"]\n");
    s.push_str(
        "HEALTHCHECK --interval=30s --timeout=3s CMD curl -f http://localhost:8080/ || exit 1\n",
    );
    s.push_str(
        "STOPSIGNAL SIGTERM\nENTRYPOINT [\"/usr/local/bin/app\"]\nCMD [\"--listen\", \":8080\"]\n",
    );
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let dockerfile = typical_dockerfile();
    let lines = dockerfile.lines().count();
    let server = InProcess::spawn(|listener, shutdown| async move {
        strata_parser::run(listener, &ServeOptions::default(), shutdown).await
    })
    .await;
    let mut client = ParserClient::new(server.channel());
    let request = ParseDockerfileRequest {
        content: dockerfile.clone().into_bytes(),
        ..Default::default()
    };
    // warm up
    for _ in 0..100 {
        client
            .parse_dockerfile(request.clone())
            .await
            .expect("parse");
    }
    let mut rpc = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        client
            .parse_dockerfile(request.clone())
            .await
            .expect("parse");
        rpc.push(t.elapsed());
    }
    let mut local = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let d = strata_dockerfile::parse_dockerfile(dockerfile.as_bytes(), &Default::default())
            .expect("parse");
        std::hint::black_box(d);
        local.push(t.elapsed());
    }
    rpc.sort();
    local.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "parse round trip, {lines}-line Dockerfile, {ROUNDS} sequential calls over loopback gRPC"
    );
    println!(
        "  gRPC ParseDockerfile: p50 {:.0} us, p99 {:.0} us",
        us(percentile(&rpc, 0.5)),
        us(percentile(&rpc, 0.99))
    );
    println!(
        "  library parse (floor): p50 {:.0} us, p99 {:.0} us",
        us(percentile(&local, 0.5)),
        us(percentile(&local, 0.99))
    );
    println!(
        "  ratio p50 gRPC / library: {:.1}x",
        us(percentile(&rpc, 0.5)) / us(percentile(&local, 0.5))
    );
    server.shutdown().await.expect("shutdown");
}
