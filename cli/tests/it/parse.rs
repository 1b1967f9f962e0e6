//! `strata parse` and `strata check`: the real binary, the parser service embedded, over a
//! data root in a temp dir.

use std::{
    path::{Path, PathBuf},
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The shared corpus (`$STRATA_CORPUS`, as .ci/run sets it, else `../shared/corpus` beside
/// the checkout); fails loudly rather than passing without it.
fn buildkit_corpus() -> PathBuf {
    let dir = match std::env::var("STRATA_CORPUS") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
    };
    let dir = dir.join("buildkit-parser");
    assert!(
        dir.is_dir(),
        "corpus not found at {}; set STRATA_CORPUS to the shared `corpus` directory",
        dir.display()
    );
    dir
}

fn write_dockerfile(dir: &Path, content: &str) -> PathBuf {
    let path = dir.join("Dockerfile");
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn buildkit_dump_matches_the_corpus_byte_for_byte() {
    let root = tempfile::tempdir().unwrap();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(buildkit_corpus().join("testfiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file() && p.join("result").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 18, "only {} corpus cases", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        let dockerfile = case.join("Dockerfile");
        let out = strata(
            root.path(),
            &[
                "parse",
                "--format",
                "buildkit-dump",
                "-f",
                dockerfile.to_str().unwrap(),
            ],
        );
        let expected = std::fs::read(case.join("result")).unwrap();
        if !out.status.success() || out.stdout != expected {
            mismatches.push(format!(
                "{}: exit {:?}\n--- expected\n{}--- got\n{}{}",
                case.display(),
                out.status.code(),
                text(&expected),
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn negative_corpus_cases_fail() {
    let root = tempfile::tempdir().unwrap();
    let dir = buildkit_corpus().join("testfiles-negative");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let dockerfile = entry.unwrap().path().join("Dockerfile");
        if !dockerfile.is_file() {
            continue;
        }
        let out = strata(
            root.path(),
            &[
                "parse",
                "--format",
                "buildkit-dump",
                "-f",
                dockerfile.to_str().unwrap(),
            ],
        );
        assert!(!out.status.success(), "{} parsed", dockerfile.display());
        assert!(
            text(&out.stderr).starts_with("error: "),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn json_output_has_the_stages() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = write_dockerfile(
        work.path(),
        "ARG BASE=alpine:3.19\n\
         FROM ${BASE} AS build\n\
         RUN echo hi > /out\n\
         FROM scratch\n\
         COPY --from=build /out /out\n",
    );
    let out = strata(root.path(), &["parse", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let stages = json["dockerfile"]["stages"]
        .as_array()
        .unwrap_or_else(|| panic!("no dockerfile.stages in {json:#}"));
    assert_eq!(stages.len(), 2, "{json:#}");
    assert_eq!(stages[0]["name"], "build", "{json:#}");
    assert_eq!(stages[0]["base"], "alpine:3.19", "{json:#}");
    assert_eq!(stages[1]["base"], "scratch", "{json:#}");
}

#[test]
fn syntax_error_names_file_line_column_and_suggestion() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = write_dockerfile(work.path(), "FROM alpine\n\n\n\n\n\nRUNN make\n");
    let out = strata(root.path(), &["parse", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "error: {}:7:1: unknown instruction \"RUNN\" (did you mean \"RUN\"?)",
            file.display()
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn check_prints_rule_names_and_fails_on_warnings() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = write_dockerfile(
        work.path(),
        "FROM alpine AS Build\nMAINTAINER someone\nCMD echo hi\n",
    );
    let out = strata(root.path(), &["check", "-f", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    for rule in [
        "StageNameCasing",
        "MaintainerDeprecated",
        "JSONArgsRecommended",
    ] {
        assert!(stdout.contains(rule), "{rule} missing:\n{stdout}");
    }
    assert!(
        stdout.contains(&format!("{}:2", file.display())),
        "{stdout}"
    );
}

#[test]
fn check_passes_a_clean_dockerfile() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = write_dockerfile(
        work.path(),
        "FROM alpine:3.19 AS build\nWORKDIR /src\nCOPY . .\nCMD [\"sh\"]\n",
    );
    let out = strata(root.path(), &["check", "-f", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("no warnings"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn hostile_input_through_the_service_fails_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // A 10 MB line: over BuildKit's 64 KiB line limit (and over the default gRPC message
    // size); the command must fail with a message, not crash or hang.
    let mut huge = b"FROM alpine\nRUN echo ".to_vec();
    huge.resize(10 << 20, b'a');
    huge.push(b'\n');
    let path = work.path().join("Dockerfile");
    std::fs::write(&path, &huge).unwrap();
    let out = strata(root.path(), &["parse", "-f", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}:2:1: dockerfile line greater than max allowed size of 65535",
            path.display()
        )
    );

    // Invalid UTF-8, NUL bytes and an unterminated heredoc.
    for (content, expect_ok) in [
        (&b"FROM alpine\nLABEL a=\"caf\xe9\"\n"[..], true),
        (&b"FROM alpine\nRUN echo \0\n"[..], true),
        (&b"FROM alpine\nRUN <<EOF\nnever ends\n"[..], false),
    ] {
        std::fs::write(&path, content).unwrap();
        let out = strata(root.path(), &["parse", "-f", path.to_str().unwrap()]);
        assert_eq!(out.status.success(), expect_ok, "{}", text(&out.stderr));
        assert!(!text(&out.stderr).contains("panicked"));
    }
}
