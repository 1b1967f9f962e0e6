//! Shell-style word expansion, BuildKit's `shell.Lex` (spec section 7).
//!
//! [`Lexer::process_word`] expands `$VAR`, `${VAR}` and every `${VAR<modifier>...}` form,
//! removes quotes and escapes and returns one string; [`Lexer::process_words`] also splits the
//! result into words. [`Lexer::expand`] returns both plus the names of the variables that
//! were looked up (found and not found), which the executor folds into cache keys and the
//! linter uses for `UndefinedVar`.
//!
//! Nesting of `${...}` is bounded by [`MAX_SUBSTITUTION_DEPTH`], and glob matching for the
//! `#`, `%` and `/` modifiers runs in `O(pattern * value)` with a step budget, so hostile input
//! fails fast instead of overflowing the stack or spinning.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::error::{Error, ErrorKind};

/// Maximum nesting of `${...}` substitutions inside one word.
pub const MAX_SUBSTITUTION_DEPTH: usize = 64;

/// Step budget for one glob match (`${v#pat}` and friends).
const MATCH_STEP_BUDGET: u64 = 50_000_000;

/// Which platform's rules apply to variable lookup: names are case-sensitive on Unix and
/// case-insensitive on Windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShellPlatform {
    /// Linux and other Unix targets (the default).
    #[default]
    Unix,
    /// Windows targets.
    Windows,
}

/// Something variables can be looked up in.
pub trait VariableSource {
    /// Returns the value of `name`, comparing names case-insensitively when `ignore_case`.
    fn lookup(&self, name: &str, ignore_case: bool) -> Option<&str>;
}

impl VariableSource for BTreeMap<String, String> {
    fn lookup(&self, name: &str, ignore_case: bool) -> Option<&str> {
        if ignore_case {
            self.iter()
                .find(|(k, _)| {
                    k.eq_ignore_ascii_case(name) || k.to_uppercase() == name.to_uppercase()
                })
                .map(|(_, v)| v.as_str())
        } else {
            self.get(name).map(String::as_str)
        }
    }
}

impl<S: std::hash::BuildHasher> VariableSource for HashMap<String, String, S> {
    fn lookup(&self, name: &str, ignore_case: bool) -> Option<&str> {
        if ignore_case {
            self.iter()
                .find(|(k, _)| k.to_uppercase() == name.to_uppercase())
                .map(|(_, v)| v.as_str())
        } else {
            self.get(name).map(String::as_str)
        }
    }
}

impl VariableSource for [(String, String)] {
    /// The last entry with a matching name wins, like an environment built by appending.
    fn lookup(&self, name: &str, ignore_case: bool) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| {
                if ignore_case {
                    k.to_uppercase() == name.to_uppercase()
                } else {
                    k == name
                }
            })
            .map(|(_, v)| v.as_str())
    }
}

impl VariableSource for Vec<(String, String)> {
    fn lookup(&self, name: &str, ignore_case: bool) -> Option<&str> {
        self.as_slice().lookup(name, ignore_case)
    }
}

/// A variable source with nothing in it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVariables;

impl VariableSource for NoVariables {
    fn lookup(&self, _name: &str, _ignore_case: bool) -> Option<&str> {
        None
    }
}

/// The most one word may expand to. BuildKit sets no bound, and twenty lines of
/// `ARG B=${A}${A}` double a value into gigabytes: a parser serving a farm must answer such
/// a file with an error, not with its memory. A megabyte is far beyond any real value.
pub const MAX_EXPANDED_WORD: usize = 1 << 20;

fn within_bound(len: usize) -> Result<(), String> {
    if len > MAX_EXPANDED_WORD {
        return Err(format!(
            "expands to more than {MAX_EXPANDED_WORD} bytes (1 MiB), the most a word may"
        ));
    }
    Ok(())
}

/// The full result of expanding a word.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Expansion {
    /// The word after expansion and quote removal (like `ProcessWord`).
    pub result: String,
    /// The word split into fields (like `ProcessWords`).
    pub words: Vec<String>,
    /// Variables that were looked up and found.
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and not found.
    pub unmatched: BTreeSet<String>,
}

