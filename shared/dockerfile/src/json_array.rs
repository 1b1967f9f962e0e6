//! Decoding of the JSON (exec) form, matching Go's `encoding/json` into `[]any` (spec §4).
//!
//! Three outcomes matter: a valid array of strings, a valid array holding something else (a
//! hard error in BuildKit), and anything that is not valid JSON (silently shell form).
//! The validator is iterative with Go's nesting limit, so deep input cannot overflow the stack.

/// Result of trying to read an exec-form array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonArray {
    /// A valid JSON array whose elements are all strings.
    Strings(Vec<String>),
    /// Valid JSON, but some element is not a string.
    NotStrings,
    /// Not valid JSON (or not an array): fall back to shell form.
    Invalid,
}

/// Go's `encoding/json` maximum nesting depth.
const MAX_DEPTH: usize = 10_000;

/// Parses `text` (already trimmed of leading whitespace, starting with `[`).
pub(crate) fn parse_string_array(text: &str) -> JsonArray {
    let mut p = JsonReader {
        b: text.as_bytes(),
        s: text,
        pos: 0,
    };
    match p.top_level() {
        Ok(Some(v)) => JsonArray::Strings(v),
        Ok(None) => JsonArray::NotStrings,
        Err(()) => JsonArray::Invalid,
    }
}

struct JsonReader<'a> {
    b: &'a [u8],
    s: &'a str,
    pos: usize,
}

type Parse<T> = Result<T, ()>;

impl JsonReader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Parse<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    /// Returns `Some(strings)` when every element is a string, `None` otherwise.
    fn top_level(&mut self) -> Parse<Option<Vec<String>>> {
        self.ws();
        self.expect(b'[')?;
        let mut out = Vec::new();
        let mut all_strings = true;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.ws();
                if self.peek() == Some(b'"') {
                    let s = self.string()?;
                    out.push(s);
                } else {
                    all_strings = false;
                    self.skip_value()?;
                }
                self.ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(()),
                }
            }
        }
        self.ws();
        if self.pos != self.b.len() {
            return Err(());
        }
        Ok(all_strings.then_some(out))
    }

    fn literal(&mut self, word: &[u8]) -> Parse<()> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(())
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Parse<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(());
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(());
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Parse<u32> {
        let h = self.b.get(self.pos..self.pos + 4).ok_or(())?;
        let s = std::str::from_utf8(h).map_err(|_| ())?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(());
        }
        let v = u32::from_str_radix(s, 16).map_err(|_| ())?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Parse<String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(self.s.get(start..self.pos).ok_or(())?);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let e = self.peek().ok_or(())?;
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let u = self.hex4()?;
                            if (0xD800..0xE000).contains(&u) {
                                // Try to pair with a following \uDC00-\uDFFF.
                                let save = self.pos;
                                let mut paired = None;
                                if u < 0xDC00 && self.b.get(self.pos..self.pos + 2) == Some(b"\\u")
                                {
                                    self.pos += 2;
                                    if let Ok(lo) = self.hex4()
                                        && (0xDC00..0xE000).contains(&lo)
                                    {
                                        paired = char::from_u32(
                                            0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00),
                                        );
                                    }
                                }
                                match paired {
                                    Some(c) => out.push(c),
                                    None => {
                                        self.pos = save;
                                        out.push('\u{fffd}');
                                    }
                                }
                            } else {
                                out.push(char::from_u32(u).unwrap_or('\u{fffd}'));
                            }
                        }
                        _ => return Err(()),
                    }
                }
                _ => return Err(()),
            }
        }
    }

    /// Validates one JSON value of any kind without recursion.
    fn skip_value(&mut self) -> Parse<()> {
        // Open containers: b'[' or b'{'. The enclosing top-level array is depth 1.
        let mut stack: Vec<u8> = Vec::new();
        loop {
            // Expect a value.
            self.ws();
            let mut pushed = false;
            match self.peek() {
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        stack.push(b'[');
                        pushed = true;
                    }
                }
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        stack.push(b'{');
                        pushed = true;
                        self.string()?;
                        self.ws();
                        self.expect(b':')?;
                    }
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(()),
            }
            if stack.len() + 1 > MAX_DEPTH {
                return Err(());
            }
            if pushed {
                continue;
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(&open) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if open == b'{' {
                            self.ws();
                            self.string()?;
                            self.ws();
                            self.expect(b':')?;
                        }
                        break;
                    }
                    Some(b']') if open == b'[' => {
                        self.pos += 1;
                        stack.pop();
                    }
                    Some(b'}') if open == b'{' => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ => return Err(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_string_arrays() {
        assert_eq!(parse_string_array("[]"), JsonArray::Strings(vec![]));
        assert_eq!(
            parse_string_array(r#"[ "a", "b" ]"#),
            JsonArray::Strings(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            parse_string_array(r#"["\" \\ \/ \b \f \n \r \t \u0000 \ud83d\ude00 \ud800"]"#),
            JsonArray::Strings(vec![
                "\" \\ / \u{8} \u{c} \n \r \t \u{0} 😀 \u{fffd}".into()
            ])
        );
    }

    #[test]
    fn rejects_non_strings_and_invalid() {
        assert_eq!(parse_string_array(r#"["a", ["b"]]"#), JsonArray::NotStrings);
        assert_eq!(
            parse_string_array(r#"[1, {"a": [true, null]}]"#),
            JsonArray::NotStrings
        );
        assert_eq!(parse_string_array("['a']"), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"["a""#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"["a",]"#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"["a"] x"#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"["c:\windows"]"#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"[01]"#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"[{"a" 1}]"#), JsonArray::Invalid);
    }

    #[test]
    fn deep_nesting_is_iterative() {
        let deep = format!("[{}{}]", "[".repeat(20_000), "]".repeat(20_000));
        assert_eq!(parse_string_array(&deep), JsonArray::Invalid);
        let ok = format!("[{}{}]", "[".repeat(500), "]".repeat(500));
        assert_eq!(parse_string_array(&ok), JsonArray::NotStrings);
    }
}
