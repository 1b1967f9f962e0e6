//! Build checks (spec §14): rule names, warnings and the `# check=` directive.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::Error;
use crate::instruction::Span;

/// Every rule name this crate can report (BuildKit's names, PascalCase).
pub const RULES: &[&str] = &[
    "StageNameCasing",
    "FromAsCasing",
    "NoEmptyContinuation",
    "ConsistentInstructionCasing",
    "DuplicateStageName",
    "ReservedStageName",
    "JSONArgsRecommended",
    "MaintainerDeprecated",
    "UndefinedArgInFrom",
    "WorkdirRelativePath",
    "UndefinedVar",
    "MultipleInstructionsDisallowed",
    "LegacyKeyValueFormat",
    "InvalidDefaultArgInFrom",
    "FromPlatformFlagConstDisallowed",
    "CopyIgnoredFile",
    "InvalidDefinitionDescription",
    "SecretsUsedInArgOrEnv",
    "RedundantTargetPlatform",
    "ExposeProtoCasing",
    "ExposeInvalidFormat",
];

/// Rules that only run when enabled with `# check=experimental=<Rule>` (or `all`).
pub const EXPERIMENTAL_RULES: &[&str] = &["InvalidDefinitionDescription"];

/// One lint finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintWarning {
    /// Rule name, e.g. `MaintainerDeprecated`.
    pub rule: &'static str,
    /// What is wrong, in BuildKit's wording.
    pub message: String,
    /// Lines the warning refers to.
    pub span: Span,
}

impl LintWarning {
    /// Documentation URL of the rule.
    pub fn url(&self) -> String {
        let chars: Vec<char> = self.rule.chars().collect();
        let mut kebab = String::new();
        for (i, c) in chars.iter().enumerate() {
            let prev = i.checked_sub(1).and_then(|p| chars.get(p));
            let next = chars.get(i + 1);
            let boundary = c.is_ascii_uppercase()
                && prev.is_some_and(|p| {
                    p.is_ascii_lowercase()
                        || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
                });
            if boundary {
                kebab.push('-');
            }
            kebab.push(c.to_ascii_lowercase());
        }
        format!("https://docs.docker.com/go/dockerfile/rule/{kebab}/")
    }
}

/// Linter configuration from `# check=skip=...;error=true;experimental=...`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CheckConfig {
    /// `skip=all`.
    pub skip_all: bool,
    /// Skipped rule names.
    pub skip: BTreeSet<String>,
    /// `error=true`: warnings fail the build.
    pub error: bool,
    /// `experimental=all`.
    pub experimental_all: bool,
    /// Enabled experimental rules.
    pub experimental: BTreeSet<String>,
}

impl CheckConfig {
    /// Parses the value of the `check` directive.
    pub fn parse(value: &str) -> Result<CheckConfig, Error> {
        let mut cfg = CheckConfig::default();
        for part in value.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((k, v)) = part.split_once('=') else {
                return Err(Error::invalid(format!(
                    "invalid check directive option \"{part}\", expected key=value"
                )));
            };
            let names = || {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "skip" => {
                    for n in names() {
                        if n.eq_ignore_ascii_case("all") {
                            cfg.skip_all = true;
                        } else {
                            cfg.skip.insert(n);
                        }
                    }
                }
                "error" => {
                    cfg.error = match v.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(Error::invalid(format!(
                                "invalid check directive value for error: \"{v}\""
                            )));
                        }
                    }
                }
                "experimental" => {
                    for n in names() {
                        if n.eq_ignore_ascii_case("all") {
                            cfg.experimental_all = true;
                        } else {
                            cfg.experimental.insert(n);
                        }
                    }
                }
                other => {
                    return Err(Error::invalid(format!(
                        "invalid check directive option \"{other}\""
                    )));
                }
            }
        }
        Ok(cfg)
    }

    /// Whether a rule is active.
    pub fn enabled(&self, rule: &str) -> bool {
        if self.skip_all || self.skip.contains(rule) {
            return false;
        }
        if EXPERIMENTAL_RULES.contains(&rule) {
            return self.experimental_all || self.experimental.contains(rule);
        }
        true
    }
}

/// Collects warnings, dropping disabled rules.
#[derive(Debug, Default)]
pub(crate) struct Linter {
    pub(crate) config: CheckConfig,
    pub(crate) warnings: Vec<LintWarning>,
}

impl Linter {
    pub(crate) fn report(&mut self, rule: &'static str, message: impl Into<String>, span: Span) {
        if self.config.enabled(rule) {
            self.warnings.push(LintWarning {
                rule,
                message: message.into(),
                span,
            });
        }
    }
}

/// Whether an ARG/ENV name looks like it holds a secret (BuildKit's token lists).
pub(crate) fn looks_secret(name: &str) -> bool {
    let tokens: Vec<String> = name.split('_').map(|t| t.to_ascii_lowercase()).collect();
    if tokens.iter().any(|t| t == "public") {
        return false;
    }
    tokens.iter().any(|t| {
        matches!(
            t.as_str(),
            "apikey"
                | "auth"
                | "credential"
                | "credentials"
                | "key"
                | "password"
                | "pword"
                | "passwd"
                | "secret"
                | "token"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_check_directive() {
        let c = CheckConfig::parse("skip=JSONArgsRecommended,StageNameCasing;error=true").unwrap();
        assert!(c.error);
        assert!(!c.enabled("JSONArgsRecommended"));
        assert!(c.enabled("MaintainerDeprecated"));
        assert!(!c.enabled("InvalidDefinitionDescription"));
        let c = CheckConfig::parse("skip=all").unwrap();
        assert!(!c.enabled("MaintainerDeprecated"));
        assert!(CheckConfig::parse("error=maybe").is_err());
    }

    #[test]
    fn secret_names() {
        assert!(looks_secret("AWS_SECRET_ACCESS_KEY"));
        assert!(looks_secret("GITHUB_TOKEN"));
        assert!(!looks_secret("PUBLIC_KEY"));
        assert!(!looks_secret("KEYBOARD"));
    }

    #[test]
    fn rule_urls() {
        let w = LintWarning {
            rule: "JSONArgsRecommended",
            message: String::new(),
            span: Span::default(),
        };
        assert_eq!(
            w.url(),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
    }
}