/// The shell-word lexer. Construct with [`Lexer::new`] and adjust the public switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character (`\` or `` ` ``, from the `# escape=` directive).
    pub escape: char,
    /// Unix (case-sensitive names) or Windows (case-insensitive names).
    pub platform: ShellPlatform,
    /// Keep quote characters in the output (heredoc detection).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (heredoc detection).
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (COPY heredoc bodies).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written instead of expanding to "".
    pub skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer with the given escape character and default (Unix, processing) settings.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            platform: ShellPlatform::Unix,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Sets the platform (builder style).
    pub fn with_platform(mut self, platform: ShellPlatform) -> Self {
        self.platform = platform;
        self
    }

    /// Expands `word` into one string (BuildKit `ProcessWord`).
    pub fn process_word(&self, word: &str, env: &dyn VariableSource) -> Result<String, Error> {
        self.run(word, env, false).map(|e| e.result)
    }

    /// Like [`Lexer::expand`] without splitting into fields (`words` is left empty); cheaper
    /// when only the string and the variables used are needed.
    pub fn expand_word(&self, word: &str, env: &dyn VariableSource) -> Result<Expansion, Error> {
        self.run(word, env, false)
    }

    /// Expands `word` and splits it into fields (BuildKit `ProcessWords`).
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn VariableSource,
    ) -> Result<Vec<String>, Error> {
        self.expand(word, env).map(|e| e.words)
    }

    /// Expands `word`, returning the string, the fields and the variables looked up.
    pub fn expand(&self, word: &str, env: &dyn VariableSource) -> Result<Expansion, Error> {
        self.run(word, env, true)
    }

    fn run(
        &self,
        word: &str,
        env: &dyn VariableSource,
        collect_words: bool,
    ) -> Result<Expansion, Error> {
        // Most words (paths, keys, plain values) contain nothing the lexer would change: no
        // `$`, no quote, no escape character, no leading byte-order mark, and, when splitting
        // into words, no `<` (whose `<<` keeps the following blanks attached). Their result is
        // the word itself and their fields are the whitespace-separated parts.
        let plain = !word.starts_with('\u{feff}')
            && !word.contains(|c: char| {
                matches!(c, '$' | '\'' | '"') || c == self.escape || (collect_words && c == '<')
            });
        if plain {
            return Ok(Expansion {
                result: word.to_string(),
                words: if collect_words {
                    word.split(is_space)
                        .filter(|w| !w.is_empty())
                        .map(str::to_string)
                        .collect()
                } else {
                    Vec::new()
                },
                matched: BTreeSet::new(),
                unmatched: BTreeSet::new(),
            });
        }
        // Go's text/scanner skips a leading byte-order mark.
        let src = word.strip_prefix('\u{feff}').unwrap_or(word);
        let mut scan = Scan {
            src,
            pos: 0,
            lexer: self,
            env,
            raw_escapes: self.raw_escapes,
            depth: 0,
            collect_words,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match scan.process_stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Expansion {
                result,
                words,
                matched: scan.matched,
                unmatched: scan.unmatched,
            }),
            Err(message) => Err(Error::new(ErrorKind::Expansion {
                word: word.to_string(),
                message,
            })),
        }
    }
}

fn is_space(c: char) -> bool {
    c.is_whitespace()
}

