//! Build checks (spec §14).

use strata_dockerfile::{DockerIgnore, ParseOptions, parse_dockerfile};

use crate::{df, df_args};

fn rules(src: &str) -> Vec<&'static str> {
    df(src).warnings.iter().map(|w| w.rule).collect()
}

fn has(src: &str, rule: &str) -> bool {
    rules(src).contains(&rule)
}

#[test]
fn each_rule_fires() {
    assert!(has("FROM a AS Build", "StageNameCasing"));
    assert!(has("FROM a as b", "FromAsCasing"));
    assert!(!has("FROM a AS b", "FromAsCasing"));
    assert!(has("FROM a\nRUN a \\\n\n b", "NoEmptyContinuation"));
    assert!(has("FROM a\nrun x\nRUN y", "ConsistentInstructionCasing"));
    assert!(has("FROM a\nRun x", "ConsistentInstructionCasing"));
    assert!(has("FROM a AS x\nFROM b AS x", "DuplicateStageName"));
    assert!(has("FROM a AS scratch", "ReservedStageName"));
    assert!(has("FROM a\nCMD echo hi", "JSONArgsRecommended"));
    assert!(!has("FROM a\nCMD [\"echo\"]", "JSONArgsRecommended"));
    assert!(has("FROM a\nMAINTAINER me", "MaintainerDeprecated"));
    assert!(has("ARG A=x\nFROM a$B", "UndefinedArgInFrom"));
    assert!(has("FROM a\nWORKDIR app", "WorkdirRelativePath"));
    assert!(!has(
        "FROM a\nWORKDIR /app\nWORKDIR sub",
        "WorkdirRelativePath"
    ));
    assert!(has("FROM scratch\nCOPY $SRC /x", "UndefinedVar"));
    assert!(!has("FROM scratch\nARG SRC\nCOPY $SRC /x", "UndefinedVar"));
    assert!(
        !has("FROM alpine\nCOPY $SRC /x", "UndefinedVar"),
        "unknown image env: not checked"
    );
    assert!(has(
        "FROM a\nCMD a\nCMD b",
        "MultipleInstructionsDisallowed"
    ));
    assert!(has("FROM a\nENV A b", "LegacyKeyValueFormat"));
    // Without the build-arg the build itself fails (`failed to parse stage name "alpine:"`);
    // the check looks at the defaults only.
    let invalid_default = df_args("ARG TAG\nFROM alpine:$TAG", &[("TAG", "3")]);
    assert!(
        invalid_default
            .warnings
            .iter()
            .any(|w| w.rule == "InvalidDefaultArgInFrom")
    );
    assert!(!has(
        "ARG TAG=3\nFROM alpine:$TAG",
        "InvalidDefaultArgInFrom"
    ));
    assert!(has(
        "FROM --platform=linux/amd64 a",
        "FromPlatformFlagConstDisallowed"
    ));
    assert!(has("FROM a\nARG GITHUB_TOKEN", "SecretsUsedInArgOrEnv"));
    assert!(has("FROM a\nENV DB_PASSWORD=x", "SecretsUsedInArgOrEnv"));
    assert!(has(
        "FROM --platform=$TARGETPLATFORM a",
        "RedundantTargetPlatform"
    ));
    assert!(has("FROM a\nEXPOSE 80/TCP", "ExposeProtoCasing"));
    assert!(has("FROM a\nEXPOSE 8080:80", "ExposeInvalidFormat"));
}

#[test]
fn messages_and_spans() {
    let d = df("FROM a\nMAINTAINER x\nCMD a\nCMD b");
    let w = d
        .warnings
        .iter()
        .find(|w| w.rule == "MultipleInstructionsDisallowed")
        .unwrap();
    assert_eq!(
        w.message,
        "Multiple CMD instructions should not be used in the same stage because only the last one will be used"
    );
    assert_eq!(w.span.start_line, 3);
    let m = d
        .warnings
        .iter()
        .find(|w| w.rule == "MaintainerDeprecated")
        .unwrap();
    assert_eq!(
        m.message,
        "Maintainer instruction is deprecated in favor of using label"
    );
    assert_eq!(
        m.url(),
        "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/"
    );
}

#[test]
fn copy_ignored_file() {
    let opts = ParseOptions {
        dockerignore: Some(DockerIgnore::parse("secret.txt\n").unwrap()),
        ..ParseOptions::default()
    };
    let d = parse_dockerfile(b"FROM a\nCOPY secret.txt ok.txt /x/", &opts).unwrap();
    let w: Vec<_> = d
        .warnings
        .iter()
        .filter(|w| w.rule == "CopyIgnoredFile")
        .collect();
    assert_eq!(w.len(), 1);
    assert!(w[0].message.contains("secret.txt"));
}

#[test]
fn experimental_description_rule() {
    assert!(!has(
        "# bad comment\nFROM a AS build",
        "InvalidDefinitionDescription"
    ));
    let src = "# check=experimental=InvalidDefinitionDescription\n\n# bad comment\nFROM a AS build\n# build stage\nFROM b AS x2";
    assert!(has(src, "InvalidDefinitionDescription"));
}

#[test]
fn check_directive_skip_and_error() {
    let src = "# check=skip=MaintainerDeprecated,JSONArgsRecommended\nFROM a\nMAINTAINER x\nCMD y";
    assert!(rules(src).is_empty());
    assert!(rules("# check=skip=all\nFROM a\nMAINTAINER x").is_empty());
    let e = parse_dockerfile(
        b"# check=error=true\nFROM a\nMAINTAINER x",
        &ParseOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("MaintainerDeprecated"), "{e}");
    assert!(
        parse_dockerfile(
            b"# check=error=true\nFROM a\nCMD [\"x\"]",
            &ParseOptions::default()
        )
        .is_ok()
    );
}
