//! The typed Dockerfile: stages, ARG/ENV scoping, expansion (spec §7.3, §8, §9), the stage
//! graph and lints.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::ast::{Directive, ParseOutput, go_lower};
use crate::dockerignore::DockerIgnore;
use crate::error::{Error, ErrorKind, Location};
use crate::flags::column_of;
use crate::image_ref::check_normalized_named;
use crate::instruction::{
    ArgDeclaration, Command, Copy, ExposedPort, Instruction, Protocol, Span, parse_instruction,
};
use crate::lint::{CheckConfig, LintWarning, Linter, looks_secret};
use crate::mount::parse_mount;
use crate::parser::parse;
use crate::platform::Platform;
use crate::shell::{Lexer, ShellPlatform, VariableSource};
use crate::stage_graph::{Dependency, DependencyKind, DependencyTarget, StageGraph};
use crate::suggest::closest;

/// The default `PATH` BuildKit adds to an environment without one (non-Windows).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Proxy build-args usable without an ARG declaration (spec §9.3).
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// BuildKit's configuration build-args, never reported as unused.
const BUILTIN_ARGS: &[&str] = &[
    "BUILDKIT_CACHE_MOUNT_NS",
    "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
    "BUILDKIT_INLINE_CACHE",
    "BUILDKIT_MULTI_PLATFORM",
    "BUILDKIT_SANDBOX_HOSTNAME",
    "BUILDKIT_SYNTAX",
    "BUILDKIT_BUILD_NAME",
    "SOURCE_DATE_EPOCH",
];

/// What the executor knows about a base image before the stage runs: the config fields that
/// influence expansion. Keyed by the FROM reference as written after expansion.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageDefaults {
    /// `Config.Env` as `(name, value)` pairs.
    pub env: Vec<(String, String)>,
    /// `Config.WorkingDir`.
    pub working_dir: Option<String>,
    /// `Config.Shell`.
    pub shell: Option<Vec<String>>,
    /// `Config.OnBuild`: triggers that run in a stage built on the image, right after its
    /// FROM (spec §8.15).
    pub on_build: Vec<String>,
}

/// Inputs of [`parse_dockerfile`] besides the text.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// `--build-arg NAME=value`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: stage name (case-insensitive); default is the last stage.
    pub target: Option<String>,
    /// Platform being built for (default `linux/amd64`).
    pub target_platform: Option<Platform>,
    /// Platform of the builder (default: the target platform).
    pub build_platform: Option<Platform>,
    /// Base image configs the executor already resolved (optional; without one, variables
    /// from an image's own ENV expand to "" and `UndefinedVar` is not checked for it).
    pub base_images: BTreeMap<String, ImageDefaults>,
    /// The context's `.dockerignore`, for the `CopyIgnoredFile` lint.
    pub dockerignore: Option<DockerIgnore>,
}

/// What a stage is built on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseImage {
    /// `FROM scratch`.
    Scratch,
    /// An earlier stage.
    Stage(usize),
    /// An image reference (as written after expansion; not yet normalised).
    Image(String),
}

/// One build stage: a FROM and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// 0-based position.
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The base, resolved.
    pub base: BaseImage,
    /// The FROM argument as written.
    pub base_name: String,
    /// The FROM argument after expansion with the global ARGs.
    pub base_name_expanded: String,
    /// `--platform`, expanded and parsed.
    pub platform: Option<Platform>,
    /// The stage's instructions (without the FROM), expanded.
    pub instructions: Vec<Instruction>,
    /// The FROM line.
    pub from_span: Span,
    /// From the FROM to the last instruction.
    pub span: Span,
    /// Doc comments above the FROM.
    pub comments: Vec<String>,
    /// The build environment at the end of the stage (config env + ENV + ARG values).
    pub env: Vec<(String, String)>,
    /// The persisted `Config.Env` at the end of the stage (ENV only).
    pub config_env: Vec<(String, String)>,
    /// Working directory at the end of the stage.
    pub workdir: String,
    /// The build environment when the stage starts (base image or parent stage env, with
    /// the default `PATH`). See [`Stage::build_env_before`].
    pub base_env: Vec<(String, String)>,
    /// ARGs inherited from a parent stage.
    pub base_args: Vec<(String, Option<String>)>,
    /// Variable names compare case-insensitively (Windows targets).
    pub env_ignores_case: bool,
    /// Whether the stage's instructions were expanded. Stages the target does not need are
    /// expanded too, but an expansion error there leaves them raw instead of failing.
    pub expanded: bool,
}

impl Stage {
    /// The build environment in effect for instruction `index` (what a RUN there sees):
    /// the base env plus the ENV and ARG values of the instructions before it, later wins.
    pub fn build_env_before(&self, index: usize) -> Vec<(String, String)> {
        let mut env = EnvList::from_vars(&self.base_env, self.env_ignores_case);
        for inst in self.instructions.iter().take(index) {
            match &inst.command {
                Command::Env(kvs) => {
                    for kv in kvs {
                        env.set(&kv.key, &kv.value);
                    }
                }
                Command::Arg(decls) => {
                    for d in decls {
                        if let Some(v) = &d.value {
                            env.set(&d.name, v);
                        }
                    }
                }
                _ => {}
            }
        }
        env.vars
    }

    /// The ARGs declared before instruction `index` with their values, first declaration
    /// order (for history strings `RUN |N A=1 B= ...`).
    pub fn args_before(&self, index: usize) -> Vec<(String, Option<String>)> {
        let mut args = self.base_args.clone();
        for inst in self.instructions.iter().take(index) {
            if let Command::Arg(decls) = &inst.command {
                for d in decls {
                    match args.iter_mut().find(|(n, _)| *n == d.name) {
                        Some(slot) => slot.1 = d.value.clone(),
                        None => args.push((d.name.clone(), d.value.clone())),
                    }
                }
            }
        }
        args
    }

    /// The name to show: `AS` name, else the index.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// A parsed, validated and expanded Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// Escape character in effect.
    pub escape: char,
    /// Parser directives.
    pub directives: Vec<Directive>,
    /// Linter configuration from `# check=`.
    pub checks: CheckConfig,
    /// Global ARGs (before the first FROM) with resolved values.
    pub meta_args: Vec<ArgDeclaration>,
    /// The stages in file order.
    pub stages: Vec<Stage>,
    /// Index of the target stage.
    pub target: usize,
    /// Stage dependencies and parallel levels.
    pub graph: StageGraph,
    /// Lint findings (parser warnings included as `NoEmptyContinuation`).
    pub warnings: Vec<LintWarning>,
    /// `--build-arg`s no ARG consumed.
    pub unused_build_args: Vec<String>,
}

