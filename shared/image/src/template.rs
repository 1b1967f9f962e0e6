//! The subset of Go's `text/template` that `docker … --format '{{…}}'` users type, over
//! JSON-shaped data.
//!
//! Supported: text, actions with `{{-`/`-}}` trimming and `{{/* comments */}}`; field
//! chains (`.Config.Cmd`, `.`, `$`, `$var.Field`, `(pipeline).Field`); string, raw-string,
//! number, `true`/`false`/`nil` literals; pipelines (`.X | json`); `if`/`else if`/`else`,
//! `range` (with `$i, $v :=` and `else`), `with`/`else`, `$v := pipeline`; the functions of
//! Docker's CLI (`json`, `join`, `split`, `lower`, `upper`, `title`, `truncate`, `pad`) and
//! Go's builtins `index`, `len`, `not`, `and`, `or`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`,
//! `print`, `println`, `printf` (verbs `%s %v %d %q %t %%`).
//!
//! Values print as Go's `fmt` prints what Docker's CLI decodes from JSON: lists as
//! `[a b]`, maps as `map[k:v]` (keys sorted), JSON `null` as `<nil>`, a missing key as
//! `<no value>`. `json` prints compact JSON in the data's key order without HTML escaping,
//! as Docker's `json` function does.
//!
//! Hostile templates end in a [`TemplateError`] naming the line and column, never a panic:
//! nesting is bounded ([`MAX_DEPTH`]) and so is the work one execution may do
//! ([`MAX_STEPS`], [`MAX_OUTPUT`]).

use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Deepest nesting of blocks and parentheses a template may have.
pub const MAX_DEPTH: usize = 64;
/// Most evaluation steps one execution may take.
pub const MAX_STEPS: u64 = 2_000_000;
/// Largest output one execution may produce, in bytes.
pub const MAX_OUTPUT: usize = 64 << 20;

/// A template that does not parse or fails while it runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: :{line}:{col}: {message}")]
pub struct TemplateError {
    /// Line of the action at fault, from 1.
    pub line: usize,
    /// Column (in characters) of the action at fault, from 1.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// Data a template runs on: JSON with its object keys kept in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// JSON `null` (prints `<nil>`).
    Null,
    /// A key that is not there (prints `<no value>`).
    Missing,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as JSON wrote it.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// A list.
    List(Vec<Data>),
    /// An object, keys in document order.
    Map(Vec<(String, Data)>),
    /// A field a typed Go value has but `omitempty` left out of the JSON: prints as its
    /// zero value, is left out again by `json` (or is `null` alone).
    Zero(GoZero),
}

/// The zero value of a Go type, as `fmt` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoZero {
    /// A nil slice: `[]`.
    List,
    /// A nil map: `map[]`.
    Map,
    /// An empty string.
    String,
    /// `false`.
    Bool,
    /// A nil pointer: `<nil>`.
    Pointer,
}

