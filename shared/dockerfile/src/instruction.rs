//! The typed instruction layer (BuildKit `instructions.ParseInstruction`, spec §3 and §8).
//!
//! [`parse_instruction`] turns one AST node into an [`Instruction`] holding the raw
//! (unexpanded) arguments, validating arity and flags. Expansion (spec §7.3) and the
//! per-stage environment are applied afterwards by [`crate::parse_dockerfile`], which fills
//! in the expanded fields.

use serde::Serialize;

use crate::ast::{Heredoc, Node, chomp_heredoc_content, go_lower};
use crate::error::{Error, ErrorKind, Location};
use crate::flags::{FlagKind, column_of, parse_flags};
use crate::line_grammar::parse_heredoc;
use crate::mount::Mount;
use crate::suggest::closest;

/// Every instruction keyword, upper case.
pub const INSTRUCTION_NAMES: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// First and last physical line of an instruction (1-based, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Span {
    /// First line.
    pub start_line: usize,
    /// Last line (continuations and heredoc bodies included).
    pub end_line: usize,
}

/// One instruction with its source position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// Where it is in the Dockerfile.
    pub span: Span,
    /// The logical line as written (continuations joined).
    pub original: String,
    /// The keyword as written (`run`, `Run`, `RUN`).
    pub keyword: String,
    /// Column (1-based) of the keyword on the first line.
    pub column: usize,
    /// Doc comments directly above the instruction.
    pub comments: Vec<String>,
    /// What the instruction does.
    pub command: Command,
}

/// The instruction kinds, one variant per Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// `ADD` (same shape as COPY, with the ADD-only flags).
    Add(Copy),
    /// `ARG name[=default] ...`.
    Arg(Vec<ArgDeclaration>),
    /// `CMD`.
    Cmd(CommandLine),
    /// `COPY`.
    Copy(Copy),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `ENV k=v ...` (or legacy `ENV k v`).
    Env(Vec<KeyValue>),
    /// `EXPOSE`.
    Expose(Expose),
    /// `FROM` (only inside [`crate::Stage`] as its header; never in a stage's instruction list).
    From(From),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `LABEL k=v ...`.
    Label(Vec<KeyValue>),
    /// `MAINTAINER text` (deprecated).
    Maintainer(String),
    /// `ONBUILD <instruction>`.
    Onbuild(Onbuild),
    /// `RUN`.
    Run(Run),
    /// `SHELL ["exe", ...]`.
    Shell(Vec<String>),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `USER user[:group]`.
    User(String),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `WORKDIR`.
    Workdir(Workdir),
}

impl Command {
    /// The instruction keyword in upper case.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Add(_) => "ADD",
            Command::Arg(_) => "ARG",
            Command::Cmd(_) => "CMD",
            Command::Copy(_) => "COPY",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Env(_) => "ENV",
            Command::Expose(_) => "EXPOSE",
            Command::From(_) => "FROM",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Label(_) => "LABEL",
            Command::Maintainer(_) => "MAINTAINER",
            Command::Onbuild(_) => "ONBUILD",
            Command::Run(_) => "RUN",
            Command::Shell(_) => "SHELL",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::User(_) => "USER",
            Command::Volume(_) => "VOLUME",
            Command::Workdir(_) => "WORKDIR",
        }
    }
}

/// Shell form or exec (JSON) form of RUN/CMD/ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandLine {
    /// Shell form: one string run as `SHELL + [string]` (`/bin/sh -c` by default).
    Shell(String),
    /// Exec form: the argv, run directly.
    Exec(Vec<String>),
}

impl CommandLine {
    /// The final argv given the stage's shell (`["/bin/sh", "-c"]` by default).
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            CommandLine::Shell(s) => {
                let mut v = shell.to_vec();
                v.push(s.clone());
                v
            }
            CommandLine::Exec(v) => v.clone(),
        }
    }
}

/// A `key=value` pair of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// Key (expanded after [`crate::parse_dockerfile`]).
    pub key: String,
    /// Value (expanded, quotes removed after [`crate::parse_dockerfile`]).
    pub value: String,
    /// Written in the legacy `KEY value` form.
    pub legacy: bool,
}

