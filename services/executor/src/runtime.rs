//! The OCI runtime that runs RUN steps: probed once, then one container per step.
//!
//! [`Runtime::probe`] runs a trivial container (host `/usr` bound read-only, `true`) with, in
//! order: `crun` directly; `crun` inside a private mount namespace after unmounting
//! `/sys/fs/cgroup/unified` there (crun refuses cgroup "hybrid mode", and this leaves the
//! host's mounts untouched, see MACHINE-NOTES.md); `runc`. The first that works is used and
//! named in logs and in `BuildStarted.runtime`; when none works the error says what each
//! attempt printed. `STRATA_EXECUTOR_RUNTIME=runc|crun` restricts the choice.
//!
//! [`spec`] is the runtime spec of a step: the image's env, user (resolved by the caller),
//! workdir and argv; fresh pid/ipc/uts/mount namespaces and a network namespace with only
//! loopback unless host networking was allowed; a fresh /proc, a minimal tmpfs /dev, the
//! runtime's default device set, Docker's default capabilities, BuildKit's open-file limit
//! (1,024), `noNewPrivileges`, masked and read-only kernel paths. [`Runtime::run`] streams
//! the container's stdout and stderr (one pipe: their lines keep the order they were written
//! in) line by line and enforces the step timeout; dropping the
//! run (cancellation) or a timeout kills and deletes the container.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::Command,
    sync::mpsc,
};
use tracing::{info, warn};

use crate::error::ExecutorError;
use crate::users::ResolvedUser;

/// Open files a step's processes may hold (soft and hard): BuildKit's (containerd's default
/// spec), whatever the executor's own limit (which it raises for its stores).
const NOFILE: u64 = 1024;

/// The longest piece of output sent as one line; a longer line is sent in pieces.
const MAX_LINE: u64 = 64 * 1024;

/// Docker's default capability set.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Mount points the runtime creates in the rootfs when missing; empty ones it created are
/// removed again before the layer is taken.
pub const MOUNT_POINTS: &[&str] = &["/proc", "/dev", "/sys"];

/// Which runtime and how it is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// `runc`.
    Runc,
    /// `crun`, directly.
    Crun,
    /// `crun` in a private mount namespace without the cgroup2 hybrid mount.
    CrunUnshared,
}

/// A working OCI runtime.
#[derive(Debug, Clone)]
pub struct Runtime {
    kind: RuntimeKind,
    binary: String,
    version: String,
    state_root: PathBuf,
}

/// What a step runs.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// argv.
    pub args: Vec<String>,
    /// `NAME=value` environment.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// The process's user.
    pub user: ResolvedUser,
    /// The root filesystem (a mounted snapshot).
    pub rootfs: PathBuf,
    /// Share the host's network namespace.
    pub host_network: bool,
    /// The sandbox's hostname (`buildkitsandbox` unless the build says otherwise).
    pub hostname: String,
    /// Further mounts (`RUN --mount`), runtime-spec entries mounted after the defaults.
    pub mounts: Vec<serde_json::Value>,
}

/// The runtime spec (`config.json`) of one step.
pub fn spec(run: &RunSpec, extra_mounts: &[serde_json::Value]) -> serde_json::Value {
    let caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if !run.host_network {
        namespaces.push(json!({"type": "network"}));
    }
    let sys = if run.host_network {
        json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    } else {
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]})
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        sys,
    ];
    mounts.extend_from_slice(extra_mounts);
    mounts.extend_from_slice(&run.mounts);
    let mut user = json!({"uid": run.user.uid, "gid": run.user.gid});
    if !run.user.additional_gids.is_empty() {
        user["additionalGids"] = json!(run.user.additional_gids);
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": user,
            "args": run.args,
            "env": run.env,
            "cwd": run.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": NOFILE, "soft": NOFILE}],
            "noNewPrivileges": true
        },
        "root": {"path": run.rootfs, "readonly": false},
        "hostname": run.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Kills and deletes a container when dropped (cancellation, timeout, failure).