impl Data {
    /// Parses JSON text, keeping key order.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Any serialisable value, keys in the order it serialises them.
    pub fn from_serialize<T: serde::Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        Self::from_json(&serde_json::to_string(value)?)
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        Self::String(s.into())
    }

    /// The value of `key` in a map.
    pub fn get(&self, key: &str) -> Option<&Data> {
        match self {
            Self::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets `key` in a map (appended when new); no effect on other values.
    pub fn set(&mut self, key: &str, value: Data) {
        if let Self::Map(entries) = self {
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => entries.push((key.to_owned(), value)),
            }
        }
    }

    /// A [`Data::Zero`] as the plain value it stands for (functions and `range` see that).
    fn concrete(self) -> Self {
        match self {
            Self::Zero(GoZero::List) => Self::List(Vec::new()),
            Self::Zero(GoZero::Map) => Self::Map(Vec::new()),
            Self::Zero(GoZero::String) => Self::String(String::new()),
            Self::Zero(GoZero::Bool) => Self::Bool(false),
            Self::Zero(GoZero::Pointer) => Self::Null,
            other => other,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "nil",
            Self::Missing => "missing value",
            Self::Bool(_) => "bool",
            Self::Number(_) => "number",
            Self::String(_) => "string",
            Self::List(_) => "list",
            Self::Map(_) => "map",
            Self::Zero(GoZero::List) => "list",
            Self::Zero(GoZero::Map) => "map",
            Self::Zero(GoZero::String) => "string",
            Self::Zero(GoZero::Bool) => "bool",
            Self::Zero(GoZero::Pointer) => "nil",
        }
    }

    /// Go's notion of truth: false, 0, nil and empty strings, lists and maps are false.
    fn truth(&self) -> bool {
        match self {
            Self::Null | Self::Missing | Self::Zero(_) => false,
            Self::Bool(b) => *b,
            Self::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Self::String(s) => !s.is_empty(),
            Self::List(l) => !l.is_empty(),
            Self::Map(m) => !m.is_empty(),
        }
    }

    /// Compact JSON in key order, `<`, `>` and `&` unescaped (Docker's `json`).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Self::Null | Self::Missing => out.push_str("null"),
            Self::Zero(GoZero::String) => out.push_str("\"\""),
            Self::Zero(GoZero::Bool) => out.push_str("false"),
            Self::Zero(_) => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Number(n) => out.push_str(&n.to_string()),
            Self::String(s) => write_json_string(s, out),
            Self::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Self::Map(entries) => {
                out.push('{');
                let present = entries.iter().filter(|(_, v)| !matches!(v, Self::Zero(_)));
                for (i, (k, v)) in present.enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(k, out);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    // serde_json's escaping is Go's minus the HTML set, which Docker's `json` turns off;
    // Go still escapes U+2028 and U+2029.
    let quoted = serde_json::to_string(s).unwrap_or_default();
    for c in quoted.chars() {
        match c {
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
}

/// Go's `fmt.Print` of a value decoded from JSON.
impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("<nil>"),
            Self::Missing => f.write_str("<no value>"),
            Self::Zero(GoZero::List) => f.write_str("[]"),
            Self::Zero(GoZero::Map) => f.write_str("map[]"),
            Self::Zero(GoZero::String) => Ok(()),
            Self::Zero(GoZero::Bool) => f.write_str("false"),
            Self::Zero(GoZero::Pointer) => f.write_str("<nil>"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => f.write_str(s),
            Self::List(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(' ')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Self::Map(entries) => {
                let mut sorted: Vec<&(String, Data)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                f.write_str("map[")?;
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        f.write_char(' ')?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_char(']')
            }
        }
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = Data;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Data, E> {
                Ok(Data::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Data, E> {
                Ok(Data::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Data, E> {
                Ok(Data::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Data, E> {
                Ok(Data::Number(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Data, E> {
                Ok(Data::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Data, E> {
                Ok(serde_json::Number::from_f64(v).map_or(Data::Null, Data::Number))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Data, E> {
                Ok(Data::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Data, E> {
                Ok(Data::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Data::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
                let mut entries: Vec<(String, Data)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Data>()? {
                    match entries.iter_mut().find(|(key, _)| *key == k) {
                        Some(e) => e.1 = v,
                        None => entries.push((k, v)),
                    }
                }
                Ok(Data::Map(entries))
            }
        }
        deserializer.deserialize_any(DataVisitor)
    }
}

// ---------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    col: usize,
}

fn err(pos: Pos, message: impl Into<String>) -> TemplateError {
    TemplateError {
        line: pos.line,
        col: pos.col,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `.A.B` (empty for `.`).
    Field(Vec<String>),
    /// `$name.A.B` (`$` alone is the root).
    Var(String, Vec<String>),
    /// `.A.B` right after `)`.
    Chain(Vec<String>),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Nil,
    Ident(String),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

/// One piece of the template source: text, or an action's tokens.
#[derive(Debug)]
enum Piece {
    Text(String),
    Action {
        pos: Pos,
        src: String,
        toks: Vec<Tok>,
    },
}

fn position(src: &str, offset: usize) -> Pos {
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos { line, col }
}

fn split_pieces(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = 0usize;
    let mut trim_next = false;
    while rest <= src.len() {
        let Some(found) = src[rest..].find("{{") else {
            let mut text = &src[rest..];
            if trim_next {
                text = text.trim_start();
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(text.to_owned()));
            }
            break;
        };
        let start = rest + found;
        let mut text = &src[rest..start];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner_start = start + 2;
        let after = &src[inner_start..];
        if after.starts_with('-') && after[1..].starts_with(|c: char| c.is_ascii_whitespace()) {
            text = text.trim_end();
            inner_start += 1;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_owned()));
        }
        let pos = position(src, start);
        let (inner_end, close_end, trim) = find_close(src, inner_start, pos)?;
        trim_next = trim;
        let inner = &src[inner_start..inner_end];
        let trimmed = inner.trim();
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") || trimmed.len() < 4 {
                return Err(err(pos, "unclosed comment"));
            }
        } else {
            let toks = lex(inner, pos)?;
            pieces.push(Piece::Action {
                pos,
                src: trimmed.to_owned(),
                toks,
            });
        }
        rest = close_end;
    }
    Ok(pieces)
}

/// Finds the `}}` ending an action that starts at `from`, skipping quoted strings and
/// comments; returns (end of its content, end of `}}`, whether it trims what follows).
fn find_close(src: &str, from: usize, pos: Pos) -> Result<(usize, usize, bool), TemplateError> {
    let bytes = src.as_bytes();
    let mut i = from;
    let trimmed_start = src[from..].trim_start();
    if trimmed_start.starts_with("/*") {
        let body = from + (src[from..].len() - trimmed_start.len());
        let Some(end) = src[body + 2..].find("*/") else {
            return Err(err(pos, "unclosed comment"));
        };
        i = body + 2 + end + 2;
    }
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'`' | b'\'' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if bytes[i] == b'\\' && quote != b'`' {
                        i += 1;
                    }
                    if bytes[i.min(bytes.len() - 1)] == b'\n' && quote != b'`' {
                        return Err(err(pos, "unterminated quoted string"));
                    }
                    i += 1;
                }
                if i >= bytes.len() {
                    return Err(err(pos, "unterminated quoted string"));
                }
                i += 1;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                let trim = i >= 2
                    && bytes[i - 1] == b'-'
                    && bytes[i - 2].is_ascii_whitespace()
                    && i > from;
                let end = if trim { i - 1 } else { i };
                return Ok((end, i + 2, trim));
            }
            _ => i += 1,
        }
    }
    Err(err(pos, "unclosed action"))
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn lex(inner: &str, pos: Pos) -> Result<Vec<Tok>, TemplateError> {
    let chars: Vec<char> = inner.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let fields = |i: &mut usize| -> Result<Vec<String>, TemplateError> {
        let mut out = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            let start = *i + 1;
            let mut j = start;
            while j < chars.len() && is_ident_char(chars[j]) {
                j += 1;
            }
            if j == start {
                if out.is_empty() && (j >= chars.len() || !is_ident_char(chars[j])) {
                    *i = j;
                    return Ok(out);
                }
                return Err(err(pos, "bad field name after '.'"));
            }
            out.push(chars[start..j].iter().collect());
            *i = j;
        }
        Ok(out)
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '.' => {
                if chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    return Err(err(pos, format!("bad number syntax in {inner:?}")));
                }
                let f = fields(&mut i)?;
                toks.push(Tok::Field(f));
            }
            '$' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && is_ident_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                i = j;
                let f = fields(&mut i)?;
                toks.push(Tok::Var(name, f));
            }
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1;
                if chars.get(i) == Some(&'.') {
                    let f = fields(&mut i)?;
                    if !f.is_empty() {
                        toks.push(Tok::Chain(f));
                    }
                }
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            '"' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(err(pos, "unterminated quoted string"));
                }
                let quoted: String = chars[i..=j].iter().collect();
                let s: String = serde_json::from_str(&quoted)
                    .map_err(|_| err(pos, format!("bad string syntax: {quoted}")))?;
                toks.push(Tok::Str(s));
                i = j + 1;
            }
            '`' => {
                let Some(len) = chars[i + 1..].iter().position(|&c| c == '`') else {
                    return Err(err(pos, "unterminated raw quoted string"));
                };
                toks.push(Tok::Str(chars[i + 1..i + 1 + len].iter().collect()));
                i += len + 2;
            }
            '\'' => {
                let Some(len) = chars[i + 1..].iter().position(|&c| c == '\'') else {
                    return Err(err(pos, "unterminated character constant"));
                };
                let body: Vec<char> = chars[i + 1..i + 1 + len].to_vec();
                if body.len() != 1 {
                    return Err(err(pos, "unsupported character constant"));
                }
                toks.push(Tok::Num((body[0] as u32).into()));
                i += len + 2;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                toks.push(Tok::Num(parse_number(&text).ok_or_else(|| {
                    err(pos, format!("bad number syntax: {text:?}"))
                })?));
            }
            c if is_ident_char(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                toks.push(match word.as_str() {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    _ => Tok::Ident(word),
                });
                if chars.get(i) == Some(&'.') {
                    return Err(err(pos, format!("unexpected '.' after {:?}", toks.last())));
                }
            }
            c => return Err(err(pos, format!("unexpected {c:?} in action"))),
        }
    }
    Ok(toks)
}

fn parse_number(text: &str) -> Option<serde_json::Number> {
    let t = text.replace('_', "");
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    let int = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    if let Some(n) = int {
        return Some(if neg { -n } else { n }.into());
    }
    let f: f64 = t.parse().ok()?;
    serde_json::Number::from_f64(f)
}

// ---------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone)]
enum Operand {
    /// `.A.B` on dot.
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    Literal(Data),
    /// A function name.
    Func(String),
    /// `(pipeline).A.B`.
    Paren(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Pipeline {
    decl: Vec<String>,
    assign: bool,
    commands: Vec<Vec<Operand>>,
}

#[derive(Debug, Clone)]
struct Action {
    pos: Pos,
    src: String,
    pipe: Pipeline,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Action),
    If(Action, Vec<Node>, Vec<Node>),
    With(Action, Vec<Node>, Vec<Node>),
    Range(Action, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

struct Parser {
    pieces: std::vec::IntoIter<Piece>,
}

/// How a list of nodes ended.
enum Stop {
    Eof,
    End(Pos),
    Else(Pos, Vec<Tok>, String),
}

impl Parser {
    fn list(
        &mut self,
        depth: usize,
        vars: &mut Vec<String>,
    ) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let (pos, src, toks) = match piece {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Piece::Action { pos, src, toks } => (pos, src, toks),
            };
            if depth > MAX_DEPTH {
                return Err(err(pos, format!("nesting deeper than {MAX_DEPTH} levels")));
            }
            match toks.first() {
                None => return Err(err(pos, "missing value for command")),
                Some(Tok::Ident(k)) => match k.as_str() {
                    "end" => {
                        if toks.len() > 1 {
                            return Err(err(pos, "unexpected tokens after end"));
                        }
                        return Ok((nodes, Stop::End(pos)));
                    }
                    "else" => return Ok((nodes, Stop::Else(pos, toks[1..].to_vec(), src))),
                    "if" | "with" | "range" => {
                        let kind = k.clone();
                        nodes.push(self.block(&kind, pos, src, &toks[1..], depth, vars)?);
                    }
                    "define" | "template" | "block" | "break" | "continue" => {
                        return Err(err(pos, format!("{k:?} is not supported")));
                    }
                    _ => nodes.push(Node::Action(action(pos, src, &toks, depth, vars)?)),
                },
                Some(_) => nodes.push(Node::Action(action(pos, src, &toks, depth, vars)?)),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn block(
        &mut self,
        kind: &str,
        pos: Pos,
        src: String,
        toks: &[Tok],
        depth: usize,
        vars: &mut Vec<String>,
    ) -> Result<Node, TemplateError> {
        let scope = vars.len();
        let head = action(pos, src, toks, depth, vars)?;
        if head.pipe.assign {
            return Err(err(pos, format!("cannot assign in {kind}")));
        }
        if kind == "range" && head.pipe.decl.len() > 2
            || kind != "range" && head.pipe.decl.len() > 1
        {
            return Err(err(pos, format!("too many declarations in {kind}")));
        }
        let (body, end) = self.list(depth + 1, vars)?;
        vars.truncate(scope + head.pipe.decl.len());
        let otherwise = match end {
            Stop::Eof => return Err(err(pos, format!("unexpected EOF: {kind} has no end"))),
            Stop::End(_) => Vec::new(),
            Stop::Else(epos, rest, esrc) => {
                vars.truncate(scope);
                if rest.is_empty() {
                    let (other, end) = self.list(depth + 1, vars)?;
                    match end {
                        Stop::End(_) => other,
                        Stop::Else(p, ..) => return Err(err(p, "expected end; found else")),
                        Stop::Eof => {
                            return Err(err(pos, format!("unexpected EOF: {kind} has no end")));
                        }
                    }
                } else if matches!(&rest[0], Tok::Ident(k) if (k == "if" || k == "with") && k == kind)
                {
                    // `else if` / `else with`: a nested block sharing this one's end
                    let nested = esrc.trim_start_matches("else").trim_start().to_owned();
                    vec![self.block(kind, epos, nested, &rest[1..], depth + 1, vars)?]
                } else {
                    return Err(err(epos, "unexpected tokens after else"));
                }
            }
        };
        vars.truncate(scope);
        Ok(match kind {
            "if" => Node::If(head, body, otherwise),
            "with" => Node::With(head, body, otherwise),
            _ => Node::Range(head, body, otherwise),
        })
    }
}

fn action(
    pos: Pos,
    src: String,
    toks: &[Tok],
    depth: usize,
    vars: &mut Vec<String>,
) -> Result<Action, TemplateError> {
    let mut i = 0;
    let pipe = pipeline(toks, &mut i, pos, depth, vars, true)?;
    if i != toks.len() {
        return Err(err(pos, format!("unexpected {:?} in {src:?}", toks[i])));
    }
    Ok(Action { pos, src, pipe })
}

fn pipeline(
    toks: &[Tok],
    i: &mut usize,
    pos: Pos,
    depth: usize,
    vars: &mut Vec<String>,
    top: bool,
) -> Result<Pipeline, TemplateError> {
    if depth > MAX_DEPTH {
        return Err(err(pos, format!("nesting deeper than {MAX_DEPTH} levels")));
    }
    let mut decl = Vec::new();
    let mut assign = false;
    // `$a := …`, `$a, $b := …`, `$a = …`
    if top {
        let mut j = *i;
        let mut names = Vec::new();
        while let Some(Tok::Var(name, f)) = toks.get(j) {
            if !f.is_empty() {
                break;
            }
            names.push(name.clone());
            j += 1;
            if toks.get(j) == Some(&Tok::Comma) {
                j += 1;
                continue;
            }
            break;
        }
        match toks.get(j) {
            Some(Tok::Declare) if !names.is_empty() => {
                decl = names;
                *i = j + 1;
            }
            Some(Tok::Assign) if names.len() == 1 => {
                if !vars.contains(&names[0]) {
                    return Err(err(pos, format!("undefined variable \"${}\"", names[0])));
                }
                decl = names;
                assign = true;
                *i = j + 1;
            }
            _ => {}
        }
    }
    let mut commands = Vec::new();
    loop {
        let mut cmd = Vec::new();
        while let Some(t) = toks.get(*i) {
            let operand = match t {
                Tok::Pipe | Tok::RParen => break,
                Tok::Field(f) => Operand::Field(f.clone()),
                Tok::Var(name, f) => {
                    if !name.is_empty() && !vars.contains(name) {
                        return Err(err(pos, format!("undefined variable \"${name}\"")));
                    }
                    Operand::Var(name.clone(), f.clone())
                }
                Tok::Str(s) => Operand::Literal(Data::String(s.clone())),
                Tok::Num(n) => Operand::Literal(Data::Number(n.clone())),
                Tok::Bool(b) => Operand::Literal(Data::Bool(*b)),
                Tok::Nil => Operand::Literal(Data::Null),
                Tok::Ident(name) => {
                    if !FUNCTIONS.contains(&name.as_str()) {
                        return Err(err(pos, format!("function {name:?} not defined")));
                    }
                    Operand::Func(name.clone())
                }
                Tok::LParen => {
                    *i += 1;
                    let inner = pipeline(toks, i, pos, depth + 1, vars, false)?;
                    if toks.get(*i) != Some(&Tok::RParen) {
                        return Err(err(pos, "unclosed left paren"));
                    }
                    let chain = match toks.get(*i + 1) {
                        Some(Tok::Chain(f)) => {
                            *i += 1;
                            f.clone()
                        }
                        _ => Vec::new(),
                    };
                    Operand::Paren(Box::new(inner), chain)
                }
                Tok::Chain(_) | Tok::Declare | Tok::Assign | Tok::Comma => {
                    return Err(err(pos, format!("unexpected {t:?}")));
                }
            };
            cmd.push(operand);
            *i += 1;
        }
        if cmd.is_empty() {
            return Err(err(pos, "missing value for command"));
        }
        if cmd.len() > 1 && !matches!(cmd[0], Operand::Func(_)) {
            return Err(err(pos, "can't give argument to non-function"));
        }
        commands.push(cmd);
        match toks.get(*i) {
            Some(Tok::Pipe) => *i += 1,
            Some(Tok::RParen) if !top => break,
            Some(Tok::RParen) => return Err(err(pos, "unexpected right paren")),
            None if top => break,
            None => return Err(err(pos, "unclosed left paren")),
            Some(t) => return Err(err(pos, format!("unexpected {t:?}"))),
        }
    }
    if !assign {
        vars.extend(decl.iter().cloned());
    }
    Ok(Pipeline {
        decl,
        assign,
        commands,
    })
}

const FUNCTIONS: &[&str] = &[
    "json", "join", "split", "lower", "upper", "title", "truncate", "pad", "index", "len", "not",
    "and", "or", "eq", "ne", "lt", "le", "gt", "ge", "print", "println", "printf",
];

impl Template {
    /// Parses a template.
    pub fn parse(src: &str) -> Result<Self, TemplateError> {
        let mut parser = Parser {
            pieces: split_pieces(src)?.into_iter(),
        };
        let mut vars = Vec::new();
        let (nodes, end) = parser.list(0, &mut vars)?;
        match end {
            Stop::Eof => Ok(Self { nodes }),
            Stop::End(p) => Err(err(p, "unexpected {{end}}")),
            Stop::Else(p, ..) => Err(err(p, "unexpected {{else}}")),
        }
    }

    /// Runs the template on `data`.
    pub fn execute(&self, data: &Data) -> Result<String, TemplateError> {
        self.run(data, None)
    }

    /// Runs the template on `data` standing for a Go struct of type `type_name` (docker's
    /// list contexts, e.g. `*formatter.imageContext`): a field `data` lacks is an error, as
    /// Go fails to evaluate a field a struct does not have, not a `<no value>`.
    pub fn execute_struct(&self, data: &Data, type_name: &str) -> Result<String, TemplateError> {
        self.run(data, Some(type_name))
    }

    fn run(&self, data: &Data, struct_type: Option<&str>) -> Result<String, TemplateError> {
        let mut exec = Exec {
            out: String::new(),
            vars: vec![(String::new(), data.clone())],
            steps: 0,
            root: struct_type.map(|t| (data as *const Data, t.to_owned())),
        };
        exec.nodes(&self.nodes, data)?;
        Ok(exec.out)
    }
}

// ---------------------------------------------------------------------------------------
// Execution

struct Exec {
    out: String,
    /// Variables in scope; `$` (the empty name) is the data.
    vars: Vec<(String, Data)>,
    steps: u64,
    /// With [`Template::execute_struct`]: the data (compared by address, never read through
    /// the pointer) and the Go type it stands for.
    root: Option<(*const Data, String)>,
}

impl Exec {
    fn step(&mut self, at: &Action) -> Result<(), TemplateError> {
        self.steps += 1;
        if self.steps > MAX_STEPS || self.out.len() > MAX_OUTPUT {
            return Err(err(at.pos, "template execution exceeded its limits"));
        }
        Ok(())
    }

    fn fail(at: &Action, message: impl fmt::Display) -> TemplateError {
        err(at.pos, format!("executing at <{}>: {message}", at.src))
    }

    fn nodes(&mut self, nodes: &[Node], dot: &Data) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(a) => {
                    self.step(a)?;
                    let v = self.pipeline(a, &a.pipe, dot)?;
                    if a.pipe.decl.is_empty() {
                        let _ = write!(self.out, "{v}");
                    }
                }
                Node::If(a, then, otherwise) | Node::With(a, then, otherwise) => {
                    self.step(a)?;
                    let scope = self.vars.len();
                    let v = self.pipeline(a, &a.pipe, dot)?;
                    let is_with = matches!(node, Node::With(..));
                    if v.truth() {
                        if is_with {
                            self.nodes(then, &v)?;
                        } else {
                            self.nodes(then, dot)?;
                        }
                    } else {
                        self.vars.truncate(scope);
                        self.nodes(otherwise, dot)?;
                    }
                    self.vars.truncate(scope);
                }
                Node::Range(a, body, otherwise) => {
                    self.step(a)?;
                    let scope = self.vars.len();
                    let mut pipe = a.pipe.clone();
                    let names = std::mem::take(&mut pipe.decl);
                    let v = self.pipeline(a, &pipe, dot)?.concrete();
                    let items: Vec<(Data, Data)> = match v {
                        Data::List(items) => items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Data::Number((i as u64).into()), v))
                            .collect(),
                        Data::Map(mut entries) => {
                            entries.sort_by(|a, b| a.0.cmp(&b.0));
                            entries
                                .into_iter()
                                .map(|(k, v)| (Data::String(k), v))
                                .collect()
                        }
                        Data::Null | Data::Missing => Vec::new(),
                        Data::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                            .map(|i| (Data::Number(i.into()), Data::Number(i.into())))
                            .collect(),
                        other => {
                            return Err(Self::fail(
                                a,
                                format!("range can't iterate over {}", other.kind()),
                            ));
                        }
                    };
                    if items.is_empty() {
                        self.nodes(otherwise, dot)?;
                    }
                    for (key, value) in items {
                        self.step(a)?;
                        match names.as_slice() {
                            [] => {}
                            [v] => self.vars.push((v.clone(), value.clone())),
                            [k, v, ..] => {
                                self.vars.push((k.clone(), key));
                                self.vars.push((v.clone(), value.clone()));
                            }
                        }
                        self.nodes(body, &value)?;
                        self.vars.truncate(scope);
                    }
                }
            }
        }
        Ok(())
    }

    fn var(&self, name: &str) -> Data {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(Data::Missing, |(_, v)| v.clone())
    }

    fn pipeline(
        &mut self,
        at: &Action,
        pipe: &Pipeline,
        dot: &Data,
    ) -> Result<Data, TemplateError> {
        let mut value: Option<Data> = None;
        for cmd in &pipe.commands {
            value = Some(self.command(at, cmd, dot, value)?);
        }
        let value = value.unwrap_or(Data::Missing);
        if pipe.assign {
            if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| *n == pipe.decl[0]) {
                slot.1 = value.clone();
            }
        } else if let Some(name) = pipe.decl.first() {
            self.vars.push((name.clone(), value.clone()));
        }
        Ok(value)
    }

    fn command(
        &mut self,
        at: &Action,
        cmd: &[Operand],
        dot: &Data,
        last: Option<Data>,
    ) -> Result<Data, TemplateError> {
        self.step(at)?;
        if let Operand::Func(name) = &cmd[0] {
            let mut args = Vec::with_capacity(cmd.len());
            for o in &cmd[1..] {
                args.push(self.operand(at, o, dot)?);
            }
            args.extend(last);
            return call(name, args).map_err(|m| Self::fail(at, m));
        }
        if last.is_some() {
            return Err(Self::fail(at, "can't give argument to non-function"));
        }
        self.operand(at, &cmd[0], dot)
    }

    fn operand(&mut self, at: &Action, o: &Operand, dot: &Data) -> Result<Data, TemplateError> {
        match o {
            Operand::Field(f) => {
                if let Some((root, type_name)) = &self.root
                    && std::ptr::eq(dot, *root)
                    && let Some(first) = f.first()
                    && dot.get(first).is_none()
                {
                    return Err(Self::fail(
                        at,
                        format!("can't evaluate field {first} in type {type_name}"),
                    ));
                }
                fields(dot, f).map_err(|m| Self::fail(at, m))
            }
            Operand::Var(name, f) => fields(&self.var(name), f).map_err(|m| Self::fail(at, m)),
            Operand::Literal(d) => Ok(d.clone()),
            Operand::Func(name) => call(name, Vec::new()).map_err(|m| Self::fail(at, m)),
            Operand::Paren(p, f) => {
                let v = self.pipeline(at, p, dot)?;
                fields(&v, f).map_err(|m| Self::fail(at, m))
            }
        }
    }
}

fn fields(value: &Data, path: &[String]) -> Result<Data, String> {
    let mut v = value;
    for (i, name) in path.iter().enumerate() {
        match v {
            Data::Map(_) => match v.get(name) {
                Some(next) => v = next,
                None => {
                    return match path.get(i + 1) {
                        None => Ok(Data::Missing),
                        Some(next) => Err(format!("nil pointer evaluating interface {{}}.{next}")),
                    };
                }
            },
            // Go: a missing map key is a nil interface{}, and so is JSON null; a field of it
            // is an error, not another <no value>
            Data::Null | Data::Missing => {
                return Err(format!("nil pointer evaluating interface {{}}.{name}"));
            }
            Data::Zero(GoZero::Map | GoZero::Pointer) => {
                return Ok(Data::Missing);
            }
            other => {
                return Err(format!(
                    "can't evaluate field {name} in type {}",
                    other.kind()
                ));
            }
        }
    }
    Ok(v.clone())
}

fn arity(name: &str, args: &[Data], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn as_str<'a>(name: &str, v: &'a Data) -> Result<&'a str, String> {
    match v {
        Data::String(s) => Ok(s),
        other => Err(format!("{name}: expected a string, got {}", other.kind())),
    }
}

