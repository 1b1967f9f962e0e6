//! Feeds arbitrary bytes to every entry point: the AST parser, the dump, the typed parser,
//! word expansion and .dockerignore matching. Run with `cargo fuzz run parse` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_dockerfile::{
    DockerIgnore, Lexer, NoVariables, ParseOptions, dump, parse, parse_dockerfile,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = parse(data) {
        let _ = dump(&out.root);
    }
    let _ = parse_dockerfile(data, &ParseOptions::default());
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Lexer::new('\\').expand(text, &NoVariables);
        let _ = Lexer::new('`').process_words(text, &NoVariables);
        if let Ok(ignore) = DockerIgnore::parse(text) {
            let _ = ignore.matches(text);
            let _ = ignore.can_skip_dir(text);
        }
    }
});
