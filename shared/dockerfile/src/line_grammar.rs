//! Turning one logical line into an instruction node: keyword/flag splitting (spec §2), the
//! per-instruction argument grammars (§3), the JSON form (§4) and heredoc markers (§5.1).

use std::borrow::Cow;

use crate::ast::{Attributes, Heredoc, Node, go_lower};
use crate::error::{Error, ErrorKind};
use crate::json_array::{JsonArray, parse_string_array};
use crate::shell::{Lexer, NoVariables};

/// ONBUILD may wrap an instruction; chaining is rejected by the instruction layer, but the
/// parser must still stop somewhere.
const MAX_ONBUILD_DEPTH: usize = 8;

/// Go `unicode.IsSpace` applied to a single byte converted to a rune (BuildKit's byte loops).
fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xA0)
}

/// The regex `[\t\v\f\r ]`.
fn is_token_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// `regexp.MustCompile("[\t\v\f\r ]+").Split(s, n)` for n = 2 or n = -1 (`limit` None).
fn split_token_whitespace(s: &str, limit: Option<usize>) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        if limit.is_some_and(|l| out.len() + 1 >= l) {
            out.push(rest);
            break;
        }
        match rest.find(is_token_whitespace) {
            Some(start) => {
                let after = &rest[start..];
                let run = after
                    .find(|c: char| !is_token_whitespace(c))
                    .unwrap_or(after.len());
                out.push(&rest[..start]);
                rest = &after[run..];
            }
            None => {
                out.push(rest);
                break;
            }
        }
    }
    out
}

fn slice_lossy(s: &str, from: usize) -> Cow<'_, str> {
    match s.get(from..) {
        Some(t) => Cow::Borrowed(t),
        None => String::from_utf8_lossy(s.as_bytes().get(from..).unwrap_or_default()),
    }
}

/// Splits a logical line into keyword, raw flags and the trimmed argument string.
pub(crate) fn split_command(line: &str) -> (&str, Vec<String>, Cow<'_, str>) {
    let trimmed = line.trim();
    let (cmd, rest) = match trimmed.find(is_token_whitespace) {
        Some(start) => {
            let after = trimmed.get(start..).unwrap_or_default();
            let run = after
                .find(|c: char| !is_token_whitespace(c))
                .unwrap_or(after.len());
            (
                trimmed.get(..start).unwrap_or_default(),
                Some(after.get(run..).unwrap_or_default()),
            )
        }
        None => (trimmed, None),
    };
    let (args, flags) = match rest {
        Some(rest) => extract_builder_flags(rest),
        None => (Cow::Borrowed(""), Vec::new()),
    };
    let args = match args {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
    };
    (cmd, flags, args)
}