fn as_int(name: &str, v: &Data) -> Result<i64, String> {
    match v {
        Data::Number(n) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or(0)),
        other => Err(format!("{name}: expected an integer, got {}", other.kind())),
    }
}

fn call(name: &str, args: Vec<Data>) -> Result<Data, String> {
    let args: Vec<Data> = if name == "json" {
        args
    } else {
        args.into_iter().map(Data::concrete).collect()
    };
    match name {
        "json" => {
            arity(name, &args, 1)?;
            Ok(Data::String(args[0].to_json()))
        }
        "join" => {
            arity(name, &args, 2)?;
            let sep = as_str(name, &args[1])?;
            match &args[0] {
                Data::List(items) => Ok(Data::String(
                    items
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(sep),
                )),
                Data::Null | Data::Missing => Ok(Data::String(String::new())),
                other => Err(format!("join: expected a list, got {}", other.kind())),
            }
        }
        "split" => {
            arity(name, &args, 2)?;
            let s = as_str(name, &args[0])?;
            let sep = as_str(name, &args[1])?;
            let parts: Vec<Data> = if sep.is_empty() {
                s.chars().map(|c| Data::String(c.to_string())).collect()
            } else {
                s.split(sep).map(Data::string).collect()
            };
            Ok(Data::List(parts))
        }
        "lower" | "upper" | "title" => {
            arity(name, &args, 1)?;
            let s = args[0].to_string();
            Ok(Data::String(match name {
                "lower" => s.to_lowercase(),
                "upper" => s.to_uppercase(),
                _ => title(&s),
            }))
        }
        "truncate" => {
            arity(name, &args, 2)?;
            let s = args[0].to_string();
            let n = usize::try_from(as_int(name, &args[1])?)
                .map_err(|_| "truncate: negative length")?;
            Ok(Data::String(s.chars().take(n).collect()))
        }
        "pad" => {
            arity(name, &args, 3)?;
            let s = args[0].to_string();
            let left =
                usize::try_from(as_int(name, &args[1])?).map_err(|_| "pad: negative width")?;
            let right =
                usize::try_from(as_int(name, &args[2])?).map_err(|_| "pad: negative width")?;
            if left + right > 4096 {
                return Err("pad: too wide".into());
            }
            Ok(Data::String(format!(
                "{}{s}{}",
                " ".repeat(left),
                " ".repeat(right)
            )))
        }
        "index" => {
            let Some((first, keys)) = args.split_first() else {
                return Err("wrong number of args for index: want at least 1 got 0".into());
            };
            let mut v = first.clone();
            for k in keys {
                v = match (&v, k) {
                    (Data::Map(_), Data::String(key)) => {
                        v.get(key).cloned().unwrap_or(Data::Missing).concrete()
                    }
                    (Data::List(items), Data::Number(_)) => {
                        let i = as_int(name, k)?;
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| items.get(i))
                            .cloned()
                            .ok_or_else(|| {
                                format!("error calling index: index out of range: {i}")
                            })?
                    }
                    (Data::String(s), Data::Number(_)) => {
                        let i = as_int(name, k)?;
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| s.as_bytes().get(i))
                            .map(|b| Data::Number((*b as u64).into()))
                            .ok_or_else(|| {
                                format!("error calling index: index out of range: {i}")
                            })?
                    }
                    (Data::Null | Data::Missing, _) => {
                        return Err("error calling index: index of untyped nil".into());
                    }
                    (v, k) => {
                        return Err(format!(
                            "error calling index: cannot index {} with {}",
                            v.kind(),
                            k.kind()
                        ));
                    }
                };
            }
            Ok(v)
        }
        "len" => {
            arity(name, &args, 1)?;
            let n = match &args[0] {
                Data::String(s) => s.len(),
                Data::List(l) => l.len(),
                Data::Map(m) => m.len(),
                other => return Err(format!("error calling len: len of {}", other.kind())),
            };
            Ok(Data::Number((n as u64).into()))
        }
        "not" => {
            arity(name, &args, 1)?;
            Ok(Data::Bool(!args[0].truth()))
        }
        "and" | "or" => {
            if args.is_empty() {
                return Err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                ));
            }
            let want = name == "or";
            let len = args.len();
            for (i, a) in args.into_iter().enumerate() {
                if a.truth() == want || i + 1 == len {
                    return Ok(a);
                }
            }
            Ok(Data::Missing)
        }
        "eq" => {
            let Some((first, rest)) = args.split_first() else {
                return Err("wrong number of args for eq: want at least 1 got 0".into());
            };
            if rest.is_empty() {
                return Err("missing argument for comparison".into());
            }
            for other in rest {
                if compare(first, other)? == std::cmp::Ordering::Equal {
                    return Ok(Data::Bool(true));
                }
            }
            Ok(Data::Bool(false))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(name, &args, 2)?;
            let ord = compare(&args[0], &args[1])?;
            if name != "ne"
                && !matches!(
                    (&args[0], &args[1]),
                    (Data::Number(_), Data::Number(_)) | (Data::String(_), Data::String(_))
                )
            {
                return Err(format!("invalid type for comparison: {}", args[0].kind()));
            }
            use std::cmp::Ordering::*;
            Ok(Data::Bool(match name {
                "ne" => ord != Equal,
                "lt" => ord == Less,
                "le" => ord != Greater,
                "gt" => ord == Greater,
                _ => ord != Less,
            }))
        }
        "print" => Ok(Data::String(sprint(&args))),
        "println" => Ok(Data::String({
            let mut s = args
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            s.push('\n');
            s
        })),
        "printf" => {
            let Some((format, rest)) = args.split_first() else {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            };
            Ok(Data::String(sprintf(as_str(name, format)?, rest)))
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Data]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Data::String(_)) && !matches!(args[i - 1], Data::String(_)) {
            out.push(' ');
        }
        let _ = write!(out, "{a}");
    }
    out
}

