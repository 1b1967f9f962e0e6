//! Error positions and rendering.

use strata_dockerfile::{ErrorKind, parse, parse_dockerfile};

use crate::df_err;

#[test]
fn unknown_instruction_with_suggestion() {
    let e = df_err("FROM a\n\n\n\n\n\nRUNN make");
    assert_eq!(
        e,
        "Dockerfile:7:1: unknown instruction \"RUNN\" (did you mean \"RUN\"?)"
    );
    let e = df_err("FORM a");
    assert_eq!(
        e,
        "Dockerfile:1:1: unknown instruction \"FORM\" (did you mean \"FROM\"?)"
    );
    let e = df_err("FROM a\n  XYZZYQ foo");
    assert_eq!(e, "Dockerfile:2:3: unknown instruction \"XYZZYQ\"");
}

#[test]
fn flag_errors_point_at_the_flag() {
    let e = df_err("FROM a\nCOPY --chwon=1 a b");
    assert_eq!(
        e,
        "Dockerfile:2:6: unknown flag: --chwon (did you mean --chown?)"
    );
}

#[test]
fn error_kind_is_inspectable() {
    let e = parse_dockerfile(b"FROM a\nFOO", &Default::default()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::UnknownInstruction { .. }));
    assert_eq!(e.location.unwrap().line, 2);
    let e = parse(b"FROM a\nENV X").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::MissingValue { .. }));
    assert_eq!(e.location.unwrap().line, 2);
    assert_eq!(e.location.unwrap().column, 1);
}

#[test]
fn invalid_utf8_in_comments_is_tolerated() {
    let out = parse(b"# caf\xe9\nFROM a").unwrap();
    assert_eq!(out.root.children.len(), 1);
}

#[test]
fn expansion_errors_have_lines() {
    let e = df_err("FROM a\nWORKDIR ${X");
    assert!(e.starts_with("Dockerfile:2:"), "{e}");
    assert!(e.contains("missing '}'"), "{e}");
}

#[test]
fn multi_line_instruction_error_spans() {
    let e = parse_dockerfile(b"FROM a\nHEALTHCHECK \\\n  NONE x", &Default::default()).unwrap_err();
    assert_eq!(e.location.unwrap().line, 2);
    assert_eq!(e.end_line, Some(3));
}