struct ContainerGuard<'a> {
    runtime: &'a Runtime,
    id: String,
    armed: bool,
    /// The runtime's `run` process, which exits only after the container's init.
    run_pid: Option<u32>,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut cmd = self.runtime.std_command(&["delete", "--force", &self.id]);
            match cmd.stdout(Stdio::null()).stderr(Stdio::null()).status() {
                Ok(_) => info!(container = %self.id, "container killed and deleted"),
                Err(e) => warn!(container = %self.id, error = %e, "could not delete container"),
            }
            if let Some(pid) = self.run_pid {
                wait_exited(pid, Duration::from_secs(5));
            }
        }
    }
}

/// Waits until process `pid` (our unreaped child) has exited — gone or a zombie — up to
/// `limit`. The runtime's `run` exits only after the container's init, and the kernel kills
/// and reaps every process of a pid namespace before its init finishes exiting, so once it
/// has, nothing of the container runs: a cancelled build reports only after that.
fn wait_exited(pid: u32, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat) => {
                // the state follows the parenthesised command name
                let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                if state.is_some_and(|r| r.starts_with(['Z', 'X'])) {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    warn!(
        pid,
        "the runtime's run process outlived the container's deletion"
    );
}

/// Kills and deletes the containers a killed predecessor left in `state_root` (one state
/// directory per runtime binary, `crun` or `runc`, holding a directory per container). The
/// executor's directory is locked to one process, so every container there is a leftover:
/// a RUN whose executor was SIGKILLed keeps running until this, at the next open, before
/// the predecessor's overlay mounts are detached from under it. Nothing to do costs a
/// directory read, no process.
pub(crate) fn remove_leftover_containers(state_root: &Path) {
    let Ok(runtimes) = std::fs::read_dir(state_root) else {
        return;
    };
    for runtime in runtimes.flatten() {
        let name = runtime.file_name();
        let Some(binary) = name.to_str().filter(|b| matches!(*b, "crun" | "runc")) else {
            continue;
        };
        let root = runtime.path();
        let Ok(containers) = std::fs::read_dir(&root) else {
            continue;
        };
        for container in containers.flatten() {
            let state = container.path();
            if !state.is_dir() {
                continue;
            }
            let id = container.file_name().to_string_lossy().into_owned();
            let deleted = std::process::Command::new(binary)
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", &id])
                .stdin(Stdio::null())
                .output();
            match deleted {
                // The predecessor's own `run` process, if it outlived it, reaps the killed
                // container and removes its state at the same moment: gone is done.
                Ok(o) if o.status.success() || !state.exists() => {
                    info!(container = %id, "removed a container left by an earlier process");
                }
                Ok(o) => warn!(
                    container = %id,
                    error = %String::from_utf8_lossy(&o.stderr).trim(),
                    "cannot remove a container left by an earlier process"
                ),
                Err(e) => warn!(container = %id, error = %e, "cannot run {binary}"),
            }
        }
    }
}

impl Runtime {
    /// Finds a runtime that can run a container here.
    pub async fn probe(state_root: &Path, scratch: &Path) -> Result<Self, ExecutorError> {
        let only = std::env::var("STRATA_EXECUTOR_RUNTIME").ok();
        let mut attempts = Vec::new();
        for kind in [
            RuntimeKind::Crun,
            RuntimeKind::CrunUnshared,
            RuntimeKind::Runc,
        ] {
            let binary = match kind {
                RuntimeKind::Runc => "runc",
                _ => "crun",
            };
            if only.as_deref().is_some_and(|o| o != binary) {
                continue;
            }
            let version = match Command::new(binary).arg("--version").output().await {
                Ok(o) if o.status.success() => {
                    let text = String::from_utf8_lossy(&o.stdout);
                    let first = text.lines().next().unwrap_or("").to_owned();
                    first.replace(" version ", " ")
                }
                Ok(o) => {
                    attempts.push(format!(
                        "{binary}: --version failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ));
                    continue;
                }
                Err(e) => {
                    attempts.push(format!("{binary}: not usable: {e}"));
                    continue;
                }
            };
            let runtime = Self {
                kind,
                binary: binary.to_owned(),
                version,
                state_root: state_root.join(binary),
            };
            match runtime.try_trivial_container(scratch).await {
                Ok(()) => {
                    info!(runtime = %runtime.describe(), "OCI runtime selected");
                    return Ok(runtime);
                }
                Err(e) => attempts.push(format!("{}: {e}", runtime.describe())),
            }
        }
        Err(ExecutorError::Runtime(format!(
            "no OCI runtime can run a container on this machine: {}",
            attempts.join("; ")
        )))
    }

    /// E.g. "crun 1.8.1 (private mount namespace)".
    pub fn describe(&self) -> String {
        match self.kind {
            RuntimeKind::CrunUnshared => format!(
                "{} (private mount namespace, cgroup2 hybrid mount hidden)",
                self.version
            ),
            _ => self.version.clone(),
        }
    }

    async fn try_trivial_container(&self, scratch: &Path) -> Result<(), ExecutorError> {
        let dir = scratch.join(format!("probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("usr")).map_err(|e| ExecutorError::io(&rootfs, e))?;
        let mut mounts = vec![
            json!({"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}),
        ];
        for top in ["bin", "lib", "lib64", "sbin"] {
            let host = Path::new("/").join(top);
            match std::fs::read_link(&host) {
                Ok(target) => {
                    let _ = std::os::unix::fs::symlink(target, rootfs.join(top));
                }
                Err(_) if host.is_dir() => mounts.push(json!({"destination": format!("/{top}"), "type": "bind", "source": host, "options": ["rbind", "ro"]})),
                Err(_) => {}
            }
        }
        let run = RunSpec {
            args: vec!["/usr/bin/true".into()],
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: "/".into(),
            user: ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
            },
            rootfs: rootfs.clone(),
            host_network: false,
            hostname: crate::network_files::HOSTNAME.into(),
            mounts: vec![],
        };
        let (tx, mut rx) = mpsc::channel::<(u32, Vec<u8>)>(64);
        let drain = tokio::spawn(async move {
            let mut out = Vec::new();
            while let Some((_, line)) = rx.recv().await {
                out.extend_from_slice(&line);
            }
            out
        });
        let id = format!("strata-probe-{}", std::process::id());
        let result = self
            .run_with_mounts(
                &id,
                &dir.join("bundle"),
                &run,
                &mounts,
                tx,
                Duration::from_secs(20),
            )
            .await;
        let output = drain.await.unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok(0) => Ok(()),
            Ok(code) => Err(ExecutorError::Runtime(format!(
                "exit code {code}: {}",
                String::from_utf8_lossy(&output).trim()
            ))),
            Err(e) => Err(e),
        }
    }

    fn command_args(&self, args: &[&str]) -> (String, Vec<String>) {
        let mut full = vec!["--root".to_owned(), self.state_root.display().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        match self.kind {
            RuntimeKind::CrunUnshared => {
                let mut wrapped = vec![
                    "-m".to_owned(),
                    "--propagation".into(),
                    "private".into(),
                    "--".into(),
                    "sh".into(),
                    "-c".into(),
                    "umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"".into(),
                    self.binary.clone(),
                ];
                wrapped.extend(full);
                ("unshare".into(), wrapped)
            }
            _ => (self.binary.clone(), full),
        }
    }

    fn std_command(&self, args: &[&str]) -> std::process::Command {
        let (program, args) = self.command_args(args);
        let mut c = std::process::Command::new(program);
        c.args(args);
        c
    }

    /// Runs one container to completion; output lines go to `output` as (fd, bytes).
    /// Returns the exit code (128+N when killed by signal N).
    pub async fn run(
        &self,
        id: &str,
        bundle: &Path,
        run: &RunSpec,
        output: mpsc::Sender<(u32, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<i32, ExecutorError> {
        self.run_with_mounts(id, bundle, run, &[], output, timeout)
            .await
    }

    async fn run_with_mounts(
        &self,
        id: &str,
        bundle: &Path,
        run: &RunSpec,
        extra_mounts: &[serde_json::Value],
        output: mpsc::Sender<(u32, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<i32, ExecutorError> {
        std::fs::create_dir_all(bundle).map_err(|e| ExecutorError::io(bundle, e))?;
        std::fs::create_dir_all(&self.state_root)
            .map_err(|e| ExecutorError::io(&self.state_root, e))?;
        let config = serde_json::to_vec_pretty(&spec(run, extra_mounts))
            .map_err(|e| ExecutorError::Internal(e.to_string()))?;
        let config_path = bundle.join("config.json");
        std::fs::write(&config_path, config).map_err(|e| ExecutorError::io(&config_path, e))?;

        let bundle_str = bundle.display().to_string();
        let (program, args) = self.command_args(&["run", "--bundle", &bundle_str, id]);
        // stdout and stderr share one pipe, so lines arrive in the order they were written
        // (two pipes are read whenever the reader wakes, by when a quick process has written
        // to both)
        let (output_read, output_write) =
            std::io::pipe().map_err(|e| ExecutorError::Runtime(format!("no pipe: {e}")))?;
        let stderr_write = output_write
            .try_clone()
            .map_err(|e| ExecutorError::Runtime(format!("no pipe: {e}")))?;
        // the command, and with it this process's write ends, is gone after the statement:
        // the read end sees the end of the output when the container's processes are done
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(output_write))
            .stderr(Stdio::from(stderr_write))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ExecutorError::Runtime(format!("failed to start {}: {e}", self.binary)))?;
        let mut guard = ContainerGuard {
            runtime: self,
            id: id.to_owned(),
            armed: true,
            run_pid: child.id(),
        };
        let stream = tokio::net::unix::pipe::Receiver::from_owned_fd(output_read.into())
            .map_err(|e| ExecutorError::Runtime(format!("reading the output pipe: {e}")))?;
        let pump = async move {
            let mut reader = BufReader::new(stream);
            loop {
                // a line is cut at MAX_LINE bytes: output without newlines is not held whole
                let mut line = Vec::new();
                match (&mut reader)
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut line)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if output.send((1, line)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        };
        let waited = tokio::time::timeout(timeout, async {
            let (status, _) = tokio::join!(child.wait(), pump);
            status
        })
        .await;
        match waited {
            Ok(Ok(status)) => {
                guard.armed = false;
                let code = status.code().unwrap_or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    128 + status.signal().unwrap_or(0)
                });
                // runc removes a container that exited; make sure of it
                let _ = self
                    .std_command(&["delete", "--force", id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                Ok(code)
            }
            Ok(Err(e)) => Err(ExecutorError::Runtime(format!(
                "waiting for {}: {e}",
                self.binary
            ))),
            Err(_) => {
                drop(guard); // kill + delete now
                Err(ExecutorError::Timeout {
                    seconds: timeout.as_secs(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_isolates_by_default() {
        let run = RunSpec {
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/work".into(),
            user: ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10],
            },
            rootfs: "/r".into(),
            host_network: false,
            hostname: crate::network_files::HOSTNAME.into(),
            mounts: vec![],
        };
        let s = spec(&run, &[]);
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(
            s["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}])
        );
        assert_eq!(s["process"]["user"]["additionalGids"], json!([10]));
        assert_eq!(s["process"]["cwd"], "/work");
        let ns: Vec<_> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_owned())
            .collect();
        assert!(ns.contains(&"network".to_owned()));
        let host = spec(
            &RunSpec {
                host_network: true,
                hostname: crate::network_files::HOSTNAME.into(),
                ..run
            },
            &[],
        );
        let ns: Vec<_> = host["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_owned())
            .collect();
        assert!(!ns.contains(&"network".to_owned()));
        assert!(
            !s["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "CAP_SYS_ADMIN")
        );
    }

    #[tokio::test]
    async fn a_runtime_is_found_and_streams_output() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::probe(&dir.path().join("state"), dir.path())
            .await
            .unwrap();
        assert!(!rt.describe().is_empty());
    }
}
