//! A caller's input as an error message quotes it: whole when short, else its start and how
//! much was left out. A digest or a name of a megabyte would otherwise come back in the
//! `grpc-message` header (twice, for some), past what a client's header limits accept.

/// How many characters of an input an error quotes.
pub const QUOTED_CHARS: usize = 200;

/// `input` whole when it has at most [`QUOTED_CHARS`] characters; else its first ones and
/// `…(N more bytes)`.
pub fn clip(input: &str) -> String {
    match input.char_indices().nth(QUOTED_CHARS) {
        None => input.to_string(),
        Some((cut, _)) => format!("{}…({} more bytes)", &input[..cut], input.len() - cut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_whole_and_long_input_is_cut_on_a_character() {
        assert_eq!(clip("sha256:ab"), "sha256:ab");
        let long = "é".repeat(1000);
        let clipped = clip(&long);
        assert!(clipped.starts_with(&"é".repeat(QUOTED_CHARS)));
        assert!(clipped.ends_with("…(1600 more bytes)"), "{clipped}");
    }
}
