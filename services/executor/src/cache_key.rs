//! Build-cache keys (DESIGN.md "Build cache", dockerfile.md §13).
//!
//! A step's key is the sha256 of the canonical JSON of its [`Preimage`]: the parent step's key
//! (or the base image's manifest digest), the instruction kind and normalised arguments, the
//! environment a RUN sees (config Env + ENV + declared ARG values), WORKDIR, USER and SHELL,
//! flags (network, chown, chmod, excludes, …) and, for COPY/ADD, the content hash of every
//! source (path, type, mode, uid/gid, link target and bytes — never size or mtime). The
//! preimage is kept in the cache entry, so a miss is explained by diffing it against the
//! entries that share its parent ([`explain`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_types::Digest;

/// Version of the preimage encoding; bumping it invalidates every key.
pub const PREIMAGE_VERSION: u32 = 1;

/// Everything a step's result depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preimage {
    /// Encoding version.
    pub version: u32,
    /// The parent step's key, `image:<manifest digest>` for a base image, `scratch`.
    pub parent: String,
    /// RUN, COPY, ADD or WORKDIR.
    pub kind: String,
    /// Normalised arguments: the final argv, the sources and destination, the path.
    pub args: Vec<String>,
    /// Flags that change the result (network, chown, chmod, link, exclude, from, …).
    pub flags: BTreeMap<String, String>,
    /// The environment the step sees (RUN only).
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub workdir: String,
    /// The user.
    pub user: String,
    /// The shell.
    pub shell: Vec<String>,
    /// Content hash of each source, by the source as written (COPY/ADD).
    pub sources: BTreeMap<String, String>,
    /// The target platform.
    pub platform: String,
}

impl Preimage {
    /// The canonical JSON (fields in declaration order, maps sorted by key).
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a preimage always serialises")
    }

    /// The cache key: `sha256:<hex>` of the canonical JSON.
    pub fn key(&self) -> Digest {
        Digest::of(self.canonical_json().as_bytes())
    }
}

fn q(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{:?}…", cut)
    } else {
        format!("{s:?}")
    }
}

fn diff_map(
    what: &str,
    new: &BTreeMap<String, String>,
    old: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    for (k, v) in new {
        match old.get(k) {
            Some(o) if o == v => {}
            Some(o) => out.push(format!("{what} {k} changed {} -> {}", q(o), q(v))),
            None => out.push(format!("{what} {k} added {}", q(v))),
        }
    }
    for (k, o) in old {
        if !new.contains_key(k) {
            out.push(format!("{what} {k} removed (was {})", q(o)));
        }
    }
}

/// The arguments of a step as its instruction reads: COPY/ADD's end with the destination
/// (a trailing `/` when it names a directory), not the internal directory flag.
fn written_args(p: &Preimage) -> String {
    let mut args = p.args.clone();
    if matches!(p.kind.as_str(), "COPY" | "ADD")
        && let Some(flag) =
            args.pop_if(|a: &mut String| a.as_str() == "true" || a.as_str() == "false")
        && flag == "true"
        && let Some(dest) = args.last_mut()
        && !dest.ends_with('/')
    {
        dest.push('/');
    }
    args.join(" ")
}

/// How a flag is named to a user.
fn flag_name(key: &str) -> String {
    match key {
        "source-date-epoch" => "SOURCE_DATE_EPOCH".into(),
        "mounts" => "--mount".into(),
        k => match k.strip_prefix("heredoc-script:") {
            Some(name) => format!("heredoc <<{name}"),
            None => format!("--{k}"),
        },
    }
}