/// One name of an `ARG` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDeclaration {
    /// The variable name.
    pub name: String,
    /// The default as written (expanded after [`crate::parse_dockerfile`]).
    pub default: Option<String>,
    /// The effective value: build-arg, else default, else the global value, else none.
    pub value: Option<String>,
}

/// FROM's parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// The base name as written (unexpanded).
    pub image: String,
    /// `--platform` as written (unexpanded).
    pub platform: Option<String>,
    /// Stage name after `AS`, lower-cased.
    pub stage_name: Option<String>,
    /// Stage name as written (for the casing lint).
    pub stage_name_as_written: Option<String>,
    /// The `AS` keyword as written.
    pub as_keyword: Option<String>,
}

/// Network mode of a RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The default sandbox network.
    #[default]
    Default,
    /// No network (loopback only).
    None,
    /// Host networking (needs the `network.host` entitlement).
    Host,
}

/// Security mode of a RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// Normal sandbox.
    #[default]
    Sandbox,
    /// Privileged (needs the `security.insecure` entitlement).
    Insecure,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// What to run.
    pub command: CommandLine,
    /// Heredoc bodies of the line (raw; see spec §5.3 for how they are used).
    pub heredocs: Vec<Heredoc>,
    /// `--mount` values as written.
    pub mount_specs: Vec<String>,
    /// Parsed and expanded mounts (filled by [`crate::parse_dockerfile`]).
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
    /// `--device` values.
    pub devices: Vec<String>,
    /// Undeclared predefined proxy build-args, injected but not part of the cache key.
    pub proxy_env: Vec<(String, String)>,
}

impl Run {
    /// When the command is exactly one heredoc word, the heredoc that is the script.
    pub fn script_heredoc(&self) -> Option<&Heredoc> {
        let CommandLine::Shell(cmd) = &self.command else {
            return None;
        };
        let h = parse_heredoc(cmd.trim()).ok().flatten()?;
        if self.heredocs.len() == 1 {
            self.heredocs.iter().find(|d| d.name == h.name)
        } else {
            None
        }
    }

    /// The shell command string with heredoc bodies appended (spec §5.3, complex case):
    /// `original + for each heredoc "\n" + body + NAME`.
    pub fn shell_command_with_heredocs(&self) -> Option<String> {
        let CommandLine::Shell(cmd) = &self.command else {
            return None;
        };
        let mut out = cmd.clone();
        for h in &self.heredocs {
            out.push('\n');
            out.push_str(&h.content);
            out.push_str(&h.name);
        }
        Some(out)
    }
}

/// An inline file of COPY/ADD given as a heredoc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    /// File name (the heredoc delimiter).
    pub name: String,
    /// Content: chomped if `<<-`, expanded if the delimiter was unquoted (after
    /// [`crate::parse_dockerfile`]).
    pub content: String,
    /// Whether the content is subject to variable expansion.
    pub expand: bool,
}

/// `COPY` and `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Source paths (or URLs / git refs for ADD), expanded.
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub inline_files: Vec<InlineFile>,
    /// Destination, expanded.
    pub dest: String,
    /// `--from` (COPY only; never expanded).
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// `--checksum` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: Option<bool>,
    /// `--unpack` (ADD only).
    pub unpack: Option<bool>,
    /// Arguments were given in JSON form.
    pub json: bool,
}

/// Transport protocol of an exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One exposed port (a range expands to one entry per port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ExposedPort {
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl std::fmt::Display for ExposedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.as_str())
    }
}

/// `EXPOSE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expose {
    /// Arguments as written.
    pub raw: Vec<String>,
    /// Parsed ports (filled by [`crate::parse_dockerfile`]).
    pub ports: Vec<ExposedPort>,
}

/// `WORKDIR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workdir {
    /// Path as written, expanded by [`crate::parse_dockerfile`].
    pub path: String,
    /// Absolute, cleaned path after joining onto the previous working directory.
    pub resolved: String,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [flags] CMD ...`.
    Check {
        /// `["CMD-SHELL", cmd]` (shell form) or `["CMD", args...]` (exec form).
        test: Vec<String>,
        /// `--interval` in nanoseconds (0 = default).
        interval_ns: i64,
        /// `--timeout` in nanoseconds.
        timeout_ns: i64,
        /// `--start-period` in nanoseconds.
        start_period_ns: i64,
        /// `--start-interval` in nanoseconds.
        start_interval_ns: i64,
        /// `--retries` (0 = default).
        retries: i32,
    },
}

/// `ONBUILD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger text stored in the image config (`Config.OnBuild`).
    pub expression: String,
    /// The trigger parsed as an instruction (unexpanded: it runs in the child build), or
    /// `None` when it is not a valid instruction. BuildKit checks only that the trigger is
    /// not ONBUILD, FROM or MAINTAINER when it is defined; anything else (an unknown flag,
    /// a missing argument, an unknown keyword) fails only in the child build that runs it.
    pub trigger: Option<Box<Instruction>>,
}

