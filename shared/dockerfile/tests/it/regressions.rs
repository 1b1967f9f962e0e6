//! Regressions found by running real-world Dockerfiles and differential inputs against
//! BuildKit's behaviour; one test per bug, each with its own minimal Dockerfile.

use crate::{df, df_err};

/// BuildKit runs `reference.ParseNormalizedNamed` on every external base before pulling
/// anything, so a base that is not a valid reference fails the build.
#[test]
fn invalid_base_references_are_rejected() {
    assert_eq!(
        df_err("FROM Alpine:3.19\n"),
        "Dockerfile:1:6: failed to parse stage name \"Alpine:3.19\": invalid reference format: repository name (library/Alpine) must be lowercase"
    );
    // An ARG without a default leaves an empty tag.
    assert_eq!(
        df_err("ARG VERSION\nFROM node:${VERSION}\n"),
        "Dockerfile:2:6: failed to parse stage name \"node:\": invalid reference format"
    );
    assert_eq!(
        df_err("FROM busybox@sha256:0123\n"),
        "Dockerfile:1:6: failed to parse stage name \"busybox@sha256:0123\": invalid reference format"
    );
    // Unreachable stages are checked too.
    let e = df_err("FROM a:b:c AS unused\nFROM alpine\n");
    assert!(
        e.starts_with("Dockerfile:1:6: failed to parse stage name \"a:b:c\""),
        "{e}"
    );
}

/// `scratch` is recognised only when spelled exactly so; `FROM SCRATCH` is an (invalid)
/// image name.
#[test]
fn scratch_is_case_sensitive() {
    assert_eq!(
        df_err("FROM SCRATCH\n"),
        "Dockerfile:1:6: failed to parse stage name \"SCRATCH\": invalid reference format: repository name (library/SCRATCH) must be lowercase"
    );
    assert_eq!(df("FROM scratch\n").stages.len(), 1);
}

/// A registry host may have upper case (it is not part of the repository path), and digests
/// and ports are fine.
#[test]
fn valid_references_still_parse() {
    let d = df("FROM MyRegistry.local:5000/team/app:1.0 AS a\n\
                FROM busybox@sha256:6f7d999551dd471b58f70716754290495690efa8421e0a1fcf18eb11d0c0a537\n\
                COPY --from=quay.io/org/tool:v2 /bin/tool /bin/\n");
    assert_eq!(d.stages.len(), 2);
}

/// `COPY --from` naming no stage is an image reference, validated the same way.
#[test]
fn invalid_copy_from_reference_is_rejected() {
    assert_eq!(
        df_err("FROM alpine\nCOPY --from=Builder /out /out\n"),
        "Dockerfile:2:6: failed to parse stage name \"Builder\": invalid reference format: repository name (library/Builder) must be lowercase"
    );
    // Stage names still match case-insensitively.
    df("FROM alpine AS builder\nFROM alpine\nCOPY --from=Builder /out /out\n");
}

/// `RUN --mount=from=$X` has its own message in BuildKit (instructions/commands_runmount.go).
#[test]
fn mount_from_variable_has_buildkits_message() {
    assert_eq!(
        df_err("FROM alpine\nARG S=x\nRUN --mount=from=$S,target=/m true\n"),
        "Dockerfile:3:5: 'from' doesn't support variable expansion, define alias stage instead"
    );
}

/// BuildKit's `parseOnBuild` rejects only ONBUILD, FROM and MAINTAINER triggers; a trigger
/// that is not a valid instruction is stored and fails only in the child build.
#[test]
fn onbuild_triggers_are_not_validated_when_defined() {
    let d = df("FROM alpine\nONBUILD COPY only-one-arg\nONBUILD FOO bar\nONBUILD RUN --bogus x\n");
    let strata_dockerfile::Command::Onbuild(o) = &d.stages[0].instructions[0].command else {
        panic!("not ONBUILD");
    };
    assert_eq!(o.expression, "COPY only-one-arg");
    assert!(o.trigger.is_none());
    assert!(
        df_err("FROM a\nONBUILD FROM b\n").contains("FROM isn't allowed as an ONBUILD trigger")
    );
}

/// BuildKit reads the Dockerfile as Go byte strings: a Latin-1 byte in an instruction is
/// accepted, and its dump prints the byte as `\xNN`. We failed with "invalid UTF-8".
#[test]
fn bytes_that_are_not_utf8_are_accepted_and_dumped_like_go() {
    let src = b"FROM alpine\nLABEL author=\"Andr\xe9\"\nRUN echo \xff\xfe <<EOF\ncaf\xe9\nEOF\n";
    let out = strata_dockerfile::parse(src).unwrap();
    assert_eq!(
        strata_dockerfile::dump(&out.root),
        "(from \"alpine\")\n(label \"author\" \"\\\"Andr\\xe9\\\"\" \"=\")\n(run \"echo \\xff\\xfe <<EOF\")"
    );
    let body = &out.root.children[2].heredocs[0].content;
    assert_eq!(strata_dockerfile::quote::encode_bytes(body), b"caf\xe9\n");
    df(std::str::from_utf8(b"FROM alpine\n").unwrap());
    assert!(strata_dockerfile::parse_dockerfile(src, &Default::default()).is_ok());
}

/// `WORKDIR $UNSET` expands to nothing, which BuildKit's NormalizeWorkdir refuses (in the
/// stages the target needs); we silently used the current directory.
#[test]
fn workdir_expanding_to_nothing_is_an_error() {
    assert_eq!(
        df_err("FROM alpine\nWORKDIR $APP_HOME\n"),
        "Dockerfile:2:9: normalizing workdir: cannot normalize nothing"
    );
    // A stage the target does not need is not dispatched.
    df("FROM alpine AS unused\nWORKDIR $APP_HOME\nFROM alpine\n");
}

/// `COPY --from` a later stage fails only when BuildKit dispatches the copying stage, i.e.
/// when the target needs it; copying from the stage itself is a cycle, always an error.
#[test]
fn copy_from_a_later_stage_fails_only_when_needed() {
    let src = "FROM alpine AS one\nCOPY --from=two /x /x\nFROM alpine AS two\nRUN true\n";
    // The default target (two) does not need one.
    df(src);
    let opts = strata_dockerfile::ParseOptions {
        target: Some("one".into()),
        ..Default::default()
    };
    let e = strata_dockerfile::parse_dockerfile(src.as_bytes(), &opts).unwrap_err();
    assert!(
        e.to_string().contains(
            "cannot copy from stage \"two\", it needs to be defined before current stage \"one\""
        ),
        "{e}"
    );
    assert_eq!(
        df_err("FROM alpine AS build\nCOPY --from=build /x /y\n"),
        "Dockerfile:2:6: circular dependency detected on stage: build"
    );
}