fn sprintf(format: &str, args: &[Data]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        match verb {
            'v' | 's' | 'd' | 't' => {
                let _ = write!(out, "{arg}");
            }
            'q' => out.push_str(&serde_json::to_string(&arg.to_string()).unwrap_or_default()),
            other => {
                let _ = write!(out, "%!{other}({arg})");
            }
        }
    }
    let extra: Vec<String> = args.map(ToString::to_string).collect();
    if !extra.is_empty() {
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

fn compare(a: &Data, b: &Data) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Data::Number(x), Data::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Ok(x.cmp(&y)),
            _ => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .ok_or_else(|| "incomparable numbers".to_string()),
        },
        (Data::String(x), Data::String(y)) => Ok(x.cmp(y)),
        (Data::Bool(x), Data::Bool(y)) => Ok(x.cmp(y)),
        (Data::Null | Data::Missing, Data::Null | Data::Missing) => Ok(std::cmp::Ordering::Equal),
        (x, y) => Err(format!(
            "incompatible types for comparison: {} and {}",
            x.kind(),
            y.kind()
        )),
    }
}

/// Go's deprecated `strings.Title`: the first letter of each space-separated word upper.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Docker's CLI formatting around templates

/// What Docker's list formatter does to a `--format` value before parsing it: drops a
/// `table ` prefix (returned as the flag), trims spaces, turns the two-character escapes
/// `\t` and `\n` into a tab and a newline.
pub fn docker_list_format(format: &str) -> (bool, String) {
    let (table, rest) = match format.strip_prefix("table") {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => (true, rest),
        _ => (false, format),
    };
    let rest = rest
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    (table, rest)
}

