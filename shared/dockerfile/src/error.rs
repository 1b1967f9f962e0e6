//! The crate's error type: one enum of meaningful kinds plus an optional source location.

use std::fmt;

use serde::Serialize;

use crate::quote::go_quote;

/// A position in the Dockerfile: 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column number (characters, not bytes).
    pub column: usize,
}

impl Location {
    /// A location at `line`, column 1.
    pub fn line(line: usize) -> Self {
        Location { line, column: 1 }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What went wrong. Messages follow BuildKit's wording where the spec quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input holds no instruction at all (empty, or only comments and blank lines).
    #[error("file with no instructions")]
    NoInstructions,
    /// A physical line exceeds the 65535-byte limit of BuildKit's line scanner.
    #[error("dockerfile line greater than max allowed size of {max}")]
    LineTooLong {
        /// The maximum allowed line length in bytes.
        max: usize,
    },
    /// A parser directive appears twice at the top of the file.
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective {
        /// Directive key, lower-cased.
        name: String,
    },
    /// `# escape=` names something other than `\` or `` ` ``.
    #[error("invalid escape token '{value}' does not match ` or \\")]
    InvalidEscapeToken {
        /// The rejected value.
        value: String,
    },
    /// A heredoc body has no terminator line before the end of the file.
    #[error("unterminated heredoc")]
    UnterminatedHeredoc,
    /// A JSON-form array holds something other than strings.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStringArray,
    /// Legacy `ENV key value` / `LABEL key value` form with only a key.
    #[error("{instruction} must have two arguments")]
    MissingValue {
        /// `ENV` or `LABEL`.
        instruction: &'static str,
    },
    /// A `name=value` form word has no `=`.
    #[error("Syntax error - can't find = in {}. Must be of the form: name=value", go_quote(.word))]
    MissingEquals {
        /// The offending word.
        word: String,
    },
    /// `ONBUILD` triggers nested beyond any sensible depth (chaining is rejected anyway).
    #[error("ONBUILD nesting too deep")]
    OnbuildTooDeep,
    /// An instruction keyword that does not exist.
    #[error("unknown instruction \"{word}\"{}", suggestion.as_ref().map(|s| format!(" (did you mean \"{s}\"?)")).unwrap_or_default())]
    UnknownInstruction {
        /// The keyword as written.
        word: String,
        /// The closest known keyword, if one is close.
        suggestion: Option<String>,
    },
    /// Too few arguments.
    #[error("{instruction} requires at least one argument")]
    AtLeastOneArgument {
        /// Instruction keyword, upper case.
        instruction: &'static str,
    },
    /// Wrong argument count for a single-argument instruction.
    #[error("{instruction} requires exactly one argument")]
    ExactlyOneArgument {
        /// Instruction keyword, upper case.
        instruction: &'static str,
    },
    /// ADD/COPY with a single argument.
    #[error(
        "{instruction} requires at least two arguments, but only one was provided. Destination could not be determined"
    )]
    NoDestination {
        /// `ADD` or `COPY`.
        instruction: &'static str,
    },
    /// An empty key in ENV/LABEL/ARG.
    #[error("{instruction} names can not be blank")]
    BlankName {
        /// Instruction keyword.
        instruction: &'static str,
    },
    /// FROM with an argument count other than 1 or 3 (`x AS name`).
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    /// Invalid stage name after `AS`.
    #[error(
        "invalid name for build stage: \"{name}\", name can't start with a number or contain symbols"
    )]
    InvalidStageName {
        /// The rejected name.
        name: String,
    },
    /// A flag word that does not start with `--`.
    #[error("arg should start with -- : {arg}")]
    FlagSyntax {
        /// The raw flag word.
        arg: String,
    },
    /// A flag the instruction does not accept.
    #[error("unknown flag: --{name}{}", suggestion.as_ref().map(|s| format!(" (did you mean --{s}?)")).unwrap_or_default())]
    UnknownFlag {
        /// Flag name without the dashes.
        name: String,
        /// A close known flag, if any.
        suggestion: Option<String>,
    },
    /// A non-repeatable flag given twice.
    #[error("duplicate flag specified: --{name}")]
    DuplicateFlag {
        /// Flag name without the dashes.
        name: String,
    },
    /// `--x=` for a bool flag, or `--x` without a value for a string flag.
    #[error("missing a value on flag: --{name}")]
    MissingFlagValue {
        /// Flag name without the dashes.
        name: String,
    },
    /// A bool flag with a value other than true/false.
    #[error("expecting boolean value for flag --{name}, not: {value}")]
    InvalidBoolFlag {
        /// Flag name without the dashes.
        name: String,
        /// The rejected value.
        value: String,
    },
    /// An instruction argument or flag value that does not validate; the message is
    /// BuildKit's where the spec quotes one (e.g. `invalid proto: xyz`).
    #[error("{message}")]
    InvalidArgument {
        /// Human-readable description.
        message: String,
    },
    /// `${...}` / quoting error while expanding a word.
    #[error("failed to process {}: {message}", go_quote(.word))]
    Expansion {
        /// The word being expanded.
        word: String,
        /// What the lexer reported.
        message: String,
    },
    /// An instruction other than ARG before the first FROM.
    #[error("no build stage in current context")]
    NoBuildStage,
    /// No FROM at all.
    #[error("dockerfile contains no stages to build")]
    NoStages,
    /// FROM expands to the empty string.
    #[error("base name ({name}) should not be blank")]
    BlankBaseName {
        /// The unexpanded base name.
        name: String,
    },
    /// `--target` names no stage.
    #[error("target stage \"{target}\" could not be found; stages are: {}", if stages.is_empty() { "(none named)".to_string() } else { stages.join(", ") })]
    TargetNotFound {
        /// The requested target.
        target: String,
        /// Names of the stages that exist (unnamed stages as their index).
        stages: Vec<String>,
    },
    /// COPY --from / RUN --mount from= naming the current or a later stage.
    #[error(
        "cannot copy from stage \"{from}\", it needs to be defined before current stage \"{current}\""
    )]
    StageNotYetDefined {
        /// The referenced stage.
        from: String,
        /// The stage doing the referencing.
        current: String,
    },
    /// A numeric stage reference outside the stages that exist.
    #[error("invalid stage index {index}")]
    InvalidStageIndex {
        /// The index as written.
        index: String,
    },
    /// `# check=error=true` and the linter reported warnings.
    #[error("lint violations found for {count} rule(s): {summary}")]
    LintFailed {
        /// Number of warnings.
        count: usize,
        /// The rule names and messages joined.
        summary: String,
    },
    /// An invalid `.dockerignore` / exclude pattern.
    #[error("{message}")]
    InvalidPattern {
        /// What is wrong, e.g. `illegal exclusion pattern: "!"`.
        message: String,
    },
}

