//! USER and `--chown` names resolved through a root filesystem's /etc/passwd and /etc/group.

use std::path::Path;

use crate::error::ExecutorError;
use crate::rootpath::resolve_in_root;

/// A resolved user for a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids.
    pub additional_gids: Vec<u32>,
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_in_root(root: &Path, path: &str) -> String {
    resolve_in_root(root, path, true)
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

fn passwd(root: &Path) -> Vec<Passwd> {
    read_in_root(root, "/etc/passwd")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Passwd {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn groups(root: &Path) -> Vec<Group> {
    read_in_root(root, "/etc/group")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn lookup_group(root: &Path, group: &str) -> Result<u32, ExecutorError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    groups(root)
        .into_iter()
        .find(|g| g.name == group)
        .map(|g| g.gid)
        .ok_or_else(|| {
            ExecutorError::InvalidArgument(format!(
                "unable to find group {group}: no matching entries in group file"
            ))
        })
}

/// Resolves `USER user[:group]` for a RUN (dockerfile.md §8.12): a name must exist in the
/// image's passwd; a numeric uid not in passwd runs with gid 0; without an explicit group the
/// user's supplementary groups apply. The supplementary list always holds the primary group
/// too, as BuildKit's does since the CVE-2023-25173 fix (its `testUserAdditionalGids`): a
/// process never keeps group rights by leaving its own group out of the list.
pub fn resolve_user(root: &Path, spec: &str) -> Result<ResolvedUser, ExecutorError> {
    let spec = if spec.is_empty() { "0" } else { spec };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = passwd(root);
    let entry = match user.parse::<u32>() {
        Ok(uid) => users
            .into_iter()
            .find(|p| p.uid == uid)
            .map(|p| (p.name, p.uid, p.gid))
            .or(Some((String::new(), uid, 0))),
        Err(_) => users
            .into_iter()
            .find(|p| p.name == user)
            .map(|p| (p.name, p.uid, p.gid)),
    };
    let Some((name, uid, primary)) = entry else {
        return Err(ExecutorError::InvalidArgument(format!(
            "unable to find user {user}: no matching entries in passwd file"
        )));
    };
    match group {
        Some(g) => {
            let gid = lookup_group(root, g)?;
            Ok(ResolvedUser {
                uid,
                gid,
                additional_gids: vec![gid],
            })
        }
        None => {
            let mut additional: Vec<u32> = groups(root)
                .into_iter()
                .filter(|g| !name.is_empty() && g.members.iter().any(|m| m == &name))
                .map(|g| g.gid)
                .chain([primary])
                .collect();
            additional.sort_unstable();
            additional.dedup();
            Ok(ResolvedUser {
                uid,
                gid: primary,
                additional_gids: additional,
            })
        }
    }
}

/// Resolves `--chown=user[:group]` (dockerfile.md §8.9): names through the destination's
/// files; a user alone gives gid = the uid's numeric value.
pub fn resolve_chown(root: &Path, spec: &str) -> Result<(u32, u32), ExecutorError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => passwd(root)
            .into_iter()
            .find(|p| p.name == user)
            .map(|p| p.uid)
            .ok_or_else(|| {
                ExecutorError::InvalidArgument(format!(
                    "unable to find user {user}: no matching entries in passwd file"
                ))
            })?,
    };
    let gid = match group {
        Some(g) => lookup_group(root, g)?,
        None => uid,
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nappg:x:1001:\nwheel:x:10:app\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn users_resolve_with_groups() {
        let r = root();
        assert_eq!(
            resolve_user(r.path(), "app").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![10, 1001]
            }
        );
        assert_eq!(
            resolve_user(r.path(), "app:wheel").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 10,
                additional_gids: vec![10]
            }
        );
        assert_eq!(
            resolve_user(r.path(), "4242").unwrap(),
            ResolvedUser {
                uid: 4242,
                gid: 0,
                additional_gids: vec![0]
            }
        );
        assert!(
            resolve_user(r.path(), "nobody")
                .unwrap_err()
                .to_string()
                .contains("unable to find user nobody")
        );
        assert_eq!(resolve_chown(r.path(), "app").unwrap(), (1000, 1000));
        assert_eq!(resolve_chown(r.path(), "app:appg").unwrap(), (1000, 1001));
        assert_eq!(resolve_chown(r.path(), "1:2").unwrap(), (1, 2));
    }
}