impl Dockerfile {
    /// The value of the `syntax` directive.
    pub fn syntax(&self) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == "syntax")
            .map(|d| d.value.as_str())
    }

    /// The target stage.
    pub fn target_stage(&self) -> Option<&Stage> {
        self.stages.get(self.target)
    }

    /// Finds a stage by name (case-insensitive).
    pub fn stage_by_name(&self, name: &str) -> Option<&Stage> {
        let lower = go_lower(name);
        self.stages
            .iter()
            .rev()
            .find(|s| s.name.as_deref() == Some(&lower))
    }
}

/// An ordered environment where setting an existing name replaces it in place, with an
/// index for constant-time lookups.
#[derive(Debug, Clone, Default)]
struct EnvList {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
    ignore_case: bool,
}

impl EnvList {
    fn new(ignore_case: bool) -> Self {
        EnvList {
            ignore_case,
            ..EnvList::default()
        }
    }

    fn key(&self, name: &str) -> String {
        if self.ignore_case {
            name.to_uppercase()
        } else {
            name.to_string()
        }
    }

    /// Position of `name` in `vars`; looks the name up as is (no copy) unless names ignore
    /// case.
    fn position(&self, name: &str) -> Option<usize> {
        if self.ignore_case {
            self.index.get(&name.to_uppercase()).copied()
        } else {
            self.index.get(name).copied()
        }
    }

    fn set(&mut self, key: &str, value: &str) {
        match self.position(key).and_then(|i| self.vars.get_mut(i)) {
            Some(slot) => {
                slot.1.clear();
                slot.1.push_str(value);
            }
            None => {
                self.index.insert(self.key(key), self.vars.len());
                self.vars.push((key.to_string(), value.to_string()));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.position(name)
            .and_then(|i| self.vars.get(i))
            .map(|(_, v)| v.as_str())
    }

    fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn from_vars(vars: &[(String, String)], ignore_case: bool) -> Self {
        let mut e = EnvList::new(ignore_case);
        for (k, v) in vars {
            e.set(k, v);
        }
        e
    }
}

impl VariableSource for EnvList {
    fn lookup(&self, name: &str, ignore_case: bool) -> Option<&str> {
        if ignore_case == self.ignore_case {
            self.get(name)
        } else {
            self.vars.lookup(name, ignore_case)
        }
    }
}

#[derive(Debug, Clone)]
struct StageState {
    env: EnvList,
    config_env: EnvList,
    /// ARGs declared so far (inherited ones first), in first-declaration order.
    args: Vec<(String, Option<String>)>,
    /// Position of each name in `args`: declarations and lookups are per instruction, so a
    /// linear scan made long stages quadratic.
    arg_index: HashMap<String, usize>,
    workdir: String,
    workdir_set: bool,
    env_known: bool,
}

/// Cleans an absolute path like Go's `path.Clean`.
pub fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

fn is_valid_signal(sig: &str) -> bool {
    if let Ok(n) = sig.parse::<i64>() {
        return n > 0;
    }
    let upper = sig.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX", "UNUSED",
    ];
    if NAMES.contains(&name) {
        return true;
    }
    if let Some(n) = name.strip_prefix("RTMIN+") {
        return n.parse::<u8>().is_ok_and(|n| (1..=15).contains(&n));
    }
    if let Some(n) = name.strip_prefix("RTMAX-") {
        return n.parse::<u8>().is_ok_and(|n| (1..=14).contains(&n));
    }
    false
}

/// Validates `--chmod`: octal up to 07777, or symbolic chmod(1) clauses.
pub fn is_valid_chmod(v: &str) -> bool {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) {
        return u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o7777);
    }
    if v.is_empty() {
        return false;
    }
    v.split(',').all(|clause| {
        let rest = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        if rest.is_empty() {
            return false;
        }
        let mut chars = rest.chars().peekable();
        let mut ops = 0;
        while let Some(op) = chars.next() {
            if !matches!(op, '+' | '-' | '=') {
                return false;
            }
            ops += 1;
            if let Some(&c) = chars.peek()
                && matches!(c, 'u' | 'g' | 'o')
            {
                chars.next();
                continue;
            }
            while let Some(&c) = chars.peek() {
                if matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't') {
                    chars.next();
                } else {
                    break;
                }
            }
        }
        ops > 0
    })
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn is_git_ref(s: &str) -> bool {
    if s.starts_with("git@") || s.starts_with("git://") || s.starts_with("ssh://") {
        return true;
    }
    if is_url(s) {
        let path = s.split(['#', '?']).next().unwrap_or(s);
        return path.ends_with(".git");
    }
    false
}

/// Loose image reference check for `InvalidDefaultArgInFrom`.
fn is_plausible_image_ref(s: &str) -> bool {
    if s.is_empty()
        || s.ends_with(':')
        || s.ends_with('@')
        || s.ends_with('/')
        || s.starts_with(':')
        || s.starts_with('/')
    {
        return false;
    }
    let name = s.split('@').next().unwrap_or(s);
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':'))
}

fn parse_ports(word: &str) -> Result<(Vec<ExposedPort>, bool, bool), String> {
    // Returns the ports, whether the protocol was not lower case, whether an ip/host part
    // was present.
    let (port_part, proto_text) = match word.rsplit_once('/') {
        Some((p, proto)) => (p, proto),
        None => (word, "tcp"),
    };
    let proto_lower = proto_text.to_ascii_lowercase();
    let protocol = match proto_lower.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return Err(format!("invalid proto: {proto_text}")),
    };
    let has_host = port_part.contains(':');
    let container = port_part.rsplit(':').next().unwrap_or(port_part);
    if container.is_empty() {
        return Err("no port specified".to_string());
    }
    let parse_one = |s: &str| -> Result<u16, String> {
        s.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {container}"))
    };
    let (start, end) = match container.split_once('-') {
        Some((a, b)) => (parse_one(a)?, parse_one(b)?),
        None => {
            let p = parse_one(container)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!("invalid containerPort: {container}"));
    }
    let ports = (start..=end)
        .map(|port| ExposedPort { port, protocol })
        .collect();
    Ok((ports, proto_text != proto_lower, has_host))
}

struct Builder<'a> {
    opts: &'a ParseOptions,
    lexer: Lexer,
    platform: ShellPlatform,
    linter: Linter,
    consumed_args: BTreeSet<String>,
    /// Bytes all expansions so far produced, against [`MAX_EXPANDED_TOTAL`].
    expanded: std::cell::Cell<usize>,
}

/// The most all of a Dockerfile's expansions may produce together: each word is bounded
/// ([`crate::shell::MAX_EXPANDED_WORD`]), and this bounds a file that repeats a large one on
/// every line (`ENV X1=${BIG}`, `ENV X2=${BIG}`, …).
pub const MAX_EXPANDED_TOTAL: usize = 64 << 20;

