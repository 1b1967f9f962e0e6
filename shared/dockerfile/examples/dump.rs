//! Prints the BuildKit-style AST dump of a Dockerfile: `cargo run --example dump -- PATH`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dump PATH");
        return ExitCode::FAILURE;
    };
    let src = match std::fs::read(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("failed to read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match strata_dockerfile::parse(&src) {
        Ok(out) => {
            println!("{}", strata_dockerfile::dump(&out.root));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", e.render(&path));
            ExitCode::FAILURE
        }
    }
}
