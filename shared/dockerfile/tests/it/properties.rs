//! Property tests: never panic; dump is stable under re-parsing.

use proptest::prelude::*;
use strata_dockerfile::{Lexer, NoVariables, ParseOptions, dump, parse, parse_dockerfile};

fn dockerfile_line() -> impl Strategy<Value = String> {
    let keyword = prop::sample::select(vec![
        "FROM",
        "RUN",
        "CMD",
        "ENV",
        "LABEL",
        "COPY",
        "ADD",
        "ARG",
        "EXPOSE",
        "WORKDIR",
        "USER",
        "VOLUME",
        "ENTRYPOINT",
        "SHELL",
        "HEALTHCHECK",
        "ONBUILD",
        "STOPSIGNAL",
        "MAINTAINER",
        "run",
        "# c",
        "",
        "FOO",
    ]);
    let arg = "[a-zA-Z0-9 =\"'$\\{\\}\\[\\],:/\\\\.-]{0,20}";
    (keyword, arg).prop_map(|(k, a)| format!("{k} {a}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse(&bytes);
        let _ = parse_dockerfile(&bytes, &ParseOptions::default());
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = Lexer::new('\\').process_words(s, &NoVariables);
            let _ = strata_dockerfile::DockerIgnore::parse(s).map(|d| d.matches(s));
        }
    }

    #[test]
    fn never_panics_on_dockerfile_like_text(lines in prop::collection::vec(dockerfile_line(), 1..12)) {
        let src = format!("FROM alpine\n{}", lines.join("\n"));
        let _ = parse_dockerfile(src.as_bytes(), &ParseOptions::default());
    }

    #[test]
    fn dump_reparse_is_stable(lines in prop::collection::vec(dockerfile_line(), 1..12)) {
        // A dump line is itself not Dockerfile syntax, but re-parsing the *source* must be
        // deterministic, and parsing the instructions one per line (original text) must
        // reproduce the same dump when no heredocs or continuations are involved.
        let src = lines.join("\n");
        if let Ok(out) = parse(src.as_bytes()) {
            let first = dump(&out.root);
            let again = dump(&parse(src.as_bytes()).unwrap().root);
            prop_assert_eq!(&first, &again);
            let originals: Vec<String> = out.root.children.iter().map(|c| c.original.clone()).collect();
            // a continued line's original text drops its escapes (BuildKit's `Original`), so
            // it is not itself the instruction it came from: continuations are left out, as
            // the comment above says (`FROM \ \` continues into nothing)
            let continued = src.lines().any(|l| l.trim_end().ends_with('\\'));
            if out.root.children.iter().all(|c| c.heredocs.is_empty()) && out.escape == '\\'
                && !continued
                && let Ok(re) = parse(originals.join("\n").as_bytes()) {
                    prop_assert_eq!(first, dump(&re.root));
                }
        }
    }

    #[test]
    fn lexer_words_join_like_word(s in "[a-z $'\"\\\\]{0,30}") {
        let lx = Lexer::new('\\');
        if let (Ok(word), Ok(words)) = (lx.process_word(&s, &NoVariables), lx.process_words(&s, &NoVariables)) {
            // Every field appears in the single-word result.
            for w in words {
                prop_assert!(word.contains(&w));
            }
        }
    }
}