fn diff_flags(
    new: &BTreeMap<String, String>,
    old: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    let empty = String::new();
    let keys: std::collections::BTreeSet<&String> = new.keys().chain(old.keys()).collect();
    for k in keys {
        let (n, o) = (new.get(k).unwrap_or(&empty), old.get(k).unwrap_or(&empty));
        if n == o {
            continue;
        }
        let name = flag_name(k);
        match k.as_str() {
            // one spec per line: say which mounts came and went
            "mounts" => {
                for m in o.lines().filter(|m| !n.lines().any(|x| x == *m)) {
                    out.push(format!("{name} {} removed", q(m)));
                }
                for m in n.lines().filter(|m| !o.lines().any(|x| x == *m)) {
                    out.push(format!("{name} {} added", q(m)));
                }
            }
            // a stage's key or an image's digest: what it names was rebuilt or moved
            "from" => out.push(format!(
                "--from: the stage or image it copies from changed ({} -> {})",
                short(o),
                short(n)
            )),
            k if k.starts_with("heredoc-script:") => out.push(format!("{name} changed")),
            _ if o.is_empty() => out.push(format!("{name}={n} added")),
            _ if n.is_empty() => out.push(format!("{name}={o} removed")),
            _ => out.push(format!("{name} changed {} -> {}", q(o), q(n))),
        }
    }
}

/// A digest or key shortened as `docker images` shows one (`sha256:` and 12 hex digits).
pub fn short(d: &str) -> String {
    let (prefix, rest) = d.rsplit_once("sha256:").map_or(("", d), |(p, r)| (p, r));
    if rest.is_empty() {
        return "none".into();
    }
    format!("{prefix}{}", &rest[..rest.len().min(12)])
}