/// BuildKit `extractBuilderFlags`: reads leading `--flag` words. Works byte by byte like the
/// Go code (each byte becomes the rune of the same value), with `\` as the escape.
pub(crate) fn extract_builder_flags(line: &str) -> (Cow<'_, str>, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let b = line.as_bytes();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut pos = 0usize;
    while pos <= b.len() {
        let at_end = pos == b.len();
        let mut ch = b.get(pos).copied().unwrap_or(0);
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_space_byte(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || b.get(pos + 1) != Some(&b'-') {
                return (slice_lossy(line, pos), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if is_space_byte(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (slice_lossy(line, pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == b'\\' {
                if pos + 1 == b.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = b.get(pos).copied().unwrap_or(0);
                word.push(ch as char);
                pos += 1;
                continue;
            }
            // Copy the run of plain ASCII bytes up to the next space, quote or escape at once
            // (non-ASCII bytes go one by one: each byte becomes the rune of the same value).
            let run = b[pos..]
                .iter()
                .position(|&c| {
                    !c.is_ascii() || is_space_byte(c) || matches!(c, b'\'' | b'"' | b'\\')
                })
                .unwrap_or(b.len() - pos);
            if run == 0 {
                word.push(ch as char);
                pos += 1;
            } else {
                word.push_str(line.get(pos..pos + run).unwrap_or_default());
                pos += run;
            }
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == b'\\' {
            if pos + 1 == b.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = b.get(pos).copied().unwrap_or(0);
        }
        word.push(ch as char);
        pos += 1;
    }
    (Cow::Borrowed(""), words)
}

/// BuildKit `parseWords`: quote-aware splitting that keeps quotes and escapes.
///
/// Every word BuildKit builds is a contiguous slice of the input (quotes and escapes are
/// kept; only a final escape character is dropped), so words are sliced, not rebuilt. The
/// scan goes byte by byte over ASCII and decodes a character only for non-ASCII bytes
/// (quotes, the escape character and ASCII blanks are all single bytes).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<&str> {
    let bytes = rest.as_bytes();
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<u8> = None;
    // The escape character as a byte when it is ASCII (`\` or `` ` ``); a non-ASCII escape
    // never matches a byte and is compared as a character below.
    let escape_byte = u8::try_from(escape).ok().filter(u8::is_ascii);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // (character, its length): ASCII bytes stand for themselves.
        let (is_blank, is_escape, width) = if b.is_ascii() {
            (
                b.is_ascii_whitespace() || b == 0x0b,
                Some(b) == escape_byte,
                1,
            )
        } else {
            let c = rest
                .get(i..)
                .and_then(|t| t.chars().next())
                .unwrap_or('\u{fffd}');
            (c.is_whitespace(), c == escape, c.len_utf8())
        };
        let at_last = i + width >= bytes.len();
        match quote {
            None => {
                let Some(from) = start else {
                    if is_blank {
                        i += width;
                        continue;
                    }
                    start = Some(i);
                    if b == b'\'' || b == b'"' {
                        quote = Some(b);
                    } else if is_escape {
                        if at_last {
                            start = None;
                            break;
                        }
                        i += width;
                        i += char_width(rest, i);
                        continue;
                    }
                    i += width;
                    continue;
                };
                if is_blank {
                    push_word(&mut words, rest, from, i);
                    start = None;
                } else if b == b'\'' || b == b'"' {
                    quote = Some(b);
                } else if is_escape {
                    if at_last {
                        push_word(&mut words, rest, from, i);
                        start = None;
                        break;
                    }
                    i += width;
                    i += char_width(rest, i);
                    continue;
                }
            }
            Some(q) => {
                if b == q {
                    quote = None;
                } else if is_escape && q != b'\'' {
                    if at_last {
                        if let Some(from) = start {
                            push_word(&mut words, rest, from, i);
                        }
                        start = None;
                        break;
                    }
                    i += width;
                    i += char_width(rest, i);
                    continue;
                }
            }
        }
        i += width;
    }
    if let Some(from) = start {
        push_word(&mut words, rest, from, rest.len());
    }
    words
}

/// Length in bytes of the character starting at `i` (0 at the end).
fn char_width(s: &str, i: usize) -> usize {
    s.get(i..)
        .and_then(|t| t.chars().next())
        .map_or(0, char::len_utf8)
}

fn push_word<'a>(words: &mut Vec<&'a str>, rest: &'a str, from: usize, to: usize) {
    if let Some(w) = rest.get(from..to).filter(|w| !w.is_empty()) {
        words.push(w);
    }
}

fn arg(value: impl Into<String>) -> Node {
    Node {
        value: value.into(),
        ..Node::default()
    }
}

type Grammar = Result<(Vec<Node>, Attributes), Error>;

fn plain(nodes: Vec<Node>) -> Grammar {
    Ok((nodes, Attributes::default()))
}

fn parse_name_val(rest: &str, key: &'static str, escape: char) -> Grammar {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return plain(Vec::new());
    };
    if !first.contains('=') {
        let parts = split_token_whitespace(rest, Some(2));
        let [k, v] = parts.as_slice() else {
            return Err(Error::new(ErrorKind::MissingValue { instruction: key }));
        };
        return plain(vec![arg(*k), arg(*v), arg("")]);
    }
    let mut nodes = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(Error::new(ErrorKind::MissingEquals {
                word: word.to_string(),
            }));
        };
        nodes.push(arg(k));
        nodes.push(arg(v));
        nodes.push(arg("="));
    }
    plain(nodes)
}

fn parse_strings_whitespace_delimited(rest: &str) -> Vec<Node> {
    if rest.is_empty() {
        return Vec::new();
    }
    split_token_whitespace(rest, None)
        .into_iter()
        .map(arg)
        .collect()
}

fn parse_json(rest: &str) -> Option<Result<Vec<Node>, Error>> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return None;
    }
    match parse_string_array(rest) {
        JsonArray::Strings(items) => Some(Ok(items.into_iter().map(arg).collect())),
        JsonArray::NotStrings => Some(Err(Error::new(ErrorKind::JsonNotStringArray))),
        JsonArray::Invalid => None,
    }
}

