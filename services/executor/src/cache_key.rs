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

/// What differs between the preimage of this build's step (`new`) and an existing entry's
/// (`old`), in words: `ENV FOO changed "a" -> "b"`.
pub fn explain(new: &Preimage, old: &Preimage) -> Vec<String> {
    let mut out = Vec::new();
    if new.version != old.version {
        out.push(format!(
            "cache format changed {} -> {}",
            old.version, new.version
        ));
    }
    if new.parent != old.parent {
        out.push(format!("parent changed {} -> {}", old.parent, new.parent));
    }
    if new.kind != old.kind {
        out.push(format!("instruction changed {} -> {}", old.kind, new.kind));
    }
    if new.args != old.args {
        out.push(format!(
            "{} arguments changed {} -> {}",
            new.kind,
            q(&old.args.join(" ")),
            q(&new.args.join(" "))
        ));
    }
    diff_map("flag", &new.flags, &old.flags, &mut out);
    diff_map("ENV", &new.env, &old.env, &mut out);
    if new.workdir != old.workdir {
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
        out.push(format!("SHELL changed {:?} -> {:?}", old.shell, new.shell));
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

/// Of `candidates` (preimages of existing entries with the same parent), the one closest to
/// `new` (fewest differences), with its differences.
pub fn closest<'a>(
    new: &Preimage,
    candidates: impl IntoIterator<Item = &'a Preimage>,
) -> Option<Vec<String>> {
    candidates
        .into_iter()
        .map(|c| explain(new, c))
        .min_by_key(Vec::len)
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
    fn explain_names_the_changed_input() {
        let new = run(&[("FOO", "b")]);
        let old = run(&[("FOO", "a")]);
        assert_eq!(
            explain(&new, &old),
            vec![r#"ENV FOO changed "a" -> "b""#.to_owned()]
        );
        let mut c = run(&[]);
        c.kind = "COPY".into();
        c.sources.insert("app/".into(), "sha256:1".into());
        let mut d = c.clone();
        d.sources.insert("app/".into(), "sha256:2".into());
        assert_eq!(
            explain(&d, &c),
            vec![r#"source "app/" content changed"#.to_owned()]
        );
        let closest = closest(&new, [&old, &run(&[("FOO", "a"), ("X", "1")])]).unwrap();
        assert_eq!(closest.len(), 1);
    }
}