fn at_line(node: &Node) -> Location {
    Location {
        line: node.start_line,
        column: node.start_column.max(1),
    }
}

fn fail(node: &Node, kind: ErrorKind) -> Error {
    Error::at(kind, at_line(node)).with_end_line(node.end_line)
}

fn invalid(node: &Node, message: impl Into<String>) -> Error {
    fail(
        node,
        ErrorKind::InvalidArgument {
            message: message.into(),
        },
    )
}

/// Parses a Go duration (`time.ParseDuration`) into nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    let orig = s;
    let err = || format!("time: invalid duration \"{orig}\"");
    let mut s = s;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let num_len = s
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
            .map_or(s.len(), |(i, _)| i);
        let (num, rest) = s.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(err());
        }
        let value: f64 = num.parse().map_err(|_| err())?;
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let (unit, rest) = rest.split_at(unit_len);
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{orig}\"")),
            other => {
                return Err(format!(
                    "time: unknown unit \"{other}\" in duration \"{orig}\""
                ));
            }
        };
        total += value * scale;
        if total > i64::MAX as f64 {
            return Err(err());
        }
        s = rest;
    }
    let ns = total.round() as i64;
    Ok(if neg { -ns } else { ns })
}

fn parse_interval(node: &Node, flag: &str, value: Option<String>) -> Result<i64, Error> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let d = parse_go_duration(&v).map_err(|e| invalid(node, e))?;
    if d == 0 {
        return Ok(0);
    }
    if d < 1_000_000 {
        return Err(invalid(
            node,
            format!("Interval \"{flag}\" cannot be less than 1ms"),
        ));
    }
    Ok(d)
}

fn exactly_one(node: &Node, name: &'static str) -> Result<String, Error> {
    match node.next.as_slice() {
        [one] => Ok(one.value.clone()),
        _ => Err(fail(
            node,
            ErrorKind::ExactlyOneArgument { instruction: name },
        )),
    }
}

fn key_values(node: &Node, name: &'static str) -> Result<Vec<KeyValue>, Error> {
    if node.next.is_empty() {
        return Err(fail(
            node,
            ErrorKind::AtLeastOneArgument { instruction: name },
        ));
    }
    let mut out = Vec::new();
    for triple in node.next.chunks(3) {
        let [k, v, sep] = triple else {
            return Err(invalid(
                node,
                format!("{name} has an odd number of arguments"),
            ));
        };
        if k.value.is_empty() {
            return Err(fail(node, ErrorKind::BlankName { instruction: name }));
        }
        out.push(KeyValue {
            key: k.value.clone(),
            value: v.value.clone(),
            legacy: sep.value.is_empty(),
        });
    }
    Ok(out)
}

fn command_line(node: &Node) -> CommandLine {
    let args: Vec<String> = node.args().map(str::to_string).collect();
    if node.attributes.json {
        CommandLine::Exec(args)
    } else {
        CommandLine::Shell(args.join(" "))
    }
}

