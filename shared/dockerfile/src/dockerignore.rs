//! `.dockerignore` reading and matching (spec §11; moby `ignorefile` + `patternmatcher`).

use serde::Serialize;

use crate::error::{Error, ErrorKind};

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnorePattern {
    /// The cleaned pattern text without `!`.
    pub text: String,
    /// A `!` exception (re-includes matches).
    pub exclusion: bool,
    #[serde(skip)]
    tokens: Vec<Tok>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Literal(char),
    /// `*`: `[^/]*`.
    Star,
    /// `?`: `[^/]`.
    Any,
    /// `**` followed by `/`: `(.*/)?`.
    AnyDirs,
    /// `**` elsewhere: `.*`.
    AnyRun,
    /// `[...]` class.
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DockerIgnore {
    /// Patterns in file order.
    pub patterns: Vec<IgnorePattern>,
}

/// Go `filepath.Clean` for `/`-separated paths.
fn clean(p: &str) -> String {
    crate::dockerfile::clean_path(p)
}

impl DockerIgnore {
    /// Reads patterns (`ignorefile.ReadAll` + `patternmatcher.New`): `#` comments at column 0,
    /// trimming, `!` exceptions, cleaning, leading `/` removal.
    pub fn parse(text: &str) -> Result<DockerIgnore, Error> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let mut exclusion = false;
            if let Some(rest) = pattern.strip_prefix('!') {
                exclusion = true;
                pattern = rest.trim();
            }
            let mut cleaned = String::new();
            if !pattern.is_empty() {
                cleaned = clean(pattern);
                if cleaned.len() > 1 && cleaned.starts_with('/') {
                    cleaned.remove(0);
                }
            }
            if exclusion && cleaned.is_empty() {
                return Err(Error::new(ErrorKind::InvalidPattern {
                    message: "illegal exclusion pattern: \"!\"".to_string(),
                }));
            }
            patterns.push(IgnorePattern::compile(&cleaned, exclusion)?);
        }
        Ok(DockerIgnore { patterns })
    }

    /// Builds a matcher from already-read pattern strings (a leading `!` marks exceptions).
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<DockerIgnore, Error> {
        let joined: Vec<&str> = patterns.iter().map(AsRef::as_ref).collect();
        DockerIgnore::parse(&joined.join("\n"))
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded
    /// (`MatchesOrParentMatches`).
    pub fn matches(&self, path: &str) -> bool {
        let path = clean(path);
        let path = path.trim_start_matches('/');
        let parents: Vec<&str> = path
            .match_indices('/')
            .map(|(i, _)| path.get(..i).unwrap_or_default())
            .collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.matches(path);
            if !m && !parents.is_empty() {
                m = parents.iter().any(|parent| p.matches(parent));
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether any pattern is an exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether a walker may skip the excluded directory `dir` entirely: only when no
    /// exception could re-include something below it. Exceptions starting with a wildcard
    /// make this conservative (docker/cli#2919).
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        if !self.matches(dir) {
            return false;
        }
        let dir = clean(dir);
        let prefix = format!("{}/", dir.trim_start_matches('/'));
        !self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let starts_wild = p.text.starts_with(['*', '?', '[']);
            let with_slash = format!("{}/", p.text);
            starts_wild
                || with_slash.starts_with(&prefix)
                || p.text.contains(['*', '?', '[']) && prefix.starts_with(literal_prefix(&p.text))
        })
    }
}

fn literal_prefix(p: &str) -> &str {
    let end = p.find(['*', '?', '[', '\\']).unwrap_or(p.len());
    p.get(..end).unwrap_or_default()
}

