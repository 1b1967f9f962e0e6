//! Parses every file under a directory (recursively) and reports the ones that fail:
//! `cargo run -p strata-dockerfile --example parse_dir -- DIR [--json]`.
//!
//! Each file goes through the AST parser and the typed parse (`parse_dockerfile`, default
//! options). Without `--json` it prints one line per failing file and a summary; with `--json`
//! it prints one JSON object per file (path, the AST instructions in a flat comparable form,
//! or the error of either layer), for diffing against another implementation.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};
use strata_dockerfile::{Node, ParseOptions, parse, parse_dockerfile};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// One instruction flattened: ONBUILD's nested instruction is reported as `sub_cmd` with its
/// arguments (the flags stay the outer node's), ENV/LABEL triples lose the separator
/// (key, value, key, value, ...).
fn flat(node: &Node) -> Value {
    let (inner, sub_cmd) = match node.next.first() {
        Some(arg) if !arg.children.is_empty() => {
            let nested = &arg.children[0];
            (nested, Some(nested.value.clone()))
        }
        _ => (node, None),
    };
    let keyword = inner.value.to_ascii_lowercase();
    let pairs = keyword == "env" || keyword == "label";
    let values: Vec<&str> = inner
        .next
        .iter()
        .enumerate()
        .filter(|(i, _)| !pairs || i % 3 != 2)
        .map(|(_, n)| n.value.as_str())
        .collect();
    json!({
        "cmd": node.value,
        "sub_cmd": sub_cmd,
        "json": inner.attributes.json,
        "start_line": node.start_line,
        "end_line": node.end_line,
        "flags": node.flags,
        "value": values,
        "heredocs": inner.heredocs.iter().map(|h| json!([h.name, h.content])).collect::<Vec<_>>(),
    })
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: parse_dir DIR [--json]");
        return ExitCode::FAILURE;
    };
    let as_json = args.next().as_deref() == Some("--json");
    let mut files = Vec::new();
    if let Err(e) = files_under(Path::new(&dir), &mut files) {
        eprintln!("failed to list {dir}: {e}");
        return ExitCode::FAILURE;
    }
    files.sort();
    let (mut ok, mut failed) = (0usize, 0usize);
    for path in &files {
        let name = path.display().to_string();
        let src = match std::fs::read(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("failed to read {name}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let ast = parse(&src);
        let typed = parse_dockerfile(&src, &ParseOptions::default());
        let ast_error = ast.as_ref().err().map(|e| e.render("Dockerfile"));
        let typed_error = typed.as_ref().err().map(|e| e.render("Dockerfile"));
        if ast_error.is_some() || typed_error.is_some() {
            failed += 1;
        } else {
            ok += 1;
        }
        if as_json {
            let instructions = ast
                .as_ref()
                .map(|out| out.root.children.iter().map(flat).collect::<Vec<_>>())
                .ok();
            println!(
                "{}",
                json!({
                    "file": name,
                    "instructions": instructions,
                    "ast_error": ast_error,
                    "typed_error": typed_error,
                })
            );
        } else if let Some(e) = ast_error.or(typed_error) {
            println!("FAIL {name}: {e}");
        }
    }
    eprintln!("{ok} parsed, {failed} failed, {} files", files.len());
    ExitCode::SUCCESS
}
