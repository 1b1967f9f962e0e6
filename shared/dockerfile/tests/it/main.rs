//! Integration tests for strata-dockerfile, one module per topic.

mod ast;
mod corpus;
mod dockerignore;
mod errors;
mod expansion;
mod hostile;
mod lints;
mod properties;
mod real_world;
mod regressions;
mod scoping;
mod stage_graph;
mod typed;

use strata_dockerfile::{Dockerfile, ParseOptions, parse_dockerfile};

/// Parses with default options, panicking with the rendered error.
pub fn df(src: &str) -> Dockerfile {
    parse_dockerfile(src.as_bytes(), &ParseOptions::default())
        .unwrap_or_else(|e| panic!("{}", e.render("Dockerfile")))
}

/// Parses with build args.
pub fn df_args(src: &str, args: &[(&str, &str)]) -> Dockerfile {
    let opts = ParseOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ParseOptions::default()
    };
    parse_dockerfile(src.as_bytes(), &opts).unwrap_or_else(|e| panic!("{}", e.render("Dockerfile")))
}

/// The rendered error of a Dockerfile that must fail.
pub fn df_err(src: &str) -> String {
    match parse_dockerfile(src.as_bytes(), &ParseOptions::default()) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e.render("Dockerfile"),
    }
}

/// Dump of the AST.
pub fn dump_of(src: &str) -> String {
    let out = strata_dockerfile::parse(src.as_bytes())
        .unwrap_or_else(|e| panic!("{}", e.render("Dockerfile")));
    strata_dockerfile::dump(&out.root)
}
