//! Target platforms (`os/arch[/variant]`) for `FROM --platform` and the predefined ARGs.

use std::fmt;

use serde::Serialize;

use crate::error::Error;

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// Variant, e.g. `v7` for `arm`.
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".to_string(),
            architecture: "amd64".to_string(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    match (arch, variant) {
        ("i386", _) => ("386".into(), None),
        ("x86_64" | "x86-64" | "amd64", v) => {
            ("amd64".into(), v.filter(|v| *v != "v1").map(str::to_string))
        }
        ("aarch64" | "arm64", v) => (
            "arm64".into(),
            v.filter(|v| *v != "8" && *v != "v8").map(str::to_string),
        ),
        ("armhf", _) => ("arm".into(), Some("v7".into())),
        ("armel", _) => ("arm".into(), Some("v6".into())),
        ("arm", None) => ("arm".into(), Some("v7".into())),
        ("arm", Some(v)) => (
            "arm".into(),
            Some(if v.starts_with('v') {
                v.to_string()
            } else {
                format!("v{v}")
            }),
        ),
        (a, v) => (a.to_string(), v.map(str::to_string)),
    }
}

impl Platform {
    /// Parses and normalises `os[/arch[/variant]]` (containerd `platforms.Parse` rules for
    /// the common aliases: `x86_64`, `aarch64`, `armhf`, ...).
    pub fn parse(spec: &str) -> Result<Platform, Error> {
        let bad = |why: &str| Error::invalid(format!("failed to parse platform \"{spec}\": {why}"));
        let lower = spec.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if parts.is_empty() || parts.len() > 3 || !parts.iter().all(|p| valid(p)) {
            return Err(bad("expected os[/arch[/variant]]"));
        }
        let (os, arch, variant) = match parts.as_slice() {
            [one] if KNOWN_OS.contains(one) => (one.to_string(), "amd64".to_string(), None),
            [one] => {
                let (a, v) = normalize_arch(one, None);
                ("linux".to_string(), a, v)
            }
            [os, arch] => {
                let (a, v) = normalize_arch(arch, None);
                (os.to_string(), a, v)
            }
            [os, arch, variant] => {
                let (a, v) = normalize_arch(arch, Some(variant));
                (os.to_string(), a, v)
            }
            _ => return Err(bad("expected os[/arch[/variant]]")),
        };
        if os == "macos" {
            return Ok(Platform {
                os: "darwin".into(),
                architecture: arch,
                variant,
            });
        }
        Ok(Platform {
            os,
            architecture: arch,
            variant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            Platform::parse("linux/amd64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/aarch64").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("Linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("windows").unwrap().to_string(),
            "windows/amd64"
        );
        assert!(Platform::parse("").is_err());
        assert!(Platform::parse("linux//amd64").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }
}