const JSON: Attributes = Attributes { json: true };

fn parse_maybe_json(rest: &str) -> Grammar {
    if rest.is_empty() {
        return plain(Vec::new());
    }
    match parse_json(rest) {
        Some(Ok(nodes)) => Ok((nodes, JSON)),
        Some(Err(e)) => Err(e),
        None => plain(vec![arg(rest)]),
    }
}

fn parse_maybe_json_to_list(rest: &str) -> Grammar {
    match parse_json(rest) {
        Some(Ok(nodes)) => Ok((nodes, JSON)),
        Some(Err(e)) => Err(e),
        None => plain(parse_strings_whitespace_delimited(rest)),
    }
}

fn parse_health_config(rest: &str) -> Grammar {
    let b = rest.as_bytes();
    let sep = b.iter().position(|c| is_space_byte(*c)).unwrap_or(b.len());
    let next = b
        .iter()
        .skip(sep)
        .position(|c| !is_space_byte(*c))
        .map_or(b.len(), |p| p + sep);
    if sep == 0 {
        return plain(Vec::new());
    }
    let typ = match rest.get(..sep) {
        Some(t) => t.to_string(),
        None => String::from_utf8_lossy(b.get(..sep).unwrap_or_default()).into_owned(),
    };
    let cmd_text = slice_lossy(rest, next);
    let (cmd, attrs) = parse_maybe_json(&cmd_text)?;
    let mut nodes = vec![arg(typ)];
    nodes.extend(cmd);
    Ok((nodes, attrs))
}

/// Lower-case keywords with a grammar.
const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The lower-case keyword an ASCII command word spells, if it is one with a grammar.
fn ascii_keyword(cmd: &str) -> Option<&'static str> {
    let mut buf = [0u8; 11];
    let lower = buf.get_mut(..cmd.len())?;
    lower.copy_from_slice(cmd.as_bytes());
    lower.make_ascii_lowercase();
    KEYWORDS.iter().copied().find(|k| k.as_bytes() == lower)
}

/// Parses one logical line into an instruction node (BuildKit `newNodeFromLine`).
pub(crate) fn node_from_line(
    line: String,
    escape: char,
    comments: Vec<String>,
    depth: usize,
) -> Result<Node, Error> {
    let (cmd, flags, args) = split_command(&line);
    let keyword: Cow<'_, str> = match ascii_keyword(cmd) {
        Some(k) => Cow::Borrowed(k),
        None if cmd.is_ascii() => Cow::Borrowed(""),
        None => Cow::Owned(go_lower(cmd)),
    };
    let (next, attributes) = match keyword.as_ref() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(&args)?,
        "run" | "cmd" | "entrypoint" | "shell" => parse_maybe_json(&args)?,
        "from" | "expose" => (
            parse_strings_whitespace_delimited(&args),
            Attributes::default(),
        ),
        "env" => parse_name_val(&args, "ENV", escape)?,
        "label" => parse_name_val(&args, "LABEL", escape)?,
        "arg" => (
            parse_words(&args, escape).into_iter().map(arg).collect(),
            Attributes::default(),
        ),
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            let nodes = if args.is_empty() {
                Vec::new()
            } else {
                vec![arg(args)]
            };
            (nodes, Attributes::default())
        }
        "healthcheck" => parse_health_config(&args)?,
        "onbuild" => {
            if args.is_empty() {
                (Vec::new(), Attributes::default())
            } else {
                if depth >= MAX_ONBUILD_DEPTH {
                    return Err(Error::new(ErrorKind::OnbuildTooDeep));
                }
                let child = node_from_line(args.into_owned(), escape, Vec::new(), depth + 1)?;
                (
                    vec![Node {
                        children: vec![child],
                        ..Node::default()
                    }],
                    Attributes::default(),
                )
            }
        }
        _ => (vec![arg("")], Attributes::default()),
    };
    let value = cmd.to_string();
    Ok(Node {
        value,
        next,
        attributes,
        original: line,
        flags,
        prev_comment: comments,
        ..Node::default()
    })
}

/// Whether heredocs are looked for on this node (RUN/COPY/ADD, also inside ONBUILD, not JSON).
pub(crate) fn can_contain_heredoc(node: &Node) -> bool {
    let mut node = node;
    if node.value.eq_ignore_ascii_case("onbuild")
        && let Some(child) = node.next.first().and_then(|n| n.children.first())
    {
        node = child;
    }
    ["add", "copy", "run"]
        .iter()
        .any(|k| node.value.eq_ignore_ascii_case(k))
        && !node.attributes.json
}

