//! Which registry credentials a build sends to the executor.
//!
//! A farm's executor runs as another user, so a private base image can only be pulled with
//! credentials the client sends. The client sends as few as it can: only for the registries
//! of the images the build may pull — FROM and `COPY --from` images of the stages the target
//! needs, after ARG expansion with the build's `--build-arg`s — found by parsing the
//! Dockerfile here with the executor's own parser crate, and only those the user has
//! credentials for (`strata login`'s file, then Docker's config.json: the lookup `strata
//! pull` and `strata push` use). `RUN --mount=from=` images are not listed: the executor
//! takes them from the store and never pulls them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use strata_distribution::{Credentials, auth};
use strata_dockerfile::{DependencyKind, DependencyTarget, ParseOptions, parse_dockerfile};
use strata_proto::executor::{BuildRequest, RegistryCredential};
use strata_types::Reference;

/// The credentials to send with `request`, looked up in the user's credential files.
pub fn for_request(request: &BuildRequest) -> Vec<RegistryCredential> {
    let target = (!request.target.is_empty()).then_some(request.target.as_str());
    credentials_for(
        registries_pulled_from(&request.dockerfile_content, &request.build_args, target),
        auth::lookup,
    )
}

/// The registries (as references name them: `docker.io` for Docker Hub) of the images the
/// build may pull. A Dockerfile that does not parse names none: the executor reports why.
pub fn registries_pulled_from(
    dockerfile: &[u8],
    build_args: &HashMap<String, String>,
    target: Option<&str>,
) -> BTreeSet<String> {
    let options = ParseOptions {
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        target: target.map(str::to_owned),
        ..Default::default()
    };
    let Ok(parsed) = parse_dockerfile(dockerfile, &options) else {
        return BTreeSet::new();
    };
    let graph = &parsed.graph;
    graph
        .dependencies
        .iter()
        .enumerate()
        .filter(|(stage, _)| graph.required.get(*stage).copied().unwrap_or(false))
        .flat_map(|(_, deps)| deps)
        .filter(|d| matches!(d.kind, DependencyKind::Base | DependencyKind::CopyFrom))
        .filter_map(|d| match &d.target {
            DependencyTarget::External(name) => Reference::parse(name).ok(),
            _ => None,
        })
        .map(|r| r.registry().to_owned())
        .collect()
}

/// The credentials `lookup` knows for `registries`; a registry it knows none for is left
/// out.
pub fn credentials_for(
    registries: impl IntoIterator<Item = String>,
    lookup: impl Fn(&str) -> Option<Credentials>,
) -> Vec<RegistryCredential> {
    registries
        .into_iter()
        .filter_map(|host| {
            let c = lookup(&host)?;
            Some(RegistryCredential {
                host,
                username: c.username,
                password: c.password,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn named(dockerfile: &str, args: &[(&str, &str)], target: Option<&str>) -> Vec<String> {
        let args = args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        registries_pulled_from(dockerfile.as_bytes(), &args, target)
            .into_iter()
            .collect()
    }

    #[test]
    fn only_registries_the_needed_stages_pull_from_are_named() {
        let dockerfile = "\
ARG REG=default.example
FROM ${REG}/private/base:1 AS base
RUN true
FROM busybox AS tools
FROM ghcr.io/org/tool:2 AS unused
FROM base
COPY --from=tools /bin/sh /sh
COPY --from=quay.io/org/files:3 /f /f
RUN --mount=from=mount.example/org/m:1,target=/m true
";
        // the build-arg reaches FROM; Docker Hub's short names are docker.io; the unused
        // stage's registry and the RUN --mount image's are not named
        assert_eq!(
            named(dockerfile, &[("REG", "127.0.0.1:5000")], None),
            ["127.0.0.1:5000", "docker.io", "quay.io"]
        );
        // the ARG's default when no --build-arg overrides it
        assert_eq!(
            named(dockerfile, &[], None),
            ["default.example", "docker.io", "quay.io"]
        );
        // --target: only what that stage needs
        assert_eq!(named(dockerfile, &[], Some("unused")), ["ghcr.io"]);
        assert_eq!(named(dockerfile, &[], Some("tools")), ["docker.io"]);
        // scratch and stage bases pull nothing
        assert!(named("FROM scratch AS a\nFROM a\n", &[], None).is_empty());
        // an unparseable Dockerfile names nothing (the executor reports the error)
        assert!(named("FROM\n", &[], None).is_empty());
        assert!(named(dockerfile, &[], Some("nosuch")).is_empty());
    }

    #[test]
    fn credentials_are_sent_only_for_named_registries_the_user_has_them_for() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("auth.json");
        let docker = dir.path().join("config.json");
        let files: Vec<PathBuf> = vec![ours.clone(), docker.clone()];
        let login = |host: &str, user: &str| {
            auth::store_in(
                ours.clone(),
                host,
                &Credentials {
                    username: user.into(),
                    password: format!("{user}-pw"),
                },
            )
            .unwrap();
        };
        login("127.0.0.1:5000", "local");
        login("docker.io", "hub");
        login("ghcr.io", "never-sent");
        // Docker's file answers for a registry strata's file lacks
        std::fs::write(
            &docker,
            br#"{"auths":{"quay.io":{"username":"quay","password":"quay-pw"}}}"#,
        )
        .unwrap();

        let registries = registries_pulled_from(
            b"ARG REG\nFROM ${REG}/private/base\nCOPY --from=quay.io/o/f:1 /f /f\nCOPY --from=busybox / /\nCOPY --from=nocreds.example/x /x /x\n",
            &HashMap::from([("REG".to_owned(), "127.0.0.1:5000".to_owned())]),
            None,
        );
        let sent = credentials_for(registries, |host| auth::lookup_in(&files, host));
        let shown: Vec<(&str, &str, &str)> = sent
            .iter()
            .map(|c| (c.host.as_str(), c.username.as_str(), c.password.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("127.0.0.1:5000", "local", "local-pw"),
                ("docker.io", "hub", "hub-pw"),
                ("quay.io", "quay", "quay-pw"),
            ]
        );
        // and what is sent never prints its passwords
        let request = BuildRequest {
            registry_credentials: sent,
            ..Default::default()
        };
        let debug = format!("{request:?}");
        assert!(!debug.contains("-pw"), "{debug}");
        assert!(debug.contains("local"), "{debug}");
    }
}