impl IgnorePattern {
    fn compile(text: &str, exclusion: bool) -> Result<IgnorePattern, Error> {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        let bad = || {
            Error::new(ErrorKind::InvalidPattern {
                message: format!("syntax error in pattern: {text:?}"),
            })
        };
        while let Some(&c) = chars.get(i) {
            i += 1;
            match c {
                '*' => {
                    if chars.get(i) == Some(&'*') {
                        i += 1;
                        // Treat `**/` as zero or more directories.
                        if chars.get(i) == Some(&'/') {
                            i += 1;
                            if chars.get(i).is_none() {
                                tokens.push(Tok::AnyRun);
                            } else {
                                tokens.push(Tok::AnyDirs);
                            }
                        } else {
                            tokens.push(Tok::AnyRun);
                        }
                    } else {
                        tokens.push(Tok::Star);
                    }
                }
                '?' => tokens.push(Tok::Any),
                '\\' => match chars.get(i) {
                    Some(&n) => {
                        tokens.push(Tok::Literal(n));
                        i += 1;
                    }
                    None => tokens.push(Tok::Literal('\\')),
                },
                '[' => {
                    let mut negated = false;
                    if chars.get(i) == Some(&'^') {
                        negated = true;
                        i += 1;
                    }
                    let mut items = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(&c) = chars.get(i) else {
                            return Err(bad());
                        };
                        i += 1;
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            let Some(&e) = chars.get(i) else {
                                return Err(bad());
                            };
                            i += 1;
                            e
                        } else {
                            c
                        };
                        let mut hi = lo;
                        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']')
                        {
                            i += 1;
                            let Some(&h) = chars.get(i) else {
                                return Err(bad());
                            };
                            i += 1;
                            hi = if h == '\\' {
                                let Some(&e) = chars.get(i) else {
                                    return Err(bad());
                                };
                                i += 1;
                                e
                            } else {
                                h
                            };
                        }
                        items.push((lo, hi));
                    }
                    tokens.push(Tok::Class { negated, items });
                }
                other => tokens.push(Tok::Literal(other)),
            }
        }
        Ok(IgnorePattern {
            text: text.to_string(),
            exclusion,
            tokens,
        })
    }

    /// Whether the whole `path` matches this pattern.
    pub fn matches(&self, path: &str) -> bool {
        let value: Vec<char> = path.chars().collect();
        // Memoised DFS over (token, position); iterative.
        let n = self.tokens.len();
        let width = value.len() + 1;
        let Some(cells) = (n + 1).checked_mul(width) else {
            return false;
        };
        if cells > 1 << 26 {
            return false;
        }
        let mut seen = vec![false; cells];
        let mut stack = vec![(0usize, 0usize)];
        while let Some((t, v)) = stack.pop() {
            let Some(slot) = seen.get_mut(t * width + v) else {
                continue;
            };
            if *slot {
                continue;
            }
            *slot = true;
            let Some(tok) = self.tokens.get(t) else {
                if v == value.len() {
                    return true;
                }
                continue;
            };
            let cur = value.get(v).copied();
            match tok {
                Tok::Literal(c) => {
                    if cur == Some(*c) {
                        stack.push((t + 1, v + 1));
                    }
                }
                Tok::Any => {
                    if cur.is_some_and(|c| c != '/') {
                        stack.push((t + 1, v + 1));
                    }
                }
                Tok::Star => {
                    stack.push((t + 1, v));
                    if cur.is_some_and(|c| c != '/') {
                        stack.push((t, v + 1));
                    }
                }
                Tok::AnyRun => {
                    stack.push((t + 1, v));
                    if cur.is_some() {
                        stack.push((t, v + 1));
                    }
                }
                Tok::AnyDirs => {
                    // (.*/)? : either nothing, or any run ending with '/'.
                    stack.push((t + 1, v));
                    for (k, c) in value.iter().enumerate().skip(v) {
                        if *c == '/' {
                            stack.push((t + 1, k + 1));
                        }
                    }
                }
                Tok::Class { negated, items } => {
                    if let Some(c) = cur {
                        let inside = items.iter().any(|(lo, hi)| *lo <= c && c <= *hi);
                        if inside != *negated && c != '/' {
                            stack.push((t + 1, v + 1));
                        }
                    }
                }
            }
        }
        // `**/foo` also matches `foo` (fast path in patternmatcher).
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        DockerIgnore::from_patterns(&[pattern])
            .unwrap()
            .matches(path)
    }

    #[test]
    fn spec_vectors() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "dir/file", true),
            ("**/", "file", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/dir2/file", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("a\\*b", "a*b", true),
            ("**/foo/bar", "foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
        ];
        for (p, path, want) in cases {
            assert_eq!(m(p, path), *want, "pattern {p:?} path {path:?}");
        }
    }

    #[test]
    fn exceptions() {
        let d = DockerIgnore::from_patterns(&["**", "!util/docker/web"]).unwrap();
        assert!(!d.matches("util/docker/web/foo"));
        let d = DockerIgnore::from_patterns(&["**", "!util/docker/web", "util/docker/web/foo"])
            .unwrap();
        assert!(d.matches("util/docker/web/foo"));
        let d = DockerIgnore::parse("*.md\n!README*.md\nREADME-secret.md\n").unwrap();
        assert!(d.matches("CHANGES.md"));
        assert!(!d.matches("README.md"));
        assert!(d.matches("README-secret.md"));
        let d = DockerIgnore::parse("*.md\nREADME-secret.md\n!README*.md\n").unwrap();
        assert!(!d.matches("README-secret.md"));
    }

    #[test]
    fn reading_rules() {
        let d = DockerIgnore::parse("# comment\n #notacomment\n/foo/bar/\n./x//y\n\n").unwrap();
        let texts: Vec<&str> = d.patterns.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, vec!["#notacomment", "foo/bar", "x/y"]);
        assert!(DockerIgnore::parse("!").is_err());
        assert!(DockerIgnore::parse("a[").is_err());
    }

    #[test]
    fn skipping_directories() {
        let d = DockerIgnore::parse("node_modules\n").unwrap();
        assert!(d.can_skip_dir("node_modules"));
        let d = DockerIgnore::parse("build\n!build/keep.txt\n").unwrap();
        assert!(!d.can_skip_dir("build"));
        let d = DockerIgnore::parse("vendor\n!**/*.go\n").unwrap();
        assert!(!d.can_skip_dir("vendor"));
        assert!(!d.can_skip_dir("src"));
    }
}
