//! Shell word expansion (spec §7).

use std::collections::BTreeMap;

use strata_dockerfile::{Lexer, NoVariables, ShellPlatform};

fn env() -> BTreeMap<String, String> {
    [
        ("A", "x y"),
        ("EMPTY", ""),
        ("P", "/usr/local/bin/tool.tar.gz"),
        ("N", "3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn w(s: &str) -> String {
    Lexer::new('\\')
        .process_word(s, &env())
        .unwrap_or_else(|e| format!("ERR {e}"))
}

fn ws(s: &str) -> Vec<String> {
    Lexer::new('\\').process_words(s, &env()).unwrap()
}

#[test]
fn modifiers() {
    assert_eq!(w("${A:-d}"), "x y");
    assert_eq!(w("${EMPTY:-d}"), "d");
    assert_eq!(w("${EMPTY-d}"), "");
    assert_eq!(w("${UNSET-d}"), "d");
    assert_eq!(w("${A:+set}"), "set");
    assert_eq!(w("${EMPTY:+set}"), "");
    assert_eq!(w("${EMPTY+set}"), "set");
    assert_eq!(w("${UNSET+set}"), "");
    assert_eq!(w("${A?}"), "x y");
    assert!(w("${UNSET?}").contains("UNSET: is not allowed to be unset"));
    assert!(w("${EMPTY:?}").contains("EMPTY: is not allowed to be empty"));
    assert!(w("${UNSET:?custom message}").contains("UNSET: custom message"));
    assert_eq!(w("${EMPTY?}"), "");
}

#[test]
fn pattern_modifiers() {
    assert_eq!(w("${P#*/}"), "usr/local/bin/tool.tar.gz");
    assert_eq!(w("${P##*/}"), "tool.tar.gz");
    assert_eq!(w("${P%.*}"), "/usr/local/bin/tool.tar");
    assert_eq!(w("${P%%.*}"), "/usr/local/bin/tool");
    assert_eq!(w("${P/local/opt}"), "/usr/opt/bin/tool.tar.gz");
    assert_eq!(w("${P//\\//_}"), "_usr_local_bin_tool.tar.gz");
    assert_eq!(w("${P/#/x}"), "/usr/local/bin/tool.tar.gz");
    assert_eq!(w("${N/?/\\*}"), "\\*");
    assert!(w("${P:#x}").starts_with("ERR"));
    assert!(w("${P:%x}").starts_with("ERR"));
    assert!(w("${P/x").starts_with("ERR"));
}

#[test]
fn errors() {
    for bad in [
        "${}", "${:}", "${{a}}", "${a", "${a:-b", "${a:=b}", "${a=b}", "${a:X}", "'x", "\"x",
    ] {
        assert!(w(bad).starts_with("ERR"), "{bad} should fail: {}", w(bad));
    }
    assert!(w("${a").contains("missing '}'"));
    assert!(w("${}").contains("bad substitution"));
}

#[test]
fn quotes_and_escapes() {
    assert_eq!(w(r#""$A""#), "x y");
    assert_eq!(w("'$A'"), "$A");
    assert_eq!(w(r"\$A"), "$A");
    assert_eq!(w(r#""a\tb""#), r"a\tb");
    assert_eq!(w(r"a\tb"), "atb");
    assert_eq!(w(r#""\"""#), "\"");
}

#[test]
fn word_splitting() {
    assert_eq!(ws("a $A b"), vec!["a", "x", "y", "b"]);
    assert_eq!(ws(r#"a "$A" b"#), vec!["a", "x y", "b"]);
    assert_eq!(ws(r#""""#), Vec::<String>::new());
    assert_eq!(ws(r"a\ b"), vec!["a b"]);
    assert_eq!(ws("80 ${N}43"), vec!["80", "343"]);
}

#[test]
fn heredoc_markers_survive_lexing() {
    assert_eq!(ws("cat << EOF > x"), vec!["cat", "<< EOF", ">", "x"]);
}

#[test]
fn backtick_escape() {
    let lx = Lexer::new('`');
    assert_eq!(
        lx.process_word(r"C:\path`$x", &NoVariables).unwrap(),
        r"C:\path$x"
    );
    assert_eq!(lx.process_word("a` b", &NoVariables).unwrap(), "a b");
}

#[test]
fn skip_unset_keeps_references() {
    let lx = Lexer {
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    assert_eq!(
        lx.process_word("$X ${Y} ${Z:-d}", &NoVariables).unwrap(),
        "$X ${Y} ${Z:-d}"
    );
}

#[test]
fn used_variables_for_cache_keys() {
    let e = Lexer::new('\\').expand("$A ${B:-$N} $A", &env()).unwrap();
    assert_eq!(e.matched.iter().collect::<Vec<_>>(), vec!["A", "N"]);
    assert_eq!(e.unmatched.iter().collect::<Vec<_>>(), vec!["B"]);
}

#[test]
fn windows_case_insensitive() {
    let lx = Lexer::new('\\').with_platform(ShellPlatform::Windows);
    assert_eq!(lx.process_word("$a", &env()).unwrap(), "x y");
    assert_eq!(Lexer::new('\\').process_word("$a", &env()).unwrap(), "");
}

#[test]
fn deep_nesting_fails_fast() {
    let depth = 100_000;
    let s = format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
    let start = std::time::Instant::now();
    assert!(Lexer::new('\\').process_word(&s, &NoVariables).is_err());
    assert!(start.elapsed().as_secs() < 2);
    let quoted = format!("{}x{}", "\"${a:-".repeat(depth), "}\"".repeat(depth));
    assert!(
        Lexer::new('\\')
            .process_word(&quoted, &NoVariables)
            .is_err()
    );
}

#[test]
fn pathological_pattern_is_bounded() {
    let mut env = BTreeMap::new();
    env.insert("V".to_string(), "a".repeat(20_000));
    let pat = format!("${{V//{}b/x}}", "*a".repeat(50));
    let start = std::time::Instant::now();
    let r = Lexer::new('\\').process_word(&pat, &env);
    assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
    // Either no match (value unchanged) or a budget error, never a hang.
    if let Ok(v) = r {
        assert_eq!(v.len(), 20_000);
    }
}