const COPY_FLAGS: &[(&str, FlagKind)] = &[
    ("from", FlagKind::String),
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("parents", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
];

const ADD_FLAGS: &[(&str, FlagKind)] = &[
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("keep-git-dir", FlagKind::Bool),
    ("checksum", FlagKind::String),
    ("unpack", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
];

const RUN_FLAGS: &[(&str, FlagKind)] = &[
    ("mount", FlagKind::Strings),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
    ("device", FlagKind::Strings),
];

const HEALTHCHECK_FLAGS: &[(&str, FlagKind)] = &[
    ("interval", FlagKind::String),
    ("timeout", FlagKind::String),
    ("start-period", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("retries", FlagKind::String),
];

fn parse_copy(node: &Node, name: &'static str) -> Result<Copy, Error> {
    let is_add = name == "ADD";
    let flags = parse_flags(
        &node.flags,
        if is_add { ADD_FLAGS } else { COPY_FLAGS },
        node.start_line,
        node.start_column.saturating_sub(1),
        &node.original,
    )?;
    let args: Vec<&str> = node.args().collect();
    let Some((dest, srcs)) = args.split_last() else {
        return Err(fail(node, ErrorKind::NoDestination { instruction: name }));
    };
    if srcs.is_empty() {
        return Err(fail(node, ErrorKind::NoDestination { instruction: name }));
    }
    if parse_heredoc(dest).ok().flatten().is_some() {
        return Err(invalid(
            node,
            format!("{name} cannot accept a heredoc as a destination"),
        ));
    }
    let mut sources = Vec::new();
    let mut inline_files = Vec::new();
    for src in srcs {
        match parse_heredoc(src).ok().flatten() {
            Some(h) => {
                let body = node
                    .heredocs
                    .iter()
                    .find(|d| d.name == h.name)
                    .map(|d| d.content.clone())
                    .unwrap_or_default();
                inline_files.push(InlineFile {
                    name: h.name,
                    content: if h.chomp {
                        chomp_heredoc_content(&body)
                    } else {
                        body
                    },
                    expand: h.expand,
                });
            }
            None => sources.push((*src).to_string()),
        }
    }
    Ok(Copy {
        sources,
        inline_files,
        dest: (*dest).to_string(),
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        parents: flags.bool("parents").unwrap_or(false),
        excludes: flags.strings("exclude"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack: flags.bool("unpack"),
        json: node.attributes.json,
    })
}

fn parse_run(node: &Node) -> Result<Run, Error> {
    let flags = parse_flags(
        &node.flags,
        RUN_FLAGS,
        node.start_line,
        node.start_column.saturating_sub(1),
        &node.original,
    )?;
    let network = match flags.string("network").as_deref() {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(Error::at(
                ErrorKind::InvalidArgument {
                    message: format!("invalid network mode \"{other}\""),
                },
                Location {
                    line: node.start_line,
                    column: column_of(&node.original, "--network")
                        + node.start_column.saturating_sub(1),
                },
            ));
        }
    };
    let security = match flags.string("security").as_deref() {
        None | Some("sandbox") => SecurityMode::Sandbox,
        Some("insecure") => SecurityMode::Insecure,
        Some(other) => {
            return Err(Error::at(
                ErrorKind::InvalidArgument {
                    message: format!(
                        "security mode \"{other}\" is not supported (sandbox or insecure)"
                    ),
                },
                Location {
                    line: node.start_line,
                    column: column_of(&node.original, "--security")
                        + node.start_column.saturating_sub(1),
                },
            ));
        }
    };
    Ok(Run {
        command: command_line(node),
        heredocs: node.heredocs.clone(),
        mount_specs: flags.strings("mount"),
        mounts: Vec::new(),
        network,
        security,
        devices: flags.strings("device"),
        proxy_env: Vec::new(),
    })
}

fn parse_healthcheck(node: &Node) -> Result<Healthcheck, Error> {
    let args: Vec<&str> = node.args().collect();
    let Some(first) = args.first() else {
        return Err(fail(
            node,
            ErrorKind::AtLeastOneArgument {
                instruction: "HEALTHCHECK",
            },
        ));
    };
    let typ = first.to_uppercase();
    match typ.as_str() {
        "NONE" => {
            if args.len() != 1 {
                return Err(invalid(node, "HEALTHCHECK NONE takes no arguments"));
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            let flags = parse_flags(
                &node.flags,
                HEALTHCHECK_FLAGS,
                node.start_line,
                node.start_column.saturating_sub(1),
                &node.original,
            )?;
            let rest = args.get(1..).unwrap_or_default();
            if rest.is_empty() {
                return Err(invalid(node, "Missing command after HEALTHCHECK CMD"));
            }
            let test = if node.attributes.json {
                std::iter::once("CMD")
                    .chain(rest.iter().copied())
                    .map(str::to_string)
                    .collect()
            } else {
                vec!["CMD-SHELL".to_string(), rest.join(" ")]
            };
            let retries = match flags.string("retries").filter(|v| !v.is_empty()) {
                None => 0,
                Some(v) => {
                    let n: i64 = v.parse().map_err(|_| {
                        invalid(
                            node,
                            format!("strconv.ParseInt: parsing \"{v}\": invalid syntax"),
                        )
                    })?;
                    let n = i32::try_from(n).map_err(|_| {
                        invalid(
                            node,
                            format!("strconv.ParseInt: parsing \"{v}\": value out of range"),
                        )
                    })?;
                    if n < 0 {
                        return Err(invalid(node, format!("--retries cannot be negative ({n})")));
                    }
                    n
                }
            };
            Ok(Healthcheck::Check {
                test,
                interval_ns: parse_interval(node, "interval", flags.string("interval"))?,
                timeout_ns: parse_interval(node, "timeout", flags.string("timeout"))?,
                start_period_ns: parse_interval(
                    node,
                    "start-period",
                    flags.string("start-period"),
                )?,
                start_interval_ns: parse_interval(
                    node,
                    "start-interval",
                    flags.string("start-interval"),
                )?,
                retries,
            })
        }
        _ => Err(invalid(
            node,
            format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"),
        )),
    }
}

fn no_flags(node: &Node) -> Result<(), Error> {
    parse_flags(
        &node.flags,
        &[],
        node.start_line,
        node.start_column.saturating_sub(1),
        &node.original,
    )
    .map(|_| ())
}

/// ONBUILD's stored expression: the original line minus `(?i)^\s*ONBUILD\s*`, plus heredocs.
fn onbuild_expression(node: &Node) -> String {
    let s = node.original.trim_start();
    let rest = match s.get(..7) {
        Some(kw) if kw.eq_ignore_ascii_case("onbuild") => s.get(7..).unwrap_or_default(),
        _ => s,
    };
    let mut out = rest.trim_start().to_string();
    for h in &node.heredocs {
        out.push('\n');
        out.push_str(&h.content);
        out.push_str(&h.name);
    }
    out
}

/// Parses one AST instruction node into a typed [`Instruction`] (arguments unexpanded).
pub fn parse_instruction(node: &Node) -> Result<Instruction, Error> {
    let keyword = go_lower(&node.value);
    let command = match keyword.as_str() {
        "add" => Command::Add(parse_copy(node, "ADD")?),
        "copy" => Command::Copy(parse_copy(node, "COPY")?),
        "arg" => {
            // BuildKit never validates ARG's flags.
            if node.next.is_empty() {
                return Err(fail(
                    node,
                    ErrorKind::AtLeastOneArgument { instruction: "ARG" },
                ));
            }
            let mut decls = Vec::new();
            for word in node.args() {
                let (name, default) = match word.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (word, None),
                };
                if name.is_empty() {
                    return Err(fail(node, ErrorKind::BlankName { instruction: "ARG" }));
                }
                decls.push(ArgDeclaration {
                    name: name.to_string(),
                    default,
                    value: None,
                });
            }
            Command::Arg(decls)
        }
        "cmd" => {
            no_flags(node)?;
            Command::Cmd(command_line(node))
        }
        "entrypoint" => {
            no_flags(node)?;
            Command::Entrypoint(command_line(node))
        }
        "env" => {
            no_flags(node)?;
            Command::Env(key_values(node, "ENV")?)
        }
        "label" => {
            no_flags(node)?;
            Command::Label(key_values(node, "LABEL")?)
        }
        "expose" => {
            no_flags(node)?;
            if node.next.is_empty() {
                return Err(fail(
                    node,
                    ErrorKind::AtLeastOneArgument {
                        instruction: "EXPOSE",
                    },
                ));
            }
            Command::Expose(Expose {
                raw: node.args().map(str::to_string).collect(),
                ports: Vec::new(),
            })
        }
        "from" => {
            let flags = parse_flags(
                &node.flags,
                &[("platform", FlagKind::String)],
                node.start_line,
                node.start_column.saturating_sub(1),
                &node.original,
            )?;
            let args: Vec<&str> = node.args().collect();
            let (image, as_keyword, name) = match args.as_slice() {
                [image] => (*image, None, None),
                [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    (*image, Some(*as_kw), Some(*name))
                }
                _ => return Err(fail(node, ErrorKind::FromArguments)),
            };
            if let Some(n) = name {
                let lower = go_lower(n);
                if !is_valid_stage_name(&lower) {
                    return Err(fail(
                        node,
                        ErrorKind::InvalidStageName {
                            name: n.to_string(),
                        },
                    ));
                }
            }
            Command::From(From {
                image: image.to_string(),
                platform: flags.string("platform"),
                stage_name: name.map(go_lower),
                stage_name_as_written: name.map(str::to_string),
                as_keyword: as_keyword.map(str::to_string),
            })
        }
        "healthcheck" => Command::Healthcheck(parse_healthcheck(node)?),
        "maintainer" => {
            no_flags(node)?;
            Command::Maintainer(exactly_one(node, "MAINTAINER")?)
        }
        "onbuild" => {
            no_flags(node)?;
            let Some(inner) = node.next.first().and_then(|n| n.children.first()) else {
                return Err(fail(
                    node,
                    ErrorKind::AtLeastOneArgument {
                        instruction: "ONBUILD",
                    },
                ));
            };
            let trigger_kw = inner.value.trim().to_uppercase();
            match trigger_kw.as_str() {
                "ONBUILD" => {
                    return Err(invalid(
                        node,
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ));
                }
                "MAINTAINER" | "FROM" => {
                    return Err(invalid(
                        node,
                        format!("{trigger_kw} isn't allowed as an ONBUILD trigger"),
                    ));
                }
                _ => {}
            }
            let mut inner = inner.clone();
            inner.start_line = node.start_line;
            inner.end_line = node.end_line;
            inner.heredocs = node.heredocs.clone();
            Command::Onbuild(Onbuild {
                expression: onbuild_expression(node),
                trigger: parse_instruction(&inner).ok().map(Box::new),
            })
        }
        "run" => Command::Run(parse_run(node)?),
        "shell" => {
            no_flags(node)?;
            let args: Vec<String> = node.args().map(str::to_string).collect();
            if args.is_empty() {
                return Err(fail(
                    node,
                    ErrorKind::AtLeastOneArgument {
                        instruction: "SHELL",
                    },
                ));
            }
            if !node.attributes.json {
                return Err(invalid(
                    node,
                    "SHELL requires the arguments to be in JSON form",
                ));
            }
            Command::Shell(args)
        }
        // BuildKit never validates STOPSIGNAL's flags.
        "stopsignal" => Command::StopSignal(exactly_one(node, "STOPSIGNAL")?),
        "user" => {
            no_flags(node)?;
            Command::User(exactly_one(node, "USER")?)
        }
        "volume" => {
            no_flags(node)?;
            if node.next.is_empty() {
                return Err(fail(
                    node,
                    ErrorKind::AtLeastOneArgument {
                        instruction: "VOLUME",
                    },
                ));
            }
            let mut vols = Vec::new();
            for v in node.args() {
                let v = v.trim();
                if v.is_empty() {
                    return Err(invalid(node, "VOLUME specified can not be an empty string"));
                }
                vols.push(v.to_string());
            }
            Command::Volume(vols)
        }
        "workdir" => {
            no_flags(node)?;
            let path = exactly_one(node, "WORKDIR")?;
            Command::Workdir(Workdir {
                resolved: path.clone(),
                path,
            })
        }
        _ => {
            let suggestion =
                closest(&node.value, INSTRUCTION_NAMES.iter().copied()).map(str::to_string);
            return Err(fail(
                node,
                ErrorKind::UnknownInstruction {
                    word: node.value.clone(),
                    suggestion,
                },
            ));
        }
    };
    Ok(Instruction {
        span: Span {
            start_line: node.start_line,
            end_line: node.end_line,
        },
        original: node.original.clone(),
        keyword: node.value.clone(),
        column: node.start_column.max(1),
        comments: node.prev_comment.clone(),
        command,
    })
}

/// `^[a-z][a-z0-9-_.]*$`.
pub(crate) fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("300ms"), Ok(300_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("5x").is_err());
    }

    #[test]
    fn stage_names() {
        assert!(is_valid_stage_name("build-1.x_y"));
        assert!(!is_valid_stage_name("1build"));
        assert!(!is_valid_stage_name("bu$ild"));
    }
}