/// An error with its position in the Dockerfile, when known.
///
/// `Display` renders `LINE:COL: message`; [`Error::render`] prefixes a file name, giving
/// `Dockerfile:7:1: unknown instruction "RUNN" (did you mean "RUN"?)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Where the problem is (start of the instruction or of the offending text).
    pub location: Option<Location>,
    /// Last line of the instruction that failed, when it spans several lines.
    pub end_line: Option<usize>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl Error {
    /// An error without location.
    pub fn new(kind: ErrorKind) -> Self {
        Error {
            location: None,
            end_line: None,
            kind,
        }
    }

    /// An error at a location.
    pub fn at(kind: ErrorKind, location: Location) -> Self {
        Error {
            location: Some(location),
            end_line: None,
            kind,
        }
    }

    /// Sets the location if none is set yet.
    pub(crate) fn or_at(mut self, location: Location) -> Self {
        if self.location.is_none() {
            self.location = Some(location);
        }
        self
    }

    /// Sets the end line if none is set yet.
    pub(crate) fn with_end_line(mut self, end: usize) -> Self {
        if self.end_line.is_none() {
            self.end_line = Some(end);
        }
        self
    }

    /// Shorthand for an [`ErrorKind::InvalidArgument`] without location.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument {
            message: message.into(),
        })
    }

    /// Renders `FILE:LINE:COL: message` (or `FILE: message` without location).
    pub fn render(&self, file: &str) -> String {
        match self.location {
            Some(loc) => format!("{file}:{}:{}: {}", loc.line, loc.column, self.kind),
            None => format!("{file}: {}", self.kind),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(loc) => write!(f, "{}:{}: {}", loc.line, loc.column, self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error::new(kind)
    }
}

/// Crate result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
