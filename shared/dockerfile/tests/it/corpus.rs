//! The BuildKit parser corpus (`$STRATA_CORPUS/buildkit-parser`), read in place.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use strata_dockerfile::{Lexer, ShellPlatform, dump, parse};

/// Locates the corpus directory; fails loudly rather than silently passing.
pub fn corpus_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("STRATA_CORPUS") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.is_dir(),
            "STRATA_CORPUS={} is not a directory",
            dir.display()
        );
        return dir;
    }
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    assert!(
        fallback.is_dir(),
        "corpus not found at {}; set STRATA_CORPUS to the path of the shared `corpus` directory",
        fallback.display()
    );
    fallback
}

fn buildkit_dir() -> PathBuf {
    corpus_dir().join("buildkit-parser")
}

fn case_dirs(sub: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(buildkit_dir().join(sub))
        .unwrap_or_else(|e| panic!("reading {sub}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no cases in {sub}");
    dirs
}

#[test]
fn testfiles_dump_matches_result() {
    let mut failures = Vec::new();
    let dirs = case_dirs("testfiles");
    for dir in &dirs {
        let src = fs::read(dir.join("Dockerfile")).unwrap();
        let expected = fs::read_to_string(dir.join("result")).unwrap();
        match parse(&src) {
            Ok(out) => {
                let got = dump(&out.root) + "\n";
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        dir.display()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: parse error {e}", dir.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}

#[test]
fn testfiles_negative_fail() {
    for dir in case_dirs("testfiles-negative") {
        let src = fs::read(dir.join("Dockerfile")).unwrap();
        let result = parse(&src).and_then(|out| {
            // Some negative cases are only rejected by the instruction layer.
            strata_dockerfile::parse_dockerfile(&src, &Default::default()).map(|_| out)
        });
        let err = result.expect_err(&format!("{} should fail", dir.display()));
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn testfile_line_spans() {
    let src = fs::read(buildkit_dir().join("testfile-line/Dockerfile")).unwrap();
    let out = parse(&src).unwrap();
    assert_eq!((out.root.start_line, out.root.end_line), (5, 31));
    let spans: Vec<(usize, usize)> = out
        .root
        .children
        .iter()
        .map(|c| (c.start_line, c.end_line))
        .collect();
    assert_eq!(spans, vec![(5, 5), (11, 12), (17, 31)]);
}

fn env_var_test_env() -> BTreeMap<String, String> {
    [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn env_var_test_vectors() {
    let text = fs::read_to_string(buildkit_dir().join("envVarTest")).unwrap();
    let env = env_var_test_env();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "bad vector line {line:?}");
        let platform = parts[0].trim();
        let source = parts[1].trim();
        let expected = parts[2].trim();
        let platforms: &[ShellPlatform] = match platform {
            "A" => &[ShellPlatform::Unix, ShellPlatform::Windows],
            "U" => &[ShellPlatform::Unix],
            "W" => &[ShellPlatform::Windows],
            other => panic!("unknown platform {other}"),
        };
        for p in platforms {
            let got = Lexer::new('\\')
                .with_platform(*p)
                .process_word(source, &env);
            checked += 1;
            match (expected, got) {
                ("error", Err(_)) => {}
                ("error", Ok(v)) => {
                    failures.push(format!("{p:?} {source:?}: expected error, got {v:?}"))
                }
                (exp, Ok(v)) if v == exp => {}
                (exp, got) => {
                    failures.push(format!("{p:?} {source:?}: expected {exp:?}, got {got:?}"))
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} vectors");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn words_test_vectors() {
    let text = fs::read_to_string(buildkit_dir().join("wordsTest")).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let (source, expected) = line.split_once('|').expect("vector line");
        let source = source.trim();
        let expected = expected.trim_start_matches(' ');
        let got = Lexer::new('\\').process_words(source, &env);
        checked += 1;
        match (expected, got) {
            ("error", Err(_)) => {}
            (exp, Ok(words)) if words.join(",") == exp => {}
            (exp, got) => failures.push(format!("{source:?}: expected {exp:?}, got {got:?}")),
        }
    }
    assert!(checked > 20);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
