//! AST layer behaviour beyond the corpus (spec §1–§6).

use strata_dockerfile::{ErrorKind, parse};

use crate::dump_of;

#[test]
fn keywords_case_insensitive_dump_lowercase() {
    assert_eq!(
        dump_of("from a\nRun echo\nrUn x"),
        "(from \"a\")\n(run \"echo\")\n(run \"x\")"
    );
}

#[test]
fn crlf_and_bom() {
    assert_eq!(
        dump_of("\u{feff}FROM a\r\nRUN b \\\r\n c\r\n"),
        "(from \"a\")\n(run \"b  c\")"
    );
}

#[test]
fn comments_inside_continuation_are_dropped() {
    let src = "RUN a \\\n  # comment\n  b\n";
    assert_eq!(dump_of(src), "(run \"a   b\")");
}

#[test]
fn hash_inside_arguments_is_text() {
    assert_eq!(
        dump_of("RUN echo 'some # of'"),
        "(run \"echo 'some # of'\")"
    );
}

#[test]
fn escaped_escape_does_not_continue() {
    assert_eq!(
        dump_of("ENV C a\\\\\nENV D b"),
        "(env \"C\" \"a\\\\\\\\\" \"\")\n(env \"D\" \"b\" \"\")"
    );
}

#[test]
fn backtick_escape_directive() {
    let src = "# escape=`\nFROM windows\nRUN dir `\n  c:\\\n";
    assert_eq!(dump_of(src), "(from \"windows\")\n(run \"dir   c:\\\\\")");
}

#[test]
fn directive_after_instruction_is_comment() {
    let out = parse(b"FROM a\n# escape=`\nRUN b \\\n c").unwrap();
    assert_eq!(out.escape, '\\');
    assert!(out.directives.is_empty());
}

#[test]
fn invalid_escape_directive() {
    let err = parse(b"# escape=x\nFROM a").unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::InvalidEscapeToken { value: "x".into() }
    );
}

#[test]
fn directives_case_insensitive_keys_and_check() {
    let out = parse(b"# SYNTAX = docker/dockerfile:1\n#check=skip=all\nFROM a").unwrap();
    assert_eq!(out.directive("syntax"), Some("docker/dockerfile:1"));
    assert_eq!(out.directive("check"), Some("skip=all"));
    assert!(out.root.children[0].prev_comment.is_empty());
}

#[test]
fn prev_comments_attach_and_reset() {
    let out = parse(b"# hello\n# world\nFROM a\n# x\n#\n# y\nRUN b").unwrap();
    assert_eq!(out.root.children[0].prev_comment, vec!["hello", "world"]);
    assert_eq!(out.root.children[1].prev_comment, vec!["y"]);
}

#[test]
fn empty_continuation_warning() {
    let out = parse(b"FROM a\nRUN a \\\n\n  b").unwrap();
    assert_eq!(out.warnings.len(), 1);
    assert_eq!(
        out.warnings[0].short,
        "Empty continuation line found in: RUN a   b"
    );
    assert_eq!(out.warnings[0].line, 4);
}

