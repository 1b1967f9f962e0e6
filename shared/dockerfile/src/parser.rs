//! The lexical layer and the parse loop (BuildKit `parser.Parse`, spec §1 and §5.2).

use std::borrow::Cow;

use crate::ast::{Directive, Node, ParseOutput, ParseWarning};
use crate::error::{Error, ErrorKind, Location};
use crate::line_grammar::{can_contain_heredoc, heredocs_from_line, node_from_line};
use crate::quote::decode_bytes;

/// BuildKit's line scanner accepts lines up to this many bytes (excluding the newline).
pub const MAX_LINE_BYTES: usize = 65_535;

const UTF8_BOM: &str = "\u{feff}";

/// Physical lines of the input, each with its trailing `\n` (if any).
struct PhysicalLines<'a> {
    src: &'a [u8],
    pos: usize,
    /// 1-based number of the last line returned.
    number: usize,
}

impl<'a> PhysicalLines<'a> {
    fn new(src: &'a [u8]) -> Self {
        PhysicalLines {
            src,
            pos: 0,
            number: 0,
        }
    }

    /// The next raw line as bytes, with its newline.
    fn next_bytes(&mut self) -> Result<Option<&'a [u8]>, Error> {
        let rest = self.src.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(None);
        }
        let len = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = rest.get(..len).unwrap_or_default();
        self.pos += len;
        self.number += 1;
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        if content.len() > MAX_LINE_BYTES {
            return Err(Error::at(
                ErrorKind::LineTooLong {
                    max: MAX_LINE_BYTES,
                },
                Location::line(self.number),
            ));
        }
        Ok(Some(line))
    }

    /// The next line as text. Bytes that are not valid UTF-8 are kept as stand-in
    /// characters ([`crate::quote::decode_bytes`]): BuildKit accepts any bytes.
    fn next_line(&mut self) -> Result<Option<Cow<'a, str>>, Error> {
        Ok(self.next_bytes()?.map(decode_bytes))
    }
}

/// State of the directive scanner (BuildKit `DirectiveParser` + `directives`).
struct DirectiveScanner {
    done: bool,
    escape: char,
    found: Vec<Directive>,
}

impl DirectiveScanner {
    /// Looks at one processed line; returns whether it was a directive.
    fn scan(&mut self, line: &str, number: usize) -> Result<bool, Error> {
        if self.done {
            return Ok(false);
        }
        let Some(body) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(false);
        };
        let Some((key, value)) = match_directive(body.trim_start()) else {
            self.done = true;
            return Ok(false);
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        let at = Location::line(number);
        if self.found.iter().any(|d| d.name == key) {
            return Err(Error::at(ErrorKind::DuplicateDirective { name: key }, at));
        }
        if key == "escape" {
            self.escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => return Err(Error::at(ErrorKind::InvalidEscapeToken { value }, at)),
            };
        }
        self.found.push(Directive {
            name: key,
            value,
            line: number,
        });
        Ok(true)
    }
}

/// Go RE2 `\s`: `[\t\n\f\r ]`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// Matches `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` and returns key and value.
fn match_directive(s: &str) -> Option<(String, String)> {
    let key_len = s
        .char_indices()
        .take_while(|(i, c)| {
            if *i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if key_len == 0 {
        return None;
    }
    let (key, rest) = s.split_at(key_len);
    let rest = rest.trim_start_matches(is_re_space).strip_prefix('=')?;
    let after_eq = rest;
    let value = after_eq
        .trim_start_matches(is_re_space)
        .trim_end_matches(is_re_space);
    if !value.is_empty() {
        return Some((key.to_string(), value.to_string()));
    }
    // All whitespace after `=`: the lazy `(.+?)` still takes the last whitespace character.
    let last = after_eq.chars().last()?;
    Some((key.to_string(), last.to_string()))
}

/// Go `bytes.TrimRight(s, "\r\n")`.
fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(s: &str) -> bool {
    s.trim_start().starts_with('#')
}

/// BuildKit `trimContinuationCharacter`: regex `([^E])E[ \t]*$|^E[ \t]*$` replaced by `$1`.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some("") => ("", false),
        Some(before) if before.ends_with(escape) => (line, true),
        Some(before) => (before, false),
        None => (line, true),
    }
}

