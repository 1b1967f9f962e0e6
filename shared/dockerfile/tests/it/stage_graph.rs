//! Stage graph, --target, dependencies and parallel levels.

use strata_dockerfile::{DependencyKind, DependencyTarget, ParseOptions, parse_dockerfile};

use crate::{df, df_err};

const MULTI: &str = "FROM golang AS deps\nRUN go mod download\nFROM node AS web\nRUN npm ci\nFROM deps AS build\nCOPY --from=web /app/dist /static\nRUN go build\nFROM alpine AS debug\nRUN apk add gdb\nFROM scratch\nCOPY --from=build /out/app /app\nRUN --mount=type=bind,from=web,target=/w true\n";

#[test]
fn default_target_is_last_and_unused_stages_skipped() {
    let d = df(MULTI);
    assert_eq!(d.target, 4);
    assert_eq!(d.graph.required, vec![true, true, true, false, true]);
    assert_eq!(d.graph.levels, vec![vec![0, 1], vec![2], vec![4]]);
    assert_eq!(d.graph.build_order(), vec![0, 1, 2, 4]);
    assert_eq!(d.graph.stage_dependencies(4), vec![1, 2]);
    let kinds: Vec<DependencyKind> = d.graph.dependencies[4].iter().map(|x| x.kind).collect();
    assert_eq!(
        kinds,
        vec![
            DependencyKind::Base,
            DependencyKind::CopyFrom,
            DependencyKind::MountFrom
        ]
    );
    assert_eq!(d.graph.dependencies[4][0].target, DependencyTarget::Scratch);
}

#[test]
fn target_selection() {
    let opts = ParseOptions {
        target: Some("DEBUG".into()),
        ..ParseOptions::default()
    };
    let d = parse_dockerfile(MULTI.as_bytes(), &opts).unwrap();
    assert_eq!(d.target, 3);
    assert_eq!(d.graph.levels, vec![vec![3]]);
    let opts = ParseOptions {
        target: Some("nope".into()),
        ..ParseOptions::default()
    };
    let e = parse_dockerfile(MULTI.as_bytes(), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("target stage \"nope\" could not be found"),
        "{e}"
    );
    assert!(e.contains("deps, web, build, debug"), "{e}");
}

#[test]
fn copy_from_index_and_external() {
    let d =
        df("FROM a\nFROM b\nCOPY --from=0 /x /x\nCOPY --from=nginx:latest /etc/nginx /etc/nginx");
    assert_eq!(
        d.graph.dependencies[1][1].target,
        DependencyTarget::Stage(0)
    );
    assert_eq!(
        d.graph.dependencies[1][2].target,
        DependencyTarget::External("nginx:latest".into())
    );
}

#[test]
fn forward_and_self_references_fail() {
    // The target (the last stage) needs `one`, which copies from a later stage.
    let e = df_err("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nFROM one");
    assert!(
        e.contains(
            "cannot copy from stage \"two\", it needs to be defined before current stage \"one\""
        ),
        "{e}"
    );
    assert!(e.starts_with("Dockerfile:2:"), "{e}");
    assert!(
        df_err("FROM a AS one\nCOPY --from=one /x /x")
            .contains("circular dependency detected on stage: one")
    );
    assert!(
        df_err("FROM a AS z\nCOPY --from=1 /x /x\nFROM b\nFROM z")
            .contains("cannot copy from stage")
    );
    assert!(df_err("FROM a\nCOPY --from=7 /x /x").contains("invalid stage index 7"));
    assert!(
        df_err("FROM a AS x\nFROM b\nARG S=x\nCOPY --from=$S /a /a")
            .contains("variable expansion is not supported for --from")
    );
    assert!(
        df_err("FROM a AS one\nRUN --mount=from=two,target=/t x\nFROM b AS two\nFROM one")
            .contains("cannot copy from stage")
    );
}

#[test]
fn from_later_stage_name_is_an_image() {
    // BuildKit resolves FROM only against earlier stages.
    let d = df("FROM later\nFROM alpine AS later");
    assert_eq!(
        d.stages[0].base,
        strata_dockerfile::BaseImage::Image("later".into())
    );
}

#[test]
fn stage_names_case_insensitive() {
    let d = df("FROM a AS Builder\nFROM BUILDER\nCOPY --from=builder x y");
    assert_eq!(d.stages[1].base, strata_dockerfile::BaseImage::Stage(0));
}

#[test]
fn errors_in_unneeded_stages_do_not_fail() {
    let d = df("FROM a AS broken\nRUN --mount=type=cache x\nFROM b\nRUN ok");
    assert!(!d.stages[0].expanded);
    assert!(d.stages[1].expanded);
}

#[test]
fn structure_errors() {
    assert!(df_err("RUN x\nFROM a").contains("no build stage in current context"));
    assert!(df_err("ARG A\n").contains("dockerfile contains no stages to build"));
}

#[test]
fn many_stages_are_fast() {
    let mut src = String::new();
    for i in 0..2000 {
        src.push_str(&format!("FROM alpine AS s{i}\n"));
        if i > 0 {
            src.push_str(&format!("COPY --from=s{} /x /x\n", i - 1));
        }
    }
    let start = std::time::Instant::now();
    let d = df(&src);
    assert_eq!(d.graph.levels.len(), 2000);
    assert!(start.elapsed().as_secs() < 5);
}