#[test]
fn env_label_forms() {
    assert_eq!(
        dump_of("ENV A=1 B=\"x y\""),
        r#"(env "A" "1" "=" "B" "\"x y\"" "=")"#
    );
    assert_eq!(
        dump_of("ENV ONE TWO= THREE=world"),
        r#"(env "ONE" "TWO= THREE=world" "")"#
    );
    assert_eq!(dump_of("LABEL a=b"), r#"(label "a" "b" "=")"#);
    assert_eq!(
        dump_of(r"ENV MY_DOG=Rex\ The\ Dog"),
        r#"(env "MY_DOG" "Rex\\ The\\ Dog" "=")"#
    );
    let err = parse(b"ENV A=1 B").unwrap_err();
    assert_eq!(
        err.kind.to_string(),
        r#"Syntax error - can't find = in "B". Must be of the form: name=value"#
    );
    assert_eq!(
        parse(b"LABEL x").unwrap_err().kind.to_string(),
        "LABEL must have two arguments"
    );
}

#[test]
fn json_forms() {
    assert_eq!(dump_of("CMD [\"a\", \"b\"]"), r#"(cmd "a" "b")"#);
    assert_eq!(
        dump_of("RUN [\"c:\\windows\\x.exe\"]"),
        r#"(run "[\"c:\\windows\\x.exe\"]")"#
    );
    assert_eq!(dump_of("VOLUME [\"/a\", \"/b\"]"), r#"(volume "/a" "/b")"#);
    assert_eq!(dump_of("ENTRYPOINT []"), "(entrypoint)");
    assert_eq!(
        dump_of("SHELL [\"pwsh\", \"-c\"]"),
        r#"(shell "pwsh" "-c")"#
    );
    assert!(parse(b"CMD [1]").is_err());
    assert!(parse(b"RUN [\"a\", {\"b\": 1}]").is_err());
    let out = parse(b"CMD [\"a\"]").unwrap();
    assert!(out.root.children[0].attributes.json);
}

#[test]
fn onbuild_nested_node() {
    assert_eq!(
        dump_of("ONBUILD RUN [\"echo\", \"test\"]"),
        r#"(onbuild (run "echo" "test"))"#
    );
    assert_eq!(
        dump_of("ONBUILD ADD . /app"),
        r#"(onbuild (add "." "/app"))"#
    );
}

#[test]
fn unknown_instruction_node() {
    assert_eq!(dump_of("FOO bar baz"), r#"(foo "")"#);
}

#[test]
fn heredoc_bodies() {
    let src = "FROM a\nRUN <<EOF\necho hi\n# not a comment \\\nEOF\nRUN echo done";
    let out = parse(src.as_bytes()).unwrap();
    let run = &out.root.children[1];
    assert_eq!(run.heredocs.len(), 1);
    assert_eq!(run.heredocs[0].name, "EOF");
    assert_eq!(run.heredocs[0].content, "echo hi\n# not a comment \\\n");
    assert_eq!((run.start_line, run.end_line), (2, 5));
    assert_eq!(out.root.children[2].start_line, 6);
}

#[test]
fn several_heredocs_chomp_and_quotes() {
    let src = "COPY <<FILE1 <<-'FILE2' /dest/\nhello $X\nFILE1\n\tindented\n\tFILE2\n";
    let out = parse(src.as_bytes()).unwrap();
    let h = &out.root.children[0].heredocs;
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[0].name.as_str(), h[0].expand, h[0].chomp),
        ("FILE1", true, false)
    );
    assert_eq!(
        (h[1].name.as_str(), h[1].expand, h[1].chomp),
        ("FILE2", false, true)
    );
    assert_eq!(h[1].content, "\tindented\n");
    assert_eq!(h[1].body(), "indented\n");
}

#[test]
fn heredoc_not_in_json_or_other_instructions() {
    let out = parse(b"RUN [\"cat\", \"<<EOF\"]\nLABEL a=<<EOF\nCMD cat <<EOF").unwrap();
    assert!(out.root.children.iter().all(|c| c.heredocs.is_empty()));
}

#[test]
fn heredoc_with_command_after_marker() {
    let src = "RUN <<EOF bash\nset -e\nEOF\nRUN cat <<A > a && cat <<\"B\" > b\n1\nA\n2\nB\n";
    let out = parse(src.as_bytes()).unwrap();
    assert_eq!(out.root.children[0].heredocs[0].content, "set -e\n");
    assert_eq!(out.root.children[1].heredocs.len(), 2);
    assert!(!out.root.children[1].heredocs[1].expand);
}

#[test]
fn unterminated_heredoc() {
    let err = parse(b"FROM a\nRUN <<EOF\necho\n").unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnterminatedHeredoc);
    assert_eq!(err.location.unwrap().line, 2);
}

#[test]
fn onbuild_heredoc_attaches_to_onbuild_node() {
    let out = parse(b"ONBUILD RUN <<EOF\necho\nEOF\n").unwrap();
    assert_eq!(out.root.children[0].heredocs.len(), 1);
}

#[test]
fn flags_quirks() {
    assert_eq!(
        dump_of("RUN --mount=type=cache,target=/x --network=none make"),
        r#"(run ["--mount=type=cache,target=/x" "--network=none"] "make")"#
    );
    assert_eq!(
        dump_of("COPY --chown=\"a b\" x y"),
        r#"(copy ["--chown=a b"] "x" "y")"#
    );
    assert_eq!(dump_of("COPY -- --x y"), r#"(copy "--x" "y")"#);
}

#[test]
fn healthcheck_grammar() {
    assert_eq!(dump_of("HEALTHCHECK NONE"), r#"(healthcheck "NONE")"#);
    assert_eq!(
        dump_of("HEALTHCHECK --retries=3 CMD curl -f x || exit 1"),
        r#"(healthcheck ["--retries=3"] "CMD" "curl -f x || exit 1")"#
    );
}

#[test]
fn no_instructions() {
    assert_eq!(parse(b"").unwrap_err().kind, ErrorKind::NoInstructions);
    assert_eq!(
        parse(b"# only\n\n  \n").unwrap_err().kind,
        ErrorKind::NoInstructions
    );
}

#[test]
fn leading_whitespace_and_trailing() {
    assert_eq!(
        dump_of("   FROM    a   AS   b   "),
        r#"(from "a" "AS" "b")"#
    );
    assert_eq!(dump_of("\tEXPOSE 80\t443"), r#"(expose "80" "443")"#);
}

#[test]
fn continuation_at_eof_and_lone_escape_lines() {
    assert_eq!(dump_of("RUN a \\"), r#"(run "a")"#);
    assert_eq!(dump_of("\\\nRUN x"), r#"(run "x")"#);
}