/// The data `docker inspect -f` templates see for an image: the inspect object, with the
/// fields Docker's typed structs always have but the JSON omits put back as Go zero
/// values in Docker's field order, so that `{{.Config.Entrypoint}}` prints `[]` and
/// `{{.Comment}}` prints nothing, as they do with Docker.
pub fn inspect_data(view: &crate::view::InspectView) -> Result<Data, serde_json::Error> {
    const TOP: &[(&str, GoZero)] = &[
        ("Id", GoZero::String),
        ("RepoTags", GoZero::List),
        ("RepoDigests", GoZero::List),
        ("Comment", GoZero::String),
        ("Created", GoZero::String),
        ("Author", GoZero::String),
        ("Config", GoZero::Pointer),
        ("Architecture", GoZero::String),
        ("Variant", GoZero::String),
        ("Os", GoZero::String),
        ("OsVersion", GoZero::String),
    ];
    const CONFIG: &[(&str, GoZero)] = &[
        ("User", GoZero::String),
        ("ExposedPorts", GoZero::Map),
        ("Env", GoZero::List),
        ("Entrypoint", GoZero::List),
        ("Cmd", GoZero::List),
        ("Volumes", GoZero::Map),
        ("WorkingDir", GoZero::String),
        ("Labels", GoZero::Map),
        ("StopSignal", GoZero::String),
        ("ArgsEscaped", GoZero::Bool),
        ("Healthcheck", GoZero::Pointer),
        ("OnBuild", GoZero::List),
        ("Shell", GoZero::List),
    ];
    fn complete(value: Data, fields: &[(&str, GoZero)]) -> Data {
        let Data::Map(mut entries) = value else {
            return value;
        };
        let mut out = Vec::with_capacity(entries.len() + fields.len());
        for (name, zero) in fields {
            match entries.iter().position(|(k, _)| k == name) {
                Some(i) => out.push(entries.remove(i)),
                None => out.push(((*name).to_owned(), Data::Zero(*zero))),
            }
        }
        out.extend(entries);
        Data::Map(out)
    }
    let mut data = complete(Data::from_serialize(view)?, TOP);
    if let Some(config) = data.get("Config").cloned() {
        data.set("Config", complete(config, CONFIG));
    }
    Ok(data)
}