/// Parses a Dockerfile into BuildKit's AST.
///
/// Never panics; see the crate documentation for the error cases.
pub fn parse(src: &[u8]) -> Result<ParseOutput, Error> {
    let mut lines = PhysicalLines::new(src);
    let mut directives = DirectiveScanner {
        done: false,
        escape: '\\',
        found: Vec::new(),
    };
    // Reserve the instruction list once (a rough guess of one instruction per 48 bytes,
    // capped): growing a vector of large nodes by doubling copied megabytes on big files.
    let mut root = Node {
        children: Vec::with_capacity((src.len() / 48).clamp(4, 1 << 16)),
        ..Node::default()
    };
    let mut comments: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    let mut current_line = 0usize;

    while let Some(raw) = lines.next_line()? {
        let mut raw: &str = &raw;
        if current_line == 0 {
            raw = raw.strip_prefix(UTF8_BOM).unwrap_or(raw);
        }
        if is_comment(raw) {
            let after_first = match raw.get(1..) {
                Some(s) => s.to_string(),
                None => String::from_utf8_lossy(raw.as_bytes().get(1..).unwrap_or_default())
                    .into_owned(),
            };
            let comment = after_first.trim();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_string());
            }
        }
        let untrimmed = trim_newline(raw);
        let token = untrimmed.trim_start();
        let indent = untrimmed.len() - token.len();
        let start_column = untrimmed.get(..indent).map_or(0, |i| i.chars().count()) + 1;
        let number = current_line + 1;
        if directives.scan(token, number)? {
            comments.pop();
        }
        let token = if is_comment(token) { "" } else { token };
        current_line += 1;

        let start_line = current_line;
        let escape = directives.escape;
        let (first, mut end_of_line) = trim_continuation(token, escape);
        if end_of_line && first.is_empty() {
            continue;
        }
        // A continued instruction usually spans a few lines: reserve once instead of growing
        // the string line by line.
        let mut logical = String::with_capacity(if end_of_line { first.len() } else { 256 });
        logical.push_str(first);
        let mut has_empty_continuation = false;
        while !end_of_line {
            let Some(raw) = lines.next_line()? else {
                break;
            };
            let token = trim_newline(&raw);
            directives.scan(token, current_line + 1)?;
            current_line += 1;
            if is_comment(&raw) {
                continue;
            }
            if token.trim_start().is_empty() {
                has_empty_continuation = true;
                continue;
            }
            let (part, eol) = trim_continuation(token, escape);
            logical.push_str(part);
            end_of_line = eol;
        }

        if has_empty_continuation {
            warnings.push(ParseWarning {
                rule: "NoEmptyContinuation",
                short: format!("Empty continuation line found in: {logical}"),
                detail: "Empty continuation lines will become errors in a future release"
                    .to_string(),
                url: "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/",
                line: current_line,
            });
        }

        let located = |e: Error, end: usize| e.or_at(Location::line(start_line)).with_end_line(end);
        let mut child =
            node_from_line(logical, escape, std::mem::take(&mut comments), 0).map_err(|e| {
                e.or_at(Location {
                    line: start_line,
                    column: start_column,
                })
                .with_end_line(current_line)
            })?;

        if can_contain_heredoc(&child) && child.original.contains("<<") {
            let heredocs =
                heredocs_from_line(&child.original).map_err(|e| located(e, current_line))?;
            for mut heredoc in heredocs {
                let mut terminated = false;
                while let Some(body_line) = lines.next_line()? {
                    current_line += 1;
                    let mut candidate = trim_newline(&body_line);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(&body_line);
                }
                if !terminated {
                    return Err(located(
                        Error::new(ErrorKind::UnterminatedHeredoc),
                        current_line,
                    ));
                }
                child.heredocs.push(heredoc);
            }
        }

        child.start_line = start_line;
        child.start_column = start_column;
        child.end_line = current_line;
        if root.children.is_empty() {
            root.start_line = start_line;
        }
        root.end_line = current_line;
        root.children.push(child);
    }

    if root.children.is_empty() {
        return Err(Error::new(ErrorKind::NoInstructions));
    }
    Ok(ParseOutput {
        root,
        escape: directives.escape,
        directives: directives.found,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rule() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("\\  ", '\\'), ("", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a`", '`'), ("a", false));
        assert_eq!(trim_continuation("a\\", '`'), ("a\\", true));
    }

    #[test]
    fn directive_regex() {
        assert_eq!(
            match_directive("escape = `"),
            Some(("escape".into(), "`".into()))
        );
        assert_eq!(
            match_directive("syntax=a b  "),
            Some(("syntax".into(), "a b".into()))
        );
        assert_eq!(
            match_directive("escape= "),
            Some(("escape".into(), " ".into()))
        );
        assert_eq!(match_directive("escape="), None);
        assert_eq!(match_directive("1x=y"), None);
    }

    #[test]
    fn directives_only_at_top() {
        let out = parse(b"# escape=`\n# syntax=x\nFROM a\n# escape=\\\n").unwrap();
        assert_eq!(out.escape, '`');
        assert_eq!(out.directives.len(), 2);
        let err = parse(b"# escape=`\n# escape=`\nFROM a").unwrap_err();
        assert_eq!(
            err.to_string(),
            "2:1: only one escape parser directive can be used"
        );
    }

    #[test]
    fn line_length_limit() {
        let mut ok = b"RUN ".to_vec();
        ok.resize(MAX_LINE_BYTES, b'a');
        assert!(parse(&ok).is_ok());
        ok.push(b'a');
        let err = parse(&ok).unwrap_err();
        assert_eq!(err.kind, ErrorKind::LineTooLong { max: 65535 });
    }
}
