//! The Dockerfile language for strata, matching BuildKit's Dockerfile frontend.
//!
//! Layers, bottom to top:
//! - [`parse`]: BuildKit's `parser.Parse` — directives, comments, continuation lines,
//!   heredocs, flags and per-instruction argument grammars — producing a [`Node`] tree;
//!   [`dump`] prints it in the test-corpus format.
//! - [`shell`]: BuildKit's `shell.Lex` word expansion ([`Lexer`]).
//! - [`parse_instruction`]: one node to a typed [`Instruction`] (arity and flags checked).
//! - [`parse_dockerfile`]: the whole file to a [`Dockerfile`]: global ARGs, [`Stage`]s with
//!   expanded arguments and ARG/ENV scoping, the [`StageGraph`] with `--target`, and lint
//!   [`LintWarning`]s.
//! - [`DockerIgnore`]: `.dockerignore` reading and matching.
//!
//! Architecture invariants: the crate does no I/O (it takes bytes and strings and returns
//! values) and never panics on any input; recursion is bounded (ONBUILD nesting, `${...}`
//! nesting) and pattern matching is budgeted.

pub mod ast;
pub mod dockerfile;
pub mod dockerignore;
pub mod error;
mod flags;
mod image_ref;
pub mod instruction;
mod json_array;
mod line_grammar;
pub mod lint;
pub mod mount;
mod parser;
pub mod platform;
pub mod quote;
pub mod shell;
pub mod stage_graph;
mod suggest;

pub use ast::{Attributes, Directive, Heredoc, Node, ParseOutput, ParseWarning, dump};
pub use dockerfile::{
    BaseImage, DEFAULT_PATH, Dockerfile, ImageDefaults, PROXY_ARGS, ParseOptions, Stage, from_ast,
    parse_dockerfile,
};
pub use dockerignore::DockerIgnore;
pub use error::{Error, ErrorKind, Location, Result};
pub use instruction::{
    ArgDeclaration, Command, CommandLine, Copy, Expose, ExposedPort, Healthcheck, InlineFile,
    Instruction, KeyValue, NetworkMode, Onbuild, Protocol, Run, SecurityMode, Span, Workdir,
    parse_instruction,
};
pub use line_grammar::parse_heredoc;
pub use lint::{CheckConfig, LintWarning};
pub use mount::{CacheSharing, Mount, MountType};
pub use parser::{MAX_LINE_BYTES, parse};
pub use platform::Platform;
pub use shell::{Expansion, Lexer, NoVariables, ShellPlatform, VariableSource};
pub use stage_graph::{Dependency, DependencyKind, DependencyTarget, StageGraph};
