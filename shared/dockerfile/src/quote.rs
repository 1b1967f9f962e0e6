//! Go-compatible string quoting (`strconv.Quote` and `%q` of a `[]string`), used by the AST
//! dump and in error messages that BuildKit formats with `%q`.

/// Quotes `s` like Go's `strconv.Quote`: printable characters (non-ASCII included) are kept,
/// `"` and `\` are escaped, control characters use `\a \b \f \n \r \t \v`, `\xNN`, `\uNNNN`
/// or `\UNNNNNNNN`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_raw_byte(c) => out.push_str(&format!("\\x{:02x}", c as u32 - RAW_BYTE_BASE)),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Bytes that are not valid UTF-8 are kept in decoded text as one character each, in the
/// private-use range U+10FF80..=U+10FFFF: `RAW_BYTE_BASE + byte`. BuildKit's strings are Go
/// byte strings and accept any bytes; this keeps such a Dockerfile parseable, lets the dump
/// print the byte as `\xNN` exactly like Go's `strconv.Quote`, and [`encode_bytes`] restores
/// the original bytes (for a RUN command or a COPY heredoc body).
pub const RAW_BYTE_BASE: u32 = 0x10FF00;

fn is_raw_byte(c: char) -> bool {
    (RAW_BYTE_BASE + 0x80..=RAW_BYTE_BASE + 0xFF).contains(&(c as u32))
}

/// Decodes bytes as UTF-8, mapping each byte of an invalid sequence to its stand-in
/// character (see [`RAW_BYTE_BASE`]). Valid UTF-8 is borrowed unchanged.
pub fn decode_bytes(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.into();
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.extend(char::from_u32(RAW_BYTE_BASE + u32::from(*b)));
        }
    }
    out.into()
}

/// The bytes a decoded string stands for: the inverse of [`decode_bytes`].
pub fn encode_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        if is_raw_byte(c) {
            out.extend(u8::try_from(c as u32 - RAW_BYTE_BASE));
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

/// Formats a string slice like Go's `fmt.Sprintf("%q", []string{...})`: `["a" "b"]`.
pub fn go_quote_slice<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&go_quote(item.as_ref()));
    }
    out.push(']');
    out
}

/// Approximates Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the
/// ASCII space. Without Unicode category tables we reject the known non-printable classes:
/// controls, separators other than U+0020, format characters, private use and noncharacters.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() || u & 0xFFFE == 0xFFFE {
        return false;
    }
    !matches!(u,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        | 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD
        | 0xFDD0..=0xFDEF | 0xFFFE | 0xFFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\u{7f}"), r#""\x00\x7f""#);
        assert_eq!(go_quote("♥ ☃"), "\"♥ ☃\"");
        assert_eq!(go_quote("\u{a0}"), r#""\u00a0""#);
        assert_eq!(
            go_quote("\t\n\r\u{b}\u{c}\u{8}\u{7}"),
            r#""\t\n\r\v\f\b\a""#
        );
        assert_eq!(go_quote("\u{feff}"), r#""\ufeff""#);
        assert_eq!(go_quote("\u{e0001}"), r#""\U000e0001""#);
        assert_eq!(go_quote("\u{10ff00}"), r#""\U0010ff00""#);
        // U+10FF80..=U+10FFFF stand for raw bytes (decode_bytes).
        assert_eq!(go_quote("\u{10ffff}"), r#""\xff""#);
    }

    #[test]
    fn quotes_slices() {
        assert_eq!(go_quote_slice(&["--a=b", "--c"]), r#"["--a=b" "--c"]"#);
        assert_eq!(go_quote_slice::<&str>(&[]), "[]");
    }
}
