//! `/etc/hosts` and `/etc/resolv.conf` of a RUN container, as BuildKit gives them: files of
//! the executor's, bind-mounted read-only over the image's, so `localhost` and the sandbox's
//! name resolve and a step with host networking has the host's DNS, while no layer ever
//! holds them (the image's own files, if any, are hidden for the step and kept).
//!
//! - hosts: `127.0.0.1 localhost <hostname>` and `::1 localhost ip6-localhost ip6-loopback`;
//! - resolv.conf: the host's, verbatim with host networking; otherwise without loopback
//!   nameservers (a resolver on the host's loopback is not reachable from the step's own
//!   network namespace), and with libnetwork's public defaults when none is left.
//!
//! [`mount_points`] and [`settle`] keep the mount points out of the layer: the runtime
//! creates a missing `/etc/hosts` (and `/etc`) to mount over, which is removed again after
//! the step, and `/etc`, which overlayfs copied up for it, is put back as it was.

use std::{net::IpAddr, path::Path};

use crate::error::ExecutorError;
use crate::snapshot::Snapshot;

/// The sandbox's hostname (BuildKit's default).
pub const HOSTNAME: &str = "buildkitsandbox";

/// The sandbox hostname a build asks for with the build arg `BUILDKIT_SANDBOX_HOSTNAME`
/// (dockerfile.md §8.2), else [`HOSTNAME`]; a name that is not a valid host name (RFC 1123
/// labels of letters, digits and '-', at most 63 characters each, 253 in all) is refused.
pub fn sandbox_hostname(
    build_args: &std::collections::HashMap<String, String>,
) -> Result<String, ExecutorError> {
    let Some(name) = build_args
        .get("BUILDKIT_SANDBOX_HOSTNAME")
        .filter(|n| !n.is_empty())
    else {
        return Ok(HOSTNAME.to_string());
    };
    let valid = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(ExecutorError::InvalidArgument(format!(
            "invalid build arg BUILDKIT_SANDBOX_HOSTNAME={name:?}: not a host name"
        )));
    }
    Ok(name.clone())
}

/// Where the files are mounted.
pub const TARGETS: [&str; 2] = ["/etc/hosts", "/etc/resolv.conf"];

/// Nameservers a sandbox without host networking gets when the host names only loopback
/// ones (libnetwork's defaults, which BuildKit uses).
const DEFAULT_NAMESERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// The content of the sandbox's `/etc/hosts`.
pub fn hosts(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// True for a `nameserver` line naming a loopback address.
fn loopback_nameserver(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next() == Some("nameserver")
        && words
            .next()
            .and_then(|a| a.split('%').next())
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_some_and(|a| a.is_loopback())
}

/// The sandbox's `/etc/resolv.conf` made from the host's (`host`).
pub fn resolv_conf(host: &str, host_network: bool) -> String {
    if host_network {
        return host.to_owned();
    }
    let mut out = String::new();
    for line in host.lines().filter(|l| !loopback_nameserver(l)) {
        out.push_str(line);
        out.push('\n');
    }
    if !out
        .lines()
        .any(|l| l.split_whitespace().next() == Some("nameserver"))
    {
        for ns in DEFAULT_NAMESERVERS {
            out.push_str(&format!("nameserver {ns}\n"));
        }
    }
    out
}

/// Writes both files into `dir` (made if missing) and returns their runtime-spec mounts.
pub fn prepare(
    dir: &Path,
    host_network: bool,
    hostname: &str,
) -> Result<Vec<serde_json::Value>, ExecutorError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |e| ExecutorError::io_op(op, &path, e)
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    // a host without the file: the sandbox's has only what the filter adds
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut mounts = Vec::new();
    for (target, content) in [
        (TARGETS[0], hosts(hostname)),
        (TARGETS[1], resolv_conf(&host, host_network)),
    ] {
        let file = dir.join(target.rsplit('/').next().expect("a file name"));
        std::fs::write(&file, content).map_err(io("writing", &file))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
            .map_err(io("chmod", &file))?;
        mounts.push(crate::mounts::bind_spec(target, &file, true));
    }
    Ok(mounts)
}

/// What the runtime will create in `root` to mount the files over: the stubs (see
/// [`crate::mounts::missing_stub`]) and, when `/etc` is there, its state before the step.
#[derive(Debug)]
pub struct MountPoints {
    stubs: Vec<(String, String)>,
    etc: Option<std::fs::Metadata>,
}

/// Notes the mount points missing in `root` before the step runs.
pub fn mount_points(root: &Path) -> MountPoints {
    let stubs: Vec<(String, String)> = TARGETS
        .iter()
        .filter_map(|t| crate::mounts::missing_stub(root, t).map(|s| (s, (*t).to_owned())))
        .collect();
    let etc = root
        .join("etc")
        .symlink_metadata()
        .ok()
        .filter(|m| m.is_dir() && !stubs.is_empty());
    MountPoints { stubs, etc }
}

/// After the step: removes the empty stubs the runtime made and, if `/etc` held one and
/// is otherwise as it was, makes it no change of the step's.
pub fn settle(snapshot: &mut Snapshot, points: &MountPoints) -> Result<(), ExecutorError> {
    let root = snapshot.root().to_path_buf();
    for (stub, target) in points.stubs.iter().rev() {
        crate::mounts::remove_stub(&root, stub, target);
    }
    if let Some(before) = &points.etc {
        snapshot.restore_dir("etc", before)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_localhost_and_the_sandbox() {
        assert_eq!(
            hosts("buildkitsandbox"),
            "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        );
    }

    #[test]
    fn resolv_conf_drops_loopback_nameservers_without_host_networking() {
        let host = "# by hand\nsearch example.com\nnameserver 127.0.0.53\nnameserver ::1\n\
                    nameserver 10.0.0.2\noptions edns0\n";
        assert_eq!(resolv_conf(host, true), host);
        assert_eq!(
            resolv_conf(host, false),
            "# by hand\nsearch example.com\nnameserver 10.0.0.2\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\nsearch lan\n", false),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf("", false),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }
}