/// Finds the heredoc markers of a logical line (BuildKit `heredocsFromLine`).
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, Error> {
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let mut docs = Vec::new();
    if !line.contains(['$', '\'', '"', '\\']) {
        // Nothing for the lexer to expand, unquote or unescape: its words are the blank-
        // separated runs, except that `<<` keeps the spaces and tabs after it attached.
        for word in plain_heredoc_words(line) {
            if let Some(doc) = parse_heredoc(word)? {
                docs.push(doc);
            }
        }
        return Ok(docs);
    }
    let words = lexer.process_words(line, &NoVariables).unwrap_or_default();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// The words `Lexer::process_words` makes of a line without `$`, quotes or `\`.
fn plain_heredoc_words(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '<' && chars.peek().is_some_and(|&(_, n)| n == '<') {
            chars.next();
            while chars.next_if(|&(_, n)| n == ' ' || n == '\t').is_some() {}
            start.get_or_insert(i);
        } else if c.is_whitespace() {
            if let Some(from) = start.take() {
                words.push(&line[from..i]);
            }
        } else {
            start.get_or_insert(i);
        }
    }
    if let Some(from) = start {
        words.push(&line[from..]);
    }
    words
}

/// Parses one word as a heredoc marker (`^(\d*)<<(-?)\s*([^<]*)$`), BuildKit `ParseHeredoc`.
pub fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, Error> {
    let digits = src.bytes().take_while(u8::is_ascii_digit).count();
    let (fd_text, after) = src.split_at(digits);
    let Some(after) = after.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.contains('<') {
        return Ok(None);
    }
    let rest = rest.trim_start_matches(['\t', '\n', '\u{c}', '\r', ' ']);
    if rest.is_empty() {
        return Ok(None);
    }
    let file_descriptor = fd_text.parse::<u64>().unwrap_or(0);
    let mut lexer = Lexer {
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let words = lexer.process_words(rest, &NoVariables)?;
    let [word] = words.as_slice() else {
        return Ok(None);
    };
    lexer.raw_quotes = true;
    let words_raw = lexer.process_words(rest, &NoVariables)?;
    let [word_raw] = words_raw.as_slice() else {
        return Err(Error::invalid(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        )));
    };
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Ok(Some(Heredoc {
        name: word.clone(),
        file_descriptor,
        expand: quotes(word) == quotes(word_raw),
        chomp,
        content: String::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_keep_blanks_after_heredoc_markers() {
        assert_eq!(
            plain_heredoc_words("RUN  cat <<  EOF >x a<<b <<<c\t<<-\tE"),
            vec!["RUN", "cat", "<<  EOF", ">x", "a<<b", "<<<c", "<<-", "E"]
        );
        assert_eq!(plain_heredoc_words("RUN << "), vec!["RUN", "<< "]);
    }

    #[test]
    fn splits_flags() {
        let (cmd, flags, args) = split_command("COPY --from=a --chown='x y' -- b c");
        assert_eq!(cmd, "COPY");
        assert_eq!(flags, vec!["--from=a", "--chown=x y"]);
        assert_eq!(args, "b c");
        let (_, flags, args) = split_command("CMD --doit -- [ ]");
        assert_eq!(flags, vec!["--doit"]);
        assert_eq!(args, "[ ]");
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"abc="123 456" def"#, '\\'),
            vec![r#"abc="123 456""#, "def"]
        );
        assert_eq!(parse_words(r"a\ b c\", '\\'), vec![r"a\ b", "c"]);
    }

    #[test]
    fn heredoc_markers() {
        let h = parse_heredoc("<<EOF").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("EOF", true, false));
        let h = parse_heredoc("<<-'EOF'").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("EOF", false, true));
        let h = parse_heredoc("3<<eo'f'").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.expand, h.file_descriptor),
            ("eof", false, 3)
        );
        let h = parse_heredoc(r"<<eo\'f").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand), ("eo'f", true));
        assert!(parse_heredoc("<<").unwrap().is_none());
        assert!(parse_heredoc("<EOF").unwrap().is_none());
        assert!(parse_heredoc("<<<EOF").unwrap().is_none());
        assert!(parse_heredoc("<<'EOF").is_err());
    }
}
