//! ARG/ENV scoping across stages (spec §9).

use std::collections::BTreeMap;

use strata_dockerfile::{Command, ImageDefaults, ParseOptions, Platform, parse_dockerfile};

use crate::{df, df_args};

/// What a RUN sees, computed through the public Stage API.
struct RunView {
    env: Vec<(String, String)>,
    stage_args: Vec<(String, Option<String>)>,
    proxy_env: Vec<(String, String)>,
}

fn runs(d: &strata_dockerfile::Dockerfile, stage: usize) -> Vec<RunView> {
    let st = &d.stages[stage];
    st.instructions
        .iter()
        .enumerate()
        .filter_map(|(i, inst)| match &inst.command {
            Command::Run(r) => Some(RunView {
                env: st.build_env_before(i),
                stage_args: st.args_before(i),
                proxy_env: r.proxy_env.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn env_of(r: &RunView, k: &str) -> Option<String> {
    r.env
        .iter()
        .rev()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
}

#[test]
fn global_args_only_in_from() {
    let d =
        df("ARG TAG=3.19\nARG IMG=alpine\nFROM $IMG:${TAG}\nRUN echo $TAG\nARG TAG\nRUN echo $TAG");
    assert_eq!(d.stages[0].base_name_expanded, "alpine:3.19");
    let r = runs(&d, 0);
    assert_eq!(
        env_of(&r[0], "TAG"),
        None,
        "global ARG not visible before redeclaration"
    );
    assert_eq!(env_of(&r[1], "TAG").as_deref(), Some("3.19"));
    assert_eq!(d.meta_args.len(), 2);
}

#[test]
fn build_args_override() {
    let d = df_args(
        "ARG TAG=1\nFROM a:$TAG\nARG TAG\nARG X=default\nRUN true",
        &[("TAG", "2"), ("X", "cli"), ("UNUSED", "z")],
    );
    assert_eq!(d.stages[0].base_name_expanded, "a:2");
    let r = runs(&d, 0);
    assert_eq!(env_of(&r[0], "TAG").as_deref(), Some("2"));
    assert_eq!(env_of(&r[0], "X").as_deref(), Some("cli"));
    assert_eq!(d.unused_build_args, vec!["UNUSED"]);
    assert_eq!(
        r[0].stage_args,
        vec![
            ("TAG".to_string(), Some("2".to_string())),
            ("X".to_string(), Some("cli".to_string()))
        ]
    );
}

#[test]
fn global_defaults_expand_in_order() {
    let d = df("ARG A=x\nARG B=${A}y\nFROM img:$B");
    assert_eq!(d.stages[0].base_name_expanded, "img:xy");
}

#[test]
fn arg_without_value_is_declared_but_unset() {
    let d = df("FROM a\nARG NOVAL\nRUN echo $NOVAL");
    let r = runs(&d, 0);
    assert_eq!(env_of(&r[0], "NOVAL"), None);
    assert_eq!(r[0].stage_args, vec![("NOVAL".to_string(), None)]);
}

#[test]
fn later_of_env_and_arg_wins() {
    let d = df("FROM a\nENV V=env\nARG V=arg\nRUN x\nENV V=env2\nRUN y");
    let r = runs(&d, 0);
    assert_eq!(env_of(&r[0], "V").as_deref(), Some("arg"));
    assert_eq!(env_of(&r[1], "V").as_deref(), Some("env2"));
    assert!(
        d.stages[0]
            .config_env
            .contains(&("V".to_string(), "env2".to_string()))
    );
}

#[test]
fn env_inherited_from_stage_base_but_not_unrelated() {
    let d = df(
        "FROM a AS base\nENV GREETING=hi\nARG LEVEL=3\nFROM base AS child\nRUN echo $GREETING\nFROM a\nRUN echo $GREETING",
    );
    assert_eq!(env_of(&runs(&d, 1)[0], "GREETING").as_deref(), Some("hi"));
    assert_eq!(env_of(&runs(&d, 1)[0], "LEVEL").as_deref(), Some("3"));
    assert_eq!(env_of(&runs(&d, 2)[0], "GREETING"), None);
}

#[test]
fn default_path_and_image_env() {
    let d = df("FROM scratch\nRUN x");
    assert_eq!(
        env_of(&runs(&d, 0)[0], "PATH").as_deref(),
        Some(strata_dockerfile::DEFAULT_PATH)
    );
    let mut base_images = BTreeMap::new();
    base_images.insert(
        "golang:1.22".to_string(),
        ImageDefaults {
            env: vec![
                ("GOPATH".into(), "/go".into()),
                ("PATH".into(), "/go/bin:/usr/bin".into()),
            ],
            working_dir: Some("/go".into()),
            shell: None,
            on_build: vec![],
        },
    );
    let opts = ParseOptions {
        base_images,
        ..ParseOptions::default()
    };
    let d = parse_dockerfile(
        b"FROM golang:1.22\nWORKDIR $GOPATH/src\nENV PATH=/x:$PATH\nRUN go build",
        &opts,
    )
    .unwrap();
    assert_eq!(d.stages[0].workdir, "/go/src");
    assert_eq!(
        env_of(&runs(&d, 0)[0], "PATH").as_deref(),
        Some("/x:/go/bin:/usr/bin")
    );
}

#[test]
fn predefined_platform_args() {
    let opts = ParseOptions {
        target_platform: Some(Platform::parse("linux/arm64").unwrap()),
        build_platform: Some(Platform::parse("linux/amd64").unwrap()),
        ..ParseOptions::default()
    };
    let src = b"FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETOS TARGETARCH\nRUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build\nRUN echo $TARGETPLATFORM";
    let d = parse_dockerfile(src, &opts).unwrap();
    assert_eq!(
        d.stages[0].platform.as_ref().unwrap().to_string(),
        "linux/amd64"
    );
    let r = runs(&d, 0);
    assert_eq!(env_of(&r[0], "TARGETARCH").as_deref(), Some("arm64"));
    assert_eq!(env_of(&r[0], "TARGETOS").as_deref(), Some("linux"));
    assert_eq!(
        env_of(&r[1], "TARGETPLATFORM"),
        None,
        "undeclared inside the stage"
    );
}

#[test]
fn proxy_args_injected_without_declaration() {
    let d = df_args("FROM a\nRUN curl x", &[("HTTP_PROXY", "http://p:3128")]);
    let r = runs(&d, 0);
    assert_eq!(
        r[0].proxy_env,
        vec![("HTTP_PROXY".to_string(), "http://p:3128".to_string())]
    );
    assert_eq!(env_of(&r[0], "HTTP_PROXY"), None);
    assert!(d.unused_build_args.is_empty());
}

#[test]
fn expansion_scope_within_arg_line() {
    let d = df("FROM a\nARG A=1 B=$A\nRUN x");
    let r = runs(&d, 0);
    assert_eq!(
        env_of(&r[0], "B").as_deref(),
        Some(""),
        "all defaults of one ARG line see the env before it"
    );
}

#[test]
fn undeclared_workdir_variable_is_empty() {
    let d = df("FROM a\nWORKDIR /path/$DIRNAME");
    assert_eq!(d.stages[0].workdir, "/path");
}

#[test]
fn from_uses_only_global_args() {
    let d = df("FROM a AS x\nARG IMG=busybox\nFROM ${IMG:-alpine}");
    assert_eq!(d.stages[1].base_name_expanded, "alpine");
    let e = crate::df_err("ARG EMPTY=\nFROM $EMPTY");
    assert!(e.contains("base name ($EMPTY) should not be blank"), "{e}");
}

/// Quoted global defaults lose their quotes when expanded, and a redeclared global ARG
/// feeds a stage ARG default (the shape of BuildKit's testQuotedMetaArgs).
#[test]
fn quoted_global_defaults_flow_into_stage_args() {
    let d = df("ARG x=\"ab\"\nARG y=\"$x-c\"\nFROM img$x AS s\nARG y\nARG z=\"d-$y\"\nRUN true");
    assert_eq!(d.stages[0].base_name_expanded, "imgab");
    let r = runs(&d, 0);
    assert_eq!(env_of(&r[0], "y").as_deref(), Some("ab-c"));
    assert_eq!(env_of(&r[0], "z").as_deref(), Some("d-ab-c"));
}

/// A base image's ONBUILD triggers run first in the stage built on it, in the stage's scope:
/// their ENV is seen by later instructions and their `COPY --from` is a stage dependency.
#[test]
fn onbuild_triggers_of_a_base_run_right_after_its_from() {
    let mut base_images = BTreeMap::new();
    base_images.insert(
        "parent".to_string(),
        ImageDefaults {
            env: vec![("WHO".into(), "base".into())],
            on_build: vec![
                "ENV FROM_TRIGGER=$WHO".into(),
                "COPY --from=tools /t /t".into(),
            ],
            ..ImageDefaults::default()
        },
    );
    let opts = ParseOptions {
        base_images,
        ..ParseOptions::default()
    };
    let d = parse_dockerfile(
        b"FROM busybox AS tools\nFROM parent\nRUN echo $FROM_TRIGGER\n",
        &opts,
    )
    .unwrap();
    let child = &d.stages[1];
    let kinds: Vec<&str> = child
        .instructions
        .iter()
        .map(|i| i.command.name())
        .collect();
    assert_eq!(kinds, ["ENV", "COPY", "RUN"]);
    assert_eq!(child.instructions[0].original, "ENV FROM_TRIGGER=$WHO");
    assert_eq!(child.instructions[0].span, child.from_span);
    let r = runs(&d, 1);
    assert_eq!(env_of(&r[0], "FROM_TRIGGER").as_deref(), Some("base"));
    assert_eq!(d.graph.stage_dependencies(1), vec![0]);
    assert_eq!(d.graph.build_order(), vec![0, 1]);

    for (trigger, message) in [
        (
            "ONBUILD RUN x",
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        ("FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        (
            "MAINTAINER me",
            "MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        (
            "RUN a\nRUN b",
            "onbuild trigger should be a single expression",
        ),
    ] {
        let mut opts = opts.clone();
        opts.base_images.get_mut("parent").unwrap().on_build = vec![trigger.into()];
        let e = parse_dockerfile(b"FROM parent\nRUN true\n", &opts)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("1:") && e.contains(message),
            "{trigger:?}: {e}"
        );
    }
}
