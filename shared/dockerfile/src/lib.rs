//! The Dockerfile language for strata, matching BuildKit's Dockerfile frontend.
//!
//! Layers, bottom to top:
//! - [`parse`]: BuildKit's `parser.Parse` — directives, comments, continuation lines,
//!   heredocs, flags and per-instruction argument grammars — producing a [`Node`] tree.
//!   [`dump`] prints it in the test-corpus format.
//! - [`shell`]: BuildKit's `shell.Lex` word expansion ([`Lexer`]).
//!
//! Architecture invariants: the crate does no I/O (it takes bytes and strings and returns
//! values) and never panics on any input; recursion is bounded (ONBUILD nesting, `${...}`
//! nesting) and pattern matching is budgeted.

pub mod ast;
pub mod error;
mod json_array;
mod line_grammar;
mod parser;
pub mod quote;
pub mod shell;

pub use ast::{Attributes, Directive, Heredoc, Node, ParseOutput, ParseWarning, dump};
pub use error::{Error, ErrorKind, Location, Result};
pub use line_grammar::parse_heredoc;
pub use parser::{MAX_LINE_BYTES, parse};
pub use shell::{Expansion, Lexer, NoVariables, ShellPlatform, VariableSource};