/// What differs between the preimage of this build's step (`new`) and an existing entry's
/// (`old`), in words as a user writes the step: `ENV FOO changed "a" -> "b"`; variables in
/// `build_args` (the step's ARGs not overridden by an ENV) are named `ARG`.
pub fn explain(
    new: &Preimage,
    old: &Preimage,
    build_args: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    if new.version != old.version {
        out.push(format!(
            "cache format changed {} -> {}",
            old.version, new.version
        ));
    }
    if new.parent != old.parent {
        out.push(format!(
            "the previous step changed ({} -> {})",
            short(&old.parent),
            short(&new.parent)
        ));
    }
    if new.kind != old.kind {
        out.push(format!("instruction changed {} -> {}", old.kind, new.kind));
    } else if new.args != old.args {
        let what = match new.kind.as_str() {
            "RUN" => "command",
            "WORKDIR" => "path",
            _ => "sources or destination",
        };
        out.push(format!(
            "{} {what} changed {} -> {}",
            new.kind,
            q(&written_args(old)),
            q(&written_args(new))
        ));
    }
    diff_flags(&new.flags, &old.flags, &mut out);
    let (args_new, args_old): (BTreeMap<_, _>, BTreeMap<_, _>) = (
        new.env
            .iter()
            .filter(|(k, _)| build_args.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        old.env
            .iter()
            .filter(|(k, _)| build_args.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    let env_only = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| !build_args.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    diff_map("ARG", &args_new, &args_old, &mut out);
    diff_map("ENV", &env_only(&new.env), &env_only(&old.env), &mut out);
    if new.workdir != old.workdir && new.kind != "WORKDIR" {
        out.push(format!(
            "WORKDIR changed {} -> {}",
            q(&old.workdir),
            q(&new.workdir)
        ));
    }
    if new.user != old.user {
        out.push(format!("USER changed {} -> {}", q(&old.user), q(&new.user)));
    }
    if new.shell != old.shell {
        out.push(format!(
            "SHELL changed {} -> {}",
            crate::history::go_list(&old.shell),
            crate::history::go_list(&new.shell)
        ));
    }
    for (src, h) in &new.sources {
        match old.sources.get(src) {
            Some(o) if o == h => {}
            Some(_) => out.push(format!("source {} content changed", q(src))),
            None => out.push(format!("source {} added", q(src))),
        }
    }
    for src in old.sources.keys() {
        if !new.sources.contains_key(src) {
            out.push(format!("source {} removed", q(src)));
        }
    }
    if new.platform != old.platform {
        out.push(format!(
            "platform changed {} -> {}",
            q(&old.platform),
            q(&new.platform)
        ));
    }
    out
}

/// Of `candidates` (preimages of existing entries with the same parent, each with when it
/// was made), the one closest to `new` (fewest differences; of those, the newest: the
/// build a user last ran), with its differences.
pub fn closest<'a>(
    new: &Preimage,
    candidates: impl IntoIterator<Item = (&'a Preimage, i64)>,
    build_args: &std::collections::BTreeSet<String>,
) -> Option<Vec<String>> {
    candidates
        .into_iter()
        .map(|(c, made)| (explain(new, c, build_args), made))
        .min_by_key(|(d, made)| (d.len(), std::cmp::Reverse(*made)))
        .map(|(d, _)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(env: &[(&str, &str)]) -> Preimage {
        Preimage {
            version: PREIMAGE_VERSION,
            parent: "image:sha256:abc".into(),
            kind: "RUN".into(),
            args: vec!["/bin/sh".into(), "-c".into(), "make".into()],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            workdir: "/".into(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            platform: "linux/amd64".into(),
            ..Default::default()
        }
    }

    #[test]
    fn keys_are_stable_and_sensitive() {
        let a = run(&[("FOO", "a"), ("PATH", "/bin")]);
        let a2 = run(&[("PATH", "/bin"), ("FOO", "a")]);
        assert_eq!(a.key(), a2.key(), "map order does not matter");
        assert_ne!(a.key(), run(&[("FOO", "b"), ("PATH", "/bin")]).key());
        let mut w = a.clone();
        w.workdir = "/src".into();
        assert_ne!(a.key(), w.key());
        let parsed: Preimage = serde_json::from_str(&a.canonical_json()).unwrap();
        assert_eq!(parsed, a);
    }

    #[test]
    fn explain_names_the_changed_input_as_a_user_writes_it() {
        let none = std::collections::BTreeSet::new();
        let new = run(&[("FOO", "b")]);
        let old = run(&[("FOO", "a")]);
        assert_eq!(
            explain(&new, &old, &none),
            vec![r#"ENV FOO changed "a" -> "b""#.to_owned()]
        );
        let args: std::collections::BTreeSet<String> = ["FOO".to_owned()].into();
        assert_eq!(
            explain(&new, &old, &args),
            vec![r#"ARG FOO changed "a" -> "b""#.to_owned()]
        );
        let mut c = run(&[]);
        c.kind = "COPY".into();
        c.args = vec![".".into(), "/ctx".into(), "true".into()];
        c.sources.insert("app/".into(), "sha256:1".into());
        let mut d = c.clone();
        d.sources.insert("app/".into(), "sha256:2".into());
        assert_eq!(
            explain(&d, &c, &none),
            vec![r#"source "app/" content changed"#.to_owned()]
        );
        let mut e = c.clone();
        e.args = vec![".".into(), "/c".into(), "false".into()];
        e.flags.insert("chown".into(), "1:2".into());
        e.flags.insert("unpack".into(), "false".into());
        c.flags.insert("unpack".into(), "true".into());
        assert_eq!(
            explain(&e, &c, &none),
            vec![
                r#"COPY sources or destination changed ". /ctx/" -> ". /c""#.to_owned(),
                "--chown=1:2 added".to_owned(),
                r#"--unpack changed "true" -> "false""#.to_owned(),
            ]
        );
        let mut m = run(&[]);
        m.flags
            .insert("mounts".into(), "type=tmpfs,target=/t,size=1024".into());
        let mut m2 = run(&[]);
        m2.flags
            .insert("mounts".into(), "type=tmpfs,target=/t".into());
        assert_eq!(
            explain(&m2, &m, &none),
            vec![
                r#"--mount "type=tmpfs,target=/t,size=1024" removed"#.to_owned(),
                r#"--mount "type=tmpfs,target=/t" added"#.to_owned(),
            ]
        );
        for (a, b) in [(&c, &e), (&m, &m2), (&old, &new)] {
            for line in explain(a, b, &none) {
                assert!(!line.contains("Some(") && !line.contains("None"), "{line}");
            }
        }
    }

    #[test]
    fn the_closest_entry_wins_and_of_equals_the_newest() {
        let none = std::collections::BTreeSet::new();
        let new = run(&[("V", "three")]);
        let (one, two) = (run(&[("V", "one")]), run(&[("V", "two")]));
        let far = run(&[("V", "x"), ("W", "y")]);
        let got = closest(&new, [(&two, 20), (&one, 10), (&far, 30)], &none).unwrap();
        assert_eq!(got, [r#"ENV V changed "two" -> "three""#]);
        let got = closest(&new, [(&one, 10), (&two, 20)], &none).unwrap();
        assert_eq!(got, [r#"ENV V changed "two" -> "three""#]);
    }
}
