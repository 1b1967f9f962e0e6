//! The AST layer's data types (BuildKit `parser.Node`) and the section-6 dump format.

use serde::Serialize;

use crate::quote::{go_quote, go_quote_slice};

/// One node of BuildKit's s-expression-like parse tree.
///
/// The root node has one child per instruction. An instruction node's `value` is the keyword
/// as written; its arguments are the `next` nodes (BuildKit's `Next` linked list, flattened
/// into a vector). ONBUILD's single argument node has an empty `value` and the nested
/// instruction as its only child.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Node {
    /// The keyword (instruction nodes) or argument text (argument nodes).
    pub value: String,
    /// Argument nodes, in order.
    pub next: Vec<Node>,
    /// Child nodes: instructions for the root, the nested instruction for ONBUILD's argument.
    pub children: Vec<Node>,
    /// Heredoc bodies attached to this instruction, in the order they appear.
    pub heredocs: Vec<Heredoc>,
    /// Special attributes (`json` for exec form).
    pub attributes: Attributes,
    /// The logical line this node was parsed from (after continuation joining).
    pub original: String,
    /// Raw flag words such as `--mount=type=cache,target=/x` (instruction nodes only).
    pub flags: Vec<String>,
    /// First physical line (1-based); 0 for argument nodes.
    pub start_line: usize,
    /// Column (1-based, characters) of the keyword on the first line; 0 for argument nodes.
    pub start_column: usize,
    /// Last physical line, covering continuation lines and heredoc bodies.
    pub end_line: usize,
    /// Comment lines directly above the instruction (doc comments).
    pub prev_comment: Vec<String>,
}

/// Node attributes (BuildKit keeps a `map[string]bool`; only `json` exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Attributes {
    /// The arguments were given in JSON (exec) form.
    pub json: bool,
}

/// A heredoc attached to an instruction (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Heredoc {
    /// Delimiter after quote removal; also the inline file name for COPY/ADD.
    pub name: String,
    /// Optional file descriptor digits before `<<` (`3<<EOF`), 0 when absent.
    pub file_descriptor: u64,
    /// Whether variables in the body are expanded (no part of the delimiter was quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from body lines when the body is used.
    pub chomp: bool,
    /// The raw body, every line with its newline.
    pub content: String,
}

impl Heredoc {
    /// The body as it is used: with leading tabs removed from every line when `chomp`.
    pub fn body(&self) -> String {
        if self.chomp {
            chomp_heredoc_content(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// Removes leading tabs from every line (BuildKit `ChompHeredocContent`, regex `(?m)^\t+`).
pub fn chomp_heredoc_content(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.split_inclusive('\n') {
        out.push_str(line.trim_start_matches('\t'));
    }
    out
}

impl Node {
    /// The argument values of an instruction node (ONBUILD's nested node is skipped).
    pub fn args(&self) -> impl Iterator<Item = &str> {
        self.next.iter().map(|n| n.value.as_str())
    }

    /// The keyword lower-cased.
    pub fn keyword(&self) -> String {
        go_lower(&self.value)
    }

    /// Renders this node in BuildKit's dump format (spec §6).
    pub fn dump(&self) -> String {
        dump(self)
    }
}

/// A parser directive found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lower-cased key: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value, case preserved.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// A warning produced while parsing (e.g. an empty continuation line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseWarning {
    /// The lint rule this corresponds to (`NoEmptyContinuation`).
    pub rule: &'static str,
    /// One-line description.
    pub short: String,
    /// Further detail.
    pub detail: String,
    /// Documentation link.
    pub url: &'static str,
    /// The line the warning refers to.
    pub line: usize,
}

/// The result of [`crate::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseOutput {
    /// The root node; its children are the instructions.
    pub root: Node,
    /// The escape character in effect (`\` unless `# escape=` said otherwise).
    pub escape: char,
    /// Parser directives, in file order.
    pub directives: Vec<Directive>,
    /// Non-fatal findings.
    pub warnings: Vec<ParseWarning>,
}

impl ParseOutput {
    /// The value of a directive, if present.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }
}

/// Lower-cases like Go's `strings.ToLower` (per character).
pub(crate) fn go_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars().flat_map(char::to_lowercase).collect()
}

/// Dumps a node like BuildKit's `Node.Dump()`. For the root this is one `(...)` line per
/// instruction; the corpus `result` files equal `dump(root) + "\n"`.
pub fn dump(node: &Node) -> String {
    let mut s = go_lower(&node.value);
    if !node.flags.is_empty() {
        s.push(' ');
        s.push_str(&go_quote_slice(&node.flags));
    }
    for child in &node.children {
        s.push('(');
        s.push_str(&dump(child));
        s.push_str(")\n");
    }
    for n in &node.next {
        s.push(' ');
        if n.children.is_empty() {
            s.push_str(&go_quote(&n.value));
        } else {
            s.push_str(&dump(n));
        }
    }
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chomps_leading_tabs_per_line() {
        assert_eq!(chomp_heredoc_content("\t\ta\n\tb\n  c\n"), "a\nb\n  c\n");
    }

    #[test]
    fn dumps_flags_and_args() {
        let node = Node {
            value: "COPY".into(),
            flags: vec!["--from=a".into()],
            next: vec![
                Node {
                    value: "x y".into(),
                    ..Node::default()
                },
                Node {
                    value: "/d".into(),
                    ..Node::default()
                },
            ],
            ..Node::default()
        };
        assert_eq!(dump(&node), r#"copy ["--from=a"] "x y" "/d""#);
    }
}
