//! What a RUN instruction runs: its argv, with heredocs applied as BuildKit applies them
//! (dockerfile.md §5.3).
//!
//! - A command that is exactly one heredoc word (`RUN <<EOF`, `<<-EOF`, `<< EOF`,
//!   `<<"EOF"`, `3<<EOF`) runs the body itself: with the shell, or, when the body starts
//!   with `#!`, as an executable file mounted read-only at `/dev/pipes/<NAME>` (not through
//!   the shell, so the interpreter line decides).
//! - Anything else (`RUN <<EOF sh`, `RUN cat <<A >a && cat <<B >b`) gives the shell the
//!   command line followed, for each heredoc, by a newline, its body and its delimiter: the
//!   shell reads the heredocs itself, `<<-` tab stripping included.
//!
//! The builder never expands variables in a RUN heredoc; the shell does.

use strata_proto::parser as pp;

/// Where a heredoc script is mounted.
pub const PIPES_DIR: &str = "/dev/pipes";

/// A RUN's command, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCommand {
    /// What the runtime executes.
    pub argv: Vec<String>,
    /// A script to mount read-only (mode 0755) at `PIPES_DIR/<name>`: (name, body).
    pub script: Option<(String, String)>,
}

/// The argv of `cmd` under the stage's `shell`.
pub fn resolve(cmd: &pp::Command, shell: &[String]) -> RunCommand {
    let with_shell = |script: String| {
        let mut v = shell.to_vec();
        v.push(script);
        v
    };
    if !cmd.shell_form {
        return RunCommand {
            argv: cmd.args.clone(),
            script: None,
        };
    }
    let line = cmd.args.first().cloned().unwrap_or_default();
    match cmd.heredocs.as_slice() {
        [] => RunCommand {
            argv: with_shell(line),
            script: None,
        },
        [h] if is_single_heredoc(&line) => {
            let body = if h.chomp {
                strata_dockerfile::ast::chomp_heredoc_content(&h.content)
            } else {
                h.content.clone()
            };
            if body.starts_with("#!") {
                RunCommand {
                    argv: vec![format!("{PIPES_DIR}/{}", h.name)],
                    script: Some((h.name.clone(), body)),
                }
            } else {
                RunCommand {
                    argv: with_shell(body),
                    script: None,
                }
            }
        }
        heredocs => {
            let mut full = line;
            for h in heredocs {
                full.push('\n');
                full.push_str(&h.content);
                full.push_str(&h.name);
            }
            RunCommand {
                argv: with_shell(full),
                script: None,
            }
        }
    }
}

/// Whether a shell-form command line is one heredoc word and nothing else (BuildKit's
/// `ParseHeredoc`: `^(\d*)<<(-?)([^<]*)$`, the rest one word once quotes are read).
fn is_single_heredoc(line: &str) -> bool {
    let line = line.trim();
    let rest = line.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    !rest.contains('<') && words(rest) == 1
}

/// The number of words in `s`: runs of characters split by whitespace outside quotes.
fn words(s: &str) -> usize {
    let mut count = 0;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            in_word = true;
            continue;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\\') => {
                escaped = true;
                if !in_word {
                    count += 1;
                    in_word = true;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                if !in_word {
                    count += 1;
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => in_word = false,
            (None, _) => {
                if !in_word {
                    count += 1;
                    in_word = true;
                }
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh() -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into()]
    }

    fn heredoc(name: &str, content: &str, chomp: bool) -> pp::Heredoc {
        pp::Heredoc {
            name: name.into(),
            content: content.into(),
            chomp,
            expand: true,
        }
    }

    fn shell_form(line: &str, heredocs: Vec<pp::Heredoc>) -> pp::Command {
        pp::Command {
            args: vec![line.into()],
            shell_form: true,
            heredocs,
        }
    }

    fn argv(line: &str, heredocs: Vec<pp::Heredoc>) -> Vec<String> {
        let run = resolve(&shell_form(line, heredocs), &sh());
        assert_eq!(run.script, None);
        run.argv
    }

    #[test]
    fn one_heredoc_word_runs_its_body_with_the_shell() {
        let body = "set -e\necho $A > /x\n";
        for line in [
            "<<EOF",
            "<<-EOF",
            "<< EOF",
            "<<\"EOF\"",
            "<<'EOF'",
            "3<<EOF",
            " <<EOF ",
        ] {
            assert_eq!(
                argv(line, vec![heredoc("EOF", body, false)]),
                ["/bin/sh", "-c", body],
                "{line}"
            );
        }
        // <<- strips leading tabs from the body it runs
        assert_eq!(
            argv(
                "<<-EOF",
                vec![heredoc("EOF", "\techo a\n\t\techo b\n", true)]
            ),
            ["/bin/sh", "-c", "echo a\necho b\n"]
        );
    }

    #[test]
    fn anything_more_gives_the_shell_the_line_and_every_body_with_its_delimiter() {
        assert_eq!(
            argv("<<EOF sh", vec![heredoc("EOF", "echo in\n", false)]),
            ["/bin/sh", "-c", "<<EOF sh\necho in\nEOF"]
        );
        assert_eq!(
            argv(
                "cat <<A > /a && cat <<B > /b",
                vec![heredoc("A", "in-a\n", false), heredoc("B", "in-b\n", false)]
            ),
            [
                "/bin/sh",
                "-c",
                "cat <<A > /a && cat <<B > /b\nin-a\nA\nin-b\nB"
            ]
        );
        // the shell strips the tabs of <<- itself: the body goes as written
        assert_eq!(
            argv("cat <<-A", vec![heredoc("A", "\tx\n", true)]),
            ["/bin/sh", "-c", "cat <<-A\n\tx\nA"]
        );
        // two heredoc words are not one
        assert_eq!(
            argv(
                "<<A <<B",
                vec![heredoc("A", "a\n", false), heredoc("B", "b\n", false)]
            ),
            ["/bin/sh", "-c", "<<A <<B\na\nA\nb\nB"]
        );
    }

    #[test]
    fn a_body_with_an_interpreter_line_is_run_as_a_mounted_script() {
        let body = "#!/bin/cat\nhello\n";
        let run = resolve(
            &shell_form("<<EOF", vec![heredoc("EOF", body, false)]),
            &sh(),
        );
        assert_eq!(run.argv, ["/dev/pipes/EOF"]);
        assert_eq!(run.script, Some(("EOF".into(), body.into())));
        // with <<-, the tabs go before the #! is looked for
        let run = resolve(
            &shell_form(
                "<<-EOF",
                vec![heredoc("EOF", "\t#!/bin/sh\n\techo\n", true)],
            ),
            &sh(),
        );
        assert_eq!(run.script, Some(("EOF".into(), "#!/bin/sh\necho\n".into())));
        // not at the start of a more complex command
        assert_eq!(
            argv("<<EOF sh", vec![heredoc("EOF", body, false)]),
            ["/bin/sh", "-c", "<<EOF sh\n#!/bin/cat\nhello\nEOF"]
        );
    }

    #[test]
    fn without_heredocs_shell_and_exec_forms_are_unchanged() {
        assert_eq!(argv("echo hi", vec![]), ["/bin/sh", "-c", "echo hi"]);
        let exec = pp::Command {
            args: vec!["echo".into(), "<<EOF".into()],
            shell_form: false,
            heredocs: vec![],
        };
        assert_eq!(resolve(&exec, &sh()).argv, ["echo", "<<EOF"]);
    }
}