impl Builder<'_> {
    /// Counts `len` more expanded bytes, or refuses the instruction that would exceed the
    /// Dockerfile's budget.
    fn spend(&self, len: usize, inst: &Instruction) -> Result<(), Error> {
        let total = self.expanded.get().saturating_add(len);
        self.expanded.set(total);
        if total > MAX_EXPANDED_TOTAL {
            return Err(Error::invalid(format!(
                "variable expansions add up to more than {MAX_EXPANDED_TOTAL} bytes (64 MiB), \
                 the most a Dockerfile may expand to"
            ))
            .or_at(Location::line(inst.span.start_line))
            .with_end_line(inst.span.end_line));
        }
        Ok(())
    }

    fn expand(
        &self,
        word: &str,
        env: &dyn VariableSource,
        inst: &Instruction,
        undefined: &mut BTreeSet<String>,
    ) -> Result<String, Error> {
        let e = self.lexer.expand_word(word, env).map_err(|e| {
            e.or_at(Location {
                line: inst.span.start_line,
                column: column_of(&inst.original, word) + inst.column.saturating_sub(1),
            })
            .with_end_line(inst.span.end_line)
        })?;
        self.spend(e.result.len(), inst)?;
        undefined.extend(e.unmatched);
        Ok(e.result)
    }

    fn expand_words(
        &self,
        word: &str,
        env: &dyn VariableSource,
        inst: &Instruction,
        undefined: &mut BTreeSet<String>,
    ) -> Result<Vec<String>, Error> {
        let e = self.lexer.expand(word, env).map_err(|e| {
            e.or_at(Location::line(inst.span.start_line))
                .with_end_line(inst.span.end_line)
        })?;
        self.spend(e.words.iter().map(String::len).sum(), inst)?;
        undefined.extend(e.unmatched);
        Ok(e.words)
    }
}

fn located(inst: &Instruction, e: Error, needle: &str) -> Error {
    e.or_at(Location {
        line: inst.span.start_line,
        column: column_of(&inst.original, needle) + inst.column.saturating_sub(1),
    })
    .with_end_line(inst.span.end_line)
}

/// BuildKit's error for a base or `--from` name that is not a valid image reference.
fn stage_name_error(name: &str, reason: &str) -> Error {
    Error::invalid(format!(
        "failed to parse stage name {}: {reason}",
        crate::quote::go_quote(name)
    ))
}

/// Resolves a `--from` / `from=` value to an earlier stage, an external name, or an error.
fn resolve_stage_ref(
    value: &str,
    current: usize,
    names: &[Option<String>],
) -> Result<Option<usize>, ErrorKind> {
    let lower = go_lower(value);
    let current_name = names
        .get(current)
        .cloned()
        .flatten()
        .unwrap_or_else(|| current.to_string());
    if let Some(i) = names
        .get(..current)
        .unwrap_or_default()
        .iter()
        .rposition(|n| n.as_deref() == Some(lower.as_str()))
    {
        return Ok(Some(i));
    }
    if names
        .get(current..)
        .unwrap_or_default()
        .iter()
        .any(|n| n.as_deref() == Some(lower.as_str()))
    {
        return Err(ErrorKind::StageNotYetDefined {
            from: value.to_string(),
            current: current_name,
        });
    }
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) {
        return match value.parse::<usize>() {
            Ok(n) if n < current => Ok(Some(n)),
            Ok(n) if n < names.len() => Err(ErrorKind::StageNotYetDefined {
                from: value.to_string(),
                current: current_name,
            }),
            _ => Err(ErrorKind::InvalidStageIndex {
                index: value.to_string(),
            }),
        };
    }
    Ok(None)
}

/// Parses, validates and expands a Dockerfile (spec §7–§9, §14).
///
/// Steps: AST ([`parse`]), typed instructions, global ARGs, stages with their environments
/// (ARG/ENV scoping, build args, predefined platform and proxy args), expansion of every
/// argument the spec says is expanded, the stage graph and `--target`, and lints.
pub fn parse_dockerfile(src: &[u8], opts: &ParseOptions) -> Result<Dockerfile, Error> {
    let ast = parse(src)?;
    from_ast(&ast, opts)
}

