//! Hostile input: each case must return quickly without panicking.

use std::time::{Duration, Instant};

use strata_dockerfile::{Lexer, NoVariables, ParseOptions, parse, parse_dockerfile};

fn quick<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let r = f();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    r
}

#[test]
fn ten_megabyte_single_line() {
    let mut src = b"FROM a\nRUN ".to_vec();
    src.resize(10 << 20, b'x');
    let err = quick(|| parse(&src)).unwrap_err();
    assert!(err.to_string().contains("max allowed size of 65535"));
}

#[test]
fn ten_megabytes_of_continuations() {
    let mut src = String::from("FROM a\nRUN x");
    while src.len() < 10 << 20 {
        src.push_str(" \\\n  && echo hello world");
    }
    let out = quick(|| parse(src.as_bytes())).unwrap();
    assert_eq!(out.root.children.len(), 2);
}

#[test]
fn hundred_thousand_instructions() {
    let mut src = String::from("FROM alpine\n");
    for i in 0..100_000 {
        src.push_str(&format!("ENV V{}=${{V{}:-x}}\n", i % 50, (i + 1) % 50));
    }
    let out = quick(|| parse(src.as_bytes())).unwrap();
    assert_eq!(out.root.children.len(), 100_001);
    let d = quick(|| parse_dockerfile(src.as_bytes(), &ParseOptions::default())).unwrap();
    assert_eq!(d.stages[0].instructions.len(), 100_000);
}

#[test]
fn huge_expose_list() {
    let src = format!("FROM a\nEXPOSE {}", "1-65535 ".repeat(3));
    let d = quick(|| parse_dockerfile(src.as_bytes(), &ParseOptions::default()));
    assert!(d.is_ok());
}

#[test]
fn deeply_nested_substitution_in_dockerfile() {
    let depth = 5000;
    let src = format!(
        "FROM a\nWORKDIR {}x{}",
        "${a:-".repeat(depth),
        "}".repeat(depth)
    );
    let e = quick(|| parse_dockerfile(src.as_bytes(), &ParseOptions::default()));
    assert!(e.is_err());
}

#[test]
fn deep_json_nesting() {
    let src = format!("CMD [{}{}]", "[".repeat(30_000), "]".repeat(30_000));
    quick(|| {
        let _ = parse(src.as_bytes());
    });
    let src = format!("CMD [{}{}]", "{\"a\":[".repeat(3000), "]}".repeat(3000));
    let r = quick(|| parse(src.as_bytes()));
    assert!(r.is_err(), "nested objects are non-string elements");
}

#[test]
fn onbuild_chains() {
    let src = format!("FROM a\n{}RUN x", "ONBUILD ".repeat(20_000));
    let r = quick(|| parse(src.as_bytes()));
    assert!(r.is_err());
}

#[test]
fn unterminated_heredocs() {
    let mut src = String::from("FROM a\nRUN <<EOF\n");
    for _ in 0..100_000 {
        src.push_str("line\n");
    }
    assert!(quick(|| parse(src.as_bytes())).is_err());
    let many = format!("FROM a\nRUN {}\n", "<<A ".repeat(5000));
    assert!(quick(|| parse(many.as_bytes())).is_err());
}

#[test]
fn nul_bytes_and_controls() {
    let src = b"FROM a\nRUN echo \0\x01\x7f\nENV A=\0\nLABEL \0=\0";
    let out = quick(|| parse(src)).unwrap();
    let dump = strata_dockerfile::dump(&out.root);
    assert!(dump.contains("\\x00"));
    let _ = quick(|| parse_dockerfile(src, &ParseOptions::default()));
}

#[test]
fn invalid_utf8_everywhere() {
    for src in [
        &b"\xff"[..],
        b"FROM \xc3\x28",
        b"FROM a\nRUN <<EOF\n\xfe\nEOF\n",
        b"\xef\xbb\xbf\xff",
    ] {
        let _ = quick(|| parse(src));
        let _ = quick(|| parse_dockerfile(src, &ParseOptions::default()));
    }
}

#[test]
fn many_variables_in_one_word() {
    let word = "$A".repeat(200_000);
    quick(|| Lexer::new('\\').process_word(&word, &NoVariables)).unwrap();
}

#[test]
fn long_flag_lists() {
    let src = format!(
        "FROM a\nRUN {} true",
        "--mount=type=tmpfs,target=/t ".repeat(2000)
    );
    assert!(quick(|| parse_dockerfile(src.as_bytes(), &ParseOptions::default())).is_ok());
}

/// Forty lines of `ARG A<i>=${A<i-1>}${A<i-1>}` would double a 100-byte value into 100 TB:
/// refused at the line where a word passes a megabyte, with nothing like that allocated.
#[test]
fn doubling_args_are_refused_at_the_word_that_passes_a_megabyte() {
    let mut src = format!("FROM busybox\nARG A={}\n", "a".repeat(100));
    src.push_str("ARG A0=${A}${A}\n");
    for i in 1..40 {
        src.push_str(&format!("ARG A{i}=${{A{p}}}${{A{p}}}\n", p = i - 1));
    }
    src.push_str("ENV X=${A39}\n");
    let err = quick(|| parse_dockerfile(src.as_bytes(), &ParseOptions::default())).unwrap_err();
    let msg = err.to_string();
    // A<i> is 100 * 2^(i+1) bytes: A13, on line 16, is the first past 1 MiB
    assert!(msg.contains("more than 1048576 bytes"), "{msg}");
    assert!(msg.starts_with("16:"), "{msg}");
}

/// A replacement repeated for every character multiplies a value: bounded the same way.
#[test]
fn a_replacement_per_character_is_bounded() {
    let src = format!(
        "FROM busybox\nARG A={}\nARG B={}\nENV X=${{A//?/$B}}\n",
        "a".repeat(60_000),
        "b".repeat(1000)
    );
    let err = quick(|| parse_dockerfile(src.as_bytes(), &ParseOptions::default())).unwrap_err();
    assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
}

/// A file that repeats a large value on every line stays within the word bound each time,
/// and is refused once the whole file's expansions pass 64 MiB.
#[test]
fn a_large_value_repeated_on_every_line_is_bounded_in_total() {
    let mut src = format!("FROM busybox\nARG A={}\n", "a".repeat(60_000));
    for _ in 0..4 {
        src.push_str("ARG A=${A}${A}\n");
    }
    // A: 960 000 bytes; each ENV line expands to it
    for i in 0..100 {
        src.push_str(&format!("ENV X{i}=${{A}}\n"));
    }
    let err = quick(|| parse_dockerfile(src.as_bytes(), &ParseOptions::default())).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("more than 67108864 bytes"), "{msg}");
}