/// Renders rows as `docker images` / `docker history` do with a template: each row's
/// output followed by a newline; with `table`, a header row first (the template run on
/// `headers`, field name -> column title) and the columns aligned by Go's tabwriter rules.
pub fn render_rows(
    template: &Template,
    table: bool,
    headers: &Data,
    rows: &[Data],
    row_type: &str,
) -> Result<String, TemplateError> {
    let mut lines = Vec::with_capacity(rows.len() + 1);
    if table {
        // docker's header row is a map: a field it lacks prints empty, not an error
        lines.push(template.execute(headers)?);
    }
    for row in rows {
        lines.push(template.execute_struct(row, row_type)?);
    }
    if !table {
        return Ok(lines.into_iter().map(|l| l + "\n").collect());
    }
    let text: String = lines.into_iter().map(|l| l + "\n").collect();
    let cells: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    Ok(crate::view::tabwriter(&cells))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Data {
        Data::from_json(
            r#"{"Id":"sha256:abc","RepoTags":["app:1","app:latest"],"Config":{"Cmd":["sh","-c","echo hi"],"Entrypoint":null,"Env":["PATH=/bin","A=1"],"Labels":{"z":"last","a":"first","x.y":"dots"},"ExposedPorts":{"80/tcp":{}}},"Size":1234,"Ratio":0.5,"Ok":true,"Empty":"","RootFS":{"Type":"layers","Layers":["sha256:1","sha256:2"]}}"#,
        )
        .unwrap()
    }

    fn run(t: &str) -> String {
        Template::parse(t)
            .unwrap_or_else(|e| panic!("{t}: {e}"))
            .execute(&data())
            .unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    fn fails(t: &str) -> TemplateError {
        match Template::parse(t) {
            Err(e) => e,
            Ok(tpl) => tpl.execute(&data()).expect_err(&format!("{t} should fail")),
        }
    }

    #[test]
    fn fields_print_as_go_prints_them() {
        assert_eq!(run("{{.Id}}"), "sha256:abc");
        assert_eq!(run("{{.Config.Cmd}}"), "[sh -c echo hi]");
        assert_eq!(run("{{.Config.Labels}}"), "map[a:first x.y:dots z:last]");
        assert_eq!(run("{{.Config.ExposedPorts}}"), "map[80/tcp:map[]]");
        assert_eq!(run("{{.Config.Entrypoint}}"), "<nil>");
        assert_eq!(run("{{.Config.Nope}}"), "<no value>");
        // a missing key is a nil interface{} in Go: a field of it fails, as docker's does
        assert_eq!(
            fails("{{.Nope.Deeper}}").message,
            "executing at <.Nope.Deeper>: nil pointer evaluating interface {}.Deeper"
        );
        assert_eq!(run("{{.Size}} {{.Ratio}} {{.Ok}}"), "1234 0.5 true");
        assert_eq!(
            run("{{.RootFS}}"),
            "map[Layers:[sha256:1 sha256:2] Type:layers]"
        );
        assert_eq!(run("id={{ .Id }}!"), "id=sha256:abc!");
        assert_eq!(run("plain text"), "plain text");
        assert_eq!(run(""), "");
        assert_eq!(run("{{.}}").len(), data().to_string().len());
    }

    #[test]
    fn json_keeps_key_order_and_does_not_escape_html() {
        assert_eq!(run("{{json .Config.Cmd}}"), r#"["sh","-c","echo hi"]"#);
        assert_eq!(
            run("{{json .Config.Labels}}"),
            r#"{"z":"last","a":"first","x.y":"dots"}"#
        );
        assert_eq!(run("{{json .Config.Entrypoint}}"), "null");
        assert_eq!(
            run("{{.RootFS | json}}"),
            r#"{"Type":"layers","Layers":["sha256:1","sha256:2"]}"#
        );
        let d = Data::from_json(r#"{"s":"<a&b>\u2028"}"#).unwrap();
        let t = Template::parse("{{json .s}}").unwrap();
        assert_eq!(t.execute(&d).unwrap(), "\"<a&b>\\u2028\"");
    }

    #[test]
    fn index_range_with_and_if() {
        assert_eq!(run(r#"{{index .Config.Labels "x.y"}}"#), "dots");
        assert_eq!(run(r#"{{index .Config.Labels "nope"}}"#), "<no value>");
        assert_eq!(run("{{index .RepoTags 1}}"), "app:latest");
        assert_eq!(
            run("{{range .RepoTags}}[{{.}}]{{end}}"),
            "[app:1][app:latest]"
        );
        assert_eq!(
            run("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}"),
            "a=first;x.y=dots;z=last;"
        );
        assert_eq!(
            run("{{range $i, $t := .RepoTags}}{{$i}}:{{$t}} {{end}}"),
            "0:app:1 1:app:latest "
        );
        assert_eq!(
            run("{{range .Config.Entrypoint}}x{{else}}none{{end}}"),
            "none"
        );
        assert_eq!(run("{{with .Config}}{{.Cmd}}{{end}}"), "[sh -c echo hi]");
        assert_eq!(run("{{with .Empty}}x{{else}}empty{{end}}"), "empty");
        assert_eq!(run("{{if .Ok}}yes{{else}}no{{end}}"), "yes");
        assert_eq!(run("{{if .Empty}}a{{else if .Ok}}b{{else}}c{{end}}"), "b");
        assert_eq!(run("{{if not .Ok}}a{{else}}b{{end}}"), "b");
        assert_eq!(run(r#"{{if eq .Id "sha256:abc" "x"}}same{{end}}"#), "same");
        assert_eq!(run("{{if gt .Size 1000}}big{{end}}"), "big");
        assert_eq!(run("{{len .RepoTags}} {{len .Id}}"), "2 10");
        assert_eq!(run("{{(index .RepoTags 0)}}"), "app:1");
        assert_eq!(run("{{(.Config).Cmd}}"), "[sh -c echo hi]");
        assert_eq!(run("{{$c := .Config}}{{$c.Env}}"), "[PATH=/bin A=1]");
        assert_eq!(
            run("{{range .RepoTags}}{{$.Id}} {{end}}"),
            "sha256:abc sha256:abc "
        );
        assert_eq!(
            run("{{and .Ok .Id}} {{or .Empty .Size}}"),
            "sha256:abc 1234"
        );
    }

    #[test]
    fn go_zero_values_print_as_typed_go_and_are_omitted_by_json() {
        let mut d = Data::from_json(r#"{"Cmd":["sh"]}"#).unwrap();
        d.set("Entrypoint", Data::Zero(GoZero::List));
        d.set("Labels", Data::Zero(GoZero::Map));
        d.set("User", Data::Zero(GoZero::String));
        d.set("Healthcheck", Data::Zero(GoZero::Pointer));
        let run = |t: &str| Template::parse(t).unwrap().execute(&d).unwrap();
        assert_eq!(
            run("{{.Entrypoint}}|{{.Labels}}|{{.User}}|{{.Healthcheck}}"),
            "[]|map[]||<nil>"
        );
        assert_eq!(run("{{json .}}"), r#"{"Cmd":["sh"]}"#);
        assert_eq!(run("{{json .Entrypoint}} {{json .User}}"), r#"null """#);
        assert_eq!(
            run("{{len .Entrypoint}}{{range .Labels}}x{{else}}none{{end}}"),
            "0none"
        );
        assert_eq!(
            run(r#"{{index .Labels "a"}}|{{.Labels.a}}|{{join .Entrypoint ","}}"#),
            "<no value>|<no value>|"
        );
        assert_eq!(run(r#"{{if eq .User ""}}empty{{end}}"#), "empty");
    }

    #[test]
    fn inspect_data_has_dockers_typed_fields() {
        let config = crate::ImageConfig::parse(
            br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let view = crate::view::InspectView::new(&config, "sha256:x", vec![], vec![], 0, None);
        let d = inspect_data(&view).unwrap();
        let run = |t: &str| Template::parse(t).unwrap().execute(&d).unwrap();
        assert_eq!(
            run("{{.Config.Cmd}} {{.Config.Entrypoint}} {{.Config.Labels}}"),
            "[sh] [] map[]"
        );
        assert_eq!(
            run("[{{.Comment}}] {{.Os}}/{{.Architecture}} {{.RootFS.Type}}"),
            "[] linux/amd64 layers"
        );
        assert_eq!(run("{{json .Config}}"), r#"{"Cmd":["sh"]}"#);
        // the JSON Docker's `inspect` prints, key for key
        assert_eq!(
            Data::from_json(&run("{{json .}}")).unwrap(),
            Data::from_json(&crate::view::go_json_pretty(&view)).unwrap()
        );
    }

    #[test]
    fn docker_functions() {
        assert_eq!(run(r#"{{join .Config.Cmd ","}}"#), "sh,-c,echo hi");
        assert_eq!(run(r#"{{split "a:b:c" ":"}}"#), "[a b c]");
        assert_eq!(
            run(r#"{{upper "ab"}}{{lower "CD"}}{{title "hello world"}}"#),
            "ABcdHello World"
        );
        assert_eq!(run(r#"{{truncate .Id 6}}"#), "sha256");
        assert_eq!(run(r#"{{pad "x" 1 2}}|"#), " x  |");
        assert_eq!(
            run(r#"{{printf "%s-%d %q" .Id .Size "q"}}"#),
            r#"sha256:abc-1234 "q""#
        );
        assert_eq!(run(r#"{{print 1 2 "a" "b"}}"#), "1 2ab");
        assert_eq!(run(r#"{{println "a" 1}}"#), "a 1\n");
        assert_eq!(run(r#"{{.Id | printf "<%s>"}}"#), "<sha256:abc>");
    }

    #[test]
    fn trimming_and_comments() {
        assert_eq!(run("a  {{- .Size -}}  b"), "a1234b");
        assert_eq!(run("a {{/* note */}} b"), "a  b");
        assert_eq!(run("a {{- /* note */ -}} b"), "ab");
        assert_eq!(run("{{ `raw\\t` }}"), "raw\\t");
        assert_eq!(run(r#"{{ "esc\t" }}"#), "esc\t");
        assert_eq!(run("x}}y"), "x}}y");
        assert_eq!(run(r#"{{"}}"}}"#), "}}");
    }

    #[test]
    fn hostile_templates_fail_with_a_position() {
        let e = fails("ok {{.Id");
        assert_eq!((e.line, e.col), (1, 4), "{e}");
        assert!(e.to_string().contains("unclosed action"), "{e}");
        let e = fails("line1\n  {{nosuch .Id}}");
        assert_eq!((e.line, e.col), (2, 3), "{e}");
        assert!(e.message.contains("\"nosuch\" not defined"), "{e}");
        assert!(fails("{{if .Ok}}x").message.contains("no end"));
        assert!(fails("{{end}}").message.contains("unexpected"));
        assert!(fails("{{else}}").message.contains("unexpected"));
        assert!(fails("{{}}").message.contains("missing value"));
        assert!(fails("{{.Id .Size}}").message.contains("non-function"));
        assert!(fails("{{.Id | .Size}}").message.contains("non-function"));
        assert!(fails(r#"{{"open}}"#).message.contains("unterminated"));
        assert!(fails("{{(index .RepoTags 0}}").message.contains("paren"));
        assert!(fails("{{index .RepoTags 0)}}").message.contains("paren"));
        assert!(fails("{{$x}}").message.contains("undefined variable"));
        assert!(fails("{{/* open").message.contains("unclosed comment"));
        assert!(
            fails("{{template \"x\"}}")
                .message
                .contains("not supported")
        );
        assert!(
            fails("{{.Id.Deeper}}")
                .message
                .contains("can't evaluate field Deeper in type string")
        );
        assert!(
            fails("{{index .RepoTags 5}}")
                .message
                .contains("out of range")
        );
        assert!(
            fails("{{index .Id \"k\"}}")
                .message
                .contains("cannot index")
        );
        assert!(
            fails("{{range .Id}}{{end}}")
                .message
                .contains("can't iterate")
        );
        assert!(fails("{{json}}").message.contains("wrong number of args"));
        assert!(fails("{{eq .Id 1}}").message.contains("incompatible types"));
        assert!(fails("{{# x}}").message.contains("unexpected"));
        assert!(fails("{{.Id}").message.contains("unclosed action"));
        assert!(fails("{{ 1x }}").message.contains("bad number"));
        assert!(fails("{{.Id -}").message.contains("unclosed action"));
        let exec = fails("{{.Id.X}}");
        assert!(
            exec.to_string()
                .starts_with("template: :1:1: executing at <.Id.X>"),
            "{exec}"
        );
    }

    #[test]
    fn nesting_and_work_are_bounded() {
        let deep = "{{if .Ok}}".repeat(MAX_DEPTH + 5) + &"{{end}}".repeat(MAX_DEPTH + 5);
        assert!(fails(&deep).message.contains("nesting"));
        let parens = "{{".to_string() + &"(".repeat(10_000) + ".Id" + &")".repeat(10_000) + "}}";
        assert!(fails(&parens).message.contains("nesting"));
        let shallow = "{{if .Ok}}".repeat(10) + "x" + &"{{end}}".repeat(10);
        assert_eq!(run(&shallow), "x");
        // 2^40 iterations if nothing stopped it
        let d = Data::from_json(r#"{"L":[1,2]}"#).unwrap();
        let bomb = "{{range .L}}".repeat(40) + "x" + &"{{end}}".repeat(40);
        let bomb = bomb.replace("{{range .L}}", "{{range $.L}}");
        let e = Template::parse(&bomb).unwrap().execute(&d).unwrap_err();
        assert!(e.message.contains("limits"), "{e}");
        // never a panic on arbitrary bytes
        for t in [
            "{{",
            "}}",
            "{{-",
            "{{- -}}",
            "{{ - }}",
            "{{$}}",
            "{{$.}}",
            "{{.",
            "{{..}}",
            "{{'ab'}}",
            "{{'",
            "{{`",
            "{{\"\\",
            "{{(}}",
            "{{)}}",
            "{{|}}",
            "{{.Id|}}",
            "{{:=}}",
            "{{$x :=}}",
            "{{$x = 1}}",
            "{{range $a, $b, $c := .L}}{{end}}",
            "{{else if}}",
            "{{if}}{{end}}",
            "{{with $x := .Id}}{{$x}}{{end}}{{$x}}",
            "é{{.Id}}é{{",
            "{{0x}}",
            "{{-1}}",
            "{{+}}",
        ] {
            if let Ok(tpl) = Template::parse(t) {
                let _ = tpl.execute(&data());
            }
        }
    }

    #[test]
    fn variables_are_scoped_to_their_block() {
        assert_eq!(run("{{with $x := .Id}}{{$x}}{{end}}"), "sha256:abc");
        assert!(
            fails("{{with $x := .Id}}{{end}}{{$x}}")
                .message
                .contains("undefined variable")
        );
        assert_eq!(run("{{$x := 1}}{{$x = 2}}{{$x}}"), "2");
        assert_eq!(run("{{$}}").len(), data().to_string().len());
    }

    #[test]
    fn list_formats_follow_dockers_formatter() {
        assert_eq!(
            docker_list_format("table {{.A}}\\t{{.B}}"),
            (true, "{{.A}}\t{{.B}}".into())
        );
        assert_eq!(
            docker_list_format(" {{.A}}\\n "),
            (false, "{{.A}}\n".into())
        );
        assert_eq!(docker_list_format("tablex"), (false, "tablex".into()));
        let headers = Data::from_json(r#"{"A":"COL A","B":"B"}"#).unwrap();
        let rows = vec![
            Data::from_json(r#"{"A":"x","B":"1"}"#).unwrap(),
            Data::from_json(r#"{"A":"longer value","B":"2"}"#).unwrap(),
        ];
        let (_, f) = docker_list_format("table {{.A}}\\t{{.B}}");
        let t = Template::parse(&f).unwrap();
        assert_eq!(
            render_rows(&t, true, &headers, &rows, "*row").unwrap(),
            "COL A          B\nx              1\nlonger value   2\n"
        );
        assert_eq!(
            render_rows(&t, false, &headers, &rows, "*row").unwrap(),
            "x\t1\nlonger value\t2\n"
        );
        assert_eq!(
            render_rows(&t, true, &headers, &[], "*row").unwrap(),
            "COL A     B\n"
        );
    }
}
