//! ParseDockerfile and MatchIgnore over gRPC.

use std::path::Path;

use strata_proto::parser::{
    MatchIgnoreRequest, ParseDockerfileRequest, instruction::Detail, parser_client::ParserClient,
};
use strata_server::ServeOptions;
use strata_test_support::{Grpcurl, InProcess, ServiceProcess};

async fn parser() -> (InProcess, ParserClient<tonic::transport::Channel>) {
    let server = InProcess::spawn(|listener, shutdown| async move {
        strata_parser::run(listener, &ServeOptions::default(), shutdown).await
    })
    .await;
    let client = ParserClient::new(server.channel());
    (server, client)
}

const MULTI_STAGE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE}:latest AS build
ENV GREETING=hello
WORKDIR /src
RUN echo "$GREETING" > /out
FROM scratch AS unused
COPY --from=build /out /x
FROM busybox
COPY --from=build --chmod=0644 /out /greeting
CMD ["cat", "/greeting"]
"#;

#[tokio::test]
async fn parses_stages_instructions_and_the_stage_graph() {
    let (server, mut client) = parser().await;
    let resp = client
        .parse_dockerfile(ParseDockerfileRequest {
            content: MULTI_STAGE.into(),
            include_ast_dump: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let df = resp.dockerfile.unwrap();
    assert_eq!(
        df.directives.get("syntax").map(String::as_str),
        Some("docker/dockerfile:1")
    );
    assert_eq!(df.meta_args[0].name, "BASE");
    assert_eq!(df.stages.len(), 3);
    assert_eq!(
        df.stages[0].base, "busybox:latest",
        "meta ARG expanded in FROM"
    );
    assert_eq!(df.stages[0].name, "build");
    assert!(df.stages[1].scratch);
    assert_eq!(df.target_stage, 2);
    // the unused stage is skipped; build comes before the target
    assert_eq!(df.build_order, vec![0, 2]);
    assert_eq!(df.stages[2].depends_on, vec![0]);
    let run = &df.stages[0].instructions[2];
    assert_eq!(run.keyword, "RUN");
    let Some(Detail::Run(r)) = &run.detail else {
        panic!("not a RUN: {run:?}")
    };
    assert!(r.command.as_ref().unwrap().shell_form);
    assert!(
        run.build_env
            .iter()
            .any(|kv| kv.key == "GREETING" && kv.value == "hello"),
        "RUN sees ENV: {:?}",
        run.build_env
    );
    let copy = &df.stages[2].instructions[0];
    let Some(Detail::Copy(c)) = &copy.detail else {
        panic!("not a COPY")
    };
    assert_eq!(c.from, "build");
    assert_eq!(c.chmod, "0644");
    assert_eq!(c.destination, "/greeting");
    let span = copy.span.unwrap();
    assert_eq!((span.start_line, span.end_line), (10, 10));
    assert!(
        resp.ast_dump.contains("(copy [\"--from=build\""),
        "{}",
        resp.ast_dump
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn syntax_errors_are_invalid_argument_with_file_line_and_column() {
    let (server, mut client) = parser().await;
    let err = client
        .parse_dockerfile(ParseDockerfileRequest {
            content: "FROM busybox\nRUNN echo hi\n".into(),
            filename: "ci/Dockerfile".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("ci/Dockerfile:2:1:"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("RUNN"), "{}", err.message());
    // asked for the AST dump too, the file is dumped (as BuildKit dumps it) and the reason
    // it has no typed tree is said, so an OK is never mistaken for a parsed Dockerfile
    for content in [
        "FROM busybox\nRUNN echo hi\n",
        "RUN echo no FROM\n",
        "FROM busybox\nSTOPSIGNAL SIGFOO\n",
    ] {
        let resp = client
            .parse_dockerfile(ParseDockerfileRequest {
                content: content.into(),
                filename: "ci/Dockerfile".into(),
                include_ast_dump: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(resp.dockerfile.is_none(), "{content}");
        assert!(!resp.ast_dump.is_empty(), "{content}");
        assert!(
            resp.error.starts_with("ci/Dockerfile:"),
            "{content}: {resp:?}"
        );
    }
    // an unknown --target names the target
    let err = client
        .parse_dockerfile(ParseDockerfileRequest {
            content: "FROM busybox AS a\n".into(),
            target: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("nope"), "{}", err.message());
    // hostile input: invalid UTF-8 and NUL bytes get an answer, not a crash
    let err = client
        .parse_dockerfile(ParseDockerfileRequest {
            content: b"FROM \xff\xfe\x00busybox\n".to_vec(),
            ..Default::default()
        })
        .await;
    if let Err(e) = err {
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn lint_warnings_carry_rule_names() {
    let (server, mut client) = parser().await;
    let resp = client
        .parse_dockerfile(ParseDockerfileRequest {
            content: "FROM busybox\nMAINTAINER me\nCMD echo a\nCMD echo b\n".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rules: Vec<&str> = resp.warnings.iter().map(|w| w.rule.as_str()).collect();
    assert!(rules.contains(&"MaintainerDeprecated"), "{rules:?}");
    assert!(
        rules.contains(&"MultipleInstructionsDisallowed"),
        "{rules:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn match_ignore_follows_dockerignore_rules() {
    let (server, mut client) = parser().await;
    let resp = client
        .match_ignore(MatchIgnoreRequest {
            dockerignore: "# comment\n**/*.log\n!keep.log\nbuild/\n".into(),
            paths: vec![
                "a.log".into(),
                "x/y/z.log".into(),
                "keep.log".into(),
                "build/out".into(),
                "src/main.rs".into(),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.excluded, vec![true, true, false, true, false]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpcurl_parses_a_dockerfile() {
    let proc = ServiceProcess::spawn(Path::new(env!("CARGO_BIN_EXE_strata-parser")), &[]).await;
    // bytes fields are base64 in grpcurl's JSON
    let content = "RlJPTSBidXN5Ym94ClJVTiBlY2hvIGhpCg=="; // "FROM busybox\nRUN echo hi\n"
    let out = Grpcurl::find().call(
        &proc.addr,
        "strata.parser.v1.Parser/ParseDockerfile",
        &format!("{{\"content\":\"{content}\"}}"),
    );
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("\"keyword\": \"RUN\""), "{body}");
    assert!(body.contains("echo hi"), "{body}");
    let (status, _) = proc.terminate().await;
    assert!(status.success());
}

/// A Dockerfile whose parse is larger than the server may send is refused in words, not
/// with tonic's bare OUT_OF_RANGE from the encoder.
#[tokio::test]
async fn a_parse_larger_than_a_message_may_be_says_so() {
    let limit = 64 << 10;
    let server = InProcess::spawn(move |listener, shutdown| async move {
        let options = ServeOptions {
            max_message_bytes: limit,
            ..ServeOptions::default()
        };
        strata_parser::run(listener, &options, shutdown).await
    })
    .await;
    let mut client = ParserClient::new(server.channel());
    let mut content = String::from("FROM busybox\n");
    for i in 0..1500 {
        content.push_str(&format!("RUN echo {i}\n"));
    }
    assert!(content.len() < limit, "the request itself fits");
    let err = client
        .parse_dockerfile(ParseDockerfileRequest {
            content: content.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("the Dockerfile is too large")
            && err
                .message()
                .contains(&format!("{limit}-byte message limit")),
        "{}",
        err.message()
    );
    server.shutdown().await.unwrap();
}

/// A MatchIgnore of many patterns over many paths is long CPU work: it runs off the async
/// workers, so the server still answers health checks (and other calls) meanwhile, and it
/// stops when its call goes away.
// one worker: the long call must not be what holds it
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_long_match_ignore_leaves_the_server_answering() {
    let (server, client) = parser().await;
    let heavy = {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .match_ignore(MatchIgnoreRequest {
                    dockerignore: (0..4000).map(|i| format!("x{i}*y*z*\n")).collect(),
                    paths: vec!["x".repeat(200); 2000],
                })
                .await
        })
    };
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel());
    for _ in 0..3 {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    assert!(
        !heavy.is_finished(),
        "the probes were answered during the work"
    );
    heavy.abort();
    let _ = heavy.await;
    server.shutdown().await.unwrap();
}