/// Like [`parse_dockerfile`], from an already parsed AST.
pub fn from_ast(ast: &ParseOutput, opts: &ParseOptions) -> Result<Dockerfile, Error> {
    let checks = match ast.directive("check") {
        Some(v) => CheckConfig::parse(v).map_err(|e| {
            let line = ast
                .directives
                .iter()
                .find(|d| d.name == "check")
                .map_or(1, |d| d.line);
            e.or_at(Location::line(line))
        })?,
        None => CheckConfig::default(),
    };
    let target_platform = opts.target_platform.clone().unwrap_or_default();
    let build_platform = opts
        .build_platform
        .clone()
        .unwrap_or_else(|| target_platform.clone());
    let shell_platform = if target_platform.os == "windows" {
        ShellPlatform::Windows
    } else {
        ShellPlatform::Unix
    };
    let mut b = Builder {
        opts,
        lexer: Lexer::new(ast.escape).with_platform(shell_platform),
        platform: shell_platform,
        linter: Linter {
            config: checks.clone(),
            warnings: Vec::new(),
        },
        consumed_args: BTreeSet::new(),
        expanded: std::cell::Cell::new(0),
    };
    for w in &ast.warnings {
        b.linter.report(
            w.rule,
            "Empty continuation line",
            Span {
                start_line: w.line,
                end_line: w.line,
            },
        );
    }

    // Typed instructions, and the split into global ARGs and stages.
    let mut instructions = Vec::with_capacity(ast.root.children.len());
    for node in &ast.root.children {
        instructions.push(parse_instruction(node)?);
    }
    lint_casing(&mut b.linter, &instructions);

    let mut meta: Vec<Instruction> = Vec::new();
    let mut raw_stages: Vec<(Instruction, Vec<Instruction>)> = Vec::new();
    for inst in instructions {
        if let Command::From(_) = inst.command {
            raw_stages.push((inst, Vec::new()));
        } else if let Some((_, body)) = raw_stages.last_mut() {
            body.push(inst);
        } else if let Command::Arg(_) = inst.command {
            meta.push(inst);
        } else {
            let at = Location {
                line: inst.span.start_line,
                column: inst.column,
            };
            return Err(Error::at(ErrorKind::NoBuildStage, at).with_end_line(inst.span.end_line));
        }
    }
    if raw_stages.is_empty() {
        return Err(Error::new(ErrorKind::NoStages));
    }
    let names: Vec<Option<String>> = raw_stages
        .iter()
        .map(|(f, _)| match &f.command {
            Command::From(from) => from.stage_name.clone(),
            _ => None,
        })
        .collect();

    // Target.
    let target = match &opts.target {
        None => raw_stages.len() - 1,
        Some(t) => {
            let lower = go_lower(t);
            names
                .iter()
                .rposition(|n| n.as_deref() == Some(lower.as_str()))
                .ok_or_else(|| {
                    Error::new(ErrorKind::TargetNotFound {
                        target: t.clone(),
                        stages: names.iter().flatten().cloned().collect(),
                    })
                })?
        }
    };

    // Global scope: automatic platform args, then the meta ARGs.
    let mut global = EnvList::new(shell_platform == ShellPlatform::Windows);
    let predefined = [
        ("TARGETPLATFORM", target_platform.to_string()),
        ("TARGETOS", target_platform.os.clone()),
        ("TARGETARCH", target_platform.architecture.clone()),
        (
            "TARGETVARIANT",
            target_platform.variant.clone().unwrap_or_default(),
        ),
        ("BUILDPLATFORM", build_platform.to_string()),
        ("BUILDOS", build_platform.os.clone()),
        ("BUILDARCH", build_platform.architecture.clone()),
        (
            "BUILDVARIANT",
            build_platform.variant.clone().unwrap_or_default(),
        ),
        (
            "TARGETSTAGE",
            names
                .get(target)
                .cloned()
                .flatten()
                .unwrap_or_else(|| "default".to_string()),
        ),
    ];
    for (k, v) in &predefined {
        global.set(k, v);
    }
    let predefined_names: BTreeSet<&str> = predefined.iter().map(|(k, _)| *k).collect();
    let mut meta_args: Vec<ArgDeclaration> = Vec::new();
    let mut meta_defaults = EnvList::default();
    for inst in &mut meta {
        let span = inst.span;
        let snapshot = inst.clone();
        if let Command::Arg(decls) = &mut inst.command {
            for d in decls.iter_mut() {
                let mut unused = BTreeSet::new();
                if let Some(def) = &d.default {
                    let plain_default = b
                        .lexer
                        .expand(def, &meta_defaults)
                        .map(|e| e.result)
                        .unwrap_or_default();
                    meta_defaults.set(&d.name, &plain_default);
                    d.default = Some(b.expand(def, &global, &snapshot, &mut unused)?);
                }
                d.value = match opts.build_args.get(&d.name) {
                    Some(v) => {
                        b.consumed_args.insert(d.name.clone());
                        Some(v.clone())
                    }
                    None => d.default.clone(),
                };
                if let Some(v) = &d.value {
                    global.set(&d.name, v);
                }
                if looks_secret(&d.name) {
                    b.linter.report(
                        "SecretsUsedInArgOrEnv",
                        format!(
                            "Do not use ARG or ENV instructions for sensitive data (ARG \"{}\")",
                            d.name
                        ),
                        span,
                    );
                }
                meta_args.push(d.clone());
            }
            lint_description(
                &mut b.linter,
                &snapshot,
                decls.first().map(|d| d.name.as_str()),
            );
        }
    }
    let declared_meta: BTreeSet<String> = meta_args.iter().map(|a| a.name.clone()).collect();

    // Resolve every stage's base and dependencies first (they only need global args).
    let mut stages: Vec<Stage> = Vec::new();
    let mut dependencies: Vec<Vec<Dependency>> = Vec::new();
    // `--from` references to later stages, with the stage that makes them.
    let mut deferred: Vec<(usize, Error)> = Vec::new();
    let mut seen_names: BTreeMap<String, usize> = BTreeMap::new();
    for (index, (from_owned, mut body)) in raw_stages.into_iter().enumerate() {
        let from_inst = &from_owned;
        let Command::From(from) = &from_inst.command else {
            continue;
        };
        let mut undefined = BTreeSet::new();
        let expanded = b.expand(&from.image, &global, from_inst, &mut undefined)?;
        let platform_expanded = match &from.platform {
            Some(p) => Some(b.expand(p, &global, from_inst, &mut undefined)?),
            None => None,
        };
        for name in &undefined {
            if !declared_meta.contains(name) && !predefined_names.contains(name.as_str()) {
                b.linter.report(
                    "UndefinedArgInFrom",
                    format!("FROM argument '{name}' is not declared"),
                    from_inst.span,
                );
            }
        }
        if from.image.contains('$') {
            let defaults_only = b
                .lexer
                .expand(&from.image, &meta_defaults)
                .map(|e| e.result)
                .unwrap_or_default();
            if !is_plausible_image_ref(&defaults_only) {
                let used: Vec<String> = b
                    .lexer
                    .expand(&from.image, &meta_defaults)
                    .map(|e| e.matched.into_iter().chain(e.unmatched).collect())
                    .unwrap_or_default();
                b.linter.report(
                    "InvalidDefaultArgInFrom",
                    format!(
                        "Default value for ARG {} results in empty or invalid base image name",
                        used.join(", ")
                    ),
                    from_inst.span,
                );
            }
        }
        if expanded.is_empty() {
            return Err(located(
                from_inst,
                Error::new(ErrorKind::BlankBaseName {
                    name: from.image.clone(),
                }),
                &from.image,
            ));
        }
        let platform = match &platform_expanded {
            Some(p) if p.is_empty() => {
                return Err(located(
                    from_inst,
                    Error::invalid("FROM --platform expanded to an empty string"),
                    "--platform",
                ));
            }
            Some(p) => Some(Platform::parse(p).map_err(|e| located(from_inst, e, "--platform"))?),
            None => None,
        };
        if let Some(raw) = &from.platform {
            let trimmed = raw.trim();
            if trimmed == "$TARGETPLATFORM" || trimmed == "${TARGETPLATFORM}" {
                b.linter.report(
                    "RedundantTargetPlatform",
                    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
                    from_inst.span,
                );
            } else if !raw.contains('$') {
                let stage_mentions = platform.as_ref().is_some_and(|p| {
                    from.stage_name
                        .as_deref()
                        .is_some_and(|n| n.contains(&p.os) || n.contains(&p.architecture))
                });
                if !stage_mentions {
                    b.linter.report(
                        "FromPlatformFlagConstDisallowed",
                        format!("FROM --platform flag should not use constant value \"{raw}\""),
                        from_inst.span,
                    );
                }
            }
        }
        let lower_base = go_lower(&expanded);
        let base = if let Some(i) = names
            .get(..index)
            .unwrap_or_default()
            .iter()
            .rposition(|n| n.as_deref() == Some(lower_base.as_str()))
        {
            BaseImage::Stage(i)
        } else if expanded == "scratch" {
            // BuildKit compares with `scratch` exactly; `FROM Scratch` is an image name (and
            // an invalid one).
            BaseImage::Scratch
        } else {
            check_normalized_named(&expanded).map_err(|reason| {
                located(from_inst, stage_name_error(&expanded, &reason), &from.image)
            })?;
            BaseImage::Image(expanded.clone())
        };
        // the base's `OnBuild` triggers run first (§8.1): an image's from its config, an
        // earlier stage's from its own ONBUILD instructions (its config's list, the base's
        // having been cleared), as BuildKit's testOnBuildInheritedStage* expect
        let inherited: Vec<String> = match &base {
            BaseImage::Image(r) => opts
                .base_images
                .get(r)
                .map(|img| img.on_build.clone())
                .unwrap_or_default(),
            BaseImage::Stage(i) => stages
                .iter()
                .find(|s| s.index == *i)
                .map(|s| {
                    s.instructions
                        .iter()
                        .filter_map(|inst| match &inst.command {
                            Command::Onbuild(o) => Some(o.expression.clone()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            BaseImage::Scratch => Vec::new(),
        };
        if !inherited.is_empty() {
            let mut triggers = onbuild_triggers(&inherited, from_inst)?;
            triggers.append(&mut body);
            body = triggers;
        }
        let mut deps = vec![Dependency {
            kind: DependencyKind::Base,
            target: match &base {
                BaseImage::Scratch => DependencyTarget::Scratch,
                BaseImage::Stage(i) => DependencyTarget::Stage(*i),
                BaseImage::Image(r) => DependencyTarget::External(r.clone()),
            },
            span: from_inst.span,
        }];
        for inst in &body {
            let mut add = |value: &str, kind: DependencyKind, needle: &str| -> Result<(), Error> {
                if value.contains('$') {
                    let message = match kind {
                        DependencyKind::MountFrom => {
                            "'from' doesn't support variable expansion, define alias stage instead"
                        }
                        _ => {
                            "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
                        }
                    };
                    return Err(located(inst, Error::invalid(message), needle));
                }
                let target = match resolve_stage_ref(value, index, &names) {
                    Ok(Some(i)) => DependencyTarget::Stage(i),
                    Ok(None) => {
                        check_normalized_named(value).map_err(|reason| {
                            located(inst, stage_name_error(value, &reason), needle)
                        })?;
                        DependencyTarget::External(value.to_string())
                    }
                    Err(kind @ ErrorKind::StageNotYetDefined { .. }) => {
                        let lower = go_lower(value);
                        let own = names.get(index).cloned().flatten();
                        if own.as_deref() == Some(lower.as_str()) || value == index.to_string() {
                            // BuildKit's cycle check runs over every stage.
                            return Err(located(
                                inst,
                                Error::invalid(format!(
                                    "circular dependency detected on stage: {}",
                                    own.unwrap_or_else(|| format!("stage-{index}"))
                                )),
                                needle,
                            ));
                        }
                        // A later stage: BuildKit fails when it dispatches this stage, which
                        // only happens if the target needs it (checked after the graph).
                        deferred.push((index, located(inst, Error::new(kind), needle)));
                        return Ok(());
                    }
                    Err(kind) => return Err(located(inst, Error::new(kind), needle)),
                };
                deps.push(Dependency {
                    kind,
                    target,
                    span: inst.span,
                });
                Ok(())
            };
            match &inst.command {
                Command::Copy(c) => {
                    if let Some(f) = &c.from {
                        add(f, DependencyKind::CopyFrom, "--from")?;
                    }
                }
                Command::Run(r) => {
                    for spec in &r.mount_specs {
                        for field in spec.split(',') {
                            if let Some((k, v)) = field.split_once('=')
                                && k.trim().eq_ignore_ascii_case("from")
                            {
                                add(v.trim_matches('"'), DependencyKind::MountFrom, "--mount")?;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        dependencies.push(deps);

        // Stage-name lints.
        if let Command::From(f) = &from_inst.command {
            if let Some(written) = &f.stage_name_as_written {
                if written != &go_lower(written) {
                    b.linter.report(
                        "StageNameCasing",
                        format!("Stage name '{written}' should be lowercase"),
                        from_inst.span,
                    );
                }
                if let Some(lower) = &f.stage_name {
                    if seen_names.contains_key(lower) {
                        b.linter.report(
                            "DuplicateStageName",
                            format!(
                                "Duplicate stage name \"{lower}\", stage names should be unique"
                            ),
                            from_inst.span,
                        );
                    }
                    seen_names.insert(lower.clone(), index);
                    if lower == "scratch" || lower == "context" {
                        b.linter.report(
                            "ReservedStageName",
                            format!("Stage name should not use the same name as reserved stage \"{lower}\""),
                            from_inst.span,
                        );
                    }
                }
            }
            if let Some(as_kw) = &f.as_keyword {
                let from_upper = from_inst.keyword == from_inst.keyword.to_uppercase();
                let from_lower = from_inst.keyword == from_inst.keyword.to_lowercase();
                let as_upper = as_kw == &as_kw.to_uppercase();
                let as_lower = as_kw == &as_kw.to_lowercase();
                if (from_upper && !as_upper) || (from_lower && !as_lower) {
                    b.linter.report(
                        "FromAsCasing",
                        "'as' and 'FROM' keywords' casing do not match",
                        from_inst.span,
                    );
                }
            }
            lint_description(&mut b.linter, from_inst, f.stage_name.as_deref());
        }

        let end_line = body
            .last()
            .map_or(from_inst.span.end_line, |i| i.span.end_line);
        stages.push(Stage {
            index,
            name: names.get(index).cloned().flatten(),
            base,
            base_name: from.image.clone(),
            base_name_expanded: expanded,
            platform,
            instructions: body,
            from_span: from_inst.span,
            span: Span {
                start_line: from_inst.span.start_line,
                end_line,
            },
            comments: from_inst.comments.clone(),
            env: Vec::new(),
            config_env: Vec::new(),
            workdir: "/".to_string(),
            base_env: Vec::new(),
            base_args: Vec::new(),
            env_ignores_case: shell_platform == ShellPlatform::Windows,
            expanded: false,
        });
    }
    let graph = StageGraph::new(dependencies, target);
    if let Some((_, e)) = deferred
        .into_iter()
        .find(|(i, _)| graph.required.get(*i).copied().unwrap_or(false))
    {
        return Err(e);
    }

    // Expand each stage with its environment.
    let mut finals: Vec<Option<StageState>> = Vec::with_capacity(stages.len());
    for i in 0..stages.len() {
        let Some(stage) = stages.get(i) else {
            continue;
        };
        let mut state = initial_state(&b, stage, &finals);
        let base_env = state.env.vars.clone();
        let base_args = state.args.clone();
        let required = graph.required.get(i).copied().unwrap_or(false);
        let Some(stage) = stages.get_mut(i) else {
            continue;
        };
        if required {
            // An error fails the whole parse: expand in place, no copy.
            expand_stage(&mut b, &mut stage.instructions, &mut state, &global, true)?;
            stage.expanded = true;
        } else {
            // A stage the target does not need keeps its raw instructions if expansion fails.
            let mut insts = stage.instructions.clone();
            if expand_stage(&mut b, &mut insts, &mut state, &global, false).is_ok() {
                stage.instructions = insts;
                stage.expanded = true;
            }
        }
        stage.base_env = base_env;
        stage.base_args = base_args;
        stage.env = state.env.vars.clone();
        stage.config_env = state.config_env.vars.clone();
        stage.workdir = state.workdir.clone();
        finals.push(Some(state));
    }

    let mut unused_build_args: Vec<String> = opts
        .build_args
        .keys()
        .filter(|k| {
            !b.consumed_args.contains(*k)
                && !PROXY_ARGS.contains(&k.as_str())
                && !BUILTIN_ARGS.contains(&k.as_str())
                && !predefined_names.contains(k.as_str())
        })
        .cloned()
        .collect();
    unused_build_args.sort();

    let mut warnings = std::mem::take(&mut b.linter.warnings);
    warnings.sort_by_key(|w| (w.span.start_line, w.rule));
    if checks.error && !warnings.is_empty() {
        let summary = warnings
            .iter()
            .map(|w| format!("{} (line {}): {}", w.rule, w.span.start_line, w.message))
            .collect::<Vec<_>>()
            .join("; ");
        let first = warnings.first().map_or(1, |w| w.span.start_line);
        return Err(Error::at(
            ErrorKind::LintFailed {
                count: warnings.len(),
                summary,
            },
            Location::line(first),
        ));
    }
    let _ = b.platform;
    Ok(Dockerfile {
        escape: ast.escape,
        directives: ast.directives.clone(),
        checks,
        meta_args,
        stages,
        target,
        graph,
        warnings,
        unused_build_args,
    })
}

/// A base image's `OnBuild` triggers as instructions of the stage built on it (spec §8.15,
/// BuildKit's `dispatchOnBuildTriggers`): each is parsed on its own and must be exactly one
/// instruction that may be a trigger. They take the FROM line's position, so errors and
/// lints point at the FROM that ran them; `original` stays the trigger text.
fn onbuild_triggers(triggers: &[String], from: &Instruction) -> Result<Vec<Instruction>, Error> {
    let at = |e: Error| {
        e.or_at(Location {
            line: from.span.start_line,
            column: from.column,
        })
        .with_end_line(from.span.end_line)
    };
    let mut out = Vec::with_capacity(triggers.len());
    for trigger in triggers {
        let ast = parse(trigger.as_bytes()).map_err(|e| {
            at(Error::invalid(format!(
                "invalid ONBUILD trigger {}: {}",
                crate::quote::go_quote(trigger),
                e.kind
            )))
        })?;
        let [node] = ast.root.children.as_slice() else {
            return Err(at(Error::invalid(format!(
                "onbuild trigger should be a single expression: {}",
                crate::quote::go_quote(trigger)
            ))));
        };
        let mut inst = parse_instruction(node).map_err(|e| {
            at(Error::invalid(format!(
                "ONBUILD trigger {}: {}",
                crate::quote::go_quote(trigger),
                e.kind
            )))
        })?;
        match &inst.command {
            Command::Onbuild(_) => {
                return Err(at(Error::invalid(
                    "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                )));
            }
            Command::From(_) | Command::Maintainer(_) => {
                return Err(at(Error::invalid(format!(
                    "{} isn't allowed as an ONBUILD trigger",
                    inst.command.name()
                ))));
            }
            _ => {}
        }
        inst.span = from.span;
        inst.column = from.column;
        inst.comments.clear();
        out.push(inst);
    }
    Ok(out)
}

fn initial_state(b: &Builder<'_>, stage: &Stage, finals: &[Option<StageState>]) -> StageState {
    let ignore_case = b.platform == ShellPlatform::Windows;
    let empty = EnvList::new(ignore_case);
    let mut state = StageState {
        env: empty.clone(),
        config_env: empty,
        args: Vec::new(),
        arg_index: HashMap::new(),
        workdir: "/".to_string(),
        workdir_set: false,
        env_known: true,
    };
    match &stage.base {
        BaseImage::Stage(i) => {
            if let Some(Some(parent)) = finals.get(*i) {
                state = parent.clone();
                state.workdir_set = false;
            }
        }
        BaseImage::Scratch => {}
        BaseImage::Image(r) => match b.opts.base_images.get(r) {
            Some(img) => {
                for (k, v) in &img.env {
                    state.env.set(k, v);
                    state.config_env.set(k, v);
                }
                if let Some(wd) = &img.working_dir
                    && !wd.is_empty()
                {
                    state.workdir = clean_path(wd);
                }
            }
            None => state.env_known = false,
        },
    }
    if b.platform != ShellPlatform::Windows && !state.config_env.contains("PATH") {
        state.env.set("PATH", DEFAULT_PATH);
        state.config_env.set("PATH", DEFAULT_PATH);
    }
    state
}

fn report_undefined(
    b: &mut Builder<'_>,
    state: &StageState,
    inst: &Instruction,
    undefined: &BTreeSet<String>,
) {
    if !state.env_known {
        return;
    }
    for name in undefined {
        if state.env.contains(name) || state.arg_index.contains_key(name) {
            continue;
        }
        let suggestion = closest(name, state.env.vars.iter().map(|(k, _)| k.as_str()))
            .map(|s| format!(" (did you mean ${s}?)"))
            .unwrap_or_default();
        b.linter.report(
            "UndefinedVar",
            format!("Usage of undefined variable '${name}'{suggestion}"),
            inst.span,
        );
    }
}

fn expand_copy(
    b: &mut Builder<'_>,
    c: &mut Copy,
    is_add: bool,
    env: &EnvList,
    inst: &Instruction,
    undefined: &mut BTreeSet<String>,
) -> Result<(), Error> {
    for s in c.sources.iter_mut() {
        *s = b.expand(s, env, inst, undefined)?;
    }
    c.dest = b.expand(&c.dest, env, inst, undefined)?;
    if let Some(v) = &c.chown {
        c.chown = Some(b.expand(v, env, inst, undefined)?);
    }
    if let Some(v) = &c.chmod {
        let v = b.expand(v, env, inst, undefined)?;
        if !is_valid_chmod(&v) {
            return Err(located(
                inst,
                Error::invalid(format!(
                    "invalid chmod parameter: '{v}'. it should be octal string and between 0 and 07777"
                )),
                "--chmod",
            ));
        }
        c.chmod = Some(v);
    }
    if let Some(v) = &c.checksum {
        c.checksum = Some(b.expand(v, env, inst, undefined)?);
    }
    let body_lexer = Lexer {
        skip_process_quotes: true,
        ..Lexer::new('\\').with_platform(b.platform)
    };
    for f in c.inline_files.iter_mut() {
        if f.expand {
            let e = body_lexer
                .expand(&f.content, env)
                .map_err(|e| located(inst, e, &f.name))?;
            undefined.extend(e.unmatched);
            f.content = e.result;
        }
    }
    let name = if is_add { "ADD" } else { "COPY" };
    if !is_add {
        for s in &c.sources {
            if c.from.is_none() && is_git_ref(s) {
                return Err(located(
                    inst,
                    Error::invalid("source can't be a git ref for COPY"),
                    s,
                ));
            }
            if c.from.is_none() && is_url(s) {
                return Err(located(
                    inst,
                    Error::invalid("source can't be a URL for COPY"),
                    s,
                ));
            }
        }
    } else if c.checksum.is_some() {
        if c.sources.len() + c.inline_files.len() > 1 {
            return Err(located(
                inst,
                Error::invalid("checksum can't be specified for multiple sources"),
                "--checksum",
            ));
        }
        if !c.sources.iter().all(|s| is_url(s) || is_git_ref(s)) {
            return Err(located(
                inst,
                Error::invalid("checksum requires HTTP(S) or Git sources"),
                "--checksum",
            ));
        }
    }
    if let (Some(ignore), None) = (&b.opts.dockerignore, &c.from) {
        for s in &c.sources {
            if is_url(s) || is_git_ref(s) {
                continue;
            }
            let rel = clean_path(&format!("/{s}"));
            let rel = rel.trim_start_matches('/');
            if !rel.is_empty() && !rel.contains(['*', '?', '[']) && ignore.matches(rel) {
                b.linter.report(
                    "CopyIgnoredFile",
                    format!(
                        "Attempting to {} file \"{s}\" that is excluded by .dockerignore",
                        if is_add { "Add" } else { "Copy" }
                    ),
                    inst.span,
                );
            }
        }
    }
    let _ = name;
    Ok(())
}

/// Expands a stage's instructions in place, in order, updating `state`. On error the
/// instructions are left partly expanded (callers expand a copy when they need the original).
fn expand_stage(
    b: &mut Builder<'_>,
    insts: &mut [Instruction],
    state: &mut StageState,
    global: &EnvList,
    required: bool,
) -> Result<(), Error> {
    let mut counts: BTreeMap<&'static str, Vec<Span>> = BTreeMap::new();
    for inst in insts.iter_mut() {
        // The command is taken out while it is expanded, so the rest of the instruction
        // (span, text, comments) can be lent to error locations and lints without a copy.
        let mut command = std::mem::replace(&mut inst.command, Command::Maintainer(String::new()));
        let name = command.name();
        let snapshot: &Instruction = inst;
        let span = snapshot.span;
        let mut undefined = BTreeSet::new();
        match &mut command {
            Command::Env(kvs) => {
                for kv in kvs.iter_mut() {
                    kv.key = b.expand(&kv.key, &state.env, snapshot, &mut undefined)?;
                    kv.value = b.expand(&kv.value, &state.env, snapshot, &mut undefined)?;
                    if kv.legacy {
                        b.linter.report(
                            "LegacyKeyValueFormat",
                            "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
                            span,
                        );
                    }
                    if looks_secret(&kv.key) {
                        b.linter.report(
                            "SecretsUsedInArgOrEnv",
                            format!("Do not use ARG or ENV instructions for sensitive data (ENV \"{}\")", kv.key),
                            span,
                        );
                    }
                }
                for kv in kvs.iter() {
                    state.env.set(&kv.key, &kv.value);
                    state.config_env.set(&kv.key, &kv.value);
                }
            }
            Command::Label(kvs) => {
                for kv in kvs.iter_mut() {
                    kv.key = b.expand(&kv.key, &state.env, snapshot, &mut undefined)?;
                    kv.value = b.expand(&kv.value, &state.env, snapshot, &mut undefined)?;
                    if kv.legacy {
                        b.linter.report(
                            "LegacyKeyValueFormat",
                            "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format",
                            span,
                        );
                    }
                }
            }
            Command::Arg(decls) => {
                for d in decls.iter_mut() {
                    if let Some(def) = &d.default {
                        d.default = Some(b.expand(def, &state.env, snapshot, &mut undefined)?);
                    }
                }
                for d in decls.iter_mut() {
                    d.value = match b.opts.build_args.get(&d.name) {
                        Some(v) => {
                            if required {
                                b.consumed_args.insert(d.name.clone());
                            }
                            Some(v.clone())
                        }
                        None => d
                            .default
                            .clone()
                            .or_else(|| global_meta_value(global, &d.name)),
                    };
                    if let Some(v) = &d.value {
                        state.env.set(&d.name, v);
                    }
                    match state.arg_index.get(&d.name).copied() {
                        Some(i) => {
                            if let Some(slot) = state.args.get_mut(i) {
                                slot.1 = d.value.clone();
                            }
                        }
                        None => {
                            state.arg_index.insert(d.name.clone(), state.args.len());
                            state.args.push((d.name.clone(), d.value.clone()));
                        }
                    }
                    if looks_secret(&d.name) {
                        b.linter.report(
                            "SecretsUsedInArgOrEnv",
                            format!("Do not use ARG or ENV instructions for sensitive data (ARG \"{}\")", d.name),
                            span,
                        );
                    }
                }
                lint_description(
                    &mut b.linter,
                    snapshot,
                    decls.first().map(|d| d.name.as_str()),
                );
            }
            Command::Add(c) => expand_copy(b, c, true, &state.env, snapshot, &mut undefined)?,
            Command::Copy(c) => expand_copy(b, c, false, &state.env, snapshot, &mut undefined)?,
            Command::Expose(e) => {
                let mut ports = Vec::new();
                for raw in &e.raw {
                    for word in b.expand_words(raw, &state.env, snapshot, &mut undefined)? {
                        let (p, upper_proto, has_host) = parse_ports(&word)
                            .map_err(|m| located(snapshot, Error::invalid(m), raw))?;
                        if upper_proto {
                            b.linter.report(
                                "ExposeProtoCasing",
                                format!("Defined protocol '{word}' in EXPOSE instruction should be lowercase"),
                                span,
                            );
                        }
                        if has_host {
                            b.linter.report(
                                "ExposeInvalidFormat",
                                format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{word}'"),
                                span,
                            );
                        }
                        ports.extend(p);
                    }
                }
                e.ports = ports;
            }
            Command::Volume(vols) => {
                for v in vols.iter_mut() {
                    let x = b.expand(v, &state.env, snapshot, &mut undefined)?;
                    let x = x.trim().to_string();
                    if x.is_empty() {
                        return Err(located(
                            snapshot,
                            Error::invalid("VOLUME specified can not be an empty string"),
                            v,
                        ));
                    }
                    *v = x;
                }
            }
            Command::User(u) => *u = b.expand(u, &state.env, snapshot, &mut undefined)?,
            Command::StopSignal(s) => {
                let x = b.expand(s, &state.env, snapshot, &mut undefined)?;
                if !is_valid_signal(&x) {
                    return Err(located(
                        snapshot,
                        Error::invalid(format!("invalid signal: {x}")),
                        s,
                    ));
                }
                *s = x;
            }
            Command::Workdir(w) => {
                let path = b.expand(&w.path, &state.env, snapshot, &mut undefined)?;
                if path.is_empty() {
                    // BuildKit's system.NormalizeWorkdir, wrapped by dispatchWorkdir.
                    return Err(located(
                        snapshot,
                        Error::invalid("normalizing workdir: cannot normalize nothing"),
                        &w.path,
                    ));
                }
                let absolute = path.starts_with('/')
                    || (b.platform == ShellPlatform::Windows && path.chars().nth(1) == Some(':'));
                if !absolute && !state.workdir_set {
                    b.linter.report(
                        "WorkdirRelativePath",
                        format!("Relative workdir \"{path}\" can have unexpected results if the base image changes"),
                        span,
                    );
                }
                let resolved = if absolute {
                    clean_path(&path)
                } else {
                    clean_path(&format!("{}/{}", state.workdir, path))
                };
                state.workdir = resolved.clone();
                state.workdir_set = true;
                w.path = path;
                w.resolved = resolved;
            }
            Command::Run(r) => {
                let mut mounts = Vec::new();
                let mut ssh_index = 0;
                for spec in &r.mount_specs {
                    let env = &state.env;
                    let lexer = b.lexer;
                    let mut used = BTreeSet::new();
                    let mut expand = |v: &str| -> Result<String, Error> {
                        let e = lexer.expand(v, env)?;
                        used.extend(e.unmatched);
                        Ok(e.result)
                    };
                    let m = parse_mount(spec, &mut expand, ssh_index)
                        .map_err(|e| located(snapshot, e, "--mount"))?;
                    undefined.extend(used);
                    if m.kind == crate::mount::MountType::Ssh {
                        ssh_index += 1;
                    }
                    mounts.push(m);
                }
                r.mounts = mounts;
                r.proxy_env = PROXY_ARGS
                    .iter()
                    .filter_map(|k| b.opts.build_args.get(*k).map(|v| (*k, v)))
                    .filter(|(k, _)| !state.arg_index.contains_key(*k))
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
            }
            Command::Cmd(cl) | Command::Entrypoint(cl) => {
                if matches!(cl, crate::instruction::CommandLine::Shell(_)) {
                    b.linter.report(
                        "JSONArgsRecommended",
                        format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
                        span,
                    );
                }
                counts.entry(name).or_default().push(span);
            }
            Command::Healthcheck(_) => counts.entry("HEALTHCHECK").or_default().push(span),
            Command::Maintainer(_) => b.linter.report(
                "MaintainerDeprecated",
                "Maintainer instruction is deprecated in favor of using label",
                span,
            ),
            Command::Shell(_) | Command::Onbuild(_) | Command::From(_) => {}
        }
        report_undefined(b, state, snapshot, &undefined);
        inst.command = command;
    }
    for (name, spans) in counts {
        if spans.len() > 1 {
            for span in spans.iter().take(spans.len() - 1) {
                b.linter.report(
                    "MultipleInstructionsDisallowed",
                    format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
                    *span,
                );
            }
        }
    }
    Ok(())
}

fn global_meta_value(global: &EnvList, name: &str) -> Option<String> {
    global.get(name).map(str::to_string)
}

fn lint_casing(linter: &mut Linter, instructions: &[Instruction]) {
    let mut lower = 0usize;
    let mut upper = 0usize;
    for i in instructions {
        if i.keyword == i.keyword.to_lowercase() {
            lower += 1;
        } else if i.keyword == i.keyword.to_uppercase() {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for i in instructions {
        let is_lower = i.keyword == i.keyword.to_lowercase();
        let is_upper = i.keyword == i.keyword.to_uppercase();
        if !is_lower && !is_upper {
            linter.report(
                "ConsistentInstructionCasing",
                format!("Command '{}' should be consistently cased", i.keyword),
                i.span,
            );
        } else if is_lower != majority_lower {
            linter.report(
                "ConsistentInstructionCasing",
                format!(
                    "Command '{}' should match the case of the command majority ({})",
                    i.keyword,
                    if majority_lower {
                        "lowercase"
                    } else {
                        "uppercase"
                    }
                ),
                i.span,
            );
        }
    }
}

fn lint_description(linter: &mut Linter, inst: &Instruction, name: Option<&str>) {
    let (Some(name), Some(last)) = (name, inst.comments.last()) else {
        return;
    };
    let first_word = last.split_whitespace().next().unwrap_or_default();
    if first_word != name {
        linter.report(
            "InvalidDefinitionDescription",
            "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
            inst.span,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        assert_eq!(clean_path("/a/b/../c/./"), "/a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("a//b"), "a/b");
        assert_eq!(clean_path(""), ".");
    }

    #[test]
    fn chmod_values() {
        assert!(is_valid_chmod("755"));
        assert!(is_valid_chmod("0644"));
        assert!(is_valid_chmod("u=rwX,go=rX"));
        assert!(is_valid_chmod("+x"));
        assert!(is_valid_chmod("g=u"));
        assert!(!is_valid_chmod("17777"));
        assert!(!is_valid_chmod("888"));
        assert!(!is_valid_chmod("rwx"));
        assert!(!is_valid_chmod(""));
    }

    #[test]
    fn signals() {
        assert!(is_valid_signal("SIGTERM"));
        assert!(is_valid_signal("term"));
        assert!(is_valid_signal("9"));
        assert!(is_valid_signal("SIGRTMIN+3"));
        assert!(!is_valid_signal("0"));
        assert!(!is_valid_signal("SIGFOO"));
    }

    #[test]
    fn ports() {
        let (p, upper, host) = parse_ports("8000-8002/UDP").unwrap();
        assert_eq!(p.len(), 3);
        assert!(upper && !host);
        assert_eq!(parse_ports("80/xyz").unwrap_err(), "invalid proto: xyz");
        assert!(parse_ports("8080:80").unwrap().2);
        assert!(parse_ports("99999").is_err());
        assert!(parse_ports("90-80").is_err());
    }
}