fn is_go_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Word accumulator for `ProcessWords` (BuildKit `wordsStruct`).
#[derive(Default)]
struct Words {
    enabled: bool,
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if !self.enabled {
            return;
        }
        if is_space(c) {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        if !self.enabled {
            return;
        }
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        if !self.enabled {
            return;
        }
        for c in s.chars() {
            self.add_char(c);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        if !self.enabled {
            return;
        }
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct Scan<'a> {
    /// The word being lexed (read in place: no character vector).
    src: &'a str,
    /// Byte offset of the next character in `src`.
    pos: usize,
    lexer: &'a Lexer,
    env: &'a dyn VariableSource,
    raw_escapes: bool,
    depth: usize,
    collect_words: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

type Processed = (String, Vec<String>);

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if let Some(c) = c {
            self.pos += c.len_utf8();
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<Processed, String> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let mut result = String::new();
        let mut words = Words {
            enabled: self.collect_words,
            ..Words::default()
        };
        let escape = self.lexer.escape;
        let process_quotes = !self.lexer.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                self.raw_escapes = saved;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    within_bound(result.len() + tmp.len())?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '\'' if process_quotes => {
                    let tmp = self.process_single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' if process_quotes => {
                    let tmp = self.process_double_quote()?;
                    within_bound(result.len() + tmp.len())?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '<' => {
                    let tmp = self.process_possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    if ch == escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => {
                                words.add_raw_char(c);
                                result.push(c);
                            }
                        }
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        self.raw_escapes = saved;
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c @ (' ' | '\t')) = self.peek() {
            out.push(c);
            self.next();
        }
        out
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    );
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        let escape = self.lexer.escape;
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    within_bound(result.len() + value.len())?;
                    result.push_str(&value);
                }
                Some(mut c) => {
                    self.next();
                    if c == escape {
                        if self.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == escape => {
                                self.next();
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let ignore_case = self.lexer.platform == ShellPlatform::Windows;
        match self.env.lookup(name, ignore_case) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        if self.depth >= MAX_SUBSTITUTION_DEPTH {
            return Err(format!(
                "substitution nested deeper than {MAX_SUBSTITUTION_DEPTH} levels"
            ));
        }
        self.depth += 1;
        let result = self.process_dollar_inner();
        self.depth -= 1;
        result
    }

    fn process_dollar_inner(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(first) = self.next() else {
            return Err("syntax error: missing '}'".to_string());
        };
        match first {
            '}' => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut modifier = String::from(first);
                let null_is_unset = first == ':';
                let op = if null_is_unset {
                    let Some(op) = self.next() else {
                        return Err("syntax error: missing '}'".to_string());
                    };
                    modifier.push(op);
                    op
                } else {
                    first
                };
                let pattern_mode = op == '#' || op == '%';
                if null_is_unset && pattern_mode {
                    return Err(format!("unsupported modifier ({modifier}) in substitution"));
                }
                let word = match self.process_stop_on(Some('}'), pattern_mode) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".to_string());
                        }
                        return Err(e);
                    }
                };
                let value = self.lookup(&name);
                if self.lexer.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());
                match op {
                    '-' => Ok(if empty {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let value = value.unwrap_or_default();
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let tokens = parse_glob(pattern).map_err(|e| {
                            format!("invalid pattern ({pattern}) in substitution: {e}")
                        })?;
                        if op == '%' {
                            trim_suffix(&tokens, &value, greedy)
                        } else {
                            trim_prefix(&tokens, &value, greedy)
                        }
                    }
                    _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '/' in ${}".to_string());
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".to_string());
                        }
                        return Err(e);
                    }
                };
                let value = self.lookup(&name);
                if self.lexer.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let value = value.unwrap_or_default();
                let tokens = parse_glob(&pattern)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                replace(&tokens, &value, &replacement, replace_all)
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && is_go_digit(c) {
                while let Some(d) = self.peek() {
                    if !is_go_digit(d) {
                        break;
                    }
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(c) {
                self.next();
                return c.to_string();
            }
            if !c.is_alphabetic() && !is_go_digit(c) && c != '_' {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }
}

/// One element of a `${v#pattern}` glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Glob {
    Literal(char),
    /// `?`: one character other than a newline (Go regexp `.`).
    AnyChar,
    /// `*`: any run of characters other than newlines (Go regexp `.*`).
    Star,
}

fn parse_glob(pattern: &str) -> Result<Vec<Glob>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => out.push(Glob::Star),
            '?' => out.push(Glob::AnyChar),
            '\\' => match chars.get(i) {
                Some('}' | '/') => {}
                Some(&e @ ('*' | '?' | '\\')) => {
                    out.push(Glob::Literal(e));
                    i += 1;
                }
                Some(other) => return Err(format!("invalid escape '\\{other}'")),
                None => return Err("invalid escape '\\\u{fffd}'".to_string()),
            },
            other => out.push(Glob::Literal(other)),
        }
    }
    Ok(out)
}

/// Failure memo for glob matching: `(token index, value index)` pairs proven not to match.
struct FailMemo {
    bits: Vec<u64>,
    width: usize,
}

