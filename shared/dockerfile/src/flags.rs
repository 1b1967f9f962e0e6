//! Instruction flags (BuildKit `BFlags`, spec §2 "Flag semantics").

use std::collections::BTreeMap;

use crate::error::{Error, ErrorKind, Location};
use crate::suggest::closest;

/// The type of a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--x`, `--x=true|false`.
    Bool,
    /// `--x=value`, once.
    String,
    /// `--x=value`, repeatable.
    Strings,
}

/// Values of the flags that were given.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    bools: BTreeMap<&'static str, bool>,
    strings: BTreeMap<&'static str, Vec<String>>,
}

impl Flags {
    /// The bool flag's value, `None` when not given.
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }

    /// A single-valued string flag.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).and_then(|v| v.last().cloned())
    }

    /// All values of a repeatable flag.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.strings.get(name).cloned().unwrap_or_default()
    }
}

/// Column (1-based, characters) of `needle` in the first line of `original`, else 1.
pub(crate) fn column_of(original: &str, needle: &str) -> usize {
    let first = original.lines().next().unwrap_or_default();
    first
        .find(needle)
        .map_or(1, |i| first.get(..i).map_or(1, |p| p.chars().count() + 1))
}

/// Parses raw flag words against the accepted `specs`. `line` and `original` place errors.
pub(crate) fn parse_flags(
    raw: &[String],
    specs: &[(&'static str, FlagKind)],
    line: usize,
    column_offset: usize,
    original: &str,
) -> Result<Flags, Error> {
    let mut flags = Flags::default();
    let mut used: Vec<&'static str> = Vec::new();
    for word in raw {
        let at = |needle: &str| Location {
            line,
            column: column_of(original, needle) + column_offset,
        };
        let Some(body) = word.strip_prefix("--") else {
            return Err(Error::at(
                ErrorKind::FlagSyntax { arg: word.clone() },
                at(word),
            ));
        };
        if body.is_empty() {
            return Ok(flags);
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(spec_name, kind)) = specs.iter().find(|(n, _)| *n == name) else {
            let suggestion = closest(name, specs.iter().map(|(n, _)| *n)).map(str::to_string);
            return Err(Error::at(
                ErrorKind::UnknownFlag {
                    name: name.to_string(),
                    suggestion,
                },
                at(word),
            ));
        };
        if used.contains(&spec_name) && kind != FlagKind::Strings {
            return Err(Error::at(
                ErrorKind::DuplicateFlag {
                    name: name.to_string(),
                },
                at(word),
            ));
        }
        used.push(spec_name);
        match kind {
            FlagKind::Bool => {
                let v = match value {
                    None => true,
                    Some("") => {
                        return Err(Error::at(
                            ErrorKind::MissingFlagValue {
                                name: name.to_string(),
                            },
                            at(word),
                        ));
                    }
                    Some(v) if v.eq_ignore_ascii_case("true") => true,
                    Some(v) if v.eq_ignore_ascii_case("false") => false,
                    Some(v) => {
                        return Err(Error::at(
                            ErrorKind::InvalidBoolFlag {
                                name: name.to_string(),
                                value: v.to_string(),
                            },
                            at(word),
                        ));
                    }
                };
                flags.bools.insert(spec_name, v);
            }
            FlagKind::String | FlagKind::Strings => {
                let Some(v) = value else {
                    return Err(Error::at(
                        ErrorKind::MissingFlagValue {
                            name: name.to_string(),
                        },
                        at(word),
                    ));
                };
                flags
                    .strings
                    .entry(spec_name)
                    .or_default()
                    .push(v.to_string());
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[(&str, FlagKind)] = &[
        ("link", FlagKind::Bool),
        ("from", FlagKind::String),
        ("exclude", FlagKind::Strings),
    ];

    fn run(words: &[&str]) -> Result<Flags, Error> {
        let raw: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        parse_flags(&raw, SPECS, 1, 0, "COPY x y")
    }

    #[test]
    fn parses_kinds() {
        let f = run(&["--link=FALSE", "--from=a", "--exclude=x", "--exclude=y"]).unwrap();
        assert_eq!(f.bool("link"), Some(false));
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert_eq!(f.strings("exclude"), vec!["x", "y"]);
    }

    #[test]
    fn rejects_bad_flags() {
        let msg = |w: &[&str]| run(w).unwrap_err().kind.to_string();
        assert_eq!(
            msg(&["--frm=a"]),
            "unknown flag: --frm (did you mean --from?)"
        );
        assert_eq!(
            msg(&["--from=a", "--from=b"]),
            "duplicate flag specified: --from"
        );
        assert_eq!(msg(&["--link="]), "missing a value on flag: --link");
        assert_eq!(
            msg(&["--link=yes"]),
            "expecting boolean value for flag --link, not: yes"
        );
        assert_eq!(msg(&["--from"]), "missing a value on flag: --from");
        assert_eq!(msg(&["-x"]), "arg should start with -- : -x");
    }
}
