//! An error and its causes as one line a person reads: each cause once.
//!
//! Transport errors say little at the top ("transport error") and what happened further down
//! ("dns error: failed to lookup address information"); some causes repeat their parent's
//! text. Every message that names a failure below it is made here.

use std::error::Error;

/// `first`, then each of `next` and its sources that `first` and the causes before it do not
/// already contain, joined by ": " (`first` empty: the causes alone).
pub fn join_causes(first: String, mut next: Option<&(dyn Error + 'static)>) -> String {
    let mut out = first;
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// `e` and its sources, each said once.
pub fn causes(e: &(dyn Error + 'static)) -> String {
    join_causes(e.to_string(), e.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let e = E(
            "transport error",
            Some(Box::new(E(
                "dns error",
                Some(Box::new(E(
                    "dns error",
                    Some(Box::new(E("no such name", None))),
                ))),
            ))),
        );
        assert_eq!(causes(&e), "transport error: dns error: no such name");
        assert_eq!(
            join_causes(String::new(), Some(&e)),
            "transport error: dns error: no such name"
        );
    }
}