impl FailMemo {
    fn new(tokens: usize, values: usize) -> Result<Self, String> {
        let width = values + 1;
        let cells = (tokens + 1)
            .checked_mul(width)
            .filter(|c| *c <= 1 << 31)
            .ok_or_else(|| "pattern too complex for the value".to_string())?;
        Ok(FailMemo {
            bits: vec![0; cells.div_ceil(64)],
            width,
        })
    }

    fn index(&self, t: usize, v: usize) -> usize {
        t * self.width + v
    }

    fn get(&self, t: usize, v: usize) -> bool {
        let i = self.index(t, v);
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, t: usize, v: usize) {
        let i = self.index(t, v);
        if let Some(w) = self.bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
}

/// Matches `tokens` at `start` with Go regexp leftmost-first priorities (stars greedy or
/// lazy) and returns the end of the match. Iterative, memoised, budgeted.
fn match_at(
    tokens: &[Glob],
    value: &[char],
    start: usize,
    greedy: bool,
    memo: &mut FailMemo,
    budget: &mut u64,
) -> Result<Option<usize>, String> {
    // Frame: (token index, value index, how many alternatives were tried).
    let mut stack: Vec<(usize, usize, u8)> = vec![(0, start, 0)];
    while let Some(top) = stack.last_mut() {
        if *budget == 0 {
            return Err("pattern matching exceeded its step budget".to_string());
        }
        *budget -= 1;
        let (t, v, tried) = *top;
        if t == tokens.len() {
            return Ok(Some(v));
        }
        if tried == 0 && memo.get(t, v) {
            stack.pop();
            continue;
        }
        top.2 += 1;
        let next = match tokens.get(t) {
            Some(Glob::Literal(c)) if tried == 0 => {
                (value.get(v) == Some(c)).then_some((t + 1, v + 1))
            }
            Some(Glob::AnyChar) if tried == 0 => value
                .get(v)
                .is_some_and(|c| *c != '\n')
                .then_some((t + 1, v + 1)),
            Some(Glob::Star) if tried < 2 => {
                let consume = value.get(v).is_some_and(|c| *c != '\n');
                let consume_first = greedy;
                let take_consume = (tried == 0) == consume_first;
                if take_consume {
                    consume.then_some((t, v + 1))
                } else {
                    Some((t + 1, v))
                }
            }
            _ => {
                memo.set(t, v);
                stack.pop();
                continue;
            }
        };
        if let Some((nt, nv)) = next {
            stack.push((nt, nv, 0));
        }
    }
    Ok(None)
}

fn trim_prefix(tokens: &[Glob], value: &str, greedy: bool) -> Result<String, String> {
    let chars: Vec<char> = value.chars().collect();
    let mut memo = FailMemo::new(tokens.len(), chars.len())?;
    let mut budget = MATCH_STEP_BUDGET;
    Ok(
        match match_at(tokens, &chars, 0, greedy, &mut memo, &mut budget)? {
            Some(end) => chars.get(end..).unwrap_or_default().iter().collect(),
            None => value.to_string(),
        },
    )
}

fn trim_suffix(tokens: &[Glob], value: &str, greedy: bool) -> Result<String, String> {
    let reversed_tokens: Vec<Glob> = tokens.iter().rev().copied().collect();
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reversed_tokens, &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

fn replace(tokens: &[Glob], value: &str, replacement: &str, all: bool) -> Result<String, String> {
    let chars: Vec<char> = value.chars().collect();
    let mut memo = FailMemo::new(tokens.len(), chars.len())?;
    let mut budget = MATCH_STEP_BUDGET;
    let find_from = |from: usize,
                     memo: &mut FailMemo,
                     budget: &mut u64|
     -> Result<Option<(usize, usize)>, String> {
        for start in from..=chars.len() {
            if let Some(end) = match_at(tokens, &chars, start, true, memo, budget)? {
                return Ok(Some((start, end)));
            }
        }
        Ok(None)
    };
    let slice =
        |a: usize, b: usize| -> String { chars.get(a..b).unwrap_or_default().iter().collect() };
    if !all {
        return Ok(match find_from(0, &mut memo, &mut budget)? {
            Some((s, e)) => format!("{}{}{}", slice(0, s), replacement, slice(e, chars.len())),
            None => value.to_string(),
        });
    }
    // Go regexp.ReplaceAllString: non-overlapping matches, an empty match right after a
    // previous match is skipped, the replacement is a template ($$, $0, ${0}).
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= chars.len() {
        let Some((s, e)) = find_from(search, &mut memo, &mut budget)? else {
            break;
        };
        out.push_str(&slice(last_end, s));
        if e > last_end || s == 0 {
            out.push_str(&expand_template(replacement, &slice(s, e)));
        }
        // a long replacement for every character multiplies the value
        within_bound(out.len())?;
        last_end = e;
        search = if search + 1 > e { search + 1 } else { e };
    }
    out.push_str(&slice(last_end.min(chars.len()), chars.len()));
    Ok(out)
}

/// Go `regexp.Expand` for a pattern without capture groups: `$$` is `$`, `$0`/`${0}` is the
/// match, any other valid reference is empty, a malformed `$` stays literal.
fn expand_template(template: &str, matched: &str) -> String {
    if !template.contains('$') {
        return template.to_string();
    }
    let chars: Vec<char> = template.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.get(i) == Some(&'$') {
            out.push('$');
            i += 1;
            continue;
        }
        let is_name = |c: &char| c.is_alphanumeric() || *c == '_';
        let (name, next) = if chars.get(i) == Some(&'{') {
            let start = i + 1;
            let mut j = start;
            while chars.get(j).is_some_and(is_name) {
                j += 1;
            }
            if j == start || chars.get(j) != Some(&'}') {
                out.push('$');
                continue;
            }
            (
                chars
                    .get(start..j)
                    .unwrap_or_default()
                    .iter()
                    .collect::<String>(),
                j + 1,
            )
        } else {
            let mut j = i;
            while chars.get(j).is_some_and(is_name) {
                j += 1;
            }
            if j == i {
                out.push('$');
                continue;
            }
            (
                chars
                    .get(i..j)
                    .unwrap_or_default()
                    .iter()
                    .collect::<String>(),
                j,
            )
        };
        if name.chars().all(|c| c.is_ascii_digit()) && name.parse::<u64>().ok() == Some(0) {
            out.push_str(matched);
        }
        i = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("NULL", ""),
            ("V", "a/b/c.tar.gz"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn word(s: &str) -> Result<String, Error> {
        Lexer::new('\\').process_word(s, &env())
    }

    #[test]
    fn basic_substitution() {
        assert_eq!(word("he$PWD").unwrap(), "he/home");
        assert_eq!(word("${PWD:-x}").unwrap(), "/home");
        assert_eq!(word("${NULL:-x}").unwrap(), "x");
        assert_eq!(word("${NULL-x}").unwrap(), "");
        assert_eq!(word("$").unwrap(), "$");
    }

    #[test]
    fn pattern_modifiers() {
        assert_eq!(word("${V#*/}").unwrap(), "b/c.tar.gz");
        assert_eq!(word("${V##*/}").unwrap(), "c.tar.gz");
        assert_eq!(word("${V%.*}").unwrap(), "a/b/c.tar");
        assert_eq!(word("${V%%.*}").unwrap(), "a/b/c");
        assert_eq!(word("${V/\\//-}").unwrap(), "a-b/c.tar.gz");
        assert_eq!(word("${V//\\//-}").unwrap(), "a-b-c.tar.gz");
        assert_eq!(word("${V//?/x}").unwrap(), "xxxxxxxxxxxx");
        assert_eq!(word("${V/*/x}").unwrap(), "x");
        assert_eq!(word("${PWD///x}").unwrap(), "x/xhxoxmxex");
        assert!(word("${V:#x}").is_err());
        assert!(word("${V#\\x}").is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut s = String::new();
        for _ in 0..10_000 {
            s.push_str("${a:-");
        }
        s.push('x');
        for _ in 0..10_000 {
            s.push('}');
        }
        let err = word(&s).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn reports_used_variables() {
        let e = Lexer::new('\\').expand("$PWD ${NOPE:-x}", &env()).unwrap();
        assert!(e.matched.contains("PWD"));
        assert!(e.unmatched.contains("NOPE"));
    }

    #[test]
    fn windows_lookup_ignores_case() {
        let lx = Lexer::new('\\').with_platform(ShellPlatform::Windows);
        assert_eq!(lx.process_word("$pwd", &env()).unwrap(), "/home");
    }
}
